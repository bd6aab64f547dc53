"""Codecs against the spec's byte-exact example, against each other, and on their own round trips."""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest

from cloudvolume_lite.codecs import ChunkSpec, _cseg_api, get_codec
from cloudvolume_lite.errors import DecodeError, UnsupportedEncodingError
from cloudvolume_lite.info import Scale
from oracles import random_volume

# the numpy runs below hide the C extension on purpose; test_cseg_numpy.py tests the warning
pytestmark = pytest.mark.filterwarnings("ignore::cloudvolume_lite.codecs.cseg.CsegFallbackWarning")


@pytest.fixture(params=["c", "numpy"])
def cseg_backend(request, monkeypatch) -> str:
    """Run a cseg test with the C extension, then as if it were not built (numpy fallback)."""
    monkeypatch.delenv(_cseg_api.DISABLE_ENV, raising=False)
    if request.param == "c":
        try:
            importlib.import_module(_cseg_api.EXTENSION)
        except ImportError:
            pytest.skip("the C extension cloudvolume_lite._cseg is not built")
    else:
        # import_module raises for a None entry, exactly as for a module that was never built
        monkeypatch.setitem(sys.modules, _cseg_api.EXTENSION, None)
    assert _cseg_api.available() == (request.param == "c")
    return request.param


def scale(encoding: str, block=(8, 8, 8), **extra) -> Scale:
    return Scale.from_json(
        {
            "key": "k", "size": [64, 64, 64], "resolution": [1, 1, 1], "chunk_sizes": [[64, 64, 64]],
            "encoding": encoding, "compressed_segmentation_block_size": list(block), **extra,
        }
    )


def spec(encoding, shape, dtype, **kw) -> ChunkSpec:
    return ChunkSpec(tuple(shape), np.dtype(dtype), scale(encoding, **kw), "test/chunk")


# spec section 4.2: uint32, S=[3,2,1], B=[2,2,1]
SPEC_VALUES = np.array([[5, 9], [7, 5], [42, 42]], dtype=np.uint32)[:, :, None, None]  # v[x, y]
SPEC_WORDS = [0x1, 0x02000005, 0x4, 0x8, 0x8, 0x24, 5, 7, 9, 42]


def test_cseg_spec_example_decodes(cseg_backend):
    data = np.array(SPEC_WORDS, "<u4").tobytes()
    s = spec("compressed_segmentation", (3, 2, 1, 1), "uint32", block=(2, 2, 1))
    np.testing.assert_array_equal(get_codec("compressed_segmentation").decode(data, s), SPEC_VALUES)


def test_cseg_spec_example_encodes_byte_exact(cseg_backend):
    s = spec("compressed_segmentation", (3, 2, 1, 1), "uint32", block=(2, 2, 1))
    out = get_codec("compressed_segmentation").encode(SPEC_VALUES, s)
    assert np.frombuffer(out, "<u4").tolist() == SPEC_WORDS


def test_cseg_spec_example_uint64(cseg_backend):
    s = spec("compressed_segmentation", (3, 2, 1, 1), "uint64", block=(2, 2, 1))
    vals = SPEC_VALUES.astype(np.uint64) + np.uint64(2**33)
    out = np.frombuffer(get_codec("compressed_segmentation").encode(vals, s), "<u4").tolist()
    assert out[1:5] == [0x02000005, 4, 0x0000000B, 0x0B]
    assert out[6:12] == [5, 2, 7, 2, 9, 2]


@pytest.mark.parametrize("dtype", ["uint32", "uint64"])
@pytest.mark.parametrize("shape", [(64, 64, 64, 1), (37, 21, 9, 1), (20, 17, 5, 3)])
@pytest.mark.parametrize("block", [(8, 8, 8), (4, 2, 3)])
def test_cseg_points_equal_full_decode(rng, cseg_backend, dtype, shape, block):
    codec = get_codec("compressed_segmentation")
    s = spec("compressed_segmentation", shape, dtype, block=block)
    arr = random_volume(shape, dtype, rng, labels=70)
    arr[:5, :5, :2] = rng.integers(0, 2**31, size=(5, 5, 2, shape[3]))  # a block needing 32 bits
    data = codec.encode(arr, s)
    np.testing.assert_array_equal(codec.decode(data, s), arr)
    xyz = np.stack(np.meshgrid(*(np.arange(n) for n in shape[:3]), indexing="ij"), -1).reshape(-1, 3)
    np.testing.assert_array_equal(codec.decode_points(data, s, xyz), arr[xyz[:, 0], xyz[:, 1], xyz[:, 2]])
    np.testing.assert_array_equal(codec.points_numpy(data, s, xyz), arr[xyz[:, 0], xyz[:, 1], xyz[:, 2]])


@pytest.mark.parametrize(
    "garbage",
    [b"", b"\x01\x00\x00", b"\x01\x00\x00\x00", b"\x05\x00\x00\x00" + b"\0" * 12, b"\x01\0\0\0" + b"\xff" * 4096],
)
def test_cseg_garbage_is_decode_error(cseg_backend, garbage):
    s = spec("compressed_segmentation", (16, 16, 16, 1), "uint64")
    with pytest.raises(DecodeError, match="test/chunk"):
        get_codec("compressed_segmentation").decode(garbage, s)
    with pytest.raises(DecodeError):
        get_codec("compressed_segmentation").decode_points(garbage, s, np.zeros((1, 3), int))
    with pytest.raises(DecodeError):
        get_codec("compressed_segmentation").points_numpy(garbage, s, np.zeros((1, 3), int))


@pytest.mark.parametrize(
    "encoding,dtype,channels",
    [("raw", d, c) for d in ["uint8", "int16", "uint64", "float32", "float64"] for c in (1, 2)]
    + [("png", "uint8", c) for c in (1, 2, 3, 4)]
    + [("png", "uint16", c) for c in (1, 2, 3, 4)],
)
def test_lossless_round_trip(rng, encoding, dtype, channels):
    codec = get_codec(encoding)
    s = spec(encoding, (13, 7, 5, channels), dtype)
    arr = random_volume(s.shape, dtype, rng)
    np.testing.assert_array_equal(codec.decode(codec.encode(arr, s), s), arr)


@pytest.mark.parametrize("channels", [1, 3])
def test_jpeg_round_trip_close(channels):
    codec = get_codec("jpeg")
    s = spec("jpeg", (32, 16, 4, channels), "uint8", jpeg_quality=95)
    x = np.arange(32)[:, None, None, None]
    arr = np.broadcast_to((100 + x * 2).astype(np.uint8), s.shape).copy()
    assert np.abs(codec.decode(codec.encode(arr, s), s).astype(int) - arr).max() <= 3


def test_image_decoders_check_pixel_count():
    s = spec("png", (10, 10, 2, 1), "uint8")
    data = get_codec("png").encode(np.zeros((10, 10, 2, 1), np.uint8), s)
    with pytest.raises(DecodeError, match="pixels"):
        get_codec("png").decode(data, spec("png", (10, 10, 3, 1), "uint8"))
    with pytest.raises(DecodeError, match="JPEG"):
        get_codec("jpeg").decode(b"not a jpeg", spec("jpeg", (4, 4, 1, 1), "uint8"))


def test_image_reads_any_w_h_split():
    """Old TensorStore wrote W=ey, H=ex*ez with the bytes in linear order: accept by pixel count."""
    arr = np.arange(6 * 4 * 2, dtype=np.uint8).reshape(6, 4, 2, 1, order="F")
    s = spec("png", (6, 4, 2, 1), "uint8")
    import pyspng

    linear = arr.ravel(order="F")
    odd = pyspng.encode(linear.reshape(12, 4))  # W=4, H=12, same linear order
    np.testing.assert_array_equal(get_codec("png").decode(odd, s), arr)


def test_unknown_encoding():
    with pytest.raises(UnsupportedEncodingError, match="supported"):
        get_codec("nope")


@pytest.mark.parametrize("shape,block", [((64, 64, 64, 1), (8, 8, 8)), ((37, 21, 9, 2), (4, 6, 2))])
def test_cseg_region_decode_equals_full_decode(rng, cseg_backend, shape, block):
    codec = get_codec("compressed_segmentation")
    s = spec("compressed_segmentation", shape, "uint64", block=block)
    arr = random_volume(shape, "uint64", rng, labels=60)
    data = codec.encode(arr, s)
    for _ in range(30):
        lo = [int(rng.integers(0, n)) for n in shape[:3]]
        hi = [int(rng.integers(l + 1, n + 1)) for l, n in zip(lo, shape[:3])]
        sub, origin = codec.decode_region(data, s, lo, hi)
        assert all(o <= l for o, l in zip(origin, lo))
        got = sub[tuple(slice(l - o, h - o) for l, h, o in zip(lo, hi, origin))]
        np.testing.assert_array_equal(got, arr[tuple(slice(l, h) for l, h in zip(lo, hi))])


def test_cseg_decode_into_matches_and_survives_garbage(rng, cseg_backend):
    codec = get_codec("compressed_segmentation")
    shape = (37, 21, 9, 3)
    s = spec("compressed_segmentation", shape, "uint64", block=(4, 6, 2))
    arr = random_volume(shape, "uint64", rng, labels=60)
    data = codec.encode(arr, s)
    out = np.zeros((50, 30, 12, 2), np.uint64, order="F")
    done = codec.decode_into(data, s, [3, 2, 1], [30, 21, 9], slice(1, 3, 1), out, [5, 4, 2])
    if cseg_backend == "numpy":
        # no C decoder: decode_into declines and leaves out alone; the caller uses decode_region
        assert done is False and not out.any()
        return
    assert done
    np.testing.assert_array_equal(out[5:32, 4:23, 2:10], arr[3:30, 2:21, 1:9, 1:3])
    assert not out[:5].any() and not out[32:].any()
    # flipped bytes anywhere: a DecodeError or some values, never a crash
    for _ in range(300):
        bad = bytearray(data)
        for i in rng.integers(0, len(bad), 4):
            bad[i] = int(rng.integers(0, 256))
        try:
            codec.decode_into(bytes(bad), s, [0, 0, 0], [37, 21, 9], slice(0, 3, 1), np.zeros((37, 21, 9, 3), np.uint64, order="F"), [0, 0, 0])
        except DecodeError:
            pass


def test_cseg_without_the_c_decoder(rng, monkeypatch):
    """CVL_NO_C_EXT=1 turns the C decoder off at call time: same answers from numpy."""
    from cloudvolume_lite.codecs import cseg

    shape = (37, 21, 9, 2)
    s = spec("compressed_segmentation", shape, "uint64", block=(4, 6, 2))
    arr = random_volume(shape, "uint64", rng, labels=60)
    data = cseg.encode(arr, s)
    monkeypatch.setenv(_cseg_api.DISABLE_ENV, "1")
    assert not _cseg_api.available()
    np.testing.assert_array_equal(cseg.decode(data, s), arr)
    sub, origin = cseg.decode_region(data, s, [3, 2, 1], [30, 21, 9])
    np.testing.assert_array_equal(sub, arr[3:30, 2:21, 1:9])
    assert cseg.encode(arr, s) == data
    with pytest.raises(DecodeError):
        cseg.decode(b"\x01\0\0\0" + b"\xff" * 64, s)


@pytest.mark.parametrize("shape,block,dtype", [((64, 64, 64, 1), (8, 8, 8), "uint64"), ((37, 21, 9, 2), (4, 6, 2), "uint32"),
                                               ((13, 7, 5, 3), (8, 8, 8), "uint64")])
def test_cseg_encoder_is_byte_identical_to_the_library(rng, cseg_backend, shape, block, dtype):
    from cloudvolume_lite.codecs import cseg

    s = spec("compressed_segmentation", shape, dtype, block=block)
    for arr in (random_volume(shape, dtype, rng, labels=70), random_volume(shape, dtype, rng),
                np.zeros(shape, dtype)):
        assert cseg.encode(arr, s) == cseg._encode_library(arr, s, block)
