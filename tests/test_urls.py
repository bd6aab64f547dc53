"""Volume URLs as people paste them (Neuroglancer's address bar, other tools) parse to one record.

Parsing only: nothing here touches the network.
"""

from __future__ import annotations

import os

import pytest

import cloudvolume_lite as cvl
from cloudvolume_lite.stores import StoreURL, parse_url

SAME = {
    StoreURL("https", "host", "path/to/vol"): [
        "https://host/path/to/vol",
        "https://host/path/to/vol/",
        "precomputed://https://host/path/to/vol",
        "precomputed://https://host/path/to/vol/",
        "https://host/path/to/vol|neuroglancer-precomputed:",
        "https://host/path/to/vol/|neuroglancer-precomputed:",
        "HTTPS://host/path//to/vol",
        "  https://host/path/to/vol  ",
    ],
    StoreURL("http", "127.0.0.1:8080", "vol"): [
        "http://127.0.0.1:8080/vol",
        "precomputed://http://127.0.0.1:8080/vol/",
    ],
    StoreURL("gs", "bucket", "path/vol"): [
        "gs://bucket/path/vol",
        "gs://bucket/path/vol/",
        "precomputed://gs://bucket/path/vol",
        "precomputed://gs://bucket/path/vol/",
        "gs://bucket/path/vol|neuroglancer-precomputed:",
        "gs://bucket/path/vol/|neuroglancer-precomputed:",
        "precomputed://gs://bucket/path/vol/|neuroglancer-precomputed:",
    ],
    StoreURL("s3", "bucket", "path/vol"): [
        "s3://bucket/path/vol",
        "s3://bucket/path/vol/",
        "precomputed://s3://bucket/path/vol",
        "precomputed://s3://bucket/path/vol/",
        "s3://bucket/path/vol/|neuroglancer-precomputed:",
    ],
    StoreURL("gs", "bucket", ""): ["gs://bucket", "gs://bucket/", "precomputed://gs://bucket/"],
    StoreURL("file", "", "/abs/path"): [
        "file:///abs/path",
        "file:///abs/path/",
        "file:/abs/path",  # one slash, as some tools write it: still absolute
        "file:/abs/path/",
        "FILE:/abs/path",
        "file://localhost/abs/path",
        "precomputed://file:///abs/path",
        "precomputed://file:/abs/path",
        "file:///abs/path|neuroglancer-precomputed:",
        "/abs/path",
        "/abs/path/",
    ],
}
CASES = [(text, want) for want, texts in SAME.items() for text in texts]


@pytest.mark.parametrize("text,want", CASES, ids=[t for t, _ in CASES])
def test_forms_of_one_url_parse_alike(text, want):
    got = parse_url(text)
    if want.scheme == "file":
        want = StoreURL("file", "", os.path.abspath(want.path))  # the OS's spelling of /abs/path
    assert got == want


def test_file_url_with_one_slash_is_not_relative(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert parse_url("file:/abs/path").path == os.path.abspath("/abs/path")
    assert parse_url("relative/path").path == str(tmp_path / "relative" / "path")
    assert parse_url("file://relative/path").path == str(tmp_path / "relative" / "path")


def test_one_slash_file_url_opens_the_volume(tmp_path):
    import numpy as np

    vol = cvl.Volume.create("file://" + str(tmp_path / "v"), data_type="uint8", layer_type="image", size=(2, 2, 2),
                            chunk_size=(2, 2, 2), resolution=(1, 1, 1))
    vol[...] = np.arange(8, dtype=np.uint8).reshape(2, 2, 2, 1)
    assert cvl.Volume("file:" + str(tmp_path / "v"))[...].ravel().tolist() == list(range(8))


@pytest.mark.parametrize("text", ["", "   ", "precomputed://", "gs://", "gs:///path", "s3://|neuroglancer-precomputed:"])
def test_bad_urls_are_request_errors(text):
    with pytest.raises(cvl.RequestError):
        parse_url(text)


def test_str_round_trips():
    for want in SAME:
        if want.scheme != "file":
            assert parse_url(str(want)) == want
