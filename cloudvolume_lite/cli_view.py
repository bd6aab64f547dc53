"""The ``cvl view`` and ``cvl serve`` commands: volumes served until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

LOOPBACK = ("127.0.0.1", "localhost", "::1")
#: the chunk LRU of each served volume: the browser asks for the same chunks again and again
DEFAULT_LRU_MB = 512


def add_commands(add: Callable[[str, str, str], argparse.ArgumentParser]) -> None:
    """Register ``view`` and ``serve`` with ``cvl``'s subcommand factory ``add``."""
    v = add("view", "open volumes in Neuroglancer (served from this machine, nothing fetched from the internet)",
            "cvl view gs://bucket/em gs://bucket/seg")
    _common(v)
    v.add_argument("--no-browser", action="store_true", help="print the viewer's URL but do not open a browser")
    v.add_argument("--layout", default="4panel", choices=["4panel", "xy", "xz", "yz", "3d", "xy-3d"],
                   help="Neuroglancer's panel layout (default 4panel)")
    v.set_defaults(func=_cmd_view)

    s = add("serve", "serve volumes over HTTP with CORS, Range and gzip, for a Neuroglancer of your own",
            "cvl serve file:///data/vol --port 8000")
    _common(s)
    s.set_defaults(func=_cmd_serve)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("urls", nargs="+", metavar="URL")
    p.add_argument("--port", type=int, default=0, help="the port to serve on (default: a free one)")
    p.add_argument("--host", default="127.0.0.1",
                   help="the address to bind (default 127.0.0.1; anything else serves the data to your network)")
    p.add_argument("--lru-mb", type=float, default=DEFAULT_LRU_MB,
                   help=f"in-memory chunk cache per volume, MB (default {DEFAULT_LRU_MB})")


def _open(args: argparse.Namespace) -> list[Any]:
    from .volume import Volume

    if args.host not in LOOPBACK:
        print(f"cvl: warning: serving on {args.host}: anyone who can reach this machine on port "
              f"{args.port or '(chosen)'} can read these volumes", file=sys.stderr)
    return [Volume(u, lru_bytes=int(args.lru_mb * 2**20)) for u in args.urls]


def _serve_until_stopped(stop: Callable[[], None]) -> int:
    """Block until Ctrl-C (SIGINT) or SIGTERM, then stop cleanly."""
    done = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        done.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    print("Ctrl-C stops", flush=True)  # only now: a signal from here on stops cleanly
    try:
        while not done.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        stop()
    print("stopped", flush=True)
    return 0


def _cmd_view(args: argparse.Namespace) -> int:
    from .viewer import Viewer, client_dir

    client_dir()  # the extra's absence is an error before anything is opened
    vols = _open(args)
    viewer = Viewer(vols, host=args.host, port=args.port, layout=args.layout)
    viewer.start(open_browser=not args.no_browser)
    _print_served(viewer.server, viewer.names, vols)
    print(f"viewer: {viewer.url}", flush=True)
    return _serve_until_stopped(viewer.stop)


def _cmd_serve(args: argparse.Namespace) -> int:
    from .proxy import VolumeServer, volume_names

    vols = _open(args)
    names = volume_names([v.url for v in vols])
    server = VolumeServer(dict(zip(names, vols)), host=args.host, port=args.port).start()
    _print_served(server, names, vols)
    return _serve_until_stopped(server.stop)


def _print_served(server: Any, names: list[str], vols: list[Any]) -> None:
    print(f"serving {len(vols)} volume(s) on {server.url} (CORS, Range, gzip)", flush=True)
    for name, vol in zip(names, vols):
        print(f"  {vol.url} ({vol.layer_type}) -> precomputed://{server.volume_url(name)}", flush=True)


__all__ = ["DEFAULT_LRU_MB", "add_commands"]
