"""``python -m studies [--quick] [--outdir DIR] [--jobs J] [--executor E] [--workers N] [--scheduler ADDR] [NAME ...]``.

Runs the studies (all when no NAME is given) and prints the wall and CPU time of each and of all.  The cells
of a study live in ``<outdir>/cells/<name>/`` while it runs, so an interrupted run resumes where it stopped;
once every study asked for has written its file the cells are removed (``--keep-cells`` keeps them).

``--jobs J`` runs J studies at once, each in a process of its own (``python -m studies NAME``), the most
expensive first, and prints each study's report when it ends.  Every study is serial somewhere (its set-up, the
last cells of its grid, the analysis and the figures); a second study fills the core that would idle.  The
default is 2 with threads or processes and 1 with a dask scheduler or ``--executor serial``.  The numbers do
not depend on J (every cell is seeded by its own parameters).
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from . import STUDIES
from . import _common as C

EXECUTORS = ("threads", "processes", "dask", "serial")
#: CPU seconds of each full-size study on a 2-core machine (warm kernel cache): with ``--jobs`` > 1 the most
#: expensive studies start first, so that the cheap ones fill the cores at the end
COST = {"fig1_constant": 29, "fig2_decreasing": 52, "balancedness_drift": 15, "gd_vs_flow": 22,
        "critical_stepsize": 17, "limit_rank": 54, "stability_threshold": 53, "regime_map": 52,
        "out_of_sample": 10, "bound_tightness": 31, "theorems": 30, "step_rules": 42}
REPO = Path(__file__).resolve().parent.parent


def _cpu() -> float:
    """CPU seconds of this process (all its threads) and of its child processes that have ended."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m studies",
        description="Regenerate the studies' NetCDF files and figures (all studies when no NAME is given). "
                    f"Full size writes to {C.DATA}, --quick to {C.QUICK} (never the archive).")
    ap.add_argument("names", nargs="*", metavar="NAME", help=f"studies to run: {', '.join(STUDIES)}")
    ap.add_argument("--quick", action="store_true", help="small versions (a few minutes in total)")
    ap.add_argument("--outdir", type=Path, default=None,
                    help="output directory (default: data/ for full size, data/quick/ with --quick)")
    ap.add_argument("--executor", choices=EXECUTORS, default=None,
                    help="where the cells run: threads (default), processes, dask (needs --scheduler), serial")
    ap.add_argument("--workers", type=int, default=None,
                    help="threads or processes that compute cells (default: one per core)")
    ap.add_argument("--scheduler", metavar="ADDRESS", default=None,
                    help="run the cells on the dask scheduler at ADDRESS, e.g. tcp://127.0.0.1:8786 (implies "
                         "--executor dask; the workers must be able to import this repository's `studies`, e.g. "
                         "started with PYTHONPATH set to the repository root)")
    ap.add_argument("--jobs", type=int, default=None,
                    help="studies that run at once, each in its own process (default: 2 with threads or processes, "
                         "1 with dask or serial)")
    ap.add_argument("--keep-cells", action="store_true",
                    help="keep <outdir>/cells/ after a complete run (default: removed once every study is written)")
    args = ap.parse_args(argv)
    unknown = [n for n in args.names if n not in STUDIES]
    if unknown:
        ap.error(f"unknown study name(s) {', '.join(unknown)}; choose from {', '.join(STUDIES)}")
    if args.scheduler is not None:
        if args.executor not in (None, "dask"):
            ap.error(f"--scheduler runs the cells on dask; it does not go with --executor {args.executor}")
        args.executor = "dask"
    elif args.executor == "dask":
        ap.error("--executor dask needs --scheduler ADDRESS (the address of a running dask scheduler)")
    args.executor = args.executor or "threads"
    if args.workers is not None:
        if args.workers < 1:
            ap.error(f"--workers must be >= 1, got {args.workers}")
        if args.executor not in ("threads", "processes"):
            ap.error(f"--workers goes with --executor threads or processes, not {args.executor}")
    if args.jobs is None:
        args.jobs = 2 if args.executor in ("threads", "processes") else 1
    elif args.jobs < 1:
        ap.error(f"--jobs must be >= 1, got {args.jobs}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = args.names or list(STUDIES)
    outdir = Path(args.outdir if args.outdir is not None else C.default_outdir(args.quick))
    engine: dict[str, Any] = {"executor": args.executor}
    if args.workers is not None:
        engine["workers"] = args.workers
    if args.scheduler is not None:
        engine["scheduler"] = args.scheduler
    where = args.scheduler if args.scheduler is not None else args.executor
    print(f"studies: {', '.join(names)} ({'quick' if args.quick else 'full size'}) -> {outdir}; cells on {where}",
          flush=True)
    wall0, cpu0 = time.perf_counter(), _cpu()
    if args.jobs > 1 and len(names) > 1:
        times, failed = _run_in_processes(names, outdir, args)
    else:
        times, failed = {}, []
        for name in names:
            times[name] = _run_here(name, outdir, args.quick, engine)
    wall, cpu = time.perf_counter() - wall0, _cpu() - cpu0
    if failed:
        print(f"studies that failed: {', '.join(failed)} (their cells are kept: run again to resume)", flush=True)
        return 1
    if not args.keep_cells:
        for name in names:
            shutil.rmtree(C.cells_dir(outdir, name), ignore_errors=True)
        cells = outdir / C.CELLS
        if cells.is_dir() and not any(cells.iterdir()):
            cells.rmdir()
    print("run times (wall / CPU): " + ", ".join(f"{n} {w:.1f} / {c:.1f} s" for n, (w, c) in times.items())
          + f"; total {wall:.1f} / {cpu:.1f} s"
          + (" (CPU of this process and its finished child processes, not of dask workers)"
             if args.executor == "dask" else ""), flush=True)
    return 0


def _run_here(name: str, outdir: Path, quick: bool, engine: dict[str, Any]) -> tuple[float, float]:
    """Run one study in this process and print its report; its wall and CPU seconds."""
    mod = importlib.import_module(f"studies.{name}")
    t0, c0 = time.perf_counter(), _cpu()
    ds = mod.run(quick, outdir, C.cells_dir(outdir, name), **engine)
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    print(f"[{name}] wall {wall:.1f} s, CPU {cpu:.1f} s -> {outdir / (name + '.nc')}", flush=True)
    for line in mod.summary(ds):
        print(f"    {line}", flush=True)
    return wall, cpu


_REPORT = re.compile(r"^\[(?P<name>\w+)\] wall (?P<wall>[\d.]+) s, CPU (?P<cpu>[\d.]+) s", re.MULTILINE)


def _child_command(name: str, outdir: Path, args: argparse.Namespace) -> list[str]:
    cmd = [sys.executable, "-m", "studies", name, "--jobs", "1", "--keep-cells", "--outdir", str(outdir.resolve()),
           "--executor", args.executor]
    if args.quick:
        cmd.append("--quick")
    if args.workers is not None:
        cmd += ["--workers", str(args.workers)]
    if args.scheduler is not None:
        cmd += ["--scheduler", args.scheduler]
    return cmd


def _run_in_processes(names: list[str], outdir: Path,
                      args: argparse.Namespace) -> tuple[dict[str, tuple[float, float]], list[str]]:
    """Run the studies ``args.jobs`` at a time, each as ``python -m studies NAME`` in a process of its own, the
    most expensive first; print each one's output when it ends.  Returns the times of those that succeeded and
    the names of those that failed."""
    order = sorted(names, key=lambda n: -COST.get(n, 0))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}

    lock = threading.Lock()  # whole lines: a "started" line never lands inside a finished study's report

    def one(name: str) -> subprocess.CompletedProcess[str]:
        with lock:
            print(f"[{name}] started", flush=True)
        return subprocess.run(_child_command(name, outdir, args), cwd=REPO, env=env, capture_output=True,
                              text=True, check=False)

    times: dict[str, tuple[float, float]] = {}
    failed: list[str] = []
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(one, name): name for name in order}
        for future in as_completed(futures):
            name, done = futures[future], future.result()
            with lock:
                # the child's first line repeats the plan and its last one the totals: its report is in between
                out = "".join(line for line in done.stdout.splitlines(keepends=True)
                              if not line.startswith(("studies:", "run times")))
                sys.stdout.write(out)
                if done.stderr and done.returncode == 0:  # warnings of a study that succeeded
                    sys.stderr.write(done.stderr)
                    sys.stderr.flush()
                report = _REPORT.search(out)
                if done.returncode != 0 or report is None:
                    failed.append(name)
                    sys.stdout.write(f"[{name}] failed (exit status {done.returncode}):\n{done.stderr}")
                else:
                    times[name] = (float(report["wall"]), float(report["cpu"]))
                sys.stdout.flush()
    return {n: times[n] for n in names if n in times}, failed


if __name__ == "__main__":
    sys.exit(main())
