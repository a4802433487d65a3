"""Stepsize bounds of Theorem 2.4 / Section 5 / Remark 2.5(b) / Theorem 2.6 (spec §4, §5, §7.4).

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
* ``"optimal"``: the delta maximising (2.8) (Remark 2.5(b) suggests optimising), found numerically;
* a positive number.

(2.14) of Theorem 2.6 is the same formula with L_0 -> L_B and M -> M_B for a bounded set B of starts with
sup balancedness delta_B <= alpha delta: `set_stepsize_bound`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import scipy.optimize

from ._validate import as_weights, positive_float
from .init import balancedness
from .problem import Problem

__all__ = ["StepsizeBound", "set_stepsize_bound", "stepsize_bound"]

DeltaChoice = Literal["section5", "remark2.5", "optimal"] | float
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

    def attrs(self, prefix: str = "bound_") -> dict[str, Any]:
        """Flat attributes for a Dataset."""
        return {prefix + k: v for k, v in asdict(self).items()}


def _k_coef(N: int, k_constant: str) -> float:
    if k_constant == "theorem":
        return float((N + 1) ** 2)
    if k_constant == "remark3.3":
        return float(N**2)
    raise ValueError(f"k_constant must be 'theorem' ((N+1)^2, eq. 2.10) or 'remark3.3' (N^2), got {k_constant!r}")


def _M(problem: Problem, L: float) -> float:
    return (problem.norm_X * math.sqrt(2.0 * L) + problem.norm_XYt) / problem.lambda_min


def _B(problem: Problem, N: int, K: float) -> float:
    return float(2.0 * math.e * N * K ** (N - 1) * problem.norm_X**2
                 + math.sqrt(math.e) * N * K ** (N / 2.0 - 1.0) * problem.norm_XYt)


def _eta(problem: Problem, N: int, L: float, M: float, delta: float, alpha: float, c: float) -> float:
    K = M ** (2.0 / N) + c * delta
    B = _B(problem, N, K)
    return 2.0 * (1.0 - alpha) * delta / (4.0 * L + (1.0 - alpha) * delta * B)


def _bound(
    problem: Problem, N: int, L: float, delta: DeltaChoice, alpha: float, k_constant: KConstant | None,
    balancedness0: float, delta_min: float = 0.0,
) -> StepsizeBound:
    if isinstance(N, bool) or not isinstance(N, int | np.integer) or N < 1:
        raise ValueError(f"N must be an integer >= 1, got {N!r}")
    alpha = positive_float(alpha, "alpha", allow_zero=True)
    if alpha >= 1.0:
        raise ValueError(f"alpha must lie in [0, 1), got {alpha}")
    M = _M(problem, L)
    m2n = M ** (2.0 / N)
    rule: str
    if isinstance(delta, str):
        rule = delta
        if delta == "remark2.5":
            if k_constant not in (None, "theorem"):
                raise ValueError("delta='remark2.5' fixes K = M^{2/N} + (N+1)^2 delta; k_constant must be 'theorem'")
            k_constant = "theorem"
        k_constant = k_constant or "remark3.3"
        c = _k_coef(N, k_constant)
        if delta == "section5":
            dval = m2n / N**3
        elif delta == "remark2.5":
            dval = m2n / (N * (N + 1) ** 2)
        elif delta == "optimal":
            # maximise (2.8) over log(delta); the objective is unimodal (first term of the denominator
            # decreases in delta, B_delta increases), so a bounded scalar search suffices.
            base = max(m2n / N**3, delta_min, 1e-300)

            def neg(logd: float) -> float:
                return -_eta(problem, N, L, M, math.exp(logd), alpha, c)

            lo = math.log(max(delta_min, base * 1e-12)) if delta_min > 0 else math.log(base) - 30.0
            res = scipy.optimize.minimize_scalar(neg, bounds=(lo, math.log(base) + 30.0), method="bounded",
                                                 options={"xatol": 1e-10})
            dval = math.exp(float(res.x))
            # never worse than the section-5 choice (the search is numerical)
            if delta_min <= m2n / N**3 and _eta(problem, N, L, M, m2n / N**3, alpha, c) > _eta(
                problem, N, L, M, dval, alpha, c
            ):
                dval = m2n / N**3
        else:
            raise ValueError(
                f"delta must be 'section5', 'remark2.5', 'optimal' or a positive number, got {delta!r}"
            )
    else:
        dval = positive_float(delta, "delta")
        rule = "value"
        k_constant = k_constant or "remark3.3"
        c = _k_coef(N, k_constant)
    if dval < delta_min:
        raise ValueError(f"delta = {dval:.6g} is below the balancedness of the start / alpha = {delta_min:.6g}")
    K = m2n + c * dval
    B = _B(problem, N, K)
    eta = _eta(problem, N, L, M, dval, alpha, c)
    denom = 4.0 * L + (1.0 - alpha) * dval * B
    sigma = 4.0 * L / denom
    eta_descent = 2.0 * (1.0 - sigma) / B
    eta_balance = sigma * (1.0 - alpha) * dval / (2.0 * L) if L > 0 else math.inf
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


def stepsize_bound(
    problem: Problem,
    W0: Sequence[np.ndarray],
    delta: DeltaChoice = "section5",
    alpha: float = 0.0,
    k_constant: KConstant | None = None,
) -> StepsizeBound:
    """The stepsize bound (2.8) of Theorem 2.4 for the start ``W0`` (a list [W_1, ..., W_N]).

    ``k_constant`` picks the constant in K_delta: ``"remark3.3"`` (N^2, the paper's Section 5 and the
    default) or ``"theorem"`` ((N+1)^2, eq. (2.10) as proved).  ``delta="remark2.5"`` always uses (N+1)^2.
    Raises ``ValueError`` when W0's balancedness constant exceeds alpha*delta (the theorem does not apply).
    """
    if not isinstance(problem, Problem):
        raise ValueError(f"problem must be a dlnsim.Problem, got {type(problem).__name__}")
    W = as_weights(W0, "W0")
    if W[0].shape[1] != problem.d_x or W[-1].shape[0] != problem.d_y:
        raise ValueError(
            f"W0 does not fit the problem: W_1 has {W[0].shape[1]} columns (d_x = {problem.d_x}) and W_N has "
            f"{W[-1].shape[0]} rows (d_y = {problem.d_y})"
        )
    P = W[0]
    for Wj in W[1:]:
        P = Wj @ P
    L0 = problem.loss_of_product(P)
    bal0 = float(balancedness(W).max()) if len(W) > 1 else 0.0
    b = _bound(problem, len(W), L0, delta, alpha, k_constant, bal0)
    # Theorem 2.4 needs balancedness(W0) <= alpha*delta; rounding leaves ~1e-15 on exactly balanced starts
    tol = 1e-12 * max(1.0, b.M ** (2.0 / len(W)))
    if bal0 > b.alpha * b.delta + tol:
        raise ValueError(
            f"W0 has balancedness constant {bal0:.3e} > alpha*delta = {b.alpha * b.delta:.3e}: Theorem 2.4 "
            "does not apply; pass a larger alpha (in [0, 1)) or delta"
        )
    return b


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
    (with alpha = 0, delta_B must be 0).
    """
    dB = positive_float(delta_B, "delta_B", allow_zero=True)
    LB = positive_float(L_B, "L_B", allow_zero=True)
    a = positive_float(alpha, "alpha", allow_zero=True)
    if dB > 0 and a == 0:
        raise ValueError("alpha must be > 0 when delta_B > 0 (Theorem 2.6 needs delta_B <= alpha*delta)")
    dmin = dB / a if dB > 0 else 0.0
    return _bound(problem, N, LB, delta, a, k_constant, dB, delta_min=dmin)
