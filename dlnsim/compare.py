"""Gradient descent next to the gradient flows at equal times.

`compare_flow` runs GD (`dlnsim.simulate.solve_gd`) and integrates the flows of `dlnsim.flow` to the GD
times t_k = eta_0 + ... + eta_{k-1} of the record points (the continuous extension of the integrator
evaluates the solution there, so no step is shortened to hit them), and puts next to GD's records the
flow's loss and the distances ||W_GD(k) - W_flow(t_k)||_F (factor tuple) and
||W_N...W_1 (GD) - W_N...W_1 (flow)||_F.

Naming: a flow quantity at t_k sits next to GD's under the flow's prefix, ``flow_`` for the factor flow,
``modified_flow_`` for the modified flow and ``end_to_end_flow_`` for the end-to-end flow
(``flow_loss``, ``modified_flow_distance``, ``end_to_end_flow_product_distance``, ...).  The attributes of
each integration are ``flow_<kind>_status``, ``flow_<kind>_n_steps``, ...

This module imports both `dlnsim.simulate` and `dlnsim.flow`; neither of them imports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from . import dataset
from ._blas import blas_threads as _blas_threads
from ._kernels import flow as _fk
from ._validate import nonneg_int, positive_float
from .flow import EXTRA_SCHEMA, INTEGRATOR, KINDS, STATUS, _check_balanced, _eta_for, _integrate, _kind
from .hessian import _sharpness_flat
from .objective import _checked, _unflatten, product
from .problem import Problem
from .schedules import Constant
from .simulate import gd_dataset, solve_gd
from .theory import StepsizeBound

__all__ = ["compare_flow"]

#: variable prefix of each flow kind
PREFIX = {"factor": "flow", "modified": "modified_flow", "end_to_end": "end_to_end_flow"}


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
    gtol: float = 1e-10,
    stop_early: bool = False,
    blowup: float = 1e8,
    bound: StepsizeBound | None = None,
    keep_weights: bool = False,
    progress: bool = False,
    attrs: dict[str, Any] | None = None,
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
    ``flow_<kind>_t_reached``.  ``rtol``, ``atol`` and ``max_steps`` are the integrator's settings (see
    `dlnsim.run_flow`), ``balance_tol`` the balancedness check of the end-to-end flow.  After a GD stop
    (t_k NaN) the flow values are NaN; the flows are integrated up to the last finite t_k.  The other
    keyword arguments are those of `dlnsim.run_gd`.
    """
    if gd_kwargs:
        raise ValueError(f"compare_flow: unknown option(s) {sorted(gd_kwargs)}")
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
    mats = _checked(problem, W0, "W0")
    if kinds is not None and "end_to_end" in kinds:
        _check_balanced(mats, positive_float(balance_tol, "balance_tol", allow_zero=True))

    gd = solve_gd(problem, mats, eta, n_iter, record, gtol=gtol, stop_early=stop_early, blowup=blowup,
                  bound=bound, keep_weights=keep_weights, progress=progress, attrs=attrs, snapshots=True,
                  blas_threads=blas_threads)
    snaps = gd.snapshots
    assert snaps is not None
    constant = isinstance(gd.schedule, Constant)
    if kinds is None:
        kinds = ("factor", "modified") if constant else ("factor",)
    elif "modified" in kinds and not constant:
        raise ValueError(
            f"kinds: the modified flow needs a constant stepsize (its eta is GD's), got schedule {gd.schedule!r}"
        )
    eta_c = gd.schedule.eta if isinstance(gd.schedule, Constant) else None

    t_k = gd.records["t"]
    n_rec = t_k.size
    finite = np.isfinite(t_k)
    n_fin = int(np.argmin(finite)) if not finite.all() else n_rec  # t_k is finite up to the GD stop
    times = np.array(t_k[:n_fin], dtype=np.float64, order="C", copy=True)  # writable: one kernel signature
    dims = gd.dims
    gd_prod = _products(snaps[:n_fin], dims) if n_fin else []

    new_vars: dict[str, np.ndarray] = {}
    new_attrs: dict[str, Any] = {"flow_rtol": rtol, "flow_atol": atol, "flow_max_steps": max_steps,
                                 "flow_kinds": ", ".join(kinds), "flow_integrator": INTEGRATOR}
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
            n_steps, n_rej = int(res.istats[_fk.S_ACCEPTED]), int(res.istats[_fk.S_REJECTED])
            t_reached = float(res.fstats[_fk.F_T])
        else:
            status, n_steps, n_rej, t_reached = "done", 0, 0, 0.0
        p = PREFIX[kd]
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
            new_vars["sharpness_limit"] = 2.0 / gd.records["eta"]
        new_attrs["sharpness_iters"] = sharpness_iters
    out = gd_dataset(gd)
    extra = dataset.build(new_vars, {"k": gd.k}, {}, schema=EXTRA_SCHEMA)
    for name, var in extra.data_vars.items():
        out[name] = var.variable
    out.attrs.update(dataset.clean_attrs(new_attrs))
    return out
