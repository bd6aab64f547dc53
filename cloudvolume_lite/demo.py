"""``cvl demo``: the whole stack on a sample volume, offline, with a short report."""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from typing import Callable

import numpy as np

from .codecs.cseg import decoder_status
from .sample import sample_arrays, write_sample
from .serve import LoopbackServer
from .volume import Volume


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


def _timed(fn: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def run_demo(directory: str | None = None) -> int:
    """Build image + segmentation volumes, read them back several ways, verify, print timings."""
    with tempfile.TemporaryDirectory(prefix="cvl-demo-") as tmp:
        root = os.path.abspath(directory or tmp)
        t0 = time.perf_counter()
        image, seg = sample_arrays()
        img_url, seg_url = write_sample(root, sharded_seg=True)
        print(f"built sample volumes in {root} ({time.perf_counter() - t0:.2f} s): "
              "image (raw uint8) and segmentation (compressed_segmentation uint64, sharded), 2 mips each")
        print(f"compressed_segmentation decoder: {decoder_status()}")
        ok = True

        def check(label: str, got: np.ndarray, want: np.ndarray, dt: float) -> None:
            nonlocal ok
            same = bool(np.array_equal(got, want))
            ok &= same
            print(f"  {label:<40} {got.nbytes / 1e6:7.2f} MB {dt * 1e3:8.1f} ms  sha256 {_digest(got)}  "
                  f"{'exact' if same else 'WRONG'}")

        for name, url, truth in (("image", img_url, image), ("segmentation", seg_url, seg)):
            with Volume(url) as vol:
                print(f"\n{name}: {vol.url}")
                print(f"  shape {vol.shape} {vol.dtype}, encoding {vol.encoding}, chunk {vol.chunk_size}, "
                      f"sharded: {vol.scale.sharding is not None}, mips: {vol.num_mips}")
                got, dt = _timed(lambda: vol[...])
                check("full read", got, truth, dt)
                got, dt = _timed(lambda: vol[37:150:2, 20:131, 5:40])
                check("strided cutout [37:150:2, 20:131, 5:40]", got, truth[37:150:2, 20:131, 5:40], dt)
                small, dt = _timed(lambda: vol.download(vol.scales[1].bounds, mip=1))
                print(f"  {'mip 1 (downsampled on write)':<40} {small.shape} in {dt * 1e3:.1f} ms")

        rng = np.random.default_rng(0)
        pts = np.stack([rng.integers(0, n, 10_000) for n in seg.shape[:3]], axis=1)
        want = seg[pts[:, 0], pts[:, 1], pts[:, 2], 0]
        print("\nscattered points: 10,000 random voxels of the segmentation")
        with Volume(seg_url, lru_bytes=64 << 20) as vol:
            got, dt = _timed(lambda: vol.scattered_points(pts))
            check("cold (partial cseg decode)", got, want, dt)
            got, dt = _timed(lambda: vol.scattered_points(pts))
            check("warm, from the chunk LRU", got, want, dt)

        with LoopbackServer(root) as server:
            print(f"\nover HTTP: the same directory served on {server.url} (Range requests, loopback only)")
            for name, truth in (("image", image), ("segmentation", seg)):
                with Volume(f"{server.url}/{name}") as vol:
                    got, dt = _timed(lambda: vol[...])
                    check(f"{name} full read over HTTP", got, truth, dt)
            cache_dir = os.path.join(root, "cache")
            print("  the image twice through a disk cache:")
            with Volume(f"{server.url}/image", cache=cache_dir) as vol:
                got, dt = _timed(lambda: vol[...])
                check("first read (fills the cache)", got, image, dt)
                print(f"  cache holds {vol.cache.size / 1e6:.2f} MB under {vol.cache.path}")
            with Volume(f"{server.url}/image", cache=cache_dir) as vol:
                got, dt = _timed(lambda: vol[...])
                check("second read (from the cache)", got, image, dt)

        ids = np.unique(seg)
        print(f"\nsegmentation holds {len(ids)} labels, e.g. {ids[:3].tolist()}")
        print("demo OK: every read matched the source" if ok else "demo FAILED: some data differs")
        print(_how_to_look(root, kept=directory is not None))
        return 0 if ok else 1


def _how_to_look(root: str, kept: bool) -> str:
    """The commands that show the sample in Neuroglancer (``cvl view``, the viewer extra)."""
    where = os.path.abspath(root if kept else "cvl-demo")
    view = f"  cvl view file://{where}/image file://{where}/segmentation"
    needs = '(needs: pip install "cloudvolume-lite[viewer]")'
    if kept:
        return f"\nto look at it in Neuroglancer {needs}:\n{view}"
    return (f"\nthe sample was in a temporary directory, now removed; to keep it and look at it in Neuroglancer "
            f"{needs}:\n  cvl demo --dir {where}\n{view}")
