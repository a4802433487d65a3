"""The search core shared by critical_stepsize and stable_critical_stepsize, on synthetic trials (no GD runs);
the criterion of critical_stepsize (a saddle plateau never converges), its default bracket and the warning of
critical_sweep, on small GD runs."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import pytest

import dlnsim
from dlnsim.analysis.critical import (
    DEFAULT_BRACKET_FACTOR,
    LossCriterion,
    NoConvergingStepsizeWarning,
    TrialOutcome,
    bracket_and_bisect,
    saddle_gap,
)
from dlnsim.objective import loss

INITIAL = 1.0


def _trials(threshold: float, final_loss: float = 2.0) -> tuple[list[float], Callable[[float], TrialOutcome]]:
    """Stepsizes below ``threshold`` converge; the others end at ``final_loss`` (above L(0): they 'failed')."""
    seen: list[float] = []

    def trial(eta: float) -> TrialOutcome:
        seen.append(eta)
        return TrialOutcome(eta < threshold, 0.0 if eta < threshold else final_loss, INITIAL)

    return seen, trial


@pytest.mark.parametrize("lo, hi", [(0.1, 0.2), (0.5, 0.6), (0.001, 10.0)])
def test_bisection_brackets_the_threshold(lo: float, hi: float) -> None:
    seen, trial = _trials(0.37)
    L, U, status = bracket_and_bisect(trial, lo, hi, factor=2.0, max_expand=40, rtol=1e-3,
                                       walk_down_gives_up=True)
    assert status == "ok"
    assert L is not None and U is not None
    assert L < 0.37 <= U and U <= L * (1 + 1e-3)
    assert len(seen) == len(set(seen))  # no stepsize is run twice


def test_walk_up_stops_when_the_final_loss_stops_improving() -> None:
    """Too slow everywhere (loss below L(0) but no convergence), and no better for larger stepsizes."""
    seen: list[float] = []

    def trial(eta: float) -> TrialOutcome:
        seen.append(eta)
        return TrialOutcome(False, 0.5, INITIAL)

    L, U, status = bracket_and_bisect(trial, 0.1, 0.2, factor=2.0, max_expand=40, rtol=1e-3,
                                       walk_down_gives_up=True)
    assert (L, U, status) == (None, 0.2, "no_converging_eta")
    assert seen == [0.1, 0.2]


@pytest.mark.parametrize("gives_up, n_trials", [(True, 2), (False, 6)])
def test_walk_down_gives_up_only_when_asked(gives_up: bool, n_trials: int) -> None:
    """Every stepsize fails with the same final loss: the walk down stops after one step only when it gives up."""
    seen, trial = _trials(-math.inf, final_loss=3.0)
    L, U, status = bracket_and_bisect(trial, 1.0, 2.0, factor=2.0, max_expand=5, rtol=1e-3,
                                       walk_down_gives_up=gives_up)
    assert L is None and status == "no_converging_eta"
    assert len(seen) == n_trials
    assert seen[-2] == U


def test_no_failing_stepsize() -> None:
    seen, trial = _trials(math.inf)
    L, U, status = bracket_and_bisect(trial, 1.0, 2.0, factor=2.0, max_expand=3, rtol=1e-3,
                                       walk_down_gives_up=True)
    assert status == "no_failing_eta" and U is None
    assert seen == [1.0, 2.0, 4.0, 8.0, 16.0] and L == 16.0


# ------------------------------------------------------------------------------------- critical_stepsize runs


def _saddle_problem() -> tuple[dlnsim.Problem, list[np.ndarray]]:
    """A target with a small third singular value and a start with no component along it: GD goes to the
    saddle W = diag(10, 10, 0) and stays there (its gradient test holds at the saddle)."""
    problem = dlnsim.Problem(np.eye(3), np.diag([10.0, 10.0, 0.01]))
    return problem, [np.diag([0.3, 0.3, 0.0]), np.diag([0.3, 0.3, 0.0])]


def test_saddle_gap_is_the_excess_loss_of_the_best_lower_rank_product() -> None:
    problem, _ = _saddle_problem()
    assert saddle_gap(problem) == pytest.approx(0.5 * 0.01**2, rel=1e-9)
    assert saddle_gap(dlnsim.Problem(np.eye(2), np.zeros((1, 2)))) == math.inf


def test_a_network_narrower_than_the_target_rank_is_judged_against_its_own_minimum() -> None:
    # a rank-4 target through a width-2 layer: min L^N is the best rank-2 fit, far above the least-squares L*;
    # against L* no stepsize could ever converge, against min L^N the search finds one
    rng = np.random.default_rng(3)
    X = rng.standard_normal((6, 30))
    U, V = (np.linalg.qr(rng.standard_normal((6, 6)))[0] for _ in range(2))
    A = U[:, :4] @ np.diag([3.0, 2.0, 1.5, 1.0]) @ V[:, :4].T
    problem = dlnsim.Problem(X, A @ X)
    # Q = Y X^T (X X^T)^(-1/2) from its eigen-decomposition, independently of the package
    evals, evecs = np.linalg.eigh(X @ X.T)
    sigma = np.linalg.svd(A @ X @ X.T @ evecs @ np.diag(evals**-0.5) @ evecs.T, compute_uv=False)
    assert problem.q == 4
    assert saddle_gap(problem) == pytest.approx(0.5 * sigma[3] ** 2, rel=1e-9)
    assert saddle_gap(problem, 2) == pytest.approx(0.5 * sigma[1] ** 2, rel=1e-9)
    assert saddle_gap(problem, 9) == saddle_gap(problem)  # wider than q: no limit
    assert saddle_gap(problem, 0) == math.inf
    W0 = dlnsim.balanced_init([6, 2, 6], np.random.default_rng(0), scale=1.0)
    res = dlnsim.critical_stepsize(problem, W0, n_iter=5000)
    assert res.status == "ok" and res.eta_crit > 0
    assert res.optimal_loss == pytest.approx(problem.optimal_loss(2), rel=1e-12)
    assert res.optimal_loss - problem.lstar == pytest.approx(0.5 * (sigma[2] ** 2 + sigma[3] ** 2), rel=1e-9)
    best = min(t.final_loss for t in res.trials if t.outcome == "converged")
    assert best - res.optimal_loss <= 0.5 * saddle_gap(problem, 2)


def test_a_saddle_plateau_does_not_count_as_converged() -> None:
    problem, W0 = _saddle_problem()
    res = dlnsim.critical_stepsize(problem, W0, n_iter=2000, bracket=(0.01, 0.05))
    assert res.status == "no_converging_eta" and math.isnan(res.eta_crit)
    assert {t.outcome for t in res.trials} == {"not_converged"}
    excess0 = loss(problem, W0) - problem.lstar
    for t in res.trials:
        excess = t.final_loss - problem.lstar
        assert excess <= 1e-3 * excess0  # within the relative tolerance alone: the old criterion took it
        assert excess == pytest.approx(saddle_gap(problem), rel=1e-6)  # but it sits on the saddle
    assert "Delta / 2" in res.criterion


def test_default_bracket_is_that_of_critical_sweep() -> None:
    setup = dlnsim.paper_setup(2, 0, d=6, m=12)
    eta_star = dlnsim.stepsize_bound(setup.problem, setup.W0).eta
    res = dlnsim.critical_stepsize(setup.problem, setup.W0, n_iter=300, rtol=0.05)
    assert DEFAULT_BRACKET_FACTOR == (1.0, 4.0)
    assert res.trials[0].eta == pytest.approx(DEFAULT_BRACKET_FACTOR[0] * eta_star, rel=1e-12)
    sw = dlnsim.critical_sweep(None, N=[2], seed=[0], n_iter=300, rtol=0.05, d=6, m=12,
                               engine=dlnsim.Engine("serial", progress=False))
    assert float(sw["eta_crit"].sel(N=2, seed=0)) == res.eta_crit
    assert float(sw["trial_eta"].sel(N=2, seed=0, trial=1)) == res.trials[0].eta


def test_default_bracket_needs_a_balanced_start() -> None:
    problem, _ = _saddle_problem()
    rng = np.random.default_rng(0)
    W0 = [rng.standard_normal((3, 3)), rng.standard_normal((3, 3))]
    with pytest.raises(ValueError, match=r"bracket: .*give bracket=\(lo, hi\)"):
        dlnsim.critical_stepsize(problem, W0, n_iter=10)


@pytest.mark.parametrize("loss_tol", [0.0, 1.0, 2.0])
def test_loss_tol_is_a_fraction(loss_tol: float) -> None:
    problem, W0 = _saddle_problem()
    with pytest.raises(ValueError, match="loss_tol"):
        dlnsim.critical_stepsize(problem, W0, n_iter=10, bracket=(0.01, 0.02), loss_tol=loss_tol)
    with pytest.raises(ValueError, match="loss_tol"):
        dlnsim.critical_sweep(None, N=[2], seed=[0], n_iter=10, loss_tol=loss_tol, d=6, m=12)


def test_critical_sweep_warns_with_the_count_and_what_to_do() -> None:
    with pytest.warns(NoConvergingStepsizeWarning, match=r"2 of 2 cell\(s\) found no converging stepsize") as rec:
        crit = dlnsim.critical_sweep(None, N=[2, 3], seed=[0], n_iter=20, d=6, m=12,
                                     engine=dlnsim.Engine("serial", progress=False))
    assert (crit.search_status.values == "no_converging_eta").all()
    assert issubclass(NoConvergingStepsizeWarning, UserWarning)
    text = str(rec[0].message)
    assert "longer horizon n_iter" in text and "stable_critical_stepsize" in text
    assert rec[0].filename == __file__  # points at the caller


def test_critical_sweep_does_not_warn_when_every_cell_converges() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", NoConvergingStepsizeWarning)
        crit = dlnsim.critical_sweep(None, N=[2], seed=[0], n_iter=300, rtol=0.1, d=6, m=12,
                                     engine=dlnsim.Engine("serial", progress=False))
    assert (crit.search_status.values == "ok").all()


def test_loss_criterion_judges_runs_as_critical_stepsize_does() -> None:
    """`LossCriterion` (what studies with their own trials use) gives every trial of a search the outcome the
    search gave it, on the saddle problem and on a network narrower than the target's rank."""
    problem, W0 = _saddle_problem()
    crit = LossCriterion.for_start(problem, W0, 1e-3)
    assert (crit.optimal_loss, crit.half_gap) == (problem.lstar, 0.5 * saddle_gap(problem))
    res = dlnsim.critical_stepsize(problem, W0, n_iter=2000, bracket=(0.01, 0.05))
    initial = loss(problem, W0)
    for t in res.trials:
        a = {"status": "diverged" if t.outcome == "diverged" else "max_iter", "initial_loss": initial,
             "final_loss": t.final_loss}
        assert crit.judge(a) == t.outcome
    # a plateau inside the relative tolerance is refused, the same excess below Delta / 2 accepted
    assert crit.judge({"status": "converged", "initial_loss": 1e6, "final_loss": problem.lstar + 2 * crit.half_gap}) \
        == "not_converged"
    assert crit.judge({"status": "converged", "initial_loss": 1e6, "final_loss": problem.lstar + crit.half_gap}) \
        == "converged"
    assert crit.judge({"status": "diverged", "initial_loss": 1.0, "final_loss": problem.lstar}) == "diverged"
    setup = dlnsim.paper_setup(2, 0, d=6, m=12)
    narrow = [np.zeros((1, 6)), np.zeros((6, 1))]
    assert LossCriterion.for_start(setup.problem, narrow, 0.1).optimal_loss == setup.problem.optimal_loss(1)
    with pytest.raises(ValueError, match="loss_tol"):
        LossCriterion.for_start(problem, W0, 1.0)
