"""Gradient descent next to the gradient flows at equal times.

`compare_flow` runs GD (`dlnsim.runs.gd.solve_gd`) and integrates the flows of `dlnsim.runs.flow` to the GD
times t_k = eta_0 + ... + eta_{k-1} of the record points (the continuous extension of the integrator
evaluates the solution there, so no step is shortened to hit them).  The result is GD's Dataset over ``k``
with the flows' quantities at t_k next to GD's.

Naming: a flow quantity at t_k carries the prefix of its flow, ``flow_`` for the factor flow (2.2),
``modified_flow_`` for the modified flow and ``end_to_end_flow_`` for the end-to-end flow (2.5) (see
`PREFIX`): ``<prefix>_loss``, ``<prefix>_excess_loss``, ``<prefix>_distance`` = ||W_GD(k) - W(t_k)||_F
over the factor tuple (not for the end-to-end flow, which has no factors) and ``<prefix>_product_distance``
= ||W_N...W_1 (GD, k) - W_N...W_1 (t_k)||_F.  The attributes of each integration are
``flow_<kind>_status``, ``flow_<kind>_n_steps``, ``flow_<kind>_n_rejected`` and ``flow_<kind>_t_reached``.

This module imports both `dlnsim.runs.gd` and `dlnsim.runs.flow`; neither of them imports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from dlnsim._blas import blas_threads as _blas_threads
from dlnsim._kernels import flow as _fk
from dlnsim.analysis.sharpness import sharpness_flat
from dlnsim.checks import flag, nonneg_int
from dlnsim.io import dataset
from dlnsim.methods import GD, StepRule, as_method
from dlnsim.objective import checked_weights, product, unflatten
from dlnsim.options import Record, Stop, Tolerances, as_tolerances
from dlnsim.problem import Problem
from dlnsim.runs.flow import INTEGRATOR, KINDS, STATUS, check_balanced, eta_for, integrate, kind_code
from dlnsim.runs.gd import gd_dataset, solve_gd
from dlnsim.schedules import Constant
from dlnsim.theory.bounds import StepsizeBound

__all__ = ["COMPARE_SCHEMA", "PREFIX", "compare_flow"]

#: variable prefix of each flow kind
PREFIX = {"factor": "flow", "modified": "modified_flow", "end_to_end": "end_to_end_flow"}

_FLOW_NAME = {"factor": "the gradient flow (2.2)", "modified": "the modified flow -grad L - (eta/2) H grad L",
              "end_to_end": "the end-to-end flow (2.5)"}


def _compare_schema() -> dict[str, tuple[tuple[str, ...], str, str]]:
    table: dict[str, tuple[tuple[str, ...], str, str]] = {}
    for kind, p in PREFIX.items():
        name = _FLOW_NAME[kind]
        table[f"{p}_loss"] = (("k",), "1", f"loss of {name} at the GD time t_k")
        table[f"{p}_excess_loss"] = (("k",), "1", f"loss minus the least-squares optimum, {name} at t_k")
        if kind != "end_to_end":
            table[f"{p}_distance"] = (("k",), "1",
                                      f"||W_GD(k) - W(t_k)||_F over the factor tuple, W(t) of {name}")
        table[f"{p}_product_distance"] = (("k",), "1",
                                          f"||W_N...W_1 (GD, k) - W_N...W_1 (t_k)||_F, W(t) of {name}")
    table["sharpness"] = (("k",), "1", "largest eigenvalue of the Hessian of L^N at W(k)")
    table["sharpness_limit"] = (("k",), "1", "2 / eta_k, the sharpness where GD on a quadratic becomes unstable")
    return table


#: name -> (dims, units, long_name) of the variables `compare_flow` adds to GD's (passed to `dataset.build`)
COMPARE_SCHEMA = _compare_schema()


def _products(states: np.ndarray, dims: np.ndarray) -> list[np.ndarray]:
    return [product(unflatten(s, dims)) for s in states]


def _kinds_arg(kinds: Any) -> tuple[str, ...] | None:
    if kinds is None:
        return None
    if isinstance(kinds, str):
        kinds = (kinds,)
    if not isinstance(kinds, Sequence) or len(kinds) == 0:
        raise ValueError(f"kind must be a flow kind or a non-empty sequence of them, got {kinds!r}")
    for kd in kinds:
        kind_code(kd)
    if len(set(kinds)) != len(kinds):
        raise ValueError(f"kind must not repeat a kind, got {kinds!r}")
    return tuple(kinds)


def compare_flow(
    problem: Problem,
    W0: Sequence[np.ndarray],
    eta: Any,
    n_iter: int,
    *,
    kind: str | Sequence[str] | None = None,
    method: StepRule | str | None = None,
    record: Record | Any = None,
    stop: Stop | None = None,
    tolerances: Tolerances | None = None,
    sharpness: bool = False,
    sharpness_iters: int = 100,
    bound: StepsizeBound | None = None,
    progress: bool = False,
    attrs: dict[str, Any] | None = None,
    blas_threads: int | None = 1,
) -> xr.Dataset:
    """Run GD (like `dlnsim.run_gd`) and put the gradient flows next to it at the GD times t_k.

    Where GD has no record (t_k NaN, after a stop) the flow values are NaN; the flows are integrated up to the
    last finite t_k.  With momentum (`dlnsim.HeavyBall`, `dlnsim.Nesterov`, `dlnsim.SGD` with ``beta``) the
    flow is taken at the rescaled times t_k / (1 - beta): once the velocity has built up, each step moves the
    factors by eta / (1 - beta) times the gradient, so to first order in eta the iterate k follows the
    gradient flow at that time (attribute ``flow_time_scale``).  SGD is compared with the flow of the full
    loss, which its mean follows to first order.

    Parameters
    ----------
    problem, W0, eta, n_iter, method, record, stop
        As in `dlnsim.run_gd`.  There is no ``alpha``: ``eta="bound"`` or ``"<c>xbound"`` needs a balanced
        start or a ``bound``.
    kind : str or sequence of str, optional
        The flow or flows, without repetition: ``"factor"``, ``"modified"`` (needs a constant stepsize: its
        eta is GD's, and plain GD) and ``"end_to_end"`` (needs a balanced W0).  Default
        ``("factor", "modified")``, the modified flow only for plain GD with a constant stepsize.
    tolerances : Tolerances, optional
        The integrator's tolerances (`dlnsim.Tolerances`), for every flow; default
        ``Tolerances(max_steps=10_000_000)``.  ``first_step`` and ``fixed_step`` are not used.
    sharpness : bool, default False
        Also record the top Hessian eigenvalue of the GD state at each record point (`dlnsim.sharpness`).
    sharpness_iters : int, default 100
        Lanczos iterations (>= 1) of each sharpness.
    bound, progress, attrs, blas_threads
        As in `dlnsim.run_gd` (same defaults); ``blas_threads`` also applies to the flows and the sharpness.

    Returns
    -------
    xarray.Dataset
        The `dlnsim.run_gd` Dataset plus, over ``k`` (prefix ``flow_`` for the factor flow,
        ``modified_flow_``, ``end_to_end_flow_``): ``<prefix>_loss``, ``<prefix>_excess_loss``,
        ``<prefix>_distance`` (factor tuples; not for the end-to-end flow) and ``<prefix>_product_distance``;
        with ``sharpness`` also the top Hessian eigenvalue ``sharpness`` and ``sharpness_limit`` = 2/eta_k.
        Attributes ``flow_rtol``, ``flow_atol``, ``flow_kinds`` and per kind ``flow_<kind>_status``,
        ``flow_<kind>_n_steps``, ``flow_<kind>_n_rejected``, ``flow_<kind>_t_reached``.

    Raises
    ------
    ValueError
        For an invalid or repeated kind, ``"modified"`` with a non-constant stepsize, ``"end_to_end"`` with
        an unbalanced ``W0``, ``tolerances`` that are not `Tolerances`, a non-positive ``sharpness_iters``, a
        non-bool ``sharpness``, and the invalid inputs of `dlnsim.run_gd`.

    Examples
    --------
    >>> import dlnsim
    >>> problem, widths, W0 = dlnsim.paper_setup(N=2, seed=0, d=8, m=24)
    >>> cmp = dlnsim.compare_flow(problem, W0, "bound", 200, kind="factor", record="log:10")
    >>> [name for name in cmp.data_vars if name.startswith("flow_") and cmp[name].ndim]
    ['flow_loss', 'flow_excess_loss', 'flow_distance', 'flow_product_distance']
    >>> float(cmp["flow_distance"].max()) < 1e-2  # at the bound GD stays close to the flow
    True
    """
    tol = Tolerances(max_steps=10_000_000) if tolerances is None else as_tolerances(tolerances)
    rtol, atol, max_steps = tol.rtol, tol.atol, tol.max_steps
    sharpness = flag(sharpness, "sharpness")
    sharpness_iters = nonneg_int(sharpness_iters, "sharpness_iters", minimum=1)
    kinds = _kinds_arg(kind)
    mats = checked_weights(problem, W0, "W0")
    if kinds is not None and "end_to_end" in kinds:
        check_balanced(mats, tol.balance_tol)

    gd = solve_gd(problem, mats, eta, n_iter, method=method, record=record, stop=stop, bound=bound,
                  progress=progress, attrs=attrs, snapshots=True, blas_threads=blas_threads)
    snaps = gd.snapshots
    assert snaps is not None
    eta_c = gd.schedule.eta if isinstance(gd.schedule, Constant) else None
    rule = as_method(method)
    plain = isinstance(rule, GD)
    if kinds is None:
        kinds = ("factor", "modified") if eta_c is not None and plain else ("factor",)
    elif "modified" in kinds and eta_c is None:
        raise ValueError(
            f"kind: the modified flow needs a constant stepsize (its eta is GD's), got schedule {gd.schedule!r}"
        )
    elif "modified" in kinds and not plain:
        raise ValueError(f"kind: the modified flow is that of plain gradient descent, not of {rule.label}")
    # momentum moves W by eta/(1 - beta) per unit of the gradient once the velocity has built up: to first
    # order in eta the iterate k sits at the flow time t_k / (1 - beta)
    time_scale = 1.0 / (1.0 - rule.momentum[1])

    t_k = gd.records["t"]
    n_rec = t_k.size
    finite = np.isfinite(t_k)
    n_fin = int(np.argmin(finite)) if not finite.all() else n_rec  # t_k is finite up to the GD stop
    times = np.array(time_scale * t_k[:n_fin], dtype=np.float64, order="C", copy=True)  # writable: one signature
    dims = gd.dims
    with np.errstate(all="ignore"):
        gd_prod = _products(snaps[:n_fin], dims) if n_fin else []

    new_vars: dict[str, np.ndarray] = {}
    new_outcomes: dict[str, Any] = {}
    new_attrs: dict[str, Any] = {"flow_rtol": rtol, "flow_atol": atol, "flow_max_steps": max_steps,
                                 "flow_kinds": ", ".join(kinds), "flow_integrator": INTEGRATOR,
                                 "flow_time_scale": time_scale}
    for kd in kinds:
        code = KINDS[kd]
        f_loss = np.full(n_rec, np.nan)
        f_excess = np.full(n_rec, np.nan)
        dist = np.full(n_rec, np.nan)
        pdist = np.full(n_rec, np.nan)
        status, n_steps, n_rej, t_reached = "done", 0, 0, 0.0
        if n_fin:
            e = eta_for(kd, eta_c if kd == "modified" else None)
            with _blas_threads(blas_threads), np.errstate(all="ignore"):
                res = integrate(problem, mats, times, code, e, rtol, atol, max_steps, 0.0, 0.0,
                                 np.ones(n_fin, dtype=bool), False)
                f_loss[:n_fin] = res.loss
                f_excess[:n_fin] = res.excess
                for r in range(n_fin):
                    if not (np.all(np.isfinite(res.states[r])) and np.all(np.isfinite(snaps[r]))):
                        continue
                    if code == _fk.END_TO_END:
                        flow_prod = res.states[r].reshape(problem.d_y, problem.d_x)
                    else:
                        dist[r] = np.linalg.norm(snaps[r] - res.states[r])
                        flow_prod = product(unflatten(res.states[r], dims))
                    pdist[r] = np.linalg.norm(gd_prod[r] - flow_prod)
            status = STATUS[res.status][0]
            n_steps, n_rej = int(res.istats[_fk.S_ACCEPTED]), int(res.istats[_fk.S_REJECTED])
            t_reached = float(res.fstats[_fk.F_T])
        p = PREFIX[kd]
        new_vars[f"{p}_loss"] = f_loss
        new_vars[f"{p}_excess_loss"] = f_excess
        if code != _fk.END_TO_END:
            new_vars[f"{p}_distance"] = dist
        new_vars[f"{p}_product_distance"] = pdist
        new_outcomes.update({f"flow_{kd}_status": status, f"flow_{kd}_n_steps": n_steps,
                             f"flow_{kd}_n_rejected": n_rej, f"flow_{kd}_t_reached": t_reached})
        if kd == "modified":
            new_attrs["flow_modified_eta"] = eta_c
    if sharpness:
        sh = np.full(n_rec, np.nan)
        with _blas_threads(blas_threads), np.errstate(all="ignore"):
            for r in range(n_fin):
                # a state whose Hessian-vector products could overflow has no sharpness (NaN)
                if np.all(np.isfinite(snaps[r])) and np.max(np.abs(snaps[r]), initial=0.0) < 1e50:
                    sh[r] = sharpness_flat(problem, snaps[r], dims, sharpness_iters, 1e-10, 0)[0]
            new_vars["sharpness_limit"] = 2.0 / gd.records["eta"]
        new_vars["sharpness"] = sh
        new_attrs["sharpness_iters"] = sharpness_iters
    out = gd_dataset(gd)
    extra = dataset.build(new_vars, {"k": gd.k}, {}, schema=COMPARE_SCHEMA, outcomes=new_outcomes)
    for name, var in extra.data_vars.items():
        out[name] = var.variable
    out.attrs.update(dataset.clean_attrs(new_attrs))
    return out
