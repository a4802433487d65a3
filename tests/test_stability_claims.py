"""The stability-threshold criterion (GD continued past a first tolerance hit at an unstable point) and the claims
the stability studies make from their archived files."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import dlnsim
from dlnsim.analysis import stability as S
from dlnsim.analysis.critical import STABLE_CRITERION, STABLE_CRITERION_FIRST_HIT

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
if importlib.util.find_spec("studies") is None:  # `pytest`, unlike `python -m pytest`, does not add the root
    sys.path.insert(0, str(ROOT))

LANCZOS = {"iters": 400, "tol": 1e-11}


def _start(N: int, seed: int) -> tuple[dlnsim.Problem, list[np.ndarray], float]:
    setup = dlnsim.paper_setup(N, seed)
    W0, _ = S.compress_widths(setup.W0)
    return setup.problem, W0, 2.0 / S.balanced_minimum_sharpness(setup.problem, N)


def _one(problem: dlnsim.Problem, W0: list[np.ndarray], eta: float, n_iter: int,
         **kw: object) -> S.StableCriticalStepsize:
    """A search that runs exactly one trial, at ``eta``."""
    return S.stable_critical_stepsize(problem, W0, n_iter=n_iter, bracket=(eta, 1.5 * eta), rtol=0.01,
                                      factor=1.003, max_expand=0, **kw)  # type: ignore[arg-type]


def test_gd_leaves_an_unstable_minimiser_and_settles_at_a_flatter_stable_one():
    """N = 12, seed 7 at 0.9975 x 2/lambda_bal: the first tolerance hit is linearly unstable; continued, GD
    leaves it and converges to a stable minimiser within 2e4 steps.  The first-hit criterion counts it failing."""
    problem, W0, eta_bal = _start(12, 7)
    eta = 0.9975 * eta_bal
    old = _one(problem, W0, eta, 20000, continue_unstable=False)
    assert old.trial_outcome[0] == "unstable_limit" and old.criterion == STABLE_CRITERION_FIRST_HIT
    new = _one(problem, W0, eta, 20000)
    assert new.criterion == STABLE_CRITERION and new.continue_unstable and new.n_iter == 20000
    assert new.trial_outcome[0] == "converged" and new.trial_continued[0]
    assert new.trial_first_hit[0] == old.trial_first_hit[0] > 0
    assert new.trial_first_sharpness[0] * eta / 2 > 1.0  # unstable where the tolerance first held
    assert new.trial_sharpness[0] * eta / 2 <= 1.0  # stable where the horizon ends
    assert new.trial_sharpness[0] < new.trial_first_sharpness[0]
    assert new.trial_first_hit[0] < new.trial_settle_iteration[0] <= 20000
    assert new.trial_stop_iteration[0] == 20000
    assert new.eta_crit == eta and new.limit_weights is not None
    assert dlnsim.sharpness(problem, new.limit_weights, **LANCZOS) == pytest.approx(new.trial_sharpness[0],
                                                                                    rel=1e-8)


def test_a_run_that_sits_on_an_unstable_minimiser_to_the_horizon_fails():
    """Float64 GD can stay on a linearly unstable minimiser for a long time: within the tests at the end of the
    horizon, but sharper than 2/eta -> unstable_limit, not converged."""
    problem, W0, eta_bal = _start(20, 3)
    eta = 1.001 * eta_bal
    res = _one(problem, W0, eta, 5000)
    assert res.trial_outcome[0] == "unstable_limit" and res.trial_continued[0]
    assert res.trial_sharpness[0] * eta / 2 > 1.0
    assert res.trial_settle_iteration[0] == -1
    assert res.status == "no_converging_eta"


def test_a_run_that_leaves_and_has_not_resettled_at_the_horizon_fails():
    problem, W0, eta_bal = _start(20, 0)
    eta = 1.004 * eta_bal
    res = _one(problem, W0, eta, 4000)
    assert res.trial_outcome[0] == "not_converged" and res.trial_continued[0]
    assert res.trial_first_sharpness[0] * eta / 2 > 1.0
    assert res.trial_final_loss[0] > 1e-6


def test_a_stable_first_hit_stops_the_run():
    problem, W0, eta_bal = _start(5, 0)
    res = _one(problem, W0, 0.9 * eta_bal, 20000)
    assert res.trial_outcome[0] == "converged" and not res.trial_continued[0]
    assert res.trial_stop_iteration[0] == res.trial_first_hit[0] == res.trial_settle_iteration[0] < 20000
    assert res.trial_sharpness[0] == res.trial_first_sharpness[0]


def test_assume_bracket_bisects_without_running_the_ends():
    """N = 1: GD is stable iff eta < 2/lambda_max(X X^T); a bracket known to straddle it is only bisected."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((5, 20))
    problem = dlnsim.Problem(X, rng.standard_normal((3, 5)) @ X + 0.05 * rng.standard_normal((3, 20)))
    lam = problem.lambda_max
    W0 = [np.zeros((3, 5))]
    res = S.stable_critical_stepsize(problem, W0, n_iter=40000, bracket=(1.5 / lam, 2.5 / lam), rtol=0.002,
                                     assume_bracket=True)
    assert res.status == "ok"
    assert res.eta_lo <= 2.0 / lam <= res.eta_hi <= res.eta_lo * 1.002
    assert all(1.5 / lam < e < 2.5 / lam for e in res.trial_eta)
    arrays = res.trial_arrays()
    assert set(arrays) >= {"trial_eta", "trial_first_hit", "trial_settle_iteration", "trial_continued"}
    assert all(v.shape == (len(res.trial_eta),) for v in arrays.values())


# ------------------------------------------------------------------------------- claims read from the archive


def _data(name: str) -> xr.Dataset:
    path = DATA / f"{name}.nc"
    try:
        return dlnsim.load(path)
    except ValueError as exc:  # missing, or written by an older format (regenerate with python -m studies)
        pytest.skip(f"{path}: {exc}")


def test_eta_crit_approaches_eta_flat_from_below():
    st = _data("stability_threshold")
    assert (st["search_status"] == "ok").all()
    assert float(st["ratio_flat"].max()) <= 1.0
    assert int(st["n_above_flat_converged"].sum()) == 0
    assert float(st["resolution"].max()) <= float(st.attrs["rtol"]) * (1 + 1e-9)
    # the horizon: eta_crit grows with it (from the same trials at 5e3; by bisection from eta_crit(2e4) at 1e5)
    short, mid, long = st["eta_crit_short"], st["eta_crit"], st["eta_crit_long"]
    assert bool((short.isnull() | (short <= mid * (1 + 1e-12))).all())
    assert bool((long.isnull() | (long >= mid)).all()) and int(long.notnull().sum()) >= 3
    # continuing past an unstable first hit matters: some such trials settle at a stable minimiser
    assert int(st["n_continued_converged"].sum()) > 0
    # where the run at eta_crit ends, and every reached minimiser, is linearly stable (the criterion)
    assert float(st["reached_stability"].max()) <= 1.0


def test_the_balanced_prediction_fails_where_it_differs_from_the_flattest():
    st = _data("stability_threshold")
    small = st.sel(N=[N for N in st["N"].values if N <= 3])
    assert float(small["ratio_sharpness"].min()) > 1.0  # eta_crit above 2/lambda_bal for every seed at N = 2, 3
    assert float(small["flat_gain"].min()) > 0.01
    o = _data("out_of_sample")
    w, a = o.sel(data="whitened"), o.sel(data="anisotropic")
    assert float(abs(w["flat_gain"]).max()) < 1e-6
    assert float(w["ratio_flat"].max()) <= 1.0 and float(w["ratio_flat"].min()) > 0.99
    assert float(a["ratio_flat"].max()) <= 1.0 and float(a["ratio_flat"].min()) > 0.95
    assert float(a["ratio_sharpness"].max()) > 1.2  # the balanced minimiser's limit is far below eta_crit


def test_regime_map_labels_follow_their_tests():
    rm = _data("regime_map")
    reg, x = rm["regime"], rm["eta_over_flat"]
    assert float(x.where(reg == "converges").max()) < 1.0
    assert float(x.where(reg == "periodic").min()) > 1.0  # settled period-2 orbits only above eta_flat
    lyap, tol = rm["lyapunov"], float(rm.attrs["lyap_tol"])
    assert bool((lyap.where(reg == "chaotic") > tol).sum() == (reg == "chaotic").sum())
    assert bool((lyap.where(reg == "bounded") <= tol).sum() == (reg == "bounded").sum())
    drift = rm["orbit_drift"]
    assert bool((drift.where(reg == "decaying") < -float(rm.attrs["drift_tol"])).sum() == (reg == "decaying").sum())


def test_the_period_two_orbit_is_born_at_eta_flat():
    rm = _data("regime_map")
    onset, se = rm["flip_onset"], rm["flip_onset_se"]
    assert bool(onset.notnull().all())
    assert float(abs(onset - 1).max()) < 0.003  # a flip bifurcation at the flattest minimiser's limit
    assert float(se.max()) < 0.002
    assert float(rm["flip_slope"].min()) > 0


def test_the_regime_list_of_the_docs_is_what_the_data_give():
    """docs/stability.md's regime list is the one `studies.regime_map.findings` writes from data/regime_map.nc
    (rewrite it with ``python -m studies.regime_map`` after a regeneration)."""
    from studies import regime_map as R

    text = (ROOT / "docs" / "stability.md").read_text()
    i, j = text.index(R.BEGIN) + len(R.BEGIN), text.index(R.END)
    assert text[i:j] == R.findings(_data("regime_map"))


def test_the_flow_limits_of_the_stability_study_converged():
    """docs/stability.md: the flows integrated for seed 0 reach the balanced minimiser (sharpness to 3.5e-10) and
    every one stopped by its gradient test, below the resolution the integration has there."""
    st = _data("stability_threshold")
    flows = st.sel(seed=0)
    assert set(flows["flow_status"].values.tolist()) == {"converged"}
    assert float(abs(flows["flow_sharpness"] / flows["sharpness_min"] - 1).max()) < 3.5e-10 * 1.01
    assert bool((flows["flow_grad_norm"] < flows["flow_resolution"]).all())
    assert set(st["flow_status"].sel(seed=st["seed"].values[1:]).values.ravel().tolist()) == {"not_integrated"}


def test_the_reached_minimisers_and_the_sharpness_along_gd_in_the_docs():
    """The numbers of docs/stability.md sections 3.2 and 3.4 (hand-written prose) are those of
    data/stability_threshold.nc, formatted as the page prints them."""
    st = _data("stability_threshold")
    text = " ".join((ROOT / "docs" / "stability.md").read_text().split())
    flat = st["reached_flatness"].median("seed")  # over eta_frac = 0.5, 0.9, 1
    for N in (2, 3, 4, 5):
        assert f"N = {N}: " + ", ".join(f"{v:.3f}" for v in flat.sel(N=N).values) in text
    deep = flat.sel(N=[n for n in st["N"].values if n >= 6])
    assert f"N >= 6: {float(deep.min()):.4f}-{float(deep.max()):.4f}" in text
    assert f"is at most {float(st['reached_stability'].max()):.5f} over all runs" in text
    traj = st["traj_stability"].sel(seed=0, traj_frac=1.0)
    start = traj.isel(traj_point=0)
    top = int(np.argmax(start.values))
    assert (f"is {float(start.sel(N=2)):.2f} (N = 2) to {float(start.max()):.2f} (N = {int(st['N'][top])})"
            in text)
    peak = st["traj_stability_max"].sel(seed=0, traj_frac=1.0)
    rest = peak.sel(N=[n for n in st["N"].values if n >= 5])
    assert (", ".join(f"{float(peak.sel(N=N)):.2f} (N = {N})" for N in (2, 3)) + f", {float(peak.sel(N=4)):.2f} "
            f"(N = 4) and {float(rest.min()):.2f}-{float(rest.max()):.2f} for N >= 5") in text
    end = [float(row[np.isfinite(row)][-1]) for row in traj.values]
    assert f"at the end {min(end):.3f}-{max(end):.3f}" in text
    half = float(st["traj_stability_max"].sel(seed=0, traj_frac=0.5).max())
    assert "At eta_crit/2 it stays below 0.53 after k = 0" in text and 0.52 < half < 0.53
