"""Panels of one run (or every run of a grid on one axes): loss, the hypotheses of Theorem 2.4, GD against
the flows (`dlnsim.plot`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import xarray as xr

from dlnsim.plot._data import (
    PlotGrid,
    check_ds,
    check_x,
    draw_curves,
    draw_series,
    find_var,
    finish_axes,
    new_axes,
    on_grid,
    run_value,
    series_dim,
    xy_of,
)
from dlnsim.plot._style import label, legends_checked, style, subplots
from dlnsim.plot._sweeps import distance_vs_eta

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from dlnsim.theory.bounds import StepsizeBound


#: GD-vs-flow distances: variable, legend text, colour, line style
DISTANCES = (
    ("flow_distance", "flow (2.2): factors", "C0", "-"),
    ("flow_product_distance", "flow (2.2): product", "C0", "--"),
    ("modified_flow_distance", "modified flow: factors", "C1", "-"),
    ("modified_flow_product_distance", "modified flow: product", "C1", "--"),
    ("end_to_end_flow_product_distance", "end-to-end flow (2.5): product", "C2", "--"),
)
_FLOW_LOSSES = (("flow_loss", "flow (2.2)", "C0"), ("modified_flow_loss", "modified flow", "C1"),
                ("end_to_end_flow_loss", "end-to-end flow", "C2"))


def loss(ds: xr.Dataset, x: Literal["k", "t"] | None = None, ax: Axes | None = None, *,
         var: Literal["loss", "excess_loss"] = "loss", hue: str | None = None, flows: bool = True,
         legend: bool = True) -> Axes:
    """Loss (or excess loss L − L*) against k + 1 or t, log–log, one line per run.

    Parameters
    ----------
    ds : xarray.Dataset
        A GD run (over ``k``), a flow run (over ``t``), a GD-vs-flow comparison, or a combined sweep
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
    check_ds(ds)
    if var not in ("loss", "excess_loss"):
        raise ValueError(f"var must be 'loss' or 'excess_loss', got {var!r}")
    with style(), legends_checked():
        ax = new_axes(ax)
        present = [f for f in _FLOW_LOSSES if f[0] in ds.variables] if flows else []
        x_used, grid, X = draw_series(ax, ds, var, x, hue, legend=False, what="ds")
        if present and not grid.dims and ax.lines:
            ax.lines[0].set(color="black", label="GD")
            opt = on_grid(ds, "optimal_loss", grid.template) if var == "excess_loss" else np.zeros(())
            for name, text, color in present:
                y = np.asarray(ds[name].values, dtype=float) - (opt if opt is not None else np.nan)
                draw_curves(ax, X[..., : y.size], y.reshape(*grid.shape, -1, 1), grid, logy=True, color=color, ls="--",
                        name=text)
        finish_axes(ax, x_used, ax.get_ylabel(), legend=legend)
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
    check_ds(ds)
    with style(), legends_checked():
        if axes is None:
            _, grid_axes = subplots(1, 3, figsize=(7.0, 2.5))
            axes = list(grid_axes.flat)
        elif len(axes) != 3:
            raise ValueError(f"axes: give three Axes, got {len(axes)}")
        for ax, (var, const, sym, title) in zip(axes, _THEORY, strict=True):
            ax.set_title(title, loc="left")
            name = find_var(ds, var) or (find_var(ds, "balancedness") if var == "balancedness_max" else None)
            if name is None:
                ax.text(0.5, 0.5, f"no {var} recorded", transform=ax.transAxes, ha="center", va="center")
                continue
            da = ds[name]
            sdim = series_dim(da)
            if sdim is None:
                raise ValueError(f"ds: {name!r} is not recorded over k or t")
            xs = check_x(x, sdim)
            grid = PlotGrid(ds, da, hue)
            X, Y = xy_of(ds, da, grid, xs)
            if Y.shape[-1] > 1:  # per layer or pair: the max over j (NaN only where all are NaN)
                Y = np.fmax.reduce(Y, axis=-1, keepdims=True)
            c = on_grid(ds, f"bound_{const}", grid.template) if bound is None else np.full(
                grid.shape, float(getattr(bound, const)))
            bad = int(np.sum(np.isfinite(Y) & (Y <= 0)))
            symlog = bad > 0 and var == "descent_ratio"  # the loss rose somewhere: show those ratios too
            draw_curves(ax, X, Y, grid, logy=not symlog, alpha=0.85 if grid.dims else 1.0)
            if bad and not symlog:
                ax.text(0.02, 0.97, f"{bad} record(s) ≤ 0 not shown", transform=ax.transAxes, fontsize=7, va="top")
            lines = [(c, sym, "--")]
            if const == "delta" and c is not None:
                alpha = float(bound.alpha) if bound is not None else run_value(ds, "bound_alpha")
                if math.isfinite(alpha) and alpha > 0:
                    lines.append((alpha * c, "αδ", ":"))
            for values, text, ls in lines:
                if values is not None:
                    _constant(ax, values, X, grid, text, ls)
            if symlog:
                finite_c = c[np.isfinite(c) & (c > 0)] if c is not None else np.empty(0)
                from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

                thresh = float(finite_c.min()) if finite_c.size else 1e-2
                ax.set_yscale("symlog", linthresh=thresh, linscale=1.0)
                finite_y = Y[np.isfinite(Y)]
                ax.yaxis.set_major_locator(FixedLocator(_symlog_ticks(finite_y.min(), finite_y.max(), thresh)))
                ax.yaxis.set_major_formatter(FuncFormatter(_symlog_label))
                ax.yaxis.set_minor_locator(NullLocator())
            ylabel = r"${\rm max}_j\|W_j\|^2$" if var == "layer_norm_sq" else label(ds, var)
            finish_axes(ax, xs, ylabel, legend=True, logy=not symlog)
    fig_out = axes[0].get_figure(root=True)
    assert fig_out is not None
    return fig_out


def _symlog_ticks(lo: float, hi: float, thresh: float) -> list[float]:
    """Ticks of a symlog axis over [lo, hi] that is linear within ``thresh`` of 0: 0, the powers of ten beyond
    ``thresh``, +-``thresh`` and the value of one significant digit at the data's end, in that order of
    preference, each kept only when it lies at least 12 % of the axis from the ticks kept before it (so that no
    two labels overlap, whatever the range)."""
    from matplotlib.scale import SymmetricalLogTransform

    tr = SymmetricalLogTransform(10, thresh, 1.0)

    def pos(v: float) -> float:
        return float(tr.transform(np.array([[v]]))[0, 0])

    ends = [v for v in (lo, hi) if math.isfinite(v)]
    span = max([*ends, thresh])
    span_lo = min([*ends, -thresh])
    gap = 0.12 * max(pos(span) - pos(span_lo), 1e-12)
    powers: list[float] = []
    extra: list[float] = []
    for sign, end in ((1.0, hi), (-1.0, -lo)):
        if not end > 0 or not math.isfinite(end):
            continue
        if end > thresh:
            e0, e1 = math.floor(math.log10(thresh)) + 1, math.floor(math.log10(end))
            powers += [sign * 10.0**e for e in range(e1, e0 - 1, -1)]  # largest first
            extra.append(sign * thresh)
        extra.append(sign * _one_digit(end))
    kept: list[float] = [0.0]
    for v in [*powers, *extra]:
        if all(abs(pos(v) - pos(k)) >= gap for k in kept):
            kept.append(v)
    return sorted(kept)


def _one_digit(v: float) -> float:
    """``v`` > 0 rounded down to one significant digit (0.37 -> 0.3)."""
    scale = 10.0 ** math.floor(math.log10(v))
    return math.floor(v / scale + 1e-9) * scale


def _symlog_label(v: float, _: object = None) -> str:
    """A symlog tick: 0, a power of ten as 10^e, any other value plainly (0.3, −2)."""
    if v == 0:
        return "0"
    e = math.log10(abs(v))
    sign = "−" if v < 0 else ""
    if abs(e - round(e)) < 1e-9 and not -1 <= round(e) <= 1:
        return f"${'-' if v < 0 else ''}10^{{{round(e)}}}$"
    return f"{sign}{abs(v):.3g}"


def _constant(ax: Axes, values: np.ndarray, X: np.ndarray, grid: PlotGrid, sym: str, ls: str) -> None:
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
    check_ds(ds)
    present = [d for d in DISTANCES if d[0] in ds.variables]
    if not present:
        raise ValueError("ds: no GD-vs-flow distances (flow_distance, ...); make them with dlnsim.compare_flow")
    if x not in ("t", "k", "eta"):
        raise ValueError(f"x must be 't', 'k' or 'eta', got {x!r}")
    with style(), legends_checked():
        ax = new_axes(ax)
        if x != "eta":
            for name, text, color, ls in present:
                grid = PlotGrid(ds, ds[name], None)
                X, Y = xy_of(ds, ds[name], grid, x)
                draw_curves(ax, X, Y, grid, logy=True, color=color, ls=ls, name=text, alpha=0.85 if grid.dims else 1)
            finish_axes(ax, x, r"distance at $t_k$" if len(present) > 1 else label(ds, present[0][0]), legend=legend)
            return ax
        distance_vs_eta(ax, ds, present, hue, legend)
    return ax
