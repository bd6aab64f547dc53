"""The C compressed_segmentation decoder block by block: every index width (1-32 bits), short
tables at a channel's end, and windows that start and stop inside blocks, against an
independent encoder written here and the numpy decoder.

The encoder below chooses each block's width itself (also wider than needed, up to 32 bits,
which the reference encoders never write for 8x8x8 blocks) and puts each block's table right
after its indices, so the last block's table ends its channel: there an index width can hold
more entries than the table has, and the decoder must check each index instead of trusting it.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from cloudvolume_lite.codecs import _cseg_api, cseg
from cloudvolume_lite.errors import DecodeError
from test_codecs import spec

pytestmark = pytest.mark.skipif(not _cseg_api.available(), reason="the C extension is not built")

WIDTHS = (0, 1, 2, 4, 8, 16, 32)


def _pack(indices: np.ndarray, bits: int) -> list[int]:
    """Indices (x fastest) packed ``bits`` each into little-endian 32-bit words."""
    if bits == 0:
        return []
    words = [0] * ((bits * len(indices) + 31) // 32)
    for i, v in enumerate(indices.tolist()):
        bit = i * bits
        words[bit >> 5] |= int(v) << (bit & 31)
    return words


def encode(arr: np.ndarray, block, widths=None, rng=None) -> bytes:
    """A one-channel chunk (X, Y, Z) encoded block by block; ``widths`` picks each block's bits
    (default: the smallest that fits; with ``rng``, a random wider one)."""
    wpv = arr.dtype.itemsize // 4
    grid = [-(-n // b) for n, b in zip(arr.shape, block)]
    nblocks = grid[0] * grid[1] * grid[2]
    head, body = [], []
    pos = 2 * nblocks
    for bz in range(grid[2]):
        for by in range(grid[1]):
            for bx in range(grid[0]):
                lo = (bx * block[0], by * block[1], bz * block[2])
                sub = arr[lo[0] : lo[0] + block[0], lo[1] : lo[1] + block[1], lo[2] : lo[2] + block[2]]
                full = np.zeros(block, arr.dtype)  # edge blocks are padded (with the first table value)
                full[...] = sub.flat[0]
                full[: sub.shape[0], : sub.shape[1], : sub.shape[2]] = sub
                table, inv = np.unique(full, return_inverse=True)
                need = next(w for w in WIDTHS if len(table) <= (1 << w))
                bits = need if widths is None else widths(need, rng)
                values = _pack(inv.reshape(block).ravel(order="F"), bits)
                head += [pos + len(values) | bits << 24, pos]
                tw = table.view("<u4").tolist() if wpv == 2 else table.astype("<u4").tolist()
                body += values + tw
                pos += len(values) + len(tw)
    return np.array([1] + head + body, "<u4").tobytes()


def _wider(need: int, rng) -> int:
    return int(rng.choice([w for w in WIDTHS if w >= max(need, 1)] + ([0] if need == 0 else [])))


def _labels(shape, dtype, rng, per_block: int) -> np.ndarray:
    """Labels with about ``per_block`` values per 8^3 region, some blocks constant."""
    base = rng.integers(0, per_block, size=shape).astype(np.uint64)
    base[: shape[0] // 3] = 3  # a constant slab: 0-bit blocks
    big = np.uint64(2**40 + 11) if np.dtype(dtype) == np.uint64 else np.uint64(1000003)
    return (base * big + np.uint64(7)).astype(dtype)


def _decode_window(data: bytes, s, lo, hi, out_shape, dlo) -> np.ndarray:
    out = np.full((*out_shape, 1), 99, dtype=s.dtype, order="F")
    assert cseg.decode_into(data, s, lo, hi, slice(0, 1, 1), out, dlo)
    return out


@pytest.mark.parametrize("dtype", ["uint32", "uint64"])
@pytest.mark.parametrize("block", [(8, 8, 8), (4, 4, 4), (8, 4, 2), (3, 5, 2)], ids=lambda b: "x".join(map(str, b)))
def test_every_width_and_window_matches_numpy(rng, monkeypatch, dtype, block):
    shape = (2 * block[0] + 3, 2 * block[1] + 1, 2 * block[2] + 1)
    for per_block in (1, 2, 3, 5, 16, 200):
        arr = _labels(shape, dtype, rng, per_block)
        s = spec("compressed_segmentation", (*shape, 1), dtype, block=block)
        data = encode(arr, block, _wider, rng)
        np.testing.assert_array_equal(cseg.decode(data, s)[..., 0], arr)
        for _ in range(12):  # windows that begin and end inside blocks, placed inside a bigger output
            lo = [int(rng.integers(0, n)) for n in shape]
            hi = [int(rng.integers(l + 1, n + 1)) for l, n in zip(lo, shape)]
            dlo = [int(v) for v in rng.integers(0, 4, size=3)]
            out_shape = [h - l + d + int(rng.integers(0, 3)) for l, h, d in zip(lo, hi, dlo)]
            got = _decode_window(data, s, lo, hi, out_shape, dlo)
            want = np.full((*out_shape, 1), 99, dtype=dtype, order="F")
            win = tuple(slice(d, d + h - l) for l, h, d in zip(lo, hi, dlo))
            want[win] = arr[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2], None]
            np.testing.assert_array_equal(got, want)  # nothing outside the window is touched
            with monkeypatch.context() as m:
                m.setitem(sys.modules, _cseg_api.EXTENSION, None)
                np.testing.assert_array_equal(cseg.region_numpy(data, s, lo, hi), arr[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2], None])


@pytest.mark.parametrize("dtype", ["uint32", "uint64"])
@pytest.mark.parametrize("bits", [2, 4, 8, 16, 32])  # 1 bit cannot point past a 2-entry table
def test_short_table_at_channel_end_is_checked_per_index(dtype, bits):
    """The last block's table ends the channel and holds fewer entries than its width allows:
    a valid chunk decodes, and one index past the table is a DecodeError, not a read past the end."""
    block = (8, 8, 8)
    arr = np.zeros((8, 8, 16), dtype)
    arr[..., :8] = 5
    arr[0, 0, 8:] = 9  # the second (last) block: two values, stored with `bits` bits
    s = spec("compressed_segmentation", (8, 8, 16, 1), dtype, block=block)
    data = encode(arr, block, lambda need, _: bits if need else 0)
    np.testing.assert_array_equal(cseg.decode(data, s)[..., 0], arr)
    words = np.frombuffer(data, "<u4").copy()
    h0, h1 = int(words[1 + 2]), int(words[1 + 3])  # the last block's header (after the channel table)
    assert h0 >> 24 == bits
    values = 1 + (h1 & 0xFFFFFF)
    # the last voxel's index becomes 2: past a 2-entry table that ends the chunk
    bit = bits * 511
    words[values + (bit >> 5)] |= np.uint32(2 << (bit & 31))
    with pytest.raises(DecodeError, match="lookup index past the block's table"):
        cseg.decode(words.tobytes(), s)
    # a window that avoids the bad voxel reads fine; one that includes it raises
    out = np.zeros((8, 8, 16, 1), dtype, order="F")
    assert cseg.decode_into(words.tobytes(), s, (0, 0, 0), (7, 8, 16), slice(0, 1, 1), out, (0, 0, 0))
    with pytest.raises(DecodeError, match="lookup index past"):
        cseg.decode_into(words.tobytes(), s, (7, 7, 15), (8, 8, 16), slice(0, 1, 1), out, (0, 0, 0))


def test_empty_window_writes_nothing(rng):
    arr = _labels((16, 16, 16), "uint64", rng, 4)
    s = spec("compressed_segmentation", (16, 16, 16, 1), "uint64", block=(8, 8, 8))
    data = encode(arr, (8, 8, 8))
    out = np.full((4, 4, 4, 1), 1, np.uint64, order="F")
    assert cseg.decode_into(data, s, (3, 3, 3), (3, 7, 7), slice(0, 1, 1), out, (0, 0, 0))
    assert (out == 1).all()
