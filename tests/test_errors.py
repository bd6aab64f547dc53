"""Bad input gets a specific error that says what was asked and what to do."""

from __future__ import annotations

import gzip
import json
import os

import numpy as np
import pytest

import cloudvolume_lite as cvl
from oracles import random_volume, fixture_write


@pytest.fixture
def small(tmp_path, rng):
    truth = random_volume((40, 30, 20, 1), "uint16", rng)
    url = fixture_write(tmp_path / "v", truth, offset=(10, -5, 0), chunk=(16, 16, 8))
    return url, truth, tmp_path / "v"


def test_out_of_bounds_names_request_and_bounds(small):
    url, _, _ = small
    vol = cvl.Volume(url)
    with pytest.raises(cvl.OutOfBoundsError) as e:
        vol[0:20, 0:10, 0:5]
    msg = str(e.value)
    assert "0:20" in msg and "10:50" in msg and "bounded=False" in msg
    assert isinstance(e.value, IndexError) and isinstance(e.value, cvl.VolumeError)


def test_unbounded_reads_outside_as_zeros(small):
    url, truth, _ = small
    vol = cvl.Volume(url, bounded=False)
    got = vol[0:20, -10:0, 15:25]
    assert got.shape == (20, 10, 10, 1)
    want = np.zeros_like(got)
    want[10:20, 5:10, 0:5] = truth[0:10, 0:5, 15:20]
    np.testing.assert_array_equal(got, want)
    assert not vol[1000:1010, 0:2, 0:2].any()


def test_missing_chunk_error_and_fill_missing(small):
    url, truth, path = small
    name = "10-26_-5-11_0-8"
    os.remove(path / "4_4_40" / name)
    with pytest.raises(cvl.ChunkNotFoundError) as e:
        cvl.Volume(url)[10:30, -5:5, 0:4]
    assert name in str(e.value) and "fill_missing=True" in str(e.value)
    assert isinstance(e.value, FileNotFoundError)
    got = cvl.Volume(url, fill_missing=True)[10:30, -5:5, 0:4]
    assert not got[:16, :10].any()
    np.testing.assert_array_equal(got[16:], truth[16:20, 0:10, 0:4])


def test_wrong_size_chunk_is_decode_error_naming_key(small):
    url, _, path = small
    name = "26-42_-5-11_0-8"
    (path / "4_4_40" / name).write_bytes(b"\0" * 100)
    with pytest.raises(cvl.DecodeError) as e:
        cvl.Volume(url)[26:30, -5:0, 0:2]
    assert name in str(e.value) and "100 bytes" in str(e.value) and str(16 * 16 * 8 * 2) in str(e.value)


def test_bad_gzip_sibling_is_decode_error(small):
    url, _, path = small
    name = "26-42_-5-11_0-8"
    os.remove(path / "4_4_40" / name)
    (path / "4_4_40" / (name + ".gz")).write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(cvl.DecodeError, match="gzip"):
        cvl.Volume(url)[26:30, -5:0, 0:2]


def test_gzip_sibling_is_read(small):
    url, truth, path = small
    name = "26-42_-5-11_0-8"
    p = path / "4_4_40" / name
    p.with_name(name + ".gz").write_bytes(gzip.compress(p.read_bytes()))
    os.remove(p)
    np.testing.assert_array_equal(cvl.Volume(url)[26:42, -5:11, 0:8], truth[16:32, 0:16, 0:8])


def test_missing_info(tmp_path):
    with pytest.raises(cvl.InfoError, match="no info file"):
        cvl.Volume(str(tmp_path))


@pytest.mark.parametrize(
    "mutate,needle",
    [
        (lambda i: i.pop("scales"), "scales"),
        (lambda i: i.update(data_type="complex64"), "data_type"),
        (lambda i: i.update(num_channels=0), "num_channels"),
        (lambda i: i["scales"][0].update(size=[1, 2]), "size"),
        (lambda i: i["scales"][0].update(resolution=[0, 1, 1]), "resolution"),
        (lambda i: i["scales"][0].update(chunk_sizes=[]), "chunk_sizes"),
        (lambda i: i["scales"][0].update(voxel_offset=["a", 0, 0]), "voxel_offset"),
        (lambda i: i["scales"][0].update(sharding={"@type": "x"}), "sharding"),
    ],
)
def test_bad_info_fields(small, mutate, needle):
    url, _, path = small
    info = json.loads((path / "info").read_text())
    mutate(info)
    (path / "info").write_text(json.dumps(info))
    with pytest.raises(cvl.InfoError, match=needle):
        cvl.Volume(url)


def test_not_json_info(small):
    url, _, path = small
    (path / "info").write_bytes(b"<html>")
    with pytest.raises(cvl.InfoError, match="not valid JSON"):
        cvl.Volume(url)


def test_unknown_encoding_fails_only_when_used(small):
    url, truth, path = small
    info = json.loads((path / "info").read_text())
    extra = dict(info["scales"][0], key="other", encoding="fancy_new_codec", resolution=[8, 8, 40])
    info["scales"].append(extra)
    info["some_tool_key"] = {"kept": True}
    (path / "info").write_text(json.dumps(info))
    vol = cvl.Volume(url)  # opening works: the unknown encoding is on another scale
    np.testing.assert_array_equal(vol[10:12, -5:-3, 0:1], truth[0:2, 0:2, 0:1])
    assert vol.info.extra["some_tool_key"] == {"kept": True}
    vol.mip = 1
    with pytest.raises(cvl.UnsupportedEncodingError, match="fancy_new_codec"):
        vol[10:12, -5:-3, 0:1]


def test_bad_keys(small):
    vol = cvl.Volume(small[0])
    with pytest.raises(cvl.RequestError):
        vol[10:20:0, :, :]
    with pytest.raises(cvl.RequestError):
        vol[20:10, :, :]
    with pytest.raises(cvl.RequestError):
        vol["a", :, :]
    with pytest.raises(cvl.RequestError):
        vol[:, :, :, :, :]
    with pytest.raises(cvl.OutOfBoundsError, match="channel 3"):
        vol[..., 3]
    with pytest.raises(cvl.InfoError, match="mip 5"):
        vol.mip = 5
