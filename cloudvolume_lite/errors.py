"""The error family. Every error the library raises on purpose is a ``VolumeError``."""

from __future__ import annotations


class VolumeError(Exception):
    """Root of every error cloudvolume-lite raises on purpose."""


class OutOfBoundsError(VolumeError, IndexError):
    """A request reaches outside the volume's bounds (and ``bounded=True``)."""


class ChunkNotFoundError(VolumeError, FileNotFoundError):
    """A chunk the request needs is absent and ``fill_missing=False``."""


class DecodeError(VolumeError, ValueError):
    """A chunk could not be decoded: corrupt, truncated or of the wrong size."""


class InfoError(VolumeError, ValueError):
    """The ``info`` file is missing, unreadable or describes an impossible volume."""


class UnsupportedEncodingError(VolumeError, NotImplementedError):
    """An encoding, compression or URL scheme that this installation cannot handle."""


class StoreError(VolumeError, OSError):
    """A storage backend failed (server error, permission, network) after retries."""


class RequestError(VolumeError, ValueError):
    """A malformed request: a bad slice, bbox, dtype or shape given by the caller."""


class ConflictError(VolumeError):
    """A conditional operation found the object at another generation than the one it named:
    someone changed it in between. Read it again and retry (the library does, where it can)."""
