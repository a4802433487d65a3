"""Gradient flows next to gradient descent (spec §2, DESIGN §2-§4).

* `run_flow` integrates one flow from W0 with the Numba Dormand-Prince 5(4) integrator of
  `dlnsim._kernels.flow` and returns a Dataset over ``time``:

  - ``kind="factor"``: the factor flow (2.2) dW_j/dt = -grad_{W_j} L^N (same gradient kernel as GD);
    it conserves W_{j+1}^T W_{j+1} - W_j W_j^T (2.3).
  - ``kind="end_to_end"``: the end-to-end flow (2.5) dW/dt = -A_W(grad L^1(W)) of the product, valid for a
    balanced start (checked).  It has no factors, so no balancedness is recorded.
  - ``kind="modified"``: the first-order modified equation of GD with stepsize ``eta``,
    dW/dt = -grad L - (eta/2) Hess L grad L; constant-stepsize GD follows it to O(eta^2) at fixed time,
    the plain flow only to O(eta).

* `compare_flow` runs GD (`dlnsim.simulate._run_gd`) and integrates the flows to the GD times
  t_k = eta_0 + ... + eta_{k-1} of the record points (the continuous extension evaluates the solution there,
  so no step is shortened to hit them), and adds to the GD Dataset the flow's loss and the distances
  ||W_GD(k) - W_flow(t_k)||_F (factor tuple) and ||W_N...W_1 (GD) - W_N...W_1 (flow)||_F.

* `sharpness` is the largest eigenvalue of Hess L^N (Lanczos on exact Hessian-vector products).

Stop reasons of the integrator are reported in the ``status`` attribute: ``done``, ``max_steps``,
``nonfinite`` (the right-hand side is not finite: e.g. an overflowing start), ``step_underflow``.  Requested
times after a stop stay NaN; the record up to the stop is kept.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg
import xarray as xr

from . import dataset
from ._blas import blas_threads as _blas_threads
from ._kernels import flow as _fk
from ._validate import nonneg_int, positive_float
from .init import balancedness
from .objective import _checked, _layout, _unflatten, loss, product
from .problem import Problem

__all__ = ["EXTRA_SCHEMA", "add_flow_cli", "compare_flow", "run_flow", "sharpness"]

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


# --------------------------------------------------------------------------------------------------------
# GD next to the flows
# --------------------------------------------------------------------------------------------------------


def _products(states: np.ndarray, dims: np.ndarray) -> list[np.ndarray]:
    return [product(_unflatten(s, dims)) for s in states]


def compare_flow(
    problem: Problem,
    W0: Sequence[np.ndarray],
    eta: Any,
    n_iter: int,
    record: Any = "log",
    rtol: float = 1e-10,
    atol: float = 1e-12,
    kinds: Sequence[str] | None = None,
    *,
    max_steps: int = 10_000_000,
    sharpness: bool = False,
    sharpness_iters: int = 100,
    balance_tol: float = 1e-8,
    blas_threads: int | None = 1,
    **gd_kwargs: Any,
) -> xr.Dataset:
    """Run GD (like `dlnsim.run_gd`) and put the gradient flows next to it at the GD times t_k.

    ``kinds`` (default: ``("factor", "modified")``, the modified flow only for a constant stepsize) may hold
    ``"factor"``, ``"modified"`` (needs a constant stepsize: its eta is GD's) and ``"end_to_end"`` (needs a
    balanced W0).  Adds over ``k``: ``flow_loss``, ``flow_distance``, ``flow_product_distance`` (factor),
    ``modified_flow_loss``, ``modified_flow_distance``, ``modified_flow_product_distance``,
    ``end_to_end_flow_loss``, ``end_to_end_flow_product_distance``; with ``sharpness`` also the top Hessian
    eigenvalue ``sharpness`` and ``sharpness_limit`` = 2/eta_k.  Attributes ``flow_rtol``, ``flow_atol``,
    ``flow_kinds`` and per kind ``flow_<kind>_status``, ``flow_<kind>_n_steps``, ``flow_<kind>_n_rejected``,
    ``flow_<kind>_t_reached``.  ``balance_tol`` is the balancedness check of the end-to-end flow (see
    `run_flow`).  After a GD stop (t_k NaN) the flow values are NaN; the flows are integrated
    up to the last finite t_k.  Other keyword arguments go to `run_gd`.
    """
    from .simulate import _run_gd  # local: simulate may import this module for run_gd(..., flow=True)

    rtol = positive_float(rtol, "rtol")
    atol = positive_float(atol, "atol")
    max_steps = nonneg_int(max_steps, "max_steps", minimum=1)
    sharpness_iters = nonneg_int(sharpness_iters, "sharpness_iters", minimum=1)
    if kinds is not None:
        if isinstance(kinds, str) or not isinstance(kinds, Sequence) or len(kinds) == 0:
            raise ValueError(f"kinds must be a non-empty sequence of flow kinds, got {kinds!r}")
        for kd in kinds:
            _kind(kd)
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"kinds must not repeat a kind, got {kinds!r}")
    if "snapshots" in gd_kwargs:
        raise ValueError("snapshots is set by compare_flow")
    mats = _checked(problem, W0, "W0")
    if kinds is not None and "end_to_end" in kinds:
        _check_balanced(mats, positive_float(balance_tol, "balance_tol", allow_zero=True))

    ds, snaps = _run_gd(problem, mats, eta, n_iter, record, snapshots=True, blas_threads=blas_threads,
                        **gd_kwargs)
    assert snaps is not None
    constant = ds.attrs.get("schedule") == "constant"
    if kinds is None:
        kinds = ("factor", "modified") if constant else ("factor",)
    elif "modified" in kinds and not constant:
        raise ValueError(
            "kinds: the modified flow needs a constant stepsize (its eta is GD's), "
            f"got schedule {ds.attrs.get('schedule')!r}"
        )
    eta_c = float(ds.attrs["schedule_eta"]) if constant else None

    t_k = np.asarray(ds["t"].values, dtype=np.float64)
    n_rec = t_k.size
    finite = np.isfinite(t_k)
    n_fin = int(np.argmin(finite)) if not finite.all() else n_rec  # t_k is finite up to the GD stop
    times = np.array(t_k[:n_fin], dtype=np.float64, order="C", copy=True)  # writable: one kernel signature
    _, dims, _, _ = _layout(mats)
    gd_prod = _products(snaps[:n_fin], dims) if n_fin else []

    new_vars: dict[str, np.ndarray] = {}
    new_attrs: dict[str, Any] = {"flow_rtol": rtol, "flow_atol": atol, "flow_max_steps": max_steps,
                                 "flow_kinds": ", ".join(kinds), "flow_integrator": INTEGRATOR}
    prefix = {"factor": "flow", "modified": "modified_flow", "end_to_end": "end_to_end_flow"}
    for kd in kinds:
        code = KINDS[kd]
        e = eta_c if kd == "modified" else None
        f_loss = np.full(n_rec, np.nan)
        dist = np.full(n_rec, np.nan)
        pdist = np.full(n_rec, np.nan)
        if n_fin:
            with _blas_threads(blas_threads):
                res = _integrate(problem, mats, times, code, _eta_for(kd, e), rtol, atol, max_steps, 0.0, 0.0,
                                 np.ones(n_fin, dtype=bool), False)
            f_loss[:n_fin] = res.loss
            for r in range(n_fin):
                if not np.all(np.isfinite(res.states[r])):
                    continue
                if code == _fk.END_TO_END:
                    flow_prod = res.states[r].reshape(problem.d_y, problem.d_x)
                else:
                    dist[r] = np.linalg.norm(snaps[r] - res.states[r])
                    flow_prod = product(_unflatten(res.states[r], dims))
                pdist[r] = np.linalg.norm(gd_prod[r] - flow_prod)
            status = STATUS[res.status][0]
            n_steps, n_rej, t_reached = int(res.istats[0]), int(res.istats[1]), float(res.fstats[_fk.F_T])
        else:
            status, n_steps, n_rej, t_reached = "done", 0, 0, 0.0
        p = prefix[kd]
        new_vars[f"{p}_loss"] = f_loss
        if code != _fk.END_TO_END:
            new_vars[f"{p}_distance"] = dist
        new_vars[f"{p}_product_distance"] = pdist
        new_attrs.update({f"flow_{kd}_status": status, f"flow_{kd}_n_steps": n_steps,
                          f"flow_{kd}_n_rejected": n_rej, f"flow_{kd}_t_reached": t_reached})
        if kd == "modified":
            new_attrs["flow_modified_eta"] = eta_c
    if sharpness:
        sh = np.full(n_rec, np.nan)
        with _blas_threads(blas_threads):
            for r in range(n_fin):
                if np.all(np.isfinite(snaps[r])):
                    sh[r] = _sharpness_flat(problem, snaps[r], dims, sharpness_iters, 1e-10, 0)[0]
        new_vars["sharpness"] = sh
        with np.errstate(divide="ignore"):
            new_vars["sharpness_limit"] = 2.0 / np.asarray(ds["eta"].values, dtype=np.float64)
        new_attrs["sharpness_iters"] = sharpness_iters
    extra = dataset.build(new_vars, {"k": np.asarray(ds["k"].values)}, {}, schema=EXTRA_SCHEMA)
    out = ds.copy()
    for name, var in extra.data_vars.items():
        out[name] = var.variable
    out.attrs.update(dataset.clean_attrs(new_attrs))
    return out


# --------------------------------------------------------------------------------------------------------
# sharpness
# --------------------------------------------------------------------------------------------------------


def _hvp_fn(problem: Problem, w: np.ndarray, dims: np.ndarray) -> Any:
    """v -> Hess L^N(w) v (closed form, Numba)."""
    w = np.ascontiguousarray(w, dtype=np.float64)
    offs = np.concatenate([[0], np.cumsum(dims[1:] * dims[:-1])]).astype(np.int64)
    pivot = int(np.argmin(dims))

    def hvp(v: np.ndarray) -> np.ndarray:
        out = np.empty_like(w)
        _fk._point(_fk.HVP, w, np.ascontiguousarray(v, dtype=np.float64), dims, offs, pivot, problem.Rt,
                   problem.F, 0.0, 0, out)
        return out

    return hvp


def _sharpness_flat(
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
    eigenvalue, or after ``iters`` iterations (exact after len(w) iterations).
    """
    mats = _checked(problem, W, "W")
    iters = nonneg_int(iters, "iters", minimum=1)
    tol = positive_float(tol, "tol")
    seed = nonneg_int(seed, "seed")
    w, dims, _, _ = _layout(mats)
    return _sharpness_flat(problem, w, dims, iters, tol, seed)[0]


# --------------------------------------------------------------------------------------------------------
# command line (hooked into `dlnsim` by cli.py)
# --------------------------------------------------------------------------------------------------------


def add_flow_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``dlnsim flow`` subcommand (integrate a flow on the paper's Section-5 setup) to ``subparsers``
    (from ``argparse.ArgumentParser.add_subparsers``).  The handler is stored as ``func``."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "flow",
        help="integrate a gradient flow on the Section-5 setup and write a NetCDF file",
        description="Integrate the factor (2.2), end-to-end (2.5) or modified gradient flow from the "
        "balanced start of the paper's Section-5 setup and record it at n-times times in [0, T].",
    )
    p.add_argument("--N", type=int, required=True, help="depth N")
    p.add_argument("--seed", type=int, default=0, help="seed of the setup (default 0)")
    p.add_argument("--d", type=int, default=70, help="input/output dimension d (default 70)")
    p.add_argument("--T", type=float, required=True, help="final time")
    p.add_argument("--n-times", type=int, default=200, help="number of recorded times (default 200)")
    p.add_argument("--spacing", choices=("linear", "log"), default="linear",
                   help="times linear in [0, T] or log-spaced in [T*1e-6, T] plus 0 (default linear)")
    p.add_argument("--kind", choices=sorted(KINDS), default="factor", help="which flow (default factor)")
    p.add_argument("--eta", type=float, default=None, help="GD stepsize of the modified flow")
    p.add_argument("--rtol", type=float, default=1e-10, help="relative tolerance (default 1e-10)")
    p.add_argument("--atol", type=float, default=1e-12, help="absolute tolerance (default 1e-12)")
    p.add_argument("--max-steps", type=int, default=1_000_000, help="step budget (default 1e6)")
    p.add_argument("--no-diagnostics", action="store_true",
                   help="record only the loss (no balancedness / singular values)")
    p.add_argument("--out", required=True, help="output NetCDF file (.nc)")
    p.set_defaults(func=flow_cli)
    return p


def add_compare_options(parser: argparse.ArgumentParser) -> None:
    """Options of ``dlnsim run`` for the GD-vs-flow comparison (see `compare_kwargs`)."""
    g = parser.add_argument_group("gradient flow comparison")
    g.add_argument("--flow", action="store_true", help="put the gradient flow(s) next to GD at t_k")
    g.add_argument("--flow-kinds", default=None,
                   help="comma-separated flows: factor, modified, end_to_end (default factor[,modified])")
    g.add_argument("--flow-rtol", type=float, default=1e-10, help="flow relative tolerance (default 1e-10)")
    g.add_argument("--flow-atol", type=float, default=1e-12, help="flow absolute tolerance (default 1e-12)")
    g.add_argument("--sharpness", action="store_true", help="also record the top Hessian eigenvalue")


def compare_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of `compare_flow` from the options added by `add_compare_options`."""
    kinds = None
    if getattr(args, "flow_kinds", None):
        kinds = tuple(s.strip() for s in args.flow_kinds.split(",") if s.strip())
    return {"rtol": args.flow_rtol, "atol": args.flow_atol, "kinds": kinds, "sharpness": bool(args.sharpness)}


def flow_cli(args: argparse.Namespace) -> int:
    """Handler of ``dlnsim flow``."""
    from .problem import paper_setup

    setup = paper_setup(args.N, args.seed, d=args.d)
    T = positive_float(args.T, "T")
    n_t = nonneg_int(args.n_times, "n-times", minimum=2)
    if args.spacing == "log":
        t = np.concatenate([[0.0], np.geomspace(T * 1e-6, T, n_t - 1)])
    else:
        t = np.linspace(0.0, T, n_t)
    ds = run_flow(setup.problem, setup.W0, t, rtol=args.rtol, atol=args.atol, kind=args.kind, eta=args.eta,
                  max_steps=args.max_steps, diagnostics=not args.no_diagnostics)
    path = dataset.save(ds, args.out)
    print(f"{args.kind} flow, N={args.N}, seed={args.seed}: status {ds.attrs['status']}, "
          f"{ds.attrs['n_steps']} steps ({ds.attrs['n_rejected']} rejected), "
          f"loss {float(ds['loss_t'][0]):.6g} -> {float(ds['loss_t'][-1]):.6g}; wrote {path}")
    return 0 if ds.attrs["status"] == "done" else 1
