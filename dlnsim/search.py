"""The critical constant stepsize of gradient descent for one start, by bracketing and bisection.

Criterion.  A constant stepsize eta *converges* when a run of ``n_iter`` GD steps (2.1) from W(0) is not
``diverged`` and its final excess loss is small relative to the initial one,

    L(n_iter) - L*  <=  loss_tol * (L(0) - L*),        L* = min_W L^1(W)  (the least-squares optimum),

otherwise it does *not converge*.  The critical stepsize eta_crit is the largest stepsize found to converge
by the search below.  It is an operational threshold: near the stability limit convergence is slow, so
eta_crit lies a little below the limit, and the gap shrinks as ``n_iter`` grows or ``loss_tol`` relaxes.
Above eta_crit runs need not diverge: they may lock into orbits with a frozen loss, or diverge late.

Search.  Start at ``bracket[0]``.  If it does not converge, walk by ``factor``: up when the run was merely
too slow (the loss fell, not far enough), down when it diverged or the loss grew, until a stepsize
converges, or give up (``no_converging_eta``) when the final loss stops improving, i.e. no stepsize meets
``loss_tol`` within ``n_iter`` steps.  Then walk up from ``bracket[1]`` (or from above the converging
stepsize) until one does not converge (``no_failing_eta`` after ``max_expand`` steps), and bisect in log
space until eta_hi / eta_lo <= 1 + rtol.  Every trial is kept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._validate import nonneg_int, positive_float
from .problem import Problem
from .simulate import run_gd
from .theory import StepsizeBound

__all__ = ["CRITERION", "SEARCH", "CriticalStepsize", "Trial", "critical_stepsize"]

CRITERION = (
    "converged: the run is not 'diverged' and L(n_iter) - L* <= loss_tol * (L(0) - L*) "
    "(L* = least-squares optimum); otherwise not converged"
)
SEARCH = (
    "from bracket[0]: if it converges keep it; if it is too slow (loss fell, not to loss_tol) multiply by "
    "factor, if it diverged or the loss grew divide by factor, until a stepsize converges (give up when the "
    "final loss stops improving: no_converging_eta); then multiply by factor from max(bracket[1], ...) until "
    "one does not converge (at most max_expand times: no_failing_eta); then bisect in log space until "
    "eta_hi / eta_lo <= 1 + rtol; eta_crit = eta_lo"
)
OUTCOMES = ("converged", "not_converged", "diverged")


@dataclass(frozen=True)
class Trial:
    """One GD run of the search."""

    eta: float
    outcome: str  #: one of ``converged``, ``not_converged``, ``diverged``
    final_loss: float
    stop_iteration: int


@dataclass(frozen=True)
class CriticalStepsize:
    """Result of `critical_stepsize`.

    Attributes
    ----------
    eta_crit : float
        Largest stepsize found to converge (= ``eta_lo``; NaN when none converged).
    eta_lo, eta_hi : float
        Final bracket: ``eta_lo`` converges, ``eta_hi`` does not (NaN when not found).
    status : str
        ``ok``, ``no_converging_eta`` or ``no_failing_eta``.
    trials : tuple of Trial
        Every run of the search, in order.
    initial_loss, optimal_loss : float
        L(0) and L* of the problem.
    criterion, search : str
        The convergence criterion and the search rule, in words.
    """

    eta_crit: float
    eta_lo: float
    eta_hi: float
    status: str
    trials: tuple[Trial, ...]
    initial_loss: float
    optimal_loss: float
    criterion: str = CRITERION
    search: str = SEARCH

    def attrs(self) -> dict[str, Any]:
        """The scalar results, for Dataset attributes."""
        return {"eta_crit": self.eta_crit, "eta_lo": self.eta_lo, "eta_hi": self.eta_hi,
                "search_status": self.status, "n_trials": len(self.trials), "initial_loss": self.initial_loss,
                "optimal_loss": self.optimal_loss, "criterion": self.criterion, "search": self.search}

    def trial_arrays(self) -> dict[str, np.ndarray]:
        """The trials as arrays over ``trial``: eta, outcome, final loss, stop iteration."""
        return {
            "trial_eta": np.array([t.eta for t in self.trials], dtype=np.float64),
            "trial_outcome": np.array([t.outcome for t in self.trials], dtype=object),
            "trial_final_loss": np.array([t.final_loss for t in self.trials], dtype=np.float64),
            "trial_stop_iteration": np.array([t.stop_iteration for t in self.trials], dtype=np.int64),
        }


def _bracket(bracket: Any) -> tuple[float, float]:
    try:
        lo, hi = (positive_float(b, "bracket") for b in bracket)
    except (TypeError, ValueError):
        raise ValueError(f"bracket must be two positive numbers (lo, hi) with lo < hi, got {bracket!r}") from None
    if not lo < hi:
        raise ValueError(f"bracket must be two positive numbers (lo, hi) with lo < hi, got {bracket!r}")
    return lo, hi


def critical_stepsize(
    problem: Problem,
    W0: Sequence[np.ndarray],
    *,
    n_iter: int,
    bracket: Sequence[float],
    loss_tol: float = 1e-3,
    rtol: float = 0.01,
    factor: float = 2.0,
    max_expand: int = 40,
    gtol: float = 1e-10,
    blowup: float = 1e8,
    bound: StepsizeBound | None = None,
) -> CriticalStepsize:
    """The critical constant stepsize of GD from ``W0`` on ``problem`` (criterion and search: module docstring).

    Parameters
    ----------
    problem : Problem
        The data.
    W0 : sequence of arrays
        The start [W_1, ..., W_N].
    n_iter : int
        GD steps per trial run.
    bracket : (float, float)
        Starting bracket ``(lo, hi)``, absolute stepsizes with 0 < lo < hi.  Multiply by
        ``stepsize_bound(problem, W0).eta`` to start from multiples of the bound.
    loss_tol : float
        Final excess loss, relative to the initial one, that counts as converged.
    rtol : float
        Relative width of the final bracket: the search stops when eta_hi / eta_lo <= 1 + rtol.
    factor : float
        Expansion factor (> 1) of the bracket walk.
    max_expand : int
        Largest number of steps of each walk.
    gtol, blowup : float
        Passed to `run_gd` (runs stop early at ||grad L||_F <= gtol, or when they blow up).
    bound : StepsizeBound, optional
        Passed to `run_gd` (saves recomputing the bound in every trial).

    Returns
    -------
    CriticalStepsize
        ``eta_crit``, the bracket, the status and every trial.
    """
    n_iter = nonneg_int(n_iter, "n_iter", minimum=1)
    lo, hi = _bracket(bracket)
    loss_tol = positive_float(loss_tol, "loss_tol (relative final excess loss that counts as converged)")
    rtol = positive_float(rtol, "rtol (relative precision of the bracket)")
    factor = positive_float(factor, "factor (bracket expansion factor)")
    if factor <= 1.0:
        raise ValueError(f"factor must be > 1, got {factor!r}")
    max_expand = nonneg_int(max_expand, "max_expand")
    trials: list[Trial] = []
    initial = math.nan

    def converges(eta: float) -> bool:
        nonlocal initial
        ds = run_gd(problem, W0, eta, n_iter, [0], gtol=gtol, stop_early=True, blowup=blowup, bound=bound)
        a = ds.attrs
        initial = float(a["initial_loss"])
        excess0 = initial - problem.lstar
        excess = float(a["final_loss"]) - problem.lstar
        if a["status"] == "diverged":
            outcome = "diverged"
        elif excess <= loss_tol * excess0:
            outcome = "converged"
        else:
            outcome = "not_converged"
        trials.append(Trial(eta, outcome, float(a["final_loss"]), int(a["stop_iteration"])))
        return outcome == "converged"

    def final_loss() -> float:  # of the last trial; inf after a blow-up
        t = trials[-1]
        return t.final_loss if t.outcome != "diverged" and math.isfinite(t.final_loss) else math.inf

    # phase 1: a converging stepsize L (and maybe a failing one U above it)
    L: float | None = None
    U: float | None = None
    x = lo
    if converges(x):
        L = x
    elif trials[-1].outcome == "not_converged" and final_loss() < initial:
        for _ in range(max_expand):  # too slow: walk up
            prev = final_loss()
            x *= factor
            if converges(x):
                L = x
                break
            if final_loss() >= prev:  # worse than the smaller stepsize: no stepsize reaches loss_tol in time
                U = x
                break
    else:
        for _ in range(max_expand):  # too large: walk down
            prev, U = final_loss(), x
            x /= factor
            if converges(x):
                L = x
                break
            if final_loss() >= prev:  # better no more: smaller stepsizes only get slower
                break
    # phase 2: a failing stepsize above L
    status = "ok"
    if L is None:
        status = "no_converging_eta"
    elif U is None:
        x = hi if hi > L else L * factor
        for _ in range(max_expand + 1):  # walk up
            if not converges(x):
                U = x
                break
            L, x = x, x * factor
        else:
            status = "no_failing_eta"
    # phase 3: bisection in log space
    if L is not None and U is not None:
        while L * (1.0 + rtol) < U:
            mid = math.sqrt(L * U)
            if converges(mid):
                L = mid
            else:
                U = mid
    eta_lo = math.nan if L is None else L
    eta_hi = math.nan if U is None else U
    return CriticalStepsize(eta_lo, eta_lo, eta_hi, status, tuple(trials), initial, problem.lstar)
