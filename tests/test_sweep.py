"""Sweeps: grid layout, resume after SIGKILL, executors giving bitwise-equal numbers, divergence, bad grids,
the critical-stepsize bisection.

All problems are small (paper setup with d = 8, m = 24, r = 2) so that the default run stays short.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import math
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import dlnsim

S = importlib.import_module("dlnsim.sweeps.grid_sweeps")

SMALL = {"d": 8, "m": 24, "r": 2}


def _no_created(ds: xr.Dataset) -> xr.Dataset:
    """The combined Dataset without its creation time (the only attribute that differs between two runs)."""
    out = ds.copy()
    out.attrs = {k: v for k, v in ds.attrs.items() if k != "created"}
    return out


def _stamps(directory: Path) -> dict[str, tuple[int, int]]:
    return {f.name: (f.stat().st_ino, f.stat().st_mtime_ns) for f in directory.iterdir()}


def _grid(directory: Path | None, **kw):
    args = {"N": [1, 2, 3], "eta_factor": [0.5, 1.0], "seed": [0, 1], "n_iter": 200,
            "engine": dlnsim.Engine("serial", progress=False), **SMALL}
    args.update(kw)
    return S.sweep(directory, **args)


# ------------------------------------------------------------------------------------------------------ layout


def test_combined_layout_padding_and_values(tmp_path: Path) -> None:
    ds = _grid(tmp_path / "s")
    assert ds.loss.dims == ("N", "eta_factor", "seed", "k")
    assert dict(ds.sizes) == {"N": 3, "eta_factor": 2, "seed": 2, "k": dlnsim.record_points(200).size,
                              "layer": 3, "pair": 2, "sv": 8, "widths_index": 4}
    np.testing.assert_array_equal(ds.k, dlnsim.record_points(200, "log"))
    assert "eta_k" in ds and ds.eta_k.dims == ("N", "eta_factor", "seed", "k")  # run_gd's eta_k
    # both the grid label and the actual stepsize; eta = label * eta*(N, seed), computed the same way
    for n in (1, 2, 3):
        for s in (0, 1):
            setup = dlnsim.paper_setup(n, s, **SMALL)
            star = dlnsim.stepsize_bound(setup.problem, setup.W0).eta
            assert ds.eta_bound.sel(N=n, seed=s).item() == star
            for e in (0.5, 1.0):
                assert ds.eta_value.sel(N=n, eta_factor=e, seed=s).item() == e * star
    # padding for the smaller N
    assert np.all(np.isnan(ds.layer_norm_sq.sel(N=2, layer=3)))
    assert np.all(np.isnan(ds.balancedness.sel(N=1)))
    assert np.all(np.isnan(ds.product_sv.sel(N=3, sv=slice(3, 8))))
    assert np.all(np.isfinite(ds.product_sv.sel(N=1)))
    assert np.all(np.isfinite(ds.layer_norm_sq.sel(N=3)))
    np.testing.assert_array_equal(ds.widths.sel(N=2, seed=0), [8, 2, 8, -1])
    assert ds.eta_bound.dims == ("N", "seed") and ds.eta_value.dims == ("N", "eta_factor", "seed")
    # every cell is bitwise the run_gd of its parameters
    setup = dlnsim.paper_setup(3, 1, **SMALL)
    star = dlnsim.stepsize_bound(setup.problem, setup.W0).eta
    ref = dlnsim.run_gd(setup.problem, setup.W0, 0.5 * star, 200)
    cell = ds.sel(N=3, eta_factor=0.5, seed=1)
    for v in ("loss", "grad_norm_sq", "balancedness_max", "t"):
        np.testing.assert_array_equal(cell[v].values, ref[v].values)
    np.testing.assert_array_equal(cell.layer_norm_sq.values, ref.layer_norm_sq.values)
    assert cell.status.item() == ref["status"].item()
    assert set(np.unique(ds.status.values)) <= {"converged", "max_iter"}
    # files: manifest + one per cell, no temporary leftovers; the combined file round-trips
    names = sorted(f.name for f in (tmp_path / "s").iterdir())
    cells = [f"cell_N{n}_eta_factor{e}_seed{s}.nc" for n in (1, 2, 3) for e in (0.5, 1.0) for s in (0, 1)]
    assert names == sorted(["grid.json", "cells.log", *cells])
    xr.testing.assert_identical(S.open_sweep(tmp_path / "s"), ds)
    dlnsim.save(ds, tmp_path / "combined.nc")
    xr.testing.assert_identical(dlnsim.load(tmp_path / "combined.nc"), ds)


def test_power_decay_adds_gamma_axis(tmp_path: Path) -> None:
    ds = S.sweep(None, N=[2], eta_factor=[1.0, 2.0], seed=[3], n_iter=50, record="all",
                 schedule="power_decay", gamma=[0.2, 0.4], engine=dlnsim.Engine("serial", progress=False), **SMALL)
    assert ds.loss.dims == ("N", "eta_factor", "gamma", "seed", "k")
    setup = dlnsim.paper_setup(2, 3, **SMALL)
    star = dlnsim.stepsize_bound(setup.problem, setup.W0).eta
    ref = dlnsim.run_gd(setup.problem, setup.W0, dlnsim.PowerDecay(2.0 * star, 2.0 * star, 0.4), 50, record="all")
    cell = ds.sel(N=2, eta_factor=2.0, gamma=0.4, seed=3)
    np.testing.assert_array_equal(cell.loss.values, ref.loss.values)
    np.testing.assert_array_equal(cell.eta_k.values, ref.eta_k.values)
    assert cell.eta_value.item() == 2.0 * star


@pytest.mark.slow  # compiles the flow kernels when their cache is cold
def test_flow_comparison_passes_through() -> None:
    opts = {"tolerances": dlnsim.Tolerances(rtol=1e-8, atol=1e-10), "kind": ["factor"]}
    ds = S.sweep(None, N=[2], eta_factor=[0.5], seed=[0], n_iter=40, flow=opts,
                 engine=dlnsim.Engine("serial", progress=False), **SMALL)
    setup = dlnsim.paper_setup(2, 0, **SMALL)
    star = dlnsim.stepsize_bound(setup.problem, setup.W0).eta
    ref = dlnsim.compare_flow(setup.problem, setup.W0, 0.5 * star, 40, **opts)
    np.testing.assert_array_equal(ds.flow_distance.sel(N=2, eta_factor=0.5, seed=0).values,
                                  ref.flow_distance.values)
    assert ds.flow_factor_status.dims == ("N", "eta_factor", "seed")
    assert ds.attrs["flow_rtol"] == 1e-8
    with pytest.raises(ValueError, match="flow: unknown option"):
        S.sweep(None, N=[2], eta=[0.5], seed=[0], n_iter=4, flow={"tolerance": 1}, engine="serial", **SMALL)


# ------------------------------------------------------------------------------------------------------ resume


def test_resume_recomputes_only_missing_cells(tmp_path: Path) -> None:
    d = tmp_path / "s"
    full = _grid(d)
    (d / "cell_N2_eta_factor1.0_seed0.nc").unlink()
    partial = S.open_sweep(d)
    assert partial.attrs["cells_done"] == 11 and partial.attrs["cells_total"] == 12
    assert partial.status.sel(N=2, eta_factor=1.0, seed=0).item() == "not_run"
    assert np.all(np.isnan(partial.loss.sel(N=2, eta_factor=1.0, seed=0)))
    xr.testing.assert_identical(partial.loss.sel(N=3), full.loss.sel(N=3))
    (d / ".cell_N2_eta_factor1.0_seed0.nc.abc123.tmp").write_bytes(b"half-written")  # as a killed save leaves it
    before = _stamps(d)
    again = _grid(d)
    after = _stamps(d)
    changed = {n for n in after if before.get(n) != after[n]}
    assert changed == {"cell_N2_eta_factor1.0_seed0.nc", "cells.log"}
    assert not any(n.endswith(".tmp") for n in after)
    xr.testing.assert_identical(again, full)


# The sweep in a child process, with the grid's Store.write_cell wrapped: after the first cell is written (file and
# log line) the child prints its name and holds the sweep there, so the test kills it at a known point, however fast
# or slow the cells and the machine are: exactly one cell done, the others computed or queued but never written.
KILL_SCRIPT = textwrap.dedent("""
    import importlib
    import json
    import sys
    import threading

    from dlnsim import Engine
    from dlnsim.grid import store

    S = importlib.import_module("dlnsim.sweeps.grid_sweeps")
    write_cell = store.Store.write_cell

    def write_then_hold(self, name, expected, ds):
        rec = write_cell(self, name, expected, ds)
        print(name, flush=True)
        threading.Event().wait()  # until the test kills this process
        return rec

    store.Store.write_cell = write_then_hold
    S.sweep(sys.argv[1], **json.loads(sys.argv[2]), engine=Engine("processes", workers=2, progress=False))
""")
KILL_GRID = {"N": [2, 3], "eta_factor": [0.5, 1.0, 1.5], "seed": [0, 1], "n_iter": 20000, **SMALL}


def _children(pid: int) -> list[int]:
    """Descendants of ``pid`` (from /proc; empty where there is no /proc)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        out += kids
        todo += kids
    return out


def _alive(pids: list[int]) -> list[int]:
    """The pids that still run (zombies count as ended)."""
    out = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            out.append(pid)
    return out


def test_sigkill_then_rerun_finishes_without_recomputing(tmp_path: Path) -> None:
    d = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(d), json.dumps(KILL_GRID)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        # the child prints the first cell's name once it is written (a cold Numba cache compiles the kernels first;
        # the timeout only keeps a broken child from hanging the test)
        ready, _, _ = select.select([proc.stdout], [], [], 600)
        first = proc.stdout.readline().strip() if ready else ""
        if not first.startswith("cell_"):
            proc.kill()
            proc.wait()
            pytest.fail(f"the sweep wrote no cell (exit code {proc.returncode}): {proc.stderr.read()}")
        workers = _children(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    if Path("/proc").is_dir():
        assert len(workers) >= 2  # the two worker processes (and multiprocessing's resource tracker)
    # the orphaned workers notice (they poll their parent id every 0.25 s) and exit instead of computing for nobody
    t_end = time.monotonic() + 60
    while _alive(workers) and time.monotonic() < t_end:
        time.sleep(0.1)
    assert not _alive(workers)
    done = {f.name: (f.stat().st_ino, f.stat().st_mtime_ns) for f in d.glob("cell_*.nc")}
    assert list(done) == [first]

    resumed = S.sweep(d, **KILL_GRID, engine=dlnsim.Engine("serial", progress=False))  # the executor does not matter
    for name, stamp in done.items():
        f = d / name
        assert (f.stat().st_ino, f.stat().st_mtime_ns) == stamp, f"{name} was recomputed"
    assert len(list(d.glob("cell_*.nc"))) == 12
    assert not [f for f in d.iterdir() if f.name.endswith(".tmp")]
    straight = S.sweep(tmp_path / "straight", **KILL_GRID, engine=dlnsim.Engine("serial", progress=False))
    xr.testing.assert_identical(_no_created(resumed), _no_created(straight))
    assert resumed.attrs["created"] != "unknown"


# ------------------------------------------------------------------------------------------------- divergence


def test_diverging_cell_is_recorded_and_others_finish(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ds = S.sweep(tmp_path / "s", N=[2], eta=[1e-3, 5.0], seed=[0, 1], n_iter=2000,
                 engine=dlnsim.Engine("serial", progress=True), **SMALL)
    assert list(ds.status.sel(N=2, eta=5.0).values) == ["diverged", "diverged"]
    stop = ds.stop_iteration.sel(eta=5.0).values
    assert np.all((stop >= 0) & (stop < 2000))
    assert np.all(np.isnan(ds.loss.sel(eta=5.0).isel(k=-1)))  # records after the stop stay NaN
    assert list(ds.status.sel(N=2, eta=1e-3).values) == ["max_iter", "max_iter"]
    assert np.all(np.isfinite(ds.loss.sel(eta=1e-3)))
    assert np.all(ds.stop_iteration.sel(eta=1e-3) == 2000)  # ran to the end
    assert "diverged=2" in capsys.readouterr().err  # the progress bar counts them


FAIL = {"on": True}


def flaky_setup(N: int, seed: int) -> tuple:
    """A user's setup that raises for one cell (while FAIL["on"])."""
    if FAIL["on"] and N == 3 and seed == 1:
        raise FloatingPointError("boom")
    s = dlnsim.paper_setup(N, seed, **SMALL)
    return s.problem, s.W0


@pytest.mark.parametrize("executor", ["serial", "threads"])
def test_failing_setup_is_recorded_and_the_others_finish(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          executor: str) -> None:
    d = tmp_path / "s"
    FAIL["on"] = True
    try:
        ds = S.sweep(d, setup=flaky_setup, N=[2, 3], eta_factor=[0.5], seed=[0, 1], n_iter=20,
                     engine=dlnsim.Engine(executor, progress=False))
    finally:
        FAIL["on"] = False
    assert ds.status.sel(N=3, seed=1, eta_factor=0.5).item() == "error"
    assert ds.error.sel(N=3, seed=1, eta_factor=0.5).item() == "FloatingPointError: boom"
    assert np.all(np.isnan(ds.loss.sel(N=3, seed=1)))
    assert set(ds.status.values.ravel()) == {"max_iter", "error"}
    assert ds.attrs["cells_failed"] == 1 and ds.attrs["cells_done"] == 4
    assert "1 of 4 cell(s) failed" in capsys.readouterr().err
    again = S.sweep(d, setup=flaky_setup, N=[2, 3], eta_factor=[0.5], seed=[0, 1], n_iter=20,
                    engine=dlnsim.Engine(executor, progress=False))  # a rerun retries the failed cell only
    assert again.attrs["cells_failed"] == 0
    assert set(again.status.values.ravel()) == {"max_iter"}
    xr.testing.assert_identical(again.loss.sel(N=2), ds.loss.sel(N=2))


# --------------------------------------------------------------------------------------------------- bad input

BAD = [
    ({"N": []}, "axis 'N': the axis is empty"),
    ({"eta": []}, "axis 'eta': the axis is empty"),
    ({"seed": []}, "axis 'seed': the axis is empty"),
    ({"eta": [0.1, 0.0]}, "eta"),
    ({"eta": [-1.0]}, "eta"),
    ({"eta": [math.nan]}, "eta"),
    ({"eta": [0.1, 0.1]}, "axis 'eta': duplicate"),
    ({"N": [0, 2]}, "N: expected integers >= 1"),
    ({"N": [2.5]}, "N: expected integers"),
    ({"seed": [-1]}, "seed: expected integers >= 0"),
    ({"temperature": [1.0]}, "unknown parameter or axis 'temperature'"),
    ({"seeds": [1]}, "did you mean 'seed'"),
    ({"n_iter": 0}, "n_iter"),
    ({"eta_mode": "bound"}, "unknown parameter or axis 'eta_mode'"),  # the old keyword: eta_factor now
    ({"eta_factor": [1.0]}, "eta .absolute. or as eta_factor .* exactly one of them"),
    ({"schedule": "cosine"}, "schedule"),
    ({"gamma": [0.5]}, "gamma is only used with schedule='power_decay'"),
    ({"schedule": "power_decay"}, "gamma"),
    ({"schedule": "power_decay", "gamma": [-0.5]}, "gamma"),
    ({"record": "sometimes"}, "record"),
    ({"r": 9}, "r must be <= d"),
    ({"m": 4}, "m "),
    ({"flow": "yes"}, "flow must be False, True or a dict"),
    ({"engine": {"executor": "cluster"}}, r"Engine\.executor"),
    ({"engine": {"workers": 0}}, r"Engine\.workers"),
    ({"engine": {"executor": "dask"}}, "client= .* or scheduler="),
    ({"engine": {"scheduler": "tcp://127.0.0.1:1"}}, "only used with executor='dask'"),
    ({"stop": {"gtol": -1.0}}, r"Stop\.gtol"),
]


@pytest.mark.parametrize(("bad", "match"), BAD, ids=[m for _, m in BAD])
def test_bad_grid_raises_and_writes_nothing(tmp_path: Path, bad: dict, match: str) -> None:
    d = tmp_path / "s"
    args = {"N": [2], "eta": [0.1], "seed": [0], "n_iter": 10, **SMALL, **bad}
    args["engine"] = {"executor": "serial", "progress": False, **bad.get("engine", {})}
    with pytest.raises(ValueError, match=match):
        # option objects given as their fields are made here: their own validation is part of the refusal
        args["engine"] = dlnsim.Engine(**args["engine"])
        if "stop" in args:
            args["stop"] = dlnsim.Stop(**args["stop"])
        S.sweep(d, **args)
    assert not d.exists()


def test_mismatched_directory_is_refused_untouched(tmp_path: Path) -> None:
    d = tmp_path / "s"
    _grid(d, N=[2], seed=[0], n_iter=20)
    before = _stamps(d)
    with pytest.raises(ValueError, match=r"different grid .*eta_factor is \[0.5, 1.0\] there, \[0.5, 2.0\] here"):
        _grid(d, N=[2], seed=[0], n_iter=20, eta_factor=[0.5, 2.0])
    with pytest.raises(ValueError, match="n_iter is 20 there, 30 here"):
        _grid(d, N=[2], seed=[0], n_iter=30)
    with pytest.raises(ValueError,
                       match=r"'dlnsim\.sweeps\.grid_sweeps:gd_cell' there, "
                             r"'dlnsim\.sweeps\.grid_sweeps:critical_cell' here"):
        S.critical_sweep(d, N=[2], seed=[0], n_iter=20, engine=dlnsim.Engine("serial", progress=False), **SMALL)
    assert _stamps(d) == before
    # cell files without a manifest, a foreign manifest, and a missing sweep
    (d / "grid.json").rename(tmp_path / "moved.json")
    with pytest.raises(ValueError, match="cell files but no manifest"):
        _grid(d, N=[2], seed=[0], n_iter=20)
    (d / "grid.json").write_text('{"hello": 1}')
    with pytest.raises(ValueError, match="not a dlnsim grid manifest"):
        S.open_sweep(d)
    with pytest.raises(ValueError, match="no grid manifest"):
        S.open_sweep(tmp_path)


def test_one_sweep_per_directory(tmp_path: Path) -> None:
    d = tmp_path / "s"
    d.mkdir()
    from dlnsim.grid.store import Store

    with Store(d).locked(), pytest.raises(RuntimeError, match="another run is using"):
        _grid(d, N=[2], seed=[0], n_iter=5)


# ------------------------------------------------------------------------------------------ critical stepsize


def test_critical_stepsize_finds_the_n1_threshold(tmp_path: Path) -> None:
    """N = 1 is linear regression: GD diverges exactly above 2 / lambda_max(X X^T).

    Slightly below the threshold the top mode decays like (1 - 2 eps)^(2k), so within n_iter = 5000 steps a
    stepsize (1 - eps) * 2/lambda_max with eps > ln(1/loss_tol) / (4 n_iter) ~ 3.5e-4 reaches the criterion:
    the boundary found lies in [1 - 1e-3, 1] x the threshold, and the bracket must straddle it to rtol.
    """
    rtol = 0.01
    d = tmp_path / "crit"
    ds = S.critical_sweep(d, N=[1, 2], seed=[0], n_iter=5000, rtol=rtol, loss_tol=1e-3,
                          engine=dlnsim.Engine("serial", progress=False), **SMALL)
    assert ds.eta_crit.dims == ("N", "seed")
    setup = dlnsim.paper_setup(1, 0, **SMALL)
    threshold = 2.0 / setup.problem.lambda_max
    c = ds.sel(N=1, seed=0)
    assert c.search_status.item() == "ok"
    lo, hi = c.eta_lo.item(), c.eta_hi.item()
    assert hi / lo <= 1.0 + rtol
    assert lo <= threshold <= hi * (1.0 + 1e-3)
    assert c.eta_crit.item() == lo
    assert c.eta_star.item() == dlnsim.stepsize_bound(setup.problem, setup.W0).eta
    assert c.ratio.item() == lo / c.eta_star.item()
    n = c.n_trials.item()
    outcomes = c.trial_outcome.values[:n]
    etas = c.trial_eta.values[:n]
    assert set(outcomes[etas > threshold]) <= {"diverged", "not_converged"}
    assert np.all(np.isnan(ds.trial_eta.sel(N=1, seed=0).values[n:]))  # padded to the longest search
    assert ds.search_status.sel(N=2, seed=0).item() == "ok"
    assert ds.ratio.sel(N=2, seed=0).item() > 1.0  # the bound is conservative
    # rerun: nothing recomputed, same result
    before = _stamps(d)
    again = S.critical_sweep(d, N=[1, 2], seed=[0], n_iter=5000, rtol=rtol, loss_tol=1e-3,
                             engine=dlnsim.Engine("serial", progress=False), **SMALL)
    assert _stamps(d) == before
    xr.testing.assert_identical(again, ds)
    dlnsim.save(ds, tmp_path / "crit.nc")
    xr.testing.assert_identical(dlnsim.load(tmp_path / "crit.nc"), ds)


@pytest.mark.parametrize(("bad", "match"), [
    ({"bracket_factor": (2.0, 1.0)}, "bracket"),
    ({"bracket_factor": (0.0, 1.0)}, "bracket"),
    ({"bracket": (2.0, 1.0)}, "bracket"),
    ({"bracket": (1e-3, 1e-2), "bracket_factor": (1.0, 4.0)}, "bracket_factor .*not both"),
    ({"rtol": 0.0}, "rtol"),
    ({"loss_tol": -1.0}, "loss_tol"),
    ({"factor": 1.0}, "factor"),
    ({"N": []}, "axis 'N': the axis is empty"),
    ({"eta": [1.0]}, "unknown parameter"),
])
def test_critical_bad_input(tmp_path: Path, bad: dict, match: str) -> None:
    args = {"N": [1], "seed": [0], "n_iter": 10, "engine": dlnsim.Engine("serial", progress=False), **SMALL}
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        S.critical_sweep(tmp_path / "c", **args)
    assert not (tmp_path / "c").exists()


# ------------------------------------------------------------------------------------------------------- CLI


def test_cli_sweep_and_critical(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dlnsim.cli.sweep import add_sweep_cli

    ap = argparse.ArgumentParser(prog="dlnsim")
    add_sweep_cli(ap.add_subparsers(dest="command", required=True))
    args = ap.parse_args(["sweep", "--N", "2", "3", "--eta-factor", "0.5", "1", "--seeds", "0",
                          "--iters", "3e1", "--dir", str(tmp_path / "s"), "--executor", "serial", "--d", "8",
                          "--m", "24", "--no-progress", "--out", str(tmp_path / "all.nc")])
    assert args.func(args) == 0
    assert "4 cells" in capsys.readouterr().out
    with pytest.raises(ValueError, match=r"--out: .* exists; pass --overwrite"):
        args.func(args)
    ds = dlnsim.load(tmp_path / "all.nc")
    xr.testing.assert_identical(_no_created(ds), _no_created(S.open_sweep(tmp_path / "s")))
    assert ds.loss.dims == ("N", "eta_factor", "seed", "k")
    assert "balancedness" in ds
    args = ap.parse_args(["sweep", "--N", "2", "--eta", "1", "--seeds", "0", "--iters", "30", "--dir",
                          str(tmp_path / "bare"), "--no-diagnostics", "--d", "8", "--m", "24", "--no-progress"])
    assert args.func(args) == 0
    assert "balancedness" not in S.open_sweep(tmp_path / "bare")
    args = ap.parse_args(["critical", "--N", "1", "--seeds", "0", "--iters", "300", "--rtol", "0.05",
                          "--executor", "serial", "--d", "8", "--m", "24", "--no-progress"])
    assert args.func(args) == 0
    assert "eta_crit" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------- executors


@pytest.mark.slow
def test_dask_local_and_serial_give_bitwise_equal_results(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    grid = {"N": [1, 2, 3], "eta_factor": [0.5, 1.0, 50.0], "seed": [0, 1], "n_iter": 3000, **SMALL}
    Engine = functools.partial(dlnsim.Engine, progress=False)
    serial = S.sweep(tmp_path / "serial", **grid, engine=Engine("serial"))
    assert "diverged" in set(serial.status.values.ravel())
    threads = S.sweep(tmp_path / "threads", **grid, engine=Engine("threads", workers=2))
    processes = S.sweep(tmp_path / "processes", **grid, engine=Engine("processes", workers=2))
    with dlnsim.grid.process_pool(2) as pool:
        pooled = S.sweep(tmp_path / "pool", **grid, engine=Engine(pool))
    with warnings.catch_warnings():
        # dask may warn about its own setup (ports, versions); only its own warnings are tolerated here
        warnings.filterwarnings("ignore", module=r"distributed(\..*)?")
        with distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=1,
                                      dashboard_address=None) as cluster, distributed.Client(cluster) as client:
            on_dask = S.sweep(tmp_path / "dask", **grid, engine=Engine("dask", client=client))
            by_address = S.sweep(tmp_path / "dask2", **grid,
                                 engine=Engine("dask", scheduler=cluster.scheduler_address))
    ref = _no_created(serial)
    for other in (threads, processes, pooled, on_dask, by_address):
        xr.testing.assert_identical(_no_created(other), ref)
    # and the cell files themselves are bitwise equal
    for f in (tmp_path / "serial").glob("cell_*.nc"):
        a, b = dlnsim.load(f), dlnsim.load(tmp_path / "dask" / f.name)
        for v in a.data_vars:
            np.testing.assert_array_equal(a[v].values, b[v].values)


def test_sweep_diagnostics_option(tmp_path: Path) -> None:
    """Record(diagnostics=False): the same losses as the default, without the state diagnostics; recorded in
    the manifest (a rerun with the default is a different grid), the default is the default Record there."""
    kw = dict(N=2, seed=[0], eta_factor=[1.0], n_iter=30, engine=dlnsim.Engine(progress=False))
    full = dlnsim.sweep(tmp_path / "a", **kw)
    bare = dlnsim.sweep(tmp_path / "b", record=dlnsim.Record(diagnostics=False), **kw)
    np.testing.assert_array_equal(full.loss.values, bare.loss.values)
    assert "balancedness" in full and "balancedness" not in bare
    params = json.loads((tmp_path / "a" / "grid.json").read_text())["params"]
    assert dlnsim.Record.from_json(params["record"]) == dlnsim.Record()
    assert json.loads((tmp_path / "b" / "grid.json").read_text())["params"]["record"]["diagnostics"] == []
    with pytest.raises(ValueError, match="different"):
        dlnsim.sweep(tmp_path / "b", **kw)
    with pytest.raises(ValueError, match=r"Record\.diagnostics"):
        dlnsim.sweep(None, record=dlnsim.Record(diagnostics="nope"), **kw)
