"""Shared helpers for the benchmarks: cached test data, interleaved timing, tables, JSON.

A benchmark here compares *systems* (cloudvolume-lite and its peers) on *lines* (one kind of
request against one volume). Each line is a list of operations (boxes to read); a *run* of a
line by a system performs every operation once and its time is the sum of the operation
times. Runs are interleaved: in repetition ``r`` the systems take turns in an order rotated
by ``r`` (A-B-C, B-C-A, C-A-B, ...), so slow drift of the machine (other tenants, thermal,
page cache) hits all systems alike. The first ``warmup`` repetitions are discarded; the
numbers quoted are medians over the remaining ``repeats``.

Nothing in here knows about a particular benchmark: see ``bench_read.py`` for a user.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import gc
import hashlib
import importlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"

# tests/oracles.py (ts_write, cv_write) is not a package module; make it importable.
if str(REPO_DIR / "tests") not in sys.path:
    sys.path.insert(0, str(REPO_DIR / "tests"))


# ------------------------------------------------------------------------------------------
# test data, made once
# ------------------------------------------------------------------------------------------
def data_dir() -> Path:
    """Where generated volumes live: ``$CVL_BENCH_DIR`` or ``benchmarks/.data``."""
    d = Path(os.environ.get("CVL_BENCH_DIR") or BENCH_DIR / ".data")
    d.mkdir(parents=True, exist_ok=True)
    return d


def _params_key(params: dict) -> str:
    return hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class BenchVolume:
    """A generated volume on disk plus its ground truth (a memory-mapped ``.npy``, (X, Y, Z, C))."""

    name: str
    path: Path  # the Precomputed root (has ``info``)
    offset: tuple[int, int, int]  # voxel_offset: global coordinate of truth[0, 0, 0]
    params: dict

    @property
    def url(self) -> str:
        return "file://" + str(self.path)

    @property
    def truth_path(self) -> Path:
        return self.path.parent / (self.path.name + ".truth.npy")

    def truth(self) -> np.ndarray:
        return np.load(self.truth_path, mmap_mode="r")

    def expected(self, box: "Box") -> np.ndarray:
        """The ground truth for ``box`` (global coordinates)."""
        t = self.truth()
        sl = tuple(slice(lo - o, hi - o) for lo, hi, o in zip(box.lo, box.hi, self.offset))
        return t[sl]

    def disk_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())


def cached_volume(
    name: str,
    params: dict,
    make: Callable[[], np.ndarray],
    write: Callable[[Path, np.ndarray], None],
    *,
    offset: Sequence[int] = (0, 0, 0),
    regen: bool = False,
    log: Callable[[str], None] = print,
) -> BenchVolume:
    """Generate ``make()`` and ``write(path, array)`` it once; later calls reuse the files.

    The cache is keyed by ``name`` and a hash of ``params`` (put everything that changes the
    data in ``params``: shape, seed, encoding, generator version). A ``.done`` marker is
    written last, so an interrupted generation is redone, not trusted.
    """
    params = {**params, "offset": list(offset)}
    key = _params_key(params)
    root = data_dir() / f"{name}-{key}"
    vol = BenchVolume(name, root / "vol", tuple(int(o) for o in offset), params)  # type: ignore[arg-type]
    done = root / ".done"
    if done.exists() and not regen:
        return vol
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    t0 = time.perf_counter()
    log(f"[data] generating {name} {params} ...")
    arr = make()
    t1 = time.perf_counter()
    write(vol.path, arr)
    np.save(vol.truth_path, arr)
    (root / "params.json").write_text(json.dumps(params, indent=1, default=str))
    done.write_text(_dt.datetime.now().isoformat())
    log(
        f"[data] {name}: made in {t1 - t0:.1f}s, written in {time.perf_counter() - t1:.1f}s "
        f"({arr.nbytes / 1e6:.0f} MB in memory, {vol.disk_bytes() / 1e6:.0f} MB on disk) -> {root}"
    )
    return vol


def warm_page_cache(path: Path) -> None:
    """Read every file under ``path`` once so that timed runs hit the page cache."""
    for f in path.rglob("*"):
        if f.is_file():
            with open(f, "rb") as fh:
                while fh.read(1 << 22):
                    pass


# ------------------------------------------------------------------------------------------
# boxes
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Box:
    """A box in global voxel coordinates, ``hi`` exclusive."""

    lo: tuple[int, int, int]
    hi: tuple[int, int, int]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(h - l for l, h in zip(self.lo, self.hi))  # type: ignore[return-value]

    @property
    def voxels(self) -> int:
        return int(np.prod(self.shape))

    def slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(l, h) for l, h in zip(self.lo, self.hi))  # type: ignore[return-value]

    def __str__(self) -> str:
        return "[" + ", ".join(f"{l}:{h}" for l, h in zip(self.lo, self.hi)) + ")"


def unaligned_boxes(
    n: int,
    offset: Sequence[int],
    size: Sequence[int],
    chunk: Sequence[int],
    *,
    side: tuple[int, int] = (100, 200),
    seed: int = 0,
) -> list[Box]:
    """``n`` random boxes inside the volume, sides in ``side`` (clipped to fit), with no face on a chunk boundary."""
    rng = np.random.default_rng(seed)
    boxes = []
    for _ in range(n):
        lo, hi = [], []
        for o, s, c in zip(offset, size, chunk):
            smax = min(side[1], s - 2)
            smin = min(side[0], max(1, smax // 2))
            for _attempt in range(1000):
                w = int(rng.integers(smin, smax + 1))
                x0 = int(rng.integers(1, s - w))  # leaves >= 1 voxel on both sides
                if x0 % c and (x0 + w) % c:
                    break
            lo.append(o + x0)
            hi.append(o + x0 + w)
        boxes.append(Box(tuple(lo), tuple(hi)))  # type: ignore[arg-type]
    return boxes


# ------------------------------------------------------------------------------------------
# systems and lines
# ------------------------------------------------------------------------------------------
@dataclass
class System:
    """A reader under test.

    ``open(url)`` returns a handle (not timed, except in lines with ``cold_open``);
    ``read(handle, box)`` returns an (X, Y, Z, C) array for a global-coordinate box;
    ``close(handle)`` (optional, never timed) releases it.
    """

    name: str  # short column label
    open: Callable[[str], Any]
    read: Callable[[Any, Box], np.ndarray]
    close: Callable[[Any], None] = lambda h: None
    version: str = ""


# ------------------------------------------------------------------------------------------
# TensorStore, the peer to beat: C order (its default) and Fortran order (cvl's layout)
# ------------------------------------------------------------------------------------------
#: system names for TensorStore by the memory order it is asked to return
TS_NAMES: dict[str, str] = {"C": "ts", "F": "ts F"}


def ts_kvstore(url: str) -> dict | str:
    """A TensorStore kvstore spec for ``url``: ``file://`` and ``http(s)://`` explicitly, others as URLs."""
    if url.startswith("file://"):
        return {"driver": "file", "path": url[len("file://") :]}
    if url.startswith(("http://", "https://")):
        return {"driver": "http", "base_url": url}
    return url  # gs://, s3://, memory://: TensorStore parses kvstore URLs itself


def ts_open(url: str) -> Any:
    """Open ``url`` with TensorStore's neuroglancer_precomputed driver and no ``context``.

    A fresh default context has a ``cache_pool`` of 0 bytes: nothing decoded is kept between
    operations, as for the other systems.
    """
    import tensorstore as ts

    return ts.open({"driver": "neuroglancer_precomputed", "kvstore": ts_kvstore(url)}, read=True).result()


def ts_read(t: Any, box: "Box | None" = None, order: str = "C") -> np.ndarray:
    """``box`` (global coordinates; None = everything) as (X, Y, Z, C) in memory order ``order``.

    TensorStore's domain is the global voxel range plus a channel dimension, so the result
    has cvl's shape; ``order="F"`` also gives cvl's memory layout, which TensorStore produces
    without the transposing copy that C order costs it.
    """
    if box is not None:
        (x0, y0, z0), (x1, y1, z1) = box.lo, box.hi
        t = t[x0:x1, y0:y1, z0:z1, :]
    return t.read(order=order).result()


def ts_read_url(url: str, order: str = "C") -> np.ndarray:
    """Open ``url`` and read all of it: the whole-volume read bench_http times."""
    return ts_read(ts_open(url), None, order)


def tensorstore_system(order: str = "C") -> System:
    """TensorStore as a :class:`System`, asked for ``order`` ("C": its default, or "F")."""
    from importlib.metadata import version

    if order not in TS_NAMES:
        raise ValueError(f"order must be 'C' or 'F', not {order!r}")
    return System(TS_NAMES[order], ts_open, lambda t, box: ts_read(t, box, order), version=version("tensorstore"))


# ------------------------------------------------------------------------------------------
# ratios: cvl against the best peer
# ------------------------------------------------------------------------------------------
def is_ours(name: str, ours: str = "cvl") -> bool:
    """``cvl`` and its variants (``cvl p32``) are ours; everything else is a peer."""
    return name == ours or name.startswith(ours + " ")


def best_peer(rates: dict[str, float | None], ours: str = "cvl") -> tuple[str | None, float | None]:
    """(name, rate) of the fastest peer in ``rates`` (higher = faster), over every peer present.

    Every peer counts, TensorStore in C order too, so "vs best" is never flattered by leaving
    one out; usually the best is TensorStore in Fortran order, sometimes CloudVolume or C order.
    """
    peers = {n: r for n, r in rates.items() if not is_ours(n, ours) and r}
    if not peers:
        return None, None
    name = max(peers, key=lambda n: peers[n])  # type: ignore[arg-type, return-value]
    return name, peers[name]


def ratio_names(names: Sequence[str], ours: str = "cvl") -> list[str]:
    """The ratio columns, in table order: ours/cv, ours/ts F, ours/best, then ours/ts (C order)."""
    peers = [n for n in names if not is_ours(n, ours)]
    first = [p for p in peers if p != TS_NAMES["C"]]
    out = [f"{ours}/{p}" for p in first] + [f"{ours}/best"]
    if TS_NAMES["C"] in peers:
        out.append(f"{ours}/{TS_NAMES['C']}")
    return out


def ratios(rates: dict[str, float | None], ours: str = "cvl") -> dict[str, float | None]:
    """``{"cvl/cv": .., "cvl/ts F": .., "cvl/best": .., "cvl/ts": ..}`` from speeds (higher = faster).

    Missing or failed systems give None; ``best`` is :func:`best_peer`. Usable on bench_http's
    ``{system: MB/s}`` as well as on a :class:`Result`.
    """
    mine = rates.get(ours)
    out: dict[str, float | None] = {}
    for key in ratio_names(list(rates), ours):
        peer = key.split("/", 1)[1]
        theirs = best_peer(rates, ours)[1] if peer == "best" else rates.get(peer)
        out[key] = mine / theirs if mine and theirs else None
    return out


@dataclass
class Line:
    """One row of the table: a list of boxes read from one volume."""

    name: str
    volume: BenchVolume
    boxes: list[Box]
    dtype: np.dtype
    num_channels: int = 1
    cold_open: bool = False  # open a fresh handle for every operation, inside the timed region

    @property
    def out_bytes(self) -> int:
        return sum(b.voxels for b in self.boxes) * self.num_channels * np.dtype(self.dtype).itemsize


@dataclass
class Run:
    """One system's run of one line: per-operation wall and CPU seconds."""

    rep: int  # -warmup.. -1 for warmups, 0.. for timed repetitions
    wall: list[float]
    cpu: list[float]

    @property
    def total(self) -> float:
        return sum(self.wall)

    @property
    def total_cpu(self) -> float:
        return sum(self.cpu)


@dataclass
class Result:
    line: Line
    runs: dict[str, list[Run]] = field(default_factory=dict)  # system name -> timed runs
    errors: dict[str, str] = field(default_factory=dict)  # system name -> first failure

    def totals(self, system: str) -> list[float]:
        return [r.total for r in self.runs.get(system, [])]

    def median_s(self, system: str) -> float | None:
        t = self.totals(system)
        return statistics.median(t) if t else None

    def mbps(self, system: str) -> float | None:
        m = self.median_s(system)
        return self.line.out_bytes / m / 1e6 if m else None

    def best_mbps(self, system: str) -> float | None:
        """MB/s of the fastest timed run (less sensitive to a noisy neighbour than the median)."""
        t = self.totals(system)
        return self.line.out_bytes / min(t) / 1e6 if t and min(t) > 0 else None

    def spread(self, system: str) -> float | None:
        """Half the range of the run times over the median: a crude noise figure."""
        t = self.totals(system)
        if len(t) < 2:
            return None
        return (max(t) - min(t)) / 2 / statistics.median(t)

    def cpu_util(self, system: str) -> float | None:
        """Median over runs of process CPU seconds / wall seconds (2.0 = both cores busy on a 2-core box)."""
        u = [r.total_cpu / r.total for r in self.runs.get(system, []) if r.total > 0]
        return statistics.median(u) if u else None

    def op_ms(self, system: str) -> float | None:
        """Median wall time of one operation, in milliseconds, over all timed operations."""
        w = [x for r in self.runs.get(system, []) for x in r.wall]
        return statistics.median(w) * 1e3 if w else None


def rotate(seq: Sequence[Any], k: int) -> list[Any]:
    k %= max(1, len(seq))
    return list(seq[k:]) + list(seq[:k])


def _check(line: Line, box: Box, got: np.ndarray) -> str | None:
    want = line.volume.expected(box)
    got = np.asarray(got)
    if got.shape != want.shape:
        return f"box {box}: shape {got.shape}, expected {want.shape}"
    if got.dtype != want.dtype:
        return f"box {box}: dtype {got.dtype}, expected {want.dtype}"
    if not np.array_equal(got, want):
        bad = int(np.count_nonzero(got != want))
        return f"box {box}: {bad} of {want.size} values differ from the ground truth"
    return None


def prefault(nbytes: int) -> None:
    """Touch ``nbytes`` of fresh memory and free it, so the next allocations get host-backed pages.

    On this VM the host reclaims guest memory that stays free for a second or two; the next
    program to touch it pays ~10x the normal page-fault cost (a 256 MB array: 45 ms warm,
    300-600 ms reclaimed). Without this, whichever system runs first after a pause is slowed,
    and full-volume lines come out bimodal. Called outside the timers.
    """
    if nbytes > 0:
        b = np.ones(int(nbytes), dtype=np.uint8)
        del b


#: bytes to prefault before each timed operation: PREFAULT_FACTOR * output bytes + PREFAULT_EXTRA (capped)
PREFAULT_FACTOR, PREFAULT_EXTRA, PREFAULT_MAX = 2.0, 32 << 20, 1 << 30


def run_line(
    system: System, line: Line, rep: int, verify: bool, handle: Any = None, prefault_memory: bool = True
) -> tuple[Run, str | None]:
    """Run every box of ``line`` once; verify results (outside the timer) when asked."""
    wall, cpu, error = [], [], None
    itemsize = np.dtype(line.dtype).itemsize * line.num_channels
    for box in line.boxes:
        gc.collect()
        if prefault_memory:
            prefault(min(PREFAULT_MAX, int(PREFAULT_FACTOR * box.voxels * itemsize) + PREFAULT_EXTRA))
        if line.cold_open:
            c0, t0 = time.process_time(), time.perf_counter()
            h = system.open(line.volume.url)
            got = system.read(h, box)
            t1, c1 = time.perf_counter(), time.process_time()
            system.close(h)
        else:
            c0, t0 = time.process_time(), time.perf_counter()
            got = system.read(handle, box)
            t1, c1 = time.perf_counter(), time.process_time()
        wall.append(t1 - t0)
        cpu.append(c1 - c0)
        if verify and error is None:
            error = _check(line, box, got)
        del got
    return Run(rep, wall, cpu), error


def run_interleaved(
    systems: Sequence[System],
    lines: Sequence[Line],
    *,
    repeats: int = 5,
    warmup: int = 1,
    prefault_memory: bool = True,
    log: Callable[[str], None] = print,
) -> list[Result]:
    """Time every system on every line, interleaved; verify the warmup and the first timed run.

    Handles are opened once per (system, volume) outside the timers and reused. A system
    whose result is wrong (or which raises) is recorded in ``Result.errors`` and skipped for
    the rest of that line.
    """
    results = [Result(line) for line in lines]
    handles: dict[tuple[str, str], Any] = {}
    try:
        for rep in range(-warmup, repeats):
            for li, (line, res) in enumerate(zip(lines, results)):
                order = rotate(systems, rep + li)
                for s in order:
                    if s.name in res.errors:
                        continue
                    hk = (s.name, line.volume.url)
                    if not line.cold_open and hk not in handles:
                        handles[hk] = s.open(line.volume.url)
                    verify = rep < 1  # every warmup, and the first timed repetition
                    try:
                        run, err = run_line(s, line, rep, verify, handles.get(hk), prefault_memory)
                    except Exception as e:  # a crash is a failure like a wrong answer
                        err = f"raised {type(e).__name__}: {e}"
                        run = None
                    if err is not None:
                        res.errors[s.name] = err
                        log(f"  !! {s.name} on {line.name}: {err}")
                        continue
                    if rep >= 0:
                        res.runs.setdefault(s.name, []).append(run)
                    tag = "warmup" if rep < 0 else f"rep {rep + 1}/{repeats}"
                    log(
                        f"  {tag:>9}  {line.name:<34} {s.name:<4} {run.total * 1e3:9.1f} ms "
                        f"{line.out_bytes / run.total / 1e6:8.1f} MB/s  cpu {run.total_cpu / run.total:4.2f}"
                    )
    finally:
        for (name, _), h in handles.items():
            sys_ = next(s for s in systems if s.name == name)
            try:
                sys_.close(h)
            except Exception:
                pass
    return results


# ------------------------------------------------------------------------------------------
# reporting
# ------------------------------------------------------------------------------------------
def _fmt(x: float | None, spec: str, width: int) -> str:
    return f"{'—' if x is None else format(x, spec):>{width}}"


def format_table(results: Sequence[Result], systems: Sequence[str], ours: str) -> str:
    """Median MB/s per system (±half-range %) and the ratios of :func:`ratio_names`; then ms/op and CPU use.

    ``vs best`` is ours against the fastest peer on the line (see :func:`best_peer`).
    """
    keys = ratio_names(systems, ours)
    label = {f"{ours}/best": "vs best"}
    lw = max(24, *(len(r.line.name) for r in results)) + 1
    head = f"{'line':<{lw}}{'MB':>8}" + "".join(f"{s + ' MB/s':>16}" for s in systems)
    head += "".join(f"{label.get(k, k):>11}" for k in keys)
    out = [head, "-" * len(head)]
    for r in results:
        row = f"{r.line.name:<{lw}}{r.line.out_bytes / 1e6:>8.1f}"
        for s in systems:
            if s in r.errors:
                row += f"{'FAILED':>16}"
                continue
            m, sp = r.mbps(s), r.spread(s)
            cell = "—" if m is None else (f"{m:.1f}" + (f" ±{sp * 100:.0f}%" if sp is not None else ""))
            row += f"{cell:>16}"
        rat = ratios({s: r.mbps(s) for s in systems}, ours)
        row += "".join(_fmt(rat.get(k), ".2f", 11) for k in keys)
        out.append(row)
    out.append("")
    head2 = f"{'line':<{lw}}{'ops':>8}" + "".join(f"{s + ' ms/op':>16}" for s in systems)
    head2 += "".join(f"{s + ' cpu':>10}" for s in systems)
    out += [head2, "-" * len(head2)]
    for r in results:
        row = f"{r.line.name:<{lw}}{len(r.line.boxes):>8}"
        row += "".join(_fmt(r.op_ms(s), ".2f", 16) for s in systems)
        row += "".join(_fmt(r.cpu_util(s), ".2f", 10) for s in systems)
        out.append(row)
    return "\n".join(out)


def _git_rev() -> str | None:
    try:
        rev = subprocess.run(
            ["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_DIR), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return rev + ("-dirty" if dirty else "") if rev else None
    except Exception:
        return None


def dist_version(name: str) -> str:
    """The installed version of distribution ``name``, or "unknown"."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def environment(systems: Iterable[System] | dict[str, str]) -> dict:
    """Where and with what a result was measured: time, git revision, versions, CPUs, load.

    ``systems`` is the Systems run, or ``{name: version}`` for a benchmark without Systems.
    """
    try:
        import psutil

        freq = psutil.cpu_freq()
        load = os.getloadavg()
    except Exception:
        freq, load = None, None
    return {
        "time": _dt.datetime.now().isoformat(timespec="seconds"),
        "git": _git_rev(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_mhz": getattr(freq, "current", None),
        "loadavg_at_end": load,
        "systems": dict(systems) if isinstance(systems, dict) else {s.name: s.version for s in systems},
    }


def to_json(results: Sequence[Result], systems: Sequence[System], ours: str, extra: dict | None = None) -> dict:
    names = [s.name for s in systems]
    lines = []
    for r in results:
        entry: dict[str, Any] = {
            "name": r.line.name,
            "volume": r.line.volume.name,
            "volume_params": r.line.volume.params,
            "ops": len(r.line.boxes),
            "out_bytes": r.line.out_bytes,
            "cold_open": r.line.cold_open,
            "boxes": [[list(b.lo), list(b.hi)] for b in r.line.boxes],
            "systems": {},
        }
        for s in names:
            entry["systems"][s] = {
                "error": r.errors.get(s),
                "median_s": r.median_s(s),
                "mb_per_s": r.mbps(s),
                "mb_per_s_best_run": r.best_mbps(s),
                "spread": r.spread(s),
                "op_ms_median": r.op_ms(s),
                "cpu_per_wall": r.cpu_util(s),
                "runs_s": r.totals(s),
                "runs_cpu_s": [x.total_cpu for x in r.runs.get(s, [])],
            }
        rates = {s: r.mbps(s) for s in names}
        entry["ratios"] = ratios(rates, ours)
        entry["best_peer"] = best_peer(rates, ours)[0]
        lines.append(entry)
    return {"env": environment(systems), "ours": ours, **(extra or {}), "lines": lines}


def write_json(obj: dict, name: str) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / name
    path.write_text(json.dumps(obj, indent=1, default=_json_default))
    return path


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if dataclasses.is_dataclass(o):
        return dataclasses.asdict(o)
    return str(o)


def arg_parser(doc: str | None):
    """The options every benchmark takes: ``--quick`` and ``--repeats``."""
    import argparse

    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small data, few repeats: a smoke test")
    ap.add_argument("--repeats", type=int, default=None, help="timed repetitions")
    return ap


def baseline_package(tree: Path) -> object:
    """The ``cloudvolume_lite`` package of another checkout, importable as ``cvl_before``: a copy
    with its absolute self-references renamed (the registries name modules by full path)."""
    dest = Path(tempfile.mkdtemp(prefix="cvl-before-"))
    pkg = dest / "cvl_before"
    shutil.copytree(tree / "cloudvolume_lite", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    for f in pkg.rglob("*.py"):
        f.write_text(re.sub(r"\bcloudvolume_lite\b", "cvl_before", f.read_text()))
    sys.path.insert(0, str(dest))
    return importlib.import_module("cvl_before")
