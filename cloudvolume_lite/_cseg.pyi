"""Type stubs for the C extension built from ``_cseg.c``. Call it through ``codecs._cseg_api``.

Every function reads untrusted chunk bytes with bounds checks, releases the GIL while it
works, and raises ``ValueError`` (a corrupt chunk, or arguments that do not fit).
"""

from collections.abc import Sequence

from typing_extensions import Buffer

def decode_into(
    data: Buffer,
    itemsize: int,
    shape: Sequence[int],
    nc_chunk: int,
    block: Sequence[int],
    lo: Sequence[int],
    hi: Sequence[int],
    c0: int,
    cstep: int,
    ncout: int,
    out: Buffer,
    oshape: Sequence[int],
    dlo: Sequence[int],
    /,
) -> None:
    """Decode chunk-local ``[lo, hi)`` of channels ``c0 + k*cstep`` (k < ncout) into ``out``.

    ``data``: the chunk; ``itemsize``: 4 (uint32) or 8 (uint64); ``shape``: the chunk's
    (x, y, z) extent after clipping; ``nc_chunk``: its channel count; ``block``: the block
    size; ``out``: a writable flat buffer holding a Fortran-order array of shape ``oshape``
    (x, y, z, c); ``dlo``: where ``lo`` lands in it.
    """

def lookup_points(
    data: Buffer,
    itemsize: int,
    shape: Sequence[int],
    nc: int,
    block: Sequence[int],
    xyz: Buffer,
    out: Buffer,
    /,
) -> None:
    """Values at chunk-local points ``xyz`` ((N, 3) int64, C order) into ``out`` ((N, nc), C order)."""

def lookup_offsets(
    data: Buffer,
    itemsize: int,
    shape: Sequence[int],
    nc: int,
    block: Sequence[int],
    offsets: Buffer,
    out: Buffer,
    /,
) -> None:
    """Values at linear voxel offsets ``offsets`` ((N,) uint32, x fastest) into ``out`` ((N, nc), C order)."""

def group_points(
    pts: Buffer,
    lo: Sequence[int],
    size: Sequence[int],
    chunk: Sequence[int],
    grid: Sequence[int],
    order: Buffer,
    offsets: Buffer,
    counts: Buffer,
    /,
) -> None:
    """Counting-sort points ((N, 3) int64) by chunk: ``counts`` (nchunks + 1 int64, the last
    outside the volume), ``order`` (N int64) and ``offsets`` (N uint32, chunk-local)."""

def encode(array: Buffer, block: Sequence[int], /) -> bytes:
    """Encode a 4-D (x, y, z, c) uint32/uint64 array of any strides as compressed_segmentation."""
