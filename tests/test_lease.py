"""Lease locks on object stores (moto's S3, fake-gcs-server): of several writers that find one
stale lease at the same moment, exactly one takes it over; a lease is released only by its holder."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from cloudvolume_lite.errors import ConflictError
from cloudvolume_lite.stores import lease, open_store
from cloudvolume_lite.stores.base import ABSENT, Store, Versioned

WRITERS = 8  # racing for each lease
KEYS = 2  # leases raced for at once, side by side
ROUNDS = 3
FIRST_HOLD = 0.3  # seconds the takeover's winner stays inside: long enough for a second holder to show
HOLD = 0.02  # seconds each later holder stays inside
STALE = b"deadbeef"  # the owner named by a planted stale lease


@pytest.fixture(params=["s3", "gs"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    if request.param == "s3":
        bucket, secrets = request.getfixturevalue("s3_bucket"), request.getfixturevalue("s3_secrets")
    else:
        bucket, secrets = request.getfixturevalue("gcs_bucket"), {"endpoint": request.getfixturevalue("gcs_endpoint")}
    st = open_store(f"{request.param}://{bucket}/leases", secrets=secrets, parallel=WRITERS * KEYS)
    yield st
    st.close()


def _plant_stale(store: Store, key: str) -> None:
    """The lease of a writer that died holding it: it ran out 5 s ago."""
    store.put(key + lease.LOCK_SUFFIX, STALE + f" {time.time() - 5:.3f}".encode())


def _first_reader_lags(store: Store, keys: list[str]) -> None:
    """The schedule that breaks a takeover by delete-and-create: the first writer to read a
    key's stale lease stalls (a pause, a slow network) until another writer has written the
    lease, and only then acts on what it read. Reads by ``get`` and ``read`` both count."""
    taken = {key + lease.LOCK_SUFFIX: threading.Event() for key in keys}
    laggard: dict[str, int] = {}
    guard = threading.Lock()
    get, read, put = (getattr(type(store), name).__get__(store) for name in ("get", "read", "put"))

    def seen(key: str, data: bytes | None) -> None:
        if key not in taken or data is None or not data.startswith(STALE):
            return
        with guard:
            if key in laggard:
                return
            laggard[key] = threading.get_ident()
        taken[key].wait(5)

    def lagging_get(key: str, *args: object, **kw: object) -> bytes | None:
        data = get(key, *args, **kw)
        seen(key, data)
        return data

    def lagging_read(key: str, *args: object, **kw: object) -> Versioned | None:
        got = read(key, *args, **kw)
        seen(key, None if got is None else got.data)
        return got

    def noting_put(key: str, data: bytes, **kw: object) -> str | None:
        gen = put(key, data, **kw)
        if key in taken and not data.startswith(STALE) and laggard.get(key) != threading.get_ident():
            taken[key].set()
        return gen

    store.get, store.read, store.put = lagging_get, lagging_read, noting_put  # type: ignore[method-assign]


def _race(store: Store, keys: list[str]) -> dict[str, int]:
    """``WRITERS`` threads per key, released together, each taking the key's lease once; the
    most holders each lease had at once."""
    start = threading.Barrier(WRITERS * len(keys))
    guard = threading.Lock()
    inside = dict.fromkeys(keys, 0)
    most = dict.fromkeys(keys, 0)
    done: list[str] = []
    errors: list[BaseException] = []

    def writer(key: str) -> None:
        try:
            start.wait(10)
            # looked up at call time, so a check of another implementation can swap it in
            with lease.lease_lock(store, key, ttl=60, wait=15):
                with guard:
                    inside[key] += 1
                    most[key] = max(most[key], inside[key])
                    first = key not in done
                time.sleep(FIRST_HOLD if first else HOLD)
                with guard:
                    inside[key] -= 1
            done.append(key)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(key,)) for key in keys for _ in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert sorted(done) == sorted(keys * WRITERS)  # every writer got in
    return most


def test_one_writer_takes_over_a_stale_lease(store: Store) -> None:
    """Writers that all find the same stale lease at once (one of them slow to act on it): one
    at a time gets in, and all get in."""
    for round_ in range(ROUNDS):
        keys = [f"chunk{round_}-{k}" for k in range(KEYS)]
        for key in keys:
            _plant_stale(store, key)
        _first_reader_lags(store, keys)
        most = _race(store, keys)
        assert max(most.values()) == 1, f"round {round_}: writers holding one lease at once: {most}"
        assert all(store.get(key + lease.LOCK_SUFFIX) is None for key in keys)  # the last holders released them


def test_release_keeps_a_lease_taken_over(store: Store) -> None:
    """A holder whose lease ran out (and was taken over) must not delete the new holder's lease."""
    lock_key = "slow" + lease.LOCK_SUFFIX
    first = lease.lease_lock(store, "slow", ttl=0.3, wait=5)
    first.__enter__()
    time.sleep(0.5)  # past its lease
    second = lease.lease_lock(store, "slow", ttl=60, wait=5)
    second.__enter__()  # takes the stale lease over
    taken = store.get(lock_key)
    first.__exit__(None, None, None)
    assert store.get(lock_key) == taken
    second.__exit__(None, None, None)
    assert store.get(lock_key) is None


def test_a_create_whose_answer_was_lost_still_holds(store: Store) -> None:
    """A retried create refused by its own first try (which landed) holds the lease at once,
    rather than waiting for it to run out."""
    real = store.put

    def put(key: str, data: bytes, **kw: object) -> str | None:
        gen = real(key, data, **kw)  # type: ignore[arg-type]
        if kw.get("if_generation") == ABSENT:
            raise ConflictError("the retry of a PUT that landed was refused")
        return gen

    store.put = put  # type: ignore[method-assign]
    t0 = time.monotonic()
    with lease.lease_lock(store, "lost", ttl=60, wait=3):
        assert store.get("lost" + lease.LOCK_SUFFIX) is not None
    assert time.monotonic() - t0 < 2
    assert store.get("lost" + lease.LOCK_SUFFIX) is None
