"""Read a cutout and save its middle z-slice as a PNG.

    python examples/cutout_to_png.py [VOLUME_URL] [OUT.png]
"""

from __future__ import annotations

import numpy as np
from _sample import arg, sample_urls

import cloudvolume_lite as cvl
from cloudvolume_lite.codecs.png import encode_picture

url = arg(1) or sample_urls()[0]
out = arg(2, "cutout.png")

vol = cvl.Volume(url)
lo, hi = vol.bounds.minpt, vol.bounds.maxpt
mid_z = (lo[2] + hi[2]) // 2
cut = vol[lo[0] : min(hi[0], lo[0] + 512), lo[1] : min(hi[1], lo[1] + 512), mid_z]  # (X, Y, 1, C)
picture = np.ascontiguousarray(cut[:, :, 0, 0].T)  # rows are y, columns are x
if picture.dtype not in (np.uint8, np.uint16):
    picture = (255 * (picture - picture.min()) / max(1, picture.max() - picture.min())).astype(np.uint8)
with open(out, "wb") as f:
    f.write(encode_picture(picture))
print(f"{vol.url}: wrote z={mid_z} slice {picture.shape[1]}x{picture.shape[0]} to {out}")
