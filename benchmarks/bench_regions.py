"""Training-style access and Dask: read_regions against loops of single reads, and to_dask on a
2-worker LocalCluster against a direct read.

Line 1: 256 regions of 64^3 (random corners, seeded; neighbours overlap chunks) from the
1024x1024x128 uint8 volume A of bench_read.py, batch size 8:
  - cloudvolume-lite ``vol.read_regions(...)`` (threads fetch ahead, LRU shares chunks)
  - a loop of single reads with cloudvolume-lite, CloudVolume and TensorStore.
Line 2: the whole volume through ``vol.to_dask()`` computed on a LocalCluster of 2 worker
processes, against ``vol[...]`` directly. Peak RSS growth of this process is reported too.
Systems are interleaved and repeated; medians are quoted; every result is checked.

    python benchmarks/bench_regions.py [--quick] [--repeats N]
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from bench_read import make_volumes  # noqa: E402


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def main() -> int:
    ap = common.arg_parser(__doc__)
    args = ap.parse_args()
    repeats = args.repeats or (2 if args.quick else 5)
    import cloudvolume_lite as cvl
    import tensorstore as ts
    from cloudvolume import CloudVolume

    vol_a, shape, _ = make_volumes(args.quick, False)[0]
    truth = np.asarray(vol_a.truth())
    common.warm_page_cache(vol_a.path)
    n, size, batch = (64 if args.quick else 256), np.array([64, 64, 64]), 8
    rng = np.random.default_rng(0)
    lo = np.array(vol_a.offset)
    corners = np.stack([rng.integers(l, l + s - 64 + 1, n) for l, s in zip(lo, shape)], axis=1)
    want = np.stack([truth[tuple(slice(c - o, c - o + 64) for c, o in zip(p, lo))] for p in corners])

    def loader() -> np.ndarray:
        v = cvl.Volume(vol_a.url, lru_bytes=256 << 20)
        return np.concatenate(list(v.read_regions(corners, size, batch_size=batch, num_workers=2)))

    def loop_cvl() -> np.ndarray:
        v = cvl.Volume(vol_a.url)
        return np.stack([v[p[0] : p[0] + 64, p[1] : p[1] + 64, p[2] : p[2] + 64] for p in corners])

    def loop_cv() -> np.ndarray:
        v = CloudVolume(vol_a.url, progress=False)
        return np.stack([np.asarray(v[p[0] : p[0] + 64, p[1] : p[1] + 64, p[2] : p[2] + 64]) for p in corners])

    def loop_ts() -> np.ndarray:
        t = ts.open({"driver": "neuroglancer_precomputed", "kvstore": vol_a.url}).result()
        return np.stack([np.asarray(t[p[0] : p[0] + 64, p[1] : p[1] + 64, p[2] : p[2] + 64].read().result()) for p in corners])

    systems = {"cvl read_regions": loader, "cvl loop": loop_cvl, "CloudVolume loop": loop_cv, "TensorStore loop": loop_ts}
    times: dict[str, list[float]] = {k: [] for k in systems}
    for r in range(repeats + 1):
        for name in common.rotate(list(systems), r):
            common.prefault(2 * want.nbytes)
            t0 = time.perf_counter()
            got = systems[name]()
            dt = time.perf_counter() - t0
            if r == 0:
                if not np.array_equal(got, want):
                    print(f"{name}: wrong regions")
                    return 1
            else:
                times[name].append(dt)
    mb = want.nbytes / 1e6
    print(f"{n} regions of 64^3 ({mb:.0f} MB) from {shape} uint8, batch {batch}; median of {repeats}")
    base = statistics.median(times["cvl read_regions"])
    results = {}
    for name, ts_ in times.items():
        med = statistics.median(ts_)
        results[name] = med
        print(f"  {name:<18} {med * 1e3:8.1f} ms  {mb / med:8.1f} MB/s  read_regions is {med / base:5.2f}x faster")

    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                      silence_logs=40) as cluster, Client(cluster):
        v = cvl.Volume(vol_a.url)
        arr = v.to_dask()
        dask_t, direct_t = [], []
        before = rss()
        for r in range(repeats + 1):
            for which in common.rotate(["dask", "direct"], r):
                common.prefault(2 * truth.nbytes)
                t0 = time.perf_counter()
                got = arr.compute() if which == "dask" else v[...]
                dt = time.perf_counter() - t0
                if r == 0 and not np.array_equal(got, truth):
                    print(f"{which}: wrong data")
                    return 1
                if r:
                    (dask_t if which == "dask" else direct_t).append(dt)
                del got
        peak_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    dmb = truth.nbytes / 1e6
    print(f"full read of {dmb:.0f} MB: to_dask on a 2-process LocalCluster {statistics.median(dask_t):.2f} s "
          f"({arr.npartitions} tasks), direct {statistics.median(direct_t):.2f} s; "
          f"client peak RSS growth {peak_growth / 2**20:.0f} MiB (output {truth.nbytes / 2**20:.0f} MiB)")
    common.write_json({"benchmark": "regions", "quick": args.quick, "regions_seconds": results,
                       "dask_seconds": statistics.median(dask_t), "direct_seconds": statistics.median(direct_t),
                       "client_peak_growth_bytes": peak_growth}, "regions_quick.json" if args.quick else "regions.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
