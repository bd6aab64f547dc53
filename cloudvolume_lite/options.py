"""Checking the options a Volume is opened with, and handing the store its share of them."""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any

from .errors import RequestError
from .stores.retry import RetryPolicy


def check_parallel(parallel: Any) -> int | None:
    """``parallel`` as the stores take it: ``None`` (or ``True``, CloudVolume's way of saying
    "in parallel") is the store's own default; ``False`` is one at a time; else an int >= 1."""
    if parallel is None or parallel is True:
        return None
    if parallel is False:
        return 1
    if not isinstance(parallel, numbers.Integral) or int(parallel) < 1:
        raise RequestError(
            f"parallel must be a whole number >= 1 (requests in flight), True or None for the default, "
            f"got {parallel!r}"
        )
    return int(parallel)


def check_decode_threads(value: Any) -> int | None:
    """``decode_threads``: threads for CPU-bound work (decoding, decompressing); None: one per core."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise RequestError(f"decode_threads must be a whole number >= 1, or None for one per core; got {value!r}")
    return int(value)


def with_timeout(retry: RetryPolicy | None, timeout: Any) -> RetryPolicy | None:
    """The retry policy with ``timeout`` (seconds one request may take in all) as its deadline."""
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise RequestError(f"retry must be a cvl.RetryPolicy, got {type(retry).__name__}")
    if timeout is None:
        return retry
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or not timeout > 0:
        raise RequestError(f"timeout must be a number of seconds > 0, got {timeout!r}")
    return dataclasses.replace(retry or RetryPolicy(), deadline=float(timeout))


def store_options(secrets: Any, parallel: int | None, retry: RetryPolicy | None) -> dict[str, Any]:
    """Keyword arguments for a store factory: only those given, so that plug-in stores that
    take fewer keep working."""
    opts: dict[str, Any] = {}
    if secrets is not None:
        opts["secrets"] = secrets
    if parallel is not None:
        opts["parallel"] = parallel
    if retry is not None:
        opts["retry"] = retry
    return opts


__all__ = ["check_decode_threads", "check_parallel", "store_options", "with_timeout"]
