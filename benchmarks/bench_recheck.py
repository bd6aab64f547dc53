"""What ``recheck=`` costs over HTTP with 20 ms per request: reads through the disk cache and the
LRU under each setting, against the code before generations (``--baseline``), interleaved, medians.

Volume A (raw uint8 1024x1024x128, 512 chunks of 64^3) and D (B sharded: cseg uint64 in shards)
on the asyncio latency server, which sends strong ETags and answers If-None-Match with 304.
Each timed operation opens a new Volume (as a new analysis session would) unless it says "same
Volume". Lines:

- cold: no cache at all (what every read without caches costs, now and before);
- disk warm: a new Volume on a filled disk cache: ``"open"`` (the default) checks each copy once
  with a conditional GET, ``False`` trusts it; before, the cache was always trusted;
- disk warm, same Volume: the second read of one Volume (``"open"``: already checked, no request);
- lru warm, same Volume: the second read through a 256 MiB LRU, ``"open"`` and ``True``.

The code before measures its caches on A only: behind a cache it lost chunks of sharded reads.

    python benchmarks/bench_recheck.py [--quick] [--repeats N] [--latency 0.02] [--baseline DIR]
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from bench_read import make_volumes  # noqa: E402


def main() -> int:
    ap = common.arg_parser(__doc__)
    ap.add_argument("--latency", type=float, default=0.02)
    ap.add_argument("--baseline", type=Path, default=None, help="a checkout to compare against ('before')")
    args = ap.parse_args()
    repeats = args.repeats or (2 if args.quick else 5)
    import cloudvolume_lite as cvl

    before = common.baseline_package(args.baseline.resolve()) if args.baseline else None
    vols = [make_volumes(args.quick, False)[0], make_volumes(args.quick, False, sharded=True)[1]]
    root = common.data_dir()
    srv = subprocess.Popen([sys.executable, str(Path(__file__).resolve().parent / "latency_server.py"), str(root),
                            str(args.latency)], stdout=subprocess.PIPE, text=True)
    base = srv.stdout.readline().strip()  # type: ignore[union-attr]
    tmp = Path(tempfile.mkdtemp(prefix="cvl-recheck-"))
    try:
        times: dict[tuple[str, str], list[float]] = {}
        for vol, _, _ in vols:
            url = f"{base}/{vol.path.relative_to(root)}"
            truth = np.asarray(vol.truth())
            # one filled disk cache per package (their file formats differ)
            now_dir, old_dir = tmp / f"{vol.name}-now", tmp / f"{vol.name}-before"
            assert np.array_equal(cvl.Volume(url, cache=str(now_dir))[...], truth)
            # the code before this change lost chunks of sharded reads behind a cache (batch.Chain):
            # it is measured through its caches on the unsharded volume only
            cached_before = before is not None and "sharded" not in vol.name
            if cached_before:
                assert np.array_equal(before.Volume(url, cache=str(old_dir))[...], truth)  # type: ignore[attr-defined]

            def same(make: Callable[[], object]) -> Callable[[], np.ndarray]:
                """The second read of one Volume (the first, untimed, fills what it caches)."""
                def run() -> np.ndarray:
                    v = make()
                    v[...]  # type: ignore[index]
                    t0 = time.perf_counter()
                    got = v[...]  # type: ignore[index]
                    run.elapsed = time.perf_counter() - t0  # type: ignore[attr-defined]
                    return got
                return run

            ops: dict[str, Callable[[], np.ndarray]] = {
                "cold": lambda: cvl.Volume(url)[...],
                "disk warm, open": lambda: cvl.Volume(url, cache=str(now_dir))[...],
                "disk warm, False": lambda: cvl.Volume(url, cache=str(now_dir), recheck=False)[...],
                "disk warm, same Volume, open": same(lambda: cvl.Volume(url, cache=str(now_dir))),
                "lru warm, same Volume, open": same(lambda: cvl.Volume(url, lru_bytes=256 << 20)),
                "lru warm, same Volume, True": same(lambda: cvl.Volume(url, lru_bytes=256 << 20, recheck=True)),
            }
            if before is not None:
                ops["before: cold"] = lambda: before.Volume(url)[...]  # type: ignore[attr-defined]
            if cached_before:
                ops["before: disk warm"] = lambda: before.Volume(url, cache=str(old_dir))[...]  # type: ignore[attr-defined]
                ops["before: lru warm, same Volume"] = same(lambda: before.Volume(url, lru_bytes=256 << 20))  # type: ignore[attr-defined]
            for r in range(repeats + 1):
                for name in common.rotate(list(ops), r):
                    common.prefault(2 * truth.nbytes)
                    t0 = time.perf_counter()
                    got = ops[name]()
                    dt = getattr(ops[name], "elapsed", time.perf_counter() - t0)
                    if r == 0:
                        if not np.array_equal(got, truth):
                            print(f"{name} read wrong data from {vol.name}")
                            return 1
                    else:
                        times.setdefault((vol.name, name), []).append(dt)
                    del got
    finally:
        srv.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"reads over loopback HTTP, {args.latency * 1e3:.0f} ms per request, median of {repeats} (ms)")
    names = sorted({n for _, n in times}, key=lambda n: (n.startswith("before"), n))
    print(f"{'line':<34} " + " ".join(f"{v.name[:22]:>22}" for v, _, _ in vols))
    out: dict[str, dict[str, float]] = {}
    for n in names:
        row = {v.name: 1e3 * statistics.median(times[(v.name, n)]) for v, _, _ in vols if (v.name, n) in times}
        out[n] = row
        print(f"{n:<34} " + " ".join(f"{row[v.name]:>22.1f}" if v.name in row else f"{'-':>22}" for v, _, _ in vols))
    common.write_json({"benchmark": "recheck", "latency_s": args.latency, "repeats": repeats,
                       "quick": bool(args.quick), "env": common.environment({"cvl": cvl.__version__}), "ms": out},
                      f"recheck{'_quick' if args.quick else ''}.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
