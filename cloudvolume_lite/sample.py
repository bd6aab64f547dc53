"""A small synthetic dataset (EM-like image + matching segmentation) for the demo and examples."""

from __future__ import annotations

import numpy as np

from .codecs import ChunkSpec, get_codec
from .info import Info
from .stores import open_store


def sample_arrays(shape=(192, 160, 48), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8, segmentation uint64), both (X, Y, Z, 1): blobby cells with membranes."""
    rng = np.random.default_rng(seed)
    sx, sy, sz = shape
    n = 60
    centers = rng.uniform(0, 1, size=(n, 3)) * shape
    grid = np.stack(np.meshgrid(np.arange(sx), np.arange(sy), np.arange(sz), indexing="ij"), -1).astype(np.float32)
    best = np.full(shape, np.inf, np.float32)
    second = np.full(shape, np.inf, np.float32)
    label = np.zeros(shape, np.uint64)
    for i, c in enumerate(centers):
        d = np.sqrt(((grid - c.astype(np.float32)) ** 2 * (1, 1, 4)).sum(-1))
        closer = d < best
        second = np.where(closer, best, np.minimum(second, d))
        label = np.where(closer, np.uint64(1_000_000_007 + i * 7919), label)
        best = np.where(closer, d, best)
    membrane = np.clip(1.0 - (second - best) / 3.0, 0, 1)
    image = 170 - 120 * membrane + rng.normal(0, 8, shape)
    image = np.clip(image, 0, 255).astype(np.uint8)
    return image[..., None], label[..., None]


def write_sample(url: str, array: np.ndarray, *, layer: str, encoding: str, chunk=(64, 64, 16)) -> None:
    """Write ``array`` as a one-scale Precomputed volume at ``url`` using our own encoders."""
    size = array.shape[:3]
    scale = {
        "key": "8_8_8", "size": list(size), "voxel_offset": [0, 0, 0], "resolution": [8, 8, 8],
        "chunk_sizes": [list(chunk)], "encoding": encoding,
    }
    if encoding == "compressed_segmentation":
        scale["compressed_segmentation_block_size"] = [8, 8, 8]
    info = Info.from_json(
        {"@type": "neuroglancer_multiscale_volume", "type": layer, "data_type": array.dtype.name,
         "num_channels": array.shape[3], "scales": [scale]}
    )
    store = open_store(url)
    store.put("info", info.to_bytes(), content_type="application/json")
    sc = info.scales[0]
    codec = get_codec(encoding)
    chunks = store.child(sc.key)
    for cell in sc.cells(sc.bounds):
        b = sc.chunk_bbox(cell)
        part = array[tuple(slice(lo, hi) for lo, hi in zip(b.minpt, b.maxpt))]
        spec = ChunkSpec(part.shape, array.dtype, sc, sc.chunk_name(cell))
        chunks.put(sc.chunk_name(cell), codec.encode(part, spec))
