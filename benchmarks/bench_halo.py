"""Halo processing: a 3-D gaussian (sigma 3, depth 9) over a float32 volume in 64^3 chunks,
three ways, interleaved and repeated, every result checked voxel for voxel against scipy on the
whole array:

- ``cvl``: ``vol.map_overlap(fn, depth=9)`` (one task per block, each reading its halo from
  storage), computed with dask's threaded scheduler;
- ``dask``: ``vol.to_dask().map_overlap(fn, depth=9, boundary="none")``, the same threads;
- ``scipy``: ``vol[...]`` then ``scipy.ndimage.gaussian_filter`` on the whole array.

Printed per system: wall time (median), tasks in the graph, peak memory of a child process
that runs only that system (ru_maxrss), and whether the result is exact.

    python benchmarks/bench_halo.py [--quick] [--repeats N]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
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


def build(system: str, url: str):
    """(callable that computes the result, number of tasks in its graph)."""
    import cloudvolume_lite as cvl

    vol = cvl.Volume(url)
    if system == "scipy":
        return (lambda: fn(vol[...])), 1
    if system == "cvl":
        arr = vol.map_overlap(fn, depth=DEPTH)  # default blocks: whole chunks, about 32 MiB
    else:
        arr = vol.to_dask().map_overlap(fn, depth=(DEPTH, DEPTH, DEPTH, 0), boundary="none")
    return (lambda: arr.compute(scheduler="threads")), len(arr.__dask_graph__())


def child(system: str, url: str, truth_path: str) -> None:
    """One run of ``system`` in this (fresh) process: prints its time, tasks, peak RSS, exactness."""
    import resource

    run, tasks = build(system, url)
    t0 = time.perf_counter()
    got = run()
    dt = time.perf_counter() - t0
    want = np.load(truth_path, mmap_mode="r")
    exact = bool(np.array_equal(got, want))
    print(json.dumps({"s": dt, "tasks": tasks, "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "exact": exact}))


def main() -> int:
    ap = common.arg_parser(__doc__)
    ap.add_argument("--child", nargs=3, metavar=("SYSTEM", "URL", "TRUTH"), help=argparse_hidden())
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return 0
    repeats = args.repeats or (2 if args.quick else 5)
    vol = make(args.quick)
    truth = vol.path.parent / "gauss.truth.npy"
    if not truth.exists():
        np.save(truth, fn(np.asarray(vol.truth())))
    common.warm_page_cache(vol.path)
    systems = ["cvl", "dask", "scipy"]
    runs: dict[str, list[dict]] = {s: [] for s in systems}
    for r in range(repeats):
        for system in common.rotate(systems, r):
            out = subprocess.run([sys.executable, __file__, "--child", system, vol.url, str(truth)],
                                 capture_output=True, text=True, check=True)
            res = json.loads(out.stdout.strip().splitlines()[-1])
            runs[system].append(res)
            print(f"  {system:5s} {res['s']:.2f} s, {res['tasks']} tasks, peak {res['rss'] / 2**20:.0f} MiB, "
                  f"exact {res['exact']}")
    nbytes = int(np.prod(np.load(truth, mmap_mode="r").shape)) * 4
    print(f"\ngaussian sigma {SIGMA}, depth {DEPTH}, float32 {vol.params['shape']} ({nbytes / 1e6:.0f} MB), "
          f"64^3 chunks; medians of {repeats}, each run in a fresh process")
    print(f"{'system':8s} {'wall s':>8s} {'tasks':>7s} {'peak MiB':>9s} {'exact':>6s} {'vs dask':>8s}")
    med = {s: statistics.median(x["s"] for x in runs[s]) for s in systems}
    rows = []
    for s in systems:
        peak = statistics.median(x["rss"] for x in runs[s])
        exact = all(x["exact"] for x in runs[s])
        rows.append({"system": s, "s": med[s], "tasks": runs[s][0]["tasks"], "peak": peak, "exact": exact,
                     "times": [x["s"] for x in runs[s]]})
        print(f"{s:8s} {med[s]:8.2f} {runs[s][0]['tasks']:7d} {peak / 2**20:9.0f} {str(exact):>6s} "
              f"{med['dask'] / med[s]:8.2f}")
    common.write_json({"name": "halo", "shape": vol.params["shape"], "sigma": SIGMA, "depth": DEPTH,
                       "repeats": repeats, "rows": rows, "env": common.environment({})},
                      "halo_quick.json" if args.quick else "halo.json")
    return 0 if all(r["exact"] for r in rows if r["system"] != "dask") else 1


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    sys.exit(main())
