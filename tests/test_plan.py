"""The read planner against a brute-force oracle: for random (strided, edge-clipped, partly
outside) requests, every sampled voxel of the volume is covered by exactly one paste, at the
right place in the output, under the chunk's own name."""

from __future__ import annotations

import numpy as np
import pytest

from cloudvolume_lite.bbox import Bbox, Request
from cloudvolume_lite.info import Scale
from cloudvolume_lite.plan import plan_pastes


def _scale(offset, size, chunk) -> Scale:
    return Scale.from_json({"key": "s0", "size": list(size), "voxel_offset": list(offset),
                            "chunk_sizes": [list(chunk)], "resolution": [1, 1, 1], "encoding": "raw"})


@pytest.mark.parametrize("seed", range(40))
def test_pastes_cover_every_sampled_voxel_once(seed: int) -> None:
    rng = np.random.default_rng(seed)
    offset = rng.integers(-20, 20, 3)
    size = rng.integers(5, 40, 3)
    chunk = rng.integers(2, 12, 3)
    scale = _scale(offset, size, chunk)
    lo = offset + rng.integers(-6, size)
    hi = lo + rng.integers(1, 30, 3)
    steps = tuple(int(s) for s in rng.integers(1, 4, 3))
    req = Request(Bbox(lo, hi), steps, slice(0, 1, 1))
    # global coordinates -> value, so a paste's source tells which voxel it moved
    vol = np.arange(int(np.prod(size))).reshape(tuple(size), order="F") + 1
    out = np.zeros(req.out_shape[:3], dtype=np.int64)
    hits = np.zeros(req.out_shape[:3], dtype=np.int64)
    for p in plan_pastes(scale, req):
        assert p.name == scale.chunk_name(p.cell)
        assert p.chunk_bbox == scale.chunk_bbox(p.cell)
        chunk_vals = vol[tuple(slice(l - o, h - o) for l, h, o in zip(p.lo, p.hi, offset))]
        assert chunk_vals.shape == p.shape
        out[p.dst] = chunk_vals[p.src]
        hits[p.dst] += 1
    want = np.zeros_like(out)
    for i, x in enumerate(range(lo[0], hi[0], steps[0])):
        for j, y in enumerate(range(lo[1], hi[1], steps[1])):
            for k, z in enumerate(range(lo[2], hi[2], steps[2])):
                g = np.array([x, y, z]) - offset
                if np.all(g >= 0) and np.all(g < size):
                    want[i, j, k] = vol[tuple(g)]
    np.testing.assert_array_equal(out, want)
    assert hits.max() <= 1  # no voxel written twice
    assert np.array_equal(hits > 0, want > 0)  # inside voxels covered, outside untouched
