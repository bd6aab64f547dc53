"""Sharded reads under another writer: a reader's cached shard indices never make it read
another chunk's bytes (issue #15, item 1), and writers of one shard keep each other's chunks."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import cloudvolume_lite as cvl

RAW_SHARDING = dict(preshift_bits=0, hash="identity", minishard_bits=1, shard_bits=1,
                    minishard_index_encoding="raw", data_encoding="raw")


def _create(url: str) -> None:
    cvl.Volume.create(url, data_type="uint32", layer_type="segmentation", size=(32, 32, 8),
                      chunk_size=(8, 8, 4), resolution=(1, 1, 1), encoding="raw", compression=None,
                      sharding=RAW_SHARDING)


def _truth() -> np.ndarray:
    # every chunk holds values of its own: a misread shows as another chunk's numbers
    return np.arange(32 * 32 * 8, dtype=np.uint32).reshape(32, 32, 8) + 1


@pytest.mark.parametrize("where", ["file", "mem"])
def test_a_chunk_added_to_a_shard_does_not_misread_its_neighbours(tmp_path, where: str) -> None:  # noqa: ANN001
    url = f"file://{tmp_path}/v" if where == "file" else f"mem://shard-coherence-{tmp_path.name}/v"
    _create(url)
    truth = _truth()
    writer = cvl.Volume(url)
    writer[16:32, :, :] = truth[16:32]  # half the chunks: the shards have room for more
    reader = cvl.Volume(url, fill_missing=True)
    np.testing.assert_array_equal(reader[16:32, :, :][..., 0], truth[16:32])  # caches the indices
    points = np.array([[x, y, z] for x in (17, 25, 31) for y in (0, 9, 30) for z in (0, 5)])
    expected = truth[points[:, 0], points[:, 1], points[:, 2]]
    np.testing.assert_array_equal(reader.scattered_points(points).ravel(), expected)
    writer[0:16, :, :] = truth[0:16]  # lower chunk ids, into the same shards: every offset moves
    np.testing.assert_array_equal(reader[16:32, :, :][..., 0], truth[16:32])
    np.testing.assert_array_equal(reader.scattered_points(points).ravel(), expected)
    got = reader[0:32, :, :][..., 0]  # the new chunks: old (absent: zeros) or new, nothing else
    for x in range(0, 16, 8):
        for y in range(0, 32, 8):
            for z in range(0, 8, 4):
                block = got[x : x + 8, y : y + 8, z : z + 4]
                assert (block == 0).all() or (block == truth[x : x + 8, y : y + 8, z : z + 4]).all()
    assert (cvl.Volume(url)[0:32, :, :][..., 0] == truth).all()  # a new Volume sees everything


def test_readers_see_old_or_new_while_a_writer_rewrites(tmp_path) -> None:  # noqa: ANN001
    url = f"file://{tmp_path}/v"
    _create(url)
    truth = _truth()
    writer = cvl.Volume(url)
    writer[:, :, :] = truth
    reader = cvl.Volume(url, fill_missing=True)
    stop = threading.Event()
    wrong: list[int] = []
    rounds = [0]

    def read() -> None:
        while not stop.is_set():
            got = reader[0:32, 0:32, 0:8][..., 0]
            # a chunk is either truth or truth + 1_000_000 (the writer's version), whole
            ok = (got == truth) | (got == truth + 1_000_000)
            wrong.append(int((~ok).sum()))
            rounds[0] += 1

    t = threading.Thread(target=read)
    t.start()
    try:
        for i in range(20):
            box = slice(8 * (i % 4), 8 * (i % 4) + 8)
            writer[box, :, :] = truth[box] + (1_000_000 if i % 2 == 0 else 0)
    finally:
        stop.set()
        t.join(30)
    assert rounds[0] > 0 and sum(wrong) == 0, f"{sum(wrong)} wrong voxels in {rounds[0]} reads"


@pytest.mark.parametrize("where", ["file", "mem"])
def test_writers_of_one_shard_keep_each_others_chunks(tmp_path, where: str) -> None:  # noqa: ANN001
    """Two Volumes writing different chunks of the same shards at once, no locking: every
    chunk is kept (the shard rewrite is compare-and-swap, retried on conflict)."""
    url = f"file://{tmp_path}/v" if where == "file" else f"mem://shard-writers-{tmp_path.name}/v"
    _create(url)
    truth = _truth()
    n = 4
    vols = [cvl.Volume(url) for _ in range(n)]
    boxes = [(x, y, z) for x in range(0, 32, 8) for y in range(0, 32, 8) for z in (0, 4)]
    start = threading.Barrier(n)

    def write(i: int) -> None:
        start.wait()
        for x, y, z in boxes[i::n]:
            vols[i][x : x + 8, y : y + 8, z : z + 4] = truth[x : x + 8, y : y + 8, z : z + 4]

    threads = [threading.Thread(target=write, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    got = cvl.Volume(url, fill_missing=True)[:, :, :][..., 0]
    lost = sum(int((got[x : x + 8, y : y + 8, z : z + 4] != truth[x : x + 8, y : y + 8, z : z + 4]).any())
               for x, y, z in boxes)
    assert lost == 0, f"{lost} of {len(boxes)} chunks lost"


@pytest.mark.parametrize("sharded", [False, True], ids=["plain", "sharded"])
@pytest.mark.parametrize("where", ["file", "mem"])
def test_unaligned_writers_without_a_lock_lose_no_voxel(tmp_path, where: str, sharded: bool) -> None:  # noqa: ANN001
    """Writers of different voxels of the same chunks, without ``locking``: each partial
    chunk (or its shard) is rewritten by compare-and-swap on the generation it read, so no
    write is lost."""
    url = f"file://{tmp_path}/u" if where == "file" else f"mem://unaligned-{tmp_path.name}/u"
    cvl.Volume.create(url, data_type="uint32", layer_type="segmentation", size=(16, 16, 4),
                      chunk_size=(8, 8, 4), resolution=(1, 1, 1), encoding="raw", compression=None,
                      sharding=RAW_SHARDING if sharded else None)
    n = 4
    vols = [cvl.Volume(url, fill_missing=True) for _ in range(n)]
    start = threading.Barrier(n)
    # writer i owns the x-columns x % n == i: every chunk is shared by all four writers
    def write(i: int) -> None:
        start.wait()
        for x in range(i, 16, n):
            vols[i][x : x + 1, :, :] = np.full((1, 16, 4), x + 1, np.uint32)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    got = cvl.Volume(url, fill_missing=True)[:, :, :][..., 0]
    lost = int((got != (np.arange(16, dtype=np.uint32) + 1)[:, None, None]).sum())
    assert lost == 0, f"{lost} of {got.size} voxels lost"
