"""Sweeps over (N, eta, seed) and critical-stepsize searches: parallel, resumable, local or on dask (DESIGN §5).

A *cell* is one point of the grid.  Every cell is independent and deterministic given its parameters: it
builds ``paper_setup(N, seed, d=d, m=m, r=r)`` and runs `run_gd` (with ``flow=``, `dlnsim.flow.compare_flow`;
for `critical_stepsize`, a search made of `run_gd` runs).  One module-level function, `run_cell`, computes a
cell on every executor, with BLAS limited to one thread for the whole cell, so the numbers are bitwise the
same on every executor:

* ``"local"`` (default): a `concurrent.futures.ProcessPoolExecutor` with one process per core ("spawn"
  start method; the processes are started with ``OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=MKL_NUM_THREADS=1``,
  so each uses one BLAS thread, and they load the Numba kernels from the on-disk cache);
* ``"dask"``: a `dask.distributed.Client` (pass ``client=`` or ``scheduler="tcp://host:port"``);
* ``"serial"``: the cells one after the other in this process (for debugging);
* or any `concurrent.futures.Executor` you pass (see `local_executor` for a warm, reusable local pool).

Storage.  A sweep lives in a directory: a manifest ``sweep.json`` (the grid and every fixed parameter,
written atomically before any cell runs) and one NetCDF file per finished cell, ``cell_N2_eta0.5_seed0.nc``,
written atomically with `dlnsim.save` (by the local worker that computed it; with dask, by the calling
process, so the cluster needs no shared filesystem).  Rerunning the same call skips the finished
cells and computes the others (resume after a crash or ``kill -9``); a call with a different grid or
different fixed parameters on the same directory raises ``ValueError`` before writing anything.  Only one
sweep may run in a directory at a time (an advisory lock on the directory).

Combining.  `open_sweep` (and the end of `sweep`) reads the cells into one Dataset over
(N, eta, seed, k) -- (N, eta, gamma, seed, k) with ``schedule="power_decay"`` -- with the layer, pair and
singular-value dimensions padded with NaN for the smaller N.  The per-step stepsize of `run_gd` is renamed
``eta_k`` (``eta`` is the grid label).  Per-cell scalars become variables: ``eta_value`` (the stepsize
actually used), ``status``, ``stop_iteration``, ``final_loss``, ...; per (N, seed): ``eta_bound`` (the
section-5 bound eta*) and the other theory constants; per N: ``widths``.  Attributes equal in every cell
stay global attributes; the cells' creation times are dropped and ``created`` is the manifest's.  A cell
that is not (yet) in the directory has status ``"not_run"`` and NaN data.

`critical_stepsize` is a sweep over (N, seed) whose cell searches the largest constant stepsize that still
converges (criterion and search in its docstring); its result keeps eta_crit, the bracket, the bound eta*,
their ratio and every GD run of the search.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import difflib
import json
import math
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures import as_completed as _futures_as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from . import dataset
from ._blas import blas_threads
from ._validate import nonneg_int, positive_float
from .problem import paper_setup, paper_widths
from .schedules import Constant, PowerDecay, Schedule
from .simulate import Every, LogSpaced, record_points, run_gd
from .theory import StepsizeBound, stepsize_bound

__all__ = [
    "BLAS_ENV",
    "add_sweep_cli",
    "critical_stepsize",
    "local_executor",
    "open_sweep",
    "run_cell",
    "sweep",
]

MANIFEST = "sweep.json"
MANIFEST_FORMAT = "dlnsim-sweep"
MANIFEST_VERSION = 1
#: environment of the local worker processes: one BLAS/OpenMP thread each (cells are the parallel unit)
BLAS_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
}
EXECUTORS = ("local", "dask", "serial")
ETA_MODES = ("absolute", "bound")
SCHEDULES = ("constant", "power_decay")
CRITERION = (
    "converged: run_gd status is not 'diverged' and L(n_iter) - L* <= loss_tol * (L(0) - L*) "
    "(L* = least-squares optimum); otherwise not converged"
)
SEARCH = (
    "from bracket[0]: if it converges keep it; if it is too slow (loss fell, not to loss_tol) multiply by "
    "factor, if it diverged or the loss grew divide by factor, until a stepsize converges (give up when the "
    "final loss stops improving: no_converging_eta); then multiply by factor from max(bracket[1], ...) until "
    "one does not converge (at most max_expand times: no_failing_eta); then bisect in log space until "
    "eta_hi / eta_lo <= 1 + rtol; eta_crit = eta_lo"
)


# --------------------------------------------------------------------------------------------------- validation


def _unknown(func: str, unknown: dict[str, Any], known: Sequence[str]) -> None:
    if not unknown:
        return
    parts = []
    for name in sorted(unknown):
        close = difflib.get_close_matches(name, known, n=1)
        parts.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise ValueError(f"{func}: unknown parameter(s) {', '.join(parts)}; known parameters: {', '.join(known)}")


def _as_list(values: Any, name: str) -> list[Any]:
    if isinstance(values, str | bytes) or values is None:
        raise ValueError(f"{name}: expected a number or a list of numbers for the grid axis, got {values!r}")
    if isinstance(values, np.ndarray):
        if values.ndim > 1:
            raise ValueError(f"{name}: expected a 1-D list of values, got an array of shape {values.shape}")
        return list(values.ravel())
    if isinstance(values, Sequence):
        return list(values)
    return [values]


def _check_unique(out: list[Any], name: str) -> list[Any]:
    if not out:
        raise ValueError(f"{name}: the grid axis is empty; give at least one value")
    dup = sorted({v for v in out if out.count(v) > 1})
    if dup:
        raise ValueError(f"{name}: the grid axis has duplicate values {dup}")
    return out


def _int_axis(values: Any, name: str, minimum: int) -> list[int]:
    out = []
    for v in _as_list(values, name):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < minimum:
            raise ValueError(f"{name}: expected integers >= {minimum}, got {v!r}")
        out.append(int(v))
    return _check_unique(out, name)


def _float_axis(values: Any, name: str, *, allow_zero: bool = False) -> list[float]:
    out = []
    for v in _as_list(values, name):
        try:
            out.append(positive_float(v, f"{name} (each grid value)", allow_zero=allow_zero))
        except ValueError as exc:
            raise ValueError(str(exc)) from None
    return _check_unique(out, name)


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


def _setup_params(N: list[int], d: Any, m: Any, r: Any) -> dict[str, Any]:
    d = nonneg_int(d, "d (input/output width of paper_setup)", minimum=1)
    r = nonneg_int(r, "r (narrowest width d_1 of paper_setup)", minimum=1)
    if r > d:
        raise ValueError(f"r must be <= d = {d}, got r = {r}")
    if m is not None:
        m = nonneg_int(m, f"m (number of samples, >= d = {d} so that X X^T has full rank)", minimum=d)
    for n in N:
        paper_widths(n, d, r)
    return {"d": d, "m": m, "r": r}


def _executor_args(executor: Any, workers: Any, client: Any, scheduler: Any) -> tuple[Any, int | None]:
    if isinstance(executor, Executor):
        if workers is not None or client is not None or scheduler is not None:
            raise ValueError("workers, client and scheduler are not used when executor is an Executor instance")
        return executor, None
    executor = _choice(executor, "executor", EXECUTORS)
    if workers is not None:
        if executor != "local":
            raise ValueError(f"workers is only used with executor='local' (a dask cluster has its own), "
                             f"got workers={workers!r} with executor={executor!r}")
        workers = nonneg_int(workers, "workers", minimum=1)
    if executor == "dask":
        # the arguments first: their error does not depend on what is installed
        if client is not None and scheduler is not None:
            raise ValueError("give either client= or scheduler=, not both")
        if client is None and scheduler is None:
            raise ValueError("executor='dask' needs client= (a dask.distributed.Client) or scheduler= "
                             "(an address such as 'tcp://127.0.0.1:8786')")
        try:
            import distributed
        except ImportError:
            raise ValueError("executor='dask' needs dask.distributed: pip install 'dlnsim[dask]'") from None
        if client is not None and not isinstance(client, distributed.Client):
            raise ValueError(f"client must be a dask.distributed.Client, got {type(client).__name__}")
        if scheduler is not None and not isinstance(scheduler, str):
            raise ValueError(f"scheduler must be an address string such as 'tcp://127.0.0.1:8786', got {scheduler!r}")
    elif client is not None or scheduler is not None:
        raise ValueError(f"client and scheduler are only used with executor='dask', got executor={executor!r}")
    return executor, workers


def _n_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# --------------------------------------------------------------------------------------------------- the plan


def _fmt(v: Any) -> str:
    return repr(float(v)) if isinstance(v, float) else str(v)


def _cell_name(values: dict[str, Any]) -> str:
    return "cell_" + "_".join(f"{k}{_fmt(v)}" for k, v in values.items()) + ".nc"


def _spec_json(spec: dict[str, Any]) -> str:
    return json.dumps(spec, sort_keys=True)


@dataclass(frozen=True)
class _Plan:
    """A validated grid: the kind of cell, the grid axes (in dimension order) and the fixed parameters."""

    kind: str
    axes: dict[str, list[Any]]
    params: dict[str, Any]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.axes.values())

    def manifest(self) -> dict[str, Any]:
        m = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "kind": self.kind, "axes": self.axes,
             "params": self.params}
        out: dict[str, Any] = json.loads(json.dumps(m))  # canonical (lists, floats as JSON round-trips them)
        return out

    def cells(self) -> Iterator[tuple[tuple[int, ...], str, dict[str, Any]]]:
        names = list(self.axes)
        for idx in np.ndindex(*self.shape):
            values = {n: self.axes[n][i] for n, i in zip(names, idx, strict=True)}
            spec = {"kind": self.kind, **values, **self.params}
            yield tuple(int(i) for i in idx), _cell_name(values), spec

    @staticmethod
    def from_manifest(m: Any, where: str) -> _Plan:
        if not isinstance(m, dict) or m.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"directory: {where} is not a dlnsim sweep manifest")
        if m.get("version") != MANIFEST_VERSION:
            raise ValueError(f"directory: {where} has manifest version {m.get('version')!r}; this dlnsim reads "
                             f"version {MANIFEST_VERSION}")
        kind = str(m.get("kind"))
        want = {"gd": ("N", "eta", "seed"), "critical": ("N", "seed")}.get(kind)
        axes = m.get("axes")
        if want is None or not isinstance(axes, dict) or not set(want) <= set(axes):
            raise ValueError(f"directory: {where} is a damaged sweep manifest (kind or axes)")
        return _Plan(kind, {k: list(v) for k, v in axes.items()}, dict(m.get("params", {})))


#: compare_flow parameters that the sweep sets itself
_FLOW_OWN = {"problem", "W0", "eta", "n_iter", "record", "gtol", "stop_early", "blowup", "bound", "attrs",
             "snapshots", "keep_weights", "progress"}


def _flow_option(flow: Any) -> dict[str, Any] | bool:
    """False, or the JSON-able options of `dlnsim.flow.compare_flow` (True: its defaults)."""
    if flow is False or flow is None:
        return False
    if flow is True:
        opts: dict[str, Any] = {}
    elif isinstance(flow, dict):
        opts = dict(flow)
    else:
        raise ValueError(f"flow must be False, True or a dict of options for dlnsim.flow.compare_flow "
                         f"(rtol, atol, kinds, ...), got {flow!r}")
    try:
        from .flow import compare_flow
    except ImportError as exc:
        raise ValueError(f"flow: the gradient-flow comparison is not available ({exc})") from None
    import inspect

    allowed = set(inspect.signature(compare_flow).parameters) - _FLOW_OWN - {"gd_kwargs"}
    bad = sorted(set(opts) - allowed)
    if bad:
        raise ValueError(f"flow: unknown option(s) {bad}; compare_flow accepts {sorted(allowed)}")
    try:
        opts = json.loads(json.dumps(opts))
    except (TypeError, ValueError):
        raise ValueError(f"flow: options must be plain numbers, strings and lists, got {flow!r}") from None
    return opts


def _gd_plan(N: Any, eta: Any, seed: Any, gamma: Any, n_iter: Any, record: Any, eta_mode: Any, schedule: Any,
             d: Any, m: Any, r: Any, gtol: Any, blowup: Any, stop_early: Any, flow: Any) -> _Plan:
    Ns = _int_axis(N, "N", 1)
    etas = _float_axis(eta, "eta")
    seeds = _int_axis(seed, "seed", 0)
    n_iter = nonneg_int(n_iter, "n_iter", minimum=1)
    eta_mode = _choice(eta_mode, "eta_mode", ETA_MODES)
    schedule = _choice(schedule, "schedule", SCHEDULES)
    axes: dict[str, list[Any]] = {"N": Ns, "eta": etas}
    if schedule == "power_decay":
        if gamma is None:
            raise ValueError("gamma: schedule='power_decay' needs decay rates gamma >= 0 (a number or a list)")
        axes["gamma"] = _float_axis(gamma, "gamma", allow_zero=True)
    elif gamma is not None:
        raise ValueError(f"gamma is only used with schedule='power_decay', got gamma={gamma!r} with "
                         f"schedule={schedule!r}")
    axes["seed"] = seeds
    if not isinstance(stop_early, bool):
        raise ValueError(f"stop_early must be True or False, got {stop_early!r}")
    flow = _flow_option(flow)
    params = {
        "n_iter": n_iter,
        "record": _record_json(record, n_iter),
        "eta_mode": eta_mode,
        "schedule": schedule,
        **_setup_params(Ns, d, m, r),
        "gtol": positive_float(gtol, "gtol", allow_zero=True),
        "blowup": positive_float(blowup, "blowup"),
        "stop_early": stop_early,
        "flow": flow,
    }
    return _Plan("gd", axes, params)


# ---------------------------------------------------------------------------------------------- cell functions


def _bound_of(setup: Any) -> StepsizeBound | None:
    try:
        return stepsize_bound(setup.problem, setup.W0)
    except ValueError:  # an unbalanced start: Theorem 2.4 with alpha = 0 does not apply
        return None


def _setup(spec: dict[str, Any]) -> Any:
    return paper_setup(spec["N"], spec["seed"], d=spec["d"], m=spec["m"], r=spec["r"])


def _scale(spec: dict[str, Any], bound: StepsizeBound | None) -> float:
    if spec["eta_mode"] == "absolute":
        return 1.0
    if bound is None:
        raise ValueError(f"eta_mode='bound': no section-5 bound for N={spec['N']}, seed={spec['seed']}")
    return bound.eta


def _gd_cell(spec: dict[str, Any]) -> xr.Dataset:
    setup = _setup(spec)
    bound = _bound_of(setup)
    value = float(spec["eta"]) * _scale(spec, bound)
    sched: Schedule = (Constant(value) if spec["schedule"] == "constant"
                       else PowerDecay(value, value, float(spec["gamma"])))
    attrs = {"sweep_spec": _spec_json(spec), "eta_value": value, "eta_label": float(spec["eta"]),
             "eta_mode": spec["eta_mode"]}
    if spec["flow"] is not False:  # GD and the gradient flows at the GD times, in one Dataset
        from .flow import compare_flow

        return compare_flow(setup.problem, setup.W0, sched, spec["n_iter"], spec["record"], **spec["flow"],
                            gtol=spec["gtol"], stop_early=spec["stop_early"], blowup=spec["blowup"], bound=bound,
                            attrs=attrs)
    return run_gd(setup.problem, setup.W0, sched, spec["n_iter"], spec["record"], gtol=spec["gtol"],
                  stop_early=spec["stop_early"], blowup=spec["blowup"], bound=bound, attrs=attrs)


_CRIT_SCHEMA: dict[str, tuple[tuple[str, ...], str, str]] = {
    "trial": (("trial",), "1", "number of the GD run in the search (1 = first)"),
    "trial_eta": (("trial",), "1", "constant stepsize of the run"),
    "trial_outcome": (("trial",), "1", "'converged', 'not_converged' or 'diverged' (see attribute criterion)"),
    "trial_final_loss": (("trial",), "1", "loss at the end of the run"),
    "trial_stop_iteration": (("trial",), "1", "iteration where the run ended (n_iter unless it stopped early)"),
}


def _critical_cell(spec: dict[str, Any]) -> xr.Dataset:
    setup = _setup(spec)
    problem = setup.problem
    bound = _bound_of(setup)
    eta_star = bound.eta if bound is not None else math.nan
    scale = _scale(spec, bound)
    lo, hi = (float(b) * scale for b in spec["bracket"])
    factor, max_expand, rtol = float(spec["factor"]), int(spec["max_expand"]), float(spec["rtol"])
    trials: list[tuple[float, str, float, int]] = []
    initial = math.nan

    def converges(eta: float) -> bool:
        nonlocal initial
        ds = run_gd(problem, setup.W0, eta, spec["n_iter"], [0], gtol=spec["gtol"], stop_early=True,
                    blowup=spec["blowup"], bound=bound)
        a = ds.attrs
        initial = float(a["initial_loss"])
        excess0 = initial - problem.lstar
        excess = float(a["final_loss"]) - problem.lstar
        if a["status"] == "diverged":
            outcome = "diverged"
        elif excess <= spec["loss_tol"] * excess0:
            outcome = "converged"
        else:
            outcome = "not_converged"
        trials.append((eta, outcome, float(a["final_loss"]), int(a["stop_iteration"])))
        return outcome == "converged"

    def final_loss() -> float:  # of the last trial; inf after a blow-up
        v = trials[-1][2]
        return v if trials[-1][1] != "diverged" and math.isfinite(v) else math.inf

    # phase 1: a converging stepsize L (and maybe a failing one U above it)
    L: float | None = None
    U: float | None = None
    x = lo
    if converges(x):
        L = x
    elif trials[-1][1] == "not_converged" and final_loss() < initial:
        for _ in range(max_expand):  # too slow: walk up
            prev = final_loss()
            x *= factor
            if converges(x):
                L = x
                break
            if final_loss() >= prev:  # worse than the smaller stepsize: no stepsize reaches loss_tol in time
                U = x
                break
    else:
        for _ in range(max_expand):  # too large: walk down
            prev, U = final_loss(), x
            x /= factor
            if converges(x):
                L = x
                break
            if final_loss() >= prev:  # better no more: smaller stepsizes only get slower
                break
    # phase 2: a failing stepsize above L
    status = "ok"
    if L is None:
        status = "no_converging_eta"
    elif U is None:
        x = hi if hi > L else L * factor
        for _ in range(max_expand + 1):  # walk up
            if not converges(x):
                U = x
                break
            L, x = x, x * factor
        else:
            status = "no_failing_eta"
    # phase 3: bisection in log space
    if L is not None and U is not None:
        while L * (1.0 + rtol) < U:
            mid = math.sqrt(L * U)
            if converges(mid):
                L = mid
            else:
                U = mid
    lo = math.nan if L is None else L
    hi = math.nan if U is None else U
    eta_crit = lo
    attrs = {
        "title": f"critical stepsize search, depth-{spec['N']} linear network",
        "sweep_spec": _spec_json(spec),
        "N": spec["N"],
        "seed": spec["seed"],
        "criterion": CRITERION,
        "search": SEARCH,
        "search_status": status,
        "eta_crit": eta_crit,
        "eta_lo": lo,
        "eta_hi": hi,
        "eta_star": eta_star,
        "ratio": eta_crit / eta_star if bound is not None else math.nan,
        "n_trials": len(trials),
        "initial_loss": initial,
        "optimal_loss": problem.lstar,
        "lambda_max_XXt": problem.lambda_max,
        **problem.meta,
        **(bound.attrs() if bound is not None else {}),
        **dataset.provenance(),
    }
    data = {
        "trial_eta": np.array([t[0] for t in trials], dtype=np.float64),
        "trial_outcome": np.array([t[1] for t in trials], dtype=object),
        "trial_final_loss": np.array([t[2] for t in trials], dtype=np.float64),
        "trial_stop_iteration": np.array([t[3] for t in trials], dtype=np.int64),
    }
    coords = {"trial": np.arange(1, len(trials) + 1, dtype=np.int64)}
    return dataset.build(data, coords, attrs, schema=_CRIT_SCHEMA)


def run_cell(spec: dict[str, Any]) -> xr.Dataset:
    """Compute one cell of a sweep (the function every executor runs), with BLAS on one thread.  ``spec`` is a
    cell of a manifest: ``{"kind": "gd" | "critical", "N": ..., "seed": ..., ...}`` (see the ``sweep_spec``
    attribute of a cell file)."""
    kind = spec.get("kind") if isinstance(spec, dict) else None
    cell = {"gd": _gd_cell, "critical": _critical_cell}.get(kind)  # type: ignore[arg-type]
    if cell is None:
        raise ValueError(f"spec: expected a sweep cell with kind 'gd' or 'critical', got {spec!r}")
    # one BLAS thread for the whole cell (setup, bound and run), on every executor: the same numbers
    # bitwise whatever the process's BLAS setting, and faster at these matrix sizes
    with blas_threads(1):
        return cell(spec)


def _cell_task(spec: dict[str, Any], target: str | None) -> xr.Dataset | dict[str, Any]:
    """What the executors run: `run_cell`, then either write the cell file (``target``: local processes share
    the sweep's directory, and writing there spreads the NetCDF encoding over the workers) and return the
    status attributes, or return the Dataset for the caller to write (dask: no shared filesystem assumed)."""
    ds = run_cell(spec)
    if target is None:
        return ds
    dataset.save(ds, target)
    return {k: ds.attrs[k] for k in ("status", "search_status") if k in ds.attrs}


# ---------------------------------------------------------------------------------------------- local workers


def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(0.25)
        if os.getppid() != parent_pid:
            os._exit(1)


def _warm_up() -> None:
    """Load the compiled kernels (Numba's on-disk cache) so the first cell does not pay for it."""
    s = paper_setup(2, 0, d=3, m=9, r=1)
    run_gd(s.problem, s.W0, 1e-3, 2, "all")


def _init_worker(parent_pid: int) -> None:
    os.environ.update(BLAS_ENV)  # for libraries loaded from now on (the ones loaded at start saw it already)
    with contextlib.suppress(ValueError, OSError):
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is handled by the sweep in the parent
    if os.getppid() != parent_pid:
        os._exit(1)
    # an orphaned worker (the sweep was killed) exits instead of computing for nobody
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True, name="dlnsim-watch-parent").start()
    with contextlib.suppress(Exception):  # a real error will show in the first cell
        _warm_up()


def _noop() -> int:
    return os.getpid()


@contextlib.contextmanager
def _blas_env() -> Iterator[None]:
    """Set BLAS_ENV in os.environ while worker processes are started (they inherit it), then restore."""
    old = {k: os.environ.get(k) for k in BLAS_ENV}
    os.environ.update(BLAS_ENV)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _new_pool(n: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(os.getpid(),))


def local_executor(workers: int | None = None) -> ProcessPoolExecutor:
    """A warm local pool like the one ``executor="local"`` uses (spawned processes, one BLAS thread each,
    kernels loaded), to pass as ``executor=`` to several sweeps.  Shut it down yourself (``with`` works)."""
    n = _n_cores() if workers is None else nonneg_int(workers, "workers", minimum=1)
    pool = _new_pool(n)
    with _blas_env():  # with "spawn", each submit starts a process while none is idle: all n start here
        futs = [pool.submit(_noop) for _ in range(n)]
    for f in futs:
        f.result()
    return pool


def _terminate(pool: ProcessPoolExecutor) -> None:
    for p in list((getattr(pool, "_processes", None) or {}).values()):
        with contextlib.suppress(Exception):
            p.terminate()


# ------------------------------------------------------------------------------------------------ directories


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _read_manifest(path: Path) -> dict[str, Any] | None:
    f = path / MANIFEST
    if not f.is_file():
        return None
    try:
        m: dict[str, Any] = json.loads(f.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"directory: {str(f)!r} is not a readable sweep manifest: {exc}") from None
    _Plan.from_manifest(m, repr(str(f)))
    return m


def _write_json_atomic(obj: Any, target: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(obj, fh, indent=1)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _describe_diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    out = []
    if old.get("kind") != new["kind"]:
        out.append(f"kind is {old.get('kind')!r} there, {new['kind']!r} here")
    for group in ("axes", "params"):
        a, b = old.get(group, {}), new[group]
        for k in sorted(set(a) | set(b)):
            if a.get(k, "<absent>") != b.get(k, "<absent>"):
                out.append(f"{k} is {a.get(k, '<absent>')!r} there, {b.get(k, '<absent>')!r} here")
    return "; ".join(out)


def _check_directory(path: Path, plan: _Plan) -> dict[str, Any] | None:
    """The existing manifest if it matches the plan; ValueError (nothing written) otherwise."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"directory: {str(path)!r} exists and is not a directory")
    if not path.exists():
        return None
    old = _read_manifest(path)
    new = plan.manifest()
    if old is None:
        if any(path.glob("cell_*.nc")):
            raise ValueError(f"directory: {str(path)!r} holds cell files but no manifest {MANIFEST}; "
                             "use a new directory")
        return None
    same = {k: old.get(k) for k in ("format", "version", "kind", "axes", "params")} == new
    if not same:
        raise ValueError(f"directory: {str(path)!r} holds a different sweep ({_describe_diff(old, new)}); "
                         "use a new directory, or the same parameters to resume")
    return old


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise RuntimeError(f"directory: another sweep is running in {str(path)!r}") from None
        yield
    finally:
        os.close(fd)  # releases the lock


class _Cell:
    """A cell file read with netCDF4 directly (several times faster than xarray for many small files):
    global ``attrs`` and ``vars``: name -> (dims, values, attrs), coordinates included."""

    def __init__(self, f: Path) -> None:
        import netCDF4

        with netCDF4.Dataset(f, "r") as nc:
            nc.set_auto_mask(False)
            self.attrs: dict[str, Any] = {k: nc.getncattr(k) for k in nc.ncattrs()}
            self.vars: dict[str, tuple[tuple[str, ...], np.ndarray, dict[str, Any]]] = {}
            for name, v in nc.variables.items():
                values = np.array(v[...])
                if values.dtype.kind == "U":  # a NetCDF string scalar
                    values = values.astype(object)
                attrs = {k: v.getncattr(k) for k in v.ncattrs() if not k.startswith("_")}
                self.vars[name] = (tuple(v.dimensions), values, attrs)
            self.sizes = {name: len(dim) for name, dim in nc.dimensions.items()}
        self.data_vars = [n for n in self.vars if n not in self.sizes]


def _cell_ok(f: Path, spec: dict[str, Any]) -> _Cell | None:
    """The cell file read, or None when it is damaged or holds another cell."""
    try:
        c = _Cell(f)
    except (OSError, RuntimeError, ValueError, KeyError):
        return None
    ok = c.attrs.get("format") == dataset.FORMAT_TAG and c.attrs.get("sweep_spec") == _spec_json(spec)
    return c if ok else None


def _peek(f: Path, spec: dict[str, Any]) -> dict[str, Any] | None:
    """The global attributes of a finished cell file (read without loading the data), or None when the file
    is unreadable or holds another cell.  Files appear under their final name only once complete."""
    import netCDF4

    try:
        with netCDF4.Dataset(f, "r") as nc:
            attrs = {k: nc.getncattr(k) for k in nc.ncattrs()}
    except (OSError, RuntimeError, ValueError):
        return None
    ok = attrs.get("format") == dataset.FORMAT_TAG and attrs.get("sweep_spec") == _spec_json(spec)
    return attrs if ok else None


def _failed(attrs: Any, kind: str) -> bool:
    """Whether a finished cell counts as failed for the progress bar (diverged / no bracket)."""
    if kind == "gd":
        return bool(attrs.get("status") == "diverged")
    return bool(attrs.get("search_status") != "ok")


# -------------------------------------------------------------------------------------------------- execution


def _execute(plan: _Plan, path: Path, executor: Any, workers: int | None, client: Any, scheduler: Any,
             progress: bool) -> None:
    todo: list[tuple[str, dict[str, Any]]] = []
    n_bad = 0
    total = 0
    for _, name, spec in plan.cells():
        total += 1
        f = path / name
        attrs = _peek(f, spec) if f.exists() else None
        if attrs is None:
            f.unlink(missing_ok=True)  # damaged or foreign: recompute
            todo.append((name, spec))
        else:
            n_bad += _failed(attrs, plan.kind)
    todo.sort(key=lambda t: -int(t[1]["N"]))  # deepest (slowest) cells first: better load balance
    label = "diverged" if plan.kind == "gd" else "unbracketed"

    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=total - len(todo), unit="cell", desc=f"sweep {path.name}",
               disable=not progress, dynamic_ncols=True)
    bar.set_postfix({label: n_bad}, refresh=False)

    def finish(name: str, result: xr.Dataset | dict[str, Any]) -> None:
        nonlocal n_bad
        if isinstance(result, xr.Dataset):  # not written by the worker
            dataset.save(result, path / name)
            result = dict(result.attrs)
        n_bad += _failed(result, plan.kind)
        bar.update(1)
        bar.set_postfix({label: n_bad})

    def failed(name: str, exc: BaseException) -> RuntimeError:
        return RuntimeError(f"sweep: cell {name} failed with {type(exc).__name__}: {exc}")

    try:
        if not todo:
            return
        if executor == "serial":
            for name, spec in todo:
                try:
                    res = _cell_task(spec, str(path / name))
                except Exception as exc:
                    raise failed(name, exc) from exc
                finish(name, res)
        elif executor == "dask":
            _execute_dask(todo, client, scheduler, finish, failed)
        else:
            own = not isinstance(executor, Executor)
            pool: Executor = (_new_pool(min(workers or _n_cores(), len(todo))) if own else executor)
            futs: dict[Future[xr.Dataset | dict[str, Any]], str] = {}
            try:
                with _blas_env():  # local processes start during submit and inherit it
                    for name, spec in todo:
                        futs[pool.submit(_cell_task, spec, str(path / name))] = name
                for fut in _futures_as_completed(list(futs)):
                    try:
                        res = fut.result()
                    except Exception as exc:
                        raise failed(futs[fut], exc) from exc
                    finish(futs.pop(fut), res)
            except BaseException:
                for fut in futs:
                    fut.cancel()
                if own and isinstance(pool, ProcessPoolExecutor):
                    _terminate(pool)
                raise
            finally:
                if own:
                    pool.shutdown(wait=True, cancel_futures=True)
    finally:
        bar.close()


def _execute_dask(todo: list[tuple[str, dict[str, Any]]], client: Any, scheduler: Any, finish: Any,
                  failed: Any) -> None:
    import dask
    from distributed import Client
    from distributed import as_completed as dask_as_completed

    own = client is None
    if own:
        client = Client(scheduler)  # type: ignore[no-untyped-call]
    token = uuid.uuid4().hex[:8]
    try:
        names = {}
        futs = {}
        for name, spec in todo:
            fut = client.submit(_cell_task, spec, None, key=f"dlnsim-{name[:-3]}-{token}", pure=False)
            names[fut.key] = name
            futs[fut.key] = fut
        try:
            for fut in dask_as_completed(list(futs.values())):  # type: ignore[no-untyped-call]
                try:
                    ds = fut.result()
                except Exception as exc:
                    raise failed(names[fut.key], exc) from exc
                # with a Client around, xarray would lock each NetCDF write through the scheduler (a round trip
                # per HDF5 call, many times slower): write with dask's local scheduler instead
                with dask.config.set(scheduler="synchronous"):
                    finish(names[fut.key], ds)
                del futs[fut.key], ds  # release the result on the cluster
                fut.release()
        except BaseException:
            client.cancel(list(futs.values()))
            raise
    finally:
        if own:
            client.close()


def _run(plan: _Plan, directory: Any, executor: Any, workers: Any, client: Any, scheduler: Any,
         progress: Any) -> xr.Dataset:
    executor, workers = _executor_args(executor, workers, client, scheduler)
    if not isinstance(progress, bool):
        raise ValueError(f"progress must be True or False, got {progress!r}")
    if directory is None:
        with tempfile.TemporaryDirectory(prefix="dlnsim-sweep-") as tmp:
            return _run_in(plan, Path(tmp), executor, workers, client, scheduler, progress)
    if not isinstance(directory, str | os.PathLike):
        raise ValueError(f"directory must be a path (str or os.PathLike) or None, got {type(directory).__name__}")
    return _run_in(plan, Path(directory), executor, workers, client, scheduler, progress)


def _run_in(plan: _Plan, path: Path, executor: Any, workers: int | None, client: Any, scheduler: Any,
            progress: bool) -> xr.Dataset:
    _check_directory(path, plan)  # nothing is written before this passes
    path.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        manifest = _check_directory(path, plan)  # again, under the lock
        if manifest is None:
            manifest = {**plan.manifest(), "created": _now(), "dlnsim_version": _version()}
            _write_json_atomic(manifest, path / MANIFEST)
        for stale in (*path.glob(".cell_*.tmp"), *path.glob(f".{MANIFEST}.*.tmp")):
            stale.unlink(missing_ok=True)  # left by a killed run (we hold the lock: nobody is writing)
        _execute(plan, path, executor, workers, client, scheduler, progress)
        return _combine(plan, path, manifest)


def _version() -> str:
    from . import __version__

    return __version__


# ---------------------------------------------------------------------------------------------------- combine

#: per-cell attributes of a gd cell stored as variables: attr -> (variable name, cell dims kept, long_name)
_GD_TABLE: dict[str, tuple[str, tuple[str, ...], str]] = {
    "eta_value": ("eta_value", (), "stepsize used: eta (absolute) or eta * eta_bound (eta_mode='bound'); "
                                   "a1 = a2 of the power-decay schedule"),
    "status": ("status", (), "run status: converged, diverged, max_iter (not_run: cell missing)"),
    "status_reason": ("status_reason", (), "why the run ended"),
    "stop_iteration": ("stop_iteration", (), "iteration where the run ended (n_iter unless it stopped early; "
                                             "-1: not run)"),
    "final_loss": ("final_loss", (), "loss at the last evaluated iteration"),
    "final_grad_norm_sq": ("final_grad_norm_sq", (), "||grad L||_F^2 at the last evaluated iteration"),
    "min_descent_ratio": ("min_descent_ratio", (), "min over all steps of the descent ratio (Prop. 3.4(4))"),
    "max_loss_increase": ("max_loss_increase", (), "max over all steps of L(k+1) - L(k) (Prop. 3.4(2))"),
    "divergence_threshold": ("divergence_threshold", (), "loss above which a run counts as diverged"),
    "bound_eta": ("eta_bound", ("N", "seed"), "section-5 stepsize bound eta* (5.1) of this start"),
    "bound_M": ("bound_M", ("N", "seed"), "constant M of (2.11)"),
    "bound_delta": ("bound_delta", ("N", "seed"), "delta of the bound"),
    "bound_K": ("bound_K", ("N", "seed"), "K_delta of (2.10)"),
    "bound_B": ("bound_B", ("N", "seed"), "B_delta of (2.9)"),
    "bound_sigma": ("bound_sigma", ("N", "seed"), "sigma of Prop. 3.4(4)"),
    "bound_L0": ("bound_L0", ("N", "seed"), "initial loss used by the bound"),
    "bound_eta_descent": ("bound_eta_descent", ("N", "seed"), "descent condition of (3.14)"),
    "bound_eta_balance": ("bound_eta_balance", ("N", "seed"), "balancedness condition of (3.14)"),
    "bound_balancedness0": ("bound_balancedness0", ("N", "seed"), "balancedness constant of W(0)"),
    "bound_eta_closed_form": ("bound_eta_closed_form", ("N", "seed"), "Remark 2.5(b) closed form (NaN unless "
                                                                      "delta rule remark2.5)"),
    "initial_loss": ("initial_loss", ("N", "seed"), "loss L(0) at the start"),
    "optimal_loss": ("optimal_loss", ("N", "seed"), "least-squares optimum L*"),
    "q": ("q", ("N", "seed"), "rank of Q = Y X^T (X X^T)^(-1/2)"),
    "pivot_layer": ("pivot_layer", ("N",), "layer where the kernels split the chain products"),
}
_CRIT_TABLE: dict[str, tuple[str, tuple[str, ...], str]] = {
    "eta_crit": ("eta_crit", (), "largest stepsize found to converge (= eta_lo)"),
    "eta_lo": ("eta_lo", (), "lower end of the final bracket (converges)"),
    "eta_hi": ("eta_hi", (), "upper end of the final bracket (does not converge)"),
    "eta_star": ("eta_star", (), "section-5 stepsize bound eta* (5.1) of this start"),
    "ratio": ("ratio", (), "eta_crit / eta_star"),
    "search_status": ("search_status", (), "ok, no_converging_eta or no_failing_eta (not_run: cell missing)"),
    "n_trials": ("n_trials", (), "number of GD runs of the search"),
    "initial_loss": ("initial_loss", (), "loss L(0) at the start"),
    "optimal_loss": ("optimal_loss", (), "least-squares optimum L*"),
    "lambda_max_XXt": ("lambda_max_XXt", (), "largest eigenvalue of X X^T"),
}
_GD_DROP = {"created", "title", "N", "seed", "setup_N", "bound_N", "widths", "sweep_spec", "eta_label", "gamma",
            "schedule_eta", "schedule_a1", "schedule_a2", "schedule_gamma", "Conventions", "format"}
_CRIT_DROP = {"created", "title", "N", "seed", "setup_N", "bound_N", "sweep_spec", "Conventions", "format"}
#: attributes fixed by the sweep's parameters: global attributes of the combined Dataset (when equal in every
#: cell, as they should be); every other attribute of the cells becomes a variable, so the layout of the
#: result does not depend on the values
_GLOBAL = {"d_x", "d_y", "m", "n_iter", "eta_spec", "eta_mode", "schedule", "schedule_formula", "record_rule", "gtol",
           "stop_early", "blowup", "setup", "setup_d", "setup_m", "setup_r", "bound_alpha", "bound_rule",
           "bound_k_constant", "dlnsim_version", "numpy_version", "numba_version", "scipy_version",
           "xarray_version", "flow_rtol", "flow_atol", "flow_max_steps", "flow_kinds", "flow_integrator",
           "criterion", "search"}
_RENAME_VARS = {"eta": "eta_k"}
_INT_NAMES = {"stop_iteration", "q", "pivot_layer", "n_trials"}
_STR_NAMES = {"status", "status_reason", "search_status"}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        x, y = np.asarray(a), np.asarray(b)
        if x.shape != y.shape or (x.dtype.kind in "OUS") != (y.dtype.kind in "OUS"):
            return False
        return bool(np.array_equal(x, y, equal_nan=x.dtype.kind == "f" and y.dtype.kind == "f"))
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    try:
        if isinstance(a, float | np.floating) and isinstance(b, float | np.floating) and np.isnan(a) and np.isnan(b):
            return True
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def _kind_of(values: list[Any], name: str) -> str:
    if name in _STR_NAMES:
        return "O"
    if name in _INT_NAMES:
        return "i"
    if any(isinstance(v, str | np.ndarray) for v in values):
        return "O"
    if all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in values):
        return "i"
    return "f"


def _empty(shape: tuple[int, ...], kind: str, fill_str: str = "") -> np.ndarray:
    if kind == "O":
        out = np.empty(shape, dtype=object)
        out[...] = fill_str
        return out
    if kind == "i":
        return np.full(shape, -1, dtype=np.int64)
    return np.full(shape, np.nan)


def _to(value: Any, kind: str) -> Any:
    if kind == "O":
        if isinstance(value, np.ndarray):
            return ", ".join(str(x) for x in value.ravel())
        return str(value)
    return value


def _combine(plan: _Plan, path: Path, manifest: dict[str, Any]) -> xr.Dataset:
    axes = plan.axes
    cell_dims = tuple(axes)
    shape = plan.shape
    cells: dict[tuple[int, ...], _Cell] = {}
    for idx, name, spec in plan.cells():
        f = path / name
        if f.exists():
            ds = _cell_ok(f, spec)
            if ds is None:
                raise ValueError(f"directory: cell file {str(f)!r} is damaged or belongs to another sweep; "
                                 "delete it and rerun the sweep")
            cells[idx] = ds
    gd = plan.kind == "gd"
    table = _GD_TABLE if gd else _CRIT_TABLE
    drop = _GD_DROP if gd else _CRIT_DROP
    schema: dict[str, tuple[tuple[str, ...], str, str]] = {}
    coords: dict[str, np.ndarray] = {}
    for dim, vals in axes.items():
        dtype = np.float64 if dim in ("eta", "gamma") else np.int64
        coords[dim] = np.asarray(vals, dtype=dtype)
    schema["N"] = (("N",), "1", "depth N (number of layers)")
    schema["seed"] = (("seed",), "1", "seed of paper_setup (data and initialisation)")
    if gd:
        p = plan.params
        schema["eta"] = (("eta",), "1", "stepsize as given in the grid: absolute, or a multiple of eta_bound "
                                        "(attribute eta_mode)")
        if "gamma" in axes:
            schema["gamma"] = (("gamma",), "1", "decay rate of the power-decay schedule")
        widths = {n: paper_widths(n, p["d"], p["r"]) for n in axes["N"]}
        max_n = max(axes["N"])
        inner_coords = {
            "k": record_points(p["n_iter"], p["record"]),
            "layer": np.arange(1, max_n + 1, dtype=np.int64),
            "pair": np.arange(1, max_n, dtype=np.int64),
            "sv": np.arange(1, max(min(w) for w in widths.values()) + 1, dtype=np.int64),
        }
        for dim, cvals in inner_coords.items():
            coords[dim] = cvals
            schema[dim] = dataset.SCHEMA[dim]
        coords["width_index"] = np.arange(0, max_n + 1, dtype=np.int64)
        schema["width_index"] = (("width_index",), "1", "index j of the width d_j")
    else:
        n_trial = max([c.sizes.get("trial", 0) for c in cells.values()], default=0)
        inner_coords = {"trial": np.arange(1, n_trial + 1, dtype=np.int64)}
        coords["trial"] = inner_coords["trial"]
        schema["trial"] = _CRIT_SCHEMA["trial"]

    data: dict[str, np.ndarray] = {}
    # record variables: cell dims + the cell's own dims, padded
    var_dims: dict[str, tuple[str, ...]] = {}
    for c in cells.values():
        for v in c.data_vars:
            var_dims.setdefault(v, c.vars[v][0])
    for v, vdims in var_dims.items():
        kinds = [c.vars[v][1].dtype.kind for c in cells.values() if v in c.vars]
        kind = "O" if "O" in kinds or "U" in kinds else ("i" if all(k in "iu" for k in kinds) else "f")
        arr = _empty(shape + tuple(len(inner_coords[d]) for d in vdims), kind)
        for idx, c in cells.items():
            if v not in c.vars:
                continue
            for d in vdims:
                got = c.vars[d][1] if d in c.vars else np.arange(c.sizes[d])
                if not np.array_equal(got, inner_coords[d][: got.size]):
                    raise ValueError(f"directory: cell {idx} has {d} = {got} which does not fit the sweep")
            arr[idx + tuple(slice(0, c.sizes[d]) for d in vdims)] = c.vars[v][1]
        name = _RENAME_VARS.get(v, v)
        vattrs = next(c for c in cells.values() if v in c.vars).vars[v][2]
        data[name] = arr
        schema[name] = (cell_dims + vdims, vattrs.get("units", "1"), vattrs.get("long_name", v))

    # attributes of the cells
    keys: list[str] = list(table)
    for c in cells.values():
        keys.extend(k for k in c.attrs if k not in keys and k not in drop)
    global_attrs: dict[str, Any] = {}
    for k in keys:
        present = [(idx, c.attrs[k]) for idx, c in cells.items() if k in c.attrs]
        values = [v for _, v in present]
        if k not in table:
            if (k in _GLOBAL and len(present) == len(cells) and values
                    and all(_same(values[0], v) for v in values[1:])):
                global_attrs[k] = values[0]
                continue
            name, keep, long_name = k, cell_dims, f"per-cell attribute {k} of the runs"
        else:
            name, keep, long_name = table[k][0], table[k][1] or cell_dims, table[k][2]
        kind = _kind_of(values, name)
        pos = [cell_dims.index(d) for d in keep]
        arr = _empty(tuple(shape[i] for i in pos), kind, "not_run" if name in ("status", "search_status") else "")
        seen: dict[tuple[int, ...], Any] = {}
        for idx, v in present:
            sub = tuple(idx[i] for i in pos)
            if sub in seen and not _same(seen[sub], v):
                raise ValueError(f"directory: cells disagree on {k} for {dict(zip(keep, sub, strict=True))}")
            seen[sub] = v
            arr[sub] = _to(v, kind)
        data[name] = arr
        schema[name] = (keep, "1", long_name)
    if gd:
        w = np.zeros((len(axes["N"]), max(axes["N"]) + 1), dtype=np.int64)
        for i, n in enumerate(axes["N"]):
            w[i, : n + 1] = widths[n]
        data["widths"] = w
        schema["widths"] = (("N", "width_index"), "1", "widths d_0..d_N of the network (0 beyond N)")

    sweep_attrs = {
        "title": ("dlnsim sweep over (" + ", ".join(cell_dims) + ", k)" if gd
                  else "dlnsim critical stepsize search over (N, seed)"),
        "sweep_kind": plan.kind,
        "sweep_dims": ", ".join(cell_dims),
        "sweep_manifest": json.dumps(plan.manifest(), sort_keys=True),
        "cells_total": int(np.prod(shape)),
        "cells_done": len(cells),
        **{f"sweep_{k}": v for k, v in plan.params.items() if not isinstance(v, list | dict)},
    }
    if not gd:
        sweep_attrs["criterion"] = CRITERION
    attrs = {**global_attrs, **sweep_attrs, "created": manifest.get("created", "unknown")}
    return dataset.build(data, coords, attrs, schema=schema)


def open_sweep(directory: str | os.PathLike[str]) -> xr.Dataset:
    """The combined Dataset of the sweep in ``directory`` (cells not finished yet have status 'not_run')."""
    path = Path(directory)
    if not path.is_dir():
        raise ValueError(f"directory: {str(path)!r} is not a directory")
    m = _read_manifest(path)
    if m is None:
        raise ValueError(f"directory: {str(path)!r} has no sweep manifest {MANIFEST}")
    return _combine(_Plan.from_manifest(m, repr(str(path / MANIFEST))), path, m)


# ------------------------------------------------------------------------------------------------ public API

_SWEEP_PARAMS = ("directory", "N", "eta", "seed", "n_iter", "record", "eta_mode", "schedule", "gamma", "d", "m",
                 "r", "gtol", "blowup", "stop_early", "flow", "executor", "workers", "client", "scheduler",
                 "progress")


def sweep(
    directory: str | os.PathLike[str] | None,
    *,
    N: Any,
    eta: Any,
    seed: Any,
    n_iter: int,
    record: Any = "log",
    eta_mode: str = "absolute",
    schedule: str = "constant",
    gamma: Any = None,
    d: int = 70,
    m: int | None = None,
    r: int = 2,
    gtol: float = 1e-10,
    blowup: float = 1e8,
    stop_early: bool = False,
    flow: Any = False,
    executor: Any = "local",
    workers: int | None = None,
    client: Any = None,
    scheduler: str | None = None,
    progress: bool = True,
    **unknown: Any,
) -> xr.Dataset:
    """Run GD on every cell of the grid N x eta x seed (x gamma) and return the combined Dataset.

    Each cell runs ``run_gd(*paper_setup(N, seed, d=d, m=m, r=r)[::2], schedule, n_iter, record, ...)``.
    ``eta_mode="absolute"``: the eta values are stepsizes; ``"bound"``: multiples of the section-5 bound
    eta*(N, seed) of `stepsize_bound`.  ``schedule="constant"`` runs eta_k = eta; ``"power_decay"`` runs
    ``PowerDecay(a1=eta, a2=eta, gamma)`` for each gamma (an extra grid axis).  ``directory`` keeps one file per
    finished cell and the manifest (rerun to resume); ``None`` uses a temporary directory.  ``executor``:
    ``"local"`` (``workers`` processes, default one per core), ``"dask"`` (``client=`` or ``scheduler=``),
    ``"serial"`` or a `concurrent.futures.Executor`.  Bad parameters raise ``ValueError`` before anything is
    written.  See the module docstring for the layout of the result.
    """
    _unknown("sweep", unknown, _SWEEP_PARAMS)
    plan = _gd_plan(N, eta, seed, gamma, n_iter, record, eta_mode, schedule, d, m, r, gtol, blowup, stop_early,
                    flow)
    return _run(plan, directory, executor, workers, client, scheduler, progress)


_CRIT_PARAMS = ("directory", "N", "seed", "n_iter", "rtol", "loss_tol", "bracket", "eta_mode", "factor",
                "max_expand", "d", "m", "r", "gtol", "blowup", "executor", "workers", "client", "scheduler",
                "progress")


def critical_stepsize(
    directory: str | os.PathLike[str] | None,
    *,
    N: Any,
    seed: Any,
    n_iter: int,
    rtol: float = 0.01,
    loss_tol: float = 1e-3,
    bracket: Sequence[float] = (1.0, 4.0),
    eta_mode: str = "bound",
    factor: float = 2.0,
    max_expand: int = 40,
    d: int = 70,
    m: int | None = None,
    r: int = 2,
    gtol: float = 1e-10,
    blowup: float = 1e8,
    executor: Any = "local",
    workers: int | None = None,
    client: Any = None,
    scheduler: str | None = None,
    progress: bool = True,
    **unknown: Any,
) -> xr.Dataset:
    """The critical constant stepsize of GD for every (N, seed) of the grid, by bisection; cells in parallel.

    Criterion: a constant stepsize eta *converges* when the run of ``n_iter`` steps is not ``diverged`` and
    its final excess loss L(n_iter) - L* is at most ``loss_tol`` times the initial excess loss L(0) - L*.
    Search (attribute ``search``): start at ``bracket[0]`` (a multiple of eta*(N, seed) with
    ``eta_mode="bound"``, a stepsize with ``"absolute"``).  If it does not converge, walk by ``factor``: up
    when the run was merely too slow (the loss fell, not far enough), down when it diverged or the loss grew,
    until a stepsize converges -- or give up (``no_converging_eta``) when the final loss stops improving, i.e.
    no stepsize meets ``loss_tol`` within ``n_iter`` steps.  Then walk up from ``bracket[1]`` (or above the
    converging stepsize) until one does not converge (``no_failing_eta`` after ``max_expand`` steps), and
    bisect in log space until eta_hi / eta_lo <= 1 + rtol.  Near the stability limit convergence is slow, so
    the threshold found lies a little below it; the gap shrinks as n_iter or loss_tol grows.

    Returns a Dataset over (N, seed) with ``eta_crit`` (= ``eta_lo``, the largest stepsize found to converge),
    the bracket ``eta_lo``/``eta_hi``, the bound ``eta_star``, ``ratio`` = eta_crit / eta_star,
    ``search_status`` ("ok", "no_converging_eta", "no_failing_eta"), ``n_trials`` and every run of the search
    (``trial_eta``, ``trial_outcome``, ``trial_final_loss``, ``trial_stop_iteration``) over (N, seed, trial).
    ``directory``, executors and resume work as in `sweep`.
    """
    _unknown("critical_stepsize", unknown, _CRIT_PARAMS)
    Ns = _int_axis(N, "N", 1)
    seeds = _int_axis(seed, "seed", 0)
    n_iter = nonneg_int(n_iter, "n_iter", minimum=1)
    rtol = positive_float(rtol, "rtol (relative precision of the bracket)")
    loss_tol = positive_float(loss_tol, "loss_tol (relative final excess loss that counts as converged)")
    try:
        lo, hi = (positive_float(b, "bracket") for b in bracket)
    except (TypeError, ValueError):
        raise ValueError(f"bracket must be two positive numbers (lo, hi) with lo < hi, got {bracket!r}") from None
    if not lo < hi:
        raise ValueError(f"bracket must be two positive numbers (lo, hi) with lo < hi, got {bracket!r}")
    factor = positive_float(factor, "factor (bracket expansion factor)")
    if factor <= 1.0:
        raise ValueError(f"factor must be > 1, got {factor!r}")
    params = {
        "n_iter": n_iter,
        "rtol": rtol,
        "loss_tol": loss_tol,
        "bracket": [lo, hi],
        "eta_mode": _choice(eta_mode, "eta_mode", ETA_MODES),
        "factor": factor,
        "max_expand": nonneg_int(max_expand, "max_expand"),
        **_setup_params(Ns, d, m, r),
        "gtol": positive_float(gtol, "gtol", allow_zero=True),
        "blowup": positive_float(blowup, "blowup"),
    }
    plan = _Plan("critical", {"N": Ns, "seed": seeds}, params)
    return _run(plan, directory, executor, workers, client, scheduler, progress)


# -------------------------------------------------------------------------------------------------------- CLI


def _add_executor_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="local processes (default), a dask cluster, or serial in this process")
    p.add_argument("--workers", type=int, default=None, help="local worker processes (default: one per core)")
    p.add_argument("--scheduler", default=None, help="dask scheduler address, e.g. tcp://127.0.0.1:8786")
    p.add_argument("--out", default=None, help="also write the combined Dataset to this .nc file")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--d", type=int, default=70, help="input/output width of the paper setup (default 70)")
    p.add_argument("--m", type=int, default=None, help="number of samples (default 3d)")
    p.add_argument("--r", type=int, default=2, help="narrowest width d_1 (default 2)")


def _record_arg(text: str) -> Any:
    return int(text) if text.isdigit() else text


def _check_out(args: argparse.Namespace) -> None:
    """--out is checked before any work, so a bad path does not waste a sweep."""
    if args.out is None:
        return
    out = Path(args.out)
    if out.suffix != ".nc":
        raise ValueError(f"--out must end in .nc, got {args.out!r}")
    if not out.parent.is_dir():
        raise ValueError(f"--out: directory {str(out.parent)!r} does not exist")
    if out.exists() and not args.overwrite:
        raise ValueError(f"--out: {args.out!r} exists; pass --overwrite to replace it")


def _finish_cli(ds: xr.Dataset, out: str | None) -> None:
    if out is not None:
        dataset.save(ds, out)
        print(f"wrote {out}")


def _cli_sweep(args: argparse.Namespace) -> int:
    _check_out(args)
    ds = sweep(args.dir, N=args.N, eta=args.eta, seed=args.seeds, n_iter=args.iters, record=args.record,
               eta_mode=args.eta_mode, schedule=args.schedule, gamma=args.gamma, d=args.d, m=args.m, r=args.r,
               executor=args.executor, workers=args.workers, scheduler=args.scheduler,
               progress=not args.no_progress)
    status = ds["status"].values.ravel()
    counts = ", ".join(f"{s}: {int(np.sum(status == s))}" for s in sorted(set(status.tolist())))
    print(f"{status.size} cells in {args.dir} ({counts})")
    _finish_cli(ds, args.out)
    return 0


def _cli_critical(args: argparse.Namespace) -> int:
    _check_out(args)
    ds = critical_stepsize(args.dir, N=args.N, seed=args.seeds, n_iter=args.iters, rtol=args.rtol,
                           loss_tol=args.loss_tol, bracket=tuple(args.bracket), eta_mode=args.eta_mode, d=args.d,
                           m=args.m, r=args.r, executor=args.executor, workers=args.workers,
                           scheduler=args.scheduler, progress=not args.no_progress)
    print(f"{'N':>3} {'seed':>5} {'eta_crit':>12} {'eta_star':>12} {'ratio':>10}  status")
    for n in ds["N"].values:
        for s in ds["seed"].values:
            c = ds.sel(N=n, seed=s)
            print(f"{int(n):>3} {int(s):>5} {float(c.eta_crit):>12.5g} {float(c.eta_star):>12.5g} "
                  f"{float(c.ratio):>10.4g}  {c.search_status.item()}")
    _finish_cli(ds, args.out)
    return 0


def add_sweep_cli(subparsers: Any) -> None:
    """Register ``dlnsim sweep`` and ``dlnsim critical`` on an argparse subparsers object.  Each sets
    ``func``: call ``args.func(args)``, which returns the exit code."""
    p = subparsers.add_parser(
        "sweep", help="run GD on a grid of depths x stepsizes x seeds (resumable)",
        description="Run GD on the paper setup for every (N, eta, seed); one NetCDF file per cell in --dir; "
                    "rerun the same command to resume.")
    p.add_argument("--N", type=int, nargs="+", required=True, help="depths")
    p.add_argument("--eta", type=float, nargs="+", required=True, help="stepsizes (see --eta-mode)")
    p.add_argument("--eta-mode", choices=ETA_MODES, default="absolute",
                   help="eta as stepsizes or as multiples of the section-5 bound eta*(N, seed)")
    p.add_argument("--seeds", type=int, nargs="+", required=True, help="seeds of the paper setup")
    p.add_argument("--iters", type=int, required=True, help="GD steps per cell")
    p.add_argument("--record", type=_record_arg, default="log", help="record rule: log, log:N, all, every:N")
    p.add_argument("--schedule", choices=SCHEDULES, default="constant")
    p.add_argument("--gamma", type=float, nargs="+", default=None, help="decay rates (power_decay)")
    p.add_argument("--dir", required=True, help="sweep directory (created; reused to resume)")
    _add_executor_args(p)
    p.set_defaults(func=_cli_sweep)

    c = subparsers.add_parser(
        "critical", help="find the critical constant stepsize per (N, seed) by bisection",
        description=f"Bisect on the constant stepsize for every (N, seed). {CRITERION}.")
    c.add_argument("--N", type=int, nargs="+", required=True, help="depths")
    c.add_argument("--seeds", type=int, nargs="+", required=True, help="seeds of the paper setup")
    c.add_argument("--iters", type=int, required=True, help="GD steps per run")
    c.add_argument("--rtol", type=float, default=0.01, help="relative precision of the bracket (default 0.01)")
    c.add_argument("--loss-tol", type=float, default=1e-3, help="final/initial excess loss that counts as converged")
    c.add_argument("--bracket", type=float, nargs=2, default=[1.0, 4.0], metavar=("LO", "HI"),
                   help="starting bracket (multiples of eta* with --eta-mode bound, the default)")
    c.add_argument("--eta-mode", choices=ETA_MODES, default="bound")
    c.add_argument("--dir", default=None, help="directory for the cells (default: temporary)")
    _add_executor_args(c)
    c.set_defaults(func=_cli_critical)


if __name__ == "__main__":  # pragma: no cover
    ap = argparse.ArgumentParser(prog="python -m dlnsim.sweep")
    add_sweep_cli(ap.add_subparsers(dest="command", required=True))
    ns = ap.parse_args()
    sys.exit(ns.func(ns))
