"""Every script in examples/ runs on the sample volume, so the examples never rot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted(p for p in (Path(__file__).parent.parent / "examples").glob("*.py") if not p.name.startswith("_"))


def test_examples_exist():
    assert {p.stem for p in EXAMPLES} >= {"cutout_to_png", "scattered_points", "copy_reshard", "dask_localcluster", "train_regions"}


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs(script, tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip(), "an example should say what it did"
    assert "identical: False" not in r.stdout
