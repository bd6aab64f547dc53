"""Cold one-shot full reads against the machine's floor, each in a fresh process.

Every measurement is one read of a whole volume in a new Python process (``--child``): the
chunk files are in the page cache (read once before each round), the process's memory is
cold, as for a user's first read in a script. The harness's prefaulting (common.prefault)
would hide what a fresh process pays to touch a large output for the first time, so nothing
here prefaults.

The **floor** is what reading the chunks costs with nothing else on top: two threads take the
chunk files in turn and, for raw, read each from the page cache and copy it into a
Fortran-order output in one C call without the GIL (``_rawio.paste_file``; where it is not
built, ``readinto`` a buffer of their own and a numpy paste), or, for compressed_segmentation,
decode it with our C decoder straight into the output. It runs three ways: with the output from ``np.empty``
(numpy's huge-page advice: ``floor``), from an anonymous mapping (the kernel's ordinary pages:
``floor 4k``), and from one whose pages two threads fault in first (``floor pop``); the
fastest median is the floor of that volume.

Systems, interleaved in rotated order in every round (medians over the rounds):

    cvl         cvl.Volume(url)[...]
    cvl before  the same, from another checkout (--baseline DIR)
    ts F        TensorStore, read(order="F")
    cv          CloudVolume
    floor, floor 4k, floor pop   the three floors above

    python benchmarks/bench_floor.py                      # every volume, 7 rounds
    python benchmarks/bench_floor.py --quick              # A and B only, 3 rounds
    python benchmarks/bench_floor.py --volumes raw1g,raw4g --systems cvl,floor,floor\\ 4k
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

GENERATOR_VERSION = 1
FLOORS = ("floor", "floor 4k", "floor pop")
SYSTEMS = ("cvl", "cvl before", "ts F", "cv", *FLOORS)


# ------------------------------------------------------------------------------------------
# data: A and B from bench_read, and three large volumes made once
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """A volume read whole, under a short label."""

    label: str
    volume: common.BenchVolume
    shape: tuple[int, int, int]
    dtype: np.dtype

    @property
    def out_bytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize


def random_uint8(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """Random uint8 (X, Y, Z, 1): the content of a raw volume does not change how fast it reads."""
    rng = np.random.default_rng(seed)
    return np.frombuffer(rng.bytes(int(np.prod(shape))), np.uint8).reshape(*shape, 1)


def large_volume(label: str, shape: tuple[int, int, int], encoding: str, seed: int) -> common.BenchVolume:
    """A raw uint8 or cseg uint64 volume of 64^3 chunks written by TensorStore, made once."""
    import bench_read
    from oracles import ts_write

    cseg = encoding == "compressed_segmentation"
    offset = (1000, 300, 17) if cseg else (3000, 5000, 100)
    params = {"gen": GENERATOR_VERSION, "kind": "segmentation_like" if cseg else "random", "shape": shape,
              "seed": seed, "chunk": (64, 64, 64), "encoding": encoding, **({"block": (8, 8, 8)} if cseg else {})}
    make = (lambda: bench_read.segmentation_like(shape, seed=seed)) if cseg else (lambda: random_uint8(shape, seed))
    extra = {"block": (8, 8, 8)} if cseg else {}
    return common.cached_volume(label, params, make,
                                lambda path, arr: ts_write(path, arr, offset=offset, chunk=(64, 64, 64),
                                                           encoding=encoding, **extra),
                                offset=offset)


def targets(names: list[str]) -> list[Target]:
    """The volumes asked for: raw128 (A), cseg268 (B), raw1g, cseg1g, raw4g."""
    import bench_read

    out = []
    if {"raw128", "cseg268"} & set(names):
        (a, sa, da), (b, sb, db) = bench_read.make_volumes(quick=False, regen=False)
        out += [Target("raw128", a, sa, da), Target("cseg268", b, sb, db)]
    big = {"raw1g": ((1024, 1024, 1024), "raw", np.uint8), "cseg1g": ((1024, 1024, 128), "compressed_segmentation",
                                                                      np.uint64),
           "raw4g": ((2048, 2048, 1024), "raw", np.uint8)}
    for i, (label, (shape, enc, dtype)) in enumerate(big.items()):
        if label in names:
            name = f"F{i}-{label}-{'cseg-uint64' if dtype is np.uint64 else 'raw-uint8'}"
            out.append(Target(label, large_volume(name, shape, enc, seed=30 + i), shape, np.dtype(dtype)))
    return [t for t in out if t.label in names]


# ------------------------------------------------------------------------------------------
# checksums: CRC-32 of the array's bytes in Fortran order, computed slab by slab
# ------------------------------------------------------------------------------------------
def crc_fortran(a: np.ndarray, slab: int = 64) -> int:
    """CRC-32 of ``a`` (X, Y, Z, C) flattened in Fortran order, without a full copy."""
    crc = 0
    for c in range(a.shape[3]):
        for z in range(0, a.shape[2], slab):
            part = np.asfortranarray(a[:, :, z : z + slab, c])
            crc = zlib.crc32(part.reshape(-1, order="F"), crc)
    return crc


def truth_crc(vol: common.BenchVolume) -> int:
    """The ground truth's checksum, computed once and kept beside it; the truth file is then
    dropped from the page cache so that it does not crowd out the chunk files."""
    path = vol.path.parent / "truth.crc32.json"
    if path.exists():
        return json.loads(path.read_text())["crc32"]
    crc = crc_fortran(vol.truth())
    path.write_text(json.dumps({"crc32": crc}))
    fd = os.open(vol.truth_path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return crc


# ------------------------------------------------------------------------------------------
# the child: one read, timed, in a fresh process
# ------------------------------------------------------------------------------------------
def memory_status(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (the peak) of this process, in bytes. Not ru_maxrss: Linux
    carries that over an exec from the parent that forked the child."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def chunk_jobs(root: Path) -> tuple[dict, list[tuple[str, tuple[slice, ...], tuple[int, ...]]]]:
    """(scale, [(file, where it lands in the output, its extent)]) for every chunk of mip 0, x fastest."""
    info = json.loads((root / "info").read_text())
    scale = info["scales"][0]
    off, size, chunk = scale["voxel_offset"], scale["size"], scale["chunk_sizes"][0]
    jobs = []
    for cz, cy, cx in itertools.product(*(range(0, s, c) for s, c in zip(size[::-1], chunk[::-1]))):
        cell = (cx, cy, cz)  # x fastest, as cvl plans them
        lo = [o + c for o, c in zip(off, cell)]
        hi = [min(o + s, l + c) for o, s, l, c in zip(off, size, lo, chunk)]
        name = "_".join(f"{a}-{b}" for a, b in zip(lo, hi))
        ext = tuple(b - a for a, b in zip(lo, hi))
        jobs.append((str(root / scale["key"] / name), tuple(slice(c, c + e) for c, e in zip(cell, ext)), ext))
    return {**scale, "info": info}, jobs


def mapped_empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An output over an anonymous private mapping: the kernel's ordinary pages, no advice."""
    import mmap

    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    buf = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    return np.frombuffer(buf, dtype).reshape(shape, order="F")


def populated(a: np.ndarray, threads: int = 2) -> np.ndarray:
    """``a`` (over a mapping of its own) with its pages faulted in by ``threads`` threads, one
    contiguous part each (madvise MADV_POPULATE_WRITE through ctypes, which drops the GIL)."""
    import ctypes

    madvise = ctypes.CDLL(None, use_errno=True).madvise
    madvise.argtypes, madvise.restype = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int], ctypes.c_int
    page = os.sysconf("SC_PAGE_SIZE")
    size = -(-a.nbytes // page) * page
    step = -(-size // threads // page) * page
    start = a.__array_interface__["data"][0]
    ts = [threading.Thread(target=madvise, args=(start + off, min(step, size - off), 23)) for off in range(0, size, step)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return a


def floor_reader(url: str, alloc: str) -> Callable[[], np.ndarray]:
    """The floor: 2 threads read every chunk file and paste (or C-decode) it into the output."""
    from cloudvolume_lite.codecs import _cseg_api

    try:
        from cloudvolume_lite._rawio import paste_file
    except ImportError:  # no C paster built: read into a buffer and paste with numpy
        paste_file = None

    scale, jobs = chunk_jobs(Path(url[len("file://") :]))
    info = scale["info"]
    dtype, nc = np.dtype(info["data_type"]), int(info["num_channels"])
    shape = (*scale["size"], nc)
    chunk_bytes = int(np.prod(scale["chunk_sizes"][0])) * nc * dtype.itemsize
    cseg = scale["encoding"] == "compressed_segmentation"
    block = scale.get("compressed_segmentation_block_size")
    strides = tuple(int(np.prod(shape[:a])) * dtype.itemsize for a in range(4))  # Fortran order's
    # per chunk: file, where it lands, its extent, its bytes, the byte offset of its corner
    work_list = [(path, dst, ext, int(np.prod(ext)) * nc * dtype.itemsize,
                  sum(d.start * st for d, st in zip(dst, strides))) for path, dst, ext in jobs]

    def read() -> np.ndarray:
        if alloc == "numpy":
            out = np.empty(shape, dtype, order="F")
        else:
            out = mapped_empty(shape, dtype)
            if alloc == "populate":
                populated(out)
        order = itertools.count()  # next() on a count is atomic under the GIL

        # everything but the read and the paste is worked out before the timer (see jobs below)
        def paste(path: str, dst: tuple[slice, ...], ext: tuple[int, ...], nbytes: int, base: int,
                  buf: bytearray) -> None:
            if cseg:
                with open(path, "rb", buffering=0) as f:
                    data = f.read()
                _cseg_api.decode_into(data=data, itemsize=dtype.itemsize, chunk_shape=ext, num_channels=nc,
                                      block_size=block, lo=(0, 0, 0), hi=ext, channel_start=0, channel_step=1,
                                      channel_count=nc, out=out, dst_lo=[d.start for d in dst])
            elif paste_file is not None:  # the C paster: open, read and copy without the GIL
                for c in range(nc):
                    if paste_file(path, nbytes, c * nbytes // nc, *ext, (0, 0, 0), ext, (1, 1, 1), dtype.itemsize,
                                  out, base + c * strides[3], strides[:3]) != nbytes:
                        raise ValueError(f"{path} is not {nbytes} bytes")
            else:
                with open(path, "rb", buffering=0) as f:
                    if f.readinto(buf) != nbytes:
                        raise ValueError(f"{path} is not {nbytes} bytes")
                out[dst] = np.frombuffer(buf, dtype, nbytes // dtype.itemsize).reshape(*ext, nc, order="F")

        def work() -> None:
            buf = bytearray(chunk_bytes)
            for i in iter(order.__next__, None):
                if i >= len(work_list):
                    return
                paste(*work_list[i], buf)

        helper = threading.Thread(target=work)
        helper.start()
        work()
        helper.join()
        return out

    return read


def reader(system: str, url: str, baseline: str | None) -> Callable[[], np.ndarray]:
    """A zero-argument full read of ``url`` by ``system``, opened (outside the timer)."""
    if system in FLOORS:
        return floor_reader(url, {"floor": "numpy", "floor 4k": "mapped", "floor pop": "populate"}[system])
    if system in ("cvl", "cvl before"):
        if system == "cvl before":
            sys.path.insert(0, baseline)  # type: ignore[arg-type]
            import cvl_before as cvl  # type: ignore[import-not-found]
        else:
            import cloudvolume_lite as cvl
        vol = cvl.Volume(url)
        return lambda: vol[...]
    if system == "ts F":
        t = common.ts_open(url)
        return lambda: common.ts_read(t, None, "F")
    if system == "cv":
        from cloudvolume import CloudVolume

        cv = CloudVolume(url, progress=False, fill_missing=False)
        return lambda: np.asarray(cv[:, :, :])
    raise ValueError(f"unknown system {system!r}")


def child(system: str, url: str, baseline: str | None) -> dict:
    """Open, then time one full read: wall, CPU, system time, faults, peak RSS; then checksum.

    The peak is read before the checksum, whose slabs would add to it."""
    import resource

    read = reader(system, url, baseline)
    before, r0 = memory_status("VmRSS"), resource.getrusage(resource.RUSAGE_SELF)
    c0, t0 = time.process_time(), time.perf_counter()
    out = read()
    t1, c1 = time.perf_counter(), time.process_time()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return {"wall": t1 - t0, "cpu": c1 - c0, "sys": r1.ru_stime - r0.ru_stime, "minflt": r1.ru_minflt - r0.ru_minflt,
            "before": before, "peak": memory_status("VmHWM"), "out": int(out.nbytes), "shape": list(out.shape),
            "f_contiguous": bool(out.flags.f_contiguous), "crc32": crc_fortran(out)}


# ------------------------------------------------------------------------------------------
# the parent: rounds of fresh processes, a table, JSON
# ------------------------------------------------------------------------------------------
def run_child(system: str, url: str, baseline: str | None) -> dict:
    cmd = [sys.executable, __file__, "--child", system, url] + (["--baseline-path", baseline] if baseline else [])
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if p.returncode:
        return {"error": (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def summarize(t: Target, runs: dict[str, list[dict]]) -> dict:
    """Medians per system, and each against the floor (the fastest of the floors)."""
    rows = {}
    for s, rs in runs.items():
        ok = [r for r in rs if "error" not in r]
        if not rs:
            continue  # skipped (CloudVolume on the largest volume)
        if not ok:
            rows[s] = {"error": rs[0].get("error") if rs else "no runs"}
            continue
        wall = statistics.median(r["wall"] for r in ok)
        rows[s] = {"mb_per_s": t.out_bytes / wall / 1e6, "wall_s": wall, "cpu_s": statistics.median(r["cpu"] for r in ok),
                   "sys_s": statistics.median(r["sys"] for r in ok),
                   "peak_over_out": statistics.median((r["peak"] - r["before"]) / r["out"] for r in ok),
                   "runs": len(ok)}
    floors = [f for f in FLOORS if "mb_per_s" in rows.get(f, {})]
    floor = max(floors, key=lambda f: rows[f]["mb_per_s"]) if floors else None
    for s, row in rows.items():
        if floor and "mb_per_s" in row:
            row["of_floor"] = row["mb_per_s"] / rows[floor]["mb_per_s"]
            row["cpu_of_floor"] = rows[floor]["cpu_s"] / row["cpu_s"]
    return {"label": t.label, "volume": t.volume.name, "out_bytes": t.out_bytes, "floor": floor, "systems": rows}


def format_rows(summary: list[dict]) -> str:
    head = (f"{'volume':<9}{'MB':>7}  {'system':<11}{'MB/s':>8}{'wall s':>8}{'cpu s':>7}{'sys s':>7}"
            f"{'% floor':>9}{'cpu % fl':>9}{'peak/out':>9}")
    lines = [head, "-" * len(head)]
    for v in summary:
        for s, r in v["systems"].items():
            if "error" in r:
                lines.append(f"{v['label']:<9}{v['out_bytes'] / 1e6:>7.0f}  {s:<11}FAILED: {r['error']}")
                continue
            of = f"{100 * r['of_floor']:.0f}%" if "of_floor" in r else "—"
            cof = f"{100 * r['cpu_of_floor']:.0f}%" if "cpu_of_floor" in r else "—"
            lines.append(f"{v['label']:<9}{v['out_bytes'] / 1e6:>7.0f}  {s:<11}{r['mb_per_s']:>8.0f}{r['wall_s']:>8.3f}"
                         f"{r['cpu_s']:>7.2f}{r['sys_s']:>7.2f}{of:>9}{cof:>9}{r['peak_over_out']:>9.2f}")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        base = sys.argv[sys.argv.index("--baseline-path") + 1] if "--baseline-path" in sys.argv else None
        print(json.dumps(child(sys.argv[2], sys.argv[3], base)))
        return 0
    ap = common.arg_parser(__doc__)
    ap.add_argument("--volumes", default="raw128,cseg268,raw1g,cseg1g,raw4g")
    ap.add_argument("--systems", default="cvl,ts F,cv,floor,floor 4k,floor pop", help=f"a subset of {','.join(SYSTEMS)}")
    ap.add_argument("--baseline", default=None, help="a checkout whose package runs as 'cvl before'")
    ap.add_argument("--idle", type=float, default=3.0, help="seconds of idle before each child (memory goes cold)")
    ap.add_argument("--no-cv-above", type=float, default=2e9, help="skip CloudVolume on outputs larger than this")
    ap.add_argument("--json", default="floor.json")
    args = ap.parse_args()
    repeats = args.repeats or (3 if args.quick else 7)
    names = ["raw128", "cseg268"] if args.quick else args.volumes.split(",")
    systems = [s for s in args.systems.split(",") if s]
    baseline = None
    if args.baseline:
        systems.insert(1, "cvl before")
        baseline = str(Path(common.baseline_package(Path(args.baseline).resolve()).__file__).parent.parent)
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        ap.error(f"unknown systems {sorted(unknown)}")
    tgts = targets(names)
    crcs = {t.label: truth_crc(t.volume) for t in tgts}
    runs: dict[str, dict[str, list[dict]]] = {t.label: {s: [] for s in systems} for t in tgts}
    for rep in range(repeats):
        for ti, t in enumerate(tgts):
            common.warm_page_cache(t.volume.path)
            for s in common.rotate(systems, rep + ti):
                if s == "cv" and t.out_bytes > args.no_cv_above:
                    continue
                time.sleep(args.idle)
                r = run_child(s, t.volume.url, baseline)
                if "error" not in r and (r["crc32"] != crcs[t.label] or not r["f_contiguous"] and s != "cv"):
                    r = {"error": f"wrong result (crc {r['crc32']} != {crcs[t.label]}, F {r['f_contiguous']})"}
                runs[t.label][s].append(r)
                msg = r.get("error") or (f"{t.out_bytes / r['wall'] / 1e6:8.0f} MB/s  cpu {r['cpu']:.2f}s "
                                         f"sys {r['sys']:.2f}s  peak/out {(r['peak'] - r['before']) / r['out']:.2f}")
                print(f"  round {rep + 1}/{repeats} {t.label:<8} {s:<11} {msg}", flush=True)
    summary = [summarize(t, runs[t.label]) for t in tgts]
    print(f"\nfull reads, each in a fresh process, {repeats} rounds interleaved; medians "
          "(% floor: MB/s over the faster floor's; cpu % fl: the floor's CPU seconds over the system's)")
    print(format_rows(summary))
    if args.json:
        env = common.environment({s: "" for s in systems})
        env["thp"] = {k: Path(f"/sys/kernel/mm/transparent_hugepage/{k}").read_text().strip()
                      for k in ("enabled", "defrag")}
        path = common.write_json({"benchmark": "floor", "env": env, "repeats": repeats, "idle_s": args.idle,
                                  "volumes": summary, "runs": runs}, args.json)
        print(f"wrote {path}")
    failed = [(v["label"], s) for v in summary for s, r in v["systems"].items() if "error" in r]
    failed += [(lbl, s) for lbl, per in runs.items() for s, rs in per.items() if any("error" in r for r in rs)]
    if failed:
        print("FAILED:", sorted(set(failed)))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
