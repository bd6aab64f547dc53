"""Backend-specific store behaviour against real servers on 127.0.0.1 (moto's S3 server,
fake-gcs-server, the Range-capable HTTP server in fixtures_servers): metadata, pools, secrets,
environment, retries and faults.

What every store promises (get/put/ranges/list/child/...) is the shipped contract,
``cloudvolume_lite.testing.StoreContract``, run for each backend in test_store_contract.py.
"""

from __future__ import annotations

import gzip
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import pytest

from cloudvolume_lite.errors import RequestError, StoreError, UnsupportedEncodingError
from cloudvolume_lite.stores import StoreRegistry, open_store, parse_url
from cloudvolume_lite.stores.base import Store
from cloudvolume_lite.stores.gcs import GCSStore
from cloudvolume_lite.stores.http import HTTPStore
from cloudvolume_lite.stores.retry import RetryPolicy, coalesce
from cloudvolume_lite.stores.s3 import S3Store
from cloudvolume_lite.testing import payload
from fixtures_servers import Faults, RangeHTTPServer

FAST_RETRY = RetryPolicy(attempts=4, base_delay=0.005, max_delay=0.02, connect_timeout=2, read_timeout=5)


# -- backend-specific behaviour (the contract itself is in test_store_contract.py) ---------------
class SharesOneClient:
    """Network stores: children made with ``child`` share the parent's client and policy."""

    def test_children_share_one_client(self, store: Store) -> None:
        child = store.child("a").child("../b")
        assert child._client is store._client  # type: ignore[attr-defined]
        assert child.retry is store.retry  # type: ignore[attr-defined]
        assert child.default_parallel == type(store).default_parallel >= 32


class TestS3Store(SharesOneClient):
    @pytest.fixture
    def store(self, s3_bucket: str, s3_secrets: dict) -> Store:
        return open_store(f"s3://{s3_bucket}/data/vol", secrets=s3_secrets, parallel=8)

    def test_content_encoding_is_metadata(self, store: Store, s3_client, s3_bucket: str) -> None:  # noqa: ANN001
        store.put("c", gzip.compress(b"abc"), content_type="application/json", content_encoding="gzip")
        head = s3_client.head_object(Bucket=s3_bucket, Key="data/vol/c")
        assert head["ContentEncoding"] == "gzip" and head["ContentType"] == "application/json"
        assert [o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"]] == ["data/vol/c"]

    def test_pool_size_follows_parallel(self, store: Store) -> None:
        client = store._client.get()  # type: ignore[attr-defined]
        assert client.meta.config.max_pool_connections == 8
        assert client.meta.config.s3["addressing_style"] == "path"

    def test_endpoint_from_environment(self, s3_bucket: str, s3_endpoint: str, s3_client,  # noqa: ANN001
                                       monkeypatch: pytest.MonkeyPatch) -> None:
        s3_client.put_object(Bucket=s3_bucket, Key="v/info", Body=b"{}")
        monkeypatch.setenv("CVL_S3_ENDPOINT", s3_endpoint)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret-key")
        assert open_store(f"s3://{s3_bucket}/v").get("info") == b"{}"

    def test_anonymous(self, s3_bucket: str, s3_endpoint: str, s3_client) -> None:  # noqa: ANN001
        s3_client.put_object(Bucket=s3_bucket, Key="pub/info", Body=b"{}", ACL="public-read")
        s3_client.put_object(Bucket=s3_bucket, Key="pub/private", Body=b"{}")
        store = open_store(f"s3://{s3_bucket}/pub", secrets={"endpoint_url": s3_endpoint, "anonymous": True})
        assert store.get("info") == b"{}"  # unsigned requests read public objects
        with pytest.raises(StoreError, match="HTTP 403.*not retried"):
            store.get("private")

    def test_missing_bucket_is_an_error(self, s3_secrets: dict) -> None:
        store = open_store("s3://no-such-bucket-here/v", secrets=s3_secrets)
        with pytest.raises(StoreError, match="does not exist"):
            store.get("info")

    def test_secrets_stay_out_of_reprs_and_errors(self, s3_secrets: dict) -> None:
        store = S3Store(parse_url("s3://no-such-bucket-here/v"), secrets=s3_secrets, retry=FAST_RETRY)
        with pytest.raises(StoreError) as err:
            store.get("info")
        for text in (repr(store), str(err.value)):
            assert s3_secrets["aws_secret_access_key"] not in text

    def test_bad_secrets_are_refused(self) -> None:
        with pytest.raises(RequestError, match="endpoint_url"):
            open_store("s3://b/v", secrets={"endpoint": "http://127.0.0.1:1"})


class TestGCSStore(SharesOneClient):
    @pytest.fixture
    def store(self, gcs_bucket: str, gcs_endpoint: str) -> Store:
        return open_store(f"gs://{gcs_bucket}/data/vol", secrets={"endpoint": gcs_endpoint}, parallel=8)

    def test_content_encoding_is_metadata(self, store: Store, gcs_client, gcs_bucket: str) -> None:  # noqa: ANN001
        store.put("c", gzip.compress(b"abc"), content_type="application/json", content_encoding="gzip")
        blob = gcs_client.bucket(gcs_bucket).get_blob("data/vol/c")
        assert blob.content_encoding == "gzip" and blob.content_type == "application/json"

    def test_transcoded_objects_read_whole_and_ranged(self, store: Store, gcs_client, gcs_bucket: str) -> None:  # noqa: ANN001
        # uploaded by another tool, the way CloudVolume does it
        data = b"\x00\x01" * 20_000
        gz = gzip.compress(data)
        blob = gcs_client.bucket(gcs_bucket).blob("data/vol/t")
        blob.content_encoding = "gzip"
        blob.upload_from_string(gz, content_type="application/octet-stream")
        assert store.get("t") == data
        assert store.get("t", (5, 25)) == gz[5:25]

    def test_pool_size_follows_parallel(self, store: Store) -> None:
        session = store._client.get()._http  # type: ignore[attr-defined]
        assert session.get_adapter("http://127.0.0.1/")._pool_maxsize == 8

    def test_emulator_from_environment(self, gcs_bucket: str, gcs_endpoint: str, gcs_client,  # noqa: ANN001
                                       monkeypatch: pytest.MonkeyPatch) -> None:
        gcs_client.bucket(gcs_bucket).blob("v/info").upload_from_string(b"{}")
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_endpoint)
        assert open_store(f"gs://{gcs_bucket}/v").get("info") == b"{}"

    def test_bad_secrets_are_refused(self) -> None:
        with pytest.raises(RequestError, match="endpoint"):
            open_store("gs://b/v", secrets={"endpoint_url": "http://127.0.0.1:1"})
        key = {"type": "service_account", "private_key": "NOT-A-REAL-KEY", "client_email": "a@b.c",
               "token_uri": "http://127.0.0.1:1/token"}
        with pytest.raises(StoreError, match="cannot set up the GCS client") as err:
            open_store("gs://b/v", secrets=key).get("info")
        assert "NOT-A-REAL-KEY" not in str(err.value)


class TestHTTPStore(SharesOneClient):
    @pytest.fixture
    def store(self, http_server: RangeHTTPServer, http_root: Path) -> Store:
        self.root_dir = http_root
        return open_store(f"{http_server.url}/t-{uuid.uuid4().hex}/vol", parallel=8)

    def seed(self, store: Store, key: str, data: bytes) -> None:
        path = self.root_dir / store.url.path / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def test_pool_size_follows_parallel(self, store: Store) -> None:
        pool = store._client.get()  # type: ignore[attr-defined]
        assert pool.pm.connection_pool_kw["maxsize"] == 8

    def test_nearby_ranges_share_one_request(self, store: Store, http_server: RangeHTTPServer) -> None:
        data = payload(100_000)
        self.seed(store, "shard", data)
        http_server.reset_log()
        ranges = [(0, 100), (5000, 6000), (90_000, 90_500)]
        assert store.get_ranges("shard", ranges) == [data[s:e] for s, e in ranges]
        assert http_server.log.count("GET", "/shard") == 1

    def test_server_that_ignores_range(self, tmp_path: Path) -> None:
        srv = RangeHTTPServer(tmp_path, Faults(ignore_range=True)).start()
        try:
            data = payload()
            (tmp_path / "k").write_bytes(data)
            store = open_store(f"{srv.url}/")
            assert store.get("k", (100, 250)) == data[100:250]
            assert store.get_ranges("k", [(0, 3), (9990, 10_010)]) == [data[:3], data[9990:]]
        finally:
            srv.stop()

    def test_auth_headers_sent_and_never_shown(self, store: Store, http_server: RangeHTTPServer) -> None:
        secret = "Bearer s3cr3t-t0ken"
        authed = HTTPStore(store.url, secrets={"headers": {"Authorization": secret}})
        assert authed.get("missing") is None
        assert secret not in repr(authed)
        userinfo = HTTPStore(parse_url(f"http://user:pa55word@{http_server.url[len('http://'):]}/x"))
        assert "pa55word" not in repr(userinfo)
        with pytest.raises(UnsupportedEncodingError) as err:
            userinfo.put("k", b"1")
        assert "pa55word" not in str(err.value)

    def test_not_found_is_not_retried(self, faulty_http_server: RangeHTTPServer) -> None:
        store = HTTPStore(parse_url(faulty_http_server.url), retry=FAST_RETRY)
        assert store.get("nope") is None
        assert faulty_http_server.log.count() == 1


# -- retries against misbehaving servers ---------------------------------------------------------
class TestRetries:
    def _store(self, srv: RangeHTTPServer, attempts: int = 6, read_timeout: float = 5.0) -> HTTPStore:
        policy = RetryPolicy(attempts=attempts, base_delay=0.005, max_delay=0.02, connect_timeout=2,
                             read_timeout=read_timeout)
        return HTTPStore(parse_url(srv.url), retry=policy, parallel=8)

    def test_flaky_server_still_gives_exact_bytes(self, faulty_http_server: RangeHTTPServer, tmp_path: Path) -> None:
        files = {f"f{i}": payload(20_000 + i, seed=i) for i in range(40)}
        for k, v in files.items():
            (tmp_path / k).write_bytes(v)
        (tmp_path / "z.gz").write_bytes(gzip.compress(b"zipped" * 1000))
        faulty_http_server.set_faults(Faults(rate=0.3, max_consecutive=2, seed=7))
        store = self._store(faulty_http_server)
        with ThreadPoolExecutor(8) as ex:
            assert store.get_many(list(files), executor=ex) == files
            ranges = [(i * 100, i * 100 + 37) for i in range(0, 200, 7)]
            got = list(ex.map(lambda r: store.get("f3", r), ranges))
        assert got == [files["f3"][s:e] for s, e in ranges]
        assert store.get("z") == b"zipped" * 1000
        assert store.exists("f1") and not store.exists("nope")
        assert faulty_http_server.log.faults > 10  # the faults really happened

    @pytest.mark.parametrize("kind", ["503", "429", "500", "reset", "truncate"])
    def test_always_failing_server_raises_store_error(self, faulty_http_server: RangeHTTPServer,
                                                      tmp_path: Path, kind: str) -> None:
        (tmp_path / "k").write_bytes(payload())
        faulty_http_server.set_faults(Faults(always=kind))
        store = self._store(faulty_http_server, attempts=3)
        t = time.monotonic()
        with pytest.raises(StoreError) as err:
            store.get("k")
        assert time.monotonic() - t < 2
        msg = str(err.value)
        assert f"{faulty_http_server.url}/k" in msg and "3 attempts" in msg
        if kind.isdigit():
            assert f"HTTP {kind}" in msg
        assert faulty_http_server.log.count() == 3

    def test_slow_answers_time_out_and_are_retried(self, faulty_http_server: RangeHTTPServer, tmp_path: Path) -> None:
        (tmp_path / "k").write_bytes(b"late")
        faulty_http_server.set_faults(Faults(rate=1.0, kinds=("slow",), max_consecutive=1, stall=2.0))
        store = self._store(faulty_http_server, read_timeout=0.2)
        t = time.monotonic()
        assert store.get("k") == b"late"  # first try stalls and times out, the second answers
        assert time.monotonic() - t < 1.5  # did not wait for the stalled answer

    def test_latency_does_not_change_results(self, faulty_http_server: RangeHTTPServer, tmp_path: Path) -> None:
        (tmp_path / "k").write_bytes(b"abcdef")
        faulty_http_server.set_faults(Faults(latency=0.25))
        store = self._store(faulty_http_server)
        with ThreadPoolExecutor(8) as ex:
            t = time.monotonic()
            assert list(ex.map(lambda i: store.get("k", (i, i + 2)), range(4))) == [b"ab", b"bc", b"cd", b"de"]
            assert time.monotonic() - t < 0.75  # concurrent (0.25 s), not serial (1 s)

    @pytest.mark.parametrize("backend", ["gs", "s3"])
    def test_sdk_backends_retry_then_fail(self, faulty_http_server: RangeHTTPServer, backend: str) -> None:
        """GCS and S3 clients pointed at a server that always answers 503."""
        faulty_http_server.set_faults(Faults(always="503"))
        policy = RetryPolicy(attempts=3, base_delay=0.005, max_delay=0.02, connect_timeout=2, read_timeout=5)
        if backend == "gs":
            store: Store = GCSStore(parse_url("gs://bkt/v"), secrets={"endpoint": faulty_http_server.url}, retry=policy)
        else:
            store = S3Store(parse_url("s3://bkt/v"), retry=policy,
                            secrets={"endpoint_url": faulty_http_server.url, "anonymous": True})
        with pytest.raises(StoreError, match=r"HTTP 503.*3 attempts"):
            store.get("info")
        with pytest.raises(StoreError, match="3 attempts"):
            store.get("info", (0, 10))
        assert faulty_http_server.log.count() == 6

    def test_registry_factory_sets_the_policy(self, faulty_http_server: RangeHTTPServer) -> None:
        faulty_http_server.set_faults(Faults(always="503"))
        reg = StoreRegistry().with_scheme("http", partial(HTTPStore, retry=RetryPolicy(attempts=2, base_delay=0.001)))
        store = reg.open(faulty_http_server.url)
        with pytest.raises(StoreError, match="2 attempts"):
            store.get("k")


def test_backoff_is_bounded_and_jittered() -> None:
    p = RetryPolicy(base_delay=0.1, max_delay=1.0)
    delays = [p.backoff(a) for a in range(1, 10) for _ in range(20)]
    assert all(0 <= d <= 1.0 for d in delays) and len(set(delays)) > 100
    assert p.backoff(1, retry_after=0.5) >= 0.5
    assert p.backoff(1, retry_after=100) <= 1.0
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)


def test_coalesce_groups_nearby_ranges() -> None:
    groups = coalesce([(0, 10), (2_000_000, 2_000_010), (20, 30), (5, 8)], gap=100)
    assert groups == [((0, 30), [0, 3, 2]), ((2_000_000, 2_000_010), [1])]
    assert len(coalesce([(i * 1_000_000, i * 1_000_000 + 10) for i in range(40)], gap=2_000_000,
                        max_span=16_000_000)) == 3
