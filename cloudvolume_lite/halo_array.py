"""The lazy dask array ``Volume.map_overlap`` returns without ``out``: one task per block (each
reads its block plus halo and runs ``fn``), and a ``compute`` that assembles the blocks into
one array cheaply.

dask's own assembly (``concatenate3``) pastes the blocks one after another, in one thread,
into a fresh ``np.empty``, whose pages numpy advises huge: where the kernel compacts memory to
find huge pages, first touching that output costs about half as much as all the blocks'
filtering (bench_halo, 244 MB on a 2-core VM: 0.54-0.65 s, nearly all system time, after
0.94 s of tasks; 0.08-0.16 s here). Here the output comes from :func:`~cloudvolume_lite.output.allocate`, as a read's
does (ordinary pages faulted in by the Runtime's threads where huge pages would stall), in the
memory order the blocks have, and the Runtime's threads paste the blocks into it.

Only a ``compute`` of this very array assembles this way: what dask derives from it (a slice,
a sum, ``persist``) is a plain ``dask.array.Array``.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from .bbox import Bbox
from .dask import _import_dask
from .output import allocate

da = _import_dask()  # this module is imported only when a map_overlap returns a dask array

if TYPE_CHECKING:
    from .runtime import Runtime
    from .volume import Volume


def block_starts(chunks: Sequence[Sequence[int]]) -> list[list[int]]:
    """Where each block starts along each axis, for dask's ``chunks``."""
    return [list(itertools.accumulate(c[:-1], initial=0)) for c in chunks]


def fortran_order(block: np.ndarray) -> bool:
    """Whether ``block`` (maybe a view) runs fastest along its first axis, as a read's output
    does (``fn``'s own result, a scipy filter's, usually runs fastest along the last)."""
    big = [i for i, n in enumerate(block.shape) if n > 1]
    return len(big) > 1 and abs(block.strides[big[0]]) < abs(block.strides[big[-1]])


def assemble(results: Any, chunks: tuple[tuple[int, ...], ...], dtype: np.dtype,
             runtime: "Runtime | None" = None) -> np.ndarray:
    """The whole array from the nested lists of blocks dask hands a collection's finalizer
    (``results[i][j][k][c]``): allocated as a read's output is, in the first block's memory
    order (a copy across orders costs ~3x one along), and pasted by ``runtime``'s threads
    (numpy's copy releases the GIL; without a runtime, by this one)."""
    starts = block_starts(chunks)
    places = list(itertools.product(*(range(len(c)) for c in chunks)))
    shape = tuple(sum(c) for c in chunks)

    def block(index: tuple[int, ...]) -> np.ndarray:
        got = results
        for i in index:
            got = got[i]
        return np.asarray(got)

    if not places:
        return np.empty(shape, dtype)
    if fortran_order(block(places[0])):
        out = allocate(shape, dtype, zeroed=False, runtime=runtime)
    else:  # C order: the transpose of a Fortran-order array of the reversed shape
        out = allocate(shape[::-1], dtype, zeroed=False, runtime=runtime).T

    def paste(index: tuple[int, ...]) -> None:
        where = tuple(slice(s[i], s[i] + c[i]) for s, c, i in zip(starts, chunks, index))
        out[where] = block(index)

    if runtime is None:
        for index in places:
            paste(index)
    else:
        runtime.run(paste, places, runtime.workers_for_cpu)
    return out


class OverlapArray(da.Array):
    """A ``dask.array.Array`` whose ``compute`` assembles its blocks with :func:`assemble` on
    the threads of the Runtime it was made with."""

    def __dask_postcompute__(self) -> tuple[Callable[..., Any], tuple]:
        return assemble, (self.chunks, self.dtype, getattr(self, "_cvl_runtime", None))


def overlap_array(vol: "Volume", task: Callable[[str, Bbox], tuple], shared: Any, boxes: list[Bbox],
                  axes: Sequence[tuple[int, ...]], name: str, dtype: np.dtype) -> Any:
    """A lazy dask array with one task per block, ``task(key of shared, box)`` (the blocks of
    :func:`~cloudvolume_lite.halo.tiles`, in its x-fastest order), and no other tasks but
    ``shared`` (one per worker, shared by its tasks); ``compute`` assembles it on ``vol``'s threads."""
    from dask.highlevelgraph import HighLevelGraph

    vkey = name + "-volume"
    graph: dict[Any, Any] = {vkey: shared}
    counts = [len(a) for a in axes]
    for n, box in enumerate(boxes):
        i, j, k = n % counts[0], (n // counts[0]) % counts[1], n // (counts[0] * counts[1])
        graph[(name, i, j, k, 0)] = task(vkey, box)
    hlg = HighLevelGraph.from_collections(name, graph, dependencies=())
    arr = OverlapArray(hlg, name, chunks=(*axes, (vol.num_channels,)), dtype=dtype)
    arr._cvl_runtime = vol.runtime
    return arr


__all__ = ["OverlapArray", "assemble", "block_starts", "fortran_order", "overlap_array"]
