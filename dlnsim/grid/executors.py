"""Where the cells of a grid run: threads (default), processes, dask.distributed, serial, or any Executor.

* ``"threads"``: threads in this process, one per core (each cell on a new daemon thread, so that a cell that
  never returns cannot keep Ctrl-C or the interpreter's exit waiting).  The Numba kernels release the GIL and
  BLAS runs on one thread per cell, so threads use every core with no process to spawn, no ``__main__``
  guard and no import in a worker.
* ``"processes"``: a pool of spawned processes (one BLAS thread each), for cells that hold the GIL.
* ``"dask"``: a `dask.distributed.Client` (``client=``) or a scheduler address (``scheduler=``).
* ``"serial"``: one cell after the other in this thread (for debugging).
* any `concurrent.futures.Executor` instance.

Every executor computes a cell with the same function and one BLAS thread, so the numbers are the same bit
for bit.  Results come back to the calling thread, which alone writes the files (the NetCDF/HDF5 library is
not thread-safe).  A cell whose worker died (a killed process) is tried again once; a cell that raises or runs
past its ``timeout`` is recorded as an error and the others go on; a lost dask scheduler stops the run.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import signal
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import FIRST_COMPLETED, CancelledError, Executor, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from dlnsim._blas import blas_threads
from dlnsim.checks import nonneg_int

__all__ = ["BLAS_ENV", "EXECUTORS", "CellTimeout", "DaemonThreads", "WorkerDied", "check_executor", "check_timeout",
           "n_cores", "process_pool", "run_cells"]

EXECUTORS = ("threads", "processes", "dask", "serial")
#: environment of worker processes: one BLAS/OpenMP thread each (cells are the parallel unit)
BLAS_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
}


class WorkerDied(RuntimeError):
    """The process (or dask worker) computing a cell died."""


def n_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def check_executor(executor: Any, workers: Any, client: Any, scheduler: Any) -> tuple[Any, int | None]:
    """Validated (executor, workers); ValueError naming the argument otherwise.  Nothing is started."""
    if isinstance(executor, Executor):
        if workers is not None or client is not None or scheduler is not None:
            raise ValueError("workers, client and scheduler are not used when executor is an Executor instance")
        return executor, None
    if executor == "local":  # the name of the default in earlier versions
        executor = "threads"
    if not isinstance(executor, str) or executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(map(repr, EXECUTORS))} or a "
                         f"concurrent.futures.Executor, got {executor!r}")
    if workers is not None:
        if executor not in ("threads", "processes"):
            raise ValueError(f"workers is only used with executor='threads' or 'processes', got workers={workers!r} "
                             f"with executor={executor!r}")
        workers = nonneg_int(workers, "workers", minimum=1)
    if executor == "dask":
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


def connect(scheduler: str, timeout: float = 10.0) -> Any:
    """A Client of the scheduler at ``scheduler``; ValueError when it does not answer within ``timeout`` s."""
    from distributed import Client

    try:
        return Client(scheduler, timeout=timeout)  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError) as exc:
        raise ValueError(f"scheduler: no dask scheduler answered at {scheduler!r} within {timeout:g} s "
                         f"({type(exc).__name__})") from None
    except (ValueError, TypeError) as exc:  # an address dask cannot parse (a port that is not a number, ...)
        raise ValueError(f"scheduler: {scheduler!r} is not a scheduler address such as 'tcp://127.0.0.1:8786' "
                         f"({exc})") from None


def compute_cell(cell: Callable[..., Any], point: dict[str, Any], params: dict[str, Any]) -> Any:
    """What every executor runs for one cell: ``cell(**point, **params)`` with one BLAS thread."""
    with blas_threads(1):
        return cell(**point, **params)


# ------------------------------------------------------------------------------------------------ processes


def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(0.25)
        if os.getppid() != parent_pid:
            os._exit(1)


def _init_worker(parent_pid: int) -> None:
    os.environ.update(BLAS_ENV)
    with contextlib.suppress(ValueError, OSError):
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is handled by the caller
    if os.getppid() != parent_pid:
        os._exit(1)
    # an orphaned worker (the caller was killed) exits instead of computing for nobody
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True, name="dlnsim-watch-parent").start()


@contextlib.contextmanager
def _blas_env() -> Iterator[None]:
    """BLAS_ENV in os.environ while worker processes start (they inherit it), then restored."""
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


def process_pool(workers: int | None = None) -> ProcessPoolExecutor:
    """A started pool of spawned processes with one BLAS thread each, to pass as ``executor=`` to several
    grids.  Shut it down yourself (``with`` works)."""
    n = n_cores() if workers is None else nonneg_int(workers, "workers", minimum=1)
    pool = ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(os.getpid(),))
    with _blas_env():  # with "spawn", each submit starts a process while none is idle: all n start here
        futs = [pool.submit(os.getpid) for _ in range(n)]
    for f in futs:
        f.result()
    return pool


def _terminate(pool: Executor) -> None:
    for p in list((getattr(pool, "_processes", None) or {}).values()):
        with contextlib.suppress(Exception):
            p.terminate()


# ---------------------------------------------------------------------------------------------------- running

Task = tuple[str, dict[str, Any]]  # (cell name, point)


class CellTimeout(RuntimeError):
    """A cell ran longer than the ``timeout`` of `run_grid`."""


class DaemonThreads(Executor):
    """Each submitted call on a new daemon thread.

    Unlike `ThreadPoolExecutor`, whose threads the interpreter joins at exit, a thread here can be abandoned:
    a cell that never returns (or one past its timeout) neither keeps a run from stopping on Ctrl-C nor the
    process from exiting.  Starting a thread costs some 0.1 ms, nothing next to a cell.
    """

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        fut.set_running_or_notify_cancel()

        def run() -> None:
            try:
                res = fn(*args, **kwargs)
            except BaseException as exc:
                fut.set_exception(exc)
            else:
                fut.set_result(res)

        threading.Thread(target=run, daemon=True, name="dlnsim-cell").start()
        return fut

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Nothing to stop: threads end with their call, and abandoned ones with the process."""


def check_timeout(timeout: Any, executor: Any) -> float | None:
    """A validated per-cell ``timeout`` (seconds, > 0, or None) for ``executor``; ValueError otherwise."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not math.isfinite(timeout) \
            or timeout <= 0:
        raise ValueError(f"timeout must be a number of seconds > 0 or None, got {timeout!r}")
    if executor in ("serial", "dask"):
        raise ValueError(f"timeout is not available with executor={executor!r} (a cell in the calling thread, or "
                         "on a dask worker, cannot be stopped from here); use 'threads' or 'processes'")
    return float(timeout)


def run_cells(todo: list[Task], cell: Callable[..., Any], params: dict[str, Any], executor: Any,
              workers: int | None, client: Any, scheduler: Any,
              timeout: float | None = None) -> Generator[tuple[str, Any, BaseException | None], None, None]:
    """Compute the cells of ``todo``; yield ``(name, result, None)`` or ``(name, None, exception)`` as they
    finish, in the calling thread.  A cell running longer than ``timeout`` seconds yields a `CellTimeout`."""
    if not todo:
        return
    if executor == "serial":
        for name, point in todo:
            try:
                res = compute_cell(cell, point, params)
            except Exception as exc:
                yield name, None, exc
            else:
                yield name, res, None
    elif executor == "dask":
        yield from _run_dask(todo, cell, params, client, scheduler)
    else:
        yield from _run_pool(todo, cell, params, executor, workers, timeout)


def _timed_out(timeout: float, how: str) -> CellTimeout:
    return CellTimeout(f"the cell ran longer than timeout={timeout:g} s and was {how}")


def _run_pool(todo: list[Task], cell: Callable[..., Any], params: dict[str, Any], executor: Any,
              workers: int | None, timeout: float | None) -> Iterator[tuple[str, Any, BaseException | None]]:
    """Cells on a pool, at most a window of them in flight (``2 x workers`` for processes, so that a worker
    never waits for its next cell; ``workers`` threads): a finished cell's result is handed on and dropped at
    once, so memory does not grow with the number of cells.

    On an exception here (Ctrl-C included) nothing is waited for: queued cells are cancelled, worker
    processes are terminated and cell threads abandoned (daemon threads), so the caller stops at once."""
    own = not isinstance(executor, Executor)
    n = min(workers or n_cores(), len(todo))
    # with a timeout, no more cells in flight than workers: a process pool marks a queued cell as running, and
    # its wait for a worker would count against it
    window = n if executor == "threads" or timeout is not None else 2 * (n if own else max(n_cores(), 4))
    attempts = dict.fromkeys((name for name, _ in todo), 0)
    queue = deque(todo)
    while queue:
        pool: Executor
        if not own:
            pool = executor
        elif executor == "threads":
            pool = DaemonThreads()
        elif timeout is not None:  # started before the clock runs: a cell's time is not a worker's start-up
            pool = process_pool(n)
        else:
            pool = ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_init_worker, initargs=(os.getpid(),))
        killable = own and isinstance(pool, ProcessPoolExecutor)
        futs: dict[Future[Any], Task] = {}
        started: dict[Future[Any], float] = {}
        broken: list[Task] = []
        stopping = False
        try:
            while queue or futs:
                with _blas_env() if isinstance(pool, ProcessPoolExecutor) else contextlib.nullcontext():
                    while queue and not broken and len(futs) < window:
                        task = queue.popleft()
                        try:
                            futs[pool.submit(compute_cell, cell, task[1], params)] = task
                        except BrokenProcessPool:  # never started: not an attempt
                            broken.append(task)
                if timeout is None:
                    done, _ = wait(list(futs), return_when=FIRST_COMPLETED)
                else:
                    # a cell's time counts from when a worker holds it (a process pool's queue holds one more)
                    done, _ = wait(list(futs), timeout=min(timeout, 0.25), return_when=FIRST_COMPLETED)
                    now = time.monotonic()
                    for fut in futs:
                        if fut not in started and (fut.running() or fut.done()):
                            started[fut] = now
                    late = [f for f in futs if f not in done and now - started.get(f, now) > timeout]
                    if late:
                        for fut in late:
                            task = futs.pop(fut)
                            fut.cancel()
                            yield task[0], None, _timed_out(timeout, "stopped" if killable else
                                                            "abandoned (its thread runs on in the background)")
                        if killable:  # a process cannot be stopped alone: the others start again elsewhere
                            _terminate(pool)
                            broken.extend(t for f, t in futs.items() if f not in done)
                            futs = {f: t for f, t in futs.items() if f in done}
                for fut in done:
                    if fut not in futs:
                        continue
                    task = futs.pop(fut)
                    started.pop(fut, None)
                    try:
                        res = fut.result()
                    except BrokenProcessPool:
                        attempts[task[0]] += 1
                        if attempts[task[0]] <= 1:
                            broken.append(task)
                        else:
                            yield task[0], None, WorkerDied("the worker process died twice while computing this cell")
                        continue
                    except Exception as exc:
                        yield task[0], None, exc
                        continue
                    yield task[0], res, None
                    del res
                if broken and not futs:
                    break
        except BaseException:
            stopping = True
            for fut in futs:
                fut.cancel()
            if killable:
                _terminate(pool)
            raise
        finally:
            if own:
                pool.shutdown(wait=not stopping, cancel_futures=True)
        if broken and not own:
            for task in broken:  # a pool that is not ours cannot be restarted
                yield task[0], None, WorkerDied("the worker process died while computing this cell")
            broken = []
        queue.extendleft(reversed(broken))


def _run_dask(todo: list[Task], cell: Callable[..., Any], params: dict[str, Any], client: Any,
              scheduler: Any) -> Iterator[tuple[str, Any, BaseException | None]]:
    import dask
    from distributed import as_completed as dask_as_completed

    own = client is None
    if own:
        client = connect(scheduler)
    token = uuid.uuid4().hex[:8]
    try:
        names: dict[str, str] = {}
        futs: dict[str, Any] = {}
        for name, point in todo:
            fut = client.submit(compute_cell, cell, point, params, key=f"dlnsim-{name[:-3]}-{token}", pure=False,
                                retries=1)
            names[fut.key] = name
            futs[fut.key] = fut
        try:
            for fut in dask_as_completed(list(futs.values())):  # type: ignore[no-untyped-call]
                name = names[fut.key]
                try:
                    res = fut.result()
                except (Exception, CancelledError) as exc:
                    if _scheduler_lost(client, exc):  # not the cell's fault: stop, and leave it to a rerun
                        raise RuntimeError(f"scheduler: the dask scheduler stopped answering "
                                           f"({type(exc).__name__}); {len(futs)} cell(s) were not computed, rerun "
                                           "to resume") from None
                    err: BaseException = exc
                    if type(exc).__name__ == "KilledWorker":
                        err = WorkerDied(f"the dask worker died while computing this cell ({exc})")
                    del futs[fut.key]
                    fut.release()
                    yield name, None, err
                    continue
                del futs[fut.key]
                fut.release()
                # with a Client around, xarray would route each NetCDF write lock through the scheduler
                with dask.config.set(scheduler="synchronous"):
                    yield name, res, None
        except BaseException:
            with contextlib.suppress(Exception):  # (a scheduler that is gone cannot cancel)
                client.cancel(list(futs.values()))
            raise
    finally:
        if own:
            with contextlib.suppress(Exception):
                client.close()


def _scheduler_lost(client: Any, exc: BaseException) -> bool:
    """Whether a cell's failure is the loss of the scheduler (its connection closed, its futures cancelled)."""
    if type(exc).__name__ in ("CommClosedError", "FutureCancelledError") or isinstance(exc, CancelledError):
        return True
    return getattr(client, "status", "running") not in ("running", "connecting", "newly-created")
