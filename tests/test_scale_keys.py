"""A scale whose key leaves the volume's directory (``../other/8_8_8``) is read, as TensorStore
does, but never written: a write there would change another volume (issue #16)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import cloudvolume_lite as cvl


def test_a_scale_outside_the_volume_is_read_but_never_written(tmp_path: Path) -> None:
    other = cvl.Volume.from_numpy(np.full((16, 16, 4), 5, np.uint8), f"file://{tmp_path}/other",
                                  chunk_size=(8, 8, 4), layer_type="image")
    vol = cvl.Volume.from_numpy(np.zeros((16, 16, 4), np.uint8), f"file://{tmp_path}/vol",
                                chunk_size=(8, 8, 4), layer_type="image")
    info = json.loads((tmp_path / "vol" / "info").read_text())
    info["scales"][0]["key"] = f"../other/{other.scale.key}"  # this volume's data lives next door
    (tmp_path / "vol" / "info").write_text(json.dumps(info))
    before = sorted(p.read_bytes() for p in (tmp_path / "other").rglob("*") if p.is_file())
    vol = cvl.Volume(f"file://{tmp_path}/vol")
    assert (vol[:, :, :] == 5).all()  # read through the key, as TensorStore reads it
    with pytest.raises(cvl.RequestError, match="outside the volume"):
        vol[0:8, 0:8, 0:4] = 1
    with pytest.raises(cvl.RequestError, match="outside the volume"):
        vol.delete(vol.bounds)
    after = sorted(p.read_bytes() for p in (tmp_path / "other").rglob("*") if p.is_file())
    assert after == before  # the other volume is untouched
