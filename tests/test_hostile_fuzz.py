"""Hostile bytes, hostile metadata, hostile arguments: exact data or a named ``cvl.VolumeError``.

Never silent wrong voxels, never unbounded memory, never a leaked secret. Covered here:

1. chunk files (and ``.shard`` files) of small volumes damaged on disk: bit flips, truncation,
   same-size garbage, appended junk, two files swapped; in every encoding and transport
   compression we write, sharded and not; read whole, chunk by chunk and as scattered points,
   with and without ``fill_missing``;
2. a disk cache whose files are damaged between reads;
3. decompression bombs (gzip, zstd, a shard's gzip chunk, gzip over HTTP, scattered points)
   and images whose header claims 20000x20000 pixels, each read in a subprocess that reports
   its peak RSS;
4. hostile ``info`` files (hypothesis mutations of a valid one, and damaged text);
5. writes of values a uint8 volume cannot hold, and arrays of the wrong shape;
6. a password in an ``http://user:pass@127.0.0.1`` URL: never in reprs, errors or cache paths.

What the formats let a reader check, so what is asserted (:func:`guaranteed`):

- size-changing damage (truncation, appended bytes), always: a raw chunk has an exact size,
  gzip/brotli/zstd streams and PNG/JPEG images end in a marker, compressed_segmentation
  offsets must stay inside the buffer, a shard's index must point inside the file;
- same-size damage (flips, garbage) where a checksum covers the bytes: gzip (CRC-32 and
  size), zstd (the frame's content size, and the content checksum our writer can add), PNG
  (CRC-32 on every chunk), shards whose minishard indices and data are both gzip (or PNG);
- swapped files where something tells the chunks apart: a raw/PNG/JPEG chunk of another voxel
  count, or a shard whose minishard indices list another shard's chunk ids (``fill_missing``
  must not make those "missing" zeros);
- NOT guaranteed, counted only (an :class:`UncheckedDamage` warning gives the tally): flips and
  garbage in plain raw, plain compressed_segmentation and JPEG chunks (no checksum), in brotli
  streams (no checksum: a flip may decode to other bytes of the right size), in shards with a
  raw minishard index or raw data; swaps of chunks with the same voxel count.

Bounded for CI (about 20 s on 2 cores when everything passes): hypothesis with few examples,
``derandomize=True``, no example database, no shrinking. ``benchmarks/hostile.py`` runs the
same damage in a loop and imports its helpers from here.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import traceback
import uuid
import warnings
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import cloudvolume_lite as cvl
from cloudvolume_lite.sharding import ShardLayout

TESTS_DIR = Path(__file__).resolve().parent

SIZE = (40, 32, 12)  # 3 x 2 x 2 chunks of 16x16x8: the last in x is 8 wide, the last in z 4 deep
CHUNK = (16, 16, 8)
DTYPES = {"raw": "uint16", "compressed_segmentation": "uint32", "png": "uint8", "jpeg": "uint8"}
SUFFIXES = (".gz", ".br", ".zstd")
KINDS = ("flip", "truncate", "garbage", "append", "swap")
MEMORY_BOUND = 128 << 20  # bytes the peak RSS may grow by while a bomb is refused


def fuzz(n: int) -> settings:
    """``n`` examples, reproducible (derandomized, no database), no deadline, no shrinking:
    a failure (expected while a case is still open) costs no more time than a pass."""
    return settings(max_examples=n, deadline=None, derandomize=True, database=None, print_blob=False,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large])


def explore(strategy: st.SearchStrategy, check: Callable[[Any], list[str]], n: int) -> list[str]:
    """Run ``check`` on ``n`` examples of ``strategy``; every problem found, from all of them.

    The examples never fail inside hypothesis (the caller asserts on what is collected), so one
    run reports every broken case, and hypothesis's pytest plugin writes no "add @example"
    patch files (it parses the whole test file with libcst for each failing test, seconds each).
    """
    problems: list[str] = []

    @fuzz(n)
    @given(strategy)
    def run(example: Any) -> None:
        problems.extend(check(example))

    run()
    return problems


class UncheckedDamage(UserWarning):
    """Damage no format here can detect (no checksum) that decoded to other voxels: counted, not failed."""


# -- volumes -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Layout:
    """One way a volume's chunks are stored."""

    encoding: str
    compression: str | None = None  # transport compression of unsharded chunk files (NAME.gz, ...)
    index_encoding: str | None = None  # sharded: minishard_index_encoding (None: unsharded)
    data_encoding: str | None = None  # sharded: data_encoding

    @property
    def sharded(self) -> bool:
        return self.index_encoding is not None

    @property
    def sharding(self) -> dict | None:
        if not self.sharded:
            return None
        return dict(preshift_bits=0, hash="identity", minishard_bits=1, shard_bits=1,
                    minishard_index_encoding=self.index_encoding, data_encoding=self.data_encoding)

    @property
    def name(self) -> str:
        enc = {"compressed_segmentation": "cseg"}.get(self.encoding, self.encoding)
        if self.sharded:
            return f"{enc}-sharded-idx_{self.index_encoding}-data_{self.data_encoding}"
        return f"{enc}-{self.compression or 'plain'}"


# the writer never adds transport compression to png/jpeg chunks (already compressed), so
# those are written plain only
UNSHARDED = [Layout(e, c) for e in ("raw", "compressed_segmentation") for c in (None, "gzip", "br", "zstd")] + [
    Layout("png"), Layout("jpeg")]
SHARDED = [Layout(e, None, i, d) for e in DTYPES for i in ("raw", "gzip") for d in ("raw", "gzip")]
LAYOUTS = UNSHARDED + SHARDED


def make_truth(encoding: str, seed: int) -> np.ndarray:
    """(X, Y, Z, 1) data without a zero voxel, so zeros from fill_missing are always wrong."""
    rng = np.random.default_rng(seed)
    if encoding == "compressed_segmentation":
        coarse = rng.integers(1, 40, size=tuple(-(-s // 4) for s in SIZE) + (1,))
        labels = coarse.repeat(4, 0).repeat(4, 1).repeat(4, 2)[: SIZE[0], : SIZE[1], : SIZE[2]]
        return labels.astype(np.uint32) + np.uint32(7 << 20)
    if encoding == "jpeg":  # smooth, so the loss is small; the truth is what an undamaged read gives
        x, y, z = np.meshgrid(*(np.arange(s) for s in SIZE), indexing="ij")
        img = 60 + 3 * x + 2 * y + 5 * z + rng.integers(0, 8, SIZE)
        return np.clip(img, 1, 255).astype(np.uint8)[..., None]
    dtype = np.dtype(DTYPES[encoding])
    return rng.integers(1, np.iinfo(dtype).max, size=(*SIZE, 1), dtype=dtype, endpoint=True)


def build_volume(root: Path, layout: Layout, seed: int = 0) -> np.ndarray:
    """Write a volume of ``layout`` at ``root``; return what an undamaged read gives."""
    url = "file://" + str(root)
    truth = make_truth(layout.encoding, seed)
    layer = "segmentation" if layout.encoding == "compressed_segmentation" else "image"
    with cvl.Volume.create(url, data_type=DTYPES[layout.encoding], layer_type=layer, size=SIZE, chunk_size=CHUNK,
                           resolution=(1, 1, 1), encoding=layout.encoding, compression=layout.compression,
                           sharding=layout.sharding, overwrite=True) as vol:
        vol[...] = truth
    with cvl.Volume(url) as vol:
        got = vol[...]
    if layout.encoding != "jpeg":
        assert np.array_equal(got, truth), f"{layout.name}: the undamaged volume does not read back"
    return got


def scale_dir(root: Path) -> Path:
    return root / "1_1_1"


def data_files(root: Path) -> list[Path]:
    """The chunk (or shard) files, sorted; hidden lock files left out."""
    return sorted(p for p in scale_dir(root).iterdir() if p.is_file() and not p.name.startswith("."))


def chunk_names(vol: cvl.Volume) -> list[str]:
    scale = vol.scale
    return [scale.chunk_name(c) for c in scale.cells(scale.bounds)]


def chunks_in_file(vol: cvl.Volume, path: Path) -> set[str]:
    """Names of the chunks stored in ``path`` (a chunk file, or a shard)."""
    scale = vol.scale
    if scale.sharding is None:
        name = path.name
        for s in SUFFIXES:
            name = name.removesuffix(s)
        return {name}
    layout = ShardLayout(scale.sharding, scale)
    cells = list(scale.cells(scale.bounds))
    shards, _ = layout.locate(layout.chunk_ids(np.array(cells)))
    return {scale.chunk_name(c) for c, s in zip(cells, shards) if layout.shard_name(int(s)) == path.name}


def chunk_shape(name: str) -> tuple[int, ...]:
    return tuple(int(b) - int(a) for a, b in (r.split("-") for r in name.split("_")))


# -- damage --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fault:
    """One kind of damage to one (or, for a swap, two) of a volume's files."""

    kind: str
    target: int = 0  # which file (modulo the number of files)
    other: int = 1  # swap: the second file (another one than ``target``)
    at: float = 0.5  # where in the file, 0..1
    flips: tuple[tuple[float, int], ...] = ((0.5, 0),)  # flip: (where, which bit)
    length: int = 16  # garbage and append: how many bytes
    seed: int = 0  # the garbage or junk bytes

    def __str__(self) -> str:
        """The fields that matter for this kind (the repr has them all, to reproduce it)."""
        if self.kind == "flip":
            return f"flip(file {self.target}, bits {[(round(w, 3), b) for w, b in self.flips]})"
        if self.kind == "truncate":
            return f"truncate(file {self.target} at {self.at:.3f})"
        if self.kind == "garbage":
            return f"garbage(file {self.target}, {self.length} bytes at {self.at:.3f}, seed {self.seed})"
        if self.kind == "append":
            return f"append(file {self.target}, {self.length} bytes, seed {self.seed})"
        return f"swap(file {self.target}, other {self.other})"


def faults(kind: str | None = None) -> st.SearchStrategy[Fault]:
    """Hypothesis strategy for :class:`Fault` (of ``kind``, or any)."""
    where = st.floats(0, 1, exclude_max=True, allow_nan=False)
    return st.builds(
        Fault, kind=st.just(kind) if kind else st.sampled_from(KINDS), target=st.integers(0, 63),
        other=st.integers(1, 63), at=where,
        flips=st.lists(st.tuples(where, st.integers(0, 7)), min_size=1, max_size=4).map(tuple),
        length=st.integers(1, 200), seed=st.integers(0, 2**32 - 1))


def random_fault(rng: random.Random, kind: str | None = None) -> Fault:
    """A :class:`Fault` drawn with ``rng`` (the benchmark's loop)."""
    return Fault(kind or rng.choice(KINDS), rng.randrange(64), rng.randrange(1, 64), rng.random(),
                 tuple((rng.random(), rng.randrange(8)) for _ in range(rng.randint(1, 4))),
                 rng.randint(1, 200), rng.getrandbits(32))


def damage_bytes(data: bytes, fault: Fault) -> bytes:
    """``data`` with ``fault`` applied (not a swap); always different from ``data``."""
    rng = random.Random(fault.seed)
    n = len(data)
    if fault.kind == "truncate":
        return data[: min(n - 1, int(fault.at * n))]
    if fault.kind == "append":
        return data + bytes(rng.getrandbits(8) for _ in range(fault.length))
    if fault.kind == "flip":
        out = bytearray(data)
        for where, bit in fault.flips:
            out[min(n - 1, int(where * n))] ^= 1 << bit
        if bytes(out) == data:  # two flips of one bit cancelled: flip once more
            out[min(n - 1, int(fault.flips[0][0] * n))] ^= 1 << fault.flips[0][1]
        return bytes(out)
    if fault.kind == "garbage":  # a span overwritten, every byte of it changed, the size kept
        start = min(n - 1, int(fault.at * n))
        out = bytearray(data)
        for i in range(start, min(n, start + fault.length)):
            out[i] ^= rng.randrange(1, 256)
        return bytes(out)
    raise ValueError(f"not a byte fault: {fault.kind}")


def apply_fault(files: Sequence[Path], fault: Fault) -> list[Path]:
    """Damage ``files`` (chunk, shard or cache files) as ``fault`` says; the files touched."""
    if not files:
        return []
    a = files[fault.target % len(files)]
    if fault.kind == "swap":
        if len(files) < 2:
            return []
        b = files[(fault.target + 1 + fault.other % (len(files) - 1)) % len(files)]
        da, db = a.read_bytes(), b.read_bytes()
        a.write_bytes(db)
        b.write_bytes(da)
        return [a, b]
    data = a.read_bytes()
    if not data:
        return []
    a.write_bytes(damage_bytes(data, fault))
    return [a]


def guaranteed(layout: Layout, kind: str, touched_chunks: Sequence[str]) -> bool:
    """Whether the formats let a reader tell this damage from good data (see the module docstring).

    Where not, a read may legitimately return other voxels: that is counted, not failed.
    """
    if kind in ("truncate", "append"):
        return True  # every format here implies its length
    if layout.sharded:
        if kind == "swap":
            return True  # another shard's minishard indices list chunk ids that never belong here
        # the fixed-size shard index is never compressed, but a damaged entry points at bytes
        # that fail the gzip check, or past the end of the file
        return layout.index_encoding == "gzip" and (layout.data_encoding == "gzip" or layout.encoding == "png")
    if kind == "swap":
        # another voxel count: raw has the wrong size, an image the wrong pixel count (only
        # W*H is checked: older TensorStore wrote other W/H splits). A same-count chunk (8x16x8
        # for 16x16x4) is a valid chunk in the wrong place; compressed_segmentation may decode
        # the first blocks of a bigger chunk as a valid smaller one
        counts = {math.prod(chunk_shape(n)) for n in touched_chunks}
        return len(counts) > 1 and layout.encoding != "compressed_segmentation"
    if layout.compression in ("gzip", "zstd"):
        return True  # gzip: CRC-32 and size; zstd: content size (and checksum) in the frame
    if layout.compression == "br":
        return False  # brotli has no checksum
    return layout.encoding == "png"  # CRC-32 on every PNG chunk; plain raw, cseg and jpeg carry none


# -- reading and judging -------------------------------------------------------------------------
@dataclass
class Outcome:
    what: str  # "whole", "chunk NAME", "points", ...
    touched: bool  # does the read need a damaged file?
    result: str  # "exact" | "wrong" | "error" (a VolumeError) | "foreign" (any other exception)
    detail: str = ""
    error: str = ""  # the exception's type name


def describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e)[:300]}"


def attempt(what: str, touched: bool, read: Callable[[], np.ndarray], want: np.ndarray) -> Outcome:
    """Run ``read``; compare with ``want``."""
    try:
        got = read()
    except cvl.VolumeError as e:
        return Outcome(what, touched, "error", describe(e), type(e).__name__)
    except Exception as e:  # noqa: BLE001 - what the rule forbids; judged by the caller
        tb = "".join(traceback.format_tb(e.__traceback__)[-3:])
        return Outcome(what, touched, "foreign", describe(e) + "\n" + tb, type(e).__name__)
    if got.shape == want.shape and got.dtype == want.dtype and np.array_equal(got, want):
        return Outcome(what, touched, "exact")
    if got.shape != want.shape:
        return Outcome(what, touched, "wrong", f"shape {got.shape}, expected {want.shape}")
    bad = got != want
    zeros = " (all zero)" if bool((got[bad] == 0).all()) else ""
    return Outcome(what, touched, "wrong", f"{int(bad.sum())} of {bad.size} voxels differ{zeros}")


def sample_points(vol: cvl.Volume, per_chunk: int, seed: int) -> dict[str, np.ndarray]:
    """``per_chunk`` points in each chunk (its two extreme corners first), by chunk name."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for cell in vol.scale.cells(vol.scale.bounds):
        b = vol.scale.chunk_bbox(cell)
        lo, hi = np.array(b.minpt), np.array(b.maxpt)
        pts = [lo, hi - 1] + [rng.integers(lo, hi) for _ in range(max(0, per_chunk - 2))]
        out[vol.scale.chunk_name(cell)] = np.array(pts[:per_chunk])
    return out


def read_outcomes(url: str, truth: np.ndarray, touched: set[str], fill_missing: bool, *,
                  per_chunk: bool = True, points_per_chunk: int = 3, seed: int = 0) -> list[Outcome]:
    """Read the volume at ``url`` whole, chunk by chunk and as scattered points; compare with ``truth``."""
    tag = f" fill_missing={fill_missing}"
    try:
        vol = cvl.Volume(url, fill_missing=fill_missing, parallel=2)
    except cvl.VolumeError as e:  # the faults never touch info: the volume must open
        return [Outcome("open" + tag, False, "error", describe(e), type(e).__name__)]
    except Exception as e:  # noqa: BLE001
        return [Outcome("open" + tag, False, "foreign", describe(e), type(e).__name__)]
    out: list[Outcome] = []
    with vol:
        out.append(attempt("whole" + tag, bool(touched), lambda: vol[...], truth))
        if per_chunk:
            for cell in vol.scale.cells(vol.scale.bounds):
                b = vol.scale.chunk_bbox(cell)
                sl = tuple(slice(lo, hi) for lo, hi in zip(b.minpt, b.maxpt))
                name = vol.scale.chunk_name(cell)
                out.append(attempt(f"chunk {name}{tag}", name in touched, lambda sl=sl: vol[sl], truth[sl]))
        pts = sample_points(vol, points_per_chunk, seed)
        every = np.concatenate(list(pts.values()))
        out.append(attempt("points" + tag, bool(touched), lambda: vol.scattered_points(every),
                           truth[every[:, 0], every[:, 1], every[:, 2], 0]))
        clean = [p for n, p in pts.items() if n not in touched]
        if clean and touched and per_chunk:
            c = np.concatenate(clean)
            out.append(attempt("points outside the damage" + tag, False, lambda: vol.scattered_points(c),
                               truth[c[:, 0], c[:, 1], c[:, 2], 0]))
    return out


@dataclass
class Verdict:
    problems: list[str] = dataclasses.field(default_factory=list)  # the rule broken
    unchecked_wrong: list[str] = dataclasses.field(default_factory=list)  # wrong where nothing could tell


def judge(outcomes: Sequence[Outcome], is_guaranteed: bool, label: str) -> Verdict:
    v = Verdict()
    for o in outcomes:
        where = f"{label}: {o.what}"
        if o.result == "foreign":
            v.problems.append(f"{where}: an error outside the VolumeError family: {o.detail}")
        elif not o.touched and o.result != "exact":
            v.problems.append(f"{where} needs no damaged file but gave {o.result}: {o.detail}")
        elif o.result == "wrong":
            (v.problems if is_guaranteed else v.unchecked_wrong).append(f"{where}: wrong voxels: {o.detail}")
    return v


def damaged_copy(src: Path, fault: Fault, parent: Path | None = None) -> tuple[Path, set[str], list[Path]]:
    """A fresh copy of the volume at ``src`` (in a new directory under ``parent``) with ``fault``
    applied: (its root, the damaged chunks' names, the damaged files)."""
    root = Path(tempfile.mkdtemp(prefix="hostile-", dir=parent)) / "v"
    shutil.copytree(src, root)
    files = apply_fault(data_files(root), fault)
    with cvl.Volume("file://" + str(root)) as vol:
        touched = set().union(*(chunks_in_file(vol, f) for f in files)) if files else set()
    return root, touched, files


def damage_outcomes(src: Path, truth: np.ndarray, layout: Layout, fault: Fault, parent: Path | None = None,
                    url_of: Callable[[Path], str] = lambda root: "file://" + str(root),
                    ) -> tuple[list[Outcome], bool]:
    """Damage a copy of ``src``, read it with and without fill_missing: (outcomes, guaranteed)."""
    root, touched, _ = damaged_copy(src, fault, parent)
    try:
        out: list[Outcome] = []
        for fill in (False, True):  # chunk by chunk once: the whole read and points catch zeros too
            out += read_outcomes(url_of(root), truth, touched, fill, per_chunk=not fill, seed=fault.seed)
        return out, guaranteed(layout, fault.kind, sorted(touched))
    finally:
        shutil.rmtree(root.parent, ignore_errors=True)


#: examples whose undetectable damage read as other voxels, and examples tried, by layout/kind
UNCHECKED: Counter[str] = Counter()
TRIED: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _report_unchecked() -> Iterator[None]:
    yield
    rows = ", ".join(f"{k}: {UNCHECKED[k]}/{TRIED[k]}" for k in sorted(UNCHECKED) if UNCHECKED[k])
    if rows:
        warnings.warn(UncheckedDamage(f"undetectable damage that read as other voxels (examples wrong/tried): {rows}"))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> dict[Layout, tuple[Path, np.ndarray]]:
    base = tmp_path_factory.mktemp("pristine")
    return {layout: (base / layout.name, build_volume(base / layout.name, layout, seed=i))
            for i, layout in enumerate(LAYOUTS)}


# -- 1. damaged chunk and shard files --------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("layout", LAYOUTS, ids=[lay.name for lay in LAYOUTS])
def test_damaged_files_read_exact_or_raise(pristine, bomb_runner, layout: Layout, kind: str) -> None:
    # bomb_runner is asked for here only so that the bombs are read in the background meanwhile
    src, truth = pristine[layout]
    key = f"{layout.name}/{kind}"

    def check(fault: Fault) -> list[str]:
        outcomes, ok = damage_outcomes(src, truth, layout, fault)
        verdict = judge(outcomes, ok, f"{layout.name} {fault}")
        TRIED[key] += 1
        UNCHECKED[key] += bool(verdict.unchecked_wrong)
        return verdict.problems

    # two shards make one possible swap: one example is all there is to try
    problems = explore(faults(kind), check, 1 if layout.sharded and kind == "swap" else 3)
    assert not problems, f"{len(problems)} problems, the first:\n" + "\n".join(problems[:6])


@pytest.mark.parametrize("layout", [lay for lay in UNSHARDED if lay.encoding != "compressed_segmentation"],
                         ids=lambda lay: lay.name)
def test_swapped_chunks_of_other_sizes_are_errors(pristine, layout: Layout) -> None:
    """A full 16x16x8 chunk swapped with the 8x16x8 edge chunk (the random swaps above mostly
    pick chunks of one size, which no format can tell apart)."""
    src, truth = pristine[layout]
    names = [p.name for p in data_files(src)]
    a, b = (next(i for i, n in enumerate(names) if n.startswith(p)) for p in ("0-16_0-16_0-8", "32-40_0-16_0-8"))
    fault = Fault("swap", target=a, other=(b - a - 1) % (len(names) - 1))
    outcomes, ok = damage_outcomes(src, truth, layout, fault)
    assert ok, "both chunks were expected to be damaged"
    problems = judge(outcomes, ok, f"{layout.name} {fault}").problems
    assert not problems, "\n".join(problems[:6])
    assert any(o.result == "error" for o in outcomes), "the swap was not noticed at all"


def test_the_damage_is_real(pristine) -> None:
    """Every kind of fault changes the bytes (else the test above would test nothing)."""
    rng = random.Random(5)
    for layout in (Layout("raw"), Layout("raw", "gzip"), SHARDED[0]):
        src, _ = pristine[layout]
        before = {p.name: p.read_bytes() for p in data_files(src)}
        for kind in KINDS:
            root, touched, files = damaged_copy(src, random_fault(rng, kind))
            try:
                after = {p.name: p.read_bytes() for p in data_files(root)}
                assert files and touched and after != before, (layout.name, kind)
            finally:
                shutil.rmtree(root.parent, ignore_errors=True)


# -- 2. a damaged disk cache -----------------------------------------------------------------------
CACHE_LAYOUTS = [Layout("raw"), Layout("compressed_segmentation", "gzip"), Layout("raw", None, "gzip", "gzip")]


def cache_files(cache: Path) -> list[Path]:
    """The cached chunk (or shard) copies (not info, not hidden temp files), sorted."""
    return sorted(p for p in cache.rglob("*") if p.is_file() and not p.name.startswith(".") and p.name != "info")


def cache_outcomes(src: Path, truth: np.ndarray, fault: Fault) -> tuple[list[Outcome], list[str], int]:
    """Fill a disk cache from ``src``, damage its files, read again (the same Volume, then a new
    one): (outcomes, the damaged cache files' paths, how many warnings named one of them)."""
    work = Path(tempfile.mkdtemp(prefix="hostile-cache-"))
    url, cache = "file://" + str(src), str(work / "cache")
    every = np.argwhere(truth[..., 0] > 0)[::7]  # all voxels are > 0: every 7th
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")  # a CacheIntegrityWarning is the expected answer
            with cvl.Volume(url, cache=cache, parallel=2) as vol:
                first = attempt("cache-filling read", False, lambda: vol[...], truth)
                files = cache_files(work / "cache")
                if first.result != "exact" or not files:
                    first.detail += "" if files else f" (the disk cache kept no chunk files under {cache})"
                    return [first if files else dataclasses.replace(first, result="wrong")], [], 0
                caught.clear()
                hit = [str(p) for p in apply_fault(files, fault)]
                out = []
                for again in ("same Volume", "new Volume"):
                    v = vol if again == "same Volume" else cvl.Volume(url, cache=cache, parallel=2)
                    out.append(attempt(f"{again} whole", True, lambda v=v: v[...], truth))
                    out.append(attempt(f"{again} points", True, lambda v=v: v.scattered_points(every),
                                       truth[every[:, 0], every[:, 1], every[:, 2], 0]))
                    if v is not vol:
                        v.close()
                noticed = sum(any(h in str(w.message) for h in hit) for w in caught)
                return out, hit, noticed
    finally:
        shutil.rmtree(work, ignore_errors=True)


def judge_cache(outcomes: Sequence[Outcome], hit: Sequence[str], label: str) -> list[str]:
    problems = []
    for o in outcomes:
        if o.result in ("foreign", "wrong"):
            problems.append(f"{label} {o.what}: {o.result}: {o.detail}")
        elif o.result == "error" and not any(h in o.detail for h in hit):
            problems.append(f"{label} {o.what}: the error names no damaged cache file {hit}: {o.detail}")
    return problems


@pytest.mark.parametrize("layout", CACHE_LAYOUTS, ids=[lay.name for lay in CACHE_LAYOUTS])
def test_damaged_disk_cache_reads_exact_or_names_the_file(pristine, layout: Layout) -> None:
    src, truth = pristine[layout]
    noticed = []

    def check(fault: Fault) -> list[str]:
        outcomes, hit, warned = cache_outcomes(src, truth, fault)
        noticed.append(warned)
        return judge_cache(outcomes, hit, f"{layout.name} {fault}")

    problems = explore(faults(), check, 8)
    assert not problems, "\n".join(problems[:6])
    # exact reads alone could mean the damaged copies were never read: some damage must have
    # been noticed (a warning naming the file; a broken magic number reads as an old version's
    # headerless copy, fetched again without one)
    assert sum(noticed) > 0, "no warning named a damaged cache file: was the disk cache read at all?"


# -- 3. decompression bombs and oversized images ----------------------------------------------------
BOMB_BYTES = 1 << 30

#: the child: open the volume, read it, report the exception and the RSS high-water mark before/after
BOMB_CHILD = r"""
import json, resource, sys, traceback
resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))  # a safety net for the machine, far above the bound
import numpy as np
import cloudvolume_lite as cvl
url, how = sys.argv[1], sys.argv[2]
kib = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
vol = cvl.Volume(url, parallel=2)
before = kib()
result = {"error": None, "message": ""}
try:
    if how == "points":
        vol.scattered_points(np.array([[1, 2, 0], [10, 20, 0]]))
    else:
        vol[...]
except BaseException as e:
    result = {"error": type(e).__name__, "message": str(e)[:300], "tb": "".join(traceback.format_tb(e.__traceback__)[-2:])}
result.update(before=before * 1024, after=kib() * 1024)
print(json.dumps(result))
"""


def gzip_bomb(n: int = BOMB_BYTES) -> bytes:
    """A gzip stream of ``n`` zero bytes (level 1: ~4.5 MB for 1 GiB, made in ~1.5 s)."""
    z = zlib.compressobj(1, zlib.DEFLATED, 31)
    zeros = bytes(16 << 20)
    return b"".join(z.compress(zeros) for _ in range(n // len(zeros))) + z.flush()


def zstd_bomb(n: int = BOMB_BYTES, declare_size: bool = True) -> bytes:
    """A zstd frame of ``n`` zero bytes, with or without the content size in its header."""
    import zstandard

    c = zstandard.ZstdCompressor(level=1).compressobj(size=n if declare_size else -1)
    zeros = bytes(16 << 20)
    return b"".join(c.compress(zeros) for _ in range(n // len(zeros))) + c.flush()


def png_bomb(width: int, height: int, depth: int = 8, full: bool = True) -> bytes:
    """A grey PNG whose header says ``width`` x ``height``; ``full``: with all its (zero) rows,
    a zlib stream inflating to width*height bytes; else a valid header and a few rows."""
    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    z = zlib.compressobj(9)
    row = bytes(1 + width * depth // 8)
    idat = (b"".join(z.compress(row) for _ in range(height)) if full else z.compress(row * 4)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, depth, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def jpeg_bomb(width: int, height: int) -> bytes:
    """A 64x64 grey JPEG whose frame header is patched to say ``width`` x ``height``."""
    import simplejpeg

    data = bytearray(simplejpeg.encode_jpeg(np.full((64, 64, 1), 128, np.uint8), colorspace="GRAY"))
    i = 2
    while i + 4 <= len(data):  # walk the markers to the frame header (SOF0..SOF2)
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            data[i + 5 : i + 9] = struct.pack(">HH", height, width)
            return bytes(data)
        i += 2 + length
    raise AssertionError("no SOF marker in the JPEG")


def one_chunk_shard(payload: bytes) -> bytes:
    """A shard of one minishard holding chunk id 0 (shard_bits=0, minishard_bits=0, raw index)."""
    mini = np.array([0, 0, len(payload)], "<u8").tobytes()  # id delta, offset delta, size
    return struct.pack("<QQ", len(payload), len(payload) + len(mini)) + payload + mini


def bomb_volume(root: Path, encoding: str = "raw", dtype: str = "uint8", size: Sequence[int] = (64, 64, 64),
                sharding: dict | None = None) -> Path:
    """An empty one-chunk volume at ``root``; its scale directory."""
    with cvl.Volume.create("file://" + str(root), data_type=dtype, layer_type="image", size=size, chunk_size=size,
                           resolution=(1, 1, 1), encoding=encoding, sharding=sharding, overwrite=True):
        pass
    scale_dir(root).mkdir(parents=True, exist_ok=True)
    return scale_dir(root)


BOMBS = ("gzip-file", "gzip-points", "zstd-file-sized", "zstd-file-unsized", "gzip-in-shard", "gzip-over-http",
         "png-20000-full", "png-20000-header", "png16-20000-header", "jpeg-20000-header")


def build_bombs(base: Path, http_url: str | None = None, http_root: Path | None = None
                ) -> dict[str, tuple[str, str]]:
    """Write every bomb as a volume's one chunk: (url, "read" or "points") by name; the HTTP
    one only with a server (``http_url`` serving ``http_root``)."""
    gz = gzip_bomb()
    urls: dict[str, tuple[str, str]] = {}
    name = "0-64_0-64_0-64"
    (bomb_volume(base / "gzip-file") / f"{name}.gz").write_bytes(gz)
    urls["gzip-file"] = ("file://" + str(base / "gzip-file"), "read")
    urls["gzip-points"] = (urls["gzip-file"][0], "points")
    for sized in (True, False):
        key = f"zstd-file-{'sized' if sized else 'unsized'}"
        (bomb_volume(base / key) / f"{name}.zstd").write_bytes(zstd_bomb(declare_size=sized))
        urls[key] = ("file://" + str(base / key), "read")
    sh = dict(preshift_bits=0, hash="identity", minishard_bits=0, shard_bits=0, minishard_index_encoding="raw",
              data_encoding="gzip")
    (bomb_volume(base / "gzip-in-shard", sharding=sh) / "0.shard").write_bytes(one_chunk_shard(gz))
    urls["gzip-in-shard"] = ("file://" + str(base / "gzip-in-shard"), "read")
    if http_url is not None and http_root is not None:
        sub = f"bomb-{uuid.uuid4().hex}"
        (bomb_volume(http_root / sub) / f"{name}.gz").write_bytes(gz)  # served as NAME, Content-Encoding: gzip
        urls["gzip-over-http"] = (f"{http_url}/{sub}", "read")
    img = "0-64_0-64_0-1"
    for key, enc, dtype, make in (
        ("png-20000-full", "png", "uint8", lambda: png_bomb(20000, 20000)),
        ("png-20000-header", "png", "uint8", lambda: png_bomb(20000, 20000, full=False)),
        ("png16-20000-header", "png", "uint16", lambda: png_bomb(20000, 20000, depth=16, full=False)),
        ("jpeg-20000-header", "jpeg", "uint8", lambda: jpeg_bomb(20000, 20000)),
    ):
        (bomb_volume(base / key, enc, dtype, size=(64, 64, 1)) / img).write_bytes(make())
        urls[key] = ("file://" + str(base / key), "read")
    return urls


class BombRunner:
    """Builds the bombs, then reads each in its own subprocess, two at a time, in a background
    thread: while a bomb is still unbounded its child spends seconds in page faults, time the
    damage tests use meanwhile."""

    def __init__(self, base: Path, http_url: str, http_root: Path):
        self.results: dict[str, dict] = {}
        self._procs: list[subprocess.Popen] = []
        self._stop = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(base, http_url, http_root), daemon=True)
        self._thread.start()

    def _run(self, base: Path, http_url: str, http_root: Path) -> None:
        try:
            urls = build_bombs(base, http_url, http_root)
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(TESTS_DIR.parent),
                                                                            os.environ.get("PYTHONPATH")])))
            pending = list(BOMBS)
            while pending and not self._stop.is_set():
                batch, pending = pending[:2], pending[2:]
                procs = {k: subprocess.Popen([sys.executable, "-c", BOMB_CHILD, *urls[k]], env=env, text=True,
                                             stdout=subprocess.PIPE, stderr=subprocess.PIPE) for k in batch}
                self._procs = list(procs.values())
                for key, proc in procs.items():
                    self.results[key] = self._collect(proc)
        except BaseException as e:  # noqa: BLE001 - handed to the test that asks
            self._failure = e

    @staticmethod
    def _collect(proc: subprocess.Popen) -> dict:
        try:
            out, err = proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return {"error": "timeout", "message": "the read took over 180 s"}
        try:
            return json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return {"error": f"the child exited with {proc.returncode}", "message": err[-800:]}

    def result(self, name: str) -> dict:
        self._thread.join(timeout=900)
        if self._failure is not None:
            raise self._failure
        return self.results[name]

    def close(self) -> None:
        self._stop.set()
        for proc in self._procs:  # our own children only, if still running
            if proc.poll() is None:
                proc.kill()
        self._thread.join(timeout=60)


@pytest.fixture(scope="module")
def bomb_runner(tmp_path_factory: pytest.TempPathFactory, http_server, http_root: Path) -> Iterator[BombRunner]:
    runner = BombRunner(tmp_path_factory.mktemp("bombs"), http_server.url, http_root)
    yield runner
    runner.close()


@pytest.mark.parametrize("bomb", BOMBS)
def test_bombs_are_decode_errors_in_bounded_memory(bomb_runner: BombRunner, bomb: str) -> None:
    r = bomb_runner.result(bomb)
    grew = r.get("after", 0) - r.get("before", 0)
    assert r["error"] == "DecodeError" and grew < MEMORY_BOUND, (
        f"{bomb}: expected a DecodeError with the peak RSS growing by < {MEMORY_BOUND >> 20} MiB; got "
        f"{r['error']} ({r['message'][:240]}), peak RSS +{grew / 2**20:.0f} MiB\n{r.get('tb', '')}")


# -- 4. hostile info files -------------------------------------------------------------------------
BASE_INFO = {"@type": "neuroglancer_multiscale_volume", "type": "segmentation", "data_type": "uint32",
             "num_channels": 1, "scales": [{
                 "key": "1_1_1", "size": [20, 16, 8], "voxel_offset": [0, 0, 0], "resolution": [1, 1, 1],
                 "chunk_sizes": [[8, 8, 8]], "encoding": "compressed_segmentation",
                 "compressed_segmentation_block_size": [8, 8, 8],
                 "sharding": {"@type": "neuroglancer_uint64_sharded_v1", "preshift_bits": 0, "hash": "identity",
                              "minishard_bits": 1, "shard_bits": 1, "minishard_index_encoding": "gzip",
                              "data_encoding": "gzip"}}]}

#: where a mutation lands: a path of keys and indices into BASE_INFO (the last step set or added)
INFO_PATHS = [("type",), ("data_type",), ("num_channels",), ("scales",), ("@type",), ("extra",),
              *[("scales", 0, f) for f in ("key", "size", "voxel_offset", "resolution", "chunk_sizes", "encoding",
                                           "compressed_segmentation_block_size", "sharding", "extra")],
              *[("scales", 0, f, i) for f in ("size", "voxel_offset", "resolution",
                                              "compressed_segmentation_block_size") for i in range(3)],
              ("scales", 0, "chunk_sizes", 0), *[("scales", 0, "chunk_sizes", 0, i) for i in range(3)],
              *[("scales", 0, "sharding", f) for f in ("@type", "preshift_bits", "hash", "minishard_bits",
                                                       "shard_bits", "minishard_index_encoding", "data_encoding")],
              ("scales", 1)]

DEEP = "@@deep@@"  # replaced in the text by deeply nested lists (json.dumps cannot write those)

#: values that broke parsers before: NaN/Infinity, numbers past int64/float64, wrong types,
#: bits past 64, a deep nesting (DEEP)
HOSTILE_INFO_VALUES = [
    math.nan, math.inf, -math.inf, 1e12, 10**12, 2**63, 2**64, -(2**63) - 1, 2**80, 1e308, -1e308, -1, -8, 0, 0.5,
    1.0000001, 1e-300, True, False, None, "", "8", "raw", "uint64", "\x00", "é" * 3, 65, 64, 63, 22, 21, 20, DEEP,
    [], {}, [8, 8], [8, 8, 8, 8], [[8, 8, 8]], {"a": [1]}, "no-such-encoding", "jxl", "png"]
hostile_values = st.recursive(
    st.sampled_from(HOSTILE_INFO_VALUES) | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12)


def mutate_info(edits: Sequence[tuple[tuple, Any]], deep: int) -> bytes:
    """BASE_INFO with ``edits`` (path, value) applied, as JSON text (NaN and Infinity as Python
    writes them); DEEP becomes ``deep`` nested lists."""
    obj = copy.deepcopy(BASE_INFO)
    for path, value in edits:
        target: Any = obj
        for step in path[:-1]:
            try:
                target = target[step]
            except (KeyError, IndexError, TypeError):
                target = None
                break
        if isinstance(target, dict):
            target[path[-1]] = value
        elif isinstance(target, list) and isinstance(path[-1], int):
            if path[-1] < len(target):
                target[path[-1]] = value
            else:
                target.append(value)
    text = json.dumps(obj, allow_nan=True)
    return text.replace(json.dumps(DEEP), "[" * deep + "]" * deep).encode()


def random_info_text(rng: random.Random) -> bytes:
    """A hostile info for the benchmark's loop: 1-3 edits of BASE_INFO, or damaged text."""
    if rng.random() < 0.2:
        return damage_bytes(json.dumps(BASE_INFO).encode(), random_fault(rng, rng.choice(("flip", "truncate", "garbage"))))
    edits = [(rng.choice(INFO_PATHS), rng.choice(HOSTILE_INFO_VALUES)) for _ in range(rng.randint(1, 3))]
    return mutate_info(edits, rng.choice([3, 700, 5000, 100_000]))


text_damage = st.one_of(
    st.just(b""), st.just(b"null"), st.just(b"[]"), st.just(b"\xef\xbb\xbf" + json.dumps(BASE_INFO).encode()),
    st.integers(0, 600).map(lambda n: json.dumps(BASE_INFO).encode()[:n]),
    st.binary(max_size=64), st.just(b'{"scales": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"),
    st.just(json.dumps(BASE_INFO).encode().replace(b"1_1_1", b"\xff\xfe")),
    st.builds(lambda f: damage_bytes(json.dumps(BASE_INFO).encode(), f), faults("flip") | faults("garbage")),
)


def info_outcome(text: bytes) -> Outcome:
    """Open a volume whose info is ``text``: an InfoError ("error"), or a volume whose small
    read and point read work ("exact"). An UnsupportedEncodingError from the read is "error"
    too: an encoding is checked at the first read, not at open, by design (read.py), so that
    the info of a volume whose codec is not installed can still be looked at. Another
    VolumeError from the read is "wrong" (the info should have been refused at open); any
    other exception "foreign"."""
    with tempfile.TemporaryDirectory(prefix="hostile-info-") as d:
        Path(d, "info").write_bytes(text)
        try:
            vol = cvl.Volume("file://" + d, fill_missing=True, parallel=2)
        except cvl.InfoError as e:
            return Outcome("open", True, "error", describe(e), type(e).__name__)
        except Exception as e:  # noqa: BLE001
            return Outcome("open", True, "foreign", f"opening raised {describe(e)}, not InfoError", type(e).__name__)
        with vol:
            try:  # no chunks exist: zeros of the right shape
                box = tuple(slice(o, o + min(s, 4)) for o, s in zip(vol.voxel_offset, vol.shape[:3]))
                got = vol[box]
                want = (*(min(s, 4) for s in vol.shape[:3]), vol.num_channels)
                if got.shape != want or got.any():
                    return Outcome("read", True, "wrong", f"{vol!r} read {got.shape} (want {want}), nonzero={got.any()}")
                if all(s > 0 for s in vol.shape[:3]):
                    vol.scattered_points(np.array([vol.voxel_offset]))
            except cvl.UnsupportedEncodingError as e:
                return Outcome("read", True, "error", describe(e), type(e).__name__)
            except cvl.VolumeError as e:  # an info that opens must give working reads
                return Outcome("read", True, "wrong", f"opened {vol!r}, but reading raised {describe(e)} "
                               "(the info should have been an InfoError at open)", type(e).__name__)
            except Exception as e:  # noqa: BLE001
                return Outcome("read", True, "foreign", f"opened {vol!r}, but reading raised {describe(e)}",
                               type(e).__name__)
    return Outcome("open", True, "exact")


def check_info_text(text: bytes, label: str) -> list[str]:
    o = info_outcome(text)
    return [] if o.result in ("error", "exact") else [f"{o.detail}\n  {label}"[:1500]]


info_edits = st.tuples(st.lists(st.tuples(st.sampled_from(INFO_PATHS), hostile_values), min_size=1, max_size=3),
                       st.sampled_from([3, 700, 5000, 100_000]))


def test_hostile_info_is_an_info_error_or_a_working_volume() -> None:
    problems = explore(info_edits, lambda e: check_info_text(mutate_info(*e), f"edits {e[0]!r}, deep={e[1]}"), 80)
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:6])


def test_damaged_info_text_is_an_info_error() -> None:
    problems = explore(text_damage, lambda t: check_info_text(t, f"text {t[:200]!r}"), 25)
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:6])


# -- 5. hostile writes -----------------------------------------------------------------------------
#: scalars a uint8 volume cannot hold (out of range, fractional, NaN, not numbers)
HOSTILE_SCALARS = {"300": 300, "-1": -1, "0.7": 0.7, "nan": math.nan, "1e10": 1e10, "inf": math.inf, "-0.5": -0.5,
                   "256": 256, "np.int64(300)": np.int64(300), "np.float64(0.7)": np.float64(0.7),
                   "np.float32(nan)": np.float32("nan"), "'seven'": "seven", "None": None, "1+2j": 1 + 2j,
                   "b'\\x01'": b"\x01", "object()": object()}
#: arrays it cannot take; the wrong shapes never broadcast (an axis of 1 would)
HOSTILE_ARRAYS = ("300 in int64", "-1 in int64", "0.7 in float64", "nan in float32", "1e10 in float64",
                  "1000 in uint16", "objects", "strings", "5-D", "ragged list",
                  *(f"axis {a} {d:+d}" for a in range(4) for d in (1, -1)))


def hostile_array(kind: str, shape: tuple[int, ...]) -> Any:
    """The array ``kind`` names, for a box of ``shape`` (X, Y, Z, C); None where it would be valid."""
    fixed: dict[str, Callable[[], Any]] = {
        "300 in int64": lambda: np.full(shape, 300, np.int64), "-1 in int64": lambda: np.full(shape, -1, np.int64),
        "0.7 in float64": lambda: np.full(shape, 0.7), "nan in float32": lambda: np.full(shape, np.nan, np.float32),
        "1e10 in float64": lambda: np.full(shape, 1e10), "1000 in uint16": lambda: np.full(shape, 1000, np.uint16),
        "objects": lambda: np.full(shape, object()), "strings": lambda: np.full(shape, "x"),
        "5-D": lambda: np.ones((*shape, 2), np.uint8), "ragged list": lambda: [[1, 2], [3]]}
    if kind in fixed:
        return fixed[kind]()
    _, axis, delta = kind.split()
    bad = list(shape)
    bad[int(axis)] += int(delta)
    return None if bad[int(axis)] <= 1 else np.ones(bad, np.uint8)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


WRITE_SHARDING = dict(preshift_bits=0, hash="identity", minishard_bits=1, shard_bits=1,
                      minishard_index_encoding="raw", data_encoding="raw")


def write_target(root: Path, sharded: bool) -> np.ndarray:
    """A uint8 raw volume (plain or sharded) to aim hostile writes at; its voxels."""
    truth = make_truth("png", 3)
    with cvl.Volume.create("file://" + str(root), data_type="uint8", layer_type="image", size=SIZE,
                           chunk_size=CHUNK, resolution=(1, 1, 1), encoding="raw",
                           sharding=WRITE_SHARDING if sharded else None) as vol:
        vol[...] = truth
    return truth


@pytest.fixture(scope="module")
def write_targets(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, tuple[Path, np.ndarray]]:
    out = {}
    for sharded in (False, True):
        root = tmp_path_factory.mktemp("writes") / "v"
        out[sharded] = (root, write_target(root, sharded))
    return out


boxes = st.tuples(st.integers(0, 39), st.integers(0, 31), st.integers(0, 11),
                  st.integers(1, 24), st.integers(1, 24), st.integers(1, 12))


def write_outcome(src: Path, truth: np.ndarray, box6: Sequence[int], make: Callable[[tuple], Any],
                  label: str) -> Outcome | None:
    """Write ``make(shape)`` into a copy of ``src``: a RequestError with no voxel or file changed
    is "error"; accepted, or anything changed, "wrong"; another exception "foreign". None when
    ``make`` has no hostile value for this box."""
    lo, extent = box6[:3], box6[3:]
    hi = [min(s, a + e) for a, e, s in zip(lo, extent, SIZE)]
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    item = make((*(b - a for a, b in zip(lo, hi)), 1))
    if item is None:
        return None
    what = f"writing {label} into {box}"
    with tempfile.TemporaryDirectory(prefix="hostile-write-") as d:
        root = Path(d) / "v"
        shutil.copytree(src, root)
        before = snapshot(root)
        result = Outcome(what, True, "error", error="RequestError")
        with cvl.Volume("file://" + str(root)) as vol, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy's cast warnings, should a value slip through to astype
            try:
                vol[box] = item
            except cvl.RequestError:
                pass
            except Exception as e:  # noqa: BLE001
                result = Outcome(what, True, "foreign", f"raised {describe(e)}, not RequestError", type(e).__name__)
            else:
                result = Outcome(what, True, "wrong", "was accepted")
            after = vol[...]
        changed = []
        if not np.array_equal(after, truth):
            changed.append(f"{int((after != truth).sum())} stored voxels changed")
        if snapshot(root) != before:
            changed.append("the stored files changed")
        if changed:
            result.detail = "; ".join(filter(None, [result.detail, *changed]))
            result.result = "foreign" if result.result == "foreign" else "wrong"
    return result


def check_write(src: Path, truth: np.ndarray, box6: Sequence[int], make: Callable[[tuple], Any],
                label: str) -> list[str]:
    o = write_outcome(src, truth, box6, make, label)
    return [] if o is None or o.result == "error" else [f"{o.what} {o.detail}"]


@pytest.mark.parametrize("value", list(HOSTILE_SCALARS))
@pytest.mark.parametrize("sharded", [False, True], ids=["plain", "sharded"])
def test_hostile_scalar_writes_are_request_errors(write_targets, sharded: bool, value: str) -> None:
    src, truth = write_targets[sharded]
    problems = explore(boxes, lambda b: check_write(src, truth, b, lambda _: HOSTILE_SCALARS[value],
                                                    f"scalar {value}"), 2)
    assert not problems, "\n".join(problems[:6])


@pytest.mark.parametrize("kind", HOSTILE_ARRAYS)
@pytest.mark.parametrize("sharded", [False, True], ids=["plain", "sharded"])
def test_hostile_array_writes_are_request_errors(write_targets, sharded: bool, kind: str) -> None:
    src, truth = write_targets[sharded]
    problems = explore(boxes, lambda b: check_write(src, truth, b, lambda shape: hostile_array(kind, shape),
                                                    f"array {kind}"), 2)
    assert not problems, "\n".join(problems[:6])


# -- 6. a password in the URL ----------------------------------------------------------------------
USER, PASSWORD = "alice", "hunter2-s3cr3t%24pw"  # %24 is "$": neither spelling may show
SECRETS = (PASSWORD, "hunter2-s3cr3t$pw", "hunter2-s3cr3t")


def formatted(e: BaseException) -> str:
    """The whole traceback, chained causes included: what a log would show."""
    return "".join(traceback.format_exception(type(e), e, e.__traceback__)) + repr(e)


def test_password_never_leaks(http_server, http_root: Path, tmp_path: Path) -> None:
    from fixtures_servers import Faults, RangeHTTPServer, refused_port

    sub = f"creds-{uuid.uuid4().hex}"
    root = http_root / sub
    truth = build_volume(root, Layout("raw", "gzip"))  # .gz files: served with Content-Encoding: gzip
    host = http_server.url.removeprefix("http://")
    url = f"http://{USER}:{PASSWORD}@{host}/{sub}"
    cache = tmp_path / "cache"
    found: dict[str, list[str]] = {}

    def check(label: str, text: str) -> None:
        leaked = [s for s in SECRETS if s in text]
        if leaked:
            found[label] = leaked

    def provoke(label: str, fn: Callable[[], Any], expect: type[BaseException] = cvl.VolumeError) -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                fn()
            except expect as e:
                check(label, formatted(e))
            except Exception as e:  # noqa: BLE001
                found[label] = [f"not a {expect.__name__}: {describe(e)}"]
                check(label + " (foreign)", formatted(e))
            else:
                found[label] = ["no error raised"]
        for w in caught:
            check(f"{label} (warning)", str(w.message))

    with cvl.Volume(url, cache=str(cache), parallel=2) as vol:
        np.testing.assert_array_equal(vol[...], truth)  # fills the cache
        for label, text in (("vol.url", vol.url), ("repr(vol)", repr(vol)), ("str(vol.store)", str(vol.store)),
                            ("repr(vol.store)", repr(vol.store)), ("str(chunk store)", str(vol.chunk_store())),
                            ("repr(chunk store)", repr(vol.chunk_store())), ("repr(vol.cache)", repr(vol.cache))):
            check(label, text)
        provoke("out-of-bounds read", lambda: vol[0:1000, 0:1, 0:1], cvl.OutOfBoundsError)
        provoke("bad slice", lambda: vol["a"], cvl.RequestError)
        provoke("write over http", lambda: vol.__setitem__((slice(0, 16), slice(0, 16), slice(0, 8)), 1))

    # one chunk gone, one cut short; read without the cache
    files = data_files(root)
    files[0].unlink()
    files[1].write_bytes(files[1].read_bytes()[:-5])
    cut_box = tuple(slice(*map(int, r.split("-"))) for r in files[1].name.removesuffix(".gz").split("_"))
    with cvl.Volume(url, parallel=2) as plain:
        provoke("missing chunk", lambda: plain[...])
        provoke("missing chunk (points)", lambda: plain.scattered_points(np.array([[0, 0, 0], [39, 31, 11]])))
        provoke("damaged chunk", lambda: plain[cut_box], cvl.DecodeError)
    provoke("404 info", lambda: cvl.Volume(f"http://{USER}:{PASSWORD}@{host}/no-such-{sub}"), cvl.InfoError)
    provoke("refused connection", lambda: cvl.Volume(f"http://{USER}:{PASSWORD}@127.0.0.1:{refused_port()}/{sub}",
                                                     retry=cvl.RetryPolicy(attempts=1, connect_timeout=1)))
    broken = RangeHTTPServer(http_root, Faults(always="500")).start()
    try:
        provoke("server errors", lambda: cvl.Volume(f"http://{USER}:{PASSWORD}@{broken.url.removeprefix('http://')}"
                                                    f"/{sub}", retry=cvl.RetryPolicy(attempts=2, base_delay=0.001,
                                                                                     max_delay=0.01)),
                cvl.StoreError)
    finally:
        broken.stop()

    for p in cache.rglob("*"):
        check(f"cache path {p.relative_to(cache)}", str(p))
        if p.is_file():
            check(f"cache file {p.relative_to(cache)}", p.read_bytes().decode("latin-1"))
    assert not found, "the password showed up (or an error was missing): " + json.dumps(found, indent=1)
