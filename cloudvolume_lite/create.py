"""Creating volumes and adding scales: validated ``info`` records, written once."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from typing import Any, Callable, ContextManager, Sequence

import numpy as np

from .codecs import get_codec
from .errors import ConflictError, InfoError, RequestError, StoreError, UnsupportedEncodingError
from .info import DATA_TYPES, MAX_MINISHARD_BITS, Info, Scale, Sharding
from .sharding import propose_sharding
from .stores import Store
from .stores.base import ABSENT
from .stores.retry import conflict_pause

#: what each encoding can hold: (dtypes or None for any, channel counts or None for any)
_LIMITS: dict[str, tuple[tuple[str, ...] | None, tuple[int, ...] | None]] = {
    "raw": (None, None),
    "compressed_segmentation": (("uint32", "uint64"), None),
    "jpeg": (("uint8",), (1, 3)),
    "png": (("uint8", "uint16"), (1, 2, 3, 4)),
    "compresso": (("uint8", "uint16", "uint32", "uint64"), (1,)),
    "crackle": (("uint8", "uint16", "uint32", "uint64"), (1,)),  # crackle-codec 0.55 refuses signed
    "fpzip": (("float32", "float64"), None),
    "kempressed": (("float32", "float64"), None),
    "zfpc": (("float32", "float64"), None),
    "jxl": (("uint8",), (1, 3)),
}


#: scale fields a caller may set through ``encoding_options`` (writer hints the spec and CloudVolume know)
SCALE_OPTIONS = frozenset({
    "compressed_segmentation_block_size", "jpeg_quality", "png_level", "jxl_quality", "jxl_effort",
    "jxl_decodingspeed", "fpzip_precision", "zfpc_rate", "zfpc_precision", "zfpc_tolerance",
    "zfpc_correlated_dims", "hidden",
})


def scale_key(resolution: Sequence[float]) -> str:
    """``"4_4_40"`` for [4, 4, 40]: TensorStore's naming (no trailing ``.0``)."""
    return "_".join(f"{r:g}" for r in resolution)


def check_encoding(encoding: str, data_type: str, num_channels: int) -> None:
    """Refuse an encoding that cannot hold this data type or channel count."""
    get_codec(encoding)  # unknown or not installed -> UnsupportedEncodingError with the extra
    dtypes, channels = _LIMITS.get(encoding, (None, None))
    if dtypes is not None and data_type not in dtypes:
        raise RequestError(f"encoding {encoding!r} holds {', '.join(dtypes)}, not {data_type}")
    if channels is not None and num_channels not in channels:
        raise RequestError(f"encoding {encoding!r} holds {channels} channel(s), not {num_channels}")


def _sharding(value: Any, size, chunk, data_type: str, num_channels: int, encoding: str) -> Sharding | None:
    if value is None or value is False:
        return None
    if isinstance(value, Sharding):
        return value
    if value is True:
        sh = propose_sharding(size, chunk, data_type, num_channels, encoding=encoding).sharding
        extra = sh.minishard_bits - MAX_MINISHARD_BITS
        if extra > 0:  # tiny chunks: more chunks per minishard keeps the shard index bounded, same shards
            sh = dataclasses.replace(sh, preshift_bits=sh.preshift_bits + extra, minishard_bits=MAX_MINISHARD_BITS)
        return sh
    if isinstance(value, dict):
        return Sharding.from_json({"@type": "neuroglancer_uint64_sharded_v1", **value}, "sharding argument")
    raise RequestError(f"sharding must be None, True (choose for me), a dict or a cvl.Sharding, got {value!r}")


def _plain(v: Any) -> Any:
    """A numpy scalar as the Python number ``json`` can write; anything else unchanged."""
    return v.item() if isinstance(v, np.generic) else v


def _triple(v: Any, name: str) -> list:
    """``v`` as a list (its entries are validated by ``Info.from_json``)."""
    if isinstance(v, (str, bytes)) or not hasattr(v, "__len__") or not hasattr(v, "__iter__"):
        raise RequestError(f"{name} must be 3 numbers (x, y, z), got {v!r}")
    return [_plain(x) for x in v]


def _parse(obj: dict) -> Info:
    try:
        return Info.from_json(obj, "Volume.create arguments")
    except InfoError as e:
        raise RequestError(str(e)) from None  # the caller's arguments, not a stored info


def build_info(
    *, data_type: str, layer_type: str, size, chunk_size, resolution, voxel_offset=(0, 0, 0),
    num_channels: int = 1, encoding: str = "raw", sharding: Any = None, **encoding_options: Any,
) -> Info:
    """A validated one-scale ``Info``; ``encoding_options`` become scale fields (e.g. jpeg_quality).

    Every bad argument is a :class:`RequestError` naming it; the numbers pass the same limits
    as a stored ``info`` (see :mod:`cloudvolume_lite.info`).
    """
    unknown = sorted(set(encoding_options) - SCALE_OPTIONS)
    if unknown:
        raise RequestError(
            f"unknown option(s) {', '.join(unknown)}; encoding options are {', '.join(sorted(SCALE_OPTIONS))}"
        )
    try:
        data_type = np.dtype(data_type).name
    except TypeError:
        raise RequestError(f"data_type must be one of {', '.join(DATA_TYPES)}, got {data_type!r}") from None
    if data_type not in DATA_TYPES:
        raise RequestError(f"data_type must be one of {', '.join(DATA_TYPES)}, got {data_type}")
    if layer_type not in ("image", "segmentation"):
        raise RequestError(f"layer_type must be 'image' or 'segmentation', got {layer_type!r}")
    if not isinstance(encoding, str):
        raise RequestError(f"encoding must be a string such as 'raw', got {encoding!r}")
    num_channels = _plain(num_channels)
    if isinstance(num_channels, bool) or not isinstance(num_channels, int):
        raise RequestError(f"num_channels must be an integer >= 1, got {num_channels!r}")
    encoding = encoding.lower()
    res = _triple(resolution, "resolution")
    try:
        key = scale_key(res)
    except (TypeError, ValueError):
        key = "invalid"  # the resolution check below names the problem
    scale: dict[str, Any] = {
        "key": key, "size": _triple(size, "size"), "voxel_offset": _triple(voxel_offset, "voxel_offset"),
        "resolution": res, "chunk_sizes": [_triple(chunk_size, "chunk_size")], "encoding": encoding,
    }
    if encoding == "compressed_segmentation":
        scale["compressed_segmentation_block_size"] = _triple(
            encoding_options.pop("compressed_segmentation_block_size", (8, 8, 8)), "compressed_segmentation_block_size")
    scale.update(encoding_options)
    obj = {"@type": "neuroglancer_multiscale_volume", "type": layer_type, "data_type": data_type,
           "num_channels": num_channels, "scales": [scale]}
    info = _parse(obj)  # numbers first: the sharding proposal below needs valid ones
    check_encoding(encoding, data_type, num_channels)
    parsed = info.scales[0]
    try:
        sh = _sharding(sharding, parsed.size, parsed.chunk_size, data_type, num_channels, encoding)
    except InfoError as e:
        raise RequestError(str(e)) from None
    if sh is None:
        return info
    scale["sharding"] = sh.to_json()
    return _parse(obj)


#: dtypes CloudVolume's from_numpy also treats as segmentation labels (it adds bool and uint16;
#: we take the two Neuroglancer's compressed_segmentation holds)
_LABEL_DTYPES = ("uint32", "uint64")
_LABEL_ENCODINGS = ("compressed_segmentation", "compresso", "crackle")


def default_chunk_size(shape: Sequence[int], edge: int = 64) -> tuple[int, int, int]:
    """``edge`` cubed, clipped to the array (and at least 1 on an empty axis)."""
    return tuple(max(1, min(edge, int(s))) for s in shape[:3])  # type: ignore[return-value]


def from_numpy(
    cls: Any, array: Any, url: str, *, resolution: Sequence[float] = (1, 1, 1),
    voxel_offset: Sequence[int] = (0, 0, 0), chunk_size: Sequence[int] | None = None,
    layer_type: str | None = None, encoding: str = "raw", **create_options: Any,
) -> Any:
    """Create a volume at ``url`` holding ``array`` (X, Y, Z) or (X, Y, Z, C) at mip 0; open it.

    ``cls`` is the Volume class; ``create_options`` go to ``cls.create`` unchanged.
    """
    for name, hint in (("compress", "pass compression= (gzip, br, zstd or None), as Volume.create takes it"),
                       ("max_mip", "create the volume, then add scales with vol.add_scale(factor, downsample=True)"),
                       ("data_type", "convert the array first (array.astype(...)); its dtype is the volume's"),
                       ("size", "the array's shape is the volume's size"),
                       ("num_channels", "give a 4-D array (X, Y, Z, C); its last axis is the channels")):
        if name in create_options:
            raise RequestError(f"from_numpy does not take {name}=: {hint}")
    try:
        arr = np.asarray(array)
    except (TypeError, ValueError) as e:
        raise RequestError(f"from_numpy needs an array (X, Y, Z) or (X, Y, Z, C); converting it failed: {e}") from None
    if arr.ndim not in (3, 4):
        raise RequestError(
            f"from_numpy needs a 3-D (X, Y, Z) or 4-D (X, Y, Z, C) array, got {arr.ndim}-D shape {arr.shape}; "
            "add or squeeze axes first (e.g. array[..., np.newaxis] for a 2-D image)"
        )
    if arr.dtype == np.bool_ or arr.dtype.name not in DATA_TYPES:
        raise RequestError(
            f"from_numpy cannot store dtype {arr.dtype}: Precomputed holds {', '.join(DATA_TYPES)}; "
            "convert first (e.g. array.astype(np.uint8) for a mask, np.float32 for float16)"
        )
    if arr.ndim == 3:
        arr = arr[..., np.newaxis]
    nc = arr.shape[3]
    if nc < 1:
        raise RequestError(f"array shape {arr.shape} has no channels; the last axis of a 4-D array is C >= 1")
    if layer_type is None:
        labels = encoding.lower() in _LABEL_ENCODINGS if isinstance(encoding, str) else False
        layer_type = "segmentation" if nc == 1 and (labels or arr.dtype.name in _LABEL_DTYPES) else "image"
    vol = cls.create(
        url, data_type=arr.dtype.name, layer_type=layer_type, size=arr.shape[:3],
        chunk_size=default_chunk_size(arr.shape) if chunk_size is None else chunk_size,
        resolution=resolution, voxel_offset=voxel_offset, num_channels=nc, encoding=encoding, **create_options,
    )
    if arr.size:
        vol.upload(vol.info.scales[0].bounds, arr, mip=0)
    return vol


def write_info(store: Store, info: Info, overwrite: bool) -> None:
    """Write ``info``, refusing to replace a different existing one unless ``overwrite``."""

    def change(old: Info | None, raw: bytes | None) -> Info | None:
        if raw is None or overwrite:
            return info
        try:
            same = json.loads(raw) == info.to_json()
        except ValueError:
            same = False
        if not same:
            raise RequestError(
                f"a different info already exists at {store.url.key_url('info')}; "
                "open it with Volume(url), or pass overwrite=True to replace it"
            )
        return None

    update_info(store, change, parse=False)


def update_info(store: Store, change: Callable[[Info | None, bytes | None], Info | None], parse: bool = True
                ) -> Info | None:
    """Read ``info``, ``change(info, raw bytes)`` it and write the result back (``None``:
    nothing to write); the written info, or None.

    The write is conditional on the generation read (compare-and-swap), and on a conflict
    (another writer changed info meanwhile) it is all done again from a fresh read, so writers
    adding scales at once keep each other's. A store that cannot write conditionally does it
    under its lock instead (flock, a lease), or, if it cannot lock either, unguarded.
    """
    where = store.url.key_url("info")

    def attempt(cond: bool) -> Info | None:
        got = store.read("info")
        raw = None if got is None else got.data
        old = Info.from_bytes(raw, where) if (parse and raw is not None) else None
        new = change(old, raw)
        if new is None:
            return None
        gen = None if not cond else (ABSENT if got is None else got.generation)
        store.put("info", new.to_bytes(), content_type="application/json", if_generation=gen)
        return new

    if store.supports_conditional_writes:
        for n in range(64):
            try:
                return attempt(True)
            except ConflictError:
                conflict_pause(n)
        raise StoreError(f"{where} was changed by other writers on each of 64 tries to update it; try again later")
    try:
        guard: ContextManager[None] = store.lock("info")
    except UnsupportedEncodingError:
        guard = contextlib.nullcontext()
    with guard:
        return attempt(False)


def with_scale(info: Info, base: Scale, factor: Sequence[int], chunk_size=None, encoding=None,
               sharding: Any = None) -> tuple[Info, int]:
    """``info`` plus a scale ``factor`` times coarser than ``base``, in sorted position.

    Bounds become ``[floor(lo / f), ceil(hi / f))``. An existing scale of that resolution is
    reused (its index is returned) rather than duplicated.
    """
    f = tuple(int(v) for v in factor)
    if len(f) != 3 or any(v < 1 for v in f):
        raise RequestError(f"factor must be 3 positive integers, got {factor!r}")
    res = tuple(r * v for r, v in zip(base.resolution, f))
    for i, s in enumerate(info.scales):
        if all(np.isclose(a, b) for a, b in zip(s.resolution, res)):
            return info, i
    lo = [l // v for l, v in zip(base.voxel_offset, f)]
    hi = [-(-(o + s) // v) for o, s, v in zip(base.voxel_offset, base.size, f)]
    enc = (encoding or base.encoding).lower()
    check_encoding(enc, info.data_type, info.num_channels)
    obj = base.to_json()
    obj.pop("sharding", None)  # a sharding spec depends on the grid: choose one per scale
    size = [h - l for l, h in zip(lo, hi)]
    chunk = list(chunk_size or base.chunk_size)
    obj.update(key=scale_key(res), size=size, voxel_offset=lo, resolution=list(res), chunk_sizes=[chunk], encoding=enc)
    sh = _sharding(sharding, size, chunk, info.data_type, info.num_channels, enc)
    if sh is not None:
        obj["sharding"] = sh.to_json()
    if enc == "compressed_segmentation":
        obj.setdefault("compressed_segmentation_block_size", [8, 8, 8])
    new = Scale.from_json(obj, "add_scale")
    scales = sorted([*info.scales, new], key=lambda s: tuple(s.resolution))
    out = Info(info.type, info.data_type, info.num_channels, tuple(scales), info.extra)
    return out, scales.index(new)
