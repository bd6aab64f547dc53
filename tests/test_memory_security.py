"""Memory stays bounded on big reads; credentials never leak into reprs or errors."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import cloudvolume_lite as cvl
from cloudvolume_lite.stores import StoreRegistry


def test_full_read_peak_is_output_plus_a_few_chunks(tmp_path):
    vol = cvl.Volume.create(str(tmp_path / "v"), data_type="uint16", layer_type="image", size=(256, 256, 128),
                            chunk_size=(32, 32, 32), resolution=(1, 1, 1), compression="gzip")
    vol[...] = np.random.default_rng(0).integers(0, 60000, (256, 256, 128, 1), dtype=np.uint16)
    chunk_bytes = 32 * 32 * 32 * 2
    for lru in (0, 4 * chunk_bytes):  # an LRU far smaller than the volume must not grow past its limit
        reader = cvl.Volume(str(tmp_path / "v"), parallel=4, lru_bytes=lru)
        tracemalloc.start()
        out = reader[...]
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        # stated bound: the output, plus per worker a compressed and a decompressed chunk, plus the LRU
        bound = out.nbytes + 4 * 3 * chunk_bytes + lru + (1 << 20)
        assert peak <= bound, (peak, bound)
        if reader.lru is not None:
            assert reader.lru.nbytes <= lru


def test_secrets_stay_out_of_reprs_and_errors(s3_endpoint):
    secret = "AKIA-very-secret-key"
    reg = StoreRegistry()
    store = reg.open("s3://no-such-bucket/x", secrets={"endpoint_url": s3_endpoint, "aws_access_key_id": "id",
                                                        "aws_secret_access_key": secret})
    assert secret not in repr(store)
    with pytest.raises(cvl.VolumeError) as e:
        cvl.Volume("s3://no-such-bucket/x", secrets={"endpoint_url": s3_endpoint, "aws_access_key_id": "id",
                                                     "aws_secret_access_key": secret})
    assert secret not in str(e.value) and secret not in repr(e.value)
    http = reg.open("http://user:hunter2@127.0.0.1:9/vol", secrets={"headers": {"Authorization": "Bearer tok-123"}})
    assert "hunter2" not in repr(http) and "tok-123" not in repr(http)


def test_file_store_refuses_keys_that_escape(tmp_path):
    store = StoreRegistry().open(str(tmp_path))
    for key in ["../outside", "a/../../b", "/etc/passwd"]:
        with pytest.raises(cvl.RequestError):
            store.put(key, b"x")
        with pytest.raises(cvl.RequestError):
            store.get(key)
