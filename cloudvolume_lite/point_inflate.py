"""Gzip'd chunks inflated for point reads into a buffer kept per thread, without the GIL.

libdeflate (the ``deflate`` extra) inflates label data 3-4x faster than zlib, but its Python
binding allocates a new output per call; so it is called through ctypes, where the package's
extension exports it (else a system ``libdeflate``), and each thread reuses one output buffer
(a fresh 2 MiB buffer per chunk costs page faults, and a copy to ``bytes``).

Every stream is inflated whole and checked against its CRC and stated size, as a chunk read
is: a point never comes from bytes a full read would refuse. (Stopping at the last point's
offset would save about a third of the inflate on sparse raw points, but a prefix cannot be
checked: the CRC covers the whole stream.) Anything unusual (several gzip members, a stated
size over the bound, damage) goes to :func:`compression.decompress`, which raises the error.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import threading
import zlib
from typing import Any

import numpy as np

from . import compression

#: libdeflate_result values
_SUCCESS = 0


class _Lib:
    """The libdeflate functions used here, with their C signatures."""

    def __init__(self, lib: ctypes.CDLL):
        p, sz = ctypes.c_void_p, ctypes.c_size_t
        self.alloc = lib.libdeflate_alloc_decompressor
        self.alloc.argtypes, self.alloc.restype = [], p
        self.free = lib.libdeflate_free_decompressor
        self.free.argtypes, self.free.restype = [p], None
        self.gzip = lib.libdeflate_gzip_decompress_ex
        self.gzip.argtypes = [p, p, sz, p, sz, ctypes.POINTER(sz), ctypes.POINTER(sz)]
        self.gzip.restype = ctypes.c_int


@functools.lru_cache(maxsize=1)
def libdeflate() -> _Lib | None:
    """libdeflate's decompression functions, or None: from the ``deflate`` package's extension
    (a recent libdeflate, which exports them), else a system libdeflate (loaded once)."""
    candidates = []
    try:
        import deflate._deflate as ext

        candidates.append(ext.__file__)
    except ImportError:
        pass
    found = ctypes.util.find_library("deflate")
    if found:
        candidates.append(found)
    for path in candidates:
        try:
            return _Lib(ctypes.CDLL(path))  # ctypes releases the GIL during each call
        except (OSError, AttributeError):
            continue
    return None


class _Slot:
    """One thread's decompressor and output buffer (the decompressor freed with it)."""

    def __init__(self, lib: _Lib):
        self.lib = lib
        self.handle = lib.alloc()
        if not self.handle:
            raise MemoryError("libdeflate could not allocate a decompressor")
        self.buf = np.empty(0, np.uint8)

    def room(self, n: int) -> np.ndarray:
        if len(self.buf) < n:
            self.buf = np.empty(max(n, 2 * len(self.buf)), np.uint8)
        return self.buf

    def __del__(self) -> None:
        if getattr(self, "handle", None):
            self.lib.free(self.handle)
            self.handle = None


class Inflater:
    """Inflates gzip streams for one read: ``limit`` bounds what one may inflate to (as the
    store's ``decoded_limit``). Threads share it; each has its own buffer, so a result is valid
    until the same thread's next call."""

    def __init__(self, limit: int | None = None, use_libdeflate: bool = True):
        self.limit = limit
        self.lib = libdeflate() if use_libdeflate else None
        self._local = threading.local()

    def _slot(self) -> _Slot:
        slot = getattr(self._local, "slot", None)
        if slot is None:
            slot = self._local.slot = _Slot(self.lib)  # type: ignore[arg-type]
        return slot

    def inflate(self, data: Any, what: str) -> memoryview | bytes:
        """The whole gzip stream ``data``, CRC- and size-checked; ``what`` names it in errors.
        A memoryview of this thread's buffer is valid until the thread's next call."""
        stated = int.from_bytes(bytes(memoryview(data)[-4:]), "little") if len(data) >= 18 else None
        if self.lib is not None and stated is not None and (self.limit is None or stated <= self.limit):
            got = self._whole(self._slot(), data, stated)
            if got is not None:
                return memoryview(got)
        return compression.decompress(bytes(data), "gzip", what, self.limit)

    def _whole(self, slot: _Slot, data: Any, stated: int) -> np.ndarray | None:
        """The whole stream (libdeflate checks its CRC and size) when it is one gzip member of
        the size it states; else None."""
        buf = slot.room(max(stated, 1))
        used_in, used_out = ctypes.c_size_t(), ctypes.c_size_t()
        rc = self.lib.gzip(slot.handle, _address(data), len(data), buf.ctypes.data, stated,  # type: ignore[union-attr]
                           ctypes.byref(used_in), ctypes.byref(used_out))
        if rc != _SUCCESS or used_in.value != len(data) or used_out.value != stated:
            return None
        return buf[:stated]


def _address(data: Any) -> int:
    """The address of a bytes-like object's first byte (kept alive by the caller's reference)."""
    if isinstance(data, bytes):
        return ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value or 0
    arr = np.frombuffer(data, np.uint8)
    return arr.ctypes.data


__all__ = ["Inflater", "libdeflate"]
