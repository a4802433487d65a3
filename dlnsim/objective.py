"""The objective L^N and its derivatives at one point, for checks and diagnostics.

    L^N(W)      = 1/2 ||Y - W_N ... W_1 X||_F^2
    (3.2)       grad_j L^N = W_{N:j+1}^T (W X X^T - Y X^T) W_{j-1:1}^T
    Hessian     <V, H V> = ||sum_i W_{N:i+1} V_i W_{i-1:1} X||_F^2
                          + 2 sum_{j<i} <W X - Y, W_{N:i+1} V_i W_{i-1:j+1} V_j W_{j-1:1} X>_F

`loss` and `gradient` call the same Numba kernel as gradient descent.  `hessian_vector_product` is the
closed-form directional derivative of (3.2):

    (H V)_j = dS_j^T G P_{j-1}^T + S_j^T (dW C) P_{j-1}^T + S_j^T G dP_{j-1}^T,

with S_j = W_{N:j+1}, P_j = W_{j:1}, G = W C - E, dW = sum_i S_i V_i P_{i-1},
dS_j = sum_{i>j} S_i V_i W_{i-1:j+1}, dP_{j-1} = sum_{i<j} W_{j-1:i+1} V_i P_{i-1}.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dlnsim._kernels.linalg import _loss_grad, workspace_size
from dlnsim.checks import as_weights
from dlnsim.problem import Problem

__all__ = ["gradient", "hessian_form", "hessian_vector_product", "loss", "product"]


def flat_layout(W: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    dims = np.array([W[0].shape[1], *(Wj.shape[0] for Wj in W)], dtype=np.int64)
    offs = np.concatenate([[0], np.cumsum(dims[1:] * dims[:-1])]).astype(np.int64)
    w = np.concatenate([np.ascontiguousarray(Wj, dtype=np.float64).ravel() for Wj in W])
    return w, dims, offs, int(np.argmin(dims))


def unflatten(w: np.ndarray, dims: np.ndarray) -> list[np.ndarray]:
    out, p = [], 0
    for j in range(1, len(dims)):
        n = int(dims[j] * dims[j - 1])
        out.append(w[p : p + n].reshape(int(dims[j]), int(dims[j - 1])).copy())
        p += n
    return out


def checked_weights(problem: Problem, W: Sequence[np.ndarray], name: str = "W") -> list[np.ndarray]:
    if not isinstance(problem, Problem):
        raise ValueError(f"problem must be a dlnsim.Problem, got {type(problem).__name__}")
    mats = as_weights(W, name)
    if mats[0].shape[1] != problem.d_x or mats[-1].shape[0] != problem.d_y:
        raise ValueError(
            f"{name} does not fit the problem: the product is {mats[-1].shape[0]} x {mats[0].shape[1]}, "
            f"expected d_y x d_x = {problem.d_y} x {problem.d_x}"
        )
    return mats


def product(W: Sequence[np.ndarray], i: int | None = None, j: int = 1) -> np.ndarray:
    """W_{i:j} = W_i W_{i-1} ... W_j (1-based; i defaults to N); the identity when i < j.

    Parameters
    ----------
    W : sequence of numpy.ndarray
        The factors [W_1, ..., W_N] (not checked).
    i : int, optional
        Index of the leftmost factor, 1-based; default N.
    j : int, default 1
        Index of the rightmost factor, 1-based.

    Returns
    -------
    numpy.ndarray
        W_{i:j}, of shape (d_i, d_{j-1}); for i < j the identity of size d_{j-1} (d_N when j > N).  For
        i >= j the result is ``W[j - 1]`` itself (not a copy) when i == j.
    """
    n = len(W)
    i = n if i is None else i
    if i < j:
        return np.eye(W[j - 1].shape[1] if j <= n else W[-1].shape[0])
    out = W[j - 1]
    for k in range(j, i):
        out = W[k] @ out
    return out


def loss(problem: Problem, W: Sequence[np.ndarray]) -> float:
    """L^N(W_1, ..., W_N) = 1/2 ||Y - W_N ... W_1 X||_F^2.

    Evaluated by the gradient-descent kernel as L* plus the excess loss (docs/theory.md#how-dlnsim-evaluates-the-loss).

    Parameters
    ----------
    problem : Problem
        The data X, Y.
    W : sequence of array_like
        The factors [W_1, ..., W_N], W_j of shape (d_j, d_{j-1}), with d_0 = d_x and d_N = d_y.

    Returns
    -------
    float
        The loss.

    Raises
    ------
    ValueError
        If ``problem`` is not a `Problem`, or ``W`` is not a non-empty list of real, finite 2-D matrices with
        chained shapes whose product is d_y x d_x.
    """
    mats = checked_weights(problem, W)
    w, dims, offs, b = flat_layout(mats)
    g = np.empty_like(w)
    ws = np.empty(workspace_size(dims, b))
    return problem.lstar + float(_loss_grad(w, dims, offs, b, problem.Rt, problem.F, g, ws))


def gradient(problem: Problem, W: Sequence[np.ndarray]) -> list[np.ndarray]:
    """[grad_{W_1} L^N, ..., grad_{W_N} L^N] by (3.2), from the GD kernel.

    Parameters
    ----------
    problem : Problem
        The data X, Y.
    W : sequence of array_like
        The factors [W_1, ..., W_N], W_j of shape (d_j, d_{j-1}), with d_0 = d_x and d_N = d_y.

    Returns
    -------
    list of numpy.ndarray
        The N gradients, the j-th of the shape of W_j.

    Raises
    ------
    ValueError
        If ``problem`` is not a `Problem`, or ``W`` is not a non-empty list of real, finite 2-D matrices with
        chained shapes whose product is d_y x d_x.
    """
    mats = checked_weights(problem, W)
    w, dims, offs, b = flat_layout(mats)
    g = np.empty_like(w)
    _loss_grad(w, dims, offs, b, problem.Rt, problem.F, g, np.empty(workspace_size(dims, b)))
    return unflatten(g, dims)


def hessian_form(problem: Problem, W: Sequence[np.ndarray], V: Sequence[np.ndarray]) -> float:
    """<V, Hess L^N(W) V> by the closed formula of the proof of Prop. 3.4.

    Parameters
    ----------
    problem : Problem
        The data X, Y.
    W : sequence of array_like
        The factors [W_1, ..., W_N], W_j of shape (d_j, d_{j-1}), with d_0 = d_x and d_N = d_y.
    V : sequence of array_like
        The direction [V_1, ..., V_N], V_j of the shape of W_j.

    Returns
    -------
    float
        The quadratic form of the Hessian at ``W`` in the direction ``V``.

    Raises
    ------
    ValueError
        If ``problem`` is not a `Problem`, ``W`` is not a non-empty list of real, finite 2-D matrices with
        chained shapes whose product is d_y x d_x, or ``V`` does not have the same widths as ``W``.
    """
    mats = checked_weights(problem, W)
    dirs = as_weights(V, "V", widths=(mats[0].shape[1], *(M.shape[0] for M in mats)))
    n = len(mats)
    X, Y = problem.X, problem.Y
    R = product(mats) @ X - Y
    first = sum(product(mats, n, i + 1) @ dirs[i - 1] @ product(mats, i - 1, 1) @ X for i in range(1, n + 1))
    val = float(np.sum(first * first))
    for i in range(1, n + 1):
        for j in range(1, i):
            term = product(mats, n, i + 1) @ dirs[i - 1] @ product(mats, i - 1, j + 1) @ dirs[j - 1] \
                @ product(mats, j - 1, 1) @ X
            val += 2.0 * float(np.sum(R * term))
    return val


def hessian_vector_product(
    problem: Problem, W: Sequence[np.ndarray], V: Sequence[np.ndarray]
) -> list[np.ndarray]:
    """Hess L^N(W) applied to the direction V = (V_1, ..., V_N), in closed form.

    Parameters
    ----------
    problem : Problem
        The data X, Y.
    W : sequence of array_like
        The factors [W_1, ..., W_N], W_j of shape (d_j, d_{j-1}), with d_0 = d_x and d_N = d_y.
    V : sequence of array_like
        The direction [V_1, ..., V_N], V_j of the shape of W_j.

    Returns
    -------
    list of numpy.ndarray
        [(H V)_1, ..., (H V)_N], the j-th of the shape of W_j.

    Raises
    ------
    ValueError
        If ``problem`` is not a `Problem`, ``W`` is not a non-empty list of real, finite 2-D matrices with
        chained shapes whose product is d_y x d_x, or ``V`` does not have the same widths as ``W``.
    """
    mats = checked_weights(problem, W)
    dirs = as_weights(V, "V", widths=(mats[0].shape[1], *(M.shape[0] for M in mats)))
    n = len(mats)
    C, E = problem.XXt, problem.YXt
    S = [product(mats, n, j + 1) for j in range(n + 1)]  # S[j] = W_{N:j+1}
    P = [product(mats, j, 1) for j in range(n + 1)]  # P[j] = W_{j:1}
    G = P[n] @ C - E
    dW = sum(S[i] @ dirs[i - 1] @ P[i - 1] for i in range(1, n + 1))
    dG = dW @ C
    out = []
    for j in range(1, n + 1):
        dS = sum((S[i] @ dirs[i - 1] @ product(mats, i - 1, j + 1) for i in range(j + 1, n + 1)),
                 np.zeros_like(S[j]))
        dP = sum((product(mats, j - 1, i + 1) @ dirs[i - 1] @ P[i - 1] for i in range(1, j)),
                 np.zeros_like(P[j - 1]))
        out.append(dS.T @ G @ P[j - 1].T + S[j].T @ dG @ P[j - 1].T + S[j].T @ G @ dP.T)
    return out
