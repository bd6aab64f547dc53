"""Full reads over loopback HTTP with 20 ms of injected latency per request (a cloud
first-byte time): cloudvolume-lite vs CloudVolume vs TensorStore, interleaved, medians.

The server runs in its own process. By default it is ``latency_server.py`` (asyncio, ~0.2 ms
of CPU per request); ``--server threaded`` uses the test suite's thread-per-connection server
instead (~0.4 ms per request), which on a 2-core machine takes CPU from the clients;
``--server stdlib`` is ``python -m http.server`` itself (a listen backlog of 5, HTTP/1.0 with a
new connection per request, no Range, no latency added), the server a user starts first.
Volumes are bench_read's A (raw uint8 1024x1024x128), A with every chunk file gzip'd (as
CloudVolume writes them), B (cseg uint64 512x512x128) and D (B sharded); the stdlib server
gets A and B only (it knows neither Range nor gzip'd files).

Systems: cvl, CloudVolume, TensorStore in Fortran order (``ts F``: cvl's layout, the peer to
beat) and in its default C order (``ts``). ``--baseline DIR`` adds ``cvl before``: the package
of another checkout (``git worktree add DIR REV``, with its C extension built or copied in),
imported under another name, so that a change is measured against its parent in one run.

    python benchmarks/bench_http.py [--quick] [--repeats N] [--latency 0.02] [--server threaded|stdlib]
                                    [--sweep] [--baseline DIR]
"""

from __future__ import annotations

import gzip
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from bench_read import make_volumes  # noqa: E402

SERVER = r"""
import sys, time
sys.path.insert(0, sys.argv[3])
from fixtures_servers import Faults, RangeHTTPServer
srv = RangeHTTPServer(sys.argv[1], Faults(latency=float(sys.argv[2]))).start()
print(srv.url, flush=True)
while True:
    time.sleep(3600)
"""


def gzipped_files(vol: common.BenchVolume, quick: bool) -> common.BenchVolume:
    """``vol`` as a web server holds CloudVolume's output: every chunk stored as ``NAME.gz`` and
    served with ``Content-Encoding: gzip`` (both servers do this, like nginx's gzip_static)."""

    def write(path: Path, arr: np.ndarray) -> None:
        shutil.copytree(vol.path, path)
        for f in [f for f in path.rglob("*") if f.is_file() and f.name != "info"]:
            f.with_name(f.name + ".gz").write_bytes(gzip.compress(f.read_bytes(), compresslevel=6, mtime=0))
            f.unlink()

    return common.cached_volume("A-raw-uint8-gzip-files" + ("-quick" if quick else ""), {**vol.params, "files": "gzip"},
                                lambda: np.asarray(vol.truth()), write, offset=vol.offset)


def stdlib_server(root: Path) -> tuple[subprocess.Popen, str]:
    """``python -m http.server`` on loopback, as a user would start it."""
    proc = subprocess.Popen([sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1",
                             "--directory", str(root)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()  # type: ignore[union-attr]
    port = int(re.search(r"port (\d+)", line).group(1))  # type: ignore[union-attr]
    return proc, f"http://127.0.0.1:{port}"


def main() -> int:
    ap = common.arg_parser(__doc__)
    ap.add_argument("--latency", type=float, default=0.02)
    ap.add_argument("--server", choices=("async", "threaded", "stdlib"), default="async")
    ap.add_argument("--sweep", action="store_true", help="also try cloudvolume-lite with parallel=32 and 64")
    ap.add_argument("--baseline", type=Path, default=None, help="a checkout to compare against ('cvl before')")
    ap.add_argument("--no-cv", action="store_true", help="leave CloudVolume out (it takes minutes on slow servers)")
    args = ap.parse_args()
    repeats = args.repeats or (2 if args.quick else 3)
    import cloudvolume_lite as cvl
    import tensorstore as ts
    from cloudvolume import CloudVolume

    plain = make_volumes(args.quick, False)
    vols = [plain[0], (gzipped_files(plain[0][0], args.quick), *plain[0][1:]), plain[1],
            make_volumes(args.quick, False, sharded=True)[1]]
    if args.server == "stdlib":
        vols = [plain[0], plain[1]]
    root = common.data_dir()
    if args.server == "stdlib":
        srv, base = stdlib_server(root)
    else:
        if args.server == "threaded":
            cmd = [sys.executable, "-c", SERVER, str(root), str(args.latency), str(common.REPO_DIR / "tests")]
        else:
            cmd = [sys.executable, str(Path(__file__).resolve().parent / "latency_server.py"), str(root),
                   str(args.latency)]
        srv = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        base = srv.stdout.readline().strip()  # type: ignore[union-attr]
    try:
        def url_of(v) -> str:
            return f"{base}/{v.path.relative_to(root)}"

        systems = {"cvl": lambda u: cvl.Volume(u)[...]}
        if not args.no_cv:
            systems["cv"] = lambda u: np.asarray(CloudVolume(u, progress=False)[:, :, :])
        systems["ts F"] = lambda u: common.ts_read_url(u, "F")
        systems["ts"] = lambda u: common.ts_read_url(u, "C")
        if args.baseline is not None:
            before = common.baseline_package(args.baseline.resolve())
            systems["cvl before"] = lambda u: before.Volume(u)[...]  # type: ignore[attr-defined]
        if args.sweep:
            systems["cvl p32"] = lambda u: cvl.Volume(u, parallel=32)[...]
            systems["cvl p64"] = lambda u: cvl.Volume(u, parallel=64)[...]
        times: dict[tuple[str, str], list[float]] = {}
        for vol, shape, _ in vols:
            truth = np.asarray(vol.truth())
            for r in range(repeats + 1):
                for name in common.rotate(list(systems), r):
                    common.prefault(2 * truth.nbytes)
                    t0 = time.perf_counter()
                    got = systems[name](url_of(vol))
                    dt = time.perf_counter() - t0
                    if r == 0:
                        if got.shape != truth.shape or not np.array_equal(got, truth):
                            print(f"{name} read wrong data from {vol.name}")
                            return 1
                    else:
                        times.setdefault((vol.name, name), []).append(dt)
                    del got
    finally:
        srv.kill()
    where = "python -m http.server" if args.server == "stdlib" else f"{args.server} server, {args.latency * 1e3:.0f} ms per request"
    print(f"full reads over loopback HTTP ({where}), median of {repeats} (MB/s)")
    names = list(systems)
    cols = common.ratio_names(names)
    print(f"{'volume':<34} " + " ".join(f"{n:>10}" for n in names) + " " + " ".join(f"{c:>11}" for c in cols))
    out = {}
    for vol, _, _ in vols:
        mb = np.asarray(vol.truth()).nbytes / 1e6
        rate = {n: mb / statistics.median(times[(vol.name, n)]) for n in names}
        out[vol.name] = rate
        rs = common.ratios(rate)
        print(f"{vol.name:<34} " + " ".join(f"{rate[n]:>10.1f}" for n in names) + " "
              + " ".join(f"{rs[c]:>11.2f}" if rs[c] else f"{'-':>11}" for c in cols))
    if args.baseline is not None:
        print("cvl / cvl before: " + ", ".join(f"{v}: {r['cvl'] / r['cvl before']:.2f}" for v, r in out.items()))
    latency = 0.0 if args.server == "stdlib" else args.latency
    suffix = "" if args.server == "async" else f"_{args.server}"
    if args.server != "stdlib" and args.latency != 0.02:
        suffix += f"_{args.latency * 1e3:.0f}ms"
    from importlib.metadata import version

    env = common.environment({"cvl": cvl.__version__, "cv": version("cloud-volume"), "ts": version("tensorstore")})
    common.write_json({"benchmark": "http", "server": args.server, "latency_s": latency, "repeats": repeats,
                       "quick": bool(args.quick), "env": env, "mb_per_s": out},
                      f"http{suffix}{'_quick' if args.quick else ''}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
