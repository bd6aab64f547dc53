"""Secrets are used, never shown (issue 16: "Damage is detected, secrets never shown", items 3
and 4): a URL's ``user:password@`` is redacted (``user:***@``) in ``vol.url``, reprs, error
messages, cache directory names and the ``cvl`` command's output, while requests still carry
it; a redirect to another origin goes without any credential (``secrets["headers"]`` as
well as ``Authorization``). Everything runs against servers on 127.0.0.1."""

from __future__ import annotations

import base64
import os
import re
import traceback
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

import cloudvolume_lite as cvl
from cloudvolume_lite.cli import main
from cloudvolume_lite.stores import open_store, parse_url
from fixtures_servers import Faults, RangeHTTPServer, refused_port

PASSWORD = "hunter2-Pa55"
SHAPE = (16, 16, 8)
FAST = cvl.RetryPolicy(attempts=2, base_delay=0.005, max_delay=0.01, connect_timeout=1, read_timeout=2)


def _make(url: str) -> np.ndarray:
    truth = np.random.default_rng(3).integers(0, 255, SHAPE, dtype=np.uint8)
    vol = cvl.Volume.create(url, data_type="uint8", layer_type="image", size=SHAPE, chunk_size=(8, 8, 8),
                            resolution=(1, 1, 1), encoding="raw", compression=None)
    vol[...] = truth
    return truth


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[RangeHTTPServer, np.ndarray]]:
    root = tmp_path / "served"
    truth = _make(f"file://{root}/vol")
    srv = RangeHTTPServer(root).start()
    yield srv, truth
    srv.stop()


def _with_user(srv: RangeHTTPServer, user: str = "alice", password: str = PASSWORD, path: str = "vol") -> str:
    return f"http://{user}:{password}@{srv.url[len('http://'):]}/{path}"


def _everything_said(e: BaseException) -> str:
    """An error as a user could ever see it: message, repr and the whole formatted chain."""
    return str(e) + repr(e) + "".join(traceback.format_exception(e))


# -- shown forms ------------------------------------------------------------------------------------
def test_the_password_is_redacted_where_shown_and_sent_where_asked(served: tuple[RangeHTTPServer, np.ndarray]) -> None:
    srv, truth = served
    vol = cvl.Volume(_with_user(srv))
    np.testing.assert_array_equal(vol[...][..., 0], truth)
    host = srv.url[len("http://"):]
    assert vol.url == f"http://alice:***@{host}/vol"
    shown = [vol.url, repr(vol), repr(vol.store), str(vol.store.url), repr(vol.store.url), repr(vol.chunk_store()),
             str(vol.chunk_store().url), vol.store.url.key_url("info"), str(vol.scale)]
    for text in shown:
        assert PASSWORD not in text, text
    assert "alice:***@" in repr(vol)
    basic = "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    assert srv.log.headers and all(h.get("authorization") == basic for h in srv.log.headers)
    assert parse_url(_with_user(srv)).unredacted == _with_user(srv)  # for reopening, never for messages


def test_a_token_as_user_is_redacted_whole() -> None:
    url = parse_url("https://ghp_abcdef123456@example.org/data")
    assert str(url) == "https://***@example.org/data" and "ghp_" not in repr(url)


def test_errors_never_show_the_password(served: tuple[RangeHTTPServer, np.ndarray], tmp_path: Path) -> None:
    srv, _ = served
    errors: list[BaseException] = []
    vol = cvl.Volume(_with_user(srv), retry=FAST)
    os.unlink(srv.root / "vol" / vol.scale.key / vol.scale.chunk_name((0, 0, 0)))
    with pytest.raises(cvl.ChunkNotFoundError) as missing:
        vol[...]
    errors.append(missing.value)
    with pytest.raises(cvl.InfoError) as no_info:
        cvl.Volume(_with_user(srv, path="nothing-here"))
    errors.append(no_info.value)
    with pytest.raises(cvl.OutOfBoundsError) as outside:
        vol[0:100, 0:1, 0:1]
    errors.append(outside.value)
    with pytest.raises(cvl.VolumeError) as read_only:
        vol[0:8, 0:8, 0:8] = np.zeros((8, 8, 8), np.uint8)
    errors.append(read_only.value)
    with pytest.raises(cvl.StoreError) as refused:
        cvl.Volume(f"http://alice:{PASSWORD}@127.0.0.1:{refused_port()}/vol", retry=FAST)
    errors.append(refused.value)
    with pytest.raises(cvl.RequestError) as no_host:
        cvl.Volume(f"http://alice:{PASSWORD}@/vol")
    errors.append(no_host.value)
    for e in errors:
        assert PASSWORD not in _everything_said(e), _everything_said(e)
    assert "alice:***@" in str(missing.value)


# -- the disk cache ----------------------------------------------------------------------------------
def _all_names_and_bytes(root: Path) -> tuple[list[str], list[bytes]]:
    names, contents = [], []
    for dirpath, dirs, files in os.walk(root):
        names += [os.path.join(dirpath, n) for n in dirs + files]
        contents += [Path(dirpath, f).read_bytes() for f in files]
    return names, contents


def test_the_cache_is_keyed_by_a_hash_of_the_user_info(served: tuple[RangeHTTPServer, np.ndarray],
                                                       tmp_path: Path) -> None:
    srv, truth = served
    cache = tmp_path / "cache"
    host = srv.url[len("http://"):]
    dirs = {}
    for user, password in [("alice", PASSWORD), ("bob", PASSWORD), ("alice", PASSWORD + "-new")]:
        vol = cvl.Volume(_with_user(srv, user, password), cache=str(cache))
        np.testing.assert_array_equal(vol[...][..., 0], truth)
        dirs[(user, password)] = vol.cache.path  # type: ignore[union-attr]
    plain = cvl.Volume(f"{srv.url}/vol", cache=str(cache))
    np.testing.assert_array_equal(plain[...][..., 0], truth)
    assert plain.cache.path == str(cache / "http" / host / "vol")  # type: ignore[union-attr]
    assert len(set(dirs.values())) == 3  # two users (or one user's two passwords) never share copies
    for d in dirs.values():
        rel = Path(d).relative_to(cache).parts
        assert re.fullmatch(r"@[0-9a-f]{16}", rel[0]) and rel[1:] == ("http", host, "vol")
    names, contents = _all_names_and_bytes(cache)
    assert not [n for n in names if PASSWORD in n or "alice" in n or "bob" in n]
    assert not [c for c in contents if PASSWORD.encode() in c]


# -- the command line --------------------------------------------------------------------------------
def test_cvl_output_never_shows_the_password(served: tuple[RangeHTTPServer, np.ndarray], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    srv, _ = served
    url = _with_user(srv)
    cache = tmp_path / "cache"
    monkeypatch.setenv("CVL_CACHE_DIR", str(cache))
    said = []
    assert main(["info", url]) == 0
    said.append(capsys.readouterr())
    assert "alice:***@" in said[-1].out
    assert main(["get", url, "0:16,0:16,0:8", "-o", str(tmp_path / "a.npy")]) == 0
    said.append(capsys.readouterr())
    assert main(["get", url, "0:99,0:16,0:8", "-o", str(tmp_path / "b.npy")]) != 0  # out of bounds
    said.append(capsys.readouterr())
    assert main(["get", _with_user(srv, path="no-volume-here"), "0:8,0:8,0:8", "-o", str(tmp_path / "c.npy")]) != 0
    said.append(capsys.readouterr())
    assert main(["cp", url, f"file://{tmp_path}/copy"]) == 0
    said.append(capsys.readouterr())
    cvl.Volume(url, cache=str(cache))[...]  # a cached copy of the volume
    old = cache / "http" / f"alice:{PASSWORD}@{srv.url[len('http://'):]}" / "vol"  # an older version's name
    old.mkdir(parents=True)
    (old / "info").write_bytes(b"{}")
    assert main(["cache", "ls", "--dir", str(cache)]) == 0
    said.append(capsys.readouterr())
    assert "alice:***@" in said[-1].out and "@" in said[-1].out
    for s in said:
        assert PASSWORD not in s.out + s.err, s


# -- redirects -----------------------------------------------------------------------------------------
SECRET_HEADERS = {"X-Api-Key": "key-2f1e9c", "Private-Token": "tok-77aa01", "Authorization": "Bearer brr-4c4c"}


_BASIC = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()


def _secret_values(headers: dict[str, str]) -> list[str]:
    secrets = [*SECRET_HEADERS.values(), PASSWORD, _BASIC]
    return [v for v in headers.values() if any(s in v for s in secrets)]


@pytest.mark.parametrize("how", ["headers", "url"])
def test_a_redirect_to_another_origin_carries_no_secret(how: str, served: tuple[RangeHTTPServer, np.ndarray],
                                                        tmp_path: Path) -> None:
    target, truth = served
    (tmp_path / "front").mkdir()
    front = RangeHTTPServer(tmp_path / "front", Faults(redirect=(("/", target.url + "/"),))).start()
    try:
        if how == "headers":
            vol = cvl.Volume(f"{front.url}/vol", secrets={"headers": SECRET_HEADERS})
        else:
            vol = cvl.Volume(_with_user(front))
        np.testing.assert_array_equal(vol[...][..., 0], truth)  # a batch: streamed, 302s done again
        assert vol.store.get("info") is not None and vol.chunk_store().get(vol.scale.chunk_name((0, 0, 0)))
        assert target.log.headers and front.log.headers
        assert all(_secret_values(h) for h in front.log.headers)  # the origin asked got them
        leaked = [h for h in target.log.headers if _secret_values(h)]
        assert not leaked, leaked
    finally:
        front.stop()


def test_a_redirect_within_the_origin_keeps_the_secrets(tmp_path: Path) -> None:
    root = tmp_path / "served"
    truth = _make(f"file://{root}/new/vol")
    srv = RangeHTTPServer(root).start()
    try:
        srv.set_faults(Faults(redirect=(("/old/", srv.url + "/new/"),)))
        vol = cvl.Volume(f"{srv.url}/old/vol", secrets={"headers": SECRET_HEADERS})
        np.testing.assert_array_equal(vol[...][..., 0], truth)
        assert all(h.get("x-api-key") == SECRET_HEADERS["X-Api-Key"] for h in srv.log.headers)
    finally:
        srv.stop()


def test_the_streaming_fetcher_never_follows_a_redirect(served: tuple[RangeHTTPServer, np.ndarray],
                                                        tmp_path: Path) -> None:
    """A 302 on the streamed path is done again by read() (which strips the secrets); the
    fetcher itself sends nothing to the place the answer names."""
    target, _ = served
    (tmp_path / "front").mkdir()
    front = RangeHTTPServer(tmp_path / "front", Faults(redirect=(("/", target.url + "/"),))).start()
    try:
        store = open_store(f"{front.url}/vol", secrets={"headers": SECRET_HEADERS})
        fast = store._streaming()  # type: ignore[attr-defined]
        replies = list(fast.fetcher.fetch([("info", "/vol/info", {})]))
        assert replies[0][1].status == 302 and not target.log.headers
    finally:
        front.stop()
