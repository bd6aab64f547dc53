"""Whole-volume jobs: one task per block, run on a ``dask.distributed`` Client when one is given
and on the Volume's own threads when not. Tasks must be idempotent (a block written twice
is the same block), since a cluster reruns the tasks of a worker it lost."""

from __future__ import annotations

import threading
from typing import Any, Callable, Sequence, TypeVar

from .runtime import Runtime

T = TypeVar("T")


def run_tasks(task: Callable[[T], Any], items: Sequence[T], *, runtime: Runtime, client: Any = None,
              progress: Callable[[int, int], None] | None = None,
              on_done: Callable[[Any], None] | None = None, shared: Any = None) -> int:
    """``task(item)`` for every item; returns how many ran. On ``client``'s workers each item is
    one task (``task`` and the items are pickled: Volumes pickle to their URL, options and
    info); locally they run on ``runtime``'s ``tasks`` lane, ``runtime.parallel`` at a time.
    ``progress(done, total)`` and ``on_done(result)`` are called as tasks finish (one call at a
    time). The first error cancels what has not run and is raised here. A task is forgotten
    once it has finished (its result taken, if ``on_done`` wants it), so a worker lost later
    costs only the tasks it was running. With ``shared``, each
    call is ``task(shared, item)``, and on a cluster ``shared`` is sent to each worker once
    (its tasks share it: a Volume with its chunk cache, say) instead of once per task."""
    total = len(items)
    if client is None:
        done = [0]
        tally = threading.Lock()

        def one(item: T) -> None:
            result = task(item) if shared is None else task(shared, item)
            with tally:
                done[0] += 1
                if on_done is not None:
                    on_done(result)
                if progress is not None:
                    progress(done[0], total)

        runtime.run(one, items, runtime.parallel, lane="tasks")
        return total
    from distributed import as_completed

    if shared is None:
        futures = client.map(task, list(items), pure=False)
    else:
        [one_copy] = client.scatter([shared], broadcast=True)
        futures = client.map(task, [one_copy] * total, list(items), pure=False)
    pending = {fut.key: fut for fut in futures}
    del futures
    finished = 0
    try:
        for fut in as_completed(list(pending.values())):
            # a result is fetched from its worker only if wanted; an error (or KilledWorker after
            # the cluster's retries) comes from the scheduler
            result = fut.result() if on_done is not None or fut.status != "finished" else None
            # released at once: a finished task's result no longer pins it to its worker, so a
            # worker lost later does not make the cluster redo the tasks it had finished
            pending.pop(fut.key).release()
            finished += 1
            if on_done is not None:
                on_done(result)
            if progress is not None:
                progress(finished, total)
    except BaseException:
        client.cancel(list(pending.values()))
        raise
    return total


__all__ = ["run_tasks"]
