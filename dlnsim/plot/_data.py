"""Data access of `dlnsim.plot`: variables by name, the grid points of a sweep, and lines drawn over k or t."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from dlnsim.plot._style import (
    DEPTH_COLORS,
    FLOW_TIME,
    LABELS,
    canonical,
    depth_color,
    label,
    place_legend,
    plain_log_ticks,
    subplots,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes


_SERIES = ("k", FLOW_TIME)
INNER = ("pair", "layer", "sv", "trial", "widths_index")
#: variables drawn on a log scale (values <= 0 are left out)
_LOG = {"loss", "excess_loss", "grad_norm_sq", "balancedness", "balancedness_max", "layer_norm_sq", "product_sv",
        "descent_ratio", "sharpness", "sharpness_limit", "eta", "eta_factor", "eta_k", "t"}


def run_value(run: xr.Dataset, name: str) -> float:
    """A scalar of one run: a 0-d variable or an attribute (NaN when absent or not a number)."""
    raw = run[name].values if name in run.variables else run.attrs.get(name)
    try:
        return float(np.asarray(raw, dtype=float).reshape(()))
    except (TypeError, ValueError):
        return math.nan


def with_end(run: xr.Dataset, var: str = "loss", final: str = "final_loss") -> tuple[np.ndarray, np.ndarray]:
    """The finite records of ``run[var]`` over ``k``, plus the point (stop_iteration, final value) where the
    run ended when that lies after the last record (an early stop falls between record points).

    ``run`` is one GD run: a run Dataset, or one grid point of a sweep (``ds.sel(N=3, eta=1, seed=0)``).
    The final value is ``run[final]`` (variable or attribute); for ``var="excess_loss"`` it is
    final_loss − optimal_loss.
    """
    da = run[var].dropna("k")
    k = np.asarray(da["k"].values, dtype=float)
    y = np.asarray(da.values, dtype=float)
    k_end, y_end = run_value(run, "stop_iteration"), run_value(run, final)
    if var == "excess_loss" and final == "final_loss":
        y_end -= run_value(run, "optimal_loss")
    if math.isfinite(y_end) and k_end >= 0 and (k.size == 0 or k_end > k[-1]):
        k, y = np.append(k, k_end), np.append(y, y_end)
    return k, y


def find_var(ds: xr.Dataset, name: str) -> str | None:
    return next((c for c in (name, f"{name}_t") if c in ds.variables), None)


def check_ds(ds: Any) -> None:
    if not isinstance(ds, xr.Dataset):
        raise ValueError(f"ds must be an xarray Dataset, got {type(ds).__name__}")


def get_var(ds: xr.Dataset, name: str, what: str) -> xr.DataArray:
    check_ds(ds)
    found = find_var(ds, name)
    if found is None:
        have = ", ".join(sorted(map(str, ds.data_vars))) or "none"
        raise ValueError(f"{what}: the Dataset has no variable {name!r} (variables: {have})")
    return ds[found]


def series_dim(da: xr.DataArray) -> str | None:
    return next((d for d in _SERIES if d in da.dims), None)


def grid_dims(da: xr.DataArray) -> list[str]:
    return [str(d) for d in da.dims if d not in _SERIES and d not in INNER]


def check_x(x: str | None, sdim: str) -> str:
    if x is None:
        return "k" if sdim == "k" else "t"
    if x not in ("k", "t"):
        raise ValueError(f"x must be 'k' or 't', got {x!r}")
    if x == "k" and sdim == FLOW_TIME:
        raise ValueError("x: a gradient-flow run has no iteration k; use x='t'")
    return x


def check_dim(value: str | None, dims: Sequence[str], what: str) -> str | None:
    if value is not None and value not in dims:
        raise ValueError(f"{what}: {value!r} is not a grid dimension of the Dataset (grid dims: {list(dims)})")
    return value


def default_hue(ds: xr.Dataset, dims: Sequence[str]) -> str | None:
    varying = [d for d in dims if ds.sizes[d] > 1]
    return "N" if "N" in varying else (varying[0] if varying else None)


def on_grid(ds: xr.Dataset, name: str, template: xr.DataArray) -> np.ndarray | None:
    """``name`` (a variable over some of the template's dims, or an attribute) as floats over the template."""
    if name in ds.variables:
        v = ds[name]
        if not set(v.dims) <= set(template.dims):
            return None
        try:
            return np.asarray(v.broadcast_like(template).transpose(*template.dims).values, dtype=float)
        except (TypeError, ValueError):
            return None
    value = run_value(ds, name)
    return None if name not in ds.attrs or math.isnan(value) else np.full(template.shape, value)


def fmt_value(v: Any) -> str:
    if isinstance(v, float | np.floating):
        return f"{float(v):.3g}"
    return str(v.item() if isinstance(v, np.generic) else v)


class PlotGrid:
    """The grid points of a variable: their dims, shape, and the colour and legend text of each hue value."""

    def __init__(self, ds: xr.Dataset, da: xr.DataArray, hue: str | None) -> None:
        self.dims = grid_dims(da)
        self.template = da.isel({d: 0 for d in da.dims if d not in self.dims}, drop=True).transpose(*self.dims)
        self.shape: tuple[int, ...] = tuple(self.template.shape)
        self.hue = check_dim(hue, self.dims, "hue") if hue is not None else default_hue(ds, self.dims)
        values = list(ds[self.hue].values) if self.hue else []
        self.colors = _palette(self.hue, values)
        self.names = [f"{label(ds, self.hue, long_name=False)} = {fmt_value(v)}" for v in values] if self.hue else []
        self._named: set[int] = set()

    def color(self, idx: tuple[int, ...]) -> Any:
        return self.colors[idx[self.dims.index(self.hue)]] if self.hue else None

    def name(self, idx: tuple[int, ...]) -> str | None:
        """The legend text of the hue value of ``idx``, the first time that value is drawn."""
        if not self.hue:
            return None
        i = idx[self.dims.index(self.hue)]
        if i in self._named:
            return None
        self._named.add(i)
        return self.names[i]


def _palette(dim: str | None, values: Sequence[Any]) -> list[Any]:
    import matplotlib as mpl

    if dim == "N" and all(int(v) in DEPTH_COLORS for v in values):
        return [depth_color(v) for v in values]
    numeric = all(isinstance(v, int | float | np.integer | np.floating) for v in values)
    if (dim == "seed" or not numeric) and len(values) <= 10:
        return [f"C{i}" for i in range(len(values))]
    cmap = mpl.colormaps["viridis"]
    return [cmap(0.9 * i / max(len(values) - 1, 1)) for i in range(len(values))]


def xy_of(ds: xr.Dataset, da: xr.DataArray, grid: PlotGrid, x: str) -> tuple[np.ndarray, np.ndarray]:
    """x over (grid, series) and y over (grid, series, inner) as float arrays."""
    sdim = series_dim(da)
    assert sdim is not None
    inner = [str(d) for d in da.dims if d in INNER]
    y = np.asarray(da.transpose(*grid.dims, sdim, *inner).values, dtype=float)
    y = y.reshape((*grid.shape, da.sizes[sdim], -1))
    shape = (*grid.shape, da.sizes[sdim])
    if sdim == FLOW_TIME:
        return np.broadcast_to(np.asarray(ds[FLOW_TIME].values, dtype=float), shape), y
    if x == "k":
        return np.broadcast_to(np.asarray(ds["k"].values, dtype=float) + 1.0, shape), y
    if "t" not in ds.variables:
        raise ValueError("x: the Dataset has no time t along k; use x='k'")
    over = da.isel({d: 0 for d in inner}, drop=True)
    t = ds["t"].broadcast_like(over).transpose(*grid.dims, sdim)
    return np.asarray(t.values, dtype=float), y


def draw_curves(ax: Axes, x: np.ndarray, y: np.ndarray, grid: PlotGrid, *, logy: bool, color: Any = None,
            ls: str = "-", name: str | None = None, inner: Sequence[str] = (), **kw: Any) -> int:
    """One line per grid point and inner index; returns the number drawn.  Colour: ``color``, else the hue,
    else one per inner index.  Legend: ``name`` once, else the hue values, else ``inner``."""
    n_inner = y.shape[-1]
    lines = 0
    for idx in np.ndindex(grid.shape):
        xi = x[idx]
        for j in range(n_inner):
            yi = y[idx][:, j]
            ok = np.isfinite(xi) & np.isfinite(yi) & (xi > 0)
            if logy:
                ok &= yi > 0
            if not ok.any():
                continue
            c = color if color is not None else grid.color(idx)
            if c is None:
                c = f"C{j % 10}" if n_inner > 1 else "C0"
            text = name if lines == 0 else None
            if name is None:
                text = grid.name(idx) if grid.hue else (inner[j] if inner and not grid.dims else None)
            few = grid.template.size == 1 and int(ok.sum()) < 30
            ax.plot(xi[ok], yi[ok], ls, color=c, label=text, marker="o" if few else None, markersize=2.5, **kw)
            lines += 1
    return lines


def _inner_names(da: xr.DataArray) -> list[str]:
    inner = [d for d in da.dims if d in INNER]
    if len(inner) != 1:
        return []
    sym = LABELS.get(str(inner[0]), str(inner[0]))
    return [f"{sym} = {fmt_value(v)}" for v in da[inner[0]].values]


def finish_axes(ax: Axes, x: str, ylabel: str, *, legend: bool, logy: bool = True) -> None:
    ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("k + 1" if x == "k" else "t")
    ax.set_ylabel(ylabel)
    plain_log_ticks(ax)
    if legend:
        place_legend(ax)


def new_axes(ax: Axes | None) -> Axes:
    if ax is not None:
        return ax
    _, axes = subplots(figsize=(3.6, 2.8))
    result: Axes = axes[0, 0]
    return result


def draw_series(ax: Axes, ds: xr.Dataset, var: str, x: str | None, hue: str | None, *, legend: bool,
            what: str = "var") -> tuple[str, PlotGrid, np.ndarray]:
    """Draw ``var`` (over k or t) on ``ax``; returns the x used, the grid and the x array."""
    da = get_var(ds, var, what)
    sdim = series_dim(da)
    if sdim is None:
        raise ValueError(f"{what}: {var!r} is not recorded over k or t (dims {da.dims})")
    x = check_x(x, sdim)
    grid = PlotGrid(ds, da, hue)
    X, Y = xy_of(ds, da, grid, x)
    logy = canonical(var) in _LOG or var.endswith(("_distance", "_loss")) or bool(np.all(Y[np.isfinite(Y)] > 0))
    if var in ("loss", "excess_loss") and sdim == "k" and x == "k":
        X, Y = _append_end(ds, var, grid, X, Y)
    draw_curves(ax, X, Y, grid, logy=logy, inner=_inner_names(da), alpha=0.85 if grid.dims else 1.0)
    finish_axes(ax, x, label(ds, str(da.name)), legend=legend, logy=logy)
    return x, grid, X


def _append_end(ds: xr.Dataset, var: str, grid: PlotGrid, X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray,
                                                                                                 np.ndarray]:
    """Add the point (stop_iteration + 1, final value) to each run that stopped between record points."""
    k_end = on_grid(ds, "stop_iteration", grid.template)
    y_end = on_grid(ds, "final_loss", grid.template)
    if k_end is None or y_end is None or Y.shape[-1] != 1:
        return X, Y
    if var == "excess_loss":
        opt = on_grid(ds, "optimal_loss", grid.template)
        y_end = y_end - (opt if opt is not None else np.nan)
    X = np.concatenate([X, np.full((*grid.shape, 1), np.nan)], axis=-1)
    Y = np.concatenate([Y, np.full((*grid.shape, 1, 1), np.nan)], axis=-2)
    for idx in np.ndindex(grid.shape):
        rec = np.isfinite(Y[idx][:-1, 0])
        last = X[idx][:-1][rec].max() if rec.any() else 0.0
        if np.isfinite(y_end[idx]) and k_end[idx] >= 0 and k_end[idx] + 1 > last:
            X[idx][-1], Y[idx][-1, 0] = k_end[idx] + 1, y_end[idx]
    return X, Y
