"""Creating volumes and adding scales: validated ``info`` records, written once."""

from __future__ import annotations

import json
from typing import Any, Sequence

import numpy as np

from .codecs import get_codec
from .errors import InfoError, RequestError
from .info import DATA_TYPES, Info, Scale, Sharding
from .sharding import propose_sharding
from .stores import Store

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
        return propose_sharding(size, chunk, data_type, num_channels, encoding=encoding).sharding
    if isinstance(value, dict):
        return Sharding.from_json({"@type": "neuroglancer_uint64_sharded_v1", **value}, "sharding argument")
    raise RequestError(f"sharding must be None, True (choose for me), a dict or a cvl.Sharding, got {value!r}")


def build_info(
    *, data_type: str, layer_type: str, size, chunk_size, resolution, voxel_offset=(0, 0, 0),
    num_channels: int = 1, encoding: str = "raw", sharding: Any = None, **encoding_options: Any,
) -> Info:
    """A validated one-scale ``Info``; ``encoding_options`` become scale fields (e.g. jpeg_quality)."""
    unknown = sorted(set(encoding_options) - SCALE_OPTIONS)
    if unknown:
        raise RequestError(
            f"unknown option(s) {', '.join(unknown)}; encoding options are {', '.join(sorted(SCALE_OPTIONS))}"
        )
    data_type = np.dtype(data_type).name
    if data_type not in DATA_TYPES:
        raise RequestError(f"data_type must be one of {', '.join(DATA_TYPES)}, got {data_type}")
    if layer_type not in ("image", "segmentation"):
        raise RequestError(f"layer_type must be 'image' or 'segmentation', got {layer_type!r}")
    encoding = encoding.lower()
    check_encoding(encoding, data_type, int(num_channels))
    scale: dict[str, Any] = {
        "key": scale_key(resolution), "size": list(size), "voxel_offset": list(voxel_offset),
        "resolution": list(resolution), "chunk_sizes": [list(chunk_size)], "encoding": encoding,
    }
    if encoding == "compressed_segmentation":
        scale["compressed_segmentation_block_size"] = list(encoding_options.pop("compressed_segmentation_block_size", (8, 8, 8)))
    sh = _sharding(sharding, size, chunk_size, data_type, int(num_channels), encoding)
    if sh is not None:
        scale["sharding"] = sh.to_json()
    scale.update(encoding_options)
    try:
        return Info.from_json(
            {"@type": "neuroglancer_multiscale_volume", "type": layer_type, "data_type": data_type,
             "num_channels": int(num_channels), "scales": [scale]},
            "Volume.create arguments",
        )
    except InfoError as e:
        raise RequestError(str(e)) from None


def write_info(store: Store, info: Info, overwrite: bool) -> None:
    """Write ``info``, refusing to replace a different existing one unless ``overwrite``."""
    old = store.get("info")
    if old is not None and not overwrite:
        try:
            same = json.loads(old) == info.to_json()
        except ValueError:
            same = False
        if not same:
            raise RequestError(
                f"a different info already exists at {store.url.key_url('info')}; "
                "open it with Volume(url), or pass overwrite=True to replace it"
            )
        return
    store.put("info", info.to_bytes(), content_type="application/json")


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
