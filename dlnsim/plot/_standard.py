"""`standard_panels`: the standard figure of any dlnsim Dataset, chosen from what it holds (`dlnsim.plot`)."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import xarray as xr

from dlnsim.plot._data import check_ds, default_hue, draw_series, find_var, fmt_value, grid_dims, run_value, series_dim
from dlnsim.plot._runs import DISTANCES, flow_distance, loss, theory_panel
from dlnsim.plot._style import FLOW_TIME, label, legends_checked, status_words, style, subplots
from dlnsim.plot._sweeps import critical_panels, scalar_panel, status_map, stepsize_dim

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def _kind(ds: xr.Dataset) -> str:
    """What a dlnsim Dataset holds: critical, sweep, flow, compare or gd."""
    check_ds(ds)
    name = find_var(ds, "loss") or find_var(ds, "excess_loss")
    sdim = series_dim(ds[name]) if name else None
    if name is None or sdim is None:
        if "eta_crit" in ds.variables:
            return "critical"
        raise ValueError("ds: not a dlnsim result standard_panels knows (no loss over k or t, no eta_crit); "
                         "draw one of its variables with sweep_facets(ds, var=...)")
    if grid_dims(ds[name]):
        return "sweep"
    if sdim == FLOW_TIME:
        return "flow"
    return "compare" if any(d[0] in ds.variables for d in DISTANCES) else "gd"


def _fill(axes: Sequence[Axes], ds: xr.Dataset, names: Sequence[str], x: str | None, start: int = 0) -> None:
    """Draw the first ``len(axes)`` of ``names`` that the Dataset holds; hide the panels left over."""
    names = [n for n in names if find_var(ds, n)][: len(axes)]
    for i, (ax, name) in enumerate(zip(axes, names, strict=False)):
        draw_series(ax, ds, name, x, None, legend=True)
        ax.set_title(f"({chr(ord('a') + start + i)}) {label(ds, name)}", loc="left")
    for ax in axes[len(names):]:
        ax.set_visible(False)


def standard_panels(ds: xr.Dataset, *, x: Literal["k", "t"] | None = None) -> Figure:
    """The standard figure of any dlnsim Dataset, chosen from what it holds.

    - a GD run: excess loss, ‖∇L‖², the singular values of the product, and `theory_panel`;
    - a comparison (`dlnsim.compare_flow`): the excess losses of GD and of the flows, the distances
      (`flow_distance`), the singular values, and `theory_panel`;
    - a flow run (over ``t``): excess loss, ‖∇L‖², balancedness and singular values against t;
    - a sweep or grid: excess loss and balancedness of every run, the final loss and each run's status
      against ``eta`` (or the distances to the flow against ``eta`` when recorded);
    - a critical-stepsize sweep (`dlnsim.critical_sweep`): η_crit next to η*, their ratio, and the trials.

    ``x`` ("k" or "t") sets the time axis of the series.  Raises ``ValueError`` ("ds: ...") for a Dataset
    that is none of these.
    """
    kind = _kind(ds)
    with style(), legends_checked():
        if kind == "critical":
            fig = critical_panels(ds)
        elif kind == "sweep":
            fig = _sweep_panels(ds, x)
        elif kind == "flow":
            fig, axes = subplots(2, 2, figsize=(7.0, 4.8))
            main = "excess_loss" if find_var(ds, "excess_loss") else "loss"
            _fill(list(axes.flat), ds, (main, "grad_norm_sq", "balancedness_max", "product_sv",
                                        "layer_norm_sq"), x)
        else:
            fig, axes = subplots(2, 3, figsize=(7.5, 5.0))
            top = list(axes[0])
            loss(ds, x, top[0], var="excess_loss" if find_var(ds, "excess_loss") else "loss")
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
        title = figure_title(ds, kind)
        if title:  # wrapped to the figure's width (about 14 characters an inch at 9 pt)
            fig.suptitle(textwrap.fill(title, width=max(40, int(13 * fig.get_figwidth()))), fontsize=9)
    return fig


def _values(ds: xr.Dataset, dim: str) -> str:
    """The values of a grid dim for a title: ``N ∈ {2, 3}``, or the range when there are many."""
    vals = [fmt_value(v) for v in ds[dim].values]
    shown = "{" + ", ".join(vals) + "}" if len(vals) <= 6 else f"{{{vals[0]}, …, {vals[-1]}}} ({len(vals)} values)"
    name = label(ds, dim, long_name=False)
    return f"{name} ∈ {shown}" if len(vals) > 1 else f"{name} = {vals[0]}"


def _counts(values: Any) -> str:
    """Statuses counted in words: "8 iteration budget reached, 4 diverged"."""
    flat = [str(v) for v in np.asarray(values).ravel() if str(v) not in ("", "nan", "None")]
    return ", ".join(f"{flat.count(v)} {status_words(v)}" for v in sorted(set(flat), key=flat.index))


def figure_title(ds: xr.Dataset, kind: str | None = None) -> str:
    """The title of `standard_panels` in words, fit for a paper.

    A run: what it is (its ``title``, e.g. "gradient descent on a depth-3 linear network") and how it ended
    ("iteration budget reached at k = 2000", "diverged at k = 5"); a sweep: the runs and the grid
    ("12 runs over N ∈ {2, 3}, η/η* ∈ {0.5, 2, 50}, seed ∈ {0, 1}") and the count of each status; a
    critical-stepsize sweep: the grid and the searches that found no bracket.
    """
    kind = kind or _kind(ds)
    title = str(ds.attrs.get("title", ""))
    generic = title.startswith(("dlnsim grid", "dlnsim study", "critical stepsize")) or not title
    if kind in ("gd", "compare", "flow"):
        if generic:
            n = run_value(ds, "N")
            what = "gradient flow" if kind == "flow" else "gradient descent"
            title = f"{what} on a depth-{int(n)} linear network" if math.isfinite(n) else what
        if "status" not in ds.variables and "status" not in ds.attrs:
            return title
        status = str(ds["status"].values.item() if "status" in ds.variables else ds.attrs["status"])
        if kind == "flow":
            return title if status == "done" else f"{title}: {status_words(status)}"
        k = run_value(ds, "stop_iteration")
        at = f" at k = {int(k)}" if math.isfinite(k) and k >= 0 else ""
        return f"{title}: {status_words(status)}{at}"
    main = find_var(ds, "eta_crit" if kind == "critical" else "loss") or find_var(ds, "excess_loss")
    dims = grid_dims(ds[main]) if main else []
    grid = ", ".join(_values(ds, d) for d in dims)
    prefix = f"study {title.removeprefix('dlnsim study ')}: " if title.startswith("dlnsim study") else (
        "" if generic else f"{title}: ")
    if kind == "critical":
        out = prefix + (f"critical constant stepsize over {grid}" if grid else "critical constant stepsize")
        if "search_status" in ds.variables:
            searches = np.asarray(ds["search_status"].values).astype(str)
            if bool(np.any(searches != "ok")):
                out += f": {_counts(searches)}"
        return out
    n_runs = int(np.prod([ds.sizes[d] for d in dims])) if dims else 1
    out = f"{prefix}{n_runs} runs over {grid}" if grid else f"{prefix}{n_runs} run(s)"
    if "status" in ds.variables and set(ds["status"].dims) <= set(dims):
        out += f" ({_counts(ds['status'].values)})"
    return out


def _sweep_panels(ds: xr.Dataset, x: str | None) -> Figure:
    """Four panels, the first of these that the grid holds: loss of every run, balancedness, distances to the
    flows against the stepsize, final loss, distances against t, status of every run."""
    main = "excess_loss" if find_var(ds, "excess_loss") else "loss"
    dims = grid_dims(ds[find_var(ds, main) or main])
    hue = default_hue(ds, dims)
    free = [d for d in dims if d != hue and ds.sizes[d] > 1]
    step = stepsize_dim(ds, dims)
    xdim = step if step in free else (free[0] if free else None)
    flows = any(d[0] in ds.variables for d in DISTANCES)
    status_ok = "status" in ds.variables and xdim in ds["status"].dims and (hue is None or hue in ds["status"].dims)
    panels: list[tuple[str, Any] | None] = [
        (f"{label(ds, main)}, every run", lambda ax: draw_series(ax, ds, main, x, None, legend=True)),
        (label(ds, "balancedness_max"), lambda ax: draw_series(ax, ds, "balancedness_max", x, None, legend=False))
        if find_var(ds, "balancedness_max") else None,
        ("GD − flow against the stepsize", lambda ax: flow_distance(ds, "eta", ax, hue=hue))
        if flows and step is not None and step != hue else None,
        (f"final loss against {label(ds, xdim or '')}", lambda ax: scalar_panel(ax, ds, "final_loss", str(xdim), hue))
        if xdim is not None and "final_loss" in ds.variables else None,
        ("GD − flow at equal times", lambda ax: flow_distance(ds, "t", ax, legend=False)) if flows else None,
        ("status of each run", lambda ax: status_map(ax, ds, str(xdim), hue)) if status_ok else None,
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
