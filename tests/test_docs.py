"""The docs stay true to the code: every public name is documented; the README's commands are CI's."""

from __future__ import annotations

from pathlib import Path

import cloudvolume_lite as cvl

ROOT = Path(__file__).parent.parent


def test_every_public_name_in_api_docs():
    api = (ROOT / "docs" / "api.md").read_text()
    for name in cvl.__all__:
        assert f"cvl.{name}" in api or f"`{name}" in api, name
    public_members = [m for m in dir(cvl.Volume) if not m.startswith("_")]
    for m in public_members:
        assert f"vol.{m}" in api or f"Volume.{m}" in api, f"Volume.{m} is not in docs/api.md"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text().splitlines()
    ci = (ROOT / ".ci" / "run").read_text()
    test_cmd = next(line.split("#")[0].strip() for line in readme if "pytest" in line)
    assert test_cmd in ci
