"""Shared helpers of the studies: output paths, the worker pool, assembling runs into one Dataset, figures."""

from __future__ import annotations

import atexit
import datetime as _dt
import math
import multiprocessing
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

import dlnsim

#: the repository root (studies/ lives in it)
ROOT = Path(__file__).resolve().parent.parent
#: archived full-size results
DATA = ROOT / "data"
#: results of the --quick variants (git-ignored; never the archive)
QUICK = DATA / "quick"

BLAS_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

#: the paper's reported bound (5.1) values (spec §7.4, VERIFIED-TEXT) for its own random instance
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


# ------------------------------------------------------------------------------------------------ worker pool

_POOL: ProcessPoolExecutor | None = None
_N_WORKERS = 2


def set_workers(n: int) -> None:
    """Number of worker processes of the shared pool (takes effect when the pool is next created)."""
    global _N_WORKERS
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"workers must be an integer >= 1, got {n!r}")
    if _POOL is not None and n != _N_WORKERS:
        shutdown_pool()
    _N_WORKERS = n


def workers() -> int:
    return _N_WORKERS


def _init_worker() -> None:
    os.environ.update(BLAS_ENV)


def pool() -> Executor:
    """The shared process pool ("spawn" processes with one BLAS thread each), created on first use."""
    global _POOL
    if _POOL is None:
        old = {k: os.environ.get(k) for k in BLAS_ENV}
        os.environ.update(BLAS_ENV)  # spawned processes inherit the environment at start
        try:
            _POOL = ProcessPoolExecutor(max_workers=_N_WORKERS, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_init_worker)
            # with "spawn" a process starts at each submit while none is idle: start all of them now
            for f in [_POOL.submit(os.getpid) for _ in range(_N_WORKERS)]:
                f.result()
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    return _POOL


def shutdown_pool() -> None:
    global _POOL
    if _POOL is not None:
        _POOL.shutdown(wait=True, cancel_futures=True)
        _POOL = None


atexit.register(shutdown_pool)


def map_tasks(fn: Callable[..., Any], tasks: Sequence[dict[str, Any]],
              cost: Sequence[float] | None = None) -> list[Any]:
    """``[fn(**t) for t in tasks]`` computed on the pool; the most expensive tasks (by ``cost``) start first.

    ``fn`` must be a module-level function (it is pickled by reference).
    """
    if not tasks:
        return []
    order = np.argsort(-np.asarray(cost, dtype=float), kind="stable") if cost is not None else range(len(tasks))
    ex = pool()
    futs = {int(i): ex.submit(fn, **tasks[int(i)]) for i in order}
    try:
        return [futs[i].result() for i in range(len(tasks))]
    except BaseException:
        for f in futs.values():
            f.cancel()
        raise


# ------------------------------------------------------------------------------------------- datasets / attrs


def base_attrs(study: str, quick: bool, description: str) -> dict[str, Any]:
    """Global attributes every study file carries: what it is and how to regenerate it."""
    import numba
    import scipy

    return {
        "title": f"dlnsim study {study}" + (" (quick variant)" if quick else ""),
        "study": study,
        "description": description,
        "quick": int(quick),
        "command": f"python -m studies {'--quick ' if quick else ''}{study}",
        "source": f"studies/{study}.py",
        "dlnsim_version": dlnsim.__version__,
        "numpy_version": np.__version__,
        "numba_version": numba.__version__,
        "scipy_version": scipy.__version__,
        "xarray_version": xr.__version__,
        "python_version": sys.version.split()[0],
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.shape(a) == np.shape(b) and bool(np.array_equal(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def assemble(
    runs: dict[tuple[Any, ...], xr.Dataset],
    dims: dict[str, Sequence[Any]],
    series: Sequence[str],
    scalars: dict[str, tuple[str, ...] | None] | None = None,
    *,
    long_names: dict[str, str] | None = None,
) -> xr.Dataset:
    """One Dataset over ``dims`` (+ ``k`` and the inner dims) from run Datasets keyed by their grid values.

    ``series``: variables of the runs, usually over ``k`` (and possibly an inner dim such as ``sv``); the
    record points are united and a run that was not recorded at some ``k`` has NaN there, inner dims are
    padded with NaN.
    ``scalars``: run attributes to store as variables over the given subset of ``dims`` (None = all dims).
    Run attributes equal in every run become global attributes (``created`` is dropped).  Units and long
    names of the series come from the runs.
    """
    names = list(dims)
    index = {n: {v: i for i, v in enumerate(dims[n])} for n in names}
    shape = tuple(len(dims[n]) for n in names)
    items = []
    for key, ds in runs.items():
        if len(key) != len(names):
            raise ValueError(f"runs: key {key!r} does not match dims {names}")
        items.append((tuple(index[n][v] for n, v in zip(names, key, strict=True)), ds))
    k_all = np.unique(np.concatenate([ds["k"].values for _, ds in items]))
    data: dict[str, xr.Variable] = {}
    for var in series:
        first = next(ds[var] for _, ds in items if var in ds)
        inner = [d for d in first.dims if d != "k"]
        sizes = [max(ds.sizes[d] for _, ds in items if var in ds) for d in inner]
        over_k = "k" in first.dims
        arr = np.full((*shape, *([k_all.size] if over_k else []), *sizes), np.nan)
        for idx, ds in items:
            if var not in ds:
                continue
            if over_k:
                v = ds[var].transpose("k", *inner).values.astype(float)
                pos = np.searchsorted(k_all, ds["k"].values)
                arr[(*idx, pos, *(slice(0, n) for n in v.shape[1:]))] = v
            else:
                v = ds[var].transpose(*inner).values.astype(float)
                arr[(*idx, *(slice(0, n) for n in v.shape))] = v
        data[var] = xr.Variable((*names, *(["k"] if over_k else []), *inner), arr, attrs=dict(first.attrs))
    for name, keep in (scalars or {}).items():
        keep_dims = tuple(names) if keep is None else keep
        pos = [names.index(d) for d in keep_dims]
        values = [ds.attrs.get(name) for _, ds in items]
        is_str = any(isinstance(v, str) for v in values)
        sub_shape = tuple(shape[i] for i in pos)
        arr = np.full(sub_shape, "", dtype=object) if is_str else np.full(sub_shape, np.nan)
        for (idx, _), v in zip(items, values, strict=True):
            if v is not None:
                arr[tuple(idx[i] for i in pos)] = v
        attrs = {"units": "1", "long_name": (long_names or {}).get(name, f"run attribute {name}")}
        data[name] = xr.Variable(keep_dims, arr, attrs=attrs)
    coords: dict[str, Any] = {n: (n, np.asarray(list(dims[n]))) for n in names}
    coords["k"] = ("k", k_all, {"units": "1", "long_name": "iteration number"})
    out = xr.Dataset(data, coords=coords)
    common: dict[str, Any] = {}
    first_attrs = items[0][1].attrs
    for key, value in first_attrs.items():
        if key == "created" or key in (scalars or {}):
            continue
        if all(key in ds.attrs and _same(value, ds.attrs[key]) for _, ds in items[1:]):
            common[key] = value
    out.attrs = common
    return out


def fit_loglog(x: Any, y: Any) -> tuple[float, float]:
    """Least-squares line log10 y = slope log10 x + intercept over the finite positive pairs."""
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if ok.sum() < 2:
        return math.nan, math.nan
    slope, intercept = np.polyfit(np.log10(x[ok]), np.log10(y[ok]), 1)
    return float(slope), float(intercept)


def save_dataset(ds: xr.Dataset, outdir: Path, name: str) -> Path:
    return dlnsim.save(ds, Path(outdir) / f"{name}.nc")


# ----------------------------------------------------------------------------------------------------- figures

#: one colour per depth, the same in every figure
DEPTH_COLORS = {1: "#555555", 2: "#0072B2", 3: "#D55E00", 4: "#CC79A7", 5: "#009E73", 6: "#E69F00", 7: "#56B4E9"}


def depth_color(N: int) -> str:
    return DEPTH_COLORS.get(int(N), "black")


def pyplot() -> Any:
    """matplotlib.pyplot with the Agg backend and the studies' style (9 pt text, for a 7 in wide page)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({
        "font.size": 9,
        "axes.titlesize": 9,
        "axes.labelsize": 9,
        "legend.fontsize": 7.5,
        "xtick.labelsize": 8,
        "ytick.labelsize": 8,
        "lines.linewidth": 1.3,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "grid.linewidth": 0.5,
        "legend.frameon": False,
        "savefig.dpi": 200,
        "pdf.fonttype": 42,
    })
    return plt


def save_figure(fig: Any, outdir: Path, name: str) -> list[Path]:
    """Write ``figures/<name>.png`` and ``.pdf`` (without creation dates, so reruns give the same PDF)."""
    plt = pyplot()
    folder = Path(outdir) / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.png", folder / f"{name}.pdf"]
    fig.savefig(paths[0], metadata={"Software": None})
    fig.savefig(paths[1], metadata={"CreationDate": None, "Creator": None, "Producer": None})
    plt.close(fig)
    return paths


def fmt_pow10(n: float) -> str:
    """1000000 -> '$10^{6}$', 20000 -> '$2\\times10^{4}$' (mathtext)."""
    exp = math.floor(math.log10(n))
    mant = n / 10**exp
    return f"$10^{{{exp}}}$" if abs(mant - 1) < 1e-9 else f"${mant:g}\\times10^{{{exp}}}$"


def with_end(run: xr.Dataset, var: str = "loss", final: str = "final_loss") -> tuple[np.ndarray, np.ndarray]:
    """The finite records of ``run[var]`` over k, plus the point (stop_iteration, run[final]) where the run
    ended when that lies after the last record (an early stop falls between record points)."""
    da = run[var].dropna("k")
    k = np.asarray(da["k"].values, dtype=float)
    y = np.asarray(da.values, dtype=float)
    if "stop_iteration" in run and final in run:
        k_end, y_end = float(run["stop_iteration"]), float(run[final])
        if np.isfinite(y_end) and k_end >= 0 and (k.size == 0 or k_end > k[-1]):
            k, y = np.append(k, k_end), np.append(y, y_end)
    return k, y


def loss_panels(ds: xr.Dataset, titles: dict[str, str], label: Callable[[str, int, xr.Dataset], tuple[str, str]],
                suptitle: str) -> Any:
    """A 2x2 figure of log-log loss against iteration, one panel per value of ``ds.panel`` (over ``case``),
    one curve per depth N; ``label(case, N, run)`` gives the legend label and line style."""
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(7.0, 5.4), constrained_layout=True)
    for ax, panel in zip(axes.ravel(), titles, strict=True):
        for case in ds["case"].values[ds["panel"].values == panel]:
            for N in ds["N"].values:
                run = ds.sel(case=case, N=N)
                k, loss = with_end(run)
                if loss.size == 0:
                    continue
                text, style = label(str(case), int(N), run)
                ax.loglog(k + 1, loss, style, color=depth_color(int(N)), label=text,
                          marker="o" if loss.size < 30 else None, markersize=3)
        ax.set_title(titles[panel], loc="left")
        ax.set_xlabel("iteration $k+1$")
        ax.set_ylabel(r"loss $L^N(W(k))$")
        diverging = bool(np.all(ds["status"].sel(case=ds["case"].values[ds["panel"].values == panel]) == "diverged"))
        ax.legend(loc="upper left" if diverging else "lower left")
        lo, hi = ax.get_xlim()
        if hi / lo < 100:  # a short run: label the ticks plainly (2, 3, ... instead of 2x10^0)
            from matplotlib.ticker import FuncFormatter

            def minor(v: float, _: Any, narrow: bool = hi / lo < 10) -> str:
                lead = round(v / 10 ** math.floor(math.log10(v))) if v > 0 else 0
                return f"{v:g}" if narrow or lead in (2, 5) else ""

            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(FuncFormatter(minor))
    fig.suptitle(suptitle, fontsize=9)
    return fig


def fmt_e(x: float, digits: int = 2) -> str:
    """3.64e-05 -> '3.64e-5' for labels."""
    if not np.isfinite(x):
        return "nan"
    mant, exp = f"{x:.{digits}e}".split("e")
    return f"{mant}e{int(exp)}"
