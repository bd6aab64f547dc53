"""scattered_points' direct paths: points read straight from plain local files (``_pointio.c``)
and from whole local shard files, each chunk inflated whole (CRC-checked) into a reused buffer
(``point_inflate``), checked against the truth, against the store's own path, and on damaged,
compressed, missing and changed chunks."""

from __future__ import annotations

import gzip
import io
import os
import sys

import numpy as np
import pytest
from oracles import fixture_write, random_volume

import cloudvolume_lite as cvl
from cloudvolume_lite import point_files, point_inflate, point_shards
from cloudvolume_lite import points as P

needs_c = pytest.mark.skipif(not point_files.available(), reason="the _pointio extension is not built")
SHARDING = {"preshift_bits": 0, "hash": "identity", "minishard_bits": 1, "shard_bits": 1,
            "minishard_index_encoding": "gzip", "data_encoding": "gzip"}


def truth_at(truth: np.ndarray, vol: cvl.Volume, pts: np.ndarray) -> np.ndarray:
    local = pts - np.asarray(vol.voxel_offset)
    vals = truth[local[:, 0], local[:, 1], local[:, 2]]
    return vals[:, 0] if vals.shape[1] == 1 else vals


def sparse_points(vol: cvl.Volume, rng, n: int) -> np.ndarray:
    lo, hi = np.asarray(vol.bounds.minpt), np.asarray(vol.bounds.maxpt)
    return np.stack([rng.integers(a, b, n) for a, b in zip(lo, hi)], axis=1)


def spy(monkeypatch, module, name: str) -> list:
    """Calls of ``module.name`` recorded (their results), the function still doing its work."""
    calls, real = [], getattr(module, name)

    def wrapped(*a, **k):
        got = real(*a, **k)
        calls.append(got)
        return got

    monkeypatch.setattr(module, name, wrapped)
    return calls


def hide_extension(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, point_files.EXTENSION, None)


FILE_CASES = {
    "raw uint16 2ch odd chunks": ("uint16", 2, "raw", (10, 12, 7)),
    "raw uint64": ("uint64", 1, "raw", (16, 16, 8)),
    "raw float32": ("float32", 1, "raw", (16, 16, 8)),
    "cseg uint64": ("uint64", 1, "compressed_segmentation", (16, 16, 8)),
    "cseg uint32 3ch odd chunks": ("uint32", 3, "compressed_segmentation", (13, 7, 5)),
}


@needs_c
@pytest.mark.parametrize("name", list(FILE_CASES))
def test_file_reads_match_truth_and_the_store_path(tmp_path, rng, monkeypatch, name):
    dtype, nc, enc, chunk = FILE_CASES[name]
    labels = 60 if enc == "compressed_segmentation" else None
    truth = random_volume((45, 38, 21, nc), dtype, rng, labels=labels)
    url = fixture_write(tmp_path / "v", truth, offset=(-7, 3, 5), chunk=chunk, encoding=enc, block=(4, 4, 2))
    vol = cvl.Volume(url)
    pts = sparse_points(vol, rng, 300)  # a few points a chunk, on every edge chunk too
    monkeypatch.setattr(P, "FILE_RANGED_BYTES", 1)  # every chunk point by point, whatever its size
    batches = spy(monkeypatch, point_files, "read_batch")
    direct = vol.scattered_points(pts)
    assert batches and all(int(b[1].max()) == point_files.DONE for b in batches)
    np.testing.assert_array_equal(direct, truth_at(truth, vol, pts))
    hide_extension(monkeypatch)
    np.testing.assert_array_equal(cvl.Volume(url).scattered_points(pts), direct)


def cseg_chunk(tmp_path, rng):
    truth = random_volume((16, 16, 8, 1), "uint64", rng, labels=30)
    url = fixture_write(tmp_path / "v", truth, chunk=(16, 16, 8), encoding="compressed_segmentation", block=(4, 4, 2))
    return url, tmp_path / "v" / "4_4_40" / "0-16_0-16_0-8", truth


def damage(path, how: str) -> None:
    """Damage a one-channel 16x16x8 chunk with 4x4x2 blocks (64 of them) in one way."""
    w = np.frombuffer(path.read_bytes(), "<u4").copy()
    hdr = w[1 : 1 + 2 * 64]  # a view: edits land in w
    if how == "bits":
        hdr[0::2] = (hdr[0::2] & 0xFFFFFF) | (3 << 24)
    elif how == "table":
        hdr[0::2] = (hdr[0::2] & 0xFF000000) | 0xFFFFFF
    elif how == "values":
        hdr[0::2] = (hdr[0::2] & 0xFFFFFF) | (1 << 24)  # every block 1 bit, its index words far outside
        hdr[1::2] = 0xFFFFFF
    elif how == "channel":
        w[0] = 0
    elif how == "headers":
        w = w[: 1 + 64]  # cut inside the block headers
    path.write_bytes(w.tobytes() + (b"\x00" if how == "odd" else b""))


@needs_c
@pytest.mark.parametrize("how", ["bits", "table", "values", "channel", "headers", "odd"])
def test_damaged_cseg_chunk_is_the_same_error_on_both_paths(tmp_path, rng, monkeypatch, how):
    url, path, _ = cseg_chunk(tmp_path, rng)
    damage(path, how)
    pts = np.array([[1, 2, 3], [15, 15, 7], [8, 0, 4]])
    batches = spy(monkeypatch, point_files, "read_batch")
    with pytest.raises(cvl.DecodeError, match="0-16_0-16_0-8") as direct:
        cvl.Volume(url).scattered_points(pts)
    assert batches and batches[0][2] is not None  # the file path found the damage
    hide_extension(monkeypatch)
    with pytest.raises(cvl.DecodeError, match="0-16_0-16_0-8") as stored:
        cvl.Volume(url).scattered_points(pts)
    if how != "odd":  # (the in-memory decoder says "bad arguments" of a length not a multiple of 4)
        assert str(direct.value) == str(stored.value)


@needs_c
def test_file_path_leaves_compressed_and_missing_chunks_to_the_store(tmp_path, rng):
    truth = random_volume((32, 32, 16, 1), "uint64", rng, labels=40)
    url = fixture_write(tmp_path / "v", truth, chunk=(16, 16, 16), encoding="compressed_segmentation")
    d = tmp_path / "v" / "4_4_40"
    gz = d / "0-16_0-16_0-16"
    (d / "0-16_0-16_0-16.gz").write_bytes(gzip.compress(gz.read_bytes()))
    gz.unlink()  # only the .gz sibling, as CloudVolume writes them
    (d / "16-32_16-32_0-16").unlink()
    pts = np.array([[1, 1, 1], [20, 3, 5], [17, 18, 2], [3, 30, 9]])
    want = truth[pts[:, 0], pts[:, 1], pts[:, 2], 0].copy()
    want[2] = 0
    np.testing.assert_array_equal(cvl.Volume(url, fill_missing=True).scattered_points(pts), want)
    with pytest.raises(cvl.ChunkNotFoundError, match="16-32_16-32_0-16"):
        cvl.Volume(url).scattered_points(pts)


@needs_c
def test_raw_file_of_the_wrong_size_is_an_error(tmp_path, rng, monkeypatch):
    truth = random_volume((32, 32, 16, 1), "uint16", rng)
    url = fixture_write(tmp_path / "v", truth, chunk=(16, 16, 16))
    path = tmp_path / "v" / "4_4_40" / "0-16_16-32_0-16"
    path.write_bytes(path.read_bytes() + b"\x00\x00")
    monkeypatch.setattr(P, "FILE_RANGED_BYTES", 1)
    with pytest.raises(cvl.DecodeError, match=r"0-16_16-32_0-16.*has 8194 bytes, expected 8192"):
        cvl.Volume(url).scattered_points(np.array([[1, 20, 3], [17, 2, 2]]))


@needs_c
def test_read_batch_refuses_bad_arguments():
    ext = point_files._ext()
    off, spl, shapes = np.zeros(2, np.uint32), np.array([0, 2], np.int64), np.array([[4, 4, 4]], np.int64)
    out, status = np.zeros((2, 1), np.uint64), np.zeros(1, np.int64)
    ok = ([b"/nonexistent"], 0, 8, 1, shapes, [4, 4, 4], [4, 4, 4], off, spl, out, status)
    assert ext.read_points(*ok) is None and status[0] == point_files.NO_FILE
    for i, bad in [(1, 7), (2, 3), (9, np.zeros((3, 1), np.uint64)), (8, np.array([0, 3], np.int64)),
                   (4, np.array([[5, 4, 4]], np.int64)), (0, ["/not-bytes"])]:
        args = list(ok)
        args[i] = bad
        with pytest.raises((ValueError, TypeError)):
            ext.read_points(*args)


# -- shards read whole, chunks inflated into a reused buffer --------------------------------------
SHARD_CASES = {
    "raw uint16": ("uint16", 1, "raw", (64, 64, 20), SHARDING),  # 160 KiB chunks
    "raw uint16 2ch": ("uint16", 2, "raw", (32, 32, 16), SHARDING),
    "raw uint64 not gzipped": ("uint64", 1, "raw", (16, 16, 16), {**SHARDING, "data_encoding": "raw"}),
    "cseg uint64": ("uint64", 1, "compressed_segmentation", (16, 16, 16), SHARDING),
    "png": ("uint8", 1, "png", (16, 16, 16), SHARDING),
}


@pytest.mark.parametrize("name", list(SHARD_CASES))
@pytest.mark.parametrize("libdeflate", [True, False])
def test_shard_reads_match_truth(tmp_path, rng, monkeypatch, name, libdeflate):
    dtype, nc, enc, chunk, sharding = SHARD_CASES[name]
    if not libdeflate:
        monkeypatch.setattr(point_inflate, "libdeflate", lambda: None)
        monkeypatch.setattr(point_shards, "BATCH_BYTES", 1)  # and one shard in memory at a time
    truth = random_volume((64, 64, 40, nc), dtype, rng, labels=50 if enc != "raw" else None)
    if enc == "raw" and dtype == "uint16":
        truth //= 1024  # compressible, so a chunk's gzip stream is far shorter than the chunk
    url = fixture_write(tmp_path / "v", truth, offset=(3, -2, 1), chunk=chunk, encoding=enc, sharding=sharding)
    vol = cvl.Volume(url)
    lo = np.asarray(vol.bounds.minpt)
    pts = sparse_points(vol, rng, 400)
    first = pts[:, 2] < lo[2] + chunk[2]
    pts[first, 2] = lo[2] + rng.integers(0, 3, first.sum())  # the first z-layer of chunks: points near the start
    reads = spy(monkeypatch, P, "ShardFiles")
    np.testing.assert_array_equal(vol.scattered_points(pts), truth_at(truth, vol, pts))
    assert reads  # the whole-shard path ran


def test_damaged_and_missing_chunks_in_shards(tmp_path, rng):
    truth = random_volume((32, 32, 32, 1), "uint64", rng, labels=20)
    url = fixture_write(tmp_path / "v", truth, chunk=(16, 16, 16), encoding="raw", sharding=SHARDING)
    vol = cvl.Volume(url)
    store = vol.chunk_store()
    pts = sparse_points(vol, rng, 200)
    name = vol.info.scales[0].chunk_name((1, 0, 1))
    store.delete(name)
    with pytest.raises(cvl.ChunkNotFoundError, match=name):
        cvl.Volume(url).scattered_points(pts)
    want = truth_at(truth, vol, pts)
    gone = np.all((pts >= (16, 0, 16)) & (pts < (32, 16, 32)), axis=1)
    want[gone] = 0
    np.testing.assert_array_equal(cvl.Volume(url, fill_missing=True).scattered_points(pts), want)
    # flip bytes inside one chunk's gzip stream: a DecodeError naming it (or its shard)
    for f in (tmp_path / "v" / "4_4_40").glob("*.shard"):
        data = bytearray(f.read_bytes())
        data[40:200] = bytes(160)
        f.write_bytes(bytes(data))
    with pytest.raises(cvl.DecodeError):
        cvl.Volume(url, fill_missing=True).scattered_points(pts)


# -- the inflater ------------------------------------------------------------------------------------
def streams(rng) -> list[tuple[bytes, bytes]]:
    labels = np.repeat(rng.integers(0, 50, 4000), rng.integers(1, 300, 4000)).astype("<u8").tobytes()
    noise = rng.bytes(200_000)  # stored blocks
    mixed = labels[:150_000] + noise[:90_000] + labels[150_000:500_000]
    out = [(raw, gzip.compress(raw, level, mtime=0)) for raw in (labels, noise, mixed) for level in (0, 1, 6, 9)]
    named = io.BytesIO()
    with gzip.GzipFile("chunk-name", "wb", fileobj=named, mtime=0) as f:  # FNAME in the header
        f.write(mixed)
    head = bytearray(gzip.compress(labels, 6, mtime=0))
    head[3] |= 4 | 16  # FEXTRA and FCOMMENT
    extra = bytes(head[:10]) + b"\x03\x00abc" + b"a comment\x00" + bytes(head[10:])
    return out + [(mixed, named.getvalue()), (labels, extra), (b"tiny", gzip.compress(b"tiny"))]


@pytest.mark.parametrize("libdeflate", [True, False])
def test_streams_inflate_whole_and_exactly(rng, libdeflate):
    inflater = point_inflate.Inflater(1 << 24, use_libdeflate=libdeflate)
    for raw, gz in streams(rng):
        assert bytes(inflater.inflate(gz, "x")) == raw
        assert bytes(inflater.inflate(memoryview(gz), "x")) == raw


def test_a_flipped_bit_is_caught_by_the_crc(rng):
    """A bit flipped in a literal still inflates, to different bytes: only the CRC of the whole
    stream sees it, which is why points never read a prefix."""
    raw = rng.bytes(4000)
    gz = bytearray(gzip.compress(raw, 0))  # stored: every byte a literal
    gz[100] ^= 1
    for libdeflate in (True, False):
        with pytest.raises(cvl.DecodeError):
            point_inflate.Inflater(1 << 20, use_libdeflate=libdeflate).inflate(bytes(gz), "flipped")


def test_inflater_errors(rng):
    inflater = point_inflate.Inflater(1 << 20)
    raw = bytes(3 << 20)
    gz = gzip.compress(raw)
    with pytest.raises(cvl.DecodeError, match="inflates past"):
        inflater.inflate(gz, "bomb")
    labels = np.repeat(rng.integers(0, 50, 800), 100).astype("<u8").tobytes()
    gz = bytearray(gzip.compress(labels))
    gz[len(gz) // 2 : len(gz) // 2 + 40] = os.urandom(40)
    with pytest.raises(cvl.DecodeError, match="damaged|corrupt"):
        inflater.inflate(bytes(gz), "flipped")
    two = gzip.compress(b"a" * 1000) + gzip.compress(b"b" * 1000)  # two members: the whole of both
    assert bytes(inflater.inflate(two, "x")) == b"a" * 1000 + b"b" * 1000


@needs_c
@pytest.mark.parametrize("file_ranged_bytes", [1, 1 << 40])  # the points' bytes / the file whole
def test_a_directory_where_a_chunk_file_should_be_is_a_missing_chunk(tmp_path, rng, monkeypatch, file_ranged_bytes):
    monkeypatch.setattr(P, "FILE_RANGED_BYTES", file_ranged_bytes)
    truth = random_volume((32, 32, 16, 1), "uint16", rng)
    url = fixture_write(tmp_path / "v", truth, chunk=(16, 16, 16))
    path = tmp_path / "v" / "4_4_40" / "16-32_0-16_0-16"
    path.unlink()
    path.mkdir()
    pts = np.array([[1, 2, 3], [20, 5, 5], [30, 20, 1]])
    want = truth[pts[:, 0], pts[:, 1], pts[:, 2], 0].copy()
    want[1] = 0
    np.testing.assert_array_equal(cvl.Volume(url, fill_missing=True).scattered_points(pts), want)
    with pytest.raises(cvl.ChunkNotFoundError, match="16-32_0-16_0-16"):
        cvl.Volume(url).scattered_points(pts)
