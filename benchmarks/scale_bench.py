"""Grid scale: the per-cell costs of storing, resuming and combining a grid of many short runs, and its memory.

A grid of ``cells`` tiny cells (default 2000; ``--full``: 10^4) on the grid engine `dlnsim.run_grid` with the
default threads executor, in a fresh subprocess (so that its peak memory is its own):

* ``gd`` cell (default): a 2-step `dlnsim.run_gd` (records at every step, default diagnostics) on a d = 4
  problem with widths 4-2-4 (data and start drawn from the cell's seed);
* ``trivial`` cell: a Dataset with one variable of 3 values (the engine's own cost, nothing else).

Phases, each timed per cell with the peak resident memory (VmHWM, reset before each phase with
/proc/self/clear_refs where the kernel allows it) and the resident memory after it:

1. ``compute+write``: run_grid in an empty directory (each cell: compute, write an atomic NetCDF file with
   fsync, log its SHA-256), then combine;
2. ``resume``: the same call again: every cell is found finished (file read and hashed against the log) and
   nothing is computed, then combine;
3. ``combine``: `dlnsim.open_grid` on the directory (read every cell, check, combine into one Dataset).

Run: ``python -m benchmarks.scale_bench [--cells N | --full] [--cell gd|trivial]``; `run()` returns the rows.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

FULL = 10_000


def gd_cell(a: int, b: int) -> xr.Dataset:
    """A 2-step GD run on a d = 4 problem (widths 4-2-4) drawn from the seed 1000 a + b."""
    import dlnsim

    rng = np.random.default_rng(1000 * a + b)
    X = rng.normal(size=(4, 8))
    Y = rng.normal(size=(4, 4)) @ X
    W0 = dlnsim.balanced_init([4, 2, 4], rng, scale=0.5)
    return dlnsim.run_gd(dlnsim.Problem(X, Y), W0, 1e-3, 2, record="all")


def trivial_cell(a: int, b: int) -> xr.Dataset:
    """One variable of 3 values (the engine's cost alone)."""
    return xr.Dataset({"x": ("i", np.array([a, b, a + b], dtype=float))}, attrs={"status": "done"})


CHILD = """
import json, os, sys, time
from pathlib import Path

def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")

def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False

import dlnsim
from benchmarks import scale_bench as B
cells, kind, directory = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
cell = B.gd_cell if kind == "gd" else B.trivial_cell
side = int(round(cells ** 0.5))
axes = {"a": list(range(side)), "b": list(range(cells // side))}
n = len(axes["a"]) * len(axes["b"])
cell(a=0, b=0)  # load the kernels (from the cache) before timing
out = {"cells": n, "rss_start_mb": status("VmRSS")}
for phase in ("compute+write", "resume", "combine"):
    reset = reset_peak()
    before = status("VmRSS")
    t0 = time.perf_counter()
    if phase == "combine":
        ds = dlnsim.open_grid(directory)
    else:
        ds = dlnsim.run_grid(directory, cell, axes, progress=False)
    t = time.perf_counter() - t0
    out[phase] = {"seconds": t, "ms_per_cell": 1e3 * t / n, "rss_before_mb": before, "peak_rss_mb": status("VmHWM"),
                  "rss_after_mb": status("VmRSS"), "peak_reset": reset, "dataset_mb": ds.nbytes / 2**20,
                  "done": int(ds.attrs.get("cells_done", -1))}
    del ds
size = sum(f.stat().st_size for f in directory.iterdir())
out["directory_mb"] = size / 2**20
out["files"] = len(list(directory.iterdir()))
print(json.dumps(out))
"""


def measure(cells: int, kind: str = "gd") -> dict[str, Any]:
    """Run the three phases in a fresh subprocess (in a temporary directory) and return its report."""
    import tempfile

    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with tempfile.TemporaryDirectory(prefix="dlnsim-scale-") as tmp:
        out = subprocess.run([sys.executable, "-c", CHILD, str(cells), kind, str(Path(tmp) / "grid")], env=env,
                             capture_output=True, text=True, cwd=root)
        if out.returncode != 0:
            raise RuntimeError(f"scale benchmark subprocess failed:\n{out.stderr[-3000:]}")
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def run(quick: bool = False, cells: int | None = None, kind: str = "gd") -> list[dict[str, Any]]:
    cells = cells if cells is not None else (500 if quick else 2000)
    rep = measure(cells, kind)
    rows: list[dict[str, Any]] = []
    for phase in ("compute+write", "resume", "combine"):
        p = rep[phase]
        rows.append({"case": f"{rep['cells']} {kind} cells: {phase}", "ms_per_cell": p["ms_per_cell"],
                     "seconds": p["seconds"], "peak_rss_mb": p["peak_rss_mb"],
                     "peak_minus_before_mb": p["peak_rss_mb"] - p["rss_before_mb"] if p["peak_reset"] else math.nan,
                     "rss_after_mb": p["rss_after_mb"], "combined_dataset_mb": p["dataset_mb"],
                     "cells_done": p["done"]})
    rows.append({"case": f"{rep['cells']} {kind} cells: directory", "directory_mb": rep["directory_mb"],
                 "files": rep["files"], "rss_start_mb": rep["rss_start_mb"],
                 "kb_per_cell": 1024 * rep["directory_mb"] / rep["cells"]})
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.scale_bench", description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=None, help="number of cells (default 2000)")
    ap.add_argument("--full", action="store_true", help=f"{FULL} cells")
    ap.add_argument("--quick", action="store_true", help="500 cells")
    ap.add_argument("--cell", choices=("gd", "trivial"), default="gd")
    args = ap.parse_args(argv)
    cells = FULL if args.full else args.cells
    for r in run(args.quick, cells, args.cell):
        print(r)


if __name__ == "__main__":
    main()
