"""Copy a volume to another store, resharding and re-encoding it on the way.

    python examples/copy_reshard.py [SOURCE_URL] [DEST_URL]

The same is available as ``cvl cp SRC DST --sharded``. An interrupted copy resumes.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
from _sample import arg, sample_urls

import cloudvolume_lite as cvl
from cloudvolume_lite.transfer import copy_volume

src = arg(1) or sample_urls()[1]
dst = arg(2) or "file://" + os.path.join(tempfile.mkdtemp(prefix="cvl-copy-"), "resharded")

blocks = copy_volume(src, dst, sharding=True, encoding="compressed_segmentation")
a, b = cvl.Volume(src), cvl.Volume(dst)
same = np.array_equal(a[...], b[...])
print(f"copied {src} -> {dst} in {blocks} block(s); sharding {b.scale.sharding}; identical: {same}")
