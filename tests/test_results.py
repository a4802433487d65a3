"""One result model: GD, flow and comparison Datasets share variable names, the save policy, the statuses."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import dlnsim
from dlnsim.io import dataset
from dlnsim.options import DIAGNOSTICS, LogSpaced, Record, Stop, diagnostics_set, flow_times, record_points
from dlnsim.runs.compare import compare_flow
from dlnsim.runs.flow import FlowResult, flow_dataset, solve_flow
from dlnsim.runs.gd import GDResult, gd_dataset, solve_gd

SHARED = ("loss", "excess_loss", "grad_norm_sq", "balancedness", "balancedness_max", "layer_norm_sq",
          "product_sv")


def _records(ds: xr.Dataset) -> set[str]:
    """The recorded variables of a run (along k or t), without its 0-d outcomes."""
    return {str(name) for name, v in ds.data_vars.items() if v.ndim}


def _setup(seed: int = 0, widths: tuple[int, ...] = (3, 4, 2)) -> tuple[dlnsim.Problem, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    problem = dlnsim.Problem(rng.standard_normal((widths[0], 10)), rng.standard_normal((widths[-1], 10)))
    return problem, dlnsim.gaussian_init(widths, rng, 0.5)


def test_gd_and_flow_share_names_and_concatenate_on_one_time_axis() -> None:
    problem, W0 = _setup()
    gd = dlnsim.run_gd(problem, W0, 1e-2, 100, record="log:10")
    fl = dlnsim.run_flow(problem, W0, np.linspace(0.0, 1.0, 5))
    for name in SHARED:
        assert name in gd and name in fl, name
        assert gd[name].dims[0] == "k" and fl[name].dims[0] == "t"
        assert gd[name].dims[1:] == fl[name].dims[1:]
        assert gd[name].attrs == fl[name].attrs  # same units and long name
    # GD's time is a coordinate along k: plots and selections by time work directly
    assert "t" in gd.coords and gd["t"].dims == ("k",)
    np.testing.assert_allclose(gd["t"].values, 1e-2 * gd["k"].values, rtol=1e-12)  # summed stepsizes
    # one time axis: GD over t (the flow's dimension), k kept as a variable (the flow has no iterations)
    # (data_vars="all": the runs' 0-d outcomes, status etc., are spread along t too)
    both = xr.concat([gd.swap_dims(k="t").reset_coords("k"), fl], dim="t", data_vars="all")
    assert both.sizes["t"] == gd.sizes["k"] + fl.sizes["t"]
    np.testing.assert_array_equal(both["loss"].values, np.concatenate([gd["loss"].values, fl["loss"].values]))
    assert np.all(np.isnan(both["eta_k"].values[gd.sizes["k"]:]))  # GD-only variables: NaN for the flow
    # or side by side, one row per run, on the union of the times
    side = xr.concat([gd.swap_dims(k="t").reset_coords("k"), fl],
                     dim=pd.Index(["gd", "flow"], name="run"), join="outer")
    assert side["loss"].dims == ("run", "t")
    # at t = 0 both start from W0: the same loss (same kernel, rounding)
    np.testing.assert_allclose(side["loss"].sel(t=0.0).values, float(gd["loss"][0]), rtol=1e-14)


def test_result_objects_and_their_datasets() -> None:
    problem, W0 = _setup()
    res = solve_gd(problem, W0, 1e-2, 30, record="all", snapshots=True)
    assert isinstance(res, GDResult) and res.status == "max_iter"
    assert res.snapshots is not None and res.snapshots.shape == (31, res.w.size)
    np.testing.assert_array_equal(res.snapshots[-1], res.w)
    ds = gd_dataset(res)
    np.testing.assert_array_equal(ds["k"].values, res.k)
    fres = solve_flow(problem, W0, [0.0, 0.5], save=True)
    assert isinstance(fres, FlowResult) and fres.status == "done"
    assert fres.states is not None and fres.states.shape == (2, res.w.size)
    assert _records(flow_dataset(fres)) == set(SHARED)


def test_diagnostics_selection_is_the_same_everywhere(tmp_path) -> None:
    problem, W0 = _setup()
    pick = ["product_sv", "grad_norm_sq"]
    gd = dlnsim.run_gd(problem, W0, 1e-2, 20, record=Record("log:5", diagnostics=pick))
    fl = dlnsim.run_flow(problem, W0, 0.2, record=Record("linear:5", diagnostics=pick))
    cmp = compare_flow(problem, W0, 1e-2, 20, record=Record("log:5", diagnostics=pick), kind=("factor",))
    base = {"loss", "excess_loss"}
    assert _records(fl) == base | set(pick)
    assert _records(gd) == base | set(pick) | {"eta_k", "descent_ratio"}
    assert _records(cmp) == _records(gd) | {"flow_loss", "flow_excess_loss", "flow_distance",
                                            "flow_product_distance"}
    none = dlnsim.run_gd(problem, W0, 1e-2, 20, record=Record(diagnostics=False))
    assert _records(none) == base | {"eta_k", "descent_ratio"}
    assert diagnostics_set(True) == DIAGNOSTICS and diagnostics_set("balancedness") == ("balancedness",)
    for ds in (gd, fl, cmp):
        path = dataset.save(ds, tmp_path / "r.nc")
        xr.testing.assert_identical(dataset.open(path), ds)


def test_flow_time_policy() -> None:
    np.testing.assert_allclose(flow_times(2.0, "linear:5"), [0.0, 0.5, 1.0, 1.5, 2.0])
    lg = flow_times(1.0, "log:4")
    assert lg[0] == 0.0 and lg[1] == pytest.approx(1e-6) and lg[-1] == 1.0 and lg.size == 4
    assert flow_times(3.0, "linear").size == 200
    problem, W0 = _setup()
    ds = dlnsim.run_flow(problem, W0, 1.0, record=Record("log:6", diagnostics=False))
    np.testing.assert_allclose(ds["t"].values, flow_times(1.0, "log:6"), rtol=0)
    with pytest.raises(ValueError, match=r"record: with an array of times t leave Record\.points unset"):
        dlnsim.run_flow(problem, W0, [0.0, 1.0], record="linear:5")
    with pytest.raises(ValueError, match="record must be 'linear'"):
        dlnsim.run_flow(problem, W0, 1.0, record="all")


def test_record_rules_clip_and_name_the_parameter() -> None:
    assert record_points(10, LogSpaced(10**8)).tolist() == list(range(11))
    assert record_points(10, "log:100000000").tolist() == list(range(11))
    assert record_points(0, "log").tolist() == [0]
    with pytest.raises(ValueError, match=r"record must be .*'log:abc'"):
        record_points(10, "log:abc")
    with pytest.raises(ValueError, match="record must be"):
        record_points(10, "every:")
    with pytest.raises(ValueError, match="record must be"):
        record_points(10, True)


# ---------------------------------------------------------------------------------------------------------
# statuses and convergence tests
# ---------------------------------------------------------------------------------------------------------


def test_gtol_iteration_is_recorded_without_stopping() -> None:
    p = dlnsim.Problem(*(np.random.default_rng(5).standard_normal(s) for s in ((4, 12), (2, 12))))
    eta = 1.0 / p.lambda_max
    full = dlnsim.run_gd(p, [np.zeros((2, 4))], eta, 3000, stop=Stop(gtol=1e-8, ltol=0.0), record="all")
    a = dataset.outcomes(full)
    assert a["status"] == "converged" and a["stop_iteration"] == 3000
    k = a["gtol_iteration"]
    assert 0 < k < 3000 and a["ltol_iteration"] == -1
    gn = np.sqrt(full["grad_norm_sq"].values)
    assert gn[k] <= a["gtol_abs"] < gn[k - 1]  # the first iteration that passes
    stopped = dlnsim.run_gd(p, [np.zeros((2, 4))], eta, 3000, stop=Stop(gtol=1e-8, ltol=0.0, early=True),
                            record="log:5")
    assert stopped["stop_iteration"].item() == k and k in stopped["k"].values  # the stop is recorded
    assert float(stopped["loss"].sel(k=k)) == float(full["loss"].sel(k=k))
    assert np.isnan(float(stopped["loss"].sel(k=3000)))
    planned = dlnsim.run_gd(p, [np.zeros((2, 4))], eta, 3000, stop=Stop(gtol=1e-8, ltol=0.0, early=True),
                            record=Record("log:5", stop_point=False))
    np.testing.assert_array_equal(planned["k"].values, record_points(3000, "log:5"))


def test_loss_test_reports_converged_at_rounding_level() -> None:
    """Noise-free data: the excess loss reaches its rounding level; the loss test says converged."""
    rng = np.random.default_rng(7)
    X = rng.standard_normal((3, 12))
    p = dlnsim.Problem(X, rng.standard_normal((2, 3)) @ X)
    ds = dlnsim.run_gd(p, [np.zeros((2, 3))], 1.0 / p.lambda_max, 20_000, stop=Stop(gtol=0.0, ltol=1e-20))
    a = dataset.outcomes(ds)
    assert a["status"] == "converged" and 0 < a["ltol_iteration"] < 20_000
    assert a["final_excess_loss"] <= a["ltol_abs"]


def test_zero_start_is_a_critical_start_and_a_minimum_start_converged() -> None:
    problem, W0 = _setup()
    zero = [np.zeros_like(w) for w in W0]
    ds = dlnsim.run_gd(problem, zero, 1e-2, 50)
    assert ds["status"].item() == "critical_start" and ds["gtol_iteration"].item() == 0
    stop = dlnsim.run_gd(problem, zero, 1e-2, 50, stop=Stop(early=True))
    assert stop["status"].item() == "critical_start" and stop["stop_iteration"].item() == 0
    # N = 1 from the least-squares solution: the loss test holds at k = 0
    opt = dlnsim.run_gd(problem, [problem.W_ls], 1e-2, 10, stop=Stop(early=True))
    assert opt["status"].item() == "converged" and opt["stop_iteration"].item() == 0


@pytest.mark.parametrize("scale", [1e-8, 1.0, 1e8])
def test_tolerances_follow_the_scale_of_the_data(scale: float) -> None:
    """The same run on targets Y scaled by c (factors by c^(1/N): the same trajectory in scaled units)
    reports the same status at the same iteration."""
    problem, W0 = _setup(3)
    p = dlnsim.Problem(problem.X, scale * problem.Y)
    N = len(W0)
    Ws = [scale ** (1 / N) * w for w in W0]
    # the loss scales like c^2, weights like c^(1/N): the stepsize like c^(2/N - 2)
    eta = 2e-2 * scale ** (2 / N - 2)
    ds = dlnsim.run_gd(p, Ws, eta, 5000, stop=Stop(gtol=1e-6, early=True), record="log:5")
    assert ds["status"].item() == "converged"
    assert 10 < ds["stop_iteration"].item() < 5000
    ref = dlnsim.run_gd(problem, W0, 2e-2, 5000, stop=Stop(gtol=1e-6, early=True), record="log:5")
    assert abs(ds["stop_iteration"].item() - ref["stop_iteration"].item()) <= 2  # rounding at the threshold
