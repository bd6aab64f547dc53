"""The ``cvl`` command."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .errors import VolumeError


def _cmd_info(args: argparse.Namespace) -> int:
    from .volume import Volume

    vol = Volume(args.url)
    i = vol.info
    print(f"{vol.url}\n  type {i.type}, {i.data_type}, {i.num_channels} channel(s)")
    print(f"  {'mip':>3} {'key':<16} {'size':<20} {'offset':<18} {'resolution':<18} {'chunk':<14} {'encoding':<24} sharding")
    for m, s in enumerate(i.scales):
        shard = "-" if s.sharding is None else f"{s.sharding.hash} p{s.sharding.preshift_bits} m{s.sharding.minishard_bits} s{s.sharding.shard_bits}"
        fmt = lambda v: "x".join(f"{x:g}" for x in v)  # noqa: E731
        print(f"  {m:>3} {s.key:<16} {fmt(s.size):<20} {fmt(s.voxel_offset):<18} {fmt(s.resolution):<18} "
              f"{fmt(s.chunk_size):<14} {s.encoding:<24} {shard}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args.dir)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cvl", description="Fast numpy access to Neuroglancer Precomputed volumes.")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="build a sample volume, read it back through the whole stack, print what happened",
                       description="Build a small image + segmentation volume, then read it back and report.",
                       epilog="example: cvl demo --dir /tmp/cvl-demo")
    d.add_argument("--dir", default=None, help="where to build the sample (default: a temporary directory)")
    d.set_defaults(func=_cmd_demo)
    i = sub.add_parser("info", help="print a volume's scales", epilog="example: cvl info gs://bucket/dataset/image")
    i.add_argument("url")
    i.set_defaults(func=_cmd_info)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except VolumeError as e:
        print(f"cvl: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
