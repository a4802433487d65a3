"""The critical constant stepsize of gradient descent for one start, by bracketing and bisection.

Criterion.  A constant stepsize eta *converges* when a run of ``n_iter`` GD steps (2.1) from W(0) is not
``diverged`` and its final excess loss is small both relative to the initial one and relative to the lowest
saddle,

    L(n_iter) - L*  <=  min( loss_tol * (L(0) - L*),  Delta / 2 ),        L* = min L^N,

otherwise it does *not converge*.  L^N reaches the least-squares optimum min_W L^1(W) when the narrowest width
r = min_j d_j is at least q = rank of the whitened target Q = Y X^T (X X^T)^{-1/2}; otherwise its minimum is the
best fit of rank r (Eckart-Young on Q), and L* is that.  With r_bar = min(q, r), Delta = `saddle_gap`
(problem, r) = sigma_{r_bar}(Q)^2 / 2 is the excess loss of the lowest saddle: the best product of rank
r_bar - 1 lies Delta above L*, and every critical point of L^N that is not a global minimiser lies at least this
high.  A run that ends on a saddle plateau (the loss flat at L* + Delta or above, or a run that stopped at a
saddle because its gradient test held there) therefore never counts as converged, however large L(0) is.  (Delta
is infinite when Y X^T = 0.)  For the Section-5 instances loss_tol (L(0) - L*) is far below Delta / 2, so the
second term only matters for data with a small singular value q or starts with a large loss.

The critical stepsize eta_crit is the largest stepsize found to converge by the search below.  It is an
operational threshold: near the stability limit convergence is slow, so eta_crit lies a little below the
limit, and the gap shrinks as ``n_iter`` grows or ``loss_tol`` relaxes.  Above eta_crit runs need not
diverge: they may lock into orbits with a frozen loss, or diverge late.  When no stepsize converges
(``no_converging_eta``; a saddle plateau that outlasts the horizon is the common cause), give a longer horizon
``n_iter``, another bracket, or use `stable_critical_stepsize`, whose criterion asks where GD ends;
`dlnsim.critical_sweep` counts such cells in a `NoConvergingStepsizeWarning`.  The criterion is measured from
the minimum of L^N for the start's network, so a network narrower than q is judged against its own best fit,
not against a least-squares loss it cannot reach.

Search.  Start at ``bracket[0]``.  If it does not converge, walk by ``factor``: up when the run was merely
too slow (the loss fell, not far enough), down when it diverged or the loss grew, until a stepsize
converges, or give up (``no_converging_eta``) when the final loss stops improving, i.e. no stepsize meets
``loss_tol`` within ``n_iter`` steps.  Then walk up from ``bracket[1]`` (or from above the converging
stepsize) until one does not converge (``no_failing_eta`` after ``max_expand`` steps), and bisect in log
space until eta_hi / eta_lo <= 1 + rtol.  Every trial is kept.

`stable_critical_stepsize` runs the same search (`bracket_and_bisect`) with a criterion that asks what GD does
at the end of its horizon (``STABLE_CRITERION``): a run converges when it ends within the tests of `run_gd` at a
linearly stable point, lambda_max(Hess L^N) <= 2/eta.  A run that first meets the tests at a sharper point is
continued to the horizon (GD may leave that minimiser and settle at a flatter one).  Its downward walk does not
give up when the final loss stops improving.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from dlnsim.analysis.sharpness import sharpness
from dlnsim.checks import as_weights, nonneg_int, positive_float
from dlnsim.methods import StepRule, as_method
from dlnsim.objective import loss, unflatten
from dlnsim.options import Record, Stop, as_stop
from dlnsim.problem import Problem
from dlnsim.runs.gd import solve_gd
from dlnsim.theory.bounds import StepsizeBound, check_problem, stepsize_bound

__all__ = [
    "CRITERION",
    "DEFAULT_BRACKET_FACTOR",
    "SEARCH",
    "STABLE_CRITERION",
    "STABLE_CRITERION_FIRST_HIT",
    "CriticalStepsize",
    "LossCriterion",
    "NoConvergingStepsizeWarning",
    "StableCriticalStepsize",
    "Trial",
    "TrialOutcome",
    "bracket_and_bisect",
    "critical_stepsize",
    "saddle_gap",
    "stable_critical_stepsize",
]

CRITERION = (
    "converged: the run is not 'diverged' and L(n_iter) - L* <= min(loss_tol * (L(0) - L*), Delta / 2) "
    "(L* = min L^N: the least-squares optimum, or the best rank-r fit when the narrowest width r is below "
    "q = rank Q, Q = Y X^T (X X^T)^(-1/2); Delta = sigma_min(q,r)(Q)^2 / 2 the excess loss of the lowest "
    "saddle above it, so that a saddle plateau never counts); otherwise not converged"
)
#: the default starting bracket of `dlnsim.critical_stepsize` and `dlnsim.critical_sweep`, in multiples of eta*
#: (5.1) of the start
DEFAULT_BRACKET_FACTOR = (1.0, 4.0)


class NoConvergingStepsizeWarning(UserWarning):
    """Cells of a critical-stepsize sweep found no converging stepsize: their eta_crit is NaN.

    `dlnsim.critical_sweep` warns once per call with the number of such cells and what to do (a longer horizon
    ``n_iter``, another bracket, or `dlnsim.stable_critical_stepsize`); ``dlnsim critical`` prints the message
    as one line.  A subclass of `UserWarning`, also importable as ``dlnsim.NoConvergingStepsizeWarning``.
    """


def saddle_gap(problem: Problem, rank: int | None = None) -> float:
    """Delta = sigma_{r_bar}(Q)^2 / 2, Q = Y X^T (X X^T)^{-1/2} of rank q, r_bar = min(q, rank): the excess loss
    of the lowest saddle of L^N above its minimum.

    ``rank`` is the largest rank the network's product can have, its narrowest width min_j d_j (None: no
    limit, r_bar = q).  The minimum of L^N is the best fit of rank r_bar (``Problem.optimal_loss``); the best
    product of rank r_bar - 1 lies Delta above it, and every critical point of L^N that is not a global
    minimiser lies at least this high; ``inf`` when r_bar = 0 (there is no saddle above the minimum).
    `dlnsim.critical_stepsize` counts a trial as converged only below min L^N + Delta / 2.
    """
    problem = check_problem(problem)
    r_bar = problem.q if rank is None else min(problem.q, nonneg_int(rank, "rank"))
    if r_bar == 0:
        return math.inf
    return float(problem.optimal_loss(r_bar - 1) - problem.attainable_loss(r_bar))
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
        L(0) and L* = min L^N (the least-squares optimum, or the best fit of the narrowest width's rank).
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
        """The settings of the search, for Dataset attributes."""
        return {"optimal_loss": self.optimal_loss, "criterion": self.criterion, "search": self.search}

    def outcomes(self) -> dict[str, Any]:
        """The scalar results, for the 0-d variables of a Dataset."""
        return {"eta_crit": self.eta_crit, "eta_lo": self.eta_lo, "eta_hi": self.eta_hi,
                "search_status": self.status, "n_trials": len(self.trials), "initial_loss": self.initial_loss}

    def trial_arrays(self) -> dict[str, np.ndarray]:
        """The trials as arrays over ``trial``: eta, outcome, final loss, stop iteration."""
        return {
            "trial_eta": np.array([t.eta for t in self.trials], dtype=np.float64),
            "trial_outcome": np.array([t.outcome for t in self.trials], dtype=object),
            "trial_final_loss": np.array([t.final_loss for t in self.trials], dtype=np.float64),
            "trial_stop_iteration": np.array([t.stop_iteration for t in self.trials], dtype=np.int64),
        }


def checked_bracket(bracket: Any, name: str = "bracket") -> tuple[float, float]:
    """``bracket`` as two positive floats lo < hi; ValueError naming ``name`` otherwise."""
    try:
        lo, hi = (positive_float(b, name) for b in bracket)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be two positive numbers (lo, hi) with lo < hi, got {bracket!r}") from None
    if not lo < hi:
        raise ValueError(f"{name} must be two positive numbers (lo, hi) with lo < hi, got {bracket!r}")
    return lo, hi


def _walk(factor: Any, max_expand: Any) -> tuple[float, int]:
    factor = positive_float(factor, "factor (bracket expansion factor)")
    if factor <= 1.0:
        raise ValueError(f"factor must be > 1, got {factor!r}")
    return factor, nonneg_int(max_expand, "max_expand")


@dataclass(frozen=True)
class LossCriterion:
    """The convergence criterion of `dlnsim.critical_stepsize` for one start, to judge runs with.

    Build it with ``LossCriterion.for_start``; ``judge`` turns the outcomes of a GD run (the ``initial_loss``,
    ``final_loss`` and ``status`` of `dlnsim.run_gd`) into ``converged``, ``not_converged`` or ``diverged``.
    A study that runs its own trials (its own records, or the end state kept) judges them with this, so that
    its eta_crit means what that of `dlnsim.critical_stepsize` does.

    Attributes
    ----------
    optimal_loss : float
        L* = min L^N of the start's network: the least-squares optimum, or the best fit of rank r when the
        narrowest width r is below the rank of the whitened target.
    half_gap : float
        Delta / 2, half the excess loss of the lowest saddle above L* (`saddle_gap`).
    loss_tol : float
        The final excess loss, relative to the initial one, that counts as converged.
    """

    optimal_loss: float
    half_gap: float
    loss_tol: float

    @classmethod
    def for_start(cls, problem: Problem, W0: Sequence[np.ndarray], loss_tol: float) -> LossCriterion:
        """The criterion for runs from ``W0`` on ``problem`` (ValueError naming ``loss_tol`` unless 0 < it < 1)."""
        loss_tol = positive_float(loss_tol, "loss_tol (relative final excess loss that counts as converged)")
        if loss_tol >= 1.0:
            raise ValueError(f"loss_tol must be < 1 (a fraction of the initial excess loss), got {loss_tol!r}")
        narrowest = min(min(Wj.shape) for Wj in as_weights(W0, "W0"))
        return cls(problem.attainable_loss(narrowest), 0.5 * saddle_gap(problem, narrowest), loss_tol)

    def judge(self, outcomes: Mapping[str, Any]) -> str:
        """``diverged`` when the run diverged; ``converged`` when L(end) - L* <= min(loss_tol (L(0) - L*),
        Delta / 2); ``not_converged`` otherwise."""
        if outcomes["status"] == "diverged":
            return "diverged"
        excess0 = float(outcomes["initial_loss"]) - self.optimal_loss
        excess = float(outcomes["final_loss"]) - self.optimal_loss
        return "converged" if excess <= min(self.loss_tol * excess0, self.half_gap) else "not_converged"


class TrialOutcome(NamedTuple):
    """What `bracket_and_bisect` needs from one trial run (for a search with a criterion of one's own)."""

    converged: bool
    final_loss: float  #: the loss the walks compare (inf when the run gives none to compare)
    initial_loss: float  #: L(0)


def bracket_and_bisect(
    trial: Callable[[float], TrialOutcome], lo: float, hi: float, *, factor: float, max_expand: int, rtol: float,
    walk_down_gives_up: bool,
) -> tuple[float | None, float | None, str]:
    """The search of the module docstring: ``(eta_lo, eta_hi, status)`` (None where not found).

    The search of `dlnsim.critical_stepsize` and `dlnsim.stable_critical_stepsize`, for any criterion: studies
    that judge a run their own way (e.g. against a step rule's own stability limit) pass their own ``trial``.

    ``trial(eta)`` runs one stepsize.  A first trial that does not converge but lowers the loss below L(0)
    starts a walk up, any other a walk down; the walk up stops when the final loss stops improving, the walk
    down too when ``walk_down_gives_up`` (else it runs ``max_expand`` steps).
    """
    L: float | None = None
    U: float | None = None
    x = lo
    last = trial(x)
    initial = last.initial_loss
    # phase 1: a converging stepsize L (and maybe a failing one U above it)
    if last.converged:
        L = x
    elif last.final_loss < initial:
        for _ in range(max_expand):  # too slow: walk up
            prev = last.final_loss
            x *= factor
            last = trial(x)
            if last.converged:
                L = x
                break
            if last.final_loss >= prev:  # worse than the smaller stepsize: no stepsize reaches the tolerance in time
                U = x
                break
    else:
        for _ in range(max_expand):  # too large: walk down
            prev, U = last.final_loss, x
            x /= factor
            last = trial(x)
            if last.converged:
                L = x
                break
            if walk_down_gives_up and last.final_loss >= prev:  # better no more: smaller ones only get slower
                break
    # phase 2: a failing stepsize above L
    status = "ok"
    if L is None:
        status = "no_converging_eta"
    elif U is None:
        x = hi if hi > L else L * factor
        for _ in range(max_expand + 1):  # walk up
            if not trial(x).converged:
                U = x
                break
            L, x = x, x * factor
        else:
            status = "no_failing_eta"
    # phase 3: bisection in log space
    if L is not None and U is not None:
        while L * (1.0 + rtol) < U:
            mid = math.sqrt(L * U)
            if trial(mid).converged:
                L = mid
            else:
                U = mid
    return L, U, status


def critical_stepsize(
    problem: Problem,
    W0: Sequence[np.ndarray],
    *,
    n_iter: int,
    bracket: Sequence[float] | None = None,
    loss_tol: float = 1e-3,
    rtol: float = 0.01,
    factor: float = 2.0,
    max_expand: int = 40,
    method: StepRule | str | None = None,
    stop: Stop | None = None,
    bound: StepsizeBound | None = None,
) -> CriticalStepsize:
    """The critical constant stepsize of GD from ``W0`` on ``problem``, by bracketing and bisection.

    A trial run of ``n_iter`` steps *converges* when it is not ``diverged`` and ends with::

        L(n_iter) - L*  <=  min( loss_tol (L(0) - L*),  Delta / 2 ),

    L* = min L^N (the least-squares optimum; the best fit of rank r when the narrowest width r is below the rank
    of the whitened target) and Delta = `dlnsim.analysis.critical.saddle_gap` (problem, r) the excess loss of
    the lowest saddle above it, so that a run that ends on a saddle plateau never counts.  The search and the reasons
    for the criterion are in the module docstring of ``dlnsim.analysis.critical``.

    Parameters
    ----------
    problem : Problem
        The data.
    W0 : sequence of numpy.ndarray
        The start [W_1, ..., W_N].
    n_iter : int
        GD steps per trial run.
    bracket : tuple of float, optional
        Starting bracket ``(lo, hi)``, absolute stepsizes with 0 < lo < hi.  Default:
        `dlnsim.analysis.critical.DEFAULT_BRACKET_FACTOR` = (1, 4) times eta* (5.1) of the start
        (``stepsize_bound(problem, W0).eta``), the default of `dlnsim.critical_sweep`; a start that is not
        balanced has no eta*, give ``bracket`` then.
    loss_tol : float
        Final excess loss, relative to the initial one, that counts as converged (0 < loss_tol < 1); a run must
        also end below half the excess loss of the lowest saddle (`dlnsim.analysis.critical.saddle_gap`).
    rtol : float
        Relative width of the final bracket: the search stops when eta_hi / eta_lo <= 1 + rtol.
    factor : float
        Expansion factor (> 1) of the bracket walk.
    max_expand : int
        Largest number of steps of each walk.
    method : StepRule, optional
        The step rule of the trial runs (default plain `dlnsim.GD`).
    stop : Stop, optional
        The convergence tests and divergence threshold of the trial runs (default ``Stop()``); the trials
        always stop early, at the first iteration where a test holds.
    bound : StepsizeBound, optional
        Passed to `run_gd` (saves recomputing the bound in every trial).

    Returns
    -------
    CriticalStepsize
        ``eta_crit``, the bracket, the status and every trial.  ``status="no_converging_eta"`` (eta_crit NaN):
        no trial converged; give a longer horizon ``n_iter``, another bracket, or use `stable_critical_stepsize`.
    """
    problem = check_problem(problem)
    n_iter = nonneg_int(n_iter, "n_iter", minimum=1)
    if bracket is None:
        try:
            eta_star = (bound if bound is not None else stepsize_bound(problem, W0)).eta
        except ValueError as exc:
            raise ValueError(f"bracket: the default bracket is {DEFAULT_BRACKET_FACTOR} x eta* (5.1) of the start, "
                             f"which has none ({exc}); give bracket=(lo, hi)") from None
        bound_eta = float(eta_star)
        bracket = (DEFAULT_BRACKET_FACTOR[0] * bound_eta, DEFAULT_BRACKET_FACTOR[1] * bound_eta)
    lo, hi = checked_bracket(bracket)
    rule = as_method(method)
    stop_opt = as_stop(stop).replace(early=True)
    criterion = LossCriterion.for_start(problem, W0, loss_tol)
    rtol = positive_float(rtol, "rtol (relative precision of the bracket)")
    factor, max_expand = _walk(factor, max_expand)
    trials: list[Trial] = []
    initial = math.nan

    def trial(eta: float) -> TrialOutcome:
        nonlocal initial
        # the outcomes alone: no Dataset is built for a trial (tens of ms each, more than a short run)
        a = solve_gd(problem, W0, eta, n_iter, method=rule, record=Record([0], diagnostics=False), stop=stop_opt,
                     bound=bound).outcomes
        initial = float(a["initial_loss"])
        outcome = criterion.judge(a)
        t = Trial(eta, outcome, float(a["final_loss"]), int(a["stop_iteration"]))
        trials.append(t)
        final = t.final_loss if t.outcome != "diverged" and math.isfinite(t.final_loss) else math.inf
        return TrialOutcome(outcome == "converged", final, initial)

    L, U, status = bracket_and_bisect(trial, lo, hi, factor=factor, max_expand=max_expand, rtol=rtol,
                                       walk_down_gives_up=True)
    eta_lo = math.nan if L is None else L
    eta_hi = math.nan if U is None else U
    return CriticalStepsize(eta_lo, eta_lo, eta_hi, status, tuple(trials), initial, criterion.optimal_loss)


# --------------------------------------------------------------------------------------------------------
# critical stepsize with a linear-stability criterion
# --------------------------------------------------------------------------------------------------------

STABLE_CRITERION = (
    "converged: GD from W(0) with the constant stepsize eta, for at most n_iter steps (the horizon), ends within "
    "run_gd's tests (L - L* <= ltol (L(0) - L*) or ||grad L||_F <= gtol x gradient scale) at a linearly stable "
    "point, lambda_max(Hess L^N) <= 2/eta (Lanczos; for momentum the step rule's limit, 2 (1 + beta)/eta for "
    "heavy-ball).  The run stops at the first iteration where a test holds only when that point is linearly "
    "stable; at a sharper point it continues to k = n_iter (GD may leave that minimiser and settle at a flatter "
    "one, or sit on it) and converges when a test holds at k = n_iter at a linearly stable point.  Otherwise "
    "'unstable_limit' (a test holds at k = n_iter at a sharper point), 'not_converged' (no test holds at "
    "k = n_iter) or 'diverged'"
)
STABLE_CRITERION_FIRST_HIT = (
    "converged: run_gd reports 'converged' within n_iter steps (L - L* <= ltol (L(0) - L*) or "
    "||grad L||_F <= gtol x gradient scale; runs stop there) and the point where it stopped is linearly "
    "stable, lambda_max(Hess L^N) <= 2/eta (Lanczos; for momentum the step rule's limit); a run that stops at a "
    "sharper point is 'unstable_limit', not converged (whatever GD would do after it); "
    "otherwise 'not_converged' or 'diverged'"
)
#: record points of a continued run (equally spaced): the resolution of ``trial_settle_iteration``
SETTLE_POINTS = 400


@dataclass(frozen=True)
class StableCriticalStepsize:
    """Result of `stable_critical_stepsize`.

    Attributes
    ----------
    eta_crit, eta_lo, eta_hi : float
        Largest converging stepsize found (= eta_lo) and the failing one above it (NaN when not found).
    status : str
        ``ok``, ``no_converging_eta`` or ``no_failing_eta``.
    trial_eta, trial_outcome, trial_final_loss, trial_stop_iteration, trial_sharpness : tuple
        Every run of the search in order; outcomes ``converged``, ``not_converged``, ``unstable_limit``,
        ``diverged``; the loss and the iteration where the run ended; ``trial_sharpness`` is lambda_max
        where a run ended within the tests (NaN for the other runs).
    trial_first_hit, trial_first_sharpness : tuple
        The first iteration where a test held (-1: never) and lambda_max there (NaN: never).
    trial_settle_iteration : tuple
        For a run that converged: the iteration from which the tests held to the end (the first hit when it
        stopped there; for a continued run the record point after the last one where no test held, record
        points every n_iter/``SETTLE_POINTS`` steps); -1 otherwise.
    trial_continued : tuple of bool
        Whether the run was continued past its first hit (it was sharper than the stability limit there).
    initial_loss : float
        L(0).
    limit_weights : list of numpy.ndarray or None
        The factors where the run at ``eta_lo`` ended (None when ``eta_lo`` was not run: ``assume_bracket``).
    n_iter : int
        The horizon.
    continue_unstable : bool
        Whether runs were continued past a first hit at an unstable point (``STABLE_CRITERION``) or counted as
        failing there (``STABLE_CRITERION_FIRST_HIT``).
    criterion : str
        The criterion in words.
    """

    eta_crit: float
    eta_lo: float
    eta_hi: float
    status: str
    trial_eta: tuple[float, ...]
    trial_outcome: tuple[str, ...]
    trial_final_loss: tuple[float, ...]
    trial_stop_iteration: tuple[int, ...]
    trial_sharpness: tuple[float, ...]
    initial_loss: float
    limit_weights: list[np.ndarray] | None = field(default=None, repr=False)
    criterion: str = STABLE_CRITERION
    trial_first_hit: tuple[int, ...] = ()
    trial_first_sharpness: tuple[float, ...] = ()
    trial_settle_iteration: tuple[int, ...] = ()
    trial_continued: tuple[bool, ...] = ()
    n_iter: int = 0
    continue_unstable: bool = True

    def trial_arrays(self) -> dict[str, np.ndarray]:
        """The trials as arrays over ``trial`` (float, int, bool and object arrays)."""
        return {
            "trial_eta": np.array(self.trial_eta, dtype=np.float64),
            "trial_outcome": np.array(self.trial_outcome, dtype=object),
            "trial_final_loss": np.array(self.trial_final_loss, dtype=np.float64),
            "trial_stop_iteration": np.array(self.trial_stop_iteration, dtype=np.int64),
            "trial_sharpness": np.array(self.trial_sharpness, dtype=np.float64),
            "trial_first_hit": np.array(self.trial_first_hit, dtype=np.int64),
            "trial_first_sharpness": np.array(self.trial_first_sharpness, dtype=np.float64),
            "trial_settle_iteration": np.array(self.trial_settle_iteration, dtype=np.int64),
            "trial_continued": np.array(self.trial_continued, dtype=bool),
        }


class _StableTrial(NamedTuple):
    eta: float
    outcome: str
    final_loss: float
    stop_iteration: int
    sharpness: float
    first_hit: int
    first_sharpness: float
    settle_iteration: int
    continued: bool


def _settle(res: Any, hit: int) -> int:
    """The record point after the last one (from ``hit`` on) where no test held; ``hit`` when there is none."""
    o = res.outcomes
    gtol_abs, ltol_abs = float(o["gtol_abs"]), float(o["ltol_abs"])
    ex, g2 = res.records["excess_loss"], res.records["grad_norm_sq"]
    with np.errstate(invalid="ignore"):
        held = (g2 <= gtol_abs * gtol_abs) | ((ltol_abs >= 0.0) & (ex <= ltol_abs))
    fail = np.flatnonzero((res.k >= hit) & ~held)
    if fail.size == 0:
        return hit
    last = int(fail[-1])
    return int(res.k[last + 1]) if last + 1 < res.k.size else int(res.stop_iteration)


def stable_critical_stepsize(
    problem: Problem, W0: Sequence[np.ndarray], *, n_iter: int, bracket: Sequence[float],
    rtol: float = 0.002, factor: float = 1.02, max_expand: int = 60, method: StepRule | str | None = None,
    stop: Stop | None = None, bound: StepsizeBound | None = None, sharpness_tol: float = 1e-10,
    continue_unstable: bool = True, assume_bracket: bool | str = False,
) -> StableCriticalStepsize:
    """The critical constant stepsize of GD from ``W0``, with linear stability at the end of the horizon.

    The search is that of `critical_stepsize`: from ``bracket[0]`` walk by ``factor`` (up while the runs are
    merely too slow, down while they fail otherwise, here without giving up early) until a stepsize
    converges, then up from ``bracket[1]`` until one fails, then bisect in log space until
    eta_hi/eta_lo <= 1 + rtol.  The criterion is ``STABLE_CRITERION``: a run stops at its first tolerance hit
    only when the point is linearly stable; otherwise GD continues to the horizon, and the stepsize converges
    when GD ends the horizon within the tests at a linearly stable point.  (Without the stability check a run
    could stop at a linearly unstable minimiser before the unstable mode has grown from rounding level; without
    the continuation a run that would leave such a minimiser and settle at a flatter, stable one within the
    horizon would count as failing.)  The continued run is a second run from W(0) without early stop, with
    the same tests, so it costs n_iter steps.

    Parameters
    ----------
    problem, W0
        The data and the start.
    n_iter : int
        GD steps per trial run (the horizon).
    bracket : tuple of float
        Absolute stepsizes (lo, hi), 0 < lo < hi; a tight bracket around 2/sharpness saves trials.
    method : StepRule, optional
        The step rule of the trial runs (default plain `dlnsim.GD`).
    stop : Stop, optional
        The convergence tests of the trial runs, default ``Stop(gtol=1e-8, ltol=1e-12)`` (relative excess
        loss; gradient norm relative to the gradient scale of the problem); its ``early`` is ignored.
    rtol, factor, max_expand : float, float, int
        Final relative width of the bracket, walk factor (> 1), largest number of steps of each walk.
    bound
        Passed to `run_gd`.
    sharpness_tol : float
        Relative residual of the Lanczos iteration (`sharpness`) of the stability check.
    continue_unstable : bool, default True
        False: a run that first meets the tests at an unstable point fails there
        (``STABLE_CRITERION_FIRST_HIT``, the criterion of earlier versions).
    assume_bracket : bool or "upper", default False
        True: the caller vouches that ``bracket[0]`` converges and ``bracket[1]`` fails (e.g. ``bracket[0]`` is
        eta_crit of a shorter horizon, which converges at every longer one, and ``bracket[1]`` is above
        2/lambda_max of the flattest minimiser): bisect at once, without running the ends.  ``"upper"``: only
        ``bracket[1]`` is vouched for; ``bracket[0]`` is run, and when it does not converge the search goes on
        as without the assumption.
    """
    problem = check_problem(problem)
    W0 = as_weights(W0, "W0")
    n_iter = nonneg_int(n_iter, "n_iter", minimum=1)
    lo, hi = checked_bracket(bracket)
    rule = as_method(method)
    base = Stop(gtol=1e-8, ltol=1e-12) if stop is None else as_stop(stop)
    stop_first, stop_full = base.replace(early=True), base.replace(early=False)
    rtol = positive_float(rtol, "rtol")
    factor, max_expand = _walk(factor, max_expand)
    sharpness_tol = positive_float(sharpness_tol, "sharpness_tol")
    continued_rule = bool(continue_unstable)
    if assume_bracket not in (False, True, "upper"):
        raise ValueError(f"assume_bracket must be False, True or 'upper', got {assume_bracket!r}")
    seen: dict[float, TrialOutcome] = {}
    rows: list[_StableTrial] = []
    finals: dict[float, list[np.ndarray]] = {}
    initial = loss(problem, W0)
    record_end = Record([0], diagnostics=False, final_weights=True)
    record_full = Record(f"linear:{SETTLE_POINTS}", diagnostics=["grad_norm_sq"], final_weights=True)
    nan = math.nan

    def lam_at(res: Any) -> tuple[list[np.ndarray], float]:
        W = unflatten(res.w, res.dims)
        return W, sharpness(problem, W, iters=400, tol=sharpness_tol)

    def trial(eta: float) -> TrialOutcome:
        if eta not in seen:
            seen[eta] = run(eta)
        return seen[eta]

    def run(eta: float) -> TrialOutcome:
        first = solve_gd(problem, W0, eta, n_iter, method=rule, record=record_end, stop=stop_first, bound=bound)
        hit, lam_hit, settle, lam, continued = -1, nan, -1, nan, False
        res = first
        walk_loss = math.inf  # "too large": walk down
        if first.status == "diverged":
            outcome = "diverged"
        elif first.status == "converged":
            hit = int(first.stop_iteration)
            W, lam_hit = lam_at(first)
            if eta <= rule.stability_limit(lam_hit):
                outcome, lam, settle = "converged", lam_hit, hit
                finals[eta] = W
            elif not continued_rule:
                outcome = "unstable_limit"
            else:
                continued = True
                res = solve_gd(problem, W0, eta, n_iter, method=rule, record=record_full, stop=stop_full,
                               bound=bound)
                if res.status == "diverged":
                    outcome = "diverged"
                elif res.status == "converged":
                    W, lam = lam_at(res)
                    if eta <= rule.stability_limit(lam):
                        outcome, settle = "converged", _settle(res, hit)
                        finals[eta] = W
                    else:
                        outcome = "unstable_limit"
                else:
                    outcome = "not_converged"
        else:
            outcome = "not_converged"
        final = float(res.outcomes["final_loss"])
        if outcome == "not_converged" and not continued and math.isfinite(final):
            walk_loss = final  # never met the tests within the horizon: maybe too slow
        rows.append(_StableTrial(eta, outcome, final, int(res.stop_iteration), lam, hit, lam_hit, settle,
                                 continued))
        return TrialOutcome(outcome == "converged", walk_loss, initial)

    L: float | None
    U: float | None
    if assume_bracket is True or (assume_bracket == "upper" and trial(lo).converged):
        a, b, status = lo, hi, "ok"
        while a * (1.0 + rtol) < b:
            mid = math.sqrt(a * b)
            if trial(mid).converged:
                a = mid
            else:
                b = mid
        L, U = a, b
    else:
        L, U, status = bracket_and_bisect(trial, lo, hi, factor=factor, max_expand=max_expand, rtol=rtol,
                                           walk_down_gives_up=False)
    eta_lo = math.nan if L is None else L
    eta_hi = math.nan if U is None else U
    cols: dict[str, Any] = {f: tuple(getattr(r, f) for r in rows) for f in _StableTrial._fields}
    return StableCriticalStepsize(
        eta_lo, eta_lo, eta_hi, status, trial_eta=cols["eta"], trial_outcome=cols["outcome"],
        trial_final_loss=cols["final_loss"], trial_stop_iteration=cols["stop_iteration"],
        trial_sharpness=cols["sharpness"], initial_loss=initial,
        limit_weights=finals.get(L) if L is not None else None,
        criterion=STABLE_CRITERION if continued_rule else STABLE_CRITERION_FIRST_HIT,
        trial_first_hit=cols["first_hit"], trial_first_sharpness=cols["first_sharpness"],
        trial_settle_iteration=cols["settle_iteration"], trial_continued=cols["continued"], n_iter=n_iter,
        continue_unstable=continued_rule,
    )
