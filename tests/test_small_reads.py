"""A read of a few chunks from local disk runs in the calling thread, unless each chunk must
be inflated (gzip'd shards): then the chunks are spread over the cores."""

from __future__ import annotations

import numpy as np
import pytest

import cloudvolume_lite as cvl
from cloudvolume_lite.read import SMALL_READ

SHARDING = {"@type": "neuroglancer_uint64_sharded_v1", "preshift_bits": 3, "hash": "identity", "minishard_bits": 1,
            "shard_bits": 2, "minishard_index_encoding": "gzip", "data_encoding": "gzip"}


def _volume(tmp_path, sharding) -> cvl.Volume:
    arr = np.random.default_rng(3).integers(0, 255, (64, 64, 32, 1), dtype=np.uint8)
    url = f"file://{tmp_path}/v"
    vol = cvl.Volume.create(url, data_type="uint8", layer_type="image", size=arr.shape[:3], chunk_size=(16, 16, 16),
                            resolution=(1, 1, 1), encoding="raw", sharding=sharding)
    vol[:, :, :] = arr
    return vol


@pytest.mark.parametrize("sharding, spread", [(None, False), (SHARDING, True),
                                              ({**SHARDING, "data_encoding": "raw"}, False)],
                         ids=["plain", "gzip-shards", "raw-shards"])
def test_a_few_chunks_go_to_other_threads_only_when_they_inflate(tmp_path, sharding, spread):
    url = _volume(tmp_path, sharding).url
    vol = cvl.Volume(url, parallel=4, decode_threads=2)
    assert vol.chunk_store(0).inflates is spread
    box = np.s_[8:24, 8:24, 0:16]  # 2x2x1 = 4 chunks
    assert 4 <= SMALL_READ
    got = vol[box]
    truth = cvl.Volume(url)[:, :, :][box]
    np.testing.assert_array_equal(got, truth)
    assert ("io" in vol.runtime._lanes) is spread  # a lane is made only when a second loop runs
