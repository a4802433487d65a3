"""The learning problem: data (X, Y) with samples as columns, and the paper's Section-5 instance.

Loss: L^N(W_1, ..., W_N) = 1/2 ||Y - W_N ... W_1 X||_F^2 = L^1(W_N ... W_1), no 1/m factor.

Cached quantities (formulas in docs/theory.md):

* C = X X^T and E = Y X^T, so a GD step never touches the m samples;
* ||X||, sigma_min(X) = lambda_min(X X^T)^{1/2}, ||X Y^T|| (spectral norms, used in (2.9), (2.11));
* Q = Y X^T (X X^T)^{-1/2} (2.6), its singular values and rank q;  since
  L^1(W) = 1/2 ||W (X X^T)^{1/2} - Q||_F^2 + L*, the Eckart-Young theorem gives the optimal value of L^1
  over matrices of rank <= k:  L*_k = L* + 1/2 sum_{i > k} sigma_i(Q)^2;
* the Cholesky factor X X^T = R^T R and F = E R^{-1} for the kernels' residual form of the loss.

Section 5: d_x = d_y = d = 70, m = 3d, X_ij ~ N(0, 1/d), Y = W~_N ... W~_1 X with the W~_j drawn
like the balanced initialisation, widths d_j = round(r + (d - r)(j - 1)/(N - 1)) so that d_1 = r = 2.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple, NoReturn

import numpy as np
import scipy.linalg

from dlnsim.checks import as_matrix, is_int

Array = np.ndarray


_TINY = float(np.finfo(np.float64).tiny)  # smallest normal float64; below it products lose relative precision
_SQRT_TINY = float(np.sqrt(_TINY))  # a value below it squares to a subnormal number or to 0


def _checked_products(X: Array, Y: Array) -> tuple[Array, Array]:
    """C = X X^T (symmetrised) and E = Y X^T, refusing data whose squares overflow or underflow float64."""
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        x_max = float(np.max(np.abs(X)))
        y_max = float(np.max(np.abs(Y)))
        C = X @ X.T
        C = 0.5 * (C + C.T)
        E = Y @ X.T
        y_sq = float(np.sum(Y * Y))
    if not np.all(np.isfinite(C)):
        raise ValueError(
            f"X: its values are too large to square in float64: X X^T overflows (largest |X_ij| = {x_max:.3e}); "
            "rescale X (and Y) towards unit size"
        )
    if 0.0 < x_max < _SQRT_TINY:
        raise ValueError(
            f"X: its values are too small to square in float64: X X^T underflows (largest |X_ij| = {x_max:.3e}); "
            "rescale X (and Y) towards unit size"
        )
    if not np.isfinite(y_sq):
        raise ValueError(
            f"Y: its values are too large to square in float64: ||Y||_F^2 overflows (largest |Y_ij| = {y_max:.3e}); "
            "rescale Y (and X) towards unit size"
        )
    if 0.0 < y_max < _SQRT_TINY:
        raise ValueError(
            f"Y: its values are too small to square in float64: ||Y||_F^2 underflows (largest |Y_ij| = {y_max:.3e}); "
            "rescale Y (and X) towards unit size"
        )
    if not np.all(np.isfinite(E)):
        raise ValueError(
            f"X, Y: Y X^T overflows float64 (largest |X_ij| = {x_max:.3e}, largest |Y_ij| = {y_max:.3e}); "
            "rescale X and Y towards unit size"
        )
    return C, E


class Problem:
    """Data of a deep-linear-network regression, samples as columns: X is (d_x, m), Y is (d_y, m).

    Raises ``ValueError`` naming the parameter for wrong shapes, complex or non-finite entries, values whose
    squares overflow or underflow float64 (X X^T, Y X^T or ||Y||_F^2 not finite, or X X^T below the normal
    range), or a singular X X^T (the message gives the smallest eigenvalue).

    A Problem is immutable: every array (X and Y, copies of the data given, and the cached quantities) is
    read-only, ``meta`` is a read-only mapping, and setting or deleting an attribute raises ``AttributeError``.
    A changed X or Y would leave the cached quantities (F, R^T, L*, ...) describing the old data; make a new
    ``Problem(X, Y)`` instead (``with_meta`` for other metadata).
    """

    meta: Mapping[str, Any]

    def __init__(self, X: Any, Y: Any, *, meta: Mapping[str, Any] | None = None) -> None:
        X = as_matrix(X, "X")
        Y = as_matrix(Y, "Y")
        if X.shape[1] != Y.shape[1]:
            raise ValueError(
                f"X and Y must have the same number of samples (columns): X has {X.shape[1]}, "
                f"Y has {Y.shape[1]}"
            )
        d_x, m = X.shape
        if m < d_x:
            raise ValueError(
                f"X X^T must have full rank, which needs at least d_x = {d_x} samples; X has m = {m} columns"
            )
        C, YXt = _checked_products(X, Y)
        try:
            evals = np.linalg.eigvalsh(C)
        except np.linalg.LinAlgError as exc:  # not expected once C is finite; name the parameter anyway
            raise ValueError(f"X: the eigenvalues of X X^T could not be computed ({exc})") from None
        lam_min, lam_max = float(evals[0]), float(evals[-1])
        if not lam_max > 0.0 or lam_min <= max(d_x, m) * np.finfo(float).eps * lam_max:
            raise ValueError(
                f"X: X X^T must have full rank; its smallest eigenvalue is {lam_min:.3e} "
                f"(largest {lam_max:.3e}), numerically singular"
            )
        if lam_min < _TINY:
            raise ValueError(
                f"X: X X^T underflows float64: its smallest eigenvalue {lam_min:.3e} is below the smallest normal "
                f"number {_TINY:.3e}; rescale X (and Y) towards unit size"
            )
        self.X = X
        self.Y = Y
        self.meta = _Meta(meta or {})
        self.d_x, self.m = d_x, m
        self.d_y = Y.shape[0]
        self.XXt = C
        self.YXt = YXt
        self.lambda_min = lam_min
        self.lambda_max = lam_max
        self.norm_X = float(np.sqrt(lam_max))
        self.sigma_min_X = float(np.sqrt(lam_min))
        self.norm_XYt = float(np.linalg.norm(self.YXt, 2))
        self.norm_Y_F = float(np.linalg.norm(Y))
        # Cholesky C = R^T R with R^T lower triangular; F = E R^{-1}
        self.Rt = np.ascontiguousarray(np.linalg.cholesky(C))
        self.F = np.ascontiguousarray(scipy.linalg.solve_triangular(self.Rt, self.YXt.T, lower=True).T)
        # Q = Y X^T C^{-1/2} with the symmetric inverse square root (2.6)
        w_c, v_c = np.linalg.eigh(C)
        c_inv_half = (v_c / np.sqrt(w_c)) @ v_c.T
        self.Q = self.YXt @ c_inv_half
        self.q_singular_values = np.linalg.svd(self.Q, compute_uv=False)
        s = self.q_singular_values
        tol = max(self.Q.shape) * np.finfo(float).eps * (s[0] if s.size else 0.0)
        self.q = int(np.sum(s > tol))
        # least-squares optimum, computed from a solve (not from 1/2||Y||^2 - 1/2||F||^2: no cancellation)
        W_ls = scipy.linalg.solve(C, self.YXt.T, assume_a="pos").T
        self.W_ls = W_ls
        self.lstar = 0.5 * float(np.sum((Y - W_ls @ X) ** 2))
        tails = np.concatenate([np.cumsum((s**2)[::-1])[::-1], [0.0]])
        #: optimal_loss_by_rank[k] = min of L^1 over matrices of rank <= k, k = 0..min(d_x, d_y)
        self.optimal_loss_by_rank = self.lstar + 0.5 * tails
        _freeze(self.__dict__)

    def __setattr__(self, name: str, value: Any) -> None:
        if self.__dict__.get("_frozen", False):
            raise AttributeError(f"Problem is immutable: cannot set {name!r}; make a new Problem(X, Y) instead")
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Problem is immutable: cannot delete {name!r}")

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = {**state, "meta": _Meta(state["meta"])}
        _freeze(state)  # unpickled arrays come back writeable
        self.__dict__.update(state)

    def with_meta(self, **entries: Any) -> Problem:
        """The same problem (sharing its read-only arrays) with ``entries`` added to its ``meta``."""
        new = object.__new__(Problem)
        new.__setstate__({**self.__dict__, "meta": {**self.meta, **entries}})
        return new

    def optimal_loss(self, rank: int | None = None) -> float:
        """min L^1 over matrices of rank <= ``rank`` (all matrices when None)."""
        if rank is None:
            return self.lstar
        if not is_int(rank) or rank < 0:
            raise ValueError(f"rank must be a non-negative integer, got {rank!r}")
        k = min(int(rank), len(self.optimal_loss_by_rank) - 1)
        return float(self.optimal_loss_by_rank[k])

    def attainable_loss(self, width: int) -> float:
        """min L^N of a network whose narrowest width is ``width``: the least-squares optimum L* when ``width``
        is at least q (the rank of the whitened target), else the best fit of rank ``width`` (exactly L* in
        the first case, not a recomputation)."""
        if not is_int(width) or width < 0:
            raise ValueError(f"width must be a non-negative integer, got {width!r}")
        return self.lstar if width >= self.q else self.optimal_loss(int(width))

    def loss_of_product(self, W: Any) -> float:
        """L^1(W) = 1/2 ||Y - W X||_F^2 for an end-to-end matrix W (d_y, d_x)."""
        W = as_matrix(W, "W", shape=(self.d_y, self.d_x))
        return 0.5 * float(np.sum((self.Y - W @ self.X) ** 2))

    def __repr__(self) -> str:
        return f"Problem(d_x={self.d_x}, d_y={self.d_y}, m={self.m}, q={self.q})"


class _Meta(dict[str, Any]):
    """`Problem.meta`: a dict that refuses changes (so it still pickles, compares and unpacks as one)."""

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("Problem is immutable: its meta is read-only; problem.with_meta(key=value, ...) returns "
                        "the same problem with more metadata")

    __setitem__ = __delitem__ = __ior__ = update = setdefault = pop = popitem = clear = _refuse

    def __reduce__(self) -> tuple[type[_Meta], tuple[dict[str, Any]]]:
        return _Meta, (dict(self),)


def _freeze(state: dict[str, Any]) -> None:
    """Make the arrays among the attributes ``state`` read-only and mark the instance frozen."""
    for value in state.values():
        if isinstance(value, np.ndarray):
            value.setflags(write=False)
    state["_frozen"] = True


class Setup(NamedTuple):
    """What `paper_setup` returns: the problem, the widths d_0..d_N and the initial factors W0[j-1] = W_j."""

    problem: Problem
    widths: tuple[int, ...]
    W0: list[Array]


def paper_widths(N: int, d: int = 70, r: int = 2) -> tuple[int, ...]:
    """Widths d_0..d_N of the Section-5 network: d_0 = d_N = d, d_1 = r, linear in between.

    For N >= 2 the hidden widths are d_j = floor(r + (d - r) (j - 1) / (N - 1) + 1/2), j = 1..N; for N = 1
    the widths are (d, d).  See docs/theory.md#the-section-5-instance.

    Parameters
    ----------
    N : int
        Depth, >= 1.
    d : int, default 70
        Input and output dimension d_0 = d_N.
    r : int, default 2
        Width of the first hidden layer d_1 (the bottleneck), 1 <= r <= d.

    Returns
    -------
    tuple of int
        (d_0, ..., d_N), N + 1 entries.

    Raises
    ------
    ValueError
        If ``N`` is not an integer >= 1, ``d`` or ``r`` is not an integer, or 1 <= r <= d fails.
    """
    if not is_int(N) or N < 1:
        raise ValueError(f"N must be an integer >= 1, got {N!r}")
    for name, v in (("d", d), ("r", r)):
        if not is_int(v):
            raise ValueError(f"{name} must be an integer, got {v!r}")
    if d < 1 or r < 1 or r > d:
        raise ValueError(f"need 1 <= r <= d, got d={d}, r={r}")
    if N == 1:
        return (d, d)
    hidden = [int(np.floor(r + (d - r) * (j - 1) / (N - 1) + 0.5)) for j in range(1, N + 1)]
    return (d, *hidden)


def paper_setup(N: int, seed: int, d: int = 70, m: int | None = None, r: int = 2) -> Setup:
    """The Section-5 instance of Nguegnang-Rauhut-Terstiege, reproducible from ``seed``.

    Draw order from ``numpy.random.default_rng(seed)``: X, then the factors of W(0), then those of
    the target W~.  The same seed gives the same X for every N.  X has i.i.d. N(0, 1/d) entries, W(0) and
    the target factors are `balanced_init` tuples of rank ``r`` and scale 1 on `paper_widths` (N, d, r), and
    Y = W~ X with W~ the product of the target factors (docs/theory.md#the-section-5-instance).

    Parameters
    ----------
    N : int
        Depth, >= 1.
    seed : int
        Seed of ``numpy.random.default_rng``.
    d : int, default 70
        Input and output dimension d_x = d_y.
    m : int, optional
        Number of samples (columns of X), an integer >= d; default 3 d.
    r : int, default 2
        Bottleneck width d_1 and rank of W(0) and of the target, 1 <= r <= d.

    Returns
    -------
    Setup
        ``(problem, widths, W0)``: the `Problem` with X (d, m) and Y (d, m) (its ``meta`` records the setup,
        N, seed, d, m and r), the widths d_0..d_N and the initial factors [W_1, ..., W_N].

    Raises
    ------
    ValueError
        If ``N``, ``d`` or ``r`` are invalid (as in `paper_widths`), ``seed`` is not an integer, or ``m`` is
        not an integer >= d.

    Examples
    --------
    >>> import dlnsim
    >>> problem, widths, W0 = dlnsim.paper_setup(N=3, seed=0)
    >>> widths
    (70, 2, 36, 70)
    >>> [w.shape for w in W0], problem.X.shape
    ([(2, 70), (36, 2), (70, 36)], (70, 210))

    Smaller instances of the same construction:

    >>> problem, widths, W0 = dlnsim.paper_setup(N=2, seed=0, d=8, m=24)
    >>> widths
    (8, 2, 8)
    """
    from dlnsim.init import balanced_init  # local: init imports nothing from here, keep the graph acyclic

    widths = paper_widths(N, d, r)
    if not is_int(seed):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    m = 3 * d if m is None else m
    if not is_int(m) or m < d:
        raise ValueError(f"m must be an integer >= d = {d} (X X^T must have full rank), got {m!r}")
    rng = np.random.default_rng(seed)
    X = rng.normal(0.0, np.sqrt(1.0 / d), size=(d, m))
    W0 = balanced_init(widths, rng, rank=r)
    target = balanced_init(widths, rng, rank=r)
    Wt = target[0]
    for Wj in target[1:]:
        Wt = Wj @ Wt
    Y = Wt @ X
    meta = {"setup": "paper_section5", "setup_N": int(N), "seed": int(seed), "setup_d": int(d),
            "setup_m": int(m), "setup_r": int(r)}
    return Setup(Problem(X, Y, meta=meta), widths, W0)
