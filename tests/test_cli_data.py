"""Your own data in every subcommand: ``dlnsim sweep|critical|flow --data xy.npz --widths ...`` run on it, and the
options of the other kind of problem are refused (not ignored)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import dlnsim
from dlnsim.analysis.critical import NoConvergingStepsizeWarning
from dlnsim.cli import main


@pytest.fixture
def data(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((5, 40))
    Y = rng.standard_normal((3, 5)) @ X
    path = tmp_path / "xy.npz"
    np.savez(path, X=X, Y=Y)
    return path


def test_sweep_on_your_data_equals_the_api(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "sw.nc"
    assert main(["sweep", "--data", str(data), "--widths", "5", "2", "3", "--seed", "0", "1", "--eta", "1e-3",
                 "--iters", "200", "--dir", str(tmp_path / "sw"), "--out", str(out), "--no-progress"]) == 0
    ds = dlnsim.load(out)
    with np.load(data) as f:
        problem = dlnsim.Problem(f["X"], f["Y"])
    ref = dlnsim.sweep(None, problem=problem, widths=(5, 2, 3), seed=[0, 1], eta=[1e-3], n_iter=200,
                       engine=dlnsim.Engine("serial", progress=False))
    assert np.array_equal(ds.final_loss.values, ref.final_loss.values)


def test_critical_and_flow_on_your_data(data: Path, tmp_path: Path) -> None:
    assert main(["critical", "--data", str(data), "--N", "2", "--seed", "0", "--iters", "300", "--bracket", "1e-3",
                 "1e-1", "--out", str(tmp_path / "c.nc"), "--no-progress"]) == 0
    crit = dlnsim.load(tmp_path / "c.nc")
    assert np.isfinite(crit.eta_crit.values).all()
    assert main(["flow", "--data", str(data), "--widths", "5", "2", "3", "--T", "2", "--out",
                 str(tmp_path / "f.nc")]) == 0
    flow = dlnsim.load(tmp_path / "f.nc")
    assert flow.attrs["d_x"] == 5 and flow["status"].item() == "done"


@pytest.mark.parametrize(("extra", "message"), [
    (["--d", "5"], "--d: only used with the paper setup"),
    (["--N", "2"], "--widths gives the whole network"),
])
def test_options_of_the_other_problem_are_refused(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  extra: list[str], message: str) -> None:
    argv = ["sweep", "--data", str(data), "--widths", "5", "2", "3", "--seed", "0", "--eta", "1e-3", "--iters", "10",
            "--dir", str(tmp_path / "s"), "--no-progress", *extra]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_paper_options_without_data(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["sweep", "--seed", "0", "--eta", "1e-3", "--iters", "10", "--dir", str(tmp_path / "s"),
                 "--widths", "5", "2", "3"]) == 2
    assert "--widths: only used with --data" in capsys.readouterr().err


def test_critical_sweep_says_how_many_cells_found_no_stepsize() -> None:
    with pytest.warns(NoConvergingStepsizeWarning, match=r"2 of 2 cell\(s\) found no converging stepsize"):
        crit = dlnsim.critical_sweep(None, N=[2, 3], seed=[0], n_iter=20, d=6, m=12,
                                     engine=dlnsim.Engine("serial", progress=False))
    assert (crit.search_status.values == "no_converging_eta").all()
