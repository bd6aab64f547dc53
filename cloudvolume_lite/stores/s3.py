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
- Generations are ETags, quoted as S3 sends them, in every path (GET, ranged GET, HEAD, PUT's
  answer, streamed answers). Conditional reads send ``If-Match``/``If-None-Match`` (304:
  unchanged, 412: :class:`ConflictError`); conditional writes send ``If-Match: <etag>`` or
  ``If-None-Match: *`` (412, S3's 409 ConditionalRequestConflict, or 404 under ``If-Match``:
  ConflictError, never retried). An ETag is the MD5 of the bytes, so writing back the same
  bytes gives back the same generation.
- Batches of whole objects (``iter_get``, which Volume reads use) go through the one-thread
  fetcher of ``http_fetch.py`` as presigned GETs (botocore signs each URL, so endpoints,
  addressing, regions and session tokens are its business), with the same ETag check, run off
  the fetching thread. What cannot be finished that way is done again through boto3. Their TLS
  trusts the CA bundle ``network.CA_BUNDLE_VARS`` names (``REQUESTS_CA_BUNDLE``,
  ``CURL_CA_BUNDLE``, then ``AWS_CA_BUNDLE``); boto3's own requests follow botocore's rules.
- botocore's retries are off (one attempt); :class:`~.retry.RetryPolicy` applies.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, TypeVar
from urllib.parse import urlsplit

import boto3
import urllib3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

from .. import compression
from ..errors import ConflictError, RequestError, StoreError
from . import credentials
from .base import ABSENT, Versioned
from .http_fetch import Reply, origin
from .network import RAISE, Cond, NetworkStore, Whole, decode_content, fast_gets
from .streaming import REDO, FastGets, Later
from .retry import short as _short
from .retry import RetryPolicy, SharedClient, Transient, check_span, is_retryable_status, status_error
from .url import StoreURL

if TYPE_CHECKING:
    from ..runtime import Runtime

T = TypeVar("T")
_KEYS = frozenset({"endpoint_url", "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "region_name",
         "profile_name", "anonymous", "requester_pays"})
#: error codes S3 (and its imitators) use for "slow down / try again" with odd HTTP statuses
_RETRY_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout",
                "InternalError", "ServiceUnavailable", "OperationAborted"})
_MD5 = re.compile(r'^"?([0-9a-fA-F]{32})"?$')


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


def _fast_gets(client: Any, bucket: str, parallel: int, retry: RetryPolicy) -> FastGets:
    """Streaming gets for the origin this bucket's presigned URLs point at (none when boto3 is
    configured with proxies, see ``network.fast_gets``)."""
    probe = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=60)
    return fast_gets(probe, parallel, retry, proxied=bool(client.meta.config.proxies))


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


def _same(a: str | None, b: str | None) -> bool:
    """Whether two ETags name one generation (S3 compares them with or without the quotes)."""
    return a is not None and b is not None and a.strip('"') == b.strip('"')


def _precondition_failed(e: ClientError) -> bool:
    status, code = _status(e)
    return status == 412 or code == "PreconditionFailed"


def _changed(what: str, generation: str) -> ConflictError:
    return ConflictError(f"{what}: the object is no longer at generation {generation}: someone else changed it "
                         "(read it again)")


class S3Store(NetworkStore):
    """Objects in an S3 bucket under a prefix."""

    default_parallel = 32

    def __init__(self, url: StoreURL, *, secrets: Any = None, parallel: int | None = None,
                 retry: RetryPolicy | None = None, _client: SharedClient[Any] | None = None,
                 _fast: SharedClient[FastGets] | None = None, _pays: bool = False):
        super().__init__(url, retry)
        size, pol = int(parallel or self.default_parallel), self.retry
        if _client is None:
            sec = _check_secrets(secrets)
            _pays = bool(sec.get("requester_pays"))
            _client = SharedClient(lambda: _make_client(sec, size, pol, url), lambda c: c.close())
        self._client = _client
        self._pays = _pays
        #: what every call adds for a requester-pays bucket (header x-amz-request-payer)
        self._extra: dict[str, str] = {"RequestPayer": "requester"} if _pays else {}
        if _fast is None:
            bucket = url.netloc
            _fast = SharedClient(lambda: _fast_gets(_client.get(), bucket, size, pol), lambda f: f.close())
        self._fast = _fast

    def _call(self, fn: Callable[[], T], what: str, until: float | None = None, absent: Any = RAISE) -> T:
        """``fn()`` with botocore's errors sorted into absent / retry / fail, under the retry policy."""

        def attempt() -> T:
            try:
                return fn()
            except ClientError as e:
                status, code = _status(e)
                if code == "NoSuchBucket":
                    raise StoreError(f"{what} failed: bucket {self.url.netloc!r} does not exist") from None
                if (status == 404 or code in ("NoSuchKey", "NotFound")) and absent is not RAISE:
                    return absent
                if is_retryable_status(status) or code in _RETRY_CODES:
                    raise Transient(code or "server error", status) from None
                raise status_error(what, status, code) from None
            except (NoCredentialsError, PartialCredentialsError) as e:
                raise StoreError(f"{what} failed: {e}; pass secrets= or use anonymous access") from None
            except (BotoCoreError, urllib3.exceptions.HTTPError, ConnectionError, TimeoutError) as e:
                # connection/read errors, a short body, a failed checksum: all worth a retry
                raise Transient(f"{type(e).__name__}: {_short(e)}") from None

        return self.retry.call(attempt, what, until)

    def _read_whole(self, key: str, what: str, until: float | None, cond: Cond) -> Whole:
        args: dict[str, str] = {}
        if cond.if_match is not None:
            args["IfMatch"] = cond.if_match
        if cond.if_none_match is not None:
            args["IfNoneMatch"] = cond.if_none_match
        try:
            r = self._client.get().get_object(Bucket=self.url.netloc, Key=self._name(key), **args, **self._extra)
        except ClientError as e:
            if _status(e)[0] == 304:  # botocore raises for "not modified" too
                return None, None, cond.if_none_match
            if _precondition_failed(e) and cond.if_match is not None:
                raise _changed(what, cond.if_match) from None
            raise
        data = r["Body"].read()
        _verify_etag(r, data)
        gen = r.get("ETag") or None
        # and for servers that ignore the conditions: the answer names its generation
        if cond.if_match is not None and not _same(gen, cond.if_match):
            raise _changed(what, cond.if_match)
        if _same(gen, cond.if_none_match):
            return None, None, gen
        return data, r.get("ContentEncoding"), gen

    def _read_range(self, key: str, start: int, end: int, what: str, until: float | None,
                    cond: Cond) -> tuple[bytes, str | None]:
        args = {"IfMatch": cond.if_match} if cond.if_match is not None else {}
        try:
            r = self._client.get().get_object(Bucket=self.url.netloc, Key=self._name(key),
                                              Range=f"bytes={start}-{end - 1}", **args, **self._extra)
        except ClientError as e:
            if _status(e)[0] == 416:  # the object ends before `start`: like slicing past the end;
                # a 416 names no ETag, so ask (a 404 here is "absent", as for the GET)
                return b"", self._head(self._name(key), what, cond.if_match)
            if _precondition_failed(e) and cond.if_match is not None:
                raise _changed(what, cond.if_match) from None
            raise
        body, gen = r["Body"].read(), r.get("ETag") or None
        if r["ResponseMetadata"]["HTTPStatusCode"] == 200:  # Range ignored: keep our part
            return body[start:end], gen
        check_span(body, r.get("ContentRange"), start)
        return body[: end - start], gen

    def _head(self, name: str, what: str, if_match: str | None = None) -> str | None:
        """One HEAD of object ``name``: its ETag (ClientError 404 when absent)."""
        args = {"IfMatch": if_match} if if_match is not None else {}
        try:
            r = self._client.get().head_object(Bucket=self.url.netloc, Key=name, **args, **self._extra)
        except ClientError as e:
            if _precondition_failed(e) and if_match is not None:
                raise _changed(what, if_match) from None
            raise
        return r.get("ETag") or None

    def stat(self, key: str) -> str | None:
        """The object's ETag (one HEAD), or None if it is absent."""
        name, what = self._name(key), f"HEAD {self.url.key_url(key)}"
        return self._call(lambda: self._head(name, what), what, absent=None)

    def _streaming(self) -> FastGets:
        return self._fast.get()

    def _stream(self, fast: FastGets, keys: list[str], expected_bytes: int | None,
                runtime: "Runtime | None" = None, unless: Mapping[str, str] | None = None
                ) -> Iterator[tuple[str, Versioned | None]]:
        """Whole objects as presigned GETs (botocore signs each URL, so endpoints, addressing,
        regions and session tokens are its business); the ETag check and decompression run on
        workers; a failure, a 5xx, a 403, a redirect or a mismatch is done again by ``read``."""
        client, home = self._client.get(), fast.fetcher.origin  # type: ignore[union-attr]
        # a signed URL lists x-amz-request-payer among its signed headers; an unsigned one drops
        # it: either way the header itself must go with the GET
        headers = {"x-amz-request-payer": "requester"} if self._pays else {}
        strays: set[str] = set()  # keys botocore signed for another origin (never expected)

        def request(key: str) -> tuple[str, dict[str, str]]:
            params = {"Bucket": self.url.netloc, "Key": self._name(key), **self._extra}
            parts = urlsplit(client.generate_presigned_url("get_object", Params=params, ExpiresIn=3600))
            if origin(parts.scheme, parts.hostname or "", parts.port) != home:
                strays.add(key)  # the slow way reads it; the fetcher's origin gets a harmless path
                parts = urlsplit(f"{home}/cvl-origin-mismatch/{key}")
            path = f"{parts.path}?{parts.query}" if parts.query else parts.path
            # If-None-Match is not among the signed headers, so it may go with a presigned GET
            return path, ({**headers, "If-None-Match": unless[key]} if unless else headers)

        def finish(key: str, answer: Reply) -> Versioned | None | object:
            return REDO if key in strays else self._finish(key, answer)

        return fast.stream(keys, request, self._unless(finish, unless), self._redo(unless), expected_bytes,
                           describe=self.url.key_url, runtime=runtime)

    def _finish(self, key: str, answer: Reply) -> Versioned | None | object:
        if answer.status == 404:
            return None
        if answer.status != 200:
            return REDO
        data, headers = bytes(answer.body), answer.headers
        return Later(lambda: self._checked(key, data, headers))

    def _checked(self, key: str, data: bytes, headers: dict[str, str]) -> Versioned | object:
        """A streamed body, ETag-checked and decoded, with its ETag; REDO if the transfer was damaged."""
        meta = {"ETag": headers.get("etag", ""), "ServerSideEncryption": headers.get("x-amz-server-side-encryption"),
                "SSECustomerAlgorithm": headers.get("x-amz-server-side-encryption-customer-algorithm")}
        try:
            _verify_etag(meta, data)
        except Transient:
            return REDO
        return Versioned(decode_content(data, headers.get("content-encoding"), self.url.key_url(key),
                                        self.decoded_limit), self._generation(headers))

    @property
    def supports_conditional_writes(self) -> bool:
        return True

    def put(self, key: str, data: bytes, *, content_type: str | None = None, content_encoding: str | None = None,
            if_generation: str | None = None) -> str | None:
        """A PUT (``If-Match``/``If-None-Match: *`` under ``if_generation``); the new ETag."""
        args: dict[str, Any] = {"Bucket": self.url.netloc, "Key": self._name(key), "Body": bytes(data),
                                "ContentType": content_type or "application/octet-stream", **self._extra}
        enc = compression.normalize(content_encoding)
        if enc:
            args["ContentEncoding"] = enc
        if if_generation == ABSENT:
            args["IfNoneMatch"] = "*"
        elif if_generation is not None:
            args["IfMatch"] = if_generation
        what = f"PUT {self.url.key_url(key)}"

        def upload() -> str | None:
            try:
                return self._client.get().put_object(**args).get("ETag") or None
            except ClientError as e:
                if if_generation is not None and self._lost_race(e, if_generation):
                    # not retried: another writer's change is an answer. (After a retried try, it
                    # may be our own first try that landed; callers who write unique bytes can tell.)
                    if if_generation == ABSENT:
                        raise ConflictError(f"{what} (if absent): the object exists: someone else created it") from None
                    raise _changed(what, if_generation) from None
                raise

        return self._call(upload, what)

    @staticmethod
    def _lost_race(e: ClientError, if_generation: str) -> bool:
        """Whether a conditional PUT's refusal means the object is not at ``if_generation``."""
        status, code = _status(e)
        if status in (409, 412) or code in ("PreconditionFailed", "ConditionalRequestConflict"):
            return True  # 409: a write raced ours
        # If-Match on an object that is gone (NoSuchBucket is a 404 too, and stays an error)
        return if_generation != ABSENT and status == 404 and code in ("NoSuchKey", "NotFound", "404")

    def delete(self, key: str) -> None:
        name = self._name(key)
        self._call(lambda: self._client.get().delete_object(Bucket=self.url.netloc, Key=name, **self._extra),
                   f"DELETE {self.url.key_url(key)}", absent=None)

    def exists(self, key: str) -> bool:
        name = self._name(key)

        def head() -> bool:
            self._client.get().head_object(Bucket=self.url.netloc, Key=name, **self._extra)
            return True

        return self._call(head, f"HEAD {self.url.key_url(key)}", absent=False)

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
            r = self._call(page, what)
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
