"""Bombs are bounded (issue 16): an object that inflates far past what its chunk can hold, or
an image whose header claims far more pixels than the chunk has, is a DecodeError naming the
object and the bound, raised after a bounded amount of memory, never after allocating what it
claims. Memory is measured as peak RSS growth of a child process (``ru_maxrss``)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest

import cloudvolume_lite as cvl
from cloudvolume_lite import compression
from cloudvolume_lite.codecs import ChunkSpec

TESTS = Path(__file__).parent
CHUNK = (64, 64, 16)  # 64 KiB of uint8: what the bombs below pretend to be
EXPECTED = 64 * 64 * 16
BOUND = 4 * EXPECTED + (1 << 20)  # compression.decoded_bound(EXPECTED): 4 x 64 KiB + 1 MiB
MEMORY_BUDGET = 64 << 20  # peak RSS growth allowed while a bomb is refused
GIB = 1 << 30


# -- bombs ------------------------------------------------------------------------------------

def _zero_deflate(size: int) -> bytes:
    """A raw DEFLATE stream of ``size`` zero bytes, made without ever holding them: a block of
    1 MiB of zeros, full-flushed, compresses to the same bytes every time (the compressor
    starts afresh after a full flush), so the stream is that piece repeated, a remainder and
    an empty final block."""
    block = 1 << 20

    def piece(n: int) -> bytes:
        co = zlib.compressobj(9, zlib.DEFLATED, -15)
        return co.compress(bytes(n)) + co.flush(zlib.Z_FULL_FLUSH)

    whole, rest = divmod(size, block)
    body = piece(block) * whole + (piece(rest) if rest else b"")
    return body + zlib.compressobj(9, zlib.DEFLATED, -15).flush()  # the final (empty) block


def _crc_of_zeros(size: int) -> int:
    crc, block = 0, bytes(1 << 20)
    whole, rest = divmod(size, len(block))
    for _ in range(whole):
        crc = zlib.crc32(block, crc)
    return zlib.crc32(bytes(rest), crc)


def gzip_bomb(size: int) -> bytes:
    """One gzip member of ``size`` zeros (about size / 1030 bytes), trailer and all."""
    head = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return head + _zero_deflate(size) + struct.pack("<II", _crc_of_zeros(size), size & 0xFFFFFFFF)


def zstd_bomb(size: int, content_size: bool) -> bytes:
    import zstandard

    cctx = zstandard.ZstdCompressor(level=1, write_content_size=content_size)
    obj, block, parts = cctx.compressobj(size=size if content_size else -1), bytes(1 << 20), []
    whole, rest = divmod(size, len(block))
    for _ in range(whole):
        parts.append(obj.compress(block))
    parts.append(obj.compress(bytes(rest)))
    parts.append(obj.flush())
    return b"".join(parts)


def brotli_bomb(size: int) -> bytes:
    import brotli

    c, block, parts = brotli.Compressor(quality=1), bytes(1 << 20), []
    for _ in range(size // len(block)):
        parts.append(c.process(block))
    parts.append(c.finish())
    return b"".join(parts)


def png_of_zeros(width: int, height: int) -> bytes:
    """A valid 8-bit grayscale PNG of zeros, made without holding its pixels."""
    raw = height * (width + 1)  # a filter byte before each row
    adler = ((raw % 65521) << 16) | 1  # Adler-32 of ``raw`` zero bytes
    idat = b"\x78\xda" + _zero_deflate(raw) + struct.pack(">I", adler)

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small valid grayscale JPEG whose SOF0 header is changed to say ``width`` x ``height``."""
    import simplejpeg

    data = bytearray(simplejpeg.encode_jpeg(np.zeros((64, 64, 1), np.uint8), colorspace="GRAY",
                                            colorsubsampling="Gray"))
    at = data.index(b"\xff\xc0")
    data[at + 5 : at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def test_the_bombs_are_what_they_say():
    small = 3 * (1 << 20) + 12345
    import brotli
    import zstandard

    assert zlib.decompress(gzip_bomb(small), 31) == bytes(small)
    assert zstandard.ZstdDecompressor().decompressobj().decompress(zstd_bomb(small, False)) == bytes(small)
    assert brotli.decompress(brotli_bomb(4 << 20)) == bytes(4 << 20)
    assert len(gzip_bomb(GIB)) < 1.1 * (1 << 20)  # 1 MiB that inflates to 1 GiB
    import pyspng

    assert pyspng.load(png_of_zeros(300, 200)).shape == (200, 300)


# -- the volumes they sit in --------------------------------------------------------------------

def bomb_volume(root: Path, payload: bytes, encoding: str = "raw", data_type: str = "uint8",
                suffix: str = ".gz", chunks: int = 4) -> tuple[str, Path]:
    """A volume of ``chunks`` chunks of CHUNK along x, all written (zeros) but the last, whose
    file is ``payload`` under ``suffix``; its URL and the bomb's path."""
    url = "file://" + str(root)
    size = (CHUNK[0] * chunks, CHUNK[1], CHUNK[2])
    vol = cvl.Volume.create(url, data_type=data_type, layer_type="image", size=size, chunk_size=CHUNK,
                            resolution=(1, 1, 1), encoding=encoding, compression="gzip")
    vol[...] = np.zeros((*size, 1), data_type)
    scale = vol.scale
    name = scale.chunk_name((chunks - 1, 0, 0))
    base = root / scale.key / name
    for other in (".gz", ".br", ".zstd", ""):
        if base.with_name(base.name + other).exists():
            base.with_name(base.name + other).unlink()
    target = base.with_name(base.name + suffix)
    target.write_bytes(payload)
    return url, target


_CHILD = textwrap.dedent("""
    import json, resource, sys
    sys.path.insert(0, {tests!r})
    import numpy as np
    import cloudvolume_lite as cvl
    url, serve = {url!r}, {serve!r}
    server = None
    if serve:
        from fixtures_servers import RangeHTTPServer
        server = RangeHTTPServer(serve).start()
        url = server.url + "/" + url
    vol = cvl.Volume(url)
    w = vol.chunk_size[0]
    vol[0 : 2 * w]  # warm up: imports, threads, a batch of two good chunks
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    try:
        vol[{box}]
        outcome = "no error"
    except cvl.VolumeError as e:
        outcome = type(e).__name__ + ": " + str(e)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    if server is not None:
        server.stop()
    print(json.dumps({{"grown": grown, "outcome": outcome}}))
""")


def read_in_child(url: str, box: str, serve: str | None = None) -> tuple[int, str]:
    """Read ``vol[box]`` in a fresh interpreter; (peak RSS growth in bytes, outcome)."""
    code = _CHILD.format(tests=str(TESTS), url=url, serve=serve, box=box)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    return got["grown"], got["outcome"]


def assert_refused(grown: int, outcome: str, *mentions: str) -> None:
    """A DecodeError that names ``mentions``, after at most MEMORY_BUDGET of peak RSS growth."""
    problems = [f"peak RSS grew by {grown / 2**20:.0f} MiB"] if grown >= MEMORY_BUDGET else []
    if not outcome.startswith("DecodeError"):
        problems.append("no DecodeError")
    problems += [f"{m!r} not named" for m in mentions if m not in outcome]
    assert not problems, f"{'; '.join(problems)}: {outcome[:400]}"


BOMBS = {
    "gzip": (lambda: gzip_bomb(GIB), ".gz", f"it states {GIB} bytes"),
    "zstd-sized": (lambda: zstd_bomb(GIB, True), ".zstd", f"it states {GIB} bytes"),
    "zstd-unsized": (lambda: zstd_bomb(256 << 20, False), ".zstd", "was stopped"),
    "br": (lambda: brotli_bomb(256 << 20), ".br", "was stopped"),
}


@pytest.mark.parametrize("kind", list(BOMBS))
def test_a_file_bomb_is_refused_within_a_bounded_memory(tmp_path, kind):
    make, suffix, said = BOMBS[kind]
    url, path = bomb_volume(tmp_path / "v", make(), suffix=suffix)
    grown, outcome = read_in_child(url, "3 * w : 4 * w")
    assert_refused(grown, outcome, path.name, str(BOUND), said)


def test_the_gigabyte_gzip_bomb_through_a_batch_is_bounded(tmp_path):
    url, path = bomb_volume(tmp_path / "v", gzip_bomb(GIB))
    grown, outcome = read_in_child(url, "0 : 4 * w")  # all four chunks, as one batch
    assert_refused(grown, outcome, path.name, str(BOUND))


@pytest.mark.parametrize("box", ["3 * w : 4 * w", "2 * w : 4 * w"], ids=["one-read", "streamed-batch"])
def test_an_http_gzip_bomb_is_refused_within_a_bounded_memory(tmp_path, box):
    # the test server sends NAME.gz as Content-Encoding: gzip: one read goes through the urllib3
    # pool (NetworkStore._read), a batch through the streaming fetcher (NetworkStore._finish)
    bomb_volume(tmp_path / "v", gzip_bomb(GIB))
    grown, outcome = read_in_child("v", box, serve=str(tmp_path))
    assert_refused(grown, outcome, str(BOUND), f"it states {GIB} bytes")


def test_a_bomb_in_memory_is_refused(tmp_path):
    url = f"mem://bombs-{os.getpid()}/v"
    vol = cvl.Volume.create(url, data_type="uint8", layer_type="image", size=CHUNK, chunk_size=CHUNK,
                            resolution=(1, 1, 1))
    store = vol.uncached_store()
    store.put(vol.scale.chunk_name((0, 0, 0)), gzip_bomb(64 << 20), content_encoding="gzip")
    with pytest.raises(cvl.DecodeError, match=str(BOUND)):
        vol[...]


def test_an_s3_bomb_is_refused(s3_bucket, s3_client, s3_secrets):
    url = f"s3://{s3_bucket}/bomb"
    vol = cvl.Volume.create(url, data_type="uint8", layer_type="image", size=(128, 64, 16), chunk_size=CHUNK,
                            resolution=(1, 1, 1), secrets=s3_secrets)
    vol[...] = np.zeros((128, 64, 16, 1), np.uint8)
    key = f"bomb/{vol.scale.key}/{vol.scale.chunk_name((1, 0, 0))}"
    s3_client.put_object(Bucket=s3_bucket, Key=key, Body=gzip_bomb(64 << 20), ContentEncoding="gzip")
    vol = cvl.Volume(url, secrets=s3_secrets)
    for box in (np.s_[64:128], np.s_[0:128]):  # one read; a streamed batch (S3Store._checked)
        with pytest.raises(cvl.DecodeError, match=str(BOUND)):
            vol[box]


def test_the_bound_comes_from_the_scale(tmp_path):
    vol = cvl.Volume.create("file://" + str(tmp_path / "a"), data_type="uint16", layer_type="image",
                            size=(64, 64, 16), chunk_size=CHUNK, resolution=(1, 1, 1), num_channels=3)
    assert compression.decoded_bound(EXPECTED) == BOUND
    assert vol.uncached_store().decoded_limit == compression.decoded_bound(EXPECTED * 2 * 3)
    seg = cvl.Volume.create("file://" + str(tmp_path / "s"), data_type="uint32", layer_type="segmentation",
                            size=(64, 64, 1), chunk_size=(64, 64, 1), resolution=(1, 1, 1),
                            encoding="compressed_segmentation")
    # a 64x64x1 chunk in 8x8x8 blocks: 64 blocks padded to 512 voxels each, 32-bit indices
    assert seg.uncached_store().decoded_limit == compression.decoded_bound(4 + 64 * 8 + 64 * 512 * 8)


@pytest.mark.parametrize("encoding", ["gzip", "br", "zstd"])
def test_chunks_of_every_kind_fit_their_bound(tmp_path, rng, encoding):
    """Noise compresses worst: a chunk of it, of each encoding, still reads back."""
    for enc, dtype, chunk in (("raw", "uint8", CHUNK), ("compressed_segmentation", "uint32", (64, 64, 1)),
                              ("compressed_segmentation", "uint64", (64, 64, 64))):
        url = f"file://{tmp_path}/{enc}-{dtype}-{encoding}"
        vol = cvl.Volume.create(url, data_type=dtype, layer_type="segmentation", size=chunk, chunk_size=chunk,
                                resolution=(1, 1, 1), encoding=enc, compression=encoding)
        truth = rng.integers(0, 2**31, (*chunk, 1)).astype(dtype)
        vol[...] = truth
        np.testing.assert_array_equal(cvl.Volume(url)[...], truth)


# -- images whose header claims more than the chunk -----------------------------------------------

def image_volume(root: Path, encoding: str, payload: bytes) -> str:
    """Four chunks of ``encoding`` along x, the last one's file replaced by ``payload``."""
    url = "file://" + str(root)
    size = (CHUNK[0] * 4, CHUNK[1], CHUNK[2])
    vol = cvl.Volume.create(url, data_type="uint8", layer_type="image", size=size, chunk_size=CHUNK,
                            resolution=(1, 1, 1), encoding=encoding)
    vol[...] = np.zeros((*size, 1), np.uint8)
    scale = vol.scale
    (root / scale.key / scale.chunk_name((3, 0, 0))).write_bytes(payload)
    return url


def test_a_20000_square_png_is_refused_before_decoding(tmp_path):
    png = png_of_zeros(20000, 20000)  # ~400 KB that decodes to 400 MB
    url = image_volume(tmp_path / "v", "png", png)
    grown, outcome = read_in_child(url, "3 * w : 4 * w")
    assert_refused(grown, outcome, "20000x20000", "refused before decoding")


def test_a_jpeg_claiming_20000_square_is_refused_before_decoding(tmp_path):
    url = image_volume(tmp_path / "v", "jpeg", jpeg_claiming(20000, 20000))
    grown, outcome = read_in_child(url, "3 * w : 4 * w")
    assert_refused(grown, outcome, "20000x20000", "refused before decoding")


def _spec(encoding: str, shape=(64, 64, 16, 1), dtype="uint8") -> ChunkSpec:
    from cloudvolume_lite.info import Scale

    scale = Scale.from_json({"key": "k", "size": list(shape[:3]), "resolution": [1, 1, 1],
                             "chunk_sizes": [list(shape[:3])], "encoding": encoding})
    return ChunkSpec(shape, np.dtype(dtype), scale, "test/chunk")


def _never(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
    raise AssertionError("the decoder was called for a stream whose header does not fit the chunk")


def test_a_jxl_of_another_size_is_refused_before_decoding(monkeypatch):
    import imagecodecs

    from cloudvolume_lite.codecs import jxl

    spec = _spec("jxl")
    good = imagecodecs.jpegxl_encode(np.zeros((64 * 16, 64), np.uint8), level=100, lossless=True)
    np.testing.assert_array_equal(jxl.decode(good, spec), np.zeros(spec.shape, np.uint8))
    big = imagecodecs.jpegxl_encode(np.zeros((2000, 3000), np.uint8), level=90)
    animated = imagecodecs.jpegxl_encode(np.zeros((3, 64 * 16, 64), np.uint8), level=100, lossless=True)
    monkeypatch.setattr(imagecodecs, "jpegxl_decode", _never)
    with pytest.raises(cvl.DecodeError, match="3000x2000"):
        jxl.decode(big, spec)
    with pytest.raises(cvl.DecodeError, match="animation"):
        jxl.decode(animated, spec)
    assert jxl.header(good) == (64, 64 * 16, False)


def test_float_streams_of_another_size_are_refused_before_decoding(monkeypatch):
    import fpzip
    import zfpc

    from cloudvolume_lite.codecs import fpzip as fpzip_codec
    from cloudvolume_lite.codecs import kempressed
    from cloudvolume_lite.codecs import zfpc as zfpc_codec

    spec = _spec("fpzip", (16, 16, 8, 1), "float32")
    big_f = fpzip.compress(np.zeros((200, 200, 200, 1), np.float32), order="F")
    big_z = zfpc.compress(np.zeros((200, 200, 200, 1), np.float32, order="F"))
    monkeypatch.setattr(fpzip, "decompress", _never)
    monkeypatch.setattr(zfpc, "decompress", _never)
    with pytest.raises(cvl.DecodeError, match="refused before decoding"):
        fpzip_codec.decode(big_f, spec)
    with pytest.raises(cvl.DecodeError, match="refused before decoding"):
        kempressed.decode(big_f, _spec("kempressed", (16, 16, 8, 1), "float32"))
    with pytest.raises(cvl.DecodeError, match="refused before decoding"):
        zfpc_codec.decode(big_z, _spec("zfpc", (16, 16, 8, 1), "float32"))
    assert fpzip_codec.header(big_f) == (np.dtype(np.float32), (200, 200, 200, 1))


# -- the bounded decompressors themselves -----------------------------------------------------------

@pytest.mark.parametrize("encoding", ["gzip", "br", "zstd"])
def test_decompress_stops_at_its_limit(encoding):
    data = os.urandom(1000) + bytes(300_000)
    packed = compression.compress(data, encoding)
    assert compression.decompress(packed, encoding, "x", limit=len(data)) == data
    assert compression.decompress(packed, encoding, "x") == data
    with pytest.raises(cvl.DecodeError, match=f"x: the {encoding} stream inflates past {len(data) - 1} bytes"):
        compression.decompress(packed, encoding, "x", limit=len(data) - 1)


def test_gzip_of_several_members_is_read_whole():
    # libdeflate reads one member and ignores the rest: 10 bytes of 100_000 came back before
    data = os.urandom(100_000)
    two = compression.compress(data[:10], "gzip") + compression.compress(data[10:], "gzip")
    padded = compression.compress(data[:10], "gzip") + b"\0\0\0" + compression.compress(data[10:], "gzip")
    assert len(compression.decompress(two, "gzip")) == len(data)
    for limit in (None, len(data)):
        assert compression.decompress(two, "gzip", limit=limit) == data
        assert compression.decompress(padded, "gzip", limit=limit) == data
    with pytest.raises(cvl.DecodeError, match="inflates past"):
        compression.decompress(two, "gzip", limit=len(data) - 1)
    with pytest.raises(cvl.DecodeError, match="corrupt"):
        compression.decompress(compression.compress(data, "gzip") + b"junk", "gzip", limit=len(data))


def test_zstd_of_several_frames_is_read_whole():
    # a decompressobj reads one frame and ignores the rest: 7 bytes of 100_000 came back before
    import zstandard

    data = os.urandom(100_000)
    frames = compression.compress(data[:7], "zstd") + compression.compress(data[7:], "zstd")
    unsized = zstandard.ZstdCompressor(write_content_size=False).compress(data)
    assert len(compression.decompress(frames, "zstd")) == len(data)
    for limit in (None, len(data)):
        assert compression.decompress(frames, "zstd", limit=limit) == data
        assert compression.decompress(unsized, "zstd", limit=limit) == data
    for cut in (1, 4, 9):
        with pytest.raises(cvl.DecodeError, match="corrupt"):
            compression.decompress(unsized[:-cut], "zstd", limit=len(data))
