"""Volumes written by TensorStore and CloudVolume read back bit-exactly (within JPEG error for jpeg)."""

from __future__ import annotations

import numpy as np
import pytest

import cloudvolume_lite as cvl
from oracles import cv_write, random_volume, ts_write

SPEC_DTYPES = ["uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "float32"]


def random_cutouts(bounds: cvl.Bbox, rng: np.random.Generator, n: int):
    """Random non-empty boxes inside ``bounds`` with random steps."""
    for _ in range(n):
        lo, hi, st = [], [], []
        for a, b in zip(bounds.minpt, bounds.maxpt):
            x0 = int(rng.integers(a, b))
            x1 = int(rng.integers(x0 + 1, b + 1))
            lo.append(x0)
            hi.append(x1)
            st.append(int(rng.choice([1, 1, 1, 2, 3])))
        yield lo, hi, st


def check_cutouts(vol: cvl.Volume, truth: np.ndarray, rng: np.random.Generator, n: int = 12) -> None:
    off = vol.voxel_offset
    full = vol[...]
    assert full.shape == truth.shape and full.dtype == truth.dtype
    np.testing.assert_array_equal(full, truth)
    for lo, hi, st in random_cutouts(vol.bounds, rng, n):
        got = vol[lo[0] : hi[0] : st[0], lo[1] : hi[1] : st[1], lo[2] : hi[2] : st[2]]
        want = truth[
            lo[0] - off[0] : hi[0] - off[0] : st[0],
            lo[1] - off[1] : hi[1] - off[1] : st[1],
            lo[2] - off[2] : hi[2] - off[2] : st[2],
        ]
        np.testing.assert_array_equal(got, want, err_msg=f"cutout {lo}:{hi}:{st}")


@pytest.mark.parametrize("dtype", SPEC_DTYPES)
@pytest.mark.parametrize("channels", [1, 3])
def test_tensorstore_raw(tmp_path, rng, dtype, channels):
    truth = random_volume((37, 29, 11, channels), dtype, rng)
    url = ts_write(tmp_path / "v", truth, offset=(5, -7, -3), chunk=(16, 8, 4))
    check_cutouts(cvl.Volume(url), truth, rng)


@pytest.mark.parametrize("dtype", ["uint32", "uint64"])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("block", [(8, 8, 8), (4, 6, 2)])
def test_tensorstore_cseg(tmp_path, rng, dtype, channels, block):
    truth = random_volume((45, 33, 19, channels), dtype, rng, labels=300)
    url = ts_write(
        tmp_path / "v", truth, offset=(-9, 4, 2), chunk=(16, 16, 8), encoding="compressed_segmentation", block=block
    )
    check_cutouts(cvl.Volume(url), truth, rng)


@pytest.mark.parametrize("dtype,channels", [("uint8", 1), ("uint8", 2), ("uint8", 3), ("uint8", 4), ("uint16", 1), ("uint16", 3)])
def test_tensorstore_png(tmp_path, rng, dtype, channels):
    truth = random_volume((33, 20, 9, channels), dtype, rng)
    url = ts_write(tmp_path / "v", truth, offset=(1, 2, -3), chunk=(16, 16, 4), encoding="png")
    check_cutouts(cvl.Volume(url), truth, rng)


@pytest.mark.parametrize("channels", [1, 3])
def test_tensorstore_jpeg(tmp_path, rng, channels):
    # smooth content, as JPEG is for; compare with TensorStore's own decode and with the truth
    import tensorstore as ts

    x, y, z = np.meshgrid(np.arange(40), np.arange(30), np.arange(10), indexing="ij")
    base = (128 + 60 * np.sin(x / 5.0) * np.cos(y / 7.0) + 3 * z).astype(np.uint8)
    truth = np.stack([base + 10 * c for c in range(channels)], axis=-1).astype(np.uint8)
    url = ts_write(tmp_path / "v", truth, offset=(3, -2, 0), chunk=(16, 16, 4), encoding="jpeg", jpeg_quality=95)
    got = cvl.Volume(url)[...]
    assert got.shape == truth.shape
    assert np.abs(got.astype(int) - truth.astype(int)).mean() < 3
    theirs = ts.open({"driver": "neuroglancer_precomputed", "kvstore": url}).result()
    theirs = np.asarray(theirs.read().result())
    assert np.abs(got.astype(int) - theirs.astype(int)).max() <= 2  # decoder rounding only


@pytest.mark.parametrize(
    "encoding,dtype,channels,compress",
    [
        ("raw", "uint8", 1, "gzip"),
        ("raw", "uint16", 2, None),
        ("raw", "float32", 1, "gzip"),
        ("raw", "int64", 1, "br"),
        ("raw", "float64", 1, None),
        ("compressed_segmentation", "uint64", 1, "gzip"),
        ("compressed_segmentation", "uint32", 1, None),
        ("png", "uint8", 1, None),
        ("png", "uint8", 3, None),
    ],
)
def test_cloudvolume_written(tmp_path, rng, encoding, dtype, channels, compress):
    labels = 200 if encoding == "compressed_segmentation" else None
    truth = random_volume((41, 27, 13, channels), dtype, rng, labels=labels)
    url = cv_write(tmp_path / "v", truth, offset=(-4, 6, 1), chunk=(16, 16, 8), encoding=encoding, compress=compress)
    check_cutouts(cvl.Volume(url), truth, rng)


def test_cloudvolume_jpeg(tmp_path, rng):
    x, y, z = np.meshgrid(np.arange(40), np.arange(30), np.arange(10), indexing="ij")
    truth = (128 + 60 * np.sin(x / 5.0) * np.cos(y / 7.0) + 3 * z).astype(np.uint8)[..., None]
    url = cv_write(tmp_path / "v", truth, chunk=(16, 16, 4), encoding="jpeg", compress=None)
    got = cvl.Volume(url)[...]
    assert np.abs(got.astype(int) - truth.astype(int)).mean() < 3


def test_reads_match_cloudvolume_reads(tmp_path, rng):
    """Same answer as CloudVolume itself on a CloudVolume-written volume, cutout by cutout."""
    from cloudvolume import CloudVolume

    truth = random_volume((50, 40, 20, 1), "uint64", rng, labels=50)
    url = cv_write(tmp_path / "v", truth, offset=(3, -5, 2), chunk=(16, 16, 8), encoding="compressed_segmentation")
    ours, theirs = cvl.Volume(url), CloudVolume(url, progress=False)
    for lo, hi, _ in random_cutouts(ours.bounds, rng, 8):
        sl = tuple(slice(a, b) for a, b in zip(lo, hi))
        np.testing.assert_array_equal(ours[sl], np.asarray(theirs[sl]))
