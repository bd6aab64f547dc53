"""Raw chunks on local disk are read only as far as a request needs in z (one contiguous slab
per channel): the values match numpy, every damaged length is still a DecodeError, and stores
whose ranged reads are not cheap (caches, sharding) keep reading whole chunks."""

from __future__ import annotations

import gzip
import os

import numpy as np
import pytest

import cloudvolume_lite as cvl
from cloudvolume_lite.codecs import raw


@pytest.fixture(params=["c", "python"], autouse=True)
def direct_path(request, monkeypatch) -> str:
    """Every test runs through the C paster and through the Python slab reads."""
    if request.param == "c":
        if raw.paste_from_file is None:
            pytest.skip("the _rawio extension is not built here (no C compiler at install)")
    else:
        monkeypatch.setattr(raw, "paste_from_file", None)
    return request.param


def _bytes_read() -> int:
    """Bytes this process has read through read/pread system calls so far (Linux)."""
    with open("/proc/self/io") as f:
        return int(next(line for line in f if line.startswith("rchar:")).split()[1])


def _make(tmp_path, channels: int = 1, dtype: str = "uint16"):
    rng = np.random.default_rng(5)
    data = rng.integers(0, 60000, (40, 36, 50, channels)).astype(dtype)
    url = f"file://{tmp_path}/v"
    cvl.Volume.from_numpy(data, url, chunk_size=(16, 16, 16), voxel_offset=(3, 4, 5), compression=None)
    return data, url


@pytest.mark.parametrize("channels", [1, 3])
def test_slabs_read_the_same_values(tmp_path, channels) -> None:
    data, url = _make(tmp_path, channels)
    vol = cvl.Volume(url)
    rng = np.random.default_rng(1)
    for _ in range(30):
        lo = rng.integers(0, (40, 36, 50))
        hi = lo + rng.integers(1, 25, 3)
        hi = np.minimum(hi, (40, 36, 50))
        st = tuple(int(s) for s in rng.integers(1, 4, 3))
        sl = tuple(slice(int(l) + o, int(h) + o, s) for l, h, o, s in zip(lo, hi, (3, 4, 5), st))
        want = data[tuple(slice(int(l), int(h), s) for l, h, s in zip(lo, hi, st))]
        np.testing.assert_array_equal(vol[sl], want)
    np.testing.assert_array_equal(vol[3:43, 4:40, 5:6, 1:], data[:, :, :1, 1:])


def test_a_thin_read_reads_only_its_slab(tmp_path) -> None:
    data, url = _make(tmp_path)
    vol = cvl.Volume(url)
    vol[3:5, 4:6, 5:7]  # info read, threads started
    before = _bytes_read()
    np.testing.assert_array_equal(vol[3:43, 4:40, 12], data[:, :, 7:8])
    plane = 16 * 16 * 2
    # 3x3 chunks of 16^3 uint16: one plane of each (the Python path adds a 1-byte length check)
    assert _bytes_read() - before <= 9 * (plane + 1)


@pytest.mark.parametrize("damage", ["short", "long", "empty"])
def test_a_damaged_length_is_a_decode_error(tmp_path, damage) -> None:
    _, url = _make(tmp_path)
    path = tmp_path / "v" / cvl.Volume(url).info.scales[0].key / "19-35_20-36_21-37"
    raw = path.read_bytes()
    path.write_bytes({"short": raw[:-7], "long": raw + b"x", "empty": b""}[damage])
    vol = cvl.Volume(url)
    with pytest.raises(cvl.DecodeError, match="19-35_20-36_21-37"):
        vol[20:30, 21:30, 22:25]  # a few z-slices of that chunk
    with pytest.raises(cvl.DecodeError, match="19-35_20-36_21-37"):
        vol[19:35, 20:36, 21:37]  # the whole chunk


def test_gzip_siblings_and_missing_chunks(tmp_path) -> None:
    data, url = _make(tmp_path)
    key = cvl.Volume(url).info.scales[0].key
    path = tmp_path / "v" / key / "19-35_20-36_21-37"
    path.with_name(path.name + ".gz").write_bytes(gzip.compress(path.read_bytes()))
    path.unlink()
    np.testing.assert_array_equal(cvl.Volume(url)[20:30, 21:30, 22:25], data[17:27, 17:26, 17:20])
    (tmp_path / "v" / key / "3-19_4-20_5-21").unlink()
    with pytest.raises(cvl.ChunkNotFoundError, match="3-19_4-20_5-21"):
        cvl.Volume(url)[3:10, 4:10, 5:8]
    got = cvl.Volume(url, fill_missing=True)[3:10, 4:10, 5:8]
    assert not got.any()


def test_only_plain_local_stores_read_slabs(tmp_path) -> None:
    """Behind the LRU a thin read fetches whole chunks (so that the cache holds them), and a
    second read of another plane of the same chunks is served from it."""
    data, url = _make(tmp_path)
    assert cvl.Volume(url).chunk_store().cheap_ranges
    vol = cvl.Volume(url, lru_bytes=8 << 20)
    assert not vol.chunk_store().cheap_ranges
    np.testing.assert_array_equal(vol[3:43, 4:40, 12], data[:, :, 7:8])
    key = vol.info.scales[0].key
    for f in (tmp_path / "v" / key).iterdir():
        f.unlink()
    np.testing.assert_array_equal(vol[3:43, 4:40, 13], data[:, :, 8:9])
