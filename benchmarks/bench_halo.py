"""Halo processing: a 3-D gaussian (sigma 3, depth 9) over a float32 volume in 64^3 chunks,
several ways, interleaved and repeated, every result checked voxel for voxel against scipy on
the whole array:

- ``cvl``: ``vol.map_overlap(fn, depth=9).compute(scheduler="threads")`` (one task per block,
  each reading its halo from storage);
- ``cvl out``: ``vol.map_overlap(fn, depth=9, out=...)`` into a new local volume (raw, plain
  files), on the Volume's own threads; checked by reading it back, after the timer;
- ``dask``: ``vol.to_dask().map_overlap(fn, depth=9, boundary="none")``, dask's threads;
- ``scipy``: ``vol[...]`` then ``scipy.ndimage.gaussian_filter`` on the whole array (scipy
  runs it in one thread).

With ``--baseline DIR`` (a checkout, e.g. a git worktree of an older commit) its package runs
the cvl lines too, as ``cvl before`` and ``cvl out before``.

Each run is a fresh process, timed after its one-time imports: its system, ``scipy.ndimage``
(which ``fn`` imports) and, for the dask lines, dask's scheduler lookup, which imports
``distributed`` (0.1-0.2 s each, not halo work; ``--cold-imports`` leaves the last two inside
the timer, as the first call in a fresh interpreter pays them). Printed per system: wall and CPU time (user + system, all threads; medians), tasks in
the graph, peak memory of the process (ru_maxrss), and whether the result is exact.

    python benchmarks/bench_halo.py [--quick] [--repeats N] [--baseline DIR] [--systems A,B] [--cold-imports]
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

SIGMA, DEPTH = 3.0, 9  # truncate = 3 sigma: the filter reaches 9 voxels


def make(quick: bool) -> common.BenchVolume:
    shape = (276, 276, 50) if quick else (1104, 1104, 50)

    def data() -> np.ndarray:
        rng = np.random.default_rng(6)
        return rng.random((*shape, 1), dtype=np.float32)

    def write(path: Path, arr: np.ndarray) -> None:
        import cloudvolume_lite as cvl

        cvl.Volume.from_numpy(arr, "file://" + str(path), chunk_size=(64, 64, 64), compression=None)

    return common.cached_volume("H-float32" + ("-quick" if quick else ""), {"shape": shape, "seed": 6, "v": 1},
                                data, write)


def fn(a: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return ndimage.gaussian_filter(a, sigma=(SIGMA, SIGMA, SIGMA, 0), truncate=3.0)


def package(system: str, baseline: str | None):
    if system.endswith("before"):
        sys.path.insert(0, baseline)  # type: ignore[arg-type]
        import cvl_before as cvl  # type: ignore[import-not-found]
    else:
        import cloudvolume_lite as cvl
    return cvl


def build(system: str, url: str, scratch: Path, baseline: str | None, cold: bool):
    """(callable that computes the result, number of tasks in its graph, callable that reads
    the result back for the check)."""
    cvl = package(system, baseline)
    vol = cvl.Volume(url)
    if not cold:
        import scipy.ndimage  # noqa: F401 - fn's import, outside the timer
    if system == "scipy":
        return (lambda: fn(vol[...])), 1, None
    if system.startswith("cvl out"):
        out = cvl.Volume.create("file://" + str(scratch / "out"), data_type="float32", layer_type="image",
                                size=vol.shape[:3], chunk_size=vol.chunk_size, resolution=vol.resolution,
                                voxel_offset=vol.voxel_offset, compression=None)
        return (lambda: vol.map_overlap(fn, depth=DEPTH, out=out)), None, lambda: cvl.Volume(out.url)[...]
    import dask.base

    if not cold:
        dask.base.get_scheduler(scheduler="threads")  # its one-time import of distributed, outside the timer
    if system.startswith("cvl"):
        arr = vol.map_overlap(fn, depth=DEPTH)  # default blocks: whole chunks, about 32 MiB
    else:
        arr = vol.to_dask().map_overlap(fn, depth=(DEPTH, DEPTH, DEPTH, 0), boundary="none")
    return (lambda: arr.compute(scheduler="threads")), len(arr.__dask_graph__()), None


def child(system: str, url: str, truth_path: str, baseline: str | None, cold: bool) -> None:
    """One run of ``system`` in this (fresh) process: prints its times, tasks, peak RSS, exactness."""
    import resource

    scratch = Path(tempfile.mkdtemp(prefix="halo-out-", dir=common.data_dir()))
    try:
        run, tasks, read_back = build(system, url, scratch, baseline, cold)
        c0, t0 = time.process_time(), time.perf_counter()
        got = run()
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        if read_back is not None:
            tasks, got = got, read_back()
        want = np.load(truth_path, mmap_mode="r")
        exact = bool(np.array_equal(got, want))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps({"s": dt, "cpu": cpu, "tasks": tasks, "rss": rss, "exact": exact}))


def main() -> int:
    ap = common.arg_parser(__doc__)
    ap.add_argument("--child", nargs=3, metavar=("SYSTEM", "URL", "TRUTH"), help=argparse_hidden())
    ap.add_argument("--baseline-path", default=None, help=argparse_hidden())
    ap.add_argument("--baseline", type=Path, default=None, help="a checkout whose package runs as 'cvl before'")
    ap.add_argument("--systems", default="cvl,cvl out,dask,scipy", help="a subset of cvl, cvl out, dask, scipy")
    ap.add_argument("--cold-imports", action="store_true", help="time the first import of scipy.ndimage and "
                    "dask's first scheduler lookup too")
    args = ap.parse_args()
    if args.child:
        child(*args.child, args.baseline_path, args.cold_imports)
        return 0
    repeats = args.repeats or (2 if args.quick else 5)
    vol = make(args.quick)
    truth = vol.path.parent / "gauss.truth.npy"
    if not truth.exists():
        np.save(truth, fn(np.asarray(vol.truth())))
    common.warm_page_cache(vol.path)
    systems = [s for s in args.systems.split(",") if s]
    base = None
    if args.baseline is not None:
        base = str(Path(common.baseline_package(args.baseline.resolve()).__file__).parent.parent)
        systems += [s + " before" for s in systems if s.startswith("cvl")]
    runs: dict[str, list[dict]] = {s: [] for s in systems}
    for r in range(repeats):
        for system in common.rotate(systems, r):
            cmd = [sys.executable, __file__, "--child", system, vol.url, str(truth)] + \
                (["--cold-imports"] if args.cold_imports else [])
            out = subprocess.run(cmd + (["--baseline-path", base] if base else []), capture_output=True, text=True,
                                 check=True)
            res = json.loads(out.stdout.strip().splitlines()[-1])
            runs[system].append(res)
            print(f"  {system:14s} {res['s']:.2f} s, CPU {res['cpu']:.2f} s, {res['tasks']} tasks, "
                  f"peak {res['rss'] / 2**20:.0f} MiB, exact {res['exact']}")
    nbytes = int(np.prod(np.load(truth, mmap_mode="r").shape)) * 4
    print(f"\ngaussian sigma {SIGMA}, depth {DEPTH}, float32 {vol.params['shape']} ({nbytes / 1e6:.0f} MB), "
          f"64^3 chunks; medians of {repeats}, each run in a fresh process")
    print(f"{'system':14s} {'wall s':>7s} {'CPU s':>6s} {'tasks':>6s} {'peak MiB':>9s} {'exact':>6s} {'vs dask':>8s} "
          f"{'vs scipy':>9s}")
    med = {s: statistics.median(x["s"] for x in runs[s]) for s in systems}
    rows = []
    for s in systems:
        peak = statistics.median(x["rss"] for x in runs[s])
        cpu = statistics.median(x["cpu"] for x in runs[s])
        exact = all(x["exact"] for x in runs[s])
        rows.append({"system": s, "s": med[s], "cpu": cpu, "tasks": runs[s][0]["tasks"], "peak": peak, "exact": exact,
                     "times": [x["s"] for x in runs[s]], "cpus": [x["cpu"] for x in runs[s]]})
        vs = {k: (f"{med[k] / med[s]:.2f}" if k in med else "-") for k in ("dask", "scipy")}
        print(f"{s:14s} {med[s]:7.2f} {cpu:6.2f} {runs[s][0]['tasks']:6d} {peak / 2**20:9.0f} {str(exact):>6s} "
              f"{vs['dask']:>8s} {vs['scipy']:>9s}")
    common.write_json({"name": "halo", "shape": vol.params["shape"], "sigma": SIGMA, "depth": DEPTH,
                       "repeats": repeats, "cold_imports": args.cold_imports, "rows": rows, "env": common.environment({})},
                      "halo_quick.json" if args.quick else "halo.json")
    return 0 if all(r["exact"] for r in rows if r["system"] != "dask") else 1


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    sys.exit(main())
