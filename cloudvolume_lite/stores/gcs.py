"""``gs://bucket/prefix`` on google-cloud-storage.

Credentials (``secrets``), first match wins:

- a path (str) to a service-account (or ``authorized_user``) JSON key file, or that JSON as a
  dict (it has a ``"type"`` key);
- a dict of options: ``{"endpoint": "http://127.0.0.1:4443"}`` for an emulator (then anonymous
  unless ``"credentials"`` is given), ``"credentials"`` (path or dict as above), ``"project"``,
  ``"anonymous": True``, ``"user_project"`` (requester pays: the project billed, sent as
  ``userProject=`` with every request; ``"requester_pays": "my-project"`` is an alias, and
  ``"requester_pays": True`` bills ``"project"``);
- nothing: ``STORAGE_EMULATOR_HOST`` if set (emulator, anonymous), else Application Default
  Credentials (``GOOGLE_APPLICATION_CREDENTIALS`` first: a file it names that is missing or
  unusable is an error), else CloudVolume's ``[bucket-]google-secret.json``
  (:mod:`.credentials`), else anonymous access (public buckets).

Reads: whole objects are downloaded as stored (``Accept-Encoding: gzip``, so GCS does not
transcode) with the crc32c/md5 in ``X-Goog-Hash`` checked, then the object's
``Content-Encoding`` is undone here. Batches of whole objects (``iter_get``, which Volume reads
use) go as JSON-API media downloads through the one-thread fetcher of ``http_fetch.py``, with
the SDK's credentials as a bearer token and the same hash check (its TLS trusts the bundle
``network.CA_BUNDLE_VARS`` names); whatever it cannot finish is done again through the SDK.
Ranged reads also send ``Accept-Encoding: gzip``: on GCS that header is what turns
decompressive transcoding *off* (with ``identity`` GCS would decompress and ignore the Range),
so a range is always a range of the stored bytes. Writes set
``Content-Encoding`` metadata. The SDK's retries are off; :class:`~.retry.RetryPolicy` applies.

Generations are GCS object generations as decimal strings (``x-goog-generation`` on streamed
answers). Conditional reads send ``ifGenerationMatch``/``ifGenerationNotMatch`` (304: unchanged,
412: :class:`ConflictError`) and also check the generation the answer names, since
fake-gcs-server ignores those parameters on downloads; conditional writes send
``ifGenerationMatch`` (0: only if absent), a 412 being a ConflictError, never retried.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, TypeVar
from urllib.parse import quote

import google.auth
import google.auth.exceptions
import google.auth.transport.requests
import requests
import urllib3
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.auth.transport.requests import AuthorizedSession
from google.cloud import storage
from google.cloud.storage.exceptions import DataCorruption, InvalidResponse
import google_crc32c
from google.oauth2 import service_account
from google.oauth2.credentials import Credentials as UserCredentials
from requests.adapters import HTTPAdapter

from .. import compression
from ..errors import ConflictError, RequestError, StoreError
from . import credentials
from .base import ABSENT, Versioned
from .http_fetch import Reply
from .network import RAISE, Cond, NetworkStore, Whole, fast_gets
from .retry import RetryPolicy, SharedClient, Transient, is_retryable_status, status_error
from .streaming import FastGets
from .retry import short as _short
from .url import StoreURL

if TYPE_CHECKING:
    from ..runtime import Runtime

T = TypeVar("T")
_SCOPES = ("https://www.googleapis.com/auth/devstorage.read_write",)
_OPTION_KEYS = frozenset({"endpoint", "credentials", "project", "anonymous", "user_project", "requester_pays"})


def _load_credentials(source: str | dict) -> tuple[Any, str | None]:
    """Credentials and project from a key JSON (path or dict) of a type we know how to load."""
    if isinstance(source, dict):
        info = source
    else:
        with open(os.path.expanduser(source), encoding="utf-8") as f:
            info = json.load(f)
    kind = info.get("type")
    if kind == "service_account":
        return service_account.Credentials.from_service_account_info(info, scopes=_SCOPES), info.get("project_id")
    if kind == "authorized_user":
        return UserCredentials.from_authorized_user_info(info, scopes=_SCOPES), info.get("quota_project_id")
    raise ValueError(f"credentials of type {kind!r} are not supported; use a service_account or "
                     "authorized_user JSON, or Application Default Credentials (secrets=None)")


def _make_client(secrets: Any, parallel: int, url: StoreURL) -> storage.Client:
    try:
        return _build_client(secrets, parallel, url.netloc)
    except StoreError as e:  # a credentials file that cannot be used: it names the file
        raise StoreError(f"cannot set up the GCS client for {url}: {e}") from None
    except (google.auth.exceptions.GoogleAuthError, OSError, ValueError) as e:
        # an unreadable key file, a bad endpoint: retrying will not help (no secrets in `e`)
        raise StoreError(f"cannot set up the GCS client for {url}: {type(e).__name__}: {_auth_reason(e)}") from None


def _auth_reason(e: BaseException) -> str:
    """google-auth's message, and its cause's, without the argument tuple it would print."""
    text = str(e.args[0]) if e.args and isinstance(e.args[0], str) else str(e)
    cause = e.args[1] if len(e.args) > 1 and isinstance(e.args[1], BaseException) else e.__cause__
    return _short(f"{text} ({type(cause).__name__}: {cause})" if cause is not None else text)


def _default_credentials(bucket: str) -> tuple[Any, str | None]:
    """Nothing explicit: GOOGLE_APPLICATION_CREDENTIALS / Application Default Credentials,
    then CloudVolume's secret files, then nobody (``None``: public buckets only)."""
    named = credentials.google_application_credentials()  # a StoreError if it names a bad file
    try:
        creds, project = google.auth.default(scopes=_SCOPES)
        return creds, project
    except google.auth.exceptions.DefaultCredentialsError as e:
        if named is not None:  # google-auth found the file but could not use it
            raise StoreError(f"the credentials file {named.path} (GOOGLE_APPLICATION_CREDENTIALS) cannot be "
                             f"used: {_auth_reason(e)}; fix the file or unset the variable") from None
        adc = credentials.gcloud_adc_file()
        if adc is not None:  # there, but google-auth could not use it
            raise StoreError(f"the application-default credentials file {adc} cannot be used: {_auth_reason(e)}; "
                             "run `gcloud auth application-default login` again or remove the file") from None
    found = credentials.google_secret(bucket)
    if found is None:
        return None, None
    try:
        return _load_credentials(dict(found.data))
    except (ValueError, google.auth.exceptions.GoogleAuthError) as e:
        raise StoreError(f"the CloudVolume secret {found.path} is not usable credentials: "
                         f"{_auth_reason(e)}; replace it with a service-account key JSON or remove it") from None


def _build_client(secrets: Any, parallel: int, bucket: str) -> storage.Client:
    if isinstance(secrets, (str, os.PathLike)) or (isinstance(secrets, dict) and "type" in secrets):
        secrets = {"credentials": os.fspath(secrets) if not isinstance(secrets, dict) else secrets}
    opts: dict[str, Any] = dict(secrets or {})
    endpoint = opts.get("endpoint") or os.environ.get("STORAGE_EMULATOR_HOST")
    if endpoint and "://" not in endpoint:
        endpoint = "http://" + endpoint
    creds, project = None, opts.get("project")
    if opts.get("credentials") is not None:
        creds, found = _load_credentials(opts["credentials"])
        project = project or found
    elif not endpoint and not opts.get("anonymous"):  # an emulator wants nobody
        creds, found = _default_credentials(bucket)
        project = project or found
    # Always the SDK's own session type: google-cloud-core >= 2.5 asks it about mTLS. Anonymous:
    # nothing to refresh, so a 401/403 is an answer, not a reason to refresh
    if creds is None:
        session = AuthorizedSession(AnonymousCredentials(), refresh_status_codes=())
    else:
        session = AuthorizedSession(creds)
    adapter = HTTPAdapter(pool_connections=8, pool_maxsize=parallel, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    client = storage.Client(
        project=project or "anonymous",  # object reads and listings do not use the project
        credentials=creds or AnonymousCredentials(),
        _http=session,
        client_options={"api_endpoint": endpoint} if endpoint else None,
    )
    # Recent releases fetch each bucket's metadata on a background thread, for tracing labels:
    # an extra request per bucket, which read-only and anonymous users may not be allowed
    if getattr(client, "_bucket_metadata_cache", None) is not None:
        client._bucket_metadata_cache = None
    return client


def _billed_project(secrets: Any) -> str | None:
    """Who pays for a requester-pays bucket: ``user_project``, else ``requester_pays`` (the
    project, or True with ``project`` given); None: the bucket's owner pays."""
    if not isinstance(secrets, dict) or "type" in secrets:
        return None
    project, pays = secrets.get("user_project"), secrets.get("requester_pays")
    if pays is True:
        pays = secrets.get("project")
        if not isinstance(pays, str) or not pays:
            raise RequestError("secrets for gs://: requester_pays=True needs the project to bill; give "
                               "{'user_project': 'my-project'} (or 'requester_pays': 'my-project')")
    for value in (project, pays):
        if value not in (None, False) and (not isinstance(value, str) or not value):
            raise RequestError("secrets for gs://: 'user_project' (or its alias 'requester_pays') is the id of the "
                               f"project billed for a requester-pays bucket, a string; got a {type(value).__name__}")
    return project or pays or None


def _check_secrets(secrets: Any) -> Any:
    if secrets is None or isinstance(secrets, (str, os.PathLike)):
        return secrets
    if isinstance(secrets, dict) and ("type" in secrets or set(secrets) <= _OPTION_KEYS):
        return secrets
    raise RequestError(
        "secrets for gs:// must be a path to a credentials JSON file, that JSON as a dict, or a dict "
        f"with the keys {sorted(_OPTION_KEYS)}"
    )


# The SDK keeps what the fetcher needs on private attributes; each is read in one helper below,
# and a release that moves it turns streaming off (the SDK path still works) rather than break.

def _api_base(client: storage.Client) -> str | None:
    """The JSON API's base URL (an emulator's, or Google's); None if this SDK hides it."""
    base = getattr(client, "api_endpoint", None)  # public from google-cloud-storage 2.x on
    if not isinstance(base, str):
        base = getattr(getattr(client, "_connection", None), "API_BASE_URL", None)
    return base if isinstance(base, str) and base else None


def _bearer_headers(client: storage.Client) -> dict[str, str] | None:
    """The headers that authorize a request as the client's credentials (a token refreshed
    when near expiry), ``{}`` when anonymous; None when that cannot be done here (this SDK's
    ``_credentials``/``_http`` are not there, or the refresh failed), so the SDK should do it."""
    creds, session, base = getattr(client, "_credentials", None), getattr(client, "_http", None), _api_base(client)
    if creds is None or session is None or base is None:
        return None
    if isinstance(creds, AnonymousCredentials):
        return {}
    headers: dict[str, str] = {}
    try:
        creds.before_request(google.auth.transport.requests.Request(session), "GET", base, headers)
    except (google.auth.exceptions.GoogleAuthError, requests.RequestException):
        return None  # the SDK path reports what is wrong with the credentials
    return headers


def _close(client: storage.Client) -> None:
    """Release the client's connections (``Client.close`` in recent releases)."""
    close = getattr(client, "close", None)
    if close is not None:
        close()
    else:
        client._http.close()


def _fast_gets(client: storage.Client, parallel: int, retry: RetryPolicy) -> FastGets:
    """Streaming gets for the client's endpoint (none behind a proxy: the SDK's session knows
    proxies, the fetcher does not)."""
    base = _api_base(client)
    return FastGets(None, parallel) if base is None else fast_gets(base, parallel, retry)


def _hash_ok(body: bytes | bytearray, header: str) -> bool:
    """Whether ``body`` matches the ``X-Goog-Hash`` header (crc32c preferred: with the C
    extension it is much cheaper than md5). No hash given: nothing to check."""
    hashes = dict(part.strip().split("=", 1) for part in header.split(",") if "=" in part)
    if "crc32c" in hashes and google_crc32c.implementation == "c":
        return base64.b64encode(struct.pack(">I", google_crc32c.value(bytes(body)))).decode() == hashes["crc32c"]
    if "md5" in hashes:
        return base64.b64encode(hashlib.md5(body).digest()).decode() == hashes["md5"]
    if "crc32c" in hashes:
        return base64.b64encode(struct.pack(">I", google_crc32c.value(bytes(body)))).decode() == hashes["crc32c"]
    return True


def _number(generation: str) -> int | None:
    """A generation string as GCS's number; None if it is not one (so no object is at it)."""
    return int(generation) if generation.isdigit() else None


def _generation_of(blob: storage.Blob) -> str | None:
    gen = blob.generation
    return None if gen is None else str(gen)


def _changed(what: str, generation: str) -> ConflictError:
    return ConflictError(f"{what}: the object is no longer at generation {generation}: someone else changed it "
                         "(read it again)")


class GCSStore(NetworkStore):
    """Objects in a GCS bucket under a prefix."""

    default_parallel = 32

    def __init__(self, url: StoreURL, *, secrets: Any = None, parallel: int | None = None,
                 retry: RetryPolicy | None = None, _client: SharedClient[storage.Client] | None = None,
                 _fast: SharedClient[FastGets] | None = None, _user_project: str | None = None):
        super().__init__(url, retry)
        size, pol = int(parallel or self.default_parallel), self.retry
        if _client is None:
            sec = _check_secrets(secrets)
            _user_project = _billed_project(sec)
            _client = SharedClient(lambda: _make_client(sec, size, url), _close)
        self._client = _client
        #: the project billed for a requester-pays bucket: userProject= on every request
        self.user_project = _user_project
        if _fast is None:
            _fast = SharedClient(lambda: _fast_gets(_client.get(), size, pol), lambda f: f.close())
        self._fast = _fast

    def _bucket(self) -> storage.Bucket:
        # with user_project, the SDK sends userProject= with every request on the bucket and its blobs
        return self._client.get().bucket(self.url.netloc, user_project=self.user_project)

    def _blob(self, key: str) -> storage.Blob:
        return self._bucket().blob(self._name(key))

    def _call(self, fn: Callable[[], T], what: str, until: float | None = None, absent: Any = RAISE) -> T:
        """``fn()`` with the SDK's errors sorted into absent / retry / fail, under the retry policy."""

        def attempt() -> T:
            try:
                return fn()
            except gexc.NotFound:
                if absent is RAISE:
                    raise status_error(what, 404, "Not Found") from None
                return absent
            except gexc.GoogleAPICallError as e:
                code = int(e.code or 0)
                if is_retryable_status(code):
                    raise Transient(_short(e), code) from None
                raise status_error(what, code, _short(e)) from None
            except DataCorruption as e:  # the checksum did not match: a damaged transfer
                raise Transient(f"checksum mismatch: {_short(e)}") from None
            except InvalidResponse as e:
                code = int(getattr(e.response, "status_code", 0) or 0)
                if code == 404 and absent is not RAISE:
                    return absent
                if is_retryable_status(code):
                    raise Transient(_short(e), code) from None
                raise status_error(what, code, _short(e)) from None
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                    urllib3.exceptions.HTTPError, google.auth.exceptions.TransportError, ConnectionError,
                    TimeoutError) as e:  # urllib3's IncompleteRead can escape the SDK unwrapped
                raise Transient(f"{type(e).__name__}: {_short(e)}") from None

        return self.retry.call(attempt, what, until)

    def _read_whole(self, key: str, what: str, until: float | None, cond: Cond) -> Whole:
        blob = self._blob(key)
        kw: dict[str, int] = {}
        if cond.if_match is not None:
            if _number(cond.if_match) is None:
                raise _changed(what, cond.if_match)
            kw["if_generation_match"] = _number(cond.if_match)
        if cond.if_none_match is not None and _number(cond.if_none_match) is not None:
            kw["if_generation_not_match"] = _number(cond.if_none_match)
        try:
            data = blob.download_as_bytes(raw_download=True, checksum="auto", timeout=self.retry.timeout, retry=None,
                                          **kw)
        except gexc.NotModified:
            return None, None, cond.if_none_match
        except gexc.PreconditionFailed:
            raise _changed(what, str(cond.if_match)) from None
        gen = _generation_of(blob)  # the SDK reads it from the answer's x-goog-generation
        # fake-gcs-server ignores the conditions on downloads: the answer's generation decides
        if cond.if_match is not None and gen != cond.if_match:
            raise _changed(what, cond.if_match)
        if gen is not None and gen == cond.if_none_match:
            return None, None, gen
        return data, blob.content_encoding, gen

    def _read_range(self, key: str, start: int, end: int, what: str, until: float | None,
                    cond: Cond) -> tuple[bytes, str | None]:
        blob = self._blob(key)
        kw: dict[str, int] = {}
        if cond.if_match is not None:
            if _number(cond.if_match) is None:
                raise _changed(what, cond.if_match)
            kw["if_generation_match"] = _number(cond.if_match)
        try:  # raw_download=True sends Accept-Encoding: gzip: stored bytes, Range honoured
            data = blob.download_as_bytes(start=start, end=end - 1, raw_download=True, checksum=None,
                                          timeout=self.retry.timeout, retry=None, **kw)
        except gexc.RequestRangeNotSatisfiable:
            # the object ends before `start`: like slicing past the end; the answer named no
            # generation, so ask (absent now: NotFound, "absent" as for the GET)
            gen = self._head(key)
            if gen is None:
                raise gexc.NotFound(what) from None
            return b"", gen
        except gexc.PreconditionFailed:
            raise _changed(what, str(cond.if_match)) from None
        return data, _generation_of(blob)  # NetworkStore compares it with cond.if_match

    def _head(self, key: str) -> str | None:
        """One metadata GET: the object's generation, or None if absent."""
        blob = self._bucket().get_blob(self._name(key), timeout=self.retry.timeout, retry=None)
        return None if blob is None else _generation_of(blob)

    def stat(self, key: str) -> str | None:
        """The object's generation (one metadata request), or None if it is absent."""
        return self._call(lambda: self._head(key), f"HEAD {self.url.key_url(key)}", absent=None)

    def _generation(self, headers: Mapping[str, str]) -> str | None:
        return headers.get("x-goog-generation") or None

    def _streaming(self) -> FastGets:
        return self._fast.get()

    def _stream(self, fast: FastGets, keys: list[str], expected_bytes: int | None,
                runtime: "Runtime | None" = None, unless: Mapping[str, str] | None = None
                ) -> Iterator[tuple[str, Versioned | None]] | None:
        """Whole objects as JSON-API media downloads with the SDK's credentials as a bearer
        token; a failure, a 5xx or a hash mismatch is done again by ``read`` through the SDK."""
        client = self._client.get()
        auth, base = _bearer_headers(client), _api_base(client)  # a fresh token for this batch
        if auth is None or base is None:
            return None
        prefix = f"{(urllib3.util.parse_url(base).path or '').rstrip('/')}/download/storage/v1/b/"
        prefix += quote(self.url.netloc, safe="") + "/o/"
        pays = f"&userProject={quote(self.user_project, safe='')}" if self.user_project else ""
        # Accept-Encoding: gzip keeps GCS from transcoding: the stored bytes, which the hash covers
        headers = {"Accept-Encoding": "gzip", **auth}

        def request(key: str) -> tuple[str, dict[str, str]]:
            # a check of a cached copy: GCS answers 304 when the generation is still that one
            cond = f"&ifGenerationNotMatch={quote(unless[key], safe='')}" if unless else ""
            return f"{prefix}{quote(self._name(key), safe='')}?alt=media{pays}{cond}", headers

        return fast.stream(keys, request, self._unless(self._finish, unless), self._redo(unless), expected_bytes,
                           describe=self.url.key_url, runtime=runtime)

    def _intact(self, answer: Reply) -> bool:
        # an answer that names no generation cannot be reported as a Versioned: the SDK path asks
        return "x-goog-generation" in answer.headers and _hash_ok(answer.body, answer.headers.get("x-goog-hash", ""))

    @property
    def supports_conditional_writes(self) -> bool:
        return True

    def put(self, key: str, data: bytes, *, content_type: str | None = None, content_encoding: str | None = None,
            if_generation: str | None = None) -> str | None:
        """An upload (``ifGenerationMatch`` under ``if_generation``, 0 for ABSENT); the new generation."""
        blob = self._blob(key)
        kw: dict[str, int] = {}
        blob.content_encoding = compression.normalize(content_encoding)
        what = f"PUT {self.url.key_url(key)}"
        if if_generation is not None:
            number = 0 if if_generation == ABSENT else _number(if_generation)
            if number is None or (number == 0 and if_generation != ABSENT):
                raise _changed(what, if_generation)  # no object is ever at that generation
            kw["if_generation_match"] = number

        def upload() -> str | None:
            try:
                blob.upload_from_string(bytes(data), content_type=content_type or "application/octet-stream",
                                        timeout=self.retry.timeout, retry=None, checksum="auto", **kw)
            except gexc.PreconditionFailed:
                # not retried: another writer's change is an answer. (After a retried try, it may
                # be our own first try that landed; callers who write unique bytes can tell.)
                if if_generation == ABSENT:
                    raise ConflictError(f"{what} (if absent): the object exists: someone else created it") from None
                raise _changed(what, str(if_generation)) from None
            return _generation_of(blob)

        return self._call(upload, what)

    def delete(self, key: str) -> None:
        blob = self._blob(key)
        self._call(lambda: blob.delete(timeout=self.retry.timeout, retry=None), f"DELETE {self.url.key_url(key)}",
                   absent=None)

    def exists(self, key: str) -> bool:
        blob = self._blob(key)
        return self._call(lambda: blob.exists(timeout=self.retry.timeout, retry=None), f"HEAD {self.url.key_url(key)}",
                          absent=False)

    def list(self, prefix: str = "") -> Iterator[str]:
        root = f"{self.url.path}/" if self.url.path else ""
        what = f"LIST {self.url.key_url(prefix) if prefix else str(self.url)}"
        token: str | None = None

        def page() -> tuple[list[str], str | None]:
            it = self._client.get().list_blobs(self._bucket(), prefix=root + prefix, page_token=token,
                                               fields="items(name),nextPageToken",
                                               timeout=self.retry.timeout, retry=None)
            names = [b.name for b in next(it.pages)]
            return names, it.next_page_token

        while True:  # one page per request, each retried on its own
            names, token = self._call(page, what)
            for name in names:
                yield name[len(root):]
            if not token:
                return

    def _with_url(self, url: StoreURL) -> "GCSStore":
        return GCSStore(url, retry=self.retry, _client=self._client, _fast=self._fast, _user_project=self.user_project)

    def close(self) -> None:
        self._fast.close()
        self._client.close()
