"""Full reads over loopback HTTP with a fixed latency per request (a cloud first-byte time):
cloudvolume-lite vs CloudVolume vs TensorStore, interleaved, medians, each against its floor.

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

The **floor** of a line is measured in the same rounds (on the default server only: a
thread-per-connection server chokes on the requests a bare client keeps in flight): a bare
client (:func:`bare_fetch`: no parsing beyond ``Content-Length``, bodies received straight into
one fresh buffer) GETs the volume's ``info`` and then every object of it from the same server,
as many at once as two latencies' worth of bytes at 2 GB/s need: the round trips every reader
pays (the info's, then one for the data) plus the bytes at loopback bandwidth. To that it
adds what must be decoded (:func:`decoder`): every chunk's stored bytes (cut out of the shard
files for sharded volumes) undone (gzip) and decoded by the codec's C decoder into a fresh
output, on a pool of two threads (both cores); raw chunks stored plainly have nothing to decode.
The floor's time is the fastest of its rounds, not their median: a floor is what the machine
can do, and noise only slows it (with 512 connections in flight at 100 ms its rounds spread
from 283 to 860 ms, so a median floor would flatter every ratio to it). ``vs_floor`` in the
JSON is a system's median time over that fastest floor (1.0 is the floor); ``floor.rounds_s``
keeps every round.

Every figure is a median of ``--repeats`` rounds; CPU time (``time.process_time``, all of the
client's threads) and the server's CPU time are kept next to the wall time.

    python benchmarks/bench_http.py [--quick] [--repeats N] [--latency 0.02 | --latencies 0,20,50,100]
                                    [--server threaded|stdlib] [--sweep] [--baseline DIR] [--no-cv]
                                    [--volumes A-raw,D]

One JSON file per latency: ``http.json`` (async server, 20 ms), ``http_<ms>ms.json`` for the
others, ``http_<server>[_<ms>ms].json`` for the other servers (report.py makes their tables).
"""

from __future__ import annotations

import gzip
import math
import os
import re
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

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
#: the bandwidth the floor's bare client is given requests in flight for (bytes per second)
LINK = 2e9


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


def start_server(kind: str, root: Path, latency: float) -> tuple[subprocess.Popen, str]:
    """The server of ``kind`` over ``root`` with ``latency`` seconds per request: (process, URL)."""
    if kind == "stdlib":
        return stdlib_server(root)
    if kind == "threaded":
        cmd = [sys.executable, "-c", SERVER, str(root), str(latency), str(common.REPO_DIR / "tests")]
    else:
        cmd = [sys.executable, str(Path(__file__).resolve().parent / "latency_server.py"), str(root), str(latency)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()  # type: ignore[union-attr]


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------------------------
# the floor: a bare client, and decoding on two threads
# ------------------------------------------------------------------------------------------
def served_paths(vol: common.BenchVolume, root: Path) -> tuple[list[str], int]:
    """URL paths of the volume's ``info`` (first) and of every other object, as a reader asks
    for them (``NAME`` for a stored ``NAME.gz``), and the bytes the server sends for the objects."""
    files = sorted(f for f in vol.path.rglob("*") if f.is_file() and f.name != "info")
    paths = ["/" + str((vol.path / "info").relative_to(root))]
    paths += ["/" + str(f.relative_to(root)).removesuffix(".gz") for f in files]
    return paths, sum(f.stat().st_size for f in files)


def in_flight_for(latency: float, mean_body: float, n: int) -> int:
    """Requests in flight that keep ``LINK`` busy through two latencies: 16 to 512, at most ``n``."""
    return max(1, min(n, 512, max(16, math.ceil(2 * latency * LINK / max(1.0, mean_body)))))


def _request(path: str, host: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


def _head(sock: socket.socket, head: bytearray) -> tuple[int, bytes] | None:
    """Read on until ``head`` holds an answer's head: (Content-Length, the body's bytes read with
    it), or None while more must come. A status other than 200 is an error."""
    data = sock.recv(65536)
    if not data:
        raise ConnectionError("the server closed the connection")
    head += data
    end = head.find(b"\r\n\r\n")
    if end < 0:
        return None
    text = bytes(head[:end]).decode("latin-1")
    if not text.startswith("HTTP/1.1 200"):
        raise ConnectionError(f"the floor's client got {text.splitlines()[0]!r}")
    length = int(re.search(r"(?im)^content-length:\s*(\d+)", text).group(1))  # type: ignore[union-attr]
    rest = bytes(head[end + 4:])
    del head[:]
    return length, rest


def bare_fetch(addr: tuple[str, int], paths: list[str], in_flight: int, nbytes: int) -> int:
    """GET ``paths[0]`` (the info) alone, then the rest with ``in_flight`` at once on kept-alive
    connections, each body received straight into its place in one fresh buffer of ``nbytes``;
    returns the bytes of the bodies after the first."""
    host = f"{addr[0]}:{addr[1]}"
    with socket.create_connection(addr) as s:  # a reader needs the info before the chunks' names
        s.sendall(_request(paths[0], host))
        head = bytearray()
        got = None
        while got is None:
            got = _head(s, head)
        left = got[0] - len(got[1])
        while left > 0:
            left -= len(s.recv(left))
    out = memoryview(np.empty(max(1, nbytes), np.uint8))
    todo = iter(paths[1:])
    sel = selectors.DefaultSelector()
    at = 0
    state: dict[socket.socket, list] = {}  # socket -> [head so far, body's place, bytes left]

    def ask(sock: socket.socket) -> None:
        path = next(todo, None)
        if path is None:
            sel.unregister(sock)
            sock.close()
            del state[sock]
            return
        sock.sendall(_request(path, host))
        state[sock] = [bytearray(), 0, -1]

    for _ in range(min(in_flight, len(paths) - 1)):
        sock = socket.create_connection(addr)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sel.register(sock, selectors.EVENT_READ)
        state[sock] = [bytearray(), 0, -1]
        ask(sock)
    while state:
        for key, _ in sel.select():
            sock = key.fileobj  # type: ignore[assignment]
            st = state[sock]  # type: ignore[index]
            if st[2] < 0:  # the head
                got = _head(sock, st[0])  # type: ignore[arg-type]
                if got is None:
                    continue
                length, rest = got
                out[at: at + len(rest)] = rest
                st[1], st[2] = at + len(rest), length - len(rest)
                at += length
            if st[2] > 0:  # what has come; the selector says when there is more
                n = sock.recv_into(out[st[1]: st[1] + st[2]])  # type: ignore[attr-defined]
                if not n:
                    raise ConnectionError("the server closed the connection")
                st[1] += n
                st[2] -= n
            if st[2] == 0:
                ask(sock)  # type: ignore[arg-type]
    sel.close()
    return at


@dataclass(frozen=True)
class Stored:
    """One chunk as stored: its bytes, where it starts in the output, its shape, gzip'd or not."""

    name: str
    data: bytes
    lo: tuple[int, int, int]
    shape: tuple[int, int, int]
    gzipped: bool


def _unsharded_chunks(vol: common.BenchVolume, scale) -> list[Stored]:  # noqa: ANN001
    out = []
    for f in sorted((vol.path / scale.key).iterdir()):
        name = f.name.removesuffix(".gz")
        ranges = [tuple(int(v) for v in part.split("-")) for part in name.split("_")]
        lo = tuple(a - o for (a, _), o in zip(ranges, scale.voxel_offset))
        out.append(Stored(name, f.read_bytes(), lo, tuple(b - a for a, b in ranges), f.name.endswith(".gz")))  # type: ignore[arg-type]
    return out


def _sharded_chunks(vol: common.BenchVolume, scale) -> list[Stored]:  # noqa: ANN001
    """Every chunk's stored bytes cut out of the shard files (PRECOMPUTED.md 7.3), independent of
    cvl's own shard reader."""
    from cloudvolume_lite.sharding import morton_decode

    sh = scale.sharding
    index_bytes = 16 << sh.minishard_bits
    out = []
    for f in sorted((vol.path / scale.key).glob("*.shard")):
        data = f.read_bytes()
        for start, end in np.frombuffer(data[:index_bytes], "<u8").reshape(-1, 2).tolist():
            if start == end:
                continue
            raw = data[index_bytes + start: index_bytes + end]
            rows = np.frombuffer(gzip.decompress(raw) if sh.minishard_index_encoding == "gzip" else raw, "<u8")
            ids, deltas, sizes = rows.reshape(3, -1).tolist()
            cid, pos = 0, index_bytes
            for d_id, d_at, size in zip(ids, deltas, sizes):
                cid, pos = cid + d_id, pos + d_at
                cell = morton_decode(cid, scale.grid_size)
                lo = tuple(c * s for c, s in zip(cell, scale.chunk_size))
                shape = tuple(min(s, n - a) for s, n, a in zip(scale.chunk_size, scale.size, lo))
                out.append(Stored(str(cid), data[pos: pos + size], lo, shape, sh.data_encoding == "gzip"))  # type: ignore[arg-type]
                pos += size
    return out


def decoder(vol: common.BenchVolume) -> Callable[[], None] | None:
    """A function that decodes every chunk of ``vol`` from its stored bytes (read now) into a
    fresh output on two threads: gzip undone, then the codec's ``decode_into``. None when the
    chunks are raw and stored plainly: nothing to decode."""
    import cloudvolume_lite as cvl
    from cloudvolume_lite import compression
    from cloudvolume_lite.codecs import ChunkSpec, get_codec

    v = cvl.Volume(vol.url)
    scale, dtype, nc = v.scale, np.dtype(v.dtype), v.num_channels
    chunks = _sharded_chunks(vol, scale) if scale.sharding is not None else _unsharded_chunks(vol, scale)
    codec = None if scale.encoding == "raw" else get_codec(scale.encoding)
    if codec is None and not any(c.gzipped for c in chunks):
        return None
    shape = (*scale.size, nc)

    def run() -> None:
        out = np.empty(shape, dtype, order="F")

        def one(c: Stored) -> None:
            data = compression.decompress(c.data, "gzip", c.name) if c.gzipped else c.data
            if codec is not None:
                spec = ChunkSpec((*c.shape, nc), dtype, scale, c.name)
                if not codec.decode_into(data, spec, (0, 0, 0), c.shape, slice(0, nc, 1), out, c.lo):
                    raise RuntimeError(f"{scale.encoding} has no decode_into here")

        with ThreadPoolExecutor(2) as pool:
            list(pool.map(one, chunks))

    return run


def floor_system(vol: common.BenchVolume, root: Path, addr: tuple[str, int], latency: float
                 ) -> tuple[Callable[[], dict[str, float]], int]:
    """The floor of ``vol`` as a timed function (its parts in seconds) and its bare client's
    requests in flight."""
    paths, nbytes = served_paths(vol, root)
    flight = in_flight_for(latency, nbytes / max(1, len(paths) - 1), len(paths) - 1)
    decode = decoder(vol)

    def run() -> dict[str, float]:
        t0 = time.perf_counter()
        got = bare_fetch(addr, paths, flight, nbytes)
        t1 = time.perf_counter()
        if got != nbytes:
            raise RuntimeError(f"the floor's client read {got} bytes of {vol.name}, not {nbytes}")
        if decode is not None:
            decode()
        return {"fetch_s": t1 - t0, "decode_s": time.perf_counter() - t1}

    return run, flight


# ------------------------------------------------------------------------------------------
# one latency
# ------------------------------------------------------------------------------------------
def systems_for(args) -> dict[str, Callable[[str], np.ndarray]]:  # noqa: ANN001
    import cloudvolume_lite as cvl

    systems: dict[str, Callable[[str], np.ndarray]] = {"cvl": lambda u: cvl.Volume(u)[...]}
    if not args.no_cv:
        from cloudvolume import CloudVolume

        systems["cv"] = lambda u: np.asarray(CloudVolume(u, progress=False)[:, :, :])
    systems["ts F"] = lambda u: common.ts_read_url(u, "F")
    systems["ts"] = lambda u: common.ts_read_url(u, "C")
    if args.baseline is not None:
        before = common.baseline_package(args.baseline.resolve())
        systems["cvl before"] = lambda u: before.Volume(u)[...]  # type: ignore[attr-defined]
    if args.sweep:
        systems["cvl p32"] = lambda u: cvl.Volume(u, parallel=32)[...]
        systems["cvl p64"] = lambda u: cvl.Volume(u, parallel=64)[...]
    return systems


def run_latency(args, latency: float, vols: list, systems: dict[str, Callable[[str], np.ndarray]],  # noqa: ANN001
                repeats: int) -> dict | None:
    """Every system and the floor on every volume, interleaved, at ``latency``; the JSON record
    (None when a system read wrong data)."""
    root = common.data_dir()
    srv, base = start_server(args.server, root, latency)
    addr = ("127.0.0.1", int(base.rsplit(":", 1)[1]))
    wall: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    server: dict[tuple[str, str], list[float]] = {}
    floors: dict[str, list[dict[str, float]]] = {}
    flights: dict[str, int] = {}
    try:
        for vol, _, _ in vols:
            truth = np.asarray(vol.truth())
            url = f"{base}/{vol.path.relative_to(root)}"
            names = list(systems)
            if args.server == "async":
                floor, flights[vol.name] = floor_system(vol, root, addr, latency)
                names.append("floor")
            for r in range(repeats + 1):
                for name in common.rotate(names, r):
                    common.prefault(2 * truth.nbytes)
                    s0, c0, t0 = cpu_of(srv.pid), time.process_time(), time.perf_counter()
                    got = floor() if name == "floor" else systems[name](url)
                    dt, dc, ds = time.perf_counter() - t0, time.process_time() - c0, cpu_of(srv.pid) - s0
                    if name != "floor" and r == 0 and (got.shape != truth.shape or not np.array_equal(got, truth)):
                        print(f"{name} read wrong data from {vol.name}")
                        return None
                    if r > 0:
                        wall.setdefault((vol.name, name), []).append(dt)
                        cpu.setdefault((vol.name, name), []).append(dc)
                        server.setdefault((vol.name, name), []).append(ds)
                        if name == "floor":
                            floors.setdefault(vol.name, []).append(got)  # type: ignore[arg-type]
                    del got
    finally:
        srv.kill()
    return record(args, latency, vols, list(systems), wall, cpu, server, floors, flights, repeats)


def record(args, latency: float, vols: list, names: list[str], wall: dict, cpu: dict, server: dict,  # noqa: ANN001
           floors: dict, flights: dict, repeats: int) -> dict:
    """The JSON of one latency (report.py reads ``mb_per_s``; the rest is for people) and its table."""
    med = statistics.median
    where = "python -m http.server" if args.server == "stdlib" else f"{args.server} server, {latency * 1e3:.0f} ms per request"
    print(f"\nfull reads over loopback HTTP ({where}), median of {repeats}, the floor its fastest round (MB/s; wall time over the floor's)")
    cols = common.ratio_names(names)
    show = names + (["floor"] if floors else [])
    print(f"{'volume':<28} " + " ".join(f"{n:>10}" for n in show) + " " + " ".join(f"{c:>10}" for c in cols)
          + (f" {'cvl/floor':>10}" if floors else ""))
    out: dict = {"benchmark": "http", "server": args.server, "latency_s": 0.0 if args.server == "stdlib" else latency,
                 "repeats": repeats, "quick": bool(args.quick), "mb_per_s": {}, "wall_s": {}, "cpu_s": {},
                 "server_cpu_s": {}, "floor": {}, "vs_floor": {}}
    for vol, _, _ in vols:
        mb = np.asarray(vol.truth()).nbytes / 1e6
        v = vol.name
        rate = {n: mb / med(wall[(v, n)]) for n in names}
        out["mb_per_s"][v] = rate
        out["wall_s"][v] = {n: med(wall[(v, n)]) for n in show}
        out["cpu_s"][v] = {n: med(cpu[(v, n)]) for n in show}
        out["server_cpu_s"][v] = {n: med(server[(v, n)]) for n in show}
        line = f"{v:<28} " + " ".join(f"{rate[n]:>10.1f}" for n in names)
        if floors:
            parts = floors[v]
            fl = min(wall[(v, "floor")])  # the best round: see the module's docstring
            out["wall_s"][v]["floor"] = fl
            out["floor"][v] = {"s": fl, "mb_per_s": mb / fl, "fetch_s": min(p["fetch_s"] for p in parts),
                               "decode_s": min(p["decode_s"] for p in parts), "in_flight": flights[v],
                               "rounds_s": list(wall[(v, "floor")])}
            out["vs_floor"][v] = {n: out["wall_s"][v][n] / fl for n in names}
            line += f" {mb / fl:>10.1f}"
        rs = common.ratios(rate)
        line += " " + " ".join(f"{rs[c]:>10.2f}" if rs[c] else f"{'-':>10}" for c in cols)
        if floors:
            line += f" {out['vs_floor'][v]['cvl']:>10.2f}"
        print(line)
    print("median CPU s (client; server): " + "; ".join(
        f"{v}: " + ", ".join(f"{n} {out['cpu_s'][v][n]:.3f}/{out['server_cpu_s'][v][n]:.3f}" for n in show)
        for v in out["cpu_s"]))
    if "cvl before" in names:
        print("cvl / cvl before: " + ", ".join(f"{v}: {r['cvl'] / r['cvl before']:.2f}" for v, r in out["mb_per_s"].items()))
    return out


def result_name(server: str, latency: float, quick: bool) -> str:
    """``http[_server][_<ms>ms][_quick].json``: the async server at 20 ms is plain ``http.json``."""
    suffix = "" if server == "async" else f"_{server}"
    if server != "stdlib" and round(latency * 1e3) != 20:
        suffix += f"_{latency * 1e3:.0f}ms"
    return f"http{suffix}{'_quick' if quick else ''}.json"


def main() -> int:
    ap = common.arg_parser(__doc__)
    ap.add_argument("--latency", type=float, default=0.02, help="seconds per request")
    ap.add_argument("--latencies", default=None, help="milliseconds per request, several: e.g. 0,20,50,100")
    ap.add_argument("--server", choices=("async", "threaded", "stdlib"), default="async")
    ap.add_argument("--sweep", action="store_true", help="also try cloudvolume-lite with parallel=32 and 64")
    ap.add_argument("--baseline", type=Path, default=None, help="a checkout to compare against ('cvl before')")
    ap.add_argument("--no-cv", action="store_true", help="leave CloudVolume out (it takes minutes on slow servers)")
    ap.add_argument("--volumes", default=None, help="only these volumes, by the start of their names: e.g. A-raw,D")
    args = ap.parse_args()
    repeats = args.repeats or (2 if args.quick else 7)
    latencies = [float(x) / 1e3 for x in args.latencies.split(",")] if args.latencies else [args.latency]
    if args.server == "stdlib":
        latencies = [0.0]
    plain = make_volumes(args.quick, False)
    vols = [plain[0], (gzipped_files(plain[0][0], args.quick), *plain[0][1:]), plain[1],
            make_volumes(args.quick, False, sharded=True)[1]]
    if args.server == "stdlib":
        vols = [plain[0], plain[1]]
    if args.volumes:
        vols = [v for v in vols if any(v[0].name.startswith(p) for p in args.volumes.split(","))]
    systems = systems_for(args)
    from importlib.metadata import version

    import cloudvolume_lite as cvl

    for latency in latencies:
        rec = run_latency(args, latency, vols, systems, repeats)
        if rec is None:
            return 1
        rec["env"] = common.environment({"cvl": cvl.__version__, "cv": version("cloud-volume"), "ts": version("tensorstore")})
        common.write_json(rec, result_name(args.server, latency, args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
