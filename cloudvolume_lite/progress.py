"""Progress bars (tqdm) for long operations: shown when asked, or when stderr is a terminal."""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Callable, Iterator, TypeVar

T = TypeVar("T")

#: operations with fewer steps than this finish before a bar would be worth drawing
MIN_STEPS = 64

#: printed (once per bar asked for) when progress=True but tqdm is not installed
MISSING_TQDM = (
    'cvl: progress bars need tqdm, which is not installed; run: pip install "cloudvolume-lite[progress]" '
    "(continuing without a bar)"
)


def make_bar(total: int | None, desc: str, enabled: bool | None, unit: str = "chunk", *,
             min_steps: int = MIN_STEPS, leave: bool = False) -> Any:
    """A tqdm bar of ``total`` steps, or None when no bar is due.

    ``enabled``: True shows a bar, False never, None only on a terminal and for at least
    ``min_steps`` steps. When a bar was asked for (True) and tqdm is missing, one line on
    stderr says which extra to install, and the work goes on without a bar.
    """
    show = enabled is True or (enabled is None and sys.stderr.isatty() and (total or 0) >= min_steps)
    if not show:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        if enabled is True:  # asked for explicitly: say why there is none; never fail the work
            print(MISSING_TQDM, file=sys.stderr)
        return None
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=leave)


@contextlib.contextmanager
def tracked(fn: Callable[[T], object], total: int | None, desc: str, enabled: bool | None) -> Iterator[Callable[[T], object]]:
    """``fn`` wrapped to advance a bar of ``total`` steps; ``fn`` itself when no bar is due.

    ``enabled``: True shows a bar, False never, None only on a terminal and for long work.
    """
    bar = make_bar(total, desc, enabled)
    if bar is None:
        yield fn
        return

    def step(item: T) -> object:
        out = fn(item)
        bar.update(1)
        return out

    try:
        yield step
    finally:
        bar.close()
