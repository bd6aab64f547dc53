"""``zfpc``: a container of zfp streams for float (vector) fields; settings from info
(``zfpc_rate``, ``zfpc_precision``, ``zfpc_tolerance``, ``zfpc_correlated_dims``)."""

from __future__ import annotations

import numpy as np
import zfpc  # missing: get_codec names the extra to install

from . import ChunkSpec


def decode(data: bytes, spec: ChunkSpec) -> np.ndarray:
    if len(data) < 4 or bytes(data[:4]) != b"zfpc":
        raise spec.error("not a zfpc stream (no 'zfpc' header)")
    try:
        arr = np.asarray(zfpc.decompress(bytes(data)))
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
