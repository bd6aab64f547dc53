"""Feed random 64^3 regions to a training loop in batches, fetched ahead by worker threads.

    python examples/train_regions.py [IMAGE_URL]
"""

from __future__ import annotations

import numpy as np
from _sample import arg, sample_urls

import cloudvolume_lite as cvl

url = arg(1) or sample_urls()[0]
vol = cvl.Volume(url, lru_bytes=512 << 20)  # neighbouring regions share chunks: fetch each once
size = np.array([64, 64, 16])
rng = np.random.default_rng(0)
lo, hi = np.array(vol.bounds.minpt), np.array(vol.bounds.maxpt) - size
corners = np.stack([rng.integers(a, b + 1, 64) for a, b in zip(lo, hi)], axis=1)

loader = vol.read_regions(corners, size, batch_size=8, shuffle=True, seed=0, num_workers=2)
for epoch in range(2):
    total = 0.0
    for batch in loader:  # (8, 64, 64, 16, 1) uint8
        total += float(batch.mean())  # a stand-in for a training step
    print(f"epoch {epoch}: {len(loader)} batches, mean intensity {total / len(loader):.2f}")
