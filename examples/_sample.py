"""Shared by the examples: the URL given on the command line, or a freshly built sample volume."""

from __future__ import annotations

import sys
import tempfile

from cloudvolume_lite.sample import write_sample


def sample_urls(workdir: str | None = None) -> tuple[str, str]:
    """(image URL, segmentation URL) of the sample volume, built under ``workdir`` (or a temp dir)."""
    root = workdir or tempfile.mkdtemp(prefix="cvl-example-")
    return write_sample(root, sharded_seg=True)


def arg(i: int, default: str | None = None) -> str | None:
    return sys.argv[i] if len(sys.argv) > i else default
