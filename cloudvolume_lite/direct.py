"""Direct reads of raw chunks from plain local files: only the z-slab a request needs, and
where the C extension is built, read and pasted into the output in one call without the GIL.

A store says it can (``Store.cheap_ranges``: its ranged reads cost no more than whole ones,
true of ``LocalStore`` only, so caches and sharding keep seeing whole chunks), and a codec
says it can (``slab_ranges``; ``paste_from_file``). Anything else (a ``.gz`` sibling, a
missing chunk) goes through the store's ordinary ``get``.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Callable, Mapping

import numpy as np

from .codecs import ChunkSpec
from .plan import Paste
from .stores import Store


@dataclass(frozen=True)
class Slab:
    """The ranges of a chunk's z-slab that a request needs (codec ``slab_ranges``), read from a
    store whose ranged reads cost no more than whole ones: the rest of the chunk is never read."""

    parts: list[bytes]


#: what a direct fetch returns for a chunk it has already pasted into the output
PASTED = object()


def direct_fetch(store: Store, codec: ModuleType, todo: Mapping[str, Paste], spec_of: Callable[[Paste], ChunkSpec],
                 out: np.ndarray, channels: slice) -> Callable[[str], object] | None:
    """A ``get`` for the read's batch that reads ``todo``'s chunks directly, or None when the
    store or codec cannot (then the store's own ``iter_get`` is the better batch)."""
    if not store.cheap_ranges:
        return None
    from_file = getattr(codec, "paste_from_file", None)
    file_path = getattr(store, "file_path", None)
    # the C paster copies bytes as stored: little-endian, into a contiguous output
    if (from_file is not None and file_path is not None and out.flags.f_contiguous and out.dtype.isnative
            and np.little_endian):
        def paste_now(name: str) -> object:
            p = todo[name]
            if from_file(file_path(name), spec_of(p), p.src, channels, out, tuple(d.start for d in p.dst)):
                return PASTED
            return store.get(name)  # a compressed sibling, or absent

        return paste_now
    slabs = getattr(codec, "slab_ranges", None)
    if slabs is None or all(p.src[2].start == 0 and p.src[2].stop == p.shape[2] for p in todo.values()):
        return None

    def slab(name: str) -> object:
        p = todo[name]
        z0, z1 = p.src[2].start, p.src[2].stop
        if z0 == 0 and z1 == p.shape[2]:
            return store.get(name)
        parts = store.get_decoded_ranges(name, slabs(spec_of(p), z0, z1))
        return None if parts is None else Slab(parts)

    return slab
