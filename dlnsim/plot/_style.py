"""Style, colours and short labels of dlnsim figures; new Figures without pyplot and saving them (`dlnsim.plot`)."""

from __future__ import annotations

import math
import os
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import xarray as xr

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.legend import Legend


#: matplotlib rcParams of dlnsim figures (9 pt text, for a 7 in wide page)
STYLE: dict[str, Any] = {
    "font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "legend.fontsize": 7.5, "xtick.labelsize": 8,
    "ytick.labelsize": 8, "lines.linewidth": 1.3, "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.5,
    "legend.frameon": False, "savefig.dpi": 200, "pdf.fonttype": 42,
}
#: one colour per depth N, the same in every figure
DEPTH_COLORS: dict[int, str] = {1: "#555555", 2: "#0072B2", 3: "#D55E00", 4: "#CC79A7", 5: "#009E73", 6: "#E69F00",
                                7: "#56B4E9"}
#: the time dimension of a gradient-flow run (the one place the plots name it): ``t``, as GD's time t_k along ``k``
FLOW_TIME = "t"
_BAL = r"\|W_{j+1}^TW_{j+1}-W_jW_j^T\|"
#: short axis labels of dlnsim's variables and coordinates (all dimensionless: no units shown)
LABELS: dict[str, str] = {
    "loss": "L", "excess_loss": "L − L*", "grad_norm_sq": "‖∇L‖²", "descent_ratio": "descent ratio",
    "balancedness": f"${_BAL}$", "balancedness_max": rf"${{\rm max}}_j{_BAL}$", "layer_norm_sq": r"$\|W_j\|^2$",
    "product_sv": r"$\sigma_i(W_N\cdots W_1)$", "k": "k", "t": "t", "eta": "η", "eta_factor": "η/η*",
    "eta_k": r"$\eta_k$",
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
#: the statuses and outcomes of dlnsim runs in words (legends and titles)
STATUS_WORDS: dict[str, str] = {
    "converged": "converged", "max_iter": "iteration budget reached", "diverged": "diverged",
    "critical_start": "started at a critical point", "error": "failed", "not_run": "not run",
    "done": "all times reached", "max_steps": "step budget reached", "nonfinite": "overflow",
    "step_underflow": "step size underflow", "not_converged": "not converged", "unstable_limit": "unstable limit",
    "ok": "bracketed", "no_converging_eta": "no converging stepsize", "no_failing_eta": "no failing stepsize",
}
#: a long_name longer than this is not used as an axis label (the variable's name is)
_LONG_NAME_MAX = 40


def status_words(status: Any) -> str:
    """A status or outcome of a dlnsim run in words (``max_iter`` -> "iteration budget reached")."""
    text = str(status)
    return STATUS_WORDS.get(text, text.replace("_", " "))


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


def canonical(name: str) -> str:
    return name[:-2] if name.endswith("_t") and name[:-2] in LABELS else name


def label(obj: xr.Dataset | xr.DataArray, name: str | None = None, *, long_name: bool = True) -> str:
    """The axis label of variable ``name`` of ``obj`` (of the DataArray ``obj`` itself without ``name``).

    The variable's ``label`` attribute when it has one, else `LABELS`, else its ``long_name`` attribute (when
    at most 40 characters and ``long_name`` is True; legends and titles pass False), else the name; units
    other than "1" follow in brackets.  A plain-text attribute with an underscore subscript (``L_final``,
    ``k_stop``, ``η_crit``) gives way to the mathtext of `LABELS` when `LABELS` has one.  The ``eta`` axis of a
    sweep run with ``eta_mode="bound"`` is labelled η/η*.
    """
    if name is None:
        if not isinstance(obj, xr.DataArray):
            raise ValueError("name: give the variable whose label is wanted")
        var: xr.DataArray | None = obj
        name = str(obj.name)
    else:
        var = obj[name] if name in obj.coords or (isinstance(obj, xr.Dataset) and name in obj.variables) else None
    attrs = var.attrs if var is not None else {}
    if name == "eta" and obj.attrs.get("eta_mode") == "bound":  # files written before the eta_factor axis
        text = "η/η*"
    else:
        text = str(attrs.get("label") or "")
        known = LABELS.get(canonical(name))
        if not text or (known is not None and "$" in known and "$" not in text and "_" in text):
            long = str(attrs.get("long_name") or "") if long_name else ""
            text = known or (long if 0 < len(long) <= _LONG_NAME_MAX else name)
    units = str(attrs.get("units", "1"))
    return text if units in ("1", "", "None") else f"{text} [{units}]"


def legend_outside(ax: Axes, **kwargs: Any) -> None:
    """A legend to the right of ``ax``, outside the data (constrained layout makes room for it)."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, **kwargs)


#: the legends of `place_legend` (which may move out of their axes) and their keywords
_MOVABLE: weakref.WeakKeyDictionary[Legend, dict[str, Any]] = weakref.WeakKeyDictionary()
#: the figures whose legends are checked when the outermost `legends_checked` context ends (None: no context)
_PENDING: ContextVar[list[Figure] | None] = ContextVar("dlnsim_plot_pending_legends", default=None)


def place_legend(ax: Axes, **kwargs: Any) -> None:
    """A legend where it covers no data: at matplotlib's best location inside ``ax``, moved to the right of
    ``ax`` (`legend_outside`) when a drawn line or marker lies under it (`fix_legends`).

    Within `legends_checked` the check waits for the end of the outermost context (one draw per figure).
    """
    if "handles" not in kwargs and not ax.get_legend_handles_labels()[0]:
        return
    leg = ax.legend(loc="best", **kwargs)
    _MOVABLE[leg] = kwargs
    fig = ax.get_figure(root=True)
    if fig is None:
        return
    pending = _PENDING.get()
    if pending is None:
        fix_legends(fig)
    elif all(f is not fig for f in pending):
        pending.append(fig)


@contextmanager
def legends_checked() -> Iterator[None]:
    """Check the legends placed by `place_legend` inside this context once, when it ends (nested: the outermost)."""
    if _PENDING.get() is not None:
        yield
        return
    figs: list[Figure] = []
    token = _PENDING.set(figs)
    try:
        yield
    finally:
        _PENDING.reset(token)
    for fig in figs:
        fix_legends(fig)


def fix_legends(fig: Figure) -> None:
    """Draw ``fig`` once (no output) and move each legend of `place_legend` that covers data outside its axes."""
    axes = [ax for ax in fig.axes if ax.get_legend() is not None and ax.get_legend() in _MOVABLE]
    if not axes:
        return
    fig.draw_without_rendering()
    for ax in axes:
        leg = ax.get_legend()
        if leg is not None and covers_data(ax, leg.get_window_extent()):
            kwargs = _MOVABLE.pop(leg)
            leg.remove()
            legend_outside(ax, **kwargs)


def covers_data(ax: Axes, box: Any) -> bool:
    """Whether the display-space box ``box`` contains a vertex of a line of ``ax`` or a point on one of its
    segments (sampled), i.e. whether a legend there hides data."""
    x0, y0, x1, y1 = box.x0, box.y0, box.x1, box.y1
    for line in ax.lines:
        xy = np.asarray(line.get_xydata(), dtype=float)
        if xy.size == 0:
            continue
        with np.errstate(all="ignore"):
            pts = line.get_transform().transform(xy)
        pts = pts[np.all(np.isfinite(pts), axis=1)]
        if pts.shape[0] > 1 and line.get_linestyle() not in ("None", "none", "", " "):
            t = np.linspace(0.0, 1.0, 16)[None, :, None]
            pts = (pts[:-1, None, :] * (1 - t) + pts[1:, None, :] * t).reshape(-1, 2)
        inside = (pts[:, 0] >= x0) & (pts[:, 0] <= x1) & (pts[:, 1] >= y0) & (pts[:, 1] <= y1)
        if inside.any():
            return True
    return False


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
