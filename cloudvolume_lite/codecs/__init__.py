"""Chunk encodings, one module each, looked up by the name ``info`` gives.

A codec module exposes ``decode(data, spec) -> ndarray`` (shape ``spec.shape``, any memory
order) and ``encode(array, spec) -> bytes``; it may add ``decode_points(data, spec, xyz)``
for reading a few voxels without decoding the whole chunk. Codecs hold no state and
importing this package imports no codec library.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import MappingProxyType, ModuleType
from typing import Mapping

import numpy as np

from ..errors import DecodeError, UnsupportedEncodingError
from ..info import Scale

#: encoding -> (module, pip extra that provides its library, or None when a core dependency)
_CODECS: Mapping[str, tuple[str, str | None]] = MappingProxyType(
    {
        "raw": ("cloudvolume_lite.codecs.raw", None),
        "compressed_segmentation": ("cloudvolume_lite.codecs.cseg", None),
        "jpeg": ("cloudvolume_lite.codecs.jpeg", None),
        "png": ("cloudvolume_lite.codecs.png", None),
        "compresso": ("cloudvolume_lite.codecs.compresso", "compresso"),
        "crackle": ("cloudvolume_lite.codecs.crackle", "crackle"),
        "fpzip": ("cloudvolume_lite.codecs.fpzip", "fpzip"),
        "kempressed": ("cloudvolume_lite.codecs.kempressed", "fpzip"),
        "zfpc": ("cloudvolume_lite.codecs.zfpc", "zfpc"),
        "jxl": ("cloudvolume_lite.codecs.jxl", "jxl"),
    }
)


@dataclass(frozen=True)
class ChunkSpec:
    """What a codec needs to know about one chunk: its clipped shape, dtype and scale."""

    shape: tuple[int, int, int, int]  # (ex, ey, ez, num_channels) after edge clipping
    dtype: np.dtype
    scale: Scale
    key: str  # for error messages

    @property
    def nbytes(self) -> int:
        ex, ey, ez, nc = self.shape
        return ex * ey * ez * nc * self.dtype.itemsize

    def error(self, what: str) -> DecodeError:
        return DecodeError(
            f"chunk {self.key} ({self.scale.encoding}, shape {self.shape[:3]}x{self.shape[3]}ch, {self.dtype}): "
            f"{what}; the chunk is corrupt or was written with different info, rewrite it or use a matching info"
        )


def get_codec(encoding: str) -> ModuleType:
    """The codec module for ``encoding``; an :class:`UnsupportedEncodingError` names the pip extra."""
    name = encoding.lower()
    if name not in _CODECS:
        raise UnsupportedEncodingError(
            f"encoding {encoding!r} is not supported; supported: {', '.join(sorted(_CODECS))}"
        )
    module, extra = _CODECS[name]
    try:
        # a codec module imports its library at its top, so a missing one shows up here
        return importlib.import_module(module)
    except ImportError as e:
        missing = e.name or str(e)
        hint = f'pip install "cloudvolume-lite[{extra}]"' if extra else "reinstall cloudvolume-lite"
        raise UnsupportedEncodingError(
            f"encoding {name!r} needs the {missing!r} module, which is not installed ({e}); run: {hint}"
        ) from None


def supported_encodings() -> list[str]:
    """Every encoding name this package knows (whether or not its extra is installed)."""
    return sorted(_CODECS)


__all__ = ["ChunkSpec", "get_codec", "supported_encodings"]
