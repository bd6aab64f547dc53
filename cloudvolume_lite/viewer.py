"""``cvl view`` and ``vol.viewer()``: volumes in Neuroglancer, served from loopback.

The Neuroglancer client is the one the ``neuroglancer`` package ships built
(``neuroglancer/static/client/``; ``pip install "cloudvolume-lite[viewer]"``), served by the
same :class:`~cloudvolume_lite.proxy.VolumeServer` as the volumes, so nothing is fetched
from the internet. That build is the client of neuroglancer's Python integration: it must be
loaded under ``/v/<token>/`` and keeps an event stream to ``/events/<token>`` open and posts
its state to ``/state/<token>``; the server answers those (an idle stream, empty replies)
and the viewer's state travels in the URL's ``#!`` fragment: a layer per volume (image or
segmentation by the info's ``type``) at the centre of the first volume.
"""

from __future__ import annotations

import importlib.util
import json
import secrets
import urllib.parse
import webbrowser
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import UnsupportedEncodingError
from .proxy import ProxyHandler, Reply, VolumeServer, volume_names

if TYPE_CHECKING:
    from .volume import Volume

_MIME = {".js": "application/javascript", ".css": "text/css", ".html": "text/html; charset=utf-8",
         ".map": "application/json", ".wasm": "application/wasm"}
#: the slice panel a default view is fitted to (CSS pixels), by layout: one panel fills a
#: browser window; four share it. The user zooms from there.
FIT_PIXELS = {"xy": (800, 600), "xz": (800, 600), "yz": (800, 600), "4panel": (560, 260)}
FIT_DEFAULT = (560, 260)


def client_dir() -> Path:
    """The built Neuroglancer client inside the installed ``neuroglancer`` package (found
    without importing it: the package pulls in tornado and more)."""
    spec = importlib.util.find_spec("neuroglancer")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        path = Path(loc) / "static" / "client"
        if (path / "index.html").is_file():
            return path
    raise UnsupportedEncodingError(
        "cvl view needs the Neuroglancer client from the 'neuroglancer' package, which is not installed"
        + (" (or has no built client)" if locations else "")
        + ': pip install "cloudvolume-lite[viewer]"; or run `cvl serve URL` and open it in a Neuroglancer of your own'
    )


#: three channels of 8 bits are colour (RGB microscopy, photographs); Neuroglancer's default
#: image shader would show the first channel in grey
RGB_SHADER = ("void main() { emitRGB(vec3(toNormalized(getDataValue(0)), toNormalized(getDataValue(1)), "
              "toNormalized(getDataValue(2)))); }")


def layer_state(name: str, vol: "Volume", source_url: str) -> dict:
    """One Neuroglancer layer: segmentation for a segmentation volume, else image (in colour
    for three uint8 channels)."""
    if vol.layer_type == "segmentation":
        return {"type": "segmentation", "source": f"precomputed://{source_url}", "name": name}
    layer = {"type": "image", "source": f"precomputed://{source_url}", "name": name}
    if vol.num_channels == 3 and vol.dtype == "uint8":
        layer["shader"] = RGB_SHADER
    return layer


def viewer_state(layers: Sequence[tuple[str, "Volume", str]], *, layout: str = "4panel",
                 cross_section_scale: float | None = None) -> dict:
    """The Neuroglancer state for ``layers`` ((name, volume, source URL) each): global
    dimensions in the first volume's mip-0 resolution (nm), the view at its centre, the scale
    fitting its x-y extent into the layout's :data:`FIT_PIXELS` unless ``cross_section_scale``
    is given."""
    if not layers:
        raise ValueError("viewer_state needs at least one layer")
    first = layers[0][1]
    scale0 = first.scales[0]
    res, size, offset = scale0.resolution, scale0.size, scale0.voxel_offset
    centre = [o + s / 2 for o, s in zip(offset, size)]
    if cross_section_scale is None:
        fit = FIT_PIXELS.get(layout, FIT_DEFAULT)
        cross_section_scale = max(size[0] / fit[0], size[1] / fit[1])
    return {
        "dimensions": {ax: [r * 1e-9, "m"] for ax, r in zip("xyz", res)},
        "position": centre,
        "crossSectionScale": cross_section_scale,
        "projectionScale": max(size) * 2.0,
        "layers": [layer_state(n, v, u) for n, v, u in layers],
        "layout": layout,
        "selectedLayer": {"visible": False, "layer": layers[0][0]},
    }


class Viewer:
    """Volumes served on ``host:port`` with the Neuroglancer client; a context manager.

    ``url`` opens the viewer; ``volume_url(name)`` is a volume for another Neuroglancer.
    Binding anything but loopback serves the data to the network: the caller warns.
    """

    def __init__(self, volumes: Sequence["Volume"], names: Sequence[str] | None = None, *, host: str = "127.0.0.1",
                 port: int = 0, client: bool = True, layout: str = "4panel",
                 cross_section_scale: float | None = None):
        names = list(names) if names is not None else volume_names([v.url for v in volumes])
        if len(names) != len(volumes):
            raise ValueError("one name per volume")
        self._client = client_dir() if client else None
        self.token = secrets.token_hex(8)
        self.server = VolumeServer(dict(zip(names, volumes)), host=host, port=port, routes=self._route)
        self.names = names
        self.state = viewer_state([(n, v, self.server.volume_url(n)) for n, v in zip(names, volumes)],
                                  layout=layout, cross_section_scale=cross_section_scale)

    @property
    def url(self) -> str:
        """The viewer's address with its state (``…/v/<token>/#!{state}``)."""
        if self._client is None:
            return self.server.url
        fragment = urllib.parse.quote(json.dumps(self.state, separators=(",", ":")), safe="")
        return f"{self.server.url}/v/{self.token}/#!{fragment}"

    def volume_url(self, name: str) -> str:
        return self.server.volume_url(name)

    def start(self, open_browser: bool = False) -> "Viewer":
        """Serve (on a daemon thread), and open the default browser at :attr:`url` if asked."""
        self.server.start()
        if open_browser and self._client is not None:
            webbrowser.open(self.url)
        return self

    def stop(self) -> None:
        """Stop serving (the volumes stay open)."""
        self.server.stop()

    def __enter__(self) -> "Viewer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _route(self, method: str, path: str, handler: ProxyHandler) -> Reply | None:
        """The client's own paths; None for everything else (the volumes)."""
        if self._client is None:
            return None
        if path == "/" and method == "GET":  # the bare address opens the viewer too
            return Reply(302, b"", "text/plain", False, (("Location", self.url[len(self.server.url):]),))
        parts = path.lstrip("/").split("/")
        if len(parts) < 2 or parts[1] != self.token or parts[0] not in ("v", "events", "state", "action",
                                                                         "volume_response", "credentials"):
            return None
        kind = parts[0]
        if kind == "events" and method == "GET":
            handler.stream_events()
            return handler.answered()
        if kind != "v" or method != "GET":
            # the client's notices (state, actions, volume answers): nothing to act on; a state
            # post is refused as "changed elsewhere", which the client simply drops
            return Reply(412, b"", "text/plain", False) if kind == "state" else Reply(200, b"{}", "application/json", False)
        if len(parts) == 2:  # /v/<token>: the client's files are relative to /v/<token>/
            return Reply(301, b"", "text/plain", False, (("Location", f"/v/{self.token}/"),))
        name = "/".join(parts[2:]) or "index.html"
        if "/" in name or name.startswith(".") or not (self._client / name).is_file():
            return Reply(404, b"", "text/plain", False)
        suffix = Path(name).suffix
        return Reply(200, (self._client / name).read_bytes(), _MIME.get(suffix, "application/octet-stream"),
                     suffix != ".wasm")


def view(volumes: Sequence["Volume"], **options) -> Viewer:
    """A started :class:`Viewer` over ``volumes`` (``options`` as for Viewer, plus
    ``open_browser``)."""
    open_browser = options.pop("open_browser", False)
    return Viewer(volumes, **options).start(open_browser)


__all__ = ["FIT_DEFAULT", "FIT_PIXELS", "RGB_SHADER", "Viewer", "client_dir", "layer_state", "view", "viewer_state"]
