"""FastGets.stream (stores/streaming.py) against the Range-capable test server on 127.0.0.1:
finishing work handed to the decoders (a gzip'd chunk's inflating) stays bounded while the
network is faster than they are, a Later may still send its key the careful way, a stream
closed early gives its requests back, and every key comes back once with its own value."""

from __future__ import annotations

import threading
import time
from pathlib import Path


from cloudvolume_lite.stores.base import Versioned
from cloudvolume_lite.stores.http_fetch import Fetcher, Reply
from cloudvolume_lite.stores.streaming import REDO, FastGets, Later
from fixtures_servers import RangeHTTPServer
from served_files import random_files


def _objects(root: Path, n: int, size: int = 3000) -> dict[str, bytes]:
    return random_files(root, [f"k{i}" for i in range(n)], size, seed=3)


def _fast(server: RangeHTTPServer, limit: int = 32) -> FastGets:
    return FastGets(Fetcher("http", "127.0.0.1", server.server_address[1], {}, (2, 5), limit=limit), 4)


def test_finishing_work_pending_at_once_stays_bounded(faulty_http_server: RangeHTTPServer) -> None:
    """Slow decoders and a fast network: the stream stops taking answers in while the ones
    pending for the decoders pass the fetcher's byte budget (before, every answer was copied and
    queued for them however far behind they were: 16 at once here), and each value is its own."""
    objects = _objects(faulty_http_server.root, 80)
    fetcher = Fetcher("http", "127.0.0.1", faulty_http_server.server_address[1], {}, (2, 5), limit=32,
                      max_bytes=15_000)
    fast = FastGets(fetcher, 4)
    lock = threading.Lock()
    pending, most = [0], [0]

    def finish(key: str, answer: Reply) -> object:
        data = bytes(answer.body)
        with lock:
            pending[0] += 1
            most[0] = max(most[0], pending[0])

        def slowly() -> Versioned:
            time.sleep(0.01)
            with lock:
                pending[0] -= 1
            return Versioned(data[::-1], None)

        return Later(slowly)

    try:
        got = dict((k, v.data) for k, v in fast.stream(list(objects), lambda k: (f"/{k}", {}), finish, lambda k: None))
    finally:
        fast.close()
    assert got == {k: v[::-1] for k, v in objects.items()}
    assert most[0] <= 15_000 // 3000 + 2  # one answer past the budget, and the one being settled
    assert fast.stats == {"streamed": len(objects), "redone": 0}


def test_a_later_may_ask_for_the_careful_read(faulty_http_server: RangeHTTPServer) -> None:
    """A Later that finds its answer useless (a damaged body, say) returns REDO: that key goes
    to the careful read, the others keep their streamed values."""
    objects = _objects(faulty_http_server.root, 12)
    fast = _fast(faulty_http_server, 8)
    redone: list[str] = []

    def finish(key: str, answer: Reply) -> object:
        data = bytes(answer.body)
        return Later(lambda: REDO if key in ("k3", "k7") else Versioned(data, None))

    def redo(key: str) -> Versioned:
        redone.append(key)
        return Versioned(b"careful " + objects[key], None)

    try:
        got = dict((k, v.data) for k, v in fast.stream(list(objects), lambda k: (f"/{k}", {}), finish, redo))
    finally:
        fast.close()
    assert sorted(redone) == ["k3", "k7"]
    assert got == {k: (b"careful " + v if k in ("k3", "k7") else v) for k, v in objects.items()}
    assert fast.stats == {"streamed": 10, "redone": 2}


def test_closing_the_stream_early_closes_its_connections(faulty_http_server: RangeHTTPServer) -> None:
    """A batch closed after its first item: no more items, and the fetcher's requests in flight
    are given back (a new stream on the same fetcher reads everything)."""
    objects = _objects(faulty_http_server.root, 40)
    fast = _fast(faulty_http_server, 16)
    try:
        batch = fast.stream(list(objects), lambda k: (f"/{k}", {}), lambda k, a: Versioned(bytes(a.body), None),
                            lambda k: None)
        first = next(batch)
        batch.close()
        assert first[1].data == objects[first[0]]  # type: ignore[union-attr]
        assert next(batch, None) is None
        assert fast.fetcher is not None and fast.fetcher.window.in_flight == 0
        again = dict((k, v.data) for k, v in fast.stream(list(objects), lambda k: (f"/{k}", {}),
                                                         lambda k, a: Versioned(bytes(a.body), None), lambda k: None))
    finally:
        fast.close()
    assert again == objects
