"""Every cvl command on a sample volume, run as a user would (a subprocess), plus resumable cp."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import cloudvolume_lite as cvl
from cloudvolume_lite.cli import main
from oracles import random_volume, ts_write


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cloudvolume_lite.cli", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture
def sample(tmp_path, rng):
    truth = random_volume((40, 30, 12, 1), "uint64", rng, labels=20)
    url = ts_write(tmp_path / "seg", truth, offset=(0, 0, 0), chunk=(16, 16, 8), encoding="compressed_segmentation")
    return url, truth


def test_demo_runs_offline(tmp_path):
    r = run("demo", "--dir", str(tmp_path / "demo"))
    assert r.returncode == 0, r.stderr
    assert "demo OK" in r.stdout and "WRONG" not in r.stdout and "over HTTP" in r.stdout


def test_info(sample):
    r = run("info", sample[0])
    assert r.returncode == 0 and "compressed_segmentation" in r.stdout and "40x30x12" in r.stdout


@pytest.mark.parametrize("ext", ["npy", "png", "tif"])
def test_get(sample, tmp_path, ext):
    url, truth = sample
    out = tmp_path / f"out.{ext}"
    r = run("get", url, "5:25,3:13,2:6", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size > 0
    if ext == "npy":
        np.testing.assert_array_equal(np.load(out), truth[5:25, 3:13, 2:6])
    elif ext == "png":
        import pyspng

        assert pyspng.load(out.read_bytes()).shape[:2] == (20, 40)  # 2x2 montage of 20x10 slices
    else:
        import tifffile

        np.testing.assert_array_equal(tifffile.imread(out).reshape(4, 10, 20).transpose(2, 1, 0), truth[5:25, 3:13, 2:6, 0])


def test_bad_bbox_is_one_line_and_exit_2(sample):
    r = run("get", sample[0], "0:10,0:10", "-o", "x.npy")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "x0:x1,y0:y1,z0:z1" in r.stderr


def test_missing_volume_is_a_clear_error(tmp_path):
    r = run("info", str(tmp_path / "nothing"))
    assert r.returncode == 1 and "no info file" in r.stderr and "Traceback" not in r.stderr


def test_points(sample, tmp_path):
    url, truth = sample
    (tmp_path / "p.csv").write_text("x,y,z\n1,2,3\n39,29,11\n")
    r = run("points", url, str(tmp_path / "p.csv"), "-o", str(tmp_path / "v.csv"))
    assert r.returncode == 0, r.stderr
    lines = (tmp_path / "v.csv").read_text().splitlines()
    assert lines == ["x,y,z,c0", f"1,2,3,{truth[1, 2, 3, 0]}", f"39,29,11,{truth[39, 29, 11, 0]}"]


def test_cp_reencodes_and_reshards(sample, tmp_path):
    url, truth = sample
    dst = "file://" + str(tmp_path / "copy")
    r = run("cp", url, dst, "--encoding", "raw", "--sharded", "--chunk-size", "8,8,4")
    assert r.returncode == 0, r.stderr
    out = cvl.Volume(dst)
    assert out.encoding == "raw" and out.scale.sharding is not None and out.chunk_size == (8, 8, 4)
    np.testing.assert_array_equal(out[...], truth)


def test_cp_resumes_after_interruption(tmp_path, rng):
    from cloudvolume_lite import transfer

    truth = random_volume((64, 64, 64, 1), "uint8", rng)
    src = ts_write(tmp_path / "src", truth, chunk=(16, 16, 16))
    dst = "file://" + str(tmp_path / "dst")
    seen = []

    def interrupt(done, total):
        seen.append(total)
        if done == 3:
            raise KeyboardInterrupt  # the user pressed ^C after three blocks

    with pytest.raises(KeyboardInterrupt):
        transfer.copy_volume(src, dst, progress=interrupt, block_bytes=32 << 10)
    total = seen[0]
    assert total == 8  # 64^3 bytes in 32 KiB blocks
    assert transfer.copy_volume(src, dst, block_bytes=32 << 10) == total - 3  # only what was left
    np.testing.assert_array_equal(cvl.Volume(dst)[...], truth)
    r = run("cp", src, dst)
    assert r.returncode == 0 and "0 block(s) written" in r.stdout


def test_cache_commands(sample, tmp_path):
    url, truth = sample
    cache_dir = tmp_path / "cache"
    vol = cvl.Volume(url, cache=str(cache_dir))
    vol[...]
    r = run("cache", "ls", "--dir", str(cache_dir))
    assert r.returncode == 0 and "seg" in r.stdout
    r = run("cache", "size", "--dir", str(cache_dir))
    assert int(r.stdout.split()[0]) > 0
    r = run("cache", "clear", "--dir", str(cache_dir))
    assert r.returncode == 0 and not os.path.exists(cache_dir)


def test_help_has_examples():
    for cmd in ["demo", "info", "get", "points", "cp", "cache"]:
        r = run(cmd, "--help")
        assert r.returncode == 0 and "example:" in r.stdout


def test_cp_file_to_s3_on_loopback(sample, s3_bucket, s3_endpoint, s3_secrets):
    """cvl cp from local disk to the moto S3 server, configured the way a user would (environment)."""
    url, truth = sample
    env = {**os.environ, "CVL_S3_ENDPOINT": s3_endpoint, "AWS_ACCESS_KEY_ID": s3_secrets["aws_access_key_id"],
           "AWS_SECRET_ACCESS_KEY": s3_secrets["aws_secret_access_key"], "AWS_DEFAULT_REGION": "us-east-1"}
    dst = f"s3://{s3_bucket}/copy"
    r = subprocess.run([sys.executable, "-m", "cloudvolume_lite.cli", "cp", url, dst, "--sharded"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    out = cvl.Volume(dst, secrets=s3_secrets)
    assert out.scale.sharding is not None
    np.testing.assert_array_equal(out[...], truth)
