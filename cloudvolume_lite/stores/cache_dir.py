"""The disk cache's directory: where each URL's copies go, reading and writing them safely
(atomic, never through symbolic links, checksums checked), and the byte limit kept across the
processes and Volumes that share it. The store adapter over it is ``disk_cache.py``."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import time
import uuid
import warnings
from collections import OrderedDict
from urllib.parse import unquote

from ..errors import RequestError
from .cache_format import (HEADER_VERSION, MAGIC, _HEAD, _KIND_BITS, _SUM, CachedCopy, Damaged, _checksum, _covered,
                           encode_header2)
from .local import _TMP_MARK
from .lru import ForkSafe
from .url import StoreURL


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


class CacheIntegrityWarning(UserWarning):
    """A disk cache file was damaged (or reached through a symbolic link) and was not served:
    the data is fetched again."""


class CacheLinkError(OSError):
    """A path of the cache passes through a symbolic link inside the cache directory."""


_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
# O_NONBLOCK: a FIFO planted in the cache must not hang a read (no effect on regular files)
_READ_FLAGS = os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
_DIR_FLAGS = os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC | getattr(os, "O_BINARY", 0)
#: directories opened and written relative to a verified descriptor (POSIX), else by path
_BY_FD = bool(_O_DIRECTORY) and {os.open, os.mkdir, os.rename, os.unlink, os.stat} <= os.supports_dir_fd
#: where an open descriptor really is (Linux); elsewhere the path is resolved again
_PROC_FD = "/proc/self/fd"
#: PBKDF2 rounds for a user info's cache directory name (~15 ms once per Volume here)
_USER_ROUNDS = 50_000


class DiskCache(ForkSafe):
    """A cache directory with an LRU byte limit (``max_bytes=None``: unbounded).

    Recency is kept in memory and persisted through file mtimes, so a new process picks up the
    order from the last one. Several processes (or Volumes) may share a directory: files are
    replaced atomically, temp files of writes in progress are left alone (those of writers that
    have died, or older than :data:`STALE_TEMP_S`, are swept), and each instance looks at the whole directory again
    whenever it has written a tenth of the limit, so together they stay near the limit.

    Chunk copies are kept with :meth:`keep` and read with :meth:`load` (or :meth:`inspect`,
    which also tells a damaged copy from a missing one); a check that found a copy unchanged is
    remembered in memory (:meth:`checked`) rather than by rewriting the file. No path is read,
    written or removed through a symbolic link inside the directory (see the module docstring).
    """

    #: how many "checked at" times :meth:`checked` remembers (oldest forgotten first: such a
    #: copy is checked again when next due, one more conditional request)
    CHECKED_MEMORY = 1 << 17

    def __init__(self, path: str, max_bytes: int | None = None):
        self.path = os.path.abspath(path)
        # where the root really is (it may be a link); every path below it must resolve to
        # this plus its own relative part, or it passes through a link inside the cache
        self._real = os.path.realpath(self.path)
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
        self._user_dirs: dict[tuple[str, str, str], str] = {}  # (scheme, host, user info) -> dir name
        self._proc = os.path.isdir(_PROC_FD)
        self._dirs: dict[str, tuple[int, int]] = {}  # directory -> (st_dev, st_ino) when found inside the root
        self._init_fork_safe()

    # -- where things go -------------------------------------------------------------------------
    def dir_for(self, url: StoreURL) -> str:
        """The directory mirroring ``url``; never outside :attr:`path`. A URL with user info
        is kept under ``@<hash of the user info>/`` (the password never becomes a name)."""
        import posixpath

        host, userinfo = url.host, url.userinfo
        if host in (".", "..") or "/" in host or "\\" in host or "/" in (userinfo or "") or "\\" in (userinfo or ""):
            raise RequestError(f"cache path for {url} would leave the cache directory {self.path}")
        # normalise as an absolute path first, so no ".." can climb above the mirror's root
        parts = [url.scheme, host or "_", posixpath.normpath("/" + url.path).lstrip("/")]
        if userinfo is not None:
            parts.insert(0, "@" + self._user_dir(url.scheme, host, userinfo))
        rel = os.path.normpath(os.path.join(*[p for p in parts if p]))
        full = os.path.join(self.path, rel)
        if os.path.commonpath([self.path, os.path.abspath(full)]) != self.path or rel.startswith(".."):
            raise RequestError(f"cache path for {url} would leave the cache directory {self.path}")
        return full

    def _user_dir(self, scheme: str, host: str, userinfo: str) -> str:
        """16 hex digits naming one user info's part of the cache: PBKDF2 salted with the
        origin, so the name neither shows the password nor makes guessing it cheap."""
        k = (scheme, host, userinfo)
        name = self._user_dirs.get(k)
        if name is None:
            salt = f"cloudvolume-lite disk cache {scheme}://{host}".encode("utf-8")
            name = hashlib.pbkdf2_hmac("sha256", unquote(userinfo).encode("utf-8"), salt, _USER_ROUNDS, 8).hex()
            self._user_dirs[k] = name
        return name

    # -- paths inside the root, never through a link ---------------------------------------------
    def _place(self, path: str) -> str | None:
        """``path`` below the root, ``/``-separated (what a checksum covers), or None when it
        is not below the root."""
        path = os.path.normpath(path)
        root = self.path.rstrip(os.sep) + os.sep
        if not path.startswith(root) or len(path) == len(root):
            return None
        rel = path[len(root):]
        return rel if os.sep == "/" else rel.replace(os.sep, "/")

    def _expected(self, place: str) -> str:
        """Where a path at ``place`` is when no link inside the cache is on its way."""
        return os.path.join(self._real, *place.split("/"))

    def _where(self, fd: int, path: str) -> str:
        """The real path of what ``fd`` (opened from ``path``) is."""
        if self._proc:
            try:
                where = os.readlink(f"{_PROC_FD}/{fd}")
            except OSError:
                return os.path.realpath(path)
            return where.removesuffix(" (deleted)")  # opened, then replaced by a rename
        return os.path.realpath(path)

    def _open_dir(self, d: str, create: bool) -> int:
        """A descriptor of the cache directory ``d`` (made first if ``create``), checked to be
        where it should be; :class:`CacheLinkError` when a link is on the way."""
        place = self._place(d)
        if place is None:
            if os.path.normpath(d) == os.path.normpath(self.path):
                if create:
                    os.makedirs(self.path, exist_ok=True)
                return os.open(self.path, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)  # the root may be a link
            raise CacheLinkError(errno.EXDEV, f"{d} is not inside the cache directory {self.path}")
        try:
            fd = os.open(d, _DIR_FLAGS)
        except FileNotFoundError:
            if not create:
                raise
            return self._make_dirs(place)
        except OSError as e:
            if e.errno == errno.ELOOP or (e.errno == errno.ENOTDIR and os.path.islink(d)):
                raise CacheLinkError(e.errno, f"{d} is a symbolic link inside the cache directory {self.path}; "
                                     "refusing to follow it") from None
            raise
        where = self._where(fd, d)
        if where != self._expected(place):
            os.close(fd)
            raise CacheLinkError(errno.ELOOP, f"{d} leads to {where} through a symbolic link inside the cache "
                                 f"directory {self.path}; refusing to follow it")
        return fd

    def _make_dirs(self, place: str) -> int:
        """Make the directories of ``place`` one by one from the root, none of them a link."""
        os.makedirs(self.path, exist_ok=True)
        fd = os.open(self.path, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
        try:
            for part in place.split("/"):
                try:
                    os.mkdir(part, 0o777, dir_fd=fd)
                except FileExistsError:
                    pass
                try:
                    nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as e:
                    if e.errno == errno.ELOOP or (e.errno == errno.ENOTDIR and _is_link(part, fd)):
                        raise CacheLinkError(e.errno, f"{part!r} in {place} is a symbolic link inside the cache "
                                             f"directory {self.path}; refusing to follow it") from None
                    raise
                os.close(fd)
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _put_file(self, path: str, *parts: bytes) -> None:
        """Write ``parts`` to ``path`` atomically (a hidden temp file, then a rename over it:
        a link there is replaced, never written through)."""
        d, name = os.path.split(path)
        # the writer's pid in the name: a scan can tell a dead writer's leftover from a live write
        tmp = f".{name}{_TMP_MARK}{os.getpid()}-{uuid.uuid4().hex}"
        if not _BY_FD:  # no descriptor-relative calls here: check by path, then write
            os.makedirs(d, exist_ok=True)
            place = self._place(d)
            if place is None or os.path.realpath(d) != self._expected(place):
                raise CacheLinkError(errno.ELOOP, f"{d} passes through a symbolic link inside the cache directory")
            fd = os.open(os.path.join(d, tmp), _WRITE_FLAGS, 0o666)
            try:
                with open(fd, "wb") as f:
                    for part in parts:
                        f.write(part)
                os.replace(os.path.join(d, tmp), path)
            except BaseException:
                _unlink(os.path.join(d, tmp))
                raise
            return
        dfd = self._open_dir(d, create=True)
        try:
            fd = os.open(tmp, _WRITE_FLAGS, 0o666, dir_fd=dfd)
            try:
                with open(fd, "wb") as f:  # buffered: the header is gathered, the data written as it is
                    for part in parts:
                        f.write(part)
                os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
            except BaseException:
                try:
                    os.unlink(tmp, dir_fd=dfd)
                except FileNotFoundError:
                    pass
                raise
        finally:
            os.close(dfd)

    def _remove(self, path: str, inode: int | None = None) -> None:
        """Remove the file at ``path`` (if it is still ``inode``), never through a link on its
        way; nothing there, or a link on the way: nothing to do."""
        if not _BY_FD:
            place = self._place(os.path.dirname(path))
            if place is None or os.path.realpath(os.path.dirname(path)) != self._expected(place):
                return
            try:
                if inode is None or os.lstat(path).st_ino == inode:
                    os.unlink(path)
            except FileNotFoundError:
                pass
            return
        d, name = os.path.split(path)
        try:
            dfd = self._open_dir(d, create=False)
        except OSError:
            return
        try:
            if inode is None or os.stat(name, dir_fd=dfd, follow_symlinks=False).st_ino == inode:
                os.unlink(name, dir_fd=dfd)
        except FileNotFoundError:
            pass
        finally:
            os.close(dfd)

    # -- the index ---------------------------------------------------------------------------------
    def _scan(self) -> OrderedDict[str, int]:
        if self._index is None:
            found = []
            for dirpath, _, files in os.walk(self.path):  # never into linked directories
                for fn in files:
                    p = os.path.join(dirpath, fn)
                    try:
                        st = os.lstat(p)  # a link counts as itself, not as what it points to
                    except FileNotFoundError:
                        continue
                    if fn.startswith(".") and _TMP_MARK in fn:
                        if _abandoned(fn, st.st_mtime):
                            self._remove(p)  # an interrupted write of a process that is gone
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
            os.utime(path, follow_symlinks=False)
        except (FileNotFoundError, NotImplementedError):
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
        """Keep a copy of an object (best effort, as :meth:`store`) with its header (see
        :func:`encode_header2`). A fill passes ``since`` (the :attr:`epoch` before it
        fetched): a write of the path since then means the copy may be older than that write,
        and it is removed again. A write passes ``writing`` (its :meth:`begin_write` mark): if
        another write of the path began since, the copy may be the older one, and it is removed."""
        place = self._place(path)
        if place is None:
            self._warn_write(path, CacheLinkError(errno.EXDEV, f"not inside the cache directory {self.path}"))
            return
        self._write(path, encode_header2(place, generation, checked_at, data), data)
        # written first, checked after: a write that came meanwhile either wrote its own copy
        # after ours (and replaced it) or marked the path before we looked
        if self._outdated(path, since, writing):
            self.forget(path)

    def load(self, path: str) -> CachedCopy | None:
        """The copy at ``path``, or None if there is none, it failed its check (it is then
        removed: see :meth:`inspect`) or it is of a header version this version cannot read.
        A file of version 1 or without a header is an older version's: generation unknown,
        checked at 0."""
        got = self.inspect(path)
        return got if isinstance(got, CachedCopy) else None

    def inspect(self, path: str) -> CachedCopy | Damaged | None:
        """The copy at ``path``; :class:`Damaged` when the file fails its checksum (its
        header or data changed, it was cut short, it belongs to another key), after removing
        it with a :class:`CacheIntegrityWarning`; None when there is no usable copy (none,
        one of a later version, one of a checksum kind this installation cannot compute, or
        a link inside the cache, which is never followed)."""
        place = self._place(path)
        if place is None:
            self._refuse_link(path, "lies outside the cache directory")
            return None
        if not self._dir_checked(path, place):
            return None
        try:
            fd = os.open(path, _READ_FLAGS)  # O_NOFOLLOW: the file itself may not be a link
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except OSError as e:
            if e.errno == errno.ELOOP:  # the file itself is a link: never read through it
                self._refuse_link(path, "is a symbolic link")
            else:
                warnings.warn(f"cannot read the disk cache file {path} ({type(e).__name__}: {e}); fetching the "
                              "data instead", CacheIntegrityWarning, stacklevel=3)
            return None
        # the file's size from one fstat, then exact reads straight into bytes (no buffer, no
        # readall probing for the end): the data is read once, into place
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None  # a directory, a FIFO, a device: no copy of ours
            head = os.read(fd, _HEAD.size)
            if head[:8] != MAGIC:
                return CachedCopy(head + _read_exactly(fd, st.st_size - len(head)), None, 0.0)
            if len(head) < _HEAD.size:
                return self._damaged(path, st.st_ino, "cut short inside its header")
            _, version, flags, n, checked_at = _HEAD.unpack(head)
            if version == 1:
                gen = _read_exactly(fd, n)
                if len(gen) != n:
                    return None  # cut short: not a copy to trust
                # no checksum: nothing vouches for these bytes, so they are served only where
                # nothing is ever checked, and fetched again in full when due
                return CachedCopy(_read_exactly(fd, st.st_size - _HEAD.size - n), None, 0.0)
            if version != HEADER_VERSION:
                return None  # a later version's: a miss (the fill replaces it)
            rest = _read_exactly(fd, _SUM.size + n)
            if len(rest) != _SUM.size + n:
                return self._damaged(path, st.st_ino, "cut short inside its header")
            data = _read_exactly(fd, st.st_size - _HEAD.size - _SUM.size - n)
        finally:
            os.close(fd)
        (stored,) = _SUM.unpack_from(rest)
        gen = rest[_SUM.size:]
        crc = _checksum(flags & _KIND_BITS, _covered(place, head, gen), data)
        if crc is None:
            return None  # a kind we cannot compute (google-crc32c missing): fetched again, rewritten
        if crc != stored:
            return self._damaged(path, st.st_ino, f"checksum mismatch: the file changed since it was written, "
                                 f"was cut short or belongs to another key ({len(data)} bytes of data)")
        generation = gen.decode("utf-8", "replace") if n else None
        if generation is not None and self._checked:
            with self._here():
                seen = self._checked.get(path)
            if seen is not None and seen[0] == generation and seen[1] > checked_at:
                checked_at = seen[1]
        return CachedCopy(data, generation, checked_at)

    #: how many directories :meth:`_dir_checked` remembers as checked (then it starts afresh)
    CHECKED_DIRS = 4096

    def _dir_checked(self, path: str, place: str) -> bool:
        """Whether the directory holding ``path`` is where it should be, no link inside the
        cache on the way (False: absent, or refused with a warning). Its real path is resolved
        once; after that one ``lstat`` tells it is the same directory (a link put in its place,
        or in the place of one above it, leads to another inode): a read costs a microsecond,
        not a path resolution. (Writes check the directory they write in every time, through
        its descriptor: see :meth:`_open_dir`.)"""
        d = os.path.dirname(path)
        try:
            st = os.lstat(d)
        except (FileNotFoundError, NotADirectoryError):
            return False
        seen = (st.st_dev, st.st_ino)
        if self._dirs.get(d) == seen:
            return True
        up = place.rpartition("/")[0]
        if not stat.S_ISDIR(st.st_mode) or os.path.realpath(d) != (self._expected(up) if up else self._real):
            self._refuse_link(path, "is reached through a symbolic link")
            return False
        if len(self._dirs) >= self.CHECKED_DIRS:
            self._dirs.clear()
        self._dirs[d] = seen
        return True

    def _damaged(self, path: str, inode: int, reason: str) -> Damaged:
        warnings.warn(f"the disk cache file {path} is damaged ({reason}); removed it, fetching the data again",
                      CacheIntegrityWarning, stacklevel=4)
        self._remove(path, inode)  # unless another process has put a new copy there meanwhile
        with self._here():
            self._checked.pop(path, None)
            if self._index is not None:
                self._total -= self._index.pop(path, 0)
        return Damaged(path, reason)

    def _refuse_link(self, path: str, why: str) -> None:
        warnings.warn(f"the disk cache file {path} {why} inside the cache directory {self.path}; not reading "
                      "through it, fetching the data instead", CacheIntegrityWarning, stacklevel=4)

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
        permission, another process clearing it, a link on the way) warns and is skipped,
        never fails the read."""
        self._write(path, data)

    def _warn_write(self, path: str, e: OSError) -> None:
        warnings.warn(f"cannot write the disk cache file {path} ({type(e).__name__}: {e}); "
                      "reading on without caching it", CacheWriteWarning, stacklevel=4)

    def _write(self, path: str, head: bytes, data: bytes = b"") -> None:
        size = len(head) + len(data)
        if self.max_bytes is not None and size > self.max_bytes:
            return
        try:
            self._put_file(path, head, data) if data else self._put_file(path, head)
        except OSError as e:
            self._warn_write(path, e)
            return
        if self.max_bytes is None:
            return
        with self._here():
            self._written += size
            if self._written > self.max_bytes // 10:
                # other processes (and other Volumes here) write to the same directory: look at
                # what is really there now and then, so together they stay near the limit
                self._index, self._written = None, 0
            idx = self._scan()
            self._total += size - idx.pop(path, 0)
            idx[path] = size
            while self._total > self.max_bytes and idx:
                old, old_size = idx.popitem(last=False)
                self._total -= old_size
                self._remove(old)

    def forget(self, path: str) -> None:
        self._remove(path)
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
        """Remove every cached file (or those below the directory ``under``), never what a
        link inside the cache points to."""
        import shutil

        target = self.path if under is None else under
        if os.path.commonpath([self.path, os.path.abspath(target)]) != self.path:
            raise RequestError(f"{target} is not inside the cache directory {self.path}")
        place = self._place(target)
        if place is not None and os.path.lexists(target) and os.path.realpath(target) != self._expected(place):
            raise RequestError(
                f"{target} is reached through a symbolic link inside the cache directory {self.path}; not removing "
                "what it points to. Remove the link itself (rm, not rm -r) and clear again")
        shutil.rmtree(target, ignore_errors=True)  # rmtree itself never follows links inside the tree
        with self._here():
            self._index = None
            self._checked.clear()
            self._dirs.clear()


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


def _read_exactly(fd: int, n: int) -> bytes:
    """``n`` bytes from ``fd`` (fewer at its end): one read for a regular file."""
    if n <= 0:
        return b""
    data = os.read(fd, n)
    if len(data) == n or not data:
        return data
    parts, got = [data], len(data)
    while got < n:
        part = os.read(fd, n - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
