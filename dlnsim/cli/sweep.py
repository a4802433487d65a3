"""The ``dlnsim sweep`` and ``dlnsim critical`` subcommands, and the argument helpers every subcommand of the
``dlnsim`` command shares (see `dlnsim.cli.app`): counts, record rules, output paths and directories."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from dlnsim.analysis.critical import CRITERION, DEFAULT_BRACKET_FACTOR, NoConvergingStepsizeWarning
from dlnsim.grid.executors import EXECUTORS
from dlnsim.io.dataset import save
from dlnsim.methods import GD, SGD, HeavyBall, Nesterov, StepRule
from dlnsim.options import Engine, Record, Stop
from dlnsim.problem import Problem
from dlnsim.sweeps.grid_sweeps import SCHEDULES, critical_sweep, sweep

__all__ = ["RECORD_HELP", "add_sweep_cli", "check_dir", "check_out", "count", "record_rule", "writable"]

#: the help text of every --record option
RECORD_HELP = ("which iterations to record: log (about 200, log-spaced), log:N (N log-spaced), all, every:N "
               "(every N-th) or N (the same as every:N)")


def count(text: str) -> int:
    """An iteration count: ``100000``, ``1e5`` or ``100_000`` (a whole number >= 0)."""
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number such as 20000 or 1e5, got {text!r}") from None
    if not value.is_integer() or value < 0 or value > 2**62:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0 such as 20000 or 1e5, got {text!r}")
    return int(value)


DATA_HELP = ("your data instead of the paper setup: a .npz file with arrays X (d_x, m) and Y (d_y, m), samples "
             "as columns, or a NetCDF file (.nc) with variables X and Y of these shapes; needs --widths")


def load_data(path: str) -> Problem:
    """X and Y (samples as columns) from a .npz (arrays X, Y) or a NetCDF file (variables X, Y)."""
    p = Path(path)
    if p.suffix not in (".npz", ".nc"):
        raise ValueError(f"--data must be a .npz or .nc file, got {path!r}")
    if not p.is_file():
        raise ValueError(f"--data: no such file {path!r}")
    try:
        if p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as f:
                names = set(f.files)
                arrays = {k: f[k] for k in ("X", "Y") if k in names}
        else:
            import xarray as xr

            with xr.open_dataset(p) as f:
                names = {str(v) for v in f.variables}
                arrays = {k: f[k].values for k in ("X", "Y") if k in names}
    except Exception as exc:  # zip, pickle, HDF5 and NetCDF readers raise a variety of errors
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise ValueError(f"--data: cannot read {path!r}: {text}") from None
    what = "array" if p.suffix == ".npz" else "variable"
    for name in ("X", "Y"):
        if name not in arrays:
            raise ValueError(f"--data: {path!r} has no {what} {name!r} (it needs X and Y, samples as columns)")
    try:
        return Problem(arrays["X"], arrays["Y"], meta={"data_file": str(p)})
    except ValueError as exc:
        raise ValueError(f"--data: {path!r}: {exc}") from None


def add_method_options(p: argparse.ArgumentParser, *, axes: bool) -> None:
    """The options of the step rule: --method, --beta, --batch-size, --sgd-seed, --sampling, --nesterov
    (with ``axes``, --beta and --batch-size take several values: grid axes)."""
    g = p.add_argument_group("step rule")
    g.add_argument("--method", choices=("gd", "heavy_ball", "nesterov", "sgd"), default="gd",
                   help="gd (default), heavy_ball or nesterov momentum, or minibatch sgd")
    nargs = "+" if axes else None
    g.add_argument("--beta", type=float, nargs=nargs, default=None,
                   help="momentum coefficient in [0, 1) (heavy_ball, nesterov: default 0.9; sgd: default 0)")
    g.add_argument("--batch-size", type=int, nargs=nargs, default=None, help="batch size of --method sgd")
    g.add_argument("--sgd-seed", type=int, default=0, help="seed of the batches of --method sgd (default 0)")
    g.add_argument("--sampling", choices=("reshuffle", "replacement"), default="reshuffle",
                   help="batches of --method sgd: a new permutation each epoch (default) or with replacement")
    g.add_argument("--nesterov", action="store_true", help="with --method sgd and --beta: Nesterov momentum")


def method_of(args: argparse.Namespace) -> tuple[StepRule, dict[str, Any]]:
    """The step rule of the options of `add_method_options`, and the axes (lists) of --beta/--batch-size."""
    beta, batch = args.beta, args.batch_size
    axes: dict[str, Any] = {}
    if isinstance(beta, list):
        beta, axes["beta"] = (beta[0], None) if len(beta) == 1 else (None, beta)
        axes = {k: v for k, v in axes.items() if v is not None}
    if isinstance(batch, list):
        if len(batch) > 1:
            axes["batch_size"] = batch
        batch = batch[0]
    if args.method != "sgd":
        unused = [o for o, v in (("--batch-size", args.batch_size), ("--nesterov", args.nesterov or None),
                                 ("--sampling", None if args.sampling == "reshuffle" else args.sampling),
                                 ("--sgd-seed", args.sgd_seed or None)) if v is not None]
        if unused:
            raise ValueError(f"{', '.join(unused)}: only used with --method sgd")
    if args.method == "gd":
        if args.beta is not None:
            raise ValueError("--beta: only used with --method heavy_ball, nesterov or sgd")
        return GD(), axes
    if args.method in ("heavy_ball", "nesterov"):
        cls = HeavyBall if args.method == "heavy_ball" else Nesterov
        return cls(beta=0.9 if beta is None else beta), axes
    if batch is None:
        raise ValueError("--method sgd needs --batch-size")
    return SGD(batch_size=batch, seed=args.sgd_seed, sampling=args.sampling, beta=0.0 if beta is None else beta,
               nesterov=args.nesterov), axes


def record_rule(text: str) -> Any:
    """A --record value: ``N`` (digits, ``_`` allowed) is the int N (every N-th iteration); other rules
    (log, log:N, all, every:N) stay strings and are checked by the library before any computation."""
    digits = text.strip().replace("_", "")
    return int(digits) if digits.isdigit() else text.strip()


def _either(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def writable(directory: Path, option: str) -> None:
    """ValueError naming ``option`` unless a file can be created in ``directory`` (tried, then removed: the
    permission bits alone do not tell, e.g. for root or on a read-only mount)."""
    try:
        fd, name = tempfile.mkstemp(prefix=".dlnsim-probe-", dir=directory)
    except OSError as exc:
        raise ValueError(f"{option}: cannot write in the directory {str(directory)!r} "
                         f"({exc.strerror or type(exc).__name__})") from None
    os.close(fd)
    os.unlink(name)


def check_out(path: str, *, overwrite: bool, option: str = "--out", suffixes: Sequence[str] = (".nc",)) -> Path:
    """The output file ``path``, checked before any work: its suffix, a writable parent directory, and no
    existing file unless ``overwrite``.  ValueError naming ``option`` otherwise."""
    out = Path(path)
    if out.suffix.lower() not in suffixes:
        raise ValueError(f"{option} must end in {_either(suffixes)}, got {path!r}")
    parent = out.parent
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        raise ValueError(f"{option}: directory {str(parent)!r} {what}")
    if out.is_dir():
        raise ValueError(f"{option}: {path!r} is a directory")
    if out.exists() and not overwrite:
        raise ValueError(f"{option}: {path!r} exists; pass --overwrite to replace it")
    writable(parent, option)
    return out


def check_dir(path: str, option: str = "--dir") -> None:
    """A directory to create or reuse: it is a directory (or can be created) and is writable."""
    d = Path(path)
    if d.exists():
        if not d.is_dir():
            raise ValueError(f"{option}: {path!r} exists and is not a directory")
        writable(d, option)
        return
    parent = d.parent
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        raise ValueError(f"{option}: the parent {str(parent)!r} of {path!r} {what}")
    writable(parent, option)


# the library names its arguments; the messages of the command name the options
_OPTION_OF = {"directory: ": "--dir: ", "scheduler: ": "--scheduler: ", "timeout ": "--timeout "}


def _as_option_error(exc: Exception) -> Exception:
    text = str(exc)
    for prefix, option in _OPTION_OF.items():
        if text.startswith(prefix):  # a ValueError, or the RuntimeError of a locked directory
            return ValueError(option + text[len(prefix):])
    return exc


@contextlib.contextmanager
def _engine(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """The executor keywords of `sweep` / `critical_sweep`; with --scheduler, a client connected here within
    --scheduler-timeout seconds (before anything is created) and closed at the end."""
    executor = args.executor or ("dask" if args.scheduler else "threads")
    if args.scheduler is not None and executor != "dask":
        raise ValueError(f"--scheduler is only used with --executor dask, got --executor {executor}")
    if executor == "dask" and args.scheduler is None:
        raise ValueError("--executor dask needs --scheduler ADDRESS (e.g. tcp://127.0.0.1:8786)")
    if args.workers is not None and executor not in ("threads", "processes"):
        raise ValueError(f"--workers is only used with --executor threads or processes, got --executor {executor}")
    if not args.scheduler_timeout > 0:
        raise ValueError(f"--scheduler-timeout must be > 0 seconds, got {args.scheduler_timeout}")
    if args.scheduler is None:
        yield {"executor": executor, "workers": args.workers}
        return
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise ValueError("--scheduler needs dask.distributed: pip install 'dlnsim[dask]'") from None
    from dlnsim.grid.executors import connect

    try:
        client = connect(args.scheduler, timeout=args.scheduler_timeout)
    except ValueError as exc:
        raise _as_option_error(exc) from None
    try:
        yield {"executor": "dask", "client": client}
    finally:
        client.close()


def _problem_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The setup keywords of `sweep` / `critical_sweep`: the paper setup (--N, --d, --m, --r) or your data
    (--data with --widths, or --N and --width; --init, --init-scale), whose other options are refused."""
    paper = {"d": args.d, "m": args.m, "r": args.r}
    own = {"widths": args.widths, "width": args.width, "init_scale": args.init_scale}
    if args.init != "balanced":
        own["init"] = args.init
    if args.data is None:
        given = [k for k, v in own.items() if v is not None]
        if given:
            raise ValueError(f"{', '.join('--' + k.replace('_', '-') for k in given)}: only used with --data")
        if args.N is None:
            raise ValueError("--N: the depths of the paper setup are required (or give --data and --widths)")
        return {"N": args.N, "d": 70 if args.d is None else args.d, "m": args.m, "r": 2 if args.r is None else args.r}
    given = [k for k, v in paper.items() if v is not None]
    if given:
        raise ValueError(f"{', '.join('--' + k for k in given)}: only used with the paper setup, not with --data")
    out: dict[str, Any] = {"problem": load_data(args.data), "init": args.init}
    if args.widths is not None:
        if args.N is not None or args.width is not None:
            raise ValueError("--widths gives the whole network: leave out --N and --width")
        out["widths"] = tuple(args.widths)
    elif args.N is None:
        raise ValueError("--data needs --widths d_0 ... d_N, or --N (depths) and optionally --width")
    else:
        out["N"] = args.N
        if args.width is not None:
            out["width"] = args.width
    if args.init_scale is not None:
        out["scale"] = args.init_scale
    return out


def _run(fn: Any, args: argparse.Namespace, **kw: Any) -> xr.Dataset:
    """``fn(--dir, **kw)`` on the engine of the options, after the output paths are checked."""
    if args.out is not None:
        check_out(args.out, overwrite=args.overwrite)
    if args.dir is not None:
        check_dir(args.dir)
    with _engine(args) as engine:
        try:
            ds: xr.Dataset = fn(args.dir, seed=args.seed, n_iter=args.iters,
                                engine=Engine(progress=not args.no_progress, **engine), timeout=args.timeout,
                                **_problem_kwargs(args), **kw)
            return ds
        except (ValueError, RuntimeError) as exc:
            raise _as_option_error(exc) from None


def _failures(ds: xr.Dataset) -> tuple[int, str]:
    """The number of cells with status 'error' and the first one's point and message."""
    status = ds["status"]
    bad = np.argwhere(status.values == "error")
    if not bad.size:
        return 0, ""
    point = dict(zip(status.dims, bad[0], strict=True))
    where = ", ".join(f"{d}={ds[d].values[i]}" for d, i in point.items() if d in ds.coords)
    message = _line(ds["error"].isel(point).item()) if "error" in ds else "no message"
    return len(bad), f"first failed cell ({where}): {message}"


def _line(text: Any) -> str:
    return " ".join(str(text).split())


def _finish(ds: xr.Dataset, out: str | None) -> None:
    if out is not None:
        save(ds, out)
        print(f"wrote {out}")


def _cli_sweep(args: argparse.Namespace) -> int:
    method, method_axes = method_of(args)
    ds = _run(sweep, args, eta=args.eta, eta_factor=args.eta_factor, method=method, **method_axes,
              record=Record(args.record, diagnostics=not args.no_diagnostics), stop=Stop(early=args.stop_early),
              schedule=args.schedule, gamma=args.gamma)
    _finish(ds, args.out)  # written first: a closed stdout does not lose it
    status = ds["status"].values.ravel().tolist()
    counts = ", ".join(f"{s}: {status.count(s)}" for s in sorted(set(status)))
    print(f"{len(status)} cells in {args.dir} ({counts})")
    failed, first = _failures(ds)
    if failed:  # the grid engine has said so in one line on stderr
        print(first)
    return 1 if failed else 0


def _number(c: xr.Dataset, name: str) -> str:
    return f"{float(c[name]):>12.5g}" if name in c else f"{'-':>12}"


def _cli_critical(args: argparse.Namespace) -> int:
    method, method_axes = method_of(args)
    bracket = None if args.bracket is None else tuple(args.bracket)
    bracket_factor = DEFAULT_BRACKET_FACTOR if args.bracket_factor is None and bracket is None else args.bracket_factor
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NoConvergingStepsizeWarning)
        ds = _run(critical_sweep, args, rtol=args.rtol, loss_tol=args.loss_tol, bracket=bracket,
                  bracket_factor=None if bracket_factor is None else tuple(bracket_factor), method=method,
                  **method_axes)
    for w in caught:  # the count of cells without a converging stepsize as a plain line; other warnings as they were
        if issubclass(w.category, NoConvergingStepsizeWarning):
            print(str(w.message), file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    _finish(ds, args.out)
    print(f"{'N':>3} {'seed':>5} {'eta_crit':>12} {'eta_star':>12} {'ratio':>12}  status")
    for n in ds["N"].values:
        for s in ds["seed"].values:
            c = ds.sel(N=n, seed=s)
            status = str(c["status"].item())
            if status in ("error", "not_run"):  # no search result
                note = status + (f": {_line(c['error'].item())}" if status == "error" and "error" in c else "")
                c = c[[]]
            else:
                note = str(c["search_status"].item()) if "search_status" in c else status
            print(f"{int(n):>3} {int(s):>5} {_number(c, 'eta_crit')} {_number(c, 'eta_star')} "
                  f"{_number(c, 'ratio')}  {note}")
    return 1 if _failures(ds)[0] else 0


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--N", type=int, nargs="+", default=None, help="depths (required but with --data --widths)")
    p.add_argument("--seed", "--seeds", dest="seed", type=int, nargs="+", required=True,
                   help="seeds of the paper setup (data and initialisation), or of the start with --data; "
                        "--seeds is the same option")
    p.add_argument("--iters", type=count, required=True, help="GD steps per run (20000, 2e4 or 20_000)")
    p.add_argument("--d", type=int, default=None, help="input/output width of the paper setup (default 70)")
    p.add_argument("--m", type=int, default=None, help="number of samples of the paper setup (default 3d)")
    p.add_argument("--r", type=int, default=None, help="narrowest width d_1 of the paper setup (default 2)")
    g = p.add_argument_group("your own data")
    g.add_argument("--data", metavar="FILE", default=None, help=DATA_HELP)
    g.add_argument("--widths", type=int, nargs="+", default=None, help="widths d_0 = d_x, d_1, ..., d_N = d_y")
    g.add_argument("--width", type=int, default=None, help="with --N: the hidden width (default min(d_x, d_y))")
    g.add_argument("--init", choices=("balanced", "gaussian"), default="balanced",
                   help="the start drawn for each seed (default balanced)")
    g.add_argument("--init-scale", type=float, default=None, help="scale of the start (default 1)")
    p.add_argument("--out", default=None, help="also write the combined Dataset to this .nc file")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    g = p.add_argument_group("where the cells run")
    g.add_argument("--executor", choices=EXECUTORS, default=None,
                   help="threads in this process (the default), processes, a dask cluster (the default with "
                        "--scheduler), or serial")
    g.add_argument("--workers", type=int, default=None, help="threads or processes (default: one per core)")
    g.add_argument("--scheduler", default=None, help="dask scheduler address, e.g. tcp://127.0.0.1:8786")
    g.add_argument("--scheduler-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="give up when the scheduler does not answer within this time (default 10)")
    g.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="seconds a cell may run (threads or processes); a cell that runs longer is recorded as "
                        "an error and run again when the command is repeated (default: no limit)")


def add_sweep_cli(subparsers: Any) -> None:
    """Register ``dlnsim sweep`` and ``dlnsim critical``; each sets ``func`` (returns the exit code)."""
    raw = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser(
        "sweep", help="run GD on a grid of depths x stepsizes x seeds (resumable)", formatter_class=raw,
        description="Run GD on the paper setup for every (N, eta, seed); one NetCDF file per cell in --dir; "
                    "rerun the same command to resume.  Exit status 1 when a cell failed (rerun to retry it).",
        epilog="example:\n  dlnsim sweep --N 2 3 --eta-factor 0.5 1 2 --seed 0 1 --iters 2e4 --dir sw/\n"
               "  dlnsim info sw/")
    steps = p.add_mutually_exclusive_group(required=True)
    steps.add_argument("--eta", type=float, nargs="+", default=None, help="stepsizes (the axis eta)")
    steps.add_argument("--eta-factor", type=float, nargs="+", default=None,
                       help="stepsizes as multiples of the bound eta*(N, seed) of (5.1) (the axis eta_factor)")
    p.add_argument("--stop-early", action="store_true",
                   help="stop each run at the first iteration where a convergence test holds")
    p.add_argument("--record", type=record_rule, default="log", help=RECORD_HELP + " (default log)")
    p.add_argument("--no-diagnostics", action="store_true",
                   help="record loss, gradient norm and stepsize only (no balancedness, layer norms, singular values)")
    p.add_argument("--schedule", choices=SCHEDULES, default="constant")
    p.add_argument("--gamma", type=float, nargs="+", default=None, help="decay rates (power_decay)")
    p.add_argument("--dir", required=True, help="sweep directory (created; reused to resume)")
    add_method_options(p, axes=True)
    _add_common(p)
    p.set_defaults(func=_cli_sweep)

    c = subparsers.add_parser(
        "critical", help="find the critical constant stepsize per (N, seed) by bisection", formatter_class=raw,
        description=f"Bisect on the constant stepsize for every (N, seed). {CRITERION}.",
        epilog="example:\n  dlnsim critical --N 2 3 --seed 0 1 --iters 5000 --out crit.nc")
    c.add_argument("--rtol", type=float, default=0.01, help="relative precision of the bracket (default 0.01)")
    c.add_argument("--loss-tol", type=float, default=1e-3, help="final/initial excess loss that counts as converged")
    brackets = c.add_mutually_exclusive_group()
    brackets.add_argument("--bracket-factor", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                          help="starting bracket in multiples of eta* of each start (default 1 4)")
    brackets.add_argument("--bracket", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                          help="starting bracket of absolute stepsizes")
    c.add_argument("--dir", default=None, help="directory for the cells (default: temporary)")
    add_method_options(c, axes=True)
    _add_common(c)
    c.set_defaults(func=_cli_critical)
