"""Volumes written by TensorStore/CloudVolume, uploaded to real S3, GCS and HTTP servers on
127.0.0.1, must read back bit-exactly through ``cloudvolume_lite.Volume(url)``."""

from __future__ import annotations

import gzip
import os
import shutil
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

import cloudvolume_lite as cvl
from cloudvolume_lite.errors import StoreError
from cloudvolume_lite.stores import StoreRegistry
from cloudvolume_lite.stores.http import HTTPStore
from cloudvolume_lite.stores.retry import RetryPolicy
from fixtures_servers import Faults, RangeHTTPServer
from oracles import cv_write, random_volume, ts_write

BACKENDS = ["s3", "gs", "http"]
SHARDING = dict(preshift_bits=1, hash="murmurhash3_x86_128", minishard_bits=2, shard_bits=1,
                minishard_index_encoding="gzip", data_encoding="gzip")


def _files(root: Path) -> list[tuple[str, bytes]]:
    return [(p.relative_to(root).as_posix(), p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()]


def _object(rel: str, data: bytes, gzip_chunks: bool) -> tuple[str, bytes, str | None]:
    """Key, bytes and Content-Encoding of one file as it goes to an object store.

    CloudVolume's ``NAME.gz`` becomes ``NAME`` with ``Content-Encoding: gzip``; with
    ``gzip_chunks`` every unsharded chunk is gzipped that way too (never the info, never shards).
    """
    if rel.endswith(".gz"):
        return rel[:-3], data, "gzip"
    if gzip_chunks and "/" in rel and not rel.endswith((".shard", "info")):
        return rel, gzip.compress(data), "gzip"
    return rel, data, None


@pytest.fixture
def upload(request: pytest.FixtureRequest) -> Callable[..., tuple[str, dict | None]]:
    """``upload(local_dir, backend, gzip_chunks=False) -> (url, secrets)``, with each server's own client."""

    def run(src: Path, backend: str, gzip_chunks: bool = False) -> tuple[str, dict | None]:
        prefix = f"vols/{uuid.uuid4().hex[:8]}"
        if backend == "s3":
            client, bucket = request.getfixturevalue("s3_client"), request.getfixturevalue("s3_bucket")
            for rel, data in _files(src):
                key, body, enc = _object(rel, data, gzip_chunks)
                extra = {"ContentEncoding": enc} if enc else {}
                client.put_object(Bucket=bucket, Key=f"{prefix}/{key}", Body=body, **extra)
            return f"s3://{bucket}/{prefix}", request.getfixturevalue("s3_secrets")
        if backend == "gs":
            client, bucket = request.getfixturevalue("gcs_client"), request.getfixturevalue("gcs_bucket")
            b = client.bucket(bucket)
            for rel, data in _files(src):
                key, body, enc = _object(rel, data, gzip_chunks)
                blob = b.blob(f"{prefix}/{key}")
                blob.content_encoding = enc
                blob.upload_from_string(body, content_type="application/octet-stream")
            return f"gs://{bucket}/{prefix}", {"endpoint": request.getfixturevalue("gcs_endpoint")}
        # http: the served directory holds the files as they are; NAME.gz is served gzip_static-style
        server: RangeHTTPServer = request.getfixturevalue("http_server")
        dest = Path(request.getfixturevalue("http_root")) / prefix
        shutil.copytree(src, dest)
        if gzip_chunks:
            for rel, data in _files(dest):
                key, body, enc = _object(rel, data, True)
                if enc and not rel.endswith(".gz"):
                    (dest / (key + ".gz")).write_bytes(body)
                    os.unlink(dest / rel)
        return f"{server.url}/{prefix}", None

    return run


@pytest.fixture(scope="module")
def raw_u16(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, tuple[int, int, int]]:
    """Two-channel uint16 with a negative offset; the size is not a multiple of the chunk size."""
    rng = np.random.default_rng(5)
    truth = random_volume((70, 45, 21, 2), "uint16", rng)
    offset = (-30, 5, -7)
    path = tmp_path_factory.mktemp("raw") / "v"
    ts_write(path, truth, offset=offset, chunk=(32, 16, 8))
    return path, truth, offset


@pytest.fixture(scope="module")
def seg_u64(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, tuple[int, int, int]]:
    rng = np.random.default_rng(6)
    truth = random_volume((50, 40, 19, 1), "uint64", rng, labels=30)
    offset = (3, -4, 0)
    path = tmp_path_factory.mktemp("seg") / "v"
    ts_write(path, truth, offset=offset, chunk=(16, 16, 8), encoding="compressed_segmentation")
    return path, truth, offset


def _check(vol: cvl.Volume, truth: np.ndarray, offset: tuple[int, int, int]) -> None:
    x, y, z = offset
    sx, sy, sz = truth.shape[:3]
    assert vol.bounds == cvl.Bbox(offset, (x + sx, y + sy, z + sz))
    np.testing.assert_array_equal(vol[...], truth)
    # a cutout across chunk borders that ends at the clipped far edge
    np.testing.assert_array_equal(vol[x + 7 : x + sx, y + 3 : y + sy, z + 5 : z + sz], truth[7:, 3:, 5:])
    np.testing.assert_array_equal(vol[x, y + 1, z + 2], truth[0:1, 1:2, 2:3])
    assert vol[...].dtype == truth.dtype


@pytest.mark.parametrize("gzip_chunks", [False, True], ids=["plain", "gzipped"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_raw_uint16_two_channels(upload, raw_u16, backend: str, gzip_chunks: bool) -> None:  # noqa: ANN001
    path, truth, offset = raw_u16
    url, secrets = upload(path, backend, gzip_chunks=gzip_chunks)
    with cvl.Volume(url, secrets=secrets) as vol:
        assert vol.num_channels == 2 and vol.dtype == np.uint16
        _check(vol, truth, offset)
        np.testing.assert_array_equal(vol[..., 1], truth[..., 1:2])


@pytest.mark.parametrize("backend", BACKENDS)
def test_compressed_segmentation_uint64(upload, seg_u64, backend: str) -> None:  # noqa: ANN001
    path, truth, offset = seg_u64
    url, secrets = upload(path, backend)
    with cvl.Volume(f"precomputed://{url}", secrets=secrets) as vol:
        assert vol.encoding == "compressed_segmentation"
        _check(vol, truth, offset)
        pts = np.array([offset, (offset[0] + 49, offset[1] + 39, offset[2] + 18), (10, 10, 10)])
        np.testing.assert_array_equal(vol.scattered_points(pts).reshape(-1), truth[tuple((pts - offset).T)][:, 0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_cloudvolume_gzip_chunks(upload, tmp_path: Path, backend: str) -> None:  # noqa: ANN001
    """CloudVolume writes NAME.gz; on gs/s3 those become objects with Content-Encoding: gzip."""
    truth = random_volume((40, 33, 10, 1), "uint8", np.random.default_rng(7))
    cv_write(str(tmp_path / "v"), truth, offset=(-4, 0, 2), chunk=(16, 16, 4))
    assert any(p.suffix == ".gz" for p in (tmp_path / "v").rglob("*"))
    url, secrets = upload(tmp_path / "v", backend)
    with cvl.Volume(url, secrets=secrets) as vol:
        _check(vol, truth, (-4, 0, 2))


@pytest.mark.parametrize("backend", BACKENDS)
def test_sharded_segmentation(upload, tmp_path: Path, backend: str) -> None:  # noqa: ANN001
    """Sharded reads are byte-range reads against the real servers."""
    truth = random_volume((48, 40, 24, 1), "uint64", np.random.default_rng(8), labels=50)
    ts_write(tmp_path / "v", truth, offset=(2, -6, 4), chunk=(16, 8, 8), encoding="compressed_segmentation",
             sharding=SHARDING)
    url, secrets = upload(tmp_path / "v", backend)
    with cvl.Volume(url, secrets=secrets) as vol:
        _check(vol, truth, (2, -6, 4))


@pytest.mark.parametrize("backend", ["s3", "gs"])
def test_write_then_read(request: pytest.FixtureRequest, backend: str) -> None:
    """Volume.create + writes go through put(); chunks land gzipped with Content-Encoding metadata."""
    if backend == "s3":
        bucket = request.getfixturevalue("s3_bucket")
        secrets = request.getfixturevalue("s3_secrets")
    else:
        bucket = request.getfixturevalue("gcs_bucket")
        secrets = {"endpoint": request.getfixturevalue("gcs_endpoint")}
    url = f"{backend}://{bucket}/w"
    truth = random_volume((40, 30, 12, 1), "uint8", np.random.default_rng(9))
    with cvl.Volume.create(url, data_type="uint8", layer_type="image", size=(40, 30, 12), chunk_size=(16, 16, 8),
                           resolution=(4, 4, 40), voxel_offset=(1, 2, 3), secrets=secrets) as vol:
        vol[1:41, 2:32, 3:15] = truth
    with cvl.Volume(url, secrets=secrets) as vol:
        np.testing.assert_array_equal(vol[...], truth)
        sc = vol.info.scales[0]
        names = sorted(vol.store.list(sc.key + "/"))
    assert len(names) == 3 * 2 * 2
    if backend == "s3":
        head = request.getfixturevalue("s3_client").head_object(Bucket=bucket, Key=f"w/{names[0]}")
        assert head.get("ContentEncoding") == "gzip"
    else:
        blob = request.getfixturevalue("gcs_client").bucket(bucket).get_blob(f"w/{names[0]}")
        assert blob.content_encoding == "gzip"


# -- faults ----------------------------------------------------------------------------------------
def _fast_http(attempts: int) -> StoreRegistry:
    policy = RetryPolicy(attempts=attempts, base_delay=0.005, max_delay=0.05, connect_timeout=2, read_timeout=5)
    return StoreRegistry().with_scheme("http", partial(HTTPStore, retry=policy))


def test_flaky_http_server_gives_exact_data(faulty_http_server: RangeHTTPServer, raw_u16, seg_u64, tmp_path: Path) -> None:  # noqa: ANN001
    for name, (path, _, _) in (("raw", raw_u16), ("seg", seg_u64)):
        shutil.copytree(path, tmp_path / name)
    faulty_http_server.set_faults(Faults(rate=0.3, max_consecutive=3, seed=11))
    for name, (_, truth, offset) in (("raw", raw_u16), ("seg", seg_u64)):
        with cvl.Volume(f"{faulty_http_server.url}/{name}", stores=_fast_http(attempts=5), parallel=8) as vol:
            _check(vol, truth, offset)
    log = faulty_http_server.log
    assert log.faults > 0.15 * log.count()  # about 30% of all requests failed, and were retried


def test_always_failing_http_server_raises_store_error(faulty_http_server: RangeHTTPServer, raw_u16, tmp_path: Path) -> None:  # noqa: ANN001
    path, _, offset = raw_u16
    shutil.copytree(path, tmp_path / "v")
    with cvl.Volume(f"{faulty_http_server.url}/v", stores=_fast_http(attempts=3)) as vol:
        faulty_http_server.set_faults(Faults(always="503"))
        t = time.monotonic()
        with pytest.raises(StoreError, match=r"HTTP 503.*after 3 attempts"):
            vol[...]
        assert time.monotonic() - t < 5
    with pytest.raises(StoreError, match=r"/v/info failed: HTTP 503"):
        cvl.Volume(f"{faulty_http_server.url}/v", stores=_fast_http(attempts=2))


def test_sharded_reads_over_http_coalesce(faulty_http_server: RangeHTTPServer, tmp_path: Path) -> None:
    """A full read of a sharded volume: chunks of one shard come back in a few ranged requests."""
    truth = random_volume((64, 64, 32, 1), "uint64", np.random.default_rng(3), labels=40)
    src = tmp_path / "v"
    ts_write(src, truth, chunk=(16, 16, 8), encoding="compressed_segmentation", sharding=SHARDING)
    n_chunks = 4 * 4 * 4
    with cvl.Volume(f"{faulty_http_server.url}/v") as vol:
        faulty_http_server.reset_log()
        np.testing.assert_array_equal(vol[...], truth)
        shards = len(list(src.glob("*/*.shard")))
        ranged = faulty_http_server.log.count("GET", ".shard")
    # at most: shard index + minishard indices + data runs; never one request per chunk
    print(f"{ranged} ranged GETs for {n_chunks} chunks in {shards} shards")
    assert ranged < n_chunks / 2, (ranged, shards)
