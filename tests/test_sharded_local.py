"""Sharded reads from stores without latency (disk, memory): a small shard most of a batch
wants is read whole, once, and chunk locations are computed without numpy for one chunk.
Every answer is checked against the array written (by TensorStore where it is installed)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import cloudvolume_lite as cvl
from cloudvolume_lite.sharding import (
    ShardLayout,
    compressed_morton,
    compressed_morton_int,
    murmurhash3_low64_int,
    murmurhash3_x86_128_low64,
)
from cloudvolume_lite.stores import StoreURL, shard_index, sharded
from cloudvolume_lite.stores.base import Versioned
from cloudvolume_lite.stores.memory import MemoryBuckets, MemoryStore
from cloudvolume_lite.stores.sharded import ShardedStore
from oracles import cvl_write, fixture_write, random_volume
from served_files import sharded_scale

MURMUR = dict(preshift_bits=0, hash="murmurhash3_x86_128", minishard_bits=2, shard_bits=1,
              minishard_index_encoding="gzip", data_encoding="gzip")
IDENTITY = dict(preshift_bits=2, hash="identity", minishard_bits=1, shard_bits=2,
                minishard_index_encoding="raw", data_encoding="raw")
SHAPE, OFFSET, CHUNK = (40, 36, 20), (5, -7, 3), (8, 8, 8)


def _write(path: Path, sharding: dict, encoding: str = "compressed_segmentation", seed: int = 0) -> np.ndarray:
    truth = random_volume((*SHAPE, 1), "uint64", np.random.default_rng(seed), labels=30)
    fixture_write(str(path), truth, offset=OFFSET, chunk=CHUNK, encoding=encoding, block=(4, 4, 4), sharding=sharding)
    return truth


def _mem_copy(root: Path, name: str) -> str:
    """The volume at ``root`` copied into a fresh ``mem://`` bucket."""
    url = f"mem://{name}/v"
    dst = cvl.stores.open_store(url)
    for f in root.rglob("*"):
        if f.is_file():
            dst.put(str(f.relative_to(root)), f.read_bytes())
    return url


def _counting(store: ShardedStore) -> list[tuple[str, object]]:
    """Record every (name, byte range) the sharded store reads from its inner store."""
    calls: list[tuple[str, object]] = []
    inner_read = store.inner.read

    def read(key, byte_range=None, **kw):  # noqa: ANN001, ANN202
        calls.append((key, byte_range))
        return inner_read(key, byte_range, **kw)

    store.inner.read = read  # type: ignore[method-assign]
    return calls


@pytest.mark.parametrize("sharding", [MURMUR, IDENTITY], ids=["murmur-gzip", "identity-raw"])
@pytest.mark.parametrize("where", ["file", "mem"])
def test_reads_of_small_shards_match_the_truth(tmp_path: Path, sharding: dict, where: str) -> None:
    truth = _write(tmp_path / "v", sharding)
    url = f"file://{tmp_path}/v" if where == "file" else _mem_copy(tmp_path / "v", f"local-{tmp_path.name}")
    vol = cvl.Volume(url)
    lo = np.asarray(OFFSET)
    np.testing.assert_array_equal(vol[:, :, :], truth)
    box = (slice(lo[0] + 3, lo[0] + 37), slice(lo[1] + 1, lo[1] + 30), slice(lo[2] + 2, lo[2] + 19))
    np.testing.assert_array_equal(vol[box], truth[3:37, 1:30, 2:19])
    local = np.random.default_rng(1).integers(0, SHAPE, size=(3000, 3))
    got = cvl.Volume(url, lru_bytes=1 << 24).scattered_points(local + lo)
    np.testing.assert_array_equal(got, truth[local[:, 0], local[:, 1], local[:, 2], 0])
    for cell in [(0, 0, 0), (4, 4, 2), (2, 3, 1)]:  # one chunk at a time: the single-get path
        b = vol.scale.chunk_bbox(cell)
        np.testing.assert_array_equal(vol[b.to_slices()], truth[tuple(slice(a - o, z - o) for a, z, o in
                                                                      zip(b.minpt, b.maxpt, lo))])


def test_a_small_shard_is_read_once_for_a_batch(tmp_path: Path) -> None:
    truth = _write(tmp_path / "v", MURMUR)
    vol = cvl.Volume(f"file://{tmp_path}/v")
    store = vol.uncached_store()
    calls = _counting(store)
    keys = [vol.scale.chunk_name(c) for c in np.ndindex(*vol.scale.grid_size)]
    got = dict(store.iter_get(keys))
    shards = {name for name, _ in calls}
    assert len(shards) == 2
    whole = [name for name, rng in calls if rng is None]
    assert sorted(whole) == sorted(shards)  # one whole read each; the rest are their shard indices
    assert len(calls) == 2 * len(shards)
    spec = cvl.codecs.ChunkSpec((8, 8, 8, 1), np.dtype(np.uint64), vol.scale, "c")
    codec = cvl.codecs.get_codec("compressed_segmentation")
    for cell in [(0, 0, 0), (3, 2, 1)]:
        want = truth[tuple(slice(8 * c, 8 * c + 8) for c in cell)]
        np.testing.assert_array_equal(codec.decode(got[vol.scale.chunk_name(cell)], spec), want)


def test_indices_of_the_same_generation_are_not_parsed_again(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    _write(tmp_path / "v", MURMUR)
    vol = cvl.Volume(f"file://{tmp_path}/v")
    store = vol.uncached_store()
    keys = [vol.scale.chunk_name(c) for c in np.ndindex(*vol.scale.grid_size)]
    first = dict(store.iter_get(keys))
    parsed: list[int] = []
    real = shard_index.minishard_in
    monkeypatch.setattr(shard_index, "minishard_in", lambda *a, **kw: parsed.append(1) or real(*a, **kw))
    assert dict(store.iter_get(keys)) == first and not parsed
    assert store.get(keys[5]) == first[keys[5]]  # the single-get path uses the indices the batch cached


def test_big_shards_are_read_chunk_by_chunk(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    truth = _write(tmp_path / "v", MURMUR)
    monkeypatch.setattr(sharded, "WHOLE_MOST", 64)
    vol = cvl.Volume(f"file://{tmp_path}/v")
    store = vol.uncached_store()
    calls = _counting(store)
    keys = [vol.scale.chunk_name(c) for c in np.ndindex(*vol.scale.grid_size)]
    dict(store.iter_get(keys))
    assert all(rng is not None for _, rng in calls) and len(calls) > len(keys)
    np.testing.assert_array_equal(cvl.Volume(f"file://{tmp_path}/v")[:, :, :], truth)


def test_absent_chunks_and_shards_read_as_missing(tmp_path: Path) -> None:
    truth = random_volume((*SHAPE, 1), "uint64", np.random.default_rng(3), labels=30)
    url = f"file://{tmp_path}/v"
    cvl_write(str(tmp_path / "v"), truth, offset=OFFSET, chunk=CHUNK, encoding="compressed_segmentation",
              block=(4, 4, 4), sharding=IDENTITY)
    vol = cvl.Volume(url, fill_missing=True)
    lo = OFFSET
    vol[lo[0] : lo[0] + 8, lo[1] : lo[1] + 8, lo[2] : lo[2] + 8] = np.zeros((8, 8, 8, 1), np.uint64) + 9
    shard_files = sorted((tmp_path / "v").glob("*/*.shard"))
    assert len(shard_files) > 1
    shard_files[-1].unlink()  # a whole shard gone
    gone = int(shard_files[-1].name.split(".")[0], 16)
    want = truth.copy()
    want[:8, :8, :8] = 9
    scale = vol.scale
    layout = ShardLayout(scale.sharding, scale)
    for cell in np.ndindex(*scale.grid_size):
        if layout.location(scale.chunk_name(cell))[1] == gone:
            want[tuple(slice(8 * c, 8 * c + 8) for c in cell)] = 0
    assert (want == 0).any()
    with pytest.raises(cvl.ChunkNotFoundError):
        cvl.Volume(url)[:, :, :]
    np.testing.assert_array_equal(cvl.Volume(url, fill_missing=True)[:, :, :], want)
    pts = np.random.default_rng(2).integers(0, SHAPE, size=(500, 3))
    got = cvl.Volume(url, fill_missing=True).scattered_points(pts + np.asarray(lo))
    np.testing.assert_array_equal(got, want[pts[:, 0], pts[:, 1], pts[:, 2], 0])


def test_a_whole_read_sees_a_rewritten_shard(tmp_path: Path) -> None:
    truth = _write(tmp_path / "v", MURMUR)
    url = f"file://{tmp_path}/v"
    reader = cvl.Volume(url)
    np.testing.assert_array_equal(reader[:, :, :], truth)  # caches the indices
    writer = cvl.Volume(url)
    lo = OFFSET
    writer[lo[0] : lo[0] + 16, lo[1] : lo[1] + 8, lo[2] : lo[2] + 8] = truth[:16, :8, :8] + np.uint64(5)
    want = truth.copy()
    want[:16, :8, :8] += np.uint64(5)
    np.testing.assert_array_equal(reader[:, :, :], want)
    pts = np.array([[lo[0] + 1, lo[1] + 1, lo[2] + 1], [lo[0] + 30, lo[1] + 30, lo[2] + 10]])
    np.testing.assert_array_equal(reader.scattered_points(pts), want[pts[:, 0] - lo[0], pts[:, 1] - lo[1],
                                                                      pts[:, 2] - lo[2], 0])


def test_another_shards_file_in_its_place_is_a_decode_error(tmp_path: Path) -> None:
    _write(tmp_path / "v", MURMUR)
    files = sorted((tmp_path / "v").glob("*/*.shard"))
    shutil.copy(files[0], files[1])
    with pytest.raises(cvl.DecodeError, match=files[1].name):
        cvl.Volume(f"file://{tmp_path}/v")[:, :, :]


def test_a_shard_cut_short_is_a_decode_error(tmp_path: Path) -> None:
    _write(tmp_path / "v", MURMUR)
    shard = sorted((tmp_path / "v").glob("*/*.shard"))[0]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])  # its index still says how long it was: read whole
    vol = cvl.Volume(f"file://{tmp_path}/v", fill_missing=True)
    with pytest.raises(cvl.DecodeError, match=shard.name):
        vol[:, :, :]


# -- locations --------------------------------------------------------------------------------------
def _scale(sharding: dict, size=(300, 200, 90), offset=(-64, 5, 7), chunk=(16, 8, 4)):  # noqa: ANN001, ANN202
    return sharded_scale(sharding, size, offset, chunk)


@pytest.mark.parametrize("sharding", [
    dict(preshift_bits=0, hash="murmurhash3_x86_128", minishard_bits=3, shard_bits=4),
    dict(preshift_bits=3, hash="identity", minishard_bits=2, shard_bits=5),
    dict(preshift_bits=64, hash="murmurhash3_x86_128", minishard_bits=1, shard_bits=1),
])
def test_one_chunks_location_is_the_vectorised_one(sharding: dict) -> None:
    scale = _scale(sharding)
    layout = ShardLayout(scale.sharding, scale)
    cells = [c for i, c in enumerate(np.ndindex(*scale.grid_size)) if i % 7 == 0]
    names = [scale.chunk_name(c) for c in cells]
    ids = compressed_morton(np.array(cells), scale.grid_size)
    shards, minis = layout.locate(ids)
    assert [layout.location(n) for n in names] == list(zip(ids.tolist(), shards.tolist(), minis.tolist()))
    got = layout.locations(names)
    assert [a.tolist() for a in got] == [ids.tolist(), shards.tolist(), minis.tolist()]
    assert [layout.cell_of(n) for n in names] == [tuple(c) for c in cells]


def test_scalar_and_vector_hashes_agree() -> None:
    keys = np.random.default_rng(0).integers(0, 2**64 - 1, size=500, dtype=np.uint64, endpoint=True)
    keys[:4] = [0, 2**32 - 1, 2**32, 2**64 - 1]
    vec = murmurhash3_x86_128_low64(keys)
    assert [murmurhash3_low64_int(k) for k in keys.tolist()] == vec.tolist()
    for n in (1, 5, 12, 13, 40):  # either side of the scalar/numpy switch
        assert murmurhash3_x86_128_low64(keys[:n]).tolist() == vec[:n].tolist()
    assert int(murmurhash3_x86_128_low64(np.uint64(247))) == 0xF0E8AD8827328743
    grid = (19, 25, 23)
    cells = np.random.default_rng(1).integers(0, grid, size=(200, 3))
    bits = tuple(max(0, int(g - 1).bit_length()) for g in grid)
    assert [compressed_morton_int(c, bits) for c in cells.tolist()] == compressed_morton(cells, grid).tolist()


@pytest.mark.parametrize("name", [
    "-64--48_5-13_7-11x", "-64--48_5-13_07-11", "-64--48_5-13_7-12", "-63--47_5-13_7-11", "-80--64_5-13_7-11",
    "236-252_5-13_7-11", "-64--48_5-13", "0-16_0-8_0-4", "-64--48_5-13_7-11_1-2", "a-b_c-d_e-f",
])
def test_a_name_that_is_not_exactly_a_chunks_is_refused(name: str) -> None:
    scale = _scale(dict(preshift_bits=0, hash="identity", minishard_bits=1, shard_bits=1))
    layout = ShardLayout(scale.sharding, scale)
    assert layout.cell_of("-64--48_5-13_7-11") == (0, 0, 0)
    assert layout.cell_of("224-236_197-205_95-97") == (18, 24, 22)  # the clipped last cell
    with pytest.raises(cvl.RequestError):
        layout.cell_of(name)
    with pytest.raises(cvl.RequestError):
        layout.location(name)


def test_minishard_ids_whose_deltas_wrap_are_sorted() -> None:
    ids = np.array([5, 2**64 - 3, 4], dtype=np.uint64)  # cumulative sums: 5, 2, 6
    table = np.stack([ids, np.array([0, 3, 1], np.uint64), np.array([10, 20, 30], np.uint64)])
    index = shard_index.parse_minishard_index(table.astype("<u8").tobytes(), 64, "w")
    assert index.ids.tolist() == [2, 5, 6]
    # starts: 64 + 0 = 64 for id 5 (size 10), 74 + 3 = 77 for id 2 (size 20), 97 + 1 = 98 for id 6
    assert index.starts.tolist() == [77, 64, 98] and index.sizes.tolist() == [20, 10, 30]
    assert index.find(2) == (77, 97) and index.find(3) is None


class _NoGenerations(MemoryStore):
    """A memory store that reports no generations (as an older plug-in store may)."""

    supports_generations = property(lambda self: False)  # type: ignore[assignment]
    supports_conditional_writes = property(lambda self: False)  # type: ignore[assignment]

    def read(self, key, byte_range=None, *, if_match=None, if_none_match=None):  # noqa: ANN001, ANN201
        got = super().read(key, byte_range)
        return None if got is None else Versioned(got.data, None)

    def stat(self, key):  # noqa: ANN001, ANN201
        return None


@pytest.mark.parametrize("generations", [True, False])
def test_a_rewrite_between_batches_is_read_afresh(generations: bool) -> None:
    scale = _scale(dict(preshift_bits=0, hash="murmurhash3_x86_128", minishard_bits=2, shard_bits=2,
                        minishard_index_encoding="gzip", data_encoding="raw"),
                   size=(64, 64, 32), offset=(0, 0, 0), chunk=(8, 8, 8))
    inner = (MemoryStore if generations else _NoGenerations)(StoreURL("mem", "gen", ""), MemoryBuckets())
    reader, writer = ShardedStore(inner, scale), ShardedStore(inner, scale)
    keys = [scale.chunk_name(c) for c in np.ndindex(*scale.grid_size)]
    first = {k: bytes([i % 251]) * (1 + i % 9) for i, k in enumerate(keys)}
    writer.put_many(first)
    assert dict(reader.iter_get(keys)) == first
    second = dict(first)
    for k in keys[::3]:  # every chunk of every shard moves: other lengths before it
        second[k] = b"new" * (2 + len(first[k]))
    writer.put_many({k: second[k] for k in keys[::3]})
    assert dict(reader.iter_get(keys)) == second
    assert [reader.get(k) for k in keys[:20]] == [second[k] for k in keys[:20]]
