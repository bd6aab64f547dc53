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

import errno
import hashlib
import os
import stat
import struct
import time
import uuid
import warnings
import zlib
from collections import OrderedDict
from typing import Iterable, Iterator, Mapping, NamedTuple
from urllib.parse import unquote

from ..errors import ConflictError, RequestError, StoreError, VolumeError
from .base import ByteRange, Store, Update, Versioned, WrapperStore, check_key, iter_through_cache, whole_reader
from .batch import data_only
from .local import _TMP_MARK
from .lru import ForkSafe, as_recheck, trusted_from
from .recheck import Recheck, RecheckSetting
from .url import StoreURL

if TYPE_CHECKING:
    from ..runtime import Runtime


#: the first 8 bytes of a cache file with a header: like PNG's, a high byte (not ASCII), a
#: name, CR LF (caught by newline conversion), ^Z and LF
MAGIC = b"\x89CVL\r\n\x1a\n"
#: the header layout this version writes (version 1, without a checksum, is still read)
HEADER_VERSION = 2
# magic, version, flags, generation length in bytes (0: unknown), checked_at (float64): both versions
_HEAD = struct.Struct("<8sBBHd")
# version 2 goes on with the checksum (uint32), then the generation
_SUM = struct.Struct("<I")
#: the checksum kinds, in the low two bits of the flags byte (0 never appears in a version-2 file)
CRC32C, CRC32 = 1, 2
_KIND_BITS = 0x03

try:  # crc32c at ~11 GB/s with the C extension; zlib's crc32 (~4 GB/s) otherwise
    import google_crc32c as _crc32c
except ImportError:  # pragma: no cover - google-crc32c comes with the gcs extra
    _crc32c = None  # type: ignore[assignment]
#: the checksum kind this installation writes
WRITE_KIND = CRC32C if _crc32c is not None and _crc32c.implementation == "c" else CRC32


def _checksum(kind: int, head: bytes, data: bytes) -> int | None:
    """``kind``'s checksum of ``head`` then ``data`` (no copy of ``data``); None when this
    installation cannot compute that kind."""
    if kind == CRC32C and _crc32c is not None:
        if not isinstance(data, bytes):
            data = bytes(data)  # the C extension wants read-only bytes (writes only: reads are bytes)
        return _crc32c.extend(_crc32c.value(head), data)
    if kind == CRC32:
        return zlib.crc32(data, zlib.crc32(head))
    return None


def _covered(place: str, head: bytes, generation: bytes) -> bytes:
    """What the checksum covers besides the data: the file's place in the cache (so another
    key's valid file copied over this one does not pass), the header's first 20 bytes and the
    generation."""
    return os.fsencode(place) + b"\0" + head + generation


def encode_header(generation: str | None, checked_at: float) -> bytes:
    """The header of a version-1 cache file, as the previous version wrote it (still read, as
    unchecked): ``MAGIC``, version 1, flags 0, the generation's length (uint16, 0: unknown),
    when the copy was fetched or last checked (float64 ``time.time()``), all little-endian (20
    bytes), then the generation in UTF-8. This version writes :func:`encode_header2`."""
    gen = b"" if generation is None else generation.encode("utf-8")
    if len(gen) > 0xFFFF:
        gen = b""  # no store names a generation this long; unknown is always safe
    return _HEAD.pack(MAGIC, 1, 0, len(gen), float(checked_at)) + gen


def encode_header2(place: str, generation: str | None, checked_at: float, data: bytes,
                   kind: int = WRITE_KIND) -> bytes:
    """The header of a version-2 cache file holding ``data`` at ``place`` (its path below the
    cache root, ``/``-separated). Little-endian, 24 bytes, then the generation in UTF-8:

    ======  =====  ==========================================================================
    offset  bytes  field
    ======  =====  ==========================================================================
    0       8      ``MAGIC``
    8       1      version: 2
    9       1      flags: bits 0-1 the checksum kind (1: crc32c, 2: zlib's crc32); others 0
    10      2      the generation's length in bytes (uint16; 0: unknown)
    12      8      when the copy was fetched or last checked (float64 ``time.time()``)
    20      4      checksum (uint32) of: ``place`` in UTF-8, a NUL byte, bytes 0-19 of this
                   header, the generation, the data
    ======  =====  ==========================================================================
    """
    gen = b"" if generation is None else generation.encode("utf-8")
    if len(gen) > 0xFFFF:
        gen = b""  # no store names a generation this long; unknown is always safe
    head = _HEAD.pack(MAGIC, HEADER_VERSION, kind, len(gen), float(checked_at))
    crc = _checksum(kind, _covered(place, head, gen), data)
    if crc is None:
        raise ValueError(f"checksum kind {kind} cannot be computed here")
    return head + _SUM.pack(crc) + gen


class CachedCopy(NamedTuple):
    """A cache file's contents: the bytes, the generation they are of (None: unknown) and when
    they were fetched or last checked against the store (0: never, a file of an older version)."""

    data: bytes
    generation: str | None
    checked_at: float


class Damaged(NamedTuple):
    """What :meth:`DiskCache.inspect` found instead of a copy: the file at ``path`` failed its
    check (``reason``) and was removed."""

    path: str
    reason: str


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
