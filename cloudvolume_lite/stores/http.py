"""``http(s)://host/path``: read-only access to a volume served by any web server.

- One urllib3 connection pool per Volume (shared by the scale stores), of ``parallel``
  connections; the proxy environment (``HTTP(S)_PROXY``, ``NO_PROXY``) and the CA bundle
  (``REQUESTS_CA_BUNDLE``, see ``network.py``) are read once. Retries follow
  :class:`~.retry.RetryPolicy` (pass ``retry=`` to the constructor, e.g. through
  ``StoreRegistry().with_scheme("https", partial(HTTPStore, retry=...))``).
- Whole-object reads advertise ``Accept-Encoding: gzip, br, zstd`` and undo the
  ``Content-Encoding`` the server used. Ranged reads send ``Accept-Encoding: identity`` and never
  decode: they return bytes ``[start, end)`` of what the server sends. A server that answers a
  ranged request with ``200`` and the whole body is sliced here (correct, but slow).
- ``secrets`` (optional): ``{"headers": {...}}`` for extra request headers (an ``Authorization``
  bearer token, say) and/or ``{"auth": (user, password)}``. Credentials never appear in errors
  or reprs; a URL's ``user:password@`` shows as ``user:***@``. A redirect to another origin
  (scheme, host or port) is followed without any of them: every header of ``secrets["headers"]``,
  the ``Authorization`` made from ``auth`` or from the URL, cookies (urllib3 strips the last two
  anyway; it would keep custom headers such as ``X-Api-Key``). The streaming fetcher
  (``http_fetch.py``) never follows redirects: a 3xx is done again by ``read``, as above.
- Integrity of whole reads: the body is checked against ``Content-MD5`` when the server sends
  it, against ``X-Goog-Hash`` (crc32c or md5) when Google Cloud Storage sends the bytes as
  stored, and against the ``ETag`` when Amazon S3 (``Server: AmazonS3``) sends a strong
  32-hex-digit one for an object that is not KMS/customer-key encrypted (there it is the MD5 of
  the bytes); other ETags are never taken for hashes. A mismatch is retried as a damaged
  transfer, then a :class:`StoreError`. Ranged reads and other servers' answers are not checked
  beyond their length.
- Writes: HTTP has no standard way to write, delete or list objects, so ``put``, ``delete`` and
  ``list`` raise :class:`UnsupportedEncodingError` saying so. Write to gs://, s3:// or a local
  directory and serve that.
- Generations (:meth:`~.base.Store.read`, ``stat``) come from the server's validators: the
  ``ETag`` as sent (``"abc"``, or weak ``W/"abc"``) when there is one, else
  ``lm:<Last-Modified>;n:<full length>`` (the length from ``Content-Length``, or the total of a
  ``Content-Range``; ``lm:<Last-Modified>`` alone when the answer does not say it). A server
  that sends neither gives generation ``None``, and ``stat`` raises
  :class:`UnsupportedEncodingError`. Conditions are sent as ``If-Match``/``If-None-Match``
  (ETags) or ``If-Unmodified-Since``/``If-Modified-Since`` (Last-Modified) *and* checked against
  the answer, so a server that ignores them (python's ``http.server`` does; many ignore
  ``If-Match`` on ranges) still never has bytes of another generation returned. Limits:
  Last-Modified counts whole seconds, so two rewrites within one second to the same length look
  alike (and ``If-Modified-Since`` cannot see a file put back with an *older* date); a weak
  ETag matches weakly (same content, maybe other bytes), fine for whole reads, which are
  decoded, but a ranged read under ``if_match`` needs a strong ETag or Last-Modified and
  refuses a weak one; ``stat`` and ranged reads ask for the plain representation
  (``Accept-Encoding: identity``), whole reads for a compressed one, so a server that keeps two
  files per key (nginx ``gzip_static on`` with ``NAME`` and ``NAME.gz``) has one generation per
  file. ``if_none_match`` on a ranged read is not sent: the bytes come back.
"""

from __future__ import annotations

import base64
import hashlib
import re
import struct
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping
from urllib.parse import quote, unquote

import urllib3

from ..errors import ConflictError, RequestError, UnsupportedEncodingError
from .base import Versioned
from .http_fetch import Reply
from .network import Cond, NetworkStore, Whole, ca_bundle, decode_content, environ_proxy, fast_gets, needs_decoding
from .streaming import REDO, FastGets, Later
from .retry import (RetryPolicy, SharedClient, Transient, check_span, is_retryable_status, parse_retry_after,
                    status_error)
from .retry import short as _short
from .url import StoreURL, scrub

if TYPE_CHECKING:
    from ..runtime import Runtime

#: every encoding compression.decompress understands (brotli and zstandard are dependencies)
ACCEPT_ENCODING = "gzip, br, zstd"
#: urllib3 follows redirects only through its own retry object; every other failure is left
#: to RetryPolicy (total=0 for connect/read/status means "raise at once")
_FOLLOW_REDIRECTS = urllib3.Retry(total=None, connect=0, read=0, status=0, other=0, redirect=10,
                                  raise_on_redirect=True, raise_on_status=False)
#: a body is read in pieces of this size, the time limit checked between them
_PIECE = 1 << 20
#: characters left as they are in a URL path (a "%" keeps escapes the user already wrote)
_SAFE = "/:@!$&'()*+,;=-._~%"
#: how a generation made from Last-Modified begins (an ETag begins with a quote or ``W/``)
_LM = "lm:"
#: a strong ETag that may be an MD5 (on a server known to make it one: see :func:`body_check`)
_MD5_ETAG = re.compile(r'^"([0-9a-fA-F]{32})"$')


def _b64(value: str) -> bytes | None:
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (ValueError, TypeError):
        return None


def _crc32c(data: bytes) -> bytes | None:
    """The big-endian crc32c of ``data``, or None when google-crc32c is not installed."""
    try:
        import google_crc32c
    except ImportError:
        return None
    return struct.pack(">I", google_crc32c.value(data))


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()


def body_check(headers: Mapping[str, str]) -> tuple[str, Callable[[bytes], bytes | None], bytes] | None:
    """What a whole answer's body can be checked against, from its (lower-case) headers:
    ``(name, digest function, expected digest)``, or None when the answer states no hash of
    the bytes as sent. In order: ``Content-MD5``; Google Cloud Storage's ``X-Goog-Hash`` when
    the bytes are sent as stored (not transcoded); Amazon S3's strong 32-hex-digit ``ETag`` of
    an object that is not KMS or customer-key encrypted."""
    value = headers.get("content-md5")
    if value:
        digest = _b64(value)
        if digest is not None and len(digest) == 16:
            return "Content-MD5", _md5, digest
    goog = headers.get("x-goog-hash")
    if goog:
        served = (headers.get("content-encoding") or "identity").strip().lower()
        stored = (headers.get("x-goog-stored-content-encoding") or "identity").strip().lower()
        if served == stored:  # else GCS decompressed it, and the hashes are of the stored bytes
            hashes = dict(p.strip().split("=", 1) for p in goog.split(",") if "=" in p)
            for name, fn, size in (("crc32c", _crc32c, 4), ("md5", _md5, 16)):
                digest = _b64(hashes.get(name, ""))
                if digest is not None and len(digest) == size and (name != "crc32c" or _crc32c(b"") is not None):
                    return f"X-Goog-Hash {name}", fn, digest
    etag = headers.get("etag") or ""
    if "amazons3" in (headers.get("server") or "").lower() and (m := _MD5_ETAG.match(etag.strip())):
        sse = (headers.get("x-amz-server-side-encryption") or "").lower()
        if not sse.startswith("aws:kms") and not headers.get("x-amz-server-side-encryption-customer-algorithm"):
            return "ETag (MD5)", _md5, bytes.fromhex(m.group(1))
    return None


def damage(headers: Mapping[str, str], body: bytes) -> str | None:
    """Why ``body`` is not the one the answer's headers describe (see :func:`body_check`), or
    None when it matches or nothing can be checked."""
    check = body_check(headers)
    if check is None:
        return None
    name, fn, expected = check
    got = fn(body)
    if got is None or got == expected:
        return None
    return f"the {len(body)} bytes received do not match the {name} the server sent (damaged on the way)"


def generation(headers: Mapping[str, str]) -> str | None:
    """The generation an answer's headers name (see the module docstring); ``headers`` looked
    up by lower-case name. None when there is neither an ETag nor a Last-Modified."""
    etag = headers.get("etag")
    if etag:
        return etag.strip()  # the common case: one lookup
    modified = headers.get("last-modified")
    if not modified:
        return None
    total = _full_length(headers)
    return f"{_LM}{modified.strip()}" if total is None else f"{_LM}{modified.strip()};n:{total}"


def _full_length(headers: Mapping[str, str]) -> int | None:
    """The whole object's stored length as an answer states it, or None."""
    crange = headers.get("content-range")
    if crange:
        total = crange.rpartition("/")[2].strip()
        return int(total) if total.isdigit() else None
    if headers.get("transfer-encoding"):
        return None
    length = (headers.get("content-length") or "").strip()
    return int(length) if length.isdigit() else None


def _split_lm(gen: str) -> tuple[str, str | None]:
    """``lm:<date>;n:<len>`` -> (date, len or None)."""
    date, sep, n = gen[len(_LM):].rpartition(";n:")
    return (date, n) if sep else (gen[len(_LM):], None)


def same_generation(answer: str | None, wanted: str, strong: bool = False) -> bool:
    """Whether an answer's generation is ``wanted``: ETags compare weakly (``W/`` ignored)
    unless ``strong``, when a weak one never matches; Last-Modified ones by date, and by length
    when both state it."""
    if answer is None:
        return False
    if answer.startswith(_LM) or wanted.startswith(_LM):
        if not (answer.startswith(_LM) and wanted.startswith(_LM)):
            return False
        (d1, n1), (d2, n2) = _split_lm(answer), _split_lm(wanted)
        return d1 == d2 and (n1 is None or n2 is None or n1 == n2)
    if strong:
        return answer == wanted and not answer.startswith("W/")
    return answer.removeprefix("W/") == wanted.removeprefix("W/")


def condition_headers(cond: Cond, ranged: bool = False) -> dict[str, str]:
    """The request headers for ``cond`` (a weak ``if_match`` is only checked on the answer:
    ``If-Match`` compares strongly, so a server would refuse it whatever the object)."""
    out: dict[str, str] = {}
    if cond.if_match is not None:
        if cond.if_match.startswith(_LM):
            out["If-Unmodified-Since"] = _split_lm(cond.if_match)[0]
        elif not cond.if_match.startswith("W/"):
            out["If-Match"] = cond.if_match
    if cond.if_none_match is not None and not ranged:
        if cond.if_none_match.startswith(_LM):
            out["If-Modified-Since"] = _split_lm(cond.if_none_match)[0]
        else:
            out["If-None-Match"] = cond.if_none_match
    return out


class _Response:
    """The few parts of a urllib3 response the store uses, named as in ``requests``."""

    def __init__(self, r: urllib3.BaseHTTPResponse):
        self._r = r
        self.status_code = r.status
        self.reason = r.reason or ""
        self.headers = r.headers  # case-insensitive

    def read(self, until: float | None = None) -> bytes:
        """The whole body; past ``until`` (``time.monotonic()``) a :class:`Transient`."""
        if until is None:
            data = self._r.read(decode_content=False)
        else:
            parts = []
            while True:
                part = self._r.read1(_PIECE, decode_content=False)  # what has come, not a full piece
                if not part:
                    break
                parts.append(part)
                if time.monotonic() > until:
                    got = sum(map(len, parts))
                    self._r.close()  # not drained: the rest may never come
                    self._closed = True
                    raise Transient(f"the answer came too slowly: {got} bytes before the time limit")
            data = parts[0] if len(parts) == 1 else b"".join(parts)
        self._read = True
        return data

    def close(self) -> None:
        if getattr(self, "_closed", False):
            return
        if not getattr(self, "_read", False):
            try:  # an unread body (an error answer, a HEAD) must go before the connection is reused
                self._r.drain_conn()
            except Exception:  # noqa: BLE001 - a broken connection is simply not reused
                self._r.close()
                return
        self._r.release_conn()


class _Pool:
    """A urllib3 connection pool (about half the CPU per request of a ``requests.Session``,
    which matters at hundreds of chunk requests a second) and the streaming gets for batches
    (none through a proxy: only the pool speaks to one)."""

    def __init__(self, parallel: int, secrets: dict[str, Any], base_url: str, retry: RetryPolicy,
                 userinfo: str | None = None, in_flight: int | None = None):
        headers = dict(secrets.get("headers") or {})
        auth = secrets.get("auth")
        if auth is None and userinfo:  # user:password@host in the URL
            auth = tuple(unquote(p) for p in userinfo.split(":", 1))
        if auth is not None:
            headers.update(urllib3.make_headers(basic_auth=":".join(auth)))
        self.headers = headers
        # a redirect to another origin goes without any credential (urllib3 alone would strip
        # Authorization and Cookie, and send X-Api-Key, Private-Token, ... on to the new host)
        secret = set(urllib3.Retry.DEFAULT_REMOVE_HEADERS_ON_REDIRECT) | set(headers)
        self.redirects = _FOLLOW_REDIRECTS.new(remove_headers_on_redirect=secret)
        bundle = ca_bundle()
        tls = {"ca_certs": bundle} if bundle else {}
        connect, read = retry.timeout
        kw = dict(num_pools=8, maxsize=parallel, retries=False, block=False,
                  timeout=urllib3.Timeout(connect=connect, read=read), **tls)
        proxy = environ_proxy(base_url)  # read once, for this host
        self.pm = urllib3.ProxyManager(proxy, **kw) if proxy else urllib3.PoolManager(**kw)
        self.fast = fast_gets(base_url, parallel, retry, headers, proxied=bool(proxy), in_flight=in_flight)

    def request(self, method: str, url: str, headers: dict[str, str],
                timeout: tuple[float, float] | None = None) -> _Response:
        kw = {} if timeout is None else {"timeout": urllib3.Timeout(connect=timeout[0], read=timeout[1])}
        sent = time.monotonic()
        r = self.pm.request(method, url, headers={**self.headers, **headers}, preload_content=False,
                            decode_content=False, retries=self.redirects, **kw)
        if r.status < 300:  # the server's latency as the fetcher will meet it (the info read's, say)
            self.fast.sample(time.monotonic() - sent)
        return _Response(r)

    def close(self) -> None:
        self.pm.clear()
        self.fast.close()


def _check_secrets(secrets: Any) -> dict[str, Any]:
    if secrets is None:
        return {}
    if not isinstance(secrets, dict) or not set(secrets) <= {"headers", "auth"}:
        raise RequestError(
            "secrets for http(s):// must be a dict with the keys 'headers' (a dict of request "
            "headers) and/or 'auth' ((user, password))"
        )
    return secrets


class HTTPStore(NetworkStore):
    """Objects under an HTTP(S) URL; read-only; generations from the server's ETag or
    Last-Modified (see the module docstring)."""

    default_parallel = 128  # the careful path's connections and the Volume's threads
    #: streamed requests in flight at most, unless ``parallel`` says otherwise: no thread each
    #: (see http_fetch.py), and fewer where the server's latency does not need them or their
    #: bodies would pass the fetcher's byte budget; 512 keep a full read of 512 chunks to one
    #: round trip at 100 ms per request
    default_in_flight = 512
    absent_status = frozenset({404, 410})

    def __init__(self, url: StoreURL, *, secrets: Any = None, parallel: int | None = None,
                 retry: RetryPolicy | None = None, _client: SharedClient[_Pool] | None = None):
        super().__init__(url, retry)
        if _client is None:
            sec, size, pol = _check_secrets(secrets), int(parallel or self.default_parallel), self.retry
            flight = int(parallel) if parallel else self.default_in_flight
            # the user info goes into an Authorization header, never into a URL a library parses
            # (or quotes in an error)
            base, userinfo = f"{url.scheme}://{url.host}/", url.userinfo
            _client = SharedClient(lambda: _Pool(size, sec, base, pol, userinfo, flight), lambda p: p.close())
        self._client = _client

    # -- capabilities: HTTP has no standard way to write, list or create conditionally ----------
    @property
    def supports_writes(self) -> bool:
        return False

    @property
    def supports_listing(self) -> bool:
        return False

    @property
    def supports_conditional_create(self) -> bool:
        return False

    # -- addresses -----------------------------------------------------------------------------
    def _key_path(self, key: str) -> str:
        return "/" + quote(self._name(key).strip("/"), safe=_SAFE)

    def _key_url(self, key: str) -> str:
        return f"{self.url.scheme}://{self.url.host}{self._key_path(key)}"

    def _public(self, key: str) -> str:
        """``key``'s address for messages: the URL's password shown as ``***``."""
        return self.url.key_url(key)

    def _safe(self, e: BaseException) -> str:
        """An exception's text, short, and without the URL's credentials should it quote them."""
        return scrub(_short(e), self.url.netloc)

    def __repr__(self) -> str:
        return f"HTTPStore({self._public('')!r})"

    # -- one request ---------------------------------------------------------------------------
    def _send(self, method: str, key: str, headers: dict[str, str], until: float | None = None) -> _Response:
        """Send a request; raise :class:`Transient` for what a retry may fix."""
        try:
            r = self._client.get().request(method, self._key_url(key), headers, self.retry.timeouts(until))
        except urllib3.exceptions.MaxRetryError as e:
            if e.reason is None or "redirect" in str(e.reason).lower():
                raise RequestError(f"GET {self._public(key)}: too many redirects") from None
            raise Transient(f"{type(e.reason).__name__}: {self._safe(e.reason)}") from None
        except (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError) as e:
            raise Transient(f"{type(e).__name__}: {self._safe(e)}") from None
        if is_retryable_status(r.status_code):
            r.close()
            raise Transient(r.reason or "server error", r.status_code, parse_retry_after(r.headers.get("Retry-After")))
        return r

    @staticmethod
    def _body(r: _Response, until: float | None = None) -> bytes:
        """The body exactly as sent (no decoding); a short or broken body is retried. It is
        read in pieces so that a server trickling bytes cannot hold it past ``until``."""
        try:
            return r.read(until)
        except (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError) as e:
            raise Transient(f"{type(e).__name__} while reading the body: {_short(e)}") from None
        finally:
            r.close()

    # -- NetworkStore --------------------------------------------------------------------------
    _generation = staticmethod(generation)  # per streamed chunk: keep it one call

    def _conflict(self, what: str, wanted: str, found: str | None) -> ConflictError:
        now = "names no generation" if found is None else f"is at generation {found}"
        return ConflictError(f"{what}: the object {now}, not {wanted}; it changed (read it again)")

    def _read_whole(self, key: str, what: str, until: float | None, cond: Cond) -> Whole | None:
        headers = {"Accept-Encoding": ACCEPT_ENCODING}
        if cond.if_match is not None or cond.if_none_match is not None:
            headers.update(condition_headers(cond))
        r = self._send("GET", key, headers, until)
        status = r.status_code
        if status in (404, 410):
            r.close()
            return None
        if status == 412 and cond.if_match is not None:  # never retried: it is an answer
            r.close()
            raise self._conflict(what, cond.if_match, self._generation(r.headers))
        if status == 304 and cond.if_none_match is not None:
            r.close()
            # a server that honours If-None-Match but not If-Match proves nothing about the latter
            if cond.if_match is not None and not same_generation(cond.if_none_match, cond.if_match):
                raise self._conflict(what, cond.if_match, cond.if_none_match)
            return None, None, cond.if_none_match
        if not 200 <= status < 300 or status == 206:
            r.close()
            raise status_error(what, status, r.reason)
        gen = self._generation(r.headers)
        # the answer itself is checked: a server may ignore the conditions
        if cond.if_match is not None:
            if not same_generation(gen, cond.if_match):
                r.close()
                raise self._conflict(what, cond.if_match, gen)
            gen = cond.if_match
        if cond.if_none_match is not None and same_generation(gen, cond.if_none_match):
            r.close()
            return None, None, cond.if_none_match
        body = self._body(r, until)
        bad = damage(r.headers, body)  # urllib3 looks headers up case-insensitively
        if bad is not None:
            raise Transient(bad)  # another try, then a StoreError naming the object
        return body, r.headers.get("Content-Encoding"), gen

    def _read_range(self, key: str, start: int, end: int, what: str, until: float | None,
                    cond: Cond) -> tuple[bytes, str | None] | None:
        wanted = cond.if_match
        if wanted is not None and wanted.startswith("W/"):
            raise UnsupportedEncodingError(
                f"{what}: a weak ETag ({wanted}) names content, not bytes, so a byte range cannot be held to it; "
                "a ranged read under if_match needs a strong ETag or a Last-Modified generation (stat() gives "
                "one when the server has it)")
        headers = {"Range": f"bytes={start}-{end - 1}", "Accept-Encoding": "identity",
                   **condition_headers(cond, ranged=True)}
        r = self._send("GET", key, headers, until)
        status = r.status_code
        if status in (404, 410):
            r.close()
            return None
        gen = self._generation(r.headers)
        if wanted is not None and status in (200, 206, 412, 416):
            if status == 412 or not same_generation(gen, wanted, strong=True):
                r.close()
                raise self._conflict(what, wanted, None if status == 412 else gen)
            gen = wanted  # the same generation, perhaps stated more fully
        if status == 416:  # the object ends before `start`: like slicing past the end
            r.close()
            return b"", gen
        if status == 200:  # Range ignored: we got everything (checked as a whole read is), keep our part
            body = self._body(r, until)
            bad = damage(r.headers, body)
            if bad is not None:
                raise Transient(bad)
            return body[start:end], gen
        if status != 206:
            r.close()
            raise status_error(what, status, r.reason)
        body = self._body(r, until)
        check_span(body, r.headers.get("Content-Range"), start)  # never bytes from the wrong place
        return body[: end - start], gen

    def _streaming(self) -> FastGets:
        return self._client.get().fast

    def _finish(self, key: str, answer: Reply) -> Versioned | None | object:
        """A streamed answer as :meth:`NetworkStore._finish` makes it, its body first checked
        (on a worker: an MD5 takes a while) when the headers state a hash; damaged: REDO."""
        if answer.status != 200 or body_check(answer.headers) is None:
            return super()._finish(key, answer)
        data, headers = bytes(answer.body), answer.headers  # the buffer is reused: keep a copy

        def checked() -> Versioned | object:
            if damage(headers, data) is not None:
                return REDO  # read again the careful way: retried, then a StoreError
            value, gen = headers.get("content-encoding"), self._generation(headers)
            return Versioned(decode_content(data, value, self._public(key), self.decoded_limit)
                             if needs_decoding(value) else data, gen)

        return Later(checked)

    def _stream(self, fast: FastGets, keys: list[str], expected_bytes: int | None,
                runtime: "Runtime | None" = None, unless: Mapping[str, str] | None = None
                ) -> Iterator[tuple[str, Versioned | None]]:
        """Whole objects with their generations, ``parallel`` requests in flight from the calling
        thread (see ``http_fetch.py``); a failure, a 5xx, a redirect or chunked framing is done
        again by ``read`` on a few threads, within what is left of the key's time. With
        ``unless``, each request is conditional on its key's generation (a 304: unchanged)."""
        headers = {"Accept-Encoding": ACCEPT_ENCODING}
        if unless:
            def request(k: str) -> tuple[str, dict[str, str]]:
                return self._key_path(k), {**headers, **condition_headers(Cond(None, unless[k]))}
        else:
            def request(k: str) -> tuple[str, dict[str, str]]:
                return self._key_path(k), headers
        cond = (lambda k: Cond(None, unless.get(k))) if unless else (lambda k: Cond())
        return fast.stream(keys, request, self._unless(self._finish, unless), self._redo(unless), expected_bytes,
                           redo_until=lambda k, until: self._read(k, None, until, cond(k)), describe=self._public,
                           runtime=runtime)

    # -- Store ---------------------------------------------------------------------------------
    def exists(self, key: str) -> bool:
        what = f"HEAD {self._public(key)}"

        def head() -> bool:
            r = self._send("HEAD", key, {"Accept-Encoding": "identity"})
            r.close()
            if r.status_code in (404, 410):
                return False
            if r.status_code in (405, 501):  # no HEAD here: a one-byte GET answers the question
                return self.get(key, (0, 1)) is not None
            if r.status_code >= 400:
                raise status_error(what, r.status_code, r.reason)
            return True

        return self.retry.call(head, what)

    def stat(self, key: str) -> str | None:
        """The generation a ``HEAD`` names (of the plain representation, as ranged reads see
        it), or None if absent; :class:`UnsupportedEncodingError` when the server sends neither
        an ETag nor a Last-Modified (it has no generations to give)."""
        what = f"HEAD {self._public(key)}"

        def head() -> tuple[bool, str | None]:
            r = self._send("HEAD", key, {"Accept-Encoding": "identity"})
            r.close()
            if r.status_code in (404, 410):
                return False, None
            if r.status_code in (405, 501):  # no HEAD here: a one-byte GET says it
                got = self.read(key, (0, 0))
                return got is not None, None if got is None else got.generation
            if r.status_code >= 400:
                raise status_error(what, r.status_code, r.reason)
            return True, self._generation(r.headers)

        found, gen = self.retry.call(head, what)
        if not found:
            return None
        if gen is None:
            raise UnsupportedEncodingError(
                f"{what}: the server sends neither an ETag nor a Last-Modified, so there is no generation to give")
        return gen

    def _read_only(self, op: str) -> UnsupportedEncodingError:
        return UnsupportedEncodingError(
            f"cannot {op} {self._public('')}: http(s):// stores are read-only (HTTP has no standard "
            "way to write, delete or list objects); write to gs://, s3:// or a local path and serve that"
        )

    def put(self, key: str, data: bytes, *, content_type: str | None = None, content_encoding: str | None = None,
            if_generation: str | None = None) -> str | None:
        raise self._read_only(f"write {key!r} to")

    def delete(self, key: str) -> None:
        raise self._read_only(f"delete {key!r} from")

    def list(self, prefix: str = "") -> Iterator[str]:
        raise self._read_only("list the keys of")

    def _with_url(self, url: StoreURL) -> "HTTPStore":
        return HTTPStore(url, retry=self.retry, _client=self._client)

    def close(self) -> None:
        self._client.close()


__all__ = ["HTTPStore", "condition_headers", "generation", "same_generation"]
