"""New chunks of a sharded scale are encoded (and gzip'd as their shard file holds them) by the
writer on every core, then copied into the shard by its rewrite: ``writer.spread`` runs many
items on two threads and few in the caller; a :class:`StoredChunk` goes into a shard of its
encoding as it is and elsewhere as its plain bytes; the files are those a rewrite that gzips
every chunk itself makes, and the peers read them."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

import cloudvolume_lite as cvl
from cloudvolume_lite import compression
from cloudvolume_lite.runtime import Runtime
from cloudvolume_lite.sharding import ShardLayout
from cloudvolume_lite.stores import shard_index
from cloudvolume_lite.stores.shard_keep import StoredChunk, shard_payload
from cloudvolume_lite.writer import SPREAD_LEAST, spread


def one_shard(data_encoding: str = "gzip") -> dict:
    """One shard of the 32 chunks of a (32, 32, 16) volume in chunks of 8, two minishards."""
    return {"@type": "neuroglancer_uint64_sharded_v1", "preshift_bits": 4, "hash": "identity", "minishard_bits": 1,
            "shard_bits": 0, "minishard_index_encoding": "gzip", "data_encoding": data_encoding}


def sharded(root: Path, data_encoding: str = "gzip") -> cvl.Volume:
    return cvl.Volume.create(f"file://{root}", data_type="uint32", layer_type="segmentation", size=(32, 32, 16),
                             chunk_size=(8, 8, 8), resolution=(1, 1, 1), sharding=one_shard(data_encoding))


def stored(vol: cvl.Volume) -> dict[int, bytes]:
    """Chunk id -> bytes as the volume's one shard file holds them."""
    [shard] = sorted(Path(vol.url.removeprefix("file://")).glob("*/*.shard"))
    layout = ShardLayout(vol.scale.sharding, vol.scale)
    return {cid: bytes(b) for cid, b in shard_index.stored_shard(shard.read_bytes(), layout, 0, shard.name).items()}


def test_spread_runs_many_items_on_two_threads_at_once() -> None:
    """Each item waits at a barrier for a second thread: the map only ends because two
    threads (the caller and one of the cpu lane) run items at the same time; results keep
    the items' order."""
    rt = Runtime(parallel=8, decode_threads=2)
    meet = threading.Barrier(2, timeout=60)
    names: list[str] = []

    def fn(x: int) -> int:
        names.append(threading.current_thread().name)
        meet.wait()  # BrokenBarrierError (a failure, not a hang) if no second thread comes
        return x * x

    try:
        assert spread(rt, fn, list(range(6))) == [x * x for x in range(6)]
    finally:
        rt.close()
    assert threading.current_thread().name in names and len(set(names)) == 2
    assert any(n.startswith("cvl-cpu") for n in names)


def test_spread_keeps_few_items_in_the_calling_thread() -> None:
    """Fewer than ``SPREAD_LEAST`` items (a one- or two-chunk write) start no thread, nor
    does a runtime of one decode thread."""
    me = threading.current_thread().name
    for rt, n in ((Runtime(parallel=8, decode_threads=2), SPREAD_LEAST - 1), (Runtime(8, decode_threads=1), 8)):
        names: list[str] = []

        def fn(x: int, names: list[str] = names) -> int:
            names.append(threading.current_thread().name)
            return x

        assert spread(rt, fn, list(range(n))) == list(range(n))
        assert names == [me] * n
        rt.close()


def test_a_stored_chunk_goes_into_its_shard_as_given(tmp_path) -> None:
    """The rewrite copies a StoredChunk's payload: one gzip'd at level 1 (not the level 9 the
    rewrite would use) is the shard's bytes for that chunk, and reads back as the chunk."""
    vol = sharded(tmp_path / "v")
    plain = np.arange(512, dtype=np.uint32).tobytes()
    fast = compression.compress(plain, "gzip", level=1)
    assert fast != shard_payload(plain, "gzip")
    store = vol.chunk_store()
    store.update_many({vol.scale.chunk_name((1, 2, 0)): StoredChunk(fast, "gzip")})
    cid = int(ShardLayout(vol.scale.sharding, vol.scale).chunk_ids(np.array([(1, 2, 0)]))[0])
    assert stored(vol) == {cid: fast}
    np.testing.assert_array_equal(vol[8:16, 16:24, 0:8][..., 0], np.arange(512, dtype=np.uint32).reshape(8, 8, 8, order="F"))


def test_a_stored_chunk_elsewhere_is_its_plain_bytes(tmp_path) -> None:
    """Given to a plain store, or to a shard of another data_encoding, a StoredChunk stores
    the plain chunk (it is called as a read-modify-write): never gzip'd bytes read as raw."""
    plain = np.arange(512, dtype=np.uint32).tobytes()
    gz = StoredChunk.of(plain, "gzip")
    raw_shard = sharded(tmp_path / "raw", data_encoding="raw")
    raw_shard.chunk_store().update_many({raw_shard.scale.chunk_name((0, 0, 0)): gz})
    assert list(stored(raw_shard).values()) == [plain]
    flat = cvl.Volume.create(f"file://{tmp_path}/flat", data_type="uint32", layer_type="image", size=(8, 8, 8),
                             chunk_size=(8, 8, 8), resolution=(1, 1, 1))
    flat.chunk_store().update_many({flat.scale.chunk_name((0, 0, 0)): gz})
    assert flat.chunk_store().get(flat.scale.chunk_name((0, 0, 0))) == plain
    assert StoredChunk.of(plain, "raw")() == plain and gz() == plain


@pytest.mark.parametrize("data_encoding", ["gzip", "raw"])
def test_a_many_chunk_upload_leaves_the_file_a_rewrite_gzipping_each_chunk_makes(tmp_path, rng, data_encoding) -> None:
    """An upload of a shard's 32 chunks (encoded ahead, on two threads) and a partial write
    (a read-modify-write in the rewrite) leave the file that building the shard from the
    plain chunks makes (each chunk gzip'd at level 9 there, as every rewrite did), in order,
    with the same index; the peers read it."""
    from test_shard_write import only_shard, peers_read

    truth = rng.integers(0, 7, (32, 32, 16, 1), dtype=np.uint32)
    vol = sharded(tmp_path / "v", data_encoding)
    vol = cvl.Volume(vol.url, parallel=4, decode_threads=2)
    vol[...] = truth
    vol[3:13, 20:22, 9:10] = 6
    truth[3:13, 20:22, 9:10] = 6
    _, plain = only_shard(vol, tmp_path / "v")
    assert len(plain) == 32
    if data_encoding == "gzip":
        assert all(s == compression.compress(plain[c], "gzip", level=9) for c, s in stored(vol).items())
    peers_read(vol.url, truth)
