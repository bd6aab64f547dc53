"""``gs://bucket/prefix`` on google-cloud-storage.

Credentials (``secrets``), first match wins:

- a path (str) to a service-account (or ``authorized_user``) JSON key file, or that JSON as a
  dict (it has a ``"type"`` key);
- a dict of options: ``{"endpoint": "http://127.0.0.1:4443"}`` for an emulator (then anonymous
  unless ``"credentials"`` is given), ``"credentials"`` (path or dict as above), ``"project"``,
  ``"anonymous": True``;
- nothing: ``STORAGE_EMULATOR_HOST`` if set (emulator, anonymous), else Application Default
  Credentials, else anonymous access (public buckets).

Reads: whole objects are downloaded as stored (``Accept-Encoding: gzip``, so GCS does not
transcode) with the crc32c/md5 in ``X-Goog-Hash`` checked, then the object's
``Content-Encoding`` is undone here. Ranged reads also send ``Accept-Encoding: gzip``: on GCS
that header is what turns decompressive transcoding *off* (with ``identity`` GCS would
decompress and ignore the Range), so a range is always a range of the stored bytes. Writes set
``Content-Encoding`` metadata. The SDK's retries are off; :class:`~.retry.RetryPolicy` applies.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Iterator, Sequence, TypeVar

import google.auth
import google.auth.exceptions
import requests
import urllib3
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.auth.transport.requests import AuthorizedSession
from google.cloud import storage
from google.cloud.storage.exceptions import DataCorruption, InvalidResponse
from google.oauth2 import service_account
from google.oauth2.credentials import Credentials as UserCredentials
from requests.adapters import HTTPAdapter

from .. import compression
from ..errors import RequestError, StoreError
from .base import ByteRange, Store, check_key
from .retry import RetryPolicy, SharedClient, Transient, get_ranges_coalesced, is_retryable_status, status_error
from .retry import short as _short
from .url import StoreURL

T = TypeVar("T")
_SCOPES = ("https://www.googleapis.com/auth/devstorage.read_write",)
_OPTION_KEYS = frozenset({"endpoint", "credentials", "project", "anonymous"})
_ABSENT = object()


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


def _make_client(secrets: Any, parallel: int) -> storage.Client:
    try:
        return _build_client(secrets, parallel)
    except (google.auth.exceptions.GoogleAuthError, OSError, ValueError) as e:
        # an unreadable key file, a bad endpoint: retrying will not help (no secrets in `e`)
        raise StoreError(f"cannot set up the GCS client: {type(e).__name__}: {e}") from None


def _build_client(secrets: Any, parallel: int) -> storage.Client:
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
    elif not endpoint and not opts.get("anonymous"):
        try:
            creds, found = google.auth.default(scopes=_SCOPES)
            project = project or found
        except google.auth.exceptions.DefaultCredentialsError:
            creds = None  # nobody to be: public buckets only
    # AuthorizedSession refreshes tokens; anonymous access needs a plain session
    session = requests.Session() if creds is None else AuthorizedSession(creds)
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


def _check_secrets(secrets: Any) -> Any:
    if secrets is None or isinstance(secrets, (str, os.PathLike)):
        return secrets
    if isinstance(secrets, dict) and ("type" in secrets or set(secrets) <= _OPTION_KEYS):
        return secrets
    raise RequestError(
        "secrets for gs:// must be a path to a credentials JSON file, that JSON as a dict, or a dict "
        f"with the keys {sorted(_OPTION_KEYS)}"
    )


def _close(client: storage.Client) -> None:
    client._http.close()  # Client.close() does the same in recent releases


class GCSStore(Store):
    """Objects in a GCS bucket under a prefix."""

    default_parallel = 32

    def __init__(self, url: StoreURL, *, secrets: Any = None, parallel: int | None = None,
                 retry: RetryPolicy | None = None, _client: SharedClient[storage.Client] | None = None):
        super().__init__(url)
        self.retry = retry or RetryPolicy()
        if _client is None:
            sec, size = _check_secrets(secrets), int(parallel or self.default_parallel)
            _client = SharedClient(lambda: _make_client(sec, size), _close)
        self._client = _client

    def _blob(self, key: str) -> storage.Blob:
        name = f"{self.url.path}/{check_key(key)}" if self.url.path else check_key(key)
        return self._client.get().bucket(self.url.netloc).blob(name)

    def _run(self, fn: Callable[[], T], what: str, absent: Any = _ABSENT) -> T:
        """``fn()`` with the SDK's errors sorted into absent / retry / fail, under the retry policy."""

        def attempt() -> T:
            try:
                return fn()
            except gexc.NotFound:
                if absent is _ABSENT:
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
                if code == 404 and absent is not _ABSENT:
                    return absent
                if is_retryable_status(code):
                    raise Transient(_short(e), code) from None
                raise status_error(what, code, _short(e)) from None
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                    urllib3.exceptions.HTTPError, google.auth.exceptions.TransportError, ConnectionError,
                    TimeoutError) as e:  # urllib3's IncompleteRead can escape the SDK unwrapped
                raise Transient(f"{type(e).__name__}: {_short(e)}") from None

        return self.retry.call(attempt, what)

    def get(self, key: str, byte_range: ByteRange | None = None) -> bytes | None:
        what = f"GET {self.url.key_url(key)}"
        blob = self._blob(key)
        if byte_range is None:
            def whole() -> bytes:
                return blob.download_as_bytes(raw_download=True, checksum="auto", timeout=self.retry.timeout, retry=None)

            data = self._run(whole, what, absent=None)
            return None if data is None else compression.decompress(data, blob.content_encoding, self.url.key_url(key))
        start, end = int(byte_range[0]), int(byte_range[1])
        if start < 0:
            raise RequestError(f"{what}: byte range {byte_range} starts before 0")
        if end <= start:
            return b"" if self.exists(key) else None

        def ranged() -> bytes:
            try:  # raw_download=True sends Accept-Encoding: gzip: stored bytes, Range honoured
                return blob.download_as_bytes(start=start, end=end - 1, raw_download=True, checksum=None,
                                              timeout=self.retry.timeout, retry=None)
            except gexc.RequestRangeNotSatisfiable:
                return b""  # the object ends before `start`: like slicing past the end

        return self._run(ranged, f"{what} bytes={start}-{end - 1}", absent=None)

    def get_ranges(self, key: str, ranges: Sequence[ByteRange]) -> list[bytes | None]:
        return get_ranges_coalesced(lambda rng: self.get(key, rng), ranges)

    def put(self, key: str, data: bytes, *, content_type: str | None = None, content_encoding: str | None = None) -> None:
        blob = self._blob(key)
        blob.content_encoding = compression.normalize(content_encoding)

        def upload() -> None:
            blob.upload_from_string(bytes(data), content_type=content_type or "application/octet-stream",
                                    timeout=self.retry.timeout, retry=None, checksum="auto")

        self._run(upload, f"PUT {self.url.key_url(key)}")

    def create_exclusive(self, key: str, data: bytes) -> bool:
        """An upload with ``ifGenerationMatch=0``: only the first of several writers succeeds."""
        blob = self._blob(key)

        def upload() -> bool:
            try:
                blob.upload_from_string(bytes(data), content_type="application/octet-stream", if_generation_match=0,
                                        timeout=self.retry.timeout, retry=None)
                return True
            except gexc.PreconditionFailed:
                return False

        return self._run(upload, f"PUT (if absent) {self.url.key_url(key)}")

    def delete(self, key: str) -> None:
        blob = self._blob(key)
        self._run(lambda: blob.delete(timeout=self.retry.timeout, retry=None), f"DELETE {self.url.key_url(key)}",
                  absent=None)

    def exists(self, key: str) -> bool:
        blob = self._blob(key)
        return self._run(lambda: blob.exists(timeout=self.retry.timeout, retry=None), f"HEAD {self.url.key_url(key)}",
                         absent=False)

    def list(self, prefix: str = "") -> Iterator[str]:
        root = f"{self.url.path}/" if self.url.path else ""
        what = f"LIST {self.url.key_url(prefix) if prefix else str(self.url)}"
        token: str | None = None

        def page() -> tuple[list[str], str | None]:
            it = self._client.get().list_blobs(self.url.netloc, prefix=root + prefix, page_token=token,
                                               fields="items(name),nextPageToken",
                                               timeout=self.retry.timeout, retry=None)
            names = [b.name for b in next(it.pages)]
            return names, it.next_page_token

        while True:  # one page per request, each retried on its own
            names, token = self._run(page, what)
            for name in names:
                yield name[len(root):]
            if not token:
                return

    def _with_url(self, url: StoreURL) -> "GCSStore":
        return GCSStore(url, retry=self.retry, _client=self._client)

    def close(self) -> None:
        self._client.close()
