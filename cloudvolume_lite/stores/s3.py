"""``s3://bucket/prefix`` on boto3, for AWS and S3-compatible servers (MinIO, SeaweedFS, moto, ...).

Configuration (``secrets`` dict, every key optional): ``endpoint_url``, ``aws_access_key_id``,
``aws_secret_access_key``, ``aws_session_token``, ``region_name``, ``profile_name``,
``anonymous``, ``requester_pays`` (True: every request, presigned ones included, says
``x-amz-request-payer: requester``).

- Endpoint: ``secrets["endpoint_url"]``, else ``$CVL_S3_ENDPOINT``, else ``$AWS_ENDPOINT_URL_S3``
  or ``$AWS_ENDPOINT_URL``, else AWS. With an endpoint, addressing is path-style (``http://host/bucket/key``), which every
  S3-compatible server understands.
- Credentials: the keys above, else boto3's usual chain (environment, ``~/.aws``, instance
  role), else CloudVolume's ``[bucket-]aws-secret.json`` (:mod:`.credentials`; a file that is
  there but unusable is an error). When all that finds nothing, or ``anonymous`` is true,
  requests go unsigned (public buckets).
- Reads: a whole object's ``Content-Encoding`` (gzip, br, zstd) is undone here; a ranged read
  returns stored bytes (S3 never transcodes). Whole reads of single-part objects are checked
  against the ETag (the MD5 of the stored bytes) unless the object is KMS/customer-key
  encrypted, where the ETag is not an MD5. Writes set ``Content-Encoding`` metadata.
- Batches of whole objects (``iter_get``, which Volume reads use) go through the one-thread
  fetcher of ``http_fetch.py`` as presigned GETs (botocore signs each URL, so endpoints,
  addressing, regions and session tokens are its business), with the same ETag check, run off
  the fetching thread. What cannot be finished that way is done again through boto3.
- botocore's retries are off (one attempt); :class:`~.retry.RetryPolicy` applies.
"""

from __future__ import annotations

import hashlib
import os
import re
import ssl
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar
from urllib.parse import urlsplit

import boto3
import requests
import urllib3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

from .. import compression
from ..errors import RequestError, StoreError
from . import credentials
from .base import ByteRange, Store, check_key
from .http_fetch import Fetcher, Reply
from .streaming import REDO, FastGets, Later
from .retry import short as _short
from .retry import (RetryPolicy, SharedClient, Transient, check_span, get_ranges_coalesced, is_retryable_status,
                    status_error)
from .url import StoreURL

T = TypeVar("T")
_KEYS = frozenset({"endpoint_url", "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "region_name",
         "profile_name", "anonymous", "requester_pays"})
#: error codes S3 (and its imitators) use for "slow down / try again" with odd HTTP statuses
_RETRY_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout",
                "InternalError", "ServiceUnavailable", "OperationAborted"})
_MD5 = re.compile(r'^"?([0-9a-fA-F]{32})"?$')
_ABSENT = object()


def _make_client(secrets: dict[str, Any], parallel: int, retry: RetryPolicy, url: StoreURL) -> Any:
    try:
        return _build_client(secrets, parallel, retry, url.netloc)
    except (BotoCoreError, StoreError) as e:  # a missing profile, a bad endpoint URL, an unusable
        # CloudVolume secret file: retrying will not help
        raise StoreError(f"cannot set up the S3 client for {url}: {e}") from None


def _session(secrets: dict[str, Any], bucket: str) -> tuple[Any, bool]:
    """The boto3 session and whether it has nobody to sign as.

    First match wins: the keys in ``secrets`` (or ``anonymous``), boto3's chain (environment,
    ``~/.aws``, SSO, container and instance roles), CloudVolume's ``[bucket-]aws-secret.json``,
    then unsigned requests.
    """
    session = boto3.session.Session(
        aws_access_key_id=secrets.get("aws_access_key_id"),
        aws_secret_access_key=secrets.get("aws_secret_access_key"),
        aws_session_token=secrets.get("aws_session_token"),
        region_name=secrets.get("region_name"),
        profile_name=secrets.get("profile_name"),
    )
    if secrets.get("anonymous"):
        return session, True
    if session.get_credentials() is not None:
        return session, False
    keys = credentials.aws_secret(bucket)
    if keys is None:
        return session, True
    return boto3.session.Session(
        aws_access_key_id=keys.access_key_id,
        aws_secret_access_key=keys.secret_access_key,
        aws_session_token=keys.session_token,
        region_name=secrets.get("region_name") or keys.region or session.region_name,
    ), False


def _build_client(secrets: dict[str, Any], parallel: int, retry: RetryPolicy, bucket: str) -> Any:
    session, anonymous = _session(secrets, bucket)
    endpoint = (secrets.get("endpoint_url") or os.environ.get("CVL_S3_ENDPOINT")
                or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"))
    extra: dict[str, Any] = {}
    if endpoint:
        extra["s3"] = {"addressing_style": "path"}
        # botocore >= 1.36 adds CRC trailers to every upload, which many S3-compatible servers
        # reject; for them, checksum only when the API requires it
        extra["request_checksum_calculation"] = "when_required"
    # SigV4 everywhere, presigned URLs included (botocore would presign some with SigV2, which
    # AWS refuses in newer regions and S3-compatible servers are dropping)
    extra["signature_version"] = UNSIGNED if anonymous else "s3v4"
    config = Config(
        max_pool_connections=parallel,
        retries={"total_max_attempts": 1},  # the RetryPolicy is the only one
        connect_timeout=retry.connect_timeout,
        read_timeout=retry.read_timeout,
        **extra,
    )
    return session.client("s3", endpoint_url=endpoint or None, region_name=session.region_name or "us-east-1",
                          config=config)


def _fast_gets(client: Any, bucket: str, parallel: int, timeout: tuple[float, float], deadline: float | None
               ) -> FastGets:
    """A fetcher for the origin this bucket's presigned URLs point at; none behind a proxy."""
    probe = urlsplit(client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=60))
    url = urllib3.util.parse_url(f"{probe.scheme}://{probe.netloc}")
    proxy = requests.utils.get_environ_proxies(f"{probe.scheme}://{probe.netloc}/").get(probe.scheme)
    if proxy or client.meta.config.proxies or url.scheme not in ("http", "https") or not url.host:
        return FastGets(None, parallel)
    bundle = os.environ.get("AWS_CA_BUNDLE") or os.environ.get("REQUESTS_CA_BUNDLE")
    tls = ssl.create_default_context(cafile=bundle) if url.scheme == "https" else None
    fetcher = Fetcher(url.scheme, url.host.strip("[]"), url.port, {}, timeout, tls, parallel, deadline=deadline)
    fetcher.origin = f"{probe.scheme}://{probe.netloc}"  # type: ignore[attr-defined]
    return FastGets(fetcher, parallel)


def _check_secrets(secrets: Any) -> dict[str, Any]:
    if secrets is None:
        return {}
    if not isinstance(secrets, dict) or not set(secrets) <= _KEYS:
        raise RequestError(f"secrets for s3:// must be a dict with some of the keys {sorted(_KEYS)}")
    if not isinstance(secrets.get("requester_pays", False), bool):
        raise RequestError("secrets for s3://: 'requester_pays' is True or False (the requester pays: "
                           "every request says RequestPayer=requester)")
    return dict(secrets)


def _status(e: ClientError) -> tuple[int, str]:
    return int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0), str(e.response.get("Error", {}).get("Code", ""))


class S3Store(Store):
    """Objects in an S3 bucket under a prefix."""

    default_parallel = 32
    streams = True

    def __init__(self, url: StoreURL, *, secrets: Any = None, parallel: int | None = None,
                 retry: RetryPolicy | None = None, _client: SharedClient[Any] | None = None,
                 _fast: SharedClient[FastGets] | None = None, _pays: bool = False):
        super().__init__(url)
        self.retry = retry or RetryPolicy()
        size = int(parallel or self.default_parallel)
        if _client is None:
            sec, pol = _check_secrets(secrets), self.retry
            _pays = bool(sec.get("requester_pays"))
            _client = SharedClient(lambda: _make_client(sec, size, pol, url), lambda c: c.close())
        self._client = _client
        self._pays = _pays
        #: what every call adds for a requester-pays bucket (header x-amz-request-payer)
        self._extra: dict[str, str] = {"RequestPayer": "requester"} if _pays else {}
        if _fast is None:
            bucket, timeout = url.netloc, self.retry.timeout
            _fast = SharedClient(lambda: _fast_gets(_client.get(), bucket, size, timeout, self.retry.deadline),
                                 lambda f: f.close())
        self._fast = _fast

    def _name(self, key: str) -> str:
        return f"{self.url.path}/{check_key(key)}" if self.url.path else check_key(key)

    def _run(self, fn: Callable[[], T], what: str, absent: Any = _ABSENT) -> T:
        """``fn()`` with botocore's errors sorted into absent / retry / fail, under the retry policy."""

        def attempt() -> T:
            try:
                return fn()
            except ClientError as e:
                status, code = _status(e)
                if code == "NoSuchBucket":
                    raise StoreError(f"{what} failed: bucket {self.url.netloc!r} does not exist") from None
                if (status == 404 or code in ("NoSuchKey", "NotFound")) and absent is not _ABSENT:
                    return absent
                if is_retryable_status(status) or code in _RETRY_CODES:
                    raise Transient(code or "server error", status) from None
                raise status_error(what, status, code) from None
            except (NoCredentialsError, PartialCredentialsError) as e:
                raise StoreError(f"{what} failed: {e}; pass secrets= or use anonymous access") from None
            except (BotoCoreError, urllib3.exceptions.HTTPError, ConnectionError, TimeoutError) as e:
                # connection/read errors, a short body, a failed checksum: all worth a retry
                raise Transient(f"{type(e).__name__}: {_short(e)}") from None

        return self.retry.call(attempt, what)

    def get(self, key: str, byte_range: ByteRange | None = None) -> bytes | None:
        what = f"GET {self.url.key_url(key)}"
        name = self._name(key)
        if byte_range is None:
            def whole() -> tuple[bytes, str | None]:
                r = self._client.get().get_object(Bucket=self.url.netloc, Key=name, **self._extra)
                data = r["Body"].read()
                _verify_etag(r, data)
                return data, r.get("ContentEncoding")

            got = self._run(whole, what, absent=None)
            if got is None:
                return None
            data, encoding = got
            for enc in reversed([e for e in (encoding or "").split(",") if e.strip() and e.strip() != "aws-chunked"]):
                data = compression.decompress(data, enc, self.url.key_url(key))
            return data
        start, end = int(byte_range[0]), int(byte_range[1])
        if start < 0:
            raise RequestError(f"{what}: byte range {byte_range} starts before 0")
        if end <= start:
            return b"" if self.exists(key) else None

        def ranged() -> bytes:
            try:
                r = self._client.get().get_object(Bucket=self.url.netloc, Key=name, Range=f"bytes={start}-{end - 1}",
                                                  **self._extra)
            except ClientError as e:
                if _status(e)[0] == 416:  # the object ends before `start`: like slicing past the end
                    return b""
                raise
            body = r["Body"].read()
            if r["ResponseMetadata"]["HTTPStatusCode"] == 200:  # Range ignored: keep our part
                return body[start:end]
            check_span(body, r.get("ContentRange"), start)
            return body[: end - start]

        return self._run(ranged, f"{what} bytes={start}-{end - 1}", absent=None)

    def iter_get(self, keys: Iterable[str], expected_bytes: int | None = None) -> Iterator[tuple[str, bytes | None]]:
        """Whole objects as presigned GETs, ``parallel`` in flight from the calling thread; the
        ETag check and decompression run on workers; anything else (a failure, a 5xx, a 403,
        a redirect, a mismatch) is done again by :meth:`get` through boto3, retries and all."""
        keys = list(keys)
        fast = self._fast.get()
        if not fast.usable or len(keys) < 2:
            yield from super().iter_get(keys)
            return
        client, origin = self._client.get(), fast.fetcher.origin  # type: ignore[attr-defined]
        # a signed URL lists x-amz-request-payer among its signed headers; an unsigned one drops
        # it: either way the header itself must go with the GET
        headers = {"x-amz-request-payer": "requester"} if self._pays else {}

        def request(key: str) -> tuple[str, dict[str, str]]:
            url = client.generate_presigned_url("get_object", ExpiresIn=3600,
                                                Params={"Bucket": self.url.netloc, "Key": self._name(key), **self._extra})
            parts = urlsplit(url)
            if f"{parts.scheme}://{parts.netloc}" != origin:  # never expected; the slow way copes
                parts = urlsplit(f"{origin}/cvl-origin-mismatch/{key}")
            return (f"{parts.path}?{parts.query}" if parts.query else parts.path), headers

        def finish(key: str, answer: Reply) -> bytes | None | object:
            if answer.status == 404:
                return None
            if answer.status != 200:
                return REDO
            data, headers = bytes(answer.body), answer.headers
            return Later(lambda: self._checked(key, data, headers))

        yield from fast.stream(keys, request, finish, self.get, expected_bytes, describe=self.url.key_url)

    def _checked(self, key: str, data: bytes, headers: dict[str, str]) -> bytes | object:
        """A streamed body, ETag-checked and decoded; REDO if the transfer was damaged."""
        meta = {"ETag": headers.get("etag", ""), "ServerSideEncryption": headers.get("x-amz-server-side-encryption"),
                "SSECustomerAlgorithm": headers.get("x-amz-server-side-encryption-customer-algorithm")}
        try:
            _verify_etag(meta, data)
        except Transient:
            return REDO
        for enc in reversed([e for e in headers.get("content-encoding", "").split(",") if e.strip() and e.strip() != "aws-chunked"]):
            data = compression.decompress(data, enc, self.url.key_url(key))
        return data

    def get_ranges(self, key: str, ranges: Sequence[ByteRange]) -> list[bytes | None]:
        return get_ranges_coalesced(lambda rng: self.get(key, rng), ranges)

    def put(self, key: str, data: bytes, *, content_type: str | None = None, content_encoding: str | None = None) -> None:
        args: dict[str, Any] = {"Bucket": self.url.netloc, "Key": self._name(key), "Body": bytes(data),
                                "ContentType": content_type or "application/octet-stream", **self._extra}
        enc = compression.normalize(content_encoding)
        if enc:
            args["ContentEncoding"] = enc
        self._run(lambda: self._client.get().put_object(**args), f"PUT {self.url.key_url(key)}")

    def create_exclusive(self, key: str, data: bytes) -> bool:
        """A PUT with ``If-None-Match: *``: only the first of several writers succeeds."""
        name = self._name(key)

        def put() -> bool:
            try:
                self._client.get().put_object(Bucket=self.url.netloc, Key=name, Body=bytes(data), IfNoneMatch="*",
                                              **self._extra)
                return True
            except ClientError as e:
                status, code = _status(e)
                if status == 412 or code == "PreconditionFailed":
                    return False
                if status == 409:  # ConditionalRequestConflict: a racing write; try again
                    raise Transient(code or "conflict", status) from None
                raise

        return self._run(put, f"PUT (if absent) {self.url.key_url(key)}")

    def delete(self, key: str) -> None:
        name = self._name(key)
        self._run(lambda: self._client.get().delete_object(Bucket=self.url.netloc, Key=name, **self._extra),
                  f"DELETE {self.url.key_url(key)}", absent=None)

    def exists(self, key: str) -> bool:
        name = self._name(key)

        def head() -> bool:
            self._client.get().head_object(Bucket=self.url.netloc, Key=name, **self._extra)
            return True

        return self._run(head, f"HEAD {self.url.key_url(key)}", absent=False)

    def list(self, prefix: str = "") -> Iterator[str]:
        root = f"{self.url.path}/" if self.url.path else ""
        what = f"LIST {self.url.key_url(prefix) if prefix else str(self.url)}"
        token: str | None = None

        def page() -> dict[str, Any]:
            args = {"Bucket": self.url.netloc, "Prefix": root + prefix, **self._extra}
            if token:
                args["ContinuationToken"] = token
            return self._client.get().list_objects_v2(**args)

        while True:  # one page per request, each retried on its own
            r = self._run(page, what)
            for obj in r.get("Contents", []):
                yield obj["Key"][len(root):]
            token = r.get("NextContinuationToken")
            if not r.get("IsTruncated") or not token:
                return

    def _with_url(self, url: StoreURL) -> "S3Store":
        return S3Store(url, retry=self.retry, _client=self._client, _fast=self._fast, _pays=self._pays)

    def close(self) -> None:
        self._fast.close()
        self._client.close()


def _verify_etag(r: dict[str, Any], data: bytes) -> None:
    """A single-part upload's ETag is the MD5 of the stored bytes; a mismatch is a bad transfer."""
    m = _MD5.match(str(r.get("ETag", "")))
    if m is None or r.get("ServerSideEncryption") == "aws:kms" or r.get("SSECustomerAlgorithm"):
        return  # multipart ("-N" suffix) or encrypted: the ETag is not an MD5
    if hashlib.md5(data, usedforsecurity=False).hexdigest() != m.group(1).lower():
        raise Transient(f"MD5 of the {len(data)} bytes received does not match the ETag {m.group(1)}")
