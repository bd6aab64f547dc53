"""Write the golden volumes in this directory with the reference implementations.

Run from the repository root (needs tensorstore and cloud-volume, the test extra)::

    python tests/golden/make_golden.py

Each volume ``NAME/`` (an info file and its chunk files, exactly as the writer left them) has
``NAME.npy`` beside it, the array it was written from, (X, Y, Z, C). The data are seeded, so a
rerun writes the same arrays; the chunk bytes may differ between writer versions (gzip levels,
shard layout choices), which is the point of committing them. Keep them tiny (< 200 KB in all).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/, for oracles.py

from oracles import cv_write, random_volume, ts_write  # noqa: E402

#: name -> how it is written; every entry is read back bit-exactly by tests/test_golden.py
SHARDING = {"preshift_bits": 0, "hash": "murmurhash3_x86_128", "minishard_bits": 1, "shard_bits": 1,
            "minishard_index_encoding": "gzip", "data_encoding": "gzip"}


def main() -> None:
    rng = np.random.default_rng(20240601)
    volumes = {
        # TensorStore, raw uint8, two channels, offset origin, a partial chunk on every axis
        "ts_raw_uint8": (random_volume((30, 20, 12, 2), "uint8", rng),
                         lambda p, a: ts_write(p, a, offset=(10, -4, 0), chunk=(16, 16, 8))),
        # TensorStore, compressed_segmentation uint64 (ids above 2**40), 4^3 blocks
        "ts_cseg_uint64": (random_volume((20, 16, 8, 1), "uint64", rng, labels=12),
                           lambda p, a: ts_write(p, a, offset=(2, -6, 4), chunk=(8, 8, 8),
                                                 encoding="compressed_segmentation", block=(4, 4, 4))),
        # TensorStore, sharded compressed_segmentation uint64, murmurhash, gzip'd data and indices
        "ts_sharded_cseg": (random_volume((16, 16, 8, 1), "uint64", rng, labels=9),
                            lambda p, a: ts_write(p, a, chunk=(8, 8, 4), encoding="compressed_segmentation",
                                                  sharding=SHARDING)),
        # CloudVolume, raw uint8 with gzip'd chunk files (NAME.gz), as it writes by default
        "cv_gzip_uint8": (random_volume((20, 16, 8, 1), "uint8", rng, labels=40),
                          lambda p, a: cv_write(str(p), a, offset=(-4, 6, 1), chunk=(16, 16, 8))),
    }
    for name, (truth, write) in volumes.items():
        out = HERE / name
        shutil.rmtree(out, ignore_errors=True)
        write(out, truth)
        for junk in out.rglob("*"):  # CloudVolume leaves a provenance file; it is not part of the format
            if junk.name == "provenance":
                junk.unlink()
        np.save(HERE / f"{name}.npy", truth, allow_pickle=False)
    total = sum(f.stat().st_size for f in HERE.rglob("*") if f.is_file() and f.suffix != ".py")
    print(f"wrote {len(volumes)} golden volumes, {total} bytes")


if __name__ == "__main__":
    main()
