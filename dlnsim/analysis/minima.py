"""The flattest global minimiser of L^N with a given product: how far below the balanced one its sharpness goes.

Notation as in `dlnsim.analysis.stability`: W = U diag(s) V^T is the product, r = rank W, C = X X^T, and the nonzero
Hessian spectrum at a global minimiser is that of T T^* composed with Z -> Z C.  With hidden widths r every
minimiser with product W is W_{j:1} = M_j V_r^T, M_j in GL(r), and
T T^* Z = sum_j L_j Z R_j with L_j = U_r S Gamma_j^{-1} S U_r^T (L_N = I), R_{j+1} = V_r Gamma_j V_r^T
(R_1 = I), Gamma_j = M_j^T M_j, S = diag(s).  The balanced minimiser is Gamma_j = S^{2j/N}.  Unless
C is a multiple of the identity, other Gamma's give a smaller lambda_max; `flattest_minimum` minimises it
over Gamma_1, ..., Gamma_{N-1} (a local minimum, reached from the balanced point).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.linalg
import scipy.optimize

from dlnsim.analysis.stability import (
    balanced_minimum_sharpness,
    check_problem,
    checked_depth,
    critical_product,
    svd_rank,
)
from dlnsim.problem import Problem

__all__ = ["FlatMinimum", "flattest_minimum"]


@dataclass(frozen=True)
class FlatMinimum:
    """Result of `flattest_minimum`.

    Attributes
    ----------
    sharpness : float
        lambda_max of the Hessian at the flattest minimiser found.
    sharpness_balanced : float
        The same at the balanced minimiser (the start of the search).
    gammas : list of numpy.ndarray
        Gamma_j, of shape (r, r): W_{j:1}^T-Gram in the row basis of the product, j = 1..N-1 (balanced:
        S^{2j/N}).
    factors : list of numpy.ndarray
        A minimiser with this sharpness, hidden widths r.
    """

    sharpness: float
    sharpness_balanced: float
    gammas: list[np.ndarray] = field(repr=False)
    factors: list[np.ndarray] = field(repr=False)


class _GaussNewton:
    """lambda(Gamma) and its gradient for the minimisers W_{j:1} = M_j V_r^T with Gamma_j = M_j^T M_j."""

    def __init__(self, C: np.ndarray, W: np.ndarray, N: int) -> None:
        U, s, V, r = svd_rank(W)
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
        As in `dlnsim.analysis.stability.balanced_minimum_sharpness` (product default ``problem.W_ls``).
    taus : sequence of float
        Temperatures of the smoothed maximum, relative to the balanced sharpness.
    maxiter, ftol : int, float
        L-BFGS iterations per temperature and its relative tolerance on the objective.
    n_top : int
        Number of top eigenvalues in the smoothed maximum.
    """
    problem = check_problem(problem)
    N = checked_depth(N)
    W = critical_product(problem, product, check)
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
