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
  or reprs, nor does the ``user:password@`` part of a URL.
- Writes: HTTP has no standard way to write, delete or list objects, so ``put``, ``delete`` and
  ``list`` raise :class:`UnsupportedEncodingError` saying so. Write to gs://, s3:// or a local
  directory and serve that.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Iterator
from urllib.parse import quote, unquote

import urllib3

from ..errors import RequestError, UnsupportedEncodingError
from .network import NetworkStore, ca_bundle, environ_proxy, fast_gets
from .streaming import FastGets
from .retry import (RetryPolicy, SharedClient, Transient, check_span, is_retryable_status, parse_retry_after,
                    status_error)
from .retry import short as _short
from .url import StoreURL

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

    def __init__(self, parallel: int, secrets: dict[str, Any], base_url: str, retry: RetryPolicy):
        headers = dict(secrets.get("headers") or {})
        auth = secrets.get("auth")
        netloc = urllib3.util.parse_url(base_url)
        if auth is None and netloc.auth:  # user:password@host in the URL
            auth = tuple(unquote(p) for p in netloc.auth.split(":", 1))
        if auth is not None:
            headers.update(urllib3.make_headers(basic_auth=":".join(auth)))
        self.headers = headers
        bundle = ca_bundle()
        tls = {"ca_certs": bundle} if bundle else {}
        connect, read = retry.timeout
        kw = dict(num_pools=8, maxsize=parallel, retries=False, block=False,
                  timeout=urllib3.Timeout(connect=connect, read=read), **tls)
        proxy = environ_proxy(base_url)  # read once, for this host
        self.pm = urllib3.ProxyManager(proxy, **kw) if proxy else urllib3.PoolManager(**kw)
        self.fast = fast_gets(base_url, parallel, retry, headers, proxied=bool(proxy))

    def request(self, method: str, url: str, headers: dict[str, str],
                timeout: tuple[float, float] | None = None) -> _Response:
        kw = {} if timeout is None else {"timeout": urllib3.Timeout(connect=timeout[0], read=timeout[1])}
        r = self.pm.request(method, url, headers={**self.headers, **headers}, preload_content=False,
                            decode_content=False, retries=_FOLLOW_REDIRECTS, **kw)
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
    """Objects under an HTTP(S) URL; read-only (see the module docstring)."""

    default_parallel = 128  # no thread each (see http_fetch.py), and capped by bytes in flight
    absent_status = frozenset({404, 410})

    def __init__(self, url: StoreURL, *, secrets: Any = None, parallel: int | None = None,
                 retry: RetryPolicy | None = None, _client: SharedClient[_Pool] | None = None):
        super().__init__(url, retry)
        if _client is None:
            sec, size, pol = _check_secrets(secrets), int(parallel or self.default_parallel), self.retry
            base = f"{url.scheme}://{url.netloc}/"
            _client = SharedClient(lambda: _Pool(size, sec, base, pol), lambda p: p.close())
        self._client = _client
        # the user:password@ part of a URL is for requests, never for messages
        self._public_netloc = url.netloc.rpartition("@")[2]

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
        return f"{self.url.scheme}://{self.url.netloc}{self._key_path(key)}"

    def _public(self, key: str) -> str:
        path = f"{self.url.path}/{key}".strip("/") if self.url.path else key
        return f"{self.url.scheme}://{self._public_netloc}/{path}"

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
            raise Transient(f"{type(e.reason).__name__}: {_short(e.reason)}") from None
        except (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError) as e:
            raise Transient(f"{type(e).__name__}: {_short(e)}") from None
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
    def _read_whole(self, key: str, what: str, until: float | None) -> tuple[bytes, str | None] | None:
        r = self._send("GET", key, {"Accept-Encoding": ACCEPT_ENCODING}, until)
        if r.status_code in (404, 410):
            r.close()
            return None
        if not 200 <= r.status_code < 300 or r.status_code == 206:
            r.close()
            raise status_error(what, r.status_code, r.reason)
        return self._body(r, until), r.headers.get("Content-Encoding")

    def _read_range(self, key: str, start: int, end: int, what: str, until: float | None) -> bytes | None:
        r = self._send("GET", key, {"Range": f"bytes={start}-{end - 1}", "Accept-Encoding": "identity"}, until)
        if r.status_code in (404, 410):
            r.close()
            return None
        if r.status_code == 416:  # the object ends before `start`: like slicing past the end
            r.close()
            return b""
        if r.status_code == 200:  # Range ignored: we got everything, keep our part
            return self._body(r, until)[start:end]
        if r.status_code != 206:
            r.close()
            raise status_error(what, r.status_code, r.reason)
        body = self._body(r, until)
        check_span(body, r.headers.get("Content-Range"), start)  # never bytes from the wrong place
        return body[: end - start]

    def _streaming(self) -> FastGets:
        return self._client.get().fast

    def _stream(self, fast: FastGets, keys: list[str], expected_bytes: int | None,
                runtime: "Runtime | None" = None) -> Iterator[tuple[str, bytes | None]]:
        """Whole objects, ``parallel`` requests in flight from the calling thread (see
        ``http_fetch.py``); a failure, a 5xx, a redirect or chunked framing is done again by
        ``get`` on a few threads, within what is left of the key's time."""
        headers = {"Accept-Encoding": ACCEPT_ENCODING}
        return fast.stream(keys, lambda k: (self._key_path(k), headers), self._finish, self.get, expected_bytes,
                           redo_until=lambda k, until: self._get(k, None, until), describe=self._public,
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

    def _read_only(self, op: str) -> UnsupportedEncodingError:
        return UnsupportedEncodingError(
            f"cannot {op} {self._public('')}: http(s):// stores are read-only (HTTP has no standard "
            "way to write, delete or list objects); write to gs://, s3:// or a local path and serve that"
        )

    def put(self, key: str, data: bytes, *, content_type: str | None = None, content_encoding: str | None = None) -> None:
        raise self._read_only(f"write {key!r} to")

    def delete(self, key: str) -> None:
        raise self._read_only(f"delete {key!r} from")

    def list(self, prefix: str = "") -> Iterator[str]:
        raise self._read_only("list the keys of")

    def _with_url(self, url: StoreURL) -> "HTTPStore":
        return HTTPStore(url, retry=self.retry, _client=self._client)

    def close(self) -> None:
        self._client.close()


__all__ = ["HTTPStore"]
