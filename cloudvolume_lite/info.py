"""Frozen records parsed from a Precomputed ``info`` file, and the chunk grid they define."""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from .bbox import Bbox, Vec3
from .errors import InfoError

#: data types readers accept: the spec's eight plus the two CloudVolume also writes.
DATA_TYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64", "float32", "float64")
SHARD_HASHES = ("identity", "murmurhash3_x86_128")
SHARD_ENCODINGS = ("raw", "gzip")

# Limits on what an info may ask for. A hostile or broken info must fail as an InfoError when
# it is parsed, not as an overflow, a NaN conversion or an absurd allocation later.
#: |coordinate| bound (voxel_offset, size, offset + size): exact in a float64 (and in JavaScript)
MAX_COORD = 2**53
#: voxels times channels in one scale: numpy indexes with int64
MAX_VOXELS = 2**63 - 1
#: bytes of one decoded chunk (all channels); readers allocate this per chunk in flight
MAX_CHUNK_BYTES = 2**31
#: channels; Neuroglancer shows a handful, embeddings may have hundreds
MAX_CHANNELS = 2**16
#: voxels in one compressed_segmentation block (8x8x8 = 512 is usual)
MAX_CSEG_BLOCK_VOXELS = 2**24
#: a shard's index is 16 * 2**minishard_bits bytes and a write allocates it whole (2**20: 16 MiB)
MAX_MINISHARD_BITS = 20
#: resolution bounds (nm): physical coordinates (voxel * resolution) stay finite and nonzero
RESOLUTION_RANGE = (1e-18, 1e18)
#: nesting depth of values kept in ``extra`` (json.dumps(indent=...) recurses in Python)
MAX_JSON_DEPTH = 64


def _fail(source: str, what: str) -> InfoError:
    return InfoError(f"invalid info at {source}: {what}")


def _short(v: Any, limit: int = 80) -> str:
    """``repr(v)`` cut to ``limit`` characters: hostile values can be huge."""
    try:
        r = repr(v)
    except RecursionError:
        r = f"<deeply nested {type(v).__name__}>"
    return r if len(r) <= limit else r[: limit - 3] + "..."


def _ints(v: Any, n: int, name: str, source: str, minimum: int | None = None,
          maximum: int = MAX_COORD) -> tuple[int, ...]:
    """``n`` integers in ``[minimum, maximum]`` (integral floats such as ``8.0`` are accepted)."""
    if not isinstance(v, (list, tuple)) or len(v) != n:
        raise _fail(source, f"{name} must be a list of {n} integers, got {_short(v)}")
    lo = -maximum if minimum is None else minimum
    out = []
    for x in v:
        if type(x) is int:  # the usual case, without the slower checks below (an ABC isinstance)
            if not lo <= x <= maximum:
                raise _fail(source, f"{name} entries must be in [{lo}, {maximum}], got {_short(v)}")
            out.append(x)
            continue
        # NaN/inf would fail int(); bounds are checked before int() so 1e300 never becomes an int
        if isinstance(x, bool) or not isinstance(x, numbers.Real) or not math.isfinite(x):
            raise _fail(source, f"{name} must be a list of {n} integers, got {_short(v)}")
        if not lo <= x <= maximum:
            raise _fail(source, f"{name} entries must be in [{lo}, {maximum}], got {_short(v)}")
        if x != int(x):
            raise _fail(source, f"{name} must be a list of {n} integers, got {_short(v)}")
        out.append(int(x))
    return tuple(out)


def _too_deep(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when lists/objects nest more than ``limit`` levels (checked without recursion)."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, Mapping):
            children = v.values()
        elif isinstance(v, (list, tuple)):
            children = v
        else:
            continue
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children)
    return False


@dataclass(frozen=True)
class Sharding:
    """A ``neuroglancer_uint64_sharded_v1`` spec."""

    preshift_bits: int
    hash: str
    minishard_bits: int
    shard_bits: int
    minishard_index_encoding: str = "raw"
    data_encoding: str = "raw"

    @classmethod
    def from_json(cls, obj: Any, source: str = "<info>") -> "Sharding":
        if not isinstance(obj, Mapping):
            raise _fail(source, f"sharding must be an object, got {obj!r}")
        if obj.get("@type") != "neuroglancer_uint64_sharded_v1":
            raise _fail(source, f"sharding @type must be 'neuroglancer_uint64_sharded_v1', got {obj.get('@type')!r}")
        bits = {}
        for name in ("preshift_bits", "minishard_bits", "shard_bits"):
            v = obj.get(name)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 64:
                raise _fail(source, f"sharding {name} must be an integer 0..64, got {_short(v)}")
            bits[name] = v
        if bits["minishard_bits"] > MAX_MINISHARD_BITS:
            raise _fail(
                source,
                f"sharding minishard_bits {bits['minishard_bits']} would make every shard index "
                f"16 * 2**{bits['minishard_bits']} bytes; at most {MAX_MINISHARD_BITS} is supported "
                "(real specs use about 0..12)",
            )
        if bits["minishard_bits"] + bits["shard_bits"] > 64:
            raise _fail(source, "sharding minishard_bits + shard_bits must be <= 64")
        h = obj.get("hash")
        if not isinstance(h, str) or h not in SHARD_HASHES:
            raise _fail(source, f"sharding hash must be one of {SHARD_HASHES}, got {_short(h)}")
        enc = {}
        for name in ("minishard_index_encoding", "data_encoding"):
            v = obj.get(name, "raw")
            v = "raw" if v is None else v.lower() if isinstance(v, str) else v
            if not isinstance(v, str) or v not in SHARD_ENCODINGS:
                raise _fail(source, f"sharding {name} must be one of {SHARD_ENCODINGS}, got {_short(v)}")
            enc[name] = v
        return cls(hash=h, **bits, **enc)

    def to_json(self) -> dict:
        return {
            "@type": "neuroglancer_uint64_sharded_v1",
            "data_encoding": self.data_encoding,
            "hash": self.hash,
            "minishard_bits": self.minishard_bits,
            "minishard_index_encoding": self.minishard_index_encoding,
            "preshift_bits": self.preshift_bits,
            "shard_bits": self.shard_bits,
        }


@dataclass(frozen=True)
class Scale:
    """One entry of ``info["scales"]``: a grid of chunks at one resolution."""

    key: str
    size: Vec3
    voxel_offset: Vec3
    resolution: tuple[float, float, float]
    chunk_sizes: tuple[Vec3, ...]
    encoding: str
    compressed_segmentation_block_size: Vec3 | None = None
    sharding: Sharding | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def from_json(cls, obj: Any, source: str = "<info>", index: int = 0) -> "Scale":
        where = f"{source} scales[{index}]"
        if not isinstance(obj, Mapping):
            raise _fail(where, f"a scale must be an object, got {type(obj).__name__}")
        key = obj.get("key")
        if not isinstance(key, str) or not key.strip("/") or any(ord(ch) < 32 for ch in key):
            raise _fail(where, f"key must be a non-empty string without control characters, got {_short(key)}")
        size = _ints(obj.get("size"), 3, "size", where, minimum=0)
        offset = _ints(obj.get("voxel_offset", [0, 0, 0]) or [0, 0, 0], 3, "voxel_offset", where)
        if any(abs(o + n) > MAX_COORD for o, n in zip(offset, size)):
            raise _fail(where, f"voxel_offset + size must stay within +-{MAX_COORD}, got {list(offset)} + {list(size)}")
        if math.prod(size) > MAX_VOXELS:
            raise _fail(where, f"size {list(size)} holds {math.prod(size)} voxels, more than an int64 can count")
        res = obj.get("resolution")
        if (
            not isinstance(res, (list, tuple))
            or len(res) != 3
            or not all(isinstance(r, numbers.Real) and not isinstance(r, bool) and math.isfinite(r)
                       and RESOLUTION_RANGE[0] <= r <= RESOLUTION_RANGE[1] for r in res)
        ):
            raise _fail(where, f"resolution must be 3 positive finite numbers (nm) in "
                               f"[{RESOLUTION_RANGE[0]:g}, {RESOLUTION_RANGE[1]:g}], got {_short(res)}")
        cs = obj.get("chunk_sizes")
        if isinstance(cs, (list, tuple)) and len(cs) == 3 and all(isinstance(c, int) for c in cs):
            cs = [cs]  # tolerate a single flat [cx, cy, cz]
        if not isinstance(cs, (list, tuple)) or not cs:
            raise _fail(where, f"chunk_sizes must be a non-empty list of [cx, cy, cz], got {_short(cs)}")
        chunk_sizes = tuple(_ints(c, 3, "chunk_sizes entry", where, minimum=1) for c in cs)
        for c in chunk_sizes:
            if math.prod(c) > MAX_CHUNK_BYTES:
                raise _fail(where, f"chunk_sizes entry {list(c)} has {math.prod(c)} voxels; at most {MAX_CHUNK_BYTES} are supported")
        enc = obj.get("encoding")
        if not isinstance(enc, str) or not enc:
            raise _fail(where, f"encoding must be a string, got {_short(enc)}")
        block = obj.get("compressed_segmentation_block_size")
        block = None if block is None else _ints(block, 3, "compressed_segmentation_block_size", where, minimum=1)
        if block is not None and math.prod(block) > MAX_CSEG_BLOCK_VOXELS:
            raise _fail(where, f"compressed_segmentation_block_size {list(block)} has more than {MAX_CSEG_BLOCK_VOXELS} voxels "
                               "per block (8x8x8 is usual)")
        sh = obj.get("sharding")
        sharding = None if sh is None else Sharding.from_json(sh, where)
        known = {
            "key", "size", "voxel_offset", "resolution", "chunk_sizes", "encoding",
            "compressed_segmentation_block_size", "sharding",
        }
        extra = MappingProxyType({k: v for k, v in obj.items() if k not in known})
        for k, v in extra.items():
            if _too_deep(v):
                raise _fail(where, f"{k!r} nests more than {MAX_JSON_DEPTH} levels deep")
        return cls(
            key=key, size=size, voxel_offset=offset,  # type: ignore[arg-type]
            resolution=tuple(res), chunk_sizes=chunk_sizes, encoding=enc.lower(),  # type: ignore[arg-type]
            compressed_segmentation_block_size=block, sharding=sharding, extra=extra,  # type: ignore[arg-type]
        )

    def to_json(self) -> dict:
        out: dict[str, Any] = {
            "chunk_sizes": [list(c) for c in self.chunk_sizes],
            "encoding": self.encoding,
            "key": self.key,
            "resolution": list(self.resolution),
            "size": list(self.size),
            "voxel_offset": list(self.voxel_offset),
        }
        if self.compressed_segmentation_block_size is not None:
            out["compressed_segmentation_block_size"] = list(self.compressed_segmentation_block_size)
        if self.sharding is not None:
            out["sharding"] = self.sharding.to_json()
        out.update(self.extra)
        return dict(sorted(out.items()))

    # -- the chunk grid (spec section 3) --------------------------------------------------------
    @property
    def chunk_size(self) -> Vec3:
        """The first (primary) chunk size; extra ``chunk_sizes`` are copies we do not need."""
        return self.chunk_sizes[0]

    @property
    def bounds(self) -> Bbox:
        return Bbox.from_shape(self.voxel_offset, self.size)

    @property
    def grid_size(self) -> Vec3:
        return tuple(-(-s // c) for s, c in zip(self.size, self.chunk_size))  # type: ignore[return-value]

    def chunk_bbox(self, cell: Sequence[int]) -> Bbox:
        """The clipped voxel box of grid cell ``cell``."""
        lo = [o + g * c for o, g, c in zip(self.voxel_offset, cell, self.chunk_size)]
        hi = [o + min((g + 1) * c, s) for o, g, c, s in zip(self.voxel_offset, cell, self.chunk_size, self.size)]
        return Bbox(lo, hi)

    def chunk_name(self, cell: Sequence[int]) -> str:
        """The unsharded chunk file name ``x0-x1_y0-y1_z0-z1``, relative to the scale's key."""
        b = self.chunk_bbox(cell)
        return "_".join(f"{l}-{h}" for l, h in zip(b.minpt, b.maxpt))

    def cells(self, bbox: Bbox) -> Iterator[Vec3]:
        """Grid cells that ``bbox`` touches."""
        return bbox.grid_cells(self.voxel_offset, self.chunk_size, self.grid_size)

    def is_aligned(self, bbox: Bbox) -> bool:
        """True when ``bbox`` starts and ends on chunk boundaries (or the volume's upper edge)."""
        for lo, hi, o, c, s in zip(bbox.minpt, bbox.maxpt, self.voxel_offset, self.chunk_size, self.size):
            if (lo - o) % c:
                return False
            if (hi - o) % c and hi != o + s:
                return False
        return True


#: text nested deeper than this is refused before parsing: far past :data:`MAX_JSON_DEPTH`, and
#: shallow enough for the parser whatever the caller's stack
MAX_PARSE_DEPTH = 600


def _text_too_deep(data: bytes | str) -> bool:
    """Whether JSON text nests brackets deeper than :data:`MAX_PARSE_DEPTH` (brackets inside
    strings do not count). Cheap for real infos: only text with many brackets is scanned."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if raw.count(b"[") + raw.count(b"{") <= MAX_PARSE_DEPTH:
        return False
    depth, in_str, escaped = 0, False, False
    for c in raw:
        if in_str:
            if escaped:
                escaped = False
            elif c == 0x5C:  # backslash
                escaped = True
            elif c == 0x22:
                in_str = False
        elif c == 0x22:
            in_str = True
        elif c in (0x5B, 0x7B):
            depth += 1
            if depth > MAX_PARSE_DEPTH:
                return True
        elif c in (0x5D, 0x7D):
            depth -= 1
    return False


@dataclass(frozen=True)
class Info:
    """The whole ``info`` file. Unknown keys are kept in ``extra`` and written back."""

    type: str
    data_type: str
    num_channels: int
    scales: tuple[Scale, ...]
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.data_type)

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "<info>") -> "Info":
        if _text_too_deep(data):
            # refused before parsing: the parser's RecursionError, deep in a stack, can take a
            # garbage collection's finalizers down with it
            raise InfoError(
                f"info at {source} nests JSON too deeply to parse; a Precomputed info is a few levels deep, "
                "so this file is damaged or not an info"
            )
        try:
            obj = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InfoError(f"info at {source} is not valid JSON ({e}); is this a Precomputed volume?") from None
        except RecursionError:
            raise InfoError(
                f"info at {source} nests JSON too deeply to parse; a Precomputed info is a few levels deep, "
                "so this file is damaged or not an info"
            ) from None
        return cls.from_json(obj, source)

    @classmethod
    def from_json(cls, obj: Any, source: str = "<info>") -> "Info":
        if not isinstance(obj, Mapping):
            raise _fail(source, f"top level must be a JSON object, got {type(obj).__name__}")
        t = obj.get("type")
        if not isinstance(t, str):
            raise _fail(source, f"'type' must be 'image' or 'segmentation', got {t!r}")
        dt = obj.get("data_type")
        if not isinstance(dt, str) or dt.lower() not in DATA_TYPES:
            raise _fail(source, f"data_type must be one of {', '.join(DATA_TYPES)}, got {dt!r}")
        nc = obj.get("num_channels")
        if isinstance(nc, bool) or not isinstance(nc, int) or not 1 <= nc <= MAX_CHANNELS:
            raise _fail(source, f"num_channels must be an integer in [1, {MAX_CHANNELS}], got {_short(nc)}")
        scales = obj.get("scales")
        if not isinstance(scales, list) or not scales:
            raise _fail(source, "scales must be a non-empty list")
        parsed = tuple(Scale.from_json(s, source, i) for i, s in enumerate(scales))
        itemsize = np.dtype(dt.lower()).itemsize
        for i, s in enumerate(parsed):
            if math.prod(s.size) * nc > MAX_VOXELS:
                raise _fail(f"{source} scales[{i}]", f"size {list(s.size)} times num_channels {nc} is more values than an int64 can count")
            for c in s.chunk_sizes:
                if math.prod(c) * nc * itemsize > MAX_CHUNK_BYTES:
                    raise _fail(
                        f"{source} scales[{i}]",
                        f"chunk_sizes entry {list(c)} with num_channels {nc} of {dt.lower()} is "
                        f"{math.prod(c) * nc * itemsize} bytes per chunk; at most {MAX_CHUNK_BYTES} are supported",
                    )
        extra = MappingProxyType({k: v for k, v in obj.items() if k not in ("type", "data_type", "num_channels", "scales")})
        for k, v in extra.items():
            if _too_deep(v):
                raise _fail(source, f"{k!r} nests more than {MAX_JSON_DEPTH} levels deep")
        return cls(type=t.lower(), data_type=dt.lower(), num_channels=nc, scales=parsed, extra=extra)

    def to_json(self) -> dict:
        out: dict[str, Any] = dict(self.extra)
        out.setdefault("@type", "neuroglancer_multiscale_volume")
        out.update(
            {
                "data_type": self.data_type,
                "num_channels": self.num_channels,
                "scales": [s.to_json() for s in self.scales],
                "type": self.type,
            }
        )
        return dict(sorted(out.items()))

    def __getitem__(self, key: str) -> Any:
        """Dict-style access to the JSON form (``vol.info["scales"]``), as CloudVolume users expect."""
        return self.to_json()[key]

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_json(), indent=2).encode()

    def scale_index(self, mip: int | Sequence[float]) -> int:
        """Resolve a mip given as an index or as a resolution triple."""
        if isinstance(mip, numbers.Integral) and not isinstance(mip, bool):
            i = int(mip)
            if not 0 <= i < len(self.scales):
                raise InfoError(f"mip {i} does not exist; this volume has mips 0..{len(self.scales) - 1}")
            return i
        if isinstance(mip, (list, tuple, np.ndarray)) and len(mip) == 3:
            for i, s in enumerate(self.scales):
                if all(math.isclose(a, b) for a, b in zip(s.resolution, mip)):
                    return i
            have = ", ".join(str(list(s.resolution)) for s in self.scales)
            raise InfoError(f"no scale has resolution {list(mip)}; available: {have}")
        raise InfoError(f"mip must be an int or a resolution [x, y, z], got {mip!r}")
