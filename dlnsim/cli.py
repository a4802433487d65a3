"""The ``dlnsim`` command.

    dlnsim bound --N 3 --seed 0                     eta* and its constants for each choice of delta
    dlnsim run --N 3 --seed 0 --eta bound --iters 100000 --out run.nc
    dlnsim run --data xy.npz --widths 5 2 3 --init-seed 1 --eta 1e-3 --iters 1000 --out run.nc
    dlnsim run --N 2 --eta 1e-3 --iters 5000 --flow --out cmp.nc      GD next to the gradient flow(s)
    dlnsim flow --N 3 --T 20 --kind factor --out flow.nc            integrate a flow alone
    dlnsim sweep --N 2 3 --eta 0.5 1 2 --eta-mode bound --seeds 0 1 --iters 20000 --dir sw/
    dlnsim critical --N 2 3 --seeds 0 1 --iters 20000                 critical stepsize vs eta*
    dlnsim info run.nc                              summary of a result file

Errors in the arguments end the command with exit status 2 and a message naming the option; nothing is
written in that case.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from ._cli_sweep import add_sweep_cli
from ._validate import nonneg_int, positive_float
from .compare import compare_flow
from .dataset import open as open_results
from .dataset import save
from .flow import KINDS, run_flow
from .init import balanced_init
from .problem import Problem, Setup, paper_setup
from .schedules import Constant, Power, PowerDecay, Schedule
from .simulate import run_gd
from .theory import stepsize_bound


def _load_data(path: str) -> Problem:
    """X and Y (samples as columns) from a .npz (arrays X, Y) or a NetCDF file (variables X, Y)."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"--data: no such file {path!r}")
    try:
        if p.suffix == ".npz":
            with np.load(p) as f:
                X, Y = f["X"], f["Y"]
        elif p.suffix == ".nc":
            import xarray as xr

            with xr.open_dataset(p) as f:
                X, Y = f["X"].values, f["Y"].values
        else:
            raise ValueError(f"--data must be a .npz or .nc file, got {path!r}")
    except KeyError as exc:
        raise ValueError(f"--data: {path!r} has no array {exc} (needs X and Y, samples as columns)") from None
    except (OSError, ValueError) as exc:
        if "--data" in str(exc):
            raise
        raise ValueError(f"--data: cannot read {path!r}: {exc}") from None
    return Problem(X, Y, meta={"data_file": str(p)})


def _setup(args: argparse.Namespace) -> Setup:
    if args.data:
        problem = _load_data(args.data)
        if not args.widths:
            raise ValueError("--widths d_0 ... d_N is required with --data")
        widths = tuple(args.widths)
        if widths[0] != problem.d_x or widths[-1] != problem.d_y:
            raise ValueError(
                f"--widths must start with d_x = {problem.d_x} and end with d_y = {problem.d_y}, got {widths}"
            )
        W0 = balanced_init(widths, np.random.default_rng(args.init_seed), scale=args.init_scale)
        problem.meta.update({"init": "balanced", "init_seed": args.init_seed, "init_scale": args.init_scale})
        return Setup(problem, widths, W0)
    return paper_setup(args.N, args.seed, d=args.d, m=args.m, r=args.r)


def _schedule(args: argparse.Namespace, setup: Setup) -> tuple[Schedule | float, float | None]:
    """The stepsize rule from --eta (number, 'bound', '<c>xbound') and --gamma/--a2."""
    text = args.eta.strip().lower()
    eta_star = None
    if text.endswith("bound"):
        factor_text = text[: -len("bound")].rstrip("x") or "1"
        try:
            factor = float(factor_text)
        except ValueError:
            raise ValueError(f"--eta: expected a number, 'bound' or '<c>xbound', got {args.eta!r}") from None
        eta_star = stepsize_bound(setup.problem, setup.W0).eta
        a1 = factor * eta_star
    else:
        try:
            a1 = float(text)
        except ValueError:
            raise ValueError(f"--eta: expected a number, 'bound' or '<c>xbound', got {args.eta!r}") from None
    if args.gamma is None:
        return Constant(a1), eta_star
    if args.a2 is None:
        return Power(a1, args.gamma), eta_star
    return PowerDecay(a1, args.a2, args.gamma), eta_star


def _add_problem_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--N", type=int, default=3, help="depth (number of layers), default 3")
    p.add_argument("--seed", type=int, default=0, help="seed of the paper setup, default 0")
    p.add_argument("--d", type=int, default=70, help="input/output dimension of the paper setup (70)")
    p.add_argument("--m", type=int, default=None, help="number of samples (default 3d)")
    p.add_argument("--r", type=int, default=2, help="width d_1 of the narrow first layer (2)")
    p.add_argument("--data", help="X, Y from a .npz or .nc file instead of the paper setup")
    p.add_argument("--widths", type=int, nargs="+", help="widths d_0 ... d_N (with --data)")
    p.add_argument("--init-seed", type=int, default=0, help="seed of the balanced start (with --data)")
    p.add_argument("--init-scale", type=float, default=1.0, help="singular values of each factor (with --data)")


def _cmd_bound(args: argparse.Namespace) -> int:
    setup = _setup(args)
    N = len(setup.W0)
    print(f"N = {N}, widths = {list(setup.widths)}, L(W0) = {stepsize_bound(setup.problem, setup.W0).L0:.6g}")
    print(f"{'delta rule':<12} {'eta':>11} {'M':>10} {'delta':>11} {'K':>10} {'B':>11} {'sigma':>9}  note")
    for rule in ("section5", "remark2.5", "optimal"):
        b = stepsize_bound(setup.problem, setup.W0, delta=rule)
        note = {"section5": "(5.1), K = M^(2/N) + N^2 delta",
                "remark2.5": f"closed form {b.eta_closed_form:.4g}",
                "optimal": "(2.8) maximised over delta"}[rule]
        print(f"{rule:<12} {b.eta:11.4e} {b.M:10.4g} {b.delta:11.4g} {b.K:10.4g} {b.B:11.5g} {b.sigma:9.3g}  {note}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix != ".nc":
        raise ValueError(f"--out must end in .nc, got {args.out!r}")
    if not out.parent.exists():
        raise ValueError(f"--out: directory {str(out.parent)!r} does not exist")
    if out.exists() and not args.overwrite:
        raise ValueError(f"--out: {args.out!r} exists (pass --overwrite to replace it)")
    setup = _setup(args)
    schedule, _ = _schedule(args, setup)
    t0 = time.perf_counter()
    if args.flow:
        ds = compare_flow(setup.problem, setup.W0, schedule, args.iters, args.record, **compare_kwargs(args),
                          progress=not args.quiet, keep_weights=args.keep_weights)
    else:
        ds = run_gd(setup.problem, setup.W0, schedule, args.iters, record=args.record,
                    progress=not args.quiet, keep_weights=args.keep_weights)
    elapsed = time.perf_counter() - t0
    save(ds, out)
    a = ds.attrs
    stop = f" at k = {a['stop_iteration']}" if a["status"] != "max_iter" else ""
    eta0 = float(schedule.values(1)[0]) if isinstance(schedule, Schedule) else float(schedule)
    bound = f" ({eta0 / a['bound_eta']:.3g} x eta*)" if "bound_eta" in a else ""
    flow = ""
    if "flow_distance" in ds:
        last = ds["flow_distance"].dropna("k")
        if last.size:
            flow = f", |GD - flow| at k={int(last.k[-1])}: {float(last[-1]):.3g}"
    print(f"{a['status']}{stop}: N={a['N']} eta_0={eta0:.4g}{bound} iters={args.iters} "
          f"loss {a['initial_loss']:.4g} -> {a['final_loss']:.4g}{flow}, {elapsed:.2f} s -> {out}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    ds = open_results(args.path)
    a = ds.attrs
    print(f"{args.path}: {a.get('title', '')}")
    for key in ("status", "status_reason", "stop_iteration", "N", "widths", "n_iter", "schedule",
                "schedule_eta",
                "record_rule", "initial_loss", "final_loss", "bound_eta", "bound_delta", "bound_K",
                "dlnsim_version", "created"):
        if key in a:
            print(f"  {key:<16} {a[key]}")
    print(f"  variables        {', '.join(sorted(str(v) for v in ds.data_vars))}")
    return 0


def add_flow_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``dlnsim flow`` subcommand (integrate a flow on the paper's Section-5 setup) to ``subparsers``
    (from ``argparse.ArgumentParser.add_subparsers``).  The handler is stored as ``func``."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "flow",
        help="integrate a gradient flow on the Section-5 setup and write a NetCDF file",
        description="Integrate the factor (2.2), end-to-end (2.5) or modified gradient flow from the "
        "balanced start of the paper's Section-5 setup and record it at n-times times in [0, T].",
    )
    p.add_argument("--N", type=int, required=True, help="depth N")
    p.add_argument("--seed", type=int, default=0, help="seed of the setup (default 0)")
    p.add_argument("--d", type=int, default=70, help="input/output dimension d (default 70)")
    p.add_argument("--T", type=float, required=True, help="final time")
    p.add_argument("--n-times", type=int, default=200, help="number of recorded times (default 200)")
    p.add_argument("--spacing", choices=("linear", "log"), default="linear",
                   help="times linear in [0, T] or log-spaced in [T*1e-6, T] plus 0 (default linear)")
    p.add_argument("--kind", choices=sorted(KINDS), default="factor", help="which flow (default factor)")
    p.add_argument("--eta", type=float, default=None, help="GD stepsize of the modified flow")
    p.add_argument("--rtol", type=float, default=1e-10, help="relative tolerance (default 1e-10)")
    p.add_argument("--atol", type=float, default=1e-12, help="absolute tolerance (default 1e-12)")
    p.add_argument("--max-steps", type=int, default=1_000_000, help="step budget (default 1e6)")
    p.add_argument("--no-diagnostics", action="store_true",
                   help="record only the loss (no balancedness / singular values)")
    p.add_argument("--out", required=True, help="output NetCDF file (.nc)")
    p.set_defaults(func=flow_cli)
    return p


def add_compare_options(parser: argparse.ArgumentParser) -> None:
    """Options of ``dlnsim run`` for the GD-vs-flow comparison (see `compare_kwargs`)."""
    g = parser.add_argument_group("gradient flow comparison")
    g.add_argument("--flow", action="store_true", help="put the gradient flow(s) next to GD at t_k")
    g.add_argument("--flow-kinds", default=None,
                   help="comma-separated flows: factor, modified, end_to_end (default factor[,modified])")
    g.add_argument("--flow-rtol", type=float, default=1e-10, help="flow relative tolerance (default 1e-10)")
    g.add_argument("--flow-atol", type=float, default=1e-12, help="flow absolute tolerance (default 1e-12)")
    g.add_argument("--sharpness", action="store_true", help="also record the top Hessian eigenvalue")


def compare_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of `compare_flow` from the options added by `add_compare_options`."""
    kinds = None
    if getattr(args, "flow_kinds", None):
        kinds = tuple(s.strip() for s in args.flow_kinds.split(",") if s.strip())
    return {"rtol": args.flow_rtol, "atol": args.flow_atol, "kinds": kinds, "sharpness": bool(args.sharpness)}


def flow_cli(args: argparse.Namespace) -> int:
    """Handler of ``dlnsim flow``."""
    setup = paper_setup(args.N, args.seed, d=args.d)
    T = positive_float(args.T, "T")
    n_t = nonneg_int(args.n_times, "n-times", minimum=2)
    ds = run_flow(setup.problem, setup.W0, T, rtol=args.rtol, atol=args.atol, kind=args.kind, eta=args.eta,
                  max_steps=args.max_steps, record=f"{args.spacing}:{n_t}", diagnostics=not args.no_diagnostics)
    path = save(ds, args.out)
    print(f"{args.kind} flow, N={args.N}, seed={args.seed}: status {ds.attrs['status']}, "
          f"{ds.attrs['n_steps']} steps ({ds.attrs['n_rejected']} rejected), "
          f"loss {float(ds['loss'][0]):.6g} -> {float(ds['loss'][-1]):.6g}; wrote {path}")
    return 0 if ds.attrs["status"] == "done" else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dlnsim", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"dlnsim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("bound", help="print eta* and its constants (Theorem 2.4 / (5.1))")
    _add_problem_args(p)
    p.set_defaults(func=_cmd_bound)

    p = sub.add_parser("run", help="run gradient descent and write a NetCDF file")
    _add_problem_args(p)
    p.add_argument("--eta", default="bound", help="stepsize: a number, 'bound' or '<c>xbound' (default bound)")
    p.add_argument("--gamma", type=float, default=None, help="decay rate: eta_k = eta (k+1)^-gamma")
    p.add_argument("--a2", type=float, default=None,
                   help="with --gamma: eta_k = max(eta (k+1)^-gamma, a2/(k+1)) (reconstructed (5.2))")
    p.add_argument("--iters", type=int, default=10_000, help="number of GD steps (10000)")
    p.add_argument("--record", default="log", help="'log', 'log:N', 'all', 'every:N' or N (default log)")
    p.add_argument("--out", required=True, help="output file (.nc)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--keep-weights", action="store_true", help="store the final factors")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_compare_options(p)
    p.set_defaults(func=_cmd_run)

    add_flow_cli(sub)
    add_sweep_cli(sub)

    p = sub.add_parser("info", help="summarise a result file")
    p.add_argument("path")
    p.set_defaults(func=_cmd_info)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ValueError as exc:
        print(f"dlnsim {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dlnsim {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
