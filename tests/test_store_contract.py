"""The shipped store contract (``cloudvolume_lite.testing.StoreContract``), run against every
backend (memory, local disk, moto's S3, fake-gcs-server, the suite's Range-capable HTTP server)
and every adapter (sharded, LRU, disk cache).

Each subclass seeds and inspects data around the store under test: the memory bucket dict,
files on disk, boto3, the google client, files under the HTTP server's root, a second
ShardedStore over the same inner store.
"""

from __future__ import annotations

import functools
import gzip
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import pytest

from cloudvolume_lite import compression
from cloudvolume_lite.errors import UnsupportedEncodingError
from cloudvolume_lite.info import Info
from cloudvolume_lite.stores import open_store
from cloudvolume_lite.stores.base import Store
from cloudvolume_lite.stores.disk_cache import MAGIC, DiskCache, DiskCacheStore
from cloudvolume_lite.stores.lru import ChunkLRU, LRUStore
from cloudvolume_lite.stores.memory import BUCKETS, MemoryStore
from cloudvolume_lite.stores.recheck import Recheck
from cloudvolume_lite.stores.sharded import ShardedStore
from cloudvolume_lite.testing import StoreContract, payload
from fixtures_servers import RangeHTTPServer

_SUFFIXES = (("", None), (".gz", "gzip"), (".br", "br"), (".zstd", "zstd"))
C = TypeVar("C", bound=type)

#: compression.decompress hands back libdeflate's bytearray for gzip (bytes without libdeflate)
GUNZIP_GIVES_BYTEARRAY = type(compression.decompress(gzip.compress(b"x"), "gzip")) is not bytes
BYTEARRAY_BUG = ("compression._gunzip returns deflate.gzip_decompress's bytearray, so get() of a gzip'd "
                 "object is a mutable bytearray, not bytes")

def known_bug(name: str, reason: str, condition: bool = True) -> Callable[[C], C]:
    """Mark the inherited contract test ``name`` of a class as a known bug (strict xfail)."""

    def mark(cls: C) -> C:
        inherited = getattr(cls, name)

        @functools.wraps(inherited)
        def test(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            return inherited(self, *args, **kwargs)

        setattr(cls, name, pytest.mark.xfail(condition, strict=True, reason=reason)(test))
        return cls

    return mark


def test_importing_the_package_does_not_import_the_contract() -> None:
    code = "import sys, cloudvolume_lite; assert 'cloudvolume_lite.testing' not in sys.modules; " \
           "assert 'pytest' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- memory --------------------------------------------------------------------------------------
def _mem_path(url_path: str, key: str) -> str:
    return f"{url_path}/{key}".strip("/") if url_path else key


class MemoryBacked(StoreContract):
    """Seeds and inspects ``mem://`` data in the process-wide bucket dict."""

    @pytest.fixture(autouse=True)
    def _bucket(self) -> Iterator[None]:
        self.bucket = f"contract-{uuid.uuid4().hex}"
        yield
        BUCKETS.drop(self.bucket)

    def _memory(self, store: Store) -> MemoryStore:
        return store  # type: ignore[return-value]

    def seed(self, store: Store, key: str, data: bytes, content_encoding: str | None = None) -> None:
        mem = self._memory(store)
        BUCKETS.write(mem.url.netloc, _mem_path(mem.url.path, key), data, content_encoding)

    def _item(self, store: Store, key: str) -> tuple[bytes, str | None, str] | None:
        mem = self._memory(store)
        return BUCKETS.bucket(mem.url.netloc).get(_mem_path(mem.url.path, key))

    def stored(self, store: Store, key: str) -> bytes | None:
        item = self._item(store, key)
        return None if item is None else item[0]

    def stored_encoding(self, store: Store, key: str) -> str | None:
        item = self._item(store, key)
        assert item is not None, key
        return item[1]


@known_bug("test_get_returns_bytes", BYTEARRAY_BUG, GUNZIP_GIVES_BYTEARRAY)
class TestMemoryStore(MemoryBacked):
    def make_store(self) -> Store:
        return open_store(f"mem://{self.bucket}/vol")


# -- local disk ----------------------------------------------------------------------------------
@known_bug("test_get_returns_bytes", BYTEARRAY_BUG, GUNZIP_GIVES_BYTEARRAY)
class TestLocalStore(StoreContract):
    @pytest.fixture(autouse=True)
    def _root(self, tmp_path: Path) -> None:
        self.root = tmp_path / "root"

    def make_store(self) -> Store:
        return open_store(str(self.root / "vol"))

    def seed(self, store: Store, key: str, data: bytes, content_encoding: str | None = None) -> None:
        suffix = dict((e, s) for s, e in _SUFFIXES)[content_encoding]
        path = Path(store.url.path) / (key + suffix)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def _found(self, store: Store, key: str) -> tuple[Path, str | None] | None:
        for suffix, enc in _SUFFIXES:
            path = Path(store.url.path) / (key + suffix)
            if path.is_file():
                return path, enc
        return None

    def stored(self, store: Store, key: str) -> bytes | None:
        found = self._found(store, key)
        return None if found is None else found[0].read_bytes()

    def stored_encoding(self, store: Store, key: str) -> str | None:
        found = self._found(store, key)
        assert found is not None, key
        return found[1]

    def test_gzip_is_a_gz_sibling(self, store: Store) -> None:
        import gzip

        base = Path(store.url.path)
        store.put("c", gzip.compress(b"abc" * 100), content_encoding="gzip")
        assert (base / "c.gz").is_file() and not (base / "c").exists()
        store.put("c", b"plain")
        assert (base / "c").read_bytes() == b"plain" and not (base / "c.gz").exists()
        assert sorted(store.list()) == ["c"]


# -- S3 (moto) -----------------------------------------------------------------------------------
class TestS3Store(StoreContract):
    @pytest.fixture(autouse=True)
    def _s3(self, s3_bucket: str, s3_secrets: dict, s3_client) -> None:  # noqa: ANN001
        self.bucket, self.secrets, self.client = s3_bucket, s3_secrets, s3_client

    def make_store(self) -> Store:
        return open_store(f"s3://{self.bucket}/data/vol", secrets=self.secrets, parallel=8)

    def _key(self, store: Store, key: str) -> str:
        return f"{store.url.path}/{key}".strip("/")

    def seed(self, store: Store, key: str, data: bytes, content_encoding: str | None = None) -> None:
        extra = {"ContentEncoding": content_encoding} if content_encoding else {}
        self.client.put_object(Bucket=store.url.netloc, Key=self._key(store, key), Body=data, **extra)

    def stored(self, store: Store, key: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=store.url.netloc, Key=self._key(store, key))["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None

    def stored_encoding(self, store: Store, key: str) -> str | None:
        return self.client.head_object(Bucket=store.url.netloc, Key=self._key(store, key)).get("ContentEncoding")


# -- GCS (fake-gcs-server) -----------------------------------------------------------------------
class TestGCSStore(StoreContract):
    @pytest.fixture(autouse=True)
    def _gcs(self, gcs_bucket: str, gcs_endpoint: str, gcs_client) -> None:  # noqa: ANN001
        self.bucket, self.endpoint, self.client = gcs_bucket, gcs_endpoint, gcs_client

    def make_store(self) -> Store:
        return open_store(f"gs://{self.bucket}/data/vol", secrets={"endpoint": self.endpoint}, parallel=8)

    def _blob(self, store: Store, key: str):  # noqa: ANN202
        return self.client.bucket(store.url.netloc).blob(f"{store.url.path}/{key}".strip("/"))

    def seed(self, store: Store, key: str, data: bytes, content_encoding: str | None = None) -> None:
        blob = self._blob(store, key)
        blob.content_encoding = content_encoding
        blob.upload_from_string(data, content_type="application/octet-stream")

    def stored(self, store: Store, key: str) -> bytes | None:
        from google.api_core.exceptions import NotFound

        try:
            return self._blob(store, key).download_as_bytes(raw_download=True)
        except NotFound:
            return None

    def stored_encoding(self, store: Store, key: str) -> str | None:
        blob = self.client.bucket(store.url.netloc).get_blob(f"{store.url.path}/{key}".strip("/"))
        assert blob is not None, key
        return blob.content_encoding


# -- HTTP (read-only) ----------------------------------------------------------------------------
class TestHTTPStore(StoreContract):
    """Seeded by writing files into the served directory (``NAME.gz``: Content-Encoding gzip,
    like nginx's gzip_static)."""

    @pytest.fixture(autouse=True)
    def _http(self, http_server: RangeHTTPServer, http_root: Path) -> None:
        self.server, self.root = http_server, http_root

    def make_store(self) -> Store:
        return open_store(f"{self.server.url}/t-{uuid.uuid4().hex}/vol", parallel=8)

    def seed(self, store: Store, key: str, data: bytes, content_encoding: str | None = None) -> None:
        assert content_encoding in (None, "gzip")
        path = self.root / store.url.path / (key + (".gz" if content_encoding else ""))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def stored(self, store: Store, key: str) -> bytes | None:
        for suffix in ("", ".gz"):
            path = self.root / store.url.path / (key + suffix)
            if path.is_file():
                return path.read_bytes()
        return None

    def test_declares_read_only(self, store: Store) -> None:
        assert store.supports_writes is False
        assert store.supports_listing is False
        assert store.supports_conditional_create is False


# -- sharded -------------------------------------------------------------------------------------
def _sharded_scale(data_encoding: str, minishard_index_encoding: str):  # noqa: ANN202
    """A small sharded uint8 scale: 8x8x4 grid of 8^3 chunks, 4 shards of 4 minishards, murmurhash."""
    return Info.from_json({
        "type": "image", "data_type": "uint8", "num_channels": 1,
        "scales": [{"key": "s", "size": [64, 64, 32], "resolution": [1, 1, 1], "chunk_sizes": [[8, 8, 8]],
                    "encoding": "raw", "voxel_offset": [0, 0, 0],
                    "sharding": {"@type": "neuroglancer_uint64_sharded_v1", "preshift_bits": 0,
                                 "hash": "murmurhash3_x86_128", "minishard_bits": 2, "shard_bits": 2,
                                 "minishard_index_encoding": minishard_index_encoding,
                                 "data_encoding": data_encoding}}],
    }).scales[0]


class ShardedContract(MemoryBacked):
    """A ShardedStore over a memory store; keys are the scale's chunk names. Seeded and
    inspected through a second ShardedStore (fresh index caches) over the same inner store."""

    hierarchical_keys = False
    byte_ranges = False
    transport_compression = False  # put(content_encoding=) is undone; shards use data_encoding
    data_encoding = "raw"
    minishard_index_encoding = "raw"

    #: the store's staleness setting: True holds it to the full contract, external writes included
    recheck: object = True

    def make_store(self) -> Store:
        scale = _sharded_scale(self.data_encoding, self.minishard_index_encoding)
        return ShardedStore(open_store(f"mem://{self.bucket}/vol/s"), scale, recheck=Recheck(self.recheck))  # type: ignore[arg-type]

    def key(self, name: str) -> str:
        names: dict[str, str] = self.__dict__.setdefault("_names", {})
        if name not in names:
            scale = _sharded_scale("raw", "raw")
            gx, gy, _ = scale.grid_size
            i = len(names) * 5  # spread over shards and minishards
            names[name] = scale.chunk_name((i % gx, (i // gx) % gy, i // (gx * gy)))
        return names[name]

    def _other(self, store: Store) -> ShardedStore:
        assert isinstance(store, ShardedStore)
        return ShardedStore(store.inner, store.layout.scale)

    def seed(self, store: Store, key: str, data: bytes, content_encoding: str | None = None) -> None:
        self._other(store).put(key, data, content_encoding=content_encoding)

    def stored(self, store: Store, key: str) -> bytes | None:
        return self._other(store).get(key)

    def stored_encoding(self, store: Store, key: str) -> str | None:
        raise NotImplementedError

    def test_writes_are_shard_files(self, store: Store) -> None:
        assert isinstance(store, ShardedStore)
        store.put_many({self.key(f"f/{i}"): payload(100, seed=i) for i in range(12)})
        names = sorted(store.inner.list())
        assert names and all(n.endswith(".shard") for n in names) and len(names) <= 4

    def test_rewritten_chunk_is_never_misread(self, store: Store) -> None:
        """A chunk rewritten behind the store's back (another writer) may read stale, but
        never as bytes that were neither the old nor the new value."""
        old, new = b"arrived", b"a much longer value than before" * 3
        self.seed(store, self.key("r"), old)
        assert store.get(self.key("r")) == old  # caches the shard's indices
        self.seed(store, self.key("r"), new)
        assert store.get(self.key("r")) in (old, new)


class TestShardedStore(ShardedContract):
    pass


@known_bug("test_get_returns_bytes", BYTEARRAY_BUG, GUNZIP_GIVES_BYTEARRAY)
@known_bug("test_get_seeded_is_bytes", BYTEARRAY_BUG, GUNZIP_GIVES_BYTEARRAY)
class TestShardedStoreGzip(ShardedContract):
    data_encoding = "gzip"
    minishard_index_encoding = "gzip"


class TestShardedStoreOpen(ShardedContract):
    """``recheck="open"`` (a Volume's default): indices cached by this store are trusted, so a
    chunk another writer adds to a shard it has read may stay absent; a rewritten chunk is read
    old or new, never as another chunk's bytes."""

    recheck: object = "open"
    sees_external_writes = False

    def test_added_chunk_seen_by_a_fresh_store(self, store: Store) -> None:
        k = self.key
        self.seed(store, k("a"), b"first")
        assert store.get(k("a")) == b"first" and store.get(k("b")) is None
        self.seed(store, k("b"), b"second")
        assert self._other(store).get(k("b")) == b"second"


# -- caches --------------------------------------------------------------------------------------
class CacheContract(MemoryBacked):
    """A cache over a memory store. Seeded behind its back in the memory bucket: a cache may
    serve what it holds after such a change, so ``sees_external_writes`` is False and
    :meth:`test_documented_staleness` pins what it does instead."""

    sees_external_writes = False

    def _memory(self, store: Store) -> MemoryStore:
        inner = store.inner  # type: ignore[attr-defined]
        assert isinstance(inner, MemoryStore)
        return inner

    def forget_all(self, store: Store) -> None:
        raise NotImplementedError

    def test_misses_are_not_cached(self, store: Store) -> None:
        assert store.get("late") is None
        self.seed(store, "late", b"arrived")
        assert store.get("late") == b"arrived"
        assert dict(store.iter_get(["late2"])) == {"late2": None}
        self.seed(store, "late2", b"too")
        assert dict(store.iter_get(["late2"])) == {"late2": b"too"}

    def test_documented_staleness(self, store: Store) -> None:
        self.seed(store, "v", b"one")
        assert store.get("v") == b"one"
        self.seed(store, "v", b"two")  # behind the cache's back
        assert store.get("v") == b"one"  # served from the cache
        assert store.get("v", (0, 3)) == b"two"  # ranged reads pass through
        self.forget_all(store)
        assert store.get("v") == b"two"


@known_bug("test_get_returns_bytes", BYTEARRAY_BUG, GUNZIP_GIVES_BYTEARRAY)
class TestLRUStore(CacheContract):
    def make_store(self) -> Store:
        return LRUStore(open_store(f"mem://{self.bucket}/vol"), ChunkLRU(64 << 20))

    def forget_all(self, store: Store) -> None:
        store.lru.clear()  # type: ignore[attr-defined]

    def test_children_share_the_lru(self, store: Store) -> None:
        child = store.child("sub")
        self.seed(child, "k", b"x")
        assert child.get("k") == b"x"
        assert child.lru is store.lru and len(store.lru) == 1  # type: ignore[attr-defined]


@known_bug("test_get_returns_bytes", BYTEARRAY_BUG, GUNZIP_GIVES_BYTEARRAY)
class TestDiskCacheStore(CacheContract):
    @pytest.fixture(autouse=True)
    def _cache_dir(self, tmp_path: Path) -> None:
        self.cache_dir = tmp_path / "cache"

    def make_store(self) -> Store:
        return DiskCacheStore(open_store(f"mem://{self.bucket}/vol"), DiskCache(str(self.cache_dir)))

    def forget_all(self, store: Store) -> None:
        store.cache.clear()  # type: ignore[attr-defined]

    def test_reads_are_kept_on_disk(self, store: Store) -> None:
        self.seed(store, "a/k", b"kept")
        assert store.get("a/k") == b"kept"
        path = Path(store.dir) / "a" / "k"  # type: ignore[attr-defined]
        assert path.read_bytes().startswith(MAGIC) and path.read_bytes().endswith(b"kept")  # header, then bytes
        assert store.cache.load(str(path)).data == b"kept"  # type: ignore[attr-defined]
        assert os.path.commonpath([self.cache_dir, path]) == str(self.cache_dir)


# -- adapters keep their inner store's promises ----------------------------------------------------
@pytest.mark.parametrize("adapter", ["lru", "disk_cache", "sharded"])
def test_adapters_keep_conditional_create_promise(adapter: str, s3_bucket: str, s3_secrets: dict,
                                                  tmp_path: Path) -> None:
    """An adapter over S3 that says ``supports_conditional_create`` must forward (or implement)
    ``create_exclusive``; otherwise it must say False."""
    inner = open_store(f"s3://{s3_bucket}/v", secrets=s3_secrets)
    scale = _sharded_scale("raw", "raw")
    if adapter == "lru":
        store: Store = LRUStore(inner, ChunkLRU(1 << 20))
    elif adapter == "disk_cache":
        store = DiskCacheStore(inner, DiskCache(str(tmp_path / "cache")))
    else:
        store = ShardedStore(inner, scale)
    key = "lock" if adapter != "sharded" else scale.chunk_name((0, 0, 0))
    assert inner.supports_conditional_create
    if store.supports_conditional_create:
        assert store.create_exclusive(key, b"me") is True
        assert store.create_exclusive(key, b"you") is False
        assert store.get(key) == b"me"
    else:
        with pytest.raises(UnsupportedEncodingError):
            store.create_exclusive(key, b"me")
