"""Initialisations W(0) = (W_1, ..., W_N), W_j of shape (d_j, d_{j-1}); all randomness from a passed Generator.

Balanced ((2.4) and Section 5).  With Haar-orthogonal U_1 in O(d_0), V_j in O(d_j) and s = min_j d_j,

    W_1 = c V_1[:, :s] U_1[:, :s]^T,     W_j = c V_j[:, :s] V_{j-1}[:, :s]^T   (j = 2..N),

so W_{j+1}^T W_{j+1} = c^2 V_j[:, :s] V_j[:, :s]^T = W_j W_j^T exactly (up to rounding).  For the paper's
widths (d_1 = s) this is the text's W_j = V_j I_{d_j, d_1} U_j^T with U_j the first d_1 columns of V_{j-1}.
Every factor has s singular values c, the product has s singular values c^N.  Draw order: U_1, V_1, ..., V_N.

Prescribed balancedness (Theorem 2.4 with alpha > 0).  `perturbed_init` moves W_1 of a balanced tuple along a
random direction P, W_1 -> W_1 + eps P, with eps >= 0 solved so that the balancedness constant
max_j ||W_{j+1}^T W_{j+1} - W_j W_j^T|| equals the requested value exactly (only the pair j = 1 changes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.optimize

from dlnsim.checks import as_weights, as_widths, nonneg_int, positive_float

__all__ = ["balanced_init", "balancedness", "gaussian_init", "haar_orthogonal", "perturbed_init"]


def _check_rng(rng: Any) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise ValueError(
            f"rng must be a numpy.random.Generator (e.g. numpy.random.default_rng(seed)), got {type(rng).__name__}"
        )
    return rng


def haar_orthogonal(n: int, rng: np.random.Generator) -> np.ndarray:
    """A Haar-distributed orthogonal n x n matrix (QR of a Gaussian matrix with the sign fix of Mezzadri).

    Parameters
    ----------
    n : int
        Size of the matrix.
    rng : numpy.random.Generator
        Source of the n x n standard normal draws (not checked here).

    Returns
    -------
    numpy.ndarray
        An orthogonal (n, n) float64 matrix.
    """
    z = rng.standard_normal((n, n))
    q, r = np.linalg.qr(z)
    return q * np.where(np.diag(r) < 0, -1.0, 1.0)


def balanced_init(
    widths: Sequence[int], rng: np.random.Generator, scale: float = 1.0, rank: int | None = None
) -> list[np.ndarray]:
    """Exactly balanced factors with ``rank`` (default min(widths)) singular values equal to ``scale``.

    The construction is in the module docstring and in docs/theory.md#initialisations.

    Parameters
    ----------
    widths : sequence of int
        d_0, ..., d_N: positive integers, at least two of them (N >= 1).
    rng : numpy.random.Generator
        Source of all draws (Haar matrices U_1, V_1, ..., V_N in that order).
    scale : float, default 1.0
        The common nonzero singular value c of every factor; finite and >= 0.
    rank : int, optional
        Number s of nonzero singular values, 1 <= s <= min(widths); default min(widths).

    Returns
    -------
    list of numpy.ndarray
        [W_1, ..., W_N], W_j of shape (d_j, d_{j-1}), C-contiguous float64.

    Raises
    ------
    ValueError
        If ``widths`` is not a sequence of at least two positive integers, ``rng`` is not a
        ``numpy.random.Generator``, ``scale`` is negative or not finite, or ``rank`` is not an integer in
        [1, min(widths)].
    """
    dims = as_widths(widths)
    _check_rng(rng)
    c = positive_float(scale, "scale", allow_zero=True)
    s = min(dims) if rank is None else nonneg_int(rank, "rank", minimum=1)
    if s > min(dims):
        raise ValueError(f"rank must be <= min(widths) = {min(dims)}, got {rank}")
    U1 = haar_orthogonal(dims[0], rng)
    V = [haar_orthogonal(dj, rng) for dj in dims[1:]]
    W = [c * V[0][:, :s] @ U1[:, :s].T]
    for j in range(1, len(V)):
        W.append(c * V[j][:, :s] @ V[j - 1][:, :s].T)
    return [np.ascontiguousarray(Wj) for Wj in W]


def gaussian_init(
    widths: Sequence[int], rng: np.random.Generator, std: float | Sequence[float]
) -> list[np.ndarray]:
    """Independent N(0, std_j^2) entries; ``std`` is one number or one per layer.

    Parameters
    ----------
    widths : sequence of int
        d_0, ..., d_N: positive integers, at least two of them (N >= 1).
    rng : numpy.random.Generator
        Source of the draws, W_1 first.
    std : float or sequence of float
        Standard deviation of the entries (finite, >= 0): one number for all layers, or N numbers
        (std_1, ..., std_N).

    Returns
    -------
    list of numpy.ndarray
        [W_1, ..., W_N], W_j of shape (d_j, d_{j-1}).

    Raises
    ------
    ValueError
        If ``widths`` is not a sequence of at least two positive integers, ``rng`` is not a
        ``numpy.random.Generator``, a standard deviation is negative or not finite, or ``std`` is a sequence
        whose length is not N.
    """
    dims = as_widths(widths)
    _check_rng(rng)
    n = len(dims) - 1
    if isinstance(std, Sequence | np.ndarray):
        stds = [positive_float(v, f"std[{j}]", allow_zero=True) for j, v in enumerate(std)]
        if len(stds) != n:
            raise ValueError(f"std must be one number or {n} numbers (one per layer), got {len(stds)}")
    else:
        stds = [positive_float(std, "std", allow_zero=True)] * n
    return [stds[j] * rng.standard_normal((dims[j + 1], dims[j])) for j in range(n)]


def balancedness(W: Sequence[np.ndarray]) -> np.ndarray:
    """||W_{j+1}^T W_{j+1} - W_j W_j^T|| (spectral) for j = 1..N-1 (Definition 2.3); empty for N = 1.

    See docs/theory.md#balancedness.  The balancedness constant (2.7) is the maximum of the result.

    Parameters
    ----------
    W : sequence of array_like
        The factors [W_1, ..., W_N], W_j of shape (d_j, d_{j-1}).

    Returns
    -------
    numpy.ndarray
        Shape (N - 1,): entry j - 1 is the spectral norm for the pair (j, j + 1).  A pair whose Gram matrices
        overflow float64 gives ``inf``.

    Raises
    ------
    ValueError
        If ``W`` is not a non-empty list of real, finite 2-D matrices with chained shapes (the message names
        ``W``).
    """
    mats = as_weights(W, "W")
    out = np.empty(max(len(mats) - 1, 0))
    for j in range(len(mats) - 1):
        with np.errstate(over="ignore", invalid="ignore"):
            D = mats[j + 1].T @ mats[j + 1] - mats[j] @ mats[j].T
        if not np.all(np.isfinite(D)):
            out[j] = np.inf
            continue
        out[j] = np.abs(np.linalg.eigvalsh(0.5 * (D + D.T))).max()
    return out


def perturbed_init(
    widths: Sequence[int],
    rng: np.random.Generator,
    balancedness_constant: float,
    scale: float = 1.0,
    rank: int | None = None,
) -> list[np.ndarray]:
    """A tuple whose balancedness constant is exactly ``balancedness_constant`` (= alpha*delta of Thm 2.4).

    Starts from `balanced_init` (same draws, same ``scale`` and ``rank``) and perturbs W_1: W_1 + eps P with
    P a standard normal direction of spectral norm 1 (drawn after the balanced factors) and eps >= 0 found by
    root finding (see docs/theory.md#unbalanced-starts-and-alpha).

    Parameters
    ----------
    widths : sequence of int
        d_0, ..., d_N, as in `balanced_init`.
    rng : numpy.random.Generator
        Source of all draws.
    balancedness_constant : float
        Target value of max_j ||W_{j+1}^T W_{j+1} - W_j W_j^T||; finite and >= 0.  With 0 the balanced
        tuple is returned unchanged.
    scale : float, default 1.0
        Singular value of the balanced starting factors, as in `balanced_init`.
    rank : int, optional
        Rank of the balanced starting factors, as in `balanced_init`; default min(widths).

    Returns
    -------
    list of numpy.ndarray
        [W_1, ..., W_N], W_j of shape (d_j, d_{j-1}); only W_1 differs from the balanced tuple.

    Raises
    ------
    ValueError
        If ``balancedness_constant`` is negative or not finite, if it is > 0 with N = 1 (no pairs), if the
        target is not reached with eps <= 1e12, or for the invalid inputs listed in `balanced_init`.
    """
    target = positive_float(balancedness_constant, "balancedness_constant", allow_zero=True)
    W = balanced_init(widths, rng, scale=scale, rank=rank)
    if len(W) < 2 or target == 0.0:
        if len(W) < 2 and target > 0.0:
            raise ValueError("balancedness_constant > 0 needs N >= 2 (a single layer has no pairs)")
        return W
    P = rng.standard_normal(W[0].shape)
    P /= np.linalg.norm(P, 2)
    base = W[0].copy()

    def excess(eps: float) -> float:
        W[0] = base + eps * P
        return float(balancedness(W)[0]) - target

    hi = 1.0
    while excess(hi) < 0.0:
        hi *= 2.0
        if hi > 1e12:
            raise ValueError(f"balancedness_constant={target} is out of reach")
    eps = scipy.optimize.brentq(excess, 0.0, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps)
    W[0] = np.ascontiguousarray(base + eps * P)
    return W
