"""Fuzzing the parsers that read untrusted bytes: chunk decoders, shard indices and info.

Every input either decodes or raises the documented error; nothing crashes, hangs or
allocates without bound. Bounded in examples so CI time stays small.
"""

from __future__ import annotations

import json

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import cloudvolume_lite as cvl
from cloudvolume_lite.codecs import ChunkSpec, get_codec
from cloudvolume_lite.info import Info, Scale
from cloudvolume_lite.stores.shard_index import parse_minishard_index
from cloudvolume_lite.stores.sharded import ShardedStore
from cloudvolume_lite.stores import StoreURL
from cloudvolume_lite.stores.memory import MemoryBuckets, MemoryStore

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _scale(encoding: str) -> Scale:
    return Scale.from_json({"key": "k", "size": [64, 64, 64], "resolution": [1, 1, 1], "chunk_sizes": [[16, 16, 8]],
                            "encoding": encoding, "compressed_segmentation_block_size": [8, 8, 4]})


def _cseg_chunk(seed: int, nc: int) -> tuple[bytes, ChunkSpec]:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 9, (16, 13, 7, nc)).astype(np.uint64) * np.uint64(2**35)
    spec = ChunkSpec((16, 13, 7, nc), np.dtype("uint64"), _scale("compressed_segmentation"), "fuzz/chunk")
    return get_codec("compressed_segmentation").encode(arr, spec), spec


@FUZZ
@given(seed=st.integers(0, 50), nc=st.integers(1, 2), flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8),
       cut=st.integers(0, 10**6))
def test_cseg_mutations(seed, nc, flips, cut):
    data, spec = _cseg_chunk(seed, nc)
    bad = bytearray(data)
    for pos, val in flips:
        bad[pos % len(bad)] = val
    bad = bytes(bad[: max(0, len(bad) - cut % 64)])
    codec = get_codec("compressed_segmentation")
    out = np.zeros(spec.shape, np.uint64, order="F")
    calls = [
        lambda: codec.decode(bad, spec),
        lambda: codec.decode_points(bad, spec, np.array([[0, 0, 0], [15, 12, 6], [7, 5, 3]])),
        lambda: codec.decode_region(bad, spec, [3, 2, 1], [12, 13, 6]),
        lambda: codec.decode_into(bad, spec, [0, 0, 0], [16, 13, 7], slice(0, nc, 1), out, [0, 0, 0]),
    ]
    for call in calls:
        try:
            call()
        except cvl.DecodeError:
            pass


@FUZZ
@given(blob=st.binary(max_size=600),
       enc=st.sampled_from(["raw", "png", "jpeg", "compressed_segmentation", "compresso", "crackle"]),
       prefix=st.sampled_from([b"", b"cpso", b"crkl", b"\x89PNG\r\n\x1a\n", b"\xff\xd8"]))
def test_random_bytes_to_every_decoder(blob, enc, prefix):
    blob = prefix + blob
    dtype = {"raw": "uint16", "png": "uint8", "jpeg": "uint8"}.get(enc, "uint32")
    spec = ChunkSpec((8, 4, 2, 1), np.dtype(dtype), _scale(enc), "fuzz/chunk")
    try:
        out = get_codec(enc).decode(blob, spec)
        assert out.shape == spec.shape
    except cvl.DecodeError:
        pass


@FUZZ
@given(words=st.lists(st.integers(0, 2**64 - 1), max_size=30), index_bytes=st.sampled_from([16, 128, 4096]))
def test_minishard_index_parser(words, index_bytes):
    data = np.array(words, dtype="<u8").tobytes()
    try:
        idx = parse_minishard_index(data, index_bytes, "fuzz.shard")
        assert len(idx.ids) == len(words) // 3
    except cvl.DecodeError:
        pass


@FUZZ
@given(shard=st.binary(max_size=400), gzip_index=st.booleans(), gzip_data=st.booleans())
def test_garbage_shard_files(shard, gzip_index, gzip_data):
    info = Info.from_json({"type": "image", "data_type": "uint8", "num_channels": 1, "scales": [{
        "key": "s", "size": [32, 32, 8], "resolution": [1, 1, 1], "chunk_sizes": [[8, 8, 8]], "encoding": "raw",
        "sharding": {"@type": "neuroglancer_uint64_sharded_v1", "preshift_bits": 0, "hash": "identity",
                     "minishard_bits": 2, "shard_bits": 0, "minishard_index_encoding": "gzip" if gzip_index else "raw",
                     "data_encoding": "gzip" if gzip_data else "raw"}}]})
    scale = info.scales[0]
    mem = MemoryStore(StoreURL("mem", "fuzz", ""), MemoryBuckets())
    mem.put("0.shard", shard)
    store = ShardedStore(mem, scale)
    for cell in [(0, 0, 0), (1, 0, 0), (3, 3, 0)]:
        try:
            data = store.get(scale.chunk_name(cell))
            assert data is None or isinstance(data, (bytes, bytearray))
        except cvl.DecodeError:
            pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 70) | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@FUZZ
@given(field=st.sampled_from(["type", "data_type", "num_channels", "scales", "key", "size", "voxel_offset",
                               "resolution", "chunk_sizes", "encoding", "sharding", "compressed_segmentation_block_size"]),
       value=json_values)
# values that once escaped as ValueError/OverflowError (tests/test_info_hostile.py has many more)
@example(field="size", value=[float("nan"), 1, 1])
@example(field="size", value=[float("inf"), 1, 1])
@example(field="voxel_offset", value=[0, float("-inf"), 0])
@example(field="compressed_segmentation_block_size", value=[8, 8, float("nan")])
@example(field="size", value=[1e300, 1, 1])
@example(field="num_channels", value=10**12)
@example(field="chunk_sizes", value=[[-8, 8, 8]])
def test_info_with_any_field_value(field, value):
    obj = {"type": "segmentation", "data_type": "uint64", "num_channels": 1, "scales": [{
        "key": "8_8_8", "size": [10, 10, 10], "resolution": [8, 8, 8], "chunk_sizes": [[8, 8, 8]],
        "encoding": "compressed_segmentation", "compressed_segmentation_block_size": [8, 8, 8]}]}
    if field in obj:
        obj[field] = value
    else:
        obj["scales"][0][field] = value
    try:
        info = Info.from_bytes(json.dumps(obj).encode())
    except cvl.InfoError as e:
        assert field in str(e), f"{e} does not name {field}"
    else:
        Info.from_bytes(info.to_bytes())  # what parsed writes back and parses again
