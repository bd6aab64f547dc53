"""A few seconds of tests/stress.py on every backend and layout: readers and writers at once,
0 wrong voxels, 0 stale reads (where freshness is promised), 0 lost writes."""

from __future__ import annotations

import uuid

import pytest

from stress import hammer

SECONDS = 2.0


@pytest.mark.parametrize("sharded", [False, True], ids=["plain", "sharded"])
@pytest.mark.parametrize("backend", ["file", "mem", "s3", "gcs"])
def test_readers_and_writers_lose_nothing(backend: str, sharded: bool, tmp_path, request) -> None:  # noqa: ANN001
    run = uuid.uuid4().hex[:8]
    secrets = None
    if backend == "file":
        url = f"file://{tmp_path}/v"
    elif backend == "mem":
        url = f"mem://stress-{run}/v"
    elif backend == "s3":
        url, secrets = f"s3://{request.getfixturevalue('s3_bucket')}/v", request.getfixturevalue("s3_secrets")
    else:
        url = f"gs://{request.getfixturevalue('gcs_bucket')}/v"
        secrets = {"endpoint": request.getfixturevalue("gcs_endpoint")}
    tally = hammer(url, sharded=sharded, seconds=SECONDS, secrets=secrets)
    print(tally.line(f"{backend} {'sharded' if sharded else 'plain'}"))
    assert tally.writes > 0 and tally.reads > 0 and tally.fresh_reads > 0, tally
    assert tally.ok, tally.line(backend) + "\n" + "\n".join(tally.errors[:3])
