"""The newer sections of docs/benchmarks.md for report.py: ``floor`` (bench_floor.py),
``points_scale`` (bench_points.py --scales), ``halo`` (bench_halo.py) and ``cluster``
(bench_cluster.py), each with its lines for "Where we are behind".

The formatting helpers both modules use live here too, so that report.py imports this module
and nothing imports report.py (which also runs as ``__main__``). A section whose JSON is not
committed renders as one "not measured yet" sentence.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

LEVEL = 0.05  # a ratio within 1 ± LEVEL is "level"; above is ahead, below is behind
FLOOR_BEHIND = 0.80  # a cold read below this share of the floor is listed as behind

#: column labels for system names
LABELS: dict[str, str] = {
    "cvl": "cvl",
    "cv": "CloudVolume",
    "ts": "TensorStore, C order",
    "ts F": "TensorStore, F order",
    "cvl p32": "cvl, parallel=32",
    "cvl p64": "cvl, parallel=64",
}
#: volume names in the JSON (bench_read/bench_http's and bench_floor's labels) -> what they hold
VOLUMES: dict[str, str] = {
    "A-raw-uint8": "raw uint8 1024×1024×128",
    "A-raw-uint8-gzip-files": "the same, chunk files gzip'd (as CloudVolume writes)",
    "B-cseg-uint64": "cseg uint64 512×512×128",
    "C-sharded-raw-gzip-uint8": "raw uint8, sharded",
    "D-sharded-cseg-uint64": "cseg, sharded",
    "raw128": "raw uint8 1024×1024×128",
    "cseg268": "cseg uint64 512×512×128",
    "raw1g": "raw uint8 1024×1024×1024",
    "cseg1g": "cseg uint64 1024×1024×128",
    "raw4g": "raw uint8 2048×2048×1024",
}
#: bench_halo's systems -> what each runs
HALO_SYSTEMS: dict[str, str] = {
    "cvl": "cvl `vol.map_overlap(...).compute()`",
    "cvl out": "cvl `vol.map_overlap(..., out=)` into a new volume",
    "dask": "`vol.to_dask().map_overlap`",
    "scipy": "`vol[...]`, then `scipy.ndimage` on the whole array",
}


# ------------------------------------------------------------------------------------------
# formatting (shared with report.py)
# ------------------------------------------------------------------------------------------
def fmt_rate(x: float | None) -> str:
    """MB/s or ms: no decimals from 100 up, one below."""
    if x is None:
        return "—"
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}"


def fmt_ratio(x: float | None) -> str:
    """A speed ratio: two decimals below 10, none from 10 up."""
    if x is None:
        return "—"
    return f"{x:.0f}" if x >= 10 else f"{x:.2f}"


def fmt_range(values: Sequence[float]) -> str:
    """``"0.62–2.04×"`` (or one figure when all round alike)."""
    lo, hi = fmt_ratio(min(values)), fmt_ratio(max(values))
    return f"{lo}×" if lo == hi else f"{lo}–{hi}×"


def fmt_count(n: int) -> str:
    """``1000`` -> ``"1k"``, ``10_000_000`` -> ``"10M"``; other counts with thousands separators."""
    for size, unit in ((1_000_000, "M"), (1_000, "k")):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return f"{n:,}"


def fmt_bytes(n: float | None) -> str:
    """Output sizes as the benchmarks name them: ``"134 MB"`` below a GiB, ``"4 GiB"`` from there."""
    if not n:
        return "size not recorded"
    return f"{n / 2**30:g} GiB" if n >= 2**30 else f"{n / 1e6:.0f} MB"


def volume_name(name: str) -> str:
    """What a volume holds, from its name in the JSON (a ``-quick`` copy reads as the full one)."""
    return VOLUMES.get(name.removesuffix("-quick"), name)


def bold(text: str) -> str:
    return f"**{text}**"


def md_table(head: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def plural(n: int, word: str) -> str:
    """``"1 volume"``, ``"4 volumes"``."""
    return f"{n} {word}" + ("" if n == 1 else "s")


def wrap(text: str, width: int = 96) -> str:
    return textwrap.fill(text, width=width, break_on_hyphens=False, break_long_words=False)


def date_of(obj: dict) -> str:
    t = (obj.get("env") or {}).get("time")
    return t[:10] if t else "an unrecorded date"


def rev_of(obj: dict) -> str:
    return (obj.get("env") or {}).get("git") or "an unrecorded revision"


def provenance(name: str, obj: dict) -> str:
    """``"`floor.json` 2026-12-01 at a6687f0-dirty"``."""
    return f"`{name}` {date_of(obj)} at {rev_of(obj)}"


def medians_of(obj: dict, what: str = "") -> str:
    """``"medians of 7 interleaved rounds"``, or just ``"medians"`` when the count is not recorded."""
    n = obj.get("repeats")
    return f"medians of {n}{what}" if n else "medians"


def not_measured(script: str) -> str:
    return f"Not measured yet: run `{script}`, then `report.py --collect`."


def quick_note(obj: dict) -> str:
    return "\n\n**These are `--quick` results, not the full-size benchmark.**" if obj.get("quick") else ""


# ------------------------------------------------------------------------------------------
# floor: cold one-shot reads in fresh processes against the machine's floor
# ------------------------------------------------------------------------------------------
def floor_rate(vol: dict, system: str) -> float | None:
    """MB/s of ``system`` on one bench_floor volume (None when it failed or did not run)."""
    return (vol.get("systems", {}).get(system) or {}).get("mb_per_s")


def floor_ref(vol: dict) -> tuple[str | None, float | None]:
    """(name, MB/s) of the volume's floor: the fastest of its floor variants, as bench_floor picks."""
    name = vol.get("floor")
    if not name:
        rated = [(s, r) for s in vol.get("systems", {}) if s.startswith("floor") and (r := floor_rate(vol, s))]
        name = max(rated, key=lambda sr: sr[1])[0] if rated else None
    return name, (floor_rate(vol, name) if name else None)


def floor_cell(vol: dict, system: str) -> str:
    sysd = vol.get("systems", {})
    if system not in sysd:
        return "—"
    return "failed" if "error" in sysd[system] else fmt_rate(floor_rate(vol, system))


def floor_peak(vol: dict, system: str) -> str:
    p = (vol.get("systems", {}).get(system) or {}).get("peak_over_out")
    return "—" if p is None else f"{p:.2f}"


def floor_peers(vol: dict) -> dict[str, float | None]:
    """cvl and its peers (TensorStore, CloudVolume) on one volume, for :func:`common.ratios`."""
    return {s: floor_rate(vol, s) for s in ("cvl", "ts F", "ts", "cv") if s in vol.get("systems", {})}


def floor_row(vol: dict) -> list[str]:
    cvl = floor_rate(vol, "cvl")
    fname, fl = floor_ref(vol)
    best = common.ratios(floor_peers(vol)).get("cvl/best")
    variant = "" if fname in (None, "floor") else f" ({fname.removeprefix('floor ')})"
    label = vol.get("label", "?")
    return [f"{VOLUMES.get(label, volume_name(vol.get('volume', label)))}, {fmt_bytes(vol.get('out_bytes'))}",
            floor_cell(vol, "cvl"), floor_cell(vol, "ts F"), floor_cell(vol, "cv"),
            fmt_rate(fl) + variant, f"{cvl / fl:.0%}" if cvl and fl else "—", bold(fmt_ratio(best)),
            floor_peak(vol, "cvl"), floor_peak(vol, "ts F")]


def of_floor(vols: Sequence[dict], system: str) -> list[float]:
    out = []
    for v in vols:
        r, fl = floor_rate(v, system), floor_ref(v)[1]
        if r and fl:
            out.append(r / fl)
    return out


def share_range(shares: Sequence[float]) -> str:
    """``"63–112%"`` (or one figure when both ends round alike)."""
    lo, hi = f"{min(shares) * 100:.0f}", f"{max(shares) * 100:.0f}"
    return f"{lo}%" if lo == hi else f"{lo}–{hi}%"


def floor_section(results: dict[str, dict]) -> str:
    """The cold-read table against the floor, with two generated sentences."""
    d = results.get("floor.json")
    vols = (d or {}).get("volumes") or []
    if not vols:
        return not_measured("bench_floor.py")
    head = ["volume, output", "cvl MB/s", "TensorStore, F order MB/s", "CloudVolume MB/s", "floor MB/s",
            "cvl % of floor", bold("vs best peer"), "peak/output cvl", "peak/output ts F"]
    text = wrap(
        f"One full read per fresh process, chunk files in the page cache ({provenance('floor.json', d)}, "
        f"{medians_of(d, ' interleaved rounds')}). The floor is the fastest of bench_floor's three: "
        "the chunk files read and pasted (raw) or decoded (cseg) on two threads into an output from "
        "`np.empty`, from an anonymous mapping (4k), or from one faulted in first (pop). peak/output is "
        "the process's peak memory growth over the output's size; — marks a system not run."
    )
    if ours := of_floor(vols, "cvl"):
        peers = "".join(f", {name} {share_range(sh)}" for s, name in
                        (("ts F", "TensorStore in F order"), ("cv", "CloudVolume")) if (sh := of_floor(vols, s)))
        text += "\n\n" + wrap(f"cvl reaches {share_range(ours)} of the floor{peers} ({plural(len(vols), 'volume')}).")
    return text + quick_note(d) + "\n\n" + md_table(head, (floor_row(v) for v in vols))


def floor_behind(results: dict[str, dict]) -> list[str]:
    """Bullets for cold reads where cvl trails the best peer, or reaches under 80% of the floor."""
    items = []
    for v in (results.get("floor.json") or {}).get("volumes") or []:
        rates = floor_peers(v)
        r = common.ratios(rates).get("cvl/best")
        cvl, fl = floor_rate(v, "cvl"), floor_ref(v)[1]
        why = []
        if r is not None and r < 1 - LEVEL:
            bp = common.best_peer(rates)[0]
            why.append(f"{fmt_ratio(r)}× {LABELS.get(bp, bp)}")
        if cvl and fl and cvl / fl < FLOOR_BEHIND:
            why.append(f"{cvl / fl:.0%} of the floor")
        if why:
            label = v.get("label", "?")
            items.append(f"- **{VOLUMES.get(label, label)}, {fmt_bytes(v.get('out_bytes'))}** "
                         f"(cold read, fresh process): {' and '.join(why)}.")
    return items


# ------------------------------------------------------------------------------------------
# points at scale: 1k..10M points on 1 GB volumes
# ------------------------------------------------------------------------------------------
def scale_cells(rows: Iterable[dict]) -> dict[tuple[str, str, int], dict[str, float]]:
    """``{(points kind, line, n): {system: ms}}``, in the order met; rows without the fields skipped."""
    out: dict[tuple[str, str, int], dict[str, float]] = {}
    for r in rows:
        line, n, s, ms = r.get("line"), r.get("n"), r.get("system"), r.get("ms")
        if line is None or n is None or s is None or not ms:
            continue
        out.setdefault((str(r.get("points", "uniform")), str(line), int(n)), {})[s] = float(ms)
    return out


#: the systems of a points row that are peers (rows also hold "cvl before" and the "floor")
SCALE_SYSTEMS = ("cvl", "ts F", "ts", "cv")


def scale_rates(ms: dict[str, float]) -> dict[str, float]:
    """Speeds (1/ms) of cvl and its peers, leaving out a baseline checkout and the floor."""
    return {s: 1e3 / v for s, v in ms.items() if s in SCALE_SYSTEMS}


def scale_ratios(ms: dict[str, float]) -> dict[str, float | None]:
    """Speed ratios (cvl over a peer) from milliseconds, peers being TensorStore and CloudVolume."""
    return common.ratios(scale_rates(ms))


def scale_table(cells: dict[tuple[str, str, int], dict[str, float]], line: str, kinds: bool) -> str:
    head = (["points"] if kinds else []) + ["n points", "cvl ms", "cvl ns/point", "TensorStore, F order ms",
                                            "TensorStore, C order ms", "CloudVolume ms", "vs ts F", "vs cv",
                                            bold("vs best")]
    floors = any("floor" in ms for (_, ln, _), ms in cells.items() if ln == line)
    if floors:
        head += ["floor ms", "cvl vs floor"]
    body = []
    for (kind, ln, n), ms in cells.items():
        if ln != line:
            continue
        rat = scale_ratios(ms)
        cvl = ms.get("cvl")
        body.append(([kind] if kinds else []) + [
            fmt_count(n), fmt_rate(cvl), fmt_rate(1e6 * cvl / n if cvl else None),
            *(fmt_rate(ms.get(s)) for s in ("ts F", "ts", "cv")), fmt_ratio(rat.get("cvl/ts F")),
            fmt_ratio(rat.get("cvl/cv")), bold(fmt_ratio(rat.get("cvl/best")))]
            + ([fmt_rate(ms.get("floor")), fmt_ratio(cvl / ms["floor"] if cvl and ms.get("floor") else None)]
               if floors else []))
    return md_table(head, body)


def points_scale_section(results: dict[str, dict]) -> str:
    """One table per line of the 1k..10M sweep, after a caption."""
    d = results.get("points_scale.json")
    cells = scale_cells((d or {}).get("rows") or [])
    if not cells:
        return not_measured("bench_points.py --scales")
    lines = list(dict.fromkeys(ln for _, ln, _ in cells))
    kinds = len({k for k, _, _ in cells}) > 1
    cv_rounds = [r.get("rounds") for r in d.get("rows", []) if r.get("system") == "cv" and r.get("rounds")]
    cv_note = (f"; CloudVolume only up to {d['cv_max']:,} points" if d.get("cv_max") else "") + (
        f", {max(cv_rounds)} rounds" if cv_rounds else "")
    text = wrap(
        f"Scattered points from 1k to 10M on 1 GB uint64 volumes (1024×1024×128, 64³ chunks, written by "
        f"TensorStore; {provenance('points_scale.json', d)}; milliseconds, "
        f"{medians_of(d, ' interleaved rounds')}{cv_note}; a fresh handle and no cache each time). uniform points are spread "
        "over the volume, clustered ones lie in a 128³ box (8 chunks). Ratios are cvl's speed over the "
        "peer's; **vs best** is against the fastest of TensorStore (either order) and CloudVolume."
        + (" floor ms is `points_floor.py`'s bytes work alone on both cores (no open, no grouping of the "
           "points), and cvl vs floor cvl's time over it: 1.00 is at the floor, lower is better."
           if any("floor" in ms for ms in cells.values()) else "")
    ) + quick_note(d)
    for line in lines:
        text += f"\n\n**{line}**\n\n" + scale_table(cells, line, kinds)
    return text


def points_scale_behind(results: dict[str, dict]) -> list[str]:
    items = []
    for (kind, line, n), ms in scale_cells((results.get("points_scale.json") or {}).get("rows") or []).items():
        r = scale_ratios(ms).get("cvl/best")
        if r is not None and r < 1 - LEVEL:
            bp = common.best_peer(scale_rates(ms))[0]
            items.append(f"- **{line}, {fmt_count(n)} {kind} points** (points at scale): "
                         f"{fmt_ratio(r)}× {LABELS.get(bp, bp)}.")
    return items


# ------------------------------------------------------------------------------------------
# halo: a gaussian through map_overlap, to_dask().map_overlap and scipy
# ------------------------------------------------------------------------------------------
def halo_rows(results: dict[str, dict]) -> dict[str, dict]:
    """``{system: row}`` of halo.json, systems with a wall time only."""
    return {r["system"]: r for r in (results.get("halo.json") or {}).get("rows") or [] if r.get("system") and r.get("s")}


def halo_section(results: dict[str, dict]) -> str:
    d, rows = results.get("halo.json") or {}, halo_rows(results)
    if not rows:
        return not_measured("bench_halo.py")
    dask = rows.get("dask", {}).get("s")
    shape = "×".join(str(x) for x in d.get("shape", [])) or "an unrecorded shape"
    head = ["system", "wall s", "CPU s", "tasks", "peak MiB", "exact", "speed vs `to_dask().map_overlap`"]
    body = [[HALO_SYSTEMS.get(s, s), f"{r['s']:.2f}", f"{r['cpu']:.2f}" if r.get("cpu") else "—",
             str(r.get("tasks", "—")),
             f"{r['peak'] / 2**20:.0f}" if r.get("peak") else "—",
             {True: "yes", False: "no"}.get(r.get("exact"), "—"),
             fmt_ratio(dask / r["s"]) if dask else "—"] for s, r in rows.items()]
    text = wrap(
        f"A gaussian (sigma {d.get('sigma')}, depth {d.get('depth')}) over float32 {shape} in 64³ chunks "
        f"({provenance('halo.json', d)}; wall time, {medians_of(d)}, each run in a fresh process "
        "whose peak RSS is the peak column). exact: equal voxel for voxel to scipy on the whole array."
    )
    return text + quick_note(d) + "\n\n" + md_table(head, body)


def halo_behind(results: dict[str, dict]) -> list[str]:
    rows = halo_rows(results)
    if "cvl" not in rows:
        return []
    peers = {s: r["s"] for s, r in rows.items() if not s.startswith("cvl")}  # cvl out, cvl before: ours
    if not peers:
        return []
    best = min(peers, key=peers.__getitem__)
    r = peers[best] / rows["cvl"]["s"]
    if r >= 1 - LEVEL:
        return []
    return [f"- **halo (gaussian, map_overlap)**: {fmt_ratio(r)}× {HALO_SYSTEMS.get(best, best)}."]


# ------------------------------------------------------------------------------------------
# cluster: read and copy with no cluster, 2 and 4 LocalCluster workers
# ------------------------------------------------------------------------------------------
def cluster_section(results: dict[str, dict]) -> str:
    d = results.get("cluster.json") or {}
    rows = [r for r in d.get("rows") or [] if r.get("mbps")]
    if not rows:
        return not_measured("bench_cluster.py")
    shapes = list(dict.fromkeys(s for r in rows for s in r["mbps"]))
    head = ["volume", "job", *(f"{s} MB/s" for s in shapes)]
    body = [[volume_name(str(r.get("volume", "?"))), str(r.get("job", "?")),
             *(fmt_rate(r["mbps"].get(s)) for s in shapes)] for r in rows]
    text = wrap(
        f"Whole-volume jobs in three cluster shapes ({provenance('cluster.json', d)}; MB/s, "
        f"{medians_of(d)}). read is `vol.to_dask().compute()` on the cluster (no cluster: `vol[...]`), "
        "copy is `copy_volume(src, dst, client=...)` into a fresh local directory. On 2 cores, more "
        "workers than cores show the cost of oversubscription, not a speedup."
    )
    return text + quick_note(d) + "\n\n" + md_table(head, body)


# ------------------------------------------------------------------------------------------
# everything here, for report.py
# ------------------------------------------------------------------------------------------
def sections(results: dict[str, dict]) -> list[tuple[str, str]]:
    """(marker name, body) for the blocks this module fills."""
    return [("floor", floor_section(results)), ("points_scale", points_scale_section(results)),
            ("halo", halo_section(results)), ("cluster", cluster_section(results))]


def behind_items(results: dict[str, dict]) -> list[str]:
    """This module's "Where we are behind" bullets."""
    return floor_behind(results) + points_scale_behind(results) + halo_behind(results)

