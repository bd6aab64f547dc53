"""On-disk chunk cache: a read-through, write-through store wrapper with an optional byte limit.

Layout mirrors the remote: ``<root>/<scheme>/<bucket or host>/<path>/<key>``, so a cached
volume is browsable as a directory. Each chunk file holds a small header (see
:func:`encode_header`: the object's generation and when the copy was fetched or last checked)
followed by the chunk bytes with transport compression removed; files without the header,
written by older versions, read as "generation unknown, never checked". Writes are atomic
(temp file + rename): a killed process leaves at most a hidden temp file, which is never read
and is swept on the next scan.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import os
import struct
import time
import warnings
from collections import OrderedDict
from typing import Iterable, Iterator, Mapping, NamedTuple

from ..errors import ConflictError, RequestError
from .base import ByteRange, Store, Update, Versioned, WrapperStore, check_key, iter_through_cache, whole_reader
from .batch import data_only
from .local import _TMP_MARK, atomic_write
from .lru import ForkSafe, as_recheck, trusted_from
from .recheck import Recheck, RecheckSetting
from .url import StoreURL

if TYPE_CHECKING:
    from ..runtime import Runtime


#: the first 8 bytes of a cache file with a header: like PNG's, a high byte (not ASCII), a
#: name, CR LF (caught by newline conversion), ^Z and LF
MAGIC = b"\x89CVL\r\n\x1a\n"
#: the header layout this version writes (a later one may add a checksum, say)
HEADER_VERSION = 1
# magic, version, flags (0), generation length in bytes (0: unknown), checked_at (float64)
_HEAD = struct.Struct("<8sBBHd")


def encode_header(generation: str | None, checked_at: float) -> bytes:
    """The header of a cache file: ``MAGIC``, version 1, flags 0, the generation's length
    (uint16, 0: unknown), when the copy was fetched or last checked (float64 ``time.time()``),
    all little-endian (20 bytes), then the generation in UTF-8."""
    gen = b"" if generation is None else generation.encode("utf-8")
    if len(gen) > 0xFFFF:
        gen = b""  # no store names a generation this long; unknown is always safe
    return _HEAD.pack(MAGIC, HEADER_VERSION, 0, len(gen), float(checked_at)) + gen


class CachedCopy(NamedTuple):
    """A cache file's contents: the bytes, the generation they are of (None: unknown) and when
    they were fetched or last checked against the store (0: never, a file of an older version)."""

    data: bytes
    generation: str | None
    checked_at: float


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


class DiskCache(ForkSafe):
    """A cache directory with an LRU byte limit (``max_bytes=None``: unbounded).

    Recency is kept in memory and persisted through file mtimes, so a new process picks up the
    order from the last one. Several processes (or Volumes) may share a directory: files are
    replaced atomically, temp files of writes in progress are left alone (those of writers that
    have died, or older than :data:`STALE_TEMP_S`, are swept), and each instance looks at the whole directory again
    whenever it has written a tenth of the limit, so together they stay near the limit.

    Chunk copies are kept with :meth:`keep` and read with :meth:`load`; a check that found a
    copy unchanged is remembered in memory (:meth:`checked`) rather than by rewriting the file.
    """

    #: how many "checked at" times :meth:`checked` remembers (oldest forgotten first: such a
    #: copy is checked again when next due, one more conditional request)
    CHECKED_MEMORY = 1 << 17

    def __init__(self, path: str, max_bytes: int | None = None):
        self.path = os.path.abspath(path)
        self.max_bytes = None if max_bytes is None else int(max_bytes)
        self._index: OrderedDict[str, int] | None = None  # file path -> size, oldest first
        self._total = 0
        self._written = 0  # bytes this instance wrote since it last looked at the directory
        # writes through the stores on this cache, by path: [last event, last write begun]
        # (counts of _count); a fill that began before a write of its path must not leave its
        # copy behind, nor a write that another write of the path overtook
        self._count = 0
        self._marks: OrderedDict[str, list[int]] = OrderedDict()
        self._floor = 0  # the latest mark forgotten: fills older than it are taken as outdated
        self._checked: OrderedDict[str, tuple[str, float]] = OrderedDict()  # path -> (generation, when)
        self._init_fork_safe()

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
        with self._here():
            idx = self._scan()
            if path in idx:
                idx.move_to_end(path)
        try:
            os.utime(path)
        except FileNotFoundError:
            pass

    # -- copies ------------------------------------------------------------------------------------
    #: how many paths' write marks are remembered (fills older than a forgotten one are not kept)
    WRITE_MARKS = 1 << 16

    @property
    def epoch(self) -> int:
        """A mark to hand to :meth:`keep` (``since``) for data fetched from now on."""
        with self._here():
            return self._count

    def _mark(self, path: str, begin: bool) -> int:
        self._count += 1
        m = self._marks.get(path)
        if m is None:
            m = self._marks[path] = [0, 0]
        else:
            self._marks.move_to_end(path)
        m[0] = self._count
        if begin:
            m[1] = self._count
        while len(self._marks) > self.WRITE_MARKS:
            self._floor = max(self._floor, self._marks.popitem(last=False)[1][0])
        return self._count

    def begin_write(self, path: str) -> int:
        """Say that a write of the object cached at ``path`` is starting; the mark to hand to
        :meth:`keep` (``writing``) for its own copy."""
        with self._here():
            return self._mark(path, True)

    def end_write(self, path: str) -> None:
        """Say that the write landed (or failed): copies fetched before now are not kept."""
        with self._here():
            self._mark(path, False)

    def _outdated(self, path: str, since: int | None, writing: int | None) -> bool:
        with self._here():
            m = self._marks.get(path)
            if writing is not None:
                return m is None or m[1] != writing  # another write of the path began after ours
            if since is not None:
                return since < self._floor or (m is not None and m[0] > since)
            return False

    def keep(self, path: str, data: bytes, generation: str | None, checked_at: float, *,
             since: int | None = None, writing: int | None = None) -> None:
        """Keep a copy of an object (best effort, as :meth:`store`) with its header. A fill
        passes ``since`` (the :attr:`epoch` before it fetched): a write of the path since then
        means the copy may be older than that write, and it is removed again. A write passes
        ``writing`` (its :meth:`begin_write` mark): if another write of the path began since,
        the copy may be the older one, and it is removed."""
        self._write(path, encode_header(generation, checked_at) + data)
        # written first, checked after: a write that came meanwhile either wrote its own copy
        # after ours (and replaced it) or marked the path before we looked
        if self._outdated(path, since, writing):
            self.forget(path)

    def load(self, path: str) -> CachedCopy | None:
        """The copy at ``path``, or None if there is none (or it is of a header version this
        version cannot read). A file without a header is an older version's: generation
        unknown, checked at 0."""
        try:
            with open(path, "rb", buffering=0) as f:  # unbuffered: the data is read once, into place
                head = f.read(_HEAD.size)
                if head[:8] != MAGIC:
                    return CachedCopy(head + f.readall(), None, 0.0)
                if len(head) < _HEAD.size:
                    return None  # cut short: not a copy to trust
                _, version, _, n, checked_at = _HEAD.unpack(head)
                if version != HEADER_VERSION:
                    return None
                gen = f.read(n) if n else b""
                if len(gen) != n:
                    return None  # cut short: not a copy to trust
                data = f.readall()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        generation = gen.decode("utf-8", "replace") if n else None
        if generation is not None and self._checked:
            with self._here():
                seen = self._checked.get(path)
            if seen is not None and seen[0] == generation and seen[1] > checked_at:
                checked_at = seen[1]
        return CachedCopy(data, generation, checked_at)

    def checked(self, path: str, generation: str, at: float) -> None:
        """Remember that the copy at ``path`` of ``generation`` was found current at ``at``
        (for as long as the file holds that generation), without rewriting it."""
        with self._here():
            self._checked[path] = (generation, at)
            self._checked.move_to_end(path)
            while len(self._checked) > self.CHECKED_MEMORY:
                self._checked.popitem(last=False)

    def store(self, path: str, data: bytes) -> None:
        """Keep ``data`` at ``path`` as it is, with no header (the volume's ``info`` copy, read
        back as plain bytes), best effort: a cache that cannot be written (disk full, a
        permission, another process clearing it) warns and is skipped, never fails the read."""
        self._write(path, data)

    def _write(self, path: str, data: bytes) -> None:
        if self.max_bytes is not None and len(data) > self.max_bytes:
            return
        try:
            atomic_write(path, data)
        except OSError as e:
            warnings.warn(f"cannot write the disk cache file {path} ({type(e).__name__}: {e}); "
                          "reading on without caching it", CacheWriteWarning, stacklevel=4)
            return
        if self.max_bytes is None:
            return
        with self._here():
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
        with self._here():
            self._checked.pop(path, None)
            if self._index is not None:
                self._total -= self._index.pop(path, 0)

    @property
    def size(self) -> int:
        """Bytes held (as this process sees them)."""
        with self._here():
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
        with self._here():
            self._index = None
            self._checked.clear()


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
        copy = self.cache.load(path)
        if copy is None:
            return self._fill(key, path)
        if self._due(copy):
            return self._revalidate(key, copy)
        self.cache.touch(path)
        return Versioned(copy.data, copy.generation)

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
        """A due copy checked with the store: unchanged, changed or gone."""
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
        copy = self.cache.load(path)
        if copy is None:
            return None
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
        return iter_through_cache(keys, self._lookup, self._revalidate,
                                  lambda k, v: self.cache.keep(self._file(k), v.data, v.generation, started,
                                                               since=since),
                                  self.inner, expected_bytes, runtime, read=self.cached_read)

    def iter_get(self, keys: "Iterable[str]", expected_bytes: int | None = None,
                 runtime: "Runtime | None" = None) -> Iterator[tuple[str, bytes | None]]:
        """:meth:`iter_read` without the generations."""
        return data_only(self.iter_read(keys, expected_bytes, runtime))

    def exists(self, key: str) -> bool:
        copy = self.cache.load(self._file(key))
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
