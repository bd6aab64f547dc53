"""Progress bars (tqdm) for long operations: shown when asked, or when stderr is a terminal."""

from __future__ import annotations

import contextlib
import sys
from typing import Callable, Iterator, TypeVar

T = TypeVar("T")

#: operations with fewer steps than this finish before a bar would be worth drawing
MIN_STEPS = 64


@contextlib.contextmanager
def tracked(fn: Callable[[T], object], total: int | None, desc: str, enabled: bool | None) -> Iterator[Callable[[T], object]]:
    """``fn`` wrapped to advance a bar of ``total`` steps; ``fn`` itself when no bar is due.

    ``enabled``: True shows a bar, False never, None only on a terminal and for long work.
    """
    show = enabled is True or (enabled is None and sys.stderr.isatty() and (total or 0) >= MIN_STEPS)
    if not show:
        yield fn
        return
    try:
        from tqdm import tqdm
    except ImportError:  # the progress extra is not installed: work silently
        yield fn
        return
    bar = tqdm(total=total, desc=desc, unit="chunk", file=sys.stderr, leave=False)

    def step(item: T) -> object:
        out = fn(item)
        bar.update(1)
        return out

    try:
        yield step
    finally:
        bar.close()
