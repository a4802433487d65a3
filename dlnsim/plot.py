"""Figures of dlnsim results: loss curves, the hypotheses of Theorem 2.4, GD against the flows, sweeps.

Every function takes a Dataset as `dlnsim.run_gd`, `dlnsim.run_flow`, `dlnsim.compare_flow`, `dlnsim.sweep`
or `dlnsim.critical_sweep` return it (or `dlnsim.open` / `dlnsim.open_sweep` read it back).  A run over ``k``
(gradient descent) or over ``time`` (a gradient flow) draws one line; a combined grid (dims such as ``N``,
``eta``, ``seed`` besides ``k``) draws one line per grid point, coloured by ``hue``.  Flow variables are found
under their GD names (``loss``) and under the older ``_t`` names (``loss_t``).

Figures are made without pyplot (`matplotlib.figure.Figure`): nothing global changes, no display is needed,
and nothing has to be closed.  Return a Figure as the last expression of a notebook cell to see it, save it
with `save_figure`, or pass your own ``ax`` / ``axes`` (e.g. from ``plt.subplots``) to draw into them.
Axis labels are short symbols: a variable's ``label`` attribute when it has one, else `LABELS`.
The quantities and the constants of Theorem 2.4 they are drawn against are defined in docs/theory.md.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import xarray as xr

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .theory import StepsizeBound

__all__ = [
    "DEPTH_COLORS",
    "LABELS",
    "STYLE",
    "depth_color",
    "flow_distance",
    "label",
    "loss",
    "plain_log_ticks",
    "save_figure",
    "standard_panels",
    "style",
    "subplots",
    "sweep_facets",
    "theory_panel",
    "with_end",
]

#: matplotlib rcParams of dlnsim figures (9 pt text, for a 7 in wide page)
STYLE: dict[str, Any] = {
    "font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "legend.fontsize": 7.5, "xtick.labelsize": 8,
    "ytick.labelsize": 8, "lines.linewidth": 1.3, "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.5,
    "legend.frameon": False, "savefig.dpi": 200, "pdf.fonttype": 42,
}
#: one colour per depth N, the same in every figure
DEPTH_COLORS: dict[int, str] = {1: "#555555", 2: "#0072B2", 3: "#D55E00", 4: "#CC79A7", 5: "#009E73", 6: "#E69F00",
                                7: "#56B4E9"}
_BAL = r"\|W_{j+1}^TW_{j+1}-W_jW_j^T\|"
#: short axis labels of dlnsim's variables and coordinates (all dimensionless: no units shown)
LABELS: dict[str, str] = {
    "loss": "L", "excess_loss": "L − L*", "grad_norm_sq": "‖∇L‖²", "descent_ratio": "descent ratio",
    "balancedness": f"${_BAL}$", "balancedness_max": rf"${{\rm max}}_j{_BAL}$", "layer_norm_sq": r"$\|W_j\|^2$",
    "product_sv": r"$\sigma_i(W_N\cdots W_1)$", "k": "k", "t": "t", "time": "t", "eta": "η", "eta_k": r"$\eta_k$",
    "eta_value": "η", "N": "N", "seed": "seed", "gamma": "γ", "alpha": "α", "scale": "scale", "m": "m",
    "pair": "j", "layer": "j", "sv": "i", "trial": "trial",
    "flow_loss": "L (flow)", "modified_flow_loss": "L (modified flow)", "end_to_end_flow_loss": "L (end-to-end)",
    "flow_distance": r"$\|W-W^{\rm flow}\|_F$", "flow_product_distance": r"$\|W_{N:1}-W_{N:1}^{\rm flow}\|_F$",
    "modified_flow_distance": r"$\|W-W^{\rm mod}\|_F$",
    "modified_flow_product_distance": r"$\|W_{N:1}-W_{N:1}^{\rm mod}\|_F$",
    "end_to_end_flow_product_distance": r"$\|W_{N:1}-W^{\rm e2e}\|_F$",
    "sharpness": r"$\lambda_{\max}(\nabla^2L)$", "sharpness_limit": r"$2/\eta_k$",
    "final_loss": r"$L_{\rm final}$", "initial_loss": "L(0)", "optimal_loss": "L*",
    "min_descent_ratio": "min descent ratio", "stop_iteration": r"$k_{\rm stop}$",
    "bound_eta": "η*", "eta_bound": "η*", "eta_star": "η*", "bound_sigma": "σ", "bound_delta": "δ", "bound_K": "K",
    "bound_M": "M", "bound_B": "B", "eta_crit": r"$\eta_{\rm crit}$", "ratio": r"$\eta_{\rm crit}/\eta^*$",
    "trial_eta": "η", "trial_final_loss": r"$L_{\rm final}$",
}
_SERIES = ("k", "time")
_INNER = ("pair", "layer", "sv", "trial", "widths_index")
#: variables drawn on a log scale (values <= 0 are left out)
_LOG = {"loss", "excess_loss", "grad_norm_sq", "balancedness", "balancedness_max", "layer_norm_sq", "product_sv",
        "descent_ratio", "sharpness", "sharpness_limit", "eta", "eta_k", "t"}
#: GD-vs-flow distances: variable, legend text, colour, line style
_DISTANCES = (
    ("flow_distance", "flow (2.2): factors", "C0", "-"),
    ("flow_product_distance", "flow (2.2): product", "C0", "--"),
    ("modified_flow_distance", "modified flow: factors", "C1", "-"),
    ("modified_flow_product_distance", "modified flow: product", "C1", "--"),
    ("end_to_end_flow_product_distance", "end-to-end flow (2.5): product", "C2", "--"),
)
_FLOW_LOSSES = (("flow_loss", "flow (2.2)", "C0"), ("modified_flow_loss", "modified flow", "C1"),
                ("end_to_end_flow_loss", "end-to-end flow", "C2"))
_STATUS_COLORS = {"converged": "#009E73", "max_iter": "#0072B2", "diverged": "#D55E00", "error": "black",
                  "not_run": "0.6"}


def depth_color(N: Any) -> str:
    """The colour of depth ``N`` (`DEPTH_COLORS`; black beyond)."""
    return DEPTH_COLORS.get(int(N), "black")


@contextmanager
def style() -> Iterator[None]:
    """A context in which matplotlib uses `STYLE` (restored on exit)."""
    import matplotlib as mpl

    with mpl.rc_context(cast("dict[Any, Any]", STYLE)):
        yield


def subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] | None = None,
             **kwargs: Any) -> tuple[Figure, np.ndarray]:
    """A new Figure (no pyplot, constrained layout, `STYLE`) and its axes as a 2-D array.

    ``kwargs`` go to `matplotlib.figure.Figure.subplots` (``sharex``, ``sharey``, ...).
    """
    from matplotlib.figure import Figure

    with style():
        fig = Figure(figsize=figsize or (3.4 * ncols, 2.7 * nrows), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False, **kwargs)
        for ax in axes.flat:
            ax.tick_params(labelsize=STYLE["xtick.labelsize"])
    return fig, axes


def save_figure(fig: Figure, path: str | os.PathLike[str], *, formats: Sequence[str] | None = None,
                dpi: float = 200) -> list[Path]:
    """Write ``fig`` to ``path``, or to ``path`` with each suffix of ``formats`` (e.g. ``("png", "pdf")``).

    The files carry no creation date or software version, so a rerun gives the same PDF.  A figure that
    pyplot manages is closed afterwards.  Returns the paths written.
    """
    base = Path(path)
    paths = [base.with_suffix(f".{f.lstrip('.')}") for f in formats] if formats else [base]
    for p in paths:
        if p.suffix.lower() not in (".png", ".pdf", ".svg"):
            raise ValueError(f"path: figures are written as .png, .pdf or .svg, got {str(p)!r}")
        meta: dict[str, Any] = ({"CreationDate": None, "Creator": None, "Producer": None}
                                if p.suffix.lower() == ".pdf" else {"Date": None} if p.suffix.lower() == ".svg"
                                else {"Software": None})
        with style():
            fig.savefig(p, dpi=dpi, metadata=meta)
    import sys

    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close(fig)
    return paths


def _canonical(name: str) -> str:
    return name[:-2] if name.endswith("_t") and name[:-2] in LABELS else name


def label(obj: xr.Dataset | xr.DataArray, name: str | None = None) -> str:
    """The short axis label of variable ``name`` of ``obj`` (of the DataArray ``obj`` itself without ``name``).

    The variable's ``label`` attribute when it has one, else `LABELS`, else the name; units other than "1"
    follow in brackets.  The ``eta`` axis of a sweep run with ``eta_mode="bound"`` is labelled η/η*.
    """
    if name is None:
        if not isinstance(obj, xr.DataArray):
            raise ValueError("name: give the variable whose label is wanted")
        var: xr.DataArray | None = obj
        name = str(obj.name)
    else:
        var = obj[name] if name in obj.coords or (isinstance(obj, xr.Dataset) and name in obj.variables) else None
    attrs = var.attrs if var is not None else {}
    if name == "eta" and obj.attrs.get("eta_mode") == "bound":
        text = "η/η*"
    else:
        text = str(attrs.get("label") or LABELS.get(_canonical(name), name))
    units = str(attrs.get("units", "1"))
    return text if units in ("1", "", "None") else f"{text} [{units}]"


def plain_log_ticks(ax: Axes, axis: Literal["x", "y"] = "x") -> None:
    """On a log axis spanning less than two decades, label the ticks plainly (2, 3, 5 rather than 2×10⁰)."""
    from matplotlib.ticker import FuncFormatter

    lo, hi = ax.get_xlim() if axis == "x" else ax.get_ylim()
    if not (lo > 0 and hi / lo < 100):
        return
    narrow = hi / lo < 10

    def minor(v: float, _: Any) -> str:
        lead = round(v / 10 ** math.floor(math.log10(v))) if v > 0 else 0
        return f"{v:g}" if narrow or lead in (2, 5) else ""

    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(FuncFormatter(minor))


def _value(run: xr.Dataset, name: str) -> float:
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
    k_end, y_end = _value(run, "stop_iteration"), _value(run, final)
    if var == "excess_loss" and final == "final_loss":
        y_end -= _value(run, "optimal_loss")
    if math.isfinite(y_end) and k_end >= 0 and (k.size == 0 or k_end > k[-1]):
        k, y = np.append(k, k_end), np.append(y, y_end)
    return k, y


# ------------------------------------------------------------------------------------------ data access


def _find(ds: xr.Dataset, name: str) -> str | None:
    return next((c for c in (name, f"{name}_t") if c in ds.variables), None)


def _check_ds(ds: Any) -> None:
    if not isinstance(ds, xr.Dataset):
        raise ValueError(f"ds must be an xarray Dataset, got {type(ds).__name__}")


def _get(ds: xr.Dataset, name: str, what: str) -> xr.DataArray:
    _check_ds(ds)
    found = _find(ds, name)
    if found is None:
        have = ", ".join(sorted(map(str, ds.data_vars))) or "none"
        raise ValueError(f"{what}: the Dataset has no variable {name!r} (variables: {have})")
    return ds[found]


def _series_dim(da: xr.DataArray) -> str | None:
    return next((d for d in _SERIES if d in da.dims), None)


def _grid_dims(da: xr.DataArray) -> list[str]:
    return [str(d) for d in da.dims if d not in _SERIES and d not in _INNER]


def _check_x(x: str | None, sdim: str) -> str:
    if x is None:
        return "k" if sdim == "k" else "t"
    if x not in ("k", "t"):
        raise ValueError(f"x must be 'k' or 't', got {x!r}")
    if x == "k" and sdim == "time":
        raise ValueError("x: a gradient-flow run has no iteration k; use x='t'")
    return x


def _check_dim(value: str | None, dims: Sequence[str], what: str) -> str | None:
    if value is not None and value not in dims:
        raise ValueError(f"{what}: {value!r} is not a grid dimension of the Dataset (grid dims: {list(dims)})")
    return value


def _default_hue(ds: xr.Dataset, dims: Sequence[str]) -> str | None:
    varying = [d for d in dims if ds.sizes[d] > 1]
    return "N" if "N" in varying else (varying[0] if varying else None)


def _on_grid(ds: xr.Dataset, name: str, template: xr.DataArray) -> np.ndarray | None:
    """``name`` (a variable over some of the template's dims, or an attribute) as floats over the template."""
    if name in ds.variables:
        v = ds[name]
        if not set(v.dims) <= set(template.dims):
            return None
        try:
            return np.asarray(v.broadcast_like(template).transpose(*template.dims).values, dtype=float)
        except (TypeError, ValueError):
            return None
    value = _value(ds, name)
    return None if name not in ds.attrs or math.isnan(value) else np.full(template.shape, value)


def _fmt(v: Any) -> str:
    if isinstance(v, float | np.floating):
        return f"{float(v):.3g}"
    return str(v.item() if isinstance(v, np.generic) else v)


class _Grid:
    """The grid points of a variable: their dims, shape, and the colour and legend text of each hue value."""

    def __init__(self, ds: xr.Dataset, da: xr.DataArray, hue: str | None) -> None:
        self.dims = _grid_dims(da)
        self.template = da.isel({d: 0 for d in da.dims if d not in self.dims}, drop=True).transpose(*self.dims)
        self.shape: tuple[int, ...] = tuple(self.template.shape)
        self.hue = _check_dim(hue, self.dims, "hue") if hue is not None else _default_hue(ds, self.dims)
        values = list(ds[self.hue].values) if self.hue else []
        self.colors = _palette(self.hue, values)
        self.names = [f"{label(ds, self.hue)} = {_fmt(v)}" for v in values] if self.hue else []
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


def _xy(ds: xr.Dataset, da: xr.DataArray, grid: _Grid, x: str) -> tuple[np.ndarray, np.ndarray]:
    """x over (grid, series) and y over (grid, series, inner) as float arrays."""
    sdim = _series_dim(da)
    assert sdim is not None
    inner = [str(d) for d in da.dims if d in _INNER]
    y = np.asarray(da.transpose(*grid.dims, sdim, *inner).values, dtype=float)
    y = y.reshape((*grid.shape, da.sizes[sdim], -1))
    shape = (*grid.shape, da.sizes[sdim])
    if sdim == "time":
        return np.broadcast_to(np.asarray(ds["time"].values, dtype=float), shape), y
    if x == "k":
        return np.broadcast_to(np.asarray(ds["k"].values, dtype=float) + 1.0, shape), y
    if "t" not in ds.variables:
        raise ValueError("x: the Dataset has no time t along k; use x='k'")
    over = da.isel({d: 0 for d in inner}, drop=True)
    t = ds["t"].broadcast_like(over).transpose(*grid.dims, sdim)
    return np.asarray(t.values, dtype=float), y


def _curves(ax: Axes, x: np.ndarray, y: np.ndarray, grid: _Grid, *, logy: bool, color: Any = None,
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
    inner = [d for d in da.dims if d in _INNER]
    if len(inner) != 1:
        return []
    sym = LABELS.get(str(inner[0]), str(inner[0]))
    return [f"{sym} = {_fmt(v)}" for v in da[inner[0]].values]


def _finish(ax: Axes, x: str, ylabel: str, *, legend: bool, logy: bool = True) -> None:
    ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("k + 1" if x == "k" else "t")
    ax.set_ylabel(ylabel)
    plain_log_ticks(ax)
    handles, _ = ax.get_legend_handles_labels()
    if legend and handles:
        ax.legend(loc="best" if len(ax.lines) < 40 else "upper right")


def _new_axes(ax: Axes | None) -> Axes:
    if ax is not None:
        return ax
    _, axes = subplots(figsize=(3.6, 2.8))
    result: Axes = axes[0, 0]
    return result


# ------------------------------------------------------------------------------------------ public figures


def _series(ax: Axes, ds: xr.Dataset, var: str, x: str | None, hue: str | None, *, legend: bool,
            what: str = "var") -> tuple[str, _Grid, np.ndarray]:
    """Draw ``var`` (over k or time) on ``ax``; returns the x used, the grid and the x array."""
    da = _get(ds, var, what)
    sdim = _series_dim(da)
    if sdim is None:
        raise ValueError(f"{what}: {var!r} is not recorded over k or time (dims {da.dims})")
    x = _check_x(x, sdim)
    grid = _Grid(ds, da, hue)
    X, Y = _xy(ds, da, grid, x)
    logy = _canonical(var) in _LOG or var.endswith(("_distance", "_loss")) or bool(np.all(Y[np.isfinite(Y)] > 0))
    if var in ("loss", "excess_loss") and sdim == "k" and x == "k":
        X, Y = _append_end(ds, var, grid, X, Y)
    _curves(ax, X, Y, grid, logy=logy, inner=_inner_names(da), alpha=0.85 if grid.dims else 1.0)
    _finish(ax, x, label(ds, str(da.name)), legend=legend, logy=logy)
    return x, grid, X


def _append_end(ds: xr.Dataset, var: str, grid: _Grid, X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray,
                                                                                                 np.ndarray]:
    """Add the point (stop_iteration + 1, final value) to each run that stopped between record points."""
    k_end = _on_grid(ds, "stop_iteration", grid.template)
    y_end = _on_grid(ds, "final_loss", grid.template)
    if k_end is None or y_end is None or Y.shape[-1] != 1:
        return X, Y
    if var == "excess_loss":
        opt = _on_grid(ds, "optimal_loss", grid.template)
        y_end = y_end - (opt if opt is not None else np.nan)
    X = np.concatenate([X, np.full((*grid.shape, 1), np.nan)], axis=-1)
    Y = np.concatenate([Y, np.full((*grid.shape, 1, 1), np.nan)], axis=-2)
    for idx in np.ndindex(grid.shape):
        rec = np.isfinite(Y[idx][:-1, 0])
        last = X[idx][:-1][rec].max() if rec.any() else 0.0
        if np.isfinite(y_end[idx]) and k_end[idx] >= 0 and k_end[idx] + 1 > last:
            X[idx][-1], Y[idx][-1, 0] = k_end[idx] + 1, y_end[idx]
    return X, Y


def loss(ds: xr.Dataset, x: Literal["k", "t"] | None = None, ax: Axes | None = None, *,
         var: Literal["loss", "excess_loss"] = "loss", hue: str | None = None, flows: bool = True,
         legend: bool = True) -> Axes:
    """Loss (or excess loss L − L*) against k + 1 or t, log–log, one line per run.

    Parameters
    ----------
    ds : xarray.Dataset
        A GD run (over ``k``), a flow run (over ``time``), a GD-vs-flow comparison, or a combined sweep
        (one line per grid point; see `sweep_facets` for one panel per value of a grid dim).
    x : {"k", "t"}, optional
        Iteration (drawn as k + 1, so that k = 0 fits on the log axis; a run that stopped between record
        points ends at its stop iteration) or time t. Default: k for GD, t for a flow.
    ax : matplotlib Axes, optional
        Where to draw (default: a new Figure).
    var : {"loss", "excess_loss"}
        The loss L or L − L*.
    hue : str, optional
        Grid dim that sets the colour (default ``N`` when it varies, else the first varying dim).
    flows : bool
        For a single comparison run: also draw the losses of the flows at t_k (dashed).
    legend : bool
        Draw a legend.

    Returns
    -------
    matplotlib Axes
    """
    _check_ds(ds)
    if var not in ("loss", "excess_loss"):
        raise ValueError(f"var must be 'loss' or 'excess_loss', got {var!r}")
    with style():
        ax = _new_axes(ax)
        present = [f for f in _FLOW_LOSSES if f[0] in ds.variables] if flows else []
        x_used, grid, X = _series(ax, ds, var, x, hue, legend=False, what="ds")
        if present and not grid.dims and ax.lines:
            ax.lines[0].set(color="black", label="GD")
            opt = _on_grid(ds, "optimal_loss", grid.template) if var == "excess_loss" else np.zeros(())
            for name, text, color in present:
                y = np.asarray(ds[name].values, dtype=float) - (opt if opt is not None else np.nan)
                _curves(ax, X[..., : y.size], y.reshape(*grid.shape, -1, 1), grid, logy=True, color=color, ls="--",
                        name=text)
        _finish(ax, x_used, ax.get_ylabel(), legend=legend)
    return ax


_THEORY = (
    ("descent_ratio", "sigma", "σ", "(a) descent ratio ≥ σ"),
    ("balancedness_max", "delta", "δ", "(b) balancedness ≤ δ"),
    ("layer_norm_sq", "K", "K", r"(c) $\|W_j\|^2\leq K$"),
)


def theory_panel(ds: xr.Dataset, bound: StepsizeBound | None = None, axes: Sequence[Axes] | None = None, *,
                 x: Literal["k", "t"] | None = None, hue: str | None = None) -> Figure:
    """What the proof of Theorem 2.4 needs along a run (Proposition 3.4), each next to its constant.

    Three panels: (a) the descent ratio (L(k) − L(k+1)) / (η_k ‖∇L‖²) against σ;
    (b) max_j ‖W_{j+1}ᵀW_{j+1} − W_jW_jᵀ‖ against δ (and α·δ, the balancedness the theorem allows at the
    start, when α > 0); (c) max_j ‖W_j‖² against K.  The constants and their equations are listed in
    docs/theory.md (Theorem 2.4, Proposition 3.4).  The y axes are logarithmic; a descent ratio ≤ 0 (the
    loss rose) turns panel (a) to a symmetric log scale, linear below σ, so that such steps stay visible.

    Parameters
    ----------
    ds : xarray.Dataset
        A GD run, a comparison, a sweep (one line per grid point, each constant dashed in its colour) or a
        flow run (panels without a record say so).
    bound : StepsizeBound, optional
        Constants to draw (``.sigma``, ``.delta``, ``.K``, ``.alpha``); default: the Dataset's ``bound_*``.
    axes : three matplotlib Axes, optional
        Where to draw (default: a new 1×3 Figure).
    x, hue
        As in `loss`.

    Returns
    -------
    matplotlib Figure
    """
    _check_ds(ds)
    with style():
        if axes is None:
            _, grid_axes = subplots(1, 3, figsize=(7.0, 2.5))
            axes = list(grid_axes.flat)
        elif len(axes) != 3:
            raise ValueError(f"axes: give three Axes, got {len(axes)}")
        for ax, (var, const, sym, title) in zip(axes, _THEORY, strict=True):
            ax.set_title(title, loc="left")
            name = _find(ds, var) or (_find(ds, "balancedness") if var == "balancedness_max" else None)
            if name is None:
                ax.text(0.5, 0.5, f"no {var} recorded", transform=ax.transAxes, ha="center", va="center")
                continue
            da = ds[name]
            sdim = _series_dim(da)
            if sdim is None:
                raise ValueError(f"ds: {name!r} is not recorded over k or time")
            xs = _check_x(x, sdim)
            grid = _Grid(ds, da, hue)
            X, Y = _xy(ds, da, grid, xs)
            if Y.shape[-1] > 1:  # per layer or pair: the max over j (NaN only where all are NaN)
                Y = np.fmax.reduce(Y, axis=-1, keepdims=True)
            c = _on_grid(ds, f"bound_{const}", grid.template) if bound is None else np.full(
                grid.shape, float(getattr(bound, const)))
            bad = int(np.sum(np.isfinite(Y) & (Y <= 0)))
            symlog = bad > 0 and var == "descent_ratio"  # the loss rose somewhere: show those ratios too
            _curves(ax, X, Y, grid, logy=not symlog, alpha=0.85 if grid.dims else 1.0)
            if bad and not symlog:
                ax.text(0.02, 0.97, f"{bad} record(s) ≤ 0 not shown", transform=ax.transAxes, fontsize=7, va="top")
            lines = [(c, sym, "--")]
            if const == "delta" and c is not None:
                alpha = float(bound.alpha) if bound is not None else _value(ds, "bound_alpha")
                if math.isfinite(alpha) and alpha > 0:
                    lines.append((alpha * c, "αδ", ":"))
            for values, text, ls in lines:
                if values is not None:
                    _constant(ax, values, X, grid, text, ls)
            if symlog:
                finite_c = c[np.isfinite(c) & (c > 0)] if c is not None else np.empty(0)
                from matplotlib.ticker import FixedLocator, NullLocator

                thresh = float(finite_c.min()) if finite_c.size else 1e-2
                ax.set_yscale("symlog", linthresh=thresh, linscale=1.0)
                finite_y = Y[np.isfinite(Y)]
                ax.yaxis.set_major_locator(FixedLocator(_symlog_ticks(finite_y.min(), finite_y.max(), thresh)))
                ax.yaxis.set_minor_locator(NullLocator())
            ylabel = r"${\rm max}_j\|W_j\|^2$" if var == "layer_norm_sq" else label(ds, var)
            _finish(ax, xs, ylabel, legend=True, logy=not symlog)
    fig_out = axes[0].get_figure(root=True)
    assert fig_out is not None
    return fig_out


def _symlog_ticks(lo: float, hi: float, thresh: float) -> list[float]:
    """0 and at most three powers of ten on each side, at least 10 ``thresh`` away from 0 (symlog ticks)."""
    ticks = [0.0]
    for sign, end in ((1.0, hi), (-1.0, -lo)):
        if end > thresh:
            e0, e1 = math.ceil(math.log10(10 * thresh)), math.floor(math.log10(end))
            step = max(1, math.ceil((e1 - e0 + 1) / 3))
            ticks += [sign * 10.0**e for e in range(e1, e0 - 1, -step)]
    return sorted(ticks)


def _constant(ax: Axes, values: np.ndarray, X: np.ndarray, grid: _Grid, sym: str, ls: str) -> None:
    """A constant of the theorem: one line when it is the same for every grid point, else a dashed segment
    over each run in its colour."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return
    if np.allclose(finite, finite[0], rtol=1e-12, atol=0):
        ax.axhline(finite[0], color="black", ls=ls, lw=1.0, label=f"{sym} = {finite[0]:.3g}")
        return
    first = True
    for idx in np.ndindex(grid.shape):
        xi = X[idx][np.isfinite(X[idx]) & (X[idx] > 0)]
        if xi.size and np.isfinite(values[idx]):
            ax.plot([xi.min(), xi.max()], [values[idx]] * 2, ls, color=grid.color(idx) or "black", lw=0.9,
                    label=sym if first else None)
            first = False


def flow_distance(ds: xr.Dataset, x: Literal["t", "k", "eta"] = "t", ax: Axes | None = None, *,
                  hue: str | None = None, legend: bool = True) -> Axes:
    """GD against the gradient flows at equal times: the distances `dlnsim.compare_flow` records.

    Parameters
    ----------
    ds : xarray.Dataset
        A comparison (`dlnsim.compare_flow`) or a sweep run with ``flow=True``.  Draws each of
        ``flow_distance``, ``flow_product_distance``, ``modified_flow_distance``,
        ``modified_flow_product_distance`` and ``end_to_end_flow_product_distance`` that it holds (factor
        tuple: solid, product: dashed; one colour per flow).
    x : {"t", "k", "eta"}
        Against t_k (or k + 1), log–log; or, for a grid over the stepsize (a dim ``eta``, or the one dim
        along which the variable ``eta_value`` varies), the largest distance over the common time span
        t_k ≤ T of all its runs against the stepsize (absolute: ``eta_value`` when present), one line per
        value of the other grid dims, coloured by ``hue``.
    ax : matplotlib Axes, optional
        Where to draw (default: a new Figure).
    hue : str, optional
        With ``x="eta"``: the grid dim that sets the colour (default ``N``).
    legend : bool
        Draw a legend.

    Returns
    -------
    matplotlib Axes
    """
    _check_ds(ds)
    present = [d for d in _DISTANCES if d[0] in ds.variables]
    if not present:
        raise ValueError("ds: no GD-vs-flow distances (flow_distance, ...); make them with dlnsim.compare_flow")
    if x not in ("t", "k", "eta"):
        raise ValueError(f"x must be 't', 'k' or 'eta', got {x!r}")
    with style():
        ax = _new_axes(ax)
        if x != "eta":
            for name, text, color, ls in present:
                grid = _Grid(ds, ds[name], None)
                X, Y = _xy(ds, ds[name], grid, x)
                _curves(ax, X, Y, grid, logy=True, color=color, ls=ls, name=text, alpha=0.85 if grid.dims else 1)
            _finish(ax, x, r"distance at $t_k$" if len(present) > 1 else label(ds, present[0][0]), legend=legend)
            return ax
        _distance_vs_eta(ax, ds, present, hue, legend)
    return ax


def _stepsize_dim(ds: xr.Dataset, dims: Sequence[str]) -> str | None:
    """The grid dim of the stepsize: ``eta``, else the one dim (not N, seed) along which ``eta_value`` varies."""
    if "eta" in dims:
        return "eta" if ds.sizes["eta"] > 1 else None
    if "eta_value" not in ds.variables:
        return None
    found = [str(d) for d in ds["eta_value"].dims if d in dims and d not in ("N", "seed") and ds.sizes[d] > 1]
    return found[0] if len(found) == 1 else None


def _distance_vs_eta(ax: Axes, ds: xr.Dataset, present: Sequence[tuple[str, str, str, str]], hue: str | None,
                     legend: bool) -> None:
    from matplotlib.lines import Line2D

    first = ds[present[0][0]]
    dims = _grid_dims(first)
    step = _stepsize_dim(ds, dims)
    if step is None:
        raise ValueError(f"x: 'eta' needs a Dataset over several stepsizes (a sweep with flow=True); grid dims: "
                         f"{dims}")
    others = [d for d in dims if d != step]
    grid = _Grid(ds, first, _check_dim(hue, others, "hue") if hue else _default_hue(ds, others))
    X, _ = _xy(ds, first, grid, "t")
    horizon = math.inf
    maxima = {}
    for name, *_ in present:
        _, Y = _xy(ds, ds[name], grid, "t")
        ok = np.isfinite(X) & np.isfinite(Y[..., 0])
        reach = np.where(ok, X, -np.inf).max(axis=-1)
        horizon = min(horizon, float(reach.min()))
        maxima[name] = (ok, Y[..., 0])
    eta = _on_grid(ds, "eta_value", grid.template)
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
        ax.legend(handles=handles, loc="best", fontsize=6.5, frameon=True, framealpha=0.85, edgecolor="none")


def _scalar(ax: Axes, ds: xr.Dataset, var: str, xdim: str, hue: str | None, *, color: Any = None,
            marker: str = "o", ls: str = "-", name: str | None = None) -> None:
    """A variable with one value per grid point against the grid dim ``xdim``: one line per value of the
    other dims, coloured by ``hue``."""
    da = _get(ds, var, "var")
    if da.dtype.kind not in "fiu" or any(d in _INNER for d in da.dims):
        raise ValueError(f"var: {var!r} is not one number per grid point (dims {da.dims}, dtype {da.dtype})")
    if xdim not in da.dims:
        da = da.expand_dims({xdim: ds[xdim].values})
    grid = _Grid(ds, da, hue)
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
    if not numeric:
        ax.set_xticks(xs, [str(v) for v in values])
    elif values.dtype.kind in "iu":
        ax.set_xticks(xs, [str(v) for v in values])
        ax.minorticks_off()
    ax.set_xlabel(label(ds, xdim))
    ax.set_ylabel(label(ds, str(da.name)))


def sweep_facets(ds: xr.Dataset, var: str = "loss", row: str | None = None, col: str | None = None,
                 hue: str | None = None, *, x: str | None = None) -> Figure:
    """One panel per value of ``row`` × ``col`` of a combined sweep, one line per remaining grid point.

    Parameters
    ----------
    ds : xarray.Dataset
        A combined grid (`dlnsim.sweep`, `dlnsim.open_sweep`, `dlnsim.combine_runs`), dims such as ``N``,
        ``eta``, ``seed`` besides ``k``.
    var : str
        A variable over ``k`` or ``time`` (drawn against k + 1 or t, as in `loss`), or one number per grid
        point (``final_loss``, ``min_descent_ratio``, ``eta_crit``, ...) drawn against the grid dim ``x``.
    row, col, hue : str, optional
        Grid dims of the panel rows, panel columns (wrapped after 4 without ``row``) and colours.  With none
        given: ``col="N"`` and ``hue="eta"`` when they vary.
    x : str, optional
        For a series: "k" or "t".  For one number per grid point: the grid dim of the x axis (default ``eta``,
        else the first dim not used by row, col, hue).

    Returns
    -------
    matplotlib Figure
    """
    da = _get(ds, var, "var")
    dims = _grid_dims(da)
    if not dims:
        raise ValueError("ds: no grid dimensions (a single run); use loss() or standard_panels()")
    for what, value in (("row", row), ("col", col), ("hue", hue)):
        _check_dim(value, dims, what)
    used = [v for v in (row, col, hue) if v is not None]
    if len(set(used)) != len(used):
        raise ValueError(f"row, col, hue must be different grid dims, got {used}")
    if not used:
        varying = [d for d in dims if ds.sizes[d] > 1]
        col = "N" if "N" in varying else (varying[0] if len(varying) > 1 else None)
        rest = [d for d in varying if d != col]
        hue = "eta" if "eta" in rest else (rest[0] if rest else None)
    series = _series_dim(da) is not None
    xdim = None
    if not series:
        free = [d for d in dims if d not in (row, col, hue)]
        if x is not None and x not in free:
            raise ValueError(f"x: for {var!r} (one number per grid point) x is a grid dim among {free}, got {x!r}")
        xdim = x or ("eta" if "eta" in free else (free[0] if free else None))
        if xdim is None:
            raise ValueError(f"x: no grid dim left for the x axis of {var!r} (row, col, hue use {used})")
    n_row, n_col = (ds.sizes[row] if row else 1), (ds.sizes[col] if col else 1)
    cells = [({row: i} if row else {}) | ({col: j} if col else {}) for i in range(n_row) for j in range(n_col)]
    if len(cells) > 48:
        raise ValueError(f"row, col: {len(cells)} panels are too many (at most 48); select with ds.isel first")
    shape = (n_row, n_col) if row or n_col <= 4 else (math.ceil(n_col / 4), 4)
    with style():
        fig, axes = subplots(*shape, figsize=(min(7.0, 0.6 + 2.3 * shape[1]), 0.5 + 2.2 * shape[0]),
                             sharex=True, sharey=True)
        for ax, cell in zip(axes.flat, cells, strict=False):
            sub = ds.isel(cell)
            if series:
                _series(ax, sub, var, x, hue, legend=False)
            else:
                assert xdim is not None
                _scalar(ax, sub, var, xdim, hue)
            ax.set_title(", ".join(f"{label(ds, d)} = {_fmt(ds[d].values[i])}" for d, i in cell.items()), loc="left")
            ax.label_outer()
        for ax in list(axes.flat)[len(cells):]:
            ax.set_visible(False)
        first = axes.flat[0]
        if first.get_legend_handles_labels()[0]:
            first.legend(loc="best" if len(first.lines) < 40 else "upper right")
    return fig


def _kind(ds: xr.Dataset) -> str:
    """What a dlnsim Dataset holds: critical, sweep, flow, compare or gd."""
    _check_ds(ds)
    name = _find(ds, "loss") or _find(ds, "excess_loss")
    sdim = _series_dim(ds[name]) if name else None
    if name is None or sdim is None:
        if "eta_crit" in ds.variables:
            return "critical"
        raise ValueError("ds: not a dlnsim result (no loss over k or time, no eta_crit)")
    if _grid_dims(ds[name]):
        return "sweep"
    if sdim == "time":
        return "flow"
    return "compare" if any(d[0] in ds.variables for d in _DISTANCES) else "gd"


def _fill(axes: Sequence[Axes], ds: xr.Dataset, names: Sequence[str], x: str | None, start: int = 0) -> None:
    """Draw the first ``len(axes)`` of ``names`` that the Dataset holds; hide the panels left over."""
    names = [n for n in names if _find(ds, n)][: len(axes)]
    for i, (ax, name) in enumerate(zip(axes, names, strict=False)):
        _series(ax, ds, name, x, None, legend=True)
        ax.set_title(f"({chr(ord('a') + start + i)}) {label(ds, name)}", loc="left")
    for ax in axes[len(names):]:
        ax.set_visible(False)


def standard_panels(ds: xr.Dataset, *, x: Literal["k", "t"] | None = None) -> Figure:
    """The standard figure of any dlnsim Dataset, chosen from what it holds.

    - a GD run: excess loss, ‖∇L‖², the singular values of the product, and `theory_panel`;
    - a comparison (`dlnsim.compare_flow`): the excess losses of GD and of the flows, the distances
      (`flow_distance`), the singular values, and `theory_panel`;
    - a flow run (over ``time``): excess loss, ‖∇L‖², balancedness and singular values against t;
    - a sweep or grid: excess loss and balancedness of every run, the final loss and each run's status
      against ``eta`` (or the distances to the flow against ``eta`` when recorded);
    - a critical-stepsize sweep (`dlnsim.critical_sweep`): η_crit next to η*, their ratio, and the trials.

    ``x`` ("k" or "t") sets the time axis of the series.  Raises ``ValueError`` ("ds: ...") for a Dataset
    that is none of these.
    """
    kind = _kind(ds)
    with style():
        if kind == "critical":
            fig = _critical_panels(ds)
        elif kind == "sweep":
            fig = _sweep_panels(ds, x)
        elif kind == "flow":
            fig, axes = subplots(2, 2, figsize=(7.0, 4.8))
            main = "excess_loss" if _find(ds, "excess_loss") else "loss"
            _fill(list(axes.flat), ds, (main, "grad_norm_sq", "balancedness_max", "product_sv",
                                        "layer_norm_sq"), x)
        else:
            fig, axes = subplots(2, 3, figsize=(7.5, 5.0))
            top = list(axes[0])
            loss(ds, x, top[0], var="excess_loss" if _find(ds, "excess_loss") else "loss")
            top[0].set_title("(a) loss", loc="left")
            if kind == "compare":
                flow_distance(ds, "k" if x == "k" else "t", top[1])
                top[1].set_title("(b) GD − flow at equal times", loc="left")
                _fill(top[2:], ds, ("product_sv", "grad_norm_sq"), x, start=2)
            else:
                _fill(top[1:], ds, ("grad_norm_sq", "product_sv", "balancedness"), x, start=1)
            theory_panel(ds, axes=list(axes[1]), x=x)
            for ax, letter in zip(axes[1], "def", strict=True):
                ax.set_title(f"({letter}) " + ax.get_title(loc="left")[4:], loc="left")
        status = ds.attrs.get("status")
        title = str(ds.attrs.get("title", "")) + (f" — {status}" if isinstance(status, str) else "")
        if title:
            fig.suptitle(title, fontsize=9)
    return fig


def _sweep_panels(ds: xr.Dataset, x: str | None) -> Figure:
    """Four panels, the first of these that the grid holds: loss of every run, balancedness, distances to the
    flows against the stepsize, final loss, distances against t, status of every run."""
    main = "excess_loss" if _find(ds, "excess_loss") else "loss"
    dims = _grid_dims(ds[_find(ds, main) or main])
    hue = _default_hue(ds, dims)
    free = [d for d in dims if d != hue and ds.sizes[d] > 1]
    step = _stepsize_dim(ds, dims)
    xdim = step if step in free else (free[0] if free else None)
    flows = any(d[0] in ds.variables for d in _DISTANCES)
    status_ok = "status" in ds.variables and xdim in ds["status"].dims and (hue is None or hue in ds["status"].dims)
    panels: list[tuple[str, Any] | None] = [
        (f"{label(ds, main)}, every run", lambda ax: _series(ax, ds, main, x, None, legend=True)),
        (label(ds, "balancedness_max"), lambda ax: _series(ax, ds, "balancedness_max", x, None, legend=False))
        if _find(ds, "balancedness_max") else None,
        ("GD − flow against the stepsize", lambda ax: flow_distance(ds, "eta", ax, hue=hue))
        if flows and step is not None and step != hue else None,
        (f"final loss against {label(ds, xdim or '')}", lambda ax: _scalar(ax, ds, "final_loss", str(xdim), hue))
        if xdim is not None and "final_loss" in ds.variables else None,
        ("GD − flow at equal times", lambda ax: flow_distance(ds, "t", ax, legend=False)) if flows else None,
        ("status of each run", lambda ax: _status_map(ax, ds, str(xdim), hue)) if status_ok else None,
    ]
    chosen = [p for p in panels if p is not None][:4]
    fig, axes = subplots(2, 2, figsize=(7.0, 5.2))
    for i, ax in enumerate(axes.flat):
        if i >= len(chosen):
            ax.set_visible(False)
            continue
        title, draw = chosen[i]
        draw(ax)
        ax.set_title(f"({'abcd'[i]}) {title}", loc="left")
    return fig


def _status_map(ax: Axes, ds: xr.Dataset, xdim: str, hue: str | None) -> None:
    """Each run's status as a marker at (its ``xdim`` value, its ``hue`` value); other dims side by side."""
    st = ds["status"]
    dims = [str(d) for d in st.dims]
    values = np.asarray(st.transpose(*dims).values).astype(str)
    xs_all = ds[xdim].values
    numeric = xs_all.dtype.kind in "fiu" and xs_all.min() > 0
    if not numeric:
        ax.set_xticks(range(xs_all.size), [_fmt(v) for v in xs_all])
    seen: set[str] = set()
    other = [d for d in dims if d not in (xdim, hue)]
    n_other = int(np.prod([ds.sizes[d] for d in other])) if other else 1
    for idx in np.ndindex(values.shape):
        pos = dict(zip(dims, idx, strict=True))
        rank = int(np.ravel_multi_index([pos[d] for d in other], [ds.sizes[d] for d in other])) if other else 0
        y = (pos[hue] if hue else 0) + 0.5 * (rank + 0.5) / n_other - 0.25
        xv = float(xs_all[pos[xdim]]) if numeric else float(pos[xdim])
        s = str(values[idx])
        ax.plot([xv], [y], "o", color=_STATUS_COLORS.get(s, "C4"), markersize=4, label=None if s in seen else s)
        seen.add(s)
    if numeric and xs_all.max() >= 10 * xs_all.min():
        ax.set_xscale("log")
    if hue:
        ax.set_yticks(range(ds.sizes[hue]), [_fmt(v) for v in ds[hue].values])
        ax.set_ylabel(label(ds, hue))
    else:
        ax.set_yticks([])
    ax.set_ylim(-0.6, (ds.sizes[hue] if hue else 1) - 0.4)
    ax.set_xlabel(label(ds, xdim))
    ax.legend(loc="best", fontsize=7)


def _critical_panels(ds: xr.Dataset) -> Figure:
    fig, axes = subplots(1, 3, figsize=(7.5, 2.7))
    a = list(axes.flat)
    dims = _grid_dims(ds["eta_crit"])
    if not dims:
        raise ValueError("ds: a critical-stepsize Dataset needs grid dims (as dlnsim.critical_sweep makes)")
    xdim = "N" if "N" in dims else dims[0]
    _scalar(a[0], ds, "eta_crit", xdim, None, color="C0", ls="none", name=label(ds, "eta_crit"))
    star = next((n for n in ("eta_star", "eta_bound", "bound_eta") if n in ds.variables), None)
    if star:
        _scalar(a[0], ds, star, xdim, None, color="C1", marker="s", ls="none", name=label(ds, star))
        a[0].set_yscale("log")
    a[0].set_ylabel("η")
    a[0].legend(loc="best")
    a[0].set_title("(a) critical stepsize and bound", loc="left")
    if "ratio" in ds.variables:
        _scalar(a[1], ds, "ratio", xdim, None, ls="none")
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
                          label=None if s in seen else s)
                seen.add(s)
        a[2].set_yscale("log")
        a[2].set_xlabel("trial")
        a[2].set_ylabel("η")
        a[2].legend(loc="best", fontsize=7)
        a[2].set_title("(c) search trials", loc="left")
    else:
        a[2].set_visible(False)
    return fig
