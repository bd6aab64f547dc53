"""A structurally broken shard is a DecodeError naming the shard, never "missing" (which
``fill_missing=True`` would turn into zeros and a rewrite would drop): an HTML error page served
in its place, or a shard cut short (issue #16)."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

import cloudvolume_lite as cvl

SHARDING = dict(preshift_bits=0, hash="identity", minishard_bits=1, shard_bits=1,
                minishard_index_encoding="raw", data_encoding="raw")
HTML = (b"<!DOCTYPE html>\n<html><head><title>Service temporarily unavailable</title></head>\n"
        b"<body><h1>503</h1><p>The server is busy; please try again later.</p></body></html>\n") * 4


def _volume(root: Path) -> tuple[str, np.ndarray]:
    url = f"file://{root}"
    truth = (np.arange(32 * 32 * 8, dtype=np.uint32).reshape(32, 32, 8) + 1)
    vol = cvl.Volume.create(url, data_type="uint32", layer_type="segmentation", size=(32, 32, 8),
                            chunk_size=(8, 8, 4), resolution=(1, 1, 1), encoding="raw", sharding=SHARDING)
    vol[:, :, :] = truth
    return url, truth


def _shards(root: Path) -> list[Path]:
    return sorted(root.glob("*/*.shard"))


def _damage(shard: Path, how: str) -> None:
    data = shard.read_bytes()
    if how == "html":
        shard.write_bytes(HTML)
    else:  # the tail cut off: the last minishard index lies past the end of the file
        shard.write_bytes(data[: len(data) - 40])


@pytest.mark.parametrize("how", ["html", "truncated"])
@pytest.mark.parametrize("where", ["file", "http"])
def test_a_broken_shard_is_a_decode_error_naming_it(tmp_path: Path, how: str, where: str, request) -> None:  # noqa: ANN001
    if where == "http":
        root = Path(request.getfixturevalue("http_root")) / uuid.uuid4().hex
    else:
        root = tmp_path / "v"
    url, truth = _volume(root)
    shard = _shards(root)[0]
    _damage(shard, how)
    if where == "http":
        url = f"{request.getfixturevalue('http_server').url}/{root.name}"
    vol = cvl.Volume(url, fill_missing=True)
    with pytest.raises(cvl.DecodeError, match=shard.name):
        vol[:, :, :]  # over HTTP most of a shard is read whole; on disk chunk by chunk
    failed = 0
    for x in range(0, 32, 8):  # one chunk at a time: the ranged reads of indices and chunks
        for y in range(0, 32, 8):
            for z in (0, 4):
                try:
                    got = vol[x : x + 8, y : y + 8, z : z + 4][..., 0]
                except cvl.DecodeError as e:
                    assert shard.name in str(e)
                    failed += 1
                else:  # the other shard's chunks, exact; never zeros for the broken one
                    assert (got == truth[x : x + 8, y : y + 8, z : z + 4]).all()
    assert failed > 0
    points = np.array([[x, y, z] for x in range(0, 32, 4) for y in range(0, 32, 4) for z in (0, 5)])
    with pytest.raises(cvl.DecodeError, match=shard.name):
        vol.scattered_points(points)


@pytest.mark.parametrize("how", ["html", "truncated"])
def test_a_write_never_builds_on_a_shard_it_could_not_parse(tmp_path: Path, how: str) -> None:
    root = tmp_path / "v"
    url, _ = _volume(root)
    shard = _shards(root)[0]
    _damage(shard, how)
    damaged = shard.read_bytes()
    vol = cvl.Volume(url, fill_missing=True)
    with pytest.raises(cvl.DecodeError, match=shard.name):
        for x in range(0, 32, 8):
            for y in range(0, 32, 8):
                for z in (0, 4):
                    vol[x : x + 8, y : y + 8, z : z + 4] = 7  # aligned writes rewrite the whole shard
    assert shard.read_bytes() == damaged  # left for a person to look at, never overwritten
