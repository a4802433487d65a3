"""The studies' quick variants (``python -m studies --quick``) and the analysis notebook (slow: ``nox -s slow``),
the layout helper and the command line (fast).

Each study runs once per session into a temporary directory (never into data/), with its cells kept in
``<outdir>/cells/<name>/``; then the tests check the Dataset (dims, variables, what the theory says about the
numbers), the files it wrote, and that a rerun resumes from the cells.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

import cf_checker
import numpy as np
import pytest
import xarray as xr

import dlnsim

ROOT = Path(__file__).resolve().parent.parent
STUDIES_DIR = ROOT / "studies"
if importlib.util.find_spec("studies") is None:  # `pytest`, unlike `python -m pytest`, does not add the root
    sys.path.insert(0, str(ROOT))

# dims and variables every quick Dataset must have
EXPECTED = {
    "fig1_constant": ({"case", "N", "k"}, {"loss", "eta_value", "status", "stop_iteration", "bound_eta", "paper_eta",
                                           "paper_eta_over_bound"}),
    "fig2_decreasing": ({"case", "N", "k", "decaying"}, {"loss", "eta_k", "t", "a1", "a2", "gamma", "status",
                                                         "bound_eta",
                                                         "stop_time", "eta_sharpness", "min_loss",
                                                         "flow_time_needed", "iterations_needed"}),
    "balancedness_drift": ({"N", "eta_index", "eta_interval", "k"}, {
        "balancedness_max", "final_drift", "bound_delta", "lin_slope", "lin_n", "lin_eta_max", "local_slope",
        "eta_value", "eta_crit", "stop_time", "drift_change_bound"}),
    "gd_vs_flow": ({"N", "multiple", "flow", "k"}, {"flow_distance", "modified_flow_distance", "sup_distance",
                                                    "slope", "eta_value"}),
    "critical_stepsize": ({"N", "seed", "N_interval"}, {"eta_crit", "eta_star", "ratio", "search_status",
                                                        "local_exponent", "loss_term", "B_first", "B_second",
                                                        "B_share", "crossover_N"}),
    "limit_rank": ({"case", "N", "init", "scale_index", "seed", "k"}, {"loss", "final_sv", "sv_rank", "loss_rank",
                                                                       "r_bar", "reached_global_min"}),
    "stability_threshold": ({"N", "seed", "eta_frac"}, {"eta_crit", "eta_star", "sharpness_min", "eta_sharpness",
                                                        "sharpness_flat", "ratio_sharpness"}),
    "regime_map": ({"N", "seed", "eta_over_flat"}, {"regime", "period", "stop_iteration", "eta_flat", "lyapunov",
                                                    "flip_onset"}),
    "out_of_sample": ({"N", "seed", "data"}, {"eta_crit", "eta_flat", "eta_sharpness", "ratio_flat", "ratio_sharpness",
                                             "flat_gain"}),
    "bound_tightness": ({"N", "seed", "data", "start"}, {"ratio", "R_curv", "norm_factor_curv", "floor_ratio"}),
    "theorems": ({"family", "theorem", "seed", "N", "N_interval"}, {"admitted", "eta", "eta_crit", "eta_ratio",
                                                                    "failing", "predicted", "measured",
                                                                    "max_envelope_ratio", "local_exponent"}),
    "step_rules": ({"N", "seed", "rule", "beta", "start", "sgd_N", "sampling", "batch_size", "oq_case"},
                   {"eta_crit", "eta_pred", "ratio", "end_ratio", "sgd_eta_crit", "ms_flat", "oq_sgd_status",
                    "oq_gd_drift_end"}),
}


def _has_flow() -> bool:
    return importlib.util.find_spec("dlnsim.runs.flow") is not None


@pytest.fixture(scope="session")
def quick_outdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("studies_quick")


@pytest.fixture(scope="session")
def quick_run(quick_outdir: Path):
    """``quick_run(name)``: the Dataset of the study's quick variant (computed once per session; its cells stay
    in ``quick_outdir/cells/<name>``)."""
    from studies import _common

    cache: dict[str, xr.Dataset] = {}

    def get(name: str) -> xr.Dataset:
        if name not in cache:
            mod = importlib.import_module(f"studies.{name}")
            cache[name] = mod.run(True, quick_outdir, _common.cells_dir(quick_outdir, name))
        return cache[name]

    return get


def _without_created(ds: xr.Dataset) -> xr.Dataset:
    out = ds.copy()
    out.attrs = {k: v for k, v in ds.attrs.items() if k != "created"}
    return out


def _cell_files(directory: Path) -> dict[str, int]:
    """File name -> mtime in ns of every file below ``directory``."""
    return {str(p.relative_to(directory)): p.stat().st_mtime_ns for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(EXPECTED))
def test_quick_variant_writes_dataset_and_figures(name: str, quick_run, quick_outdir: Path) -> None:
    if name == "gd_vs_flow" and not _has_flow():
        pytest.skip("dlnsim.runs.flow (compare_flow) is not available")
    ds = quick_run(name)
    dims, variables = EXPECTED[name]
    assert dims <= set(ds.dims), f"{name}: dims {set(ds.dims)}"
    assert variables <= set(ds.data_vars) | set(ds.coords), f"{name}: missing {variables - set(ds.data_vars)}"
    assert ds.attrs["study"] == name
    assert ds.attrs["quick"] == 1
    assert "--quick" in ds.attrs["command"]
    for v in ds.variables.values():  # self-describing: units (numbers only) and a long name on every variable
        assert "long_name" in v.attrs, v.name
        assert ("units" in v.attrs) == (v.dtype.kind not in "OUS"), v.name
    nc = quick_outdir / f"{name}.nc"
    assert nc.is_file()
    if cf_checker.available():  # CF-1.11: nothing of high or medium weight (tests/test_cf.py)
        found = cf_checker.problems(cf_checker.suite(), nc)
        assert not found, "\n".join(found)
    back = dlnsim.load(nc)
    assert set(back.data_vars) == set(ds.data_vars)
    for ext in ("png", "pdf"):
        f = quick_outdir / "figures" / f"{name}.{ext}"
        assert f.is_file() and f.stat().st_size > 10_000, f


def test_quick_outputs_never_go_to_the_archive() -> None:
    from studies import _common

    assert _common.default_outdir(True) != _common.default_outdir(False)
    assert _common.default_outdir(False) == ROOT / "data"
    assert _common.default_outdir(True).is_relative_to(ROOT / "data" / "quick")


@pytest.mark.slow
def test_fig1_a_to_c_decrease_and_d_diverges(quick_run) -> None:
    ds = quick_run("fig1_constant")
    for case in ("a_bound", "a_paper", "b_below", "c_above"):
        for N in ds["N"].values:
            run = ds.sel(case=case, N=N)
            loss = run["loss"].dropna("k").values
            assert run["status"].item() != "diverged", (case, N)
            assert loss[-1] < 0.9 * loss[0], (case, N, loss[0], loss[-1])
            if case in ("a_bound", "b_below"):
                # Prop. 3.4(2): at or below the bound the loss never increases (rtol: rounding of the loss)
                assert np.all(np.diff(loss) <= 1e-12 * loss[:-1]), (case, N)
    assert np.all(ds["status"].sel(case="d_diverging").values == "diverged")
    # the paper's values are labelled as such and differ from ours
    np.testing.assert_allclose(ds["paper_eta"].values, [7.73e-4, 1.29e-4, 3.91e-5], rtol=0, atol=0)
    np.testing.assert_allclose(ds["eta_value"].sel(case="a_bound").values, ds["bound_eta"].values, rtol=1e-15)


@pytest.mark.slow
def test_fig2_schedule_is_the_reconstructed_power_decay(quick_run) -> None:
    ds = quick_run("fig2_decreasing")
    assert "reconstruction" in ds.attrs["schedule_formula"]
    run = ds.sel(case="b_gamma0.4", N=2)
    k = run["k"].values
    eta = run["eta_k"].values
    ok = np.isfinite(eta)
    a1, a2, gamma = float(run["a1"]), float(run["a2"]), float(run["gamma"])
    expected = np.maximum(a1 * (k[ok] + 1.0) ** -gamma, a2 / (k[ok] + 1.0))
    np.testing.assert_allclose(eta[ok], expected, rtol=1e-14)
    # panel (d): N = 2, 3 diverge; N = 5 is marginal (the schedule reaches eta_s as GD arrives, and whether it
    # diverges there depends on rounding), so its status is not asserted
    assert np.all(ds["status"].sel(case="d_diverging", N=[2, 3]).values == "diverged")
    assert not np.any(ds["status"].sel(case=["a_gamma0.2", "b_gamma0.4", "c_above", "ref_constant"]).values
                      == "diverged")
    # panel (d) diverges because of the schedule: it starts below 2 eta_s, lowers the loss first, and is still
    # above the stability limit eta_s where it diverges
    d = ds.sel(case="d_diverging")
    assert np.all(d["eta0_over_sharpness"].values < 2.0)
    assert np.all(d["min_loss"].values < d["initial_loss"].values)
    diverged = d["status"].values == "diverged"
    assert np.all(d["stop_eta_over_sharpness"].values[diverged] > 1.0)
    # t_k of eta* (k+1)^-gamma: the midpoint rule of the study against the recorded flow times (rtol: the rule)
    from studies.fig2_decreasing import flow_time_of, iterations_for

    for case in ("a_gamma0.2", "b_gamma0.4"):
        r = ds.sel(case=case, N=3)
        ok = np.isfinite(r["t"].values)
        t = flow_time_of(r["k"].values[ok], float(r["bound_eta"]), float(r["gamma"]))
        np.testing.assert_allclose(t, r["t"].values[ok], rtol=1e-9)  # rtol: the midpoint rule beyond 1000 steps
        np.testing.assert_allclose(iterations_for(t, float(r["bound_eta"]), float(r["gamma"])), r["k"].values[ok],
                                   rtol=1e-9, atol=1e-9)


@pytest.mark.slow
def test_balancedness_drift_stays_below_delta_at_the_bound(quick_run) -> None:
    ds = quick_run("balancedness_drift")
    # Theorem 2.4 (alpha = 0): for eta <= eta* the balancedness constant stays <= delta along the whole run
    assert np.all(ds["max_drift_over_delta"].isel(eta_index=0).values <= 1.0)
    np.testing.assert_allclose(ds["eta_over_bound"].isel(eta_index=0).values, 1.0, rtol=1e-12)
    # first order in eta at the small end (the one-step identity); the fit has at least two points
    np.testing.assert_allclose(ds["lin_slope"].values, 1.0, atol=0.1)
    assert np.all(ds["lin_n"].values >= 2)
    # the drift after the stop is negligible against the drift itself
    assert np.all(ds["drift_change_bound"].isel(eta_index=0).values < 1e-6 * ds["final_drift"].isel(eta_index=0))


@pytest.mark.slow
@pytest.mark.skipif(not _has_flow(), reason="dlnsim.runs.flow (compare_flow) is not available")
def test_gd_vs_flow_slopes(quick_run) -> None:
    ds = quick_run("gd_vs_flow")
    # forward Euler: O(eta) from the gradient flow, O(eta^2) from the modified flow
    np.testing.assert_allclose(ds["slope"].sel(flow="factor").values, 1.0, atol=0.2)
    np.testing.assert_allclose(ds["slope"].sel(flow="modified").values, 2.0, atol=0.2)


@pytest.mark.slow
def test_critical_stepsize_exceeds_the_bound(quick_run) -> None:
    ds = quick_run("critical_stepsize")
    assert np.all(ds["search_status"].values == "ok")
    assert np.all(ds["ratio"].values > 1.0)  # the bound is sufficient, so eta_crit >= eta*
    assert np.all(ds["local_exponent"].sel(quantity="ratio").values > 0)  # more conservative with N
    # the two parts of the denominator give eta* back (rtol: rounding)
    np.testing.assert_allclose(2.0 / (ds["loss_term"] + ds["B_first"] + ds["B_second"]), ds["eta_star"], rtol=1e-12)
    assert np.all(ds["B_share"].values > 0.9)  # B_delta dominates at small N
    assert np.all(ds["crossover_N"].values > ds["N"].values.max())


@pytest.mark.slow
def test_limit_rank_counts_are_consistent(quick_run) -> None:
    ds = quick_run("limit_rank")
    np.testing.assert_array_equal(ds["r_bar"].values, [[3], [4]])
    assert np.all(ds["sv_rank"].values <= ds["r_bar"].values[:, :, None, None, None])
    assert np.all(ds["loss_rank"].values >= 0)
    assert not np.any(ds["status"].values == "diverged")
    # large balanced starts reach the global minimum (rank r_bar) within the quick budget
    big = ds.sel(init="balanced", scale_index=0)
    assert np.all(big["reached_global_min"].values == 1)


def test_cli_rejects_unknown_study() -> None:
    from studies.__main__ import main

    with pytest.raises(SystemExit) as exc:
        main(["--quick", "no_such_study"])
    assert exc.value.code == 2


@pytest.mark.slow
def test_notebook_executes_on_the_archive_from_any_directory(monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    data = ROOT / "data"
    if not (data / "fig1_constant.nc").is_file():
        pytest.skip(f"the archived results are missing ({data / 'fig1_constant.nc'}); run `python -m studies`")
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")  # jupyter_core's platformdirs migration warning
    monkeypatch.delenv("DLNSIM_DATA", raising=False)  # the notebook finds data/ itself
    monkeypatch.chdir(tmp_path)
    nb = nbformat.read(STUDIES_DIR / "analysis.ipynb", as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any(o.get("output_type") == "display_data" and "image/png" in o.get("data", {}) for o in outputs)


def test_the_stored_notebook_is_executed_and_current() -> None:
    nbformat = pytest.importorskip("nbformat")
    from studies import _make_notebook

    nb = nbformat.read(STUDIES_DIR / "analysis.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.source for c in nb.cells] == [c.source for c in _make_notebook.build().cells]  # made by the script
    assert all(c.execution_count for c in code) and all(c.outputs for c in code)  # stored with its outputs
    assert not [o for c in code for o in c.outputs if o.get("output_type") == "error"]
    assert str(ROOT) not in nbformat.writes(nb)  # no path of this machine in the outputs


# ------------------------------------------------------------------------------------ resume and the engine


@pytest.mark.slow
def test_a_study_resumes_from_its_cells_without_recomputing(quick_run, quick_outdir: Path) -> None:
    from studies import _common

    name = "fig2_decreasing"
    first = quick_run(name)
    mod = importlib.import_module(f"studies.{name}")
    cells = _common.cells_dir(quick_outdir, name)
    before = _cell_files(cells)
    assert sum(f.startswith("cell_") for f in before) == first.sizes["case"] * first.sizes["N"]
    again = mod.compute(True, directory=cells)
    assert _cell_files(cells) == before  # nothing recomputed, nothing rewritten (not even the log)
    xr.testing.assert_identical(_as_run(again), _as_run(first))
    # an interrupted run: one cell is missing; only that one is computed again
    lost = sorted(f for f in before if f.startswith("cell_"))[0]
    (cells / lost).unlink()
    resumed = mod.compute(True, directory=cells)
    after = _cell_files(cells)
    assert lost in after
    assert {f: t for f, t in after.items() if f.startswith("cell_") and f != lost} == {
        f: t for f, t in before.items() if f.startswith("cell_") and f != lost}
    xr.testing.assert_identical(_as_run(resumed), _as_run(first))


def _as_run(ds: xr.Dataset) -> xr.Dataset:
    """``compute``'s Dataset as the study's ``run`` describes it (`describe_variables`), without the creation
    time, NaN attributes as text (NaN != NaN would make equal attributes differ)."""
    from studies import _common

    out = _common.describe_variables(_without_created(ds).copy(deep=True))
    out.attrs = {k: ("nan" if isinstance(v, float) and np.isnan(v) else v) for k, v in out.attrs.items()}
    return out


@pytest.mark.slow
def test_cli_runs_a_study_on_a_dask_scheduler(quick_run, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    distributed = pytest.importorskip("distributed")
    from studies.__main__ import main

    name = "fig2_decreasing"
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cl:
        assert main(["--quick", "--outdir", str(tmp_path), "--scheduler", cl.scheduler_address, name]) == 0
    out = capsys.readouterr().out
    assert f"cells on {cl.scheduler_address}" in out and "wall" in out and "CPU" in out
    assert not (tmp_path / "cells").exists()  # removed after a complete run
    # the same numbers as on threads
    xr.testing.assert_identical(_without_created(dlnsim.load(tmp_path / f"{name}.nc")),
                                _without_created(quick_run(name)))


def test_cli_engine_options() -> None:
    from studies.__main__ import parse_args

    assert parse_args([]).executor == "threads"
    args = parse_args(["--scheduler", "tcp://127.0.0.1:8786", "fig1_constant"])
    assert (args.executor, args.scheduler, args.names) == ("dask", "tcp://127.0.0.1:8786", ["fig1_constant"])
    assert parse_args(["--executor", "processes", "--workers", "3"]).workers == 3
    for bad in (["--executor", "dask"], ["--scheduler", "tcp://127.0.0.1:8786", "--executor", "threads"],
                ["--workers", "0"], ["--workers", "2", "--scheduler", "tcp://127.0.0.1:8786"], ["--executor", "mpi"]):
        with pytest.raises(SystemExit) as exc:
            parse_args(bad)
        assert exc.value.code == 2, bad


def test_jobs_default_to_two_studies_at_once_on_local_executors() -> None:
    from studies import STUDIES
    from studies.__main__ import COST, parse_args

    assert parse_args([]).jobs == 2
    assert parse_args(["--executor", "processes"]).jobs == 2
    assert parse_args(["--executor", "serial"]).jobs == 1
    assert parse_args(["--scheduler", "tcp://127.0.0.1:8786"]).jobs == 1
    assert parse_args(["--jobs", "3"]).jobs == 3
    with pytest.raises(SystemExit) as exc:
        parse_args(["--jobs", "0"])
    assert exc.value.code == 2
    assert set(COST) == set(STUDIES)  # every study has a cost to be ordered by


def test_a_study_process_gets_the_engine_options() -> None:
    from studies.__main__ import _child_command, parse_args

    args = parse_args(["--scheduler", "tcp://127.0.0.1:8786", "--jobs", "2", "--quick"])
    cmd = _child_command("theorems", Path("out"), args)
    assert cmd[cmd.index("--scheduler") + 1] == "tcp://127.0.0.1:8786" and cmd[cmd.index("--executor") + 1] == "dask"
    assert parse_args(cmd[3:]).scheduler == "tcp://127.0.0.1:8786"  # the child accepts what it is given
    args = parse_args(["--executor", "processes", "--workers", "3"])
    cmd = _child_command("theorems", Path("out"), args)
    child = parse_args(cmd[3:])
    assert (child.executor, child.workers, child.jobs, child.keep_cells) == ("processes", 3, 1, True)


@pytest.mark.slow
def test_studies_in_parallel_processes_give_the_same_files(quick_run, quick_outdir: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from studies.__main__ import main

    names = ["fig2_decreasing", "out_of_sample"]
    assert main(["--quick", "--jobs", "2", "--outdir", str(tmp_path), *names]) == 0
    out = capsys.readouterr().out
    for name in names:
        assert out.count(f"[{name}] wall") == 1  # each study's report once, from its own process
        quick_run(name)  # the same study run in this process writes quick_outdir/<name>.nc
        # file against file: both as written and read back (run's in-memory Dataset lacks the file's own tags)
        xr.testing.assert_identical(_without_created(dlnsim.load(tmp_path / f"{name}.nc")),
                                    _without_created(dlnsim.load(quick_outdir / f"{name}.nc")))
    assert out.count("run times") == 1  # the children's totals are not repeated
    assert not (tmp_path / "cells").exists()  # removed after a complete run


def test_a_failing_study_in_a_parallel_run_fails_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import studies.__main__ as M

    def broken(name: str, outdir: Path, args: Any) -> list[str]:
        return [sys.executable, "-c", f"import sys; print('[{name}] boom'); sys.exit(3)"]

    monkeypatch.setattr(M, "_child_command", broken)
    assert M.main(["--quick", "--jobs", "2", "--outdir", str(tmp_path), "fig1_constant", "theorems"]) == 1
    out = capsys.readouterr().out
    assert "[theorems] failed (exit status 3)" in out and "[fig1_constant] failed (exit status 3)" in out
    assert "studies that failed: " in out


def test_cells_live_below_the_output_directory() -> None:
    from studies import _common

    assert _common.cells_dir(ROOT / "data", "fig1_constant") == ROOT / "data" / "cells" / "fig1_constant"
    ignored = (ROOT / ".gitignore").read_text().split()
    assert "data/cells/" in ignored and "data/quick/" in ignored


# ----------------------------------------------------------------------------------------- archive_layout


def toy_cell(case: str, N: int, fail: bool = False) -> xr.Dataset:
    """A small run over k (and an inner dim ``layer`` with a coordinate) with attributes of every kind."""
    if fail and (case, N) == ("b", 3):
        raise RuntimeError("toy failure")
    k = np.arange(N + 2)
    ds = xr.Dataset({"loss": ("k", (1.0 if case == "a" else 2.0) * N / (k + 1.0), {"units": "1", "long_name": "L"}),
                     "layer_norm_sq": (("k", "layer"), np.ones((k.size, N)))},
                    coords={"k": k, "t": ("k", 0.5 * k), "layer": np.arange(1, N + 1)})
    ds.attrs = {"case_label": case, "shared": "x", "q": 2, "status": "converged", "status_reason": "same",
                "bound_eta": 0.1 * N, "final_loss": float(N) + (case == "b"), "pivot_layer": N}
    if case == "a":
        ds.attrs["bound_B"] = 3.0  # missing in the other cells: never a global attribute
        ds.attrs["bound_eta_closed_form"] = float("nan")
    return ds


def _toy_grid(fail: bool = False) -> xr.Dataset:
    from studies import _common

    return _common.grid(toy_cell, {"case": ["a", "b"], "N": [2, 3]}, {"fail": fail}, directory=None, label="toy",
                        executor="serial")


def test_archive_layout_of_a_grid() -> None:
    from studies import _common

    ds = _common.archive_layout(_toy_grid(), ["loss", "t", "layer_norm_sq"],
                                {"status": None, "bound_eta": ("N",)}, {"bound_eta": "eta*"})
    assert set(ds.data_vars) == {"loss", "t", "layer_norm_sq", "status", "bound_eta"}
    assert set(ds.coords) == {"case", "N", "k"}  # inner coordinates other than k are dropped, t is a variable
    assert ds["k"].attrs == {"units": "1", "long_name": "iteration number"}
    assert ds["loss"].dims == ("case", "N", "k") and ds["loss"].attrs == {"units": "1", "long_name": "L"}
    np.testing.assert_array_equal(ds["loss"].sel(case="b", N=2).values, [4.0, 2.0, 4 / 3, 1.0, np.nan])
    assert ds["layer_norm_sq"].dims == ("case", "N", "k", "layer")
    assert np.isnan(ds["layer_norm_sq"].sel(N=2).values[..., 2]).all()  # padded to the widest run
    assert ds["bound_eta"].dims == ("N",) and ds["bound_eta"].attrs == {"units": "1", "long_name": "eta*"}
    np.testing.assert_array_equal(ds["bound_eta"].values, [0.2, 0.1 * 3])
    assert ds["status"].dims == ("case", "N") and (ds["status"].values == "converged").all()
    # the same in every cell: global (outcomes too); differing or missing in some cells: dropped
    assert {k: ds.attrs.get(k) for k in ("shared", "q", "status_reason")} == {"shared": "x", "q": 2,
                                                                             "status_reason": "same"}
    for name in ("case_label", "final_loss", "pivot_layer", "bound_B", "bound_eta_closed_form", "grid_manifest",
                 "grid_dims", "cells_total", "created", "title"):
        assert name not in ds.attrs and name not in ds.variables, name
    with pytest.raises(ValueError, match="final_loss varies along"):
        _common.archive_layout(_toy_grid(), ["loss"], {"final_loss": ("N",)})


def test_a_failed_cell_stops_the_study() -> None:
    with pytest.raises(RuntimeError, match=r"toy: 1 cell\(s\) failed; the first, at \{'case': 'b', 'N': 3\}.*toy "
                                           "failure"):
        _toy_grid(fail=True)


def test_every_study_is_axes_a_cell_and_a_plot() -> None:
    from studies import STUDIES

    assert set(EXPECTED) == set(STUDIES)  # every study's quick variant is checked above
    for name in STUDIES:
        mod = importlib.import_module(f"studies.{name}")
        assert name == mod.NAME
        for fn in ("compute", "plot", "run", "summary"):
            assert callable(getattr(mod, fn, None)), (name, fn)
