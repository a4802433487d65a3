"""The stability-threshold criterion (GD continued past a first tolerance hit at an unstable point) and the claims
the stability studies make from their archived files."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

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
