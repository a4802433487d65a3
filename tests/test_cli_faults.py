"""The ``dlnsim`` command under bad input and failures: one line on stderr, never a traceback; exit status 2 for
bad arguments, input and output paths (checked before any computation, nothing written), 1 for a failed
computation, 130 on Ctrl-C, 141 (quietly) when stdout is closed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import dlnsim
import dlnsim.cli.app
import dlnsim.cli.plot
import dlnsim.cli.sweep
import dlnsim.sweeps.grid_sweeps
from dlnsim.cli.app import main
from dlnsim.grid.store import Store

SMALL = ["--d", "4"]
SWEEP = ["sweep", "--N", "2", "--eta", "1e-3", "--seed", "0", "--iters", "10", "--executor", "serial",
         "--no-progress", *SMALL]
CRITICAL = ["critical", "--N", "2", "--seed", "0", "--iters", "50", "--executor", "serial", "--no-progress",
            *SMALL]


def failure(capsys: pytest.CaptureFixture[str], sub: str) -> str:
    """The message of the one line on stderr, ``dlnsim SUB: error: MESSAGE``."""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    prefix = f"dlnsim {sub}: error: "
    assert err[0].startswith(prefix), err
    assert "Traceback" not in err[0]
    return err[0][len(prefix):]


def forbid(monkeypatch: pytest.MonkeyPatch, *targets: tuple[Any, str]) -> None:
    """Make the computations fail the test if they are reached."""
    def reached(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the computation started before the arguments were checked")

    for module, name in targets:
        monkeypatch.setattr(module, name, reached)


def no_computation(monkeypatch: pytest.MonkeyPatch) -> None:
    forbid(monkeypatch, (dlnsim.cli.app, "run_gd"), (dlnsim.cli.app, "run_flow"), (dlnsim.cli.app, "compare_flow"),
           (dlnsim.cli.app, "paper_setup"), (dlnsim.cli.sweep, "sweep"), (dlnsim.cli.sweep, "critical_sweep"))


# ---------------------------------------------------------------------------------------------- output paths


def out_argv(sub: str, out: str) -> list[str]:
    return {
        "run": ["run", "--N", "2", *SMALL, "--iters", "10", "--quiet", "--out", out],
        "flow": ["flow", "--N", "2", *SMALL, "--T", "1", "--out", out],
        "sweep": [*SWEEP, "--dir", str(Path(out).parent.parent / "sw"), "--out", out],
        "critical": [*CRITICAL, "--out", out],
    }[sub]


@pytest.mark.parametrize("sub", ["run", "flow", "sweep", "critical"])
@pytest.mark.parametrize(("make", "message"), [
    ("exists", "--out: {out!r} exists; pass --overwrite to replace it"),
    ("parent_is_a_file", "--out: directory {parent!r} is not a directory"),
    ("no_parent", "--out: directory {parent!r} does not exist"),
    ("suffix", "--out must end in .nc, got {out!r}"),
    ("is_a_directory", "--out: {out!r} is a directory"),
])
def test_output_is_checked_before_any_computation(sub: str, make: str, message: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "work"
    work.mkdir()
    out = work / "r.nc"
    if make == "exists":
        out.write_bytes(b"old")
    elif make == "parent_is_a_file":
        (work / "f").write_bytes(b"a file")
        out = work / "f" / "r.nc"
    elif make == "no_parent":
        out = work / "none" / "r.nc"
    elif make == "suffix":
        out = work / "r.h5"
    else:
        out = work / "d.nc"
        out.mkdir()
    before = sorted(p.name for p in tmp_path.rglob("*"))
    no_computation(monkeypatch)
    assert main(out_argv(sub, str(out))) == 2
    assert failure(capsys, sub) == message.format(out=str(out), parent=str(out.parent))
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("sub", ["run", "flow", "sweep", "critical", "plot"])
def test_an_unwritable_output_directory_is_refused_first(sub: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """/proc takes no new files, not even from root (the permission bits would not tell)."""
    no_computation(monkeypatch)
    if sub == "plot":
        forbid(monkeypatch, (dlnsim.cli.plot, "open_results"))
        argv = ["plot", str(tmp_path / "run.nc"), "--out", "/proc/fig.png"]
    else:
        argv = out_argv(sub, "/proc/r.nc")
        if sub == "sweep":
            argv[argv.index("--dir") + 1] = str(tmp_path / "sw")
    assert main(argv) == 2
    assert failure(capsys, sub).startswith("--out: cannot write in the directory '/proc' (")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", ["parent_is_a_file", "is_a_file", "proc"])
@pytest.mark.parametrize("sub", ["sweep", "critical"])
def test_a_bad_dir_is_refused_first(sub: str, where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "f").write_bytes(b"a file")
    d = {"parent_is_a_file": tmp_path / "f" / "sw", "is_a_file": tmp_path / "f", "proc": Path("/proc/sw")}[where]
    if where == "proc" and not Path("/proc/self").is_dir():
        pytest.skip("needs /proc (Linux)")
    no_computation(monkeypatch)
    argv = [*(SWEEP if sub == "sweep" else CRITICAL), "--dir", str(d)]
    assert main(argv) == 2
    expected = {"parent_is_a_file": f"--dir: the parent {str(d.parent)!r} of {str(d)!r} is not a directory",
                "is_a_file": f"--dir: {str(d)!r} exists and is not a directory",
                "proc": "--dir: cannot write in the directory '/proc' ("}[where]
    assert failure(capsys, sub).startswith(expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_a_locked_directory_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "sw"
    assert main([*SWEEP, "--dir", str(d)]) == 0
    capsys.readouterr()
    with Store(d).locked():  # as if another run were using it
        assert main([*SWEEP, "--dir", str(d)]) == 2
    assert failure(capsys, "sweep") == (f"--dir: another run is using {str(d)!r} (it is locked); wait for it to "
                                        "finish, or use another directory")


def test_an_unreachable_scheduler_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("distributed")
    d = tmp_path / "sw"
    argv = [a for a in SWEEP if a not in ("--executor", "serial")]
    assert main([*argv, "--dir", str(d), "--scheduler", "tcp://127.0.0.1:1", "--scheduler-timeout", "0.5"]) == 2
    assert failure(capsys, "sweep") == ("--scheduler: no dask scheduler answered at 'tcp://127.0.0.1:1' within "
                                        "0.5 s (OSError)")
    assert not d.exists()


@pytest.mark.parametrize(("extra", "message"), [
    (["--executor", "threads", "--scheduler", "tcp://127.0.0.1:1"],
     "--scheduler is only used with --executor dask, got --executor threads"),
    (["--executor", "dask"], "--executor dask needs --scheduler ADDRESS (e.g. tcp://127.0.0.1:8786)"),
    (["--executor", "serial", "--workers", "2"],
     "--workers is only used with --executor threads or processes, got --executor serial"),
    (["--scheduler-timeout", "0"], "--scheduler-timeout must be > 0 seconds, got 0.0"),
])
def test_engine_options_are_checked(extra: list[str], message: str, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    no_computation(monkeypatch)
    argv = [a for a in SWEEP if a not in ("--executor", "serial")]
    assert main([*argv, "--dir", str(tmp_path / "sw"), *extra]) == 2
    assert failure(capsys, "sweep") == message
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------- failed cells


def failing_cells(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cells with seed 1 raise (a message over two lines); the others run."""
    gd, crit = dlnsim.sweeps.grid_sweeps.gd_cell, dlnsim.sweeps.grid_sweeps.critical_cell

    def cell(real: Any) -> Any:
        def run(**kw: Any) -> Any:
            if kw["seed"] == 1:
                raise RuntimeError("the cell broke\non two lines")
            return real(**kw)
        return run

    monkeypatch.setattr(dlnsim.sweeps.grid_sweeps, "gd_cell", cell(gd))
    monkeypatch.setattr(dlnsim.sweeps.grid_sweeps, "critical_cell", cell(crit))


def test_a_sweep_with_failed_cells_exits_1_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    failing_cells(monkeypatch)
    d, out = tmp_path / "sw", tmp_path / "all.nc"
    argv = [*SWEEP[:SWEEP.index("--seed") + 2], "1", *SWEEP[SWEEP.index("--seed") + 2:]]
    assert main([*argv, "--dir", str(d), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert err == [f"sweep {d}: 1 of 2 cell(s) failed (status 'error', message in the variable 'error'); rerun to "
                   "retry them"]
    assert "first failed cell (N=2, eta=0.001, seed=1): RuntimeError: the cell broke on two lines" in captured.out
    assert sorted(dlnsim.load(out)["status"].values.ravel().tolist()) == ["error", "max_iter"]


def test_a_critical_sweep_with_a_failed_cell_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    failing_cells(monkeypatch)
    argv = [*CRITICAL[:CRITICAL.index("--seed") + 2], "1", *CRITICAL[CRITICAL.index("--seed") + 2:]]
    assert main([*argv, "--dir", str(tmp_path / "c")]) == 1
    captured = capsys.readouterr()
    assert len(captured.err.strip().splitlines()) == 1 and "Traceback" not in captured.err
    rows = captured.out.splitlines()
    assert rows[2].split()[:5] == ["2", "1", "-", "-", "-"]
    assert rows[2].endswith("error: RuntimeError: the cell broke on two lines")
    assert rows[1].split()[:2] == ["2", "0"] and rows[1].split()[-1] in ("ok", "no_converging_eta", "no_failing_eta")


def test_a_flow_that_stops_early_exits_1_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "f.nc"
    assert main(["flow", "--N", "2", *SMALL, "--T", "1e3", "--max-steps", "5", "--out", str(out)]) == 1
    assert failure(capsys, "flow").startswith("the flow stopped at t = ")
    assert dlnsim.load(out)["status"].item() == "max_steps"  # the record up to the stop is written


# ----------------------------------------------------------------------------------------------- arguments


@pytest.mark.parametrize("eta", ["xxxbound", "xbound", "0xbound", "-2xbound", "nanxbound", "infxbound", "bound2",
                                 "2x", "0", "-1", "inf", "nan", "2 x bound"])
def test_eta_is_a_number_bound_or_c_x_bound(eta: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    no_computation(monkeypatch)
    assert main(["run", f"--eta={eta}", "--out", str(tmp_path / "r.nc")]) == 2
    assert failure(capsys, "run") == ("argument --eta: expected a positive number, 'bound' or '<c>xbound' with c a "
                                      f"positive number, got {eta!r} (see dlnsim run --help)")


@pytest.mark.parametrize(("eta", "value"), [("bound", (1.0, True)), ("BOUND", (1.0, True)),
                                            ("2.5xbound", (2.5, True)), ("1e-3", (1e-3, False))])
def test_eta_forms_that_are_accepted(eta: str, value: tuple[float, bool]) -> None:
    assert dlnsim.cli.app.build_parser().parse_args(["run", "--eta", eta, "--out", "r.nc"]).eta == value


def test_a2_needs_gamma(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    no_computation(monkeypatch)
    assert main(["run", "--eta", "1e-3", "--a2", "1e-2", "--out", str(tmp_path / "r.nc")]) == 2
    message = failure(capsys, "run")
    assert message.startswith("--a2 needs --gamma")
    assert list(tmp_path.iterdir()) == []


def test_paper_options_with_data_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "xy.npz"
    np.savez(data, X=np.eye(2, 5), Y=np.ones((1, 5)))
    argv = ["run", "--data", str(data), "--widths", "2", "1", "--out", str(tmp_path / "r.nc")]
    assert main([*argv, "--seed", "3"]) == 2
    assert failure(capsys, "run") == ("--seed: options of the paper setup, not used with --data (the seed of your "
                                      "start is --init-seed)")
    assert main([*argv[:-2], "--out", str(tmp_path / "r.nc"), "--N", "2", "--d", "5"]) == 2
    assert failure(capsys, "run").startswith("--N, --d: options of the paper setup")


def test_complex_data_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "xy.npz"
    np.savez(data, X=np.eye(2, 5) * (1 + 1j), Y=np.ones((1, 5)))
    assert main(["run", "--data", str(data), "--widths", "2", "1", "--out", str(tmp_path / "r.nc")]) == 2
    message = failure(capsys, "run")
    assert message.startswith(f"--data: {str(data)!r}") and "complex" in message
    assert not (tmp_path / "r.nc").exists()


@pytest.mark.parametrize(("argv", "message"), [
    (["flow", "--N", "2", "--T", "1", "--eta", "1", "--out", "f.nc"],
     "--eta is only used with --kind modified, got --kind factor"),
    (["flow", "--N", "2", "--T", "1", "--kind", "modified", "--out", "f.nc"],
     "--kind modified needs --eta (the GD stepsize it models)"),
    (["flow", "--N", "2", "--T", "-1", "--out", "f.nc"], "--T must be finite and > 0, got -1.0"),
    (["flow", "--N", "2", "--T", "1", "--n-times", "1", "--out", "f.nc"], "--n-times must be >= 2, got 1"),
    (["run"], "the following arguments are required: --out (see dlnsim run --help)"),
    (["run", "--out", "r.nc", "--nope"], "unrecognized arguments: --nope (see dlnsim run --help)"),
    (["flow", "--N", "2", "--T", "1", "--kind", "fast", "--out", "f.nc"], "argument --kind: invalid choice: 'fast'"),
    (["sweep", "--N", "2", "--eta", "1", "--seed", "0", "--iters", "1e999", "--dir", "d"],
     "argument --iters: expected a whole number >= 0"),
])
def test_usage_errors_are_one_line(argv: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    no_computation(monkeypatch)
    assert main(argv) == 2
    assert message in failure(capsys, argv[0])
    assert list(tmp_path.iterdir()) == []


def test_no_subcommand_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["dlnsim: error: the following arguments are required: COMMAND (see dlnsim --help)"]


# ------------------------------------------------------------------------------------ interrupts and crashes


def test_ctrl_c_is_exit_130_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(dlnsim.cli.app, "run_gd", interrupted)
    assert main(["run", "--N", "2", *SMALL, "--out", str(tmp_path / "r.nc"), "--quiet"]) == 130
    assert capsys.readouterr().err.strip().splitlines() == ["dlnsim run: interrupted"]
    assert list(tmp_path.iterdir()) == []


def test_an_unexpected_error_is_one_line_and_traceback_shows_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("deep inside")

    monkeypatch.setattr(dlnsim.cli.app, "run_gd", broken)
    argv = ["run", "--N", "2", *SMALL, "--out", str(tmp_path / "r.nc"), "--quiet"]
    assert main(argv) == 1
    assert failure(capsys, "run").startswith("ZeroDivisionError: deep inside (dlnsim --traceback run ... shows")
    with pytest.raises(ZeroDivisionError):
        main(["--traceback", *argv])


def test_an_os_error_while_writing_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    def full(ds: Any, path: Any) -> Any:
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(dlnsim.cli.app, "save", full)
    out = tmp_path / "r.nc"
    assert main(["run", "--N", "2", *SMALL, "--iters", "5", "--out", str(out), "--quiet"]) == 2
    assert failure(capsys, "run") == f"{out}: No space left on device"


@pytest.mark.parametrize("argv", [["info", "{path}"], ["--help"], ["bound", "--N", "2", "--d", "4"]])
def test_a_closed_stdout_ends_quietly(argv: list[str], tmp_path: Path) -> None:
    """``dlnsim info run.nc | head -1``: the reader has gone; no BrokenPipeError traceback, status 141."""
    path = tmp_path / "r.nc"
    if "{path}" in argv:
        assert main(["run", "--N", "2", *SMALL, "--iters", "5", "--out", str(path), "--quiet"]) == 0
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first write
    try:
        proc = subprocess.run([sys.executable, "-m", "dlnsim", *(a.format(path=path) for a in argv)], stdout=write,
                              stderr=subprocess.PIPE, timeout=300, check=False)
    finally:
        os.close(write)
    assert proc.stderr.decode() == ""
    assert proc.returncode == (141 if argv != ["--help"] else 0)  # argparse drops its help quietly
