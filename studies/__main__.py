"""``python -m studies [--quick] [--outdir DIR] [--workers N] [NAME ...]``: run the studies, print their times."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

from . import STUDIES
from . import _common as C


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m studies",
        description="Regenerate the studies' NetCDF files and figures (all studies when no NAME is given). "
                    f"Full size writes to {C.DATA}, --quick to {C.QUICK} (never the archive).")
    ap.add_argument("names", nargs="*", metavar="NAME", help=f"studies to run: {', '.join(STUDIES)}")
    ap.add_argument("--quick", action="store_true", help="small versions (a few minutes in total)")
    ap.add_argument("--outdir", type=Path, default=None,
                    help="output directory (default: data/ for full size, data/quick/ with --quick)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes for independent runs (default 2)")
    args = ap.parse_args(argv)
    unknown = [n for n in args.names if n not in STUDIES]
    if unknown:
        ap.error(f"unknown study name(s) {', '.join(unknown)}; choose from {', '.join(STUDIES)}")
    if args.workers < 1:
        ap.error(f"--workers must be >= 1, got {args.workers}")
    names = args.names or list(STUDIES)
    outdir = args.outdir if args.outdir is not None else C.default_outdir(args.quick)
    C.set_workers(args.workers)
    print(f"studies: {', '.join(names)} ({'quick' if args.quick else 'full size'}) -> {outdir}", flush=True)
    t_all = time.perf_counter()
    times = {}
    try:
        for name in names:
            mod = importlib.import_module(f"studies.{name}")
            t0 = time.perf_counter()
            ds = mod.run(quick=args.quick, outdir=outdir)
            times[name] = time.perf_counter() - t0
            print(f"[{name}] {times[name]:.1f} s -> {Path(outdir) / (name + '.nc')}", flush=True)
            for line in mod.summary(ds):
                print(f"    {line}", flush=True)
    finally:
        C.shutdown_pool()
    total = time.perf_counter() - t_all
    print("run times: " + ", ".join(f"{n} {t:.1f} s" for n, t in times.items()) + f"; total {total:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
