"""Gradient flows: the Numba DOPRI5 integrator, factor / end-to-end / modified flows, GD vs flow.

Every float comparison states its tolerance and why.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import xarray as xr
from scipy.integrate import solve_ivp

import dlnsim
from dlnsim._kernels import flow as fk
from dlnsim._kernels.flow_point import _point
from dlnsim.analysis.sharpness import sharpness
from dlnsim.diagnostics.dense import state_diagnostics
from dlnsim.io import dataset
from dlnsim.objective import flat_layout, unflatten
from dlnsim.options import Record, Tolerances
from dlnsim.runs.compare import COMPARE_SCHEMA, compare_flow
from dlnsim.runs.flow import FLOW_SCHEMA, flow_dataset, run_flow, solve_flow


def _flow_with_states(problem: dlnsim.Problem, W0: list[np.ndarray], t, **kwargs) -> tuple[xr.Dataset, np.ndarray]:
    """`run_flow` and the states at every requested time (`solve_flow` with ``save=True``)."""
    res = solve_flow(problem, W0, t, save=True, **kwargs)
    assert res.states is not None
    return flow_dataset(res), res.states


def _problem(d_x: int, d_y: int, m: int, seed: int, scale: float = 1.0) -> dlnsim.Problem:
    rng = np.random.default_rng(seed)
    return dlnsim.Problem(scale * rng.standard_normal((d_x, m)), rng.standard_normal((d_y, m)))


def _flat(W: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([Wj.ravel() for Wj in W])


def _rel_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """||a_i - b_i||_2 / ||b_i||_2 row by row."""
    return np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)


def _rhs(kind: int, problem: dlnsim.Problem, y: np.ndarray, dims: np.ndarray, eta: float = 0.0,
         rank: int = 0) -> np.ndarray:
    offs = np.concatenate([[0], np.cumsum(dims[1:] * dims[:-1])]).astype(np.int64)
    f = np.empty_like(y)
    _point(kind, y, y, dims, offs, int(np.argmin(dims)), problem.Rt, problem.F, eta, rank, f)
    return f


# ---------------------------------------------------------------------------------------------------------
# right-hand sides
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("widths", [(4, 3), (4, 5, 3), (4, 5, 2, 3), (3, 2, 4, 5, 2)])
def test_numba_hvp_equals_numpy_reference(widths):
    problem = _problem(widths[0], widths[-1], 12, seed=1)
    rng = np.random.default_rng(2)
    W = dlnsim.gaussian_init(widths, rng, 0.8)
    V = dlnsim.gaussian_init(widths, rng, 1.0)
    w, dims, offs, _ = flat_layout(W)
    out = np.empty_like(w)
    _point(fk.HVP, w, _flat(V), dims, offs, int(np.argmin(dims)), problem.Rt, problem.F, 0.0, 0, out)
    ref = _flat(dlnsim.hessian_vector_product(problem, W, V))
    # two closed forms of the same products: agreement to rounding, 1e-12 of the largest entry
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-12 * np.abs(ref).max())
    # and the quadratic form <V, H V>
    form = dlnsim.hessian_form(problem, W, V)
    assert float(out @ _flat(V)) == pytest.approx(form, rel=1e-11)  # rounding of two formulas


def test_factor_rhs_is_the_gd_gradient_and_modified_rhs_adds_the_hvp():
    widths = (4, 5, 2, 3)
    problem = _problem(4, 3, 12, seed=3)
    W = dlnsim.gaussian_init(widths, np.random.default_rng(4), 0.7)
    w, dims, _, _ = flat_layout(W)
    g = _flat(dlnsim.gradient(problem, W))
    # the same kernel (linalg._loss_grad) as GD: bitwise equal
    np.testing.assert_array_equal(_rhs(fk.FACTOR, problem, w, dims), -g)
    eta = 0.01
    hg = _flat(dlnsim.hessian_vector_product(problem, W, dlnsim.gradient(problem, W)))
    np.testing.assert_allclose(_rhs(fk.MODIFIED, problem, w, dims, eta), -g - 0.5 * eta * hg,
                               rtol=0, atol=1e-12 * np.abs(g).max())  # rounding of the HVP


@pytest.mark.parametrize("widths,rank", [((3, 4, 5, 3), None), ((4, 2, 3, 4), None), ((4, 5, 5, 4), 2)])
def test_end_to_end_rhs_is_the_velocity_of_the_product(widths, rank):
    """For a balanced tuple dW/dt = sum_j W_{N:j+1} dW_j/dt W_{j-1:1} = -A_W(grad L^1(W)) (2.5)."""
    problem = _problem(widths[0], widths[-1], 15, seed=5)
    W = dlnsim.balanced_init(widths, np.random.default_rng(6), scale=0.9, rank=rank)
    G = dlnsim.gradient(problem, W)
    n = len(W)
    vel = -sum(dlnsim.product(W, n, j + 1) @ G[j - 1] @ dlnsim.product(W, j - 1, 1) for j in range(1, n + 1))
    Wp = dlnsim.product(W)
    r = int(np.sum(np.linalg.svd(Wp, compute_uv=False) > 1e-10))
    assert r == (rank or min(widths))
    dims = np.array(widths, dtype=np.int64)
    f = _rhs(fk.END_TO_END, problem, Wp.ravel().copy(), dims, rank=r)
    # identity (2.5) for balanced factors: rounding only (balanced_init is exact to ~1e-15)
    np.testing.assert_allclose(f, vel.ravel(), rtol=0, atol=1e-11 * np.abs(vel).max())


def test_end_to_end_rhs_depth_one_is_minus_the_gradient():
    problem = _problem(3, 2, 9, seed=7)
    W = [np.random.default_rng(8).standard_normal((2, 3))]
    f = _rhs(fk.END_TO_END, problem, W[0].ravel().copy(), np.array([3, 2], dtype=np.int64), rank=2)
    # A_W = identity for N = 1; (W C - E) formed two ways: rounding
    np.testing.assert_allclose(f, -(W[0] @ problem.XXt - problem.YXt).ravel(), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------------------
# the integrator against references
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("widths,seed", [((4, 5, 3), 10), ((4, 5, 2, 3), 11)])
def test_factor_flow_matches_scipy_dop853(widths, seed):
    problem = _problem(widths[0], widths[-1], 12, seed=seed)
    W0 = dlnsim.gaussian_init(widths, np.random.default_rng(seed + 100), 0.7)
    w0, dims, _, _ = flat_layout(W0)
    t = np.linspace(0.0, 4.0, 50)
    ds, states = _flow_with_states(problem, W0, t)  # default rtol = 1e-10, atol = 1e-12
    assert ds["status"].item() == "done"

    def rhs(_t, y):
        return -_flat(dlnsim.gradient(problem, unflatten(y, dims)))

    ref = solve_ivp(rhs, (0.0, 4.0), w0, method="DOP853", rtol=1e-12, atol=1e-14, t_eval=t)
    assert ref.success
    # required accuracy: relative difference <= 1e-8 at the 50 requested times
    assert _rel_rows(states, ref.y.T).max() <= 1e-8
    # the recorded loss is the loss of the recorded state
    losses = [dlnsim.loss(problem, unflatten(s, dims)) for s in states]
    np.testing.assert_allclose(ds["loss"].values, losses, rtol=1e-12)  # same formula, rounding


def _linear_regression():
    """N = 1: dW/dt = -(W C - E), W(t) = W* + (W0 - W*) expm(-C t); C has eigenvalues in [0.5, 3.6]."""
    rng = np.random.default_rng(3)
    problem = dlnsim.Problem(rng.standard_normal((3, 8)) / 2.5, rng.standard_normal((2, 8)))
    W0 = [rng.standard_normal((2, 3))]

    def exact(t: float) -> np.ndarray:
        return problem.W_ls + (W0[0] - problem.W_ls) @ scipy.linalg.expm(-problem.XXt * t)

    return problem, W0, exact


def test_fixed_step_order_five_on_linear_regression():
    problem, W0, exact = _linear_regression()
    T = 1.0
    hs, errs = [], []
    for n in (24, 34, 48, 68, 96):  # lambda_max h <= 0.15: asymptotic regime, errors 1e-9 .. 1e-12
        ds, states = _flow_with_states(problem, W0, [T], tolerances=Tolerances(fixed_step=T / n))
        assert ds["n_steps"].item() == n and ds["n_rejected"].item() == 0
        ref = exact(T)
        hs.append(T / n)
        errs.append(np.linalg.norm(states[-1].reshape(2, 3) - ref) / np.linalg.norm(ref))
    slope = np.polyfit(np.log(hs), np.log(errs), 1)[0]
    assert abs(slope - 5.0) <= 0.3, (slope, errs)  # order 5 +- 0.3


@pytest.mark.parametrize("rtol", [1e-6, 1e-8, 1e-10])
def test_adaptive_run_meets_its_tolerance(rtol):
    problem, W0, exact = _linear_regression()
    t = np.linspace(0.0, 2.0, 50)  # most of them inside steps: dense output
    ds, states = _flow_with_states(problem, W0, t, tolerances=Tolerances(rtol=rtol, atol=1e-2 * rtol))
    ref = np.array([exact(tk).ravel() for tk in t])
    err = _rel_rows(states, ref).max()
    # local error control on a contracting linear flow: the global error stays below rtol (measured
    # 0.08-0.11 rtol; the bound keeps a factor ~9 of margin)
    assert err <= rtol, err
    assert ds["n_rejected"].item() <= 3


def test_factor_flow_conserves_balancedness():
    widths = (3, 4, 5, 2)
    problem = _problem(3, 2, 10, seed=20)
    W0 = dlnsim.gaussian_init(widths, np.random.default_rng(21), 0.8)  # unbalanced on purpose
    rtol = 1e-10
    t = np.linspace(0.0, 3.0, 20)
    ds, states = _flow_with_states(problem, W0, t, tolerances=Tolerances(rtol=rtol, atol=1e-12))
    assert ds["status"].item() == "done"
    n = len(W0)
    D0 = [W0[j + 1].T @ W0[j + 1] - W0[j] @ W0[j].T for j in range(n - 1)]
    for s in states:
        W = unflatten(s, np.array(widths))
        for j in range(n - 1):
            D = W[j + 1].T @ W[j + 1] - W[j] @ W[j].T
            scale = np.linalg.norm(W0[j + 1]) ** 2 + np.linalg.norm(W0[j]) ** 2
            # (2.3): D_j is constant; within 100 rtol relative to the initial norms
            assert np.linalg.norm(D - D0[j]) <= 100 * rtol * scale
    # the recorded balancedness (spectral) is constant too (1e-8 absolute: 100 rtol times norms ~ 10)
    bal = ds["balancedness"].values
    np.testing.assert_allclose(bal, np.broadcast_to(bal[0], bal.shape), rtol=0, atol=1e-8)
    assert np.all(bal[0] > 0.1)


@pytest.mark.parametrize("widths,rank", [((3, 4, 5, 3), None), ((4, 2, 3, 4), None), ((4, 5, 5, 4), 2)])
def test_end_to_end_flow_equals_product_of_factor_flow(widths, rank):
    problem = _problem(widths[0], widths[-1], 15, seed=30)
    W0 = dlnsim.balanced_init(widths, np.random.default_rng(31), scale=0.9, rank=rank)
    t = np.linspace(0.0, 3.0, 25)
    rtol, atol = 1e-11, 1e-13
    dsf, sf = _flow_with_states(problem, W0, t, tolerances=Tolerances(rtol=rtol, atol=atol))
    dse, se = _flow_with_states(problem, W0, t, kind="end_to_end", tolerances=Tolerances(rtol=rtol, atol=atol))
    assert dsf["status"].item() == dse["status"].item() == "done"
    assert dse["end_to_end_rank"].item() == (rank or min(widths))
    prods = np.array([dlnsim.product(unflatten(s, np.array(widths))).ravel() for s in sf])
    # two integrations at rtol = 1e-11: agreement to 1e-8 (measured 1.5e-12 .. 2.8e-12)
    assert _rel_rows(se, prods).max() <= 1e-8
    np.testing.assert_allclose(dse["loss"].values, dsf["loss"].values, rtol=1e-8)
    np.testing.assert_allclose(dse["product_sv"].values, dsf["product_sv"].values, rtol=0, atol=1e-8)
    assert "balancedness" not in dse and "grad_norm_sq" not in dse


# ---------------------------------------------------------------------------------------------------------
# GD next to the flows
# ---------------------------------------------------------------------------------------------------------


def test_gd_follows_the_flow_to_first_order_and_the_modified_flow_to_second_order():
    problem = _problem(3, 2, 10, seed=5)
    W0 = dlnsim.gaussian_init((3, 4, 2), np.random.default_rng(40), 0.5)
    T = 1.0
    etas, d_flow, d_mod = [], [], []
    for n in (50, 100, 200, 400, 800):  # eta from 0.02 to 0.00125: more than a decade
        ds = compare_flow(problem, W0, T / n, n, record=[n], tolerances=Tolerances(rtol=1e-12, atol=1e-14))
        assert ds["flow_factor_status"].item() == ds["flow_modified_status"].item() == "done"
        assert float(ds["t"][-1]) == pytest.approx(T, rel=1e-12)  # summed stepsizes: rounding
        etas.append(T / n)
        d_flow.append(float(ds["flow_distance"][-1]))
        d_mod.append(float(ds["modified_flow_distance"][-1]))
    s1 = np.polyfit(np.log(etas), np.log(d_flow), 1)[0]
    s2 = np.polyfit(np.log(etas), np.log(d_mod), 1)[0]
    assert abs(s1 - 1.0) <= 0.15, (s1, d_flow)  # first order, slope 1 +- 0.15
    assert abs(s2 - 2.0) <= 0.2, (s2, d_mod)  # second order, slope 2 +- 0.2
    assert all(b < a for a, b in zip(d_flow, d_mod, strict=True))


def test_compare_flow_dataset_and_netcdf_roundtrip(tmp_path):
    problem = _problem(3, 2, 10, seed=5)
    W0 = dlnsim.balanced_init((3, 4, 2), np.random.default_rng(41), scale=0.8)
    ds = compare_flow(problem, W0, 0.01, 300, record="log:20", kind=("factor", "modified", "end_to_end"),
                      sharpness=True)
    for name in ("flow_loss", "flow_distance", "flow_product_distance", "modified_flow_loss",
                 "modified_flow_distance", "modified_flow_product_distance", "end_to_end_flow_loss",
                 "end_to_end_flow_product_distance", "sharpness", "sharpness_limit"):
        assert ds[name].dims == ("k",)
        assert ds[name].attrs["units"] and ds[name].attrs["long_name"]
    assert float(ds["flow_distance"][0]) == 0.0 and float(ds["flow_product_distance"][0]) == 0.0
    assert np.all(np.isfinite(ds["flow_distance"].values))
    # the flow's loss and GD's loss agree to O(eta) (here both near the optimum after t = 3)
    np.testing.assert_allclose(ds["flow_loss"].values, ds["loss"].values, rtol=0.05)
    # factor flow of a balanced start and the end-to-end flow have the same product (rtol 1e-10 runs)
    np.testing.assert_allclose(ds["end_to_end_flow_product_distance"].values,
                               ds["flow_product_distance"].values, rtol=0, atol=1e-8)
    # the same division: exact up to 1 ulp
    np.testing.assert_allclose(ds["sharpness_limit"].values[:-1], 2 / ds["eta_k"].values[:-1], rtol=1e-15)
    assert np.isnan(ds["sharpness_limit"].values[-1])  # no step after the last iterate
    assert ds.attrs["flow_rtol"] == 1e-10 and ds.attrs["flow_modified_eta"] == 0.01
    path = dataset.save(ds, tmp_path / "cmp.nc")
    xr.testing.assert_identical(dataset.open(path), ds)


def test_compare_flow_decaying_schedule_has_no_modified_flow():
    problem = _problem(3, 2, 10, seed=5)
    W0 = dlnsim.gaussian_init((3, 4, 2), np.random.default_rng(42), 0.5)
    sched = dlnsim.Power(0.02, 0.5)
    ds = compare_flow(problem, W0, sched, 200, record="log:10")
    assert "flow_distance" in ds and "modified_flow_distance" not in ds
    assert ds.attrs["flow_kinds"] == "factor"
    # the flow is evaluated at t_k = eta_0 + ... + eta_(k-1) of the decaying schedule
    t_k = np.concatenate([[0.0], np.cumsum(sched.values(200))])[ds["k"].values]
    np.testing.assert_allclose(ds["t"].values, t_k, rtol=1e-13)  # summation order: rounding
    with pytest.raises(ValueError, match="constant stepsize"):
        compare_flow(problem, W0, sched, 20, kind=("factor", "modified"))


def test_compare_flow_after_gd_divergence_keeps_the_record_up_to_the_stop():
    problem = _problem(3, 2, 10, seed=5)
    W0 = dlnsim.gaussian_init((3, 4, 2), np.random.default_rng(43), 0.5)
    ds = compare_flow(problem, W0, 0.15, 200, record="all")  # GD diverges at k = 5
    assert ds["status"].item() == "diverged"
    stop = ds["stop_iteration"].item()
    assert stop > 3
    ok = ds["k"].values < stop
    after = ds["k"].values > stop
    assert np.all(np.isfinite(ds["flow_distance"].values[ok]))
    assert np.all(np.isnan(ds["flow_distance"].values[after]))
    assert np.all(np.isnan(ds["modified_flow_loss"].values[after]))
    # the stop is a record point: the blown-up GD state, far from the flow
    at = int(np.flatnonzero(ds["k"].values == stop)[0])
    assert float(ds["loss"][at]) > ds["divergence_threshold"].item()
    assert float(ds["flow_distance"][at]) > 100 * float(ds["flow_distance"][at - 1])
    ok = ds["k"].values <= stop
    assert ds["flow_factor_status"].item() == "done"
    # the flow ends exactly at the last finite t_k (the last step is clipped to it): equal up to 1 ulp
    assert ds["flow_factor_t_reached"].item() == pytest.approx(float(ds["t"].values[ok][-1]), rel=1e-15)


# ---------------------------------------------------------------------------------------------------------
# stops and bad input
# ---------------------------------------------------------------------------------------------------------


def test_flow_from_a_diverging_start_reports_max_steps_and_keeps_the_record():
    problem = _problem(3, 2, 10, seed=5)
    W0 = dlnsim.gaussian_init((3, 4, 4, 2), np.random.default_rng(44), 20.0)  # very stiff
    t = np.concatenate([[0.0], np.geomspace(1e-9, 1.0, 49)])
    ds = run_flow(problem, W0, t, tolerances=Tolerances(max_steps=300))
    assert ds["status"].item() == "max_steps"
    assert ds["n_steps"].item() + ds["n_rejected"].item() == 300
    reached = t <= ds["t_reached"].item()
    assert 1 < reached.sum() < t.size
    assert np.all(np.isfinite(ds["loss"].values[reached]))
    assert np.all(np.isnan(ds["loss"].values[~reached]))
    assert np.all(np.isnan(ds["balancedness"].values[~reached]))
    assert np.all(np.diff(ds["loss"].values[reached]) <= 0)  # a gradient flow descends


def test_flow_from_an_overflowing_start_reports_nonfinite():
    problem = _problem(3, 2, 10, seed=5)
    W0 = [1e80 * W for W in dlnsim.gaussian_init((3, 4, 4, 2), np.random.default_rng(45), 1.0)]
    t = np.linspace(0.0, 1.0, 5)
    ds = run_flow(problem, W0, t)
    assert ds["status"].item() == "nonfinite"
    assert ds["n_steps"].item() == 0
    assert not np.isfinite(ds["loss"].values[0])  # recorded at t = 0: the loss overflows
    assert np.all(np.isnan(ds["loss"].values[1:]))


def test_run_flow_dataset_and_netcdf_roundtrip(tmp_path):
    problem = _problem(3, 2, 10, seed=5)
    W0 = dlnsim.gaussian_init((3, 4, 2), np.random.default_rng(46), 0.5)
    t = np.linspace(0.0, 2.0, 11)
    ds = run_flow(problem, W0, t, kind="modified", eta=0.01, attrs={"note": "test"})
    assert ds["loss"].dims == ("t",) and ds["balancedness"].dims == ("t", "pair")
    assert ds["product_sv"].dims == ("t", "sv")
    np.testing.assert_array_equal(ds["t"].values, t)
    for key in ("status", "n_steps", "n_rejected"):  # outcomes: 0-d variables
        assert key in ds.data_vars and ds[key].ndim == 0
    for key in ("rtol", "atol", "kind", "eta", "dlnsim_version", "note"):  # settings and provenance
        assert key in ds.attrs
    assert ds.attrs["kind"] == "modified" and ds.attrs["eta"] == 0.01 and ds["status"].item() == "done"
    # L(W0) by the kernel's loss-and-gradient vs dlnsim.loss (same kernel): rounding only
    assert float(ds["loss"][0]) == pytest.approx(dlnsim.loss(problem, W0), rel=1e-14)
    path = dataset.save(ds, tmp_path / "flow.nc")
    xr.testing.assert_identical(dataset.open(path), ds)
    for name, (dims, units, long_name) in {**FLOW_SCHEMA, **COMPARE_SCHEMA}.items():
        assert units and long_name and dims, name
    plain = run_flow(problem, W0, t, record=Record(diagnostics=False))
    assert {k for k, v in plain.data_vars.items() if v.ndim} == {"loss", "excess_loss"}
    assert plain.attrs["eta"] == 0.0 and plain.attrs["fixed_step"] == 0.0  # no stepsize; adaptive steps


def test_a_first_step_below_the_time_resolution_reports_step_underflow():
    problem = _problem(3, 2, 10, seed=5)
    W0 = dlnsim.gaussian_init((3, 4, 2), np.random.default_rng(47), 0.5)
    ds = run_flow(problem, W0, [0.0, 1.0], tolerances=Tolerances(first_step=1e-320))
    assert ds["status"].item() == "step_underflow" and ds["n_steps"].item() == 0
    assert np.isfinite(ds["loss"].values[0]) and np.isnan(ds["loss"].values[1])


def test_requested_times_may_repeat_and_start_after_zero():
    problem = _problem(3, 2, 10, seed=5)
    W0 = dlnsim.gaussian_init((3, 4, 2), np.random.default_rng(47), 0.5)
    ds = run_flow(problem, W0, [0.5, 0.5, 1.0], record=Record(diagnostics=False))
    full = run_flow(problem, W0, [0.0, 0.5, 1.0], record=Record(diagnostics=False))
    assert float(ds["loss"][0]) == float(ds["loss"][1])
    # different step sequences, both at rtol 1e-10: losses agree to 1e-8
    np.testing.assert_allclose(ds["loss"].values[1:], full["loss"].values[1:], rtol=1e-8)
    only0 = run_flow(problem, W0, [0.0])
    assert only0["status"].item() == "done" and only0["n_steps"].item() == 0


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"t": [[0.0, 1.0]]}, "t must be 1-D"),
        ({"t": [0.0, np.nan]}, "t must be finite"),
        ({"t": [-1.0, 1.0]}, "t must be >= 0"),
        ({"t": [0.0, 2.0, 1.0]}, "non-decreasing"),
        ({"t": []}, "t must not be empty"),
        ({"tolerances": {"rtol": 0.0}}, r"Tolerances\.rtol"),
        ({"tolerances": {"atol": -1.0}}, r"Tolerances\.atol"),
        ({"kind": "euler"}, "kind must be one of"),
        ({"kind": "modified"}, "eta is required"),
        ({"kind": "modified", "eta": -0.1}, "eta"),
        ({"eta": 0.1}, "eta is only used"),
        ({"kind": "end_to_end"}, "W0 must be balanced"),
        ({"tolerances": {"max_steps": 0}}, r"Tolerances\.max_steps"),
        ({"tolerances": {"first_step": -1.0}}, r"Tolerances\.first_step"),
        ({"tolerances": {"fixed_step": 0.0}}, r"Tolerances\.fixed_step"),
    ],
)
def test_run_flow_rejects_bad_input(kwargs, match):
    problem = _problem(3, 2, 10, seed=5)
    W0 = dlnsim.gaussian_init((3, 4, 2), np.random.default_rng(48), 0.5)
    args = {"t": [0.0, 1.0], **kwargs}
    with pytest.raises(ValueError, match=match):
        if isinstance(args.get("tolerances"), dict):  # made here: its own validation is part of the refusal
            args["tolerances"] = Tolerances(**args["tolerances"])
        run_flow(problem, W0, **args)


def test_compare_flow_rejects_bad_kinds():
    problem = _problem(3, 2, 10, seed=5)
    W0 = dlnsim.gaussian_init((3, 4, 2), np.random.default_rng(49), 0.5)
    with pytest.raises(ValueError, match="kind must be one of"):
        compare_flow(problem, W0, 0.01, 10, kind=("factor", "exact"))
    with pytest.raises(ValueError, match="W0 must be balanced"):
        compare_flow(problem, W0, 0.01, 10, kind=("end_to_end",))
    with pytest.raises(ValueError, match="must not repeat"):
        compare_flow(problem, W0, 0.01, 10, kind=("factor", "factor"))


# ---------------------------------------------------------------------------------------------------------
# state diagnostics from the dense output
# ---------------------------------------------------------------------------------------------------------

_EPS = np.finfo(float).eps


def _dense_reference(states: np.ndarray, widths: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    """The diagnostics of each saved state by `record.state_diagnostics` (numpy, one state at a time)."""
    dims = np.array(widths, dtype=np.int64)
    offs = np.concatenate([[0], np.cumsum(dims[1:] * dims[:-1])]).astype(np.int64)
    n = len(widths) - 1
    bal, ln, sv = (np.full((len(states), c), np.nan) for c in (n - 1, n, min(widths)))
    for i, s in enumerate(states):
        state_diagnostics(s, dims, offs, bal[i], ln[i], sv[i])
    return bal, ln, sv


def _assert_diagnostics_match(ds: xr.Dataset, states: np.ndarray, widths: tuple[int, ...]) -> None:
    bal, ln, sv = _dense_reference(states, widths)
    W = [np.array([unflatten(s, np.array(widths))[j] for s in states]) for j in range(len(widths) - 1)]
    fro2 = [np.sum(Wj**2, axis=(1, 2)) for Wj in W]
    for j in range(len(widths) - 2):
        # D_j formed from Gram matrices of W_{j+1}, W_j: rounding d_j eps (||W_{j+1}||_F^2 + ||W_j||_F^2), with
        # 4x of margin for the two computations
        tol = 4 * widths[j + 1] * _EPS * (fro2[j + 1] + fro2[j])
        assert np.all(np.abs(ds["balancedness"].values[:, j] - bal[:, j]) <= tol), j
    np.testing.assert_allclose(ds["layer_norm_sq"].values, ln, rtol=1e-13)  # eigenvalues of Gram matrices
    # singular values of products of N layers: 4 N d_max eps ||W_N ... W_1||
    tol = 4 * len(W) * max(widths) * _EPS * sv[:, :1]
    assert np.all(np.abs(ds["product_sv"].values - sv) <= tol)


@pytest.mark.parametrize(
    "case",
    ["paper_balanced_rank2", "gaussian_full_rank", "narrow_full_rank", "balanced_rank3", "depth2", "modified",
     "wide_pivot0"],
)
def test_state_diagnostics_agree_with_the_dense_computation_to_rounding(case):
    """The diagnostics from the compressed dense output (`dlnsim.diagnostics.flow`) are those of the states:
    low-rank layers (compressed to k = 2, 3) and full-rank ones (nothing to compress)."""
    problem = _problem(5, 4, 12, seed=60)
    rng = np.random.default_rng(61)
    kind, eta = "factor", None
    if case == "paper_balanced_rank2":
        setup = dlnsim.paper_setup(3, 1, d=12, m=40)
        problem, W0, widths = setup.problem, setup.W0, tuple(setup.widths)
    elif case == "gaussian_full_rank":
        widths = (5, 6, 3, 4)
        W0 = dlnsim.gaussian_init(widths, rng, 0.7)
    elif case == "narrow_full_rank":  # inner widths 2: bases of 2 columns without a low rank
        widths = (5, 2, 2, 4)
        W0 = dlnsim.gaussian_init(widths, rng, 0.9)
    elif case == "balanced_rank3":
        widths = (5, 6, 7, 4)
        W0 = dlnsim.balanced_init(widths, rng, scale=0.8, rank=3)
    elif case == "depth2":
        widths = (5, 3, 4)
        W0 = dlnsim.gaussian_init(widths, rng, 0.7)
    elif case == "modified":
        widths, kind, eta = (5, 6, 3, 4), "modified", 0.05
        W0 = dlnsim.gaussian_init(widths, rng, 0.7)
    else:
        widths = (3, 8, 8, 4)
        W0 = dlnsim.gaussian_init(widths, rng, 0.5)
        problem = _problem(3, 4, 12, seed=62)
    t = np.concatenate([[0.0, 0.0], np.linspace(0.01, 3.0, 300), [3.0]])  # t = 0 twice, the last time twice
    ds, states = _flow_with_states(problem, W0, t, kind=kind, eta=eta)
    assert ds["status"].item() == "done"
    _assert_diagnostics_match(ds, states, widths)


def test_times_whose_bounds_do_not_close_come_from_a_second_integration(monkeypatch):
    """A time the compressed diagnostics leave is computed from its state, taken from a second run of the
    same steps: the same values to rounding, the loss and ||grad||^2 untouched."""
    from dlnsim.diagnostics import flow as fd

    setup = dlnsim.paper_setup(3, 1, d=12, m=40)
    t = np.concatenate([[0.0], np.linspace(0.01, 3.0, 400)])
    ref, states = _flow_with_states(setup.problem, setup.W0, t)
    step_diagnostics = fd.step_diagnostics

    def every_third_left(steps, slot, th, dims, bal, ln, sv):
        ok = step_diagnostics(steps, slot, th, dims, bal, ln, sv)
        bal[::3] = ln[::3] = sv[::3] = 7.0  # must be overwritten
        ok[::3] = False
        return ok

    monkeypatch.setattr(fd, "step_diagnostics", every_third_left)
    ds = run_flow(setup.problem, setup.W0, t)
    for name in ("loss", "grad_norm_sq"):
        np.testing.assert_array_equal(ds[name].values, ref[name].values)
    _assert_diagnostics_match(ds, states, tuple(setup.widths))


def test_a_run_resumed_after_each_batch_of_steps_takes_the_same_steps(monkeypatch):
    """The kernel returns whenever its dense-output slots are full and resumes: bitwise the run of one call."""
    from dlnsim.runs import flow as flow_module

    setup = dlnsim.paper_setup(3, 1, d=12, m=40)
    t = np.linspace(0.0, 3.0, 200)
    one, s1 = _flow_with_states(setup.problem, setup.W0, t, record=Record(diagnostics=["grad_norm_sq"]))
    monkeypatch.setattr(flow_module, "_SLOT_BYTES", 1)  # the smallest batches: 4 steps
    many, s2 = _flow_with_states(setup.problem, setup.W0, t)
    np.testing.assert_array_equal(s1, s2)
    for name in ("loss", "grad_norm_sq"):
        np.testing.assert_array_equal(one[name].values, many[name].values)
    for key in ("n_steps", "n_rejected", "n_rhs", "t_reached", "first_step"):
        assert one[key].item() == many[key].item(), key
    _assert_diagnostics_match(many, s2, tuple(setup.widths))


def test_grad_norm_sq_equals_the_norm_of_the_gradient():
    """||grad L||^2 at the requested times without forming the narrow-layer blocks, any pivot position."""
    for widths in [(5, 3, 4), (4, 6, 2, 5, 3), (2, 5, 6, 3), (5, 6, 7, 1), (6, 5, 2, 4, 5, 3), (6, 5, 3, 4, 5, 7, 4)]:
        rng = np.random.default_rng(63)
        problem = dlnsim.Problem(rng.standard_normal((widths[0], 15)), rng.standard_normal((widths[-1], 15)))
        W0 = dlnsim.gaussian_init(widths, rng, 0.6)
        ds, states = _flow_with_states(problem, W0, np.linspace(0.0, 1.0, 5))
        ref = [sum(np.sum(G * G) for G in dlnsim.gradient(problem, unflatten(s, np.array(widths)))) for s in states]
        np.testing.assert_allclose(ds["grad_norm_sq"].values, ref, rtol=1e-14)  # sums of squares: rounding


def test_end_to_end_flow_product_singular_values_are_those_of_its_states():
    problem = _problem(5, 4, 12, seed=64)
    W0 = dlnsim.balanced_init((5, 3, 6, 4), np.random.default_rng(65), scale=0.7)
    ds, states = _flow_with_states(problem, W0, np.linspace(0.0, 2.0, 30), kind="end_to_end")
    ref = np.linalg.svd(states.reshape(-1, 4, 5), compute_uv=False)[:, :3]
    np.testing.assert_allclose(ds["product_sv"].values, ref, rtol=0, atol=1e-14 * ref.max())  # same SVD


@pytest.mark.slow
def test_a_first_flow_compile_says_so_once_and_a_warm_cache_says_nothing(tmp_path):
    import os
    import subprocess
    import sys

    code = ("import dlnsim\n"
            "s = dlnsim.paper_setup(3, 0, d=6, m=20)\n"
            "for _ in range(2):\n"
            "    dlnsim.run_flow(s.problem, s.W0, 1.0, record='linear:5')\n")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    cold = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert [line for line in cold.stderr.splitlines() if "compiling" in line] == [
        "dlnsim: compiling the gradient-flow kernel (first use, about 5-15 s; cached afterwards)"]
    warm = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert "compiling" not in warm.stderr


# ---------------------------------------------------------------------------------------------------------
# sharpness
# ---------------------------------------------------------------------------------------------------------


def test_sharpness_matches_dense_hessian():
    widths = (3, 4, 2, 2)
    problem = _problem(3, 2, 10, seed=50)
    W = dlnsim.gaussian_init(widths, np.random.default_rng(51), 0.9)
    w, dims, offs, _ = flat_layout(W)
    n = w.size
    H = np.empty((n, n))
    col = np.empty(n)
    for i in range(n):
        e = np.zeros(n)
        e[i] = 1.0
        _point(fk.HVP, w, e, dims, offs, int(np.argmin(dims)), problem.Rt, problem.F, 0.0, 0, col)
        H[:, i] = col
    np.testing.assert_allclose(H, H.T, rtol=0, atol=1e-12 * np.abs(H).max())  # a Hessian: symmetric
    top = np.linalg.eigvalsh(0.5 * (H + H.T))[-1]
    # Lanczos with full reorthogonalisation: converged to 1e-10 relative (tol), rounding aside
    assert sharpness(problem, W) == pytest.approx(top, rel=1e-9)
    assert sharpness(problem, W, iters=n, tol=1e-14) == pytest.approx(top, rel=1e-12)


@pytest.mark.slow
def test_paper_setup_end_to_end_flow_with_rank_two_product():
    """d = 70, d_1 = 2: the end-to-end flow on a rank-2 product (rank cut of the kernel) equals the product
    of the factor flow."""
    setup = dlnsim.paper_setup(5, 0)
    t = np.linspace(0.0, 5.0, 11)
    dsf, sf = _flow_with_states(setup.problem, setup.W0, t, record=Record(diagnostics=False))
    dse, se = _flow_with_states(setup.problem, setup.W0, t, kind="end_to_end", record=Record(diagnostics=False))
    assert dse["end_to_end_rank"].item() == 2
    prods = np.array([dlnsim.product(unflatten(s, np.array(setup.widths))).ravel() for s in sf])
    assert _rel_rows(se[1:], prods[1:]).max() <= 1e-8  # rtol 1e-10 runs; measured ~1e-10
    np.testing.assert_allclose(dse["loss"].values, dsf["loss"].values, rtol=1e-8)


@pytest.mark.slow
def test_paper_setup_gd_against_flow_at_the_bound():
    setup = dlnsim.paper_setup(3, 0)
    ds = compare_flow(setup.problem, setup.W0, "bound", 2000, record="log:30")
    assert ds["flow_factor_status"].item() == ds["flow_modified_status"].item() == "done"
    d, dm = ds["flow_distance"].values, ds["modified_flow_distance"].values
    assert np.all(np.isfinite(d)) and np.all(np.isfinite(dm))
    # at the bound eta is small: GD stays within 1e-2 of the flow (relative to ||W||) and the modified flow
    # is closer than the plain flow after the first steps
    norm = np.linalg.norm(flat_layout(setup.W0)[0])
    assert d.max() <= 1e-2 * norm
    assert np.all(dm[2:] <= d[2:])
