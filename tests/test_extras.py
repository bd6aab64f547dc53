"""Optional extras: without one, the feature that needs it says which pip extra to install.

Each test hides the optional library (``None`` in ``sys.modules`` makes ``import lib`` raise
ImportError) and drops cached ``cloudvolume_lite`` modules that imported it, so the import
happens again as it would in an installation without the extra.
"""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
import tomllib

import numpy as np
import pytest

import cloudvolume_lite as cvl
from cloudvolume_lite import compression
from cloudvolume_lite.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: extra -> the modules that vanish when it is not installed
HIDDEN = {
    "compresso": ("compresso",),
    "crackle": ("crackle",),
    "fpzip": ("fpzip",),
    "zfpc": ("zfpc",),
    "jxl": ("imagecodecs",),
    "gcs": ("google", "google.cloud", "google.cloud.storage"),
    "s3": ("boto3",),
    "dask": ("dask", "dask.array"),
    "progress": ("tqdm",),
    "deflate": ("deflate",),
}

#: our modules that import an optional library at their top (re-imported after hiding it)
_IMPORTERS = ("cloudvolume_lite.codecs.", "cloudvolume_lite.stores.gcs", "cloudvolume_lite.stores.s3")


def make(url: str, truth: np.ndarray, chunk=(8, 8, 8), **options) -> cvl.Volume:
    """A raw image volume at ``url`` holding ``truth`` (X, Y, Z, C)."""
    vol = cvl.Volume.create(url, data_type=truth.dtype.name, layer_type="image", size=truth.shape[:3],
                            chunk_size=chunk, resolution=(1, 1, 1), num_channels=truth.shape[3], **options)
    vol[...] = truth
    return vol


def pip_hint(extra: str) -> str:
    return re.escape(f'pip install "cloudvolume-lite[{extra}]"')


@pytest.fixture
def hide(monkeypatch):
    """``hide(extra)``: make the extra's libraries unimportable for the rest of the test."""

    def _hide(extra: str) -> None:
        for name in HIDDEN[extra]:
            monkeypatch.setitem(sys.modules, name, None)
        for name in list(sys.modules):
            if name.startswith(_IMPORTERS):
                monkeypatch.delitem(sys.modules, name)

    return _hide


def test_every_extra_named_exists_in_pyproject():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        extras = tomllib.load(f)["project"]["optional-dependencies"]
    assert set(HIDDEN) <= set(extras)


# -- codecs -------------------------------------------------------------------------------------

CODECS = [  # (encoding, extra, dtype, channels)
    ("compresso", "compresso", "uint32", 1),
    ("crackle", "crackle", "uint32", 1),
    ("fpzip", "fpzip", "float32", 1),
    ("kempressed", "fpzip", "float32", 2),
    ("zfpc", "zfpc", "float32", 1),
    ("jxl", "jxl", "uint8", 1),
]


@pytest.mark.parametrize("encoding,extra,dtype,channels", CODECS, ids=[c[0] for c in CODECS])
def test_codec_without_its_extra(tmp_path, rng, hide, encoding, extra, dtype, channels):
    url = "file://" + str(tmp_path / "v")
    vol = cvl.Volume.create(url, data_type=dtype, layer_type="image", size=(16, 16, 4), chunk_size=(8, 8, 4),
                            resolution=(1, 1, 1), num_channels=channels, encoding=encoding)
    vol[...] = (rng.random((16, 16, 4, channels)) * 200).astype(dtype)  # written while the library is there
    hide(extra)
    vol = cvl.Volume(url)
    with pytest.raises(cvl.UnsupportedEncodingError, match=pip_hint(extra)):
        vol[0:8, 0:8, 0:4]
    with pytest.raises(cvl.UnsupportedEncodingError, match=pip_hint(extra)):
        vol.scattered_points([[1, 2, 3]])
    with pytest.raises(cvl.UnsupportedEncodingError, match=pip_hint(extra)):
        vol[0:8, 0:8, 0:4] = np.zeros((8, 8, 4, channels), dtype)
    with pytest.raises(cvl.UnsupportedEncodingError, match=pip_hint(extra)):
        cvl.Volume.create("file://" + str(tmp_path / "w"), data_type=dtype, layer_type="image", size=(8, 8, 4),
                          chunk_size=(8, 8, 4), resolution=(1, 1, 1), num_channels=channels, encoding=encoding)


def test_codec_error_through_the_cli(tmp_path, rng, hide, capsys):
    url = "file://" + str(tmp_path / "v")
    vol = cvl.Volume.create(url, data_type="uint32", layer_type="segmentation", size=(8, 8, 4), chunk_size=(8, 8, 4),
                            resolution=(1, 1, 1), encoding="crackle")
    vol[...] = np.ones((8, 8, 4, 1), np.uint32)
    hide("crackle")
    assert main(["get", url, "0:8,0:8,0:4", "-o", str(tmp_path / "o.npy")]) == 1
    err = capsys.readouterr().err
    assert 'pip install "cloudvolume-lite[crackle]"' in err and err.strip().count("\n") == 0


# -- stores -------------------------------------------------------------------------------------

@pytest.mark.parametrize("url,extra", [
    ("gs://bucket/volume", "gcs"),
    ("precomputed://gs://bucket/volume", "gcs"),
    ("s3://bucket/volume", "s3"),
    ("precomputed://s3://bucket/volume/", "s3"),
])
def test_cloud_store_without_its_extra(hide, url, extra):
    hide(extra)
    with pytest.raises(cvl.UnsupportedEncodingError, match=pip_hint(extra)):
        cvl.Volume(url)


def test_cloud_store_error_through_the_cli(hide, capsys):
    hide("gcs")
    assert main(["info", "gs://bucket/volume"]) == 1
    err = capsys.readouterr().err
    assert 'pip install "cloudvolume-lite[gcs]"' in err and err.strip().count("\n") == 0


# -- dask ---------------------------------------------------------------------------------------

def test_dask_without_its_extra(tmp_path, hide):
    vol = make("file://" + str(tmp_path / "v"), np.zeros((8, 8, 4, 1), np.uint8))
    hide("dask")
    with pytest.raises(cvl.UnsupportedEncodingError, match=pip_hint("dask")):
        vol.to_dask()
    with pytest.raises(cvl.UnsupportedEncodingError, match=pip_hint("dask")):
        cvl.store_dask(np.zeros((8, 8, 4, 1), np.uint8), vol)


# -- deflate: only an accelerator for gzip --------------------------------------------------------

def test_gzip_works_without_deflate(tmp_path, rng, hide):
    hide("deflate")
    data = rng.integers(0, 4, 100_000, dtype=np.uint8).tobytes()
    packed = compression.compress(data, "gzip")
    assert gzip.decompress(packed) == data and compression.decompress(packed, "gzip") == data
    # multi-member gzip (as some tools write) also goes through zlib
    assert compression.decompress(gzip.compress(data[:10]) + gzip.compress(data[10:]), "gzip") == data
    truth = rng.integers(0, 255, (16, 16, 4, 1), dtype=np.uint8)
    url = "file://" + str(tmp_path / "v")
    make(url, truth, chunk=(8, 8, 4), compression="gzip")
    assert any(n.endswith(".gz") for _, _, files in os.walk(tmp_path / "v") for n in files)
    np.testing.assert_array_equal(cvl.Volume(url)[...], truth)


# -- progress bars: asked for without tqdm -> one line, and the work goes on ----------------------

@pytest.fixture
def small(tmp_path, rng):
    truth = rng.integers(0, 255, (32, 32, 8, 1), dtype=np.uint8)
    url = "file://" + str(tmp_path / "v")
    make(url, truth)
    return url, truth


def _hint_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if 'pip install "cloudvolume-lite[progress]"' in line]


def test_volume_progress_without_tqdm(small, hide, capsys):
    url, truth = small
    hide("progress")
    np.testing.assert_array_equal(cvl.Volume(url, progress=True)[...], truth)
    assert len(_hint_lines(capsys.readouterr().err)) == 1
    np.testing.assert_array_equal(cvl.Volume(url, progress=None)[...], truth)  # not asked for: silent
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("command", ["get", "cp"])
def test_cli_progress_without_tqdm(small, tmp_path, hide, capsys, command):
    url, truth = small
    hide("progress")
    if command == "get":
        args = ["get", url, "0:32,0:32,0:8", "-o", str(tmp_path / "o.npy")]
    else:
        args = ["cp", url, "file://" + str(tmp_path / "copy"), "--chunk-size", "4,4,4"]
    assert main(args + ["--progress"]) == 0
    out, err = capsys.readouterr()
    assert len(_hint_lines(err)) == 1 and err.strip().count("\n") == 0, err
    got = np.load(tmp_path / "o.npy") if command == "get" else cvl.Volume("file://" + str(tmp_path / "copy"))[...]
    np.testing.assert_array_equal(got, truth)


# -- importing the package ----------------------------------------------------------------------

def test_import_starts_nothing_and_imports_no_optional_library():
    code = (
        "import sys, threading, cloudvolume_lite, cloudvolume_lite.cli, cloudvolume_lite.codecs\n"
        "libs = ['compresso', 'crackle', 'fpzip', 'zfpc', 'imagecodecs', 'dask', 'tqdm', 'boto3', 'google',\n"
        "        'deflate', 'simplejpeg', 'pyspng', 'compressed_segmentation', 'tensorstore']\n"
        "print(sorted(m for m in libs if m in sys.modules), threading.active_count())\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["[]", "1"]
