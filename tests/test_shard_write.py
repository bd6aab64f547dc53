"""Sharded writes cost one rewrite of each shard: downsampling a shard of many chunks, resuming
one half filled, copying into shards, and plain uploads spanning shards. A counting store (a real LocalStore that
notes every file it writes) counts the shard writes; the bytes are compared with the chunk by
chunk path (each chunk uploaded on its own, the way downsampling used to write), and the peers
read the result."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from oracles import random_volume

import cloudvolume_lite as cvl
from cloudvolume_lite import compression
from cloudvolume_lite.bbox import Bbox
from cloudvolume_lite.downsample import average, downsample_group, mode
from cloudvolume_lite.sharding import ShardLayout
from cloudvolume_lite.stores import StoreRegistry, StoreURL, shard_index
from cloudvolume_lite.stores.local import LocalStore
from cloudvolume_lite.writer import fill_chunks, plan_slabs


class CountingStore(LocalStore):
    """Files under a directory, every ``put`` noted in ``log`` as (path, bytes) (children share it)."""

    def __init__(self, url: StoreURL, log: list[tuple[str, int]]):
        super().__init__(url)
        self.log = log

    def put(self, key: str, data: bytes, **kw) -> str:  # type: ignore[override]
        self.log.append((self._path(key), len(data)))
        return super().put(key, data, **kw)

    def _with_url(self, url: StoreURL) -> CountingStore:
        return CountingStore(url, self.log)


def counted(root: Path) -> tuple[StoreRegistry, list[tuple[str, int]]]:
    """A registry whose ``counted://`` URLs open ``root`` as a CountingStore, and its log."""
    log: list[tuple[str, int]] = []
    return StoreRegistry().with_scheme("counted", lambda url, **_: CountingStore(StoreURL("file", "", str(root)), log)), log


def shard_writes(log: list[tuple[str, int]]) -> list[str]:
    return sorted(os.path.basename(p) for p, _ in log if p.endswith(".shard"))


def identity(shard_bits: int, inner_bits: int) -> dict:
    """Identity-hashed shards of 2**inner_bits chunks (two minishards each)."""
    return {"@type": "neuroglancer_uint64_sharded_v1", "preshift_bits": inner_bits - 1, "hash": "identity",
            "minishard_bits": 1, "shard_bits": shard_bits, "minishard_index_encoding": "gzip", "data_encoding": "gzip"}


HASHED = {"@type": "neuroglancer_uint64_sharded_v1", "preshift_bits": 0, "hash": "murmurhash3_x86_128",
          "minishard_bits": 2, "shard_bits": 1, "minishard_index_encoding": "gzip", "data_encoding": "raw"}

# mip 0 (61, 58, 30) from an odd offset, chunks of 8: mip 1 is a 4x4x2 grid of 32 chunks, edge chunks clipped
SHAPE, OFFSET, CHUNK = (61, 58, 30), (3, -5, 1), (8, 8, 8)
LINES = {
    "seg uint32": ("segmentation", "uint32", 1, "compressed_segmentation"),
    "img float32": ("image", "float32", 1, "raw"),
    "img uint64 x2": ("image", "uint64", 2, "raw"),
}


def source(root: Path, rng: np.random.Generator, line: str, shape=SHAPE, offset=OFFSET) -> tuple[np.ndarray, str]:
    """Mip 0 of ``line`` at ``root`` (written by a plain Volume), its data and its URL."""
    layer, dtype, channels, encoding = LINES[line]
    truth = random_volume((*shape, channels), dtype, rng, labels=7 if layer == "segmentation" else None)
    url = f"file://{root}"
    vol = cvl.Volume.create(url, data_type=dtype, layer_type=layer, size=shape, chunk_size=CHUNK, resolution=(4, 4, 40),
                            voxel_offset=offset, num_channels=channels, encoding=encoding)
    vol[...] = truth
    return truth, url


def chunk_by_chunk(url: str, mip: int, method: str, cells=None) -> None:
    """Fill scale ``mip`` from ``mip - 1`` one chunk upload at a time (the old way: each
    upload into a sharded scale rewrites the chunk's shard)."""
    vol = cvl.Volume(url)
    src, dst = vol.scales[mip - 1], vol.scales[mip]
    factor = tuple(int(round(d / s)) for d, s in zip(dst.resolution, src.resolution))
    kernel = mode if method == "mode" else average
    for cell in cells if cells is not None else dst.cells(dst.bounds):
        box = dst.chunk_bbox(cell)
        lo = [max(b * f, s) for b, f, s in zip(box.minpt, factor, src.bounds.minpt)]
        hi = [min(b * f, s) for b, f, s in zip(box.maxpt, factor, src.bounds.maxpt)]
        front = tuple(l - b * f for l, b, f in zip(lo, box.minpt, factor))
        out = kernel(vol.download(Bbox(lo, hi), mip=mip - 1), factor, front)
        vol.upload(box, out[: box.size[0], : box.size[1], : box.size[2]], mip=mip)


def scale_files(root: Path, key: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / key).iterdir()) if not p.name.startswith(".")}


@pytest.mark.parametrize("sharding", ["identity", "hashed"])
@pytest.mark.parametrize("line", list(LINES))
def test_downsample_writes_each_shard_once_with_the_chunk_by_chunk_bytes(tmp_path, rng, line, sharding) -> None:
    """Downsampling into identity shards (boxes of 8 chunks) or hashed ones (scattered chunks)
    writes each shard file once, with the bytes the chunk-by-chunk path leaves."""
    spec = identity(2, 3) if sharding == "identity" else HASHED  # 4 shards of 8 chunks, or 2 scattered ones
    _, url = source(tmp_path / "ref", rng, line)
    method = "mode" if LINES[line][0] == "segmentation" else "average"
    ref = cvl.Volume(url)
    mip = ref.add_scale((2, 2, 2), sharding=spec)
    chunk_by_chunk(url, mip, method)
    key = ref.scales[mip].key
    want = scale_files(tmp_path / "ref", key)
    shutil.copytree(tmp_path / "ref", tmp_path / "new", ignore=lambda d, names: [key] if d == str(tmp_path / "ref") else [])
    reg, log = counted(tmp_path / "new")
    vol = cvl.Volume("counted://x/new", stores=reg)
    vol.downsample(mip, mip - 1)
    assert len(want) == (4 if sharding == "identity" else 2) and all(k.endswith(".shard") for k in want)
    assert shard_writes(log) == sorted(want), "each shard written once"
    assert scale_files(tmp_path / "new", key) == want


def test_downsample_under_locking_writes_each_shard_once(tmp_path, rng) -> None:
    """With ``locking=True`` each shard's one write is made under the shard's lock."""
    _, url = source(tmp_path / "v", rng, "img float32")
    reg, log = counted(tmp_path / "v")
    vol = cvl.Volume("counted://x/v", stores=reg, locking=True)
    mip = vol.add_scale((2, 2, 2), sharding=identity(2, 3), downsample=True)
    assert shard_writes(log) == ["0.shard", "1.shard", "2.shard", "3.shard"]
    shutil.copytree(tmp_path / "v", tmp_path / "ref", ignore=lambda d, names: [vol.scales[mip].key]
                    if d == str(tmp_path / "v") else [])
    chunk_by_chunk(f"file://{tmp_path}/ref", mip, "average")
    assert scale_files(tmp_path / "v", vol.scales[mip].key) == scale_files(tmp_path / "ref", vol.scales[mip].key)


def test_a_multi_chunk_shard_is_read_by_the_peers(tmp_path, rng) -> None:
    """One shard of 32 chunks from add_scale(downsample=True): TensorStore and CloudVolume read
    what the chunk-by-chunk reference holds."""
    import tensorstore as ts
    from cloudvolume import CloudVolume

    truth, url = source(tmp_path / "v", rng, "seg uint32")
    vol = cvl.Volume(url)
    mip = vol.add_scale((2, 2, 2), sharding=identity(0, 5), downsample=True)
    assert list(scale_files(tmp_path / "v", vol.scales[mip].key)) == ["0.shard"]
    got = cvl.Volume(url, mip=mip)[...]
    ref_url = f"file://{tmp_path}/ref"
    ref = cvl.Volume.from_numpy(truth, ref_url, chunk_size=CHUNK, voxel_offset=OFFSET, layer_type="segmentation",
                                resolution=(4, 4, 40))
    chunk_by_chunk(ref_url, ref.add_scale((2, 2, 2)), "mode")
    np.testing.assert_array_equal(got, cvl.Volume(ref_url, mip=1)[...])
    theirs = ts.open({"driver": "neuroglancer_precomputed", "kvstore": url, "scale_index": mip}).result()
    np.testing.assert_array_equal(np.asarray(theirs.read().result()), got)
    np.testing.assert_array_equal(np.asarray(CloudVolume(url, mip=mip, progress=False)[:, :, :]), got)


def test_resume_fills_only_what_is_missing_with_one_write_per_shard(tmp_path, rng) -> None:
    """A scale of 4 shards as a killed job may leave it: one shard whole, one half written, two
    absent. ``resume=True`` computes only the missing chunks (the source under the present
    ones is deleted: reading it would fail), writes each unfinished shard once, leaves the
    whole one alone, and ends with the bytes of an uninterrupted run. (Mip 0 from the origin:
    each mip 1 chunk's source is 8 chunks of its own.)"""
    _, url = source(tmp_path / "v", rng, "seg uint32", (64, 64, 32), (0, 0, 0))
    whole = cvl.Volume(url)
    mip = whole.add_scale((2, 2, 2), sharding=identity(2, 3))
    dst = whole.scales[mip]
    chunk_by_chunk(url, mip, "mode")
    want = scale_files(tmp_path / "v", dst.key)
    for name in want:
        os.unlink(tmp_path / "v" / dst.key / name)
    # the shards are the 2x2x2 blocks of cells; shard 0 (cells 0-1) whole, the lower half of shard 1 (x 2-3)
    done = [c for c in dst.cells(dst.bounds) if c[0] < 2 and c[1] < 2]
    half = [c for c in dst.cells(dst.bounds) if c[0] >= 2 and c[1] < 2 and c[2] == 0]
    chunk_by_chunk(url, mip, "mode", done + half)
    assert list(scale_files(tmp_path / "v", dst.key)) == ["0.shard", "1.shard"]
    kept = (tmp_path / "v" / dst.key / "0.shard").stat()
    src = whole.scales[mip - 1]
    for cell in done + half:  # the source under the present chunks: gone
        under = dst.chunk_bbox(cell)
        for c in src.cells(Bbox([2 * a for a in under.minpt], [2 * b for b in under.maxpt])):
            os.unlink(tmp_path / "v" / src.key / src.chunk_name(c))
    reg, log = counted(tmp_path / "v")
    cvl.Volume("counted://x/v", stores=reg).downsample(mip, mip - 1, resume=True)
    assert shard_writes(log) == ["1.shard", "2.shard", "3.shard"]
    after = (tmp_path / "v" / dst.key / "0.shard").stat()
    assert (after.st_ino, after.st_mtime_ns) == (kept.st_ino, kept.st_mtime_ns)
    assert scale_files(tmp_path / "v", dst.key) == want


def test_slabs_cover_each_chunk_once_within_the_budget(tmp_path) -> None:
    vol = cvl.Volume.create(f"file://{tmp_path}/v", data_type="uint8", layer_type="image", size=(100, 70, 33),
                            chunk_size=(8, 8, 4), resolution=(1, 1, 1))
    s = vol.scale
    cells = list(s.cells(s.bounds))
    for budget_chunks in (1, 3, 8, 64, 10**6):
        slabs = plan_slabs(s, cells, budget_chunks * 8 * 8 * 4)
        covered = [c for _, members in slabs for c in members]
        assert sorted(covered) == sorted(cells)
        for box, members in slabs:
            assert box.size[0] * box.size[1] * box.size[2] <= max(1, budget_chunks) * 8 * 8 * 4
            assert all(box.contains_bbox(s.chunk_bbox(c)) for c in members)
            assert s.is_aligned(box)
    # scattered cells (a hashed shard's) are made one by one, not through their bounding box
    sparse = [(0, 0, 0), (7, 5, 5)]
    assert [m for _, m in plan_slabs(s, sparse, 10**9)] == [[(0, 0, 0)], [(7, 5, 5)]]


def test_small_slabs_and_flushes_write_the_same_bytes(tmp_path, rng) -> None:
    """A downsample made one chunk per slab, and a fill written in one update per chunk, store
    the bytes of the default (a few large slabs, one write per shard)."""
    _, url = source(tmp_path / "v", rng, "img float32")
    vol = cvl.Volume(url)
    mip = vol.add_scale((2, 2, 2), sharding=identity(0, 5), downsample=True)
    key = vol.scales[mip].key
    want = scale_files(tmp_path / "v", key)
    dst = vol.scales[mip]
    cells = list(dst.cells(dst.bounds))
    mip1 = cvl.Volume(url, mip=mip)[...]
    os.unlink(tmp_path / "v" / key / "0.shard")
    assert downsample_group(vol, cells, mip=mip, source_mip=mip - 1, factor=(2, 2, 2), method="average",
                            slab_bytes=1) == 32
    assert scale_files(tmp_path / "v", key) == want
    os.unlink(tmp_path / "v" / key / "0.shard")
    reg, log = counted(tmp_path / "v")
    counting = cvl.Volume("counted://x/v", stores=reg)

    def from_mip1(box: Bbox) -> np.ndarray:
        return mip1[tuple(slice(a - o, b - o) for a, b, o in zip(box.minpt, box.maxpt, dst.voxel_offset))]

    n = fill_chunks(counting.runtime, dst, counting.chunk_store(mip), cells, from_mip1, counting.write_options,
                    voxel_cost=4, slab_bytes=1, flush_bytes=1)
    assert n == 32 and shard_writes(log) == ["0.shard"] * 32
    assert scale_files(tmp_path / "v", key) == want


@pytest.mark.parametrize("locking", [False, True])
def test_one_upload_spanning_shards_rewrites_each_once(tmp_path, rng, locking) -> None:
    """``vol[...] = array`` over 4 shards, and an unaligned write inside two of them: each
    touched shard is written once per upload."""
    reg, log = counted(tmp_path / "v")
    truth = random_volume((32, 32, 16, 1), "uint16", rng)
    vol = cvl.Volume.create("counted://x/v", data_type="uint16", layer_type="image", size=(32, 32, 16),
                            chunk_size=(8, 8, 8), resolution=(1, 1, 1), sharding=identity(2, 3), stores=reg)
    vol = cvl.Volume("counted://x/v", stores=reg, locking=locking)
    vol[...] = truth
    assert shard_writes(log) == ["0.shard", "1.shard", "2.shard", "3.shard"]
    log.clear()
    patch = random_volume((13, 5, 9, 1), "uint16", rng)
    vol[10:23, 3:8, 2:11] = patch  # cells x 1-2, y 0, z 0-1: shards 0 and 1, partial chunks
    truth[10:23, 3:8, 2:11] = patch
    assert shard_writes(log) == ["0.shard", "1.shard"]
    np.testing.assert_array_equal(cvl.Volume(f"file://{tmp_path}/v")[...], truth)


@pytest.mark.parametrize("spec", [identity(2, 3), HASHED], ids=["identity", "hashed"])
def test_copy_into_shards_writes_each_once_with_the_upload_bytes(tmp_path, rng, spec) -> None:
    """``copy_volume`` (and ``copy_units``, its task on a cluster) into a sharded destination
    fills each shard slab by slab and writes it once; the shards hold what one upload of the
    whole array writes."""
    from cloudvolume_lite.dask import write_unit
    from cloudvolume_lite.transfer import copy_units, copy_volume

    truth, url = source(tmp_path / "src", rng, "img uint64 x2", (32, 32, 16), (0, 0, 0))
    options = {"data_type": "uint64", "layer_type": "image", "size": (32, 32, 16), "chunk_size": CHUNK,
               "resolution": (4, 4, 40), "num_channels": 2, "sharding": spec}
    ref = cvl.Volume.create(f"file://{tmp_path}/ref", **options)
    ref[...] = truth
    key = ref.scale.key
    want = scale_files(tmp_path / "ref", key)
    copy_volume(url, f"file://{tmp_path}/copy", sharding=spec)
    assert scale_files(tmp_path / "copy", key) == want
    reg, log = counted(tmp_path / "task")
    dst = cvl.Volume.create("counted://x/task", stores=reg, **options)
    log.clear()
    unit = write_unit(dst.scale)
    blocks = [Bbox(lo, [min(a + u, b) for a, u, b in zip(lo, unit, dst.bounds.maxpt)])
              for lo in (tuple(o + i * u for o, i, u in zip(dst.voxel_offset, idx, unit))
                         for idx in np.ndindex(*(-(-n // u) for n, u in zip(dst.scale.size, unit))))]
    for block in blocks:
        assert copy_units(cvl.Volume(url), dst, block, unit, resume=False) == (1, 0)
    assert shard_writes(log) == sorted(want)
    assert scale_files(tmp_path / "task", key) == want


# -- a rewrite keeps the stored bytes of the chunks it does not change --------------------------
def stored(shard: Path, layout: ShardLayout) -> dict[int, bytes]:
    """Chunk id -> stored bytes (data_encoding applied) of a shard file, read by the format's parts."""
    data = shard.read_bytes()
    table = shard_index.shard_table(data, layout, shard.name)
    out: dict[int, bytes] = {}
    for mini in range(len(table)):
        index = shard_index.minishard_in(data, table, layout, mini, shard.name)
        if index is not None:
            out.update({c: bytes(b) for c, b in shard_index.stored_chunks(data, index, shard.name).items()})
    return out


def one_shard(root: Path, rng: np.random.Generator) -> tuple[np.ndarray, str, Path, ShardLayout]:
    """A uint32 label volume of one shard of 32 gzip'd chunks (8^3, two minishards), written by
    TensorStore; its data, URL, shard file and layout."""
    from oracles import ts_write

    truth = rng.integers(0, 7, (32, 32, 16, 1), dtype=np.uint32)
    spec = {k: v for k, v in identity(0, 5).items() if k != "@type"}
    url = ts_write(str(root), truth, chunk=CHUNK, layer="segmentation", resolution=(1, 1, 1), sharding=spec)
    scale = cvl.Volume(url).scale
    [shard] = sorted(root.glob("*/*.shard"))
    return truth, url, shard, ShardLayout(scale.sharding, scale)


def only_shard(vol: cvl.Volume, root: Path) -> tuple[bytes, dict[int, bytes]]:
    """The bytes of the one shard file under ``root`` and its chunks (data_encoding undone),
    after checking that building a shard from those chunks makes exactly that file."""
    [shard] = sorted(root.glob("*/*.shard"))
    layout = ShardLayout(vol.scale.sharding, vol.scale)
    data = shard.read_bytes()
    plain = shard_index.parse_shard(data, layout, 0, shard.name)
    assert shard_index.build_shard(plain, layout) == data
    return data, plain


def peers_read(url: str, want: np.ndarray) -> None:
    import tensorstore as ts
    from cloudvolume import CloudVolume

    np.testing.assert_array_equal(cvl.Volume(url)[...], want)
    theirs = ts.open({"driver": "neuroglancer_precomputed", "kvstore": url}).result()
    np.testing.assert_array_equal(np.asarray(theirs.read().result()), want)
    np.testing.assert_array_equal(np.asarray(CloudVolume(url, progress=False)[:, :, :]), want)


@pytest.mark.parametrize("how", ["whole chunk", "patch", "delete"])
def test_a_write_into_a_peer_shard_keeps_the_other_chunks_bytes(tmp_path, rng, how) -> None:
    """One chunk of a TensorStore shard written whole, patched (a read-modify-write: the old
    chunk is inflated for it) or deleted: every other chunk keeps TensorStore's stored bytes
    (they differ from the level-9 gzip a re-encoding makes, so keeping is told from
    re-encoding); the written chunk is gzip'd as before; the peers read the result."""
    truth, url, shard, layout = one_shard(tmp_path / "v", rng)
    before = stored(shard, layout)
    assert len(before) == 32
    assert any(b != compression.compress(compression.decompress(b, "gzip"), "gzip", level=9) for b in before.values())
    target = layout.chunk_ids(np.array([(1, 2, 1)]))[0]
    vol = cvl.Volume(url)
    want = truth.copy()
    if how == "whole chunk":
        want[8:16, 16:24, 8:16] = 99
        vol[8:16, 16:24, 8:16] = 99
    elif how == "patch":
        want[9:12, 17:19, 10:15] = 99
        vol[9:12, 17:19, 10:15] = want[9:12, 17:19, 10:15]
    else:
        want[8:16, 16:24, 8:16] = 0
        vol.delete(Bbox((8, 16, 8), (16, 24, 16)))
    after = stored(shard, layout)
    assert {c: b for c, b in after.items() if c != target} == {c: b for c, b in before.items() if c != target}
    if how == "delete":
        assert target not in after
        np.testing.assert_array_equal(cvl.Volume(url, fill_missing=True)[...], want)
        return
    new = after[target]
    plain = compression.decompress(new, "gzip")
    assert plain == want[8:16, 16:24, 8:16].tobytes(order="F")  # raw: x fastest
    assert new == compression.compress(plain, "gzip", level=9)  # encoded as every written chunk is
    peers_read(url, want)


def test_a_one_chunk_write_into_a_cvl_shard_leaves_the_file_a_full_rebuild_makes(tmp_path, rng) -> None:
    """Where every chunk was written by cvl (gzip level 9), keeping the unchanged chunks' bytes
    leaves the very file that re-encoding them all (the old rewrite) made."""
    truth = rng.integers(0, 7, (32, 32, 16, 1), dtype=np.uint32)
    vol = cvl.Volume.create(f"file://{tmp_path}/v", data_type="uint32", layer_type="segmentation", size=(32, 32, 16),
                            chunk_size=CHUNK, resolution=(1, 1, 1), sharding=identity(0, 5))
    vol[...] = truth
    vol[0:8, 8:16, 0:8] = 5
    vol[3:5, 20:22, 9:10] = 6
    only_shard(vol, tmp_path / "v")


def _planted(tmp_path: Path, rng: np.random.Generator, payload: bytes) -> tuple[str, Path, ShardLayout, int]:
    """A cvl shard of 32 gzip'd chunks with chunk (3, 3, 1)'s stored bytes replaced by
    ``payload`` (laid out by a raw-data layout, so the bytes go in as they are)."""
    import dataclasses

    truth = rng.integers(0, 7, (32, 32, 16, 1), dtype=np.uint32)
    url = f"file://{tmp_path}/v"
    vol = cvl.Volume.create(url, data_type="uint32", layer_type="segmentation", size=(32, 32, 16), chunk_size=CHUNK,
                            resolution=(1, 1, 1), sharding=identity(0, 5))
    vol[...] = truth
    [shard] = sorted((tmp_path / "v").glob("*/*.shard"))
    layout = ShardLayout(vol.scale.sharding, vol.scale)
    chunks = stored(shard, layout)
    bad = int(layout.chunk_ids(np.array([(3, 3, 1)]))[0])
    chunks[bad] = payload
    as_is = ShardLayout(dataclasses.replace(vol.scale.sharding, data_encoding="raw"), vol.scale)
    shard.write_bytes(shard_index.build_shard(chunks, as_is))
    return url, shard, layout, bad


HTML_PAGE = b"<!DOCTYPE html><html><body><h1>503</h1>Service temporarily unavailable</body></html>\n"


def _bomb() -> bytes:
    return compression.compress(bytes(8 << 20), "gzip", level=9)  # 8 MiB of zeros: far past a chunk's bound


@pytest.mark.parametrize("payload", ["html", "bomb"])
def test_a_rewrite_refuses_a_shard_whose_kept_chunk_is_plainly_broken(tmp_path, rng, payload) -> None:
    """A kept chunk that is not gzip at all, or a gzip stream stating more than a chunk may
    inflate to, is still a DecodeError naming the shard when another chunk is written (it is
    not inflated, but its framing is checked); the shard is left as it was."""
    url, shard, _, _ = _planted(tmp_path, rng, HTML_PAGE if payload == "html" else _bomb())
    damaged = shard.read_bytes()
    with pytest.raises(cvl.DecodeError, match=shard.name):
        cvl.Volume(url)[0:8, 0:8, 0:8] = 1
    assert shard.read_bytes() == damaged


def test_a_lying_bomb_is_kept_but_inflated_only_within_the_bound(tmp_path, rng) -> None:
    """A bomb whose gzip trailer lies about its size passes the framing check: writing another
    chunk keeps it as it is (not inflated, so it costs nothing); a read-modify-write of the bomb
    itself, and reading it, inflate it with the chunk bound: a DecodeError naming the shard."""
    bomb = _bomb()
    liar = bomb[:-4] + (100).to_bytes(4, "little")
    url, shard, layout, bad = _planted(tmp_path, rng, liar)
    vol = cvl.Volume(url)
    vol[0:8, 0:8, 0:8] = 1
    assert stored(shard, layout)[bad] == liar
    assert compression.decompress(stored(shard, layout)[0], "gzip") == np.ones((8, 8, 8), np.uint32).tobytes()
    with pytest.raises(cvl.DecodeError, match=shard.name):
        vol[25:27, 25:27, 9:10] = 2  # inside chunk (3, 3, 1)
    with pytest.raises(cvl.DecodeError, match=shard.name):
        vol[24:32, 24:32, 8:16]


def test_a_kept_chunk_with_a_bad_checksum_stays_and_reads_as_a_decode_error(tmp_path, rng) -> None:
    """A kept chunk whose CRC is wrong is not inflated by a rewrite of another chunk: the write
    succeeds and the damaged chunk stays in the shard as it was (never dropped), a DecodeError
    naming the shard whenever it is read."""
    good = compression.compress(np.full((8, 8, 8), 3, np.uint32).tobytes(), "gzip", level=9)
    crc = int.from_bytes(good[-8:-4], "little") ^ 1
    broken = good[:-8] + crc.to_bytes(4, "little") + good[-4:]
    url, shard, layout, bad = _planted(tmp_path, rng, broken)
    vol = cvl.Volume(url)
    vol[0:8, 0:8, 0:8] = 1
    assert stored(shard, layout)[bad] == broken
    assert (vol[0:8, 0:8, 0:8] == 1).all()
    with pytest.raises(cvl.DecodeError, match=shard.name):
        vol[24:32, 24:32, 8:16]
