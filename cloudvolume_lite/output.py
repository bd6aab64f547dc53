"""The output array of a read, allocated so that touching it the first time is cheap.

numpy advises transparent huge pages (``madvise(MADV_HUGEPAGE)``) on every array of 4 MiB or
more. Where the kernel meets that advice with direct compaction (THP ``defrag`` set to
``always``, ``madvise`` or ``defer+madvise``: the usual default), the first touch of a large
output on a machine whose free memory is fragmented stalls in the kernel: 1-2.4 s of system
time per GB measured on a 2-core VM, against 0.4-0.6 s with the kernel's ordinary pages, and
two threads pasting neighbouring chunks fault the same pages at once.

On a virtual machine whose balloon reports free memory to the host, free huge blocks are
mostly memory the host has taken back, and faulting a huge page in faults on the host too.

So when that stall is possible right now (free huge blocks in ``/proc/buddyinfo`` cover less
than twice the output, or the host takes free huge blocks back and this process has not just
freed as much memory itself), a large output is an anonymous private mapping of its own, which the
kernel backs with its ordinary pages (no advice from us); otherwise numpy's allocation, whose
huge pages then cost 512x fewer faults, is the faster one (a warm 268 MB read: 158 against
231 ms), and numpy's huge pages with a prefault were slower still in fresh processes. A read that will write all of it has its pages
faulted in first by its own threads, one contiguous part each (:func:`prefault`); a read
reaching outside the bounds leaves the outside untouched: a fresh mapping is zero already.
The mapping is unmapped when the last array over it is collected. numpy's process-wide
huge-page switch is left alone: the program's other arrays keep numpy's behaviour.
"""

from __future__ import annotations

import ctypes
import math
import mmap
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .runtime import Runtime

#: outputs smaller than this come from numpy as before: below glibc's largest mmap threshold
#: (32 MiB on 64-bit) malloc may hand back memory a previous read freed, already faulted in, so
#: repeated cutouts touch no new pages; a mapping of its own would fault (and prefault) every
#: page again each time (20 cutouts of ~27 MB on cseg: 10 ms of prefault each, 2.5x slower)
MAPPED_MIN_BYTES = 32 << 20

#: Linux 5.14+: fault a range of a mapping in, writeable, in one call
MADV_POPULATE_WRITE = 23
#: the least bytes worth a prefaulting thread of its own
PREFAULT_PART_MIN = 16 << 20

_THP = Path("/sys/kernel/mm/transparent_hugepage")
#: ``defrag`` modes in which a THP fault in a region advised MADV_HUGEPAGE takes a huge page
#: only if one is free; in the others (``always``, ``madvise``, ``defer+madvise``) it may
#: compact memory synchronously: the stall above
QUIET_DEFRAG = ("defer", "never")


def thp_mode(name: str, root: Path = _THP) -> str | None:
    """The selected value of ``/sys/kernel/mm/transparent_hugepage/<name>`` ("[madvise]" ->
    "madvise"), or None where the file is absent or unreadable."""
    try:
        text = (root / name).read_text()
    except OSError:
        return None
    start, end = text.find("["), text.find("]")
    return text[start + 1 : end] if 0 <= start < end else None


def huge_pages_are_free(root: Path = _THP) -> bool:
    """Whether advising huge pages speeds a first touch without risking a compaction stall:
    THP is on for advised regions, and a fault never compacts memory to find a huge page."""
    return thp_mode("enabled", root) in ("always", "madvise") and thp_mode("defrag", root) in QUIET_DEFRAG


def free_huge_bytes(path: Path = Path("/proc/buddyinfo")) -> int | None:
    """Bytes the kernel holds free in blocks of a huge page (2 MiB, order 9) or more, over all
    zones (``/proc/buddyinfo``); None where it does not say. Huge pages cost a fault no stall
    while this covers them: compaction only runs when no free block is left."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    total = 0
    for line in lines:
        counts = line.split()[4:]  # "Node 0, zone Normal c0 c1 ...": counts by order 0..10
        total += sum(int(c) << order for order, c in enumerate(counts) if order >= 9)
    return total * mmap.PAGESIZE


#: virtio's device id of a memory balloon, and its feature bit for free page reporting
VIRTIO_ID_BALLOON = 5
VIRTIO_BALLOON_F_REPORTING = 5
#: a huge page's order (2 MiB of 4 KiB pages)
HUGE_ORDER = 9
#: the first touch of huge pages the host has taken back, as the harness-free benchmark
#: (bench_floor: a fresh process after 3 s idle, medians of 7) saw it on cseg: 268 MB at 43%
#: of the floor with numpy's allocation (0.59 s of system time), 1 GiB at 26-56%; with
#: ordinary pages 1 GiB reached 77% (0.42 s). Ordinary pages cost repeated reads in one
#: process, though (256 MiB: 131-150 ms against 74-124 with numpy's huge pages just freed by
#: the read before), hence :func:`freed_bytes`.


def reports_free_pages(devices: Path = Path("/sys/bus/virtio/devices"),
                       order_file: Path = Path("/sys/module/page_reporting/parameters/page_reporting_order")) -> bool:
    """Whether this (virtual) machine hands free blocks of a huge page or more back to its
    host: a virtio balloon with free page reporting, at an order a huge page reaches.

    There, the free huge blocks that ``/proc/buddyinfo`` counts are mostly memory the host has
    taken back: the first touch of a huge page faults on the host as well (2-2.7 s of system
    time per GB of output measured on a 2-core Firecracker VM), while ordinary pages come first
    from the small free blocks the kernel keeps and never reports.
    """
    try:
        if int(order_file.read_text().strip()) > HUGE_ORDER:
            return False
        entries = list(devices.iterdir())
    except (OSError, ValueError):
        return False
    for dev in entries:
        try:
            if int((dev / "device").read_text().strip(), 16) != VIRTIO_ID_BALLOON or not (dev / "driver").exists():
                continue
            features = (dev / "features").read_text().strip()  # one '0'/'1' per feature bit, bit 0 first
        except (OSError, ValueError):
            continue
        if len(features) > VIRTIO_BALLOON_F_REPORTING and features[VIRTIO_BALLOON_F_REPORTING] == "1":
            return True
    return False


def freed_bytes(statm: Path = Path("/proc/self/statm")) -> int:
    """Bytes this process has given back since its peak: its largest resident set
    (``getrusage``) less what it holds now; 0 where either is unknown.

    Where the host takes free huge blocks back, the blocks this process freed lately (the
    output of its previous read, say) are the ones the kernel hands out next, still backed by
    the host; so a read that follows a large free can take numpy's huge pages cheaply."""
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        resident = int(statm.read_text().split()[1]) * mmap.PAGESIZE
    except (ImportError, OSError, ValueError, IndexError):
        return 0
    return max(0, peak - resident)


def huge_pages_now(nbytes: int) -> bool:
    """Whether numpy's huge-page advice for ``nbytes`` is cheap right now: the kernel's THP
    policy cannot stall (:func:`huge_pages_are_free`), THP is off (no advice is taken), or free
    huge blocks cover twice ``nbytes``, so that no fault needs compaction, and either the host
    does not take free huge blocks back (:func:`reports_free_pages`) or this process has just
    freed ``nbytes`` or more (:func:`freed_bytes`), which the kernel reuses first. Then numpy's own allocation is the fastest (huge pages: 512x
    fewer faults; a warm 268 MB cseg read 158 ms against 231 with a mapping of 4 KiB pages)."""
    if huge_pages_are_free() or thp_mode("enabled") not in ("always", "madvise"):
        return True
    if reports_free_pages() and freed_bytes() < nbytes:
        return False
    free = free_huge_bytes()
    return free is None or free >= 2 * nbytes


def mapped_zeros(shape: tuple[int, ...], dtype: np.dtype, *, advise_huge: bool = False) -> np.ndarray:
    """A writeable Fortran-order array of zeros over an anonymous private mapping of its own.

    Its pages are the kernel's ordinary ones (``advise_huge`` asks for huge pages), faulted in
    by whichever thread writes them first (or by :func:`prefault`); the mapping is closed when
    the array and every view of it are gone.
    """
    dtype = np.dtype(dtype)
    count = math.prod(shape)
    buf = mmap.mmap(-1, max(1, count * dtype.itemsize), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if advise_huge:
        buf.madvise(mmap.MADV_HUGEPAGE)
    # the 1-d array owns the mapping (its base); the result is a view of it, which pickles,
    # copies and np.save's like any array
    return np.frombuffer(buf, dtype=dtype, count=count).reshape(shape, order="F")


def can_map() -> bool:
    """Whether this platform has anonymous private mappings with madvise (Linux)."""
    return sys.platform.startswith("linux") and hasattr(mmap, "MAP_ANONYMOUS") and hasattr(mmap, "MADV_HUGEPAGE")


def prefault(a: np.ndarray, runtime: Runtime) -> bool:
    """Fault in the pages of ``a`` (a :func:`mapped_zeros` array) before anything writes them:
    each of ``runtime``'s CPU loops one contiguous part, in the kernel, with the GIL released.

    Cheaper than the faults of the pasting threads themselves (a 1 GiB raw read in a fresh
    process on a 2-core VM, medians of 9: 0.99 vs 1.17 s of CPU, 1.34 vs 1.84 s wall), which
    trap once per page and, pasting neighbouring chunks, fault the same pages at once. False where the kernel cannot (before Linux 5.14):
    the pasting threads then fault the pages as they go.
    """
    page = mmap.PAGESIZE
    size = -(-a.nbytes // page) * page  # the mapping's length: whole pages
    k = max(1, min(runtime.workers_for_cpu, size // PREFAULT_PART_MIN))
    step = -(-size // k // page) * page
    parts = [(off, min(step, size - off)) for off in range(0, size, step)]
    madvise = ctypes.CDLL(None, use_errno=True).madvise  # ctypes releases the GIL in the call
    madvise.argtypes, madvise.restype = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int], ctypes.c_int
    start = a.__array_interface__["data"][0]
    failed: list[int] = []

    def populate(part: tuple[int, int]) -> None:
        if madvise(start + part[0], part[1], MADV_POPULATE_WRITE) != 0:
            failed.append(ctypes.get_errno())

    runtime.run(populate, parts, k)
    return not failed


def allocate(shape: tuple[int, ...], dtype: np.dtype, *, zeroed: bool, runtime: Runtime | None = None) -> np.ndarray:
    """The ``shape`` Fortran-order output of a read; all zeros when ``zeroed`` (it reaches
    outside the volume), else of undefined content.

    Large outputs on Linux, when huge pages would need compaction (:func:`huge_pages_now`),
    come from :func:`mapped_zeros` (zero either way), and when the read will write all of it
    (not ``zeroed``) and gives a ``runtime``, are :func:`prefault`-ed in its threads; others
    come from ``np.empty``/``np.zeros``.
    """
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < MAPPED_MIN_BYTES or dtype.hasobject or not can_map() or huge_pages_now(nbytes):
        return (np.zeros if zeroed else np.empty)(shape, dtype=dtype, order="F")
    out = mapped_zeros(shape, dtype)
    if runtime is not None and not zeroed:
        prefault(out, runtime)
    return out


__all__ = ["HUGE_ORDER", "MADV_POPULATE_WRITE", "MAPPED_MIN_BYTES", "PREFAULT_PART_MIN", "QUIET_DEFRAG", "allocate", "can_map",
           "free_huge_bytes", "freed_bytes", "huge_pages_are_free", "huge_pages_now", "reports_free_pages",
           "mapped_zeros", "prefault", "thp_mode"]
