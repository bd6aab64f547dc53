"""to_dask on a process-based LocalCluster, and store_dask's aligned, distributed writes."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import cloudvolume_lite as cvl
from oracles import random_volume, fixture_write

da = pytest.importorskip("dask.array")


@pytest.fixture(scope="module")
def client():
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None, silence_logs=40)
    with Client(cluster) as c:
        yield c
    cluster.close()


def test_to_dask_on_cluster_equals_direct_read(tmp_path, rng, client):
    truth = random_volume((70, 50, 20, 2), "uint16", rng)
    url = fixture_write(tmp_path / "v", truth, offset=(-5, 3, 1), chunk=(16, 16, 8))
    vol = cvl.Volume(url)
    arr = vol.to_dask()
    assert arr.shape == (70, 50, 20, 2) and arr.chunks[0] == (16, 16, 16, 16, 6)
    np.testing.assert_array_equal(arr.compute(), truth)
    grouped = vol.to_dask(chunks=(40, 40, 20))
    assert grouped.chunks[:3] == ((40, 30), (40, 10), (20,))  # as asked
    np.testing.assert_array_equal(client.compute(grouped[10:60, :, 3:9]).result(), truth[10:60, :, 3:9])
    # tasks carry the volume description, not data
    graph = dict(arr.__dask_graph__())
    assert max(len(pickle.dumps(v)) for v in graph.values()) < 4000


def test_to_dask_sharded_blocks_are_shards(tmp_path, rng, client):
    truth = random_volume((64, 64, 16, 1), "uint64", rng, labels=30)
    sharding = dict(preshift_bits=2, hash="identity", minishard_bits=2, shard_bits=4,
                    minishard_index_encoding="gzip", data_encoding="gzip")
    url = fixture_write(tmp_path / "v", truth, chunk=(8, 8, 8), encoding="compressed_segmentation", sharding=sharding)
    arr = cvl.Volume(url).to_dask()
    # grid 8x8x2 -> Morton bits x,y,z,x for the 4 within-shard bits: 4x2x2 chunks per shard
    assert arr.chunks[:3] == ((32, 32), (16, 16, 16, 16), (16,))
    np.testing.assert_array_equal(arr.compute(), truth)


def test_store_dask_round_trip_on_cluster(tmp_path, rng, client):
    truth = random_volume((48, 40, 16, 1), "uint8", rng)
    vol = cvl.Volume.create(str(tmp_path / "out"), data_type="uint8", layer_type="image", size=(48, 40, 16),
                            chunk_size=(16, 16, 8), resolution=(4, 4, 40), voxel_offset=(3, 0, -2))
    darr = da.from_array(truth, chunks=(16, 32, 8, 1))
    cvl.store_dask(darr, vol)
    np.testing.assert_array_equal(cvl.Volume(vol.url)[...], truth)


def test_store_dask_refuses_misaligned(tmp_path, rng):
    truth = random_volume((48, 40, 16, 1), "uint8", rng)
    vol = cvl.Volume.create(str(tmp_path / "out"), data_type="uint8", layer_type="image", size=(48, 40, 16),
                            chunk_size=(16, 16, 8), resolution=(4, 4, 40))
    darr = da.from_array(truth, chunks=(10, 40, 16, 1))
    with pytest.raises(cvl.RequestError, match="rechunk=True"):
        cvl.store_dask(darr, vol)
    cvl.store_dask(darr, vol, rechunk=True, compute=True)
    np.testing.assert_array_equal(vol[...], truth)
    with pytest.raises(cvl.RequestError, match="shape"):
        cvl.store_dask(da.zeros((4, 4, 4, 1), chunks=4, dtype="uint8"), vol)


def test_store_dask_sharded_uses_whole_shards(tmp_path, rng):
    truth = random_volume((64, 64, 16, 1), "uint16", rng)
    sharding = dict(preshift_bits=2, hash="identity", minishard_bits=2, shard_bits=4,
                    minishard_index_encoding="gzip", data_encoding="gzip")
    vol = cvl.Volume.create(str(tmp_path / "out"), data_type="uint16", layer_type="image", size=(64, 64, 16),
                            chunk_size=(8, 8, 8), resolution=(4, 4, 40), sharding=sharding)
    with pytest.raises(cvl.RequestError, match=r"\(32, 16, 16\)"):  # one shard = 4x2x2 chunks
        cvl.store_dask(da.from_array(truth, chunks=(16, 16, 16, 1)), vol)
    cvl.store_dask(da.from_array(truth, chunks=(32, 32, 16, 1)), vol)
    np.testing.assert_array_equal(vol[...], truth)
