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

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dlnsim.checks import nonneg_int, positive_float

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
    also records the iteration where it stopped).

    Parameters
    ----------
    n_iter : int
        Number of GD iterations, an integer in [0, 2**62].
    record : str, int, Every, LogSpaced or sequence of int, default "log"
        The record rule, as ``record`` of `run_gd`: ``"log"`` / ``"log:N"`` (about N log-spaced iterations,
        default 200, all iterations when N > n_iter), ``"all"``, ``"every:N"`` or an int N (every N-th
        iteration), an `Every` or `LogSpaced`, or an explicit 1-D sequence of integer iterations in
        [0, n_iter].

    Returns
    -------
    numpy.ndarray
        The sorted, unique int64 iterations, 0 and ``n_iter`` included.

    Raises
    ------
    ValueError
        If ``n_iter`` is not an integer in [0, 2**62], ``record`` is not one of the forms above (or an explicit
        iteration lies outside [0, n_iter]), or the record would exceed the size limit.
    """
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


def layers_of(states: np.ndarray, dims: np.ndarray, offs: np.ndarray) -> list[np.ndarray]:
    """The layers of a stack of flat states (m, n): W_j as an (m, d_j, d_{j-1}) view."""
    m = states.shape[0]
    return [states[:, offs[j]:offs[j + 1]].reshape(m, int(dims[j + 1]), int(dims[j])) for j in range(len(dims) - 1)]


def _safe_rows(states: np.ndarray, dims: np.ndarray, offs: np.ndarray) -> np.ndarray:
    """`_diag_safe` of each row of ``states``."""
    with np.errstate(all="ignore"):
        total = np.zeros(states.shape[0])
        for a in layers_of(states, dims, offs):
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
    W = layers_of(np.ascontiguousarray(states[ok]), dims, offs)
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
