"""``zfpc``: a container of zfp streams for float (vector) fields; settings from info
(``zfpc_rate``, ``zfpc_precision``, ``zfpc_tolerance``, ``zfpc_correlated_dims``).

The container's header and each zfp stream's header state dimensions; they are checked
against the chunk before anything is decoded, so a damaged header cannot make the library
allocate what it claims.
"""

from __future__ import annotations

import math

import numpy as np
import zfpc  # missing: get_codec names the extra to install

from . import ChunkSpec


def _zfp_values(stream: bytes) -> int | None:
    """How many values a zfp stream's header says it holds (None: no zfp header)."""
    if len(stream) < 11 or bytes(stream[:3]) != b"zfp":
        return None
    # 32 bits of magic and version, then 52 bits of field metadata, least significant first:
    # 2 bits of scalar type, 2 of dimensionality - 1, then each dimension - 1
    meta = (int.from_bytes(bytes(stream[:11]), "little") >> 32) & ((1 << 52) - 1)
    dims = ((meta >> 2) & 3) + 1
    bits = {1: 48, 2: 24, 3: 16, 4: 12}[dims]
    n = 1
    for i in range(dims):
        n *= ((meta >> (4 + bits * i)) & ((1 << bits) - 1)) + 1
    return n


def _check(data: bytes, spec: ChunkSpec) -> None:
    expected = math.prod(spec.shape)
    try:
        head = zfpc.ZfpcHeader.frombytes(data)
        streams = zfpc.disassemble_container(head, data)
    except Exception as e:  # zfpc.DecodingError, AssertionError on a bad index, ...
        raise spec.error(f"zfpc container unreadable ({e})") from None
    stated = math.prod(head.shape()) if head.shape() else 0
    if stated != expected:
        raise spec.error(f"its zfpc header says {head.shape()}, expected {spec.shape}; refused before decoding")
    counts = [_zfp_values(s) for s in streams]
    if any(c is None for c in counts) or sum(counts) != expected:  # type: ignore[arg-type]
        raise spec.error(f"its zfp streams state {counts} values, expected {expected} in all; refused before decoding")


def decode(data: bytes, spec: ChunkSpec) -> np.ndarray:
    if len(data) < 4 or bytes(data[:4]) != b"zfpc":
        raise spec.error("not a zfpc stream (no 'zfpc' header)")
    data = bytes(data)
    _check(data, spec)
    try:
        arr = np.asarray(zfpc.decompress(data))
    except Exception as e:  # zfpc.DecodingError and whatever zfpy raises on bad input
        raise spec.error(f"zfpc could not decode it ({e})") from None
    while arr.ndim < 4:
        arr = arr[..., np.newaxis]
    if arr.shape != spec.shape:
        raise spec.error(f"zfpc stream holds {arr.shape}")
    return arr.astype(spec.dtype, copy=False)


def encode(array: np.ndarray, spec: ChunkSpec) -> bytes:
    x = spec.scale.extra
    params = {}
    for key in ("rate", "precision", "tolerance"):
        if x.get(f"zfpc_{key}") is not None:
            params[key] = x[f"zfpc_{key}"]
    if x.get("zfpc_correlated_dims") is not None:
        params["correlated_dims"] = list(x["zfpc_correlated_dims"])
    arr = np.asfortranarray(np.asarray(array, dtype=spec.dtype).reshape(spec.shape, order="F"))
    return zfpc.compress(arr, **params)
