"""Type stubs for the C extension built from ``_rawio.c``. Call it through ``codecs.raw``.

``paste_file`` opens, size-checks, reads and pastes one raw chunk's z-slab with the GIL
released; arguments that do not fit the slab or the output raise ``ValueError``.
"""

from typing_extensions import Buffer

def paste_file(
    path: str,
    file_size: int,
    offset: int,
    ex: int,
    ey: int,
    ez: int,
    lo: tuple[int, int, int],
    n: tuple[int, int, int],
    steps: tuple[int, int, int],
    itemsize: int,
    out: Buffer,
    dst: int,
    strides: tuple[int, int, int],
) -> int: ...

def paste_bytes(
    data: Buffer,
    offset: int,
    ex: int,
    ey: int,
    ez: int,
    lo: tuple[int, int, int],
    n: tuple[int, int, int],
    steps: tuple[int, int, int],
    itemsize: int,
    out: Buffer,
    dst: int,
    strides: tuple[int, int, int],
) -> None: ...
