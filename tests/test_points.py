"""scattered_points: partial decoding agrees with full reads, on volumes written by the peers."""

from __future__ import annotations

import os

import numpy as np
import pytest

import cloudvolume_lite as cvl
from golden import golden_copy
from oracles import cv_write, random_volume, fixture_write


def random_points(vol: cvl.Volume, rng, n: int) -> np.ndarray:
    return np.stack([rng.integers(lo, hi, n) for lo, hi in zip(vol.bounds.minpt, vol.bounds.maxpt)], axis=1)


def expected(truth: np.ndarray, vol: cvl.Volume, pts: np.ndarray) -> np.ndarray:
    local = pts - np.asarray(vol.voxel_offset)
    vals = truth[local[:, 0], local[:, 1], local[:, 2]]
    return vals[:, 0] if vals.shape[1] == 1 else vals


@pytest.mark.parametrize(
    "writer,encoding,dtype,channels",
    [
        ("ts", "compressed_segmentation", "uint64", 1),
        ("ts", "compressed_segmentation", "uint32", 3),
        ("cv", "compressed_segmentation", "uint64", 1),
        ("ts", "raw", "uint16", 2),
        ("cv", "raw", "float32", 1),
        ("ts", "png", "uint8", 1),
    ],
)
def test_points_match_truth_everywhere(tmp_path, rng, writer, encoding, dtype, channels):
    labels = 500 if encoding == "compressed_segmentation" else None
    truth = random_volume((45, 38, 21, channels), dtype, rng, labels=labels)
    if writer == "cv":
        pytest.importorskip("cloudvolume", reason="CloudVolume (an oracle, in the test extra) writes this case")
    write = fixture_write if writer == "ts" else cv_write
    url = write(tmp_path / "v", truth, offset=(-7, 3, 5), chunk=(16, 16, 8), encoding=encoding, block=(8, 4, 2))
    vol = cvl.Volume(url)
    # every voxel, which covers the clipped edge blocks of every edge chunk
    grid = np.stack(np.meshgrid(*(np.arange(lo, hi) for lo, hi in zip(vol.bounds.minpt, vol.bounds.maxpt)), indexing="ij"), -1)
    pts = grid.reshape(-1, 3)
    np.testing.assert_array_equal(vol.scattered_points(pts), expected(truth, vol, pts))
    few = random_points(vol, rng, 37)
    np.testing.assert_array_equal(vol.scattered_points(few), expected(truth, vol, few))


def test_duplicates_order_and_list_input(tmp_path, rng):
    truth = random_volume((30, 30, 10, 1), "uint64", rng, labels=100)
    vol = cvl.Volume(fixture_write(tmp_path / "v", truth, chunk=(8, 8, 8), encoding="compressed_segmentation"))
    pts = [[5, 5, 5], [29, 29, 9], [5, 5, 5], [0, 0, 0], [29, 29, 9]]
    got = vol.scattered_points(pts)
    np.testing.assert_array_equal(got, [truth[5, 5, 5, 0], truth[29, 29, 9, 0], truth[5, 5, 5, 0], truth[0, 0, 0, 0], truth[29, 29, 9, 0]])
    assert vol.scattered_points(np.zeros((0, 3), int)).shape == (0,)
    assert vol.scattered_points([1, 2, 3]).shape == (1,)


def test_out_of_bounds_points(tmp_path, rng):
    truth = random_volume((30, 30, 10, 1), "uint8", rng)
    url = fixture_write(tmp_path / "v", truth, chunk=(8, 8, 8))
    pts = np.array([[1, 1, 1], [30, 0, 0], [-1, 5, 5], [2, 2, 2]])
    with pytest.raises(cvl.OutOfBoundsError, match=r"2 of 4 points.*\[30, 0, 0\]"):
        cvl.Volume(url).scattered_points(pts)
    got = cvl.Volume(url, bounded=False).scattered_points(pts)
    np.testing.assert_array_equal(got, [truth[1, 1, 1, 0], 0, 0, truth[2, 2, 2, 0]])
    with pytest.raises(cvl.RequestError):
        cvl.Volume(url).scattered_points([[1.5, 2, 3]])
    with pytest.raises(cvl.RequestError):
        cvl.Volume(url).scattered_points(np.zeros((4, 2), int))


def test_missing_chunks_for_points(tmp_path, rng):
    truth = random_volume((16, 16, 8, 1), "uint8", rng)
    url = fixture_write(tmp_path / "v", truth, chunk=(8, 8, 8))
    os.remove(tmp_path / "v" / "4_4_40" / "0-8_0-8_0-8")
    pts = np.array([[1, 1, 1], [9, 9, 1]])
    with pytest.raises(cvl.ChunkNotFoundError, match="0-8_0-8_0-8"):
        cvl.Volume(url).scattered_points(pts)
    np.testing.assert_array_equal(cvl.Volume(url, fill_missing=True).scattered_points(pts), [0, truth[9, 9, 1, 0]])


def test_points_at_other_mip_and_through_lru(tmp_path, rng):
    url, truth = golden_copy("ts_cseg_uint64", tmp_path / "v")  # TensorStore-written cseg
    vol = cvl.Volume(url, lru_bytes=10**7)
    pts = random_points(vol, rng, 500)
    np.testing.assert_array_equal(vol.scattered_points(pts, mip=0), expected(truth, vol, pts))
    np.testing.assert_array_equal(vol.scattered_points(pts), expected(truth, vol, pts))
    assert vol.lru.hits > 0


def test_raw_points_read_only_their_bytes_and_catch_truncation(tmp_path, rng):
    truth = random_volume((64, 64, 32, 2), "uint32", rng)
    url = fixture_write(tmp_path / "v", truth, chunk=(32, 32, 32))
    vol = cvl.Volume(url)
    pts = np.array([[1, 2, 3], [40, 50, 31], [63, 0, 0]])
    np.testing.assert_array_equal(vol.scattered_points(pts), truth[pts[:, 0], pts[:, 1], pts[:, 2]])
    path = tmp_path / "v" / "4_4_40" / "32-64_32-64_0-32"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(cvl.DecodeError, match="32-64_32-64_0-32"):
        vol.scattered_points(pts)
