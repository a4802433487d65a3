"""The ``dlnsim plot`` subcommand (part of the ``dlnsim`` command, see `dlnsim.cli.app`).

    dlnsim plot run.nc                     standard panels of a result file -> run.png
    dlnsim plot sweep_dir/ --out sw.pdf    a grid or sweep directory (with grid.json)
    dlnsim plot run.nc --x t               against the time t_k instead of the iteration
"""

from __future__ import annotations

import argparse
import os
import uuid
from pathlib import Path
from typing import Any

import xarray as xr

from dlnsim.cli.sweep import writable

__all__ = ["add_plot_cli", "open_results", "plot_cli"]

_FORMATS = (".png", ".pdf", ".svg")


def open_results(path: str | os.PathLike[str]) -> xr.Dataset:
    """Any dlnsim result: a NetCDF file (`dlnsim.load`) or a grid/sweep directory holding grid.json
    (`dlnsim.open_sweep`).  Errors are ``ValueError`` naming FILE."""
    from dlnsim.io.dataset import open as open_file
    from dlnsim.sweeps.grid_sweeps import open_sweep

    p = Path(path)
    try:
        if p.is_dir():
            if not (p / "grid.json").is_file():
                raise ValueError(f"{str(p)!r} is a directory without grid.json (not a grid or sweep directory)")
            return open_sweep(p)
        return open_file(p, timeout=60.0)  # checked in a subprocess first: a damaged file cannot hang us
    except ValueError as exc:
        text = str(exc)
        for prefix in ("path: ", "directory: "):
            text = text.removeprefix(prefix)
        raise ValueError(f"FILE: {text}") from None


def _out_path(args: argparse.Namespace) -> Path:
    src = Path(args.file)
    if args.out:
        out = Path(args.out)
    else:  # run.nc -> run.png; a directory sweep/ -> sweep.png next to it
        out = Path(f"{src}.png") if src.is_dir() or not src.suffix else src.with_suffix(".png")
    if out.suffix.lower() not in _FORMATS:
        raise ValueError(f"--out must end in .png, .pdf or .svg, got {str(out)!r}")
    if not out.parent.is_dir():
        what = "is not a directory" if out.parent.exists() else "does not exist"
        raise ValueError(f"--out: directory {str(out.parent)!r} {what}")
    if out.exists() and out.resolve() == src.resolve():
        raise ValueError(f"--out: {str(out)!r} is FILE itself")
    if out.is_dir():
        raise ValueError(f"--out: {str(out)!r} is a directory")
    writable(out.parent, "--out")  # an existing figure is replaced; a directory we cannot write in is refused
    return out


def plot_cli(args: argparse.Namespace) -> int:
    """Handler of ``dlnsim plot``: write the standard panels of FILE to --out; returns the exit status."""
    from dlnsim.plot import save_figure, standard_panels

    out = _out_path(args)  # checked before any reading
    ds = open_results(args.file)
    try:
        fig = standard_panels(ds, x=args.x)
    except ValueError as exc:
        text = str(exc)
        if text.startswith("x:"):
            raise ValueError(f"--x{text[1:]}".replace("x='t'", "--x t")) from None
        raise ValueError(f"FILE {args.file!r}: {text.removeprefix('ds: ')}") from None
    # written under a temporary name, then renamed: a figure is replaced whole, never left half-written
    tmp = out.parent / f".{out.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{out.suffix}"
    try:
        save_figure(fig, tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    print(f"wrote {out}")
    return 0


def add_plot_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``dlnsim plot`` subcommand to ``subparsers`` (from ``ArgumentParser.add_subparsers``); the
    handler is stored as ``func``."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "plot",
        help="draw the standard panels of a result file or sweep directory",
        description="Draw the standard panels of any dlnsim result (a GD run, a flow run, a GD-vs-flow "
        "comparison, a sweep or grid directory, a critical-stepsize sweep) into one figure.",
        epilog="examples:\n  dlnsim plot run.nc\n  dlnsim plot sw/ --out sw.pdf\n  dlnsim plot flow.nc --x t",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", metavar="FILE", help="a dlnsim .nc file, or a grid/sweep directory (with grid.json)")
    p.add_argument("--out", default=None, help="figure to write: .png, .pdf or .svg (default: FILE with .png)")
    p.add_argument("--x", choices=("k", "t"), default=None,
                   help="time axis of the series: iteration k or time t (default: k for GD, t for a flow)")
    p.set_defaults(func=plot_cli)
    return p
