"""Initialisations the published convergence theorems assume, in our units, and whitening of the data.

Our units: loss L^N = 1/2 ||Y - W_N ... W_1 X||_F^2 (no 1/m), GD on the factors W_j (d_j, d_{j-1}).

* `procedure1_init`: Arora-Cohen-Golowich-Hu's balanced Procedure 1: the SVD A = U S V^T of a given
  end-to-end matrix, W_N = [U S^{1/N}, 0], W_j = diag(S^{1/N}, 0), W_1 = [S^{1/N} V^T; 0] (zero padding), so
  W_N ... W_1 = A and W_{j+1}^T W_{j+1} = W_j W_j^T exactly.  `acgh_random_init` draws A with iid N(0, s^2)
  entries first (the start of their Theorem 2).
* `du_hu_init`: Du-Hu's iid N(0, 1) factors of the network x -> alpha W_N ... W_1 x, alpha = (h^{N-1} d_y)^{-1/2},
  mapped to our unscaled network by W'_j = alpha^{1/N} W_j: iid N(0, (h^{N-1} d_y)^{-1/N}) entries.
* `hxp_init`: Hu-Xiao-Pennington's scaled orthogonal factors (W_1^T W_1 = h I, W_i orthogonal times sqrt(h),
  W_N W_N^T = h I) mapped the same way: every factor has all its singular values (h/d_y)^{1/(2N)}.
* `identity_init`: W_j = I (equal widths), Bartlett-Helmbold-Long's and ACGH's residual start.
* `to_scaled` / `from_scaled` and `scaled_stepsize`: the map between a network with output scale alpha and ours.
  GD with stepsize eta on 1/2 ||alpha W_N ... W_1 X - Y||^2 is, iterate by iterate, GD on our loss in the factors
  alpha^{1/N} W_j with stepsize alpha^{2/N} eta (the uniform split is the only one with a common stepsize).
* `whiten`: the data X -> sqrt(s) (X X^T)^{-1/2} X, so that X X^T = s I.  The loss of a product W on the original
  data equals the loss of W (X X^T)^{1/2} / sqrt(s) on the whitened data, but GD on the whitened problem is a
  *different run*: in the original first factor it is a preconditioned GD, and the balancedness of
  (W_1 (X X^T)^{1/2}/sqrt(s), W_2) differs from that of (W_1, W_2).  Theorems that assume whitened data predict
  nothing for GD on the original data; they are tested on the whitened problem.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from dlnsim.checks import as_matrix, as_weights, as_widths, positive_float
from dlnsim.init import haar_orthogonal
from dlnsim.problem import Problem

__all__ = [
    "Whitening",
    "acgh_random_init",
    "du_hu_init",
    "from_scaled",
    "hxp_init",
    "hxp_scale",
    "identity_init",
    "output_scale",
    "procedure1_init",
    "scaled_stepsize",
    "to_scaled",
    "whiten",
]


def _rng(rng: Any) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise ValueError(
            f"rng must be a numpy.random.Generator (e.g. numpy.random.default_rng(seed)), got {type(rng).__name__}"
        )
    return rng


def _equal_hidden(dims: tuple[int, ...], name: str = "widths") -> int:
    """The common hidden width h of d_0, h, ..., h, d_N (N >= 2)."""
    if len(dims) < 3:
        raise ValueError(f"{name} must have at least one hidden layer (N >= 2), got {list(dims)}")
    hidden = set(dims[1:-1])
    if len(hidden) != 1:
        raise ValueError(f"{name}: the hidden widths must all be equal, got {list(dims[1:-1])}")
    return dims[1]


def procedure1_init(widths: Sequence[int], A: Any) -> list[np.ndarray]:
    """Balanced factors with product ``A`` (Procedure 1 of Arora-Cohen-Golowich-Hu, zero padded).

    Parameters
    ----------
    widths : sequence of int
        d_0, ..., d_N; every hidden width must be >= k = min(d_0, d_N) (no bottleneck).
    A : array_like
        The end-to-end matrix, shape (d_N, d_0).

    Returns
    -------
    list of numpy.ndarray
        [W_1, ..., W_N] with W_N ... W_1 = A (to rounding) and W_{j+1}^T W_{j+1} = W_j W_j^T.

    Raises
    ------
    ValueError
        If ``widths`` is invalid or has a hidden width below min(d_0, d_N), or ``A`` is not a finite
        (d_N, d_0) matrix.
    """
    dims = as_widths(widths)
    A = as_matrix(A, "A", shape=(dims[-1], dims[0]))
    N = len(dims) - 1
    k = min(dims[0], dims[-1])
    if min(dims[1:-1], default=k) < k:
        raise ValueError(f"widths: Procedure 1 needs every hidden width >= min(d_0, d_N) = {k}, got {list(dims)}")
    U, S, Vt = np.linalg.svd(A, full_matrices=False)
    root = S ** (1.0 / N)
    if N == 1:
        return [np.ascontiguousarray(A.copy())]
    W: list[np.ndarray] = []
    W1 = np.zeros((dims[1], dims[0]))
    W1[:k] = root[:, None] * Vt
    W.append(W1)
    for j in range(2, N):
        Wj = np.zeros((dims[j], dims[j - 1]))
        Wj[np.arange(k), np.arange(k)] = root
        W.append(Wj)
    WN = np.zeros((dims[N], dims[N - 1]))
    WN[:, :k] = U * root[None, :]
    W.append(WN)
    return [np.ascontiguousarray(Wj) for Wj in W]


def acgh_random_init(widths: Sequence[int], rng: np.random.Generator, s: float) -> list[np.ndarray]:
    """Procedure 1 applied to an end-to-end matrix with iid N(0, s^2) entries (ACGH's Theorem 2 start).

    Parameters
    ----------
    widths : sequence of int
        d_0, ..., d_N, every hidden width >= min(d_0, d_N).
    rng : numpy.random.Generator
        Source of the (d_N, d_0) standard normal draw.
    s : float
        Standard deviation of the entries of the product; finite, >= 0.

    Returns
    -------
    list of numpy.ndarray
        Balanced [W_1, ..., W_N] whose product is the drawn matrix.
    """
    dims = as_widths(widths)
    _rng(rng)
    sd = positive_float(s, "s", allow_zero=True)
    A = sd * rng.standard_normal((dims[-1], dims[0]))
    return procedure1_init(dims, A)


def output_scale(widths: Sequence[int]) -> float:
    """alpha = (h^{N-1} d_y)^{-1/2}, the output scale of Du-Hu and Hu-Xiao-Pennington (equal hidden widths h)."""
    dims = as_widths(widths)
    h = _equal_hidden(dims)
    N = len(dims) - 1
    return float(math.exp(-0.5 * ((N - 1) * math.log(h) + math.log(dims[-1]))))


def du_hu_init(widths: Sequence[int], rng: np.random.Generator) -> list[np.ndarray]:
    """Du-Hu's Gaussian start in our units: iid N(0, (h^{N-1} d_y)^{-1/N}) entries (equal hidden widths h).

    Their factors have iid N(0, 1) entries and the network carries alpha = (h^{N-1} d_y)^{-1/2}; ours are
    alpha^{1/N} times theirs (`to_scaled` and `from_scaled` map between the two).

    Parameters
    ----------
    widths : sequence of int
        d_0, h, ..., h, d_N with N >= 2.
    rng : numpy.random.Generator
        Source of the draws, W_1 first.

    Returns
    -------
    list of numpy.ndarray
        [W_1, ..., W_N].
    """
    dims = as_widths(widths)
    _rng(rng)
    std = output_scale(dims) ** (1.0 / (len(dims) - 1))
    return [std * rng.standard_normal((dims[j + 1], dims[j])) for j in range(len(dims) - 1)]


def hxp_scale(widths: Sequence[int]) -> float:
    """(h/d_y)^{1/(2N)}: every singular value of a Hu-Xiao-Pennington factor in our units."""
    dims = as_widths(widths)
    h = _equal_hidden(dims)
    return float((h / dims[-1]) ** (1.0 / (2 * (len(dims) - 1))))


def hxp_init(widths: Sequence[int], rng: np.random.Generator) -> list[np.ndarray]:
    """Hu-Xiao-Pennington's scaled orthogonal start in our units (equal hidden widths h >= max(d_x, d_y)).

    W_1 = c Q_1 with Q_1^T Q_1 = I (h x d_x), W_i = c O_i with O_i Haar orthogonal (h x h), W_N = c Q_N with
    Q_N Q_N^T = I (d_y x h), c = (h/d_y)^{1/(2N)} = `hxp_scale`; Q_1, Q_N are columns/rows of Haar matrices.

    Parameters
    ----------
    widths : sequence of int
        d_0, h, ..., h, d_N with N >= 2 and h >= max(d_0, d_N).
    rng : numpy.random.Generator
        Source of the Haar draws (W_1 first).

    Returns
    -------
    list of numpy.ndarray
        [W_1, ..., W_N].
    """
    dims = as_widths(widths)
    _rng(rng)
    h = _equal_hidden(dims)
    if h < max(dims[0], dims[-1]):
        raise ValueError(f"widths: the hidden width h = {h} must be >= max(d_x, d_y) = {max(dims[0], dims[-1])}")
    c = hxp_scale(dims)
    N = len(dims) - 1
    W = [c * haar_orthogonal(h, rng)[:, : dims[0]]]
    W += [c * haar_orthogonal(h, rng) for _ in range(N - 2)]
    W.append(c * haar_orthogonal(h, rng)[: dims[-1], :])
    return [np.ascontiguousarray(Wj) for Wj in W]


def identity_init(widths: Sequence[int], scale: float = 1.0) -> list[np.ndarray]:
    """W_j = scale * I for equal widths d_0 = ... = d_N (balanced; the residual start of ACGH and BHL).

    Raises
    ------
    ValueError
        If the widths are not all equal or ``scale`` is negative or not finite.
    """
    dims = as_widths(widths)
    if len(set(dims)) != 1:
        raise ValueError(f"widths: the identity start needs equal widths, got {list(dims)}")
    c = positive_float(scale, "scale", allow_zero=True)
    return [c * np.eye(dims[0]) for _ in range(len(dims) - 1)]


def to_scaled(W: Sequence[np.ndarray], alpha: float) -> list[np.ndarray]:
    """Factors of the network alpha W_N ... W_1 (theirs) from ours: W_j = alpha^{-1/N} W'_j."""
    mats = as_weights(W, "W")
    a = positive_float(alpha, "alpha")
    f = a ** (-1.0 / len(mats))
    return [f * Wj for Wj in mats]


def from_scaled(W: Sequence[np.ndarray], alpha: float) -> list[np.ndarray]:
    """Our factors from those of the network alpha W_N ... W_1: W'_j = alpha^{1/N} W_j."""
    mats = as_weights(W, "W")
    a = positive_float(alpha, "alpha")
    f = a ** (1.0 / len(mats))
    return [f * Wj for Wj in mats]


def scaled_stepsize(eta: float, alpha: float, N: Any) -> float:
    """Our stepsize alpha^{2/N} eta for their stepsize ``eta`` on 1/2 ||alpha W_N ... W_1 X - Y||^2."""
    e = positive_float(eta, "eta", allow_zero=True)
    a = positive_float(alpha, "alpha")
    if isinstance(N, bool) or not isinstance(N, int | np.integer) or N < 1:
        raise ValueError(f"N must be an integer >= 1, got {N!r}")
    return float(e * a ** (2.0 / int(N)))


@dataclass(frozen=True)
class Whitening:
    """A whitened problem and the map of starts between it and the original one.

    ``problem`` has X_w = sqrt(s) (X X^T)^{-1/2} X (so X_w X_w^T = s I) and the same Y.  ``root`` is
    (X X^T)^{1/2}.  ``start`` maps a start of the original problem to one of the whitened problem with the same
    loss (W_1 -> W_1 (X X^T)^{1/2} / sqrt(s)); GD from it is a different run (module docstring).
    """

    problem: Problem
    original: Problem
    scale: float
    root: np.ndarray
    #: what the whitened problem is and is not
    NOTE = ("GD on the whitened problem is a different run from GD on the original data: in the original first "
            "factor it is GD preconditioned by X X^T, and the balancedness of the mapped start differs")

    def start(self, W0: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The start on the whitened problem with the same loss: W_1 -> W_1 (X X^T)^{1/2} / sqrt(s)."""
        W = as_weights(W0, "W0")
        if W[0].shape[1] != self.original.d_x:
            raise ValueError(f"W0: W_1 has {W[0].shape[1]} columns, the problem has d_x = {self.original.d_x}")
        return [np.ascontiguousarray(W[0] @ self.root / math.sqrt(self.scale)), *W[1:]]

    def original_start(self, W0: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The inverse of ``start``: W_1 -> sqrt(s) W_1 (X X^T)^{-1/2}."""
        W = as_weights(W0, "W0")
        inv = np.linalg.inv(self.root)
        return [np.ascontiguousarray(math.sqrt(self.scale) * W[0] @ inv), *W[1:]]


def whiten(problem: Problem, scale: Literal["unit", "samples"] | float = "unit") -> Whitening:
    """The problem with whitened inputs, X X^T = s I, and the same targets.

    Parameters
    ----------
    problem : Problem
        The data.
    scale : {"unit", "samples"} or float, default "unit"
        s: ``"unit"`` gives X X^T = I, ``"samples"`` gives X X^T = m I (1/m X X^T = I, Arora-Cohen-Golowich-Hu's
        whitening), a number (finite, > 0) is used as given.

    Returns
    -------
    Whitening
        The whitened `Problem` (its ``meta`` says ``whitened = s``), the original one and the map of starts.

    Raises
    ------
    ValueError
        If ``problem`` is not a `Problem` or ``scale`` is not one of the accepted values.
    """
    if not isinstance(problem, Problem):
        raise ValueError(f"problem must be a dlnsim.Problem, got {type(problem).__name__}")
    if isinstance(scale, str):
        if scale == "unit":
            s = 1.0
        elif scale == "samples":
            s = float(problem.m)
        else:
            raise ValueError(f"scale must be 'unit', 'samples' or a positive number, got {scale!r}")
    else:
        s = positive_float(scale, "scale")
    w, v = np.linalg.eigh(np.asarray(problem.XXt))
    root = (v * np.sqrt(w)) @ v.T
    inv_root = (v / np.sqrt(w)) @ v.T
    Xw = math.sqrt(s) * inv_root @ problem.X
    meta = {**problem.meta, "whitened": s}
    return Whitening(problem=Problem(Xw, problem.Y, meta=meta), original=problem, scale=s,
                     root=np.ascontiguousarray(root))
