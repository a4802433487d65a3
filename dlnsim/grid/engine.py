"""`run_grid` and `open_grid`: a cell function over the points of a grid, one file per cell, combined."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import xarray as xr

from dlnsim._blas import blas_threads
from dlnsim.grid.combine import Run, combine
from dlnsim.grid.executors import check_executor, check_timeout, connect, run_cells
from dlnsim.grid.plan import Plan, cell_id_of
from dlnsim.grid.store import Store, utc_now
from dlnsim.io import dataset, integrity

__all__ = ["open_grid", "run_grid"]


def _version() -> str:
    from dlnsim import __version__

    return __version__


def _error_dataset(exc: BaseException) -> xr.Dataset:
    message = f"{type(exc).__name__}: {exc}".strip()
    return xr.Dataset(attrs={**dataset.file_attrs("dlnsim grid cell that failed"), "status": "error",
                             "error": message[:2000]})


def _grid_attrs(plan: Plan, manifest: dict[str, Any], done: int, failed: int) -> dict[str, Any]:
    return {
        "Conventions": dataset.CONVENTIONS,
        "history": dataset.history_line(),
        "format": dataset.FORMAT_TAG,
        "title": "dlnsim grid over (" + ", ".join(plan.axes) + ")",
        "grid_cell": plan.cell_id,
        "grid_dims": ", ".join(plan.axes),
        "grid_manifest": json.dumps(plan.manifest(), sort_keys=True),
        "cells_total": plan.size,
        "cells_done": done,
        "cells_failed": failed,
        "created": manifest.get("created", "unknown"),
    }


def _expected(plan: Plan) -> dict[str, dict[str, Any]]:
    """File name -> point of every cell (what a log line must name together)."""
    return {name: point for _, name, point in plan.cells()}


def _combine_store(store: Store, plan: Plan, manifest: dict[str, Any]) -> xr.Dataset:
    cells: dict[tuple[int, ...], Run | None] = {}
    log = store.read_log(_expected(plan))
    done = failed = 0
    for idx, name, _ in plan.cells():
        rec = log.get(name)
        data = store.read_cell(name, rec)
        if data is None:
            cells[idx] = None
            continue
        try:
            run = Run.from_bytes(data, name)
        except (OSError, RuntimeError, ValueError, KeyError) as exc:  # digest matched: written by a broken run
            raise ValueError(f"directory: cell file {name!r} matches its log entry but cannot be read ({exc}); "
                             "delete it and rerun") from None
        cells[idx] = run
        done += 1
        failed += run.attrs.get("status") == "error"
    return combine(cells, plan.axes, None, _grid_attrs(plan, manifest, done, failed))


def run_grid(
    directory: str | os.PathLike[str] | None,
    cell: Callable[..., xr.Dataset],
    axes: Mapping[str, Any],
    *,
    params: Mapping[str, Any] | None = None,
    executor: Any = "threads",
    workers: int | None = None,
    client: Any = None,
    scheduler: str | None = None,
    progress: bool = True,
    cost: Callable[[dict[str, Any]], float] | None = None,
    cell_id: str | None = None,
    label: str = "grid",
    timeout: float | None = None,
) -> xr.Dataset:
    """Compute ``cell(**point, **params)`` for every point of the grid ``axes`` and combine the results.

    Parameters
    ----------
    directory : str or os.PathLike or None
        Where the grid lives: a manifest ``grid.json``, one NetCDF file per finished cell and a log of them.
        Rerunning the same call resumes (finished cells are not recomputed; failed and damaged ones are); a
        different grid in the same directory is refused before anything is written.  ``None``: no files; the
        cells' results are kept in memory and combined (the same Dataset as from a directory, without the
        NetCDF round trip per cell; nothing to resume).
    cell : callable
        A module-level function from one point of the grid (and ``params``) to an `xarray.Dataset`.  A cell
        that raises is recorded with status ``error`` and the message; the other cells go on.
    axes : mapping of str to list
        The grid axes in dimension order, e.g. ``{"N": [2, 3], "seed": [0, 1, 2]}`` (numbers or short strings).
    params : mapping, optional
        Fixed keyword arguments of every cell (plain JSON values: they are recorded in the manifest).
    executor : {"threads", "processes", "dask", "serial"} or concurrent.futures.Executor
        Where cells run (see ``dlnsim.grid.executors``).  All give the same numbers bit for bit.
    workers : int, optional
        Threads or processes (default: one per core).
    client, scheduler
        For ``executor="dask"``: a `distributed.Client`, or a scheduler address.
    progress : bool
        Show a progress bar on stderr.
    cost : callable, optional
        ``cost(point)``: cells with the largest cost start first (better load balance).
    cell_id : str, optional
        The name recorded in the manifest (default ``module:qualname`` of ``cell``).
    label : str
        Name of the progress bar.
    timeout : float, optional
        Seconds a cell may run (``"threads"``, ``"processes"`` or an Executor).  A cell that runs longer is
        recorded with status ``error`` and the reason, and retried on the next run; its worker process is
        stopped (the other cells in flight start again), while a thread cannot be stopped: it is abandoned and
        runs on in the background.

    Returns
    -------
    xarray.Dataset
        The cells combined over the axes (rules in ``dlnsim.grid.combine``); ``status`` is ``not_run`` for
        cells without a result and ``error`` for cells that raised (message in ``error``).

    Raises
    ------
    ValueError
        Naming the argument, before any cell runs: bad axes (also names reserved for the combined grid such as
        ``status`` or ``k``, and points that would share a cell file), parameters, executor or timeout; a
        directory that holds another grid or is not one `run_grid` made.  During the run: a cell whose result
        has a dimension named like a grid axis (the run stops; nothing of that cell is kept).
    RuntimeError
        When the directory is locked by another run, or when after the run some cell has no valid result
        (its file or log line was changed meanwhile); the cells that finished are kept.
    OSError
        When a file cannot be written (naming it; a full disk is said so).
    KeyboardInterrupt
        On Ctrl-C, within about a second; a cell being written is completed first, so a rerun resumes.
    """
    if not callable(cell):
        raise ValueError(f"cell must be a function, got {cell!r}")
    plan = Plan.make(cell_id if cell_id is not None else cell_id_of(cell), axes, params)
    executor, workers = check_executor(executor, workers, client, scheduler)
    timeout = check_timeout(timeout, executor)
    if not isinstance(progress, bool):
        raise ValueError(f"progress must be True or False, got {progress!r}")
    if cost is not None and not callable(cost):
        raise ValueError(f"cost must be a function of a grid point, got {cost!r}")
    if directory is not None and not isinstance(directory, str | os.PathLike):
        raise ValueError(f"directory must be a path (str or os.PathLike) or None, got {type(directory).__name__}")
    own_client = None
    if executor == "dask" and scheduler is not None:  # checked before anything is created
        own_client = client = connect(scheduler)
        scheduler = None
    try:
        if directory is None:
            return _run_in_memory(plan, cell, executor, workers, client, progress, cost, label, timeout)
        return _run_in(Store(Path(directory)), plan, cell, executor, workers, client, progress, cost, label,
                       timeout)
    finally:
        if own_client is not None:
            own_client.close()


def _run_in(store: Store, plan: Plan, cell: Callable[..., xr.Dataset], executor: Any, workers: int | None,
            client: Any, progress: bool, cost: Callable[[dict[str, Any]], float] | None,
            label: str, timeout: float | None) -> xr.Dataset:
    store.check(plan)  # nothing is written before this passes
    store.path.mkdir(exist_ok=True)
    with store.locked():
        manifest = store.check(plan)  # again, under the lock
        if manifest is None:
            manifest = store.create(plan, _version())
        store.clean_stale()
        expected = _expected(plan)
        log = store.read_log(expected)
        todo: list[tuple[str, dict[str, Any]]] = []
        damaged = 0
        for name, point in expected.items():
            rec = log.get(name)
            if store.read_cell(name, rec) is None:
                f = store.path / name
                if os.path.lexists(f):  # (a link or a FIFO in its place too: the entry is removed, not its target)
                    damaged += 1
                    try:
                        f.unlink()
                    except OSError as exc:
                        raise ValueError(f"directory: {str(f)!r} is in the place of a cell file and cannot be "
                                         f"removed ({exc.strerror}); remove it") from None
                todo.append((name, point))
            elif rec is not None and rec["status"] == "error":
                todo.append((name, point))
        if damaged:
            print(f"{label} {store.path}: {damaged} cell file(s) missing from the log or damaged; recomputing them",
                  file=sys.stderr)
        if cost is not None:
            todo.sort(key=lambda t: -float(cost(t[1])))

        def write(name: str, ds: xr.Dataset) -> str:
            return str(store.write_cell(name, expected[name], ds)["status"])

        _execute(write, f"{label} {store.path.name}", f"{label} {store.path}", plan, cell, todo, executor, workers,
                 client, progress, timeout)
        ds = _combine_store(store, plan, manifest)
    missing = plan.size - int(ds.attrs["cells_done"])
    if missing:
        raise RuntimeError(f"{label} {store.path}: after the run {missing} of {plan.size} cell(s) have no valid "
                           "result (was the log or a cell file changed during the run?); rerun to compute them")
    return ds


def _run_in_memory(plan: Plan, cell: Callable[..., xr.Dataset], executor: Any, workers: int | None, client: Any,
                   progress: bool, cost: Callable[[dict[str, Any]], float] | None, label: str,
                   timeout: float | None) -> xr.Dataset:
    """`run_grid` without a directory: every cell's result kept as a `Run` and combined as `_combine_store`
    would combine the files (the NetCDF round trip per cell cost about a tenth of a 20 000-step GD cell)."""
    index = {name: idx for idx, name, _ in plan.cells()}
    todo = [(name, point) for _, name, point in plan.cells()]
    if cost is not None:
        todo.sort(key=lambda t: -float(cost(t[1])))
    runs: dict[tuple[int, ...], Run | None] = {}

    def keep(name: str, ds: xr.Dataset) -> str:
        runs[index[name]] = Run.from_dataset(ds)
        return str(dataset.outcome(ds, "status", "done"))

    _execute(keep, label, label, plan, cell, todo, executor, workers, client, progress, timeout)
    failed = sum(r is not None and r.attrs.get("status") == "error" for r in runs.values())
    manifest = {"created": utc_now()}
    return combine(runs, plan.axes, None, _grid_attrs(plan, manifest, len(runs), failed))


def _check_result(ds: xr.Dataset, plan: Plan) -> None:
    """ValueError when a result cannot be combined over the grid's axes (checked on the first result, not after
    every cell ran): a dimension named like an axis."""
    clash = sorted(set(map(str, ds.dims)) & set(plan.axes))
    if clash:
        raise ValueError(f"axes: {', '.join(map(repr, clash))} is both a grid axis and a dimension of the cell's "
                         "result; rename the axis")


def _execute(sink: Callable[[str, xr.Dataset], str], desc: str, where: str, plan: Plan,
             cell: Callable[..., xr.Dataset], todo: list[tuple[str, dict[str, Any]]], executor: Any,
             workers: int | None, client: Any, progress: bool, timeout: float | None) -> None:
    """Run the cells of ``todo``; ``sink(name, result)`` keeps each result and returns its status (``desc``: the
    progress bar's name, ``where``: how messages name the grid).

    Ctrl-C is held back while ``sink`` runs (a cell's file and log line are written whole) and stops the run
    at once otherwise: the executor abandons what is in flight (see ``dlnsim.grid.executors``)."""
    from tqdm.auto import tqdm

    total = plan.size
    bar = tqdm(total=total, initial=total - len(todo), unit="cell", desc=desc,
               disable=not progress, dynamic_ncols=True, file=sys.stderr)
    counts: dict[str, int] = {}
    # one BLAS thread for the whole execution, not toggled per cell: lifting the limit between two cells
    # wakes OpenBLAS's own thread pool, whose spinning threads then compete with the cells
    with blas_threads(1), contextlib.closing(
            run_cells(todo, cell, plan.params, executor, workers, client, None, timeout)) as results:
        try:
            for name, res, exc in results:
                if exc is None and not isinstance(res, xr.Dataset):
                    exc = TypeError(f"the cell returned {type(res).__name__}, not an xarray.Dataset")
                if exc is None:
                    _check_result(res, plan)
                ds = _error_dataset(exc) if exc is not None else res
                with integrity.defer_sigint():
                    status = sink(name, ds)
                if status in ("error", "diverged"):
                    counts[status] = counts.get(status, 0) + 1
                    bar.set_postfix(counts, refresh=False)
                bar.update(1)
        finally:
            bar.close()
    if counts.get("error"):
        print(f"{where}: {counts['error']} of {len(todo)} cell(s) failed (status 'error', message in the variable "
              "'error'); rerun to retry them", file=sys.stderr)


def open_grid(directory: str | os.PathLike[str]) -> xr.Dataset:
    """The combined Dataset of the grid in ``directory`` (cells without a result have status ``not_run``).

    Parameters
    ----------
    directory : str or os.PathLike
        The directory of a `run_grid` call (its manifest and one file per finished cell).

    Returns
    -------
    xarray.Dataset
        The cells' results combined over the grid axes.

    Raises
    ------
    ValueError
        If ``directory`` is not a path or not an existing directory.
    """
    if not isinstance(directory, str | os.PathLike):
        raise ValueError(f"directory must be a path, got {type(directory).__name__}")
    store = Store(Path(directory))
    if not store.path.is_dir():
        raise ValueError(f"directory: {str(store.path)!r} is not a directory")
    plan, manifest = store.plan()
    return _combine_store(store, plan, manifest)
