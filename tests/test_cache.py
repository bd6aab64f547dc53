"""The chunk LRU, request coalescing and the on-disk cache."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import cloudvolume_lite as cvl
from cloudvolume_lite.stores.lru import ChunkLRU
from cloudvolume_lite.stores.disk_cache import DiskCache
from cloudvolume_lite.stores import StoreRegistry, StoreURL
from cloudvolume_lite.stores.local import LocalStore
from oracles import random_volume, fixture_write


class SlowCountingStore(LocalStore):
    """A real local store that counts gets per key and answers slowly (like a remote)."""

    def __init__(self, url, counts, delay=0.01):
        super().__init__(url)
        self.counts = counts
        self.delay = delay
        self.lock = threading.Lock()

    def get(self, key, byte_range=None):
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + 1
        time.sleep(self.delay)
        return super().get(key, byte_range)

    def _with_url(self, url):
        return SlowCountingStore(url, self.counts, self.delay)


@pytest.fixture
def counted(tmp_path, rng):
    truth = random_volume((64, 64, 32, 1), "uint16", rng)
    fixture_write(tmp_path / "v", truth, chunk=(16, 16, 16))
    counts: dict[str, int] = {}
    reg = StoreRegistry().with_scheme(
        "slow", lambda url, **_: SlowCountingStore(StoreURL("file", "", str(tmp_path / "v")), counts)
    )
    return truth, counts, reg


def test_lru_coalesces_concurrent_requests(counted):
    truth, counts, reg = counted
    vol = cvl.Volume("slow://x/v", lru_bytes=10**8, parallel=8, stores=reg)
    results = [None] * 8

    def read(i):
        results[i] = vol[0:20, 0:20, 0:20]

    threads = [threading.Thread(target=read, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        np.testing.assert_array_equal(r, truth[0:20, 0:20, 0:20])
    chunk_counts = {k: v for k, v in counts.items() if k != "info"}
    assert len(chunk_counts) == 8 and set(chunk_counts.values()) == {1}, chunk_counts
    assert vol.lru.hits + vol.lru.misses + vol.lru.coalesced == 64 and vol.lru.misses == 8


def test_without_lru_every_read_fetches(counted):
    truth, counts, reg = counted
    vol = cvl.Volume("slow://x/v", stores=reg)
    vol[0:16, 0:16, 0:16]
    vol[0:16, 0:16, 0:16]
    assert counts["0-16_0-16_0-16"] == 2


def test_lru_byte_bound_holds_under_concurrent_readers(counted):
    truth, counts, reg = counted
    limit = 5 * 16 * 16 * 16 * 2  # five chunks
    vol = cvl.Volume("slow://x/v", lru_bytes=limit, parallel=4, stores=reg)
    peak = 0
    stop = threading.Event()

    def watch():
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, vol.lru.nbytes)

    w = threading.Thread(target=watch)
    w.start()
    rng = np.random.default_rng(0)
    threads = []
    for _ in range(4):
        x, y, z = rng.integers(0, 40, 3)
        t = threading.Thread(target=lambda x=x, y=y, z=z: vol[x : x + 24, y : y + 24, 0 : z % 30 + 2])
        threads.append(t)
        t.start()
    for t in threads:
        t.join()
    np.testing.assert_array_equal(vol[...], truth)
    stop.set()
    w.join()
    assert 0 < peak <= limit and vol.lru.nbytes <= limit


def test_lru_errors_reach_every_waiter():
    lru = ChunkLRU(1000)
    started = threading.Event()

    def load():
        started.set()
        time.sleep(0.05)
        raise cvl.StoreError("boom")

    errors = []

    def ask():
        try:
            lru.fetch("k", load)
        except cvl.StoreError as e:
            errors.append(e)

    ts_ = [threading.Thread(target=ask) for _ in range(4)]
    for t in ts_:
        t.start()
    for t in ts_:
        t.join()
    assert len(errors) == 4 and len(lru) == 0


def test_disk_cache_read_through_and_offline(tmp_path, counted):
    truth, counts, reg = counted
    cache_dir = tmp_path / "cache"
    vol = cvl.Volume("slow://x/v", cache=str(cache_dir), stores=reg)
    np.testing.assert_array_equal(vol[...], truth)
    first = dict(counts)
    vol2 = cvl.Volume("slow://x/v", cache=str(cache_dir), stores=reg)
    np.testing.assert_array_equal(vol2[...], truth)
    assert {k: v for k, v in counts.items() if k != "info"} == {k: v for k, v in first.items() if k != "info"}
    assert vol2.cache.path.startswith(str(cache_dir)) and os.path.isfile(os.path.join(vol2.cache.path, "info"))
    assert vol2.cache.size >= truth.nbytes
    vol2.cache.clear(cvl.Bbox((0, 0, 0), (16, 16, 16)))
    vol2[0:16, 0:16, 0:16]
    assert counts["0-16_0-16_0-16"] == 2
    vol2.cache.clear()
    assert vol2.cache.size == 0


def test_disk_cache_eviction_keeps_limit(tmp_path, counted):
    truth, _, reg = counted
    limit = 10 * 16 * 16 * 16 * 2
    vol = cvl.Volume("slow://x/v", cache=str(tmp_path / "c"), cache_bytes=limit, parallel=4, stores=reg)
    for z in range(0, 32, 8):
        np.testing.assert_array_equal(vol[:, :, z : z + 8], truth[:, :, z : z + 8])
    assert DiskCache(str(tmp_path / "c")).size <= limit


def test_killed_writer_leaves_no_half_chunk(tmp_path, counted):
    """A process killed mid-write leaves only a hidden temp file, which is ignored and swept."""
    truth, _, reg = counted
    cache_dir = tmp_path / "c"
    vol = cvl.Volume("slow://x/v", cache=str(cache_dir), stores=reg)
    vol[0:16, 0:16, 0:16]
    target = os.path.join(vol.chunk_store().dir, "16-32_0-16_0-16")
    script = f"""
import os, sys
sys.path.insert(0, {os.path.dirname(cvl.__path__[0])!r})
from cloudvolume_lite.stores import local
real_replace = os.replace
def die(*a):
    os._exit(9)   # the process dies between writing the temp file and renaming it
os.replace = die
local.atomic_write({target!r}, b"half" * 10)
"""
    rc = subprocess.run([sys.executable, "-c", script]).returncode
    assert rc == 9
    leftovers = [f for f in os.listdir(os.path.dirname(target)) if ".tmp-" in f]
    assert leftovers and not os.path.exists(target)
    np.testing.assert_array_equal(vol[16:32, 0:16, 0:16], truth[16:32, 0:16, 0:16])
    DiskCache(str(cache_dir), max_bytes=10**9).size  # a scan sweeps the temp files
    assert not [f for f in os.listdir(os.path.dirname(target)) if ".tmp-" in f]


def test_cache_never_writes_outside_its_dir(tmp_path):
    cache = DiskCache(str(tmp_path / "c"))
    for url in [StoreURL("gs", "b", "../../../../etc"), StoreURL("file", "", "/../../etc/x")]:
        assert cache.dir_for(url).startswith(str(tmp_path / "c"))
    with pytest.raises(cvl.RequestError):
        cache.dir_for(StoreURL("gs", "..", ".."))
