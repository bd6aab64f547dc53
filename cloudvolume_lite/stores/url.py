"""Parse a volume URL once into a frozen record."""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass

from ..errors import RequestError

_PREFIX = "precomputed://"
_PIPE_SUFFIX = "|neuroglancer-precomputed:"


@dataclass(frozen=True)
class StoreURL:
    """``scheme://netloc/path``; ``path`` has no leading or trailing slash except for file roots."""

    scheme: str  # file, mem, gs, s3, http, https, or a plug-in's scheme
    netloc: str  # bucket, host[:port] or memory namespace; "" for file
    path: str  # for file: an absolute OS path; otherwise a key prefix without slashes at the ends

    def join(self, rel: str) -> "StoreURL":
        """Resolve ``rel`` (which may hold ``..``) against this URL, like a URL path."""
        if self.scheme == "file":
            return StoreURL("file", "", os.path.normpath(os.path.join(self.path, rel)))
        joined = posixpath.normpath(posixpath.join("/" + self.path, rel)).lstrip("/")
        return StoreURL(self.scheme, self.netloc, "" if joined == "." else joined)

    def key_url(self, key: str) -> str:
        """Human-readable address of ``key`` under this URL (for error messages)."""
        return str(self.join(key)) if key else str(self)

    def __str__(self) -> str:
        if self.scheme == "file":
            return "file://" + self.path
        return f"{self.scheme}://{self.netloc}/{self.path}".rstrip("/")


def parse_url(url: str) -> StoreURL:
    """Accept ``precomputed://`` prefixes, ``|neuroglancer-precomputed:`` suffixes and plain paths."""
    if not isinstance(url, (str, os.PathLike)):
        raise RequestError(f"a volume URL must be a string or path, got {type(url).__name__}")
    text = os.fspath(url).strip()
    if text.startswith(_PREFIX):
        text = text[len(_PREFIX) :]
    if text.endswith(_PIPE_SUFFIX):
        text = text[: -len(_PIPE_SUFFIX)]
    if not text:
        raise RequestError("empty volume URL")
    if text[:5].lower() == "file:" and text[5:7] != "//":
        # file:/abs/path (RFC 8089's short form, as some tools write it) is an absolute path
        return StoreURL("file", "", os.path.abspath(os.path.expanduser(text[5:] or "/")))
    if "://" not in text:
        return StoreURL("file", "", os.path.abspath(os.path.expanduser(text)))
    scheme, rest = text.split("://", 1)
    scheme = scheme.lower()
    if scheme == "file":
        if rest.lower().startswith("localhost/"):
            rest = rest[len("localhost") :]  # file://localhost/abs/path names this machine
        return StoreURL("file", "", os.path.abspath(os.path.expanduser(rest or "/")))
    netloc, _, path = rest.partition("/")
    if not netloc:
        raise RequestError(f"URL {url!r} has no bucket or host after {scheme}://")
    path = posixpath.normpath("/" + path).lstrip("/") if path.strip("/") else ""
    return StoreURL(scheme, netloc, path)
