"""Regenerate the benchmark tables in docs/benchmarks.md and the speed sentences in README.md
from the committed results in docs/results/*.json. No benchmark runs here.

    python benchmarks/report.py --collect   # copy the latest benchmarks/results/*.json into docs/results/, then regenerate
    python benchmarks/report.py             # regenerate from docs/results/ as committed
    python benchmarks/report.py --check     # exit 1 if README.md or docs/benchmarks.md differ from the JSON

Generated text sits between marker comments (``<!-- begin:NAME -->`` ... ``<!-- end:NAME -->``):
``read``, ``points``, ``http``, ``floor``, ``points_scale``, ``halo``, ``cluster`` and ``behind``
in docs/benchmarks.md, ``speed`` in README.md (the four newer sections come from report_more.py).
Everything outside the markers is left alone. tests/test_docs.py fails when the two files
differ from what this script would write.

Which files count: ``read.json`` (bench_read.py), ``read_sharded.json`` (--sharded),
``points.json`` (bench_points.py), ``points_scale.json`` (--scales), ``floor.json``
(bench_floor.py), ``halo.json`` (bench_halo.py), ``cluster.json`` (bench_cluster.py) and
``http*.json`` (bench_http.py; one table per server kind and latency: ``http.json`` async at
20 ms, ``http_0ms.json`` ..., ``http_threaded.json``, ``http_stdlib.json``). ``*_quick.json``
never counts.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import report_more  # noqa: E402
from report_more import (  # noqa: E402
    LABELS,
    LEVEL,
    date_of,
    fmt_range,
    fmt_rate,
    fmt_ratio,
    md_table,
    plural,
    rev_of,
    wrap,
)

ROOT = Path(__file__).resolve().parent.parent
#: labels for the ratio columns
RATIO_LABELS: dict[str, str] = {
    "cvl/cv": "vs cv",
    "cvl/ts F": "vs ts F",
    "cvl/best": "**vs best**",
    "cvl/ts": "vs ts C",
}
HTTP_VOLUMES = report_more.VOLUMES
#: bench_http's server kinds -> a description; the file each comes from is http[_KIND].json
HTTP_SERVERS: dict[str, str] = {
    "async": "the default asyncio benchmark server (`latency_server.py`)",
    "threaded": "the test suite's thread-per-connection server (`--server threaded`)",
    "stdlib": "Python's `http.server` (no Range requests: no sharded volumes)",
}
SYSTEM_ORDER: tuple[str, ...] = ("cvl", "cv", "ts F", "ts", "cvl p32", "cvl p64")
#: the result files with one fixed name each, in the order they are loaded
FIXED_NAMES: tuple[str, ...] = ("read.json", "read_sharded.json", "points.json", "points_scale.json", "floor.json",
                                "halo.json", "cluster.json")


# ------------------------------------------------------------------------------------------
# loading
# ------------------------------------------------------------------------------------------
def results_dir(root: Path = ROOT) -> Path:
    """Where the committed results live: ``docs/results``."""
    return root / "docs" / "results"


def committed_names(directory: Path) -> list[str]:
    """The result files that count: :data:`FIXED_NAMES` present, then http*.json (never ``*_quick``)."""
    fixed = [n for n in FIXED_NAMES if (directory / n).exists()]
    http = sorted(p.name for p in directory.glob("http*.json") if not p.stem.endswith("_quick"))
    return fixed + http


def load(directory: Path) -> dict[str, dict]:
    """``{file name: parsed JSON}`` for :func:`committed_names`."""
    return {n: json.loads((directory / n).read_text()) for n in committed_names(directory)}


def run_time(path: Path) -> str:
    """The ``env.time`` a result file records ("" when none, or no file)."""
    try:
        return (json.loads(path.read_text()).get("env") or {}).get("time") or ""
    except (OSError, ValueError):
        return ""


def collect(src: Path, dst: Path) -> list[str]:
    """Copy the non-quick results in ``src`` (benchmarks/results) to ``dst`` (docs/results), except
    where ``dst`` holds a later run of the same file (copied in by hand from elsewhere)."""
    dst.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in committed_names(src):
        if run_time(dst / name) > run_time(src / name):
            print(f"[report] kept docs/results/{name}: it is a later run than benchmarks/results/{name}")
            continue
        shutil.copyfile(src / name, dst / name)
        copied.append(name)
    return copied


# ------------------------------------------------------------------------------------------
# formatting
# ------------------------------------------------------------------------------------------
def present_systems(rates: Iterable[dict[str, Any]]) -> list[str]:
    """The systems that appear in any of ``rates``, in :data:`SYSTEM_ORDER` (unknown ones last)."""
    seen: list[str] = []
    for r in rates:
        for s in r:
            if s not in seen:
                seen.append(s)
    return [s for s in SYSTEM_ORDER if s in seen] + [s for s in seen if s not in SYSTEM_ORDER]


def ratio_keys(systems: Sequence[str]) -> list[str]:
    """Ratio columns for ``systems``: :func:`common.ratio_names` (cvl/ts F only when ts F ran)."""
    return common.ratio_names(list(systems))


# ------------------------------------------------------------------------------------------
# local reads
# ------------------------------------------------------------------------------------------
def read_rows(results: dict[str, dict]) -> list[tuple[str, dict[str, float | None], dict[str, float | None]]]:
    """(line name, {system: MB/s}, {system: spread}) for every line of read.json and read_sharded.json."""
    rows = []
    for name in ("read.json", "read_sharded.json"):
        for line in (results.get(name) or {}).get("lines", []):
            sysd = line["systems"]
            rates = {s: (None if v.get("error") else v.get("mb_per_s")) for s, v in sysd.items()}
            spread = {s: v.get("spread") for s, v in sysd.items()}
            rows.append((line["name"], rates, spread))
    return rows


def read_section(results: dict[str, dict]) -> str:
    """The local-read table (unsharded, then sharded) with its caption."""
    rows = read_rows(results)
    if not rows:
        return "No local-read results are committed yet: run `bench_read.py` (and `--sharded`), then `report.py --collect`."
    systems = present_systems(r for _, r, _ in rows)
    keys = ratio_keys(systems)
    head = ["line", *(f"{LABELS.get(s, s)} MB/s" for s in systems), *(RATIO_LABELS.get(k, k) for k in keys), "noise"]
    body = []
    for name, rates, spread in rows:
        rat = common.ratios(rates)
        sp = [v for v in spread.values() if v is not None]
        cells = [name, *(fmt_rate(rates.get(s)) if s in rates else "—" for s in systems)]
        cells += [(f"**{fmt_ratio(rat.get(k))}**" if k == "cvl/best" else fmt_ratio(rat.get(k))) for k in keys]
        cells.append(f"±{max(sp) * 100:.0f}%" if sp else "—")
        body.append(cells)
    srcs = [results[n] for n in ("read.json", "read_sharded.json") if n in results]
    when = "; ".join(
        f"`{n}` {date_of(results[n])} at {rev_of(results[n])}, medians of {results[n].get('repeats')} after "
        f"{results[n].get('warmup')} warm-up" for n in ("read.json", "read_sharded.json") if n in results
    )
    caption = wrap(
        "Local reads from the page cache (MB/s of output; "
        f"{when}). **vs best** is cvl's speed over the fastest peer's on the line, whichever it is; "
        "vs ts C is against TensorStore at its C-order default. noise is the largest ±half-range of "
        "the runs over the median among the systems on the line."
    )
    if any(s.get("quick") for s in srcs):
        caption += "\n\n**These are `--quick` results (small volumes), not the full-size benchmark.**"
    return caption + "\n\n" + md_table(head, body)


def classify(values: Sequence[tuple[str, float]]) -> tuple[list, list, list]:
    """(ahead, level, behind) lists of (name, ratio), by :data:`LEVEL`."""
    ahead = [(n, r) for n, r in values if r >= 1 + LEVEL]
    level = [(n, r) for n, r in values if 1 - LEVEL <= r < 1 + LEVEL]
    behind = [(n, r) for n, r in values if r < 1 - LEVEL]
    return ahead, level, behind


def read_vs_best(results: dict[str, dict]) -> list[tuple[str, float]]:
    """(line, cvl/best) for every local-read line where both cvl and a peer have a figure."""
    out = []
    for name, rates, _ in read_rows(results):
        r = common.ratios(rates).get("cvl/best")
        if r is not None:
            out.append((name, r))
    return out


# ------------------------------------------------------------------------------------------
# points
# ------------------------------------------------------------------------------------------
def points_rates(points: dict) -> dict[str, dict[str, float]]:
    """``{line: {system: lookups per second-ish}}``: 1000 / ms, so higher is faster."""
    return {ln: {s: 1e3 / ms for s, ms in v.items() if ms} for ln, v in points.get("cold_ms", {}).items()}


def points_section(results: dict[str, dict]) -> str:
    p = results.get("points.json")
    if not p:
        return "No points results are committed yet: run `bench_points.py`, then `report.py --collect`."
    cold, warm = p.get("cold_ms", {}), p.get("warm_ms", {})
    systems = present_systems(cold.values())
    keys = ratio_keys(systems)
    rates = points_rates(p)
    head = ["line", *(f"{LABELS.get(s, s)} ms" for s in systems), *(RATIO_LABELS.get(k, k) for k in keys),
            "cvl warm, LRU ms", "cvl warm, disk cache ms"]
    body = []
    for ln, ms in cold.items():
        rat = common.ratios(rates[ln])
        w = warm.get(ln, {})
        body.append([ln, *(fmt_rate(ms.get(s)) for s in systems),
                     *((f"**{fmt_ratio(rat.get(k))}**" if k == "cvl/best" else fmt_ratio(rat.get(k))) for k in keys),
                     fmt_rate(w.get("lru_ms")), fmt_rate(w.get("disk_cache_ms"))])
    caption = wrap(
        f"{p.get('points', 10_000):,} random points (`points.json` {date_of(p)} at {rev_of(p)}; milliseconds, "
        f"medians of {p.get('repeats')}, a fresh handle each time; lower is faster). Ratios are speed "
        "ratios, cvl over the peer, as above. B is cseg uint64 512×512×128, D the same sharded, E the "
        "same labels stored raw. The warm columns are second passes: through cvl's LRU on the same "
        "handle, and through its disk cache with a new handle."
    )
    if p.get("quick"):
        caption += "\n\n**These are `--quick` results, not the full-size benchmark.**"
    return caption + "\n\n" + md_table(head, body)


# ------------------------------------------------------------------------------------------
# HTTP
# ------------------------------------------------------------------------------------------
def http_results(results: dict[str, dict]) -> list[tuple[str, dict]]:
    """(server kind, JSON) for every http*.json: async first, then threaded, stdlib, others; by latency."""
    found = [(d.get("server", "async"), d) for n, d in results.items() if n.startswith("http")]
    order = {k: i for i, k in enumerate(HTTP_SERVERS)}
    return sorted(found, key=lambda kd: (order.get(kd[0], len(order)), kd[0], kd[1].get("latency_s") or 0.0))


def http_headline(results: dict[str, dict]) -> tuple[str, dict] | None:
    """The HTTP result the README quotes: http.json (20 ms, async) if committed, else the first."""
    if "http.json" in results:
        d = results["http.json"]
        return d.get("server", "async"), d
    found = http_results(results)
    return found[0] if found else None


def http_floor_cells(d: dict, vol: str) -> list[str]:
    """The floor's MB/s and cvl's wall time over the floor's, for a result that measured the floor."""
    fl = (d.get("floor") or {}).get(vol) or {}
    vs = ((d.get("vs_floor") or {}).get(vol) or {}).get("cvl")
    return [fmt_rate(fl.get("mb_per_s")), fmt_ratio(vs)]


def http_table(d: dict) -> str:
    rates: dict[str, dict[str, float]] = d.get("mb_per_s", {})
    systems = present_systems(rates.values())
    keys = ratio_keys([s for s in systems if not common.is_ours(s) or s == "cvl"])
    floor = bool(d.get("floor"))
    head = ["volume", *(LABELS.get(s, s) for s in systems), *(RATIO_LABELS.get(k, k) for k in keys)]
    head += ["floor MB/s", "cvl vs floor"] if floor else []
    body = []
    for vol, r in rates.items():
        rat = common.ratios({s: v for s, v in r.items() if s == "cvl" or not common.is_ours(s)})
        body.append([HTTP_VOLUMES.get(vol, vol), *(fmt_rate(r.get(s)) for s in systems),
                     *((f"**{fmt_ratio(rat.get(k))}**" if k == "cvl/best" else fmt_ratio(rat.get(k))) for k in keys),
                     *(http_floor_cells(d, vol) if floor else [])])
    return md_table(head, body)


def http_caption(kind: str, d: dict) -> str:
    source = d.get("source") or (f"{date_of(d)} at {rev_of(d)}" if d.get("env") else "date not recorded")
    lat = d.get("latency_s")
    caption = (f"HTTP at {lat * 1e3:.0f} ms per request" if lat is not None else "HTTP") + (
        f" from {HTTP_SERVERS.get(kind, kind + ' server')}; MB/s, medians of {d.get('repeats')} ({source})."
    )
    if not any("ts F" in r for r in d.get("mb_per_s", {}).values()):
        caption += " TensorStore was read in C order only in this run."
    if d.get("quick"):
        caption += " **`--quick` results.**"
    return wrap(caption)


def http_p32_note(d: dict) -> str:
    """A sentence on cvl at parallel=32 against TensorStore, when the result has that column."""
    p32 = [r["cvl p32"] / r["ts"] for vol, r in d.get("mb_per_s", {}).items()
           if r.get("cvl p32") and r.get("ts") and vol.startswith("A-raw-uint8") and "gzip" not in vol]
    if not p32:
        return ""
    return "\n\n" + wrap(
        f"At `parallel=32` (TensorStore's default number of requests in flight) raw reads run at "
        f"{fmt_ratio(p32[0])}× TensorStore's speed: what the default gains is from keeping more "
        "requests in flight cheaply, not from faster requests."
    )


def http_section(results: dict[str, dict]) -> str:
    found = http_results(results)
    if not found:
        return "No HTTP results are committed yet: run `bench_http.py`, then `report.py --collect`."
    parts = []
    if any(d.get("floor") for _, d in found):
        parts.append(wrap(
            "Where a run measured it, floor MB/s is bench_http's floor (a bare client keeping enough requests "
            "in flight, plus the decoding on two threads) and cvl vs floor is cvl's median wall time over the "
            "floor's fastest round: 1.00 is at the floor, lower is better."
        ))
    parts += [http_caption(kind, d) + "\n\n" + http_table(d) + http_p32_note(d) for kind, d in found]
    return "\n\n".join(parts)


def http_vs_best(d: dict) -> list[tuple[str, float]]:
    out = []
    for vol, r in d.get("mb_per_s", {}).items():
        v = common.ratios({s: x for s, x in r.items() if s == "cvl" or not common.is_ours(s)}).get("cvl/best")
        if v is not None:
            out.append((vol, v))
    return out


# ------------------------------------------------------------------------------------------
# sentences
# ------------------------------------------------------------------------------------------
def count_clause(values: Sequence[tuple[str, float]], noun: str, names: bool = False) -> str:
    """``"ahead (≥ 1.05×) on 9 of 12 lines, level (within 5%) on 2 and behind on 1"``; with ``names``,
    the lines behind are named (up to three)."""
    ahead, level, behind = classify(values)
    n = len(values)
    parts = []
    if ahead:
        parts.append(f"ahead (≥ {1 + LEVEL:.2f}×) on {len(ahead)} of {n} {noun}")
    if level:
        parts.append(f"level (within {LEVEL * 100:.0f}%) on {len(level)}" + ("" if ahead else f" of {n} {noun}"))
    if behind:
        named = ", ".join(f"{nm}: {fmt_ratio(r)}×" for nm, r in behind) if names and len(behind) <= 3 else ""
        parts.append(f"behind on {len(behind)}" + ("" if ahead or level else f" of {n} {noun}")
                     + (f" ({named})" if named else ""))
    if len(parts) > 1:
        return ", ".join(parts[:-1]) + " and " + parts[-1]
    return parts[0] if parts else f"no {noun} measured"


def compare_phrase(values: Sequence[float], peer: str) -> str:
    """``"1.5–2.2× faster than TensorStore"``, or ``"at 0.3–2.2× TensorStore's speed"`` when not always faster."""
    if min(values) >= 1 + LEVEL:
        return f"{fmt_range(values)} faster than {peer}"
    return f"at {fmt_range(values)} {peer}'s speed"


def speed_paragraph(results: dict[str, dict]) -> str:
    """The README's speed sentences, every figure taken from ``results``."""
    s = []
    local = read_vs_best(results)
    if local:
        s.append(
            "Against CloudVolume and TensorStore on the same data (2-core VM; TensorStore asked both for "
            "its default C order and for the Fortran order cloudvolume-lite returns), cloudvolume-lite "
            f"reads local volumes at {fmt_range([r for _, r in local])} the speed of the fastest peer on "
            f"each line: {count_clause(local, 'local read lines')}, sharded and unsharded."
        )
    p = results.get("points.json")
    if p:
        rates = points_rates(p)
        ts_r = [common.ratios({"cvl": r["cvl"], **{k: v for k, v in r.items() if k.startswith("ts")}})["cvl/best"]
                for r in rates.values() if r.get("cvl")]
        cv_r = [r["cvl"] / r["cv"] for r in rates.values() if r.get("cvl") and r.get("cv")]
        bits = [compare_phrase(ts_r, "TensorStore") if ts_r else "", compare_phrase(cv_r, "CloudVolume") if cv_r else ""]
        bits = [b for b in bits if b]
        if bits:
            s.append(f"It answers {p.get('points', 10_000):,} scattered points {' and '.join(bits)}"
                     f" ({plural(len(rates), 'volume')}; TensorStore in the faster of its two orders).")
    head = http_headline(results)
    if head:
        kind, d = head
        vals = http_vs_best(d)
        if vals:
            lat = d.get("latency_s") or 0.0
            note = "" if any("ts F" in r for r in d.get("mb_per_s", {}).values()) else ", TensorStore in C order"
            when = ("; figures from " + d["source"].split(":")[0]) if d.get("source") else (
                f"; {date_of(d)}" if d.get("env") else "")
            s.append(
                f"Full reads over HTTP at {lat * 1e3:.0f} ms per request run at {fmt_range([v for _, v in vals])} "
                f"the fastest peer's speed on {plural(len(vals), 'volume')} ({kind} server{note}{when})."
            )
    s.append("Figures and method: [docs/benchmarks.md](docs/benchmarks.md).")
    return wrap(" ".join(s))


def behind_section(results: dict[str, dict]) -> str:
    """A bullet per line of any section where cvl is below the fastest peer (cold reads: or the floor)."""
    items = []
    for name, rates, _ in read_rows(results):
        r = common.ratios(rates).get("cvl/best")
        if r is not None and r < 1 - LEVEL:
            bp = common.best_peer(rates)[0]
            items.append(f"- **{name}** (local read): {fmt_ratio(r)}× {LABELS.get(bp, bp)}.")
    p = results.get("points.json")
    for ln, rates in (points_rates(p) if p else {}).items():
        r = common.ratios(rates).get("cvl/best")
        if r is not None and r < 1 - LEVEL:
            bp = common.best_peer(rates)[0]
            items.append(f"- **{ln}** (10k points): {fmt_ratio(r)}× {LABELS.get(bp, bp)}.")
    for kind, d in http_results(results):
        lat = "" if d.get("latency_s") is None else f", {d['latency_s'] * 1e3:.0f} ms"
        for vol, r in http_vs_best(d):
            if r < 1 - LEVEL:
                rates = {s: x for s, x in d["mb_per_s"][vol].items() if s == "cvl" or not common.is_ours(s)}
                bp = common.best_peer(rates)[0]
                items.append(f"- **{HTTP_VOLUMES.get(vol, vol)}** (HTTP, {kind}{lat}): {fmt_ratio(r)}× "
                             f"{LABELS.get(bp, bp)}.")
    items += report_more.behind_items(results)
    if not items:
        return (f"In the committed results cvl is within {LEVEL * 100:.0f}% of the fastest peer or ahead on every "
                f"line, and at {report_more.FLOOR_BEHIND:.0%} of the floor or more on every cold read.")
    return (f"Lines where cvl is more than {LEVEL * 100:.0f}% below the fastest peer (cold reads: or below "
            f"{report_more.FLOOR_BEHIND:.0%} of the floor):\n\n" + "\n".join(items))


# ------------------------------------------------------------------------------------------
# files
# ------------------------------------------------------------------------------------------
def replace_block(text: str, name: str, body: str, where: str) -> str:
    """``text`` with the part between ``<!-- begin:name -->`` and ``<!-- end:name -->`` set to ``body``."""
    pat = re.compile(rf"(<!-- begin:{re.escape(name)} -->\n)(.*?)(<!-- end:{re.escape(name)} -->)", re.S)
    if len(pat.findall(text)) != 1:
        raise ValueError(f"{where} needs exactly one '<!-- begin:{name} -->' ... '<!-- end:{name} -->' block")
    return pat.sub(lambda m: m.group(1) + body.rstrip("\n") + "\n" + m.group(3), text)


def render(root: Path = ROOT, directory: Path | None = None) -> dict[Path, str]:
    """``{path: text}``: README.md and docs/benchmarks.md as the JSON in ``directory`` makes them."""
    results = load(directory or results_dir(root))
    readme, bench = root / "README.md", root / "docs" / "benchmarks.md"
    out = {}
    text = readme.read_text()
    out[readme] = replace_block(text, "speed", speed_paragraph(results), "README.md")
    text = bench.read_text()
    blocks = [("read", read_section(results)), ("points", points_section(results)), ("http", http_section(results)),
              *report_more.sections(results), ("behind", behind_section(results))]
    for name, body in blocks:
        text = replace_block(text, name, body, "docs/benchmarks.md")
    out[bench] = text
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--collect", action="store_true",
                    help="first copy every result file that counts (see above) from benchmarks/results/ to docs/results/")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file would change")
    args = ap.parse_args(argv)
    if args.collect:
        copied = collect(common.RESULTS_DIR, results_dir())
        print(f"[report] copied {', '.join(copied) or 'nothing'} to {results_dir()}")
    stale = []
    for path, text in render().items():
        if path.read_text() != text:
            stale.append(path)
            if not args.check:
                path.write_text(text)
    verb = "out of date" if args.check else "rewrote"
    for path in stale:
        print(f"[report] {verb}: {path.relative_to(ROOT)}")
    if not stale:
        print("[report] README.md and docs/benchmarks.md match docs/results/")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
