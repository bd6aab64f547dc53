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
        def _with_url(self, url):
            return NoLock(url)

    _create(tmp_path / "v", sharded=False)
    import cloudvolume_lite.stores.base as base

    reg = StoreRegistry().with_scheme("nolock", lambda url, **_: NoLock(StoreURL("file", "", str(tmp_path / "v"))))
    NoLock.lock = base.Store.lock  # a backend without locks
    vol = cvl.Volume("nolock://x/v", locking=True, stores=reg)
    with pytest.raises(cvl.UnsupportedEncodingError, match="cannot lock"):
        vol[0:3, 0:3, 0:3] = 1
