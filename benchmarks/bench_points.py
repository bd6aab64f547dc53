"""10,000 random points: cloudvolume-lite ``scattered_points`` vs CloudVolume ``scattered_points``
(with its LRU) vs TensorStore ``vindex`` (asked for C order, "ts", and Fortran order, "ts F"),
in one run, on the cseg uint64 512x512x128 volume (B, unsharded; D, sharded) and the same
labels stored raw (E). Then warm second passes for
cloudvolume-lite through its LRU and through its disk cache. Every answer is checked.

    python benchmarks/bench_points.py [--quick] [--repeats N] [--points N]

``--scales`` runs the sweep instead: 1k to 10M uniform random points (seeded) on 1 GB uint64
volumes (1024x1024x128, 64^3 chunks, written by TensorStore; raw and cseg, each plain and
sharded), every system with a fresh handle and no cache inside the timer, rounds interleaved,
medians of wall and CPU time, every answer checked against the truth. CloudVolume is timed
only up to ``--cv-max`` points (default 10k: it takes seconds there). ``--clustered`` adds
lines whose points all lie in a 128^3 box (8 chunks). ``--baseline DIR`` adds the code of
another checkout as "cvl before". "floor" is the bytes work alone on both cores
(``points_floor.py``; "vs floor" below 1 is how far cvl is above it). Results go to
points_scale.json.

    python benchmarks/bench_points.py --scales [--sizes 1000,10000] [--lines raw,cseg] [--baseline DIR]
"""

from __future__ import annotations

import gc
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from bench_read import GENERATOR_VERSION, SHARDING_B, make_volumes, segmentation_like  # noqa: E402


def main() -> int:
    ap = common.arg_parser(__doc__)
    ap.add_argument("--points", type=int, default=10_000)
    ap.add_argument("--scales", action="store_true", help="the 1k..10M sweep on 1 GB volumes (see above)")
    ap.add_argument("--sizes", default=None, help="point counts for --scales, comma-separated")
    ap.add_argument("--lines", default=None, help="--scales lines to run, comma-separated (default: all)")
    ap.add_argument("--cv-max", type=int, default=10_000, help="largest point count CloudVolume is timed at")
    ap.add_argument("--clustered", action="store_true", help="--scales: also points within 8 chunks")
    ap.add_argument("--baseline", default=None, help="--scales: a checkout to compare against, as 'cvl before'")
    ap.add_argument("--no-floor", action="store_true", help="--scales: leave out the floor (points_floor.py)")
    ap.add_argument("--json", default=None, help="--scales: results file under benchmarks/results/ ('' = none)")
    args = ap.parse_args()
    if args.scales:
        return run_scales(args)
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


# ------------------------------------------------------------------------------------------
# --scales: 1k..10M points on 1 GB volumes
# ------------------------------------------------------------------------------------------
SIZES = (1_000, 10_000, 100_000, 1_000_000, 10_000_000)
#: line name -> (encoding, sharding); all four hold the same labels
SCALE_LINES = {"raw": ("raw", None), "cseg": ("compressed_segmentation", None),
               "raw sharded": ("raw", SHARDING_B), "cseg sharded": ("compressed_segmentation", SHARDING_B)}


def scale_volumes(quick: bool) -> dict[str, common.BenchVolume]:
    """The four 1 GB uint64 volumes (1024x1024x128, 64^3 chunks; 256x256x64 with ``quick``), one
    label field stored raw and cseg, plain and sharded, written by TensorStore (made once)."""
    from oracles import ts_write

    shape = (256, 256, 64) if quick else (1024, 1024, 128)
    off, chunk, block = (1000, 300, 17), (64, 64, 64), (8, 8, 8)
    base = {"gen": GENERATOR_VERSION, "kind": "segmentation_like", "shape": shape, "seed": 3, "chunk": chunk}
    tags = {"raw": "PR", "cseg": "PS", "raw sharded": "PRS", "cseg sharded": "PSS"}
    out: dict[str, common.BenchVolume] = {}
    for line, (enc, shard) in SCALE_LINES.items():
        params = {**base, "encoding": enc, **({"block": block} if enc != "raw" else {}),
                  **({"sharding": shard} if shard else {})}
        first = next(iter(out.values()), None)  # the same labels: load the first volume's truth
        make = (lambda: segmentation_like(shape, seed=3)) if first is None else (lambda f=first: np.load(f.truth_path))

        def write(path, arr, enc=enc, shard=shard):
            return ts_write(path, arr, offset=off, chunk=chunk, encoding=enc, block=block, sharding=shard)

        out[line] = common.cached_volume(f"{tags[line]}-uint64-1g" + ("-quick" if quick else ""), params, make,
                                         write, offset=off)
    return out


def scale_points(n: int, shape, seed: int, clustered: bool) -> np.ndarray:
    """``n`` volume-local points, uniform over the volume or (``clustered``) over a 128^3 box."""
    rng = np.random.default_rng(seed)
    if not clustered:
        return np.stack([rng.integers(0, s, n) for s in shape], axis=1)
    lo = [min(64, s // 4) for s in shape]
    return np.stack([rng.integers(a, min(s, a + 128), n) for a, s in zip(lo, shape)], axis=1)


def scale_systems(baseline: str | None, floor: bool = True) -> dict[str, object]:
    """name -> fn(url, points) -> values, each opening a fresh handle (no cache, as TensorStore's
    default context has none); and the floor (``points_floor.py``), whose setup is untimed."""
    import cloudvolume_lite as cvl

    def ts_fn(order):
        def run(url, pts):
            t = common.ts_open(url)
            return np.asarray(t.vindex[pts[:, 0], pts[:, 1], pts[:, 2], 0].read(order=order).result())
        return run

    def cv(url, pts):
        from cloudvolume import CloudVolume

        res = CloudVolume(url, progress=False).scattered_points(pts)
        return np.array([res[tuple(int(c) for c in p)] for p in pts], dtype=np.uint64)

    systems = {"cvl": lambda url, pts: cvl.Volume(url).scattered_points(pts)}
    if baseline:
        before = common.baseline_package(Path(baseline).resolve())
        systems["cvl before"] = lambda url, pts: before.Volume(url).scattered_points(pts)  # type: ignore[attr-defined]
    systems.update({"ts": ts_fn("C"), "ts F": ts_fn("F"), "cv": cv})
    if floor:
        from points_floor import floor_system

        systems["floor"] = floor_system()
    return systems


def time_one(fn, url: str, pts: np.ndarray, want: np.ndarray) -> tuple[float, float]:
    """(wall s, CPU s) of one call, its answer checked against ``want`` outside the timer."""
    setup = getattr(fn, "setup", None)  # the floor's untimed part
    prepared = setup(url, pts) if setup is not None else None
    gc.collect()
    common.prefault(3 * want.nbytes + (32 << 20))
    c0, t0 = time.process_time(), time.perf_counter()
    got = fn(url, pts) if setup is None else fn(url, pts, prepared)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if not np.array_equal(np.asarray(got).reshape(-1), want):
        raise AssertionError(f"wrong values on {url} ({len(pts)} points)")
    return wall, cpu


def run_scales(args) -> int:
    sizes = [int(v) for v in args.sizes.split(",")] if args.sizes else list(SIZES)
    repeats = args.repeats or (2 if args.quick else 7)
    vols = scale_volumes(args.quick)
    names = [ln for ln in vols if not args.lines or ln in args.lines.split(",")]
    systems = scale_systems(args.baseline, not args.no_floor)
    truth = np.load(vols["raw"].truth_path, mmap_mode="r")[..., 0]
    shape, off = truth.shape, np.asarray(vols["raw"].offset)
    for ln in names:
        common.warm_page_cache(vols[ln].path)
    kinds = ["uniform", "clustered"] if args.clustered else ["uniform"]
    rows = []
    for kind in kinds:
        for n in sizes:
            local = scale_points(n, shape, seed=n, clustered=kind == "clustered")
            pts, want = local + off, truth[local[:, 0], local[:, 1], local[:, 2]]
            active = [s for s in systems if s != "cv" or n <= args.cv_max]
            for ln in names:
                url = vols[ln].url
                times: dict[str, list[tuple[float, float]]] = {s: [] for s in active}
                for r in range(repeats + 1):  # round 0 warms up (and is checked like every round)
                    for s in common.rotate(active, r):
                        if s == "cv" and r > min(repeats, 2):
                            continue  # CloudVolume takes seconds: two timed rounds are enough
                        t = time_one(systems[s], url, pts, want)
                        if r:
                            times[s].append(t)
                rows += scale_rows(kind, ln, n, times)
                print_rows(rows[-len(times):])
    print_table(rows)
    versions = {s: common.dist_version({"cv": "cloud-volume", "ts": "tensorstore", "ts F": "tensorstore"}.get(
        s, "cloudvolume-lite")) for s in systems}
    name = args.json if args.json is not None else "points_scale_quick.json" if args.quick else "points_scale.json"
    if name:
        path = common.write_json({"benchmark": "points_scale", "env": common.environment(versions), "quick": args.quick,
                                  "repeats": repeats, "sizes": sizes, "cv_max": args.cv_max, "rows": rows}, name)
        print(f"[points --scales] wrote {path}")
    return 0


def scale_rows(kind: str, line: str, n: int, times: dict[str, list[tuple[float, float]]]) -> list[dict]:
    """One row per system: medians (ms) of wall and CPU, ns per point, speed ratios to the peers."""
    med = {s: (1e3 * statistics.median(w for w, _ in t), 1e3 * statistics.median(c for _, c in t))
           for s, t in times.items() if t}
    rows = []
    for s, (ms, cpu) in med.items():
        wall = [w for w, _ in times[s]]
        peers = [p for p in med if not common.is_ours(p)] if common.is_ours(s) else []
        if s == "cvl" and "cvl before" in med:
            peers.append("cvl before")
        name = {"cvl before": "before"}
        rows.append({"points": kind, "line": line, "n": n, "system": s, "ms": ms, "cpu_ms": cpu,
                     "ns_per_point": 1e6 * ms / n, "rounds": len(wall),
                     "spread": (max(wall) - min(wall)) / 2 / statistics.median(wall) if len(wall) > 1 else None,
                     "ratios": {f"vs {name.get(p, p)}": med[p][0] / ms for p in peers},
                     "cpu_ratios": {f"vs {name.get(p, p)}": med[p][1] / cpu for p in peers}})
    return rows


def print_rows(rows: list[dict]) -> None:
    for r in rows:
        rat = "  ".join(f"{k} {v:.2f}x" for k, v in r["ratios"].items())
        print(f"{r['points']:<9} {r['line']:<13} {r['n']:>9,} {r['system']:<10} {r['ms']:9.1f} ms  cpu {r['cpu_ms']:9.1f} "
              f"{r['ns_per_point']:9.1f} ns/pt  {rat}", flush=True)


def print_table(rows: list[dict]) -> None:
    """The sweep as one table: a row per (points, line, n), wall ms per system, then cvl's ratios."""
    systems = list(dict.fromkeys(r["system"] for r in rows))
    keys = list(dict.fromkeys(k for r in rows if r["system"] == "cvl" for k in r["ratios"]))
    cpu_keys = [k for k in ("vs ts F", "vs before") if k in keys]
    print("\nmedian wall ms (cpu ms) with a fresh handle; ns/pt is cvl's (wall); ratios are cvl's speed ratios "
          "(>1: cvl is faster), of wall time, then of CPU time")
    print(f"{'points':<9} {'line':<13} {'n':>10}" + "".join(f"{s:>18}" for s in systems) + f"{'ns/pt':>8}"
          + "".join(f"{k:>11}" for k in keys) + "".join(f"{'cpu ' + k:>15}" for k in cpu_keys))
    cells: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        cells.setdefault((r["points"], r["line"], r["n"]), {})[r["system"]] = r
    for (kind, line, n), by in cells.items():
        row = f"{kind:<9} {line:<13} {n:>10,}"
        row += "".join(f"{by[s]['ms']:>9.1f} ({by[s]['cpu_ms']:>5.0f})" if s in by else f"{'—':>18}" for s in systems)
        mine = by.get("cvl", {})
        row += f"{mine.get('ns_per_point', float('nan')):>8.0f}"
        row += "".join(f"{mine.get('ratios', {}).get(k, float('nan')):>10.2f}x" for k in keys)
        row += "".join(f"{mine.get('cpu_ratios', {}).get(k, float('nan')):>14.2f}x" for k in cpu_keys)
        print(row)


if __name__ == "__main__":
    sys.exit(main())
