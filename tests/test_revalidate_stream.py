"""A new Volume on a filled disk cache (``recheck="open"``, the default) checks each copy once,
and the checks of a batch are streamed like any batch read: one conditional request each, many
in flight from one thread, no body when unchanged; a changed object brings its new bytes."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

import cloudvolume_lite as cvl


def _make(url: str, secrets: object = None) -> np.ndarray:
    truth = np.random.default_rng(3).integers(0, 255, (32, 32, 16, 1), dtype=np.uint8)
    with cvl.Volume.create(url, data_type="uint8", layer_type="image", size=truth.shape[:3], chunk_size=(8, 8, 8),
                           resolution=(1, 1, 1), secrets=secrets) as w:
        w[...] = truth
    return truth


def test_checks_over_http_are_streamed_and_conditional(http_server, http_root: Path, tmp_path: Path) -> None:  # noqa: ANN001
    name = uuid.uuid4().hex
    truth = _make(f"file://{http_root / name}")
    url, cache = f"{http_server.url}/{name}", str(tmp_path / "cache")
    with cvl.Volume(url, cache=cache) as vol:
        np.testing.assert_array_equal(vol[...], truth)  # fills the cache
    # another writer changes one chunk behind the cache's back
    changed = truth.copy()
    changed[0:8, 0:8, 0:8] = 7
    with cvl.Volume(f"file://{http_root / name}") as w:
        w[0:8, 0:8, 0:8] = 7
    http_server.reset_log()
    with cvl.Volume(url, cache=cache) as vol:
        fast = vol.chunk_store().inner._client.get().fast  # type: ignore[attr-defined]
        before = fast.stats["streamed"]
        np.testing.assert_array_equal(vol[...], changed)  # the changed chunk's new bytes
        chunks = 4 * 4 * 2
        assert fast.stats["streamed"] - before == chunks  # every check on the fetcher
        sent = [h for h in http_server.log.headers if "if-none-match" in h]
        assert len(sent) == chunks  # each conditional on its copy's generation
        http_server.reset_log()
        np.testing.assert_array_equal(vol[...], changed)
        assert http_server.log.count("GET") == 0  # checked once, then trusted while open


@pytest.mark.parametrize("backend", ["s3", "gs"])
def test_checks_on_object_stores_are_streamed(backend: str, request, tmp_path: Path) -> None:  # noqa: ANN001
    if backend == "s3":
        url, secrets = f"s3://{request.getfixturevalue('s3_bucket')}/v", request.getfixturevalue("s3_secrets")
    else:
        url, secrets = f"gs://{request.getfixturevalue('gcs_bucket')}/v", {"endpoint": request.getfixturevalue("gcs_endpoint")}
    truth = _make(url, secrets)
    cache = str(tmp_path / "cache")
    with cvl.Volume(url, cache=cache, secrets=secrets) as vol:
        np.testing.assert_array_equal(vol[...], truth)
    with cvl.Volume(url, secrets=secrets) as w:
        w[8:16, 0:8, 0:8] = 9
    truth[8:16, 0:8, 0:8] = 9
    with cvl.Volume(url, cache=cache, secrets=secrets) as vol:
        fast = vol.chunk_store().inner._streaming()  # type: ignore[attr-defined]
        before = dict(fast.stats)
        np.testing.assert_array_equal(vol[...], truth)
        assert fast.stats["streamed"] - before["streamed"] == 4 * 4 * 2


def test_checks_of_sharded_chunks_ask_once_per_shard(http_server, http_root: Path, tmp_path: Path) -> None:  # noqa: ANN001
    name = uuid.uuid4().hex
    truth = np.random.default_rng(4).integers(0, 255, (32, 32, 16, 1), dtype=np.uint8)
    sharding = dict(preshift_bits=0, hash="identity", minishard_bits=1, shard_bits=1,
                    minishard_index_encoding="gzip", data_encoding="gzip")
    with cvl.Volume.create(f"file://{http_root / name}", data_type="uint8", layer_type="image", size=(32, 32, 16),
                           chunk_size=(8, 8, 8), resolution=(1, 1, 1), sharding=sharding) as w:
        w[...] = truth
    url, cache = f"{http_server.url}/{name}", str(tmp_path / "cache")
    with cvl.Volume(url, cache=cache) as vol:
        np.testing.assert_array_equal(vol[...], truth)
    http_server.reset_log()
    with cvl.Volume(url, cache=cache) as vol:
        np.testing.assert_array_equal(vol[...], truth)
    shards = len(list((http_root / name).rglob("*.shard")))
    assert http_server.log.count("HEAD") == shards  # 32 chunks, one check per shard
    assert http_server.log.count("GET", ".shard") == 0  # nothing changed: no shard bytes
