"""10,000 random points: cloudvolume-lite ``scattered_points`` vs CloudVolume ``scattered_points``
(with its LRU) vs TensorStore ``vindex`` (asked for C order, "ts", and Fortran order, "ts F"),
in one run, on the cseg uint64 512x512x128 volume (B, unsharded; D, sharded) and the same
labels stored raw (E). Then warm second passes for
cloudvolume-lite through its LRU and through its disk cache. Every answer is checked.

    python benchmarks/bench_points.py [--quick] [--repeats N] [--points N]
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from bench_read import make_volumes, segmentation_like  # noqa: E402


def main() -> int:
    ap = common.arg_parser(__doc__)
    ap.add_argument("--points", type=int, default=10_000)
    args = ap.parse_args()
    repeats = args.repeats or (2 if args.quick else 5)
    import cloudvolume_lite as cvl
    from cloudvolume import CloudVolume
    from oracles import ts_write

    vol_b, shape_b, _ = make_volumes(args.quick, False)[1]
    vol_d = make_volumes(args.quick, False, sharded=True)[1][0]
    off = vol_b.offset
    vol_r = common.cached_volume(
        "E-raw-uint64" + ("-quick" if args.quick else ""),
        {**vol_b.params, "encoding": "raw"},
        lambda: segmentation_like(shape_b, seed=2),
        lambda path, arr: ts_write(path, arr, offset=off, chunk=(64, 64, 64), encoding="raw"),
        offset=off,
    )
    truth = np.asarray(vol_b.truth())[..., 0]
    rng = np.random.default_rng(0)
    local = np.stack([rng.integers(0, s, args.points) for s in shape_b], axis=1)
    pts = local + np.asarray(off)
    want = truth[local[:, 0], local[:, 1], local[:, 2]]
    for v in (vol_b, vol_d, vol_r):
        common.warm_page_cache(v.path)

    def run_cvl(url):
        return cvl.Volume(url, lru_bytes=512 << 20).scattered_points(pts)

    def run_cv(url):
        v = CloudVolume(url, progress=False, lru_bytes=512 << 20)
        res = v.scattered_points(pts)
        return np.array([res[tuple(int(c) for c in p)] for p in pts], dtype=np.uint64)

    def run_ts(url, order="C"):
        t = common.ts_open(url)
        return np.asarray(t.vindex[pts[:, 0], pts[:, 1], pts[:, 2], 0].read(order=order).result())

    systems = {"cvl": run_cvl, "cv": run_cv, "ts": run_ts, "ts F": lambda url: run_ts(url, "F")}
    lines = [("B cseg", vol_b), ("D cseg sharded", vol_d), ("E raw", vol_r)]
    times: dict[tuple[str, str], list[float]] = {}
    for name, vol in lines:
        for r in range(repeats + 1):
            for system in common.rotate(list(systems), r):
                t0 = time.perf_counter()
                got = systems[system](vol.url)
                dt = time.perf_counter() - t0
                if r == 0:  # every system's first answer is checked against the truth, outside the timer
                    if not np.array_equal(np.asarray(got).reshape(-1), want):
                        print(f"{system} returned wrong values on {name}")
                        return 1
                else:
                    times.setdefault((name, system), []).append(dt)

    print(f"{args.points} random points, median of {repeats} (ms; a fresh handle each time); "
          "ratios are speed ratios, cvl against each peer (above 1: cvl is faster)")
    keys = common.ratio_names(list(systems))
    print(f"{'line':<18}" + "".join(f"{s:>10}" for s in systems)
          + "".join(f"{('vs best' if k == 'cvl/best' else k):>10}" for k in keys))
    out, spread, rat = {}, {}, {}
    for name, _ in lines:
        ms = {s: 1e3 * statistics.median(times[(name, s)]) for s in systems}
        out[name] = ms
        spread[name] = {s: (max(t) - min(t)) / 2 / statistics.median(t) if len(t) > 1 else None
                        for s in systems for t in [times[(name, s)]]}
        rat[name] = common.ratios({s: 1e3 / v for s, v in ms.items()})
        print(f"{name:<18}" + "".join(f"{ms[s]:>10.1f}" for s in systems)
              + "".join(f"{rat[name][k]:>10.2f}" for k in keys))

    warm = {}
    for name, vol in lines[:2]:
        v = cvl.Volume(vol.url, lru_bytes=512 << 20)
        v.scattered_points(pts)
        t = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            assert np.array_equal(v.scattered_points(pts), want)
            t.append(time.perf_counter() - t0)
        cache_dir = tempfile.mkdtemp(prefix="cvl-bench-cache-")
        cvl.Volume(vol.url, cache=cache_dir).scattered_points(pts)
        d = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            assert np.array_equal(cvl.Volume(vol.url, cache=cache_dir).scattered_points(pts), want)
            d.append(time.perf_counter() - t0)
        shutil.rmtree(cache_dir, ignore_errors=True)
        warm[name] = {"lru_ms": 1e3 * statistics.median(t), "disk_cache_ms": 1e3 * statistics.median(d)}
        print(f"warm {name:<13} cvl LRU {warm[name]['lru_ms']:.1f} ms, cvl disk cache (new handle) "
              f"{warm[name]['disk_cache_ms']:.1f} ms")
    versions = {"cvl": common.dist_version("cloudvolume-lite"), "cv": common.dist_version("cloud-volume"),
                "ts": common.dist_version("tensorstore"), "ts F": common.dist_version("tensorstore")}
    path = common.write_json({"benchmark": "points", "env": common.environment(versions), "quick": args.quick,
                              "points": args.points, "repeats": repeats, "cold_ms": out, "cold_spread": spread,
                              "ratios": rat, "warm_ms": warm}, "points_quick.json" if args.quick else "points.json")
    print(f"[points] wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
