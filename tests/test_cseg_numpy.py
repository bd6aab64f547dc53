"""The compressed_segmentation numpy fallback: exact on every block size, and loud when used.

The C extension is hidden by putting None in ``sys.modules['cloudvolume_lite._cseg']`` (the
``cseg_backend`` fixture of test_codecs.py), which is what a failed compile looks like.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest

import cloudvolume_lite as cvl
from cloudvolume_lite.cli import main as cvl_main
from cloudvolume_lite.codecs import _cseg_api, cseg
from cloudvolume_lite.errors import DecodeError
from oracles import random_volume, ts_write
from test_codecs import cseg_backend, spec  # noqa: F401 - the fixture is used by name

quiet = pytest.mark.filterwarnings("ignore::cloudvolume_lite.codecs.cseg.CsegFallbackWarning")

BLOCKS = [(2, 2, 2), (3, 3, 3), (4, 4, 4), (8, 8, 8), (5, 3, 1)]


def _bid(block) -> str:
    return "x".join(map(str, block))


def _tiled(shape, block, dtype, rng, over_x: bool) -> np.ndarray:
    """Every block holds the same labels, so the encoders share one table and the last block's
    index words end its channel: the layout the old ``bits * ceil(voxels / 32)`` bound refused.
    ``over_x=False`` leaves x out of the pattern, so x-clipped edge blocks share it too."""
    bx, by, bz = block
    x, y, z = np.meshgrid(*(np.arange(n) for n in shape[:3]), indexing="ij")
    pos = (y % by) + by * (z % bz)
    if over_x:
        pos = (x % bx) + bx * pos
    labels = rng.permutation(bx * by * bz)[: pos.max() + 1].astype(np.uint64) * np.uint64(2**33 + 7)
    vals = labels[pos].astype(dtype)
    return np.stack([vals + dtype.type(c) for c in range(shape[3])], axis=-1)


def _chunks(block, dtype, channels, rng):
    """(name, array) pairs: full and edge-clipped chunk shapes, tiled and random contents."""
    bx, by, bz = block
    full = (3 * bx, 2 * by, 2 * bz, channels)
    clipped_x = (3 * bx + 1, 2 * by, 2 * bz, channels)
    clipped = (3 * bx + 1, 2 * by + min(1, by - 1), 2 * bz + min(1, bz - 1), channels)
    dt = np.dtype(dtype)
    yield "tiled-full", _tiled(full, block, dt, rng, over_x=True)
    yield "tiled-yz-full", _tiled(full, block, dt, rng, over_x=False)
    yield "tiled-yz-clipped-x", _tiled(clipped_x, block, dt, rng, over_x=False)
    yield "tiled-clipped", _tiled(clipped, block, dt, rng, over_x=True)
    yield "labels-clipped", random_volume(clipped, dtype, rng, labels=7)
    yield "random-clipped", random_volume(clipped, dtype, rng)  # many values: 16- and 32-bit blocks
    yield "constant-clipped", np.full(clipped, 5, dtype)


def _library_encode(arr: np.ndarray, block) -> bytes:
    """The compressed-segmentation package's bytes, one channel at a time, with our channel table."""
    import compressed_segmentation as cs

    nc = arr.shape[3]
    parts = [cs.compress(np.asfortranarray(arr[..., c]), block_size=block, order="F")[4:] for c in range(nc)]
    offsets = np.cumsum([nc] + [len(p) // 4 for p in parts[:-1]])
    return offsets.astype("<u4").tobytes() + b"".join(parts)


def _all_points(shape) -> np.ndarray:
    return np.stack(np.meshgrid(*(np.arange(n) for n in shape[:3]), indexing="ij"), -1).reshape(-1, 3)


@quiet
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("dtype", ["uint32", "uint64"])
@pytest.mark.parametrize("block", BLOCKS, ids=_bid)
def test_numpy_decodes_every_block_size(rng, monkeypatch, block, dtype, channels):
    """Block volumes that are not a multiple of 32 (2x2x2, 3x3x3, 5x3x1) decode without _cseg."""
    monkeypatch.setitem(sys.modules, _cseg_api.EXTENSION, None)
    assert not _cseg_api.available()
    for name, arr in _chunks(block, dtype, channels, rng):
        s = spec("compressed_segmentation", arr.shape, dtype, block=block)
        for data in {_library_encode(arr, block), cseg.encode(arr, s)}:
            got = cseg.decode(data, s)
            assert got.dtype == np.dtype(dtype) and got.flags.f_contiguous, name
            np.testing.assert_array_equal(got, arr, err_msg=f"{name} {block}")
            xyz = _all_points(arr.shape)
            np.testing.assert_array_equal(cseg.decode_points(data, s, xyz), arr[xyz[:, 0], xyz[:, 1], xyz[:, 2]])
            lo, hi = (1, 0, 1), tuple(n - 1 if n > 2 else n for n in arr.shape[:3])
            sub, origin = cseg.decode_region(data, s, lo, hi)
            assert origin == lo
            np.testing.assert_array_equal(sub, arr[1 : hi[0], 0 : hi[1], 1 : hi[2]])


@quiet
@pytest.mark.parametrize("block", BLOCKS, ids=_bid)
def test_numpy_and_c_are_bit_identical(rng, monkeypatch, block):
    """Same bytes in, same array out (values, dtype, order) from both decoders, and same bytes written."""
    if not _cseg_api.available():
        pytest.skip("the C extension is not built")
    for dtype in ("uint32", "uint64"):
        for name, arr in _chunks(block, dtype, 2, rng):
            s = spec("compressed_segmentation", arr.shape, dtype, block=block)
            data = cseg.encode(arr, s)
            xyz = rng.integers(0, arr.shape[:3], size=(200, 3))
            lo = [int(rng.integers(0, n)) for n in arr.shape[:3]]
            hi = [int(rng.integers(l + 1, n + 1)) for l, n in zip(lo, arr.shape[:3])]
            with_c = cseg.decode(data, s), cseg.decode_points(data, s, xyz), cseg.decode_region(data, s, lo, hi)[0]
            with monkeypatch.context() as m:
                m.setitem(sys.modules, _cseg_api.EXTENSION, None)
                assert cseg.encode(arr, s) == data, name
                without = cseg.decode(data, s), cseg.decode_points(data, s, xyz), cseg.decode_region(data, s, lo, hi)[0]
            for a, b in zip(with_c, without):
                assert a.dtype == b.dtype and a.shape == b.shape and a.strides == b.strides, name
                assert a.tobytes(order="A") == b.tobytes(order="A"), name


@quiet
def test_numpy_path_on_corrupt_chunks_raises_only_decode_error(rng, monkeypatch):
    """Flipped bytes and cuts: the numpy path gives values or a DecodeError, never another error."""
    monkeypatch.setitem(sys.modules, _cseg_api.EXTENSION, None)
    arr = random_volume((13, 7, 5, 2), "uint64", rng, labels=9)
    s = spec("compressed_segmentation", arr.shape, "uint64", block=(3, 3, 3))
    data = cseg.encode(arr, s)
    xyz = _all_points(arr.shape)
    for _ in range(300):
        bad = bytearray(data)
        for i in rng.integers(0, len(bad), 4):
            bad[i] = int(rng.integers(0, 256))
        bad = bytes(bad[: len(bad) - int(rng.integers(0, 3)) * 4])
        for call in (lambda: cseg.decode(bad, s), lambda: cseg.decode_points(bad, s, xyz[::7]),
                     lambda: cseg.decode_region(bad, s, (1, 1, 1), (9, 6, 4))):
            try:
                call()
            except DecodeError:
                pass
    with pytest.raises(DecodeError, match="outside the chunk"):
        cseg.points_numpy(data, s, np.array([[13, 0, 0]]))


def test_missing_extension_warns_once(rng, monkeypatch):
    arr = random_volume((10, 9, 8, 1), "uint32", rng, labels=5)
    s = spec("compressed_segmentation", arr.shape, "uint32", block=(4, 4, 4))
    data = cseg.encode(arr, s)
    monkeypatch.delenv(_cseg_api.DISABLE_ENV, raising=False)
    monkeypatch.setitem(sys.modules, _cseg_api.EXTENSION, None)
    cseg._warn_fallback.cache_clear()
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")  # even so: once per process
            cseg.decode(data, s)
            cseg.decode_points(data, s, np.zeros((1, 3), int))
            cseg.decode_region(data, s, (0, 0, 0), (2, 2, 2))
        ours = [w for w in seen if issubclass(w.category, cseg.CsegFallbackWarning)]
        assert len(ours) == 1
        msg = str(ours[0].message)
        assert "numpy fallback" in msg and "70x slower" in msg and "C compiler" in msg and "CVL_NO_C_EXT" in msg
    finally:
        cseg._warn_fallback.cache_clear()


def test_no_warning_with_c_or_when_numpy_is_chosen(rng, monkeypatch):
    arr = random_volume((10, 9, 8, 1), "uint32", rng, labels=5)
    s = spec("compressed_segmentation", arr.shape, "uint32", block=(4, 4, 4))
    data = cseg.encode(arr, s)
    cseg._warn_fallback.cache_clear()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", cseg.CsegFallbackWarning)
            if _cseg_api.available():
                np.testing.assert_array_equal(cseg.decode(data, s), arr)
            monkeypatch.setenv(_cseg_api.DISABLE_ENV, "1")  # read at call time
            assert not _cseg_api.available()
            np.testing.assert_array_equal(cseg.decode(data, s), arr)
            np.testing.assert_array_equal(cseg.decode_points(data, s, np.array([[9, 8, 7]])), arr[9:, 8, 7])
        assert "CVL_NO_C_EXT is set" in cseg.decoder_status()
        monkeypatch.setenv(_cseg_api.DISABLE_ENV, "0")  # "0" means: do not disable
        assert _cseg_api.available() == _has_extension()
    finally:
        cseg._warn_fallback.cache_clear()


def _has_extension() -> bool:
    try:
        __import__(_cseg_api.EXTENSION)
    except ImportError:
        return False
    return sys.modules.get(_cseg_api.EXTENSION) is not None


def test_wrapper_is_keyword_only_and_reports_a_missing_extension(monkeypatch):
    arr = np.zeros((4, 4, 4, 1), np.uint32)
    with pytest.raises(TypeError):
        _cseg_api.encode(arr, (4, 4, 4))  # type: ignore[misc]
    monkeypatch.setitem(sys.modules, _cseg_api.EXTENSION, None)
    with pytest.raises(ImportError, match="not available"):
        _cseg_api.encode(array=arr, block_size=(4, 4, 4))
    out = np.zeros((1, 1), np.uint32)
    with pytest.raises(ImportError):
        _cseg_api.lookup_points(data=b"", itemsize=4, chunk_shape=(4, 4, 4), num_channels=1, block_size=(4, 4, 4),
                                xyz=np.zeros((1, 3), np.int64), out=out)


@quiet
@pytest.mark.parametrize("block", [(3, 3, 3), (8, 4, 2)], ids=_bid)
def test_volume_reads_without_the_extension(tmp_path, rng, cseg_backend, block):  # noqa: F811
    """Whole reads, cutouts, strided reads and scattered points through Volume, in both modes."""
    truth = random_volume((45, 38, 21, 1), "uint64", rng, labels=300)
    url = ts_write(tmp_path / "v", truth, offset=(-7, 3, 5), chunk=(16, 16, 8), encoding="compressed_segmentation",
                   block=block)
    vol = cvl.Volume(url)
    np.testing.assert_array_equal(vol[...], truth)
    np.testing.assert_array_equal(vol[-3:20, 10:30, 9:20], truth[4:27, 7:27, 4:15])
    np.testing.assert_array_equal(vol[-7:38:3, 3:41:2, 5:26:4], truth[::3, ::2, ::4])
    pts = np.stack([rng.integers(lo, hi, 2000) for lo, hi in zip(vol.bounds.minpt, vol.bounds.maxpt)], axis=1)
    local = pts - np.asarray(vol.voxel_offset)
    np.testing.assert_array_equal(vol.scattered_points(pts), truth[local[:, 0], local[:, 1], local[:, 2], 0])


def test_cvl_info_names_the_decoder(tmp_path, rng, monkeypatch, capsys):
    truth = random_volume((20, 20, 10, 1), "uint32", rng, labels=9)
    url = ts_write(tmp_path / "v", truth, chunk=(16, 16, 8), encoding="compressed_segmentation")
    monkeypatch.delenv(_cseg_api.DISABLE_ENV, raising=False)
    if _cseg_api.available():
        assert cvl_main(["info", url]) == 0
        assert "compressed_segmentation decoder: C extension (fast)" in capsys.readouterr().out
    monkeypatch.setitem(sys.modules, _cseg_api.EXTENSION, None)
    assert cvl_main(["info", url]) == 0
    assert ("compressed_segmentation decoder: numpy fallback (~70x slower: reinstall with a C compiler)"
            in capsys.readouterr().out)
    raw = ts_write(tmp_path / "raw", truth.astype(np.uint8), chunk=(16, 16, 8))
    assert cvl_main(["info", raw]) == 0
    assert "decoder" not in capsys.readouterr().out  # only cseg volumes mention it
