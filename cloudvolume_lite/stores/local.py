"""``file://`` (and plain paths): chunks as files, with CloudVolume's ``.gz``/``.br``/``.zstd`` siblings."""

from __future__ import annotations

import contextlib
import fcntl
import os
import uuid
from typing import ContextManager, Iterator, Sequence

from .. import compression
from ..errors import ConflictError, StoreError
from .base import ABSENT, ByteRange, Store, Versioned, check_key
from .url import StoreURL

_VARIANTS = (("", None), (".gz", "gzip"), (".br", "br"), (".zstd", "zstd"))
_TMP_MARK = ".tmp-"


def atomic_write(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` via a hidden temp file and a rename: readers never see half a file."""
    d, name = os.path.split(path)
    os.makedirs(d, exist_ok=True)
    # the writer's pid in the name: a scan can tell a dead writer's leftover from a live write
    tmp = os.path.join(d, f".{name}{_TMP_MARK}{os.getpid()}-{uuid.uuid4().hex}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def generation_of(st: os.stat_result, suffix: str = "") -> str:
    """A file's generation: a rename-replaced file is a new inode, an in-place edit moves
    size or mtime; the suffix tells a ``.gz`` sibling from the plain file."""
    return f"{st.st_ino}-{st.st_size}-{st.st_mtime_ns}{suffix}"


class LocalStore(Store):
    """Files under a root directory. Keys may not escape the root.

    Generations come from the open file (``fstat``), so the bytes read and the generation
    reported always belong together. A conditional put holds an ``flock`` on a hidden
    ``.NAME.cas.lock`` file, checks the generation and renames: atomic against other
    conditional writers (threads, processes, hosts whose filesystem honours flock), not
    against plain ``put`` calls made at the same moment.
    """

    default_parallel = 8
    latency_bound = False

    @property
    def cheap_ranges(self) -> bool:  # type: ignore[override]
        # a subclass that changes how bytes are fetched keeps every read going through its methods
        cls = type(self)
        return cls.get is LocalStore.get and cls.get_decoded_ranges is LocalStore.get_decoded_ranges

    @property
    def supports_conditional_writes(self) -> bool:
        return True

    def _path(self, key: str) -> str:
        return os.path.join(self.url.path, check_key(key)) if key else self.url.path

    def file_path(self, key: str) -> str:
        """The path of ``key``'s plain file (which may not exist; see ``_VARIANTS`` for the
        compressed siblings ``get`` also tries)."""
        return self._path(key)

    def get(self, key: str, byte_range: ByteRange | None = None) -> bytes | None:
        # the hot path of local reads: no fstat or generation when nobody asks for one
        path = self._path(key)
        for suffix, enc in _VARIANTS:
            try:
                with open(path + suffix, "rb") as f:
                    if byte_range is not None:  # ranges see the stored bytes, as on GCS/S3
                        start, end = byte_range
                        return os.pread(f.fileno(), max(0, end - start), start)
                    data = f.read()
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                continue
            except OSError as e:
                raise StoreError(f"reading {path + suffix} failed: {e}") from None
            return compression.decompress(data, enc, path + suffix, self.decoded_limit)
        return None

    def read(self, key: str, byte_range: ByteRange | None = None, *, if_match: str | None = None,
             if_none_match: str | None = None) -> Versioned | None:
        path = self._path(key)
        for suffix, enc in _VARIANTS:
            try:
                with open(path + suffix, "rb") as f:
                    gen = generation_of(os.fstat(f.fileno()), suffix)
                    if if_match is not None and gen != if_match:
                        raise ConflictError(f"{path} changed (generation {gen}, expected {if_match})")
                    if if_none_match is not None and gen == if_none_match:
                        return Versioned(None, gen)
                    if byte_range is not None:  # ranges see the stored bytes, as on GCS/S3
                        start, end = byte_range
                        return Versioned(os.pread(f.fileno(), max(0, end - start), start), gen)
                    data = f.read()
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                continue
            except OSError as e:
                raise StoreError(f"reading {path + suffix} failed: {e}") from None
            return Versioned(compression.decompress(data, enc, path + suffix, self.decoded_limit), gen)
        if if_match is not None:
            raise ConflictError(f"{path} is gone (it was at generation {if_match})")
        return None

    def stat(self, key: str) -> str | None:
        path = self._path(key)
        for suffix, _ in _VARIANTS:
            try:
                st = os.stat(path + suffix)
            except (FileNotFoundError, NotADirectoryError):
                continue
            if not os.path.isdir(path + suffix):
                return generation_of(st, suffix)
        return None

    def get_decoded_ranges(self, key: str, ranges: "Sequence[ByteRange]") -> list[bytes] | None:
        """Plain files are read range by range; compressed siblings whole (see the base class)."""
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return super().get_decoded_ranges(key, ranges)  # absent, or only a .gz/.br/.zstd sibling
        try:
            return [os.pread(fd, b - a, a) for a, b in ranges]
        except OSError as e:
            raise StoreError(f"reading {path} failed: {e}") from None
        finally:
            os.close(fd)

    def put(self, key: str, data: bytes, *, content_type: str | None = None, content_encoding: str | None = None,
            if_generation: str | None = None) -> str:
        if if_generation is None:
            return self._put(key, data, content_encoding)
        with self._flock(key, ".cas.lock"):
            now = self.stat(key)
            if (ABSENT if now is None else now) != if_generation:
                raise ConflictError(f"{self._path(key)} is not at generation {if_generation} (it is at "
                                    f"{now or 'nothing'}): another writer changed it; read it again and retry")
            return self._put(key, data, content_encoding)

    def _put(self, key: str, data: bytes, content_encoding: str | None) -> str:
        enc = compression.normalize(content_encoding)
        path = self._path(key)
        suffix = compression.SUFFIXES[enc] if enc else ""
        try:
            atomic_write(path + suffix, data)
            gen = generation_of(os.stat(path + suffix), suffix)
            # a stale sibling in another encoding would shadow (or be shadowed by) the new bytes
            for other, _ in _VARIANTS:
                if other != suffix:
                    try:
                        os.unlink(path + other)
                    except FileNotFoundError:
                        pass
        except OSError as e:
            raise StoreError(f"writing {path + suffix} failed: {e}") from None
        return gen

    def delete(self, key: str) -> None:
        path = self._path(key)
        for suffix, _ in _VARIANTS:
            try:
                os.unlink(path + suffix)
            except FileNotFoundError:
                pass

    def lock(self, key: str) -> ContextManager[None]:
        """An ``flock`` on a hidden ``.NAME.lock`` file beside the object (threads and processes)."""
        return self._flock(key, ".lock")

    @contextlib.contextmanager
    def _flock(self, key: str, ending: str) -> Iterator[None]:
        # conditional puts use their own file, so one made while holding ``lock`` cannot deadlock
        d, name = os.path.split(self._path(key))
        os.makedirs(d, exist_ok=True)
        fd = os.open(os.path.join(d, f".{name}{ending}"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def exists(self, key: str) -> bool:
        path = self._path(key)
        return any(os.path.isfile(path + s) for s, _ in _VARIANTS)

    def list(self, prefix: str = "") -> Iterator[str]:
        root = self.url.path
        pdir = os.path.dirname(prefix)
        start = os.path.join(root, pdir) if pdir else root
        seen: set[str] = set()
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames.sort()
            for fn in sorted(filenames):
                if fn.startswith(".") and (_TMP_MARK in fn or fn.endswith(".lock")):
                    continue  # an unfinished atomic write, or a lock file
                rel = os.path.relpath(os.path.join(dirpath, fn), root).replace(os.sep, "/")
                for suffix, enc in _VARIANTS[1:]:
                    if rel.endswith(suffix):
                        rel = rel[: -len(suffix)]
                        break
                if rel.startswith(prefix) and rel not in seen:
                    seen.add(rel)
                    yield rel

    def _with_url(self, url: StoreURL) -> "LocalStore":
        return LocalStore(url)
