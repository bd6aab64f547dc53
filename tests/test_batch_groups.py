"""The Groups batch (stores/batch.py): a group is fetched by one thread, its items go to every
thread that asks, and the batch ends for no thread while another still has items to hand out."""

from __future__ import annotations

import threading
import time

import pytest

from cloudvolume_lite.runtime import Runtime
from cloudvolume_lite.stores.batch import Chain, Groups, items


def _groups(n_groups: int, size: int) -> list[list[str]]:
    return [[f"g{g}/k{i}" for i in range(size)] for g in range(n_groups)]


def _fetch(delay: float = 0.0, log: list | None = None):  # noqa: ANN202
    def fetch(group):  # noqa: ANN001, ANN202
        if log is not None:
            log.append((threading.get_ident(), tuple(group)))
        time.sleep(delay)
        return {k: k.encode() for k in group}

    return fetch


@pytest.mark.parametrize("n_groups,size,loops", [(1, 16, 4), (8, 16, 4), (3, 1, 8), (20, 5, 3)])
def test_every_item_once_with_its_value(n_groups: int, size: int, loops: int) -> None:
    groups = _groups(n_groups, size)
    batch = Groups(_fetch(0.002), groups, width=loops)
    got: list[tuple[str, bytes]] = []
    lock = threading.Lock()

    def take(item: tuple[str, bytes]) -> None:
        with lock:
            got.append(item)

    Runtime(loops).run(take, batch, batch.width, n=len(batch))
    assert sorted(got) == sorted((k, k.encode()) for g in groups for k in g)


def test_one_groups_items_are_decoded_on_several_threads() -> None:
    """A read within one shard: its chunks spread over the loops, not only the fetching one."""
    batch = Groups(_fetch(0.01), _groups(1, 32), width=4)
    seen: dict[int, int] = {}
    lock = threading.Lock()

    def decode(item: tuple[str, bytes]) -> None:
        time.sleep(0.005)  # a decode that releases the GIL
        with lock:
            seen[threading.get_ident()] = seen.get(threading.get_ident(), 0) + 1

    Runtime(4).run(decode, batch, 4, n=len(batch))
    assert sum(seen.values()) == 32
    assert len(seen) >= 2


def test_a_thread_waits_for_a_fetch_under_way_instead_of_ending() -> None:
    """Thread 1 takes the only group (a slow fetch); thread 2, finding no group left, must wait
    for its items rather than end (under a Chain it would otherwise move on to the next part)."""
    batch = Groups(_fetch(0.2), _groups(1, 4), width=2)
    first: list[tuple[str, bytes]] = []
    t = threading.Thread(target=lambda: first.append(next(batch)))
    t.start()
    time.sleep(0.05)  # thread 1 is fetching now
    second = next(batch)  # waits, then gets one of the group's items
    t.join()
    rest = list(batch)
    assert sorted([*first, second, *rest]) == sorted((k, k.encode()) for k in _groups(1, 4)[0])


def test_groups_in_a_chain_lose_nothing() -> None:
    hits = items([("h0", b"h0"), ("h1", b"h1")], width=2)
    batch = Chain([hits, Groups(_fetch(0.01), _groups(4, 8), width=6)])
    got: list[tuple[str, bytes]] = []
    lock = threading.Lock()

    def take(item: tuple[str, bytes]) -> None:
        with lock:
            got.append(item)

    Runtime(6).run(take, batch, 6, n=len(batch))
    assert len(got) == 2 + 32 and len(set(got)) == len(got)


def test_a_failed_fetch_ends_the_batch_with_its_error() -> None:
    calls = []

    def fetch(group):  # noqa: ANN001, ANN202
        calls.append(group)
        if len(calls) == 2:
            raise OSError("shard unreadable")
        time.sleep(0.01)
        return {k: b"x" for k in group}

    batch = Groups(fetch, _groups(6, 4), width=3)
    with pytest.raises(OSError, match="shard unreadable"):
        Runtime(3).run(lambda item: time.sleep(0.001), batch, 3, n=len(batch))
    assert list(batch) == []  # ended: nothing more is handed out, and nothing hangs


def test_width_is_the_loops_that_can_be_busy() -> None:
    assert Groups(_fetch(), _groups(8, 16), width=128).width == 8
    assert Groups(_fetch(), _groups(1, 16), width=128).width >= 2  # one per core to decode
    assert Groups(_fetch(), _groups(300, 1), width=128).width == 128
    assert Groups(_fetch(), _groups(8, 16), width=1).width == 1
    assert len(Groups(_fetch(), [[], ["a"], []], width=4)) == 1  # empty groups are dropped
