"""compresso and crackle: round trips, z-slice point reads, garbage, and the CloudVolume oracle."""

from __future__ import annotations

import numpy as np
import pytest

import cloudvolume_lite as cvl
from cloudvolume_lite.codecs import ChunkSpec, get_codec
from cloudvolume_lite.info import Scale
from oracles import cv_write, random_volume

ENCODINGS = ["compresso", "crackle"]


def spec(encoding, shape, dtype) -> ChunkSpec:
    sc = Scale.from_json({"key": "k", "size": [64, 64, 64], "resolution": [1, 1, 1], "chunk_sizes": [[64, 64, 64]],
                          "encoding": encoding})
    return ChunkSpec(tuple(shape), np.dtype(dtype), sc, "extra/chunk")


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32", "uint64"])
def test_round_trip_and_points(rng, encoding, dtype):
    codec = get_codec(encoding)
    s = spec(encoding, (13, 7, 5, 1), dtype)
    arr = random_volume(s.shape, dtype, rng, labels=9)
    data = codec.encode(arr, s)
    np.testing.assert_array_equal(codec.decode(data, s), arr)
    xyz = np.stack(np.meshgrid(np.arange(13), np.arange(7), np.arange(5), indexing="ij"), -1).reshape(-1, 3)
    np.testing.assert_array_equal(codec.decode_points(data, s, xyz), arr[xyz[:, 0], xyz[:, 1], xyz[:, 2]])
    few = xyz[[3, 40, 200]]
    np.testing.assert_array_equal(codec.decode_points(data, s, few), arr[few[:, 0], few[:, 1], few[:, 2]])


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_garbage_and_wrong_shape(rng, encoding):
    codec = get_codec(encoding)
    s = spec(encoding, (13, 7, 5, 1), "uint32")
    for blob in [b"", b"nope", b"cpso" + b"\0" * 40, b"crkl" + b"\xff" * 40]:
        with pytest.raises(cvl.DecodeError, match="extra/chunk"):
            codec.decode(blob, s)
    data = codec.encode(random_volume(s.shape, "uint32", rng, labels=3), s)
    with pytest.raises(cvl.DecodeError, match="header says"):
        codec.decode(data, spec(encoding, (12, 7, 5, 1), "uint32"))


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_cloudvolume_written_volumes_read_exactly(tmp_path, rng, encoding):
    truth = random_volume((41, 27, 13, 1), "uint64", rng, labels=50)
    url = cv_write(tmp_path / "v", truth, offset=(-4, 6, 1), chunk=(16, 16, 8), encoding=encoding, compress=None)
    vol = cvl.Volume(url)
    np.testing.assert_array_equal(vol[...], truth)
    pts = np.stack([rng.integers(lo, hi, 200) for lo, hi in zip(vol.bounds.minpt, vol.bounds.maxpt)], 1)
    local = pts - np.asarray(vol.voxel_offset)
    np.testing.assert_array_equal(vol.scattered_points(pts), truth[local[:, 0], local[:, 1], local[:, 2], 0])


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_cloudvolume_reads_what_we_write(tmp_path, rng, encoding):
    from cloudvolume import CloudVolume

    truth = random_volume((41, 27, 13, 1), "uint32", rng, labels=50)
    vol = cvl.Volume.create(str(tmp_path / "v"), data_type="uint32", layer_type="segmentation", size=truth.shape[:3],
                            chunk_size=(16, 16, 8), resolution=(4, 4, 40), encoding=encoding, voxel_offset=(3, 0, -2))
    vol[...] = truth
    np.testing.assert_array_equal(np.asarray(CloudVolume("file://" + str(tmp_path / "v"), progress=False)[:, :, :]), truth)


FLOAT_CODECS = ["fpzip", "kempressed", "zfpc"]


@pytest.mark.parametrize("encoding", FLOAT_CODECS)
@pytest.mark.parametrize("channels", [1, 3])
def test_float_codecs_round_trip(rng, encoding, channels):
    codec = get_codec(encoding)
    s = spec(encoding, (13, 7, 5, channels), "float32")
    arr = rng.random(s.shape).astype(np.float32)
    got = codec.decode(codec.encode(arr, s), s)
    assert got.shape == s.shape and got.dtype == np.float32
    if encoding == "zfpc":  # zfp is lossy unless told otherwise
        assert np.abs(got - arr).max() < 1e-2
    else:
        np.testing.assert_allclose(got, arr, atol=1e-6 if encoding == "kempressed" else 0)
    with pytest.raises(cvl.DecodeError, match="extra/chunk"):
        codec.decode(b"garbage!" * 4, s)


@pytest.mark.parametrize("encoding", ["fpzip", "kempressed"])
def test_cloudvolume_float_volumes(tmp_path, rng, encoding):
    from cloudvolume import CloudVolume

    truth = rng.random((30, 20, 10, 2)).astype(np.float32)
    url = cv_write(tmp_path / "v", truth, chunk=(16, 16, 8), encoding=encoding, compress=None, layer="image")
    np.testing.assert_allclose(cvl.Volume(url)[...], truth, atol=1e-6)
    vol = cvl.Volume.create(str(tmp_path / "w"), data_type="float32", layer_type="image", size=truth.shape[:3],
                            chunk_size=(16, 16, 8), resolution=(1, 1, 1), num_channels=2, encoding=encoding)
    vol[...] = truth
    np.testing.assert_allclose(np.asarray(CloudVolume("file://" + str(tmp_path / "w"), progress=False)[:, :, :]), truth, atol=1e-6)


@pytest.mark.parametrize("channels", [1, 3])
def test_jxl(tmp_path, channels):
    from cloudvolume import CloudVolume

    x, y, z = np.meshgrid(np.arange(32), np.arange(16), np.arange(4), indexing="ij")
    base = (100 + 60 * np.sin(x / 4) * np.cos(y / 3) + 5 * z).astype(np.uint8)
    truth = np.stack([base + 7 * c for c in range(channels)], -1).astype(np.uint8)
    lossless = {"jxl_quality": 100}
    vol = cvl.Volume.create(str(tmp_path / "v"), data_type="uint8", layer_type="image", size=truth.shape[:3],
                            chunk_size=(16, 16, 4), resolution=(1, 1, 1), num_channels=channels, encoding="jxl", **lossless)
    vol[...] = truth
    np.testing.assert_array_equal(cvl.Volume(vol.url)[...], truth)
    if channels == 1:  # CloudVolume reads multi-channel images as planar (see test_write)
        np.testing.assert_array_equal(np.asarray(CloudVolume(vol.url, progress=False)[:, :, :]), truth)
    with pytest.raises(cvl.DecodeError):
        get_codec("jxl").decode(b"\xff\x0a garbage", spec("jxl", (16, 16, 4, channels), "uint8"))
