"""The committed golden volumes (see README.md): copy one to a scratch directory and get its truth."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
NAMES = ("ts_raw_uint8", "ts_cseg_uint64", "ts_sharded_cseg", "cv_gzip_uint8")


def truth(name: str) -> np.ndarray:
    """The array golden volume ``name`` was written from, (X, Y, Z, C)."""
    return np.load(HERE / f"{name}.npy", allow_pickle=False)


def golden_copy(name: str, dest: Path) -> tuple[str, np.ndarray]:
    """Copy golden volume ``name`` to ``dest`` (tests may change it) and return (url, truth)."""
    if name not in NAMES:
        raise KeyError(f"no golden volume {name!r}; have {', '.join(NAMES)}")
    shutil.copytree(HERE / name, dest)
    return "file://" + str(dest), truth(name)
