"""Every cvl command on a sample volume, run as a user would (a subprocess), plus resumable cp."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import cloudvolume_lite as cvl
from cloudvolume_lite.cli import main
from oracles import random_volume, fixture_write


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cloudvolume_lite.cli", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture
def sample(tmp_path, rng):
    truth = random_volume((40, 30, 12, 1), "uint64", rng, labels=20)
    url = fixture_write(tmp_path / "seg", truth, offset=(0, 0, 0), chunk=(16, 16, 8), encoding="compressed_segmentation")
    return url, truth


def test_demo_runs_offline(tmp_path):
    r = run("demo", "--dir", str(tmp_path / "demo"))
    assert r.returncode == 0, r.stderr
    assert "demo OK" in r.stdout and "WRONG" not in r.stdout and "over HTTP" in r.stdout
    # it ends by saying how to look at what it built
    assert f"cvl view file://{tmp_path / 'demo'}/image file://{tmp_path / 'demo'}/segmentation" in r.stdout


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
    src = fixture_write(tmp_path / "src", truth, chunk=(16, 16, 16))
    dst = "file://" + str(tmp_path / "dst")
    seen = []

    def interrupt(done, total):
        seen.append((done, total))
        if done >= 20:
            raise KeyboardInterrupt  # the user pressed ^C after twenty chunks

    with pytest.raises(KeyboardInterrupt):
        transfer.copy_volume(src, dst, progress=interrupt, block_bytes=32 << 10)
    assert {t for _, t in seen} == {64}  # progress counts chunks (64 of 16^3), not 32 KiB blocks
    assert [d for d, _ in seen] == list(range(1, 21))  # one report per chunk written
    left = transfer.copy_volume(src, dst, block_bytes=32 << 10)
    assert 0 < left <= 64 - 20  # only what was left (chunks already in flight at ^C finished)
    np.testing.assert_array_equal(cvl.Volume(dst)[...], truth)
    r = run("cp", src, dst)
    assert r.returncode == 0 and "0 chunk(s) written, 64 already there" in r.stdout


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
    for cmd in ["demo", "info", "get", "points", "cp", "pyramid", "view", "serve", "cache"]:
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


# -- strictness, flags and one-line errors -------------------------------------------------------

def cli(capsys, *args: str) -> tuple[int, str, str]:
    """``cvl ARGS`` in this process: (exit code, stdout, stderr)."""
    try:
        rc = main(list(args))
    except SystemExit as e:  # argparse and parser.exit
        rc = e.code
    out, err = capsys.readouterr()
    return int(rc or 0), out, err


def one_line_error(rc: int, err: str) -> None:
    assert rc != 0
    assert "Traceback" not in err
    assert err.strip() and err.strip().count("\n") == 0, err


@pytest.fixture
def small(tmp_path, rng):
    """A raw uint16 volume, 32x32x8 in chunks of 16x16x8 (4 chunks), offset (10, 20, 0)."""
    truth = rng.integers(1, 60000, (32, 32, 8, 1), dtype=np.uint16)
    url = "file://" + str(tmp_path / "small")
    vol = cvl.Volume.create(url, data_type="uint16", layer_type="image", size=(32, 32, 8), chunk_size=(16, 16, 8),
                            resolution=(4, 4, 40), voxel_offset=(10, 20, 0))
    vol[...] = truth
    return url, truth


def test_points_refuses_fractions_naming_the_line(small, tmp_path, capsys):
    url, truth = small
    pts = tmp_path / "p.csv"
    pts.write_text("x,y,z\n11,21,1\n\n# a comment\n12.6,22,3\n13,23.2,4\n")
    rc, out, err = cli(capsys, "points", url, str(pts), "-o", str(tmp_path / "v.csv"))
    one_line_error(rc, err)
    assert "line 5" in err and "1 more" in err and "--round" in err
    assert not (tmp_path / "v.csv").exists()


def test_points_round_and_whole_floats(small, tmp_path, capsys):
    url, truth = small
    pts = tmp_path / "p.csv"
    pts.write_text("x,y,z\n12.6,22.0,3.4\n13.0,23,4\n")
    rc, out, err = cli(capsys, "points", url, str(pts), "-o", str(tmp_path / "v.csv"), "--round")
    assert rc == 0, err
    lines = (tmp_path / "v.csv").read_text().splitlines()
    assert lines == ["x,y,z,c0", f"13,22,3,{truth[3, 2, 3, 0]}", f"13,23,4,{truth[3, 3, 4, 0]}"]
    pts.write_text("13.0,23,4\n")  # a whole number written as a float rounds nothing: accepted
    rc, out, err = cli(capsys, "points", url, str(pts), "-o", str(tmp_path / "v.csv"))
    assert rc == 0, err
    assert (tmp_path / "v.csv").read_text().splitlines()[1] == f"13,23,4,{truth[3, 3, 4, 0]}"


def test_points_bad_line_is_a_volume_error(tmp_path):
    from cloudvolume_lite.cli import read_points_file

    pts = tmp_path / "p.csv"
    pts.write_text("1,2,3\n4,five,6\n")
    with pytest.raises(cvl.RequestError, match="line 2"):
        read_points_file(str(pts))
    pts.write_text("x,y,z\n1,2\n")
    with pytest.raises(cvl.VolumeError, match="line 2"):
        read_points_file(str(pts))
    pts.write_text("1,2\n3,4,5\n")  # too short, even as the first line
    with pytest.raises(cvl.RequestError, match="line 1"):
        read_points_file(str(pts))
    pts.write_text("1,2,3\n6,7,inf\n")
    with pytest.raises(cvl.RequestError, match="line 2"):  # inf is no voxel, even with --round
        read_points_file(str(pts), round_=True)


@pytest.mark.parametrize("command", ["get", "points"])
def test_unbounded_reads_outside_as_zeros(small, tmp_path, capsys, command):
    url, truth = small
    if command == "get":
        args = ["get", url, "0:20,20:30,0:2", "-o", str(tmp_path / "o.npy")]
    else:
        (tmp_path / "p.csv").write_text("0,0,0\n10,20,0\n")
        args = ["points", url, str(tmp_path / "p.csv"), "-o", str(tmp_path / "o.csv")]
    rc, out, err = cli(capsys, *args)
    one_line_error(rc, err)
    assert "--unbounded" in err
    rc, out, err = cli(capsys, *args, "--unbounded")
    assert rc == 0, err
    if command == "get":
        got = np.load(tmp_path / "o.npy")
        assert not got[:10].any()
        np.testing.assert_array_equal(got[10:, :, :, :], truth[:10, :10, :2])
    else:
        assert (tmp_path / "o.csv").read_text().splitlines()[1:] == ["0,0,0,0", f"10,20,0,{truth[0, 0, 0, 0]}"]


def test_cp_progress_counts_chunks(small, tmp_path, capsys):
    pytest.importorskip("tqdm")
    url, truth = small
    rc, out, err = cli(capsys, "cp", url, "file://" + str(tmp_path / "copy"), "--chunk-size", "8,8,4", "--progress")
    assert rc == 0, err
    assert "32/32" in err  # 32 destination chunks of 8x8x4, not one 64 MB block
    assert "32 chunk(s) written" in out


def test_cp_missing_source_chunk_fails_unless_fill_missing(small, tmp_path, capsys):
    url, truth = small
    cvl.Volume(url).delete(cvl.Bbox((26, 20, 0), (42, 36, 8)))  # the chunk 26-42_20-36_0-8
    dst = "file://" + str(tmp_path / "copy")
    rc, out, err = cli(capsys, "cp", url, dst)
    one_line_error(rc, err)
    assert "26-42_20-36_0-8" in err and "missing" in err and "--fill-missing" in err
    rc, out, err = cli(capsys, "cp", url, dst, "--fill-missing")
    assert rc == 0, err
    got = cvl.Volume(dst)[...]
    assert not got[16:, :16].any()
    np.testing.assert_array_equal(got[:16], truth[:16])


def test_get_refuses_unknown_output_type_before_reading(tmp_path, capsys):
    # the volume does not even exist: the output name is checked first
    rc, out, err = cli(capsys, "get", str(tmp_path / "nothing"), "0:1,0:1,0:1", "-o", str(tmp_path / "out.jpg"))
    one_line_error(rc, err)
    assert "'.jpg'" in err and ".npy" in err and ".png" in err and ".tif" in err and "no info" not in err
    rc, out, err = cli(capsys, "get", str(tmp_path / "nothing"), "0:1,0:1,0:1", "-o", str(tmp_path / "no" / "o.npy"))
    one_line_error(rc, err)
    assert "does not exist" in err and "no info" not in err


def test_version():
    r = run("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"cvl (cloudvolume-lite) {cvl.__version__}"


def test_file_url_with_one_slash(small, capsys):
    url, truth = small
    rc, out, err = cli(capsys, "info", "file:" + url[len("file://"):])
    assert rc == 0, err
    assert "32x32x8" in out


@pytest.mark.parametrize("args", [
    [],
    ["get"],
    ["get", "URL", "0:1,0:1,0:1"],
    ["nonsense"],
    ["info", "--what"],
    ["cp", "A", "B", "--chunk-size", "1,2"],
    ["cp", "A", "B", "--sharded", "--unsharded"],
    ["points", "URL", "/nonexistent/points.csv", "-o", "v.csv"],
    ["info", "unknownscheme://x/y"],
])
def test_usage_errors_are_one_line(capsys, args):
    rc, out, err = cli(capsys, *args)
    one_line_error(rc, err)
    assert err.startswith("cvl")


def test_unexpected_errors_are_one_line(small, capsys, monkeypatch):
    from cloudvolume_lite import cli as cli_module

    def boom(args):
        raise RuntimeError("something\nbroke")

    monkeypatch.setattr(cli_module, "_cmd_info", boom)
    rc, out, err = cli(capsys, "info", small[0])
    one_line_error(rc, err)
    assert "RuntimeError" in err and "something broke" in err

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_module, "_cmd_info", interrupted)
    rc, out, err = cli(capsys, "info", small[0])
    one_line_error(rc, err)
    assert rc == 130


def test_errors_in_a_subprocess_are_one_line(tmp_path):
    r = run("get", str(tmp_path / "nothing"), "0:1,0:1,0:1", "-o", str(tmp_path / "o.npy"))
    assert r.returncode == 1 and "Traceback" not in r.stderr and r.stderr.strip().count("\n") == 0


def test_cp_into_a_different_copy_says_restart(small, tmp_path, capsys):
    url, truth = small
    dst = "file://" + str(tmp_path / "copy")
    assert cli(capsys, "cp", url, dst)[0] == 0
    rc, out, err = cli(capsys, "cp", url, dst, "--sharded")
    one_line_error(rc, err)
    assert "--restart" in err
    rc, out, err = cli(capsys, "cp", url, dst, "--sharded", "--restart")
    assert rc == 0 and "1 shard(s) written" in out, err
    assert cvl.Volume(dst).scale.sharding is not None
    np.testing.assert_array_equal(cvl.Volume(dst)[...], truth)
