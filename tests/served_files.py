"""Test helpers shared by the HTTP and sharding tests: random files for a server to serve, and
a raw uint8 sharded Scale built from its fields."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from cloudvolume_lite.info import Info, Scale


def random_files(root: Path, names: Sequence[str], size: int, seed: int) -> dict[str, bytes]:
    """``size`` random bytes written to ``root/name`` for each of ``names``; {name: bytes}."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in names:
        data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        (root / name).write_bytes(data)
        out[name] = data
    return out


def sharded_scale(sharding: dict, size: Sequence[int], offset: Sequence[int], chunk: Sequence[int]) -> Scale:
    """A raw uint8 scale of ``size`` at ``offset`` in ``chunk`` chunks, sharded by ``sharding``'s fields."""
    return Info.from_json({
        "type": "image", "data_type": "uint8", "num_channels": 1,
        "scales": [{"key": "s", "size": list(size), "voxel_offset": list(offset), "resolution": [1, 1, 1],
                    "chunk_sizes": [list(chunk)], "encoding": "raw",
                    "sharding": {"@type": "neuroglancer_uint64_sharded_v1", **sharding}}],
    }).scales[0]
