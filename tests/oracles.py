"""Write test volumes with the reference implementations (TensorStore, CloudVolume).

These are the golden fixtures: what they write we must read bit-exactly. Tests that need a
volume only as input, not as a check against a peer, use :func:`fixture_write`: TensorStore
when it is installed, cloudvolume-lite's own writer when not, so that the core suite stands
without the oracles (the interoperability tests skip then, and tests/golden holds committed
peer-written chunks that are always read).
"""

from __future__ import annotations

import numpy as np


def ts_write(
    path: str,
    array: np.ndarray,
    *,
    offset=(0, 0, 0),
    chunk=(64, 64, 64),
    encoding: str = "raw",
    resolution=(4, 4, 40),
    layer: str | None = None,
    block=(8, 8, 8),
    sharding: dict | None = None,
    jpeg_quality: int | None = None,
) -> str:
    """Write ``array`` (X, Y, Z, C) as a Precomputed volume with TensorStore; return its file URL."""
    import tensorstore as ts

    if layer is None:
        layer = "segmentation" if encoding == "compressed_segmentation" else "image"
    scale = {
        "size": list(array.shape[:3]),
        "voxel_offset": list(offset),
        "resolution": list(resolution),
        "chunk_size": list(chunk),
        "encoding": encoding,
    }
    if encoding == "compressed_segmentation":
        scale["compressed_segmentation_block_size"] = list(block)
    if sharding is not None:
        scale["sharding"] = {"@type": "neuroglancer_uint64_sharded_v1", **sharding}
    if jpeg_quality is not None:
        scale["jpeg_quality"] = jpeg_quality
    spec = {
        "driver": "neuroglancer_precomputed",
        "kvstore": {"driver": "file", "path": str(path)},
        "multiscale_metadata": {"type": layer, "data_type": array.dtype.name, "num_channels": array.shape[3]},
        "scale_metadata": scale,
    }
    t = ts.open(spec, create=True, delete_existing=True).result()
    t[...] = array
    return "file://" + str(path)


def fixture_write(path: str, array: np.ndarray, **kw) -> str:
    """Like :func:`ts_write` (same arguments, same volume), by TensorStore if it is installed."""
    try:
        import tensorstore  # noqa: F401
    except ImportError:
        return cvl_write(path, array, **kw)
    return ts_write(path, array, **kw)


def cvl_write(
    path: str,
    array: np.ndarray,
    *,
    offset=(0, 0, 0),
    chunk=(64, 64, 64),
    encoding: str = "raw",
    resolution=(4, 4, 40),
    layer: str | None = None,
    block=(8, 8, 8),
    sharding: dict | None = None,
    jpeg_quality: int | None = None,
) -> str:
    """What :func:`ts_write` writes (plain chunk files, or the given sharding), by cloudvolume-lite."""
    import cloudvolume_lite as cvl

    if layer is None:
        layer = "segmentation" if encoding == "compressed_segmentation" else "image"
    options: dict = {}
    if encoding == "compressed_segmentation":
        options["compressed_segmentation_block_size"] = tuple(block)
    if jpeg_quality is not None:
        options["jpeg_quality"] = jpeg_quality
    url = "file://" + str(path)
    with cvl.Volume.create(url, data_type=array.dtype.name, layer_type=layer, size=array.shape[:3],
                           chunk_size=chunk, resolution=resolution, voxel_offset=offset,
                           num_channels=array.shape[3], encoding=encoding, sharding=sharding,
                           overwrite=True, **options) as vol:
        vol[...] = array
    return url


def cv_write(
    path: str,
    array: np.ndarray,
    *,
    offset=(0, 0, 0),
    chunk=(64, 64, 64),
    encoding: str = "raw",
    resolution=(4, 4, 40),
    layer: str | None = None,
    block=(8, 8, 8),
    compress: str | bool | None = "gzip",
) -> str:
    """Write ``array`` (X, Y, Z, C) with CloudVolume (``.gz`` chunk files by default); return its URL."""
    from cloudvolume import CloudVolume

    if layer is None:
        layer = "segmentation" if encoding in ("compressed_segmentation", "compresso", "crackle") else "image"
    info = CloudVolume.create_new_info(
        num_channels=array.shape[3],
        layer_type=layer,
        data_type=array.dtype.name,
        encoding=encoding,
        resolution=list(resolution),
        voxel_offset=list(offset),
        volume_size=list(array.shape[:3]),
        chunk_size=list(chunk),
        compressed_segmentation_block_size=list(block),
    )
    url = "file://" + str(path)
    vol = CloudVolume(url, info=info, compress=compress, progress=False)
    vol.commit_info()
    vol[:, :, :] = array
    return url


def random_volume(shape, dtype, rng: np.random.Generator, labels: int | None = None) -> np.ndarray:
    """Random data of ``dtype``; with ``labels``, a blocky segmentation-like array of few ids."""
    dtype = np.dtype(dtype)
    if labels is not None:
        coarse = rng.integers(0, labels, size=tuple(-(-s // 4) for s in shape[:3]) + (shape[3],))
        arr = coarse.repeat(4, 0).repeat(4, 1).repeat(4, 2)[: shape[0], : shape[1], : shape[2]]
        big = np.uint64(2**40) if dtype == np.uint64 else 0
        return (arr.astype(dtype) + dtype.type(big)) if big else arr.astype(dtype)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
