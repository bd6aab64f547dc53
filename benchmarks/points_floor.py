"""The floor of a scattered-point read, measured in the same run as the systems: the bytes work
alone, on both cores, with no per-call setup (the volume opened, threads started and the points'
chunks known before the timer) and no per-chunk Python beyond one call.

- plain raw and compressed_segmentation files: per chunk the cheaper of the points' bytes read
  by ``pread`` (the C batch reader cvl uses, ``point_files.read_batch``) and the file read whole
  and looked up, as cvl chooses; chunks split over two threads;
- sharded, gzip'd: each touched shard file read whole, then each touched chunk inflated whole
  with libdeflate (CRC-checked, as cvl reads it: a prefix could not be checked) and its values
  taken, chunks split over two threads.

What it leaves out (opening a Volume, parsing info, grouping the points, starting threads) is
what a system must add; a system at 0.8x the floor spends 25% on top of the bytes work.
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def floor_system(workers: int = 2):
    """fn(url, pts) -> values: the floor of ``url``'s line (see the module docstring)."""
    import cloudvolume_lite as cvl
    from cloudvolume_lite import point_files, point_inflate
    from cloudvolume_lite import points as P
    from cloudvolume_lite.codecs import ChunkSpec, cseg, raw
    from cloudvolume_lite.point_shards import ShardFiles
    from cloudvolume_lite.points import group

    pool = ThreadPoolExecutor(workers)
    local = threading.local()
    opened: dict[str, tuple] = {}

    def setup(url: str, pts: np.ndarray):
        if url not in opened:
            vol = cvl.Volume(url)
            opened[url] = (vol, vol.info.scales[0], vol.chunk_store(0))
        vol, sc, store = opened[url]
        groups, _ = group(pts, sc)  # outside the floor's timer: see run()
        gx, gy, _ = sc.grid_size
        ids = groups.ids
        cells = np.stack([ids % gx, (ids // gx) % gy, ids // (gx * gy)], axis=1)
        return vol, sc, store, groups, cells

    def plain(sc, store, groups, cells, out):
        kind = point_files.CSEG if sc.encoding == "compressed_segmentation" else point_files.RAW
        paths = [store.file_path(sc.chunk_name(c)) for c in cells.tolist()]
        # per chunk the cheaper way, as cvl decides it: the points' bytes, or the file whole
        counts = np.diff(groups.splits)
        most = P.CSEG_FILE_POINTS + 1 if kind == point_files.CSEG else 8 * math.prod(sc.chunk_size) // P.FILE_RANGED_BYTES
        few = np.flatnonzero(counts < most)
        dense = np.flatnonzero(counts >= most)
        spec = ChunkSpec((*sc.chunk_size, 1), np.dtype(np.uint64), sc, "floor")
        codec = cseg if kind == point_files.CSEG else raw

        def by_points(idx):
            starts, ends = groups.splits[idx], groups.splits[idx + 1]
            sel = np.concatenate([groups.order[a:b] for a, b in zip(starts, ends)])
            offs = np.concatenate([groups.offsets[a:b] for a, b in zip(starts, ends)])
            vals, status, bad = point_files.read_batch(
                [paths[g] for g in idx], kind, np.dtype(np.uint64), 1, np.full((len(idx), 3), sc.chunk_size, np.int64),
                sc.compressed_segmentation_block_size or (1, 1, 1), sc.chunk_size, offs,
                np.concatenate([[0], np.cumsum(ends - starts)]))
            assert bad is None and (status == 0).all()
            out[sel] = vals[:, 0]

        def whole(g):
            buf = getattr(local, "buf", None)
            if buf is None:
                buf = local.buf = bytearray(spec.nbytes * (4 if kind == point_files.CSEG else 1))
            with open(paths[g], "rb", buffering=0) as f:
                n = f.readinto(buf)  # one buffer per thread, reused: no page faults per chunk
            s, e = groups.splits[g], groups.splits[g + 1]
            out[groups.order[s:e]] = codec.decode_offsets(memoryview(buf)[:n], spec, groups.offsets[s:e])[:, 0]

        jobs = [pool.submit(by_points, h) for h in np.array_split(few, workers) if len(h)]
        list(pool.map(whole, dense.tolist(), chunksize=max(1, len(dense) // (4 * workers))))
        for j in jobs:
            j.result()

    def sharded(sc, store, groups, cells, out):
        files = ShardFiles(store, cells)
        whole: dict[int, dict[int, list[int]]] = {}  # every touched shard, read whole
        for i, (shard, mini) in enumerate(zip(files.shards.tolist(), files.minis.tolist())):
            whole.setdefault(shard, {}).setdefault(mini, []).append(i)
        read = dict(zip(whole, pool.map(lambda s: files.read(s, whole[s]), list(whole))))
        inflater = point_inflate.Inflater(store.decoded_limit)
        raw = sc.encoding == "raw"
        items = [(i, read[s][i]) for s in whole for idx in whole[s].values() for i in idx]

        def chunk(item):
            g, stored = item
            s, e = groups.splits[g], groups.splits[g + 1]
            offs = groups.offsets[s:e]
            data = inflater.inflate(stored, "floor")  # whole, CRC-checked, as cvl reads it
            if raw:
                out[groups.order[s:e]] = np.frombuffer(data, "<u8").take(offs)
            else:
                spec = ChunkSpec((*sc.chunk_size, 1), np.dtype(np.uint64), sc, "floor")
                out[groups.order[s:e]] = cseg.decode_offsets(data, spec, offs)[:, 0]

        list(pool.map(chunk, items, chunksize=max(1, len(items) // (4 * workers))))

    def run(url: str, pts: np.ndarray, prepared=None) -> np.ndarray:
        _, sc, store, groups, cells = prepared if prepared is not None else setup(url, pts)
        out = np.zeros(len(pts), np.uint64)
        (sharded if sc.sharding is not None else plain)(sc, store, groups, cells, out)
        return out

    run.setup = setup  # type: ignore[attr-defined]
    return run


__all__ = ["floor_system"]
