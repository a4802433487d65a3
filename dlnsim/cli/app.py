"""The ``dlnsim`` command: gradient descent and gradient flows on deep linear networks from the shell.

Subcommands: ``bound``, ``run``, ``flow``, ``sweep``, ``critical``, ``info`` and ``plot`` (see ``dlnsim --help``
and `EXAMPLES`).  An expected failure ends the command with one line on stderr, ``dlnsim <subcommand>: error:
...`` naming the option: exit status 2 for bad arguments, input files or output paths (checked before any
computation, so nothing is written), 1 for a computation that failed (a failed sweep cell, a flow that stopped
early), 130 on Ctrl-C.  A closed stdout (``dlnsim info run.nc | head -1``) ends it quietly with status 141.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from dlnsim import __version__
from dlnsim.checks import positive_float
from dlnsim.cli.plot import add_plot_cli
from dlnsim.cli.sweep import (
    DATA_HELP,
    RECORD_HELP,
    add_method_options,
    add_sweep_cli,
    check_out,
    count,
    load_data,
    method_of,
    record_rule,
)
from dlnsim.init import balanced_init
from dlnsim.io.dataset import open as open_results
from dlnsim.io.dataset import outcomes, save
from dlnsim.options import Record, Stop, Tolerances
from dlnsim.problem import Setup, paper_setup
from dlnsim.runs.compare import compare_flow
from dlnsim.runs.flow import KINDS, run_flow
from dlnsim.runs.gd import run_gd
from dlnsim.schedules import Constant, Power, PowerDecay, Schedule
from dlnsim.theory.bounds import stepsize_bound

__all__ = ["add_compare_options", "add_flow_cli", "build_parser", "compare_kwargs", "flow_cli", "main"]

DESCRIPTION = """\
Gradient descent (GD) and gradient flows on deep linear networks W_N ... W_1, next to the stepsize bound
eta* of the convergence theory (docs/theory.md).  By default the problem is the paper's Section-5 setup
(d = 70, m = 3d samples, widths d, r, d, ..., d); --data runs on your own X and Y.  Results are NetCDF
files (xarray); "dlnsim info FILE" summarises one, "dlnsim plot FILE" draws it."""

EXAMPLES = """\
examples:
  dlnsim bound --N 3 --seed 0                     # eta* and its constants for each choice of delta
  dlnsim run --N 3 --seed 0 --eta bound --iters 1e5 --out run.nc
  dlnsim run --N 3 --eta 10xbound --iters 1e4 --record 100 --out run10.nc    # every 100th iteration
  dlnsim run --data xy.npz --widths 5 2 3 --init-seed 1 --eta 1e-3 --iters 1000 --out mine.nc
  dlnsim run --N 2 --eta 1e-3 --iters 5000 --flow --out cmp.nc               # GD next to the gradient flow
  dlnsim flow --N 3 --T 20 --kind factor --out flow.nc                       # a flow alone
  dlnsim sweep --N 2 3 --eta-factor 0.5 1 2 --seed 0 1 --iters 2e4 --dir sw/
  dlnsim critical --N 2 3 --seed 0 1 --iters 2e4 --out crit.nc               # critical stepsize vs eta*
  dlnsim info run.nc                              # summary of a result file (or of sw/)
  dlnsim plot run.nc                              # its standard panels -> run.png

exit status: 0 ok, 1 a computation failed, 2 bad arguments, input or output paths (one line on stderr,
nothing written), 130 interrupted, 141 stdout closed by its reader (e.g. | head)."""


#: seconds a file given on the command line may take to open (checked in a subprocess first)
OPEN_TIMEOUT = 60.0


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line, ``dlnsim run: error: ... (see dlnsim run --help)``, status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _raw(epilog: str) -> dict[str, Any]:
    return {"epilog": epilog, "formatter_class": argparse.RawDescriptionHelpFormatter}


# ------------------------------------------------------------------------------------------------ arguments


def eta_rule(text: str) -> tuple[float, bool]:
    """--eta: a positive number, ``bound`` or ``<c>xbound`` (c a positive number) -> (value, relative)."""
    t = text.strip().lower()
    match = re.fullmatch(r"(?:(.*)x)?bound", t)
    try:
        value = (float(match.group(1)) if match.group(1) is not None else 1.0) if match else float(t)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(
            f"expected a positive number, 'bound' or '<c>xbound' with c a positive number, got {text!r}")
    return value, match is not None


# the defaults of the options of each kind of problem (None in argparse, to tell which options were given)
_PAPER: dict[str, Any] = {"N": 3, "seed": 0, "d": 70, "m": None, "r": 2}
_OWN: dict[str, Any] = {"widths": None, "init_seed": 0, "init_scale": 1.0}


def _value(args: argparse.Namespace, name: str, defaults: dict[str, Any]) -> Any:
    given = getattr(args, name)
    return defaults[name] if given is None else given


def _check_problem_args(args: argparse.Namespace) -> None:
    """Options of the other kind of problem are refused rather than ignored."""
    if args.data:
        given = [k for k in _PAPER if getattr(args, k) is not None]
        if given:
            hint = " (the seed of your start is --init-seed)" if "seed" in given else ""
            raise ValueError(f"{', '.join('--' + k for k in given)}: options of the paper setup, not used with "
                             f"--data{hint}")
        if not args.widths:
            raise ValueError("--widths d_0 ... d_N is required with --data")
    else:
        given = [k for k in _OWN if getattr(args, k) is not None]
        if given:
            raise ValueError(f"{', '.join('--' + k.replace('_', '-') for k in given)}: only used with --data")


def _setup(args: argparse.Namespace) -> Setup:
    _check_problem_args(args)
    if args.data:
        problem = load_data(args.data)
        widths = tuple(args.widths)
        if widths[0] != problem.d_x or widths[-1] != problem.d_y:
            raise ValueError(
                f"--widths must start with d_x = {problem.d_x} and end with d_y = {problem.d_y}, got {widths}"
            )
        seed, scale = _value(args, "init_seed", _OWN), _value(args, "init_scale", _OWN)
        W0 = balanced_init(widths, np.random.default_rng(seed), scale=scale)
        problem = problem.with_meta(init="balanced", init_seed=seed, init_scale=scale)
        return Setup(problem, widths, W0)
    paper = {k: _value(args, k, _PAPER) for k in _PAPER}
    return paper_setup(paper["N"], paper["seed"], d=paper["d"], m=paper["m"], r=paper["r"])


def _schedule(args: argparse.Namespace, setup: Setup) -> Schedule:
    """The stepsize rule from --eta (parsed by `eta_rule`) and --gamma/--a2."""
    value, relative = args.eta
    a1 = value * stepsize_bound(setup.problem, setup.W0).eta if relative else value
    if args.gamma is None:
        return Constant(a1)
    if args.a2 is None:
        return Power(a1, args.gamma)
    return PowerDecay(a1, args.a2, args.gamma)


def _add_problem_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("the paper's Section-5 setup (the default problem)")
    g.add_argument("--N", type=int, default=None, help="depth (number of layers), default 3")
    g.add_argument("--seed", type=int, default=None, help="seed of the data and the start, default 0")
    g.add_argument("--d", type=int, default=None, help="input/output dimension (default 70)")
    g.add_argument("--m", type=int, default=None, help="number of samples (default 3d)")
    g.add_argument("--r", type=int, default=None, help="width d_1 of the narrow first layer (default 2)")
    g = p.add_argument_group("your own data")
    g.add_argument("--data", metavar="FILE", help=DATA_HELP)
    g.add_argument("--widths", type=int, nargs="+", help="widths d_0 = d_x, d_1, ..., d_N = d_y")
    g.add_argument("--init-seed", type=int, default=None, help="seed of the balanced start (default 0)")
    g.add_argument("--init-scale", type=float, default=None,
                   help="singular values of each factor of the start (default 1)")


# ----------------------------------------------------------------------------------------------- subcommands


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
    out = check_out(args.out, overwrite=args.overwrite)
    if args.a2 is not None and args.gamma is None:
        raise ValueError("--a2 needs --gamma (eta_k = max(eta (k+1)^-gamma, a2/(k+1)))")
    flow_only = [o for o, v in (("--flow-kinds", args.flow_kinds), ("--flow-rtol", args.flow_rtol),
                                ("--flow-atol", args.flow_atol), ("--sharpness", args.sharpness or None))
                 if v is not None]
    if flow_only and not args.flow:
        raise ValueError(f"{', '.join(flow_only)}: only used with --flow")
    setup = _setup(args)
    schedule = _schedule(args, setup)
    record = Record(args.record, final_weights=args.keep_weights)
    stop = Stop(early=args.stop_early)
    method, _ = method_of(args)
    t0 = time.perf_counter()
    if args.flow:
        ds = compare_flow(setup.problem, setup.W0, schedule, args.iters, **compare_kwargs(args), method=method,
                          record=record, stop=stop, progress=not args.quiet)
    else:
        ds = run_gd(setup.problem, setup.W0, schedule, args.iters, method=method, record=record, stop=stop,
                    progress=not args.quiet)
    elapsed = time.perf_counter() - t0
    save(ds, out)
    a = {**ds.attrs, **outcomes(ds)}
    where = ""
    if a["status"] == "converged":
        firsts = [int(a[key]) for key in ("gtol_iteration", "ltol_iteration") if int(a.get(key, -1)) >= 0]
        where = f" at k = {min(firsts)}" if firsts else ""
    elif a["status"] != "max_iter":
        where = f" at k = {a['stop_iteration']}"
    eta0 = float(schedule.values(1)[0])
    bound = f" ({eta0 / a['bound_eta']:.3g} x eta*)" if "bound_eta" in a else ""
    flow = ""
    if "flow_distance" in ds:
        last = ds["flow_distance"].dropna("k")
        if last.size:
            flow = f", |GD - flow| at k={int(last.k[-1])}: {float(last[-1]):.3g}"
    print(f"{a['status']}{where}: N={a['N']} eta_0={eta0:.4g}{bound} iters={args.iters} "
          f"loss {a['initial_loss']:.4g} -> {a['final_loss']:.4g}{flow}, {elapsed:.2f} s -> {out}")
    return 0


def _shown(value: Any) -> str:
    """A value as text safe to print on a terminal: control characters (escape sequences that could move the
    cursor, retitle the window or hide text) are shown escaped, as Python writes them."""
    text = str(value)
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _info_grid(path: Path) -> None:
    from dlnsim.grid import open_grid

    if not (path / "grid.json").is_file():
        raise ValueError(f"FILE: {str(path)!r} is a directory without grid.json (not a sweep or grid directory)")
    try:
        ds = open_grid(path)
    except ValueError as exc:
        raise ValueError(f"FILE: {str(exc).removeprefix('directory: ')}") from None
    a = ds.attrs
    dims = [d.strip() for d in str(a.get("grid_dims", "")).split(",") if d.strip()]
    status = ds["status"].values.ravel().tolist() if "status" in ds else []
    total = int(a.get("cells_total", len(status)))
    done, failed = int(a.get("cells_done", 0)), int(a.get("cells_failed", 0))
    print(f"{_shown(path)}: {_shown(a.get('title', 'dlnsim grid'))}")
    print(f"  {'dims':<16} {', '.join(f'{d}={ds.sizes[d]}' for d in dims)}")
    for d in dims:
        values = ds[d].values.tolist()
        print(f"  {d:<16} {_shown(' '.join(map(str, values[:12])))}{' ...' if len(values) > 12 else ''}")
    print(f"  {'cells':<16} {total} ({done - failed} done, {failed} failed, {total - done} not run)")
    print(f"  {'status':<16} {_shown(', '.join(f'{s}: {status.count(s)}' for s in sorted(set(map(str, status)))))}")
    for key in ("grid_cell", "created"):
        if key in a:
            print(f"  {key:<16} {_shown(a[key])}")
    print(f"  {'variables':<16} {_shown(', '.join(sorted(str(v) for v in ds.data_vars)))}")


def _cmd_info(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if path.is_dir():
        _info_grid(path)
        return 0
    try:
        ds = open_results(path, timeout=OPEN_TIMEOUT)  # a damaged file cannot hang the command
    except ValueError as exc:
        raise ValueError(f"FILE: {str(exc).removeprefix('path: ')}") from None
    a = {**ds.attrs, **outcomes(ds)}
    print(f"{_shown(args.path)}: {_shown(a.get('title', ''))}")
    for key in ("status", "status_reason", "stop_iteration", "gtol_iteration", "ltol_iteration", "N", "widths",
                "n_iter", "method", "schedule",
                "schedule_eta", "record_rule", "initial_loss", "final_loss", "bound_eta", "bound_delta", "bound_K",
                "dlnsim_version", "created"):
        if key in a:
            print(f"  {key:<16} {_shown(a[key])}")
    print(f"  variables        {_shown(', '.join(sorted(str(v) for v in ds.data_vars if ds[v].ndim)))}")
    return 0


def add_flow_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``dlnsim flow`` subcommand (integrate a flow on the paper's Section-5 setup) to ``subparsers``
    (from ``argparse.ArgumentParser.add_subparsers``).  The handler is stored as ``func``."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "flow",
        help="integrate a gradient flow on the Section-5 setup and write a NetCDF file",
        description="Integrate the factor (2.2), end-to-end (2.5) or modified gradient flow from the "
        "balanced start of the paper's Section-5 setup (or of your --data) and record it at n-times times in "
        "[0, T].  Exit status "
        "1 when the integration stopped before T (the record up to there is written).",
        **_raw("examples:\n  dlnsim flow --N 3 --T 20 --out flow.nc\n"
               "  dlnsim flow --N 3 --T 20 --kind modified --eta 1e-3 --spacing log --out modified.nc"),
    )
    _add_problem_args(p)
    p.add_argument("--T", type=float, required=True, help="final time")
    p.add_argument("--n-times", type=count, default=200, help="number of recorded times (default 200)")
    p.add_argument("--spacing", choices=("linear", "log"), default="linear",
                   help="times linear in [0, T] or log-spaced in [T*1e-6, T] plus 0 (default linear)")
    p.add_argument("--kind", choices=sorted(KINDS), default="factor", help="which flow (default factor)")
    p.add_argument("--eta", type=float, default=None, help="GD stepsize of the modified flow (--kind modified)")
    p.add_argument("--rtol", type=float, default=1e-10, help="relative tolerance (default 1e-10)")
    p.add_argument("--atol", type=float, default=1e-12, help="absolute tolerance (default 1e-12)")
    p.add_argument("--max-steps", type=count, default=1_000_000, help="step budget (default 1e6)")
    p.add_argument("--no-diagnostics", action="store_true",
                   help="record only the loss (no balancedness / singular values)")
    p.add_argument("--out", required=True, help="output NetCDF file (.nc)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=flow_cli)
    return p


def add_compare_options(parser: argparse.ArgumentParser) -> None:
    """Options of ``dlnsim run`` for the GD-vs-flow comparison (see `compare_kwargs`)."""
    g = parser.add_argument_group("gradient flow comparison")
    g.add_argument("--flow", action="store_true", help="put the gradient flow(s) next to GD at t_k")
    g.add_argument("--flow-kinds", default=None,
                   help="comma-separated flows: factor, modified, end_to_end (default factor[,modified])")
    g.add_argument("--flow-rtol", type=float, default=None, help="flow relative tolerance (default 1e-10)")
    g.add_argument("--flow-atol", type=float, default=None, help="flow absolute tolerance (default 1e-12)")
    g.add_argument("--sharpness", action="store_true", help="also record the top Hessian eigenvalue")


def compare_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of `compare_flow` from the options added by `add_compare_options`."""
    kinds = None
    if getattr(args, "flow_kinds", None):
        kinds = tuple(s.strip() for s in args.flow_kinds.split(",") if s.strip())
    rtol = 1e-10 if args.flow_rtol is None else args.flow_rtol
    atol = 1e-12 if args.flow_atol is None else args.flow_atol
    return {"tolerances": Tolerances(rtol=rtol, atol=atol, max_steps=10_000_000), "kind": kinds,
            "sharpness": bool(args.sharpness)}


def flow_cli(args: argparse.Namespace) -> int:
    """Handler of ``dlnsim flow``."""
    out = check_out(args.out, overwrite=getattr(args, "overwrite", False))
    T = positive_float(args.T, "--T")
    if args.n_times < 2:
        raise ValueError(f"--n-times must be >= 2, got {args.n_times}")
    if (args.eta is not None) != (args.kind == "modified"):
        raise ValueError("--kind modified needs --eta (the GD stepsize it models)" if args.eta is None
                         else f"--eta is only used with --kind modified, got --kind {args.kind}")
    setup = _setup(args)
    ds = run_flow(setup.problem, setup.W0, T, kind=args.kind, eta=args.eta,
                  record=Record(f"{args.spacing}:{args.n_times}", diagnostics=not args.no_diagnostics),
                  tolerances=Tolerances(rtol=args.rtol, atol=args.atol, max_steps=args.max_steps))
    path = save(ds, out)
    a = {**ds.attrs, **outcomes(ds)}
    print(f"{args.kind} flow, N={len(setup.W0)}: status {a['status']}, "
          f"{a['n_steps']} steps ({a['n_rejected']} rejected), "
          f"loss {float(ds['loss'][0]):.6g} -> {float(ds['loss'][-1]):.6g}; wrote {path}")
    if a["status"] == "done":
        return 0
    print(f"dlnsim flow: error: the flow stopped at t = {a.get('t_reached', float('nan')):.6g} < T = {T:g} "
          f"(status {a['status']}: {a.get('status_reason', '')}); the record up to there is in {path}",
          file=sys.stderr)
    return 1


# ------------------------------------------------------------------------------------------------ the command


def build_parser() -> argparse.ArgumentParser:
    """The parser of the ``dlnsim`` command (usage errors: one line, exit status 2)."""
    parser = _Parser(prog="dlnsim", description=DESCRIPTION, **_raw(EXAMPLES))
    parser.add_argument("--version", action="version", version=f"dlnsim {__version__}")
    parser.add_argument("--traceback", action="store_true",
                        help="show the Python traceback of an unexpected error (for a bug report)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("bound", help="print eta* and its constants (Theorem 2.4 / (5.1))",
                       description="The stepsize bound eta* of the start and its constants, for each choice of "
                                   "delta (docs/theory.md).",
                       **_raw("examples:\n  dlnsim bound --N 3 --seed 0\n"
                              "  dlnsim bound --data xy.npz --widths 5 2 3 --init-seed 1"))
    _add_problem_args(p)
    p.set_defaults(func=_cmd_bound)

    p = sub.add_parser("run", help="run gradient descent and write a NetCDF file",
                       description="Run GD from the balanced start and write the record to --out (checked "
                                   "before the run).",
                       **_raw("examples:\n  dlnsim run --N 3 --seed 0 --eta bound --iters 1e5 --out run.nc\n"
                              "  dlnsim run --N 3 --eta 2.5xbound --gamma 0.3 --a2 1e-3 --iters 2e4 --out decay.nc"))
    _add_problem_args(p)
    g = p.add_argument_group("gradient descent")
    g.add_argument("--eta", type=eta_rule, default="bound",
                   help="stepsize: a positive number, 'bound' (eta* of the start) or '<c>xbound' (c times eta*, "
                        "c a positive number, e.g. 2.5xbound); default bound")
    g.add_argument("--gamma", type=float, default=None, help="decay rate: eta_k = eta (k+1)^-gamma")
    g.add_argument("--a2", type=float, default=None,
                   help="with --gamma: eta_k = max(eta (k+1)^-gamma, a2/(k+1)) (reconstructed (5.2))")
    g.add_argument("--iters", type=count, default=10_000, help="number of GD steps: 100000, 1e5 or 100_000 "
                                                               "(default 10000)")
    g.add_argument("--record", type=record_rule, default="log", help=RECORD_HELP + " (default log)")
    g.add_argument("--out", required=True, help="output file (.nc)")
    g.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    g.add_argument("--keep-weights", action="store_true", help="store the final factors")
    g.add_argument("--stop-early", action="store_true",
                   help="stop at the first iteration where a convergence test holds")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    add_method_options(p, axes=False)
    add_compare_options(p)
    p.set_defaults(func=_cmd_run)

    add_flow_cli(sub)
    add_sweep_cli(sub)

    p = sub.add_parser("info", help="summarise a result file or a sweep/grid directory",
                       description="The attributes of a dlnsim result file; for a sweep or grid directory "
                                   "(with grid.json) its axes, cells done and failed, and status counts.",
                       **_raw("examples:\n  dlnsim info run.nc\n  dlnsim info sw/"))
    p.add_argument("path", metavar="FILE", help="a dlnsim .nc file, or a sweep/grid directory")
    p.set_defaults(func=_cmd_info)

    add_plot_cli(sub)
    return parser


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            sub: argparse.ArgumentParser = action.choices[command]
            return sub
    return parser


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        text = f"{exc.filename}: {exc.strerror}"
    else:
        text = str(exc) or type(exc).__name__
    return _shown(" ".join(text.split()))  # (a message may quote a file's attributes)


def _closed_stdout() -> int:
    """stdout was closed by the reader (``| head``): no traceback, and none at exit either."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # not a real file (captured output)
        pass
    return 141  # 128 + SIGPIPE, as for a command the shell's pipe ends


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``dlnsim`` command with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    name = "dlnsim"
    try:
        parser = build_parser()
        try:
            args, extra = parser.parse_known_args(argv)
            if extra:  # named by the subcommand, as its other usage errors are
                _subparser(parser, args.command).error(f"unrecognized arguments: {' '.join(extra)}")
        except SystemExit as exc:  # --help, --version, or a usage error already printed in one line
            sys.stdout.flush()
            return exc.code if isinstance(exc.code, int) else 2
        name = f"dlnsim {args.command}"
        try:
            status = int(args.func(args))
        except (KeyboardInterrupt, BrokenPipeError):
            raise
        except (ValueError, OSError) as exc:  # bad arguments, input files, output paths
            if args.traceback:
                raise
            print(f"{name}: error: {_one_line(exc)}", file=sys.stderr)
            return 2
        except Exception as exc:  # a failed computation
            if args.traceback:
                raise
            print(f"{name}: error: {type(exc).__name__}: {_one_line(exc)} (dlnsim --traceback {args.command} ... "
                  "shows where)", file=sys.stderr)
            return 1
        sys.stdout.flush()  # a closed pipe shows up here, not at exit
        return status
    except BrokenPipeError:
        return _closed_stdout()
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
