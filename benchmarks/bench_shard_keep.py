"""Patching a few chunks of a full shard: time of one write into a shard of many chunks.

A uint32 segmentation (labels 0-7; ``--encoding`` raw by default, gzip data_encoding) of one
shard holding ``--chunks`` chunks of 16^3 (256 by default) is written whole (not timed); then
each run times one write: a whole chunk (``aligned``: the chunk is replaced) or a 3^3 patch
inside one chunk (``patch``: a read-modify-write of it). Every other chunk of the shard is
unchanged, so a rewrite that keeps their stored bytes costs one chunk's encoding, not the
shard's. CPU is the process's (user + system), wall ``perf_counter``. ``--baseline DIR`` also
runs another checkout's package ("before"), interleaved; the shard files both leave are compared.

    python benchmarks/bench_shard_keep.py [--baseline DIR] [--repeats N] [--chunks 256]
                                         [--encoding raw|compressed_segmentation]
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


def setup(pkg: Any, root: Path, data: np.ndarray, chunks: int, encoding: str) -> Any:
    """A full shard of ``data`` at ``root`` (not timed); the open Volume."""
    shutil.rmtree(root, ignore_errors=True)
    vol = pkg.Volume.create(f"file://{root}", data_type="uint32", layer_type="segmentation", size=data.shape[:3],
                            chunk_size=(16, 16, 16), resolution=(1, 1, 1), encoding=encoding,
                            sharding=one_shard(chunks))
    vol[...] = data
    return vol


def run_one(vol: Any, root: Path, kind: str, value: int) -> dict:
    """Time one write into the shard: a whole chunk, or a small patch inside one."""
    box = (slice(16, 32), slice(16, 32), slice(0, 16)) if kind == "aligned" else \
        (slice(20, 23), slice(20, 23), slice(5, 8))
    patch = np.full(tuple(s.stop - s.start for s in box), value, np.uint32)
    c0, t0 = cpu_seconds(), time.perf_counter()
    vol[box] = patch
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    shard = next(root.glob("*/*.shard"))
    return {"wall": wall, "cpu": cpu, "sha": hashlib.sha1(shard.read_bytes()).hexdigest()}


def main() -> int:
    ap = common.arg_parser(__doc__)
    ap.add_argument("--baseline", default=None, help="a checkout whose package runs as 'before'")
    ap.add_argument("--chunks", type=int, default=256, help="chunks in the shard (a power of two)")
    ap.add_argument("--encoding", default="raw", help="the chunks' encoding (raw, compressed_segmentation)")
    args = ap.parse_args()
    repeats = args.repeats or (3 if args.quick else 11)
    import cloudvolume_lite

    systems: dict[str, Any] = {"after": cloudvolume_lite}
    if args.baseline:
        systems["before"] = common.baseline_package(Path(args.baseline))
    shape = grid_shape(args.chunks)
    data = np.random.default_rng(3).integers(0, 8, (*shape, 1), dtype=np.uint32)
    scratch = common.data_dir() / "shard-keep-scratch"
    vols = {s: setup(pkg, scratch / s, data, args.chunks, args.encoding) for s, pkg in systems.items()}
    results: dict[tuple[str, str], list[dict]] = {}
    for r in range(repeats + 1):  # repetition 0 is a warm-up, not counted
        for kind in ("aligned", "patch"):
            for system in common.rotate(list(systems), r):
                got = run_one(vols[system], scratch / system, kind, 100 + r)
                if r:
                    results.setdefault((kind, system), []).append(got)
    for vol in vols.values():
        vol.close()
    shutil.rmtree(scratch, ignore_errors=True)
    print(f"one write into a shard of {args.chunks} chunks of 16^3 uint32 labels 0-7 ({args.encoding}, gzip "
          f"data_encoding), {shape}, median of {repeats}")
    print(f"{'write':<10} {'system':<7} {'wall ms':>9} {'cpu ms':>9}")
    for kind in ("aligned", "patch"):
        for system in systems:
            runs = results[(kind, system)]
            print(f"{kind:<10} {system:<7} {1e3 * statistics.median(x['wall'] for x in runs):>9.1f} "
                  f"{1e3 * statistics.median(x['cpu'] for x in runs):>9.1f}")
        if "before" in systems:
            same = [a["sha"] for a in results[(kind, "before")]] == [a["sha"] for a in results[(kind, "after")]]
            print(f"{'':<10} shard files identical before/after: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
