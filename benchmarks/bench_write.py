"""Write throughput: cloudvolume-lite vs CloudVolume vs TensorStore, one run, interleaved.

Lines: a 1024x1024x128 uint8 raw volume and a 512x512x128 uint64 compressed_segmentation
volume, 64^3 chunks, each with gzip transport compression and plain, written whole into a
fresh local directory each time. TensorStore's unsharded file driver cannot gzip chunks, so
on the gzip lines it writes plain chunks (less work); the table says so. Every written volume is read back and
compared with the source before the timings count.

    python benchmarks/bench_write.py [--quick] [--repeats N]
"""

from __future__ import annotations

import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from bench_read import em_like, segmentation_like  # noqa: E402


def write_cvl(url: str, arr: np.ndarray, encoding: str, gz: bool) -> None:
    import cloudvolume_lite as cvl

    vol = cvl.Volume.create(url, data_type=arr.dtype.name, layer_type="image" if encoding == "raw" else "segmentation",
                            size=arr.shape[:3], chunk_size=(64, 64, 64), resolution=(4, 4, 40), encoding=encoding,
                            compression="gzip" if gz else None, overwrite=True)
    vol[...] = arr
    vol.close()


def write_cv(url: str, arr: np.ndarray, encoding: str, gz: bool) -> None:
    from cloudvolume import CloudVolume

    info = CloudVolume.create_new_info(num_channels=1, layer_type="image" if encoding == "raw" else "segmentation",
                                       data_type=arr.dtype.name, encoding=encoding, resolution=[4, 4, 40],
                                       voxel_offset=[0, 0, 0], volume_size=list(arr.shape[:3]), chunk_size=[64, 64, 64],
                                       compressed_segmentation_block_size=[8, 8, 8])
    vol = CloudVolume(url, info=info, compress="gzip" if gz else False, progress=False)
    vol.commit_info()
    vol[:, :, :] = arr


def write_ts(url: str, arr: np.ndarray, encoding: str, gz: bool) -> None:  # noqa: ARG001 - cannot gzip
    import tensorstore as ts

    scale = {"size": list(arr.shape[:3]), "resolution": [4, 4, 40], "chunk_size": [64, 64, 64], "encoding": encoding}
    if encoding == "compressed_segmentation":
        scale["compressed_segmentation_block_size"] = [8, 8, 8]
    t = ts.open({"driver": "neuroglancer_precomputed", "kvstore": url,
                 "multiscale_metadata": {"type": "image", "data_type": arr.dtype.name, "num_channels": 1},
                 "scale_metadata": scale}, create=True, delete_existing=True).result()
    t[...] = arr


SYSTEMS = {"cvl": write_cvl, "cv": write_cv, "ts": write_ts}


def main() -> int:
    ap = common.arg_parser(__doc__)
    args = ap.parse_args()
    repeats = args.repeats or (2 if args.quick else 5)
    a_shape = (256, 256, 64) if args.quick else (1024, 1024, 128)
    b_shape = (256, 256, 64) if args.quick else (512, 512, 128)
    a, b = em_like(a_shape, seed=1), segmentation_like(b_shape, seed=2)
    lines = [("raw uint8 + gzip*", a, "raw", True), ("raw uint8, plain", a, "raw", False),
             ("cseg uint64 + gzip*", b, "compressed_segmentation", True),
             ("cseg uint64, plain", b, "compressed_segmentation", False)]
    root = common.data_dir() / "write-scratch"
    import cloudvolume_lite as cvl

    times: dict[tuple[str, str], list[float]] = {}
    for name, arr, enc, gz in lines:
        for r in range(repeats + 1):  # the first repetition is a discarded warm-up and the check
            for system in common.rotate(list(SYSTEMS), r):
                path = root / system
                shutil.rmtree(path, ignore_errors=True)
                common.prefault(2 * arr.nbytes)
                t0 = time.perf_counter()
                SYSTEMS[system]("file://" + str(path), arr, enc, gz)
                dt = time.perf_counter() - t0
                if r == 0:
                    back = cvl.Volume("file://" + str(path))[...]
                    if not np.array_equal(back, arr):
                        print(f"{system} wrote wrong data for {name}")
                        return 1
                else:
                    times.setdefault((name, system), []).append(dt)
    shutil.rmtree(root, ignore_errors=True)
    print(f"write throughput, median of {repeats} (MB/s of array data). *TensorStore's unsharded file driver "
          "cannot gzip chunks: on + gzip lines it writes plain chunks, less work than the others")
    print(f"{'line':<22} {'MB':>7} {'cvl':>9} {'cv':>9} {'ts':>9} {'cvl/cv':>7} {'cvl/ts':>7} {'vs best':>8}")
    out = {}
    for name, arr, _, _ in lines:
        mb = arr.nbytes / 1e6
        rate = {s: mb / statistics.median(times[(name, s)]) for s in SYSTEMS}
        best = max(rate["cv"], rate["ts"])
        print(f"{name:<22} {mb:>7.1f} {rate['cvl']:>9.1f} {rate['cv']:>9.1f} {rate['ts']:>9.1f} "
              f"{rate['cvl'] / rate['cv']:>7.2f} {rate['cvl'] / rate['ts']:>7.2f} {rate['cvl'] / best:>8.2f}")
        out[name] = {"mb": mb, "mb_per_s": rate, "seconds": {s: times[(name, s)] for s in SYSTEMS}}
    common.write_json({"benchmark": "write", "quick": args.quick, "repeats": repeats, "lines": out},
                      "write_quick.json" if args.quick else "write.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
