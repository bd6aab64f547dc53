"""Damage is detected (issue 16): exact data or a named VolumeError, never silently wrong voxels.

Bit flips in transport-compressed chunks, chunks of the wrong size read as points, codec
streams whose type or label width does not fit the volume, enormous unbounded reads, and
scalar writes that would change their value."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

import cloudvolume_lite as cvl

CHUNK = (32, 32, 8)


def one_chunk_volume(root: Path, truth: np.ndarray, compression: str | None, encoding: str = "raw",
                     layer_type: str = "image") -> tuple[cvl.Volume, Path]:
    """A one-chunk volume holding ``truth`` written by us; the chunk's file."""
    url = "file://" + str(root)
    vol = cvl.Volume.create(url, data_type=truth.dtype.name, layer_type=layer_type, size=truth.shape[:3],
                            chunk_size=truth.shape[:3], resolution=(1, 1, 1), encoding=encoding,
                            compression=compression)
    vol[...] = truth
    base = root / vol.scale.key / vol.scale.chunk_name((0, 0, 0))
    found = [p for p in (base.with_name(base.name + s) for s in ("", ".gz", ".br", ".zstd")) if p.exists()]
    assert len(found) == 1
    return cvl.Volume(url), found[0]


def flip_and_read(vol: cvl.Volume, path: Path, truth: np.ndarray, flips: int, seed: int = 16) -> dict[str, int]:
    """Read the chunk after each of ``flips`` single-bit flips: how many were exact, errors, wrong."""
    good = path.read_bytes()
    rng = random.Random(seed)
    tally = {"exact": 0, "error": 0, "wrong": 0}
    try:
        for _ in range(flips):
            bit = rng.randrange(len(good) * 8)
            damaged = bytearray(good)
            damaged[bit // 8] ^= 1 << (bit % 8)
            path.write_bytes(bytes(damaged))
            try:
                got = vol[...]
            except cvl.VolumeError:
                tally["error"] += 1
                continue
            tally["exact" if np.array_equal(got, truth) else "wrong"] += 1
    finally:
        path.write_bytes(good)
    return tally


def em_like(rng: np.random.Generator, shape=(*CHUNK, 1)) -> np.ndarray:
    """Smooth-ish uint8 data that compresses about as EM does."""
    base = rng.integers(90, 160, shape, dtype=np.int16)
    return np.clip(base + np.cumsum(rng.integers(-2, 3, shape), axis=0), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("compression", ["zstd", "gzip"])
def test_bit_flips_in_our_chunks_never_read_as_wrong_voxels(tmp_path, rng, compression):
    # before: 152 of 200 flips in zstd chunks read as wrong voxels (frames had no checksum)
    truth = em_like(rng)
    vol, path = one_chunk_volume(tmp_path / "v", truth, compression)
    tally = flip_and_read(vol, path, truth, 200)
    assert tally["wrong"] == 0, tally


def test_bit_flips_in_zstd_segmentation_never_read_as_wrong_labels(tmp_path, rng):
    truth = rng.integers(0, 40, (*CHUNK, 1)).astype(np.uint32)
    vol, path = one_chunk_volume(tmp_path / "v", truth, "zstd", "compressed_segmentation", "segmentation")
    tally = flip_and_read(vol, path, truth, 200)
    assert tally["wrong"] == 0, tally


def test_brotli_has_no_checksum_as_the_docs_say():
    text = (Path(__file__).parent.parent / "docs" / "stores.md").read_text()
    section = text[text.index("## Transport compression"):]
    section = section[: section.index("\n## ", 3)]
    assert "brotli carries no checksum" in section and "write_checksum" in section


# -- points read as cutouts do --------------------------------------------------------------------

def big_raw_chunk(root: Path, rng: np.random.Generator) -> tuple[cvl.Volume, Path, np.ndarray]:
    truth = rng.integers(0, 255, (64, 64, 64, 1), dtype=np.uint8)
    vol, path = one_chunk_volume(root, truth, None)
    return vol, path, truth


@pytest.mark.parametrize("damage", ["longer", "shorter"])
def test_points_of_a_wrong_size_raw_chunk_are_a_decode_error(tmp_path, rng, damage):
    vol, path, truth = big_raw_chunk(tmp_path / "v", rng)
    good = path.read_bytes()
    path.write_bytes(good + b"\0" * 100 if damage == "longer" else good[:-100])
    with pytest.raises(cvl.DecodeError):
        vol[...]  # a cutout refuses it...
    with pytest.raises(cvl.DecodeError, match="0-64_0-64_0-64"):
        vol.scattered_points([[1, 2, 3]])  # ...and so do a few points (read by byte range before)
    with pytest.raises(cvl.DecodeError):
        vol.scattered_points(np.argwhere(np.ones((64, 64, 2))))  # and many (read whole)


def test_points_of_a_right_size_raw_chunk_still_read_by_range(tmp_path, rng):
    vol, path, truth = big_raw_chunk(tmp_path / "v", rng)
    pts = np.array([[1, 2, 3], [63, 63, 63], [0, 0, 0]])
    np.testing.assert_array_equal(vol.scattered_points(pts), truth[pts[:, 0], pts[:, 1], pts[:, 2], 0])
    cached = cvl.Volume("file://" + str(tmp_path / "v"), lru_bytes=1 << 24)
    np.testing.assert_array_equal(cached.scattered_points(pts), truth[pts[:, 0], pts[:, 1], pts[:, 2], 0])


# -- codec streams that do not fit the volume -----------------------------------------------------

def test_a_float64_fpzip_stream_in_a_float32_volume_is_a_decode_error(tmp_path, rng):
    import fpzip

    truth = rng.random((16, 16, 8, 1)).astype(np.float32)
    vol, path = one_chunk_volume(tmp_path / "v", truth, None, "fpzip")
    np.testing.assert_array_equal(vol[...], truth)
    path.write_bytes(fpzip.compress(np.asfortranarray(rng.random((16, 16, 8, 1))), order="F"))
    with pytest.raises(cvl.DecodeError, match="float64"):
        vol[...]  # before: rounded to float32 without a word


def test_wide_compresso_labels_in_a_narrow_volume_are_a_decode_error(tmp_path, rng):
    import compresso

    truth = rng.integers(0, 200, (16, 16, 8, 1)).astype(np.uint8)
    vol, path = one_chunk_volume(tmp_path / "v", truth, None, "compresso", "segmentation")
    np.testing.assert_array_equal(vol[...], truth)
    wide = np.asfortranarray(truth[..., 0].astype(np.uint64) + 1000)
    path.write_bytes(compresso.compress(wide))
    with pytest.raises(cvl.DecodeError, match="8-byte labels"):
        vol[...]  # before: 1000 + v cut to uint8


def test_a_codec_that_decodes_to_another_shape_is_a_decode_error(tmp_path, rng, monkeypatch):
    from cloudvolume_lite.codecs import png

    truth = rng.integers(0, 255, (16, 16, 8, 1), dtype=np.uint8)
    vol, _ = one_chunk_volume(tmp_path / "v", truth, None, "png")
    real = png.decode
    monkeypatch.setattr(png, "decode", lambda data, spec: real(data, spec)[:1])  # broadcasts into the output
    with pytest.raises(cvl.DecodeError, match="decodes to shape"):
        vol[...]
    with pytest.raises(cvl.DecodeError, match="decodes to shape"):
        vol.scattered_points([[0, 0, 0]])


# -- enormous unbounded reads ---------------------------------------------------------------------

def test_an_enormous_unbounded_read_is_a_request_error_before_allocating(tmp_path):
    url = "file://" + str(tmp_path / "v")
    cvl.Volume.create(url, data_type="uint8", layer_type="image", size=(64, 64, 64), chunk_size=(64, 64, 64),
                      resolution=(1, 1, 1))
    vol = cvl.Volume(url, bounded=False, fill_missing=True)
    with pytest.raises(cvl.RequestError, match=r"would allocate 1000000000000000000 bytes"):
        vol[0:10**6, 0:10**6, 0:10**6]  # before: numpy's MemoryError
    with pytest.raises(cvl.RequestError, match="more than this machine's"):
        vol[-10**5:10**5, -10**5:10**5, 0:64]  # 2.5 TB: calloc might even have said yes
    assert vol[-8:8, 0:8, 0:8].shape == (16, 8, 8, 1)


# -- scalar writes --------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [300, -1, 0.7, float("nan"), 1e10, float("inf"), 2**70, "7", None])
def test_a_scalar_that_would_change_is_refused_like_an_array(tmp_path, value):
    url = "file://" + str(tmp_path / "v")
    vol = cvl.Volume.create(url, data_type="uint8", layer_type="image", size=(8, 8, 8), chunk_size=(8, 8, 8),
                            resolution=(1, 1, 1))
    vol[...] = 9
    with pytest.raises(cvl.RequestError, match="cannot be stored"):
        vol[...] = value  # before: 300 stored 44, -1 255, 0.7 / NaN / 1e10 0
    if isinstance(value, (int, float)):
        with pytest.raises(cvl.RequestError):
            vol[...] = np.full((8, 8, 8), value)  # the same value as an array (refused before too)
    assert (vol[...] == 9).all()


@pytest.mark.parametrize("dtype, value", [("uint8", 255), ("uint8", 0), ("uint8", 3.0), ("uint8", True),
                                          ("uint8", np.int64(7)), ("uint64", 2**64 - 1), ("int16", -5),
                                          ("float32", float("nan")), ("float32", 0.1), ("float32", 7),
                                          ("float64", float("-inf"))])
def test_a_scalar_that_fits_is_written(tmp_path, dtype, value):
    url = "file://" + str(tmp_path / "v")
    vol = cvl.Volume.create(url, data_type=dtype, layer_type="image", size=(8, 8, 8), chunk_size=(4, 4, 4),
                            resolution=(1, 1, 1))
    vol[...] = value
    vol[1:3, 0:8, 0:8] = value  # partial chunks: read-modify-write
    np.testing.assert_array_equal(vol[...], np.full((8, 8, 8, 1), value, dtype=dtype))
