"""On-disk chunk cache: a read-through, write-through store wrapper with an optional byte limit.

Layout mirrors the remote: ``<root>/<scheme>/<bucket or host>/<path>/<key>``, so a cached
volume is itself a browsable Precomputed directory. Files hold chunk bytes with transport
compression removed. Writes are atomic (temp file + rename): a killed process leaves at most
a hidden temp file, which is never read and is swept on the next scan.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import os
import threading
import time
import warnings
from collections import OrderedDict
from typing import Iterable, Iterator, Mapping

from ..errors import RequestError
from .base import ByteRange, Store, WrapperStore, check_key, iter_through_cache
from .local import _TMP_MARK, atomic_write
from .url import StoreURL

if TYPE_CHECKING:
    from ..runtime import Runtime


def default_cache_dir() -> str:
    """``$CVL_CACHE_DIR``, else ``$XDG_CACHE_HOME/cloudvolume-lite``, else ``~/.cache/cloudvolume-lite``."""
    if os.environ.get("CVL_CACHE_DIR"):
        return os.path.abspath(os.environ["CVL_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "cloudvolume-lite")


#: a temp file this old is an interrupted write, whoever wrote it (its pid may be reused, or
#: belong to another host sharing the directory)
STALE_TEMP_S = 3600.0


class CacheWriteWarning(UserWarning):
    """The disk cache could not keep a file; the read went on without it."""


class DiskCache:
    """A cache directory with an LRU byte limit (``max_bytes=None``: unbounded).

    Recency is kept in memory and persisted through file mtimes, so a new process picks up the
    order from the last one. Several processes (or Volumes) may share a directory: files are
    replaced atomically, temp files of writes in progress are left alone (those of writers that
    have died, or older than :data:`STALE_TEMP_S`, are swept), and each instance looks at the whole directory again
    whenever it has written a tenth of the limit, so together they stay near the limit.
    """

    def __init__(self, path: str, max_bytes: int | None = None):
        self.path = os.path.abspath(path)
        self.max_bytes = None if max_bytes is None else int(max_bytes)
        self._lock = threading.Lock()
        self._index: OrderedDict[str, int] | None = None  # file path -> size, oldest first
        self._total = 0
        self._written = 0  # bytes this instance wrote since it last looked at the directory

    # -- where things go -------------------------------------------------------------------------
    def dir_for(self, url: StoreURL) -> str:
        """The directory mirroring ``url``; never outside :attr:`path`."""
        import posixpath

        if url.netloc in (".", "..") or "/" in url.netloc or "\\" in url.netloc:
            raise RequestError(f"cache path for {url} would leave the cache directory {self.path}")
        # normalise as an absolute path first, so no ".." can climb above the mirror's root
        parts = [url.scheme, url.netloc or "_", posixpath.normpath("/" + url.path).lstrip("/")]
        rel = os.path.normpath(os.path.join(*[p for p in parts if p]))
        full = os.path.join(self.path, rel)
        if os.path.commonpath([self.path, os.path.abspath(full)]) != self.path or rel.startswith(".."):
            raise RequestError(f"cache path for {url} would leave the cache directory {self.path}")
        return full

    # -- the index ---------------------------------------------------------------------------------
    def _scan(self) -> OrderedDict[str, int]:
        if self._index is None:
            found = []
            for dirpath, _, files in os.walk(self.path):
                for fn in files:
                    p = os.path.join(dirpath, fn)
                    try:
                        st = os.stat(p)
                    except FileNotFoundError:
                        continue
                    if fn.startswith(".") and _TMP_MARK in fn:
                        if _abandoned(fn, st.st_mtime):
                            _unlink(p)  # an interrupted write of a process that is gone
                        continue  # another process's write in progress: leave it
                    found.append((st.st_mtime, p, st.st_size))
            found.sort()
            self._index = OrderedDict((p, s) for _, p, s in found)
            self._total = sum(self._index.values())
        return self._index

    def touch(self, path: str) -> None:
        if self.max_bytes is None:
            return
        with self._lock:
            idx = self._scan()
            if path in idx:
                idx.move_to_end(path)
        try:
            os.utime(path)
        except FileNotFoundError:
            pass

    def store(self, path: str, data: bytes) -> None:
        """Keep ``data`` at ``path``, best effort: a cache that cannot be written (disk full, a
        permission, another process clearing it) warns and is skipped, never fails the read."""
        if self.max_bytes is not None and len(data) > self.max_bytes:
            return
        try:
            atomic_write(path, data)
        except OSError as e:
            warnings.warn(f"cannot write the disk cache file {path} ({type(e).__name__}: {e}); "
                          "reading on without caching it", CacheWriteWarning, stacklevel=3)
            return
        if self.max_bytes is None:
            return
        with self._lock:
            self._written += len(data)
            if self._written > self.max_bytes // 10:
                # other processes (and other Volumes here) write to the same directory: look at
                # what is really there now and then, so together they stay near the limit
                self._index, self._written = None, 0
            idx = self._scan()
            self._total += len(data) - idx.pop(path, 0)
            idx[path] = len(data)
            while self._total > self.max_bytes and idx:
                old, size = idx.popitem(last=False)
                self._total -= size
                _unlink(old)

    def forget(self, path: str) -> None:
        _unlink(path)
        if self._index is not None:
            with self._lock:
                self._total -= self._index.pop(path, 0)

    @property
    def size(self) -> int:
        """Bytes held (as this process sees them)."""
        with self._lock:
            self._index = None
            self._scan()
            return self._total

    def clear(self, under: str | None = None) -> None:
        """Remove every cached file (or those below the directory ``under``)."""
        import shutil

        target = self.path if under is None else under
        if os.path.commonpath([self.path, os.path.abspath(target)]) != self.path:
            raise RequestError(f"{target} is not inside the cache directory {self.path}")
        shutil.rmtree(target, ignore_errors=True)
        with self._lock:
            self._index = None


def _abandoned(name: str, mtime: float) -> bool:
    """Whether a temp file ``.NAME.tmp-PID-UUID`` was left by a writer that is no longer
    running here, or is so old that no write can still be under way."""
    if time.time() - mtime > STALE_TEMP_S:
        return True
    pid = name.rpartition(_TMP_MARK)[2].partition("-")[0]
    if not pid.isdigit():
        return False  # an older name without a pid: only age can tell
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, but not ours to signal
        return False
    return False


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class DiskCacheStore(WrapperStore):
    """Whole-object gets are served from disk when present, else fetched and kept."""

    def __init__(self, inner: Store, cache: DiskCache):
        super().__init__(inner)
        self.cache = cache
        self.dir = cache.dir_for(inner.url)

    def _file(self, key: str) -> str:
        return os.path.join(self.dir, check_key(key))

    def get(self, key: str, byte_range: ByteRange | None = None) -> bytes | None:
        if byte_range is not None:
            return self.inner.get(key, byte_range)
        data = self._read_cached(key)
        if data is not None:
            return data
        data = self.inner.get(key)
        if data is not None:  # a missing chunk is not remembered: it may be written later
            self.cache.store(self._file(key), data)
        return data

    def put(self, key: str, data: bytes, *, content_type: str | None = None, content_encoding: str | None = None) -> None:
        self.inner.put(key, data, content_type=content_type, content_encoding=content_encoding)
        if content_encoding is None:
            self.cache.store(self._file(key), data)
        else:
            self.cache.forget(self._file(key))  # it holds decoded bytes; let the next read refill it

    def _read_cached(self, key: str) -> bytes | None:
        path = self._file(key)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        self.cache.touch(path)
        return data

    def iter_get(self, keys: "Iterable[str]", expected_bytes: int | None = None,
                 runtime: "Runtime | None" = None) -> Iterator[tuple[str, bytes | None]]:
        """Chunks on disk first, then the rest as the inner store delivers them (and kept)."""
        return iter_through_cache(keys, self._read_cached, lambda k, v: self.cache.store(self._file(k), v),
                                  self.inner, expected_bytes, runtime, get=self.get)

    def put_many(self, items: Mapping[str, bytes | None], *, content_type: str | None = None,
                 content_encoding: str | None = None) -> None:
        self.inner.put_many(items, content_type=content_type, content_encoding=content_encoding)
        for key, data in items.items():
            if data is None or content_encoding is not None:
                self.cache.forget(self._file(key))
            else:
                self.cache.store(self._file(key), data)

    def delete(self, key: str) -> None:
        self.inner.delete(key)
        self.cache.forget(self._file(key))

    def exists(self, key: str) -> bool:
        return os.path.isfile(self._file(key)) or self.inner.exists(key)

    def create_exclusive(self, key: str, data: bytes) -> bool:
        """The inner store's conditional create; the cached copy, if any, is dropped."""
        self.cache.forget(self._file(key))
        return self.inner.create_exclusive(key, data)

    def _with_url(self, url: StoreURL) -> "DiskCacheStore":
        return DiskCacheStore(self.inner._with_url(url), self.cache)



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
                    total += os.path.getsize(os.path.join(dirpath, fn))
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
