"""scattered_points at scale: grouping points by chunk (the C counting sort and the numpy sort)
against a brute-force oracle, and whole-volume reads of many points on every path (C and
numpy, ranged and whole raw reads, sharded, clipped edge chunks, odd chunk sizes, points
outside the bounds, missing chunks), always checked against the truth."""

from __future__ import annotations

import re
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from oracles import fixture_write, random_volume

import cloudvolume_lite as cvl
from cloudvolume_lite import points as P
from cloudvolume_lite.codecs import _cseg_api

SHARDING = dict(preshift_bits=1, hash="identity", minishard_bits=1, shard_bits=2,
                minishard_index_encoding="gzip", data_encoding="gzip")


def fake_scale(size, chunk, offset=(0, 0, 0)) -> SimpleNamespace:
    """What grouping reads of a Scale: no volume behind it, so grids can be huge."""
    grid = tuple(-(-s // c) for s, c in zip(size, chunk))
    return SimpleNamespace(size=tuple(size), chunk_size=tuple(chunk), voxel_offset=tuple(offset), grid_size=grid)


def brute_groups(pts: np.ndarray, scale) -> dict[int, tuple[list[int], list[int]]]:
    """chunk index -> (point indices, chunk-local offsets), point by point in Python."""
    out: dict[int, tuple[list[int], list[int]]] = {}
    (gx, gy, _), (cx, cy, _) = scale.grid_size, scale.chunk_size
    for i, p in enumerate(pts.tolist()):
        r = [v - o for v, o in zip(p, scale.voxel_offset)]
        if any(v < 0 or v >= s for v, s in zip(r, scale.size)):
            continue
        q = [v // c for v, c in zip(r, scale.chunk_size)]
        m = [v % c for v, c in zip(r, scale.chunk_size)]
        ids, offs = out.setdefault(q[0] + gx * (q[1] + gy * q[2]), ([], []))
        ids.append(i)
        offs.append(m[0] + cx * (m[1] + cy * m[2]))
    return out


def as_dict(groups: P.Groups) -> dict[int, tuple[list[int], list[int]]]:
    out = {}
    for g, cid in enumerate(groups.ids.tolist()):
        sel, offs = groups.members(g)
        out[cid] = (sel.tolist(), offs.tolist())
    return out


def some_points(rng, scale, n: int, outside: bool) -> np.ndarray:
    lo = np.asarray(scale.voxel_offset)
    pts = lo + np.stack([rng.integers(0, s, n) for s in scale.size], axis=1)
    if outside:  # a few below, above, and far away (overflow-prone) on each axis
        k = max(1, n // 10)
        bad = pts[:k].copy()
        bad[:, rng.integers(0, 3)] = rng.choice([-1, -(2**62), 2**62, 10**6], size=k) + lo[0]
        pts[rng.choice(n, k, replace=False)] = bad
    return pts


@pytest.mark.parametrize("with_c", [True, False])
@pytest.mark.parametrize(
    "size,chunk,offset",
    [((100, 70, 33), (16, 16, 8), (-5, 3, 1000)),  # powers of two, clipped edge chunks
     ((50, 41, 29), (10, 12, 7), (0, 0, 0)),  # odd chunk sides: division, not shifts
     ((2000, 1000, 3), (4, 4, 1), (7, 7, 7))],  # 375,000 chunks: 32-bit chunk indices
)
@pytest.mark.parametrize("outside", [False, True])
def test_grouping_matches_brute_force(monkeypatch, rng, size, chunk, offset, with_c, outside):
    if with_c and not _cseg_api.available():
        pytest.skip("the C extension is not built")
    if not with_c:
        monkeypatch.setenv(_cseg_api.DISABLE_ENV, "1")
    scale = fake_scale(size, chunk, offset)
    pts = some_points(rng, scale, 3000, outside)
    pts[5:9] = pts[4]  # duplicates
    groups, inside = P.group(pts, scale)
    assert inside == (not outside)
    assert as_dict(groups) == brute_groups(pts, scale)
    assert np.all(np.diff(groups.ids) > 0) and groups.splits[-1] == len(groups.order)


def test_grouping_paths_agree_on_big_grids(monkeypatch, rng):
    """More chunks than points and than the count limit: numpy finds the splits by sorting."""
    scale = fake_scale((4096, 4096, 64), (2, 2, 2))  # 67M chunks
    pts = some_points(rng, scale, 5000, outside=True)
    monkeypatch.setattr(P, "BINCOUNT_LIMIT", 1000)
    groups, _ = P.group(pts, scale)
    assert as_dict(groups) == brute_groups(pts, scale)
    for none in (pts[:0], pts[:3] - 10**7):  # no points, and none inside
        groups, inside = P.group(none, scale)
        assert len(groups) == 0 and len(groups.order) == 0 and inside == (len(none) == 0)


def test_unpack_inverts_offsets(rng):
    for chunk in ((64, 64, 64), (10, 12, 7), (1, 5, 3)):
        xyz = np.stack([rng.integers(0, c, 500) for c in chunk], axis=1)
        offsets = (xyz[:, 0] + chunk[0] * (xyz[:, 1] + chunk[1] * xyz[:, 2])).astype(np.uint32)
        np.testing.assert_array_equal(P.unpack(offsets, chunk), xyz)


def test_c_grouping_refuses_bad_buffers():
    if not _cseg_api.available():
        pytest.skip("the C extension is not built")
    pts = np.zeros((4, 3), np.int64)
    kw = dict(voxel_offset=(0, 0, 0), size=(8, 8, 8), chunk_size=(4, 4, 4), grid_size=(2, 2, 2),
              order=np.empty(4, np.int64), offsets=np.empty(4, np.uint32))
    with pytest.raises(ValueError):
        _cseg_api.group_points(pts=pts, counts=np.empty(3, np.int64), **kw)  # needs 9 counts
    with pytest.raises(ValueError):
        _cseg_api.group_points(pts=pts.astype(np.int32), counts=np.empty(9, np.int64), **kw)
    with pytest.raises(ValueError):
        _cseg_api.group_points(pts=pts, counts=np.empty(9, np.int64), **{**kw, "grid_size": (3, 2, 2)})


def truth_at(truth: np.ndarray, vol: cvl.Volume, pts: np.ndarray) -> np.ndarray:
    local = pts - np.asarray(vol.voxel_offset)
    inside = np.all((local >= 0) & (local < truth.shape[:3]), axis=1)
    want = np.zeros((len(pts), truth.shape[3]), truth.dtype)
    li = local[inside]
    want[inside] = truth[li[:, 0], li[:, 1], li[:, 2]]
    return want[:, 0] if truth.shape[3] == 1 else want


VOLUMES = {  # name -> (dtype, channels, encoding, chunk, sharding)
    "raw uint64": ("uint64", 1, "raw", (16, 16, 8), None),
    "raw uint16 2ch odd chunks": ("uint16", 2, "raw", (10, 12, 7), None),
    "cseg uint64": ("uint64", 1, "compressed_segmentation", (16, 16, 8), None),
    "cseg uint32 3ch": ("uint32", 3, "compressed_segmentation", (16, 8, 8), None),
    "raw sharded": ("uint64", 1, "raw", (16, 16, 8), SHARDING),
    "cseg sharded": ("uint64", 1, "compressed_segmentation", (16, 16, 8), SHARDING),
    "png": ("uint8", 1, "png", (16, 16, 8), None),  # no point decoder: decoded whole
}


@pytest.fixture(scope="module")
def volumes(tmp_path_factory):
    rng = np.random.default_rng(7)
    out = {}
    for name, (dtype, nc, enc, chunk, sharding) in VOLUMES.items():
        labels = 300 if enc == "compressed_segmentation" else None
        truth = random_volume((45, 38, 21, nc), dtype, rng, labels=labels)
        path = tmp_path_factory.mktemp("pts") / "v"
        url = fixture_write(path, truth, offset=(-7, 3, 5), chunk=chunk, encoding=enc, block=(4, 4, 2),
                            sharding=sharding)
        out[name] = (url, truth)
    return out


@pytest.mark.parametrize("name", list(VOLUMES))
@pytest.mark.parametrize("with_c", [True, False])
@pytest.mark.parametrize("ranged_bytes", [0, 1 << 40])  # every raw chunk read voxel by voxel / whole
def test_many_points_match_truth(volumes, monkeypatch, rng, name, with_c, ranged_bytes):
    if with_c and not _cseg_api.available():
        pytest.skip("the C extension is not built")
    if not with_c:
        monkeypatch.setenv(_cseg_api.DISABLE_ENV, "1")
    monkeypatch.setattr(P, "RANGED_BYTES", ranged_bytes)
    monkeypatch.setattr(P, "FILE_RANGED_BYTES", ranged_bytes)  # with_c: from the files; else the store's ranges
    url, truth = volumes[name]
    vol = cvl.Volume(url, bounded=False)
    lo, hi = np.asarray(vol.bounds.minpt), np.asarray(vol.bounds.maxpt)
    pts = np.stack([rng.integers(a - 3, b + 3, 20_000) for a, b in zip(lo, hi)], axis=1)  # some outside
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the numpy cseg decoder warns that it is the fallback
        got = vol.scattered_points(pts)
        np.testing.assert_array_equal(got, truth_at(truth, vol, pts))
        inside = pts[np.all((pts >= lo) & (pts < hi), axis=1)]
        np.testing.assert_array_equal(cvl.Volume(url).scattered_points(inside), truth_at(truth, vol, inside))


def test_points_as_int32_and_strided_input(volumes):
    url, truth = volumes["cseg uint64"]
    vol = cvl.Volume(url)
    grid = np.stack(np.meshgrid(*(np.arange(a, b) for a, b in zip(vol.bounds.minpt, vol.bounds.maxpt)),
                                indexing="ij"), -1).reshape(-1, 3)
    wide = np.zeros((len(grid), 6), np.int32)
    wide[:, ::2] = grid  # a strided view, not C-contiguous
    np.testing.assert_array_equal(vol.scattered_points(wide[:, ::2]), truth_at(truth, vol, grid))


def test_many_points_in_a_missing_chunk(tmp_path, rng):
    truth = random_volume((32, 32, 16, 1), "uint64", rng, labels=50)
    url = fixture_write(tmp_path / "v", truth, chunk=(16, 16, 16), encoding="compressed_segmentation")
    (tmp_path / "v" / "4_4_40" / "16-32_0-16_0-16").unlink()
    pts = np.stack([rng.integers(0, s, 5000) for s in (32, 32, 16)], axis=1)
    with pytest.raises(cvl.ChunkNotFoundError, match="16-32_0-16_0-16"):
        cvl.Volume(url).scattered_points(pts)
    want = truth[pts[:, 0], pts[:, 1], pts[:, 2], 0].copy()
    want[(pts[:, 0] >= 16) & (pts[:, 1] < 16)] = 0
    np.testing.assert_array_equal(cvl.Volume(url, fill_missing=True).scattered_points(pts), want)


@pytest.mark.parametrize("ranged_bytes", [0, 1 << 40])
def test_truncated_raw_chunk_is_an_error_either_way(tmp_path, rng, monkeypatch, ranged_bytes):
    monkeypatch.setattr(P, "RANGED_BYTES", ranged_bytes)
    monkeypatch.setattr(P, "FILE_RANGED_BYTES", ranged_bytes)
    truth = random_volume((32, 32, 16, 1), "uint16", rng)
    url = fixture_write(tmp_path / "v", truth, chunk=(16, 16, 16))
    path = tmp_path / "v" / "4_4_40" / "0-16_16-32_0-16"
    path.write_bytes(path.read_bytes()[:-2])
    pts = np.stack([rng.integers(0, s, 3000) for s in (32, 32, 16)], axis=1)
    with pytest.raises(cvl.DecodeError, match="0-16_16-32_0-16"):
        cvl.Volume(url).scattered_points(pts)


def test_raw_point_decoders_agree(rng):
    from cloudvolume_lite.codecs import ChunkSpec, raw

    vol_scale = SimpleNamespace(**vars(fake_scale((10, 12, 7), (10, 12, 7))), encoding="raw")
    for nc in (1, 3):
        arr = rng.integers(0, 2**16, (10, 12, 7, nc)).astype(np.uint16)
        spec = ChunkSpec((10, 12, 7, nc), np.dtype(np.uint16), vol_scale, "k")  # type: ignore[arg-type]
        data = raw.encode(arr, spec)
        xyz = np.stack([rng.integers(0, s, 400) for s in (10, 12, 7)], axis=1)
        want = arr[xyz[:, 0], xyz[:, 1], xyz[:, 2]]
        np.testing.assert_array_equal(raw.decode_points(data, spec, xyz), want)
        offsets = xyz[:, 0] + 10 * (xyz[:, 1] + 12 * xyz[:, 2])
        np.testing.assert_array_equal(raw.decode_offsets(data, spec, offsets), want)
        with pytest.raises(IndexError):
            raw.decode_points(data, spec, np.array([[10, 0, 0]]))
        with pytest.raises(cvl.DecodeError):
            raw.decode_offsets(data[:-1], spec, offsets)


@pytest.mark.parametrize("with_c", [True, False])
@pytest.mark.parametrize("shape,nc,dtype", [((16, 16, 8), 1, np.uint64), ((13, 7, 5), 3, np.uint32)])
def test_cseg_offset_lookups_agree(monkeypatch, rng, with_c, shape, nc, dtype):
    from cloudvolume_lite.codecs import ChunkSpec, cseg

    if with_c and not _cseg_api.available():
        pytest.skip("the C extension is not built")
    if not with_c:
        monkeypatch.setenv(_cseg_api.DISABLE_ENV, "1")
    scale = SimpleNamespace(encoding="compressed_segmentation", compressed_segmentation_block_size=(4, 4, 2))
    spec = ChunkSpec((*shape, nc), np.dtype(dtype), scale, "k")  # type: ignore[arg-type]
    arr = random_volume((*shape, nc), dtype, rng, labels=40)
    data = cseg.encode(arr, spec)
    xyz = np.stack([rng.integers(0, s, 700) for s in shape], axis=1)
    offsets = (xyz[:, 0] + shape[0] * (xyz[:, 1] + shape[1] * xyz[:, 2])).astype(np.uint32)
    want = arr[xyz[:, 0], xyz[:, 1], xyz[:, 2]]
    np.testing.assert_array_equal(cseg.decode_offsets(data, spec, offsets), want)
    np.testing.assert_array_equal(cseg.decode_offsets(data, spec, offsets.astype(np.int64)), want)
    np.testing.assert_array_equal(cseg.decode_points(data, spec, xyz), want)
    with pytest.raises((cvl.DecodeError, IndexError)):
        cseg.decode_offsets(data, spec, np.array([np.prod(shape)], np.uint32))
    with pytest.raises((cvl.DecodeError, IndexError)):
        cseg.decode_offsets(data, spec, np.array([-1]))


def test_which_stores_read_points_by_range(volumes):
    plain, sharded = volumes["raw uint64"][0], volumes["raw sharded"][0]
    assert P.ranges_are_cheap(cvl.Volume(plain).chunk_store())
    assert P.ranges_are_cheap(cvl.Volume(plain, lru_bytes=1 << 20).chunk_store())  # the LRU passes ranges on
    assert not P.ranges_are_cheap(cvl.Volume(sharded).chunk_store())
    assert not P.ranges_are_cheap(cvl.Volume(sharded, lru_bytes=1 << 20).chunk_store())


def test_error_names_the_chunk_url(tmp_path, rng):
    truth = random_volume((32, 32, 16, 1), "uint64", rng, labels=50)
    url = fixture_write(tmp_path / "v", truth, chunk=(16, 16, 16), encoding="compressed_segmentation")
    (tmp_path / "v" / "4_4_40" / "16-32_16-32_0-16").unlink()
    vol = cvl.Volume(url)
    want = vol.chunk_store().url.key_url("16-32_16-32_0-16")
    with pytest.raises(cvl.ChunkNotFoundError, match=re.escape(want)):
        vol.scattered_points(np.stack([rng.integers(0, s, 3000) for s in (32, 32, 16)], axis=1))
