"""Look up the segment id under many points at once.

    python examples/scattered_points.py [SEGMENTATION_URL]
"""

from __future__ import annotations

import time

import numpy as np
from _sample import arg, sample_urls

import cloudvolume_lite as cvl

url = arg(1) or sample_urls()[1]
vol = cvl.Volume(url, lru_bytes=256 << 20)  # keep compressed chunks in memory for repeated lookups
rng = np.random.default_rng(0)
points = np.stack([rng.integers(lo, hi, 10_000) for lo, hi in zip(vol.bounds.minpt, vol.bounds.maxpt)], axis=1)

t = time.perf_counter()
ids = vol.scattered_points(points)  # one fetch per chunk; each voxel read without decoding its chunk
dt = time.perf_counter() - t
labels, counts = np.unique(ids, return_counts=True)
print(f"{len(points)} points in {dt * 1e3:.1f} ms; {len(labels)} distinct ids; most common {labels[counts.argmax()]}")
