"""read_regions: batch shapes, order, seeds, drop_last, exact contents, bounded prefetch."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import cloudvolume_lite as cvl
from cloudvolume_lite.stores import StoreRegistry, StoreURL
from cloudvolume_lite.stores.local import LocalStore
from golden import golden_copy
from oracles import random_volume, fixture_write


@pytest.fixture
def vol_truth(tmp_path):
    url, truth = golden_copy("ts_raw_uint8", tmp_path / "v")  # TensorStore-written, 30x20x12x2 at (10, -4, 0)
    return cvl.Volume(url), truth


def corners(vol, n, size, rng):
    return np.stack([rng.integers(lo, hi - s + 1, n) for lo, hi, s in zip(vol.bounds.minpt, vol.bounds.maxpt, size)], 1)


def crop(truth, vol, lo, size):
    l = np.asarray(lo) - np.asarray(vol.voxel_offset)
    return truth[l[0] : l[0] + size[0], l[1] : l[1] + size[1], l[2] : l[2] + size[2]]


def test_batches_in_order_exact(vol_truth, rng):
    vol, truth = vol_truth
    size = (12, 9, 5)
    locs = corners(vol, 10, size, rng)
    loader = vol.read_regions(locs, size, batch_size=4)
    assert len(loader) == 3
    batches = list(loader)
    assert [b.shape for b in batches] == [(4, 12, 9, 5, 2), (4, 12, 9, 5, 2), (2, 12, 9, 5, 2)]
    flat = np.concatenate(batches)
    for i, lo in enumerate(locs):
        np.testing.assert_array_equal(flat[i], crop(truth, vol, lo, size))


def test_drop_last_and_iterables(vol_truth, rng):
    vol, truth = vol_truth
    locs = [tuple(int(v) for v in p) for p in corners(vol, 10, (4, 4, 4), rng)]
    loader = vol.read_regions(iter(locs), (4, 4, 4), batch_size=4, drop_last=True)
    assert len(loader) == 2 and len(list(loader)) == 2


def test_shuffle_is_deterministic_for_a_seed(vol_truth, rng):
    vol, truth = vol_truth
    size = (4, 4, 4)
    locs = np.unique(corners(vol, 40, size, rng), axis=0)[:16]  # distinct, so each region names its location
    assert len(locs) == 16

    def order(seed):
        out = []
        for b in vol.read_regions(locs, size, batch_size=3, shuffle=True, seed=seed):
            for region in b:
                out.append(next(i for i, lo in enumerate(locs) if np.array_equal(crop(truth, vol, lo, size), region)))
        return out

    a, b, c = order(7), order(7), order(8)
    assert a == b and sorted(a) == list(range(16)) and a != c and a != list(range(16))


class SlowStore(LocalStore):
    def __init__(self, url, state):
        super().__init__(url)
        self.state = state

    def get(self, key, byte_range=None):
        with self.state["lock"]:
            self.state["gets"] += 1
        time.sleep(0.003)
        return super().get(key, byte_range)

    def _with_url(self, url):
        return SlowStore(url, self.state)


def test_prefetch_is_bounded_and_chunks_fetched_once(tmp_path, rng):
    truth = random_volume((64, 64, 16, 1), "uint8", rng)
    fixture_write(tmp_path / "v", truth, chunk=(16, 16, 16))
    state = {"lock": threading.Lock(), "gets": 0}
    reg = StoreRegistry().with_scheme("slow", lambda url, **_: SlowStore(StoreURL("file", "", str(tmp_path / "v")), state))
    vol = cvl.Volume("slow://x/v", stores=reg)
    locs = np.array([[x, y, 0] for x in range(0, 48, 4) for y in range(0, 48, 4)])  # 144 overlapping regions
    loader = vol.read_regions(locs, (16, 16, 16), batch_size=4, num_workers=2, prefetch_factor=2)
    consumed = 0
    for batch in loader:
        consumed += len(batch)
        time.sleep(0.002)  # a slow consumer: the loader must not run ahead unboundedly
    assert consumed == 144
    assert 1 <= loader.in_flight_peak <= 4
    assert state["gets"] - 1 <= 16  # 16 chunks in all (plus info): each fetched once via the LRU


def test_bad_arguments(vol_truth):
    vol, _ = vol_truth
    with pytest.raises(cvl.RequestError):
        vol.read_regions(np.zeros((3, 2), int), (4, 4, 4))
    with pytest.raises(cvl.RequestError):
        vol.read_regions(np.zeros((3, 3), int), (4, 0, 4))
    with pytest.raises(cvl.OutOfBoundsError):
        list(vol.read_regions([[0, 0, 0]], (4, 4, 4)))
