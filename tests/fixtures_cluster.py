"""A dask.distributed LocalCluster of two worker processes on 127.0.0.1, for the job tests."""

from __future__ import annotations

import pytest

#: seconds: generous, for a loaded 2-core machine
DEADLINE = 60.0


@pytest.fixture(scope="module")
def cluster():
    from dask.distributed import LocalCluster

    c = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                     silence_logs=50)
    yield c
    c.close()


@pytest.fixture
def client(cluster):
    from dask.distributed import Client

    with Client(cluster) as c:
        c.wait_for_workers(2, timeout=DEADLINE)  # a worker an earlier test killed is back
        yield c
