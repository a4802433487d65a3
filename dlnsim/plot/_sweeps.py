"""Panels of a grid or sweep: one panel per grid value, one number per grid point against a grid dim, the
status of each run, critical-stepsize sweeps, distances to the flows against the stepsize (`dlnsim.plot`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from dlnsim.plot._data import (
    INNER,
    PlotGrid,
    check_dim,
    default_hue,
    draw_series,
    find_var,
    fmt_value,
    get_var,
    grid_dims,
    on_grid,
    series_dim,
    xy_of,
)
from dlnsim.plot._style import (
    label,
    legends_checked,
    place_legend,
    status_words,
    style,
    subplots,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


_STATUS_COLORS = {"converged": "#009E73", "max_iter": "#0072B2", "diverged": "#D55E00", "error": "black",
                  "not_run": "0.6"}


def stepsize_dim(ds: xr.Dataset, dims: Sequence[str]) -> str | None:
    """The grid dim of the stepsize: ``eta`` or ``eta_factor``, else the one dim (not N, seed) along which
    ``eta_value`` varies."""
    for name in ("eta", "eta_factor"):
        if name in dims:
            return name if ds.sizes[name] > 1 else None
    if "eta_value" not in ds.variables:
        return None
    found = [str(d) for d in ds["eta_value"].dims if d in dims and d not in ("N", "seed") and ds.sizes[d] > 1]
    return found[0] if len(found) == 1 else None


def distance_vs_eta(ax: Axes, ds: xr.Dataset, present: Sequence[tuple[str, str, str, str]], hue: str | None,
                     legend: bool) -> None:
    from matplotlib.lines import Line2D

    first = ds[present[0][0]]
    dims = grid_dims(first)
    step = stepsize_dim(ds, dims)
    if step is None:
        raise ValueError(f"x: 'eta' needs a Dataset over several stepsizes (a sweep with flow=True); grid dims: "
                         f"{dims}")
    others = [d for d in dims if d != step]
    grid = PlotGrid(ds, first, check_dim(hue, others, "hue") if hue else default_hue(ds, others))
    X, _ = xy_of(ds, first, grid, "t")
    horizon = math.inf
    maxima = {}
    for name, *_ in present:
        _, Y = xy_of(ds, ds[name], grid, "t")
        ok = np.isfinite(X) & np.isfinite(Y[..., 0])
        reach = np.where(ok, X, -np.inf).max(axis=-1)
        horizon = min(horizon, float(reach.min()))
        maxima[name] = (ok, Y[..., 0])
    eta = on_grid(ds, "eta_value", grid.template)
    eta = eta if eta is not None else np.asarray(grid.template[step].broadcast_like(grid.template).values, float)
    markers = "osv^D"
    for m, (name, *_rest) in enumerate(present):
        ok, Y = maxima[name]
        within = ok & (horizon * (1 + 1e-12) >= X)
        top = np.where(within, Y, -np.inf).max(axis=-1)
        top[~np.isfinite(top)] = np.nan
        pos = grid.dims.index(step)
        top, xs = np.moveaxis(top, pos, -1), np.moveaxis(eta, pos, -1)
        for idx in np.ndindex(top.shape[:-1]):
            full = (*idx[:pos], 0, *idx[pos:])
            good = np.isfinite(top[idx]) & (top[idx] > 0) & (xs[idx] > 0)
            if good.any():
                order = np.argsort(xs[idx][good])
                ax.plot(xs[idx][good][order], top[idx][good][order], markers[m % 5] + _rest[2],
                        color=grid.color(full) or _rest[1], markersize=3.5, lw=1.0)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("η" if "eta_value" in ds.variables else label(ds, step))
    ax.set_ylabel(rf"${{\rm max}}_{{t_k\leq T}}$ distance, T = {horizon:.3g}")
    if legend:
        handles = [Line2D([], [], color=c, ls="-", label=n) for n, c in zip(grid.names, grid.colors, strict=True)]
        handles += [Line2D([], [], color="0.3" if grid.hue else d[2], ls=d[3], marker=markers[i % 5], markersize=3.5,
                           label=d[1]) for i, d in enumerate(present)]
        place_legend(ax, handles=handles, fontsize=6.5, frameon=True, framealpha=0.85, edgecolor="none")


def scalar_panel(ax: Axes, ds: xr.Dataset, var: str, xdim: str, hue: str | None, *, color: Any = None,
            marker: str = "o", ls: str = "-", name: str | None = None) -> None:
    """A variable with one value per grid point against the grid dim ``xdim``: one line per value of the
    other dims, coloured by ``hue``."""
    da = get_var(ds, var, "var")
    if da.dtype.kind not in "fiu" or any(d in INNER for d in da.dims):
        raise ValueError(f"var: {var!r} is not one number per grid point (dims {da.dims}, dtype {da.dtype})")
    if xdim not in da.dims:
        da = da.expand_dims({xdim: ds[xdim].values})
    grid = PlotGrid(ds, da, hue)
    if grid.hue == xdim:  # the default colour dim is the x axis: one colour
        grid.hue = None
    pos = grid.dims.index(xdim)
    Y = np.moveaxis(np.asarray(da.transpose(*grid.dims).values, dtype=np.float64), pos, -1)
    values = ds[xdim].values
    numeric = values.dtype.kind in "fiu"
    xs = values.astype(float) if numeric else np.arange(values.size, dtype=float)
    drawn = 0
    for idx in np.ndindex(Y.shape[:-1]):
        full = (*idx[:pos], 0, *idx[pos:])
        ok = np.isfinite(Y[idx])
        if ok.any():
            text = (name if drawn == 0 else None) if name is not None else grid.name(full)
            ax.plot(xs[ok], Y[idx][ok], marker=marker, ls=ls if numeric else "none", label=text,
                    color=color or grid.color(full) or "C0", markersize=3.5, lw=1.0)
            drawn += 1
    finite = Y[np.isfinite(Y)]
    if numeric and xs.min() > 0 and xs.max() >= 10 * xs.min():
        ax.set_xscale("log")
    if finite.size and finite.min() > 0 and finite.max() >= 10 * finite.min():
        ax.set_yscale("log")
        if finite.max() < 100 * finite.min():  # a narrow log axis: 200, 500, 1000 rather than one power of ten
            from matplotlib.ticker import FuncFormatter, LogLocator

            ax.yaxis.set_major_locator(LogLocator(base=10.0, subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    if not numeric:
        ax.set_xticks(xs, [str(v) for v in values])
    elif values.dtype.kind in "iu":
        ax.set_xticks(xs, [str(v) for v in values])
        ax.minorticks_off()
    ax.set_xlabel(label(ds, xdim))
    ax.set_ylabel(label(ds, str(da.name)))


def sweep_facets(ds: xr.Dataset, var: str | None = None, row: str | None = None, col: str | None = None,
                 hue: str | None = None, *, x: str | None = None) -> Figure:
    """One panel per value of ``row`` × ``col`` of a combined sweep, one line per remaining grid point.

    Parameters
    ----------
    ds : xarray.Dataset
        A combined grid (`dlnsim.sweep`, `dlnsim.open_sweep`, `dlnsim.combine_runs`), dims such as ``N``,
        ``eta``, ``seed`` besides ``k``, or a critical-stepsize sweep (`dlnsim.critical_sweep`, dims ``N``,
        ``seed``, ...).
    var : str, optional
        A variable over ``k`` or ``t`` (drawn against k + 1 or t, as in `loss`), or one number per grid
        point (``final_loss``, ``min_descent_ratio``, ``eta_crit``, ...) drawn against the grid dim ``x``.
        Default: ``loss`` (a sweep), else ``eta_crit`` (a critical-stepsize sweep).
    row, col, hue : str, optional
        Grid dims of the panel rows, panel columns (wrapped after 4 without ``row``) and colours.  With none
        given, for a series: ``col="N"`` and ``hue="eta"`` when they vary; for one number per grid point:
        panels over ``N`` (when another dim varies besides x), colours over the next dim that varies.
    x : str, optional
        For a series: "k" or "t".  For one number per grid point: the grid dim of the x axis, one not used by
        row, col, hue (default: the stepsize dim ``eta`` / ``eta_factor``, else ``N``, else the first that
        varies).  A ValueError names the grid dims when none is left.

    Returns
    -------
    matplotlib Figure
    """
    if var is None:
        var = "eta_crit" if find_var(ds, "loss") is None and "eta_crit" in ds.variables else "loss"
    da = get_var(ds, var, "var")
    dims = grid_dims(da)
    if not dims:
        raise ValueError("ds: no grid dimensions (a single run); use loss() or standard_panels()")
    for what, value in (("row", row), ("col", col), ("hue", hue)):
        check_dim(value, dims, what)
    given = [v for v in (row, col, hue) if v is not None]
    if len(set(given)) != len(given):
        raise ValueError(f"row, col, hue must be different grid dims, got {given}")
    series = series_dim(da) is not None
    xdim = None
    if series:
        if not given:
            varying = [d for d in dims if ds.sizes[d] > 1]
            col = "N" if "N" in varying else (varying[0] if len(varying) > 1 else None)
            rest = [d for d in varying if d != col]
            hue = "eta" if "eta" in rest else (rest[0] if rest else None)
    else:
        row, col, hue, xdim = _scalar_layout(ds, var, dims, row, col, hue, x)
    n_row, n_col = (ds.sizes[row] if row else 1), (ds.sizes[col] if col else 1)
    cells = [({row: i} if row else {}) | ({col: j} if col else {}) for i in range(n_row) for j in range(n_col)]
    if len(cells) > 48:
        raise ValueError(f"row, col: {len(cells)} panels are too many (at most 48); select with ds.isel first")
    shape = (n_row, n_col) if row or n_col <= 4 else (math.ceil(n_col / 4), 4)
    with style(), legends_checked():
        fig, axes = subplots(*shape, figsize=(min(7.0, 0.6 + 2.3 * shape[1]), 0.5 + 2.2 * shape[0]),
                             sharex=True, sharey=True)
        for ax, cell in zip(axes.flat, cells, strict=False):
            sub = ds.isel(cell)
            if series:
                draw_series(ax, sub, var, x, hue, legend=False)
            else:
                assert xdim is not None
                scalar_panel(ax, sub, var, xdim, hue)
            ax.set_title(", ".join(f"{label(ds, d, long_name=False)} = {fmt_value(ds[d].values[i])}"
                                   for d, i in cell.items()), loc="left")
            ax.label_outer()
        for ax in list(axes.flat)[len(cells):]:
            ax.set_visible(False)
        handles, texts = axes.flat[0].get_legend_handles_labels()
        if handles:  # one legend for every panel, outside them: it covers no data
            wide = len(handles) > 8 or max(len(t) for t in texts) > 18
            entry = 0.45 + 0.06 * max(len(t) for t in texts)  # inches, at the legend's 7.5 pt
            fits = max(1, int(fig.get_figwidth() // entry))
            fig.legend(handles, texts, loc="outside lower center" if wide else "outside right upper",
                       ncols=min(len(handles), fits) if wide else 1)
    return fig


def _scalar_layout(ds: xr.Dataset, var: str, dims: Sequence[str], row: str | None, col: str | None,
                   hue: str | None, x: str | None) -> tuple[str | None, str | None, str | None, str]:
    """row, col, hue and the x dim of one number per grid point: the x axis first (the stepsize, else ``N``,
    else the first dim that varies), then panels over ``N``, colours over the next dim that varies."""
    taken = [v for v in (row, col, hue) if v is not None]
    free = [d for d in dims if d not in taken]
    if x is not None:
        if x not in free:
            raise ValueError(f"x: for {var!r} (one number per grid point) x is a grid dim not used by row, col or "
                             f"hue; the grid dims are {list(dims)}, row, col, hue use {taken}, got x={x!r}")
        xdim = x
    else:
        if not free:
            raise ValueError(f"x: for {var!r} (one number per grid point) the x axis needs a grid dim, but row, col "
                             f"and hue use every one of the grid dims {list(dims)}; leave one of them out or pass "
                             "x=<grid dim>")
        varying = [d for d in free if ds.sizes[d] > 1]
        step = stepsize_dim(ds, varying)
        xdim = step or ("N" if "N" in varying else (varying or free)[0])
    if not taken:  # nothing chosen by the caller: panels over N, colours over the next dim that varies
        rest = [d for d in dims if d != xdim and ds.sizes[d] > 1]
        col = "N" if "N" in rest and len(rest) > 1 else None
        rest = [d for d in rest if d != col]
        hue = rest[0] if rest else None
    return row, col, hue, xdim


def status_map(ax: Axes, ds: xr.Dataset, xdim: str, hue: str | None) -> None:
    """Each run's status as a marker at (its ``xdim`` value, its ``hue`` value); other dims side by side."""
    st = ds["status"]
    dims = [str(d) for d in st.dims]
    values = np.asarray(st.transpose(*dims).values).astype(str)
    xs_all = ds[xdim].values
    numeric = xs_all.dtype.kind in "fiu" and xs_all.min() > 0
    if not numeric:
        ax.set_xticks(range(xs_all.size), [fmt_value(v) for v in xs_all])
    seen: set[str] = set()
    other = [d for d in dims if d not in (xdim, hue)]
    n_other = int(np.prod([ds.sizes[d] for d in other])) if other else 1
    for idx in np.ndindex(values.shape):
        pos = dict(zip(dims, idx, strict=True))
        rank = int(np.ravel_multi_index([pos[d] for d in other], [ds.sizes[d] for d in other])) if other else 0
        y = (pos[hue] if hue else 0) + 0.5 * (rank + 0.5) / n_other - 0.25
        xv = float(xs_all[pos[xdim]]) if numeric else float(pos[xdim])
        s = str(values[idx])
        ax.plot([xv], [y], "o", color=_STATUS_COLORS.get(s, "C4"), markersize=4,
                label=None if s in seen else status_words(s))
        seen.add(s)
    if numeric and xs_all.max() >= 10 * xs_all.min():
        ax.set_xscale("log")
    if hue:
        ax.set_yticks(range(ds.sizes[hue]), [fmt_value(v) for v in ds[hue].values])
        ax.set_ylabel(label(ds, hue))
    else:
        ax.set_yticks([])
    ax.set_ylim(-0.6, (ds.sizes[hue] if hue else 1) - 0.4)
    ax.set_xlabel(label(ds, xdim))
    place_legend(ax, fontsize=7)


def critical_panels(ds: xr.Dataset) -> Figure:
    fig, axes = subplots(1, 3, figsize=(7.5, 2.7))
    a = list(axes.flat)
    dims = grid_dims(ds["eta_crit"])
    if not dims:
        raise ValueError("ds: a critical-stepsize Dataset needs grid dims (as dlnsim.critical_sweep makes)")
    xdim = "N" if "N" in dims else dims[0]
    scalar_panel(a[0], ds, "eta_crit", xdim, None, color="C0", ls="none", name=label(ds, "eta_crit"))
    star = next((n for n in ("eta_star", "eta_bound", "bound_eta") if n in ds.variables), None)
    if star:
        scalar_panel(a[0], ds, star, xdim, None, color="C1", marker="s", ls="none", name=label(ds, star))
        a[0].set_yscale("log")
    a[0].set_ylabel("η")
    place_legend(a[0])
    a[0].set_title(r"(a) $\eta_{\rm crit}$ and the bound $\eta^*$", loc="left")
    if "ratio" in ds.variables:
        scalar_panel(a[1], ds, "ratio", xdim, None, ls="none")
        a[1].set_title(f"(b) {label(ds, 'ratio')}", loc="left")
    else:
        a[1].set_visible(False)
    if "trial_eta" in ds.variables and "trial_outcome" in ds.variables:
        eta = ds["trial_eta"].transpose(..., "trial").values.reshape(-1, ds.sizes["trial"])
        out = np.asarray(ds["trial_outcome"].transpose(..., "trial").values).astype(str).reshape(eta.shape)
        n = np.arange(1, eta.shape[1] + 1)
        colors = {"converged": _STATUS_COLORS["converged"], "diverged": _STATUS_COLORS["diverged"]}
        seen: set[str] = set()
        for e, o in zip(eta, out, strict=True):
            ok = np.isfinite(e) & (e > 0)
            a[2].plot(n[ok], e[ok], "-", color="0.7", lw=0.7)
            for s in sorted(set(o[ok].tolist())):
                sel = ok & (o == s)
                a[2].plot(n[sel], e[sel], "o", color=colors.get(s, "#0072B2"), markersize=3,
                          label=None if s in seen else status_words(s))
                seen.add(s)
        a[2].set_yscale("log")
        a[2].set_xlabel("trial")
        a[2].set_ylabel("η")
        place_legend(a[2], fontsize=7)
        a[2].set_title("(c) search trials", loc="left")
    else:
        a[2].set_visible(False)
    return fig
