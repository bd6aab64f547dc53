"""Hostile ``info`` values are InfoErrors that name the field, deterministically.

The fuzz test in test_fuzz.py samples such values at random; these are the ones that once
escaped as ValueError, OverflowError, MemoryError or RecursionError, pinned so that every run
checks them.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

import cloudvolume_lite as cvl
from cloudvolume_lite.info import Info

NAN, INF = float("nan"), float("inf")
BASE = {"@type": "neuroglancer_multiscale_volume", "type": "segmentation", "data_type": "uint64", "num_channels": 1,
        "scales": [{"key": "8_8_8", "size": [10, 10, 10], "voxel_offset": [0, 0, 0], "resolution": [8, 8, 8],
                    "chunk_sizes": [[8, 8, 8]], "encoding": "compressed_segmentation",
                    "compressed_segmentation_block_size": [8, 8, 8]}]}
SHARD = {"@type": "neuroglancer_uint64_sharded_v1", "preshift_bits": 0, "hash": "identity", "minishard_bits": 2,
         "shard_bits": 1, "minishard_index_encoding": "raw", "data_encoding": "raw"}

SCALAR_HOSTILE = [NAN, INF, -INF, 1e300, -1e300, 2**80, -(2**80), [[1, 2], 3, 4], "8", None, True, {"a": 1}]
TRIPLE_HOSTILE = [[NAN, 1, 1], [INF, 1, 1], [1, -INF, 1], [1e300, 1, 1], [2**80, 1, 1], [[1], [2], [3]],
                  ["8", "8", "8"], [1, 1], [1, 1, 1, 1], [1.5, 1, 1], [True, 1, 1]]

CASES = (
    [(("num_channels",), v, "num_channels") for v in [*SCALAR_HOSTILE, 1e12, 10**12, 0, -1, 2**16 + 1]]
    + [(("data_type",), v, "data_type") for v in [*SCALAR_HOSTILE, "float16", "complex64", "bool"]]
    + [(("type",), v, "type") for v in [NAN, 2**80, [["image"]], None]]
    + [(("scales",), v, "scales") for v in [*SCALAR_HOSTILE, [], [NAN], [[]]]]
    + [(("scales", 0, f), v, f) for f in ("size", "voxel_offset", "chunk_sizes", "compressed_segmentation_block_size")
       for v in [*SCALAR_HOSTILE, *TRIPLE_HOSTILE]
       if v is not None or f in ("size", "chunk_sizes")]  # voxel_offset and the block size are optional
    + [(("scales", 0, "resolution"), v, "resolution") for v in [*SCALAR_HOSTILE, *TRIPLE_HOSTILE[:-4],
                                                                 [0, 8, 8], [-8, 8, 8], [1e-300, 8, 8]]]
    + [(("scales", 0, "key"), v, "key") for v in [NAN, 2**80, ["a"], "", "/", "a\x00b", None]]
    + [(("scales", 0, "encoding"), v, "encoding") for v in [NAN, 2**80, ["raw"], "", None]]
    + [(("scales", 0, "sharding"), v, "sharding") for v in [NAN, INF, 2**80, "x", [SHARD]]]
    # negative chunk sizes, and a size whose voxel count overflows int64
    + [(("scales", 0, "chunk_sizes"), [[-8, 8, 8]], "chunk_sizes"), (("scales", 0, "chunk_sizes"), [[0, 8, 8]], "chunk_sizes"),
       (("scales", 0, "chunk_sizes"), [[8, 8, 8], [8, -1, 8]], "chunk_sizes"),
       (("scales", 0, "chunk_sizes"), [[2**31, 2**31, 2**31]], "chunk_sizes"),
       (("scales", 0, "chunk_sizes"), [[4096, 4096, 4096]], "chunk_sizes"),  # 512 GiB of uint64 per chunk
       (("scales", 0, "size"), [2**22, 2**22, 2**22], "size"),
       (("scales", 0, "size"), [2**53, 2**53, 1], "size"),
       (("scales", 0, "size"), [-10, 10, 10], "size"),
       (("scales", 0, "voxel_offset"), [2**53, 0, 0], "voxel_offset"),
       (("scales", 0, "compressed_segmentation_block_size"), [4096, 4096, 4096], "compressed_segmentation_block_size")]
)


def _mutated(path, value) -> dict:
    obj = copy.deepcopy(BASE)
    target = obj
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return obj


@pytest.mark.parametrize("path,value,field", CASES, ids=[f"{c[0][-1]}={c[1]!r}"[:60] for c in CASES])
def test_hostile_field_value_is_an_info_error_naming_the_field(path, value, field):
    with pytest.raises(cvl.InfoError, match=field):
        Info.from_bytes(json.dumps(_mutated(path, value)).encode())
    with pytest.raises(cvl.InfoError, match=field):
        Info.from_json(_mutated(path, value))


@pytest.mark.parametrize("bits", [
    dict(minishard_bits=30), dict(minishard_bits=64, shard_bits=0), dict(minishard_bits=21),
    dict(shard_bits=65), dict(preshift_bits=-1), dict(preshift_bits=65), dict(minishard_bits=NAN),
    dict(shard_bits=1.0), dict(shard_bits=True), dict(minishard_bits=20, shard_bits=50), dict(preshift_bits=2**80),
    dict(hash=NAN), dict(hash=["identity"]), dict(data_encoding=2**80), dict(minishard_index_encoding=["gzip"]),
    {"@type": NAN},
])
def test_hostile_sharding_values(bits):
    obj = _mutated(("scales", 0, "sharding"), {**SHARD, **bits})
    with pytest.raises(cvl.InfoError, match="sharding"):
        Info.from_bytes(json.dumps(obj).encode())


def test_the_sharding_limits_still_allow_real_specs():
    for bits in [dict(preshift_bits=64, minishard_bits=0, shard_bits=0), dict(minishard_bits=20, shard_bits=44),
                 dict(minishard_bits=0, shard_bits=64), dict(preshift_bits=9, minishard_bits=6, shard_bits=15)]:
        obj = _mutated(("scales", 0, "sharding"), {**SHARD, **bits})
        assert Info.from_json(obj).scales[0].sharding.minishard_bits == bits["minishard_bits"]


def test_deeply_nested_json_is_an_info_error():
    deep = b'{"type": "image", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(cvl.InfoError, match="nests JSON too deeply"):
        Info.from_bytes(deep)
    # parseable by json, but deeper than an info needs (near the recursion limit,
    # json.dumps(indent=...) could not write it back: it recurses in Python)
    nested = b"[" * 500 + b"]" * 500
    top = json.dumps(dict(BASE, tool="@")).encode().replace(b'"@"', nested)
    in_scale = json.dumps(_mutated(("scales", 0, "tool"), "@")).encode().replace(b'"@"', nested)
    for data in (top, in_scale):
        with pytest.raises(cvl.InfoError, match="'tool' nests"):
            Info.from_bytes(data)
    shallow = dict(BASE, tool={"a": [[{"b": [1, 2]}]]})
    assert json.loads(Info.from_json(shallow).to_bytes())["tool"] == shallow["tool"]


def test_limits_keep_ordinary_large_volumes():
    obj = _mutated(("scales", 0, "size"), [2**20, 2**20, 2**14])  # a whole-brain EM volume at 4 nm
    obj["scales"][0]["voxel_offset"] = [-(2**40), 2**40, 0]
    obj["scales"][0]["chunk_sizes"] = [[256, 256, 256], [1024, 1024, 16]]
    obj["num_channels"] = 1
    info = Info.from_json(obj)
    assert info.scales[0].size == (2**20, 2**20, 2**14)
    assert Info.from_json(_mutated(("num_channels",), 64)).num_channels == 64
    # integral floats (8.0) are integers, as some writers emit them
    assert Info.from_json(_mutated(("scales", 0, "size"), [10.0, 10, 10])).scales[0].size == (10, 10, 10)


def test_a_hostile_info_on_disk_fails_to_open(tmp_path):
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "info").write_text(json.dumps(_mutated(("scales", 0, "size"), [NAN, 10, 10])))
    with pytest.raises(cvl.InfoError, match="size"):
        cvl.Volume("file://" + str(tmp_path / "v"))


@pytest.mark.parametrize("kw,field", [
    (dict(size=[NAN, 10, 10]), "size"), (dict(size=[INF, 10, 10]), "size"), (dict(size=[2**22] * 3), "size"),
    (dict(size=5), "size"), (dict(size="abc"), "size"), (dict(size=[1e300, 1, 1]), "size"),
    (dict(chunk_size=[-8, 8, 8]), "chunk_sizes"), (dict(chunk_size=[4096] * 3), "chunk_sizes"),
    (dict(resolution=[NAN, 8, 8]), "resolution"), (dict(resolution=["a", 8, 8]), "resolution"),
    (dict(resolution=8), "resolution"), (dict(voxel_offset=[2**80, 0, 0]), "voxel_offset"),
    (dict(voxel_offset=None), "voxel_offset"),
    (dict(num_channels=10**12), "num_channels"), (dict(num_channels=1e12), "num_channels"),
    (dict(num_channels="3"), "num_channels"), (dict(data_type="complex64"), "data_type"),
    (dict(data_type=object()), "data_type"), (dict(data_type="not a type"), "data_type"),
    (dict(encoding=3), "encoding"), (dict(layer_type=NAN), "layer_type"),
    (dict(sharding=dict(SHARD, minishard_bits=30)), "minishard_bits"),
    (dict(sharding=dict(SHARD, minishard_bits=64, shard_bits=0)), "minishard_bits"),
    (dict(sharding="yes"), "sharding"),
    (dict(encoding="compressed_segmentation", compressed_segmentation_block_size=[NAN, 8, 8]),
     "compressed_segmentation_block_size"),
])
def test_hostile_create_arguments_are_request_errors(kw, field):
    args = dict(data_type="uint64", layer_type="segmentation", size=[10, 10, 10], chunk_size=[8, 8, 8],
                resolution=[8, 8, 8])
    args.update(kw)
    with pytest.raises(cvl.RequestError, match=field):
        cvl.Volume.create("mem://hostile/create", **args)


def test_create_takes_numpy_values():
    vol = cvl.Volume.create("mem://hostile/np", data_type=np.dtype("uint8"), layer_type="image",
                            size=np.array([10, 10, 4]), chunk_size=np.array([8, 8, 4]),
                            resolution=np.array([4, 4, 40]), voxel_offset=np.zeros(3, int), num_channels=np.int64(2))
    assert vol.shape == (10, 10, 4, 2) and vol.resolution == (4, 4, 40)
    assert json.loads(vol.store.get("info"))["scales"][0]["key"] == "4_4_40"
