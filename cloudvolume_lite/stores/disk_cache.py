"""On-disk chunk cache: a read-through, write-through store wrapper with an optional byte limit.

Layout mirrors the remote: ``<root>/<scheme>/<bucket or host>/<path>/<key>``, so a cached
volume is browsable as a directory; a URL with user info (``http://user:password@host/...``)
is kept under ``<root>/@<hash>/<scheme>/<host>/...``, the hash a salted, slow one of the user
info, so two users' copies never mix and no password is written to disk. Each chunk file holds
a small header (see :func:`encode_header2`: the object's generation, when the copy was fetched
or last checked, and a checksum of the header, the file's place in the cache and the bytes)
followed by the chunk bytes with transport compression removed. Every read verifies the
checksum: a damaged copy (a flipped byte, a truncated file, another key's file copied over it)
is removed with a :class:`CacheIntegrityWarning` and the data fetched again. Files of version
1 (no checksum) and files without a header, written by older versions, read as "generation
unknown, never checked": fetched again in full when due. Writes are atomic (temp file +
rename): a killed process leaves at most a hidden temp file, which is never read and is swept
on the next scan.

Symbolic links inside the cache directory are never followed: a file or directory of the
mirror that is (or passes through) a link is not read (a warning, then the data is fetched)
nor written (a :class:`CacheWriteWarning`, the read goes on without keeping it), nor removed
through. The cache root itself may be a link (``~/.cache`` on another disk, say).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import os
import time
from typing import Iterable, Iterator, Mapping

from ..errors import ConflictError, StoreError, VolumeError
from .base import ByteRange, Store, Update, Versioned, WrapperStore, check_key, iter_through_cache, whole_reader
from .batch import data_only
from .cache_dir import (STALE_TEMP_S, CacheIntegrityWarning, CacheLinkError, CacheWriteWarning, DiskCache,
                        default_cache_dir)
from .cache_format import (CRC32, CRC32C, HEADER_VERSION, MAGIC, WRITE_KIND, CachedCopy, Damaged, encode_header,
                           encode_header2)
from .lru import as_recheck, trusted_from
from .recheck import Recheck, RecheckSetting
from .url import StoreURL

if TYPE_CHECKING:
    from ..runtime import Runtime


class DiskCacheStore(WrapperStore):
    """Whole-object gets are served from disk when present, else fetched and kept.

    A copy that ``recheck`` says is due is revalidated first (``read(key, if_none_match=
    generation)``): unchanged, it is served (and remembered as checked, the file untouched);
    changed, the new copy is written; gone, the file is removed. ``read`` is the store's own
    answer (what a compare-and-swap starts from), and refreshes the copy.
    """

    def __init__(self, inner: Store, cache: DiskCache, recheck: "Recheck | RecheckSetting | None" = None):
        super().__init__(inner)
        self.cache = cache
        self.dir = cache.dir_for(inner.url)
        self.recheck = as_recheck(recheck)
        self._trusted_from = trusted_from(self.recheck)
        self._load_one = whole_reader(inner)
        # a due copy with a generation is checked by a conditional read, else fetched again,
        # from the store itself (through a cache below, not from its copy)
        self._conditional = inner.supports_generations
        self._refetch = inner.read if hasattr(inner, "cached_read") else self._load_one

    def _file(self, key: str) -> str:
        return os.path.join(self.dir, check_key(key))

    def _now(self) -> float:
        """``time.time()``, never before the opening (under "open" nothing this store keeps
        is due, even if the clock steps back)."""
        t, opened = time.time(), self.recheck.opened
        return t if t > opened else opened

    def _due(self, copy: CachedCopy) -> bool:
        t = self._trusted_from
        if t is not None and copy.checked_at >= t:
            return False
        return self.recheck.due(copy.checked_at)

    # -- reading --------------------------------------------------------------------------------
    def get(self, key: str, byte_range: ByteRange | None = None) -> bytes | None:
        if byte_range is not None:
            return self.inner.get(key, byte_range)
        got = self.cached_read(key)
        return None if got is None else got.data

    def cached_read(self, key: str) -> Versioned | None:
        """The whole object as this cache serves it (``recheck`` applied), with its generation."""
        path = self._file(key)
        copy = self.cache.inspect(path)
        if copy is None:
            return self._fill(key, path)
        if isinstance(copy, Damaged):
            return self._replace(key, copy)
        if self._due(copy):
            return self._revalidate(key, copy)
        self.cache.touch(path)
        return Versioned(copy.data, copy.generation)

    def _replace(self, key: str, damaged: Damaged) -> Versioned | None:
        """Fetch what a damaged copy (removed already) held; if the store cannot be asked,
        the error says that the cache's copy was bad too, and which file it was."""
        try:
            return self._fill(key, damaged.path, refetch=True)
        except VolumeError as e:
            msg = (f"{e} (the disk cache's copy, {damaged.path}, could not stand in: it was damaged ({damaged.reason}) "
                   "and has been removed)")
            try:
                err: VolumeError = type(e)(msg)
            except Exception:  # noqa: BLE001 - an error type that takes other arguments
                err = StoreError(msg)
            raise err from e

    def _fill(self, key: str, path: str, refetch: bool = False) -> Versioned | None:
        """Fetch the object and keep a copy (a missing one is not remembered: it may be written
        later; a stale copy of it is removed)."""
        since, started = self.cache.epoch, self._now()
        got = self._refetch(key) if refetch else self._load_one(key)
        if got is None:
            self.cache.forget(path)
        elif got.data is not None:
            self.cache.keep(path, got.data, got.generation, started, since=since)
        return got

    def _revalidate(self, key: str, copy: object) -> Versioned | None:
        """A due copy checked with the store: unchanged, changed or gone (a damaged one: fetched)."""
        if isinstance(copy, Damaged):
            return self._replace(key, copy)
        assert isinstance(copy, CachedCopy)
        path = self._file(key)
        if copy.generation is None or not self._conditional:
            return self._fill(key, path, refetch=True)  # no generation to ask about: fetch it again
        since, started = self.cache.epoch, self._now()
        got = self.inner.read(key, if_none_match=copy.generation)
        if got is None:
            self.cache.forget(path)
            return None
        if got.data is None:
            self.cache.checked(path, copy.generation, started)
            self.cache.touch(path)
            return Versioned(copy.data, copy.generation)
        self.cache.keep(path, got.data, got.generation, started, since=since)
        return got

    def _lookup(self, key: str) -> tuple[Versioned, object] | None:
        path = self._file(key)
        copy = self.cache.inspect(path)
        if copy is None:
            return None
        if isinstance(copy, Damaged):  # fetched by _revalidate, which can name the file if that fails
            return Versioned(None, None), copy
        if self._due(copy):
            return Versioned(copy.data, copy.generation), copy
        self.cache.touch(path)
        return Versioned(copy.data, copy.generation), None

    def read(self, key: str, byte_range: ByteRange | None = None, *, if_match: str | None = None,
             if_none_match: str | None = None) -> Versioned | None:
        """The inner store's answer, conditions and all (what a read-modify-write may trust);
        a whole read refreshes the copy on disk."""
        if byte_range is not None:
            return self.inner.read(key, byte_range, if_match=if_match, if_none_match=if_none_match)
        path = self._file(key)
        since, started = self.cache.epoch, self._now()
        try:
            got = self.inner.read(key, if_match=if_match, if_none_match=if_none_match)
        except ConflictError:
            self.cache.forget(path)  # not at the generation the caller knew: perhaps neither is ours
            raise
        if got is None:
            self.cache.forget(path)
        elif got.data is not None:
            self.cache.keep(path, got.data, got.generation, started, since=since)
        elif got.generation is not None:  # unchanged since if_none_match: so is a copy of that generation
            self.cache.checked(path, got.generation, started)
        return got

    def iter_read(self, keys: "Iterable[str]", expected_bytes: int | None = None,
                  runtime: "Runtime | None" = None) -> Iterator[tuple[str, Versioned | None]]:
        """Chunks on disk first, then the due ones revalidated at once, then the rest as the
        inner store delivers them (and kept)."""
        since, started = self.cache.epoch, self._now()

        def ask(copy: object) -> str | None:
            # a damaged copy, or one without a generation, is fetched again by _revalidate
            return copy.generation if isinstance(copy, CachedCopy) and self._conditional else None

        def settle(key: str, copy: object, got: Versioned | None) -> Versioned | None:
            """The store's answer to a check of a due copy (asked after ``since``)."""
            path = self._file(key)
            if got is None:
                self.cache.forget(path)
                return None
            if got.data is None:
                self.cache.checked(path, copy.generation, started)  # type: ignore[attr-defined]
                self.cache.touch(path)
                return Versioned(copy.data, copy.generation)  # type: ignore[attr-defined]
            self.cache.keep(path, got.data, got.generation, started, since=since)
            return got

        return iter_through_cache(keys, self._lookup, self._revalidate,
                                  lambda k, v: self.cache.keep(self._file(k), v.data, v.generation, started,
                                                               since=since),
                                  self.inner, expected_bytes, runtime, read=self.cached_read, ask=ask, settle=settle)

    def iter_get(self, keys: "Iterable[str]", expected_bytes: int | None = None,
                 runtime: "Runtime | None" = None) -> Iterator[tuple[str, bytes | None]]:
        """:meth:`iter_read` without the generations."""
        return data_only(self.iter_read(keys, expected_bytes, runtime))

    def exists(self, key: str) -> bool:
        copy = self.cache.load(self._file(key))  # a damaged copy is removed: the store answers
        return (copy is not None and not self._due(copy)) or self.inner.exists(key)

    # -- writing --------------------------------------------------------------------------------
    def put(self, key: str, data: bytes, *, content_type: str | None = None, content_encoding: str | None = None,
            if_generation: str | None = None) -> str | None:
        path = self._file(key)
        cond = {} if if_generation is None else {"if_generation": if_generation}  # plug-ins of old signatures
        mark = self.cache.begin_write(path)
        try:
            gen = self.inner.put(key, data, content_type=content_type, content_encoding=content_encoding, **cond)
        except BaseException:
            # it may have landed (a timeout) or been refused (a conflict): either way our copy
            # is not to be trusted
            self.cache.end_write(path)
            self.cache.forget(path)
            raise
        self.cache.end_write(path)
        if content_encoding is None:
            self.cache.keep(path, data, gen, self._now(), writing=mark)
        else:
            self.cache.forget(path)  # it holds decoded bytes; let the next read refill it
        return gen

    def put_many(self, items: Mapping[str, bytes | None], *, content_type: str | None = None,
                 content_encoding: str | None = None) -> None:
        paths = {key: self._file(key) for key in items}
        marks = {key: self.cache.begin_write(path) for key, path in paths.items()}
        try:
            self.inner.put_many(items, content_type=content_type, content_encoding=content_encoding)
        except BaseException:
            for path in paths.values():  # some may have landed
                self.cache.end_write(path)
                self.cache.forget(path)
            raise
        for path in paths.values():
            self.cache.end_write(path)
        now = self._now()
        for key, data in items.items():
            if data is None or content_encoding is not None:
                self.cache.forget(paths[key])
            else:  # put_many tells no generations: unknown, so a due copy is fetched again
                self.cache.keep(paths[key], data, None, now, writing=marks[key])

    def update_many(self, items: Mapping[str, "bytes | None | Update"], *, content_type: str | None = None,
                    content_encoding: str | None = None) -> None:
        """The inner store's read-modify-writes (of what is stored, not of the copies here);
        the copies are dropped, and the next read fetches the result."""
        paths = [self._file(key) for key in items]
        for path in paths:
            self.cache.begin_write(path)
        try:
            self.inner.update_many(items, content_type=content_type, content_encoding=content_encoding)
        finally:
            for path in paths:
                self.cache.end_write(path)
                self.cache.forget(path)

    def delete(self, key: str) -> None:
        path = self._file(key)
        self.cache.begin_write(path)
        try:
            self.inner.delete(key)
        finally:
            self.cache.end_write(path)
            self.cache.forget(path)

    def create_exclusive(self, key: str, data: bytes) -> bool:
        """The inner store's conditional create; the cached copy, if any, is dropped."""
        path = self._file(key)
        self.cache.forget(path)
        self.cache.begin_write(path)
        try:
            return self.inner.create_exclusive(key, data)
        finally:
            self.cache.end_write(path)
            self.cache.forget(path)

    def _with_url(self, url: StoreURL) -> "DiskCacheStore":
        return DiskCacheStore(self.inner._with_url(url), self.cache, self.recheck)



class VolumeCache:
    """``vol.cache``: the part of a :class:`DiskCache` that mirrors one volume."""

    def __init__(self, cache: DiskCache, url: StoreURL, volume: "object"):
        self._cache = cache
        self._url = url
        self._volume = volume

    @property
    def path(self) -> str:
        """The directory holding this volume's cached info and chunks."""
        return self._cache.dir_for(self._url)

    @property
    def size(self) -> int:
        """Bytes this volume's cached files take."""
        total = 0
        for dirpath, _, files in os.walk(self.path):
            for fn in files:
                try:
                    total += os.lstat(os.path.join(dirpath, fn)).st_size  # a link counts as itself
                except FileNotFoundError:
                    pass
        return total

    def clear(self, bbox: "object | None" = None, mip: int | None = None) -> None:
        """Drop this volume's cached files, or only the chunks ``bbox`` touches at ``mip``."""
        if bbox is None:
            self._cache.clear(self.path)
            return
        vol = self._volume
        m = vol.mip if mip is None else mip  # type: ignore[attr-defined]
        scale = vol.scales[m]  # type: ignore[attr-defined]
        d = self._cache.dir_for(self._url.join(scale.key))
        for cell in scale.cells(bbox):
            self._cache.forget(os.path.join(d, scale.chunk_name(cell)))


# the names this module has always offered (the directory and the file format live next door)
__all__ = ["CRC32", "CRC32C", "HEADER_VERSION", "MAGIC", "STALE_TEMP_S", "WRITE_KIND", "CacheIntegrityWarning",
           "CacheLinkError", "CacheWriteWarning", "CachedCopy", "Damaged", "DiskCache", "DiskCacheStore", "VolumeCache",
           "default_cache_dir", "encode_header", "encode_header2"]
