"""Sweeps: gradient descent on every point of a grid of setups x stepsizes, and critical stepsizes per setup.

Both are thin users of the grid engine (`dlnsim.grid`): one cell per grid point, one NetCDF file per cell,
resumable, on threads by default (or processes, dask, any Executor; the numbers are the same on all).

The setup.  A cell builds ``(problem, W0)`` from its grid point: by default the paper's Section-5 instance
``paper_setup(N, seed, d=70, m=None, r=2)``; with ``setup=f`` any module-level function ``f`` called with the
grid point's non-stepsize axes as keywords, ``f(N=3, seed=0)``, or ``f(N=3, seed=0, scale=0.1)`` when the
grid has a ``scale`` axis.  It returns ``(problem, W0)`` (or a `Setup`).  With ``problem=p`` (and
``init="balanced"`` or ``"gaussian"``), the cells run your data with a start drawn for each ``seed``, of
widths ``widths=(d_0, ..., d_N)`` or axes ``N`` and ``width`` (see ``dlnsim.sweeps.setups.on_problem``).

Every keyword of `sweep` that is not one of its own parameters is a parameter of the setup: a list of values
makes it a grid axis, a single value a fixed parameter (for the paper setup: ``d``, ``m`` and ``r``).  A setup
that raises for one cell records that cell with status ``error`` and the message; the other cells go on.

The stepsize.  ``eta`` values are stepsizes (the axis ``eta``), ``eta_factor`` values multiples of the bound
eta* (5.1) of that cell's start (the axis ``eta_factor``; see `dlnsim.stepsize_bound`), so that a reader of
the file alone never mistakes 1000 eta* for eta = 1000.  ``schedule="power_decay"`` runs
``PowerDecay(a1=eta, a2=eta, gamma)`` for each ``gamma`` (an extra axis after the stepsizes).

The result of `sweep` is one Dataset over (setup axes..., eta or eta_factor[, gamma], k): the variables of
`run_gd` (the per-step stepsize ``eta_k``), the outcome of each run (``status``,
``stop_iteration``, ``final_loss``, ``eta_value`` = the stepsize used, ...), and the quantities of the start
(``eta_bound`` = eta*, the other bound constants, ``initial_loss``, ``widths``) over the setup axes only.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import math
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import xarray as xr

from dlnsim.analysis.critical import NoConvergingStepsizeWarning, critical_stepsize
from dlnsim.checks import nonneg_int, positive_float
from dlnsim.grid import open_grid, run_grid
from dlnsim.io import dataset
from dlnsim.methods import StepRule, as_method, method_from_json
from dlnsim.options import (
    Engine,
    Record,
    Stop,
    Tolerances,
    as_engine,
    as_record,
    as_stop,
    as_tolerances,
    record_points,
)
from dlnsim.problem import Problem
from dlnsim.runs.gd import run_gd
from dlnsim.schedules import Constant, PowerDecay, Schedule
from dlnsim.sweeps.setups import resolve, start_of
from dlnsim.theory.bounds import StepsizeBound, stepsize_bound

__all__ = ["critical_sweep", "open_sweep", "sweep"]

SCHEDULES = ("constant", "power_decay")
#: stepsize axes: the quantities of the start do not depend on them
_STEP_AXES = ("eta", "eta_factor", "gamma")
#: attributes of a run that describe its start (reduced to the setup axes in the combined result)
_START = ("widths", "initial_loss", "optimal_loss", "q", "pivot_layer", "lambda_max_XXt", "eta_star")


def _bound(problem: Problem, W0: list[np.ndarray]) -> StepsizeBound | None:
    try:
        return stepsize_bound(problem, W0)
    except ValueError:  # an unbalanced start: Theorem 2.4 with alpha = 0 does not apply
        return None


def _scale(bound: StepsizeBound | None) -> float:
    if bound is None:
        raise ValueError("eta_factor: the start is not balanced, so it has no bound eta* (5.1) to multiply")
    return bound.eta


# ------------------------------------------------------------------------------------------------------ cells


def _rule(method: Any, beta: float | None, batch_size: int | None) -> StepRule:
    """The step rule of a cell: the manifest's, with the grid point's ``beta`` and ``batch_size``."""
    rule = method_from_json(method)
    changes = {k: v for k, v in (("beta", beta), ("batch_size", batch_size)) if v is not None}
    return rule.replace(**changes) if changes else rule


def gd_cell(*, setup: Callable[..., Any], n_iter: int, method: Any, record: Any, stop: Any, schedule: str,
            flow: Any, eta: float | None = None, eta_factor: float | None = None, gamma: float | None = None,
            beta: float | None = None, batch_size: int | None = None, **point: Any) -> xr.Dataset:
    """One run of a sweep: the setup at ``point``, then `run_gd` (or `compare_flow` with ``flow``).

    ``method``, ``record`` and ``stop`` are the JSON forms of the option objects (as the manifest stores
    them); the stepsize is ``eta``, or ``eta_factor`` times eta* (5.1) of the start; ``beta`` and
    ``batch_size`` (axes or fixed values) replace those fields of the step rule.
    """
    problem, W0 = start_of(setup, point)
    bound = _bound(problem, W0)
    value = float(eta) if eta is not None else float(eta_factor) * _scale(bound)  # type: ignore[arg-type]
    sched: Schedule = Constant(value) if schedule == "constant" else PowerDecay(value, value, float(gamma or 0.0))
    options: dict[str, Any] = {"method": _rule(method, beta, batch_size), "record": Record.from_json(record),
               "stop": Stop.from_json(stop), "bound": bound, "attrs": {"eta_value": value}}
    if flow is not False:
        from dlnsim.runs.compare import compare_flow

        flow_opts: dict[str, Any] = dict(flow)
        if "tolerances" in flow_opts:
            flow_opts["tolerances"] = Tolerances.from_json(flow_opts["tolerances"])
        return compare_flow(problem, W0, sched, n_iter, **flow_opts, **options)
    return run_gd(problem, W0, sched, n_iter, **options)


def critical_cell(*, setup: Callable[..., Any], n_iter: int, rtol: float, loss_tol: float, method: Any,
                  stop: Any, factor: float, max_expand: int, bracket: list[float] | None = None,
                  bracket_factor: list[float] | None = None, beta: float | None = None,
                  batch_size: int | None = None, **point: Any) -> xr.Dataset:
    """One critical-stepsize search of `critical_sweep`: the setup at ``point``, then `critical_stepsize`
    from ``bracket`` (absolute) or ``bracket_factor`` (multiples of eta* of the start)."""
    problem, W0 = start_of(setup, point)
    bound = _bound(problem, W0)
    lo, hi = (bracket[0], bracket[1]) if bracket is not None else (
        bracket_factor[0] * _scale(bound), bracket_factor[1] * _scale(bound))  # type: ignore[index]
    res = critical_stepsize(problem, W0, n_iter=n_iter, bracket=(lo, hi), loss_tol=loss_tol, rtol=rtol,
                            factor=factor, max_expand=max_expand, method=_rule(method, beta, batch_size),
                            stop=Stop.from_json(stop), bound=bound)
    eta_star = bound.eta if bound is not None else math.nan
    attrs = {
        "title": "critical stepsize search",
        **res.attrs(),
        "lambda_max_XXt": problem.lambda_max,
        "widths": [int(W0[0].shape[1])] + [int(W.shape[0]) for W in W0],
        **problem.meta,
        **(bound.attrs() if bound is not None else {}),
        **dataset.provenance(),
    }
    outcomes = {**res.outcomes(), "eta_star": eta_star, "ratio": res.eta_crit / eta_star,
                **(bound.outcomes() if bound is not None else {})}
    coords = {"trial": np.arange(1, len(res.trials) + 1, dtype=np.int64)}
    return dataset.build(res.trial_arrays(), coords, attrs, outcomes=outcomes)


# -------------------------------------------------------------------------------------------------- validation


def _choice(value: Any, name: str, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")
    return value


def _record_json(record: Any, n_iter: int) -> dict[str, Any]:
    """The `Record` of a sweep in its JSON form, checked against ``n_iter``."""
    rec = as_record(record)
    try:
        record_points(n_iter, rec.iteration_rule())
    except (ValueError, TypeError) as exc:
        raise ValueError(f"record: {exc}") from None
    return rec.to_json()


#: the options of `dlnsim.compare_flow` that a sweep's ``flow`` may set
_FLOW_OPTIONS = ("kind", "tolerances", "sharpness", "sharpness_iters")


def _flow_option(flow: Any) -> Any:
    """False, or the JSON-able options of `dlnsim.compare_flow` (True: its defaults)."""
    if flow is False or flow is None:
        return False
    if flow is True:
        opts: dict[str, Any] = {}
    elif isinstance(flow, dict):
        opts = dict(flow)
    else:
        raise ValueError(f"flow must be False, True or a dict of options of dlnsim.compare_flow "
                         f"({', '.join(_FLOW_OPTIONS)}), got {flow!r}")
    bad = sorted(set(opts) - set(_FLOW_OPTIONS))
    if bad:
        raise ValueError(f"flow: unknown option(s) {bad}; a sweep's flow takes {list(_FLOW_OPTIONS)}")
    if "tolerances" in opts:
        opts["tolerances"] = as_tolerances(opts["tolerances"], "flow['tolerances']").to_json()
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

def _one_stepsize_axis(eta: Any, eta_factor: Any, func: str) -> tuple[str, Any]:
    if (eta is None) == (eta_factor is None):
        raise ValueError(f"{func}: give the stepsizes as eta (absolute) or as eta_factor (multiples of the bound "
                         f"eta* of each start), exactly one of them")
    return ("eta", eta) if eta is not None else ("eta_factor", eta_factor)


def _method_axes(rule: StepRule, beta: Any, batch_size: Any) -> dict[str, Any]:
    """``beta`` and ``batch_size`` of a sweep (a list: an axis; a value: fixed), checked against the step rule
    (each value is tried on it, so a bad one is refused before any cell runs)."""
    out: dict[str, Any] = {}
    for name, values in (("beta", beta), ("batch_size", batch_size)):
        if values is None:
            continue
        if not any(f.name == name for f in dataclasses.fields(rule)):  # type: ignore[arg-type]
            raise ValueError(f"{name}: the step rule {type(rule).__name__} has no {name} (give method= a rule "
                             f"that has one, e.g. dlnsim.HeavyBall() or dlnsim.SGD(batch_size=...))")
        seq = list(values) if isinstance(values, list | tuple | range | np.ndarray) else [values]
        if not seq:
            raise ValueError(f"{name}: expected a value or a non-empty list of values")
        for v in seq:
            rule.replace(**{name: v})
        out[name] = [v.item() if isinstance(v, np.generic) else v for v in seq] if len(seq) > 1 or isinstance(
            values, list | tuple | range | np.ndarray) else seq[0]
    return out


def _own(func: Callable[..., Any]) -> tuple[str, ...]:
    """The keywords of a sweep function itself (the others are setup parameters)."""
    return tuple(p.name for p in inspect.signature(func).parameters.values() if p.kind is not p.VAR_KEYWORD)


def sweep(
    directory: str | os.PathLike[str] | None,
    *,
    n_iter: int,
    eta: Any = None,
    eta_factor: Any = None,
    N: Any = None,
    seed: Any = None,
    setup: Callable[..., Any] | None = None,
    problem: Problem | None = None,
    init: Any = "balanced",
    method: StepRule | str | None = None,
    beta: Any = None,
    batch_size: Any = None,
    record: Record | Any = None,
    stop: Stop | None = None,
    schedule: str = "constant",
    gamma: Any = None,
    flow: Any = False,
    engine: Engine | str | None = None,
    timeout: float | None = None,
    **setup_args: Any,
) -> xr.Dataset:
    """Run GD on every point of the grid (setup axes) x stepsizes (x gamma) and return the combined Dataset.

    Parameters
    ----------
    directory : str or os.PathLike or None
        One file per finished cell and the manifest (rerun the same call to resume); ``None``: no files, the
        cells kept in memory (nothing to resume).
    n_iter : int
        GD steps per cell.
    eta : float or list of float
        Stepsizes (the axis ``eta``).
    eta_factor : float or list of float
        Instead of ``eta``: multiples of the bound eta* (5.1) of each cell's start (the axis ``eta_factor``;
        the stepsize used is the variable ``eta_value``).
    N, seed : int or list of int
        Depths and seeds (axes; required by the paper setup, optional for your own).
    setup : callable, optional
        Module-level ``f(**point) -> (problem, W0)``; default the paper's Section-5 instance.
    problem, init : Problem and {"balanced", "gaussian"} or callable, optional
        Instead of ``setup``: your data, with a start drawn by ``init`` for each ``seed`` (see
        ``dlnsim.sweeps.setups.on_problem``; fixed ``widths=(d_0, ..., d_N)``, or axes ``N`` and ``width``, and
        ``scale``).
    beta, batch_size : float, int or list, optional
        The momentum coefficient and the batch size of the step rule: a list makes an axis (``beta``,
        ``batch_size``), a value replaces the rule's; the rule must have the field (`dlnsim.HeavyBall`,
        `dlnsim.Nesterov`, `dlnsim.SGD`).
    method, record, stop
        As in `dlnsim.run_gd` (the step rule, what to record, when to stop); ``Record(diagnostics=False)``
        saves the eigenvalue problems of the state diagnostics, about a fifth of a 20 000-step paper-setup
        cell.
    schedule : {"constant", "power_decay"}
    gamma : float or list of float
        Decay rates of ``schedule="power_decay"`` (an axis).
    flow : bool or dict
        Also integrate the gradient flow(s) at the GD times: True, or a dict of the `dlnsim.compare_flow`
        options ``kind``, ``tolerances``, ``sharpness``, ``sharpness_iters``.
    engine : Engine or str, optional
        Where the cells run (`dlnsim.Engine`, or an executor name); default threads on every core, with a
        progress bar.
    timeout : float, optional
        Seconds a cell may run (threads or processes, as `dlnsim.grid.run_grid`): a cell that runs longer is
        recorded with status ``error`` and run again when the call is repeated.
    **setup_args
        Further setup parameters: a list makes a grid axis, a single value a fixed parameter (``d``, ``m``,
        ``r`` for the paper setup; any keyword of your ``setup``).

    Returns
    -------
    xarray.Dataset
        Over (setup axes, eta or eta_factor[, gamma], k); see the module docstring.

    Examples
    --------
    >>> import dlnsim
    >>> ds = dlnsim.sweep(None, N=[2, 3], seed=[0], eta_factor=[1.0, 2.0], n_iter=200, d=8, m=24,
    ...                   engine=dlnsim.Engine("serial", progress=False))
    >>> dict(ds["status"].sizes)
    {'N': 2, 'eta_factor': 2, 'seed': 1}
    >>> ds["loss"].dims
    ('N', 'eta_factor', 'seed', 'k')
    """
    given = {"N": N, "seed": seed, **setup_args}
    fn, setup_name, axes_setup, fixed = resolve(setup, problem, init, given, "sweep", _own(sweep))
    n_iter = nonneg_int(n_iter, "n_iter", minimum=1)
    step_name, step_values = _one_stepsize_axis(eta, eta_factor, "sweep")
    schedule = _choice(schedule, "schedule", SCHEDULES)
    run_engine = as_engine(engine)
    # dimension order: N, the stepsizes[, gamma], then the other setup axes (seed, ...)
    axes: dict[str, Any] = {"N": axes_setup["N"]} if "N" in axes_setup else {}
    axes[step_name] = _as_axis(step_values, step_name)
    if schedule == "power_decay":
        if gamma is None:
            raise ValueError("gamma: schedule='power_decay' needs decay rates gamma >= 0 (a number or a list)")
        axes["gamma"] = _as_axis(gamma, "gamma")
    elif gamma is not None:
        raise ValueError(f"gamma is only used with schedule='power_decay', got gamma={gamma!r} with "
                         f"schedule={schedule!r}")
    rule = as_method(method)
    fixed_rule: dict[str, Any] = {}
    for name, values in _method_axes(rule, beta, batch_size).items():
        (axes if isinstance(values, list) else fixed_rule)[name] = values
    axes.update({k: v for k, v in axes_setup.items() if k != "N"})
    params = {
        "n_iter": n_iter,
        "method": rule.replace(**fixed_rule).to_json(),
        "record": _record_json(record, n_iter),
        "stop": as_stop(stop).to_json(),
        "schedule": schedule,
        "flow": _flow_option(flow),
        "setup_name": setup_name,
        **fixed,
    }
    cell = functools.partial(_entry, gd_cell, fn)
    ds = run_grid(directory, cell, axes, params=params, **run_engine.grid_kwargs(), cost=_cost,
                  cell_id="dlnsim.sweeps.grid_sweeps:gd_cell", label="sweep", timeout=timeout)
    return _tidy(ds)


def _entry(cell: Callable[..., xr.Dataset], setup: Callable[..., Any], **kw: Any) -> xr.Dataset:
    kw.pop("setup_name")
    return cell(setup=setup, **kw)


def critical_sweep(
    directory: str | os.PathLike[str] | None,
    *,
    n_iter: int,
    N: Any = None,
    seed: Any = None,
    setup: Callable[..., Any] | None = None,
    problem: Problem | None = None,
    init: Any = "balanced",
    bracket: Sequence[float] | None = None,
    bracket_factor: Sequence[float] | None = None,
    rtol: float = 0.01,
    loss_tol: float = 1e-3,
    factor: float = 2.0,
    max_expand: int = 40,
    method: StepRule | str | None = None,
    beta: Any = None,
    batch_size: Any = None,
    stop: Stop | None = None,
    engine: Engine | str | None = None,
    timeout: float | None = None,
    **setup_args: Any,
) -> xr.Dataset:
    """`dlnsim.critical_stepsize` for every point of a grid of setups (criterion and search: there).

    Setups, axes, ``directory`` and ``engine`` work as in `sweep`.

    Parameters
    ----------
    directory : str or os.PathLike or None
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
    bracket : tuple of float, optional
        Starting bracket ``(lo, hi)`` of absolute stepsizes, 0 < lo < hi.
    bracket_factor : tuple of float, optional
        Instead of ``bracket``: the starting bracket in multiples of eta* (5.1) of each start; the default
        when neither is given is ``bracket_factor=(1.0, 4.0)``
        (`dlnsim.analysis.critical.DEFAULT_BRACKET_FACTOR`, also the default of `dlnsim.critical_stepsize`).
    rtol : float, default 0.01
        Relative width of the final bracket (> 0): the search stops when eta_hi / eta_lo <= 1 + rtol.
    loss_tol : float, default 1e-3
        Final excess loss, relative to the initial one, that counts as converged (0 < loss_tol < 1); a trial
        must also end below half the excess loss of the lowest saddle
        (`dlnsim.analysis.critical.saddle_gap`), so that a saddle plateau never counts.
    factor : float, default 2.0
        Expansion factor (> 1) of the bracket walk.
    max_expand : int, default 40
        Largest number of steps of each walk (>= 0).
    method, stop
        The step rule and the tests of the trial runs, as in `dlnsim.critical_stepsize`.
    beta, batch_size : float, int or list, optional
        Axes (lists) or values of the step rule's fields, as in `sweep`.
    engine : Engine or str, optional
        Where the cells run (`dlnsim.Engine`).
    timeout : float, optional
        Seconds a cell (one whole search) may run, as in `sweep`.
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

    Warns
    -----
    NoConvergingStepsizeWarning
        When cells found no converging stepsize (``search_status`` ``no_converging_eta``, eta_crit NaN): one
        warning with their number and what to do (a longer horizon ``n_iter``, another bracket, or
        `dlnsim.stable_critical_stepsize`).

    Raises
    ------
    ValueError
        For an invalid setup or axis (as in `sweep`), an invalid ``bracket`` or ``bracket_factor`` (or both),
        ``factor`` <= 1, ``n_iter`` < 1, ``rtol`` not finite and > 0, ``loss_tol`` not in (0, 1),
        ``max_expand`` negative, an invalid ``method``, ``stop`` or ``engine``, or a ``timeout`` with the
        serial or dask executor.
    """
    from dlnsim.analysis.critical import DEFAULT_BRACKET_FACTOR, checked_bracket

    given = {"N": N, "seed": seed, **setup_args}
    fn, setup_name, axes, fixed = resolve(setup, problem, init, given, "critical_sweep", _own(critical_sweep))
    if bracket is not None and bracket_factor is not None:
        raise ValueError("critical_sweep: give bracket (absolute) or bracket_factor (multiples of eta*), not both")
    which = "bracket" if bracket is not None else "bracket_factor"
    lo, hi = checked_bracket(bracket if bracket is not None else (bracket_factor or DEFAULT_BRACKET_FACTOR), which)
    factor = positive_float(factor, "factor (bracket expansion factor)")
    if factor <= 1.0:
        raise ValueError(f"factor must be > 1, got {factor!r}")
    run_engine = as_engine(engine)
    rule = as_method(method)
    fixed_rule: dict[str, Any] = {}
    for name, values in _method_axes(rule, beta, batch_size).items():
        (axes if isinstance(values, list) else fixed_rule)[name] = values
    params = {
        "n_iter": nonneg_int(n_iter, "n_iter", minimum=1),
        "rtol": positive_float(rtol, "rtol (relative precision of the bracket)"),
        "loss_tol": _loss_tol(loss_tol),
        which: [lo, hi],
        "factor": factor,
        "max_expand": nonneg_int(max_expand, "max_expand"),
        "method": rule.replace(**fixed_rule).to_json(),
        "stop": as_stop(stop).to_json(),
        "setup_name": setup_name,
        **fixed,
    }
    cell = functools.partial(_entry, critical_cell, fn)
    ds = run_grid(directory, cell, axes, params=params, **run_engine.grid_kwargs(), cost=_cost,
                  cell_id="dlnsim.sweeps.grid_sweeps:critical_cell", label="critical", timeout=timeout)
    _say_unconverged(ds)
    return _tidy(ds)


def _loss_tol(value: Any) -> float:
    loss_tol = positive_float(value, "loss_tol (relative final excess loss that counts as converged)")
    if loss_tol >= 1.0:
        raise ValueError(f"loss_tol must be < 1 (a fraction of the initial excess loss), got {value!r}")
    return loss_tol


def _say_unconverged(ds: xr.Dataset) -> None:
    """A `NoConvergingStepsizeWarning` when cells found no converging stepsize (their eta_crit is NaN): a saddle
    plateau can outlast the horizon, so the count and what to do are said, not left to a NaN in a plot."""
    if "search_status" not in ds:
        return
    status = np.asarray(ds["search_status"].values).ravel()
    bad = int(np.sum(status == "no_converging_eta"))
    if bad:
        warnings.warn(f"critical_sweep: {bad} of {status.size} cell(s) found no converging stepsize (eta_crit is "
                      "NaN): no trial ended below the loss tolerance within n_iter steps, e.g. on a saddle plateau; "
                      "give a longer horizon n_iter, another bracket, or use dlnsim.stable_critical_stepsize",
                      NoConvergingStepsizeWarning, stacklevel=3)


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
