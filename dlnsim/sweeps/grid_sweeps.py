"""Sweeps: gradient descent on every point of a grid of setups x stepsizes, and critical stepsizes per setup.

Both are thin users of the grid engine (`dlnsim.grid`): one cell per grid point, one NetCDF file per cell,
resumable, on threads by default (or processes, dask, any Executor; the numbers are the same on all).

The setup.  A cell builds ``(problem, W0)`` from its grid point: by default the paper's Section-5 instance
``paper_setup(N, seed, d=70, m=None, r=2)``; with ``setup=f`` any module-level function ``f`` called with the
grid point's non-stepsize axes as keywords, ``f(N=3, seed=0)``, or ``f(N=3, seed=0, scale=0.1)`` when the
grid has a ``scale`` axis.  It returns ``(problem, W0)`` (or a `Setup`).  With ``problem=p`` (and
``init="balanced"`` or ``"gaussian"``), the cells run your data with a start drawn for each ``seed``, of
widths ``widths=(d_0, ..., d_N)`` or axes ``N`` and ``width`` (see `dlnsim.sweeps.setups.on_problem`).

Every keyword of `sweep` that is not one of its own parameters is a parameter of the setup: a list of values
makes it a grid axis, a single value a fixed parameter (for the paper setup: ``d``, ``m`` and ``r``).  A setup
that raises for one cell records that cell with status ``error`` and the message; the other cells go on.

The stepsize.  ``eta`` values are stepsizes, or with ``eta_mode="bound"`` multiples of the bound eta* (5.1)
of that cell's start (see `dlnsim.stepsize_bound`).  ``schedule="power_decay"`` runs
``PowerDecay(a1=eta, a2=eta, gamma)`` for each ``gamma`` (an extra axis after ``eta``).

The result of `sweep` is one Dataset over (setup axes..., eta[, gamma], k): the variables of `run_gd` (its
per-step stepsize renamed ``eta_k``, since ``eta`` is the axis), the outcome of each run (``status``,
``stop_iteration``, ``final_loss``, ``eta_value`` = the stepsize used, ...), and the quantities of the start
(``eta_bound`` = eta*, the other bound constants, ``initial_loss``, ``widths``) over the setup axes only.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import xarray as xr

from dlnsim.analysis.critical import critical_stepsize
from dlnsim.checks import flag, nonneg_int, positive_float
from dlnsim.grid import open_grid, run_grid
from dlnsim.io import dataset
from dlnsim.problem import Problem
from dlnsim.runs.gd import Every, LogSpaced, record_points, run_gd
from dlnsim.runs.record import DIAGNOSTICS, diagnostics_set
from dlnsim.schedules import Constant, PowerDecay, Schedule
from dlnsim.sweeps.setups import resolve, start_of
from dlnsim.theory.bounds import StepsizeBound, stepsize_bound

__all__ = ["critical_sweep", "open_sweep", "sweep"]

ETA_MODES = ("absolute", "bound")
SCHEDULES = ("constant", "power_decay")
#: stepsize axes: the quantities of the start do not depend on them
_STEP_AXES = ("eta", "gamma")
#: attributes of a run that describe its start (reduced to the setup axes in the combined result)
_START = ("widths", "initial_loss", "optimal_loss", "q", "pivot_layer", "lambda_max_XXt", "eta_star")


def _bound(problem: Problem, W0: list[np.ndarray]) -> StepsizeBound | None:
    try:
        return stepsize_bound(problem, W0)
    except ValueError:  # an unbalanced start: Theorem 2.4 with alpha = 0 does not apply
        return None


def _scale(eta_mode: str, bound: StepsizeBound | None) -> float:
    if eta_mode == "absolute":
        return 1.0
    if bound is None:
        raise ValueError("eta_mode='bound': the start is not balanced, so it has no bound eta* (5.1)")
    return bound.eta


# ------------------------------------------------------------------------------------------------------ cells


def gd_cell(*, setup: Callable[..., Any], eta: float, n_iter: int, record: Any, eta_mode: str, schedule: str,
            gtol: float, blowup: float, stop_early: bool, flow: Any, gamma: float | None = None,
            diagnostics: Any = True, **point: Any) -> xr.Dataset:
    """One GD run of a sweep: the setup at ``point``, then `run_gd` (or `compare_flow` with ``flow``)."""
    problem, W0 = start_of(setup, point)
    bound = _bound(problem, W0)
    value = float(eta) * _scale(eta_mode, bound)
    sched: Schedule = Constant(value) if schedule == "constant" else PowerDecay(value, value, float(gamma or 0.0))
    attrs = {"eta_value": value, "eta_mode": eta_mode}
    if flow is not False:
        from dlnsim.runs.compare import compare_flow

        ds = compare_flow(problem, W0, sched, n_iter, record, **flow, gtol=gtol, stop_early=stop_early,
                          blowup=blowup, bound=bound, diagnostics=diagnostics, attrs=attrs)
    else:
        ds = run_gd(problem, W0, sched, n_iter, record, diagnostics=diagnostics, gtol=gtol, stop_early=stop_early,
                    blowup=blowup, bound=bound, attrs=attrs)
    return ds.rename({"eta": "eta_k"}) if "eta" in ds.variables else ds


def critical_cell(*, setup: Callable[..., Any], n_iter: int, rtol: float, loss_tol: float, bracket: list[float],
                  eta_mode: str, factor: float, max_expand: int, gtol: float, blowup: float,
                  **point: Any) -> xr.Dataset:
    """One critical-stepsize search of `critical_sweep`: the setup at ``point``, then `critical_stepsize`."""
    problem, W0 = start_of(setup, point)
    bound = _bound(problem, W0)
    scale = _scale(eta_mode, bound)
    res = critical_stepsize(problem, W0, n_iter=n_iter, bracket=(bracket[0] * scale, bracket[1] * scale),
                            loss_tol=loss_tol, rtol=rtol, factor=factor, max_expand=max_expand, gtol=gtol,
                            blowup=blowup, bound=bound)
    eta_star = bound.eta if bound is not None else math.nan
    attrs = {
        "title": "critical stepsize search",
        **res.attrs(),
        "eta_star": eta_star,
        "ratio": res.eta_crit / eta_star,
        "lambda_max_XXt": problem.lambda_max,
        "widths": [int(W0[0].shape[1])] + [int(W.shape[0]) for W in W0],
        **problem.meta,
        **(bound.attrs() if bound is not None else {}),
        **dataset.provenance(),
    }
    coords = {"trial": np.arange(1, len(res.trials) + 1, dtype=np.int64)}
    return dataset.build(res.trial_arrays(), coords, attrs)



# -------------------------------------------------------------------------------------------------- validation


def _choice(value: Any, name: str, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")
    return value


def _record_json(record: Any, n_iter: int) -> Any:
    """The record rule in a JSON form that `run_gd` accepts (validated)."""
    if isinstance(record, LogSpaced):
        rec: Any = f"log:{record.n}"
    elif isinstance(record, Every):
        rec = f"every:{record.n}"
    elif isinstance(record, bool):
        raise ValueError(f"record must be 'log', 'log:N', 'all', 'every:N', an int or a list, got {record!r}")
    elif isinstance(record, int | np.integer):
        rec = int(record)
    elif isinstance(record, str):
        rec = record
    elif isinstance(record, Sequence | np.ndarray):
        arr = np.asarray(record)
        if arr.dtype.kind not in "iu":
            raise ValueError("record: an explicit list of iterations must hold integers")
        rec = [int(x) for x in np.unique(arr)]
    else:
        raise ValueError(f"record must be 'log', 'log:N', 'all', 'every:N', an int or a list, got {record!r}")
    try:
        record_points(n_iter, rec)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"record: {exc}") from None
    return rec


def _flow_option(flow: Any) -> Any:
    """False, or the JSON-able options of `dlnsim.compare_flow` (True: its defaults)."""
    if flow is False or flow is None:
        return False
    if flow is True:
        opts: dict[str, Any] = {}
    elif isinstance(flow, dict):
        opts = dict(flow)
    else:
        raise ValueError(f"flow must be False, True or a dict of options of dlnsim.compare_flow (rtol, atol, "
                         f"kinds, ...), got {flow!r}")
    from dlnsim.runs.compare import compare_flow

    own = {"problem", "W0", "eta", "n_iter", "record", "gtol", "stop_early", "blowup", "bound", "attrs",
           "keep_weights", "progress", "blas_threads"}
    allowed = set(inspect.signature(compare_flow).parameters) - own
    bad = sorted(set(opts) - allowed)
    if bad:
        raise ValueError(f"flow: unknown option(s) {bad}; compare_flow accepts {sorted(allowed)}")
    try:
        return json.loads(json.dumps(opts))
    except (TypeError, ValueError):
        raise ValueError(f"flow: options must be plain numbers, strings and lists, got {flow!r}") from None


def _as_axis(values: Any, name: str) -> list[Any]:
    if isinstance(values, str | bytes) or values is None:
        raise ValueError(f"{name}: expected a number or a list of numbers for the grid axis, got {values!r}")
    vals = list(values) if isinstance(values, list | tuple | range | np.ndarray) else [values]
    out = []
    for v in vals:
        out.append(positive_float(v, f"{name} (each grid value)", allow_zero=name == "gamma"))
    return out


def _cost(point: dict[str, Any]) -> float:
    return float(point.get("N", 1))


def _tidy(ds: xr.Dataset, drop: Sequence[str] = ()) -> xr.Dataset:
    """Reduce the quantities of the start to the setup axes, and drop what the axes already say."""
    out = ds.drop_vars([v for v in ("setup_N", "bound_N", "N_layers", *drop) if v in ds.variables])
    step = [d for d in _STEP_AXES if d in ds.dims]
    for name in map(str, list(out.data_vars)):
        v = out[name]
        if not step or not (name.startswith("bound_") or name in _START):
            continue
        if not set(step) <= set(v.dims):
            continue
        first = v.isel({d: 0 for d in step})
        if all(_equal(v.isel({d: i}), v.isel({d: 0})) for d in step for i in range(out.sizes[d])):
            out[name] = first.drop_vars(step, errors="ignore")
    if "bound_eta" in out:
        out = out.rename({"bound_eta": "eta_bound"})
        out["eta_bound"].attrs.update(long_name="bound eta* (5.1) of the start", label="η*")
    return out.transpose(*[d for d in ds.dims if d in out.dims])


def _equal(a: xr.DataArray, b: xr.DataArray) -> bool:
    x, y = np.asarray(a.values), np.asarray(b.values)
    if x.dtype.kind == "f":
        return bool(np.array_equal(x, y, equal_nan=True))
    return bool(np.array_equal(x, y))


# ------------------------------------------------------------------------------------------------- public API

_SWEEP_OWN = ("directory", "setup", "problem", "init", "eta", "n_iter", "record", "diagnostics", "eta_mode",
              "schedule", "gamma", "gtol", "blowup", "stop_early", "flow", "executor", "workers", "client",
              "scheduler", "progress")


def sweep(
    directory: str | os.PathLike[str] | None,
    *,
    eta: Any,
    n_iter: int,
    N: Any = None,
    seed: Any = None,
    setup: Callable[..., Any] | None = None,
    problem: Problem | None = None,
    init: Any = "balanced",
    record: Any = "log",
    diagnostics: Any = True,
    eta_mode: str = "absolute",
    schedule: str = "constant",
    gamma: Any = None,
    gtol: float = 1e-10,
    blowup: float = 1e8,
    stop_early: bool = False,
    flow: Any = False,
    executor: Any = "threads",
    workers: int | None = None,
    client: Any = None,
    scheduler: str | None = None,
    progress: bool = True,
    **setup_args: Any,
) -> xr.Dataset:
    """Run GD on every point of the grid (setup axes) x eta (x gamma) and return the combined Dataset.

    Parameters
    ----------
    directory : path or None
        One file per finished cell and the manifest (rerun the same call to resume); ``None``: no files, the
        cells kept in memory (nothing to resume).
    eta : float or list of float
        Stepsizes, or multiples of eta* with ``eta_mode="bound"``.
    n_iter : int
        GD steps per cell.
    N, seed : int or list of int
        Depths and seeds (axes; required by the paper setup, optional for your own).
    setup : callable, optional
        Module-level ``f(**point) -> (problem, W0)``; default the paper's Section-5 instance.
    problem, init : Problem and {"balanced", "gaussian"} or callable, optional
        Instead of ``setup``: your data, with a start drawn by ``init`` for each ``seed`` (see
        `dlnsim.sweeps.setups.on_problem`; fixed ``widths=(d_0, ..., d_N)``, or axes ``N`` and ``width``, and
        ``scale``).
    record : str, int or list
        Record rule of `run_gd`.
    diagnostics : bool, str or list of str, default True
        State diagnostics of `run_gd` at the record points (False: loss, gradient norm and stepsize only,
        which saves their eigenvalue problems: about a fifth of a 20 000-step paper-setup cell).
    eta_mode : {"absolute", "bound"}
    schedule : {"constant", "power_decay"}
    gamma : float or list of float
        Decay rates of ``schedule="power_decay"`` (an axis).
    gtol, blowup, stop_early
        Passed to `run_gd`.
    flow : bool or dict
        Also integrate the gradient flow(s) at the GD times (`dlnsim.compare_flow` options).
    executor, workers, client, scheduler, progress
        Where and how the cells run (see `dlnsim.run_grid`).
    **setup_args
        Further setup parameters: a list makes a grid axis, a single value a fixed parameter (``d``, ``m``,
        ``r`` for the paper setup; any keyword of your ``setup``).

    Returns
    -------
    xarray.Dataset
        Over (setup axes, eta[, gamma], k); see the module docstring.
    """
    given = {"N": N, "seed": seed, **setup_args}
    fn, setup_name, axes_setup, fixed = resolve(setup, problem, init, given, "sweep", _SWEEP_OWN)
    n_iter = nonneg_int(n_iter, "n_iter", minimum=1)
    eta_mode = _choice(eta_mode, "eta_mode", ETA_MODES)
    schedule = _choice(schedule, "schedule", SCHEDULES)
    # dimension order: N, eta[, gamma], then the other setup axes (seed, ...)
    axes: dict[str, Any] = {"N": axes_setup["N"]} if "N" in axes_setup else {}
    axes["eta"] = _as_axis(eta, "eta")
    if schedule == "power_decay":
        if gamma is None:
            raise ValueError("gamma: schedule='power_decay' needs decay rates gamma >= 0 (a number or a list)")
        axes["gamma"] = _as_axis(gamma, "gamma")
    elif gamma is not None:
        raise ValueError(f"gamma is only used with schedule='power_decay', got gamma={gamma!r} with "
                         f"schedule={schedule!r}")
    axes.update({k: v for k, v in axes_setup.items() if k != "N"})
    params = {
        "n_iter": n_iter,
        "record": _record_json(record, n_iter),
        "eta_mode": eta_mode,
        "schedule": schedule,
        "gtol": positive_float(gtol, "gtol", allow_zero=True),
        "blowup": positive_float(blowup, "blowup"),
        "stop_early": flag(stop_early, "stop_early"),
        "flow": _flow_option(flow),
        "setup_name": setup_name,
        **fixed,
    }
    diag = diagnostics_set(diagnostics)
    if diag != DIAGNOSTICS:  # in the manifest only when not the default, so that older grids still resume
        params["diagnostics"] = list(diag)
    cell = functools.partial(_gd_entry, fn)
    ds = run_grid(directory, cell, axes, params=params, executor=executor, workers=workers, client=client,
                  scheduler=scheduler, progress=progress, cost=_cost, cell_id="dlnsim.sweeps.grid_sweeps:gd_cell",
                  label="sweep")
    return _tidy(ds)


def _gd_entry(setup: Callable[..., Any], **kw: Any) -> xr.Dataset:
    kw.pop("setup_name")
    split = {k: kw.pop(k) for k in ("eta", "n_iter", "record", "eta_mode", "schedule", "gtol", "blowup",
                                    "stop_early", "flow", "gamma", "diagnostics") if k in kw}
    return gd_cell(setup=setup, **split, **kw)


def _critical_entry(setup: Callable[..., Any], **kw: Any) -> xr.Dataset:
    kw.pop("setup_name")
    split = {k: kw.pop(k) for k in ("n_iter", "rtol", "loss_tol", "bracket", "eta_mode", "factor", "max_expand",
                                    "gtol", "blowup")}
    return critical_cell(setup=setup, **split, **kw)


_CRIT_OWN = ("directory", "setup", "problem", "init", "n_iter", "rtol", "loss_tol", "bracket", "eta_mode", "factor",
             "max_expand", "gtol", "blowup", "executor", "workers", "client", "scheduler", "progress")


def critical_sweep(
    directory: str | os.PathLike[str] | None,
    *,
    n_iter: int,
    N: Any = None,
    seed: Any = None,
    setup: Callable[..., Any] | None = None,
    problem: Problem | None = None,
    init: Any = "balanced",
    rtol: float = 0.01,
    loss_tol: float = 1e-3,
    bracket: Sequence[float] = (1.0, 4.0),
    eta_mode: str = "bound",
    factor: float = 2.0,
    max_expand: int = 40,
    gtol: float = 1e-10,
    blowup: float = 1e8,
    executor: Any = "threads",
    workers: int | None = None,
    client: Any = None,
    scheduler: str | None = None,
    progress: bool = True,
    **setup_args: Any,
) -> xr.Dataset:
    """`dlnsim.critical_stepsize` for every point of a grid of setups (criterion and search: there).

    ``bracket`` is in multiples of eta* of each start with ``eta_mode="bound"`` (the default), absolute with
    ``"absolute"``.  Setups, axes, ``directory`` and executors work as in `sweep`.

    Parameters
    ----------
    directory : path or None
        One file per finished cell and the manifest (rerun the same call to resume); ``None``: no files, the
        cells kept in memory (nothing to resume).
    n_iter : int
        GD steps per trial run, >= 1.
    N, seed : int or list of int, optional
        Depths and seeds (axes; required by the paper setup, optional for your own).
    setup : callable, optional
        Module-level ``f(**point) -> (problem, W0)``; default the paper's Section-5 instance.
    problem, init : Problem and {"balanced", "gaussian"} or callable, optional
        Instead of ``setup``: your data, with a start drawn by ``init`` (default ``"balanced"``) for each
        ``seed``, as in `sweep`.
    rtol : float, default 0.01
        Relative width of the final bracket (> 0): the search stops when eta_hi / eta_lo <= 1 + rtol.
    loss_tol : float, default 1e-3
        Final excess loss, relative to the initial one, that counts as converged (> 0).
    bracket : (float, float), default (1.0, 4.0)
        Starting bracket ``(lo, hi)`` with 0 < lo < hi, in units set by ``eta_mode``.
    eta_mode : {"bound", "absolute"}, default "bound"
        ``"bound"``: ``bracket`` in multiples of eta* of each start; ``"absolute"``: absolute stepsizes.
    factor : float, default 2.0
        Expansion factor (> 1) of the bracket walk.
    max_expand : int, default 40
        Largest number of steps of each walk (>= 0).
    gtol : float, default 1e-10
        Passed to `run_gd` (>= 0): runs stop early at ||grad L||_F <= gtol.
    blowup : float, default 1e8
        Passed to `run_gd` (> 0): the divergence threshold.
    executor, workers, client, scheduler, progress
        Where and how the cells run (see `dlnsim.run_grid`); defaults ``"threads"``, None, None, None, True.
    **setup_args
        Further setup parameters: a list makes a grid axis, a single value a fixed parameter (``d``, ``m``,
        ``r`` for the paper setup; any keyword of your ``setup``).

    Returns
    -------
    xarray.Dataset
        Over the setup axes: ``eta_crit`` (the largest stepsize found to converge), the bracket
        ``eta_lo``/``eta_hi``, ``eta_star`` (bound (5.1); NaN for an unbalanced start), ``ratio`` =
        eta_crit / eta_star, ``search_status`` (ok, no_converging_eta, no_failing_eta), ``n_trials``, and every
        run of the search (``trial_eta``, ``trial_outcome``, ``trial_final_loss``, ``trial_stop_iteration``)
        over an extra ``trial`` dimension (padded to the longest search).

    Raises
    ------
    ValueError
        For an invalid setup or axis (as in `sweep`), an invalid ``bracket``, ``factor`` <= 1, ``n_iter`` < 1,
        ``rtol``, ``loss_tol`` or ``blowup`` not finite and > 0, ``gtol`` negative, ``max_expand`` negative or
        ``eta_mode`` not ``"bound"`` or ``"absolute"``.
    """
    from dlnsim.analysis.critical import checked_bracket

    given = {"N": N, "seed": seed, **setup_args}
    fn, setup_name, axes, fixed = resolve(setup, problem, init, given, "critical_sweep", _CRIT_OWN)
    lo, hi = checked_bracket(bracket)
    factor = positive_float(factor, "factor (bracket expansion factor)")
    if factor <= 1.0:
        raise ValueError(f"factor must be > 1, got {factor!r}")
    params = {
        "n_iter": nonneg_int(n_iter, "n_iter", minimum=1),
        "rtol": positive_float(rtol, "rtol (relative precision of the bracket)"),
        "loss_tol": positive_float(loss_tol, "loss_tol (relative final excess loss that counts as converged)"),
        "bracket": [lo, hi],
        "eta_mode": _choice(eta_mode, "eta_mode", ETA_MODES),
        "factor": factor,
        "max_expand": nonneg_int(max_expand, "max_expand"),
        "gtol": positive_float(gtol, "gtol", allow_zero=True),
        "blowup": positive_float(blowup, "blowup"),
        "setup_name": setup_name,
        **fixed,
    }
    cell = functools.partial(_critical_entry, fn)
    ds = run_grid(directory, cell, axes, params=params, executor=executor, workers=workers, client=client,
                  scheduler=scheduler, progress=progress, cost=_cost, cell_id="dlnsim.sweeps.grid_sweeps:critical_cell",
                  label="critical")
    return _tidy(ds)


def open_sweep(directory: str | os.PathLike[str]) -> xr.Dataset:
    """The combined Dataset of a `sweep` or `critical_sweep` directory (unfinished cells: ``not_run``).

    Parameters
    ----------
    directory : str or os.PathLike
        The ``directory`` of the `sweep` or `critical_sweep` call.

    Returns
    -------
    xarray.Dataset
        The same Dataset the sweep returned, with the cells that have no result yet marked ``not_run``.

    Raises
    ------
    ValueError
        If ``directory`` is not a path or not an existing directory.
    """
    ds = open_grid(directory)
    return _tidy(ds)
