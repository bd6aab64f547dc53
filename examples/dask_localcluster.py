"""Compute over a volume with Dask on a local cluster of processes.

    python examples/dask_localcluster.py [IMAGE_URL]
"""

from __future__ import annotations

from _sample import arg, sample_urls

import cloudvolume_lite as cvl

if __name__ == "__main__":  # process-based clusters need the main guard
    from dask.distributed import Client, LocalCluster

    url = arg(1) or sample_urls()[0]
    vol = cvl.Volume(url)
    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster, Client(cluster):
        arr = vol.to_dask()  # one task per storage chunk; tasks carry the URL, not data
        mean = arr.mean().compute()
        per_z = arr.max(axis=(0, 1, 3)).compute()
        print(f"{vol.url}: {arr.npartitions} tasks, mean {mean:.2f}, brightest z-slice max {per_z.max()}")
