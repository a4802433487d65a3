"""Gradient descent runs: validate, call the Numba kernel in chunks, return a `GDResult`, build the Dataset.

GD (2.1): W_j(k+1) = W_j(k) - eta_k grad_{W_j} L^N(W(k)).  The state W(k) is evaluated for k = 0..n_iter
(n_iter steps).  At record points the Dataset stores the loss, ||grad||^2, the balancedness per pair and its
max, ||W_j||^2 per layer, the singular values of the product, the descent ratio of Prop. 3.4(4), eta_k and
t_k.  Over *all* steps the attributes keep max_k L(k+1) - L(k) and min_k of the descent ratio.

A run stops early, with status ``diverged`` and the iteration in ``stop_iteration``, when the loss or the
gradient becomes non-finite or the loss exceeds ``blowup`` x max(L(0), 1/2 ||Y||_F^2); record points after
the stop stay NaN.  With ``stop_early=True`` it also stops when ||grad L||_F <= gtol.  Otherwise the status
is ``converged`` when the final ||grad L||_F <= gtol, else ``max_iter``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from . import dataset
from ._blas import blas_threads as _blas_threads
from ._kernels import gd as _gd
from ._kernels.linalg import workspace_size
from ._validate import nonneg_int, positive_float
from .objective import _checked, _layout, _unflatten
from .problem import Problem
from .schedules import Schedule, as_schedule
from .theory import StepsizeBound, stepsize_bound

__all__ = ["Every", "GDResult", "LogSpaced", "gd_dataset", "record_points", "run_gd", "solve_gd", "weights_from"]


@dataclass(frozen=True)
class Every:
    """Record every n-th iteration (and the last)."""

    n: int

    def __post_init__(self) -> None:
        nonneg_int(self.n, "record (every n-th iteration)", minimum=1)

    def points(self, n_iter: int) -> np.ndarray:
        return np.union1d(np.arange(0, n_iter + 1, self.n, dtype=np.int64), [n_iter])

    def describe(self) -> str:
        return f"every {self.n}"


@dataclass(frozen=True)
class LogSpaced:
    """About n log-spaced iterations, plus the first (0) and the last."""

    n: int = 200

    def __post_init__(self) -> None:
        nonneg_int(self.n, "record (number of log-spaced points)", minimum=2)

    def points(self, n_iter: int) -> np.ndarray:
        if n_iter == 0:
            return np.zeros(1, dtype=np.int64)
        pts = np.unique(np.round(np.logspace(0.0, math.log10(n_iter), self.n)).astype(np.int64))
        return np.union1d(pts, [0, n_iter]).astype(np.int64)

    def describe(self) -> str:
        return f"log-spaced {self.n}"


class _Points:
    def __init__(self, pts: np.ndarray) -> None:
        self.pts = pts

    def points(self, n_iter: int) -> np.ndarray:
        if self.pts.size and (self.pts[0] < 0 or self.pts[-1] > n_iter):
            raise ValueError(f"record: iterations must lie in [0, n_iter = {n_iter}]")
        return np.union1d(self.pts, [0, n_iter]).astype(np.int64)

    def describe(self) -> str:
        return f"explicit {self.pts.size}"


def _record_rule(record: Any) -> Every | LogSpaced | _Points:
    if isinstance(record, Every | LogSpaced):
        return record
    if isinstance(record, str):
        if record == "log":
            return LogSpaced()
        if record == "all":
            return Every(1)
        if record.startswith("log:"):
            return LogSpaced(int(record[4:]))
        if record.startswith("every:"):
            return Every(int(record[6:]))
        raise ValueError(f"record must be 'log', 'log:N', 'all', 'every:N', an int or an array, got {record!r}")
    if isinstance(record, int | np.integer) and not isinstance(record, bool):
        return Every(int(record))
    if isinstance(record, Sequence | np.ndarray):
        arr = np.asarray(record)
        if arr.dtype.kind not in "iu":
            raise ValueError("record: an explicit list of iterations must hold integers")
        return _Points(np.unique(arr.astype(np.int64)))
    raise ValueError(f"record must be 'log', 'all', an int, a LogSpaced/Every rule or an array, got {record!r}")


def record_points(n_iter: int, record: Any = "log") -> np.ndarray:
    """The iterations (sorted, first and last included) at which `run_gd` records."""
    return _record_rule(record).points(nonneg_int(n_iter, "n_iter"))


def _eta_from_bound(eta: str, problem: Problem, W: list[np.ndarray]) -> tuple[float, StepsizeBound]:
    """'bound' or '<c>xbound' -> c * eta* of (5.1)."""
    text = eta.strip().lower()
    if text == "bound":
        factor = 1.0
    elif text.endswith("xbound"):
        try:
            factor = float(text[: -len("xbound")])
        except ValueError:
            raise ValueError(f"eta: expected a number, 'bound' or '<c>xbound', got {eta!r}") from None
    else:
        raise ValueError(f"eta: expected a number, 'bound' or '<c>xbound', got {eta!r}")
    factor = positive_float(factor, "eta (multiple of the bound)")
    b = stepsize_bound(problem, W)
    return factor * b.eta, b


@dataclass
class GDResult:
    """What one gradient-descent run produced, before it becomes a Dataset (see `gd_dataset`).

    ``records`` maps a variable name to its values over the record points ``k`` (first axis): ``loss``,
    ``excess_loss``, ``grad_norm_sq``, ``balancedness`` (k, pair), ``layer_norm_sq`` (k, layer),
    ``product_sv`` (k, sv), ``descent_ratio``, ``eta`` and ``t``.  ``w`` is the final flat state (factor
    layout of ``dims``), ``snapshots`` the flat state at every record point when asked for (NaN after a
    stop).  ``attrs`` holds the run's attributes (settings, status, theory constants, provenance).
    """

    k: np.ndarray
    records: dict[str, np.ndarray]
    w: np.ndarray
    dims: np.ndarray
    schedule: Schedule
    status: str
    stop_iteration: int
    attrs: dict[str, Any]
    snapshots: np.ndarray | None = None
    keep_weights: bool = False


def run_gd(
    problem: Problem,
    W0: Sequence[np.ndarray],
    eta: float | str | Schedule | np.ndarray,
    n_iter: int,
    record: Any = "log",
    *,
    gtol: float = 1e-10,
    stop_early: bool = False,
    blowup: float = 1e8,
    bound: StepsizeBound | None = None,
    keep_weights: bool = False,
    progress: bool = False,
    attrs: dict[str, Any] | None = None,
    blas_threads: int | None = 1,
) -> xr.Dataset:
    """Run ``n_iter`` steps of gradient descent from ``W0`` and return the records as a Dataset.

    ``eta`` is a positive number, a `Schedule`, an array of n_iter stepsizes, or ``"bound"`` /
    ``"<c>xbound"`` (c times eta* of (5.1) for this start).  ``record`` is ``"log"`` (200 log-spaced points,
    the default), ``"log:N"``, ``"all"``, an int n (every n-th), `Every`/`LogSpaced`, or an array of
    iterations.  ``bound`` (default: the section-5 bound when W0 is balanced) puts the theory constants
    in the attributes.  ``keep_weights`` stores the final factors (see `weights_from`).  BLAS runs on
    ``blas_threads`` threads during the run (default 1: faster for these matrix sizes; None leaves it).

    `solve_gd` takes the same arguments and returns the `GDResult` this Dataset is built from; GD next to
    the gradient flows is `dlnsim.compare_flow`.
    """
    return gd_dataset(solve_gd(problem, W0, eta, n_iter, record, gtol=gtol, stop_early=stop_early,
                               blowup=blowup, bound=bound, keep_weights=keep_weights, progress=progress,
                               attrs=attrs, blas_threads=blas_threads))


def solve_gd(
    problem: Problem,
    W0: Sequence[np.ndarray],
    eta: float | str | Schedule | np.ndarray,
    n_iter: int,
    record: Any = "log",
    *,
    gtol: float = 1e-10,
    stop_early: bool = False,
    blowup: float = 1e8,
    bound: StepsizeBound | None = None,
    keep_weights: bool = False,
    progress: bool = False,
    attrs: dict[str, Any] | None = None,
    snapshots: bool = False,
    blas_threads: int | None = 1,
) -> GDResult:
    """`run_gd` without the Dataset: the `GDResult`.  With ``snapshots`` it also keeps the flat state W(k)
    at every record point, shape (n_rec, n_params) (NaN after a stop), for comparisons with the gradient
    flow at the same times."""
    W = _checked(problem, W0, "W0")
    n_iter = nonneg_int(n_iter, "n_iter")
    gtol = positive_float(gtol, "gtol", allow_zero=True)
    blowup = positive_float(blowup, "blowup")
    if bound is not None and not isinstance(bound, StepsizeBound):
        raise ValueError(f"bound must be a StepsizeBound (from dlnsim.stepsize_bound), got {type(bound).__name__}")
    if isinstance(eta, str):
        eta_value, bound_used = _eta_from_bound(eta, problem, W)
        bound = bound or bound_used
        schedule: Schedule = as_schedule(eta_value)
        eta_label = eta
    else:
        schedule = as_schedule(eta)
        eta_label = "schedule"
    etas = np.ascontiguousarray(schedule.values(n_iter), dtype=np.float64)
    if bound is None:
        try:
            bound = stepsize_bound(problem, W)
        except ValueError:
            bound = None  # an unbalanced start: Theorem 2.4 with alpha = 0 does not apply
    rule = _record_rule(record)
    rec_k = rule.points(n_iter)

    w, dims, offs, pivot = _layout(W)
    n = len(W)
    n_rec = rec_k.size
    n_sv = int(min(dims))
    nan = np.nan
    rec = {
        "loss": np.full(n_rec, nan),
        "excess_loss": np.full(n_rec, nan),
        "grad_norm_sq": np.full(n_rec, nan),
        "balancedness": np.full((n_rec, n - 1), nan),
        "layer_norm_sq": np.full((n_rec, n), nan),
        "product_sv": np.full((n_rec, n_sv), nan),
        "descent_ratio": np.full(n_rec, nan),
        "eta": np.full(n_rec, nan),
        "t": np.full(n_rec, nan),
    }
    # numpy here, not the kernel: a second compiled caller of the gradient kernel would double the compile time
    P = W[0]
    for Wj in W[1:]:
        P = Wj @ P
    loss0 = problem.loss_of_product(P)
    threshold = blowup * max(loss0, 0.5 * problem.norm_Y_F**2, np.finfo(float).tiny)
    acc = np.zeros(_gd.N_ACC)
    acc[_gd.A_MIN_RATIO] = np.inf
    acc[_gd.A_MAX_INCREASE] = -np.inf
    iacc = np.zeros(_gd.N_IACC, dtype=np.int64)
    iacc[_gd.I_PENDING] = -1
    iacc[_gd.I_STOP] = -1

    total = n_iter + 1
    chunk = total if not progress else max(1000, total // 200)
    snaps = np.full((n_rec, w.size), nan) if snapshots else None
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_iter, unit="it", desc=f"GD N={n}", dynamic_ncols=True, leave=False)
    g = np.empty_like(w)
    ws = np.empty(workspace_size(dims, pivot))
    status = _gd.RUNNING
    k = 0
    r = 0  # next record point whose state-based diagnostics are pending
    with _blas_threads(blas_threads):
        try:
            while k < total:
                # chunks end at record points, so W(rec_k[r]) is in w here: eigenvalues and SVDs in numpy
                if r < n_rec and rec_k[r] == k:
                    if np.all(np.isfinite(w)):
                        _diagnostics(w, dims, offs, rec["balancedness"][r], rec["layer_norm_sq"][r],
                                     rec["product_sv"][r])
                        if snaps is not None:
                            snaps[r] = w
                    r += 1
                k_stop = min(k + chunk, total, int(rec_k[r]) if r < n_rec else total)
                status = _gd._gd_chunk(
                    w, g, ws, dims, offs, pivot, problem.Rt, problem.F, problem.lstar, etas, n_iter, k, k_stop,
                    threshold, gtol * gtol, stop_early, rec_k, rec["loss"], rec["excess_loss"],
                    rec["grad_norm_sq"], rec["descent_ratio"], rec["eta"], rec["t"], acc, iacc,
                )
                if bar is not None:
                    bar.update(min(k_stop, n_iter) - min(k, n_iter))
                    bar.set_postfix(loss=f"{acc[_gd.A_LAST_LOSS]:.3e}", refresh=False)
                if status != _gd.RUNNING:
                    break
                k = k_stop
        finally:
            if bar is not None:
                bar.close()
    if status in (_gd.DIVERGED_NONFINITE, _gd.DIVERGED_BLOWUP):
        # a blown-up (finite) state may have been diagnosed before the kernel flagged it: records from the
        # stop on stay NaN
        after = rec_k >= iacc[_gd.I_STOP]
        for key in ("balancedness", "layer_norm_sq", "product_sv"):
            rec[key][after] = nan
        if snaps is not None:
            snaps[after] = nan

    stop_k = int(iacc[_gd.I_STOP])
    final_gn2 = float(acc[_gd.A_LAST_GN2])
    if status in (_gd.DIVERGED_NONFINITE, _gd.DIVERGED_BLOWUP):
        status_name = "diverged"
        reason = "non-finite loss or gradient" if status == _gd.DIVERGED_NONFINITE else "loss blow-up"
    elif status == _gd.CONVERGED or final_gn2 <= gtol * gtol:
        status_name, reason = "converged", f"||grad L||_F <= gtol = {gtol:g}"
    else:
        status_name, reason = "max_iter", f"n_iter = {n_iter} steps done, ||grad L||_F > gtol = {gtol:g}"

    run_attrs: dict[str, Any] = {
        "title": f"gradient descent on a depth-{n} linear network",
        "N": n,
        "widths": dims,
        "d_x": problem.d_x,
        "d_y": problem.d_y,
        "m": problem.m,
        "pivot_layer": pivot,
        "n_iter": n_iter,
        "eta_spec": eta_label,
        **schedule.attrs(),
        "record_rule": rule.describe(),
        "gtol": gtol,
        "stop_early": stop_early,
        "blowup": blowup,
        "divergence_threshold": threshold,
        "status": status_name,
        "status_reason": reason,
        "stop_iteration": stop_k,
        "final_loss": float(acc[_gd.A_LAST_LOSS]),
        "final_grad_norm_sq": final_gn2,
        "min_descent_ratio": float(acc[_gd.A_MIN_RATIO]) if np.isfinite(acc[_gd.A_MIN_RATIO]) else nan,
        "max_loss_increase": float(acc[_gd.A_MAX_INCREASE]) if np.isfinite(acc[_gd.A_MAX_INCREASE]) else nan,
        "initial_loss": loss0,
        "optimal_loss": problem.lstar,
        "q": problem.q,
        **problem.meta,
    }
    if bound is not None:
        run_attrs.update(bound.attrs())
    run_attrs.update(dataset.provenance())
    run_attrs.update(attrs or {})
    return GDResult(k=rec_k, records=rec, w=w, dims=dims, schedule=schedule, status=status_name,
                    stop_iteration=stop_k, attrs=run_attrs, snapshots=snaps, keep_weights=keep_weights)


def gd_dataset(res: GDResult) -> xr.Dataset:
    """The Dataset of a `GDResult`: the records over ``k`` with the schema's units and long names."""
    rec = res.records
    n = len(res.dims) - 1
    n_rec = res.k.size
    data = dict(rec)
    data["balancedness_max"] = (
        np.max(rec["balancedness"], axis=1) if n > 1 else np.zeros(n_rec) * rec["loss"]
    )
    if res.keep_weights:
        data["final_weights"] = res.w
    coords = {
        "k": res.k,
        "layer": np.arange(1, n + 1, dtype=np.int64),
        "pair": np.arange(1, n, dtype=np.int64),
        "sv": np.arange(1, rec["product_sv"].shape[1] + 1, dtype=np.int64),
    }
    return dataset.build(data, coords, res.attrs)


def _diagnostics(w: np.ndarray, dims: np.ndarray, offs: np.ndarray, bal: np.ndarray, lnorm: np.ndarray,
                 sv: np.ndarray) -> None:
    """Balancedness per pair, ||W_j||^2 per layer and the top singular values of the product, at one state."""
    n = len(dims) - 1
    W = [w[offs[j]:offs[j + 1]].reshape(int(dims[j + 1]), int(dims[j])) for j in range(n)]
    grams = []
    for j in range(n):
        gram = W[j] @ W[j].T if dims[j + 1] <= dims[j] else W[j].T @ W[j]
        lnorm[j] = np.linalg.eigvalsh(gram)[-1]
        grams.append(gram)
    for j in range(n - 1):
        D = W[j + 1].T @ W[j + 1] - W[j] @ W[j].T
        ev = np.linalg.eigvalsh(0.5 * (D + D.T))
        bal[j] = max(abs(ev[0]), abs(ev[-1]))
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


def weights_from(ds: xr.Dataset) -> list[np.ndarray]:
    """The final factors [W_1, ..., W_N] stored by ``run_gd(..., keep_weights=True)``."""
    if "final_weights" not in ds:
        raise ValueError("ds has no final_weights; run run_gd with keep_weights=True")
    dims = np.asarray(ds.attrs["widths"], dtype=np.int64)
    return _unflatten(np.asarray(ds["final_weights"].values), dims)
