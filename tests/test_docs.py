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


def _report():
    """benchmarks/report.py, imported from its path (benchmarks/ is not a package)."""
    import importlib.util
    import sys

    bench = ROOT / "benchmarks"
    if str(bench) not in sys.path:
        sys.path.insert(0, str(bench))  # report.py imports its neighbour common.py
    spec = importlib.util.spec_from_file_location("cvl_benchmarks_report", bench / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_figures_match_committed_results():
    """README's speed sentences and docs/benchmarks.md's tables are what docs/results/*.json give."""
    report = _report()
    results = report.load(report.results_dir(ROOT))
    for name in ("read.json", "read_sharded.json", "points.json", "http.json"):
        assert name in results, f"docs/results/{name} is missing: run the benchmark, then `python benchmarks/report.py --collect`"
    for path, want in report.render(ROOT).items():
        assert path.read_text() == want, (
            f"{path.relative_to(ROOT)} differs from the figures in docs/results/: run `python benchmarks/report.py`"
        )


def test_speed_sentences_say_when_cvl_is_behind():
    """The wording follows the numbers: lines below the best peer are counted as behind, not hidden."""
    report = _report()
    line = lambda name, cvl, cv, tsf: {  # noqa: E731
        "name": name, "systems": {"cvl": {"mb_per_s": cvl}, "cv": {"mb_per_s": cv}, "ts F": {"mb_per_s": tsf}}}
    results = {
        "read.json": {"lines": [line("fast", 300.0, 100.0, 150.0), line("even", 100.0, 50.0, 101.0),
                                line("slow", 60.0, 10.0, 100.0)]},
        "points.json": {"points": 10, "cold_ms": {"B": {"cvl": 5.0, "cv": 500.0, "ts": 4.0, "ts F": 2.0}}},
        "http.json": {"server": "async", "latency_s": 0.02, "mb_per_s": {"A": {"cvl": 50.0, "cv": 40.0, "ts": 100.0}}},
    }
    text = " ".join(report.speed_paragraph(results).split())
    assert "0.60–2.00× the speed of the fastest peer" in text
    assert "ahead (≥ 1.05×) on 1 of 3 local read lines, level (within 5%) on 1 and behind on 1" in text
    assert "at 0.40× TensorStore's speed and 100× faster than CloudVolume" in text
    assert "run at 0.50× the fastest peer's speed on 1 volume" in text
    assert "TensorStore in C order" in text  # no ts F column in that HTTP result
    behind = report.behind_section(results)
    assert "**slow**" in behind and "**fast**" not in behind and "HTTP" in behind


def test_new_sections_without_their_json_say_so():
    """floor, points_scale, halo and cluster render a sentence, not an error, when not measured; the
    behind list picks up a cold read under 80% of the floor."""
    report = _report()
    for name, body in report.report_more.sections({}):
        assert body.startswith("Not measured yet"), name
    vol = {"label": "raw128", "out_bytes": 134217728, "floor": "floor",
           "systems": {"cvl": {"mb_per_s": 480.0}, "ts F": {"mb_per_s": 300.0}, "floor": {"mb_per_s": 800.0}}}
    behind = report.behind_section({"floor.json": {"volumes": [vol]}})
    assert "60% of the floor" in behind and "cold read" in behind
