"""Style, colours and short labels of dlnsim figures; new Figures without pyplot and saving them (`dlnsim.plot`)."""

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
    "product_sv": r"$\sigma_i(W_N\cdots W_1)$", "k": "k", "t": "t", "time": "t", "eta": "η", "eta_factor": "η/η*",
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


def label(obj: xr.Dataset | xr.DataArray, name: str | None = None) -> str:
    """The short axis label of variable ``name`` of ``obj`` (of the DataArray ``obj`` itself without ``name``).

    The variable's ``label`` attribute when it has one, else `LABELS`, else the name; units other than "1"
    follow in brackets.  A plain-text attribute with an underscore subscript (``L_final``, ``k_stop``, ``η_crit``)
    gives way to the mathtext of `LABELS` when `LABELS` has one.  The ``eta`` axis of a sweep run with
    ``eta_mode="bound"`` is labelled η/η*.
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
            text = known or name
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
