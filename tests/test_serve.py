"""The volume server behind ``cvl serve`` and ``cvl view`` (proxy.py), without a browser:
what it answers is read back by cvl itself and by TensorStore, and it speaks HTTP as
Neuroglancer expects (CORS and its preflight, Range, gzip, 404 for a missing chunk)."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import numpy as np
import pytest

import cloudvolume_lite as cvl
import served
from cloudvolume_lite.proxy import VolumeServer, served_info, volume_names


@pytest.fixture
def image(tmp_path):
    data = np.random.default_rng(5).integers(0, 255, (70, 50, 20, 1), dtype=np.uint8)
    return data, cvl.Volume.from_numpy(data, f"file://{tmp_path}/img", chunk_size=(32, 32, 16))


@pytest.fixture
def sharded_seg(tmp_path):
    data = np.random.default_rng(6).integers(0, 9, (64, 48, 32, 1), dtype=np.uint64)
    sharding = {"@type": "neuroglancer_uint64_sharded_v1", "preshift_bits": 1, "hash": "murmurhash3_x86_128",
                "minishard_bits": 1, "shard_bits": 1, "minishard_index_encoding": "gzip", "data_encoding": "gzip"}
    vol = cvl.Volume.create(f"file://{tmp_path}/seg", data_type="uint64", layer_type="segmentation",
                            size=(64, 48, 32), chunk_size=(16, 16, 16), resolution=(4, 4, 40),
                            encoding="compressed_segmentation", sharding=sharding)
    vol[...] = data
    return data, cvl.Volume(f"file://{tmp_path}/seg")


def _get(url: str, headers: dict | None = None, method: str = "GET"):
    req = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_a_sharded_volume_is_served_unsharded_and_reads_back_exactly(sharded_seg) -> None:
    data, vol = sharded_seg
    with VolumeServer({"seg": vol}) as srv:
        status, _, body = _get(f"{srv.url}/seg/info")
        info = json.loads(body)
        assert status == 200 and "sharding" not in info["scales"][0]
        assert info["type"] == "segmentation" and info["scales"][0]["encoding"] == "compressed_segmentation"
        np.testing.assert_array_equal(cvl.Volume(srv.volume_url("seg"))[...], data)


def test_tensorstore_reads_what_is_served(image) -> None:
    ts = pytest.importorskip("tensorstore")
    data, vol = image
    with VolumeServer({"img": vol}) as srv:
        arr = ts.open({"driver": "neuroglancer_precomputed", "kvstore": f"{srv.url}/img/"}).result()
        np.testing.assert_array_equal(arr.read(order="F").result(), data)


def test_cors_range_gzip_and_missing_chunks(image) -> None:
    data, vol = image
    key = f"{vol.scales[0].key}/0-32_0-32_0-16"
    stored = vol.chunk_store(0).get("0-32_0-32_0-16")
    with VolumeServer({"img": vol}) as srv:
        status, headers, body = _get(f"{srv.url}/img/{key}")
        assert status == 200 and body == stored and headers["Access-Control-Allow-Origin"] == "*"
        # gzip on the wire when the browser accepts it; the bytes inside are the same
        status, headers, body = _get(f"{srv.url}/img/{key}", {"Accept-Encoding": "gzip, deflate"})
        assert headers.get("Content-Encoding") == "gzip" and gzip.decompress(body) == stored
        # one range: 206 with Content-Range, never gzip'd; a suffix range; past the end: 416
        status, headers, body = _get(f"{srv.url}/img/{key}", {"Range": "bytes=10-19", "Accept-Encoding": "gzip"})
        assert status == 206 and body == stored[10:20] and headers["Content-Range"] == f"bytes 10-19/{len(stored)}"
        assert "Content-Encoding" not in headers
        status, _, body = _get(f"{srv.url}/img/{key}", {"Range": "bytes=-7"})
        assert status == 206 and body == stored[-7:]
        status, headers, _ = _get(f"{srv.url}/img/{key}", {"Range": f"bytes={len(stored)}-"})
        assert status == 416 and headers["Content-Range"] == f"bytes */{len(stored)}"
        # the preflight a browser sends before a request with a Range header
        status, headers, _ = _get(f"{srv.url}/img/{key}", {"Access-Control-Request-Method": "GET",
                                                           "Access-Control-Request-Headers": "range"}, "OPTIONS")
        assert status == 204 and "range" in headers["Access-Control-Allow-Headers"].lower()
        assert "GET" in headers["Access-Control-Allow-Methods"]
        assert "Content-Range" in headers["Access-Control-Expose-Headers"]
        # a chunk not written: 404, which Neuroglancer shows as empty
        vol.delete(cvl.Bbox((32, 32, 0), (64, 50, 16)))
        assert _get(f"{srv.url}/img/{vol.scales[0].key}/32-64_32-50_0-16")[0] == 404
        # not a volume, and a key that would leave the volume's root
        status, _, body = _get(f"{srv.url}/nope/info")
        assert status == 404 and b"img" in body
        assert _get(f"{srv.url}/img/%2E%2E/%2E%2E/etc/passwd")[0] in (400, 404)
        assert _get(f"{srv.url}/img/../img/info")[0] in (200, 400)  # urllib normalises; never outside


def test_remote_volumes_are_fetched_once_through_the_volume_cache(tmp_path, http_server, http_root) -> None:
    """A volume on an HTTP server, served again: the browser's repeated asks hit the LRU."""
    data = np.random.default_rng(2).integers(0, 255, (64, 64, 16, 1), dtype=np.uint8)
    cvl.Volume.from_numpy(data, f"file://{http_root}/cached", chunk_size=(32, 32, 16))
    remote = cvl.Volume(f"{http_server.url}/cached", lru_bytes=64 << 20)
    with VolumeServer({"cached": remote}) as srv:
        before = len(http_server.log.entries)
        for _ in range(3):
            np.testing.assert_array_equal(cvl.Volume(srv.volume_url("cached"))[...], data)
        asked = [p for m, p, _ in http_server.log.entries[before:] if m == "GET"]
        chunks = [p for p in asked if "/cached/" in p and not p.endswith("/info")]
        assert len(asked) == len(chunks)  # the info was read once, when the Volume opened
        assert len(chunks) == 4  # four chunks, each fetched from the origin once, for three full reads


def test_volume_names_are_distinct_path_segments() -> None:
    assert volume_names(["gs://b/em/", "s3://c/em", "file:///x/seg?x=1", "mem://"]) == ["em", "em-2", "seg", "mem"]
    with pytest.raises(cvl.RequestError):
        VolumeServer({"a/b": None})  # type: ignore[dict-item]


def test_served_info_keeps_everything_but_sharding(sharded_seg) -> None:
    _, vol = sharded_seg
    info = served_info(vol)
    assert vol.scales[0].sharding is not None  # the volume itself is untouched
    assert info["scales"][0]["chunk_sizes"] == [[16, 16, 16]] and info["data_type"] == "uint64"


def test_cvl_serve_prints_urls_and_stops_on_ctrl_c(image) -> None:
    data, vol = image
    proc, lines = served.start(["serve", vol.url])
    try:
        url = next(line.split("-> precomputed://")[1] for line in lines if "-> precomputed://" in line)
        assert url.startswith("http://127.0.0.1:")
        np.testing.assert_array_equal(cvl.Volume(url)[...], data)
    finally:
        served.stop(proc)


def test_a_host_other_than_loopback_is_warned_about(image) -> None:
    _, vol = image
    proc, _ = served.start(["serve", vol.url, "--host", "127.0.0.2"])  # still loopback on Linux, but not the default
    _, err = served.stop(proc, signal.SIGTERM)
    assert "warning: serving on 127.0.0.2" in err


def test_view_without_the_viewer_extra_says_what_to_install(image, tmp_path) -> None:
    """A ``neuroglancer`` package without its built client (as a source checkout is): a
    one-line error naming the extra, exit code 1, no traceback."""
    fake = tmp_path / "fake" / "neuroglancer"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path / 'fake'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    r = subprocess.run([sys.executable, "-m", "cloudvolume_lite.cli", "view", image[1].url, "--no-browser"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 1 and "cloudvolume-lite[viewer]" in r.stderr and "Traceback" not in r.stderr


def test_vol_viewer_serves_the_client_and_a_state_for_the_volume(sharded_seg) -> None:
    pytest.importorskip("neuroglancer")
    import urllib.parse

    _, vol = sharded_seg
    viewer = vol.viewer(open_browser=False)
    try:
        base, _, fragment = viewer.url.partition("#!")
        assert base.startswith("http://127.0.0.1:") and base.endswith(f"/v/{viewer.token}/")
        state = json.loads(urllib.parse.unquote(fragment))
        assert state["layers"] == [{"type": "segmentation", "name": "seg",
                                    "source": f"precomputed://{viewer.volume_url('seg')}"}]
        assert state["position"] == [32.0, 24.0, 16.0] and state["dimensions"]["z"] == [40e-9, "m"]
        status, headers, body = _get(base)
        assert status == 200 and b"<script" in body and headers["Content-Type"].startswith("text/html")
        assert _get(base.rstrip("/"))[0] == 200  # /v/<token> redirects to /v/<token>/
        assert _get(f"{viewer.server.url}/v/wrongtoken/")[0] == 404
        # the client's state posts are answered (and ignored); the volume is served beside it
        assert _get(f"{viewer.server.url}/state/{viewer.token}", method="POST")[0] == 412
        assert json.loads(_get(f"{viewer.volume_url('seg')}/info")[2])["type"] == "segmentation"
        # the client's event stream is held open until the server stops
        stream = urllib.request.urlopen(f"{viewer.server.url}/events/{viewer.token}", timeout=30)
        assert stream.headers["Content-Type"] == "text/event-stream" and stream.readline() == b": cvl\n"
    finally:
        viewer.stop()
    assert stream.read() == b"\n"  # the stream ends when the server stops


def test_a_volume_on_the_standard_library_http_server_is_served_again(tmp_path) -> None:
    """The plainest server a user has (``python -m http.server``: no Range, no ETag handling of
    ours) as the origin: cvl serve's answers, Range included, come from the Volume."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    data = np.random.default_rng(9).integers(0, 255, (40, 30, 16, 1), dtype=np.uint8)
    cvl.Volume.from_numpy(data, f"file://{tmp_path}/plain", chunk_size=(16, 16, 16))

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    origin = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path)))
    threading.Thread(target=origin.serve_forever, daemon=True).start()
    try:
        vol = cvl.Volume(f"http://127.0.0.1:{origin.server_address[1]}/plain", lru_bytes=16 << 20)
        with VolumeServer({"plain": vol}) as srv:
            np.testing.assert_array_equal(cvl.Volume(srv.volume_url("plain"))[...], data)
            key = f"{vol.scales[0].key}/0-16_0-16_0-16"
            status, _, body = _get(f"{srv.url}/plain/{key}", {"Range": "bytes=4-11"})
            assert status == 206 and body == vol.chunk_store(0).get("0-16_0-16_0-16")[4:12]
    finally:
        origin.shutdown()
        origin.server_close()
