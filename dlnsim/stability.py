"""Linear stability of gradient descent at the global minimisers of L^N: what sets the critical stepsize.

Near a minimiser W* of L^N, GD with a constant stepsize eta is the linear map v -> (I - eta H) v on the
deviation, H = Hess L^N(W*).  It is stable when the sharpness lambda_max(H) is at most 2/eta, so GD cannot
converge to a minimiser sharper than 2/eta (apart from a set of starts of measure zero).  This module gives
the sharpness of the minimisers, the minimiser the gradient flow reaches, and a critical-stepsize search
whose convergence criterion includes that stability condition.

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
singular values equal s, with P = V_r V_r^T the projector onto the row space of W:

    lambda_max(H) = s^{2-2/N} lambda_max( C^{1/2} (I + (N-1) P) C^{1/2} ),
    s^{2-2/N} max(lambda_max(C), N lambda_max(V_r^T C V_r))  <=  lambda_max(H)
                                                  <=  s^{2-2/N} (lambda_max(C) + (N-1) lambda_max(V_r^T C V_r)),

so eta = 2/lambda_max(H) falls like 1/N.  For N = 1 (linear regression) H = C (x) I and lambda_max = lambda_max(C).
The sharpness is the same at every balanced factorisation of W (they differ by orthogonal maps of the hidden
spaces), so it is a function of W and C alone.

Flatter, unbalanced minimisers (`flattest_minimum`)
---------------------------------------------------
With hidden widths r = rank W every minimiser with product W is W_{j:1} = M_j V_r^T, M_j in GL(r), and
T T^* Z = sum_j L_j Z R_j with L_j = U_r S Gamma_j^{-1} S U_r^T (L_N = I), R_{j+1} = V_r Gamma_j V_r^T
(R_1 = I), Gamma_j = M_j^T M_j, S = diag(s).  The balanced minimiser is Gamma_j = S^{2j/N}.  Unless
C is a multiple of the identity, other Gamma's give a smaller lambda_max; `flattest_minimum` minimises it
over Gamma_1, ..., Gamma_{N-1} (a local minimum, reached from the balanced point).

The flow limit (`flow_limit`)
-----------------------------
The gradient flow (2.2) conserves W_{j+1}^T W_{j+1} - W_j W_j^T (2.3), so from a balanced start it stays
balanced, and when it converges to a global minimiser that minimiser is balanced with product W_ls: its
sharpness is `balanced_minimum_sharpness`.  `flow_limit` integrates the flow to check this.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.optimize

from ._validate import as_matrix, as_weights, nonneg_int, positive_float
from .problem import Problem

__all__ = [
    "STABLE_CRITERION",
    "FlatMinimum",
    "FlowLimit",
    "StableCriticalStepsize",
    "balanced_factors",
    "balanced_minimum_sharpness",
    "compress_widths",
    "flattest_minimum",
    "flow_limit",
    "kappa",
    "stable_critical_stepsize",
]


def _check_problem(problem: Any) -> Problem:
    if not isinstance(problem, Problem):
        raise ValueError(f"problem must be a dlnsim.Problem, got {type(problem).__name__}")
    return problem


def _depth(N: Any) -> int:
    return nonneg_int(N, "N (depth)", minimum=1)


def _svd_rank(W: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    U, s, Vt = np.linalg.svd(W)
    tol = max(W.shape) * np.finfo(float).eps * (s[0] if s.size else 0.0) * 100.0
    return U, s, Vt.T, int(np.sum(s > tol))


def kappa(x: Any, y: Any, N: int) -> np.ndarray:
    """kappa_N(x, y) = sum_{j=1}^N x^{2(N-j)/N} y^{2(j-1)/N} (with 0^0 = 1): the eigenvalue of A_W (2.5) on
    u_a v_b^T for singular values x = s_a, y = s_b of W."""
    N = _depth(N)
    x, y = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
    out = np.zeros(x.shape)
    for j in range(1, N + 1):
        ex, ey = (N - j) / N, (j - 1) / N
        out += (np.ones_like(x) if ex == 0 else x ** (2 * ex)) * (np.ones_like(y) if ey == 0 else y ** (2 * ey))
    return out


def _critical_product(problem: Problem, product: Any, check: bool) -> np.ndarray:
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
    product : (d_y, d_x) array, optional
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
    problem = _check_problem(problem)
    N = _depth(N)
    C = np.asarray(problem.XXt)
    if N == 1:
        return float(np.linalg.eigvalsh(C)[-1])
    W = _critical_product(problem, product, check)
    _, s, V, r = _svd_rank(W)
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
    N = _depth(N)
    U, s, V, r = _svd_rank(W)
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
    (compressed, bases)
        The compressed factors and [Q_1, ..., Q_{N-1}] (W_j = Q_j W~_j Q_{j-1}^T expands them back).
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
# the flattest minimiser with a given product
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlatMinimum:
    """Result of `flattest_minimum`.

    Attributes
    ----------
    sharpness : float
        lambda_max of the Hessian at the flattest minimiser found.
    sharpness_balanced : float
        The same at the balanced minimiser (the start of the search).
    gammas : list of (r, r) arrays
        Gamma_j = W_{j:1}^T-Gram in the row basis of the product, j = 1..N-1 (balanced: S^{2j/N}).
    factors : list of arrays
        A minimiser with this sharpness, hidden widths r.
    """

    sharpness: float
    sharpness_balanced: float
    gammas: list[np.ndarray] = field(repr=False)
    factors: list[np.ndarray] = field(repr=False)


class _GaussNewton:
    """lambda(Gamma) and its gradient for the minimisers W_{j:1} = M_j V_r^T with Gamma_j = M_j^T M_j."""

    def __init__(self, C: np.ndarray, W: np.ndarray, N: int) -> None:
        U, s, V, r = _svd_rank(W)
        self.N, self.r, self.d = N, r, C.shape[0]
        self.U, self.V, self.S = U[:, :r], V[:, :r], np.diag(s[:r])
        w, q = np.linalg.eigh(C)
        self.C = C
        self.F = (q * np.sqrt(np.maximum(w, 0.0))) @ q.T @ self.V  # C^{1/2} V_r
        self.Cr = self.V.T @ C @ self.V
        w, q = np.linalg.eigh(self.Cr)
        self.Cr_half = (q * np.sqrt(np.maximum(w, 0.0))) @ q.T
        self.n_tri = r * (r + 1) // 2
        self.tri = np.tril_indices(r)
        self.diag_pos = np.array([i for i, (a, b) in enumerate(zip(*self.tri, strict=True)) if a == b])

    def unpack(self, x: np.ndarray) -> np.ndarray:
        """Cholesky factors L_j (N-1, r, r), log-parametrised diagonals."""
        v = x.reshape(self.N - 1, self.n_tri).copy()
        v[:, self.diag_pos] = np.exp(v[:, self.diag_pos])
        Ls = np.zeros((self.N - 1, self.r, self.r))
        Ls[:, self.tri[0], self.tri[1]] = v
        return Ls

    def pack(self, gammas: Sequence[np.ndarray]) -> np.ndarray:
        out = []
        for G in gammas:
            L = np.linalg.cholesky(G)
            v = L[self.tri].copy()
            v[self.diag_pos] = np.log(v[self.diag_pos])
            out.append(v)
        return np.concatenate(out)

    def spectra(self, gam: np.ndarray, n_top: int | None = None) -> tuple[
            np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """For Gamma_1..Gamma_{N-1} stacked in ``gam`` (N-1, r, r): the eigenpairs of the block of rows in
        range(U) (the top ``n_top``; all when None), those of the other rows, and A_1..A_N stacked.
        H_U = A_1 (x) C + (I (x) F) K (I (x) F)^T with K = sum_{j>=2} A_j (x) Gamma_{j-1}."""
        r = self.r
        As = np.concatenate([self.S @ np.linalg.solve(gam, np.broadcast_to(self.S, gam.shape)),
                             np.eye(r)[None]])
        K = np.einsum("jab,jkl->akbl", As[1:], gam).reshape(r * r, r * r)
        GF = np.kron(np.eye(r), self.F)
        H = np.kron(As[0], self.C) + GF @ K @ GF.T
        n = H.shape[0]
        if n_top is None or n_top >= n:
            e, Q = np.linalg.eigh(H)
        else:
            e, Q = scipy.linalg.eigh(H, subset_by_index=[n - n_top, n - 1])
        e2, Q2 = np.linalg.eigh(self.Cr_half @ gam[-1] @ self.Cr_half)  # other rows: only j = N
        return e, Q, e2, Q2, As

    def lam(self, gam: np.ndarray) -> float:
        e, _, e2, _, _ = self.spectra(np.asarray(gam), 1)
        return float(max(e[-1], e2[-1]))

    def gammas(self, x: np.ndarray) -> np.ndarray:
        Ls = self.unpack(x)
        out: np.ndarray = Ls @ np.swapaxes(Ls, 1, 2)
        return out

    def soft(self, x: np.ndarray, tau: float, n_top: int) -> tuple[float, np.ndarray]:
        """tau log sum exp(lambda_i / tau) over the top eigenvalues, and its gradient in x."""
        Ls = self.unpack(x)
        gam = Ls @ np.swapaxes(Ls, 1, 2)
        e, Q, e2, Q2, As = self.spectra(gam, n_top)
        allv = np.concatenate([e, e2])
        top = allv.max()
        wts = np.exp((allv - top) / tau)
        Z = wts.sum()
        f = top + tau * math.log(Z)
        wts /= Z
        r, d = self.r, self.d
        Qw = Q * np.sqrt(wts[: e.size])
        Qr = Qw.T.reshape(-1, r, d)  # eigenvectors as r x d matrices
        QF = Qr @ self.F  # (n_top, r, r)
        PK = np.einsum("nak,nbl->akbl", QF, QF)  # (I (x) F)^T Pi (I (x) F)
        gA = np.empty_like(As[:-1])
        gA[0] = np.einsum("nai,ij,nbj->ab", Qr, self.C, Qr, optimize=True)
        gA[1:] = np.einsum("akbl,jkl->jab", PK, gam[:-1])
        gG = np.einsum("akbl,jab->jkl", PK, As[1:])
        Gi = np.linalg.inv(gam)
        gG -= Gi @ self.S @ gA @ self.S @ Gi  # A_j = S Gamma_j^{-1} S
        gG[-1] += self.Cr_half @ ((Q2 * wts[e.size :]) @ Q2.T) @ self.Cr_half
        dL = (gG + np.swapaxes(gG, 1, 2)) @ Ls
        v = dL[:, self.tri[0], self.tri[1]]
        v[:, self.diag_pos] *= Ls[:, self.tri[0], self.tri[1]][:, self.diag_pos]
        return f, v.ravel()

    def factors(self, gammas: Sequence[np.ndarray]) -> list[np.ndarray]:
        Ms = [np.linalg.cholesky(G).T for G in gammas]  # M_j with M_j^T M_j = Gamma_j
        out = [Ms[0] @ self.V.T]
        for j in range(1, self.N - 1):
            out.append(Ms[j] @ np.linalg.inv(Ms[j - 1]))
        out.append(self.U @ self.S @ np.linalg.inv(Ms[-1]))
        return out


def flattest_minimum(
    problem: Problem, N: int, product: Any = None, *, taus: Sequence[float] = (1e-2, 1e-4),
    maxiter: int = 500, ftol: float = 1e-10, n_top: int = 12, check: bool = True,
) -> FlatMinimum:
    """The flattest minimiser of L^N with a given product, hidden widths r = rank of the product.

    Minimises lambda_max(Hess L^N) over the minimisers W_{j:1} = M_j V_r^T (Gamma_j = M_j^T M_j, module
    docstring) by L-BFGS on the smoothed maximum tau log sum_i exp(lambda_i/tau), for the decreasing
    temperatures ``taus``, from the balanced minimiser.  The Hessian's nonzero spectrum is that of the
    r d_x x r d_x matrix A_1 (x) C + (I (x) F) K (I (x) F)^T (rows of the product in range(U); F = C^{1/2} V_r,
    K = sum_{j>=2} A_j (x) Gamma_{j-1}) and of Gamma_{N-1}^{1/2} V_r^T C V_r Gamma_{N-1}^{1/2} (the other
    rows).  The result is a local minimum of the sharpness on the set of minimisers; it is never sharper
    than the balanced one.

    Parameters
    ----------
    problem, N, product, check
        As in `balanced_minimum_sharpness` (product default ``problem.W_ls``).
    taus : sequence of float
        Temperatures of the smoothed maximum, relative to the balanced sharpness.
    maxiter, ftol : int, float
        L-BFGS iterations per temperature and its relative tolerance on the objective.
    n_top : int
        Number of top eigenvalues in the smoothed maximum.
    """
    problem = _check_problem(problem)
    N = _depth(N)
    W = _critical_product(problem, product, check)
    lam_bal = balanced_minimum_sharpness(problem, N, W, check=False)
    if N == 1:
        return FlatMinimum(lam_bal, lam_bal, [], [W.copy()])
    gn = _GaussNewton(np.asarray(problem.XXt), W, N)
    gam0 = [np.diag(np.diag(gn.S) ** (2.0 * j / N)) for j in range(1, N)]
    x = gn.pack(gam0)
    best_x, best = x, gn.lam(np.array(gam0))
    for tau in taus:
        res = scipy.optimize.minimize(gn.soft, x, args=(float(tau) * lam_bal, n_top), jac=True,
                                      method="L-BFGS-B", options={"maxiter": int(maxiter), "gtol": 1e-12,
                                                                  "ftol": float(ftol)})
        x = res.x
        lam = gn.lam(gn.gammas(x))
        if lam < best:
            best_x, best = x, lam
    gam = list(gn.gammas(best_x))
    return FlatMinimum(float(best), float(lam_bal), gam, gn.factors(gam))


# --------------------------------------------------------------------------------------------------------
# the gradient-flow limit
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlowLimit:
    """Result of `flow_limit`: the state of the gradient flow (2.2) at time ``t``.

    ``converged`` is True when ||grad L^N||_F <= gtol ||Y X^T||_F there; ``excess_loss`` is L^N - L*;
    ``balancedness`` is max_j ||W_{j+1}^T W_{j+1} - W_j W_j^T|| (conserved by the flow, (2.3)).
    """

    W: list[np.ndarray] = field(repr=False)
    t: float
    excess_loss: float
    grad_norm: float
    balancedness: float
    converged: bool
    status: str


def flow_limit(problem: Problem, W0: Sequence[np.ndarray], *, t_first: float = 50.0, t_max: float = 1e4,
               gtol: float = 1e-8, rtol: float = 1e-10, atol: float = 1e-12) -> FlowLimit:
    """Integrate the factor gradient flow (2.2) from ``W0`` until it has converged.

    Integrates to ``t_first``, then on from the last state over spans as long as the time done so far,
    until ||grad L^N||_F <= ``gtol`` x ||Y X^T||_F, until the gradient stops decreasing (by less than a factor
    2 over a span: the rounding floor of the integrator), or until ``t_max``.  Uses the Dormand-Prince
    integrator of `dlnsim.run_flow` with tolerances ``rtol``, ``atol``.

    Returns
    -------
    FlowLimit
        The factors at the final time, with the excess loss, the gradient norm and the balancedness.
    """
    from .flow import solve_flow
    from .init import balancedness
    from .objective import gradient, loss

    problem = _check_problem(problem)
    W = as_weights(W0, "W0")
    t_first = positive_float(t_first, "t_first")
    t_max = positive_float(t_max, "t_max")
    gtol = positive_float(gtol, "gtol") * max(float(np.linalg.norm(problem.YXt)), 1e-300)
    dims = [W[0].shape[1], *(M.shape[0] for M in W)]

    def gnorm(mats: list[np.ndarray]) -> float:
        return math.sqrt(sum(float(np.sum(g * g)) for g in gradient(problem, mats)))

    t_done, span, status, g_prev = 0.0, t_first, "done", gnorm(W)
    while True:
        res = solve_flow(problem, W, [0.0, span], rtol, atol, diagnostics=False, save=[False, True])
        status = res.status
        if status != "done" or res.states is None:
            break
        flat, W, p = res.states[-1], [], 0
        for j in range(1, len(dims)):
            n = dims[j] * dims[j - 1]
            W.append(flat[p : p + n].reshape(dims[j], dims[j - 1]).copy())
            p += n
        t_done += span
        g = gnorm(W)
        if g <= gtol or t_done >= t_max or g > 0.5 * g_prev:
            break
        g_prev, span = g, min(t_done, t_max - t_done)
    g = gnorm(W)
    bal = float(np.max(balancedness(W))) if len(W) > 1 else 0.0
    return FlowLimit(W, t_done, loss(problem, W) - problem.lstar, g, bal, g <= gtol, status)


# --------------------------------------------------------------------------------------------------------
# critical stepsize with a linear-stability criterion
# --------------------------------------------------------------------------------------------------------

STABLE_CRITERION = (
    "converged: run_gd reports 'converged' within n_iter steps (L - L* <= ltol (L(0) - L*) or "
    "||grad L||_F <= gtol x gradient scale; runs stop there) and the point where it stopped is linearly "
    "stable, lambda_max(Hess L^N) <= 2/eta (Lanczos); a run that stops at a point sharper than 2/eta is "
    "'unstable_limit' (GD would leave it once the unstable mode grows from rounding level), not converged; "
    "otherwise 'not_converged' or 'diverged'"
)


@dataclass(frozen=True)
class StableCriticalStepsize:
    """Result of `stable_critical_stepsize`.

    Attributes
    ----------
    eta_crit, eta_lo, eta_hi : float
        Largest converging stepsize found (= eta_lo) and the failing one above it (NaN when not found).
    status : str
        ``ok``, ``no_converging_eta`` or ``no_failing_eta``.
    trial_eta, trial_outcome, trial_final_loss, trial_stop_iteration, trial_sharpness : tuples
        Every run of the search in order; outcomes ``converged``, ``not_converged``, ``unstable_limit``,
        ``diverged``; ``trial_sharpness`` is lambda_max at the point where a converged run stopped (NaN
        for the other runs).
    initial_loss : float
        L(0).
    limit_weights : list of arrays or None
        The factors where the run at ``eta_lo`` stopped.
    criterion : str
        `STABLE_CRITERION`.
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


def stable_critical_stepsize(
    problem: Problem, W0: Sequence[np.ndarray], *, n_iter: int, bracket: Sequence[float], ltol: float = 1e-12,
    gtol: float = 1e-8, rtol: float = 0.002, factor: float = 1.02, max_expand: int = 60, blowup: float = 1e8,
    bound: Any = None, sharpness_tol: float = 1e-10,
) -> StableCriticalStepsize:
    """The critical constant stepsize of GD from ``W0``, with linear stability in the criterion.

    The search is that of `dlnsim.critical_stepsize`: from ``bracket[0]`` walk by ``factor`` (up while the
    runs are merely too slow, down while they fail otherwise) until a stepsize converges, then up from
    ``bracket[1]`` until one fails, then bisect in log space until eta_hi/eta_lo <= 1 + rtol.  The criterion
    is `STABLE_CRITERION`.  Without its stability check a run can stop at a linearly unstable minimiser
    before the unstable mode has grown from rounding level, and such a stepsize would count as converging.

    Parameters
    ----------
    problem, W0
        The data and the start.
    n_iter : int
        GD steps per trial run (the horizon).
    bracket : (float, float)
        Absolute stepsizes (lo, hi), 0 < lo < hi; a tight bracket around 2/sharpness saves trials.
    ltol, gtol : float
        The convergence tests of `dlnsim.run_gd` (relative excess loss; gradient norm relative to the
        gradient scale of the problem); runs stop at the first iteration passing one.
    rtol, factor, max_expand : float, float, int
        Final relative width of the bracket, walk factor (> 1), largest number of steps of each walk.
    blowup, bound
        Passed to `dlnsim.run_gd`.
    sharpness_tol : float
        Relative residual of the Lanczos iteration (`dlnsim.sharpness`) of the stability check.
    """
    import dlnsim  # public names; the package imports this module only on demand

    problem = _check_problem(problem)
    W0 = as_weights(W0, "W0")
    n_iter = nonneg_int(n_iter, "n_iter", minimum=1)
    try:
        lo, hi = (positive_float(b, "bracket") for b in bracket)
    except (TypeError, ValueError):
        raise ValueError(f"bracket must be two positive numbers (lo, hi) with lo < hi, got {bracket!r}") from None
    if not lo < hi:
        raise ValueError(f"bracket must be two positive numbers (lo, hi) with lo < hi, got {bracket!r}")
    ltol = positive_float(ltol, "ltol")
    gtol = positive_float(gtol, "gtol")
    rtol = positive_float(rtol, "rtol")
    factor = positive_float(factor, "factor")
    if factor <= 1.0:
        raise ValueError(f"factor must be > 1, got {factor!r}")
    max_expand = nonneg_int(max_expand, "max_expand")
    sharpness_tol = positive_float(sharpness_tol, "sharpness_tol")
    rows: list[tuple[float, str, float, int, float]] = []
    finals: dict[float, list[np.ndarray]] = {}
    initial = math.nan

    def converges(eta: float) -> bool:
        nonlocal initial
        ds = dlnsim.run_gd(problem, W0, eta, n_iter, [0], diagnostics=False, gtol=gtol, ltol=ltol,
                           stop_early=True, blowup=blowup, bound=bound, keep_weights=True)
        a = ds.attrs
        initial = float(a["initial_loss"])
        lam = math.nan
        if a["status"] == "diverged":
            outcome = "diverged"
        elif a["status"] == "converged":
            W = dlnsim.weights_from(ds)
            lam = dlnsim.sharpness(problem, W, iters=400, tol=sharpness_tol)
            outcome = "converged" if lam * eta <= 2.0 else "unstable_limit"
            finals[eta] = W
        else:
            outcome = "not_converged"
        rows.append((eta, outcome, float(a["final_loss"]), int(a["stop_iteration"]), lam))
        return outcome == "converged"

    def final_loss() -> float:
        _, outcome, final, _, _ = rows[-1]
        return final if outcome == "not_converged" and math.isfinite(final) else math.inf

    L: float | None = None
    U: float | None = None
    x = lo
    if converges(x):
        L = x
    elif rows[-1][1] == "not_converged" and final_loss() < initial:
        for _ in range(max_expand):  # too slow: walk up
            prev = final_loss()
            x *= factor
            if converges(x):
                L = x
                break
            if final_loss() >= prev:  # no better than the smaller stepsize: none converges in time
                U = x
                break
    else:
        for _ in range(max_expand):  # too large: walk down
            U = x
            x /= factor
            if converges(x):
                L = x
                break
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
    if L is not None and U is not None:
        while L * (1.0 + rtol) < U:  # bisection in log space
            mid = math.sqrt(L * U)
            if converges(mid):
                L = mid
            else:
                U = mid
    eta_lo = math.nan if L is None else L
    eta_hi = math.nan if U is None else U
    cols = list(zip(*rows, strict=True))
    return StableCriticalStepsize(
        eta_lo, eta_lo, eta_hi, status, tuple(cols[0]), tuple(cols[1]), tuple(cols[2]), tuple(cols[3]),
        tuple(cols[4]), initial, finals.get(L) if L is not None else None,
    )
