"""``cvl view`` in a real browser: headless Chromium (WebGL through SwiftShader) opens the URL
the command prints, waits until Neuroglancer says its layers are drawn, and the screenshot is
checked against the data: an image slice's pixels equal the voxels' values, a segmentation's
labels each show one colour of their own. Local, HTTP and S3 (moto) volumes; the screenshots
are kept in ``test-output/viewer/`` (or ``$CVL_TEST_OUTPUT``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import cloudvolume_lite as cvl
import served
from browser import Browser, find_chromium

pytest.importorskip("websocket", reason="websocket-client (a test dependency) drives the browser")
CHROMIUM = find_chromium()
if CHROMIUM is None:
    if os.environ.get("CI"):
        raise RuntimeError("CI must install Chromium for the viewer tests (Debian: apt-get install chromium)")
    pytest.skip("no Chromium installed (Debian: apt-get install chromium); the viewer's browser tests need one",
                allow_module_level=True)
try:
    from cloudvolume_lite.viewer import client_dir

    client_dir()
except cvl.VolumeError as e:
    pytest.skip(f"the viewer extra is not installed: {e}", allow_module_level=True)

OUTPUT = Path(os.environ.get("CVL_TEST_OUTPUT", Path(__file__).resolve().parent.parent / "test-output")) / "viewer"
READY = "window.viewer !== undefined && window.viewer.isReady() && window.viewer.layerManager.managedLayers.length > 0"
#: the slice panel's box in CSS pixels (one panel in the "xy" layout)
PANEL_RECT = """(() => { const ps = [...window.viewer.display.panels].filter(p => p.element.offsetWidth > 0);
  const r = ps[0].element.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()"""


def _view_and_shoot(urls: list[str], name: str, env: dict | None = None) -> tuple[np.ndarray, list[float]]:
    """``cvl view`` started as a user would (no browser of its own), its printed viewer URL
    opened in Chromium: the screenshot and the panel's box; then Ctrl-C, which must stop it."""
    proc, lines = served.start(["view", *urls, "--no-browser", "--layout", "xy"], env=env)
    try:
        return _shoot(next(x.split(" ", 1)[1].strip() for x in lines if x.startswith("viewer: ")), name)
    finally:
        served.stop(proc)


def _shoot(url: str, name: str) -> tuple[np.ndarray, list[float]]:
    """The page at ``url`` once Neuroglancer is ready: the screenshot (RGB) and the panel box."""
    from PIL import Image

    OUTPUT.mkdir(parents=True, exist_ok=True)
    with Browser(CHROMIUM, size=(1000, 800)) as b:
        b.goto(url)
        b.wait_for(READY, timeout=120)
        rect = b.evaluate(PANEL_RECT)
        path = b.screenshot(OUTPUT / f"{name}.png")
    print(f"screenshot: {path}")
    return np.asarray(Image.open(path).convert("RGB")).astype(np.int16), rect


def _at_voxels(shot: np.ndarray, rect: list[float], vol: cvl.Volume) -> np.ndarray:
    """The screenshot's colour at the centre of each voxel of the slice shown, (X, Y, 3): the
    view is centred on the volume at the scale the viewer chose to fit it."""
    from cloudvolume_lite.viewer import FIT_PIXELS

    sx, sy = vol.shape[:2]
    fit = FIT_PIXELS["xy"]
    scale = max(sx / fit[0], sy / fit[1])  # voxels per screen pixel
    cx, cy = rect[0] + rect[2] / 2, rect[1] + rect[3] / 2
    px = np.floor(cx + (np.arange(sx) + 0.5 - sx / 2) / scale).astype(int)
    py = np.floor(cy + (np.arange(sy) + 0.5 - sy / 2) / scale).astype(int)
    return shot[py][:, px].transpose(1, 0, 2)


def _check_image(shot: np.ndarray, rect: list[float], vol: cvl.Volume, data: np.ndarray) -> None:
    seen = _at_voxels(shot, rect, vol)
    want = data[:, :, data.shape[2] // 2, 0].astype(np.int16)
    assert (seen[..., 0] == seen[..., 1]).all() and (seen[..., 1] == seen[..., 2]).all()  # grey, as an image is
    corr = np.corrcoef(seen[..., 0].ravel(), want.ravel())[0, 1]
    assert corr > 0.99, corr
    assert np.median(np.abs(seen[..., 0] - want)) <= 2  # uint8 shown as it is: 0..255 to black..white


def _check_segmentation(shot: np.ndarray, rect: list[float], vol: cvl.Volume, labels: np.ndarray) -> None:
    seen = _at_voxels(shot, rect, vol)
    want = labels[:, :, labels.shape[2] // 2, 0]
    colours = {}
    for label in np.unique(want):
        px = seen[want == label].reshape(-1, 3)
        values, counts = np.unique(px, axis=0, return_counts=True)
        colour = values[counts.argmax()]
        assert counts.max() >= 0.8 * len(px), (label, counts.max(), len(px))  # one colour per label
        assert np.ptp(colour) > 20, (label, colour)  # a colour, not the grey background
        colours[int(label)] = tuple(colour)
    assert len(set(colours.values())) == len(colours), colours  # a different one for each


def _blocks(shape: tuple[int, int, int], block: int, values: np.ndarray) -> np.ndarray:
    """A volume of ``block``-sized cubes, each one value, cycling through ``values``."""
    idx = np.add.outer(np.add.outer(np.arange(shape[0]) // block, 3 * (np.arange(shape[1]) // block)),
                       np.zeros(shape[2], dtype=int))
    return values[idx % len(values)][..., None]


def test_cvl_view_shows_a_local_image(tmp_path) -> None:
    data = _blocks((96, 64, 16), 16, np.array([20, 70, 120, 170, 220, 250], dtype=np.uint8))
    vol = cvl.Volume.from_numpy(data, f"file://{tmp_path}/image", chunk_size=(32, 32, 16), layer_type="image")
    shot, rect = _view_and_shoot([vol.url], "local-image")
    _check_image(shot, rect, vol, data)


def test_cvl_view_shows_a_sharded_segmentation_over_http(http_server, http_root) -> None:
    labels = _blocks((96, 64, 16), 16, np.array([3, 17, 101, 2**40 + 5, 999, 4242, 77], dtype=np.uint64))
    sharding = {"@type": "neuroglancer_uint64_sharded_v1", "preshift_bits": 1, "hash": "murmurhash3_x86_128",
                "minishard_bits": 1, "shard_bits": 1, "minishard_index_encoding": "gzip", "data_encoding": "gzip"}
    src = cvl.Volume.create(f"file://{http_root}/viewer-seg", data_type="uint64", layer_type="segmentation",
                            size=labels.shape[:3], chunk_size=(32, 32, 16), resolution=(8, 8, 40),
                            encoding="compressed_segmentation", sharding=sharding)
    src[...] = labels
    vol = cvl.Volume(f"{http_server.url}/viewer-seg")
    shot, rect = _view_and_shoot([vol.url], "http-sharded-segmentation")
    _check_segmentation(shot, rect, vol, labels)


def test_cvl_view_shows_an_s3_image(tmp_path, s3_bucket, s3_endpoint, s3_secrets) -> None:
    data = _blocks((80, 48, 8), 8, np.array([10, 60, 110, 160, 210, 240, 35], dtype=np.uint8))
    url = f"s3://{s3_bucket}/viewer-image"
    cvl.Volume.from_numpy(data, url, chunk_size=(16, 16, 8), layer_type="image", secrets=s3_secrets)
    env = {**os.environ, "CVL_S3_ENDPOINT": s3_endpoint, "AWS_ACCESS_KEY_ID": s3_secrets["aws_access_key_id"],
           "AWS_SECRET_ACCESS_KEY": s3_secrets["aws_secret_access_key"], "AWS_DEFAULT_REGION": "us-east-1"}
    shot, rect = _view_and_shoot([url], "s3-image", env=env)
    _check_image(shot, rect, cvl.Volume(url, secrets=s3_secrets), data)


def test_three_uint8_channels_are_shown_in_colour(tmp_path) -> None:
    rgb = np.zeros((48, 32, 4, 3), dtype=np.uint8)
    rgb[:24, :, :, 0] = 200  # red on the left half, blue on the right, green in the top rows
    rgb[24:, :, :, 2] = 180
    rgb[:, :8, :, 1] = 150
    vol = cvl.Volume.from_numpy(rgb, f"file://{tmp_path}/rgb", chunk_size=(16, 16, 4), layer_type="image")
    shot, rect = _view_and_shoot([vol.url], "local-rgb")
    seen = _at_voxels(shot, rect, vol)
    want = rgb[:, :, 2].astype(np.int16)
    assert np.median(np.abs(seen - want)) <= 2 and np.abs(seen - want).mean() < 8
