"""A lock for object stores: a lease object created only if absent (a conditional PUT).

S3 (``If-None-Match: *``) and GCS (``ifGenerationMatch=0``) create an object atomically only
when none exists, so whoever creates ``KEY.lock`` holds the lock. The object names its owner
and an expiry: a writer that died holding it is taken over once the lease has run out, so
the lease (``ttl``) must be longer than any one read-modify-write takes.

Takeover is a compare-and-swap on the stale lease's generation (``put(..., if_generation=)``):
of several writers that find the same stale lease, exactly one replaces it; the others see a
:class:`ConflictError` and wait for the new holder like everyone else.
"""

from __future__ import annotations

import contextlib
import random
import time
import uuid
from typing import TYPE_CHECKING, Iterator

from ..errors import ConflictError, StoreError

if TYPE_CHECKING:
    from .base import Store

LOCK_SUFFIX = ".lock"


def _expired(content: bytes) -> bool:
    try:
        return float(content.split()[1]) < time.time()
    except (IndexError, ValueError):
        return True  # unreadable: nobody can be relying on it


def _try_take(store: "Store", lock_key: str, token: bytes) -> bool:
    """One attempt at the lease: create it, or take it over if it has run out."""
    if store.create_exclusive(lock_key, token):
        return True
    held = store.read(lock_key)
    if held is None or held.data is None:
        return False  # released in between: the next attempt may create it
    if held.data == token:
        return True  # our own create landed (its answer was lost and the retry was refused)
    if not _expired(held.data):
        return False
    if store.supports_conditional_writes and held.generation is not None:
        try:  # only one of the writers that found this stale lease replaces it
            store.put(lock_key, token, if_generation=held.generation)
        except ConflictError:
            return store.get(lock_key) == token  # someone else took it (unless it was our retried put)
        return True
    # No compare-and-swap here: delete the stale lease and race to create a new one. Residual
    # race: a writer that read the stale lease late may delete the lease another just created.
    store.delete(lock_key)
    return store.create_exclusive(lock_key, token)


def _release(store: "Store", lock_key: str, token: bytes) -> None:
    """Delete the lease if it is still ours and still running: a lease that ran out may have been
    taken over (or be being taken over now), and the other holder's must stay."""
    held = store.get(lock_key)
    if held == token and not _expired(token):
        # a live lease is never taken over, so between this read and the delete it stays ours
        # (give or take clock skew between writers; a conditional delete would close that gap)
        store.delete(lock_key)


@contextlib.contextmanager
def lease_lock(store: "Store", key: str, ttl: float = 120.0, wait: float = 300.0) -> Iterator[None]:
    """Hold ``key + ".lock"`` in ``store`` for the duration of the block.

    ``ttl``: seconds the lease lasts (others take it over after that); ``wait``: seconds to
    wait for it before a :class:`StoreError`.
    """
    lock_key = key + LOCK_SUFFIX
    owner = uuid.uuid4().hex
    deadline = time.monotonic() + wait
    delay = 0.005
    while True:
        # the expiry counts from this attempt, not from the first: a long wait leaves a full lease
        token = f"{owner} {time.time() + ttl:.3f}".encode()
        if _try_take(store, lock_key, token):
            break
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
        _release(store, lock_key, token)
