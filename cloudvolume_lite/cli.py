"""The ``cvl`` command: info, get, points, cp, cache and demo."""

from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Any, NoReturn, Sequence

import numpy as np

from . import __version__
from .errors import RequestError, UnsupportedEncodingError, VolumeError
from .progress import make_bar
from .stores.url import parse_url, redact, redact_netloc, scrub

#: what ``cvl get -o`` can write, by file extension
OUTPUT_TYPES = (".npy", ".png", ".tif", ".tiff")

#: library advice in an error message -> the command-line option that does it
_CLI_HINTS = (
    ("fill_missing=True", "fill_missing", "--fill-missing"),
    ("bounded=False", "unbounded", "--unbounded"),
    ("overwrite=True", "restart", "--restart"),  # cp: a destination info that differs
)


def _progress_bar(enabled: bool | None, total: int, desc: str, unit: str = "unit") -> Any:
    """A tqdm bar when asked or when stderr is a terminal; otherwise None (see :func:`make_bar`)."""
    return make_bar(total, desc, enabled, unit, min_steps=1, leave=True)


def _fmt(v: Sequence[float]) -> str:
    return "x".join(f"{x:g}" for x in v)


def _cmd_info(args: argparse.Namespace) -> int:
    from .volume import Volume

    vol = Volume(args.url)
    i = vol.info
    print(f"{vol.url}\n  type {i.type}, {i.data_type}, {i.num_channels} channel(s)")
    print(f"  {'mip':>3} {'key':<16} {'size':<18} {'offset':<14} {'resolution':<14} {'chunk':<12} {'encoding':<24} sharding")
    for m, s in enumerate(i.scales):
        shard = "-"
        if s.sharding is not None:
            sh = s.sharding
            shard = f"{sh.hash} preshift {sh.preshift_bits} minishard {sh.minishard_bits} shard {sh.shard_bits}"
        print(f"  {m:>3} {s.key:<16} {_fmt(s.size):<18} {_fmt(s.voxel_offset):<14} {_fmt(s.resolution):<14} "
              f"{_fmt(s.chunk_size):<12} {s.encoding:<24} {shard}")
    if any(s.encoding.lower() == "compressed_segmentation" for s in i.scales):
        from .codecs.cseg import decoder_status

        print(f"  compressed_segmentation decoder: {decoder_status()}")
    return 0


def _label_colors(a: np.ndarray) -> np.ndarray:
    """Stable pseudo-random RGB colours for segmentation ids (0 stays black)."""
    h = (a.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)
    rgb = np.stack([(h >> np.uint64(s)) & np.uint64(255) for s in (0, 8, 16)], -1).astype(np.uint8)
    rgb[a == 0] = 0
    return rgb


def _to_picture(a: np.ndarray, layer_type: str) -> np.ndarray:
    """(X, Y, Z, C) -> a 2-D picture: one z-slice, or a montage of all z-slices in a grid."""
    x, y, z, c = a.shape
    cols = int(np.ceil(np.sqrt(z)))
    rows = -(-z // cols)
    if layer_type == "segmentation" or a.dtype.kind in "iu" and a.dtype.itemsize > 2:
        tiles = _label_colors(a[..., 0])  # (x, y, z, 3)
    elif c in (1, 3):
        tiles = a if a.dtype in (np.uint8, np.uint16) else _rescale(a)
    else:
        tiles = a[..., :1] if a.dtype in (np.uint8, np.uint16) else _rescale(a[..., :1])
    ch = tiles.shape[3]
    canvas = np.zeros((rows * y, cols * x, ch), tiles.dtype)
    for k in range(z):
        r, q = divmod(k, cols)
        canvas[r * y : (r + 1) * y, q * x : (q + 1) * x] = tiles[:, :, k].transpose(1, 0, 2)
    return canvas[..., 0] if ch == 1 else canvas


def _rescale(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    lo, hi = np.nanmin(a), np.nanmax(a)
    return ((a - lo) / (hi - lo or 1) * 255).astype(np.uint8)


def _check_output(path: str, types: Sequence[str] | None = None) -> str:
    """The output file's extension, refused (before any download) when unsupported or unwritable."""
    ext = os.path.splitext(path)[1].lower()
    if types is not None and ext not in types:
        raise RequestError(
            f"cannot write {path!r}: output type {ext or '(no extension)'!r} is not supported; "
            f"name the file with one of {', '.join(types)}"
        )
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise RequestError(f"cannot write {path!r}: the directory {folder} does not exist; create it first")
    return ext


def _save(path: str, a: np.ndarray, layer_type: str) -> str:
    ext = _check_output(path, OUTPUT_TYPES)
    if ext == ".npy":
        np.save(path, a)
        return f"(X, Y, Z, C) = {a.shape} {a.dtype}"
    if ext == ".png":
        from .codecs.png import encode_picture

        pic = _to_picture(a, layer_type)
        with open(path, "wb") as f:
            f.write(encode_picture(pic))
        return f"{pic.shape[1]}x{pic.shape[0]} picture of {a.shape[2]} z-slice(s)"
    if ext in (".tif", ".tiff"):
        import tifffile

        # ZYXC order, as image tools expect a stack; every dtype (uint64 ids included) kept exactly
        tifffile.imwrite(path, np.ascontiguousarray(a.transpose(2, 1, 0, 3)), photometric="minisblack")
        return f"{a.shape[2]} page(s) of {a.shape[0]}x{a.shape[1]}, {a.shape[3]} channel(s), {a.dtype}"
    raise AssertionError(ext)  # _check_output let through a type that is not written here


def _cmd_get(args: argparse.Namespace) -> int:
    from .bbox import Bbox
    from .volume import Volume

    box = Bbox.from_string(args.bbox)
    _check_output(args.output, OUTPUT_TYPES)  # before downloading anything
    vol = Volume(args.url, mip=args.mip, fill_missing=args.fill_missing, bounded=not args.unbounded,
                 progress=args.progress)
    a = vol.download(box)
    what = _save(args.output, a, vol.layer_type)
    print(f"wrote {args.output}: {what}")
    return 0


def _coordinate(text: str, round_: bool) -> int | None:
    """One coordinate as an int; None when it is not a whole number and ``round_`` is off."""
    try:
        return int(text)
    except ValueError:
        pass
    v = float(text)  # a ValueError here: not a number at all
    if not math.isfinite(v):
        raise ValueError(text)
    if v == int(v):
        return int(v)  # 12.0 names a voxel exactly: nothing is rounded
    return math.floor(v + 0.5) if round_ else None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_points_file(path: str, round_: bool = False) -> np.ndarray:
    """(N, 3) int64 voxel coordinates from a CSV/whitespace file of ``x,y,z`` lines.

    Blank lines, ``#`` comments and a header line before the first point are skipped; extra
    columns are ignored. A coordinate with a fraction is an error naming its line, unless
    ``round_`` (then it is rounded to the nearest voxel, halves up).
    """
    rows: list[list[int]] = []
    fractional: list[int] = []
    first = True
    with open(path) as f:
        for n, line in enumerate(f, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            parts = text.replace(",", " ").split()
            if first and not any(_is_number(p) for p in parts):
                first = False
                continue  # a header such as "x,y,z"
            first = False
            try:
                if len(parts) < 3:
                    raise ValueError(text)
                xyz = [_coordinate(p, round_) for p in parts[:3]]
            except ValueError:
                raise RequestError(f"{path}, line {n}: expected three numbers x,y,z, found {text!r}") from None
            if None in xyz:
                fractional.append(n)
            else:
                rows.append(xyz)  # type: ignore[arg-type]
    if fractional:
        more = f" (and {len(fractional) - 1} more line(s))" if len(fractional) > 1 else ""
        raise RequestError(
            f"{path}, line {fractional[0]}{more}: coordinates with a fraction; points are integer voxel "
            "coordinates at the chosen mip. Fix the file, or pass --round to round them to the nearest voxel"
        )
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


def _cmd_points(args: argparse.Namespace) -> int:
    from .volume import Volume

    pts = read_points_file(args.points, args.round)
    _check_output(args.output)
    vol = Volume(args.url, mip=args.mip, fill_missing=args.fill_missing, bounded=not args.unbounded)
    vals = vol.scattered_points(pts)
    vals = vals.reshape(len(pts), -1)
    with open(args.output, "w") as f:
        f.write("x,y,z," + ",".join(f"c{c}" for c in range(vals.shape[1])) + "\n")
        for p, v in zip(pts, vals):
            f.write(",".join(str(int(t)) for t in p) + "," + ",".join(str(t) for t in v.tolist()) + "\n")
    print(f"wrote {len(pts)} value(s) to {args.output}")
    return 0


def _cmd_cp(args: argparse.Namespace) -> int:
    from .transfer import as_sharding_arg, copy_volume

    chunk = None
    if args.chunk_size:
        try:
            chunk = [int(v) for v in args.chunk_size.split(",")]
        except ValueError:
            chunk = []
        if len(chunk) != 3 or min(chunk) < 1:
            raise RequestError(f"--chunk-size takes three positive integers cx,cy,cz, got {args.chunk_size!r}")
    state: dict[str, Any] = {"total": 0}  # the bar, made at the first report (when the total is known)

    def progress(done: int, total: int) -> None:
        if "bar" not in state:
            state["word"] = _unit_word(args.dst)
            state["bar"] = _progress_bar(args.progress, total, "cvl cp", state["word"])
        state["total"] = total
        bar = state["bar"]
        if bar is not None:
            bar.update(done - bar.n)

    client = connect(args.scheduler) if args.scheduler else None
    try:
        written = copy_volume(
            args.src, args.dst, mip=args.mip, encoding=args.encoding,
            sharding=as_sharding_arg(args.sharded, args.unsharded), chunk_size=chunk, resume=not args.restart,
            progress=progress, fill_missing=args.fill_missing, client=client, block_bytes=int(args.block_mb * 2**20),
        )
    finally:
        if state.get("bar") is not None:
            state["bar"].close()
        if client is not None:
            client.close()
    word, total = state.get("word") or _unit_word(args.dst), state["total"]
    print(f"copied {redact(args.src)} (mip {args.mip}) to {redact(args.dst)}: {written} {word}(s) written, "
          f"{total - written} already there")
    return 0


def connect(address: str) -> Any:
    """A dask.distributed Client of the scheduler at ``address``; says where its dashboard is."""
    try:
        from distributed import Client
    except ImportError as e:
        raise UnsupportedEncodingError(f"--scheduler needs dask.distributed, which is not installed ({e}); "
                                       'run: pip install "cloudvolume-lite[dask]"') from None
    client = Client(address, timeout=30)
    link = getattr(client, "dashboard_link", None)
    print(f"running on the dask cluster at {address}" + (f"; dashboard: {link}" if link else ""), file=sys.stderr)
    return client


def _cmd_pyramid(args: argparse.Namespace) -> int:
    from .volume import Volume

    try:
        factor = tuple(int(v) for v in args.factor.split(","))
    except ValueError:
        factor = ()
    if len(factor) != 3 or min(factor) < 1 or args.levels < 1:
        raise RequestError(f"--factor takes three positive integers fx,fy,fz and --levels a positive count; "
                           f"got {args.factor!r} and {args.levels}")
    vol = Volume(args.url)
    client = connect(args.scheduler) if args.scheduler else None
    try:
        src = vol.scales[args.from_mip].key
        for _ in range(args.levels):
            from_mip = next(i for i, s in enumerate(vol.scales) if s.key == src)
            # an existing scale of that resolution is reused: a rerun resumes, not duplicates
            mip = vol.add_scale(factor, from_mip=from_mip)
            from_mip = next(i for i, s in enumerate(vol.scales) if s.key == src)
            bar = _progress_bar(args.progress, 1, f"cvl pyramid mip {mip}", "group")

            def progress(done: int, total: int, bar: Any = bar) -> None:
                if bar is not None:
                    bar.total = total
                    bar.update(done - bar.n)

            try:
                vol.downsample(mip, from_mip, client=client, resume=True, progress=progress)
            finally:
                if bar is not None:
                    bar.close()
            scale = vol.scales[mip]
            print(f"mip {mip} ({_fmt(scale.resolution)} nm, {_fmt(scale.size)} voxels) filled from mip {from_mip}")
            src = scale.key
    finally:
        if client is not None:
            client.close()
    return 0


def _unit_word(url: str) -> str:
    """What the copy to ``url`` writes at once: a chunk, or a shard when sharded."""
    from .volume import Volume

    try:
        return "shard" if Volume(url).scale.sharding is not None else "chunk"
    except VolumeError:
        return "unit"


def _cmd_cache(args: argparse.Namespace) -> int:
    from .stores.disk_cache import DiskCache, default_cache_dir

    cache = DiskCache(args.dir or default_cache_dir())
    if args.action == "size":
        print(f"{cache.size} bytes in {cache.path}")
    elif args.action == "clear":
        cache.clear()
        print(f"cleared {cache.path}")
    else:
        found, old_names = 0, False
        for dirpath, _, files in os.walk(cache.path):
            if "info" in files:
                size = sum(os.lstat(os.path.join(d, f)).st_size for d, _, fs in os.walk(dirpath) for f in fs)
                shown, named = _cache_dir_shown(os.path.relpath(dirpath, cache.path))
                old_names |= named
                print(f"{size:>14} {shown}")
                found += 1
        if not found:
            print(f"no cached volumes in {cache.path}")
        if old_names:
            print("(*** marks a directory an older version named after a URL's user info, password included: "
                  "remove it, or run cvl cache clear)")
    return 0


def _cache_dir_shown(rel: str) -> tuple[str, bool]:
    """A cache directory's path for ``cvl cache ls``, with any user info in it redacted (older
    versions named directories ``user:password@host``; this one names them by a hash,
    ``@<hash>``), and whether it had any."""
    parts = rel.split(os.sep)
    shown = [redact_netloc(p) if "@" in p[1:] else p for p in parts]
    return os.sep.join(shown), shown != parts


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args.dir)


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line (and where to read more)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="cvl", description="Fast numpy access to Neuroglancer Precomputed volumes.")
    p.add_argument("--version", action="version", version=f"cvl (cloudvolume-lite) {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_: str, example: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_, description=help_, epilog=f"example:\n  {example}",
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    d = add("demo", "build a sample volume, read it back through the whole stack, print what happened", "cvl demo --dir /tmp/cvl-demo")
    d.add_argument("--dir", default=None, help="where to build the sample (default: a temporary directory)")
    d.set_defaults(func=_cmd_demo)

    i = add("info", "print a volume's scales", "cvl info gs://bucket/dataset/image")
    i.add_argument("url")
    i.set_defaults(func=_cmd_info)

    g = add("get", "download a box to .npy, .tif or .png (a z-slice, or a montage of slices)",
            "cvl get file:///data/vol 0:512,0:512,100:101 -o slice.png")
    g.add_argument("url")
    g.add_argument("bbox", help="x0:x1,y0:y1,z0:z1 in global voxel coordinates")
    g.add_argument("-o", "--output", required=True)
    g.add_argument("--mip", type=int, default=0)
    g.add_argument("--fill-missing", action="store_true", help="read missing chunks as zeros")
    g.add_argument("--unbounded", action="store_true", help="read outside the volume's bounds as zeros")
    g.add_argument("--progress", action="store_true", default=None, help="show a progress bar (needs tqdm)")
    g.set_defaults(func=_cmd_get)

    pt = add("points", "read the voxel values at the points of a CSV (x,y,z per line)",
             "cvl points file:///data/seg points.csv -o values.csv")
    pt.add_argument("url")
    pt.add_argument("points")
    pt.add_argument("-o", "--output", required=True)
    pt.add_argument("--mip", type=int, default=0)
    pt.add_argument("--fill-missing", action="store_true", help="read missing chunks as zeros")
    pt.add_argument("--unbounded", action="store_true", help="read points outside the volume's bounds as 0")
    pt.add_argument("--round", action="store_true",
                    help="round coordinates with a fraction to the nearest voxel (default: refuse them)")
    pt.set_defaults(func=_cmd_points)

    c = add("cp", "copy one scale to another store, re-encoding or resharding on the way (resumable)",
            "cvl cp file:///data/vol s3://bucket/vol --encoding compressed_segmentation --sharded")
    c.add_argument("src")
    c.add_argument("dst")
    c.add_argument("--mip", type=int, default=0)
    c.add_argument("--encoding", default=None)
    c.add_argument("--sharded", action="store_true", help="write a sharded scale (spec chosen for ~1 GiB shards)")
    c.add_argument("--unsharded", action="store_true", help="write one file per chunk")
    c.add_argument("--chunk-size", default=None, help="cx,cy,cz for the destination")
    c.add_argument("--restart", action="store_true", help="rewrite everything instead of skipping finished chunks")
    c.add_argument("--fill-missing", action="store_true", help="copy missing source chunks as zeros (default: fail)")
    c.add_argument("--progress", action="store_true", default=None, help="show a progress bar (needs tqdm)")
    c.add_argument("--block-mb", type=float, default=64.0,
                   help="about how many MB of the source one task reads (whole destination chunks or shards; default 64)")
    c.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run on a dask.distributed cluster (e.g. tcp://10.0.0.5:8786) instead of local threads")
    c.set_defaults(func=_cmd_cp)

    y = add("pyramid", "add coarser scales, each filled from the one before (resumable)",
            "cvl pyramid gs://bucket/vol --levels 3 --factor 2,2,1")
    y.add_argument("url")
    y.add_argument("--levels", type=int, default=1, help="how many scales to add (default 1)")
    y.add_argument("--factor", default="2,2,2", help="fx,fy,fz: each new scale this much coarser (default 2,2,2)")
    y.add_argument("--from-mip", type=int, default=0, help="the scale the first new one is made from (default 0)")
    y.add_argument("--progress", action="store_true", default=None, help="show a progress bar (needs tqdm)")
    y.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run on a dask.distributed cluster (e.g. tcp://10.0.0.5:8786) instead of local threads")
    y.set_defaults(func=_cmd_pyramid)

    k = add("cache", "inspect or clear the on-disk chunk cache", "cvl cache ls")
    k.add_argument("action", choices=["ls", "clear", "size"])
    k.add_argument("--dir", default=None, help="cache directory (default: $CVL_CACHE_DIR or ~/.cache/cloudvolume-lite)")
    k.set_defaults(func=_cmd_cache)

    from .cli_view import add_commands  # view and serve

    add_commands(add)
    return p


def _one_line(e: BaseException, args: argparse.Namespace | None = None) -> str:
    """An error on one line, without the user info of any URL on the command line (the
    library redacts its own messages; this catches what other code quotes)."""
    msg = " ".join(str(e).split()) or type(e).__name__
    for name in ("url", "src", "dst"):
        value = getattr(args, name, None)
        if isinstance(value, str) and "@" in value:
            try:
                msg = scrub(msg, parse_url(value).netloc)
            except VolumeError:
                pass
            msg = msg.replace(value, redact(value))
    return msg


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``cvl``; errors become one line on stderr and a non-zero exit code, never a traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except VolumeError as e:
        msg = _one_line(e, args)
        for advice, dest, flag in _CLI_HINTS:  # say it in the command line's words
            if advice in msg and hasattr(args, dest):
                msg += f" (on the command line: {flag})"
        if isinstance(e, RequestError) and "bbox" in msg:
            parser.exit(2, f"cvl: error: {msg}\n")
        print(f"cvl: error: {msg}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as e:
        parser.exit(2, f"cvl: error: {_one_line(e, args)}\n")
    except KeyboardInterrupt:
        print("cvl: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the promise is one line, whatever went wrong
        print(f"cvl: error: unexpected {type(e).__name__}: {_one_line(e, args)} (please report this as a bug)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
