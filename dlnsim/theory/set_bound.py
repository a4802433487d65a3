"""The stepsize bound (2.14) of Theorem 2.6 for a bounded set B of starts: (2.8) with L_0 -> L_B (2.13) and
M -> M_B, for sup balancedness delta_B (2.12) <= alpha delta.  The constants are those of `dlnsim.theory.bounds`
(formulas in docs/theory.md)."""

from __future__ import annotations

import math
from typing import Literal

from dlnsim.checks import positive_float
from dlnsim.problem import Problem
from dlnsim.theory.bounds import (
    KConstant,
    M_constant,
    StepsizeBound,
    bound_constants,
    check_alpha,
    check_N,
    check_problem,
    k_coef,
    optimal_delta,
    resolve_delta,
)

__all__ = ["set_stepsize_bound"]


def set_stepsize_bound(
    problem: Problem,
    N: int,
    delta_B: float,
    L_B: float,
    alpha: float,
    delta: Literal["optimal"] | float = "optimal",
    k_constant: KConstant = "theorem",
) -> StepsizeBound:
    """The bound (2.14) of Theorem 2.6 for a bounded set B of starts, described by delta_B (2.12) and L_B (2.13).

    Needs delta_B <= alpha*delta with alpha in [0, 1); ``delta="optimal"`` maximises over delta >= delta_B/alpha
    (with alpha = 0, delta_B must be 0).  The formula is (2.8) with L_0 -> L_B and M -> M_B; see
    docs/theory.md#theorem-26-and-the-set-bound-214.

    Parameters
    ----------
    problem : Problem
        The data X, Y.
    N : int
        Depth, >= 1.
    delta_B : float
        The supremum (2.12) of the balancedness constants over B; finite and >= 0.
    L_B : float
        The supremum (2.13) of the losses over B; finite and >= 0.
    alpha : float
        The alpha of Theorem 2.6, in [0, 1); > 0 when ``delta_B`` > 0.
    delta : "optimal" or float, default "optimal"
        ``"optimal"`` maximises (2.14) over delta >= delta_B/alpha; a number (finite, > 0, at least
        delta_B/alpha) is used as given.
    k_constant : {"theorem", "remark3.3"}, default "theorem"
        The constant c in K_delta = M_B^{2/N} + c delta: (N+1)^2 (``"theorem"``) or N^2 (``"remark3.3"``).

    Returns
    -------
    StepsizeBound
        ``eta`` (the bound (2.14)) and the constants at (alpha, delta), with ``L0 = L_B``, ``M = M_B`` and
        ``balancedness0 = delta_B``.

    Raises
    ------
    ValueError
        If ``problem`` is not a `Problem`, ``N`` is not an integer >= 1, ``delta_B`` or ``L_B`` is negative
        or not finite, ``alpha`` is outside [0, 1) or is 0 while ``delta_B`` > 0, M_B overflows float64,
        ``delta`` is neither ``"optimal"`` nor a positive number, ``k_constant`` is unknown, delta is below
        delta_B/alpha, or delta is so large that B_delta overflows float64 (or the bound underflows to 0).
    """
    problem = check_problem(problem)
    n = check_N(N)
    dB = positive_float(delta_B, "delta_B", allow_zero=True)
    LB = positive_float(L_B, "L_B", allow_zero=True)
    a = check_alpha(alpha)
    if dB > 0 and a == 0:
        raise ValueError("alpha must be > 0 when delta_B > 0 (Theorem 2.6 needs delta_B <= alpha*delta)")
    dmin = dB / a if dB > 0 else 0.0
    M = M_constant(problem, LB)
    if not math.isfinite(M):
        raise ValueError(f"L_B = {LB!r} is too large: M_B overflows float64")
    if isinstance(delta, str) and delta != "optimal":
        raise ValueError(f"delta must be 'optimal' or a positive number, got {delta!r}")
    rule, dval, kc = resolve_delta(problem, n, LB, M, delta, k_constant)
    c = k_coef(n, kc)
    if dval is None:
        dval = optimal_delta(problem, n, LB, M, c, a, dB, dmin)
    if dval < dmin * (1.0 - 1e-12):
        raise ValueError(f"delta = {dval:.6g} is below delta_B / alpha = {dmin:.6g} (Theorem 2.6 needs "
                         "delta_B <= alpha*delta)")
    return bound_constants(problem, n, LB, M, dval, a, c, rule, kc, dB)
