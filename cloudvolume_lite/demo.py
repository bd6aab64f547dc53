"""``cvl demo``: the whole read path on a sample volume, offline, with a short report."""

from __future__ import annotations

import hashlib
import os
import tempfile
import time

import numpy as np

from .sample import sample_arrays, write_sample
from .volume import Volume


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


def run_demo(directory: str | None = None) -> int:
    """Build image + segmentation volumes, read them back several ways, verify, print timings."""
    with tempfile.TemporaryDirectory(prefix="cvl-demo-") as tmp:
        root = os.path.abspath(directory or tmp)
        t0 = time.perf_counter()
        image, seg = sample_arrays()
        img_url, seg_url = f"file://{root}/image", f"file://{root}/segmentation"
        write_sample(img_url, image, layer="image", encoding="raw")
        write_sample(seg_url, seg, layer="segmentation", encoding="compressed_segmentation")
        print(f"built sample volumes in {root} ({time.perf_counter() - t0:.2f} s)")
        ok = True
        for name, url, truth in (("image", img_url, image), ("segmentation", seg_url, seg)):
            with Volume(url) as vol:
                print(f"\n{name}: {vol.url}")
                print(f"  shape {vol.shape}  {vol.dtype}  encoding {vol.encoding}  chunk {vol.chunk_size}")
                t = time.perf_counter()
                full = vol[...]
                dt = time.perf_counter() - t
                same = bool(np.array_equal(full, truth))
                ok &= same
                print(f"  full read   {full.nbytes / 1e6:7.1f} MB in {dt * 1e3:7.1f} ms "
                      f"({full.nbytes / 1e6 / dt:7.0f} MB/s)  sha256 {_digest(full)}  "
                      f"{'matches' if same else 'DIFFERS FROM'} the source")
                t = time.perf_counter()
                cut = vol[37:150:2, 20:131, 5:40]
                dt = time.perf_counter() - t
                same = bool(np.array_equal(cut, truth[37:150:2, 20:131, 5:40]))
                ok &= same
                print(f"  cutout [37:150:2, 20:131, 5:40] -> {cut.shape} in {dt * 1e3:.1f} ms, "
                      f"{'exact' if same else 'WRONG'}")
        ids = np.unique(seg)
        print(f"\nsegmentation holds {len(ids)} labels, e.g. {ids[:3].tolist()}")
        print("demo OK" if ok else "demo FAILED: data differs")
        return 0 if ok else 1
