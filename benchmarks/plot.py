"""Draw docs/benchmarks.png from the committed JSON in docs/results/ (or ``--results DIR``).

Each row is one benchmark line; bars show each system's speed relative to the fastest system
on that line (1.0 = fastest), so lines of very different sizes share one axis. TensorStore
appears twice, in C order ("ts") and Fortran order ("ts F"), where a result has both. Where a
result measured the floor (bench_floor's cold reads, bench_http), the floor is a bar of its own,
counted like a system: a system can beat it. Pillow only.

    python benchmarks/plot.py [--results benchmarks/results] [--out docs/benchmarks.png]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
COLORS = {"cvl": (31, 119, 180), "cv": (255, 127, 14), "ts F": (44, 160, 44), "ts": (152, 223, 138),
          "floor": (140, 140, 140)}
NAMES = {"cvl": "cloudvolume-lite", "cv": "CloudVolume", "ts F": "TensorStore, F order", "ts": "TensorStore, C order",
         "floor": "floor (bare read + decode)"}
SYSTEMS = tuple(COLORS)  # drawn in this order; others (cvl p32, ...) are left out


def _load(results: Path, name: str) -> dict | None:
    p = results / name
    return json.loads(p.read_text()) if p.exists() else None


def rows(results: Path = ROOT / "docs" / "results") -> list[tuple[str, dict[str, float]]]:
    """(label, {system: speed}) with higher = faster, from every result file present in ``results``."""
    out: list[tuple[str, dict[str, float]]] = []
    for fname, tag in (("read.json", "read"), ("read_sharded.json", "read, sharded")):
        d = _load(results, fname)
        for line in (d or {}).get("lines", []):
            speeds = {s: v["mb_per_s"] for s, v in line["systems"].items() if v.get("mb_per_s") and s in SYSTEMS}
            out.append((f"{tag}: {line['name']}", speeds))
    d = _load(results, "points.json")
    for name, ms in (d or {}).get("cold_ms", {}).items():
        out.append((f"10k points: {name}", {s: 1000.0 / v for s, v in ms.items() if v and s in SYSTEMS}))
    out += floor_rows(_load(results, "floor.json"))
    d = _load(results, "http.json")
    for name, rate in (d or {}).get("mb_per_s", {}).items():
        speeds = {s: rate[s] for s in SYSTEMS if rate.get(s)}
        floor = ((d or {}).get("floor") or {}).get(name, {}).get("mb_per_s")
        out.append((f"HTTP 20 ms: {name}", {**speeds, **({"floor": floor} if floor else {})}))
    d = _load(results, "write.json")
    for name, line in (d or {}).get("lines", {}).items():
        if "gzip" not in name:  # TensorStore cannot gzip unsharded chunks: only like-for-like lines
            out.append((f"write: {name}", {s: v for s, v in line["mb_per_s"].items() if v and s in SYSTEMS}))
    return out


def floor_rows(d: dict | None) -> list[tuple[str, dict[str, float]]]:
    """Cold one-shot reads from floor.json: the systems and, as "floor", the volume's fastest floor."""
    out = []
    for v in (d or {}).get("volumes", []):
        sysd = v.get("systems", {})
        speeds = {s: r["mb_per_s"] for s, r in sysd.items() if s in SYSTEMS and r.get("mb_per_s")}
        ref = (sysd.get(v.get("floor") or "") or {}).get("mb_per_s")
        if ref:
            speeds["floor"] = ref  # the reference floor replaces the variant named "floor"
        size = v.get("out_bytes", 0)
        shown = f"{size / 2**30:g} GiB" if size >= 2**30 else f"{size / 1e6:.0f} MB"
        out.append((f"cold read, fresh process: {v.get('label')} ({shown})", speeds))
    return out


def draw(data: list[tuple[str, dict[str, float]]], out: Path) -> None:
    bar_h = 12
    label_w, bar_w, row_h, top = 430, 420, bar_h * len(SYSTEMS) + 8, 50
    img = Image.new("RGB", (max(label_w + bar_w + 60, 10 + 200 * len(SYSTEMS)), top + row_h * len(data) + 20), "white")
    g = ImageDraw.Draw(img)
    g.text((10, 10), "Speed relative to the fastest bar on each line (1.0 = fastest; the floor counts as a bar); "
           "2-core VM", fill="black")
    x = 10
    for s in SYSTEMS:
        g.rectangle([x, 28, x + 12, 38], fill=COLORS[s])
        g.text((x + 16, 27), NAMES[s], fill="black")
        x += 200
    for i, (label, speeds) in enumerate(data):
        y = top + i * row_h
        g.text((10, y + 14), label[:64], fill="black")
        if not speeds:
            continue  # every system failed on this line: an empty row, not a crash
        best = max(speeds.values())
        for j, s in enumerate(SYSTEMS):
            if s not in speeds:
                continue
            frac = speeds[s] / best
            yy = y + j * bar_h
            g.rectangle([label_w, yy, label_w + int(bar_w * frac), yy + bar_h - 2], fill=COLORS[s])
            g.text((label_w + int(bar_w * frac) + 4, yy), f"{frac:.2f}", fill="black")
        g.line([label_w, y + row_h - 4, label_w + bar_w, y + row_h - 4], fill=(220, 220, 220))
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default=str(ROOT / "docs" / "results"),
                    help="directory of result JSON (default docs/results; benchmarks/results for a fresh run)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.png"))
    args = ap.parse_args()
    data = rows(Path(args.results))
    if not data:
        print("no results yet: run the benchmarks first", file=sys.stderr)
        return 1
    draw(data, Path(args.out))
    print(f"wrote {args.out} ({len(data)} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
