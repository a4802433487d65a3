"""Gradient flows of a deep linear network, integrated to requested times.

`run_flow` integrates one flow from W0 with the Numba Dormand-Prince 5(4) integrator of
`dlnsim._kernels.flow` and returns a Dataset over ``time``:

- ``kind="factor"``: the factor flow (2.2) dW_j/dt = -grad_{W_j} L^N (same gradient kernel as GD);
  it conserves W_{j+1}^T W_{j+1} - W_j W_j^T (2.3).
- ``kind="end_to_end"``: the end-to-end flow (2.5) dW/dt = -A_W(grad L^1(W)) of the product, valid for a
  balanced start (checked).  It has no factors, so no balancedness is recorded.
- ``kind="modified"``: the first-order modified equation of GD with stepsize ``eta``,
  dW/dt = -grad L - (eta/2) Hess L grad L; constant-stepsize GD follows it to O(eta^2) at fixed time,
  the plain flow only to O(eta).

GD next to the flows at equal times is `dlnsim.compare_flow` (module `dlnsim.compare`), the sharpness
`dlnsim.sharpness` (module `dlnsim.hessian`).

Stop reasons of the integrator are reported in the ``status`` attribute: ``done``, ``max_steps``,
``nonfinite`` (the right-hand side is not finite: e.g. an overflowing start), ``step_underflow``.  Requested
times after a stop stay NaN; the record up to the stop is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from . import dataset
from ._blas import blas_threads as _blas_threads
from ._kernels import flow as _fk
from ._validate import nonneg_int, positive_float
from .init import balancedness
from .objective import _checked, _layout, loss, product
from .problem import Problem

__all__ = ["EXTRA_SCHEMA", "run_flow"]

KINDS = {"factor": _fk.FACTOR, "end_to_end": _fk.END_TO_END, "modified": _fk.MODIFIED}
STATUS = {
    _fk.DONE: ("done", "all requested times reached"),
    _fk.MAX_STEPS: ("max_steps", "the step budget max_steps was used up"),
    _fk.NONFINITE: ("nonfinite", "the right-hand side became non-finite (overflow)"),
    _fk.STEP_UNDERFLOW: ("step_underflow", "the step size fell below the resolution of t"),
}
INTEGRATOR = "Dormand-Prince 5(4), PI step-size control, FSAL, continuous extension of order 4 (DOPRI5)"

#: name -> (dims, units, long_name) of the variables this module writes (passed to `dataset.build`)
EXTRA_SCHEMA: dict[str, tuple[tuple[str, ...], str, str]] = {
    "time": (("time",), "1", "gradient-flow time t"),
    "loss_t": (("time",), "1", "loss L^N = 1/2 ||Y - W_N...W_1 X||_F^2 along the flow"),
    "excess_loss_t": (("time",), "1", "loss minus the least-squares optimum along the flow"),
    "grad_norm_sq_t": (("time",), "1", "squared gradient norm ||grad L^N||_F^2 along the flow"),
    "balancedness_t": (("time", "pair"), "1",
                       "balancedness ||W_{j+1}^T W_{j+1} - W_j W_j^T|| (spectral) along the flow"),
    "balancedness_max_t": (("time",), "1", "max_j ||W_{j+1}^T W_{j+1} - W_j W_j^T|| along the flow"),
    "product_sv_t": (("time", "sv"), "1", "singular values of the product W_N...W_1 along the flow"),
    "flow_loss": (("k",), "1", "loss of the gradient flow (2.2) at the GD time t_k"),
    "flow_distance": (("k",), "1", "||W_GD(k) - W_flow(t_k)||_F over the factor tuple (gradient flow 2.2)"),
    "flow_product_distance": (("k",), "1",
                              "||W_N...W_1 (GD, k) - W_N...W_1 (flow, t_k)||_F (gradient flow 2.2)"),
    "modified_flow_loss": (("k",), "1", "loss of the modified flow -grad L - (eta/2) H grad L at t_k"),
    "modified_flow_distance": (("k",), "1",
                               "||W_GD(k) - W_mod(t_k)||_F over the factor tuple (modified flow)"),
    "modified_flow_product_distance": (("k",), "1",
                                       "||W_N...W_1 (GD, k) - W_N...W_1 (modified flow, t_k)||_F"),
    "end_to_end_flow_loss": (("k",), "1", "loss of the end-to-end flow (2.5) at t_k"),
    "end_to_end_flow_product_distance": (("k",), "1",
                                         "||W_N...W_1 (GD, k) - W(t_k) of the end-to-end flow (2.5)||_F"),
    "sharpness": (("k",), "1", "largest eigenvalue of the Hessian of L^N at W(k)"),
    "sharpness_limit": (("k",), "1", "2 / eta_k, the sharpness where GD on a quadratic becomes unstable"),
}


# --------------------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------------------


def _times(t: Any) -> np.ndarray:
    try:
        arr = np.array(t, dtype=np.float64, copy=True)
    except (TypeError, ValueError):
        raise ValueError("t must be a 1-D array of real times") from None
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"t must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("t must not be empty")
    if not np.all(np.isfinite(arr)):
        raise ValueError("t must be finite")
    if arr[0] < 0:
        raise ValueError(f"t must be >= 0 (the flow starts at t = 0 from W0), got t[0] = {arr[0]!r}")
    if arr.size > 1 and np.any(np.diff(arr) < 0):
        i = int(np.argmax(np.diff(arr) < 0))
        raise ValueError(f"t must be non-decreasing; t[{i + 1}] = {arr[i + 1]!r} < t[{i}] = {arr[i]!r}")
    return np.ascontiguousarray(arr)


def _kind(kind: Any) -> int:
    if not isinstance(kind, str) or kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    return KINDS[kind]


def _eta_for(kind: str, eta: Any) -> float:
    if kind == "modified":
        if eta is None:
            raise ValueError("eta is required for kind='modified' (the GD stepsize of the modified flow)")
        return positive_float(eta, "eta")
    if eta is not None:
        raise ValueError(f"eta is only used by kind='modified', got eta={eta!r} with kind={kind!r}")
    return 0.0


def _check_balanced(mats: list[np.ndarray], tol: float) -> float:
    """The balancedness constant of W0, relative to max_j ||W_j||^2; ValueError above ``tol``."""
    if len(mats) < 2:
        return 0.0
    bal = float(np.max(balancedness(mats)))
    scale = max(float(np.linalg.norm(Wj, 2)) ** 2 for Wj in mats)
    rel = bal / scale if scale > 0 else bal
    if rel > tol:
        raise ValueError(
            f"W0 must be balanced for kind='end_to_end' (2.5): max_j ||W_(j+1)^T W_(j+1) - W_j W_j^T|| = "
            f"{bal:.3e}, {rel:.3e} relative to max_j ||W_j||^2 > balance_tol = {tol:g}; "
            "use kind='factor' for unbalanced starts"
        )
    return rel


def _numerical_rank(Wp: np.ndarray) -> int:
    s = np.linalg.svd(Wp, compute_uv=False)
    if s.size == 0 or s[0] == 0.0:
        return 0
    return int(np.sum(s > s[0] * max(Wp.shape) * 100.0 * np.finfo(float).eps))


# --------------------------------------------------------------------------------------------------------
# one integration
# --------------------------------------------------------------------------------------------------------


@dataclass
class _Flow:
    """Outputs of one call of the integrator kernel (arrays over the requested times)."""

    loss: np.ndarray
    gn2: np.ndarray
    bal: np.ndarray
    sv: np.ndarray
    states: np.ndarray
    istats: np.ndarray
    fstats: np.ndarray
    rank: int
    status: int = _fk.DONE


def _integrate(
    problem: Problem,
    mats: list[np.ndarray],
    t: np.ndarray,
    code: int,
    eta: float,
    rtol: float,
    atol: float,
    max_steps: int,
    first_step: float,
    fixed_step: float,
    save: np.ndarray | None,
    diag: bool,
    with_grad: bool = False,
    with_loss: bool = True,
) -> _Flow:
    """Run the kernel; ``save`` (bool per time) selects the times whose state is kept; at the requested
    times ``with_loss`` records the loss, ``with_grad`` also the squared gradient norm, ``diag`` the
    balancedness and singular values."""
    w, dims, offs, pivot = _layout(mats)
    rank = 0
    if code == _fk.END_TO_END:
        Wp = product(mats)
        rank = _numerical_rank(Wp)
        y = np.ascontiguousarray(Wp, dtype=np.float64).ravel().copy()
    else:
        y = w
    n_t = t.size
    n_pairs = len(mats) - 1 if (diag and code != _fk.END_TO_END) else 0
    n_sv = int(min(dims)) if diag else 0
    if save is None:
        save_idx = np.full(n_t, -1, dtype=np.int64)
        n_save = 0
    else:
        n_save = int(np.sum(save))
        save_idx = np.where(save, np.cumsum(save) - 1, -1).astype(np.int64)
    nan = np.nan
    out = _Flow(
        loss=np.full(n_t, nan),
        gn2=np.full(n_t, nan),
        bal=np.full((n_t, n_pairs), nan),
        sv=np.full((n_t, n_sv), nan),
        states=np.full((n_save, y.size), nan),
        istats=np.zeros(_fk.N_ISTATS, dtype=np.int64),
        fstats=np.zeros(_fk.N_FSTATS),
        rank=rank,
    )
    out.status = int(_fk._integrate(
        code, y, t, rtol, atol, max_steps, first_step, fixed_step, dims, offs, pivot, problem.Rt, problem.F,
        problem.lstar, eta, rank, save_idx, out.states, out.loss, out.gn2, with_loss,
        with_grad and code != _fk.END_TO_END, diag, out.bal, out.sv, out.istats, out.fstats,
    ))
    return out


def _run_flow(
    problem: Problem,
    W0: Sequence[np.ndarray],
    t: Any,
    rtol: float = 1e-10,
    atol: float = 1e-12,
    kind: str = "factor",
    eta: float | None = None,
    max_steps: int = 1_000_000,
    first_step: float = 0.0,
    *,
    fixed_step: float | None = None,
    diagnostics: bool = True,
    balance_tol: float = 1e-8,
    save: Any = None,
    attrs: dict[str, Any] | None = None,
    blas_threads: int | None = 1,
) -> tuple[xr.Dataset, np.ndarray]:
    """`run_flow`, also returning the flat states at the times where ``save`` is true (all if ``save`` is
    True, none if None): factor layout for factor/modified flows, the C-ordered product for end_to_end."""
    mats = _checked(problem, W0, "W0")
    times = _times(t)
    code = _kind(kind)
    eta_v = _eta_for(kind, eta)
    rtol = positive_float(rtol, "rtol")
    atol = positive_float(atol, "atol")
    max_steps = nonneg_int(max_steps, "max_steps", minimum=1)
    first_step = positive_float(first_step, "first_step", allow_zero=True)
    h_fixed = 0.0 if fixed_step is None else positive_float(fixed_step, "fixed_step")
    balance_tol = positive_float(balance_tol, "balance_tol", allow_zero=True)
    bal0 = _check_balanced(mats, balance_tol) if code == _fk.END_TO_END else None
    if save is None or save is False:
        save_mask = None
    elif save is True:
        save_mask = np.ones(times.size, dtype=bool)
    else:
        save_mask = np.asarray(save, dtype=bool)
        if save_mask.shape != times.shape:
            raise ValueError(f"save must be a bool array shaped like t {times.shape}, got {save_mask.shape}")

    with _blas_threads(blas_threads):
        res = _integrate(problem, mats, times, code, eta_v, rtol, atol, max_steps, first_step, h_fixed,
                         save_mask, bool(diagnostics), bool(diagnostics))
    n = len(mats)
    widths = np.array([mats[0].shape[1], *(M.shape[0] for M in mats)], dtype=np.int64)
    status, reason = STATUS[res.status]
    data: dict[str, np.ndarray] = {
        "loss_t": res.loss,
        "excess_loss_t": res.loss - problem.lstar,
    }
    coords: dict[str, np.ndarray] = {"time": times}
    if diagnostics:
        if code != _fk.END_TO_END:
            data["grad_norm_sq_t"] = res.gn2
        if code != _fk.END_TO_END and n > 1:
            data["balancedness_t"] = res.bal
            data["balancedness_max_t"] = np.max(res.bal, axis=1)
            coords["pair"] = np.arange(1, n, dtype=np.int64)
        data["product_sv_t"] = res.sv
        coords["sv"] = np.arange(1, res.sv.shape[1] + 1, dtype=np.int64)
    run_attrs: dict[str, Any] = {
        "title": f"{kind} gradient flow of a depth-{n} linear network",
        "kind": kind,
        "integrator": INTEGRATOR if h_fixed == 0.0 else INTEGRATOR + " with fixed steps (no error control)",
        "status": status,
        "status_reason": reason,
        "n_steps": int(res.istats[_fk.S_ACCEPTED]),
        "n_rejected": int(res.istats[_fk.S_REJECTED]),
        "n_rhs": int(res.istats[_fk.S_RHS]),
        "n_times_done": int(res.istats[_fk.S_DONE_TIMES]),
        "t_reached": float(res.fstats[_fk.F_T]),
        "t_end": float(times[-1]),
        "first_step": float(res.fstats[_fk.F_H0]),
        "first_step_requested": first_step,
        "fixed_step": h_fixed if h_fixed > 0 else None,
        "rtol": rtol,
        "atol": atol,
        "max_steps": max_steps,
        "eta": eta_v if kind == "modified" else None,
        "N": n,
        "widths": widths,
        "d_x": problem.d_x,
        "d_y": problem.d_y,
        "m": problem.m,
        "initial_loss": loss(problem, mats),
        "optimal_loss": problem.lstar,
        **problem.meta,
    }
    if code == _fk.END_TO_END:
        run_attrs["end_to_end_rank"] = res.rank
        run_attrs["initial_balancedness_rel"] = bal0
    run_attrs.update(dataset.provenance())
    run_attrs.update(attrs or {})
    return dataset.build(data, coords, run_attrs, schema=EXTRA_SCHEMA), res.states


def run_flow(
    problem: Problem,
    W0: Sequence[np.ndarray],
    t: Any,
    rtol: float = 1e-10,
    atol: float = 1e-12,
    kind: str = "factor",
    eta: float | None = None,
    max_steps: int = 1_000_000,
    first_step: float = 0.0,
    *,
    fixed_step: float | None = None,
    diagnostics: bool = True,
    balance_tol: float = 1e-8,
    attrs: dict[str, Any] | None = None,
    blas_threads: int | None = 1,
) -> xr.Dataset:
    """Integrate a gradient flow from ``W0`` (at t = 0) and record it at the times ``t``.

    ``t`` is 1-D, finite, non-decreasing and >= 0.  ``kind`` is ``"factor"`` (2.2), ``"end_to_end"`` (2.5;
    needs W0 balanced to ``balance_tol`` relative to max_j ||W_j||^2) or ``"modified"`` (needs ``eta``).
    ``rtol``/``atol`` are the local error tolerances of the adaptive integrator, ``max_steps`` bounds the
    accepted + rejected steps, ``first_step`` = 0 selects the initial step automatically; ``fixed_step``
    switches the error control off (equal steps <= fixed_step).  ``diagnostics`` adds ||grad L||^2, the
    balancedness and the singular values of the product at every requested time (eigen/singular value
    decompositions: turn it off for very many times on large networks; the loss alone is cheap).
    BLAS runs on ``blas_threads`` threads (default 1, as in `run_gd`; None leaves it).

    Returns a Dataset over ``time`` with ``loss_t``, ``excess_loss_t``, and with ``diagnostics``
    ``grad_norm_sq_t`` (factor and modified), ``balancedness_t``/``balancedness_max_t`` (factor and
    modified, N >= 2) and ``product_sv_t``; the attributes ``status`` (done / max_steps / nonfinite /
    step_underflow), ``n_steps``, ``n_rejected``, ``rtol``, ``atol``, ``kind``, ``eta`` and the provenance.
    """
    ds, _ = _run_flow(problem, W0, t, rtol, atol, kind, eta, max_steps, first_step, fixed_step=fixed_step,
                      diagnostics=diagnostics, balance_tol=balance_tol, attrs=attrs,
                      blas_threads=blas_threads)
    return ds
