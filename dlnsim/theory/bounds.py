"""Stepsize bounds of Theorem 2.4 / Section 5 / Remark 2.5(b) / Theorem 2.6 (formulas in docs/theory.md).

Constants, for a start W(0) with loss L_0 = L^N(W(0)) and balancedness constant alpha*delta:

    (2.11)  M       = (||X|| sqrt(2 L_0) + ||X Y^T||) / lambda_min(X X^T)
    (2.10)  K_delta = M^{2/N} + c delta,   c = (N+1)^2 (Theorem 2.4) or c = N^2 (Remark 3.3, used in Sec. 5)
    (2.9)   B_delta = 2e N K^{N-1} ||X||^2 + sqrt(e) N K^{N/2-1} ||X Y^T||
    (2.8)   eta_k  <= 2 (1-alpha) delta / (4 L_0 + (1-alpha) delta B_delta)
    sigma          = 4 L_0 / (4 L_0 + (1-alpha) delta B_delta)      (start of the proof of Prop. 3.4)

With this sigma both conditions (3.14), eta <= 2(1-sigma)/B (descent) and eta <= sigma(1-alpha)delta/(2 L_0)
(balancedness stays <= delta), equal the right side of (2.8).  Choices of delta:

* ``"section5"`` (5.1): delta = M^{2/N}/N^3 with K = M^{2/N} + N^2 delta (the paper's experiments);
* ``"remark2.5"``: delta = M^{2/N}/(N (N+1)^2), K = (1 + 1/N) M^{2/N}; ``eta`` is (2.8) at that delta and
  ``eta_closed_form`` is the remark's explicit (smaller) bound
      2 / (2(1-alpha)^{-1} N (N+1)^2 M^{2-2/N} sigma_min^2 + 2 e^{2-1/N} N M^{2-2/N} ||X||^2
           + e^{1-1/N} N M^{1-2/N} ||X Y^T||);
* ``"optimal"``: the delta maximising (2.8) (Remark 2.5(b) suggests optimising), found numerically, among
  the deltas that admit the start (delta >= balancedness(W(0)) / alpha);
* a positive number.

Unbalanced starts.  Theorem 2.4 asks for a start with balancedness constant alpha*delta, alpha in [0, 1) and
delta > 0: a start with balancedness b = max_j ||W_{j+1}^T W_{j+1} - W_j W_j^T|| > 0 is admitted exactly by the
pairs with b <= alpha*delta, i.e. alpha >= b/delta (possible iff delta > b) or, for a chosen alpha > 0,
delta >= b/alpha.  For a fixed delta, (2.8) decreases in alpha, so the smallest alpha = b/delta is the best one;
then (1 - alpha) delta = delta - b, and the best pair overall maximises 2/(4 L_0/(delta - b) + B_delta) over
delta > b.  `admissible_alpha` reports these numbers, ``alpha="min"`` in `stepsize_bound` uses them.

Floating point.  (2.8) is evaluated as 2/(4 L_0/((1-alpha)delta) + B_delta), which stays finite for any delta
whose B_delta is a float64 number (for N = 1 every delta; for N = 2 up to about 1e300).  A delta so large
that K_delta^{N-1}, and so B_delta, overflows float64 is refused with a ValueError naming ``delta``: the bound
would be below 1e-308, no usable stepsize.

(2.14) of Theorem 2.6 is the same formula with L_0 -> L_B and M -> M_B for a bounded set B of starts with
sup balancedness delta_B <= alpha delta: `dlnsim.theory.set_bound.set_stepsize_bound`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import scipy.optimize

from dlnsim.checks import as_weights, positive_float
from dlnsim.init import balancedness
from dlnsim.problem import Problem

__all__ = ["Admissibility", "StepsizeBound", "admissible_alpha", "stepsize_bound"]

DeltaChoice = Literal["section5", "remark2.5", "optimal"] | float
AlphaChoice = float | Literal["min"]
KConstant = Literal["theorem", "remark3.3"]


@dataclass(frozen=True)
class StepsizeBound:
    """The constants of Theorem 2.4 for one start; ``eta`` is the largest stepsize the theorem allows."""

    eta: float
    M: float
    delta: float
    K: float
    B: float
    sigma: float
    L0: float
    alpha: float
    N: int
    rule: str
    k_constant: str
    eta_descent: float  # 2(1 - sigma)/B            (first condition of (3.14))
    eta_balance: float  # sigma(1-alpha)delta/(2L0) (second condition of (3.14)); inf when L0 = 0
    eta_closed_form: float  # Remark 2.5(b)'s explicit bound (nan unless rule == "remark2.5")
    balancedness0: float  # balancedness constant of W(0) (must be <= alpha*delta)

    #: the fields that say how the bound was taken (a run's settings); the others are its values
    SETTINGS = ("alpha", "N", "rule", "k_constant", "eta_closed_form")

    def attrs(self, prefix: str = "bound_") -> dict[str, Any]:
        """How the bound was taken, as flat attributes of a Dataset: alpha, N, the delta rule, the K constant
        and the closed form of Remark 2.5(b) (NaN unless that rule)."""
        return {prefix + k: v for k, v in asdict(self).items() if k in self.SETTINGS}

    def outcomes(self, prefix: str = "bound_") -> dict[str, Any]:
        """The values of the bound (eta, M, delta, K, B, sigma, L0, the two conditions of (3.14) and the
        balancedness of the start), as the 0-d variables of a run."""
        return {prefix + k: v for k, v in asdict(self).items() if k not in self.SETTINGS}


@dataclass(frozen=True)
class Admissibility:
    """Which (alpha, delta) of Theorem 2.4 admit a start: balancedness(W(0)) <= alpha*delta, alpha in [0, 1).

    ``balancedness0`` is b = max_j ||W_{j+1}^T W_{j+1} - W_j W_j^T|| of the start (0 for N = 1 and, up to
    rounding, for balanced starts).  ``delta`` is the delta asked about (the value of ``rule``; for ``"optimal"``
    the delta of the best pair) and ``alpha_min = b/delta`` the smallest alpha admitting the start there, the
    best one since (2.8) decreases in alpha.  ``delta_min = b``: every delta > b admits the start with some
    alpha < 1, and for a chosen alpha in (0, 1) exactly the deltas >= b/alpha do (``delta_range``).  ``bound`` is
    the `StepsizeBound` at (``delta``, ``alpha_min``).
    """

    balancedness0: float
    delta: float
    rule: str
    alpha_min: float
    delta_min: float
    bound: StepsizeBound

    def delta_range(self, alpha: float) -> tuple[float, float]:
        """The deltas admitting the start for this ``alpha``: the closed half-line [b/alpha, inf)."""
        a = positive_float(alpha, "alpha", allow_zero=True)
        if a >= 1.0:
            raise ValueError(f"alpha must lie in [0, 1), got {alpha!r}")
        if self.balancedness0 == 0.0:
            return (0.0, math.inf)
        if a == 0.0:
            raise ValueError(
                f"alpha = 0 admits only balanced starts; this one has balancedness constant {self.balancedness0:.3e}"
            )
        return (self.balancedness0 / a, math.inf)


def k_coef(N: int, k_constant: str) -> float:
    if k_constant == "theorem":
        return float((N + 1) ** 2)
    if k_constant == "remark3.3":
        return float(N**2)
    raise ValueError(f"k_constant must be 'theorem' ((N+1)^2, eq. 2.10) or 'remark3.3' (N^2), got {k_constant!r}")


def M_constant(problem: Problem, L: float) -> float:
    return (problem.norm_X * math.sqrt(2.0 * L) + problem.norm_XYt) / problem.lambda_min


def _B(problem: Problem, N: int, K: float) -> float:
    """(2.9); ``inf`` when a power of K overflows float64."""
    try:
        return float(2.0 * math.e * N * K ** (N - 1) * problem.norm_X**2
                     + math.sqrt(math.e) * N * K ** (N / 2.0 - 1.0) * problem.norm_XYt)
    except OverflowError:
        return math.inf


def _eta(problem: Problem, N: int, L: float, M: float, delta: float, slack: float, c: float) -> float:
    """(2.8) as 2/(4L/slack + B_delta) with slack = (1-alpha)*delta; 0.0 when B_delta overflows."""
    K = M ** (2.0 / N) + c * delta
    B = _B(problem, N, K)
    if not math.isfinite(B) or slack <= 0.0:
        return 0.0
    return 2.0 / (4.0 * L / slack + B)


def _argmax_log(f: Any, lo: float, hi: float) -> float:
    """exp(argmax) of a unimodal f(log x) on [lo, hi] (bounded scalar search), checking both ends too."""
    res = scipy.optimize.minimize_scalar(lambda u: -f(u), bounds=(lo, hi), method="bounded",
                                         options={"xatol": 1e-10})
    best = max((float(res.x), lo, hi), key=f)
    return math.exp(best)


def resolve_delta(
    problem: Problem, N: int, L: float, M: float, delta: DeltaChoice, k_constant: KConstant | None,
) -> tuple[str, float | None, str]:
    """(rule, delta value or None for "optimal", k_constant) for a delta choice."""
    m2n = M ** (2.0 / N)
    if isinstance(delta, str):
        if delta == "remark2.5":
            if k_constant not in (None, "theorem"):
                raise ValueError("delta='remark2.5' fixes K = M^{2/N} + (N+1)^2 delta; k_constant must be 'theorem'")
            return delta, m2n / (N * (N + 1) ** 2), "theorem"
        kc = k_constant or "remark3.3"
        k_coef(N, kc)
        if delta == "section5":
            return delta, m2n / N**3, kc
        if delta == "optimal":
            return delta, None, kc
        raise ValueError(f"delta must be 'section5', 'remark2.5', 'optimal' or a positive number, got {delta!r}")
    if isinstance(delta, bool | np.bool_):
        raise ValueError(f"delta must be 'section5', 'remark2.5', 'optimal' or a positive number, got {delta!r}")
    kc = k_constant or "remark3.3"
    k_coef(N, kc)
    return "value", positive_float(delta, "delta"), kc


def optimal_delta(
    problem: Problem, N: int, L: float, M: float, c: float, alpha: float | None, b: float, delta_min: float,
) -> float:
    """The delta maximising (2.8): for a fixed ``alpha`` over delta >= delta_min; for ``alpha=None`` (the
    smallest admissible alpha = b/delta) over delta > b, where (1 - alpha) delta = delta - b."""
    m2n = M ** (2.0 / N)
    sec5 = m2n / N**3
    if alpha is None and b > 0.0:
        # maximise over x = delta - b > 0
        def g(u: float) -> float:
            x = math.exp(u)
            return _eta(problem, N, L, M, b + x, x, c)

        base = max(sec5, b, 1e-300)
        x = _argmax_log(g, math.log(base) - 30.0, math.log(base) + 30.0)
        dval = b + x
        if sec5 > b and _eta(problem, N, L, M, sec5, sec5 - b, c) > _eta(problem, N, L, M, dval, x, c):
            dval = sec5
        return dval
    a = 0.0 if alpha is None else alpha

    def f(u: float) -> float:
        d = math.exp(u)
        return _eta(problem, N, L, M, d, (1.0 - a) * d, c)

    # (2.8) is unimodal in delta (4L/((1-alpha)delta) decreases, B_delta increases): a bounded search suffices
    base = max(sec5, delta_min, 1e-300)
    lo = math.log(delta_min) if delta_min > 0 else math.log(base) - 30.0
    dval = _argmax_log(f, lo, math.log(base) + 30.0)
    # never worse than the section-5 choice (the search is numerical)
    if delta_min <= sec5 and f(math.log(sec5)) > f(math.log(dval)):
        dval = sec5
    return max(dval, delta_min)


def bound_constants(
    problem: Problem, N: int, L: float, M: float, dval: float, alpha: float, c: float, rule: str, k_constant: str,
    balancedness0: float,
) -> StepsizeBound:
    """Every constant of Theorem 2.4 at (delta, alpha), in overflow-safe forms; ValueError naming delta when
    B_delta overflows float64 or the bound underflows to 0."""
    m2n = M ** (2.0 / N)
    K = m2n + c * dval
    B = _B(problem, N, K)
    if not math.isfinite(B):
        raise ValueError(
            f"delta = {dval:.6g} is too large: B_delta = 2e N K^(N-1) ||X||^2 + ... overflows float64 (K = {K:.3e}, "
            f"N = {N}), so the bound (2.8) is below 1e-308 and certifies no usable stepsize; choose a smaller delta "
            f"(delta='optimal' picks the best one)"
        )
    slack = (1.0 - alpha) * dval
    a = 4.0 * L / slack  # 4 L0 / ((1 - alpha) delta)
    eta = 2.0 / (a + B)
    if not (math.isfinite(eta) and eta > 0.0):
        raise ValueError(
            f"delta = {dval:.6g}: the bound (2.8) underflows float64 (4 L0/((1-alpha) delta) = {a:.3e}, "
            f"B_delta = {B:.3e}); choose another delta (delta='optimal' picks the best one)"
        )
    sigma = a / (a + B)
    eta_descent = 2.0 * (1.0 - sigma) / B
    eta_balance = 2.0 / (a + B) if L > 0 else math.inf  # = sigma (1-alpha) delta / (2 L0)
    closed = math.nan
    if rule == "remark2.5":
        closed = 2.0 / (
            2.0 / (1.0 - alpha) * N * (N + 1) ** 2 * M ** (2.0 - 2.0 / N) * problem.sigma_min_X**2
            + 2.0 * math.e ** (2.0 - 1.0 / N) * N * M ** (2.0 - 2.0 / N) * problem.norm_X**2
            + math.e ** (1.0 - 1.0 / N) * N * M ** (1.0 - 2.0 / N) * problem.norm_XYt
        )
    return StepsizeBound(
        eta=eta, M=M, delta=dval, K=K, B=B, sigma=sigma, L0=L, alpha=alpha, N=int(N), rule=rule,
        k_constant=str(k_constant), eta_descent=eta_descent, eta_balance=eta_balance, eta_closed_form=closed,
        balancedness0=balancedness0,
    )


def check_N(N: Any) -> int:
    if isinstance(N, bool) or not isinstance(N, int | np.integer) or N < 1:
        raise ValueError(f"N must be an integer >= 1, got {N!r}")
    return int(N)


def check_alpha(alpha: Any) -> float:
    a = positive_float(alpha, "alpha", allow_zero=True)
    if a >= 1.0:
        raise ValueError(f"alpha must lie in [0, 1), got {alpha!r}")
    return a


def check_problem(problem: Any) -> Problem:
    if not isinstance(problem, Problem):
        raise ValueError(f"problem must be a dlnsim.Problem, got {type(problem).__name__}")
    return problem


def _start(problem: Problem, W0: Sequence[np.ndarray]) -> tuple[int, float, float, float, float]:
    """(N, L0, M, balancedness, b) of a start; b is the balancedness, or 0 when that is at rounding level
    (balanced starts)."""
    W = as_weights(W0, "W0")
    if W[0].shape[1] != problem.d_x or W[-1].shape[0] != problem.d_y:
        raise ValueError(
            f"W0 does not fit the problem: W_1 has {W[0].shape[1]} columns (d_x = {problem.d_x}) and W_N has "
            f"{W[-1].shape[0]} rows (d_y = {problem.d_y})"
        )
    with np.errstate(over="ignore", invalid="ignore"):
        P = W[0]
        for Wj in W[1:]:
            P = Wj @ P
        L0 = 0.5 * float(np.sum((problem.Y - P @ problem.X) ** 2)) if np.all(np.isfinite(P)) else math.inf
    if not math.isfinite(L0):
        raise ValueError("W0: the loss L^N(W0) overflows float64 (the factors are too large); rescale W0")
    N = len(W)
    M = M_constant(problem, L0)
    bal0 = float(balancedness(W).max()) if N > 1 else 0.0
    if not math.isfinite(bal0):
        raise ValueError("W0: its balancedness constant overflows float64 (the factors are too large); rescale W0")
    # Theorem 2.4 needs balancedness(W0) <= alpha*delta; rounding leaves ~1e-15 on exactly balanced starts
    tol = 1e-12 * max(1.0, M ** (2.0 / N))
    return N, L0, M, bal0, (bal0 if bal0 > tol else 0.0)


def stepsize_bound(
    problem: Problem,
    W0: Sequence[np.ndarray],
    delta: DeltaChoice = "section5",
    alpha: AlphaChoice = 0.0,
    k_constant: KConstant | None = None,
) -> StepsizeBound:
    """The stepsize bound (2.8) of Theorem 2.4 for the start ``W0`` (a list [W_1, ..., W_N]).

    ``k_constant`` picks the constant in K_delta: ``"remark3.3"`` (N^2, the paper's Section 5 and the
    default) or ``"theorem"`` ((N+1)^2, eq. (2.10) as proved).  ``delta="remark2.5"`` always uses (N+1)^2.

    Unbalanced starts (balancedness constant b > 0) need alpha in (0, 1) with b <= alpha*delta.  With
    ``delta="optimal"`` the search runs over the admissible deltas delta >= b/alpha; ``alpha="min"`` takes the
    smallest admissible alpha = b/delta (the best one for that delta), and with ``delta="optimal"`` the best
    pair (alpha, delta) overall.  See `admissible_alpha`, docs/theory.md#the-stepsize-condition-28 and
    docs/theory.md#unbalanced-starts-and-alpha.

    Parameters
    ----------
    problem : Problem
        The data X, Y (X X^T must be invertible, as for every `Problem`).
    W0 : sequence of array_like
        The start [W_1, ..., W_N], W_j of shape (d_j, d_{j-1}), with d_0 = d_x and d_N = d_y.
    delta : {"section5", "remark2.5", "optimal"} or float, default "section5"
        The delta of Theorem 2.4: ``"section5"`` is (5.1), delta = M^{2/N}/N^3; ``"remark2.5"`` is
        delta = M^{2/N}/(N (N+1)^2) (and fills ``eta_closed_form``); ``"optimal"`` maximises (2.8)
        numerically over the admissible deltas; a number (finite, > 0) is used as given.
    alpha : float or "min", default 0.0
        The alpha of Theorem 2.4, a number in [0, 1) (0 admits only balanced starts), or ``"min"`` for the
        smallest admissible alpha = b/delta.
    k_constant : {"remark3.3", "theorem"}, optional
        The constant c in K_delta = M^{2/N} + c delta: ``"remark3.3"`` (N^2, the default) or ``"theorem"``
        ((N+1)^2); with ``delta="remark2.5"`` only ``"theorem"`` (the default there) is accepted.

    Returns
    -------
    StepsizeBound
        ``eta`` (the bound (2.8)) and the constants M, delta, K, B, sigma, L0, alpha, ... at the chosen
        (alpha, delta).  A balancedness constant at rounding level (balanced starts) counts as b = 0.

    Raises
    ------
    ValueError
        If ``problem`` is not a `Problem`; ``W0`` is not a list of real, finite, chained matrices fitting the
        problem, or its loss or balancedness constant overflows float64; ``delta``, ``alpha`` or
        ``k_constant`` is not one of the accepted values; the start is not admitted, b > alpha*delta (the
        message gives the smallest alpha for this delta, or says that delta must exceed b); or delta is so
        large that B_delta overflows float64 (or the bound underflows to 0).

    Examples
    --------
    >>> import dlnsim
    >>> problem, widths, W0 = dlnsim.paper_setup(N=3, seed=0)
    >>> b = dlnsim.stepsize_bound(problem, W0)
    >>> f"eta* = {b.eta:.3e}, M = {b.M:.4g}, delta = {b.delta:.4g}"
    'eta* = 1.735e-04, M = 19.15, delta = 0.2651'
    >>> dlnsim.stepsize_bound(problem, W0, delta="optimal").eta >= b.eta  # (2.8) maximised over delta
    True
    """
    problem = check_problem(problem)
    N, L0, M, bal0, b = _start(problem, W0)
    rule, dval, kc = resolve_delta(problem, N, L0, M, delta, k_constant)
    c = k_coef(N, kc)
    if isinstance(alpha, str):
        if alpha != "min":
            raise ValueError(f"alpha must be a number in [0, 1) or 'min', got {alpha!r}")
        if dval is None:
            dval = optimal_delta(problem, N, L0, M, c, None, b, 0.0)
        if b >= dval:
            raise ValueError(_not_admitted(b, 0.0, dval, rule))
        a = b / dval
    else:
        a = check_alpha(alpha)
        if dval is None:
            if b > 0.0 and a == 0.0:
                raise ValueError(_not_admitted(b, a, None, rule))
            dval = optimal_delta(problem, N, L0, M, c, a, b, b / a if b > 0.0 else 0.0)
        if b > a * dval * (1.0 + 1e-12):
            raise ValueError(_not_admitted(b, a, dval, rule))
    return bound_constants(problem, N, L0, M, dval, a, c, rule, kc, bal0)


def _not_admitted(b: float, alpha: float, delta: float | None, rule: str) -> str:
    """Why Theorem 2.4 does not admit a start of balancedness b at (alpha, delta), and what would."""
    at = f"delta = {delta:.6g}" + (f" (rule {rule!r})" if rule != "value" else "") if delta is not None else ""
    head = (f"W0 has balancedness constant {b:.3e} > alpha*delta = {alpha * (delta or 0.0):.3e}: Theorem 2.4 "
            "does not apply")
    if delta is None:
        return (f"{head} with alpha = 0 (only balanced starts); pass alpha in (0, 1), e.g. alpha='min' for the "
                "best admissible pair, or see admissible_alpha()")
    if b < delta:
        return (f"{head} at {at}; the smallest admissible alpha there is b/delta = {b / delta:.6g} "
                "(pass alpha >= that, or alpha='min'), or pass delta >= b/alpha, or delta='optimal'")
    return (f"{head}: no alpha in [0, 1) admits this start at {at}, since delta must exceed the balancedness "
            f"constant {b:.3e}; pass delta >= b/alpha for a chosen alpha in (0, 1), or delta='optimal' with "
            "alpha='min'")


def admissible_alpha(
    problem: Problem,
    W0: Sequence[np.ndarray],
    delta: DeltaChoice = "section5",
    k_constant: KConstant | None = None,
) -> Admissibility:
    """Which alpha (and which deltas) let Theorem 2.4 admit the start ``W0``.

    For a delta rule or number: the smallest alpha = b/delta with b the balancedness constant of ``W0``.
    For ``delta="optimal"``: the pair (alpha, delta) with the largest bound (2.8), alpha = b/delta.  See
    docs/theory.md#unbalanced-starts-and-alpha.

    Parameters
    ----------
    problem : Problem
        The data X, Y (X X^T must be invertible, as for every `Problem`).
    W0 : sequence of array_like
        The start [W_1, ..., W_N], W_j of shape (d_j, d_{j-1}), with d_0 = d_x and d_N = d_y.
    delta : {"section5", "remark2.5", "optimal"} or float, default "section5"
        The delta rule or a value (finite, > 0), as in `stepsize_bound`.
    k_constant : {"remark3.3", "theorem"}, optional
        The constant in K_delta, as in `stepsize_bound` (default ``"remark3.3"``, ``"theorem"`` for
        ``delta="remark2.5"``).

    Returns
    -------
    Admissibility
        b (``balancedness0``, 0 at rounding level), the delta and its ``rule``, ``alpha_min = b/delta``,
        ``delta_min = b``, and the `StepsizeBound` at (delta, alpha_min).  It also gives the range of deltas
        for any alpha (``Admissibility.delta_range``).

    Raises
    ------
    ValueError
        When b >= delta, with the reason: no alpha in [0, 1) works at that delta, any delta > b does.  Also for
        the invalid inputs and overflows listed in `stepsize_bound`.
    """
    problem = check_problem(problem)
    N, L0, M, bal0, b = _start(problem, W0)
    rule, dval, kc = resolve_delta(problem, N, L0, M, delta, k_constant)
    c = k_coef(N, kc)
    if dval is None:
        dval = optimal_delta(problem, N, L0, M, c, None, b, 0.0)
    if b >= dval:
        raise ValueError(_not_admitted(b, 0.0, dval, rule))
    a = b / dval
    bound = bound_constants(problem, N, L0, M, dval, a, c, rule, kc, bal0)
    return Admissibility(balancedness0=b, delta=dval, rule=rule, alpha_min=a, delta_min=b, bound=bound)
