"""Peak memory of a full 1 GiB read: cloudvolume-lite vs CloudVolume vs TensorStore.

Each system reads the whole volume in a fresh subprocess; we report its peak RSS minus the RSS
just before the read (imports, volume opened) and compare it with the output size. Runs are
interleaved and repeated; medians are quoted.

    python benchmarks/bench_memory.py            # 1024^3 uint8, raw, 128x128x64 chunks
    python benchmarks/bench_memory.py --quick    # 256^3
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

CHILD = r"""
import json, sys, time
import numpy as np
system, url = sys.argv[1], sys.argv[2]
def status(field):  # VmRSS now, VmHWM the peak; not ru_maxrss, which Linux carries over exec from the parent
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))
if system == "cvl":
    import cloudvolume_lite as cvl
    vol = cvl.Volume(url, lru_bytes=int(sys.argv[3]))
    read = lambda: vol[...]
elif system == "cv":
    from cloudvolume import CloudVolume
    vol = CloudVolume(url, progress=False)
    read = lambda: np.asarray(vol[:, :, :])
else:
    import tensorstore as ts
    t = ts.open({"driver": "neuroglancer_precomputed", "kvstore": url}).result()
    read = lambda: np.asarray(t.read().result())
before = status("VmRSS")
t0 = time.perf_counter()
out = read()
dt = time.perf_counter() - t0
peak = status("VmHWM")
print(json.dumps({"before": before, "peak": peak, "out": int(out.nbytes), "seconds": dt, "checksum": int(out[::97, ::89, ::83].sum())}))
"""


def main() -> int:
    ap = common.arg_parser(__doc__)
    ap.set_defaults(repeats=3)
    ap.add_argument("--lru-bytes", type=int, default=64 << 20, help="cloudvolume-lite's LRU during the read")
    args = ap.parse_args()
    n = 256 if args.quick else 1024
    params = {"kind": "memory", "size": [n, n, n], "chunk": [128, 128, 64], "version": 1}
    path = common.data_dir() / f"M-raw-uint8-{n}-{common._params_key(params)}"
    url = "file://" + str(path / "vol")
    if not (path / ".done").exists():
        import cloudvolume_lite as cvl

        vol = cvl.Volume.create(url, data_type="uint8", layer_type="image", size=(n, n, n), chunk_size=(128, 128, 64),
                                resolution=(8, 8, 8), overwrite=True)
        for z in range(0, n, 64):
            vol[:, :, z : z + 64] = np.random.default_rng(z).integers(0, 255, (n, n, 64, 1), dtype=np.uint8)
        (path / ".done").write_text("ok")
    common.warm_page_cache(path)
    results: dict[str, list[dict]] = {"cvl": [], "cv": [], "ts": []}
    for r in range(args.repeats):
        for system in common.rotate(list(results), r):
            out = subprocess.run([sys.executable, "-c", CHILD, system, url, str(args.lru_bytes)],
                                 capture_output=True, text=True, check=True)
            results[system].append(json.loads(out.stdout.strip().splitlines()[-1]))
    sums = {s: {x["checksum"] for x in v} for s, v in results.items()}
    if len(set.union(*sums.values())) != 1:
        print("systems disagree on the data:", sums)
        return 1
    out_mib = results["cvl"][0]["out"] / 2**20
    print(f"full read of {n}^3 uint8 ({out_mib:.0f} MiB output), {args.repeats} runs each, medians")
    print(f"{'system':<8} {'seconds':>8} {'peak - before (MiB)':>20} {'over the output (MiB)':>22}")
    summary = {}
    for s, runs in results.items():
        grow = statistics.median((x["peak"] - x["before"]) / 2**20 for x in runs)
        secs = statistics.median(x["seconds"] for x in runs)
        summary[s] = {"seconds": secs, "growth_mib": grow, "over_output_mib": grow - out_mib}
        print(f"{s:<8} {secs:>8.2f} {grow:>20.0f} {grow - out_mib:>22.0f}")
    common.write_json({"benchmark": "memory", "size": n, "lru_bytes": args.lru_bytes, "results": summary,
                       "runs": results}, "memory.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
