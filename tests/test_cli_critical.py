"""``dlnsim sweep`` and ``dlnsim critical``: the per-cell ``--timeout`` and the line that says how many cells
of a critical sweep found no converging stepsize."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import dlnsim
from dlnsim.cli import main
from dlnsim.sweeps import grid_sweeps

TINY = ["--d", "6", "--m", "12", "--no-progress"]


@pytest.mark.parametrize("command", ["sweep", "critical"])
@pytest.mark.parametrize("timeout", [None, 2.5])
def test_timeout_reaches_the_grid(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, command: str,
                                  timeout: float | None) -> None:
    seen: dict[str, Any] = {}
    real = grid_sweeps.run_grid

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(grid_sweeps, "run_grid", spy)
    extra = ["--eta", "1e-3", "--dir", str(tmp_path / "sw")] if command == "sweep" else ["--rtol", "0.2"]
    argv = [command, "--N", "2", "--seed", "0", "--iters", "50", *extra, *TINY]
    code = main(argv + ([] if timeout is None else ["--timeout", str(timeout)]))
    assert code == 0
    assert seen["timeout"] == timeout


def test_a_cell_past_its_timeout_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["sweep", "--N", "2", "--seed", "0", "--eta", "1e-3", "--iters", "2e5", "--dir", str(tmp_path / "sw"),
                 "--timeout", "0.001", *TINY])
    assert code == 1
    out = capsys.readouterr().out
    assert "error: 1" in out and "ran longer than timeout=0.001 s" in out
    ds = dlnsim.open_sweep(tmp_path / "sw")
    assert ds["status"].item() == "error"


@pytest.mark.parametrize(("extra", "match"), [(["--timeout", "0"], "--timeout must be a number of seconds > 0"),
                                              (["--timeout", "5", "--executor", "serial"],
                                               "--timeout is not available with executor='serial'")])
def test_timeout_errors_name_the_option(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str],
                                        match: str) -> None:
    code = main(["sweep", "--N", "2", "--seed", "0", "--eta", "1e-3", "--iters", "10", "--dir", str(tmp_path / "sw"),
                 *extra, *TINY])
    assert code == 2
    assert match in capsys.readouterr().err


def test_critical_says_on_stderr_how_many_cells_found_no_stepsize(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["critical", "--N", "2", "3", "--seed", "0", "--iters", "20", "--executor", "serial", *TINY]) == 0
    err = capsys.readouterr().err
    assert "critical_sweep: 2 of 2 cell(s) found no converging stepsize" in err
    assert "stable_critical_stepsize" in err
    assert "Warning" not in err  # a plain line, not a warning with a file name and line
