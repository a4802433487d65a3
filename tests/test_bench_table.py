"""The Performance table of the docs (docs/performance.md) against the benchmark result files it names.

Every number of the table is rendered by benchmarks/readme_table.py from ``benchmarks/results/*.json``: the table
must be exactly that rendering, and a few headline numbers are read here again straight from the JSON.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if importlib.util.find_spec("benchmarks") is None:  # `pytest`, unlike `python -m pytest`, does not add the root
    sys.path.insert(0, str(ROOT))

from benchmarks import readme_table as T  # noqa: E402


def test_performance_table_is_rendered_from_its_files() -> None:
    text = (ROOT / "docs" / "performance.md").read_text()
    files = T._cited(text)
    assert files and all(f.is_file() for f in files), files
    table = T.render(files)
    assert T._replace(text, table) == text, "run: python -m benchmarks.readme_table --write " + " ".join(
        str(f.relative_to(ROOT)) for f in files)


def test_headline_numbers_come_from_the_json() -> None:
    text = (ROOT / "docs" / "performance.md").read_text()
    files = T._cited(text)
    groups, _ = T._groups(files)
    section = text[text.index(T.START):text.index(T.END)]
    if "limit" in groups:
        step = next(r for r in groups["limit"] if r["case"].startswith("GD step"))
        assert f"{step['x_limit70']:.2f}× the limit" in section
    if "jax" in groups and not groups["jax"][0]["case"].startswith("note"):
        strong = next(r for r in groups["jax"] if r["case"].startswith("jax_strong"))
        assert f"{strong['dlnsim_serial_x']:.2f}×" in section
    payload = json.loads(files[0].read_text())
    assert "machine" in payload and payload["machine"].get("cores")


def test_render_marks_targets_from_the_values(tmp_path: Path) -> None:
    """A target's mark follows the value: the same row with a value on either side of its limit."""
    rows = {"limit": [{"case": "GD step (run_gd), N=5 paper", "us_per_step": 8.0, "x_limit70": 1.9,
                       "x_limit70_min_max": "1.8-2.1", "reps": 9, "flops_per_step": 214244.0}]}
    f = tmp_path / "r.json"
    f.write_text(json.dumps({"machine": {"cores": 2}, "results": rows}))
    assert "≤ 2× ✓" in T.render([f]) and "214 244 flops" in T.render([f])
    rows["limit"][0]["x_limit70"] = 2.3
    f.write_text(json.dumps({"machine": {"cores": 2}, "results": rows}))
    assert "≤ 2× ✗" in T.render([f])
    with pytest.raises(SystemExit):
        T._cited("no marker here")
