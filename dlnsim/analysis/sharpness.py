"""The sharpness: the largest eigenvalue of the Hessian of L^N at a point.

GD with a constant stepsize eta is stable near a minimum only when the sharpness is at most 2/eta.  It is
computed by Lanczos with full reorthogonalisation on exact Hessian-vector products (the closed form of the
Numba flow kernels, the same one the modified flow uses).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import scipy.linalg

from dlnsim._kernels import flow as _fk
from dlnsim._kernels.flow_point import _point
from dlnsim.checks import nonneg_int, positive_float
from dlnsim.objective import checked_weights, flat_layout
from dlnsim.problem import Problem

__all__ = ["sharpness"]


def _hvp_fn(problem: Problem, w: np.ndarray, dims: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """v -> Hess L^N(w) v (closed form, Numba)."""
    w = np.ascontiguousarray(w, dtype=np.float64)
    offs = np.concatenate([[0], np.cumsum(dims[1:] * dims[:-1])]).astype(np.int64)
    pivot = int(np.argmin(dims))

    def hvp(v: np.ndarray) -> np.ndarray:
        out = np.empty_like(w)
        _point(_fk.HVP, w, np.ascontiguousarray(v, dtype=np.float64), dims, offs, pivot, problem.Rt,
                   problem.F, 0.0, 0, out)
        return out

    return hvp


def sharpness_flat(
    problem: Problem, w: np.ndarray, dims: np.ndarray, iters: int, tol: float, seed: int
) -> tuple[float, int, bool]:
    """Largest eigenvalue of Hess L^N(w) by Lanczos with full reorthogonalisation (twice) on exact HVPs.

    Stops when the residual bound beta_k |s_k| of the top Ritz pair is <= tol * |theta|, when an invariant
    subspace is found, or after ``iters`` (<= len(w)) vectors.  Returns (theta, iterations, converged).
    """
    hvp = _hvp_fn(problem, w, dims)
    n = w.size
    m = min(iters, n)
    q = np.zeros((m + 1, n))
    v0 = np.random.default_rng(seed).standard_normal(n)
    q[0] = v0 / np.linalg.norm(v0)
    alpha = np.zeros(m)
    beta = np.zeros(m + 1)
    theta = 0.0
    for k in range(m):
        r = hvp(q[k])
        alpha[k] = float(r @ q[k])
        r -= alpha[k] * q[k]
        if k > 0:
            r -= beta[k] * q[k - 1]
        for _ in range(2):  # full reorthogonalisation, twice
            r -= q[: k + 1].T @ (q[: k + 1] @ r)
        b = float(np.linalg.norm(r))
        beta[k + 1] = b
        ev, evec = scipy.linalg.eigh_tridiagonal(alpha[: k + 1], beta[1 : k + 1])
        theta = float(ev[-1])
        scale = max(abs(theta), np.finfo(float).tiny)
        if b * abs(evec[-1, -1]) <= tol * scale or b <= 1e-14 * scale:
            return theta, k + 1, True
        q[k + 1] = r / b
    return theta, m, m == n


def sharpness(
    problem: Problem, W: Sequence[np.ndarray], iters: int = 100, tol: float = 1e-10, seed: int = 0
) -> float:
    """The largest eigenvalue of Hess L^N(W) (the "sharpness"; GD with constant eta is stable near a
    minimum only when it is <= 2/eta).

    Lanczos with full reorthogonalisation on exact Hessian-vector products (closed form, Numba), from a
    random start drawn with ``seed``; stops when the residual of the top Ritz pair is <= ``tol`` times the
    eigenvalue, or after ``iters`` iterations (exact after len(w) iterations).  See
    docs/theory.md#the-hessian-and-the-sharpness.

    Parameters
    ----------
    problem : Problem
        The data X, Y.
    W : sequence of array_like
        The factors [W_1, ..., W_N], W_j of shape (d_j, d_{j-1}), with d_0 = d_x and d_N = d_y.
    iters : int, default 100
        Maximum number of Lanczos iterations (>= 1; capped at the number of parameters, len(w)).
    tol : float, default 1e-10
        Relative residual tolerance of the top Ritz pair; finite and > 0.
    seed : int, default 0
        Seed (>= 0) of the random Lanczos start vector.

    Returns
    -------
    float
        The top Ritz value, an estimate of the largest Hessian eigenvalue (returned also when the iteration
        stops at ``iters`` without meeting ``tol``).

    Raises
    ------
    ValueError
        If ``problem`` is not a `Problem`, ``W`` is not a non-empty list of real, finite 2-D matrices with
        chained shapes whose product is d_y x d_x, ``iters`` is not an integer >= 1, ``tol`` is not finite and
        > 0, or ``seed`` is not an integer >= 0.
    """
    mats = checked_weights(problem, W, "W")
    iters = nonneg_int(iters, "iters", minimum=1)
    tol = positive_float(tol, "tol")
    seed = nonneg_int(seed, "seed")
    w, dims, _, _ = flat_layout(mats)
    return sharpness_flat(problem, w, dims, iters, tol, seed)[0]
