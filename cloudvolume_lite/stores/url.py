"""Parse a volume URL once into a frozen record.

A URL may carry user info (``http://user:password@host/...``). It is kept in
:attr:`StoreURL.netloc` for the requests, but every form meant to be shown (``str()``,
``repr()``, :meth:`StoreURL.key_url`, :attr:`StoreURL.redacted`) hides the password as
``user:***@host`` (a user info without a password, often a token, as ``***@host``).
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass

from ..errors import RequestError

_PREFIX = "precomputed://"
_PIPE_SUFFIX = "|neuroglancer-precomputed:"
#: what stands in for a password (or a user info that is all token) wherever a URL is shown
MASK = "***"


def redact_netloc(netloc: str) -> str:
    """``user:password@host`` -> ``user:***@host``; ``token@host`` -> ``***@host``; ``host`` as is."""
    userinfo, at, host = netloc.rpartition("@")
    if not at:
        return netloc
    user, colon, _ = userinfo.partition(":")
    return f"{user}:{MASK}@{host}" if colon else f"{MASK}@{host}"


def redact(text: str) -> str:
    """A URL string as it may be shown: its user info redacted (see :func:`redact_netloc`),
    nothing else changed (a plain path stays as it is)."""
    prefix = ""
    if text.startswith(_PREFIX):
        prefix, text = _PREFIX, text[len(_PREFIX):]
    scheme, sep, rest = text.partition("://")
    if not sep:
        return prefix + text
    netloc, slash, path = rest.partition("/")
    return f"{prefix}{scheme}{sep}{redact_netloc(netloc)}{slash}{path}"


def scrub(message: str, netloc: str) -> str:
    """``message`` with every ``userinfo@`` of ``netloc`` (as written or percent-decoded)
    replaced by its redacted form: for texts made elsewhere (an exception from a library)."""
    userinfo, at, _ = netloc.rpartition("@")
    if not at or not userinfo:
        return message
    from urllib.parse import unquote

    shown = redact_netloc(netloc).rpartition("@")[0] + "@"
    for form in {userinfo, unquote(userinfo)}:
        message = message.replace(form + "@", shown)
        password = form.partition(":")[2]
        if len(password) >= 4:  # a password quoted on its own (a short one would mangle the text)
            message = message.replace(password, MASK)
    return message


@dataclass(frozen=True)
class StoreURL:
    """``scheme://netloc/path``; ``path`` has no leading or trailing slash except for file roots.

    ``netloc`` holds any user info as written (requests need it); ``str()``, ``repr()`` and
    :meth:`key_url` never show its password."""

    scheme: str  # file, mem, gs, s3, http, https, or a plug-in's scheme
    netloc: str  # bucket, [user[:password]@]host[:port] or memory namespace; "" for file
    path: str  # for file: an absolute OS path; otherwise a key prefix without slashes at the ends

    @property
    def host(self) -> str:
        """``netloc`` without its user info (``host[:port]``, a bucket, a namespace)."""
        return self.netloc.rpartition("@")[2]

    @property
    def userinfo(self) -> str | None:
        """The ``user[:password]`` before ``@`` in ``netloc``, as written (percent escapes
        kept), or None when there is none."""
        userinfo, at, _ = self.netloc.rpartition("@")
        return userinfo if at else None

    @property
    def redacted(self) -> str:
        """The URL as it may be shown: in messages, reprs, listings (same as ``str()``)."""
        if self.scheme == "file":
            return "file://" + self.path
        return f"{self.scheme}://{redact_netloc(self.netloc)}/{self.path}".rstrip("/")

    @property
    def unredacted(self) -> str:
        """The URL with its user info, for making requests or reopening it; never to be shown."""
        if self.scheme == "file":
            return "file://" + self.path
        return f"{self.scheme}://{self.netloc}/{self.path}".rstrip("/")

    def join(self, rel: str) -> "StoreURL":
        """Resolve ``rel`` (which may hold ``..``) against this URL, like a URL path."""
        if self.scheme == "file":
            return StoreURL("file", "", os.path.normpath(os.path.join(self.path, rel)))
        joined = posixpath.normpath(posixpath.join("/" + self.path, rel)).lstrip("/")
        return StoreURL(self.scheme, self.netloc, "" if joined == "." else joined)

    def key_url(self, key: str) -> str:
        """Human-readable address of ``key`` under this URL (for error messages; redacted)."""
        return str(self.join(key)) if key else str(self)

    def __str__(self) -> str:
        return self.redacted

    def __repr__(self) -> str:
        return f"StoreURL(scheme={self.scheme!r}, netloc={redact_netloc(self.netloc)!r}, path={self.path!r})"


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
    if not netloc or not netloc.rpartition("@")[2]:
        raise RequestError(f"URL {redact(text)!r} has no bucket or host after {scheme}://")
    path = posixpath.normpath("/" + path).lstrip("/") if path.strip("/") else ""
    return StoreURL(scheme, netloc, path)
