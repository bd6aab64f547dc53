"""Volume.map_overlap against scipy.ndimage on the whole array: exact at every block seam and
at the volume's edges, for each boundary mode, as a dask array and written into a Volume, on
the Volume's threads; one task per block."""

from __future__ import annotations

import numpy as np
import pytest

import cloudvolume_lite as cvl
from cloudvolume_lite.stores.local import LocalStore

from scipy import ndimage  # a test dependency: the oracle
pytest.importorskip("dask")


@pytest.fixture
def image(tmp_path):
    rng = np.random.default_rng(4)
    data = rng.random((70, 61, 45), dtype=np.float32)
    vol = cvl.Volume.from_numpy(data[..., None], f"file://{tmp_path}/src", chunk_size=(16, 16, 16),
                                voxel_offset=(5, -3, 7), compression=None)
    return data, vol


def _gauss(mode: str):
    return lambda a: ndimage.gaussian_filter(a[..., 0], sigma=1.5, mode=mode, truncate=3.0)  # reach 5 (radius)


@pytest.mark.parametrize("chunks", [(16, 16, 16), (32, 16, 48), (23, 31, 9)])
def test_no_boundary_equals_the_whole_array(image, chunks) -> None:
    data, vol = image
    want = ndimage.gaussian_filter(data, sigma=1.5, mode="reflect", truncate=3.0)
    arr = vol.map_overlap(_gauss("reflect"), depth=5, chunks=chunks)
    got = arr.compute(scheduler="threads")
    assert got.shape == (*data.shape, 1)
    np.testing.assert_array_equal(got[..., 0], want)
    n_blocks = np.prod([len(c) for c in arr.chunks])
    assert len(arr.__dask_graph__()) == n_blocks + 1  # one task per block, plus the shared Volume


@pytest.mark.parametrize("boundary,np_mode,extra", [("reflect", "symmetric", {}), ("mirror", "reflect", {}),
                                                    ("nearest", "edge", {}), (2.5, "constant", {"constant_values": 2.5})])
def test_padding_modes_equal_the_padded_whole_array(image, boundary, np_mode, extra) -> None:
    data, vol = image
    d = 5
    padded = np.pad(data, d, mode=np_mode, **extra)
    # 'wrap' mode inside: the padding decides what the filter sees past the edge, not its mode
    want = ndimage.gaussian_filter(padded, sigma=1.5, mode="wrap", truncate=3.0)[d:-d, d:-d, d:-d]
    got = vol.map_overlap(_gauss("wrap"), depth=d, chunks=(32, 32, 16), boundary=boundary).compute()
    np.testing.assert_allclose(got[..., 0], want, rtol=0, atol=1e-6)


def test_written_into_a_volume(image, tmp_path) -> None:
    data, vol = image
    out = cvl.Volume.create(f"file://{tmp_path}/out", data_type="float32", layer_type="image", size=data.shape,
                            chunk_size=(16, 16, 16), resolution=(1, 1, 1), voxel_offset=(5, -3, 7), compression=None)
    seen = []
    n = vol.map_overlap(_gauss("reflect"), depth=(5, 5, 5), out=out, chunks=(32, 32, 16),
                        progress=lambda done, total: seen.append((done, total)))
    want = ndimage.gaussian_filter(data, sigma=1.5, mode="reflect", truncate=3.0)
    np.testing.assert_array_equal(cvl.Volume(f"file://{tmp_path}/out")[...][..., 0], want)
    assert n == len(seen) == seen[-1][1] and sorted(d for d, _ in seen) == list(range(1, n + 1))
    # a second run with resume finds every block written
    assert vol.map_overlap(_gauss("reflect"), depth=5, out=out, chunks=(32, 32, 16), resume=True) == 0


def test_misaligned_blocks_and_bad_arguments_are_refused(image, tmp_path) -> None:
    data, vol = image
    out = cvl.Volume.create(f"file://{tmp_path}/out", data_type="float32", layer_type="image", size=data.shape,
                            chunk_size=(16, 16, 16), resolution=(1, 1, 1), voxel_offset=(5, -3, 7))
    with pytest.raises(cvl.RequestError, match="two tasks"):
        vol.map_overlap(_gauss("reflect"), depth=5, out=out, chunks=(20, 16, 16))
    with pytest.raises(cvl.RequestError, match="boundary"):
        vol.map_overlap(_gauss("reflect"), depth=5, boundary="wrap")
    with pytest.raises(cvl.RequestError, match="depth"):
        vol.map_overlap(_gauss("reflect"), depth=-1)
    with pytest.raises(cvl.RequestError, match="same"):
        vol.map_overlap(lambda a: a[:-1], depth=1, chunks=(32, 32, 16)).compute()


class _Counting(LocalStore):
    """A real local store that adds up the chunk bytes it hands out, and says it waits on a
    network (so it is read as remote stores are)."""

    fetched = 0
    latency_bound = True

    def get(self, key, byte_range=None):
        data = super().get(key, byte_range)
        if data is not None and key != "info":
            type(self).fetched += len(data)
        return data

    def _with_url(self, url):
        return _Counting(url)


def test_planes_fetch_each_storage_chunk_once(tmp_path) -> None:
    """to_dask(chunks=(X, Y, 1)) over 16^3 chunks: 1.0x the stored bytes fetched, not 16x."""
    from cloudvolume_lite.stores import StoreRegistry

    data = np.random.default_rng(2).integers(0, 255, (40, 36, 48, 1), dtype=np.uint8)
    cvl.Volume.from_numpy(data, f"file://{tmp_path}/v", chunk_size=(16, 16, 16))  # gzip'd chunks
    reg = StoreRegistry().with_scheme("count", lambda url, **_: _Counting(
        cvl.stores.StoreURL("file", "", str(tmp_path / "v"))))
    vol = cvl.Volume("count://x/v", stores=reg)
    arr = vol.to_dask(chunks=(40, 36, 1))
    assert arr.chunks[2] == (1,) * 48
    _Counting.fetched = 0
    np.testing.assert_array_equal(arr.compute(scheduler="threads"), data)
    ratio = _Counting.fetched / data.nbytes
    assert ratio == 1.0, f"fetched {ratio:.2f}x the stored bytes"
    # one read per group of whole chunks, and a cheap slice per plane
    assert len(arr.__dask_graph__()) == 1 + 48 + 3


def test_halo_chunks_are_fetched_once(tmp_path) -> None:
    """Blocks of one chunk with a halo reaching into every neighbour: through the job's chunk
    cache each storage chunk is fetched once, not once per block that needs it (up to 27x)."""
    from cloudvolume_lite.stores import StoreRegistry

    data = np.random.default_rng(3).random((64, 64, 48, 1), dtype=np.float32)
    cvl.Volume.from_numpy(data, f"file://{tmp_path}/v", chunk_size=(16, 16, 16))  # gzip'd chunks
    reg = StoreRegistry().with_scheme("count", lambda url, **_: _Counting(
        cvl.stores.StoreURL("file", "", str(tmp_path / "v"))))
    vol = cvl.Volume("count://x/v", stores=reg)
    out = cvl.Volume.create(f"file://{tmp_path}/out", data_type="float32", layer_type="image", size=(64, 64, 48),
                            chunk_size=(16, 16, 16), resolution=(1, 1, 1))
    _Counting.fetched = 0
    vol.map_overlap(_gauss("reflect"), depth=5, out=out, chunks=(16, 16, 16))
    ratio = _Counting.fetched / data.nbytes
    assert ratio <= 1.05, f"fetched {ratio:.2f}x the stored bytes"
    want = ndimage.gaussian_filter(data[..., 0], sigma=1.5, mode="reflect", truncate=3.0)
    np.testing.assert_array_equal(cvl.Volume(f"file://{tmp_path}/out")[...][..., 0], want)
