"""Writing a sharded scale: time and bytes written for shards of many chunks.

Lines: a segmentation (uint32, mode) and an image (uint8, average) volume whose mip 1 is one
shard of 256 chunks of 16^3 (``--chunks`` changes how many), filled by
``add_scale(..., downsample=True)``, and the same scale unsharded for scale; then ("upload")
``vol[...] = array`` of the same 256 chunks' data into a new one-shard volume. Bytes written are
the process's ``wchar`` (bytes handed to write(2), /proc/self/io) during the downsample, so
every rewrite of a shard file counts. ``--baseline DIR`` also runs another checkout's package
("before"), interleaved with this one; the shards both write are compared byte for byte.

    python benchmarks/bench_shard_write.py [--baseline DIR] [--repeats N] [--chunks 256]
"""

from __future__ import annotations

import hashlib
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
from one_shard import cpu_seconds, grid_shape, one_shard


def _wchar() -> int:
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("wchar:"))


def run_one(pkg: Any, root: Path, data: np.ndarray, layer: str, sharded: bool, chunks: int) -> dict:
    """Create mip 0 from ``data`` (not timed), then time ``add_scale((2,2,2), downsample=True)``."""
    shutil.rmtree(root, ignore_errors=True)
    vol = pkg.Volume.from_numpy(data, f"file://{root}", chunk_size=(16, 16, 16), layer_type=layer)
    spec = one_shard(chunks) if sharded else None
    w0, c0, t0 = _wchar(), cpu_seconds(), time.perf_counter()
    mip = vol.add_scale((2, 2, 2), sharding=spec, downsample=True)
    wall, cpu, written = time.perf_counter() - t0, cpu_seconds() - c0, _wchar() - w0
    key = vol.scales[mip].key
    files = {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted((root / key).iterdir())}
    size = sum(p.stat().st_size for p in (root / key).iterdir())
    vol.close()
    return {"wall": wall, "cpu": cpu, "written": written, "size": size, "files": files}


def run_upload(pkg: Any, root: Path, data: np.ndarray, layer: str, sharded: bool, chunks: int) -> dict:
    """Time ``vol[...] = data`` (the mip 1 grid's shape) into a new volume, one shard when ``sharded``."""
    shutil.rmtree(root, ignore_errors=True)
    shape = grid_shape(chunks)
    vol = pkg.Volume.create(f"file://{root}", data_type=str(data.dtype), layer_type=layer, size=shape,
                            chunk_size=(16, 16, 16), resolution=(1, 1, 1), sharding=one_shard(chunks) if sharded else None)
    part = np.ascontiguousarray(data[: shape[0], : shape[1], : shape[2]])
    w0, c0, t0 = _wchar(), cpu_seconds(), time.perf_counter()
    vol[...] = part
    wall, cpu, written = time.perf_counter() - t0, cpu_seconds() - c0, _wchar() - w0
    key = vol.scales[0].key
    files = {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted((root / key).iterdir())}
    size = sum(p.stat().st_size for p in (root / key).iterdir())
    vol.close()
    return {"wall": wall, "cpu": cpu, "written": written, "size": size, "files": files}


def main() -> int:
    ap = common.arg_parser(__doc__)
    ap.add_argument("--baseline", default=None, help="a checkout whose package runs as 'before'")
    ap.add_argument("--chunks", type=int, default=256, help="chunks in the shard (a power of two)")
    args = ap.parse_args()
    repeats = args.repeats or (2 if args.quick else 5)
    import cloudvolume_lite

    systems: dict[str, Any] = {"after": cloudvolume_lite}
    if args.baseline:
        systems["before"] = common.baseline_package(Path(args.baseline))
    shape = tuple(2 * n for n in grid_shape(args.chunks))
    rng = np.random.default_rng(3)
    seg = rng.integers(0, 8, (*shape, 1), dtype=np.uint32)
    lines = {  # name: (data, layer type, what is timed)
        "seg uint32 mode": (seg, "segmentation", run_one),
        "img uint8 average": (rng.integers(0, 256, (*shape, 1), dtype=np.uint8), "image", run_one),
        "seg uint32 upload": (seg, "segmentation", run_upload),
    }
    scratch = common.data_dir() / "shard-write-scratch"
    results: dict[tuple[str, str, bool], list[dict]] = {}
    for r in range(repeats + 1):  # repetition 0 is a warm-up, not counted
        for name, (data, layer, timed) in lines.items():
            for sharded in (True, False):
                for system in common.rotate(list(systems), r):
                    got = timed(systems[system], scratch / system, data, layer, sharded, args.chunks)
                    if r:
                        results.setdefault((name, system, sharded), []).append(got)
    shutil.rmtree(scratch, ignore_errors=True)
    print(f"downsample to mip 1 of {shape}, and upload of mip 1's shape ({args.chunks} chunks of 16^3), "
          f"median of {repeats}")
    print(f"{'line':<20} {'layout':<10} {'system':<7} {'wall s':>8} {'cpu s':>8} {'MB written':>11} "
          f"{'MB stored':>10} {'written/stored':>15}")
    for name in lines:
        for sharded in (True, False):
            for system in systems:
                runs = results[(name, system, sharded)]
                wall = statistics.median(x["wall"] for x in runs)
                cpu = statistics.median(x["cpu"] for x in runs)
                mb = statistics.median(x["written"] for x in runs) / 1e6
                stored = runs[0]["size"] / 1e6
                print(f"{name:<20} {'sharded' if sharded else 'unsharded':<10} {system:<7} {wall:>8.3f} {cpu:>8.3f} "
                      f"{mb:>11.2f} {stored:>10.2f} {mb / stored:>15.1f}")
            if "before" in systems:
                same = results[(name, "before", sharded)][0]["files"] == results[(name, "after", sharded)][0]["files"]
                print(f"{'':<20} {'':<10} files identical before/after: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
