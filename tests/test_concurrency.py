"""Concurrent writers: disjoint chunks and shards lose nothing; overlapping ones need locking=True."""

from __future__ import annotations

import multiprocessing as mp
import threading

import numpy as np
import pytest

import cloudvolume_lite as cvl

SHARDING = dict(preshift_bits=1, hash="identity", minishard_bits=1, shard_bits=4,
                minishard_index_encoding="gzip", data_encoding="gzip")


def _create(path, sharded: bool) -> cvl.Volume:
    return cvl.Volume.create(str(path), data_type="uint16", layer_type="image", size=(64, 64, 16),
                             chunk_size=(8, 8, 8), resolution=(1, 1, 1), sharding=SHARDING if sharded else None)


def _stripe(path: str, x0: int, width: int, locking: bool, value: int, rounds: int) -> None:
    vol = cvl.Volume(path, locking=locking)
    for r in range(rounds):
        vol[x0 : x0 + width, :, :] = value + r


@pytest.mark.parametrize("sharded", [False, True])
def test_disjoint_writers_in_threads(tmp_path, sharded):
    _create(tmp_path / "v", sharded)
    unit = 16 if sharded else 8  # a shard here is 4 chunks: 16x16x8? use whole-shard-aligned stripes
    width = 32 if sharded else 8
    threads = [threading.Thread(target=_stripe, args=(str(tmp_path / "v"), x, width, False, x + 1, 3))
               for x in range(0, 64, width)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = cvl.Volume(str(tmp_path / "v"))[...]
    for x in range(0, 64, width):
        assert (got[x : x + width] == x + 1 + 2).all()
    assert unit


def test_disjoint_writers_in_processes(tmp_path):
    _create(tmp_path / "v", sharded=False)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_stripe, args=(str(tmp_path / "v"), x, 16, False, x + 1, 2)) for x in range(0, 64, 16)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    got = cvl.Volume(str(tmp_path / "v"))[...]
    for x in range(0, 64, 16):
        assert (got[x : x + 16] == x + 2).all()


@pytest.mark.parametrize("sharded", [False, True])
def test_overlapping_unaligned_writers_with_locking(tmp_path, sharded):
    """Processes writing 3-voxel stripes that share chunks (and shards): with locking nothing is lost."""
    _create(tmp_path / "v", sharded)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_stripe, args=(str(tmp_path / "v"), x, 3, True, 100 + x, 3)) for x in range(0, 24, 3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    got = cvl.Volume(str(tmp_path / "v"), fill_missing=True)[...]
    for x in range(0, 24, 3):
        assert (got[x : x + 3] == 100 + x + 2).all(), x
    assert not got[24:].any()


def test_locking_on_a_store_that_cannot_lock(tmp_path):
    from cloudvolume_lite.stores import StoreRegistry, StoreURL
    from cloudvolume_lite.stores.local import LocalStore

    class NoLock(LocalStore):
        supports_conditional_writes = False  # a plug-in store with neither locks nor conditions

        def _with_url(self, url):
            return NoLock(url)

    _create(tmp_path / "v", sharded=False)
    import cloudvolume_lite.stores.base as base

    reg = StoreRegistry().with_scheme("nolock", lambda url, **_: NoLock(StoreURL("file", "", str(tmp_path / "v"))))
    NoLock.lock = base.Store.lock  # a backend without locks
    vol = cvl.Volume("nolock://x/v", locking=True, stores=reg)
    with pytest.raises(cvl.UnsupportedEncodingError, match="cannot lock"):
        vol[0:3, 0:3, 0:3] = 1


@pytest.mark.parametrize("backend", ["s3", "gs"])
@pytest.mark.parametrize("sharded", [False, True])
def test_locked_writers_on_object_stores(request, backend, sharded):
    """Threads with their own Volumes write 3-voxel stripes sharing chunks (and shards) on the
    moto / fake-gcs servers; lease locks (conditional PUTs) keep every stripe."""
    if backend == "s3":
        bucket, secrets = request.getfixturevalue("s3_bucket"), request.getfixturevalue("s3_secrets")
    else:
        bucket, secrets = request.getfixturevalue("gcs_bucket"), {"endpoint": request.getfixturevalue("gcs_endpoint")}
    url = f"{backend}://{bucket}/locked-{int(sharded)}"
    cvl.Volume.create(url, data_type="uint16", layer_type="image", size=(64, 64, 16), chunk_size=(8, 8, 8),
                      resolution=(1, 1, 1), sharding=SHARDING if sharded else None, secrets=secrets)

    def stripe(x0):
        vol = cvl.Volume(url, locking=True, secrets=secrets)
        for r in range(2):
            vol[x0 : x0 + 3, 0:16, 0:8] = 100 + x0 + r

    threads = [threading.Thread(target=stripe, args=(x,)) for x in range(0, 15, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = cvl.Volume(url, fill_missing=True, secrets=secrets)[0:16, 0:16, 0:8]
    for x in range(0, 15, 3):
        assert (got[x : x + 3] == 100 + x + 1).all(), x
    store = cvl.Volume(url, secrets=secrets).store
    assert not [k for k in store.list() if k.endswith(".lock")]  # every lease was released


def test_stale_lease_is_taken_over(s3_bucket, s3_secrets):
    import time

    from cloudvolume_lite.stores import StoreRegistry

    store = StoreRegistry().open(f"s3://{s3_bucket}/lease", secrets=s3_secrets)
    store.put("chunk.lock", f"deadbeef {time.time() - 5:.3f}".encode())  # a writer died holding it
    with store.lock("chunk"):
        assert store.get("chunk.lock") != b"" and b"deadbeef" not in store.get("chunk.lock")
    assert store.get("chunk.lock") is None
