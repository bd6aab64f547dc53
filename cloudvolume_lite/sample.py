"""A small synthetic dataset (EM-like image + matching segmentation) for the demo, examples and docs."""

from __future__ import annotations

import numpy as np

from .volume import Volume


def sample_arrays(shape=(192, 160, 48), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8, segmentation uint64), both (X, Y, Z, 1): blobby cells with dark membranes."""
    rng = np.random.default_rng(seed)
    sx, sy, sz = shape
    coarse = (-(-sx // 2), -(-sy // 2), sz)  # cells are computed at half x/y resolution: 4x less work
    centers = rng.uniform(0, 1, size=(60, 3)) * coarse
    gx, gy, gz = (np.arange(n, dtype=np.float32) for n in coarse)
    best = np.full(coarse, np.inf, np.float32)
    second = np.full(coarse, np.inf, np.float32)
    label = np.zeros(coarse, np.uint64)
    for i, (cx, cy, cz) in enumerate(centers.astype(np.float32)):
        d = (gx[:, None, None] - cx) ** 2 + (gy[None, :, None] - cy) ** 2 + 0.25 * (gz[None, None, :] - cz) ** 2
        d = np.sqrt(d)
        closer = d < best
        second = np.where(closer, best, np.minimum(second, d))
        label = np.where(closer, np.uint64(1_000_000_007 + i * 7919), label)
        best = np.where(closer, d, best)
    up = lambda a: a.repeat(2, 0).repeat(2, 1)[:sx, :sy]  # noqa: E731
    membrane = np.clip(1.0 - (up(second) - up(best)) / 1.5, 0, 1)
    image = np.clip(170 - 120 * membrane + rng.normal(0, 8, shape), 0, 255).astype(np.uint8)
    return image[..., None], up(label)[..., None]


def write_sample(root: str, shape=(192, 160, 48), seed: int = 0, sharded_seg: bool = False) -> tuple[str, str]:
    """Write ``<root>/image`` (raw uint8, two mips) and ``<root>/segmentation`` (compressed_segmentation
    uint64, optionally sharded, two mips); return their URLs."""
    image, seg = sample_arrays(shape, seed)
    root = root.rstrip("/")
    if "://" not in root:
        root = "file://" + root
    img_url, seg_url = f"{root}/image", f"{root}/segmentation"
    img = Volume.create(img_url, data_type="uint8", layer_type="image", size=shape, chunk_size=(64, 64, 16),
                        resolution=(8, 8, 8), overwrite=True)
    img[...] = image
    img.add_scale((2, 2, 1), downsample=True)
    lab = Volume.create(seg_url, data_type="uint64", layer_type="segmentation", size=shape,
                        chunk_size=(64, 64, 16), resolution=(8, 8, 8), encoding="compressed_segmentation",
                        sharding=True if sharded_seg else None, overwrite=True)
    lab[...] = seg
    lab.add_scale((2, 2, 1), downsample=True)
    img.close()
    lab.close()
    return img_url, seg_url
