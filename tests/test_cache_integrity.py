"""The disk cache never serves a damaged copy and never follows a symbolic link inside its
directory (issue 16: "Damage is detected, secrets never shown", items 1 and 2).

Each copy carries a checksum (crc32c, or zlib's crc32) over its place in the cache, its header
and its bytes: a flipped byte, a truncated file, same-size garbage or another chunk's file
copied over it is removed (a warning names the file) and fetched again; when the store cannot
be asked, the error names the cache file. Links are refused: reads fetch instead, writes warn
(CacheWriteWarning) and skip, removals and clears never reach what a link points to.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import struct
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

import cloudvolume_lite as cvl
from cloudvolume_lite.stores import cache_format
from cloudvolume_lite.stores import disk_cache as dc
from cloudvolume_lite.stores import open_store
from cloudvolume_lite.stores.disk_cache import MAGIC, DiskCache, DiskCacheStore
from fixtures_servers import Faults, RangeHTTPServer

SHAPE = (16, 16, 8)
CHUNK = (8, 8, 8)
FAST = cvl.RetryPolicy(attempts=2, base_delay=0.005, max_delay=0.01, connect_timeout=1, read_timeout=2)


def _truth() -> np.ndarray:
    return np.random.default_rng(16).integers(0, 255, SHAPE, dtype=np.uint8)


def _make(url: str) -> np.ndarray:
    """A raw, uncompressed uint8 volume at ``url`` (no codec that could notice damage itself)."""
    truth = _truth()
    vol = cvl.Volume.create(url, data_type="uint8", layer_type="image", size=SHAPE, chunk_size=CHUNK,
                            resolution=(1, 1, 1), encoding="raw", compression=None)
    vol[...] = truth
    return truth


def _chunk_files(vol: cvl.Volume) -> list[Path]:
    d = Path(vol.chunk_store().dir)  # type: ignore[attr-defined]
    return sorted(p for p in d.iterdir() if p.is_file() and not p.name.startswith("."))


def _filled(tmp_path: Path, recheck: object = "open") -> tuple[str, Path, np.ndarray, list[Path]]:
    """A volume on disk, read once through a disk cache: (url, cache dir, truth, chunk files)."""
    url = f"file://{tmp_path}/vol"
    truth = _make(url)
    cache = tmp_path / "cache"
    vol = cvl.Volume(url, cache=str(cache), recheck=recheck)  # type: ignore[arg-type]
    np.testing.assert_array_equal(vol[...][..., 0], truth)
    files = _chunk_files(vol)
    assert len(files) == 4
    return url, cache, truth, files


def _read(url: str, cache: Path, recheck: object) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cvl.Volume(url, cache=str(cache), recheck=recheck)[...][..., 0]  # type: ignore[arg-type]


def _warned(seen: list[warnings.WarningMessage], kind: str, text: str) -> bool:
    """Whether a warning of class ``kind`` mentioning ``text`` was among ``seen``."""
    return any(type(w.message).__name__ == kind and text in str(w.message) for w in seen)


def _flip(path: Path, at: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[at] ^= 0x01
    path.write_bytes(bytes(raw))


RECHECKS = ["open", False]


# -- damage -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("recheck", RECHECKS)
def test_a_flipped_byte_in_a_cached_chunk_is_not_served(recheck: object, tmp_path: Path) -> None:
    url, cache, truth, files = _filled(tmp_path, recheck)
    _flip(files[0], len(files[0].read_bytes()) - 100)  # inside the voxels
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        got = cvl.Volume(url, cache=str(cache), recheck=recheck)[...][..., 0]  # type: ignore[arg-type]
    np.testing.assert_array_equal(got, truth)
    assert _warned(seen, "CacheIntegrityWarning", str(files[0]))
    assert files[0].read_bytes().startswith(MAGIC)  # fetched again and kept again
    np.testing.assert_array_equal(_read(url, cache, recheck), truth)


@pytest.mark.parametrize("recheck", RECHECKS)
def test_a_flipped_byte_in_the_header_is_not_served(recheck: object, tmp_path: Path) -> None:
    url, cache, truth, files = _filled(tmp_path, recheck)
    _flip(files[1], 19)  # the top byte of checked_at: a copy made to look checked at another time
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        got = cvl.Volume(url, cache=str(cache), recheck=recheck)[...][..., 0]  # type: ignore[arg-type]
    np.testing.assert_array_equal(got, truth)
    assert _warned(seen, "CacheIntegrityWarning", str(files[1]))  # the header is covered too


@pytest.mark.parametrize("recheck", RECHECKS)
def test_another_chunks_file_copied_over_is_not_served(recheck: object, tmp_path: Path) -> None:
    url, cache, truth, files = _filled(tmp_path, recheck)
    files[1].write_bytes(files[0].read_bytes())  # a valid file, of the wrong key
    np.testing.assert_array_equal(_read(url, cache, recheck), truth)


@pytest.mark.parametrize("recheck", RECHECKS)
def test_same_size_garbage_is_not_served(recheck: object, tmp_path: Path) -> None:
    url, cache, truth, files = _filled(tmp_path, recheck)
    raw = files[0].read_bytes()
    n = int(np.prod(CHUNK))  # the voxels are the file's last bytes; the header stays as it was
    garbage = np.random.default_rng(1).integers(0, 255, n, dtype=np.uint8).tobytes()
    files[0].write_bytes(raw[:-n] + garbage)
    np.testing.assert_array_equal(_read(url, cache, recheck), truth)


@pytest.mark.parametrize("recheck", RECHECKS)
def test_a_truncated_copy_heals_and_the_warning_names_the_cache_file(recheck: object, tmp_path: Path) -> None:
    url, cache, truth, files = _filled(tmp_path, recheck)
    files[0].write_bytes(files[0].read_bytes()[:-7])
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        got = cvl.Volume(url, cache=str(cache), recheck=recheck)[...][..., 0]  # type: ignore[arg-type]
    np.testing.assert_array_equal(got, truth)
    assert any(str(files[0]) in str(w.message) for w in seen)
    np.testing.assert_array_equal(_read(url, cache, recheck), truth)  # and stays healed


def test_store_get_replaces_a_damaged_copy(tmp_path: Path) -> None:
    store = DiskCacheStore(open_store(f"file://{tmp_path}/data"), DiskCache(str(tmp_path / "c")), recheck=False)
    store.put("k", b"the right bytes")
    path = Path(store._file("k"))
    _flip(path, len(path.read_bytes()) - 3)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert store.get("k") == b"the right bytes"
        assert dict(store.iter_get(["k"])) == {"k": b"the right bytes"}
        _flip(path, len(path.read_bytes()) - 3)
        assert dict(store.iter_get(["k"])) == {"k": b"the right bytes"}
    assert sum(_warned([w], "CacheIntegrityWarning", str(path)) for w in seen) == 2
    assert store.cache.load(str(path)).data == b"the right bytes"  # type: ignore[union-attr]


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_bad_copy_of_an_unreachable_store_is_an_error_naming_the_cache_file(damage: str, tmp_path: Path) -> None:
    root = tmp_path / "served"
    truth = _make(f"file://{root}/vol")
    srv = RangeHTTPServer(root).start()
    cache = tmp_path / "cache"
    try:
        vol = cvl.Volume(f"{srv.url}/vol", cache=str(cache), recheck=False, retry=FAST)
        np.testing.assert_array_equal(vol[...][..., 0], truth)
        files = _chunk_files(vol)
    finally:
        srv.stop()
    target = files[0]
    if damage == "flip":
        _flip(target, len(target.read_bytes()) - 1)
    else:
        target.write_bytes(target.read_bytes()[:-9])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(cvl.VolumeError) as err:
            vol[...]
    assert str(target) in str(err.value)


# -- the header ---------------------------------------------------------------------------------------
def test_header_version_2_layout(tmp_path: Path) -> None:
    cache = DiskCache(str(tmp_path / "c"))
    path = str(tmp_path / "c" / "mem" / "b" / "k")
    cache.keep(path, b"payload", "gen-7", 1234.5)
    raw = Path(path).read_bytes()
    magic, version, flags, n, checked_at = struct.unpack_from("<8sBBHd", raw)
    assert (magic, version, n, checked_at) == (MAGIC, 2, 5, 1234.5)
    assert flags == dc.WRITE_KIND and flags in (dc.CRC32C, dc.CRC32)
    (crc,) = struct.unpack_from("<I", raw, 20)
    assert raw[24:29] == b"gen-7" and raw[29:] == b"payload"
    covered = b"mem/b/k\0" + raw[:20] + b"gen-7"
    if flags == dc.CRC32:
        assert crc == zlib.crc32(b"payload", zlib.crc32(covered))
    else:
        import google_crc32c

        assert crc == google_crc32c.value(covered + b"payload")
    assert cache.load(path) == dc.CachedCopy(b"payload", "gen-7", 1234.5)


def test_zlib_crc32_files_are_read_and_crc32c_ones_need_the_package(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    cache = DiskCache(str(tmp_path / "c"))
    path = str(tmp_path / "c" / "k")
    (tmp_path / "c").mkdir()
    Path(path).write_bytes(dc.encode_header2("k", "g", 1.0, b"data", kind=dc.CRC32) + b"data")
    assert cache.load(path) == dc.CachedCopy(b"data", "g", 1.0)
    pytest.importorskip("google_crc32c")
    Path(path).write_bytes(dc.encode_header2("k", "g", 1.0, b"data", kind=dc.CRC32C) + b"data")
    assert cache.load(path) == dc.CachedCopy(b"data", "g", 1.0)
    monkeypatch.setattr(cache_format, "_crc32c", None)  # an installation without google-crc32c
    assert cache.load(path) is None  # cannot be checked here: a miss, refetched (and rewritten in crc32)
    assert Path(path).exists()


def test_version_1_files_are_unchecked_and_fetched_again_in_full_when_due(tmp_path: Path) -> None:
    """A version-1 copy has no checksum: it reads as "generation unknown, never checked", so a
    due one is fetched whole (a conditional request would vouch for the generation, not for
    the bytes) and rewritten as version 2."""
    url, cache, truth, files = _filled(tmp_path)
    for f in files:  # as the previous version wrote them, with a byte flipped in the first
        raw = f.read_bytes()
        _, version, _, n, checked = struct.unpack_from("<8sBBHd", raw)
        at = 24 if version == 2 else 20
        gen = raw[at:at + n].decode()
        f.write_bytes(dc.encode_header(gen, checked) + raw[at + n:])
        assert f.read_bytes()[8] == 1
    _flip(files[0], len(files[0].read_bytes()) - 5)
    np.testing.assert_array_equal(_read(url, cache, "open"), truth)
    assert all(f.read_bytes()[8] == 2 for f in files)


# -- links ---------------------------------------------------------------------------------------------
def _crafted_v1(data: bytes) -> bytes:
    """A cache file as the previous version wrote it: served as it is under recheck=False."""
    return dc.encode_header(None, time.time()) + data


def test_a_linked_chunk_file_is_not_read_through(tmp_path: Path) -> None:
    url, cache, truth, files = _filled(tmp_path, False)
    outside = tmp_path / "outside-chunk"
    crafted = _crafted_v1(bytes(int(np.prod(CHUNK))))  # all zeros
    outside.write_bytes(crafted)
    files[0].unlink()
    files[0].symlink_to(outside)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        got = cvl.Volume(url, cache=str(cache), recheck=False)[...][..., 0]
    np.testing.assert_array_equal(got, truth)
    assert _warned(seen, "CacheIntegrityWarning", "symbolic link")
    assert outside.read_bytes() == crafted  # never written through
    assert not files[0].is_symlink()  # the fill replaced the link itself with a copy of its own


def test_a_linked_directory_inside_the_cache_is_never_written_or_read_through(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/vol"
    truth = _make(url)
    cache = tmp_path / "cache"
    vol = cvl.Volume(url, cache=str(cache), recheck=False)
    scale_dir = Path(vol.chunk_store().dir)  # type: ignore[attr-defined]
    outside = tmp_path / "outside"
    outside.mkdir()
    scale_dir.parent.mkdir(parents=True, exist_ok=True)
    scale_dir.symlink_to(outside, target_is_directory=True)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        np.testing.assert_array_equal(vol[...][..., 0], truth)
    assert list(outside.iterdir()) == []  # nothing written out there
    assert _warned(seen, "CacheWriteWarning", "symbolic link")
    # copies planted out there (valid for either header version) are not read through the link
    name = vol.scales[0].chunk_name((0, 0, 0))
    zeros = bytes(int(np.prod(CHUNK)))
    place = os.path.relpath(scale_dir / name, cache).replace(os.sep, "/")
    for planted in (_crafted_v1(zeros), dc.encode_header2(place, None, time.time(), zeros) + zeros):
        (outside / name).write_bytes(planted)
        np.testing.assert_array_equal(_read(url, cache, False), truth)


def test_removing_a_copy_never_reaches_through_a_linked_directory(tmp_path: Path) -> None:
    cache = DiskCache(str(tmp_path / "c"))
    store = DiskCacheStore(open_store(f"file://{tmp_path}/data"), cache)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "k").write_bytes(b"not the cache's")
    Path(store.dir).parent.mkdir(parents=True, exist_ok=True)
    Path(store.dir).symlink_to(outside, target_is_directory=True)
    store.inner.put("k", b"x")
    store.delete("k")  # forgets the copy at <dir>/k: must not unlink outside/k
    assert (outside / "k").read_bytes() == b"not the cache's"


def test_clearing_a_volume_behind_a_link_inside_the_cache_refuses(tmp_path: Path) -> None:
    url = f"mem://integrity-{os.getpid()}-{time.monotonic_ns()}/v"
    truth = _make(url)
    cache = tmp_path / "cache"
    vol = cvl.Volume(url, cache=str(cache))
    ns_dir = Path(vol.cache.path).parent  # type: ignore[union-attr]  # <cache>/mem/<namespace>
    outside = tmp_path / "outside"
    (outside / "v").mkdir(parents=True)
    (outside / "v" / "precious").write_bytes(b"keep me")
    shutil.rmtree(ns_dir)  # the info copy made it a directory: a link in its place
    ns_dir.symlink_to(outside, target_is_directory=True)
    with pytest.raises(cvl.RequestError, match="symbolic link"):
        vol.cache.clear()  # type: ignore[union-attr]
    assert (outside / "v" / "precious").read_bytes() == b"keep me"
    np.testing.assert_array_equal(_read(url, cache, "open"), truth)


# -- raw chunks over plain HTTP (item 5) ---------------------------------------------------------------
def _served_volume(tmp_path: Path, faults: Faults) -> tuple[RangeHTTPServer, np.ndarray]:
    root = tmp_path / "served"
    truth = _make(f"file://{root}/vol")
    return RangeHTTPServer(root, faults).start(), truth


@pytest.mark.parametrize("kind", ["content_md5", "s3_like"])
def test_answers_damaged_on_the_way_are_fetched_again(kind: str, tmp_path: Path) -> None:
    """Half the answers come with one byte flipped (after the server made its headers):
    the Content-MD5 (or S3's MD5 ETag) catches them, streamed or not, and they are read again."""
    faults = Faults(rate=0.5, kinds=("corrupt",), max_consecutive=1, seed=5, **{kind: True})
    srv, truth = _served_volume(tmp_path, faults)
    try:
        vol = cvl.Volume(f"{srv.url}/vol", retry=FAST)
        for _ in range(3):  # a batch of 4 chunks: through the streaming fetcher
            np.testing.assert_array_equal(vol[...][..., 0], truth)
        store = vol.chunk_store()
        for cell in [(0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 0)]:  # one by one: the careful path
            name = vol.scale.chunk_name(cell)
            assert store.get(name) == (srv.root / "vol" / vol.scale.key / name).read_bytes()
        assert srv.log.faults > 0
        assert store._streaming().stats["redone"] > 0  # type: ignore[attr-defined]  # some were streamed
    finally:
        srv.stop()


def test_answers_that_stay_damaged_are_an_error(tmp_path: Path) -> None:
    srv, truth = _served_volume(tmp_path, Faults(content_md5=True))
    try:
        vol = cvl.Volume(f"{srv.url}/vol", retry=FAST)
        srv.set_faults(Faults(content_md5=True, always="corrupt"))
        with pytest.raises(cvl.StoreError, match="Content-MD5") as err:
            vol[...]
        assert f"{srv.url}/vol/{vol.scale.key}/" in str(err.value)  # names the chunk
        with pytest.raises(cvl.StoreError, match="Content-MD5"):
            vol.chunk_store().get(vol.scale.chunk_name((0, 0, 0)))
        srv.set_faults(Faults(content_md5=True))
        np.testing.assert_array_equal(vol[...][..., 0], truth)
    finally:
        srv.stop()


def test_only_hashes_an_answer_states_are_checked() -> None:
    from cloudvolume_lite.stores.http import body_check, damage

    body = b"some chunk bytes"
    md5 = hashlib.md5(body)
    # our test server's ETag (a blake2b), or any 32-hex-digit ETag of a server not known to
    # make it an MD5, is a validator, never a hash
    assert body_check({"etag": f'"{hashlib.blake2b(body, digest_size=12).hexdigest()}"'}) is None
    assert body_check({"etag": f'"{"ab" * 16}"', "server": "nginx"}) is None
    s3 = {"etag": f'"{md5.hexdigest()}"', "server": "AmazonS3"}
    assert damage(s3, body) is None and damage(s3, body[:-1] + b"?") is not None
    assert body_check({**s3, "x-amz-server-side-encryption": "aws:kms"}) is None  # the ETag is not an MD5 there
    assert body_check({**s3, "etag": f'"{md5.hexdigest()}-3"'}) is None  # multipart
    assert body_check({**s3, "etag": f'W/"{md5.hexdigest()}"'}) is None  # weak
    content_md5 = {"content-md5": base64.b64encode(md5.digest()).decode()}
    assert damage(content_md5, body) is None and "Content-MD5" in (damage(content_md5, b"x" + body[1:]) or "")
    goog = {"x-goog-hash": f"md5={base64.b64encode(md5.digest()).decode()}"}
    assert damage(goog, body) is None and damage(goog, body[1:] + b"x") is not None
    # GCS decompressed a gzip object for us: its hashes are of the stored bytes, not these
    assert body_check({**goog, "x-goog-stored-content-encoding": "gzip"}) is None
