"""Hostile-input soak: random damage in a loop; every read gives exact data or a named cvl.VolumeError.

    python benchmarks/hostile.py                  # 0.5 minutes
    python benchmarks/hostile.py --minutes 5 --seed 7

Each round picks one scenario at random (the damage and the judging are tests/test_hostile_fuzz.py's):

- ``chunk file`` / ``chunk http``: a copy of a small volume (raw, compressed_segmentation, png,
  jpeg; plain, gzip, brotli, zstd; sharded or not) with one chunk or shard file damaged (bit
  flips, truncation, same-size garbage, appended junk, two files swapped), read whole, chunk by
  chunk and as scattered points, with and without ``fill_missing``, over ``file://`` or a
  loopback HTTP server;
- ``disk cache``: a filled disk cache whose files are damaged, read again;
- ``bomb``: a gzip/zstd chunk inflating to 1 GiB, or an image whose header says 20000x20000,
  read in this process: the RSS high-water mark must stay within the bound;
- ``info``: a hostile ``info`` file opened (InfoError, or a volume whose reads work);
- ``write``: a value or array a uint8 volume cannot hold (RequestError, nothing changed).

Damage the formats cannot detect (flips in plain raw, cseg and jpeg chunks, in brotli streams,
in shards with raw indices or data; swaps of same-size chunks) may read as other voxels: that
is counted as "silent, undetectable" and allowed. Everything else is a rule violation:

Exit status 1 if any read gave wrong voxels where the formats can tell (or a hostile write was
taken), any exception fell outside the VolumeError family, a read needing no damaged file was
not exact, a damaged disk cache's error did not name the file, or the peak RSS passed the bound
(the RSS after warming up plus 128 MiB). Data in a temporary directory; traffic on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import tempfile
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

TESTS = Path(__file__).resolve().parent.parent / "tests"
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

import cloudvolume_lite as cvl  # noqa: E402
import test_hostile_fuzz as H  # noqa: E402  (the damage, the volumes and the judging)
from fixtures_servers import RangeHTTPServer  # noqa: E402

#: the volumes chunk damage is tried on: every encoding and transport compression, a few shard layouts
VOLUMES = [H.Layout("raw"), H.Layout("raw", "gzip"), H.Layout("raw", "br"), H.Layout("raw", "zstd"),
           H.Layout("compressed_segmentation"), H.Layout("compressed_segmentation", "gzip"),
           H.Layout("compressed_segmentation", "zstd"), H.Layout("png"), H.Layout("jpeg"),
           H.Layout("raw", None, "gzip", "gzip"), H.Layout("compressed_segmentation", None, "raw", "raw"),
           H.Layout("png", None, "raw", "gzip"), H.Layout("jpeg", None, "gzip", "raw")]
#: what the loopback server can serve: it maps NAME to a stored NAME.gz, not .br or .zstd
HTTP_VOLUMES = [v for v in VOLUMES if v.compression in (None, "gzip")]
#: weights; an HTTP round takes ~50x a file round (~30 requests to a threaded Python server), so it comes rarely
SCENARIOS = {"chunk file": 45, "chunk http": 2, "disk cache": 15, "info": 12, "write": 12, "bomb": 6}


def max_rss() -> int:
    """This process's RSS high-water mark, bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class Tally:
    rounds: Counter = field(default_factory=Counter)  # by scenario
    reads: Counter = field(default_factory=Counter)  # by scenario
    faults: Counter = field(default_factory=Counter)  # by kind
    exact: Counter = field(default_factory=Counter)
    named: Counter = field(default_factory=Counter)  # by exception type
    named_by_scenario: Counter = field(default_factory=Counter)
    silent: Counter = field(default_factory=Counter)  # undetectable damage read as other voxels
    wrong: Counter = field(default_factory=Counter)
    wrong_kinds: Counter = field(default_factory=Counter)  # wrong reads by the fault that caused them
    foreign: Counter = field(default_factory=Counter)  # by exception type
    foreign_by_scenario: Counter = field(default_factory=Counter)
    other: Counter = field(default_factory=Counter)  # other rule violations, by scenario
    problems: list[str] = field(default_factory=list)
    bomb_rise: int = 0  # the largest rise of the RSS high-water mark during one bomb read

    def add(self, scenario: str, o: H.Outcome, guaranteed: bool = True, label: str = "", kind: str = "") -> None:
        """Count one read's outcome; note the rule violations."""
        self.reads[scenario] += 1
        if o.result == "foreign":
            self.foreign[o.error or "?"] += 1
            self.foreign_by_scenario[scenario] += 1
            self.note(f"{scenario} {label} {o.what}: an error outside the VolumeError family: {o.detail}")
        elif not o.touched and o.result != "exact":
            self.other[scenario] += 1
            self.note(f"{scenario} {label} {o.what}: needs no damaged file but gave {o.result}: {o.detail}")
        elif o.result == "exact":
            self.exact[scenario] += 1
        elif o.result == "error":
            self.named[o.error] += 1
            self.named_by_scenario[scenario] += 1
        elif guaranteed:
            self.wrong[scenario] += 1
            self.wrong_kinds[kind or scenario] += 1
            self.note(f"{scenario} {label} {o.what}: wrong voxels: {o.detail}")
        else:
            self.silent[scenario] += 1

    def note(self, text: str) -> None:
        if len(self.problems) < 200:
            self.problems.append(text[:600])


class Soak:
    """The volumes, the server and the bombs, made once; one :meth:`round` per scenario pick."""

    def __init__(self, work: Path, rng: random.Random):
        self.rng = rng
        self.work = work
        self.pristine = {lay: (work / "pristine" / lay.name, H.build_volume(work / "pristine" / lay.name, lay, i))
                         for i, lay in enumerate(dict.fromkeys(VOLUMES + H.CACHE_LAYOUTS))}
        self.served = work / "served"
        self.served.mkdir()
        self.server = RangeHTTPServer(self.served).start()  # 127.0.0.1, an ephemeral port
        self.writes = {sh: (work / f"write-{sh}", H.write_target(work / f"write-{sh}", sh)) for sh in (False, True)}
        self.bombs = H.build_bombs(work / "bombs")  # file:// ones; gzip over HTTP is the test suite's
        self.tally = Tally()

    def close(self) -> None:
        self.server.stop()

    def run(self, scenario: str, tally: Tally | None = None) -> None:
        t = tally or self.tally
        t.rounds[scenario] += 1
        {"chunk file": self.chunk_file, "chunk http": self.chunk_http, "disk cache": self.disk_cache,
         "bomb": self.bomb, "info": self.info, "write": self.write}[scenario](t)

    def _chunks(self, t: Tally, scenario: str, layouts: Sequence[H.Layout], parent: Path | None,
                url_of: Callable[[Path], str]) -> None:
        layout = self.rng.choice(layouts)
        fault = H.random_fault(self.rng)
        t.faults[fault.kind] += 1
        src, truth = self.pristine[layout]
        outcomes, ok = H.damage_outcomes(src, truth, layout, fault, parent, url_of)
        for o in outcomes:
            t.add(scenario, o, ok, f"{layout.name} {fault}", f"{'sharded ' if layout.sharded else ''}{fault.kind}")

    def chunk_file(self, t: Tally) -> None:
        self._chunks(t, "chunk file", VOLUMES, None, lambda root: "file://" + str(root))

    def chunk_http(self, t: Tally) -> None:
        base = self.server.url
        served = self.served
        self._chunks(t, "chunk http", HTTP_VOLUMES, served,
                     lambda root: f"{base}/{root.relative_to(served).as_posix()}")

    def disk_cache(self, t: Tally) -> None:
        layout = self.rng.choice(H.CACHE_LAYOUTS)
        fault = H.random_fault(self.rng)
        t.faults[f"cache {fault.kind}"] += 1
        src, truth = self.pristine[layout]
        outcomes, hit, _ = H.cache_outcomes(src, truth, fault)
        for o in outcomes:
            if o.result == "error" and hit and not any(h in o.detail for h in hit):
                t.reads["disk cache"] += 1
                t.other["disk cache"] += 1
                t.note(f"disk cache {layout.name} {fault} {o.what}: the error names no damaged file {hit}: {o.detail}")
            else:
                t.add("disk cache", o, True, f"{layout.name} {fault}", f"cache {fault.kind}")

    def bomb(self, t: Tally) -> None:
        name = self.rng.choice(sorted(self.bombs))
        url, how = self.bombs[name]
        t.faults[f"bomb {name}"] += 1
        with cvl.Volume(url, parallel=2) as vol:
            before = max_rss()
            read = (lambda: vol.scattered_points(np.array([[1, 2, 0], [10, 20, 0]]))) if how == "points" else (
                lambda: vol[...])
            o = H.attempt(f"bomb {name}", True, read, np.zeros(0))
            rise = max_rss() - before
        t.bomb_rise = max(t.bomb_rise, rise)
        if o.result == "exact" or o.result == "wrong":  # any data from a bomb is data from a broken chunk
            o.result, o.detail = "wrong", "returned data instead of a DecodeError"
        t.add("bomb", o, True, name)
        if rise >= H.MEMORY_BOUND:
            t.other["bomb"] += 1
            t.note(f"bomb {name}: the RSS high-water mark rose by {rise >> 20} MiB (bound {H.MEMORY_BOUND >> 20} MiB)")

    def info(self, t: Tally) -> None:
        t.faults["info"] += 1
        t.add("info", H.info_outcome(H.random_info_text(self.rng)), True, "hostile info")

    def write(self, t: Tally) -> None:
        sharded = self.rng.random() < 0.5
        src, truth = self.writes[sharded]
        box6 = (self.rng.randrange(40), self.rng.randrange(32), self.rng.randrange(12),
                self.rng.randint(1, 24), self.rng.randint(1, 24), self.rng.randint(1, 12))
        if self.rng.random() < 0.5:
            label = self.rng.choice(sorted(H.HOSTILE_SCALARS))
            o = H.write_outcome(src, truth, box6, lambda _: H.HOSTILE_SCALARS[label], f"scalar {label}")
        else:
            kind = self.rng.choice(H.HOSTILE_ARRAYS)
            o = H.write_outcome(src, truth, box6, lambda shape: H.hostile_array(kind, shape), f"array {kind}")
        if o is not None:
            t.faults["write"] += 1
            t.add("write", o, True, "sharded" if sharded else "plain")


def table(t: Tally, seconds: float, peak: int, baseline: int) -> str:
    cols = ("rounds", "reads", "exact", "named err", "silent*", "WRONG", "FOREIGN", "other viol.")
    lines = [f"{'scenario':<12}" + "".join(f"{c:>12}" for c in cols)]
    total = Counter()
    for s in SCENARIOS:
        row = (t.rounds[s], t.reads[s], t.exact[s], t.named_by_scenario[s], t.silent[s], t.wrong[s],
               t.foreign_by_scenario[s], t.other[s])
        total.update(dict(zip(cols, row)))
        lines.append(f"{s:<12}" + "".join(f"{v:>12}" for v in row))
    lines.append(f"{'total':<12}" + "".join(f"{total[c]:>12}" for c in cols))
    bound = baseline + H.MEMORY_BOUND
    lines += [
        "",
        f"ran {seconds:.1f} s; reads tried {sum(t.reads.values())}, faults injected {sum(t.faults.values())}",
        "faults by kind:  " + ", ".join(f"{k} {v}" for k, v in sorted(t.faults.items())),
        "named errors:    " + (", ".join(f"{k} {v}" for k, v in t.named.most_common()) or "none"),
        "foreign errors:  " + (", ".join(f"{k} {v}" for k, v in t.foreign.most_common()) or "none") + "  (must be 0)",
        f"wrong voxels:    {sum(t.wrong.values())}  (must be 0; reads where the formats can tell)"
        + ("; by fault: " + ", ".join(f"{k} {v}" for k, v in t.wrong_kinds.most_common()) if t.wrong_kinds else ""),
        f"silent*:         {sum(t.silent.values())}  (allowed: damage no checksum covers, read as other voxels)",
        (f"peak RSS:        {peak / 2**20:.0f} MiB, bound {bound / 2**20:.0f} MiB (after warm-up "
         f"{baseline / 2**20:.0f} + {H.MEMORY_BOUND >> 20}); largest rise during one bomb read "
         f"{t.bomb_rise / 2**20:.0f} MiB  {'OK' if peak <= bound else 'OVER'}"),
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=0.5, help="how long to loop (default 0.5)")
    ap.add_argument("--seed", type=int, default=0, help="the random choices (default 0)")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    warnings.simplefilter("ignore")  # CacheIntegrityWarning and the like are expected answers here
    with tempfile.TemporaryDirectory(prefix="cvl-hostile-") as d:
        print(f"setting up in {d} ...", flush=True)
        soak = Soak(Path(d), rng)
        try:
            scratch = Tally()
            for s in SCENARIOS:  # warm up (imports, thread pools, decoders) before the baseline
                if s != "bomb":
                    soak.run(s, scratch)
            baseline = max_rss()
            print(f"looping for {args.minutes:g} min (seed {args.seed}) ...", flush=True)
            names, weights = list(SCENARIOS), list(SCENARIOS.values())
            start = time.monotonic()
            while time.monotonic() - start < args.minutes * 60:
                soak.run(rng.choices(names, weights)[0])
            seconds = time.monotonic() - start
        finally:
            soak.close()
    t = soak.tally
    print(table(t, seconds, max_rss(), baseline))
    violations = sum(t.wrong.values()) + sum(t.foreign.values()) + sum(t.other.values())
    failed = violations or max_rss() > baseline + H.MEMORY_BOUND
    if t.problems:
        print(f"\nrule violations (the first {min(20, len(t.problems))} of {violations}):")
        for p in t.problems[:20]:
            print("  " + p.replace("\n", "\n    "))
    print("\nFAIL" if failed else "\nPASS")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
