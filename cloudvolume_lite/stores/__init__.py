"""Storage backends and the scheme registry that picks one for a URL."""

from __future__ import annotations

import importlib
from types import MappingProxyType
from typing import Any, Callable, Mapping

from ..errors import UnsupportedEncodingError
from .base import ABSENT, ByteRange, Store, Versioned, check_key
from .url import StoreURL, parse_url

StoreFactory = Callable[..., Store]  # factory(url: StoreURL, *, secrets=None, parallel=None) -> Store

#: scheme -> ("module:Class", pip extra that provides its dependency)
_BUILTIN: Mapping[str, tuple[str, str | None]] = MappingProxyType(
    {
        "file": ("cloudvolume_lite.stores.local:LocalStore", None),
        "mem": ("cloudvolume_lite.stores.memory:MemoryStore", None),
        "gs": ("cloudvolume_lite.stores.gcs:GCSStore", "gcs"),
        "s3": ("cloudvolume_lite.stores.s3:S3Store", "s3"),
        "http": ("cloudvolume_lite.stores.http:HTTPStore", None),
        "https": ("cloudvolume_lite.stores.http:HTTPStore", None),
    }
)
ENTRY_POINT_GROUP = "cloudvolume_lite.stores"


class StoreRegistry:
    """Maps URL schemes to store factories.

    Built-in schemes come first; packages add schemes through the ``cloudvolume_lite.stores``
    entry-point group; a caller can add one for a single Volume with :meth:`with_scheme`
    (``Volume(url, stores=StoreRegistry().with_scheme("myfs", MyStore))``).
    """

    def __init__(self, extra: Mapping[str, StoreFactory] | None = None):
        self._extra: Mapping[str, StoreFactory] = MappingProxyType(dict(extra or {}))

    def with_scheme(self, scheme: str, factory: StoreFactory) -> "StoreRegistry":
        return StoreRegistry({**self._extra, scheme.lower(): factory})

    def schemes(self) -> list[str]:
        from importlib.metadata import entry_points

        eps = [ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)]
        return sorted(set(_BUILTIN) | set(self._extra) | set(eps))

    def factory(self, scheme: str) -> StoreFactory:
        if scheme in self._extra:
            return self._extra[scheme]
        if scheme in _BUILTIN:
            target, extra = _BUILTIN[scheme]
            mod, _, cls = target.partition(":")
            try:
                return getattr(importlib.import_module(mod), cls)
            except ImportError as e:
                hint = f'pip install "cloudvolume-lite[{extra}]"' if extra else "reinstall cloudvolume-lite"
                raise UnsupportedEncodingError(f"{scheme}:// needs a package that is missing ({e}); run: {hint}") from None
        from importlib.metadata import entry_points

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name == scheme:
                return ep.load()
        raise UnsupportedEncodingError(
            f"no store for URL scheme {scheme!r}; known schemes: {', '.join(self.schemes())}"
        )

    def open(self, url: str | StoreURL, **options: Any) -> Store:
        parsed = url if isinstance(url, StoreURL) else parse_url(url)
        factory = self.factory(parsed.scheme)
        if parsed.scheme in ("file", "mem"):
            return factory(parsed)
        return factory(parsed, **options)


def open_store(url: str | StoreURL, **options: Any) -> Store:
    """Open the store for ``url`` with the default registry (``secrets=``, ``parallel=``)."""
    return StoreRegistry().open(url, **options)


__all__ = ["ABSENT", "ByteRange", "Store", "Versioned", "StoreRegistry", "StoreURL", "check_key", "open_store", "parse_url"]
