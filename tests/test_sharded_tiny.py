"""The fixed costs of reading a small sharded volume whole: chunk names looked up in per-axis
tables, locations remembered by the store, small minishard indices parsed in Python ints,
members checked without hashing again what the read already hashed. Each shortcut is checked
against the long way round, and damage is still found through it."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import numpy as np
import pytest

import cloudvolume_lite as cvl
from cloudvolume_lite.sharding import NAME_TABLE_MOST, ShardLayout
from cloudvolume_lite.stores import shard_index
from oracles import fixture_write, random_volume
from served_files import sharded_scale

MURMUR = dict(preshift_bits=0, hash="murmurhash3_x86_128", minishard_bits=2, shard_bits=1,
              minishard_index_encoding="gzip", data_encoding="gzip")
SHAPE, OFFSET, CHUNK = (40, 36, 20), (5, -7, 3), (8, 8, 8)


def _write(path: Path, sharding: dict = MURMUR, seed: int = 0) -> np.ndarray:
    truth = random_volume((*SHAPE, 1), "uint64", np.random.default_rng(seed), labels=30)
    fixture_write(str(path), truth, offset=OFFSET, chunk=CHUNK, encoding="compressed_segmentation", block=(4, 4, 4),
                  sharding=sharding)
    return truth


_scale = sharded_scale


# -- names and locations ---------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_tabulated_locations_are_the_parsed_ones(seed: int) -> None:
    rng = np.random.default_rng(seed)
    chunk = tuple(int(c) for c in rng.integers(1, 9, 3))
    size = tuple(int(s) for s in rng.integers(1, 90, 3))
    offset = tuple(int(o) for o in rng.integers(-50, 50, 3))
    sharding = dict(preshift_bits=int(rng.integers(0, 3)), hash=["identity", "murmurhash3_x86_128"][seed % 2],
                    minishard_bits=int(rng.integers(0, 3)), shard_bits=int(rng.integers(0, 3)))
    scale = _scale(sharding, size, offset, chunk)
    names = [scale.chunk_name(c) for c in itertools.product(*(range(g) for g in scale.grid_size))]
    parsed = ShardLayout(scale.sharding, scale)
    want = [parsed.location(n) for n in names]  # no tables yet: each name parsed and checked
    assert parsed.name_tables(0) is None or sum(scale.grid_size) <= 64
    tabled = ShardLayout(scale.sharding, scale)
    assert tabled.name_tables(len(names)) is not None  # the whole grid is worth them
    got = tabled.locations(names)
    assert list(zip(*(a.tolist() for a in got))) == want
    assert [tabled.location(n) for n in names] == want  # the scalar route through the tables


def test_no_tables_for_a_long_grid_or_a_small_batch() -> None:
    sharding = dict(preshift_bits=0, hash="identity", minishard_bits=1, shard_bits=1)
    long = _scale(sharding, (NAME_TABLE_MOST * 4 + 4, 8, 8), (0, 0, 0), (4, 8, 8))
    assert ShardLayout(long.sharding, long).name_tables(10**6) is None
    mid = _scale(sharding, (400 * 4, 8, 8), (0, 0, 0), (4, 8, 8))
    layout = ShardLayout(mid.sharding, mid)
    assert layout.name_tables(3) is None  # 400 cells of tables for 3 names: not worth it
    names = [mid.chunk_name((i, 0, 0)) for i in range(0, 400, 7)]
    ids, _, _ = layout.locations(names)
    assert ids.tolist() == [layout.location(n)[0] for n in names]


@pytest.mark.parametrize("bad", [
    "5-13_-7-1_3-11x", "5-13_-7-1", "05-13_-7-1_3-11", "5-13_-7-1_3-12", "5-13_-7-1_3-11_0-1", "6-14_-7-1_3-11",
])
def test_a_batch_with_a_name_that_is_not_a_chunks_is_refused(bad: str) -> None:
    scale = _scale(MURMUR, SHAPE, OFFSET, CHUNK)
    layout = ShardLayout(scale.sharding, scale)
    names = [scale.chunk_name(c) for c in itertools.product(*(range(g) for g in scale.grid_size))]
    assert layout.name_tables(len(names)) is not None
    with pytest.raises(cvl.RequestError, match=bad.replace("-", r"\-")):
        layout.locations(names[:30] + [bad])
    with pytest.raises(cvl.RequestError):
        layout.location(bad)


def test_a_store_remembers_locations_and_reads_the_same(tmp_path: Path) -> None:
    truth = _write(tmp_path / "v")
    vol = cvl.Volume(f"file://{tmp_path}/v")
    store = vol.chunk_store()
    np.testing.assert_array_equal(vol[:, :, :], truth)
    names = [vol.scale.chunk_name(c) for c in itertools.product(*(range(g) for g in vol.scale.grid_size))]
    remembered = store._locations(names)
    fresh = ShardLayout(vol.scale.sharding, vol.scale)
    assert remembered == {n: fresh.location(n) for n in names}
    np.testing.assert_array_equal(vol[:, :, :], truth)  # again, from remembered locations


# -- minishard indices -------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [0, 1, 2, 7, shard_index.SMALL_INDEX, shard_index.SMALL_INDEX + 1])
def test_small_minishard_indices_parse_as_numpy_does(n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(n)
    for trial in range(60):
        rows = rng.integers(0, 2**64, size=(3, n), dtype=np.uint64)
        if trial % 3:  # plausible offsets and sizes; in every other one an id delta that wraps
            rows[1], rows[2] = rng.integers(0, 1000, n), rng.integers(0, 1000, n)
            if trial % 3 == 2:
                rows[0] = rng.integers(0, 5, n)
                rows[0][n // 2 : n // 2 + 1] = 2**64 - 3
        data = rows.astype("<u8").tobytes()
        results = []
        for small in (shard_index.SMALL_INDEX, -1):  # Python ints, then numpy for every size
            monkeypatch.setattr(shard_index, "SMALL_INDEX", small)
            try:
                got = shard_index.parse_minishard_index(data, 64, "w")
                results.append([a.dtype.str for a in (got.ids, got.starts, got.sizes)] +
                               [got.ids.tolist(), got.starts.tolist(), got.sizes.tolist()])
            except cvl.DecodeError as e:
                results.append(str(e))
        assert results[0] == results[1]


# -- whole shards --------------------------------------------------------------------------------------
def test_a_cached_shard_index_does_not_keep_the_shard_file(tmp_path: Path) -> None:
    """The index of a shard read whole was a view of the file's bytes: the index cache (which
    counts 16 bytes a minishard) kept the whole file alive as long as the index."""
    truth = _write(tmp_path / "v")
    vol = cvl.Volume(f"file://{tmp_path}/v")
    np.testing.assert_array_equal(vol[:, :, :], truth)
    store = vol.chunk_store()
    for shard in range(2):
        entries = store._indices.get(("shard", shard)).value.entries
        base = entries
        while getattr(base, "base", None) is not None:
            base = base.base
        held = base.nbytes if isinstance(base, np.ndarray) else len(base)  # type: ignore[arg-type]
        assert held == entries.nbytes == 16 * 4  # the index's bytes, not the file's


def test_minishard_indices_swapped_within_a_shard_are_a_decode_error(tmp_path: Path) -> None:
    """Minishard 0's table entry pointing at minishard 1's index: the chunks it lists were
    located (hashed) elsewhere, so the check that skips re-hashing wanted chunks must catch it."""
    _write(tmp_path / "v")
    shard = sorted((tmp_path / "v").glob("*/*.shard"))[0]
    data = bytearray(shard.read_bytes())
    table = np.frombuffer(bytes(data[:64]), "<u8").reshape(4, 2).copy()
    table[[0, 1]] = table[[1, 0]]
    data[:64] = table.astype("<u8").tobytes()
    shard.write_bytes(bytes(data))
    with pytest.raises(cvl.DecodeError, match="other shards or minishards"):
        cvl.Volume(f"file://{tmp_path}/v")[:, :, :]


def test_reads_of_a_damaged_copy_fail_the_same_after_a_good_read(tmp_path: Path) -> None:
    """Locations and indices remembered from a good read do not hide a shard replaced by
    another's: the file read whole is of a new generation, so its indices are parsed and
    checked again."""
    truth = _write(tmp_path / "v")
    vol = cvl.Volume(f"file://{tmp_path}/v")
    np.testing.assert_array_equal(vol[:, :, :], truth)
    files = sorted((tmp_path / "v").glob("*/*.shard"))
    shutil.copy(files[0], files[1])
    with pytest.raises(cvl.DecodeError, match=files[1].name):
        vol[:, :, :]
