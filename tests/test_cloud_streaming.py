"""gs:// and s3:// batches through the one-thread fetcher (JSON-API media downloads; presigned
GETs) against fake-gcs-server and moto's S3 server on 127.0.0.1: exact bytes, transport gzip
undone, hashes checked, and damaged transfers (through the fault proxy of test_faults) done
again through the SDKs."""

from __future__ import annotations

import gzip
from functools import partial

import numpy as np

import cloudvolume_lite as cvl
from cloudvolume_lite.stores import StoreRegistry, open_store
from cloudvolume_lite.stores.gcs import GCSStore, _hash_ok
from cloudvolume_lite.stores.retry import RetryPolicy
from cloudvolume_lite.stores.s3 import S3Store
from test_faults import FaultProxy


def _seed(gcs_client, bucket: str, prefix: str, n: int = 30) -> dict[str, bytes]:  # noqa: ANN001
    rng = np.random.default_rng(2)
    b = gcs_client.bucket(bucket)
    out = {}
    for i in range(n):
        data = rng.integers(0, 256, int(rng.integers(0, 200_000)), dtype=np.uint8).tobytes()
        blob = b.blob(f"{prefix}/k{i}")
        if i % 3 == 0:  # stored gzip, served as stored with Content-Encoding: gzip
            blob.content_encoding = "gzip"
            blob.upload_from_string(gzip.compress(data, mtime=0))
        else:
            blob.upload_from_string(data)
        out[f"k{i}"] = data
    return out


def test_gcs_batches_stream_with_hashes_checked(gcs_client, gcs_bucket: str, gcs_endpoint: str) -> None:  # noqa: ANN001
    want = _seed(gcs_client, gcs_bucket, "p")
    store = open_store(f"gs://{gcs_bucket}/p", secrets={"endpoint": gcs_endpoint}, parallel=8)
    got = dict(store.iter_get([*want, "missing"]))
    assert got == {**want, "missing": None}
    assert store._fast.get().stats == {"streamed": len(want) + 1, "redone": 0}  # type: ignore[attr-defined]


def test_gcs_damaged_transfers_are_redone(gcs_client, gcs_bucket: str, gcs_endpoint: str) -> None:  # noqa: ANN001
    want = _seed(gcs_client, gcs_bucket, "q")
    proxy = FaultProxy(gcs_endpoint, rate=0.4, kinds=("flip", "short", "badlength", "503", "reset"), seed=3)
    try:
        policy = RetryPolicy(attempts=8, base_delay=0.005, max_delay=0.02, connect_timeout=2, read_timeout=5)
        reg = StoreRegistry().with_scheme("gs", partial(GCSStore, retry=policy))
        store = reg.open(f"gs://{gcs_bucket}/q", secrets={"endpoint": proxy.url}, parallel=6)
        assert dict(store.iter_get(list(want))) == want
        stats = store._fast.get().stats  # type: ignore[attr-defined]
        assert stats["redone"] > 3 and stats["streamed"] > 3, stats
        assert proxy.injected.get("flip", 0) > 0  # caught by the crc32c check, not passed on
    finally:
        proxy.shutdown()


def test_gcs_volume_reads_stream(gcs_client, gcs_bucket: str, gcs_endpoint: str, tmp_path) -> None:  # noqa: ANN001
    truth = np.random.default_rng(3).integers(0, 2**16, (40, 40, 16, 1), dtype=np.uint16)
    with cvl.Volume.create(f"gs://{gcs_bucket}/v", data_type="uint16", layer_type="image", size=truth.shape[:3],
                           chunk_size=(16, 16, 8), resolution=(1, 1, 1), secrets={"endpoint": gcs_endpoint}) as w:
        w[...] = truth  # gzip'd objects, as object stores get by default
    with cvl.Volume(f"gs://{gcs_bucket}/v", secrets={"endpoint": gcs_endpoint}) as vol:
        np.testing.assert_array_equal(vol[...], truth)
        assert vol.chunk_store()._fast.get().stats["streamed"] == 18  # type: ignore[attr-defined]


def test_hash_header_parsing() -> None:
    body = b"precomputed"
    # from fake-gcs-server / GCS for this body
    import base64
    import hashlib
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    assert _hash_ok(body, f"md5={md5}")
    assert not _hash_ok(body + b"!", f"md5={md5}")
    assert _hash_ok(bytearray(body), "")  # nothing to check against
    import google_crc32c
    import struct
    crc = base64.b64encode(struct.pack(">I", google_crc32c.value(body))).decode()
    assert _hash_ok(body, f"crc32c={crc},md5={md5}")
    assert not _hash_ok(b"Precomputed", f"crc32c={crc},md5={md5}")


def test_gcs_batches_carry_the_credentials_token(gcs_client, gcs_bucket: str, gcs_endpoint: str) -> None:  # noqa: ANN001
    """Service-account credentials whose token endpoint is a loopback server: the streamed
    downloads carry the same bearer token as the SDK's requests."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Token(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = json.dumps({"access_token": "tok-123", "expires_in": 3600, "token_type": "Bearer"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a: object) -> None:
            pass

    tokens = ThreadingHTTPServer(("127.0.0.1", 0), Token)
    threading.Thread(target=tokens.serve_forever, daemon=True).start()
    want = _seed(gcs_client, gcs_bucket, "t", n=6)
    proxy = FaultProxy(gcs_endpoint, rate=0.0, kinds=("503",))
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
        # a service account's token_uri is honoured (authorized_user files always use Google's)
        creds = {"type": "service_account", "project_id": "p", "private_key_id": "k1", "private_key": key,
                 "client_email": "cvl@p.iam.gserviceaccount.com", "client_id": "1",
                 "token_uri": f"http://127.0.0.1:{tokens.server_address[1]}/token"}
        store = open_store(f"gs://{gcs_bucket}/t", secrets={"endpoint": proxy.url, "credentials": creds})
        assert dict(store.iter_get(list(want))) == want
        downloads = [auth for method, path, auth in proxy.seen if "alt=media" in path]
        assert len(downloads) == len(want) and set(downloads) == {"Bearer tok-123"}
        assert store._fast.get().stats["redone"] == 0  # type: ignore[attr-defined]
    finally:
        proxy.shutdown()
        tokens.shutdown()


# -- S3 ------------------------------------------------------------------------------------------------
def _seed_s3(s3_client, bucket: str, prefix: str, n: int = 30) -> dict[str, bytes]:  # noqa: ANN001
    rng = np.random.default_rng(4)
    out = {}
    for i in range(n):
        data = rng.integers(0, 256, int(rng.integers(0, 200_000)), dtype=np.uint8).tobytes()
        if i % 3 == 0:
            s3_client.put_object(Bucket=bucket, Key=f"{prefix}/k{i}", Body=gzip.compress(data, mtime=0), ContentEncoding="gzip")
        else:
            s3_client.put_object(Bucket=bucket, Key=f"{prefix}/k{i}", Body=data)
        out[f"k{i}"] = data
    return out


def test_s3_batches_stream_with_etags_checked(s3_client, s3_bucket: str, s3_secrets: dict) -> None:  # noqa: ANN001
    want = _seed_s3(s3_client, s3_bucket, "p")
    store = open_store(f"s3://{s3_bucket}/p", secrets=s3_secrets, parallel=8)
    assert dict(store.iter_get([*want, "missing"])) == {**want, "missing": None}
    assert store._fast.get().stats == {"streamed": len(want) + 1, "redone": 0}  # type: ignore[attr-defined]


def test_s3_damaged_transfers_are_redone(s3_client, s3_bucket: str, s3_endpoint: str, s3_secrets: dict) -> None:  # noqa: ANN001
    want = _seed_s3(s3_client, s3_bucket, "q")
    proxy = FaultProxy(s3_endpoint, rate=0.4, kinds=("flip", "short", "badlength", "503", "reset"), seed=5)
    try:
        policy = RetryPolicy(attempts=8, base_delay=0.005, max_delay=0.02, connect_timeout=2, read_timeout=5)
        reg = StoreRegistry().with_scheme("s3", partial(S3Store, retry=policy))
        store = reg.open(f"s3://{s3_bucket}/q", secrets={**s3_secrets, "endpoint_url": proxy.url}, parallel=6)
        assert dict(store.iter_get(list(want))) == want
        stats = store._fast.get().stats  # type: ignore[attr-defined]
        assert stats["redone"] > 3 and stats["streamed"] > 3, stats
        assert proxy.injected.get("flip", 0) > 0  # caught by the ETag check, not passed on
    finally:
        proxy.shutdown()


def test_s3_anonymous_batches_stream(s3_client, s3_bucket: str, s3_endpoint: str) -> None:  # noqa: ANN001
    """Unsigned requests (a public bucket): the presigned URL is a plain one."""
    import json

    want = _seed_s3(s3_client, s3_bucket, "pub", n=5)
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                                                        "Resource": f"arn:aws:s3:::{s3_bucket}/*"}]}
    s3_client.put_bucket_policy(Bucket=s3_bucket, Policy=json.dumps(policy))
    store = open_store(f"s3://{s3_bucket}/pub", secrets={"endpoint_url": s3_endpoint, "anonymous": True})
    assert dict(store.iter_get(list(want))) == want
    assert store._fast.get().stats["streamed"] == len(want)  # type: ignore[attr-defined]
