"""A user's first day on gs:// and s3://: anonymous reads with the current SDKs, credentials
found where Google, AWS and CloudVolume users keep them (and which wins), files that are there
but broken, and requester-pays buckets.

Nothing here leaves 127.0.0.1. The default Google/AWS endpoints are reached only through
``HTTPS_PROXY`` set to a loopback port that refuses connections, the metadata servers are
pointed at that port too, and a guard records any attempt to resolve a name that is not
loopback (the test then fails). Real servers (moto, fake-gcs-server) sit behind a recording
proxy where a test must see what was sent.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import uuid
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest

import cloudvolume_lite as cvl
from cloudvolume_lite.errors import RequestError
from cloudvolume_lite.stores import StoreRegistry, open_store
from cloudvolume_lite.stores.gcs import GCSStore
from cloudvolume_lite.stores.retry import RetryPolicy
from cloudvolume_lite.stores.s3 import S3Store
from fixtures_servers import LOOPBACK, S3_SECRETS, RecordingProxy, TunnelProxy, refused_port

PUBLIC_GS = "gs://neuroglancer-public-data/flyem_fib-25/image"
PUBLIC_S3 = "s3://open-neurodata/kasthuri/kasthuri11/image"
_LOOPBACK_NAMES = {"127.0.0.1", "::1", "localhost", "", None}
_ENV_CLEARED = (
    "GOOGLE_APPLICATION_CREDENTIALS", "CLOUD_VOLUME_DIR", "STORAGE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT",
    "GCLOUD_PROJECT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
    "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3", "CVL_S3_ENDPOINT", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN",
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy", "no_proxy",
)


# -- the environment: a fresh HOME, no credentials anywhere, no metadata servers, no DNS -----------
@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty HOME with nobody's credentials in it, and a guard against leaving loopback."""
    home = tmp_path / "home"
    home.mkdir()
    for name in _ENV_CLEARED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(home / ".config" / "gcloud"))  # gcloud's ADC file lives here
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / ".aws" / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / ".aws" / "config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # boto3's instance-role probe
    dead = f"{LOOPBACK}:{refused_port()}"
    # google-auth reads NO_GCE_CHECK once, when its metadata module is first imported; the
    # metadata address is read on every probe, so a probe that happens anyway hits a refused port
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    monkeypatch.setenv("GCE_METADATA_IP", dead)
    monkeypatch.setenv("GCE_METADATA_HOST", dead)

    leaks: list[object] = []
    real = socket.getaddrinfo

    def guarded(host, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        name = host.decode() if isinstance(host, bytes) else host
        if name not in _LOOPBACK_NAMES and not str(name).startswith("127."):
            leaks.append(name)
            raise socket.gaierror(socket.EAI_NONAME, f"test guard: {name} is not loopback")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)
    yield home
    assert not leaks, f"the code under test tried to resolve non-loopback names: {leaks}"


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> str:
    """Every proxied request (that is, every request to a non-loopback host) goes to a refused
    loopback port. Returns the proxy URL."""
    proxy = f"http://{LOOPBACK}:{refused_port()}"
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(name, proxy)
    return proxy


def _registry(attempts: int = 1) -> StoreRegistry:
    policy = RetryPolicy(attempts=attempts, base_delay=0.01, max_delay=0.05, connect_timeout=2, read_timeout=5)
    return StoreRegistry().with_scheme("gs", partial(GCSStore, retry=policy)).with_scheme(
        "s3", partial(S3Store, retry=policy))


def _cv_secret(folder: Path, name: str, content: dict | str) -> Path:
    path = folder / "secrets" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


# -- 1. anonymous access with the current SDKs ------------------------------------------------------
@pytest.mark.parametrize("secrets", [None, {"anonymous": True}], ids=["no-secrets", "anonymous"])
def test_anonymous_gs_offline_is_a_store_error_naming_the_url(offline: str, secrets: dict | None) -> None:
    """google-cloud-storage 3.x asks its session about mTLS: a plain requests.Session died with
    AttributeError before sending anything. Now the request goes out (to the refused proxy)."""
    with pytest.raises(cvl.StoreError) as e:
        cvl.Volume(PUBLIC_GS, secrets=secrets, stores=_registry())
    msg = str(e.value)
    assert f"{PUBLIC_GS}/info" in msg and "after 1 attempt" in msg, msg
    assert "storage.googleapis.com" in msg  # the default endpoint, reached only as far as the proxy


@pytest.mark.parametrize("secrets", [None, {"anonymous": True}], ids=["no-secrets", "anonymous"])
def test_anonymous_s3_offline_is_a_store_error_naming_the_url(offline: str, secrets: dict | None) -> None:
    with pytest.raises(cvl.StoreError) as e:
        cvl.Volume(PUBLIC_S3, secrets=secrets, stores=_registry())
    assert f"{PUBLIC_S3}/info" in str(e.value), str(e.value)


def _small_volume(url: str, secrets: dict) -> np.ndarray:
    truth = np.random.default_rng(3).integers(0, 255, (20, 18, 6, 1), dtype=np.uint8)
    with cvl.Volume.create(url, data_type="uint8", layer_type="image", size=(20, 18, 6), chunk_size=(8, 8, 4),
                           resolution=(4, 4, 40), secrets=secrets) as vol:
        vol[...] = truth
    return truth


def test_anonymous_gs_reads_against_fake_gcs_server(gcs_bucket: str, gcs_endpoint: str, recording_proxy) -> None:  # noqa: ANN001
    """The anonymous session the SDK now gets reads whole chunks (both paths) and sends no
    Authorization header; so does the emulator found through STORAGE_EMULATOR_HOST."""
    proxy: RecordingProxy = recording_proxy(gcs_endpoint)
    truth = _small_volume(f"gs://{gcs_bucket}/anon", {"endpoint": gcs_endpoint})
    for secrets in ({"endpoint": proxy.url}, {"endpoint": proxy.url, "anonymous": True}):
        with cvl.Volume(f"gs://{gcs_bucket}/anon", secrets=secrets) as vol:
            np.testing.assert_array_equal(vol[...], truth)
    seen = proxy.requests()
    assert seen and not [r for r in seen if "authorization" in r.headers]
    assert any("user-agent" not in r.headers for r in seen)  # the streaming fetcher took part


def _through_tunnel(monkeypatch: pytest.MonkeyPatch, proxy: TunnelProxy) -> None:
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(name, proxy.url)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(proxy.ca_file))  # google-cloud-storage (requests)
    monkeypatch.setenv("AWS_CA_BUNDLE", str(proxy.ca_file))  # botocore


def test_anonymous_gs_read_on_the_default_endpoint(gcs_endpoint: str, gcs_client, tmp_path: Path,  # noqa: ANN001
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole first day: ``Volume("gs://public-bucket/...")``, no credentials, the SDK's
    default endpoint. A loopback HTTPS proxy plays storage.googleapis.com (fake-gcs-server behind it)."""
    bucket = PUBLIC_GS.split("/")[2]
    if gcs_client.lookup_bucket(bucket) is None:
        gcs_client.create_bucket(bucket)
    url = f"gs://{bucket}/{tmp_path.name}"
    truth = _small_volume(url, {"endpoint": gcs_endpoint})
    proxy = TunnelProxy(gcs_endpoint, ("storage.googleapis.com",), tmp_path)
    try:
        _through_tunnel(monkeypatch, proxy)
        with cvl.Volume(url) as vol:
            np.testing.assert_array_equal(vol[...], truth)
        assert set(proxy.tunnels) == {"storage.googleapis.com:443"}
        seen = proxy.requests()
        assert len(seen) > 4 and not [r for r in seen if "authorization" in r.headers]
    finally:
        proxy.stop()


def test_anonymous_s3_read_on_the_default_endpoint(s3_endpoint: str, s3_client, tmp_path: Path,  # noqa: ANN001
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Likewise for a public S3 bucket: unsigned requests to <bucket>.s3.amazonaws.com (moto behind)."""
    bucket = f"cvl-public-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=bucket)
    s3_client.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "s3:ListBucket"],
         "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]}]}))
    url = f"s3://{bucket}/v"
    truth = _small_volume(url, {**S3_SECRETS, "endpoint_url": s3_endpoint})
    proxy = TunnelProxy(s3_endpoint, ("s3.amazonaws.com", "*.s3.amazonaws.com"), tmp_path)
    try:
        _through_tunnel(monkeypatch, proxy)
        with cvl.Volume(url) as vol:
            np.testing.assert_array_equal(vol[...], truth)
        assert set(proxy.tunnels) <= {f"{bucket}.s3.amazonaws.com:443", "s3.amazonaws.com:443"}, proxy.tunnels
        seen = proxy.requests()
        assert len(seen) > 4 and not [r for r in seen if "authorization" in r.headers]
    finally:
        proxy.stop()


# -- 2./3. which credentials win, and broken ones -------------------------------------------------
class TokenServer(ThreadingHTTPServer):
    """An OAuth token endpoint on 127.0.0.1 that records who asked (a service account's
    ``client_email``, from the JWT assertion) and hands out a token."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__((LOOPBACK, 0), _TokenHandler)
        self.who: list[str] = []
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def token_uri(self) -> str:
        return f"http://{LOOPBACK}:{self.server_address[1]}/token"


class _TokenHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: TokenServer

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        form = parse_qs(self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode())
        claims = form["assertion"][0].split(".")[1]
        who = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))["iss"]
        self.server.who.append(who)
        body = json.dumps({"access_token": f"token-for-{who}", "expires_in": 3600, "token_type": "Bearer"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def private_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.fixture
def token_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[TokenServer]:
    monkeypatch.setenv("NO_PROXY", LOOPBACK)  # token requests go straight to it, the rest to the proxy
    monkeypatch.setenv("no_proxy", LOOPBACK)
    srv = TokenServer()
    yield srv
    srv.shutdown()
    srv.server_close()


def _service_account(who: str, key: str, token_uri: str) -> dict:
    return {"type": "service_account", "project_id": f"proj-{who}", "private_key_id": f"id-{who}",
            "private_key": key, "client_email": f"{who}@proj-{who}.iam.gserviceaccount.com",
            "client_id": "1", "token_uri": token_uri}


def _open_offline(url: str, secrets: object = None) -> None:
    """Open ``url``: offline, it fails on its first request, after any credentials were used."""
    with pytest.raises(cvl.StoreError) as e:
        cvl.Volume(url, secrets=secrets, stores=_registry())
    assert f"{url}/info" in str(e.value), str(e.value)  # a network failure, not a setup one


def test_google_credentials_precedence(offline: str, token_server: TokenServer, private_key: str, home: Path,
                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """explicit secrets > GOOGLE_APPLICATION_CREDENTIALS > gcloud ADC > <bucket>-google-secret.json >
    google-secret.json > anonymous; CLOUD_VOLUME_DIR moves the CloudVolume folder."""
    uri = token_server.token_uri

    def account(who: str) -> dict:
        return _service_account(who, private_key, uri)

    def first_user(url: str = "gs://bkt/v", secrets: object = None) -> str | None:
        token_server.who.clear()
        _open_offline(url, secrets)
        return token_server.who[0].split("@")[0] if token_server.who else None

    explicit = tmp_path / "explicit.json"
    explicit.write_text(json.dumps(account("explicit")))
    gac = tmp_path / "gac.json"
    gac.write_text(json.dumps(account("gac")))
    adc = home / ".config" / "gcloud" / "application_default_credentials.json"
    adc.parent.mkdir(parents=True)
    adc.write_text(json.dumps(account("adc")))
    _cv_secret(home / ".cloudvolume", "google-secret.json", account("cv"))
    _cv_secret(home / ".cloudvolume", "bkt-google-secret.json", account("cvbucket"))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(gac))

    assert first_user(secrets=str(explicit)) == "explicit"
    assert first_user(secrets={"credentials": account("dict")}) == "dict"
    assert first_user() == "gac"
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS")
    assert first_user() == "adc"
    adc.unlink()
    assert first_user() == "cvbucket"
    assert first_user("gs://other/v") == "cv"
    moved = tmp_path / "cvdir"
    _cv_secret(moved, "google-secret.json", account("moved"))
    monkeypatch.setenv("CLOUD_VOLUME_DIR", str(moved))
    assert first_user() == "moved"
    (moved / "secrets" / "google-secret.json").unlink()
    assert first_user() is None  # nobody: anonymous
    assert first_user(secrets={"anonymous": True}) is None


def test_google_application_credentials_missing_file(offline: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """It used to fall back to anonymous access without a word."""
    missing = tmp_path / "no-such-key.json"
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(missing))
    with pytest.raises(cvl.StoreError) as e:
        cvl.Volume("gs://bkt/v", stores=_registry())
    msg = str(e.value)
    assert str(missing) in msg and "GOOGLE_APPLICATION_CREDENTIALS" in msg and "does not exist" in msg, msg
    assert "gs://bkt/v" in msg


@pytest.mark.parametrize("content, says", [
    ("{not json", "not valid JSON"),
    ('["a", "list"]', "not an object"),
    ('{"client_email": "x@y"}', 'no "type" key'),
    (None, "cannot be used"),  # a service account whose private key is not a key
], ids=["not-json", "not-object", "no-type", "bad-key"])
def test_google_application_credentials_invalid_file(offline: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     content: str | None, says: str) -> None:
    bad = tmp_path / "bad.json"
    secret = "-----BEGIN PRIVATE KEY-----SECRET-VALUE-123-----END PRIVATE KEY-----"
    bad.write_text(content if content is not None else json.dumps(
        _service_account("bad", secret, f"http://{LOOPBACK}:1/token")))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(bad))
    with pytest.raises(cvl.StoreError) as e:
        cvl.Volume("gs://bkt/v", stores=_registry())
    msg = str(e.value)
    assert str(bad) in msg and says in msg, msg
    assert "SECRET-VALUE" not in msg


def test_broken_gcloud_adc_file(offline: str, home: Path) -> None:
    adc = home / ".config" / "gcloud" / "application_default_credentials.json"
    adc.parent.mkdir(parents=True)
    adc.write_text('{"type": "authorized_user", "client_secret": "SECRET-VALUE-321"}')
    with pytest.raises(cvl.StoreError) as e:
        cvl.Volume("gs://bkt/v", stores=_registry())
    msg = str(e.value)
    assert str(adc) in msg and "SECRET-VALUE" not in msg, msg


@pytest.mark.parametrize("name", ["google-secret.json", "bkt-google-secret.json"])
@pytest.mark.parametrize("content, says", [
    ("{not json", "not valid JSON"),
    ('{"project_id": "p"}', 'no "type" key'),
    ('{"type": "service_account", "private_key": "SECRET-VALUE-456"}', "not usable credentials"),
], ids=["not-json", "no-type", "incomplete"])
def test_broken_cloudvolume_google_secret(offline: str, home: Path, name: str, content: str, says: str) -> None:
    path = _cv_secret(home / ".cloudvolume", name, content)
    with pytest.raises(cvl.StoreError) as e:
        cvl.Volume("gs://bkt/v", stores=_registry())
    msg = str(e.value)
    assert str(path) in msg and says in msg, msg
    assert "SECRET-VALUE" not in msg


def _signer(seen: list, i: int = -1) -> tuple[str, str] | None:
    """(access key id, region) from a SigV4 Authorization header; None if unsigned."""
    auth = seen[i].headers.get("authorization")
    if auth is None:
        return None
    scope = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/")
    return scope[0], scope[2]


def test_aws_credentials_precedence(s3_endpoint: str, s3_client, s3_bucket: str, recording_proxy, home: Path,  # noqa: ANN001
                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """explicit secrets > boto3's chain (environment, ~/.aws) > <bucket>-aws-secret.json >
    aws-secret.json > unsigned; the file's AWS_DEFAULT_REGION goes with its keys."""
    proxy: RecordingProxy = recording_proxy(s3_endpoint)
    s3_client.put_object(Bucket=s3_bucket, Key="v/info", Body=b"{}")

    def signer(secrets: dict | None = None) -> tuple[str, str] | None:
        proxy.clear()
        store = open_store(f"s3://{s3_bucket}/v", secrets={"endpoint_url": proxy.url, **(secrets or {})})
        try:
            store.exists("info")
        except cvl.StoreError as e:  # moto refuses unsigned requests to a private bucket: fine here
            assert "HTTP 403" in str(e)
        finally:
            store.close()
        return _signer(proxy.requests())

    cv = home / ".cloudvolume"
    _cv_secret(cv, "aws-secret.json", {"AWS_ACCESS_KEY_ID": "CVLFILEKEY", "AWS_SECRET_ACCESS_KEY": "s1",
                                       "AWS_DEFAULT_REGION": "eu-west-2"})
    bucket_file = _cv_secret(cv, f"{s3_bucket}-aws-secret.json",
                             {"AWS_ACCESS_KEY_ID": "CVLBUCKETKEY", "AWS_SECRET_ACCESS_KEY": "s2",
                              "AWS_SESSION_TOKEN": "t2"})
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "CVLENVKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s0")

    assert signer({"aws_access_key_id": "CVLEXPLICIT", "aws_secret_access_key": "s", "region_name": "ap-south-1"}) \
        == ("CVLEXPLICIT", "ap-south-1")
    assert signer()[0] == "CVLENVKEY"
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    aws = home / ".aws"
    aws.mkdir()
    (aws / "credentials").write_text("[default]\naws_access_key_id = CVLPROFILEKEY\naws_secret_access_key = s3\n")
    assert signer()[0] == "CVLPROFILEKEY"
    (aws / "credentials").unlink()
    assert signer()[0] == "CVLBUCKETKEY"
    assert proxy.requests()[-1].headers.get("x-amz-security-token") == "t2"
    bucket_file.unlink()
    assert signer() == ("CVLFILEKEY", "eu-west-2")
    assert signer({"region_name": "us-west-1"}) == ("CVLFILEKEY", "us-west-1")
    assert signer({"anonymous": True}) is None
    moved = tmp_path / "cvdir"
    moved.mkdir()
    monkeypatch.setenv("CLOUD_VOLUME_DIR", str(moved))
    assert signer() is None  # nobody anywhere: unsigned


@pytest.mark.parametrize("name", ["aws-secret.json", "BUCKET-aws-secret.json"])
@pytest.mark.parametrize("content, says", [
    ("{not json", "not valid JSON"),
    ('{"AWS_SECRET_ACCESS_KEY": "SECRET-VALUE-789"}', "lacks AWS_ACCESS_KEY_ID"),
    ('{"aws_access_key_id": "A", "aws_secret_access_key": "SECRET-VALUE-789"}', "lacks AWS_ACCESS_KEY_ID and"),
], ids=["not-json", "no-key-id", "lowercase-keys"])
def test_broken_cloudvolume_aws_secret(s3_endpoint: str, s3_bucket: str, home: Path, name: str, content: str,
                                       says: str) -> None:
    path = _cv_secret(home / ".cloudvolume", name.replace("BUCKET", s3_bucket), content)
    url = f"s3://{s3_bucket}/v"
    with pytest.raises(cvl.StoreError) as e:
        cvl.Volume(url, secrets={"endpoint_url": s3_endpoint}, stores=_registry())
    msg = str(e.value)
    assert str(path) in msg and says in msg and url in msg, msg
    assert "SECRET-VALUE" not in msg


# -- 4. requester pays -----------------------------------------------------------------------------
def _exercise(store: cvl.Store) -> None:
    """Every kind of request a store makes: writes, whole, ranged and streamed reads, listing,
    existence, conditional create, delete."""
    for i in range(4):
        store.put(f"k{i}", bytes([i]) * 1000)
    assert store.get("k0") == b"\x00" * 1000
    assert store.get("k1", (10, 20)) == b"\x01" * 10
    assert dict(store.iter_get([f"k{i}" for i in range(4)] + ["absent"])) == {
        **{f"k{i}": bytes([i]) * 1000 for i in range(4)}, "absent": None}
    assert sorted(store.list("k")) == [f"k{i}" for i in range(4)]
    assert store.exists("k2") and not store.exists("absent")
    assert store.create_exclusive("lockish", b"") and not store.create_exclusive("lockish", b"")
    store.delete("k3")
    child = store.child("sub")  # children pay too
    child.put("c", b"c")
    assert child.get("c") == b"c"


@pytest.mark.parametrize("secrets", [{"user_project": "my-project"}, {"requester_pays": "my-project"},
                                     {"requester_pays": True, "project": "my-project"}],
                         ids=["user_project", "requester_pays-alias", "requester_pays-true"])
def test_gcs_requester_pays_sends_user_project_everywhere(gcs_endpoint: str, gcs_bucket: str, recording_proxy,  # noqa: ANN001
                                                          secrets: dict) -> None:
    proxy: RecordingProxy = recording_proxy(gcs_endpoint)
    store = open_store(f"gs://{gcs_bucket}/rp", secrets={"endpoint": proxy.url, **secrets})
    try:
        _exercise(store)
    finally:
        store.close()
    seen = proxy.requests()
    missing = [f"{r.method} {r.path}" for r in seen if parse_qs(urlsplit(r.path).query).get("userProject") != ["my-project"]]
    assert seen and not missing, missing
    streamed = [r for r in seen if "user-agent" not in r.headers]
    assert len(streamed) >= 4 and all("/download/storage/v1/" in r.path for r in streamed)
    methods = {r.method for r in seen}
    assert {"GET", "POST", "DELETE"} <= methods, methods


def test_s3_requester_pays_sends_the_header_everywhere(s3_endpoint: str, s3_bucket: str, s3_secrets: dict,
                                                       recording_proxy) -> None:  # noqa: ANN001
    proxy: RecordingProxy = recording_proxy(s3_endpoint)
    store = open_store(f"s3://{s3_bucket}/rp", secrets={**s3_secrets, "endpoint_url": proxy.url,
                                                        "requester_pays": True})
    try:
        _exercise(store)
    finally:
        store.close()
    seen = proxy.requests()
    missing = [f"{r.method} {r.path}" for r in seen if r.headers.get("x-amz-request-payer") != "requester"]
    assert seen and not missing, missing
    presigned = [r for r in seen if "X-Amz-Signature=" in r.path]
    assert len(presigned) >= 4 and all("x-amz-request-payer" in parse_qs(urlsplit(r.path).query)["X-Amz-SignedHeaders"][0]
                                       for r in presigned)
    assert {"GET", "PUT", "HEAD", "DELETE"} <= {r.method for r in seen}


def test_requester_pays_bad_values_are_refused() -> None:
    with pytest.raises(RequestError, match="requester_pays"):
        open_store("s3://b/v", secrets={"requester_pays": "yes"})
    with pytest.raises(RequestError, match="project to bill"):
        open_store("gs://b/v", secrets={"requester_pays": True})
    with pytest.raises(RequestError, match="user_project"):
        open_store("gs://b/v", secrets={"user_project": 42})


def test_no_requester_pays_sends_nothing(gcs_endpoint: str, gcs_bucket: str, s3_endpoint: str, s3_bucket: str,
                                         s3_secrets: dict, recording_proxy) -> None:  # noqa: ANN001
    gproxy: RecordingProxy = recording_proxy(gcs_endpoint)
    sproxy: RecordingProxy = recording_proxy(s3_endpoint)
    for store in (open_store(f"gs://{gcs_bucket}/plain", secrets={"endpoint": gproxy.url}),
                  open_store(f"s3://{s3_bucket}/plain", secrets={**s3_secrets, "endpoint_url": sproxy.url})):
        try:
            store.put("a", b"a")
            store.put("b", b"b")
            assert dict(store.iter_get(["a", "b"])) == {"a": b"a", "b": b"b"}
        finally:
            store.close()
    assert not [r for r in gproxy.requests() if "userProject" in r.path]
    assert not [r for r in sproxy.requests() if "x-amz-request-payer" in r.headers]


def test_installed_sdks_are_the_ones_the_extras_allow() -> None:
    """These tests ran against the installed SDKs; the gcs/s3 extras must admit exactly those
    (a new major release is a reason to look again, not a silent upgrade)."""
    import tomllib
    from importlib.metadata import version

    from packaging.requirements import Requirement

    extras = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    for line in extras["gcs"] + extras["s3"]:
        req = Requirement(line)
        assert req.specifier.contains(version(req.name)), (line, version(req.name))
        assert any(spec.operator == "<" for spec in req.specifier), f"{line}: no upper bound"
