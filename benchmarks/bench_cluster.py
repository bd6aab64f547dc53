"""Reading and copying a volume in three cluster shapes: no cluster (the Volume's threads),
a LocalCluster of 2 worker processes x 1 thread, and one of 4 x 1 (on 127.0.0.1).

Lines, for raw uint8 (A, 134 MB) and cseg uint64 (B, 268 MB) from bench_read.py:
  - ``read``: ``vol.to_dask().compute()`` on the cluster (no cluster: ``vol[...]``), MB/s of output;
  - ``copy``: ``copy_volume(src, dst, client=...)`` into a fresh local directory (no cluster:
    ``copy_volume`` on threads), MB/s of source voxels.
Shapes are interleaved across repeats; medians; every read is checked against the truth and
every copy read back and checked. On a 2-core machine, 4 workers only show the cost of
oversubscription, not a speedup: see docs/performance.md for what more machines change.

    python benchmarks/bench_cluster.py [--quick] [--repeats N]
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
from bench_read import make_volumes  # noqa: E402

SHAPES = {"no cluster": None, "2 workers x 1 thread": 2, "4 workers x 1 thread": 4}


def main() -> int:
    ap = common.arg_parser(__doc__)
    args = ap.parse_args()
    repeats = args.repeats or (2 if args.quick else 3)
    import cloudvolume_lite as cvl
    from cloudvolume_lite.transfer import copy_volume
    from dask.distributed import Client, LocalCluster

    vols = [v for v, _, _ in make_volumes(args.quick, False)[:2]]
    for v in vols:
        common.warm_page_cache(v.path)
    clusters = {}
    for name, n in SHAPES.items():
        if n is not None:
            c = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                             dashboard_address=None, silence_logs=50)
            clusters[name] = (c, Client(c))
    times: dict[tuple[str, str, str], list[float]] = {}
    tmp = Path(tempfile.mkdtemp(prefix="cvl-bench-cluster-"))
    try:
        for r in range(repeats + 1):  # round 0 warms the workers (imports, first opens): not timed
            for vol in vols:
                truth = np.asarray(vol.truth())
                for shape in common.rotate(list(SHAPES), r):
                    client = clusters[shape][1] if shape in clusters else None
                    v = cvl.Volume(vol.url)
                    t0 = time.perf_counter()
                    got = v[...] if client is None else client.compute(v.to_dask()).result()
                    times.setdefault((vol.name, "read", shape), []).append(time.perf_counter() - t0)
                    if r == 0:
                        times[(vol.name, "read", shape)].pop()
                    if not np.array_equal(got, truth):
                        print(f"wrong data: {vol.name} read, {shape}")
                        return 1
                    del got
                    dst = tmp / f"copy-{r}-{shape.split()[0]}"
                    t0 = time.perf_counter()
                    copy_volume(vol.url, "file://" + str(dst), client=client)
                    times.setdefault((vol.name, "copy", shape), []).append(time.perf_counter() - t0)
                    if r == 0:
                        times[(vol.name, "copy", shape)].pop()
                    if not np.array_equal(cvl.Volume("file://" + str(dst))[...], truth):
                        print(f"wrong data: {vol.name} copy, {shape}")
                        return 1
                    shutil.rmtree(dst)
                    if r:
                        print(f"  {vol.name} {shape}: read {times[(vol.name, 'read', shape)][-1]:.2f} s, "
                              f"copy {times[(vol.name, 'copy', shape)][-1]:.2f} s")
    finally:
        for c, client in clusters.values():
            client.close()
            c.close()
        shutil.rmtree(tmp, ignore_errors=True)
    rows = []
    print(f"\nMB/s, medians of {repeats}")
    print(f"{'volume':26s} {'job':5s} " + " ".join(f"{s:>22s}" for s in SHAPES))
    for vol in vols:
        mb = np.asarray(vol.truth()).nbytes / 1e6
        for job in ("read", "copy"):
            rates = {s: mb / statistics.median(times[(vol.name, job, s)]) for s in SHAPES}
            rows.append({"volume": vol.name, "job": job, "mb": mb, "mbps": rates,
                         "times": {s: times[(vol.name, job, s)] for s in SHAPES}})
            print(f"{vol.name:26s} {job:5s} " + " ".join(f"{rates[s]:22.0f}" for s in SHAPES))
    common.write_json({"name": "cluster", "repeats": repeats, "rows": rows, "env": common.environment({})},
                      "cluster" + ("_quick" if args.quick else "") + ".json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
