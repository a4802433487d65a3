"""How much parallel throughput this machine itself gives: k copies of one GD run at once against one alone
(in k processes: `ceiling`; on k threads of one process: `thread_ceiling`).

On a VM the vCPUs may share physical cores, caches or memory bandwidth with each other or with other
tenants, so "cores x the single-run throughput" can be out of reach for reasons that
have nothing to do with the sweep.  Here ``k`` spawned processes load the kernels, wait at a barrier, and
then each time the same GD run (no sweep machinery, no files).  ``ceiling = t_alone / max(t_each)`` is the
parallel efficiency the hardware allows: 1.0 means the cores do not slow each other down.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from typing import Any


def _worker(barrier: Any, queue: Any, n_iter: int) -> None:
    from threadpoolctl import threadpool_limits

    import dlnsim

    s = dlnsim.paper_setup(3, 0)
    with threadpool_limits(1):
        dlnsim.run_gd(s.problem, s.W0, "bound", 10)  # load the kernels
        barrier.wait()
        t0 = time.perf_counter()
        dlnsim.run_gd(s.problem, s.W0, "bound", n_iter, record=[n_iter])
        queue.put(time.perf_counter() - t0)


def _together(procs: int, n_iter: int) -> float:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(procs)
    queue = ctx.Queue()
    ps = [ctx.Process(target=_worker, args=(barrier, queue, n_iter)) for _ in range(procs)]
    for p in ps:
        p.start()
    times = [queue.get() for _ in ps]
    for p in ps:
        p.join()
    return max(times)


def ceiling(procs: int, n_iter: int = 100_000, reps: int = 2) -> dict[str, float]:
    """Best-of-``reps`` time of one run alone and of ``procs`` copies at once, and their ratio."""
    alone = min(_together(1, n_iter) for _ in range(reps))
    together = min(_together(procs, n_iter) for _ in range(reps))
    return {"alone_s": alone, "together_s": together, "ceiling": alone / together}


def _gd_thread(barrier: Any, out: list[float], n_iter: int) -> None:
    import dlnsim

    s = dlnsim.paper_setup(3, 0)
    barrier.wait()
    t0 = time.perf_counter()
    dlnsim.run_gd(s.problem, s.W0, "bound", n_iter, record=[n_iter], blas_threads=1)
    out.append(time.perf_counter() - t0)


def _threads_together(k: int, n_iter: int) -> float:
    import threading

    barrier = threading.Barrier(k)
    out: list[float] = []
    ts = [threading.Thread(target=_gd_thread, args=(barrier, out, n_iter)) for _ in range(k)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return max(out)


def thread_ceiling(k: int, n_iter: int = 60_000, reps: int = 2) -> dict[str, float]:
    """The same for threads of this process (what the threads executor can reach): best-of-``reps`` time of
    one GD run alone and of ``k`` runs on ``k`` threads at once (the kernels release the GIL)."""
    import dlnsim

    s = dlnsim.paper_setup(3, 0)
    dlnsim.run_gd(s.problem, s.W0, "bound", 10, blas_threads=1)  # load the kernels
    alone = min(_threads_together(1, n_iter) for _ in range(reps))
    together = min(_threads_together(k, n_iter) for _ in range(reps))
    return {"alone_s": alone, "together_s": together, "ceiling": alone / together}


if __name__ == "__main__":
    import os

    print(ceiling(os.cpu_count() or 1))
