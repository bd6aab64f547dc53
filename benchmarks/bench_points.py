"""10,000 random points: cloudvolume-lite ``scattered_points`` vs CloudVolume ``scattered_points``
(with its LRU) vs TensorStore ``vindex``, in one run, on the cseg uint64 512x512x128 volume
(B, unsharded; D, sharded) and the same labels stored raw. Then warm second passes for
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
    import tensorstore as ts
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

    def run_ts(url):
        t = ts.open({"driver": "neuroglancer_precomputed", "kvstore": url}).result()
        return np.asarray(t.vindex[pts[:, 0], pts[:, 1], pts[:, 2], 0].read().result())

    systems = {"cvl": run_cvl, "cv": run_cv, "ts": run_ts}
    lines = [("B cseg", vol_b), ("D cseg sharded", vol_d), ("E raw", vol_r)]
    times: dict[tuple[str, str], list[float]] = {}
    for name, vol in lines:
        for r in range(repeats + 1):
            for system in common.rotate(list(systems), r):
                t0 = time.perf_counter()
                got = systems[system](vol.url)
                dt = time.perf_counter() - t0
                if r == 0:
                    if not np.array_equal(np.asarray(got).reshape(-1), want):
                        print(f"{system} returned wrong values on {name}")
                        return 1
                else:
                    times.setdefault((name, system), []).append(dt)

    print(f"{args.points} random points, median of {repeats} (ms; a fresh handle each time)")
    print(f"{'line':<18} {'cvl':>9} {'cv':>10} {'ts':>9} {'cv/cvl':>8} {'ts/cvl':>8}")
    out = {}
    for name, _ in lines:
        ms = {s: 1e3 * statistics.median(times[(name, s)]) for s in systems}
        out[name] = ms
        print(f"{name:<18} {ms['cvl']:>9.1f} {ms['cv']:>10.1f} {ms['ts']:>9.1f} {ms['cv'] / ms['cvl']:>8.1f} "
              f"{ms['ts'] / ms['cvl']:>8.2f}")

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
    common.write_json({"benchmark": "points", "points": args.points, "repeats": repeats, "cold_ms": out,
                       "warm_ms": warm}, "points_quick.json" if args.quick else "points.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
