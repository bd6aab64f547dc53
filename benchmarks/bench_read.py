"""Read throughput: cloudvolume-lite vs CloudVolume vs TensorStore on local Precomputed volumes.

    python benchmarks/bench_read.py            # full size, 5 timed repetitions
    python benchmarks/bench_read.py --quick    # small volumes, smoke test (< 1 min)

See benchmarks/README.md for what the lines and columns mean.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import Box, Line, System  # noqa: E402

GENERATOR_VERSION = 1  # bump when the generators below change, to invalidate cached data


# ------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------
def em_like(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """uint8 (X, Y, Z, 1) that looks (statistically) like EM: mixed-scale smooth noise plus grain.

    gzip compresses a 64^3 chunk of it about 1.2x, as it does real EM.
    """
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    fine = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma=(3, 3, 0.8), mode="wrap")
    coarse = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma=(24, 24, 3), mode="wrap")
    x = 0.6 * fine / fine.std() + 0.8 * coarse / coarse.std()
    x += 0.25 * rng.standard_normal(shape, dtype=np.float32)
    return np.clip(128 + 30 * x, 0, 255).astype(np.uint8)[..., np.newaxis]


def segmentation_like(shape: tuple[int, int, int], seed: int, cell=(32, 32, 8), amp=(12, 12, 3)) -> np.ndarray:
    """uint64 (X, Y, Z, 1) label field: a coarse grid of distinct ids > 2^40, with wavy boundaries.

    Each voxel takes the id of the coarse cell its smoothly displaced position falls in, so
    objects are blobs of a few tens of voxels across; compressed_segmentation with 8^3 blocks
    compresses a 64^3 chunk about 15x.
    """
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    grid = tuple(-(-s // c) + 1 for s, c in zip(shape, cell))
    n = int(np.prod(grid))
    ids = (np.uint64(2**40) + rng.choice(2**40, size=n, replace=False).astype(np.uint64) * np.uint64(3)).reshape(grid)
    idx = []
    for ax, (s, c, a) in enumerate(zip(shape, cell, amp)):
        d = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma=(6, 6, 1.5), mode="wrap")
        d *= a / d.std()
        coord = np.arange(s, dtype=np.float32).reshape([-1 if i == ax else 1 for i in range(3)])
        idx.append(np.clip(((coord + d) / c).astype(np.int64), 0, grid[ax] - 1))
    return ids[idx[0], idx[1], idx[2]][..., np.newaxis]


SHARDING_A = dict(preshift_bits=3, hash="identity", minishard_bits=3, shard_bits=3,
                  minishard_index_encoding="gzip", data_encoding="gzip")
SHARDING_B = dict(preshift_bits=3, hash="identity", minishard_bits=1, shard_bits=3,
                  minishard_index_encoding="gzip", data_encoding="gzip")
#: a small segmentation as neuroglancer tools shard one: hashed ids, a few shards and minishards
SHARDING_T = dict(preshift_bits=0, hash="murmurhash3_x86_128", minishard_bits=2, shard_bits=1,
                  minishard_index_encoding="gzip", data_encoding="gzip")
SHAPE_T, CHUNK_T = (150, 130, 70), (32, 32, 32)


def make_volumes(quick: bool, regen: bool, sharded: bool = False):
    from oracles import ts_write

    shape_a = (256, 256, 64) if quick else (1024, 1024, 128)
    shape_b = (256, 256, 64) if quick else (512, 512, 128)
    off_a, off_b = (3000, 5000, 100), (1000, 300, 17)
    chunk, block = (64, 64, 64), (8, 8, 8)
    vol_a = common.cached_volume(
        "A-raw-uint8" + ("-quick" if quick else ""),
        {"gen": GENERATOR_VERSION, "kind": "em_like", "shape": shape_a, "seed": 1, "chunk": chunk, "encoding": "raw"},
        lambda: em_like(shape_a, seed=1),
        lambda path, arr: ts_write(path, arr, offset=off_a, chunk=chunk, encoding="raw"),
        offset=off_a,
        regen=regen,
    )
    vol_b = common.cached_volume(
        "B-cseg-uint64" + ("-quick" if quick else ""),
        {
            "gen": GENERATOR_VERSION,
            "kind": "segmentation_like",
            "shape": shape_b,
            "seed": 2,
            "chunk": chunk,
            "block": block,
            "encoding": "compressed_segmentation",
        },
        lambda: segmentation_like(shape_b, seed=2),
        lambda path, arr: ts_write(path, arr, offset=off_b, chunk=chunk, encoding="compressed_segmentation", block=block),
        offset=off_b,
        regen=regen,
    )
    if not sharded:
        return [(vol_a, shape_a, np.dtype(np.uint8)), (vol_b, shape_b, np.dtype(np.uint64))]
    # the same data, written sharded by TensorStore (raw+gzip, and cseg+gzip)
    vol_c = common.cached_volume(
        "C-sharded-raw-gzip-uint8" + ("-quick" if quick else ""),
        {**vol_a.params, "sharding": SHARDING_A},
        lambda: em_like(shape_a, seed=1),
        lambda path, arr: ts_write(path, arr, offset=off_a, chunk=chunk, encoding="raw", sharding=SHARDING_A),
        offset=off_a,
        regen=regen,
    )
    vol_d = common.cached_volume(
        "D-sharded-cseg-uint64" + ("-quick" if quick else ""),
        {**vol_b.params, "sharding": SHARDING_B},
        lambda: segmentation_like(shape_b, seed=2),
        lambda path, arr: ts_write(path, arr, offset=off_b, chunk=chunk, encoding="compressed_segmentation",
                                   block=block, sharding=SHARDING_B),
        offset=off_b,
        regen=regen,
    )
    return [(vol_c, shape_a, np.dtype(np.uint8)), (vol_d, shape_b, np.dtype(np.uint64)),
            (tiny_volume(regen), SHAPE_T, np.dtype(np.uint64))]


def tiny_volume(regen: bool = False):
    """T: a tiny sharded cseg volume (150x130x70, 32^3 chunks, 75 of them in 2 shards), whose
    reads are dominated by fixed costs (opening, shard indices, per-chunk hashing)."""
    from oracles import ts_write

    off, block = (20, 40, 3), (8, 8, 8)
    params = {"gen": GENERATOR_VERSION, "kind": "segmentation_like", "shape": SHAPE_T, "seed": 3, "chunk": CHUNK_T,
              "block": block, "encoding": "compressed_segmentation", "sharding": SHARDING_T}
    return common.cached_volume(
        "T-tiny-sharded-cseg-uint64", params,
        lambda: segmentation_like(SHAPE_T, seed=3, cell=(16, 16, 8), amp=(6, 6, 2)),
        lambda path, arr: ts_write(path, arr, offset=off, chunk=CHUNK_T, encoding="compressed_segmentation",
                                   block=block, sharding=SHARDING_T),
        offset=off,
        regen=regen,
    )


def tiny_lines(vol, shape, dtype, n_opens: int) -> list[Line]:
    """The tiny volume read whole: once per handle, and with a fresh open each time."""
    full = Box(vol.offset, tuple(o + s for o, s in zip(vol.offset, shape)))  # type: ignore[arg-type]
    lines = [Line("T-tiny-sharded-cseg-uint64 full read", vol, [full], dtype)]
    if n_opens:
        lines.append(Line(f"T-tiny-sharded-cseg-uint64 open+full read x{n_opens}", vol, [full] * n_opens, dtype,
                          cold_open=True))
    return lines


def make_lines(volumes, quick: bool, n_cutouts: int, n_opens: int) -> list[Line]:
    lines = []
    for vol, shape, dtype in volumes:
        if vol.name.startswith("T-tiny"):
            lines += tiny_lines(vol, shape, dtype, n_opens)
            continue
        chunk = vol.params["chunk"]
        tag = vol.name.split("-quick")[0]
        full = Box(vol.offset, tuple(o + s for o, s in zip(vol.offset, shape)))  # type: ignore[arg-type]
        side = (40, 80) if quick else (100, 200)
        cut = common.unaligned_boxes(n_cutouts, vol.offset, shape, chunk, side=side, seed=10)
        small = common.unaligned_boxes(n_opens, vol.offset, shape, chunk, side=(60, 70), seed=20)
        lines.append(Line(f"{tag} full read", vol, [full], dtype))
        lines.append(Line(f"{tag} {n_cutouts} unaligned cutouts", vol, cut, dtype))
        if n_opens:
            lines.append(Line(f"{tag} open+read ~64^3 x{n_opens}", vol, small, dtype, cold_open=True))
    return lines


# ------------------------------------------------------------------------------------------
# systems
# ------------------------------------------------------------------------------------------
def cvl_system(parallel: int | None) -> System:
    import cloudvolume_lite as cvl

    def open_(url):
        return cvl.Volume(url, parallel=parallel)

    def read(vol, box: Box):
        return vol[box.slices()]

    return System("cvl", open_, read, close=lambda v: v.close(), version=_dist_version("cloudvolume-lite"))


def baseline_system(tree: Path, parallel: int | None) -> System:
    """cloudvolume-lite of another checkout (``--baseline``), to measure a change in one run."""
    before = common.baseline_package(tree)

    def open_(url):
        return before.Volume(url, parallel=parallel)  # type: ignore[attr-defined]

    def read(vol, box: Box):
        return vol[box.slices()]

    return System("cvl before", open_, read, close=lambda v: v.close(), version=str(tree))


def cloudvolume_system() -> System:
    import cloudvolume
    from cloudvolume import CloudVolume

    def open_(url):
        # default parallelism: parallel=1 process; CloudFiles fetches with threads internally
        return CloudVolume(url, progress=False, fill_missing=False)

    def read(vol, box: Box):
        return vol[box.slices()]

    return System("cv", open_, read, version=cloudvolume.__version__)


def tensorstore_system(order: str = "C") -> System:
    """TensorStore at its defaults, asked for C order ("ts", its default) or Fortran order ("ts F").

    cvl returns Fortran-order arrays; TensorStore asked for the same layout skips a transposing
    copy and reads 2-3x faster than in C order, so "ts F" is the like-for-like peer.
    """
    return common.tensorstore_system(order)


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


SYSTEMS = {
    "cvl": cvl_system,
    "cv": cloudvolume_system,
    "ts": lambda: tensorstore_system("C"),
    "ts F": lambda: tensorstore_system("F"),
}


# ------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small volumes (256x256x64), 3 repeats: a smoke test")
    ap.add_argument("--sharded", action="store_true", help="the same data written sharded (volumes C and D)")
    ap.add_argument("--repeats", type=int, default=None, help="timed repetitions (default 5; 3 with --quick)")
    ap.add_argument("--warmup", type=int, default=1, help="discarded repetitions before timing (default 1)")
    ap.add_argument("--cutouts", type=int, default=None, help="unaligned cutouts per line (default 20; 10 quick)")
    ap.add_argument("--opens", type=int, default=None, help="cold open+read operations per line (0 = skip line)")
    ap.add_argument("--systems", default="cvl,cv,ts,ts F", help="comma-separated subset of cvl,cv,ts,'ts F'")
    ap.add_argument("--lines", default=None, help="regex: only run lines whose name matches")
    ap.add_argument("--cvl-parallel", type=int, default=None, help="cloudvolume-lite worker threads (default: its own)")
    ap.add_argument(
        "--no-prefault", action="store_true", help="do not touch fresh memory before each operation (see README)"
    )
    ap.add_argument("--regen", action="store_true", help="regenerate the cached test volumes")
    ap.add_argument("--baseline", default=None, help="a checkout to compare against, as 'cvl before' (its package "
                    "renamed; `git worktree add DIR REV` with its C extension built or copied in)")
    ap.add_argument("--json", default=None, help="results file name under benchmarks/results/ ('' = none)")
    ap.add_argument("-q", "--quiet", action="store_true", help="do not print every run")
    args = ap.parse_args(argv)

    repeats = args.repeats if args.repeats is not None else (3 if args.quick else 5)
    n_cut = args.cutouts if args.cutouts is not None else (10 if args.quick else 20)
    n_open = args.opens if args.opens is not None else (5 if args.quick else 10)
    json_name = args.json if args.json is not None else (
        ("read_sharded" if args.sharded else "read") + ("_quick" if args.quick else "") + ".json")
    names = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(names) - set(SYSTEMS)
    if unknown:
        ap.error(f"unknown systems {sorted(unknown)}; choose from {sorted(SYSTEMS)}")
    systems = [SYSTEMS[n](args.cvl_parallel) if n == "cvl" else SYSTEMS[n]() for n in names]
    ours = "cvl" if "cvl" in names else names[0]
    if args.baseline:
        systems.insert(1, baseline_system(Path(args.baseline).resolve(), args.cvl_parallel))
        names.insert(1, "cvl before")

    t0 = time.perf_counter()
    volumes = make_volumes(args.quick, args.regen, args.sharded)
    lines = make_lines(volumes, args.quick, n_cut, n_open)
    if args.lines:
        lines = [ln for ln in lines if re.search(args.lines, ln.name)]
    for vol, _, _ in volumes:
        common.warm_page_cache(vol.path)
    print(
        f"[read] {len(systems)} systems x {len(lines)} lines, {args.warmup} warmup + {repeats} timed repetitions, "
        f"interleaved; data in {common.data_dir()}"
    )
    log = (lambda s: None) if args.quiet else print
    results = common.run_interleaved(
        systems, lines, repeats=repeats, warmup=args.warmup, prefault_memory=not args.no_prefault, log=log
    )

    print()
    print(common.format_table(results, names, ours))
    failed = {(r.line.name, s): e for r in results for s, e in r.errors.items()}
    if json_name:
        extra = {
            "benchmark": "read",
            "quick": args.quick,
            "repeats": repeats,
            "warmup": args.warmup,
            "cvl_parallel": args.cvl_parallel,
            "prefault": not args.no_prefault,
            "volumes": {v.name: {"url": v.url, "disk_bytes": v.disk_bytes(), **v.params} for v, _, _ in volumes},
            "elapsed_s": time.perf_counter() - t0,
        }
        path = common.write_json(common.to_json(results, systems, ours, extra), json_name)
        print(f"\n[read] wrote {path}")
    if failed:
        print("\n[read] FAILED: wrong results or errors:")
        for (ln, s), e in failed.items():
            print(f"  {s} on {ln}: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
