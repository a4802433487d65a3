"""Grid end to end on all cores: the threads executor (default) against the same cells one after another.

Grid: N in {2, 3} x 4 stepsizes (multiples 0.5, 1, 2, 4 of the bound eta*) x 4 seeds = 32 cells of the paper's
setup (d = 70, m = 210, d_1 = 2), 20000 GD steps each (4000 with ``--quick``), log-spaced records.  Every
number is measured in this one process, on this machine (the load average is recorded: other processes skew
every number, so the sweeps are timed in rounds, each round running every executor once, and the ratios are
taken within a round):

* the reference: ``dlnsim.sweep(..., executor="serial")``, the cells one after another in this thread
  (kernels loaded: the single-core cell rate);
* ``executor="threads"`` (the default) end to end: thread pool, cells, files, combining.  ``efficiency`` =
  serial time / (cores x threads time) of the same round; the target is >= 0.9.  On a machine busy with other
  work this is bounded by the machine ceiling below; ``cpu_efficiency`` (serial CPU time / the threaded
  sweep's CPU time) says whether the threads cost extra work, whatever the load;
* ``executor="processes"`` end to end (spawning the workers, importing dlnsim, loading the kernels from
  Numba's cache) and on a warm `dlnsim.grid.process_pool` (start-up excluded);
* start-up: the time from the call to the first cell starting (a setup that notes the time, then builds the
  paper setup) and to the first cell file (its modification time), in this process and in a fresh process
  with a warm kernel cache (where the kernels are loaded from the cache by the first cell);
* the machine's own ceiling for threads (`benchmarks.ceiling.thread_ceiling`): ``cores`` threads each doing
  one GD run at once against one alone, no grid machinery; it bounds the efficiency from above;
* results: every executor gives the serial result bit for bit (``identical``);
* dask (optional, not with ``--quick``): a `LocalCluster(n_workers=cores, threads_per_worker=1)`.

Run: ``python -m benchmarks.sweep_bench [--quick] [--iters N] [--rounds R] [--no-dask]``; `run()` returns rows.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import dlnsim
from dlnsim.grid import process_pool
from dlnsim.grid.executors import n_cores

from .ceiling import thread_ceiling

GRID: dict[str, Any] = {"N": [2, 3], "eta_factor": [0.5, 1.0, 2.0, 4.0], "seed": [0, 1, 2, 3]}


def timed_paper(N: int, seed: int, starts: str = "") -> Any:
    """The paper setup, after appending the time the cell started to the file ``starts`` (perf_counter is
    CLOCK_MONOTONIC on Linux: the same clock in every process)."""
    if starts:
        with open(starts, "a") as f:
            f.write(f"{time.perf_counter()!r}\n")
    s = dlnsim.paper_setup(N, seed)
    return s.problem, s.W0


def timed_sweep(n_iter: int, executor: Any, workers: int | None = None) -> dict[str, Any]:
    """One sweep of GRID in a fresh directory: wall time, the time to the first cell start and the first cell
    file, CPU time of this process, and the Dataset."""
    with tempfile.TemporaryDirectory(prefix="dlnsim-bench-") as tmp:
        starts = Path(tmp) / "starts.txt"
        c0, w0, t0 = time.process_time(), time.time(), time.perf_counter()
        ds = dlnsim.sweep(Path(tmp) / "s", **GRID, setup=timed_paper, starts=str(starts), n_iter=n_iter,
                          engine=dlnsim.Engine(executor, workers=workers, progress=False))
        t = time.perf_counter() - t0
        cpu = time.process_time() - c0
        first_start = min(float(x) for x in starts.read_text().split()) - t0
        first_file = min(f.stat().st_mtime for f in (Path(tmp) / "s").glob("cell_*.nc")) - w0
        return {"seconds": t, "cpu": cpu, "first_start": first_start, "first_file": first_file, "ds": ds}


FRESH = """
import json, os, sys, tempfile, time
from pathlib import Path
t0 = time.perf_counter()
import dlnsim
from benchmarks import sweep_bench as B
t1 = time.perf_counter()
with tempfile.TemporaryDirectory() as tmp:
    w0, t2 = time.time(), time.perf_counter()
    dlnsim.sweep(Path(tmp) / "s", **B.GRID, setup=B.timed_paper, starts=str(Path(tmp) / "starts.txt"),
                 n_iter=int(sys.argv[1]), engine=dlnsim.Engine(progress=False))
    t3 = time.perf_counter()
    first = min(float(x) for x in (Path(tmp) / "starts.txt").read_text().split())
    first_file = min(f.stat().st_mtime for f in (Path(tmp) / "s").glob("cell_*.nc"))
print(json.dumps({"import_s": t1 - t0, "sweep_s": t3 - t2, "first_start_s": first - t2,
                  "first_file_s": first_file - w0}))
"""


def fresh_process(n_iter: int) -> dict[str, float]:
    """The default sweep in a fresh interpreter (kernel cache warm): import, call -> first cell, total."""
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", FRESH, str(n_iter)], env=env, capture_output=True, text=True,
                         check=True, cwd=root)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _identical(a: Any, b: Any) -> bool:
    keep = [v for v in a.data_vars if v not in ("created",)]
    return bool(a[keep].drop_attrs().identical(b[keep].drop_attrs()))


def run(quick: bool = False, n_iter: int | None = None, rounds: int | None = None,
        dask: bool | None = None) -> list[dict[str, Any]]:
    n_iter = n_iter if n_iter is not None else (4000 if quick else 20000)
    rounds = rounds if rounds is not None else (2 if quick else 3)
    dask = (not quick) if dask is None else dask
    cores = n_cores()
    n_cells = len(GRID["N"]) * len(GRID["eta_factor"]) * len(GRID["seed"])
    rows: list[dict[str, Any]] = []

    def row(case: str, value: float, unit: str, **extra: Any) -> None:
        rows.append({"case": case, "value": value, "unit": unit, **extra})

    row("load average (1 min) before", os.getloadavg()[0], "procs", cores=cores, cells=n_cells, n_iter=n_iter,
        rounds=rounds)
    timed_sweep(2, "serial")  # load the kernels (and the diagnostics) in this process
    timed_sweep(2, "threads")
    res: dict[str, list[dict[str, Any]]] = {"serial": [], "threads": [], "processes": [], "pool": []}
    with process_pool(cores) as pool:
        timed_sweep(2, pool)  # the workers load the kernels
        for _ in range(rounds):
            res["serial"].append(timed_sweep(n_iter, "serial"))
            res["threads"].append(timed_sweep(n_iter, "threads"))
            res["processes"].append(timed_sweep(n_iter, "processes"))
            res["pool"].append(timed_sweep(n_iter, pool))
    ref = res["serial"][0]["ds"]

    def med(key: str, field: str = "seconds") -> float:
        return statistics.median(r[field] for r in res[key])

    def ratios(key: str) -> list[float]:  # efficiency of each round: serial / (cores x this)
        return [s["seconds"] / (cores * r["seconds"]) for s, r in zip(res["serial"], res[key], strict=True)]

    t_ser = med("serial")
    row("serial: the cells one after another (single-core rate)", n_cells / t_ser, "cells/s", seconds=t_ser,
        seconds_min_max=f"{min(r['seconds'] for r in res['serial']):.2f}-"
                        f"{max(r['seconds'] for r in res['serial']):.2f}",
        cpu_seconds=med("serial", "cpu"))
    for key, label in (("threads", f"threads (default), {cores} workers, end to end"),
                       ("processes", f"processes, {cores} workers, end to end (spawn, import, kernels)"),
                       ("pool", f"processes, warm process_pool({cores}) (start-up excluded)")):
        eff = ratios(key)
        extra: dict[str, Any] = {}
        if key == "threads":
            extra["efficiency"] = statistics.median(eff)
            # load-independent: the CPU time of the threaded sweep (all threads of this process) against the
            # serial one; 1.0 means running on threads costs no extra work
            extra["cpu_efficiency"] = statistics.median(
                s["cpu"] / r["cpu"] for s, r in zip(res["serial"], res[key], strict=True))
        else:
            extra["efficiency_vs_cores"] = statistics.median(eff)
        row(label, n_cells / med(key), "cells/s", seconds=med(key), **extra,
            efficiency_min_max=f"{min(eff):.2f}-{max(eff):.2f}", parent_cpu_seconds=med(key, "cpu"),
            first_cell_start_s=med(key, "first_start"), first_cell_file_s=med(key, "first_file"),
            identical_to_serial=all(_identical(ref, r["ds"]) for r in res[key]))
    row("threads vs processes end to end (time ratio)", med("processes") / med("threads"), "x")
    ceil = thread_ceiling(cores, n_iter=20_000 if quick else 60_000, reps=rounds)
    row(f"machine ceiling: {cores} threads each one GD run at once vs one alone", ceil["ceiling"], "x",
        alone_s=ceil["alone_s"], together_s=ceil["together_s"], reps=rounds)
    # next to the threads row's efficiency (the targets table shows both)
    next(r for r in rows if "efficiency" in r)["machine_ceiling"] = ceil["ceiling"]
    fresh = [fresh_process(n_iter) for _ in range(2 if quick else 3)]
    fs = statistics.median(f["first_start_s"] for f in fresh)
    row("fresh process, warm kernel cache: call -> first cell starts", fs, "s",
        first_cell_file_s=statistics.median(f["first_file_s"] for f in fresh),
        import_s=statistics.median(f["import_s"] for f in fresh),
        sweep_s=statistics.median(f["sweep_s"] for f in fresh),
        efficiency_incl_kernel_load=t_ser / (cores * statistics.median(f["sweep_s"] for f in fresh)),
        runs=len(fresh))
    row("load average (1 min) after", os.getloadavg()[0], "procs")

    if dask:
        try:
            import distributed
        except ImportError:
            print("note: dask.distributed is not installed: no dask row (pip install 'dlnsim[dask]')")
            return rows
        t0 = time.perf_counter()
        with distributed.LocalCluster(processes=True, n_workers=cores, threads_per_worker=1,
                                      dashboard_address=None) as cluster, distributed.Client(cluster) as client:
            start = time.perf_counter() - t0
            with tempfile.TemporaryDirectory(prefix="dlnsim-bench-") as tmp:
                t0 = time.perf_counter()
                dd = dlnsim.sweep(Path(tmp) / "s", **GRID, setup=timed_paper, starts="", n_iter=n_iter,
                                  engine=dlnsim.Engine("dask", client=client, progress=False))
                t_dask = time.perf_counter() - t0
        row(f"dask LocalCluster start ({cores} workers)", start, "s")
        row("dask sweep (cold workers), end to end", n_cells / t_dask, "cells/s", seconds=t_dask,
            efficiency_vs_cores=t_ser / (cores * t_dask), identical_to_serial=_identical(ref, dd))
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.sweep_bench", description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=None, help="GD steps per cell (default 20000)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds of all executors (default 3)")
    ap.add_argument("--quick", action="store_true", help="4000 steps per cell, 2 rounds, no dask")
    ap.add_argument("--no-dask", action="store_true", help="skip the dask measurement")
    args = ap.parse_args(argv)
    rows = run(args.quick, args.iters, args.rounds, dask=False if args.no_dask else None)
    for r in rows:
        extra = ", ".join(f"{k}={v}" for k, v in r.items() if k not in ("case", "value", "unit"))
        print(f"{r['case']:<70} {r['value']:>10.4g} {r['unit']:<8} {extra}")


if __name__ == "__main__":
    main()
