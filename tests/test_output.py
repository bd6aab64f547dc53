"""The output array of a read (cloudvolume_lite/output.py): layout, zeros, pickling, freeing,
the huge-page policy, and full reads into it checked against the truth."""

from __future__ import annotations

import copy
import gc
import io
import mmap
import pickle
import re
import weakref

import numpy as np
import pytest
from oracles import fixture_write, random_volume

import cloudvolume_lite as cvl
from cloudvolume_lite import output
from cloudvolume_lite.output import (
    MAPPED_MIN_BYTES,
    allocate,
    huge_pages_are_free,
    mapped_zeros,
    prefault,
    thp_mode,
)
from cloudvolume_lite.runtime import Runtime

linux_only = pytest.mark.skipif(not output.can_map(), reason="anonymous mappings with madvise are Linux's")
BIG = (128, 128, 64, 2)  # 4 MiB of uint16: at the (lowered, below) threshold
SMALL_THRESHOLD = 4 << 20
REAL_HUGE_PAGES_NOW = output.huge_pages_now


@pytest.fixture(autouse=True)
def _small_threshold(monkeypatch):
    """The mapping is tested at 4 MiB rather than at its real 32 MiB threshold, so that the
    volumes here stay small; test_repeated_mid_size_reads_reuse_memory checks the real one."""
    monkeypatch.setattr(output, "MAPPED_MIN_BYTES", SMALL_THRESHOLD)
    monkeypatch.setattr(output, "huge_pages_now", lambda nbytes: False)  # as on a fragmented machine


def mapping_of(a: np.ndarray):
    """The mmap object under an array from :func:`mapped_zeros` (base chain: view -> 1-d -> memoryview)."""
    base = a
    while isinstance(base, np.ndarray):
        base = base.base
    return base.obj if isinstance(base, memoryview) else base


def test_small_outputs_come_from_numpy():
    for zeroed in (False, True):
        a = allocate((10, 20, 30, 2), np.dtype(np.uint16), zeroed=zeroed)
        assert a.flags.owndata and a.flags.f_contiguous and a.shape == (10, 20, 30, 2) and a.dtype == np.uint16
        if zeroed:
            assert not a.any()


@linux_only
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint64", "float32", ">u4"])
@pytest.mark.parametrize("zeroed", [False, True])
def test_large_outputs_are_mapped_zeroed_fortran_and_writeable(dtype, zeroed):
    shape = (256, 128, 128 // np.dtype(dtype).itemsize, 1)
    a = allocate(shape, np.dtype(dtype), zeroed=zeroed)
    assert a.nbytes >= SMALL_THRESHOLD and not a.flags.owndata
    assert a.shape == shape and a.dtype == np.dtype(dtype)
    assert a.flags.f_contiguous and a.flags.writeable and a.flags.aligned
    assert not a.any()  # an anonymous mapping starts zero, asked for or not
    a[3, 4, 5, 0] = 7
    assert a.reshape(-1, order="F")[3 + 256 * (4 + 128 * 5)] == 7


@linux_only
def test_mapped_output_pickles_saves_and_copies():
    a = mapped_zeros(BIG, np.dtype(np.uint16))
    a[...] = np.arange(a.size, dtype=np.uint16).reshape(BIG, order="F")
    for b in (pickle.loads(pickle.dumps(a)), copy.deepcopy(a), pickle.loads(pickle.dumps(a[:, :, 3:9, 1]))):
        want = a if b.ndim == 4 else a[:, :, 3:9, 1]
        assert b.flags.f_contiguous and b.flags.writeable
        np.testing.assert_array_equal(b, want)
    buf = io.BytesIO()
    np.save(buf, a)
    buf.seek(0)
    loaded = np.load(buf)
    assert loaded.flags.f_contiguous
    np.testing.assert_array_equal(loaded, a)
    pickle.loads(pickle.dumps(a.base))  # the array's base is an ndarray too, as picklable


@linux_only
def test_mapping_is_released_with_the_last_view():
    a = mapped_zeros(BIG, np.dtype(np.uint8))
    gone = weakref.ref(mapping_of(a))
    view = a[:, :, 10:20]
    del a
    gc.collect()
    assert gone() is not None  # a view keeps the memory alive
    view[...] = 1
    del view
    gc.collect()
    assert gone() is None


@linux_only
def test_advise_huge_keeps_the_array_usable():
    a = mapped_zeros(BIG, np.dtype(np.uint64), advise_huge=True)
    a[...] = 3
    assert int(a.sum()) == 3 * a.size


def resident() -> int:
    """This process's resident bytes now (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * mmap.PAGESIZE


@linux_only
def test_prefault_faults_every_page_in_and_keeps_zeros():
    runtime = Runtime(4, decode_threads=2)
    before = resident()
    a = allocate((1024, 1024, 64, 1), np.dtype(np.uint8), zeroed=False, runtime=runtime)
    grew = resident() - before
    if not prefault(a, runtime):
        pytest.skip("this kernel has no MADV_POPULATE_WRITE (Linux < 5.14)")
    assert grew >= 48 << 20  # of 64 MiB: the pages are in before anything writes them
    assert not a.any()
    a[-1, -1, -1, 0] = 9
    assert a.reshape(-1, order="F")[-1] == 9
    runtime.close()


@linux_only
def test_zeroed_outputs_are_not_prefaulted():
    """A read reaching outside the volume never writes the outside: its pages stay unfaulted."""
    runtime = Runtime(4, decode_threads=2)
    before = resident()
    a = allocate((1024, 1024, 64, 1), np.dtype(np.uint8), zeroed=True, runtime=runtime)
    assert resident() - before < 16 << 20 and not a.any()
    runtime.close()


@linux_only
def test_prefault_that_the_kernel_refuses_leaves_a_usable_array(monkeypatch):
    monkeypatch.setattr(output, "MADV_POPULATE_WRITE", 12345)  # not an advice: EINVAL, as before 5.14
    runtime = Runtime(2, decode_threads=2)
    a = allocate(BIG, np.dtype(np.uint16), zeroed=False, runtime=runtime)
    assert not prefault(a, runtime)
    a[...] = 4
    assert int(a.sum()) == 4 * a.size
    runtime.close()


def write_thp(tmp_path, enabled: str, defrag: str):
    modes = {"enabled": ["always", "madvise", "never"], "defrag": ["always", "defer", "defer+madvise", "madvise", "never"]}
    for name, chosen in (("enabled", enabled), ("defrag", defrag)):
        (tmp_path / name).write_text(" ".join(f"[{m}]" if m == chosen else m for m in modes[name]) + "\n")
    return tmp_path


@pytest.mark.parametrize("enabled,defrag,free", [
    ("madvise", "madvise", False), ("always", "madvise", False), ("always", "defer+madvise", False),
    ("madvise", "always", False), ("madvise", "defer", True), ("always", "never", True), ("never", "defer", False),
])
def test_huge_pages_only_where_they_cannot_stall(tmp_path, enabled, defrag, free):
    root = write_thp(tmp_path, enabled, defrag)
    assert thp_mode("defrag", root) == defrag
    assert huge_pages_are_free(root) is free


def test_thp_mode_without_sysfs(tmp_path):
    assert thp_mode("enabled", tmp_path / "absent") is None
    (tmp_path / "enabled").write_text("garbage")
    assert thp_mode("enabled", tmp_path) is None
    assert not huge_pages_are_free(tmp_path / "absent")


def test_without_mappings_outputs_come_from_numpy(monkeypatch):
    monkeypatch.setattr(output, "can_map", lambda: False)
    a = allocate(BIG, np.dtype(np.uint16), zeroed=True)
    assert a.flags.owndata and a.flags.f_contiguous and not a.any()


# ------------------------------------------------------------------------------------------
# full reads into a mapped output, against the truth
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def big_raw(tmp_path_factory):
    rng = np.random.default_rng(7)
    truth = random_volume(BIG, "uint16", rng)
    path = tmp_path_factory.mktemp("out") / "raw"
    fixture_write(str(path), truth, offset=(5, -3, 2), chunk=(64, 64, 32))
    return path, truth


@pytest.fixture(scope="module")
def big_cseg(tmp_path_factory):
    rng = np.random.default_rng(8)
    truth = random_volume((128, 128, 64, 1), "uint64", rng, labels=50)
    path = tmp_path_factory.mktemp("out") / "cseg"
    fixture_write(str(path), truth, offset=(0, 0, 0), chunk=(64, 64, 32), encoding="compressed_segmentation")
    return path, truth


@linux_only
def test_full_read_into_a_mapped_output(big_raw, big_cseg):
    for path, truth in (big_raw, big_cseg):
        got = cvl.Volume(str(path))[...]
        assert mapping_of(got) is not None and not got.flags.owndata and got.flags.f_contiguous
        np.testing.assert_array_equal(got, truth)


def test_reads_reaching_outside_are_zero_there(big_raw):
    path, truth = big_raw
    vol = cvl.Volume(str(path), bounded=False)
    lo = vol.bounds.minpt
    got = vol[lo[0] - 16 : lo[0] + 112, lo[1] : lo[1] + 128, lo[2] - 8 : lo[2] + 64]
    assert got.shape == (128, 128, 72, 2) and got.nbytes >= SMALL_THRESHOLD and got.flags.f_contiguous
    assert not got[:16].any() and not got[:, :, :8].any()
    np.testing.assert_array_equal(got[16:, :, 8:], truth[:112])


def test_missing_chunks_read_as_zeros(big_raw, tmp_path):
    import shutil

    path, truth = big_raw
    copy_ = tmp_path / "holes"
    shutil.copytree(path, copy_)
    scale_dir = next(p for p in copy_.iterdir() if p.is_dir())
    victim = min(scale_dir.iterdir())
    victim.unlink()
    got = cvl.Volume(str(copy_), fill_missing=True)[...]
    (x0, x1), (y0, y1), (z0, z1) = [map(int, re.fullmatch(r"(-?\d+)-(-?\d+)", r).groups())
                                    for r in victim.name.split("_")]
    off = (5, -3, 2)
    hole = (slice(x0 - off[0], x1 - off[0]), slice(y0 - off[1], y1 - off[1]), slice(z0 - off[2], z1 - off[2]))
    assert not got[hole].any()
    want = truth.copy()
    want[hole] = 0
    np.testing.assert_array_equal(got, want)


def test_repeated_mid_size_reads_reuse_memory(monkeypatch) -> None:
    """Below the real threshold (32 MiB, glibc's largest mmap threshold) outputs come from
    numpy, so a read after a read may get the freed, already faulted-in memory back: a mapping
    of its own would fault every page again each time (repeated cseg cutouts ran 2.5x slower)."""
    monkeypatch.setattr(output, "MAPPED_MIN_BYTES", 32 << 20)
    a = allocate((150, 150, 150, 1), np.dtype(np.uint64), zeroed=False, runtime=Runtime(2))  # 27 MB
    assert a.flags.owndata and mapping_of(a) is None
    b = allocate((256, 256, 64, 1), np.dtype(np.uint64), zeroed=False)  # 32 MiB
    assert not b.flags.owndata


def test_numpy_allocates_while_free_huge_blocks_abound(tmp_path, monkeypatch) -> None:
    """The mapping is only for when huge pages would need compaction: the free huge blocks of
    /proc/buddyinfo (orders 9 and 10) decide."""
    info = tmp_path / "buddyinfo"
    info.write_text("Node 0, zone   Normal   6004   4243  16586  30297  22863  12463   5057   2518   1135     66    278\n")
    assert output.free_huge_bytes(info) == (66 * 512 + 278 * 1024) * mmap.PAGESIZE
    assert output.free_huge_bytes(tmp_path / "absent") is None
    monkeypatch.setattr(output, "huge_pages_now", REAL_HUGE_PAGES_NOW)
    monkeypatch.setattr(output, "huge_pages_are_free", lambda: False)
    monkeypatch.setattr(output, "thp_mode", lambda name: "madvise")
    monkeypatch.setattr(output, "free_huge_bytes", lambda: 100 << 20)
    monkeypatch.setattr(output, "reports_free_pages", lambda: False)  # (where they do: the next test)
    assert output.huge_pages_now(40 << 20) and not output.huge_pages_now(60 << 20)


def _virtio(root, name: str, device: int, features: str, bound: bool = True):
    dev = root / name
    dev.mkdir(parents=True)
    (dev / "device").write_text(f"0x{device:04x}\n")
    (dev / "features").write_text(features + "\n")
    if bound:
        (dev / "driver").mkdir()
    return dev


@pytest.mark.parametrize("order,features,bound,reports", [
    ("9", "0110010" + "0" * 57, True, True),     # a balloon with free page reporting (bit 5), as on Firecracker
    ("10", "0110010" + "0" * 57, True, False),   # reports only blocks larger than a huge page
    ("9", "0110000" + "0" * 57, True, False),    # a balloon without reporting
    ("9", "0110010" + "0" * 57, False, False),   # no driver bound to it
])
def test_free_page_reporting_is_read_from_sysfs(tmp_path, order, features, bound, reports) -> None:
    devices = tmp_path / "devices"
    _virtio(devices, "virtio0", 0x0002, "1" * 64)  # a block device, whatever its feature bits
    _virtio(devices, "virtio1", output.VIRTIO_ID_BALLOON, features, bound)
    (tmp_path / "order").write_text(order + "\n")
    assert output.reports_free_pages(devices, tmp_path / "order") is reports
    assert not output.reports_free_pages(devices, tmp_path / "absent")  # no page reporting in this kernel
    assert not output.reports_free_pages(tmp_path / "none", tmp_path / "order")


def test_large_outputs_take_ordinary_pages_where_the_host_takes_free_huge_blocks(monkeypatch) -> None:
    """Plenty of free huge blocks, but a balloon reports them to the host: a large output is a
    mapping of ordinary pages (and small ones still come from numpy)."""
    monkeypatch.setattr(output, "huge_pages_now", REAL_HUGE_PAGES_NOW)
    monkeypatch.setattr(output, "huge_pages_are_free", lambda: False)
    monkeypatch.setattr(output, "thp_mode", lambda name: "madvise")
    monkeypatch.setattr(output, "free_huge_bytes", lambda: 64 << 30)
    monkeypatch.setattr(output, "reports_free_pages", lambda: True)
    monkeypatch.setattr(output, "freed_bytes", lambda: 0)  # a fresh process
    assert not output.huge_pages_now(output.MAPPED_MIN_BYTES) and not output.huge_pages_now(4 << 30)
    a = output.allocate((256, 256, 64, 1), np.dtype(np.uint64), zeroed=False)  # 32 MiB: mapped
    assert not a.flags.owndata  # a view of the mapping
    b = output.allocate((64, 64, 64, 1), np.dtype(np.uint64), zeroed=False)  # 2 MiB: numpy's
    assert b.flags.owndata
    monkeypatch.setattr(output, "reports_free_pages", lambda: False)
    assert output.huge_pages_now(4 << 30)


def test_huge_pages_again_after_this_process_freed_as_much(monkeypatch) -> None:
    """Where the host takes free huge blocks back, a read right after this process freed at
    least its output's size (the previous read's output) takes numpy's huge pages: the kernel
    hands out the blocks just freed first, still backed by the host."""
    monkeypatch.setattr(output, "huge_pages_now", REAL_HUGE_PAGES_NOW)
    monkeypatch.setattr(output, "huge_pages_are_free", lambda: False)
    monkeypatch.setattr(output, "thp_mode", lambda name: "madvise")
    monkeypatch.setattr(output, "free_huge_bytes", lambda: 64 << 30)
    monkeypatch.setattr(output, "reports_free_pages", lambda: True)
    monkeypatch.setattr(output, "freed_bytes", lambda: 300 << 20)
    assert output.huge_pages_now(256 << 20) and not output.huge_pages_now(512 << 20)


def test_freed_bytes_is_the_peak_less_what_is_resident(tmp_path) -> None:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    statm = tmp_path / "statm"
    statm.write_text(f"100000 {(peak - (64 << 20)) // mmap.PAGESIZE} 900 10 0 5000 0\n")
    assert abs(output.freed_bytes(statm) - (64 << 20)) < 2 * mmap.PAGESIZE
    statm.write_text(f"100000 {(peak + (1 << 30)) // mmap.PAGESIZE} 900 10 0 5000 0\n")
    assert output.freed_bytes(statm) == 0  # never negative
    assert output.freed_bytes(tmp_path / "absent") == 0
    b = np.ones(96 << 20, dtype=np.uint8)
    del b
    assert output.freed_bytes() >= 64 << 20  # this process, for real: 96 MiB just given back
