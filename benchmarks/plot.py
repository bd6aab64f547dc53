"""Draw docs/benchmarks.png from the JSON in benchmarks/results/ (run the benchmarks first).

Each row is one benchmark line; bars show each system's speed relative to the fastest system
on that line (1.0 = fastest), so lines of very different sizes share one axis. Pillow only.

    python benchmarks/plot.py [--out docs/benchmarks.png]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from PIL import Image, ImageDraw

RESULTS = Path(__file__).resolve().parent / "results"
COLORS = {"cvl": (31, 119, 180), "cv": (255, 127, 14), "ts": (44, 160, 44)}
NAMES = {"cvl": "cloudvolume-lite", "cv": "CloudVolume", "ts": "TensorStore"}


def _load(name: str) -> dict | None:
    p = RESULTS / name
    return json.loads(p.read_text()) if p.exists() else None


def rows() -> list[tuple[str, dict[str, float]]]:
    """(label, {system: speed}) with higher = faster, from every result file present."""
    out: list[tuple[str, dict[str, float]]] = []
    for fname, tag in (("read.json", "read"), ("read_sharded.json", "read, sharded")):
        d = _load(fname)
        for line in (d or {}).get("lines", []):
            speeds = {s: v["mb_per_s"] for s, v in line["systems"].items() if v.get("mb_per_s")}
            out.append((f"{tag}: {line['name']}", speeds))
    d = _load("points.json")
    for name, ms in (d or {}).get("cold_ms", {}).items():
        out.append((f"10k points: {name}", {s: 1000.0 / v for s, v in ms.items()}))
    d = _load("http.json")
    for name, rate in (d or {}).get("mb_per_s", {}).items():
        out.append((f"HTTP 20 ms: {name}", {s: rate[s] for s in ("cvl", "cv", "ts") if s in rate}))
    d = _load("write.json")
    for name, line in (d or {}).get("lines", {}).items():
        if "gzip" not in name:  # TensorStore cannot gzip unsharded chunks: only like-for-like lines
            out.append((f"write: {name}", line["mb_per_s"]))
    return out


def draw(data: list[tuple[str, dict[str, float]]], out: Path) -> None:
    label_w, bar_w, row_h, bar_h, top = 430, 420, 44, 12, 50
    img = Image.new("RGB", (label_w + bar_w + 60, top + row_h * len(data) + 20), "white")
    g = ImageDraw.Draw(img)
    g.text((10, 10), "Speed relative to the fastest system on each line (1.0 = fastest); 2-core VM", fill="black")
    x = 10
    for s in ("cvl", "cv", "ts"):
        g.rectangle([x, 28, x + 12, 38], fill=COLORS[s])
        g.text((x + 16, 27), NAMES[s], fill="black")
        x += 150
    for i, (label, speeds) in enumerate(data):
        y = top + i * row_h
        g.text((10, y + 14), label[:64], fill="black")
        best = max(speeds.values())
        for j, s in enumerate(("cvl", "cv", "ts")):
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
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "docs" / "benchmarks.png"))
    args = ap.parse_args()
    data = rows()
    if not data:
        print("no results yet: run the benchmarks first", file=sys.stderr)
        return 1
    draw(data, Path(args.out))
    print(f"wrote {args.out} ({len(data)} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
