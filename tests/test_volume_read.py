"""Volume metadata, key semantics, URL forms and the bounded-memory read."""

from __future__ import annotations

import json
import shutil
import threading

import numpy as np
import pytest

import cloudvolume_lite as cvl
from cloudvolume_lite.stores import Store, StoreRegistry
from cloudvolume_lite.stores.local import LocalStore
from golden import golden_copy
from oracles import random_volume, fixture_write


@pytest.fixture
def two_mips(tmp_path, rng):
    t0 = random_volume((40, 30, 12, 2), "uint8", rng)
    fixture_write(tmp_path / "v", t0, offset=(-8, 4, 2), chunk=(16, 16, 4))
    t1 = random_volume((20, 15, 12, 2), "uint8", rng)
    fixture_write(tmp_path / "w", t1, offset=(-4, 2, 2), chunk=(8, 8, 4), resolution=(8, 8, 40))
    info = json.loads((tmp_path / "v" / "info").read_text())
    info1 = json.loads((tmp_path / "w" / "info").read_text())
    info["scales"].append(info1["scales"][0])
    (tmp_path / "v" / "info").write_text(json.dumps(info))
    shutil.copytree(tmp_path / "w" / "8_8_40", tmp_path / "v" / "8_8_40")
    return tmp_path / "v", t0, t1


def test_metadata(two_mips):
    path, t0, t1 = two_mips
    vol = cvl.Volume(str(path))
    assert vol.shape == (40, 30, 12, 2) and vol.dtype == np.uint8 and vol.num_mips == 2
    assert vol.bounds == cvl.Bbox((-8, 4, 2), (32, 34, 14))
    assert vol.voxel_offset == (-8, 4, 2) and vol.chunk_size == (16, 16, 4)
    assert vol.resolution == (4, 4, 40) and vol.encoding == "raw" and vol.layer_type == "image"
    assert vol.num_channels == 2
    vol.mip = [8, 8, 40]
    assert vol.mip == 1 and vol.shape == (20, 15, 12, 2)
    np.testing.assert_array_equal(vol[...], t1)
    np.testing.assert_array_equal(vol.download(cvl.Bbox((-8, 4, 2), (32, 34, 14)), mip=0), t0)
    assert isinstance(vol.info["scales"], list)


def test_key_forms(two_mips):
    path, t0, _ = two_mips
    vol = cvl.Volume(str(path))
    np.testing.assert_array_equal(vol[0, 10, 5], t0[8:9, 6:7, 3:4])  # ints keep their axis
    np.testing.assert_array_equal(vol[..., 1], t0[..., 1:2])
    np.testing.assert_array_equal(vol[-8:0, ..., ::2], t0[0:8, :, :, ::2])
    np.testing.assert_array_equal(vol[::5, ::7, ::3], t0[::5, ::7, ::3])
    np.testing.assert_array_equal(vol[cvl.Bbox((0, 10, 3), (9, 20, 9))], t0[8:17, 6:16, 1:7])
    np.testing.assert_array_equal(vol[np.int64(0) : np.int32(3), :, :], t0[8:11])
    assert vol[0:0, :, :].shape == (0, 30, 12, 2)
    got = vol[-8:32:13, 4:34:16, 2:14:5]  # strides that skip whole chunks
    np.testing.assert_array_equal(got, t0[::13, ::16, ::5])


@pytest.mark.parametrize("form", ["precomputed://file://{p}", "file://{p}", "{p}", "file://{p}/|neuroglancer-precomputed:"])
def test_url_forms(two_mips, form):
    path, t0, _ = two_mips
    np.testing.assert_array_equal(cvl.Volume(form.format(p=path))[...], t0)


def test_scale_key_with_dotdot(tmp_path):
    _, truth = golden_copy("ts_raw_uint8", tmp_path / "data")
    (tmp_path / "meta").mkdir()
    info = json.loads((tmp_path / "data" / "info").read_text())
    info["scales"][0]["key"] = "../data/4_4_40"
    (tmp_path / "meta" / "info").write_text(json.dumps(info))
    np.testing.assert_array_equal(cvl.Volume(str(tmp_path / "meta"))[...], truth)


def test_extra_chunk_sizes_use_the_first(tmp_path):
    _, truth = golden_copy("ts_raw_uint8", tmp_path / "v")
    info = json.loads((tmp_path / "v" / "info").read_text())
    info["scales"][0]["chunk_sizes"].append([32, 32, 32])
    (tmp_path / "v" / "info").write_text(json.dumps(info))
    np.testing.assert_array_equal(cvl.Volume(str(tmp_path / "v"))[...], truth)


def test_mem_store_shared_between_volumes(tmp_path):
    _, truth = golden_copy("ts_raw_uint8", tmp_path / "v")
    mem = StoreRegistry().open("mem://test_mem_shared/vol")
    src = LocalStore(cvl.stores.parse_url(str(tmp_path / "v")))
    for key in src.list():
        mem.put(key, src.get(key))
    np.testing.assert_array_equal(cvl.Volume("mem://test_mem_shared/vol")[...], truth)


class CountingStore(LocalStore):
    """A real local store that records how many gets are in flight at once."""

    def __init__(self, url):
        super().__init__(url)
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0

    def get(self, key, byte_range=None):
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        try:
            import time

            time.sleep(0.002)
            return super().get(key, byte_range)
        finally:
            with self.lock:
                self.now -= 1



def test_in_flight_chunks_are_bounded(tmp_path, rng):
    """256 chunks through a plug-in scheme: never more than ``parallel`` fetches in flight."""
    truth = random_volume((64, 64, 32, 1), "uint8", rng)
    fixture_write(tmp_path / "v", truth, chunk=(8, 8, 8))
    root = CountingStore(cvl.stores.StoreURL("file", "", str(tmp_path / "v")))
    scale_store = CountingStore(cvl.stores.StoreURL("file", "", str(tmp_path / "v" / "4_4_40")))
    root._with_url = lambda url: scale_store  # type: ignore[method-assign]
    reg = StoreRegistry().with_scheme("count", lambda url, **_: root)
    vol = cvl.Volume("count://x/v", parallel=3, stores=reg)
    np.testing.assert_array_equal(vol[...], truth)
    assert 1 < scale_store.peak <= 3


def test_progress_bars_only_when_asked(tmp_path, rng, capsys):
    truth = random_volume((64, 64, 16, 1), "uint8", rng)
    fixture_write(tmp_path / "v", truth, chunk=(8, 8, 8))
    cvl.Volume(str(tmp_path / "v"))[...]
    assert capsys.readouterr().err == ""
    vol = cvl.Volume(str(tmp_path / "v"), progress=True)
    np.testing.assert_array_equal(vol[...], truth)
    vol[0:8, 0:8, 0:8] = 1
    err = capsys.readouterr().err
    assert "cvl read" in err and "/128" in err and "cvl write" in err
    cvl.Volume(str(tmp_path / "v"), progress=None)[...]  # None: bars on a terminal only (pytest's stderr is not one)
    assert capsys.readouterr().err == ""
