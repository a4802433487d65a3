"""The ``dlnsim`` command: bound, run, flow, info; help texts; errors name the option and write nothing."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import dlnsim
from dlnsim.cli.app import add_compare_options, add_flow_cli, build_parser, compare_kwargs, main
from dlnsim.cli.sweep import count

SUBCOMMANDS = ("bound", "run", "flow", "sweep", "critical", "info", "plot")


def flat(text: str) -> str:
    """Help text without argparse's line breaks (which may split a word after a hyphen)."""
    return re.sub(r"(\w)- (\w)", r"\1-\2", " ".join(text.split()))


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The one line of stderr."""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


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
    ds = dlnsim.load(out)
    assert ds.attrs["n_iter"] == 2000 and ds.attrs["N"] == 2
    assert ds.attrs["schedule_eta"] == pytest.approx(10 * ds["bound_eta"].item(), rel=1e-14)
    assert main(["info", str(out)]) == 0
    assert "status" in capsys.readouterr().out


def test_run_on_data_file_with_decay(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = tmp_path / "xy.npz"
    np.savez(data, X=rng.standard_normal((4, 10)), Y=rng.standard_normal((3, 10)))
    out = tmp_path / "run.nc"
    assert main(["run", "--data", str(data), "--widths", "4", "2", "3", "--eta", "1e-2", "--gamma", "0.3",
                 "--a2", "1e-2", "--iters", "100", "--out", str(out), "--quiet"]) == 0
    ds = dlnsim.load(out)
    assert ds.attrs["schedule"] == "power_decay" and ds.attrs["data_file"] == str(data)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--eta", "-1"], "argument --eta: expected a positive number, 'bound' or '<c>xbound'"),
        (["--eta", "fast"], "argument --eta: expected a positive number"),
        (["--N", "0"], "N must be an integer >= 1"),
        (["--iters", "-5"], "argument --iters: expected a whole number >= 0"),
        (["--iters", "1.5e0"], "argument --iters: expected a whole number >= 0"),
        (["--data", "missing.npz", "--widths", "2", "2"], "--data: no such file"),
        (["--data", "xy.csv", "--widths", "2", "2"], "--data must be a .npz or .nc file"),
        (["--widths", "2", "2"], "--widths: only used with --data"),
        (["--sharpness"], "--sharpness: only used with --flow"),
    ],
)
def test_run_errors_write_nothing(args: list[str], match: str, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run.nc"
    assert main(["run", *args, "--out", str(out), "--quiet"]) == 2
    line = error_line(capsys)
    assert line.startswith("dlnsim run: error: ") and match in line
    assert list(tmp_path.iterdir()) == []


def test_corrupt_data_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "xy.npz"
    bad.write_bytes(b"not a zip file")
    assert main(["run", "--data", str(bad), "--widths", "2", "2", "--out", str(tmp_path / "o.nc")]) == 2
    assert "--data: cannot read" in error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["xy.npz"]


@pytest.mark.parametrize(("arrays", "suffix", "message"), [
    ({"Y": np.ones((1, 5))}, ".npz", "has no array 'X' (it needs X and Y, samples as columns)"),
    ({"X": np.ones((2, 5))}, ".npz", "has no array 'Y' (it needs X and Y, samples as columns)"),
    ({"Y": np.ones((1, 5))}, ".nc", "has no variable 'X' (it needs X and Y, samples as columns)"),
])
def test_data_file_without_x_or_y(arrays: dict[str, Any], suffix: str, message: str, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / f"x{suffix}"
    if suffix == ".npz":
        np.savez(data, **arrays)
    else:
        import xarray as xr

        xr.Dataset({k: (("r", "m"), v) for k, v in arrays.items()}).to_netcdf(data)
    assert main(["run", "--data", str(data), "--widths", "2", "1", "--out", str(tmp_path / "o.nc")]) == 2
    assert error_line(capsys) == f"dlnsim run: error: --data: {str(data)!r} {message}"
    assert not (tmp_path / "o.nc").exists()


def test_data_format_is_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--help"]) == 0
    text = flat(capsys.readouterr().out)
    assert "a .npz file with arrays X (d_x, m) and Y (d_y, m)" in text
    assert "NetCDF file (.nc) with variables X and Y" in text


def test_flow_cli_writes_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="dlnsim")
    sub = parser.add_subparsers(dest="command")
    add_flow_cli(sub)
    out = tmp_path / "f.nc"
    args = parser.parse_args(["flow", "--N", "3", "--d", "6", "--T", "2", "--n-times", "5",
                              "--out", str(out)])
    assert args.func(args) == 0
    ds = dlnsim.load(out)
    assert ds["status"].item() == "done" and ds.sizes["t"] == 5
    assert "status done" in capsys.readouterr().out

    run = argparse.ArgumentParser()
    add_compare_options(run)
    opts = run.parse_args(["--flow", "--flow-kinds", "factor,end_to_end", "--flow-rtol", "1e-9"])
    kw = compare_kwargs(opts)
    assert kw == {"tolerances": dlnsim.Tolerances(rtol=1e-9, atol=1e-12, max_steps=10_000_000),
                  "kind": ("factor", "end_to_end"), "sharpness": False}  # compare_flow's default max_steps


def test_flow_refuses_to_overwrite_without_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "f.nc"
    argv = ["flow", "--N", "2", "--d", "4", "--T", "1", "--n-times", "3", "--out", str(out)]
    assert main(argv) == 0
    before = out.read_bytes()
    capsys.readouterr()
    assert main([*argv, "--T", "2"]) == 2
    assert error_line(capsys) == f"dlnsim flow: error: --out: {str(out)!r} exists; pass --overwrite to replace it"
    assert out.read_bytes() == before
    assert main([*argv, "--T", "2", "--overwrite"]) == 0
    assert float(dlnsim.load(out)["t"][-1]) == 2.0


def test_run_with_flow_writes_the_comparison(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cmp.nc"
    assert main(["run", "--N", "2", "--d", "6", "--eta", "1e-2", "--iters", "50", "--record", "log:5", "--flow",
                 "--flow-kinds", "factor", "--out", str(out), "--quiet"]) == 0
    assert "|GD - flow|" in capsys.readouterr().out
    ds = dlnsim.load(out)
    assert "flow_distance" in ds and ds.attrs["flow_kinds"] == "factor"


# ------------------------------------------------------------------------------------------ option spelling


def parse(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def test_seed_is_accepted_everywhere() -> None:
    assert parse(["bound", "--seed", "4"]).seed == 4
    assert parse(["run", "--seed", "4", "--out", "r.nc"]).seed == 4
    assert parse(["flow", "--N", "2", "--T", "1", "--seed", "4", "--out", "f.nc"]).seed == 4
    for sub in ("sweep", "critical"):
        extra = ["--eta", "1", "--dir", "d"] if sub == "sweep" else []
        for spelling in ("--seed", "--seeds"):  # a list; --seeds is kept as the same option
            args = parse([sub, "--N", "2", spelling, "0", "1", "--iters", "10", *extra])
            assert args.seed == [0, 1]


@pytest.mark.parametrize("text", ["100000", "1e5", "100_000", "1E5", "1.0e5"])
def test_iters_accepts_scientific_and_underscores(text: str) -> None:
    assert parse(["run", "--iters", text, "--out", "r.nc"]).iters == 100_000
    assert parse(["sweep", "--N", "2", "--eta", "1", "--seed", "0", "--iters", text, "--dir", "d"]).iters == 100_000
    assert parse(["flow", "--N", "2", "--T", "1", "--max-steps", text, "--out", "f.nc"]).max_steps == 100_000
    assert count(text) == 100_000


def test_one_parser_of_counts() -> None:
    """Every count option uses `dlnsim.cli.sweep.count` (one definition)."""
    parser = build_parser()
    sub: dict[str, argparse.ArgumentParser] = parser._subparsers._group_actions[0].choices  # type: ignore[assignment, union-attr]
    types = {a.dest: a.type for name in ("run", "flow", "sweep") for a in sub[name]._actions
             if a.dest in ("iters", "n_times", "max_steps")}
    assert set(types) == {"iters", "n_times", "max_steps"} and set(types.values()) == {count}


def test_record_n_records_every_nth_iteration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run.nc"
    assert main(["run", "--N", "2", "--d", "4", "--eta", "1e-3", "--iters", "1e3", "--record", "100",
                 "--out", str(out), "--quiet"]) == 0
    assert dlnsim.load(out)["k"].values.tolist() == list(range(0, 1001, 100))
    assert parse(["run", "--record", "1_000", "--out", "r.nc"]).record == 1000
    assert parse(["run", "--record", "every:5", "--out", "r.nc"]).record == "every:5"
    capsys.readouterr()
    for sub in ("run", "sweep"):
        assert main([sub, "--help"]) == 0
        text = flat(capsys.readouterr().out)
        assert "log (about 200, log-spaced), log:N (N log-spaced), all, every:N (every N-th) or N" in text


# ----------------------------------------------------------------------------------------------- help texts


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"dlnsim {dlnsim.__version__}"


def test_top_level_help_has_a_description_and_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "``" not in text and "The dlnsim command." not in text
    assert "Gradient descent (GD) and gradient flows on deep linear networks" in text
    examples = text[text.index("examples:"):]
    for sub in SUBCOMMANDS:
        assert f"\n  dlnsim {sub} " in examples
    assert "\n  dlnsim run --N 3 --seed 0 --eta bound --iters 1e5 --out run.nc\n" in examples  # not rewrapped


@pytest.mark.parametrize("sub", SUBCOMMANDS)
def test_each_subcommand_has_an_example(sub: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([sub, "--help"]) == 0
    text = capsys.readouterr().out
    assert "example" in text
    epilog = text[text.rindex("example"):]
    assert f"\n  dlnsim {sub} " in epilog


# --------------------------------------------------------------------------------------------------- info


def test_info_summarises_a_grid_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "sw"
    dlnsim.sweep(d, N=[2, 3], eta=[1e-3], seed=[0, 1], n_iter=10, d=4, engine=dlnsim.Engine("serial", progress=False))
    assert main(["info", str(d)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{d}: dlnsim grid over (N, eta, seed)"
    fields = {ln.split()[0]: ln.split(None, 1)[1] for ln in lines[1:]}
    assert fields["dims"] == "N=2, eta=1, seed=2"
    assert fields["cells"] == "4 (4 done, 0 failed, 0 not run)"
    assert fields["status"] == "max_iter: 4"
    assert main(["info", f"{d}/"]) == 0  # a trailing slash too
    capsys.readouterr()


def test_info_of_a_partial_grid_and_of_other_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "sw"
    dlnsim.sweep(d, N=[2, 3], eta=[1e-3], seed=[0], n_iter=10, d=4, engine=dlnsim.Engine("serial", progress=False))
    next(d.glob("cell_*.nc")).unlink()
    assert main(["info", str(d)]) == 0
    out = capsys.readouterr().out
    assert "2 (1 done, 0 failed, 1 not run)" in out and "not_run: 1" in out
    assert main(["info", str(tmp_path)]) == 2
    assert error_line(capsys) == (f"dlnsim info: error: FILE: {str(tmp_path)!r} is a directory without grid.json "
                                  "(not a sweep or grid directory)")
    assert main(["info", str(tmp_path / "no.nc")]) == 2
    assert error_line(capsys) == f"dlnsim info: error: FILE: no such file {str(tmp_path / 'no.nc')!r}"


def test_every_example_in_the_help_parses() -> None:
    parser = build_parser()
    subs: dict[str, argparse.ArgumentParser] = parser._subparsers._group_actions[0].choices  # type: ignore[assignment, union-attr]
    epilogs = [parser.epilog or "", *(p.epilog or "" for p in subs.values())]
    examples = [ln.split("#")[0].split() for text in epilogs for ln in text.splitlines()
                if ln.startswith("  dlnsim ")]
    assert len(examples) >= 10 + 2 * len(SUBCOMMANDS) - 1
    for argv in examples:
        args = parser.parse_args(argv[1:])
        assert args.command == argv[1]
