"""Type stubs for the C extension built from ``_pointio.c``. Call it through ``point_files``.

Reads untrusted chunk files with bounds checks and releases the GIL while it works; arguments
that do not fit raise ``ValueError``.
"""

from collections.abc import Sequence

from typing_extensions import Buffer

def read_points(
    paths: Sequence[bytes],
    kind: int,
    itemsize: int,
    nc: int,
    shapes: Buffer,
    block: Sequence[int],
    chunk: Sequence[int],
    offsets: Buffer,
    splits: Buffer,
    out: Buffer,
    status: Buffer,
    /,
) -> tuple[int, str] | None:
    """Values of plain chunk files at points, point-major into ``out`` ((N, nc) little-endian).

    ``kind``: 0 raw, 1 compressed_segmentation (block size ``block``); ``shapes``: (G, 3) int64
    clipped chunk shapes; ``offsets``: (N,) uint32 linear offsets with the full chunk size
    ``chunk``'s strides, chunk ``g``'s at ``offsets[splits[g]:splits[g + 1]]`` (``splits``:
    (G + 1,) int64); ``status``: (G,) int64, per chunk 0 read, 1 no such file, 2 not opened.
    Returns the first damaged chunk as (g, what is wrong) and stops there; else None.
    """
