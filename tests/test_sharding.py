"""Sharded volumes: the spec's vectors and worked example, TensorStore-written shards, our shards."""

from __future__ import annotations

import json

import numpy as np
import pytest

import cloudvolume_lite as cvl
from cloudvolume_lite.codecs import ChunkSpec, get_codec
from cloudvolume_lite.info import Info
from cloudvolume_lite.sharding import (
    ShardLayout,
    compressed_morton,
    murmurhash3_x86_128_low64,
    propose_sharding,
)
from cloudvolume_lite.stores.sharded import ShardedStore
from cloudvolume_lite.stores import open_store
from oracles import random_volume, ts_write


def test_hash_vectors():
    keys = np.array([0, 1, 2, 12345, 2**63], dtype=np.uint64)
    want = [0x4772B084E028AE41, 0xE8BD67D616D4CE9A, 0xD62F9CD21B013F5A, 0x1D31307E3A65E510, 0x998A35E4316ACFA8]
    assert [int(v) for v in murmurhash3_x86_128_low64(keys)] == want
    assert int(murmurhash3_x86_128_low64(np.array([247], np.uint64))[0]) == 0xF0E8AD8827328743


def test_morton_worked_example():
    assert int(compressed_morton(np.array([[5, 7, 3]]), [16, 10, 4])[0]) == 247
    # a size-1 axis gets no bits (the strict '<' of the spec)
    assert compressed_morton(np.array([[1, 0, 1]]), [2, 1, 2]).tolist() == [0b11]


def _scale(sharding, size=(1000, 600, 200), chunk=(64, 64, 64)):
    return Info.from_json({
        "type": "image", "data_type": "uint8", "num_channels": 1,
        "scales": [{"key": "s", "size": list(size), "resolution": [1, 1, 1], "chunk_sizes": [list(chunk)],
                    "encoding": "raw", "sharding": {"@type": "neuroglancer_uint64_sharded_v1", **sharding}}],
    }).scales[0]


def test_worked_example_placement():
    ident = _scale(dict(preshift_bits=2, hash="identity", minishard_bits=3, shard_bits=3))
    shard, mini = ShardLayout(ident.sharding, ident).locate(np.array([247], np.uint64))
    assert (int(shard[0]), int(mini[0])) == (7, 5)
    mm = _scale(dict(preshift_bits=0, hash="murmurhash3_x86_128", minishard_bits=3, shard_bits=3))
    shard, mini = ShardLayout(mm.sharding, mm).locate(np.array([247], np.uint64))
    assert (int(shard[0]), int(mini[0])) == (0, 3)


def test_worked_example_file_written_by_tensorstore(tmp_path):
    import tensorstore as ts

    spec = {
        "driver": "neuroglancer_precomputed", "kvstore": {"driver": "file", "path": str(tmp_path / "v")},
        "multiscale_metadata": {"type": "image", "data_type": "uint8", "num_channels": 1},
        "scale_metadata": {"size": [1000, 600, 200], "resolution": [1, 1, 1], "chunk_size": [64, 64, 64],
                           "encoding": "raw", "sharding": {"@type": "neuroglancer_uint64_sharded_v1",
                           "preshift_bits": 2, "hash": "identity", "minishard_bits": 3, "shard_bits": 3,
                           "minishard_index_encoding": "raw", "data_encoding": "raw"}},
    }
    t = ts.open(spec, create=True).result()
    block = np.random.default_rng(0).integers(0, 255, (64, 64, 8, 1), dtype=np.uint8)
    t[320:384, 448:512, 192:200] = block
    key_dir = tmp_path / "v" / "1_1_1"
    data = (key_dir / "7.shard").read_bytes()
    assert len(data) == 32920
    index = np.frombuffer(data[:128], "<u8").reshape(8, 2)
    assert index[5].tolist() == [32768, 32792] and not np.delete(index, 5, 0).any()
    vol = cvl.Volume(str(tmp_path / "v"), fill_missing=True)
    np.testing.assert_array_equal(vol[320:384, 448:512, 192:200], block)
    assert not vol[0:64, 0:64, 0:64].any()
    with pytest.raises(cvl.ChunkNotFoundError):
        cvl.Volume(str(tmp_path / "v"))[0:10, 0:10, 0:10]


SHARDINGS = [
    dict(preshift_bits=0, hash="identity", minishard_bits=2, shard_bits=3, minishard_index_encoding="raw", data_encoding="raw"),
    dict(preshift_bits=3, hash="identity", minishard_bits=2, shard_bits=4, minishard_index_encoding="gzip", data_encoding="gzip"),
    dict(preshift_bits=1, hash="murmurhash3_x86_128", minishard_bits=3, shard_bits=2, minishard_index_encoding="gzip", data_encoding="raw"),
    dict(preshift_bits=0, hash="murmurhash3_x86_128", minishard_bits=0, shard_bits=0, minishard_index_encoding="raw", data_encoding="gzip"),
]


@pytest.mark.parametrize("sharding", SHARDINGS, ids=lambda s: f"{s['hash'][:5]}-p{s['preshift_bits']}-{s['data_encoding']}")
@pytest.mark.parametrize("encoding,dtype,channels", [("raw", "uint8", 1), ("raw", "uint16", 2), ("compressed_segmentation", "uint64", 1)])
def test_tensorstore_sharded_read(tmp_path, rng, sharding, encoding, dtype, channels):
    labels = 300 if encoding == "compressed_segmentation" else None
    truth = random_volume((75, 50, 21, channels), dtype, rng, labels=labels)
    url = ts_write(tmp_path / "v", truth, offset=(-5, 7, -2), chunk=(16, 16, 8), encoding=encoding, sharding=sharding)
    vol = cvl.Volume(url)
    np.testing.assert_array_equal(vol[...], truth)
    np.testing.assert_array_equal(vol[3:60:2, 10:50, -1:15], truth[8:65:2, 3:43, 1:17])
    pts = np.stack([rng.integers(lo, hi, 300) for lo, hi in zip(vol.bounds.minpt, vol.bounds.maxpt)], 1)
    local = pts - np.asarray(vol.voxel_offset)
    want = truth[local[:, 0], local[:, 1], local[:, 2]]
    np.testing.assert_array_equal(vol.scattered_points(pts), want[:, 0] if channels == 1 else want)


def test_tensorstore_sharded_jpeg(tmp_path):
    import tensorstore as ts

    x, y, z = np.meshgrid(np.arange(70), np.arange(40), np.arange(12), indexing="ij")
    truth = (100 + 50 * np.sin(x / 6) * np.cos(y / 5) + 2 * z).astype(np.uint8)[..., None]
    url = ts_write(tmp_path / "v", truth, chunk=(16, 16, 8), encoding="jpeg", sharding=SHARDINGS[1], offset=(2, -3, 0))
    ours = cvl.Volume(url)[...]
    theirs = np.asarray(ts.open({"driver": "neuroglancer_precomputed", "kvstore": url}).result().read().result())
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 2


def write_sharded(url, truth, sharding, encoding="raw", chunk=(16, 16, 8), offset=(0, 0, 0)):
    """Write a whole volume through ShardedStore.put_many (our writer)."""
    scale = {"key": "s", "size": list(truth.shape[:3]), "voxel_offset": list(offset), "resolution": [4, 4, 40],
             "chunk_sizes": [list(chunk)], "encoding": encoding,
             "sharding": {"@type": "neuroglancer_uint64_sharded_v1", **sharding}}
    if encoding == "compressed_segmentation":
        scale["compressed_segmentation_block_size"] = [8, 8, 8]
    info = Info.from_json({"type": "segmentation" if encoding != "raw" else "image", "data_type": truth.dtype.name,
                           "num_channels": truth.shape[3], "scales": [scale]})
    root = open_store(url)
    root.put("info", info.to_bytes())
    sc = info.scales[0]
    store = ShardedStore(root.child(sc.key), sc)
    codec = get_codec(encoding)
    items = {}
    for cell in sc.cells(sc.bounds):
        b = sc.chunk_bbox(cell).translate([-o for o in offset])
        part = truth[tuple(slice(l, h) for l, h in zip(b.minpt, b.maxpt))]
        items[sc.chunk_name(cell)] = codec.encode(part, ChunkSpec(part.shape, truth.dtype, sc, "x"))
    store.put_many(items)
    return store, sc


@pytest.mark.parametrize("sharding", SHARDINGS[:3], ids=["ident-raw", "ident-gzip", "murmur"])
@pytest.mark.parametrize("encoding,dtype", [("raw", "uint16"), ("compressed_segmentation", "uint64")])
def test_peers_read_our_shards(tmp_path, rng, sharding, encoding, dtype):
    import tensorstore as ts
    from cloudvolume import CloudVolume

    labels = 100 if encoding != "raw" else None
    truth = random_volume((70, 45, 19, 1), dtype, rng, labels=labels)
    url = "file://" + str(tmp_path / "v")
    write_sharded(url, truth, sharding, encoding=encoding, offset=(3, -4, 1))
    np.testing.assert_array_equal(cvl.Volume(url)[...], truth)
    theirs = ts.open({"driver": "neuroglancer_precomputed", "kvstore": url}).result().read().result()
    np.testing.assert_array_equal(np.asarray(theirs), truth)
    cv = CloudVolume(url, progress=False)
    np.testing.assert_array_equal(np.asarray(cv[:, :, :]), truth)


def test_one_chunk_write_keeps_the_rest_of_the_shard(tmp_path, rng):
    truth = random_volume((64, 64, 16, 1), "uint8", rng)
    sharding = dict(preshift_bits=2, hash="identity", minishard_bits=2, shard_bits=1,
                    minishard_index_encoding="gzip", data_encoding="gzip")
    url = "file://" + str(tmp_path / "v")
    store, sc = write_sharded(url, truth, sharding)
    new = np.full((16, 16, 8, 1), 7, np.uint8)
    store.put("16-32_16-32_8-16", get_codec("raw").encode(new, ChunkSpec(new.shape, new.dtype, sc, "x")))
    want = truth.copy()
    want[16:32, 16:32, 8:16] = 7
    np.testing.assert_array_equal(cvl.Volume(url)[...], want)
    store.delete("0-16_0-16_0-8")
    got = cvl.Volume(url, fill_missing=True)[...]
    want[0:16, 0:16, 0:8] = 0
    np.testing.assert_array_equal(got, want)
    assert "0-16_0-16_0-8" not in set(store.list()) and "16-32_16-32_8-16" in set(store.list())


def test_proposal_matches_tensorstore_choice():
    p = propose_sharding((1024, 1024, 512), (64, 64, 64), "uint8", target_shard_bytes=512**3)
    s = p.sharding
    assert (s.preshift_bits, s.minishard_bits, s.shard_bits, s.hash) == (9, 0, 2, "identity")
    assert p.shard_shape == (512, 512, 512) and p.chunks_per_shard == 512


def test_corrupt_shard_index_is_decode_error(tmp_path, rng):
    truth = random_volume((32, 32, 8, 1), "uint8", rng)
    sharding = dict(preshift_bits=0, hash="identity", minishard_bits=1, shard_bits=0,
                    minishard_index_encoding="raw", data_encoding="raw")
    url = "file://" + str(tmp_path / "v")
    write_sharded(url, truth, sharding)
    path = tmp_path / "v" / "s" / "0.shard"
    data = bytearray(path.read_bytes())
    data[0:16] = np.array([0, 2**40], "<u8").tobytes()  # minishard 0 index claims 1 TiB
    path.write_bytes(bytes(data))
    with pytest.raises(cvl.DecodeError, match="0.shard"):
        cvl.Volume(url)[...]
    path.write_bytes(bytes(data[:20]))  # truncated shard
    with pytest.raises(cvl.DecodeError):
        cvl.Volume(url)[...]


def test_reader_sees_a_rewritten_shard(tmp_path, rng):
    """A Volume whose shard indices are cached keeps reading correctly after another writer
    rewrites the shard (its cached offsets are stale: the read notices and re-reads them)."""
    truth = random_volume((32, 32, 8, 1), "uint8", rng)
    sharding = dict(preshift_bits=0, hash="identity", minishard_bits=1, shard_bits=0,
                    minishard_index_encoding="gzip", data_encoding="gzip")
    url = "file://" + str(tmp_path / "v")
    store, sc = write_sharded(url, truth, sharding)
    reader = cvl.Volume(url)
    np.testing.assert_array_equal(reader[...], truth)  # indices now cached
    # another writer drops one chunk and changes another: every offset in the file moves
    new = np.full((16, 16, 8, 1), 9, np.uint8)
    store.put_many({"0-16_0-16_0-8": None,
                    "16-32_0-16_0-8": get_codec("raw").encode(new, ChunkSpec(new.shape, new.dtype, sc, "x"))})
    want = truth.copy()
    want[0:16, 0:16] = 0
    want[16:32, 0:16] = 9
    got = cvl.Volume(url, fill_missing=True)[...]
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(reader[16:32, 0:32, 0:8], want[16:32])
