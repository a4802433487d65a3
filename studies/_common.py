"""Shared helpers of the studies: output paths, running a study's grid on the engine, the archived layout of a
study's Dataset, figures.

A study is axes, a cell and a plot: `grid` runs the cell on every point of the axes with `dlnsim.run_grid` (one
NetCDF file per cell in a directory, so an interrupted run resumes; threads by default, or processes, or a dask
scheduler), and `archive_layout` turns the combined grid into the layout of the study's file in ``data/``.
"""

from __future__ import annotations

import importlib
import math
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

import dlnsim
import dlnsim.plot as P
from dlnsim.analysis.stability import compress_widths
from dlnsim.grid import run_grid
from dlnsim.grid.combine import ALWAYS_VARIABLES
from dlnsim.io import dataset

#: the repository root (studies/ lives in it)
ROOT = Path(__file__).resolve().parent.parent
#: archived full-size results
DATA = ROOT / "data"
#: results of the --quick variants (git-ignored; never the archive)
QUICK = DATA / "quick"
#: subdirectory of an output directory that holds the cells of each study while it runs (git-ignored)
CELLS = "cells"

#: the bound (5.1) the paper reports for its own random instance of Section 5 (Figure 1 of the paper)
PAPER_ETA = {2: 7.73e-4, 3: 1.29e-4, 5: 3.91e-5}


def default_outdir(quick: bool) -> Path:
    return QUICK if quick else DATA


def prepare_outdir(outdir: Path | str) -> Path:
    """Create ``outdir`` and ``outdir/figures``; return ``outdir`` as a Path."""
    if not isinstance(outdir, str | os.PathLike):
        raise ValueError(f"outdir must be a path, got {type(outdir).__name__}")
    out = Path(outdir)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    return out


def cells_dir(outdir: Path | str, name: str) -> Path:
    """Where the cells of study ``name`` live while it runs: ``<outdir>/cells/<name>``."""
    return Path(outdir) / CELLS / name


def subdir(directory: Path | str | None, name: str) -> Path | None:
    """``directory/name`` for a study with several grids (``directory`` is created; None stays None: a temporary
    directory for each grid)."""
    if directory is None:
        return None
    Path(directory).mkdir(parents=True, exist_ok=True)
    return Path(directory) / name


# -------------------------------------------------------------------------------------------------- the engine


def grid(cell: Callable[..., xr.Dataset], axes: Mapping[str, Sequence[Any]], params: Mapping[str, Any], *,
         directory: Path | str | None, label: str, cost: Callable[[dict[str, Any]], float] | None = None,
         **engine: Any) -> xr.Dataset:
    """`dlnsim.run_grid` of ``cell`` over ``axes``; RuntimeError when a cell failed.

    ``engine``: ``executor``, ``workers``, ``scheduler`` (or ``client``) of `dlnsim.run_grid`.
    """
    if directory is not None:
        Path(directory).parent.mkdir(parents=True, exist_ok=True)
    ds = run_grid(directory, cell, axes, params=params, cost=cost, label=label, progress=sys.stderr.isatty(),
                  **engine)
    check_cells(ds, label)
    return ds


def check_cells(ds: xr.Dataset, label: str) -> None:
    """RuntimeError naming the first failed cell when a grid has cells with status ``error`` or ``not_run``."""
    status = ds["status"] if "status" in ds else ds["search_status"]
    bad = np.isin(status.values, ["error", "not_run"])
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        point = {str(d): _plain(ds[d].values[i]) for d, i in zip(status.dims, where, strict=True)}
        message = str(ds["error"].values[where]) if "error" in ds else str(status.values[where])
        raise RuntimeError(f"{label}: {int(bad.sum())} cell(s) failed; the first, at {point}: {message}")


#: global attributes of a combined grid that describe the engine's run of it, not the study's results
GRID_ATTRS = ("title", "grid_cell", "grid_dims", "grid_manifest", "cells_total", "cells_done", "cells_failed",
              "created")


def _equal(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f" and b.dtype.kind == "f"))


def _filled(values: np.ndarray) -> bool:
    """Whether ``values`` hold the engine's fill for a cell without the attribute (NaN, -1 or "")."""
    kind = values.dtype.kind
    if kind == "f":
        return bool(np.isnan(values).any())
    if kind in "iu":
        return bool((values == -1).any())
    return bool(np.any(values.astype(str) == ""))


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def archive_layout(
    ds: xr.Dataset,
    series: Sequence[str],
    scalars: Mapping[str, Sequence[str] | None],
    long_names: Mapping[str, str] | None = None,
) -> xr.Dataset:
    """A combined grid in the layout of the studies' files.

    ``series``: variables of the runs (over ``k`` and their own dims) kept over the grid axes, as floats,
    without the coordinates of the inner dims (``k`` keeps its own).
    ``scalars``: run attributes kept as variables, over the given subset of the grid axes (None = all; they
    must not vary along the others), with units "1" and the long name from ``long_names``.
    The other run attributes and outcomes that are the same in every cell are global attributes; those that
    differ are dropped.  The engine's own attributes (``grid_*``, ``cells_*``) are dropped too.
    """
    axes = tuple(d.strip() for d in str(ds.attrs["grid_dims"]).split(","))
    shape = tuple(ds.sizes[a] for a in axes)
    names = dict(long_names or {})
    data: dict[str, xr.Variable] = {}
    for name in series:
        v = ds[name].variable
        data[name] = xr.Variable(v.dims, np.asarray(v.values, dtype=float), attrs=dict(v.attrs))
    common = {k: v for k, v in ds.attrs.items() if k not in GRID_ATTRS and k not in scalars}
    for name, keep in scalars.items():
        dims = axes if keep is None else tuple(keep)
        if name in ds.data_vars:
            da = ds[name]
            first = da.isel({a: 0 for a in axes if a not in dims})
            if not _equal(da.values, first.broadcast_like(da).transpose(*da.dims).values):
                raise ValueError(f"{name} varies along {[a for a in axes if a not in dims]}")
            values = first.transpose(*dims).values
        else:  # the same in every cell: a global attribute of the grid
            values = np.full(tuple(shape[axes.index(d)] for d in dims), ds.attrs[name],
                             dtype=object if isinstance(ds.attrs[name], str) else float)
        values = values.astype(object) if values.dtype.kind in "OUS" else values.astype(float)
        data[name] = xr.Variable(dims, values, attrs={"units": "1",
                                                      "long_name": names.get(name, f"run attribute {name}")})
    # run outcomes are variables of the grid even when they are the same in every cell (the other attributes
    # that are variables differ, or some cells lack them); a value that is also the engine's fill for a cell
    # without it (NaN, "", -1) is not taken as common
    for name in ALWAYS_VARIABLES:
        if name in data or name not in ds.data_vars or ds[name].dims not in (axes, (*axes, f"{name}_index")):
            continue
        values = ds[name].values.reshape(int(np.prod(shape)), -1)
        first = values[0] if ds[name].ndim > len(axes) else values[0, 0]
        if not _filled(values) and _equal(values, np.broadcast_to(values[0], values.shape)):
            common[name] = _plain(first) if np.ndim(first) == 0 else np.asarray(first)
    coords: dict[str, Any] = {a: (a, np.asarray(ds[a].values.tolist())) for a in axes}
    if any("k" in v.dims for v in data.values()):
        coords["k"] = ("k", ds["k"].values, {"units": "1", "long_name": "iteration number"})
    out = xr.Dataset(data, coords=coords)
    out.attrs = common
    return out


def study_attrs(study: str, quick: bool, description: str, **attrs: Any) -> dict[str, Any]:
    """Global attributes every study file carries (what it is, how to regenerate it, the versions), and
    ``attrs``: the study's parameters."""
    return {
        "title": f"dlnsim study {study}" + (" (quick variant)" if quick else ""),
        "study": study,
        "description": description,
        "quick": int(quick),
        "command": f"python -m studies {'--quick ' if quick else ''}{study}",
        "source": f"studies/{study}.py",
        **dataset.provenance(),
        "python_version": sys.version.split()[0],
        **attrs,
    }


#: how the studies of the Section-5 instance set it up (see `compressed_paper`)
COMPRESSED = ("hidden widths compressed to 2 (dlnsim.analysis.stability.compress_widths): the same losses, products, "
              "gradient norms, balancedness and layer norms as the paper's widths, to rounding")


def compressed_paper(N: int, seed: int) -> tuple[dlnsim.Problem, list[np.ndarray]]:
    """``dlnsim.paper_setup(N, seed)`` with the hidden widths compressed to 2 (`COMPRESSED`).

    With d_1 = 2 every GD iterate (and the gradient flow) stays in the initial 2-dimensional hidden subspaces,
    so the network with widths (70, 2, ..., 2, 70) has the same trajectory up to an orthogonal change of basis
    in each hidden layer; a step costs about half as much at N = 5.  A module-level function, so that it can
    be the ``setup`` of `dlnsim.critical_sweep`.
    """
    s = dlnsim.paper_setup(N, seed)
    W0, _ = compress_widths(s.W0)
    return s.problem, W0


def paper_gd_attrs(seed: int, n_iter: int, record: str, gtol: float) -> dict[str, Any]:
    """The parameters of a study of GD runs on ``paper_setup(N, seed)`` that stop early at ``gtol`` (and the
    default loss test ltol = gtol^2 of `dlnsim.run_gd`)."""
    return {"seed": seed, "setup_call": f"dlnsim.paper_setup(N, seed={seed}), {COMPRESSED}", "n_iter": n_iter,
            "record": record, "gtol": gtol, "ltol": gtol**2, "stop_early": 1}


#: long name of the depth axis
DEPTH = "depth N (number of layers)"
#: long name of the status of a GD run that stops early
STATUS = "run status (converged: a convergence test of dlnsim.run_gd held, see status_reason; diverged; max_iter)"


def describe(ds: xr.Dataset, long_names: Mapping[str, str]) -> xr.Dataset:
    """Give the named variables or coordinates of ``ds`` units "1" and a long name (in place); return ``ds``."""
    for name, long_name in long_names.items():
        ds[name].attrs = {"units": "1", "long_name": long_name}
    return ds


def run_study(name: str, quick: bool, outdir: Path | str, cells: Path | str | None = None,
              **engine: Any) -> xr.Dataset:
    """Compute study ``name`` (its cells in ``cells``; None: a temporary directory; ``engine``: executor,
    workers, scheduler), write ``<outdir>/<name>.nc`` and its figure; return the Dataset."""
    module = importlib.import_module(f"studies.{name}")
    out = prepare_outdir(outdir)
    ds = describe_variables(module.compute(quick, directory=cells, **engine))
    save_dataset(ds, out, name)
    module.plot(ds, out)
    return ds


#: long names of coordinates the studies share (others fall back to the grid engine's axis names)
COORD_NAMES = {
    "case": "case of the study (see the attribute describing the cases)",
    "init": "initialisation rule",
    "scale_index": "index of the initialisation scale",
    "rank": "rank r of the product",
    "eta_index": "index of the stepsize (values in eta_value)",
}


def describe_variables(ds: xr.Dataset) -> xr.Dataset:
    """Every numeric variable and coordinate with ``units`` (``"1"``: dimensionless) and a ``long_name``; text
    variables without ``units`` (a unit means nothing for text)."""
    from dlnsim.io.dataset import AXES

    for name, v in ds.variables.items():
        if v.dtype.kind in "OUS":
            v.attrs.pop("units", None)
        else:
            v.attrs.setdefault("units", "1")
        if "long_name" not in v.attrs:
            v.attrs["long_name"] = COORD_NAMES.get(str(name)) or AXES.get(str(name), (str(name), ""))[0]
    return ds


def fit_loglog(x: Any, y: Any) -> tuple[float, float]:
    """Least-squares line log10 y = slope log10 x + intercept over the finite positive pairs."""
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if ok.sum() < 2:
        return math.nan, math.nan
    slope, intercept = np.polyfit(np.log10(x[ok]), np.log10(y[ok]), 1)
    return float(slope), float(intercept)


def local_exponents(x: Any, y: Any) -> np.ndarray:
    """d log y / d log x between neighbouring points: (log y[i+1] - log y[i]) / (log x[i+1] - log x[i])."""
    lx = np.log(np.asarray(x, dtype=float))
    ly = np.log(np.asarray(y, dtype=float))
    return np.diff(ly) / np.diff(lx)


def by_depth(ds: xr.Dataset) -> Iterator[tuple[int, xr.Dataset]]:
    """``(N, ds.sel(N=N))`` for every depth N of ``ds`` (for the summaries)."""
    for N in ds["N"].values:
        yield int(N), ds.sel(N=N)


def outcome(run: xr.Dataset) -> str:
    """How a run ended, for a summary: 'converged at k=414, final loss 7.53e-21'."""
    status = str(run["status"].values)
    where = f" at k={int(run['stop_iteration'])}" if status != "max_iter" else ""
    return f"{status}{where}, final loss {float(run['final_loss']):.2e}"


def save_dataset(ds: xr.Dataset, outdir: Path, name: str) -> Path:
    """Write a study's file, with the CF ``Conventions`` and ``history`` attributes every dlnsim file has."""
    from dlnsim.io.dataset import CONVENTIONS, history_line

    ds.attrs = {"Conventions": CONVENTIONS, **{k: v for k, v in ds.attrs.items() if k != "Conventions"},
                "history": history_line()}
    return dlnsim.save(ds, Path(outdir) / f"{name}.nc")


# ----------------------------------------------------------------------------------------------------- figures
# the style, the depth colours, saving and the end point of a run are dlnsim.plot's (one source for both)

DEPTH_COLORS = P.DEPTH_COLORS
depth_color = P.depth_color
with_end = P.with_end


def pyplot() -> Any:
    """matplotlib.pyplot with the Agg backend and `dlnsim.plot.STYLE` set globally (for studies that draw with
    pyplot; the others draw in ``with dlnsim.plot.style():`` on `dlnsim.plot.subplots`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(P.STYLE)
    return plt


def save_figure(fig: Any, outdir: Path | str, name: str) -> list[Path]:
    """Write ``<outdir>/figures/<name>.png`` and ``.pdf`` with `dlnsim.plot.save_figure` (no creation dates, so
    reruns give the same PDF)."""
    folder = Path(outdir) / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    return P.save_figure(fig, folder / name, formats=("png", "pdf"))


def fmt_pow10(n: float) -> str:
    """1000000 -> '$10^{6}$', 20000 -> '$2\\times10^{4}$' (mathtext)."""
    exp = math.floor(math.log10(n))
    mant = n / 10**exp
    return f"$10^{{{exp}}}$" if abs(mant - 1) < 1e-9 else f"${mant:g}\\times10^{{{exp}}}$"


def loss_axes(ax: Any, runs: Sequence[tuple[xr.Dataset, str, str, str]], x: str = "k") -> None:
    """Log-log loss of GD runs on ``ax``: ``runs`` = (run, legend label, line style, colour); ``x`` = "k"
    (iteration, drawn as k+1) or "t" (flow time t_k = eta_0 + ... + eta_{k-1}, the run's ``t``).  Each curve
    ends where its run ended (the engine records the stop iteration; `dlnsim.plot.with_end` otherwise)."""
    for run, text, style, color in runs:
        if x == "t":
            ok = np.isfinite(run["loss"].values) & (run["t"].values > 0)
            xs, loss = run["t"].values[ok], run["loss"].values[ok]
        else:
            k, loss = with_end(run)
            xs = k + 1
        if loss.size:
            ax.loglog(xs, loss, style, color=color, label=text, marker="o" if loss.size < 30 else None,
                      markersize=3)
    ax.set_xlabel("iteration $k+1$" if x == "k" else r"flow time $t_k=\eta_0+\dots+\eta_{k-1}$")
    ax.set_ylabel(r"loss $L^N(W(k))$")


def loss_panels(axes: Any, ds: xr.Dataset, titles: Mapping[str, str],
                label: Callable[[str, int, xr.Dataset], tuple[str, str]]) -> None:
    """One log-log loss panel per value of ``ds.panel`` (over ``case``) on ``axes`` (in the order of ``titles``),
    one curve per case and depth N in the depth's colour; ``label(case, N, run)`` gives the legend text and the
    line style."""
    for ax, panel in zip(np.ravel(axes), titles, strict=True):
        cases = ds["case"].values[ds["panel"].values == panel]
        runs = [(run, *label(str(case), int(N), run), P.depth_color(N))
                for case in cases for N in ds["N"].values for run in [ds.sel(case=case, N=N)]]
        loss_axes(ax, runs)
        P.plain_log_ticks(ax, "x")
        ax.set_title(titles[panel], loc="left")
        diverging = bool(np.all(ds["status"].sel(case=cases) == "diverged"))
        ax.legend(loc="upper left" if diverging else "lower left", fontsize=6.5)


def fmt_e(x: float, digits: int = 2) -> str:
    """3.64e-05 -> '3.64e-5' for labels."""
    if not np.isfinite(x):
        return "nan"
    mant, exp = f"{x:.{digits}e}".split("e")
    return f"{mant}e{int(exp)}"
