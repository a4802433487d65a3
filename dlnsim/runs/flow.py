"""Gradient flows of a deep linear network, integrated to requested times.

`run_flow` integrates one flow from W0 with the Numba Dormand-Prince 5(4) integrator of
`dlnsim._kernels.flow` and returns a Dataset over ``t`` (the flow time, dimensionless):

- ``kind="factor"``: the factor flow (2.2) dW_j/dt = -grad_{W_j} L^N (same gradient kernel as GD);
  it conserves W_{j+1}^T W_{j+1} - W_j W_j^T (2.3).
- ``kind="end_to_end"``: the end-to-end flow (2.5) dW/dt = -A_W(grad L^1(W)) of the product, valid for a
  balanced start (checked).  It has no factors, so no balancedness is recorded.
- ``kind="modified"``: the first-order modified equation of GD with stepsize ``eta``,
  dW/dt = -grad L - (eta/2) Hess L grad L; constant-stepsize GD follows it to O(eta^2) at fixed time,
  the plain flow only to O(eta).

GD next to the flows at equal times is `dlnsim.compare_flow` (module `dlnsim.runs.compare`), the sharpness
`dlnsim.sharpness` (module `dlnsim.analysis.sharpness`).

``solve_flow`` integrates and returns a ``FlowResult``; `flow_dataset` turns it into a Dataset over ``t``
whose variables have the names of a GD Dataset (``loss``, ``excess_loss``, ``grad_norm_sq``,
``balancedness``, ``balancedness_max``, ``layer_norm_sq``, ``product_sv``); `run_flow` does both.  The
save policy (``record``, ``diagnostics``) is that of `dlnsim.options`.

Status (attribute ``status``, with ``status_reason`` and ``t_reached``):

``done``
    all requested times reached.
``max_steps``
    the step budget ``max_steps`` (accepted + rejected steps) was used up.
``nonfinite``
    the right-hand side is not finite, or too large to take a step at all (an overflowing start, e.g. W0
    with entries ~1e50), or a fixed step produced a non-finite state.
``step_underflow``
    the adaptive step fell below the resolution of t.

Requested times after a stop stay NaN; the record up to the stop is kept.  Diagnostics of a state too large
to evaluate without overflow are NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from dlnsim._blas import blas_threads as _blas_threads
from dlnsim._kernels import flow as _fk
from dlnsim._kernels.args import Data, FlowControls, FlowRecords, FlowWork, Layout
from dlnsim._kernels.flow_diag import _compress
from dlnsim._notice import compile_notice
from dlnsim.checks import attrs_arg, blas_arg, positive_float
from dlnsim.diagnostics.flow import Steps, dense_diagnostics, states_at
from dlnsim.init import balancedness
from dlnsim.io import dataset
from dlnsim.objective import checked_weights, flat_layout, product
from dlnsim.options import Record, Tolerances, as_record, as_tolerances, check_size, flow_times
from dlnsim.problem import Problem
from dlnsim.runs.flow_result import FLOW_SCHEMA, FlowResult, flow_dataset

__all__ = ["FLOW_SCHEMA", "STATUSES", "FlowResult", "flow_dataset", "run_flow", "solve_flow"]

KINDS = {"factor": _fk.FACTOR, "end_to_end": _fk.END_TO_END, "modified": _fk.MODIFIED}
STATUS = {
    _fk.DONE: ("done", "all requested times reached"),
    _fk.MAX_STEPS: ("max_steps", "the step budget max_steps was used up"),
    _fk.NONFINITE: ("nonfinite", "the right-hand side became non-finite (overflow)"),
    _fk.STEP_UNDERFLOW: ("step_underflow", "the step size fell below the resolution of t"),
}
#: the statuses of a flow run
STATUSES = tuple(name for name, _ in STATUS.values())
INTEGRATOR = "Dormand-Prince 5(4), PI step-size control, FSAL, continuous extension of order 4 (DOPRI5)"



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


def kind_code(kind: Any) -> int:
    if not isinstance(kind, str) or kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    return KINDS[kind]


def eta_for(kind: str, eta: Any) -> float:
    if kind == "modified":
        if eta is None:
            raise ValueError("eta is required for kind='modified' (the GD stepsize of the modified flow)")
        return positive_float(eta, "eta")
    if eta is not None:
        raise ValueError(f"eta is only used by kind='modified', got eta={eta!r} with kind={kind!r}")
    return 0.0


def check_balanced(mats: list[np.ndarray], tol: float) -> float:
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


def _excess_numpy(problem: Problem, mats: list[np.ndarray]) -> float:
    """L - L* in numpy, in the residual form of the kernels (one compiled caller fewer on a cold start)."""
    Z = product(mats) @ problem.Rt - problem.F
    return 0.5 * float(np.sum(Z * Z))


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
    excess: np.ndarray
    gn2: np.ndarray
    bal: np.ndarray
    ln: np.ndarray
    sv: np.ndarray
    states: np.ndarray
    istats: np.ndarray
    fstats: np.ndarray
    rank: int
    status: int = _fk.DONE


_STATE_DIAGNOSTICS = ("balancedness", "layer_norm_sq", "product_sv")
#: bytes of dense output the integrator hands over per call when state diagnostics are on
_SLOT_BYTES = 8 * 2**20


def integrate(
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
    diag: bool | tuple[str, ...],
    with_grad: bool = False,
    with_loss: bool = True,
) -> _Flow:
    """Run the kernel; ``save`` (bool per time) selects the times whose state is kept; at the requested
    times ``with_loss`` records the loss, ``with_grad`` also the squared gradient norm, ``diag`` the
    state diagnostics (True: balancedness, ||W_j||^2 and singular values; or a tuple of their names).

    The state diagnostics come from the dense output of the steps, which the kernel hands over in slots
    (`dlnsim._kernels.flow`).  For the factor and modified flows each batch of slots is compressed
    (`record.compress_steps`) and, once the run is over, all times are evaluated at once
    (`record.step_diagnostics`); the few times whose bounds are not at rounding level get their states from a
    second integration (the same steps: the kernel is deterministic) and `record.stack_diagnostics`.  The
    end-to-end flow and N = 1 (nothing to compress) use `record.stack_diagnostics` on each batch.
    """
    names = (_STATE_DIAGNOSTICS if diag else ()) if isinstance(diag, bool) else diag
    w, dims, offs, pivot = flat_layout(mats)
    rank = 0
    if code == _fk.END_TO_END:
        with np.errstate(all="ignore"):
            Wp = product(mats)
        rank = _numerical_rank(Wp) if np.all(np.isfinite(Wp)) else 0
        y = np.ascontiguousarray(Wp, dtype=np.float64).ravel().copy()
    else:
        y = w
    n_t = t.size
    factors = code != _fk.END_TO_END
    n_pairs = len(mats) - 1 if ("balancedness" in names and factors) else 0
    n_layers = len(mats) if ("layer_norm_sq" in names and factors) else 0
    n_sv = int(min(dims)) if "product_sv" in names else 0
    if save is None:
        save_idx = np.full(n_t, -1, dtype=np.int64)
        n_save = 0
    else:
        n_save = int(np.sum(save))
        save_idx = np.where(save, np.cumsum(save) - 1, -1).astype(np.int64)
    nan = np.nan
    out = _Flow(
        loss=np.full(n_t, nan),
        excess=np.full(n_t, nan),
        gn2=np.full(n_t, nan),
        bal=np.full((n_t, n_pairs), nan),
        ln=np.full((n_t, n_layers), nan),
        sv=np.full((n_t, n_sv), nan),
        states=np.full((n_save, y.size), nan),
        istats=np.zeros(_fk.N_ISTATS, dtype=np.int64),
        fstats=np.zeros(_fk.N_FSTATS),
        rank=rank,
    )
    state_diag = bool(n_pairs or n_layers or n_sv)
    n_slots = min(max(_SLOT_BYTES // (40 * y.size), 4), 1024) if state_diag else 0
    poly = np.empty((n_slots, 5, y.size))
    rec = np.full((_fk.N_REC, n_t), nan)
    slot = np.full(n_t, -1, dtype=np.int64)
    y0 = y.copy()
    args = (FlowWork(y, np.empty((7, y.size)), out.istats, out.fstats),
            Data(problem.Rt, problem.F, float(problem.lstar)),
            Layout(dims, offs, int(pivot)),
            FlowControls(t, float(rtol), float(atol), float(first_step), float(fixed_step), float(eta),
                         int(max_steps), int(rank), bool(with_loss), bool(with_grad and factors)),
            FlowRecords(save_idx, out.states, rec, slot, poly))
    kernel = _fk.ENTRY[code]
    steps_wanted = state_diag and factors and len(mats) >= 2  # compressed diagnostics (`Steps`)
    with compile_notice((kernel, _compress) if steps_wanted else kernel, _KERNEL_NAMES[code]):
        status = kernel(*args)
    steps = Steps(dims, offs, n_t, n_sv > 0) if steps_wanted else None
    first = 0  # the first time whose state diagnostics are still to do
    while True:
        stop = int(out.istats[_fk.S_DONE_TIMES])
        if state_diag and stop > first:
            rows = np.arange(first, stop)
            if steps is None or not steps.add(poly, int(out.istats[_fk.S_SLOTS]), slot[rows], rows):
                dense_diagnostics(not factors, out.bal, out.ln, out.sv, y0, poly, slot, rec[_fk.REC_TH],
                                  rec[_fk.REC_EX], dims, offs, rows)
        first = stop
        if status != _fk.BUFFER_FULL:
            break
        status = kernel(*args)
    if steps is not None:
        todo = steps.finish(rec[_fk.REC_TH], out.bal, out.ln, out.sv)
        if todo.size:  # their states from the same integration again
            dense_diagnostics(False, out.bal, out.ln, out.sv, y0, None, slot, rec[_fk.REC_TH], rec[_fk.REC_EX],
                              dims, offs, todo, lambda idx: states_at(kernel, args, y0, t, idx))
    out.status = int(status)
    out.excess = rec[_fk.REC_EX]
    out.gn2 = rec[_fk.REC_GN2]
    out.loss = problem.lstar + out.excess
    return out


_KERNEL_NAMES = {_fk.FACTOR: "the gradient-flow kernel", _fk.END_TO_END: "the end-to-end flow kernel",
                 _fk.MODIFIED: "the modified-flow kernel"}


def _times_arg(t: Any, record: Record, row_floats: int) -> tuple[np.ndarray, str]:
    points = record.points
    if isinstance(points, tuple):
        raise ValueError("record: give the times of a flow as t (an array of times), not as Record.points")
    if record.final_weights:
        raise ValueError("record: Record.final_weights is for gradient descent; a flow keeps no final weights")
    if np.ndim(t) != 0:
        if points is not None:
            raise ValueError(f"record: with an array of times t leave Record.points unset (got {points!r}); "
                             "give a final time t with record='linear:N' or 'log:N'")
        return _times(t), "explicit"
    rule = "linear" if points is None else points
    return _times(flow_times(t, rule, row_floats)), rule


def solve_flow(
    problem: Problem,
    W0: Sequence[np.ndarray],
    t: Any,
    *,
    kind: str = "factor",
    eta: float | None = None,
    record: Record | Any = None,
    tolerances: Tolerances | None = None,
    attrs: dict[str, Any] | None = None,
    blas_threads: int | None = 1,
    save: Any = None,
) -> FlowResult:
    """`run_flow` without the Dataset: the ``FlowResult``.  ``save`` (None, True or a bool per time) selects
    the times whose state is kept in ``states``."""
    rec_opt = as_record(record)
    tol = as_tolerances(tolerances)
    mats = checked_weights(problem, W0, "W0")
    row = 5 + 2 * len(mats) + min(mats[0].shape[1], *(M.shape[0] for M in mats))  # values per time
    times, record_rule = _times_arg(t, rec_opt, row)
    code = kind_code(kind)
    eta_v = eta_for(kind, eta)
    diag = rec_opt.diagnostics
    rtol, atol, max_steps, first_step = tol.rtol, tol.atol, tol.max_steps, tol.first_step
    h_fixed = 0.0 if tol.fixed_step is None else tol.fixed_step
    balance_tol = tol.balance_tol
    user_attrs = attrs_arg(attrs)
    blas = blas_arg(blas_threads)
    bal0 = check_balanced(mats, balance_tol) if code == _fk.END_TO_END else None
    if save is None or save is False:
        save_mask = None
    elif save is True:
        save_mask = np.ones(times.size, dtype=bool)
    else:
        save_mask = np.asarray(save, dtype=bool)
        if save_mask.shape != times.shape:
            raise ValueError(f"save must be a bool array shaped like t {times.shape}, got {save_mask.shape}")
    n = len(mats)
    widths = np.array([mats[0].shape[1], *(M.shape[0] for M in mats)], dtype=np.int64)
    n_params = int(np.sum(widths[1:] * widths[:-1]))
    n_saved = 0 if save_mask is None else int(np.sum(save_mask))
    check_size(times.size, row, "record (times t)")
    check_size(n_saved, n_params, "save (states kept)")
    state_diag = tuple(d for d in diag if d in _STATE_DIAGNOSTICS)
    with _blas_threads(blas), np.errstate(all="ignore"):
        res = integrate(problem, mats, times, code, eta_v, rtol, atol, max_steps, first_step, h_fixed,
                         save_mask, state_diag, "grad_norm_sq" in diag)
        loss0 = problem.lstar + _excess_numpy(problem, mats)
    status, reason = STATUS[res.status]
    records: dict[str, np.ndarray] = {"loss": res.loss, "excess_loss": res.excess}
    factors = code != _fk.END_TO_END
    if factors and "grad_norm_sq" in diag:
        records["grad_norm_sq"] = res.gn2
    if factors and "balancedness" in diag:
        records["balancedness"] = res.bal
    if factors and "layer_norm_sq" in diag:
        records["layer_norm_sq"] = res.ln
    if "product_sv" in diag:
        records["product_sv"] = res.sv
    run_attrs: dict[str, Any] = {
        "title": f"{kind} gradient flow of a depth-{n} linear network",
        "kind": kind,
        "integrator": INTEGRATOR if h_fixed == 0.0 else INTEGRATOR + " with fixed steps (no error control)",
        "record_rule": record_rule,
        "diagnostics": ", ".join(records) if len(records) > 2 else "none",
        "t_end": float(times[-1]),
        "first_step_requested": first_step,
        "fixed_step": h_fixed,  # 0: adaptive steps (numbers, not None: NetCDF attributes have no null)
        "rtol": rtol,
        "atol": atol,
        "max_steps": max_steps,
        "eta": eta_v if kind == "modified" else 0.0,  # the factor flow is the modified flow at eta = 0
        "N": n,
        "widths": widths,
        "d_x": problem.d_x,
        "d_y": problem.d_y,
        "m": problem.m,
        "optimal_loss": problem.lstar,
        **problem.meta,
    }
    outcomes: dict[str, Any] = {
        "status": status,
        "status_reason": reason,
        "n_steps": int(res.istats[_fk.S_ACCEPTED]),
        "n_rejected": int(res.istats[_fk.S_REJECTED]),
        "n_rhs": int(res.istats[_fk.S_RHS]),
        "n_times_done": int(res.istats[_fk.S_DONE_TIMES]),
        "t_reached": float(res.fstats[_fk.F_T]),
        "first_step": float(res.fstats[_fk.F_H0]),
        "initial_loss": loss0,
    }
    if code == _fk.END_TO_END:
        outcomes["end_to_end_rank"] = int(res.rank)
        outcomes["initial_balancedness_rel"] = bal0
    run_attrs.update(dataset.provenance())
    run_attrs.update(user_attrs)
    return FlowResult(t=times, records=records, kind=kind, status=status, n_layers=n, attrs=run_attrs,
                      outcomes=outcomes, states=res.states)


def run_flow(
    problem: Problem,
    W0: Sequence[np.ndarray],
    t: Any,
    *,
    kind: str = "factor",
    eta: float | None = None,
    record: Record | Any = None,
    tolerances: Tolerances | None = None,
    attrs: dict[str, Any] | None = None,
    blas_threads: int | None = 1,
) -> xr.Dataset:
    """Integrate a gradient flow from ``W0`` (at t = 0) and record it at the times ``t``.

    The flows are those of docs/theory.md#gradient-flows.  The diagnostics agree with a dense computation on
    the states to rounding: for factor flows they come from the dense output of each step, compressed once per
    step to the numerical rank of the layers, with a posteriori bounds (``dlnsim.diagnostics.flow``), so with
    low-rank layers (a rank-r balanced start keeps rank r) they cost about as much as the flow itself at
    20 000 times; with full-rank wide layers they cost small eigenproblems per time.  ``solve_flow`` returns
    the ``FlowResult`` this Dataset is built from.

    Parameters
    ----------
    problem : Problem
        The data X, Y.
    W0 : sequence of array_like
        The start [W_1, ..., W_N], W_j of shape (d_j, d_{j-1}), with d_0 = d_x and d_N = d_y.
    t : float or array_like
        The record times: 1-D, finite, non-decreasing and >= 0; or a final time T, with the points to record
        in ``record`` (default 200 equally spaced times in [0, T]).
    kind : {"factor", "end_to_end", "modified"}, default "factor"
        ``"factor"`` (2.2), ``"end_to_end"`` (2.5; needs W0 balanced to ``Tolerances.balance_tol`` relative
        to max_j ||W_j||^2) or ``"modified"`` (the modified flow of backward error analysis; needs ``eta``).
    eta : float, optional
        The GD stepsize that the modified flow follows (> 0); required for ``kind="modified"``, refused
        otherwise.
    record : Record, str, int or sequence of int, optional
        What is recorded (`dlnsim.Record`), as for `dlnsim.run_gd`: with a final time ``t`` the points
        ``"linear"`` / ``"linear:N"`` (N equally spaced times in [0, T], default 200) or ``"log"`` /
        ``"log:N"`` (0 and N - 1 log-spaced times in [1e-6 T, T]), left unset with an array of times; the
        diagnostics ||grad L||^2, the balancedness, ||W_j||^2 and the singular values of the product.
    tolerances : Tolerances, optional
        The integrator's tolerances (`dlnsim.Tolerances`): rtol 1e-10, atol 1e-12, at most 10^6 steps, an
        automatic first step, adaptive steps (or ``fixed_step``), and ``balance_tol`` 1e-8.
    attrs : dict, optional
        Extra global attributes (str keys).
    blas_threads : int or None, default 1
        Number of BLAS threads during the run (as in `run_gd`); None leaves it.

    Returns
    -------
    xarray.Dataset
        A Dataset over the flow time ``t`` (dimension and coordinate) with the variable names of a GD
        Dataset: ``loss``, ``excess_loss`` and the selected diagnostics ``grad_norm_sq``, ``balancedness`` /
        ``balancedness_max``, ``layer_norm_sq`` (factor and modified flows) and ``product_sv``; the attributes
        ``status`` (see ``STATUSES``), ``n_steps``, ``n_rejected``, ``t_reached``, ``rtol``, ``atol``, ``kind``,
        ``eta`` and the provenance.

    Raises
    ------
    ValueError
        For an invalid argument: ``W0`` not fitting ``problem``, bad times ``t`` or ``record`` (or both an
        array ``t`` and points to record), an unknown ``kind``, a missing or unused ``eta``, ``tolerances``
        that are not `Tolerances`, an unbalanced ``W0`` with ``kind="end_to_end"``, or records larger than
        the size limit.

    Examples
    --------
    >>> import dlnsim
    >>> problem, widths, W0 = dlnsim.paper_setup(N=2, seed=0, d=8, m=24)
    >>> flow = dlnsim.run_flow(problem, W0, 1.0, record="linear:11")  # 11 equally spaced times in [0, 1]
    >>> flow["status"].item(), flow["loss"].size
    ('done', 11)
    >>> bool(flow["loss"][-1] < flow["loss"][0])
    True
    """
    return flow_dataset(solve_flow(problem, W0, t, kind=kind, eta=eta, record=record, tolerances=tolerances,
                                   attrs=attrs, blas_threads=blas_threads))
