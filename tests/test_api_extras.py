"""Volume.from_numpy, vol.download_point and vol.unique, checked against numpy and CloudVolume."""

from __future__ import annotations

import json

import numpy as np
import pytest

import cloudvolume_lite as cvl
from cloudvolume_lite import analysis
from oracles import random_volume

SHARDING = dict(preshift_bits=1, hash="identity", minishard_bits=2, shard_bits=2,
                minishard_index_encoding="gzip", data_encoding="gzip")


def _url(tmp_path, name="v"):
    return "file://" + str(tmp_path / name)


def _cv(url, **kw):
    from cloudvolume import CloudVolume

    return CloudVolume(url, progress=False, **kw)


# -- from_numpy ------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype,channels", [
    ("uint8", 1), ("int8", 1), ("uint16", 3), ("int16", 1), ("uint32", 1), ("int32", 2),
    ("uint64", 1), ("int64", 1), ("float32", 1), ("float64", 2),
])
def test_from_numpy_round_trips_and_cloudvolume_reads_it(tmp_path, rng, dtype, channels):
    truth = random_volume((37, 29, 11, channels), dtype, rng)
    array = truth[..., 0] if channels == 1 else truth  # 3-D input for one channel
    vol = cvl.Volume.from_numpy(array, _url(tmp_path), voxel_offset=(-5, 3, 2), chunk_size=(16, 16, 8))
    assert vol.shape == truth.shape and vol.dtype == truth.dtype and vol.voxel_offset == (-5, 3, 2)
    np.testing.assert_array_equal(cvl.Volume(vol.url)[...], truth)
    theirs = np.asarray(_cv(vol.url)[:, :, :])
    assert theirs.dtype == truth.dtype
    np.testing.assert_array_equal(theirs, truth)


@pytest.mark.parametrize("dtype", ["uint32", "uint64"])
@pytest.mark.parametrize("sharding", [None, SHARDING, True])
def test_from_numpy_compressed_segmentation_and_sharding(tmp_path, rng, dtype, sharding):
    truth = random_volume((40, 33, 18, 1), dtype, rng, labels=60)
    vol = cvl.Volume.from_numpy(truth, _url(tmp_path), encoding="compressed_segmentation",
                                chunk_size=(16, 16, 8), sharding=sharding, resolution=(4, 4, 40),
                                voxel_offset=(7, 0, -3))
    assert vol.encoding == "compressed_segmentation" and vol.layer_type == "segmentation"
    assert (vol.scale.sharding is not None) == (sharding is not None)
    np.testing.assert_array_equal(cvl.Volume(vol.url)[...], truth)
    np.testing.assert_array_equal(np.asarray(_cv(vol.url)[:, :, :]), truth)


def test_from_numpy_sharded_raw_image(tmp_path, rng):
    truth = random_volume((30, 20, 10, 1), "uint8", rng)
    vol = cvl.Volume.from_numpy(truth, _url(tmp_path), chunk_size=(8, 8, 4), sharding=SHARDING)
    assert vol.scale.sharding is not None
    np.testing.assert_array_equal(cvl.Volume(vol.url)[...], truth)
    np.testing.assert_array_equal(np.asarray(_cv(vol.url)[:, :, :]), truth)


def test_from_numpy_defaults(tmp_path, rng):
    img = cvl.Volume.from_numpy(random_volume((100, 20, 64, 1), "uint8", rng), _url(tmp_path, "img"))
    assert img.layer_type == "image" and img.encoding == "raw"
    assert img.resolution == (1, 1, 1) and img.voxel_offset == (0, 0, 0)
    assert img.chunk_size == (64, 20, 64)  # 64³ clipped to the array
    assert img.num_mips == 1 and img.num_channels == 1
    seg = cvl.Volume.from_numpy(np.zeros((5, 5, 5), np.uint32), "mem://extras/seg")
    assert seg.layer_type == "segmentation"
    # several channels of labels are an image (Neuroglancer segmentation has one channel)
    assert cvl.Volume.from_numpy(np.zeros((5, 5, 5, 2), np.uint64), "mem://extras/two").layer_type == "image"
    assert cvl.Volume.from_numpy(np.zeros((5, 5, 5), np.int32), "mem://extras/i32").layer_type == "image"
    forced = cvl.Volume.from_numpy(np.zeros((5, 5, 5), np.uint64), "mem://extras/f", layer_type="image")
    assert forced.layer_type == "image"
    empty = cvl.Volume.from_numpy(np.zeros((0, 4, 4), np.uint8), "mem://extras/empty")
    assert empty.shape == (0, 4, 4, 1) and empty.chunk_size == (1, 4, 4)


def test_from_numpy_passes_create_options_through(tmp_path, rng):
    truth = random_volume((20, 20, 4, 1), "uint16", rng)
    path = tmp_path / "gz"
    vol = cvl.Volume.from_numpy(truth, _url(tmp_path, "gz"), compression="gzip", chunk_size=(10, 10, 4))
    assert (path / "1_1_1" / "0-10_0-10_0-4.gz").is_file()  # explicit gzip on disk: .gz files
    np.testing.assert_array_equal(vol[...], truth)
    with pytest.raises(cvl.RequestError, match="different info"):
        cvl.Volume.from_numpy(truth[:10], _url(tmp_path, "gz"))
    again = cvl.Volume.from_numpy(truth[:10], _url(tmp_path, "gz"), overwrite=True)
    assert again.shape == (10, 20, 4, 1)
    png = cvl.Volume.from_numpy(truth.astype(np.uint8), "mem://extras/png", encoding="png", png_level=1)
    assert png.encoding == "png" and png.scale.extra["png_level"] == 1
    np.testing.assert_array_equal(png[...], truth.astype(np.uint8))


@pytest.mark.parametrize("array,needle", [
    (np.zeros((4, 4)), "3-D"),
    (np.zeros((2, 2, 2, 2, 2)), "3-D"),
    (np.zeros((4, 4, 4), bool), "bool"),
    (np.zeros((4, 4, 4), np.complex64), "complex64"),
    (np.zeros((4, 4, 4), np.float16), "float16"),
    (np.zeros((4, 4, 4), object), "object"),
    (np.zeros((4, 4, 4), "U2"), "<U2"),
    (np.zeros((4, 4, 4, 0), np.uint8), "no channels"),
])
def test_from_numpy_refuses_bad_arrays(array, needle):
    with pytest.raises(cvl.RequestError, match=needle):
        cvl.Volume.from_numpy(array, "mem://extras/bad")


@pytest.mark.parametrize("option,needle", [
    ({"compress": "gzip"}, "compression="), ({"max_mip": 2}, "add_scale"), ({"data_type": "uint8"}, "astype"),
    ({"encoding": "compressed_segmentation"}, "holds uint32, uint64"), ({"chunk_size": (0, 4, 4)}, "chunk_sizes"),
    ({"resolution": (float("nan"), 1, 1)}, "resolution"), ({"no_such_option": 1}, "no_such_option"),
])
def test_from_numpy_refuses_bad_options(option, needle):
    with pytest.raises(cvl.RequestError, match=needle):
        cvl.Volume.from_numpy(np.zeros((4, 4, 4), np.uint8), "mem://extras/badopt", **option)


# -- download_point --------------------------------------------------------------------------------
@pytest.fixture
def pyramid(tmp_path, rng):
    """A two-mip uint16 image written by us (CloudVolume reads it), offset so coordinates are global."""
    truth = random_volume((64, 48, 20, 1), "uint16", rng)
    vol = cvl.Volume.from_numpy(truth, _url(tmp_path), voxel_offset=(16, 8, 4), chunk_size=(16, 16, 8),
                                resolution=(4, 4, 40))
    vol.add_scale((2, 2, 1), downsample=True)
    return vol, truth


@pytest.mark.parametrize("size", [4, (6, 4, 2), 1, (1, 8, 1), (2, 2, 2)])
def test_download_point_matches_cloudvolume(pyramid, size):
    vol, truth = pyramid
    cv = _cv(vol.url)
    for pt in [(50, 30, 14), (20, 12, 8), (79, 55, 23)]:
        try:
            theirs = np.asarray(cv.download_point(pt, size=size, mip=0))
        except Exception as e:  # near the edge CloudVolume raises its own OutOfBoundsError
            assert type(e).__name__ == "OutOfBoundsError"
            with pytest.raises(cvl.OutOfBoundsError):
                vol.download_point(pt, size)
            continue
        ours = vol.download_point(pt, size)
        s = (size,) * 3 if isinstance(size, int) else size
        assert ours.shape == (*s, 1)
        np.testing.assert_array_equal(ours, theirs)
        lo = [p - n // 2 - o for p, n, o in zip(pt, s, vol.voxel_offset)]
        np.testing.assert_array_equal(ours, truth[lo[0]:lo[0] + s[0], lo[1]:lo[1] + s[1], lo[2]:lo[2] + s[2]])


def test_download_point_at_a_coarser_mip_matches_cloudvolume(pyramid):
    vol, _ = pyramid
    cv = _cv(vol.url)
    pt1 = (25, 15, 12)  # mip-1 coordinates; CloudVolume takes the mip-0 point that maps onto it
    theirs = np.asarray(cv.download_point((2 * pt1[0], 2 * pt1[1], pt1[2]), size=(6, 4, 4), mip=1))
    np.testing.assert_array_equal(vol.download_point(pt1, (6, 4, 4), mip=1), theirs)
    np.testing.assert_array_equal(vol.download_point(pt1, (6, 4, 4), mip=(8, 8, 40)), theirs)


def test_download_point_odd_sizes_are_centred(pyramid):
    vol, truth = pyramid
    cv = _cv(vol.url)
    pt = (40, 30, 12)
    ours = vol.download_point(pt, 5)
    assert ours.shape == (5, 5, 5, 1)
    x, y, z = (p - o for p, o in zip(pt, vol.voxel_offset))
    np.testing.assert_array_equal(ours, truth[x - 2:x + 3, y - 2:y + 3, z - 2:z + 3])
    # CloudVolume returns [pt - 2, pt + 2) for size 5: our box minus its last plane
    np.testing.assert_array_equal(ours[:4, :4, :4], np.asarray(cv.download_point(pt, size=5, mip=0)))
    # Neuroglancer positions are voxel centres: floats are floored, as CloudVolume does
    np.testing.assert_array_equal(vol.download_point((40.5, 30.9, 12.0), 4), vol.download_point(pt, 4))


def test_download_point_out_of_bounds(pyramid):
    vol, truth = pyramid
    with pytest.raises(cvl.OutOfBoundsError, match="bounded=False"):
        vol.download_point((17, 9, 5), 4)
    loose = cvl.Volume(vol.url, bounded=False)
    got = loose.download_point((17, 9, 5), 4)  # box [15, 19) x [7, 11) x [3, 7)
    want = np.zeros((4, 4, 4, 1), truth.dtype)
    want[1:, 1:, 1:] = truth[0:3, 0:3, 0:3]
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(loose.download_point((-1000, 0, 0), 2), np.zeros((2, 2, 2, 1), truth.dtype))


@pytest.mark.parametrize("pt,size", [((1, 2), 4), ((1, 2, 3), 0), ((1, 2, 3), (4, 4)), ((float("nan"), 0, 0), 4),
                                     ((1, 2, 3), 2.5), (("a", 0, 0), 2), ((1, 2, 3), True)])
def test_download_point_bad_arguments(pyramid, pt, size):
    with pytest.raises(cvl.RequestError):
        pyramid[0].download_point(pt, size)


# -- unique ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["uint8", "int16", "uint32", "uint64", "float32"])
@pytest.mark.parametrize("sharded", [False, True])
def test_unique_matches_numpy(tmp_path, rng, dtype, sharded):
    truth = random_volume((45, 38, 13, 1), dtype, rng, labels=None if dtype == "float32" else 200)
    if dtype == "float32":
        truth = np.round(truth, 1)  # repeated values; no -0.0 (np.unique keeps whichever zero comes first)
        truth[truth == 0] = 0
    vol = cvl.Volume.from_numpy(truth, _url(tmp_path), voxel_offset=(3, -4, 1), chunk_size=(16, 16, 8),
                                sharding=SHARDING if sharded else None)
    got = vol.unique()
    assert got.dtype == truth.dtype
    np.testing.assert_array_equal(got, np.unique(truth))
    box = cvl.Bbox((10, 0, 2), (30, 20, 9))  # unaligned, global coordinates
    local = truth[7:27, 4:24, 1:8]
    np.testing.assert_array_equal(vol.unique(box), np.unique(local))
    np.testing.assert_array_equal(vol.unique(box.to_slices()), np.unique(local))
    # tiny blocks: every chunk read on its own, the partial results merged
    np.testing.assert_array_equal(analysis.unique(vol, None, 0, block_bytes=1), np.unique(truth))


def test_unique_matches_cloudvolume(tmp_path, rng):
    truth = random_volume((40, 40, 16, 1), "uint64", rng, labels=300)
    vol = cvl.Volume.from_numpy(truth, _url(tmp_path), encoding="compressed_segmentation", chunk_size=(16, 16, 8))
    cv = _cv(vol.url)
    theirs = cv.unique(np.s_[5:33, 0:40, 3:16])
    np.testing.assert_array_equal(vol.unique(np.s_[5:33, 0:40, 3:16]), np.array(sorted(theirs), np.uint64))


def test_unique_reads_block_by_block(tmp_path, rng, monkeypatch):
    truth = random_volume((64, 64, 32, 1), "uint32", rng, labels=1000)
    vol = cvl.Volume.from_numpy(truth, _url(tmp_path), chunk_size=(16, 16, 8))
    seen: list[tuple[int, ...]] = []
    real = cvl.Volume.download

    def spy(self, bbox, mip=None):
        out = real(self, bbox, mip)
        seen.append(out.shape)
        return out

    monkeypatch.setattr(cvl.Volume, "download", spy)
    budget = 16 * 16 * 8 * 4 * 4  # four chunks
    np.testing.assert_array_equal(analysis.unique(vol, None, 0, block_bytes=budget), np.unique(truth))
    assert len(seen) == 16 and all(int(np.prod(s)) * 4 <= budget for s in seen)
    blocks = list(analysis.unique_blocks(vol.bounds, vol.voxel_offset, vol.chunk_size, 4, budget))
    assert sum(b.volume for b in blocks) == vol.bounds.volume  # a tiling: no voxel twice, none missed


def test_unique_channels_and_steps(rng):
    truth = random_volume((20, 20, 8, 3), "uint8", rng, labels=50)
    vol = cvl.Volume.from_numpy(truth, "mem://extras/chan", chunk_size=(8, 8, 8))
    np.testing.assert_array_equal(vol.unique(), np.unique(truth))
    np.testing.assert_array_equal(vol.unique((slice(None), slice(None), slice(None), 1)), np.unique(truth[..., 1]))
    with pytest.raises(cvl.RequestError, match="steps"):
        vol.unique(np.s_[0:20:2, :, :])
    assert vol.unique(cvl.Bbox((3, 3, 3), (3, 9, 9))).size == 0


def test_unique_missing_chunks_and_bounds(tmp_path, rng):
    truth = random_volume((32, 32, 8, 1), "uint64", rng, labels=20) + np.uint64(1)  # no zeros
    vol = cvl.Volume.from_numpy(truth, _url(tmp_path), chunk_size=(16, 16, 8))
    vol.delete(cvl.Bbox((0, 0, 0), (16, 16, 8)))
    with pytest.raises(cvl.ChunkNotFoundError, match="fill_missing"):
        vol.unique()
    filled = cvl.Volume(vol.url, fill_missing=True)
    rest = np.concatenate([truth[16:].ravel(), truth[:16, 16:].ravel()])
    np.testing.assert_array_equal(filled.unique(), np.unique(np.append(rest, 0)))
    np.testing.assert_array_equal(filled.unique(np.s_[16:32, 0:32, 0:8]), np.unique(truth[16:]))
    with pytest.raises(cvl.OutOfBoundsError, match="bounded=False"):
        vol.unique(np.s_[16:40, 0:32, 0:8])
    loose = cvl.Volume(vol.url, bounded=False)
    np.testing.assert_array_equal(loose.unique(np.s_[16:40, 0:32, 0:8]), np.unique(np.append(truth[16:], 0)))
    np.testing.assert_array_equal(loose.unique(np.s_[100:110, 0:2, 0:2]), np.zeros(1, np.uint64))


def test_unique_at_another_mip(tmp_path, rng):
    truth = random_volume((32, 32, 8, 1), "uint32", rng, labels=30)
    vol = cvl.Volume.from_numpy(truth, _url(tmp_path), chunk_size=(16, 16, 8))
    m = vol.add_scale((2, 2, 1), downsample=True)
    np.testing.assert_array_equal(vol.unique(mip=m), np.unique(vol.download(vol.scales[m].bounds, mip=m)))
    assert json.loads(vol.store.get("info"))["scales"][m]["key"] == "2_2_1"


def test_unique_merges_many_distinct_values(rng):
    truth = rng.permutation(128 * 128 * 160).astype(np.uint32).reshape(128, 128, 160)  # 2.6M distinct values
    vol = cvl.Volume.from_numpy(truth, "mem://extras/many", chunk_size=(64, 64, 32))
    np.testing.assert_array_equal(analysis.unique(vol, None, 0, block_bytes=1 << 20), np.arange(truth.size, dtype=np.uint32))
