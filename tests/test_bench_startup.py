"""The start-up rows of the ``system`` benchmark group: ``import dlnsim`` and ``dlnsim --version``, each the median
wall time of fresh processes, and their targets in the table of ``python -m benchmarks``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if importlib.util.find_spec("benchmarks") is None:  # `pytest`, unlike `python -m pytest`, does not add the root
    sys.path.insert(0, str(ROOT))

from benchmarks import system_bench as S  # noqa: E402
from benchmarks.__main__ import targets  # noqa: E402


def test_startup_rows_and_their_targets() -> None:
    rows = S.startup(repeats=2)
    assert [r["case"] for r in rows] == ["startup: import dlnsim (warm, median of 2 processes)",
                                         "startup: dlnsim --version (warm, median of 2 processes)"]
    assert [r["target_s"] for r in rows] == [0.5, 0.3]
    for r in rows:
        assert 0 < r["min_s"] <= r["seconds"] <= r["max_s"] < 60
    got = {t["target"]: t for t in targets({"system": rows})}
    for r in rows:
        t = got[r["case"]]
        assert t["want"] == f"<= {r['target_s']:g} s" and t["measured"] == r["seconds"]
        assert t["met"] == (r["seconds"] <= r["target_s"])


def test_version_command_is_the_console_script_or_the_module() -> None:
    cmd = S._command("dlnsim --version")
    assert cmd[-1] == "--version"
    assert cmd[0].endswith("dlnsim") or cmd[1:3] == ["-m", "dlnsim"]
    assert S._command("import dlnsim") == [sys.executable, "-c", "import dlnsim"]
