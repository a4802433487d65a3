"""What a run records: the save policy shared by `run_gd`, `run_flow` and `compare_flow`.

Two keywords, accepted by all three:

``record``
    *Which iterations* (GD, and GD in `compare_flow`): ``"log"`` (about 200 log-spaced iterations, the
    default), ``"log:N"``, ``"all"``, ``"every:N"`` or an int N (every N-th), `Every` / `LogSpaced`, or an
    array of iterations.  The first (0) and the last (n_iter) iteration are always included, and so is the
    iteration where a run stopped early (see ``record_stop`` of `dlnsim.run_gd`).
    *Which times* (`run_flow`): an array of times, or with a final time T: ``"linear"`` / ``"linear:N"``
    (N equally spaced times in [0, T], default 200) or ``"log"`` / ``"log:N"`` (0 and N - 1 log-spaced
    times in [1e-6 T, T]).

``diagnostics``
    *Which state diagnostics*: True (all, the default), False (none) or a collection of names from
    `DIAGNOSTICS`: ``grad_norm_sq`` (||grad L^N||_F^2), ``balancedness`` (per pair, with its max
    ``balancedness_max``), ``layer_norm_sq`` (||W_j||^2 per layer) and ``product_sv`` (singular values of
    the product).  The loss and the excess loss are always recorded (and for GD the stepsize, the descent
    ratio and the time t_k).

Records are refused before anything is allocated when they would not fit in memory: more than
`MAX_RECORD_BYTES` of records, or more than `MAX_N_ITER` iterations.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._kernels.linalg import _compress
from ._validate import nonneg_int, positive_float

__all__ = ["DIAGNOSTICS", "MAX_N_ITER", "MAX_RECORD_BYTES", "Every", "LogSpaced", "diagnostics_set",
           "flow_times", "record_points"]

#: the optional state diagnostics, in the order they are stored
DIAGNOSTICS = ("grad_norm_sq", "balancedness", "layer_norm_sq", "product_sv")
#: largest total size of the records of one run (bytes)
MAX_RECORD_BYTES = 2**30
#: largest number of iterations of one run
MAX_N_ITER = 2**62


def _size(n_bytes: float) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.3g} {unit}"
    return f"{n_bytes:.0f} B"


def check_size(n_rows: int, row_floats: int, name: str) -> None:
    """ValueError naming ``name`` when n_rows x row_floats float64 values exceed `MAX_RECORD_BYTES`."""
    n_bytes = float(n_rows) * float(max(row_floats, 1)) * 8.0
    if n_bytes > MAX_RECORD_BYTES:
        raise ValueError(
            f"{name}: {n_rows} record points x {row_floats} values would take {_size(n_bytes)}, more than "
            f"{_size(MAX_RECORD_BYTES)}; record fewer points (e.g. 'log')"
        )


@dataclass(frozen=True)
class Every:
    """Record every n-th iteration (and the last)."""

    n: int

    def __post_init__(self) -> None:
        nonneg_int(self.n, "record (every n-th iteration)", minimum=1)

    def count(self, n_iter: int) -> int:
        return n_iter // self.n + 2

    def points(self, n_iter: int) -> np.ndarray:
        return np.union1d(np.arange(0, n_iter + 1, self.n, dtype=np.int64), [n_iter])

    def describe(self) -> str:
        return f"every {self.n}"


@dataclass(frozen=True)
class LogSpaced:
    """About n log-spaced iterations, plus the first (0) and the last; all iterations when n > n_iter."""

    n: int = 200

    def __post_init__(self) -> None:
        nonneg_int(self.n, "record (number of log-spaced points)", minimum=2)

    def count(self, n_iter: int) -> int:
        return min(self.n, n_iter + 1) + 2

    def points(self, n_iter: int) -> np.ndarray:
        if n_iter == 0:
            return np.zeros(1, dtype=np.int64)
        if self.n >= n_iter + 1:
            return np.arange(n_iter + 1, dtype=np.int64)
        pts = np.round(np.logspace(0.0, math.log10(n_iter), self.n))
        pts = np.unique(np.clip(pts, 1.0, float(n_iter)).astype(np.int64))  # rounding may pass n_iter
        return np.union1d(pts[pts < n_iter], [0, n_iter]).astype(np.int64)

    def describe(self) -> str:
        return f"log-spaced {self.n}"


class _Points:
    def __init__(self, pts: np.ndarray) -> None:
        self.pts = pts

    def count(self, n_iter: int) -> int:
        return int(self.pts.size) + 2

    def points(self, n_iter: int) -> np.ndarray:
        if self.pts.size and (self.pts[0] < 0 or self.pts[-1] > n_iter):
            raise ValueError(f"record: iterations must lie in [0, n_iter = {n_iter}]")
        return np.union1d(self.pts, [0, n_iter]).astype(np.int64)

    def describe(self) -> str:
        return f"explicit {self.pts.size}"


Rule = Every | LogSpaced | _Points

_RECORD_FORMS = "'log', 'log:N', 'all', 'every:N', an int N, Every(N), LogSpaced(N) or an array of iterations"


def _count(text: str, record: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"record must be {_RECORD_FORMS}; N in {record!r} is not an integer") from None


def record_rule(record: Any) -> Rule:
    """The record rule of a ``record`` argument of `run_gd`; ValueError naming ``record`` otherwise."""
    if isinstance(record, Every | LogSpaced):
        return record
    if isinstance(record, str):
        if record == "log":
            return LogSpaced()
        if record == "all":
            return Every(1)
        if record.startswith("log:"):
            return LogSpaced(_count(record[4:], record))
        if record.startswith("every:"):
            return Every(_count(record[6:], record))
        raise ValueError(f"record must be {_RECORD_FORMS}, got {record!r}")
    if isinstance(record, int | np.integer) and not isinstance(record, bool | np.bool_):
        return Every(int(record))
    if isinstance(record, Sequence | np.ndarray) and not isinstance(record, bytes):
        arr = np.asarray(record)
        if arr.dtype.kind not in "iu" or arr.ndim != 1:
            raise ValueError("record: an explicit list of iterations must be a 1-D sequence of integers")
        return _Points(np.unique(arr.astype(np.int64)))
    raise ValueError(f"record must be {_RECORD_FORMS}, got {record!r}")


def checked_n_iter(n_iter: Any) -> int:
    """n_iter as an int in [0, MAX_N_ITER]; ValueError naming n_iter otherwise."""
    n = nonneg_int(n_iter, "n_iter")
    if n > MAX_N_ITER:
        raise ValueError(f"n_iter must be at most 2**62 = {MAX_N_ITER}, got {n}")
    return n


def record_points(n_iter: int, record: Any = "log") -> np.ndarray:
    """The iterations (sorted, first and last included) at which `run_gd` records (a run that stops early
    also records the iteration where it stopped)."""
    n = checked_n_iter(n_iter)
    rule = record_rule(record)
    check_size(rule.count(n), 1, "record")
    return rule.points(n)


def diagnostics_set(diagnostics: Any) -> tuple[str, ...]:
    """The diagnostics selected by ``diagnostics`` (True, False or names from `DIAGNOSTICS`), in the
    order of `DIAGNOSTICS`."""
    if isinstance(diagnostics, bool | np.bool_):
        return DIAGNOSTICS if diagnostics else ()
    if isinstance(diagnostics, str):
        diagnostics = (diagnostics,)
    if not isinstance(diagnostics, Collection):
        raise ValueError(f"diagnostics must be True, False or a list of names from {list(DIAGNOSTICS)}, "
                         f"got {diagnostics!r}")
    names = list(diagnostics)
    bad = [d for d in names if not isinstance(d, str) or d not in DIAGNOSTICS]
    if bad:
        raise ValueError(f"diagnostics: unknown name(s) {bad}; choose from {list(DIAGNOSTICS)}")
    return tuple(d for d in DIAGNOSTICS if d in names)


def flow_times(T: Any, record: Any = "linear", row_floats: int = 1) -> np.ndarray:
    """The times at which `run_flow` records for a final time ``T``: ``"linear"`` / ``"linear:N"`` (N equally
    spaced times in [0, T], default 200) or ``"log"`` / ``"log:N"`` (0 and N - 1 log-spaced times in
    [1e-6 T, T], default 200).  ``row_floats``: the values recorded per time, for the size check."""
    T = positive_float(T, "t (final time)")
    if not isinstance(record, str):
        raise ValueError(f"record must be 'linear', 'linear:N', 'log' or 'log:N' with a final time t, got {record!r}")
    kind, _, num = record.partition(":")
    if kind not in ("linear", "log"):
        raise ValueError(f"record must be 'linear', 'linear:N', 'log' or 'log:N' with a final time t, got {record!r}")
    n = _count(num, record) if num else 200
    n = nonneg_int(n, "record (number of times)", minimum=2)
    check_size(n, row_floats, "record")
    if kind == "log":
        return np.concatenate([[0.0], np.geomspace(T * 1e-6, T, n - 1)])
    return np.linspace(0.0, T, n)


# ---------------------------------------------------------------------------------------------- arguments


def flag(value: Any, name: str) -> bool:
    """``value`` as a bool; only True/False are accepted (ValueError naming ``name``)."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    raise ValueError(f"{name} must be True or False, got {value!r}")


def attrs_arg(attrs: Any) -> dict[str, Any]:
    """The extra global attributes ``attrs`` of a run (None or a dict with str keys) as a new dict."""
    if attrs is None:
        return {}
    if not isinstance(attrs, dict) or not all(isinstance(k, str) for k in attrs):
        raise ValueError(f"attrs must be a dict with str keys (extra global attributes), got {attrs!r}")
    return dict(attrs)


def blas_arg(n: Any) -> int | None:
    """The ``blas_threads`` argument: None or an int >= 1."""
    return None if n is None else nonneg_int(n, "blas_threads", minimum=1)


# ------------------------------------------------------------------------------ state diagnostics (numpy)


def _diag_safe(w: np.ndarray, dims: np.ndarray, offs: np.ndarray) -> bool:
    """True when the diagnostics of ``w`` cannot overflow (all finite, and sum_j log10(d_max max|W_j|) over
    the layers where it is positive below 150: Gram matrices and products of layers stay below 1e150)."""
    if not np.all(np.isfinite(w)):
        return False
    dmax = float(max(dims))
    total = 0.0
    for j in range(len(dims) - 1):
        m = float(np.max(np.abs(w[offs[j]:offs[j + 1]]), initial=0.0)) * dmax
        if m > 1.0:
            total += float(np.log10(m))
    return total < 150.0


def state_diagnostics(w: np.ndarray, dims: np.ndarray, offs: np.ndarray, bal: np.ndarray, lnorm: np.ndarray,
                 sv: np.ndarray) -> None:
    """Balancedness per pair, ||W_j||^2 per layer and the top singular values of the product, at one state,
    into the outputs that have entries (left as they are when the state could overflow)."""
    if not _diag_safe(w, dims, offs):
        return
    n = len(dims) - 1
    W = [w[offs[j]:offs[j + 1]].reshape(int(dims[j + 1]), int(dims[j])) for j in range(n)]
    if lnorm.size:
        for j in range(n):
            gram = W[j] @ W[j].T if dims[j + 1] <= dims[j] else W[j].T @ W[j]
            lnorm[j] = np.linalg.eigvalsh(gram)[-1]
    if bal.size:
        for j in range(n - 1):
            D = W[j + 1].T @ W[j + 1] - W[j] @ W[j].T
            ev = np.linalg.eigvalsh(0.5 * (D + D.T))
            bal[j] = max(abs(ev[0]), abs(ev[-1]))
    if not sv.size:
        return
    # product through the narrowest layer b: W = up @ low with up (d_N, d_b), low (d_b, d_0); the nonzero
    # singular values are those of R_up R_low^T (QR factors), which keeps small singular values accurate
    b = int(np.argmin(dims))
    low = np.eye(int(dims[0]))
    for j in range(b):
        low = W[j] @ low
    up = np.eye(int(dims[b]))
    for j in range(b, n):
        up = W[j] @ up
    if 0 < b < n:
        r_up = np.asarray(np.linalg.qr(up, mode="r"))
        r_low = np.asarray(np.linalg.qr(low.T, mode="r"))
        small = r_up @ r_low.T
    else:
        small = up @ low
    s = np.linalg.svd(small, compute_uv=False)
    sv[:] = 0.0
    sv[: min(sv.size, s.size)] = s[: sv.size]


# ------------------------------------------------------------------ state diagnostics of many states (numpy)


def _layers_of(states: np.ndarray, dims: np.ndarray, offs: np.ndarray) -> list[np.ndarray]:
    """The layers of a stack of flat states (m, n): W_j as an (m, d_j, d_{j-1}) view."""
    m = states.shape[0]
    return [states[:, offs[j]:offs[j + 1]].reshape(m, int(dims[j + 1]), int(dims[j])) for j in range(len(dims) - 1)]


def _safe_rows(states: np.ndarray, dims: np.ndarray, offs: np.ndarray) -> np.ndarray:
    """`_diag_safe` of each row of ``states``."""
    with np.errstate(all="ignore"):
        total = np.zeros(states.shape[0])
        for a in _layers_of(states, dims, offs):
            mx = np.max(np.abs(a.reshape(a.shape[0], -1)), axis=1, initial=0.0) * float(max(dims))
            total += np.where(mx > 1.0, np.log10(np.maximum(mx, 1.0)), 0.0)
        return np.asarray(np.all(np.isfinite(states), axis=1) & (total < 150.0), dtype=bool)


def _sym_norm(a: np.ndarray) -> np.ndarray:
    """Spectral norms of a stack of symmetric matrices (symmetrised first)."""
    ev = np.linalg.eigvalsh(0.5 * (a + np.swapaxes(a, -1, -2)))
    return np.maximum(np.abs(ev[..., 0]), np.abs(ev[..., -1]))


def stack_diagnostics(states: np.ndarray, dims: np.ndarray, offs: np.ndarray, bal: np.ndarray, lnorm: np.ndarray,
                      sv: np.ndarray) -> None:
    """`state_diagnostics` of a stack of flat factor states (m, n) at once, into the rows of ``bal``,
    ``lnorm``, ``sv`` (those with columns; rows of states that could overflow are left as they are)."""
    ok = _safe_rows(states, dims, offs)
    if not np.any(ok) or not (bal.size or lnorm.size or sv.size):
        return
    W = _layers_of(np.ascontiguousarray(states[ok]), dims, offs)
    n = len(W)
    T = np.swapaxes
    if lnorm.size:
        lnorm[ok] = np.stack([np.linalg.eigvalsh(a @ T(a, 1, 2) if a.shape[1] <= a.shape[2] else T(a, 1, 2) @ a)[:, -1]
                              for a in W], axis=1)
    if bal.size and n > 1:
        bal[ok] = np.stack([_sym_norm(T(W[j + 1], 1, 2) @ W[j + 1] - W[j] @ T(W[j], 1, 2)) for j in range(n - 1)],
                           axis=1)
    if sv.size:
        sv[ok] = _product_sv(W, dims, sv.shape[1])


def _product_sv(W: list[np.ndarray], dims: np.ndarray, n_sv: int) -> np.ndarray:
    """The top ``n_sv`` singular values of W_N ... W_1 for stacks of layers, through the narrowest layer b as in
    `state_diagnostics` (the nonzero ones are those of R_up R_low^T, QR factors of the two parts)."""
    m, n = W[0].shape[0], len(W)
    b = int(np.argmin(dims))
    low = np.broadcast_to(np.eye(int(dims[0])), (m, int(dims[0]), int(dims[0])))
    for j in range(b):
        low = W[j] @ low
    up = np.broadcast_to(np.eye(int(dims[b])), (m, int(dims[b]), int(dims[b])))
    for j in range(b, n):
        up = W[j] @ up
    if 0 < b < n:
        small = np.linalg.qr(up, mode="r") @ np.swapaxes(np.linalg.qr(np.swapaxes(low, 1, 2), mode="r"), 1, 2)
    else:
        small = up @ low
    s = np.linalg.svd(small, compute_uv=False)
    out = np.zeros((m, n_sv))
    k = min(n_sv, s.shape[1])
    out[:, :k] = s[:, :k]
    return out


def dense_output(poly: np.ndarray, slot: np.ndarray, th: np.ndarray) -> np.ndarray:
    """The states y + th (r0 + (1 - th) (r1 + th (r2 + (1 - th) r3))) of the dense output ``poly[slot]`` =
    (y, r0, r1, r2, r3) of the integrator (`dlnsim._kernels.flow`), one row per time."""
    p = poly[slot]
    t = th[:, None]
    t1 = 1.0 - t
    return np.asarray(p[:, 0] + t * (p[:, 1] + t1 * (p[:, 2] + t * (p[:, 3] + t1 * p[:, 4]))))


# ------------------------------------------------- state diagnostics from the dense output of an integrator

#: singular values below this fraction of the largest are left out of the bases of `compress_steps`
_RANK_TOL = 1e-10
_EPS = float(np.finfo(float).eps)


def _bases(w: np.ndarray, dims: np.ndarray, offs: np.ndarray) -> dict[int, np.ndarray]:
    """For each inner width j = 1..N-1 an orthonormal basis of the numerically nonzero part of
    row(W_{j+1}) + col(W_j) at the state ``w``, as a (d_j x K) matrix whose columns beyond its k_j basis
    vectors are zero (K = max_j k_j, so that all compressed matrices have K columns)."""
    W = [a[0] for a in _layers_of(w[None], dims, offs)]
    vecs = {}
    for j in range(1, len(W)):
        _, s, vt = np.linalg.svd(np.concatenate([W[j], W[j - 1].T], axis=0), full_matrices=False)
        k = int(np.sum(s > _RANK_TOL * s[0])) if s[0] > 0 else 0
        vecs[j] = vt[: max(k, 1)].T
    K = max(v.shape[1] for v in vecs.values())
    Q = {}
    for j, v in vecs.items():
        Q[j] = np.zeros((v.shape[0], K))
        Q[j][:, : v.shape[1]] = v
    return Q


def _eig_ends(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Smallest and largest eigenvalues of a stack of symmetric k x k matrices (closed form for k <= 2)."""
    k = g.shape[-1]
    if k == 1:
        return g[..., 0, 0], g[..., 0, 0]
    if k == 2:
        mid = 0.5 * (g[..., 0, 0] + g[..., 1, 1])
        rad = np.hypot(0.5 * (g[..., 0, 0] - g[..., 1, 1]), 0.5 * (g[..., 0, 1] + g[..., 1, 0]))
        return mid - rad, mid + rad
    ev = np.linalg.eigvalsh(0.5 * (g + np.swapaxes(g, -1, -2)))
    return ev[..., 0], ev[..., -1]


def _r_factor(y: np.ndarray) -> np.ndarray:
    """A k x k triangular T with the singular values of each y (m, r, k), r >= k (QR; Gram-Schmidt twice for
    k <= 2)."""
    k = y.shape[2]
    if k > 2:
        return np.asarray(np.linalg.qr(y, mode="r"))
    t = np.zeros((y.shape[0], k, k))
    a = y[:, :, 0]
    t[:, 0, 0] = r11 = np.sqrt(np.einsum("ti,ti->t", a, a))
    if k == 2:
        q = a / np.where(r11 > 0.0, r11, 1.0)[:, None]
        v = y[:, :, 1]
        r12 = np.einsum("ti,ti->t", q, v)
        v = v - r12[:, None] * q
        s = np.einsum("ti,ti->t", q, v)
        v -= s[:, None] * q
        t[:, 0, 1] = r12 + s
        t[:, 1, 1] = np.sqrt(np.einsum("ti,ti->t", v, v))
    return t


def _mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b for stacks of small matrices (written out for 2 x 2: numpy's matmul pays per matrix)."""
    if a.shape[1:] == (2, 2) and b.shape[1:] == (2, 2):
        out = np.empty_like(b)
        for i in range(2):
            for j in range(2):
                out[:, i, j] = a[:, i, 0] * b[:, 0, j] + a[:, i, 1] * b[:, 1, j]
        return out
    return np.asarray(a @ b)


def _per_step(step: np.ndarray, weights: tuple[np.ndarray, ...], coef: tuple[np.ndarray, ...]) -> list[np.ndarray]:
    """For each pair, row t of ``weights[i] @ coef[i][step[t]]``, with ``step`` non-decreasing: one batched
    product over the steps (times padded to the largest count per step when that costs at most twice the
    work), else one product per step."""
    m = step.size
    edges = np.concatenate([[0], np.flatnonzero(np.diff(step)) + 1, [m]])
    counts = np.diff(edges)
    out = [np.empty((m, cf.shape[2])) for cf in coef]
    width = int(counts.max())
    if counts.size * width <= 2 * m:
        pos = np.arange(m) - np.repeat(edges[:-1], counts)
        which = np.repeat(np.arange(counts.size), counts)
        for o, w, cf in zip(out, weights, coef, strict=True):
            pad = np.zeros((counts.size, width, w.shape[1]))
            pad[which, pos] = w
            o[:] = (pad @ cf[step[edges[:-1]]])[which, pos]
        return out
    for a, b in itertools.pairwise(edges):
        for o, w, cf in zip(out, weights, coef, strict=True):
            o[a:b] = w[a:b] @ cf[step[a]]
    return out


def _singular_values(a: np.ndarray) -> np.ndarray:
    """Singular values (decreasing) of a stack of k x k matrices (closed form for k <= 2)."""
    k = a.shape[1]
    if k == 1:
        return np.asarray(np.abs(a[:, :, 0]))
    if k == 2:
        sp = np.hypot(a[:, 0, 0] + a[:, 1, 1], a[:, 1, 0] - a[:, 0, 1])
        sm = np.hypot(a[:, 0, 0] - a[:, 1, 1], a[:, 1, 0] + a[:, 0, 1])
        return np.stack([0.5 * (sp + sm), 0.5 * np.abs(sp - sm)], axis=1)
    return np.asarray(np.linalg.svd(a, compute_uv=False))


def _frob(a: np.ndarray) -> np.ndarray:
    """Frobenius norms over the last two axes."""
    return np.asarray(np.sqrt(np.einsum("...ij,...ij->...", a, a)))


def _triangular(x: np.ndarray) -> np.ndarray:
    """For x (S, 5, rows, K): per step the triangular factor T of [X_0 ... X_4] = U T (orthonormal U), as the
    coefficients (S, 5, r K) of the r x K matrices T_p with X(c) = U sum_p c_p T_p."""
    S, _, rows, K = x.shape
    t = np.asarray(np.linalg.qr(np.swapaxes(x, 1, 2).reshape(S, rows, 5 * K), mode="r"))
    return t.reshape(S, t.shape[1], 5, K).transpose(0, 2, 1, 3).reshape(S, 5, -1)


def compress_steps(poly: np.ndarray, n_slots: int, dims: np.ndarray, offs: np.ndarray, Q: dict[int, np.ndarray],
                   with_sv: bool) -> dict[str, Any]:
    """Per step, what `step_diagnostics` needs of the dense output ``poly[:n_slots]`` of a factor flow (see
    there): the Gram blocks of the compressed layers (``gram``, (S, 25, (2N - 2) K^2)), the linear pieces of
    the product (``lin``, (S, 5, .)), the residual norms (``res``, (S, 5, 2N - 2)), the overflow guard
    (``safe``, (S,)) and the largest residual relative to its block (``worst``), with the bases ``Q``."""
    n = len(dims) - 1
    d = [int(x) for x in dims]
    K = Q[1].shape[1]
    nk = 2 * n - 2  # compressed matrices: R_2..R_N, then L_1..L_{N-1}
    XR: dict[Any, np.ndarray] = {}
    XL: dict[int, np.ndarray] = {}
    grams: dict[tuple[str, int], np.ndarray] = {}
    nres = np.empty((n_slots, 5, nk))
    vnorm = np.zeros((n_slots, 5, n))
    with np.errstate(all="ignore"):
        for j in range(1, n + 1):
            qrt = np.ascontiguousarray(Q[j - 1].T) if j >= 2 else np.zeros((0, d[j - 1]))
            ql = Q[j] if j <= n - 1 else np.zeros((d[j], 0))
            xr = np.empty((n_slots, 5, d[j] * qrt.shape[0]))
            xl = np.empty((n_slots, 5, ql.shape[1] * d[j - 1]))
            res = np.empty((n_slots, 5))
            gr = np.empty((n_slots, 25, qrt.shape[0] ** 2))
            gl = np.empty((n_slots, 25, ql.shape[1] ** 2))
            _compress(poly, n_slots, int(offs[j - 1]), d[j], d[j - 1], qrt, ql, xr, xl, res, gr, gl)
            grams["R", j], grams["L", j] = gr, gl
            if j <= n - 1:
                XL[j] = xl.reshape(n_slots, 5, K, d[j - 1])
            if j >= 2:
                XR[j] = xr.reshape(n_slots, 5, d[j], K)
                nres[:, :, j - 2] = res
                vnorm[:, :, j - 1] = np.sqrt(_frob(XR[j]) ** 2 + res**2)
                if j <= n - 1:  # left residual <= that of R_j plus the right one
                    XR[j, "inner"] = inner = np.swapaxes(Q[j], 0, 1) @ XR[j]  # Q_j^T W_j Q_{j-1}
                    nres[:, :, n - 2 + j] = _frob(XR[j] - Q[j] @ inner) + res
            else:  # the first layer: its left residual directly
                v = poly[:n_slots, :, offs[0]:offs[1]].reshape(n_slots, 5, d[1], d[0])
                nres[:, :, n - 1] = rl = _frob(v - Q[1] @ XL[1])
                vnorm[:, :, 0] = np.sqrt(_frob(XL[1]) ** 2 + rl**2)
        # overflow guard of `_diag_safe` per step, with max |W_j(th)| <= ||W_j(th)||_F <= sum_p ||V_p||_F
        big = vnorm.sum(axis=1) * float(max(d))
        safe = np.all(np.isfinite(big), axis=1) & (np.where(big > 1.0, np.log10(np.maximum(big, 1.0)), 0.0)
                                                   .sum(axis=1) < 150.0)
        # the residual of each step relative to its state, for the caller's choice of bases
        worst = float(np.max(nres[:, :, : n - 1].sum(axis=1) / np.maximum(vnorm[:, 0, 1:], np.finfo(float).tiny),
                             initial=0.0))
        gram = np.concatenate([grams["R", j] for j in range(2, n + 1)] + [grams["L", j] for j in range(1, n)],
                              axis=2)
        lin = []
        if with_sv:
            lin = [_triangular(XR[n]), _triangular(np.swapaxes(XL[1], 2, 3))]
            lin += [XR[j, "inner"].reshape(n_slots, 5, K * K) for j in range(2, n)]
    return {"K": K, "gram": gram, "lin": np.concatenate(lin, axis=2) if lin else np.zeros((n_slots, 5, 0)),
            "res": nres, "safe": safe, "worst": worst if np.isfinite(worst) else np.inf}


def join_steps(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """`compress_steps` of consecutive buffers (same K) as one."""
    return {"K": parts[0]["K"], "worst": max(p["worst"] for p in parts),
            **{key: np.concatenate([p[key] for p in parts]) for key in ("gram", "lin", "res", "safe")}}


def step_diagnostics(steps: dict[str, Any], slot: np.ndarray, th: np.ndarray, dims: np.ndarray, bal: np.ndarray,
                     lnorm: np.ndarray, sv: np.ndarray) -> np.ndarray:
    """The state diagnostics (as `stack_diagnostics`) of a factor flow at the dense-output states of step
    ``slot`` at positions ``th`` (see `dense_output`), from `compress_steps`, through small compressed
    problems; returns the mask of the times done (the others are left as they are).

    The layers of a deep linear network often have a low numerical rank (a rank-r balanced start keeps rank
    r along the flow).  With orthonormal bases Q_j of the inner widths (`_bases`), every diagnostic of W_j
    comes from R_j = W_j Q_{j-1} (d_j x k) and L_j = Q_j^T W_j (k x d_{j-1}), linear in the five dense-output
    vectors of a step: their Gram matrices are quadratic forms in the five weights of a time, formed once per
    step, so each time costs O(k^2) work:

    * ||W_j||^2 >= lambda_max(R_j^T R_j) and <= that + rho^2, rho = ||W_j (I - Q Q^T)||_F;
    * the balancedness D_j = A^T A - B B^T (A = W_{j+1}, B = W_j): Q^T D_j Q = R_{j+1}^T R_{j+1} - L_j L_j^T,
      whose norm bounds ||D_j|| from below; from above, the 2 x 2 bound of a symmetric block matrix with
      off-diagonal block norm <= rho_A ||A Q|| + rho_B ||Q^T B|| and the far block within
      [-rho_B^2, rho_A^2];
    * the product W_N ... W_1 next to R_N (Q_{N-1}^T R_{N-1}) ... (Q_2^T R_2) L_1, which differs from it by
      at most sum_j rho_{j+1} prod_{i != j+1} ||W_i|| (Weyl: the singular values differ by no more); its
      singular values from the triangular factors of R_N and L_1^T.

    The residual norms rho are formed explicitly per step (for W_j, j >= 2, the left one is bounded by that of
    R_j plus the right one) and bounded over a step by the triangle inequality.  A time is done when every gap
    between bounds is at rounding level (d_j eps (||A||_F^2 + ||B||_F^2) for the balancedness,
    4 eps ||W_j||_F^2 for ||W_j||^2, 4 N d_max eps prod ||W_i|| for the singular values, about the rounding of
    the dense computation) and its states pass the overflow guard of `_diag_safe` (with ||W_j||_F for
    max |W_j|).
    """
    m = slot.size
    n = len(dims) - 1
    d = [int(x) for x in dims]
    K = steps["K"]
    nk = 2 * n - 2
    gall, lall = steps["gram"], steps["lin"]
    with np.errstate(all="ignore"):
        # the five weights, one product per step for the Gram matrices and the linear pieces
        t = th[:, None]
        t1 = 1.0 - t
        c = np.concatenate([np.ones_like(t), t, t * t1, t * t * t1, t * t * t1 * t1], axis=1)
        cc = (c[:, :, None] * c[:, None, :]).reshape(m, 25)
        gv, lv = _per_step(slot, (cc, c), (gall, lall))
        G = gv.reshape(m, nk, K, K)
        rho = np.einsum("tp,tpk->tk", np.abs(c), steps["res"][slot])
        r2 = rho**2
        tr = np.trace(G, axis1=2, axis2=3)
        hi = _eig_ends(G)[1]
        ok: np.ndarray = steps["safe"][slot].copy()
        # ||W_j||^2 from R_j (j >= 2) and L_1
        il = [n - 1, *range(n - 1)]
        a_ln, r2_ln = hi[:, il], r2[:, il]
        ub_norm = np.sqrt(np.maximum(a_ln, 0.0) + r2_ln)
        if lnorm.size:
            ok &= np.all(r2_ln <= 4.0 * _EPS * (tr[:, il] + r2_ln), axis=1)
        if bal.size:  # pairs j = 1..N-1: A = W_{j+1} (key R_{j+1}), B = W_j (key L_j)
            iA, iB = slice(0, n - 1), slice(n - 1, nk)
            lo_h, hi_h = _eig_ends(G[:, iA] - G[:, iB])
            nA2, nB2, rA2, rB2 = tr[:, iA], tr[:, iB], r2[:, iA], r2[:, iB]
            e = rho[:, iA] * np.sqrt(np.maximum(nA2, 0.0)) + rho[:, iB] * np.sqrt(np.maximum(nB2, 0.0))
            ub = 0.5 * (hi_h + rA2) + np.hypot(0.5 * (hi_h - rA2), e)
            lb = 0.5 * (lo_h - rB2) - np.hypot(0.5 * (lo_h + rB2), e)
            bal_v = np.maximum(np.abs(hi_h), np.abs(lo_h))
            tol = np.array(d[1:n], dtype=float) * _EPS * (nA2 + rA2 + nB2 + rB2)
            ok &= np.all(np.maximum(ub, -lb) - bal_v <= tol, axis=1)
        if sv.size:
            nR = min(d[n], 5 * K) * K
            nL = min(d[0], 5 * K) * K
            tR = _r_factor(lv[:, :nR].reshape(m, -1, K))
            mid = np.swapaxes(_r_factor(lv[:, nR:nR + nL].reshape(m, -1, K)), 1, 2)
            col = nR + nL
            for _ in range(2, n):  # Q_j^T W_j Q_{j-1}, j = 2..N-1, from the left onto T_L^T
                mid = _mul(lv[:, col:col + K * K].reshape(m, K, K), mid)
                col += K * K
            s = _singular_values(_mul(tR, mid))
            # ||W - W_c|| <= sum_j rho(R_{j+1}) prod_{i != j+1} ||W_i||
            bound = np.zeros(m)
            for j in range(1, n):
                bound += rho[:, j - 1] * np.prod(ub_norm[:, :j], axis=1) * np.prod(ub_norm[:, j + 1:], axis=1)
            ok &= bound <= 4.0 * n * max(d) * _EPS * np.prod(ub_norm, axis=1)
            k = min(sv.shape[1], s.shape[1])
            sv[ok, :k] = s[ok, :k]
            sv[ok, k:] = 0.0
    if lnorm.size:
        lnorm[ok] = a_ln[ok]
    if bal.size:
        bal[ok] = bal_v[ok]
    return ok
