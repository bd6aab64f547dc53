"""How stale a cached copy may be: the ``recheck`` setting a Volume gives its caches."""

from __future__ import annotations

import math
import time
from typing import Union

from ..errors import RequestError

#: what ``Volume(url, recheck=...)`` accepts
RecheckSetting = Union[bool, float, int, str, "Recheck"]


class Recheck:
    """When a cached thing (a chunk in memory or on disk, a shard index) must be checked
    against the store before it is used again.

    - ``"open"`` (the default): what was cached before the Volume was opened (a disk cache
      from an earlier session) is checked once, on first use; what this Volume fetched or
      wrote itself is trusted for its lifetime. Another writer's change shows in a new Volume.
    - ``True`` (or ``0``): checked on every use.
    - ``False``: never checked: the fastest, for data nobody changes.
    - a number of seconds: checked when it was last fetched or checked longer ago than that.

    A check costs a conditional request (nothing is sent if unchanged) or, for a shard index, a
    metadata request. Whatever the setting, a Volume's own writes are visible to its own reads,
    and a sharded read never mixes two versions of a shard.
    """

    def __init__(self, setting: RecheckSetting = "open", opened: float | None = None):
        if isinstance(setting, Recheck):
            setting, opened = setting.setting, setting.opened if opened is None else opened
        if setting is True or setting is False or setting == "open":
            pass
        elif isinstance(setting, (int, float)) and not isinstance(setting, bool) and math.isfinite(setting) \
                and setting >= 0:
            setting = float(setting)
        else:
            raise RequestError(f"recheck={setting!r}: use 'open', True, False or a number of seconds >= 0")
        self.setting = setting
        self.opened = time.time() if opened is None else float(opened)

    @property
    def never(self) -> bool:
        """True when nothing this process caches is ever checked (``False``, or ``"open"``
        for things cached from now on)."""
        return self.setting is False

    def due(self, checked_at: float) -> bool:
        """Whether a copy last fetched or checked at ``checked_at`` (``time.time()``) must be
        checked before it is used."""
        s = self.setting
        if s is False:
            return False
        if s is True:
            return True
        if s == "open":
            return checked_at < self.opened
        return time.time() - checked_at > s  # type: ignore[operator]

    def __repr__(self) -> str:
        return f"Recheck({self.setting!r})"


__all__ = ["Recheck", "RecheckSetting"]
