"""``python -m studies [--quick] [--outdir DIR] [--executor E] [--workers N] [--scheduler ADDRESS] [NAME ...]``.

Runs the studies (all when no NAME is given) and prints the wall and CPU time of each and of all.  The cells
of a study live in ``<outdir>/cells/<name>/`` while it runs, so an interrupted run resumes where it stopped;
once every study asked for has written its file the cells are removed (``--keep-cells`` keeps them).
"""

from __future__ import annotations

import argparse
import importlib
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from . import STUDIES
from . import _common as C

EXECUTORS = ("threads", "processes", "dask", "serial")


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
    times: dict[str, tuple[float, float]] = {}
    for name in names:
        mod = importlib.import_module(f"studies.{name}")
        t0, c0 = time.perf_counter(), _cpu()
        ds = mod.run(args.quick, outdir, C.cells_dir(outdir, name), **engine)
        times[name] = (time.perf_counter() - t0, _cpu() - c0)
        print(f"[{name}] wall {times[name][0]:.1f} s, CPU {times[name][1]:.1f} s -> {outdir / (name + '.nc')}",
              flush=True)
        for line in mod.summary(ds):
            print(f"    {line}", flush=True)
    wall, cpu = time.perf_counter() - wall0, _cpu() - cpu0
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


if __name__ == "__main__":
    sys.exit(main())
