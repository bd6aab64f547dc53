"""A lock for object stores: a lease object created only if absent (a conditional PUT).

S3 (``If-None-Match: *``) and GCS (``ifGenerationMatch=0``) create an object atomically only
when none exists, so whoever creates ``KEY.lock`` holds the lock. The object names its owner
and an expiry: a writer that died holding it is taken over once the lease has run out, so
the lease (``ttl``) must be longer than any one read-modify-write takes.
"""

from __future__ import annotations

import contextlib
import random
import time
import uuid
from typing import TYPE_CHECKING, Iterator

from ..errors import StoreError

if TYPE_CHECKING:
    from .base import Store

LOCK_SUFFIX = ".lock"


def _expired(content: bytes) -> bool:
    try:
        return float(content.split()[1]) < time.time()
    except (IndexError, ValueError):
        return True  # unreadable: nobody can be relying on it


@contextlib.contextmanager
def lease_lock(store: "Store", key: str, ttl: float = 120.0, wait: float = 300.0) -> Iterator[None]:
    """Hold ``key + ".lock"`` in ``store`` for the duration of the block."""
    lock_key = key + LOCK_SUFFIX
    token = f"{uuid.uuid4().hex} {time.time() + ttl:.3f}".encode()
    deadline = time.monotonic() + wait
    delay = 0.005
    while not store.create_exclusive(lock_key, token):
        held = store.get(lock_key)
        if held is not None and _expired(held):
            store.delete(lock_key)  # the holder died: its lease ran out
            continue
        if time.monotonic() > deadline:
            raise StoreError(
                f"could not lock {store.url.key_url(key)} within {wait:.0f} s: another writer holds "
                f"{lock_key}; if no writer is running, delete that object"
            )
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 0.25)
    try:
        yield
    finally:
        if store.get(lock_key) == token:  # never release a lease someone took over
            store.delete(lock_key)
