"""The ``dlnsim`` command: bound, run, info; errors name the option and write nothing."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

import dlnsim
from dlnsim.cli import add_compare_options, add_flow_cli, compare_kwargs, main


def test_bound_prints_each_delta_choice(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bound", "--N", "2", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    for rule in ("section5", "remark2.5", "optimal"):
        assert rule in out
    line = next(ln for ln in out.splitlines() if ln.startswith("section5"))
    assert float(line.split()[1]) == pytest.approx(7.80e-4, rel=3e-3)  # eta* of (5.1) for seed 0


def test_run_writes_a_result(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run.nc"
    assert main(["run", "--N", "2", "--seed", "0", "--eta", "10xbound", "--iters", "2000", "--out", str(out),
                 "--quiet"]) == 0
    summary = capsys.readouterr().out
    assert "10 x eta*" in summary and str(out) in summary
    ds = dlnsim.open(out)
    assert ds.attrs["n_iter"] == 2000 and ds.attrs["N"] == 2
    assert ds.attrs["schedule_eta"] == pytest.approx(10 * ds.attrs["bound_eta"], rel=1e-14)
    assert main(["info", str(out)]) == 0
    assert "status" in capsys.readouterr().out


def test_run_on_data_file_with_decay(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = tmp_path / "xy.npz"
    np.savez(data, X=rng.standard_normal((4, 10)), Y=rng.standard_normal((3, 10)))
    out = tmp_path / "run.nc"
    assert main(["run", "--data", str(data), "--widths", "4", "2", "3", "--eta", "1e-2", "--gamma", "0.3",
                 "--a2", "1e-2", "--iters", "100", "--out", str(out), "--quiet"]) == 0
    ds = dlnsim.open(out)
    assert ds.attrs["schedule"] == "power_decay" and ds.attrs["data_file"] == str(data)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--eta", "-1"], "eta must be finite and > 0"),
        (["--eta", "fast"], "--eta: expected a number"),
        (["--N", "0"], "N must be an integer >= 1"),
        (["--iters", "-5"], "n_iter must be an integer >= 0"),
        (["--data", "missing.npz", "--widths", "2", "2"], "--data: no such file"),
    ],
)
def test_run_errors_write_nothing(args: list[str], match: str, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run.nc"
    assert main(["run", *args, "--out", str(out), "--quiet"]) == 2
    assert match in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_corrupt_data_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "xy.npz"
    bad.write_bytes(b"not a zip file")
    assert main(["run", "--data", str(bad), "--widths", "2", "2", "--out", str(tmp_path / "o.nc")]) == 2
    assert "--data: cannot read" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["xy.npz"]


def test_flow_cli_writes_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="dlnsim")
    sub = parser.add_subparsers(dest="command")
    add_flow_cli(sub)
    out = tmp_path / "f.nc"
    args = parser.parse_args(["flow", "--N", "3", "--d", "6", "--T", "2", "--n-times", "5",
                              "--out", str(out)])
    assert args.func(args) == 0
    ds = dlnsim.open(out)
    assert ds.attrs["status"] == "done" and ds.sizes["time"] == 5
    assert "status done" in capsys.readouterr().out

    run = argparse.ArgumentParser()
    add_compare_options(run)
    opts = run.parse_args(["--flow", "--flow-kinds", "factor,end_to_end", "--flow-rtol", "1e-9"])
    kw = compare_kwargs(opts)
    assert kw == {"rtol": 1e-9, "atol": 1e-12, "kinds": ("factor", "end_to_end"), "sharpness": False}


def test_run_with_flow_writes_the_comparison(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cmp.nc"
    assert main(["run", "--N", "2", "--d", "6", "--eta", "1e-2", "--iters", "50", "--record", "log:5", "--flow",
                 "--flow-kinds", "factor", "--out", str(out), "--quiet"]) == 0
    assert "|GD - flow|" in capsys.readouterr().out
    ds = dlnsim.open(out)
    assert "flow_distance" in ds and ds.attrs["flow_kinds"] == "factor"
