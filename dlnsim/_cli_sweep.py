"""The ``dlnsim sweep`` and ``dlnsim critical`` subcommands (part of the ``dlnsim`` command, see `dlnsim.cli`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .dataset import save
from .grid.executors import EXECUTORS
from .search import CRITERION
from .sweeps import ETA_MODES, SCHEDULES, critical_sweep, sweep

__all__ = ["add_sweep_cli", "count"]


def count(text: str) -> int:
    """An iteration count: ``100000``, ``1e5`` or ``10_000`` (a whole number >= 0)."""
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number such as 20000 or 1e5, got {text!r}") from None
    if not value.is_integer() or value < 0 or value > 2**62:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0 such as 20000 or 1e5, got {text!r}")
    return int(value)


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


def _finish(ds: xr.Dataset, out: str | None) -> None:
    if out is not None:
        save(ds, out)
        print(f"wrote {out}")


def _paper_args(args: argparse.Namespace) -> dict[str, Any]:
    return {"d": args.d, "m": args.m, "r": args.r}


def _cli_sweep(args: argparse.Namespace) -> int:
    _check_out(args)
    ds = sweep(args.dir, N=args.N, eta=args.eta, seed=args.seed, n_iter=args.iters, record=args.record,
               eta_mode=args.eta_mode, schedule=args.schedule, gamma=args.gamma, executor=args.executor,
               workers=args.workers, scheduler=args.scheduler, progress=not args.no_progress, **_paper_args(args))
    status = ds["status"].values.ravel()
    counts = ", ".join(f"{s}: {int(np.sum(status == s))}" for s in sorted(set(status.tolist())))
    print(f"{status.size} cells in {args.dir} ({counts})")
    _finish(ds, args.out)
    return 1 if "error" in set(status.tolist()) else 0


def _cli_critical(args: argparse.Namespace) -> int:
    _check_out(args)
    ds = critical_sweep(args.dir, N=args.N, seed=args.seed, n_iter=args.iters, rtol=args.rtol,
                        loss_tol=args.loss_tol, bracket=tuple(args.bracket), eta_mode=args.eta_mode,
                        executor=args.executor, workers=args.workers, scheduler=args.scheduler,
                        progress=not args.no_progress, **_paper_args(args))
    print(f"{'N':>3} {'seed':>5} {'eta_crit':>12} {'eta_star':>12} {'ratio':>10}  status")
    for n in ds["N"].values:
        for s in ds["seed"].values:
            c = ds.sel(N=n, seed=s)
            print(f"{int(n):>3} {int(s):>5} {float(c.eta_crit):>12.5g} {float(c.eta_star):>12.5g} "
                  f"{float(c.ratio):>10.4g}  {c.search_status.item()}")
    _finish(ds, args.out)
    return 1 if "error" in set(ds["status"].values.ravel().tolist()) else 0


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--N", type=int, nargs="+", required=True, help="depths")
    p.add_argument("--seed", "--seeds", dest="seed", type=int, nargs="+", required=True,
                   help="seeds of the paper setup (data and initialisation)")
    p.add_argument("--iters", type=count, required=True, help="GD steps per run (20000 or 2e4)")
    p.add_argument("--executor", choices=EXECUTORS, default="threads",
                   help="threads in this process (default), processes, a dask cluster, or serial")
    p.add_argument("--workers", type=int, default=None, help="threads or processes (default: one per core)")
    p.add_argument("--scheduler", default=None, help="dask scheduler address, e.g. tcp://127.0.0.1:8786")
    p.add_argument("--out", default=None, help="also write the combined Dataset to this .nc file")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--d", type=int, default=70, help="input/output width of the paper setup (default 70)")
    p.add_argument("--m", type=int, default=None, help="number of samples (default 3d)")
    p.add_argument("--r", type=int, default=2, help="narrowest width d_1 (default 2)")


def add_sweep_cli(subparsers: Any) -> None:
    """Register ``dlnsim sweep`` and ``dlnsim critical``; each sets ``func`` (returns the exit code)."""
    p = subparsers.add_parser(
        "sweep", help="run GD on a grid of depths x stepsizes x seeds (resumable)",
        description="Run GD on the paper setup for every (N, eta, seed); one NetCDF file per cell in --dir; "
                    "rerun the same command to resume.",
        epilog="example: dlnsim sweep --N 2 3 --eta 0.5 1 2 --eta-mode bound --seed 0 1 --iters 2e4 --dir sw/")
    p.add_argument("--eta", type=float, nargs="+", required=True, help="stepsizes (see --eta-mode)")
    p.add_argument("--eta-mode", choices=ETA_MODES, default="absolute",
                   help="eta as stepsizes or as multiples of the bound eta*(N, seed) of (5.1)")
    p.add_argument("--record", type=_record_arg, default="log",
                   help="record rule: log, log:N, all, every:N, or N (every N-th iteration)")
    p.add_argument("--schedule", choices=SCHEDULES, default="constant")
    p.add_argument("--gamma", type=float, nargs="+", default=None, help="decay rates (power_decay)")
    p.add_argument("--dir", required=True, help="sweep directory (created; reused to resume)")
    _add_common(p)
    p.set_defaults(func=_cli_sweep)

    c = subparsers.add_parser(
        "critical", help="find the critical constant stepsize per (N, seed) by bisection",
        description=f"Bisect on the constant stepsize for every (N, seed). {CRITERION}.",
        epilog="example: dlnsim critical --N 2 3 --seed 0 1 --iters 5000")
    c.add_argument("--rtol", type=float, default=0.01, help="relative precision of the bracket (default 0.01)")
    c.add_argument("--loss-tol", type=float, default=1e-3, help="final/initial excess loss that counts as converged")
    c.add_argument("--bracket", type=float, nargs=2, default=[1.0, 4.0], metavar=("LO", "HI"),
                   help="starting bracket (multiples of eta* with --eta-mode bound, the default)")
    c.add_argument("--eta-mode", choices=ETA_MODES, default="bound")
    c.add_argument("--dir", default=None, help="directory for the cells (default: temporary)")
    _add_common(c)
    c.set_defaults(func=_cli_critical)
