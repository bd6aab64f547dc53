"""cloudvolume-lite: fast, safe numpy access to Neuroglancer Precomputed volumes.

    import cloudvolume_lite as cvl
    vol = cvl.Volume("gs://bucket/dataset/image")
    cutout = vol[0:512, 0:512, 100:164]      # (X, Y, Z, C) numpy array
"""

from .bbox import Bbox
from .errors import (
    ChunkNotFoundError,
    ConflictError,
    DecodeError,
    InfoError,
    OutOfBoundsError,
    RequestError,
    StoreError,
    UnsupportedEncodingError,
    VolumeError,
)
from .info import Info, Scale, Sharding
from .stores import Store, StoreRegistry
from .stores.retry import RetryPolicy
from .volume import Volume


def store_dask(darray, vol, mip=None, *, rechunk=False, compute=True):  # noqa: ANN001
    """Write a dask array into ``vol`` with chunk- (or shard-) aligned tasks; see :mod:`cloudvolume_lite.dask`."""
    from .dask import store_dask as _store_dask

    return _store_dask(darray, vol, mip, rechunk=rechunk, compute=compute)

__version__ = "0.1.0"

__all__ = [
    "Bbox",
    "ChunkNotFoundError",
    "ConflictError",
    "DecodeError",
    "Info",
    "InfoError",
    "OutOfBoundsError",
    "RequestError",
    "RetryPolicy",
    "Scale",
    "Sharding",
    "Store",
    "StoreError",
    "StoreRegistry",
    "UnsupportedEncodingError",
    "Volume",
    "VolumeError",
    "store_dask",
]
