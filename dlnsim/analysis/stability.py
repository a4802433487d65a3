"""Linear stability of gradient descent at the global minimisers of L^N: what sets the critical stepsize.

Near a minimiser W* of L^N, GD with a constant stepsize eta is the linear map v -> (I - eta H) v on the
deviation, H = Hess L^N(W*).  It is stable when the sharpness lambda_max(H) is at most 2/eta, so GD cannot
converge to a minimiser sharper than 2/eta (apart from a set of starts of measure zero).  This module gives
the sharpness of the balanced minimisers and the minimiser the gradient flow reaches;
``dlnsim.analysis.minima`` gives the flattest minimiser with a given product, and ``dlnsim.analysis.critical`` a
critical-stepsize search whose convergence criterion includes the stability condition
(`dlnsim.stable_critical_stepsize`, re-exported here).

Sharpness at a balanced global minimiser (closed form, `balanced_minimum_sharpness`)
------------------------------------------------------------------------------------
Let W = U diag(s) V^T be the product, C = X X^T, and assume W is a critical point of L^1, i.e.
(W X - Y) X^T = 0 (the least-squares solution; for Y = W~ X it is W~).  Then the residual term of the
Hessian form vanishes, <W X - Y, Z X>_F = <(W X - Y) X^T, Z>_F = 0, and

    <D, H D> = || J D ||_F^2,      J D = sum_i W_{N:i+1} D_i W_{i-1:1} X,

so the nonzero eigenvalues of H = J^T J are those of J J^T.  Write J = B T with T D = sum_i W_{N:i+1} D_i
W_{i-1:1} (into d_y x d_x matrices) and B Z = Z X.  For a balanced tuple W_{N:j+1} W_{N:j+1}^T =
(W W^T)^{(N-j)/N} and W_{j-1:1}^T W_{j-1:1} = (W^T W)^{(j-1)/N}, so T T^* is the operator A_W of (2.5):

    T T^* Z = A_W(Z) = sum_{j=1}^N (W W^T)^{(N-j)/N} Z (W^T W)^{(j-1)/N}.

The nonzero eigenvalues of J J^T = B A_W B^* are those of Z -> A_W(Z C).  In the singular bases
(u_a, v_b, with s_a = 0 beyond the rank r), A_W(u_a v_b^T) = kappa_N(s_a, s_b) u_a v_b^T with

    kappa_N(x, y) = sum_{j=1}^N x^{2(N-j)/N} y^{2(j-1)/N} = (x^2 - y^2) / (x^{2/N} - y^{2/N})   (x != y),
    kappa_N(x, x) = N x^{2 - 2/N},                                                  (0^0 = 1)

so the operator acts on each row a of V^T-coordinates separately, z -> z C~ D_a with C~ = V^T C V (V square
orthogonal) and D_a = diag_b kappa_N(s_a, s_b).  Hence

    lambda_max(H) = max_{a <= r} lambda_max( D_a^{1/2} C~ D_a^{1/2} ),
    D_a = diag( kappa_N(s_a, s_1), ..., kappa_N(s_a, s_r), s_a^{2-2/N}, ..., s_a^{2-2/N} ).

(The rows a > r have D = diag(s_b^{2-2/N}, 0, ...) <= D_a entrywise and never give the maximum.)  When all r
singular values equal s, with P = V_r V_r^T the projector onto the row space of W::

    lambda_max(H) = s^{2-2/N} lambda_max( C^{1/2} (I + (N-1) P) C^{1/2} ),
    s^{2-2/N} max(lambda_max(C), N lambda_max(V_r^T C V_r))  <=  lambda_max(H)
                                                  <=  s^{2-2/N} (lambda_max(C) + (N-1) lambda_max(V_r^T C V_r)),

so eta = 2/lambda_max(H) falls like 1/N.  For N = 1 (linear regression) H = C (x) I and lambda_max = lambda_max(C).
The sharpness is the same at every balanced factorisation of W (they differ by orthogonal maps of the hidden
spaces), so it is a function of W and C alone.

The flow limit (`flow_limit`)
-----------------------------
The gradient flow (2.2) conserves W_{j+1}^T W_{j+1} - W_j W_j^T (2.3), so from a balanced start it stays
balanced, and when it converges to a global minimiser that minimiser is balanced with product W_ls: its
sharpness is `balanced_minimum_sharpness`.  `flow_limit` integrates the flow to check this, and says why it
stopped (``FlowLimit.status``):

``converged``
    ||grad L^N||_F <= gtol ||Y X^T||_F.
``rounding_floor``
    the gradient norm stopped decreasing (by less than a factor 2 over a span as long as the time done so
    far) at a level the integration cannot resolve: ||grad L^N||_F <= `gradient_resolution` (W), the
    gradient an error of the state of the size the integrator allows can cause::

        lambda_hat x (rtol ||W||_F + atol sqrt(n) + 16 eps ||W||_F),   n = number of entries of W,
        lambda_hat = ||X X^T||_2 sum_j prod_{l != j} s_l^2 + ||(W_{N:1} X - Y) X^T||_F sum_{i != j}
                     prod_{l != i, j} s_l,   s_l = ||W_l||_2

    (lambda_hat bounds the norm of Hess L^N(W)).  A gradient that stops decreasing above this level is a
    slow flow (a saddle plateau, a slow approach to a rank-deficient minimiser), not a floor: the
    integration goes on, up to ``t_max``.
``t_max``
    the horizon ``t_max`` was reached with the gradient above both levels.
``max_steps``, ``nonfinite``, ``step_underflow``
    the integrator stopped (see `dlnsim.run_flow`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dlnsim.analysis.critical import STABLE_CRITERION, StableCriticalStepsize, stable_critical_stepsize
from dlnsim.checks import as_matrix, as_weights, nonneg_int, positive_float
from dlnsim.problem import Problem

__all__ = [
    "FLOW_LIMIT_STATUS",
    "STABLE_CRITERION",
    "FlowLimit",
    "StableCriticalStepsize",
    "balanced_factors",
    "balanced_minimum_sharpness",
    "compress_widths",
    "flow_limit",
    "gradient_resolution",
    "kappa",
    "stable_critical_stepsize",
]


def check_problem(problem: Any) -> Problem:
    if not isinstance(problem, Problem):
        raise ValueError(f"problem must be a dlnsim.Problem, got {type(problem).__name__}")
    return problem


def checked_depth(N: Any) -> int:
    return nonneg_int(N, "N (depth)", minimum=1)


def svd_rank(W: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    U, s, Vt = np.linalg.svd(W)
    tol = max(W.shape) * np.finfo(float).eps * (s[0] if s.size else 0.0) * 100.0
    return U, s, Vt.T, int(np.sum(s > tol))


def kappa(x: Any, y: Any, N: int) -> np.ndarray:
    """kappa_N(x, y) = sum_{j=1}^N x^{2(N-j)/N} y^{2(j-1)/N} (with 0^0 = 1): the eigenvalue of A_W (2.5) on
    u_a v_b^T for singular values x = s_a, y = s_b of W."""
    N = checked_depth(N)
    x, y = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
    out = np.zeros(x.shape)
    for j in range(1, N + 1):
        ex, ey = (N - j) / N, (j - 1) / N
        out += (np.ones_like(x) if ex == 0 else x ** (2 * ex)) * (np.ones_like(y) if ey == 0 else y ** (2 * ey))
    return out


def critical_product(problem: Problem, product: Any, check: bool) -> np.ndarray:
    if product is None:
        return np.asarray(problem.W_ls, dtype=float)
    W = as_matrix(product, "product", shape=(problem.d_y, problem.d_x))
    if check:
        G = W @ problem.XXt - problem.YXt
        scale = max(float(np.linalg.norm(problem.YXt)), float(np.linalg.norm(W @ problem.XXt)), 1e-300)
        if float(np.linalg.norm(G)) > 1e-8 * scale:
            raise ValueError(
                "product must be a critical point of L^1, (W X - Y) X^T = 0 (relative norm "
                f"{float(np.linalg.norm(G)) / scale:.2e} > 1e-8): only there the Hessian is J^T J and the closed "
                "form holds"
            )
    return W


def balanced_minimum_sharpness(problem: Problem, N: int, product: Any = None, *, check: bool = True) -> float:
    """lambda_max of Hess L^N at a balanced factorisation of ``product`` (closed form).

    Parameters
    ----------
    problem : Problem
        The data; C = X X^T enters through ``problem.XXt``.
    N : int
        Depth.
    product : numpy.ndarray, optional
        The end-to-end matrix W = W_N ... W_1 of the minimiser; default the least-squares solution
        ``problem.W_ls`` (the global minimiser of L^1).  It must satisfy (W X - Y) X^T = 0 (checked unless
        ``check=False``), so that the residual term of the Hessian vanishes.

    Returns
    -------
    float
        max_{a <= r} lambda_max(D_a^{1/2} V^T C V D_a^{1/2}), D_a = diag(kappa_N(s_a, s_b)_{b <= r},
        s_a^{2-2/N}, ...): see the module docstring for the derivation.  For N = 1, lambda_max(X X^T).
        0 for W = 0 (then J = 0; W = 0 is a critical point of L^1 only when Y X^T = 0).

    Notes
    -----
    The value is the same at every balanced factorisation (hidden rotations do not change the spectrum) and
    for any hidden widths >= rank W.  GD with a constant stepsize cannot converge to this minimiser when
    eta > 2 / lambda_max.
    """
    problem = check_problem(problem)
    N = checked_depth(N)
    C = np.asarray(problem.XXt)
    if N == 1:
        return float(np.linalg.eigvalsh(C)[-1])
    W = critical_product(problem, product, check)
    _, s, V, r = svd_rank(W)
    if r == 0:
        return 0.0  # every factor vanishes: J = 0 for N >= 2
    Ct = V.T @ C @ V
    best = 0.0
    d_x = C.shape[0]
    for a in range(r):
        diag = np.full(d_x, s[a] ** (2.0 - 2.0 / N))
        diag[:r] = kappa(s[a], s[:r], N)
        h = np.sqrt(diag)
        best = max(best, float(np.linalg.eigvalsh(h[:, None] * Ct * h[None, :])[-1]))
    return best


def balanced_factors(product: Any, N: int, widths: Sequence[int] | None = None) -> list[np.ndarray]:
    """A balanced factorisation [W_1, ..., W_N] of ``product`` = U diag(s) V^T of rank r.

    W_1 = E_1 S^{1/N} V_r^T, W_j = E_j S^{1/N} E_{j-1}^T, W_N = U_r S^{1/N} E_{N-1}^T with E_j the first r
    columns of the identity of size d_j (``widths`` = (d_0, ..., d_N), default hidden widths r), so
    W_{j+1}^T W_{j+1} = W_j W_j^T = E_j S^{2/N} E_j^T.
    """
    W = as_matrix(product, "product")
    N = checked_depth(N)
    U, s, V, r = svd_rank(W)
    if r == 0:
        raise ValueError("product must be nonzero")
    if widths is None:
        dims = (W.shape[1], *([r] * (N - 1)), W.shape[0])
    else:
        dims = tuple(int(d) for d in widths)
        if len(dims) != N + 1 or dims[0] != W.shape[1] or dims[-1] != W.shape[0] or min(dims[1:-1] or [r]) < r:
            raise ValueError(f"widths must be (d_x, d_1, ..., d_y) = ({W.shape[1]}, ..., {W.shape[0]}) with N+1 "
                             f"entries and hidden widths >= rank {r}, got {widths!r}")
    if N == 1:
        return [W.copy()]
    root = s[:r] ** (1.0 / N)
    out = []
    for j in range(1, N + 1):
        left = U[:, :r] if j == N else np.eye(dims[j])[:, :r]
        right = V[:, :r] if j == 1 else np.eye(dims[j - 1])[:, :r]
        out.append(np.ascontiguousarray((left * root) @ right.T))
    return out


def compress_widths(W: Sequence[np.ndarray], tol: float = 1e-10) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The same network with hidden widths reduced to the dimensions its hidden layers actually use.

    Hidden layer j (1 <= j <= N-1) is replaced by Q_j = an orthonormal basis of range(W_j) + range(W_{j+1}^T),
    and W_j by Q_j^T W_j Q_{j-1} (Q_0 = I, Q_N = I).  The gradient (3.2), grad_j = W_{N:j+1}^T G W_{j-1:1}^T,
    has its columns in range(W_{j+1}^T) and its rows in range(W_{j-1}), so it lies in Q_j x Q_{j-1}: GD and
    the gradient flow never leave these subspaces.  The compressed network has the same losses and products
    at every iteration (up to rounding), and the same nonzero Hessian spectrum at global minimisers (the
    removed directions are in the kernel of J there).

    Returns
    -------
    compressed : list of numpy.ndarray
        The compressed factors.
    bases : list of numpy.ndarray
        [Q_1, ..., Q_{N-1}] (W_j = Q_j W~_j Q_{j-1}^T expands them back).
    """
    mats = as_weights(W, "W")
    tol = positive_float(tol, "tol")
    N = len(mats)
    bases: list[np.ndarray] = []
    for j in range(N - 1):
        A = np.hstack([mats[j], mats[j + 1].T])
        U, s, _ = np.linalg.svd(A, full_matrices=False)
        k = int(np.sum(s > tol * max(s[0], 1e-300)))
        bases.append(U[:, : max(k, 1)])
    out = []
    for j in range(N):
        M = mats[j]
        if j < N - 1:
            M = bases[j].T @ M
        if j > 0:
            M = M @ bases[j - 1]
        out.append(np.ascontiguousarray(M))
    return out, bases


# --------------------------------------------------------------------------------------------------------
# the gradient-flow limit
# --------------------------------------------------------------------------------------------------------


#: why `flow_limit` stopped: status -> reason
FLOW_LIMIT_STATUS: dict[str, str] = {
    "converged": "the gradient norm is below gtol ||Y X^T||_F",
    "rounding_floor": "the gradient norm stopped decreasing at the level the integration resolves "
                      "(gradient_resolution)",
    "t_max": "the horizon t_max was reached before the gradient norm fell below gtol ||Y X^T||_F",
    "max_steps": "the integrator used up its step budget",
    "nonfinite": "the flow became non-finite (overflow)",
    "step_underflow": "the integrator's step fell below the resolution of t",
}


@dataclass(frozen=True)
class FlowLimit:
    """Result of `flow_limit`: the state of the gradient flow (2.2) at time ``t``.

    ``converged`` is True when ||grad L^N||_F <= gtol ||Y X^T||_F there; ``excess_loss`` is L^N - L*;
    ``balancedness`` is max_j ||W_{j+1}^T W_{j+1} - W_j W_j^T|| (conserved by the flow, (2.3)).
    ``status`` says why the integration stopped: ``converged``, ``rounding_floor`` (the gradient norm stopped
    decreasing at or below ``resolution``, the gradient the integration can resolve), ``t_max`` (the horizon
    was reached first; a slow flow), or a status of the integrator (``max_steps``, ``nonfinite``,
    ``step_underflow``); ``reason`` says it in words (`FLOW_LIMIT_STATUS`).
    """

    W: list[np.ndarray] = field(repr=False)
    t: float
    excess_loss: float
    grad_norm: float
    balancedness: float
    converged: bool
    status: str
    reason: str = ""
    resolution: float = math.nan


def gradient_resolution(problem: Problem, W: Sequence[np.ndarray], *, rtol: float = 1e-10,
                        atol: float = 1e-12) -> float:
    """The smallest gradient norm an integration of the flow with tolerances ``rtol``, ``atol`` resolves at W.

    lambda_hat x (rtol ||W||_F + atol sqrt(n) + 16 eps ||W||_F), n the number of entries of W, lambda_hat =
    ||X X^T||_2 sum_j prod_{l != j} s_l^2 + ||(W_{N:1} X - Y) X^T||_F sum_{i != j} prod_{l != i, j} s_l with
    s_l = ||W_l||_2, a bound of ||Hess L^N(W)||: a state error of the size the integrator allows (and
    rounding) moves the gradient by up to this much.  `flow_limit` calls a gradient that stops decreasing at
    or below it a rounding floor.
    """
    mats = as_weights(W, "W")
    s = [float(np.linalg.norm(M, 2)) for M in mats]
    N = len(s)

    def prod_except(*skip: int) -> float:
        return math.prod(v for i, v in enumerate(s) if i not in skip)

    product = mats[0]
    for M in mats[1:]:
        product = M @ product
    resid = float(np.linalg.norm(product @ problem.XXt - problem.YXt))
    lam = float(np.linalg.eigvalsh(problem.XXt)[-1]) * sum(prod_except(j) ** 2 for j in range(N))
    lam += resid * sum(prod_except(i, j) for i in range(N) for j in range(N) if i != j)
    norm = math.sqrt(sum(float(np.sum(M * M)) for M in mats))
    n = sum(M.size for M in mats)
    return lam * (rtol * norm + atol * math.sqrt(n) + 16 * np.finfo(float).eps * norm)


def flow_limit(problem: Problem, W0: Sequence[np.ndarray], *, t_first: float = 50.0, t_max: float = 1e4,
               gtol: float = 1e-8, rtol: float = 1e-10, atol: float = 1e-12) -> FlowLimit:
    """Integrate the factor gradient flow (2.2) from ``W0`` until it has converged, reached its rounding floor
    or the horizon ``t_max``.

    Integrates to ``t_first``, then on from the last state over spans as long as the time done so far
    (capped at ``t_max``), and stops

    - ``converged``: when ||grad L^N||_F <= ``gtol`` x ||Y X^T||_F;
    - ``rounding_floor``: when the gradient norm decreased by less than a factor 2 over the last span and is
      at or below `gradient_resolution` (the gradient a state error of the size the integrator allows can
      cause): integrating longer cannot lower it;
    - ``t_max``: at the horizon.  A gradient that decreases slowly above the resolution (a saddle plateau, a
      slow approach to a rank-deficient minimiser) is integrated on to here, never called a floor;
    - or when the integrator stops (``max_steps``, ``nonfinite``, ``step_underflow``, as in `dlnsim.run_flow`).

    Uses the Dormand-Prince integrator of `dlnsim.run_flow` with tolerances ``rtol``, ``atol``.

    Returns
    -------
    FlowLimit
        The factors at the final time, with the excess loss, the gradient norm, the balancedness, the status,
        its reason in words and the resolution of the gradient there.
    """
    from dlnsim.init import balancedness
    from dlnsim.objective import gradient, loss
    from dlnsim.options import Record, Tolerances
    from dlnsim.runs.flow import solve_flow

    problem = check_problem(problem)
    W = as_weights(W0, "W0")
    t_first = positive_float(t_first, "t_first")
    t_max = positive_float(t_max, "t_max")
    rtol, atol = positive_float(rtol, "rtol"), positive_float(atol, "atol")
    gtol = positive_float(gtol, "gtol") * max(float(np.linalg.norm(problem.YXt)), 1e-300)
    dims = [W[0].shape[1], *(M.shape[0] for M in W)]

    def gnorm(mats: list[np.ndarray]) -> float:
        return math.sqrt(sum(float(np.sum(g * g)) for g in gradient(problem, mats)))

    t_done, span, g_prev = 0.0, min(t_first, t_max), gnorm(W)
    status = "converged" if g_prev <= gtol else ""
    while not status:
        res = solve_flow(problem, W, [0.0, span], record=Record(diagnostics=False),
                         tolerances=Tolerances(rtol=rtol, atol=atol), save=[False, True])
        if res.status != "done" or res.states is None:
            status = res.status if res.status != "done" else "nonfinite"
            break
        flat, W, p = res.states[-1], [], 0
        for j in range(1, len(dims)):
            n = dims[j] * dims[j - 1]
            W.append(flat[p : p + n].reshape(dims[j], dims[j - 1]).copy())
            p += n
        t_done += span
        g = gnorm(W)
        if g <= gtol:
            status = "converged"
        elif g > 0.5 * g_prev and g <= gradient_resolution(problem, W, rtol=rtol, atol=atol):
            status = "rounding_floor"
        elif t_done >= t_max * (1 - 1e-12):
            status = "t_max"
        g_prev, span = g, min(t_done, t_max - t_done)
    g = gnorm(W)
    bal = float(np.max(balancedness(W))) if len(W) > 1 else 0.0
    return FlowLimit(W, t_done, loss(problem, W) - problem.lstar, g, bal, g <= gtol, status,
                     FLOW_LIMIT_STATUS.get(status, status), gradient_resolution(problem, W, rtol=rtol, atol=atol))
