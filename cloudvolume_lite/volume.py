"""The Volume: open a Precomputed volume, then read it by slicing."""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from .bbox import Bbox, Request, normalize_key
from .stores.lru import ChunkLRU, LRUStore
from .stores.recheck import Recheck, RecheckSetting
from .stores.disk_cache import DiskCache, DiskCacheStore, VolumeCache, default_cache_dir
from .errors import InfoError, RequestError, StoreError
from .info import Info, Scale
from .stores.sharded import ShardedStore
from .read import ReadOptions
from .read import read as read_chunks
from .runtime import Runtime
from . import create as _create
from . import writer as _writer
from .writer import DEFAULT_COMPRESSION, WriteOptions, ZeroPolicy
from .options import check_decode_threads, check_parallel, store_options, with_timeout
from .stores import Store, StoreRegistry
from .stores.retry import RetryPolicy

if TYPE_CHECKING:
    from .regions import RegionLoader


class Volume:
    """A Neuroglancer Precomputed volume at ``url``, read as numpy arrays in global voxel coordinates.

    ``vol[x0:x1, y0:y1, z0:z1]`` returns an ``(X, Y, Z, C)`` array. Chunks are fetched and
    decoded concurrently on a thread pool the Volume owns (``parallel`` workers); use the
    Volume as a context manager, or call :meth:`close`, to release it early.
    """

    def __init__(
        self,
        url: str,
        mip: int | Sequence[float] = 0,
        *,
        fill_missing: bool = False,
        bounded: bool = True,
        lru_bytes: int = 0,
        cache: bool | str = False,
        cache_bytes: int | None = None,
        parallel: int | None = None,
        progress: bool | None = False,
        secrets: Any = None,
        stores: StoreRegistry | None = None,
        compress: str | None = DEFAULT_COMPRESSION,
        locking: bool = False,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        decode_threads: int | None = None,
        recheck: RecheckSetting = "open",
    ):
        self._args = dict(
            url=url, fill_missing=fill_missing, bounded=bounded, lru_bytes=lru_bytes, cache=cache,
            cache_bytes=cache_bytes, parallel=check_parallel(parallel), progress=progress, secrets=secrets,
            stores=stores, compress=compress, locking=locking, retry=with_timeout(retry, timeout),
            decode_threads=check_decode_threads(decode_threads), recheck=Recheck(recheck).setting,
        )
        self._setup(mip, info=None)

    def _setup(self, mip: int | Sequence[float], info: Info | None) -> None:
        a = self._args
        url, fill_missing, bounded, progress, compress = a["url"], a["fill_missing"], a["bounded"], a["progress"], a["compress"]
        lru_bytes, cache, cache_bytes, parallel, secrets, stores = (
            a["lru_bytes"], a["cache"], a["cache_bytes"], a["parallel"], a["secrets"], a["stores"])
        self.fill_missing = bool(fill_missing)
        self.bounded = bool(bounded)
        self.progress = progress  # True, False, or None (bars on a terminal for long work)
        self.compress = compress  # transport compression for writes (see writer.transport_encoding)
        # writers that may touch the same chunk or shard take a lock around read-modify-write
        self.locking = bool(a.get("locking", False))
        #: how stale cached chunks and shard indices may be (see stores/recheck.py); "open" by default
        self.recheck = Recheck(a.get("recheck", "open"))
        if lru_bytes < 0:
            raise RequestError(f"lru_bytes must be >= 0, got {lru_bytes}")
        self._lru = ChunkLRU(lru_bytes) if lru_bytes else None
        self._disk: DiskCache | None = None
        if cache:
            self._disk = DiskCache(default_cache_dir() if cache is True else os.fspath(cache), cache_bytes)
        self._store: Store = (stores or StoreRegistry()).open(url, **store_options(secrets, parallel, a.get("retry")))
        self.parallel = int(parallel) if parallel else self._store.default_parallel
        if self.parallel < 1:
            raise RequestError(f"parallel must be >= 1, got {parallel}")
        #: the threads and limits this Volume's reads and writes run under
        self.runtime = Runtime(self.parallel, a.get("decode_threads"), progress)
        self._scale_stores: dict[int, Store] = {}
        self._info = info if info is not None else self._read_info()
        self._mip = self._info.scale_index(mip)

    def __getstate__(self) -> dict:
        """Pickles small (for Dask tasks): the arguments and the parsed info, no threads or caches."""
        return {"args": self._args, "mip": self._mip, "info": self._info.to_json()}

    def __setstate__(self, state: dict) -> None:
        self._args = state["args"]
        self._setup(state["mip"], Info.from_json(state["info"], state["args"]["url"]))

    # -- opening -------------------------------------------------------------------------------
    def _read_info(self) -> Info:
        where = self._store.url.key_url("info")
        cached = None if self._disk is None else os.path.join(self._disk.dir_for(self._store.url), "info")
        try:
            data = self._store.get("info")
        except StoreError:
            if cached is None or not os.path.isfile(cached):
                raise
            with open(cached, "rb") as f:  # offline: the disk cache kept a copy
                data = f.read()
        if data is not None and cached is not None:
            self._disk.store(cached, data)  # type: ignore[union-attr]
        if data is None:
            raise InfoError(
                f"no info file at {where}: this URL is not a Precomputed volume (or the path is wrong); "
                "check the URL, or create the volume with Volume.create"
            )
        return Info.from_bytes(data, where)

    @property
    def url(self) -> str:
        """The volume's URL as it may be shown: a password in it reads ``user:***@host``
        (requests still use it; reopen with the URL you passed, not with this)."""
        return self._store.url.redacted

    @property
    def store(self) -> Store:
        """The store holding ``info`` (the volume's root)."""
        return self._store

    def close(self) -> None:
        """Stop the worker threads and release connections; the Volume can still be reopened."""
        self.runtime.close()
        self._store.close()

    def __enter__(self) -> "Volume":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Volume({self.url!r}, mip={self._mip}, shape={self.shape}, dtype={self.dtype}, "
            f"encoding={self.encoding!r})"
        )

    # -- metadata --------------------------------------------------------------------------------
    @property
    def info(self) -> Info:
        return self._info

    @property
    def mip(self) -> int:
        return self._mip

    @mip.setter
    def mip(self, value: int | Sequence[float]) -> None:
        self._mip = self._info.scale_index(value)

    @property
    def scales(self) -> tuple[Scale, ...]:
        return self._info.scales

    @property
    def num_mips(self) -> int:
        return len(self._info.scales)

    @property
    def scale(self) -> Scale:
        """The current mip's scale record."""
        return self._info.scales[self._mip]

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (*self.scale.size, self._info.num_channels)  # type: ignore[return-value]

    @property
    def bounds(self) -> Bbox:
        return self.scale.bounds

    @property
    def dtype(self) -> np.dtype:
        return self._info.dtype

    @property
    def voxel_offset(self) -> tuple[int, int, int]:
        return self.scale.voxel_offset

    @property
    def resolution(self) -> tuple[float, float, float]:
        return self.scale.resolution

    @property
    def chunk_size(self) -> tuple[int, int, int]:
        return self.scale.chunk_size

    @property
    def encoding(self) -> str:
        return self.scale.encoding

    @property
    def layer_type(self) -> str:
        return self._info.type

    @property
    def num_channels(self) -> int:
        return self._info.num_channels

    def _mip_index(self, mip: int | Sequence[float] | None) -> int:
        return self._mip if mip is None else self._info.scale_index(mip)

    def chunk_store(self, mip: int | None = None) -> Store:
        """The store that holds one scale's chunks, keyed by chunk name."""
        m = self._mip_index(mip)
        if m not in self._scale_stores:
            store = self.uncached_store(m)
            if self._disk is not None:
                store = DiskCacheStore(store, self._disk, recheck=self.recheck)
            if self._lru is not None:
                store = LRUStore(store, self._lru, recheck=self.recheck)
            self._scale_stores[m] = store
        return self._scale_stores[m]

    def uncached_store(self, mip: int | None = None) -> Store:
        """A scale's chunks without the LRU or disk cache.

        Its ``decoded_limit`` bounds what one chunk may inflate to when its transport
        compression is undone (:func:`~cloudvolume_lite.compression.decoded_bound` of a chunk's
        bytes in memory, or of the most a compressed_segmentation chunk's padded blocks can
        take): a damaged or hostile chunk costs a few MiB before its DecodeError, never what it
        claims. On a sharded scale the limit is the ShardedStore's, for its own decompression.
        """
        from . import compression

        mip = self._mip_index(mip)
        scale = self._info.scales[mip]
        store = self._store.child(scale.key)
        if scale.sharding is not None:
            store = ShardedStore(store, scale, recheck=self.recheck)
        itemsize, nc = self.dtype.itemsize, self.num_channels
        expected = math.prod(scale.chunk_size) * itemsize * nc  # math.prod: np.prod costs ~8 us a call here
        block = scale.compressed_segmentation_block_size
        if scale.encoding == "compressed_segmentation" and block is not None:
            # per channel: its offset, 8-byte block headers, indices of up to 32 bits and a
            # table entry per voxel of the padded blocks
            grid = [-(-c // b) for c, b in zip(scale.chunk_size, block)]
            padded = math.prod(grid) * math.prod(block)
            expected = max(expected, nc * (4 + 8 * math.prod(grid) + padded * (4 + itemsize)))
        store.decoded_limit = compression.decoded_bound(expected)
        return store

    @property
    def lru(self) -> ChunkLRU | None:
        """The in-memory chunk cache (``None`` unless ``lru_bytes`` > 0)."""
        return self._lru

    @property
    def cache(self) -> VolumeCache | None:
        """The on-disk cache of this volume (``None`` unless opened with ``cache=``)."""
        return None if self._disk is None else VolumeCache(self._disk, self._store.url, self)

    # -- reading ---------------------------------------------------------------------------------
    def __getitem__(self, key: Any) -> np.ndarray:
        return self._read(normalize_key(key, self.bounds, self.num_channels), self._mip)

    def download(self, bbox: Bbox | Sequence[slice], mip: int | Sequence[float] | None = None) -> np.ndarray:
        """Read ``bbox`` (a Bbox, or a tuple of slices) at ``mip`` (default: the current one)."""
        m = self._mip_index(mip)
        return self._read(normalize_key(bbox, self._info.scales[m].bounds, self.num_channels), m)

    @property
    def read_options(self) -> ReadOptions:
        """What a read of this Volume needs besides the chunks (see :mod:`cloudvolume_lite.read`)."""
        return ReadOptions(self.dtype, self.num_channels, self.fill_missing, self.bounded)

    def _read(self, req: Request, mip: int, store: Store | None = None) -> np.ndarray:
        return read_chunks(self.runtime, self._info.scales[mip], store or self.chunk_store(mip), req,
                           self.read_options, mip)

    # -- writing ---------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        url: str,
        *,
        data_type: str,
        layer_type: str,
        size: Sequence[int],
        chunk_size: Sequence[int],
        resolution: Sequence[float],
        voxel_offset: Sequence[int] = (0, 0, 0),
        num_channels: int = 1,
        encoding: str = "raw",
        compression: str | None = DEFAULT_COMPRESSION,
        sharding: Any = None,
        overwrite: bool = False,
        secrets: Any = None,
        parallel: int | None = None,
        stores: StoreRegistry | None = None,
        retry: RetryPolicy | None = None,
        **encoding_options: Any,
    ) -> "Volume":
        """Write a new volume's ``info`` and open it.

        ``compression`` is the transport compression of chunks: gzip (default) on object
        stores; on local disk, plain files unless ``compression`` is given explicitly (then
        ``NAME.gz`` files, as CloudVolume writes them). ``sharding``: None, True (choose a spec
        for ~1 GiB shards), a dict of the spec's fields, or a :class:`Sharding`.
        ``encoding_options`` become scale fields (``jpeg_quality=90``,
        ``compressed_segmentation_block_size=(8, 8, 8)``, ...). An existing, different ``info``
        is an error unless ``overwrite=True``. ``secrets``, ``parallel``, ``stores`` and ``retry``
        are passed to the store and the returned Volume, never into ``info``.
        """
        info = _create.build_info(
            data_type=data_type, layer_type=layer_type, size=size, chunk_size=chunk_size,
            resolution=resolution, voxel_offset=voxel_offset, num_channels=num_channels,
            encoding=encoding, sharding=sharding, **encoding_options,
        )
        parallel = check_parallel(parallel)
        store = (stores or StoreRegistry()).open(url, **store_options(secrets, parallel, retry))
        _create.write_info(store, info, overwrite)
        store.close()
        return cls(url, compress=compression, secrets=secrets, parallel=parallel, stores=stores, retry=retry)

    @classmethod
    def from_numpy(cls, array: Any, url: str, **create_options: Any) -> "Volume":
        """Create a volume at ``url`` holding ``array`` (X, Y, Z) or (X, Y, Z, C), write it, open it.

        Defaults: ``resolution=(1, 1, 1)``, ``voxel_offset=(0, 0, 0)``, ``chunk_size`` 64³ clipped
        to the array, ``encoding="raw"``, ``layer_type`` "segmentation" for one channel of
        uint32/uint64 (or a segmentation encoding), else "image". Every other
        :meth:`create` option (``compression``, ``sharding``, ``overwrite``, ...) passes through.
        """
        return _create.from_numpy(cls, array, url, **create_options)

    @property
    def write_options(self) -> WriteOptions:
        """What a write to this Volume needs besides the chunks (see :mod:`cloudvolume_lite.writer`)."""
        return WriteOptions(self.dtype, self.num_channels, self.locking, self.compress)

    def _writable_scale(self, mip: int) -> None:
        """Refuse writes into a scale whose key leaves the volume's directory (``../other``):
        reads follow such keys, as TensorStore does, but a write there changes another
        volume's data."""
        key = self._info.scales[mip].key
        if key.startswith("/") or ".." in key.replace("\\", "/").split("/"):
            raise RequestError(
                f"scale {mip} of {self.url} has key {key!r}, outside the volume's directory; writes there would "
                "change another volume. Write to that volume itself, or give the scale a key inside this one"
            )

    def _write(self, key: Any, array: Any, mip: int, zero_chunks: ZeroPolicy = "write") -> None:
        self._writable_scale(mip)
        store = self.chunk_store(mip)
        # partial chunks are read through the caches to the store itself (see writer.py)
        _writer.write(self.runtime, self._info.scales[mip], store, key, array, self.write_options, mip,
                      zero_chunks)

    def __setitem__(self, key: Any, array: Any) -> None:
        self._write(key, array, self._mip)

    def upload(self, bbox: Any, array: Any, mip: int | Sequence[float] | None = None,
               zero_chunks: ZeroPolicy = "write") -> None:
        """Write ``array`` into ``bbox``; partial chunks are read, merged and rewritten.

        ``zero_chunks``: ``"write"`` every chunk, ``"skip"`` chunks that end up all zero, or
        ``"delete"`` them (a missing chunk reads as zeros with ``fill_missing=True``).
        """
        self._write(bbox, array, self._mip_index(mip), zero_chunks)

    def delete(self, bbox: Any, mip: int | Sequence[float] | None = None) -> None:
        """Remove the chunks of a chunk-aligned ``bbox``."""
        m = self._mip_index(mip)
        self._writable_scale(m)
        _writer.delete(self.runtime, self._info.scales[m], self.chunk_store(m), bbox, self.num_channels)

    def exists(self, bbox: Any, mip: int | Sequence[float] | None = None) -> float:
        """Fraction (0..1) of the chunks ``bbox`` touches that are present."""
        m = self._mip_index(mip)
        return _writer.exists(self.runtime, self._info.scales[m], self.chunk_store(m), bbox, self.num_channels)

    def add_scale(self, factor: Sequence[int], chunk_size: Sequence[int] | None = None,
                  encoding: str | None = None, *, from_mip: int | None = None,
                  downsample: bool = False, sharding: Any = None, client: Any = None, resume: bool = False) -> int:
        """Add a scale ``factor`` times coarser than ``from_mip`` (default: the finest) to ``info``.

        Scales stay sorted by resolution, so the new index is returned (and existing coarser
        mips may move up by one); a scale already there with the same geometry is reused. With
        ``downsample=True`` the new scale is filled at once (from ``from_mip``; on ``client``'s
        workers when a dask.distributed Client is given); ``resume=True`` skips the chunks or
        shards already written, as after a run that was killed.
        """
        base = self._info.scales[0 if from_mip is None else self._mip_index(from_mip)]
        # info is changed by compare-and-swap (or under the store's lock where it has no
        # conditional writes), so writers adding scales at the same time keep each other's
        added: list[tuple[Info, int]] = []

        def change(fresh: Info | None, raw: bytes | None) -> Info | None:
            info, index = _create.with_scale(fresh or self._info, base, factor, chunk_size, encoding, sharding)
            added[:] = [(info, index)]
            return None if info is fresh else info

        _create.update_info(self._store, change)
        info, index = added[0]
        current = self.scale
        self._info = info
        self._scale_stores.clear()
        self._mip = next(i for i, s in enumerate(info.scales) if s.key == current.key)
        if downsample:
            src = next(i for i, s in enumerate(info.scales) if s.key == base.key)
            self.downsample(index, src, client=client, resume=resume)
        return index

    def downsample(self, mip: int, source_mip: int | None = None, method: str | None = None, *,
                   client: Any = None, resume: bool = False, progress: Callable[[int, int], None] | None = None) -> None:
        """Fill scale ``mip`` from ``source_mip`` (default ``mip - 1``): averages for images,
        the most frequent label for segmentation (``method="average"|"mode"`` overrides). On
        ``client``'s workers when a dask.distributed Client is given; ``resume`` skips chunks
        already there; ``progress(done, total)`` counts chunk groups."""
        from .downsample import downsample

        downsample(self, mip, source_mip, method, client=client, resume=resume, progress=progress)

    # -- looking at it ---------------------------------------------------------------------------
    def viewer(self, *, port: int = 0, host: str = "127.0.0.1", open_browser: bool = True,
               layout: str = "4panel") -> Any:
        """This volume in Neuroglancer: a started :class:`~cloudvolume_lite.viewer.Viewer`
        serving it (through this Volume's caches) and the client on ``host:port``; its ``url``
        opens the view, ``stop()`` ends it. Needs ``pip install "cloudvolume-lite[viewer]"``."""
        from .viewer import Viewer

        return Viewer([self], host=host, port=port, layout=layout).start(open_browser)

    # -- beyond one machine --------------------------------------------------------------------
    def to_dask(self, chunks: Sequence[int] | None = None, mip: int | None = None) -> Any:
        """A lazy ``dask.array`` (X, Y, Z, C) of the whole scale, one task per storage chunk (or
        per shard when shards are boxes), or blocks of exactly ``chunks=`` voxels: blocks smaller
        than a chunk (planes) are cut from one read of the chunks around them."""
        from .dask import to_dask

        return to_dask(self, chunks, None if mip is None else self._mip_index(mip))

    def map_overlap(self, fn: Callable[[np.ndarray], Any], depth: int | Sequence[int], *, out: "Volume | None" = None,
                    chunks: Sequence[int] | None = None, boundary: Any = "none", dtype: Any = None,
                    client: Any = None, mip: int | None = None, resume: bool = False,
                    progress: Callable[[int, int], None] | None = None) -> Any:
        """``fn`` over every block of the scale with ``depth`` voxels of halo (an int, or x, y, z),
        each block reading block plus halo straight from storage: one task per block, no
        neighbour exchange. ``fn`` takes and returns an (X, Y, Z, C) array of one shape (or
        (X, Y, Z)); with ``depth`` at least its reach the result equals ``fn`` on the whole
        array. ``boundary``: ``"none"`` (blocks at the edges are read clipped), ``"reflect"``,
        ``"mirror"``, ``"nearest"``, ``"constant"`` or a number (padding past the edges, as in
        scipy.ndimage). Blocks are ``chunks`` voxels (default: whole chunks or shards of about
        32 MiB). Without ``out``: a lazy dask array (channels as this volume's, ``dtype`` or
        this volume's). With ``out`` (a Volume of the same bounds): each block is written
        there, on ``client``'s workers (a dask.distributed Client) or on this Volume's threads;
        ``resume=True`` skips blocks already written; returns the number of blocks run.
        See ``halo.py``."""
        from .halo import map_overlap

        return map_overlap(self, fn, depth, out=out, chunks=chunks, boundary=boundary, dtype=dtype, client=client,
                           mip=None if mip is None else self._mip_index(mip), resume=resume, progress=progress)

    def read_regions(self, locations: Any, size: Sequence[int], batch_size: int = 1,
                     num_workers: int | None = None, shuffle: bool = False, seed: int = 0,
                     drop_last: bool = False, prefetch_factor: int = 2, mip: int | None = None) -> "RegionLoader":
        """Batches ``(B, sx, sy, sz, C)`` of the regions whose lower corners are ``locations``,
        fetched ahead by ``num_workers`` threads (see :class:`~cloudvolume_lite.regions.RegionLoader`)."""
        from .regions import RegionLoader

        return RegionLoader(self, locations, size, batch_size=batch_size, num_workers=num_workers,
                            shuffle=shuffle, seed=seed, drop_last=drop_last, prefetch_factor=prefetch_factor,
                            mip=None if mip is None else self._mip_index(mip))

    # -- points ------------------------------------------------------------------------------------
    def scattered_points(self, points: Any, mip: int | Sequence[float] | None = None) -> np.ndarray:
        """Values at integer voxel coordinates ``points`` (N, 3): shape (N,), or (N, C) with channels.

        Points are grouped by chunk; each chunk is fetched once, concurrently, and read with the
        codec's partial decoder where it has one (raw: by offset; compressed_segmentation:
        one block header and one table entry per point), so no chunk is decoded in full.
        """
        from .points import read_points

        m = self._mip_index(mip)
        return read_points(self.runtime, self._info.scales[m], self.chunk_store(m), points, self.read_options, m)

    # -- analysis ----------------------------------------------------------------------------------
    def download_point(self, pt: Sequence[float], size: int | Sequence[int] = 256,
                       mip: int | Sequence[float] | None = None) -> np.ndarray:
        """The ``(sx, sy, sz, C)`` box around ``pt`` (global voxel coordinates *at* ``mip``).

        Per axis the box is ``[pt - size // 2, pt - size // 2 + size)``: for even sizes exactly
        CloudVolume's ``[pt - size/2, pt + size/2)``; odd sizes are centred on ``pt`` (CloudVolume
        gives ``size - 1`` voxels then). Float coordinates are floored. Unlike CloudVolume, whose
        ``pt`` is in mip-0 coordinates, ``pt`` is in the coordinates of ``mip``, as for
        :meth:`download`. Outside the bounds: ``OutOfBoundsError``, or zeros with ``bounded=False``.
        """
        from .analysis import download_point

        return download_point(self, pt, size, self._mip_index(mip))

    def unique(self, bbox: Bbox | Sequence[slice] | None = None,
               mip: int | Sequence[float] | None = None) -> np.ndarray:
        """The sorted distinct values in ``bbox`` (default: the whole scale), read block by block
        (16 MiB or ``parallel`` chunks at a time) so memory stays bounded. Missing chunks count as 0 with
        ``fill_missing=True``; so does the outside of the bounds with ``bounded=False``."""
        from .analysis import unique

        return unique(self, bbox, self._mip_index(mip))
