"""Golden volumes written by TensorStore and CloudVolume (committed under tests/golden/) read
back bit-exactly, with no oracle installed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import cloudvolume_lite as cvl
from golden import HERE, NAMES, golden_copy, truth


@pytest.mark.parametrize("name", NAMES)
def test_golden_reads_bit_exactly(name: str) -> None:
    want = truth(name)
    vol = cvl.Volume(str(HERE / name))  # read in place: reading writes nothing
    assert vol.shape == want.shape and vol.dtype == want.dtype
    np.testing.assert_array_equal(vol[...], want)
    lo = vol.voxel_offset
    np.testing.assert_array_equal(vol[lo[0] + 3 : lo[0] + 11, lo[1] + 1 : lo[1] + 9, lo[2] + 2 : lo[2] + 7],
                                  want[3:11, 1:9, 2:7])  # a cutout across chunk boundaries


@pytest.mark.parametrize("name", NAMES)
def test_golden_points(name: str) -> None:
    want = truth(name)
    vol = cvl.Volume(str(HERE / name))
    rng = np.random.default_rng(0)
    idx = np.stack([rng.integers(0, s, 40) for s in want.shape[:3]], 1)
    got = vol.scattered_points(idx + np.asarray(vol.voxel_offset))
    expect = want[idx[:, 0], idx[:, 1], idx[:, 2]]
    np.testing.assert_array_equal(np.asarray(got).reshape(expect.shape), expect)


def test_golden_kinds_are_what_they_say() -> None:
    """The files are what the README says they are (so a regenerated set is checked too)."""
    def scale0(name: str) -> dict:
        return json.loads((HERE / name / "info").read_text())["scales"][0]

    assert scale0("ts_raw_uint8")["encoding"] == "raw"
    assert scale0("ts_cseg_uint64")["encoding"] == "compressed_segmentation"
    sharded = scale0("ts_sharded_cseg")
    assert sharded["sharding"]["hash"] == "murmurhash3_x86_128" and sharded["sharding"]["data_encoding"] == "gzip"
    assert list((HERE / "ts_sharded_cseg" / sharded["key"]).glob("*.shard"))
    gz = list((HERE / "cv_gzip_uint8" / scale0("cv_gzip_uint8")["key"]).iterdir())
    assert gz and all(p.suffix == ".gz" for p in gz)


def test_golden_set_is_small() -> None:
    total = sum(p.stat().st_size for p in HERE.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    assert total < 200_000


def test_golden_copy_is_independent(tmp_path: Path) -> None:
    url, want = golden_copy("ts_raw_uint8", tmp_path / "v")
    vol = cvl.Volume(url)
    vol[10:26, -4:12, 0:8] = 0
    assert not cvl.Volume(url)[10:26, -4:12, 0:8].any()
    np.testing.assert_array_equal(cvl.Volume(str(HERE / "ts_raw_uint8"))[...], want)
