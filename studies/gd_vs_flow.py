"""GD against the gradient flow it discretises: distance at equal times as eta -> 0, for N = 2, 3, 5.

On the Section-5 instance (``dlnsim.paper_setup(N, seed=0)``, hidden widths compressed to 2:
`_common.compressed_paper`; GD and both flows stay in the initial hidden subspaces, so the distances between
factor tuples and products are those of the paper's widths) we run GD with constant stepsizes
eta = m eta* (m = 32, 16, 8, 4, 2, 1; eta* the bound (5.1)) for n_iter = T/eta steps (flow time T = 5) and
compare with

* the factor gradient flow (2.2) dW_j/dt = -grad_{W_j} L^N, and
* the modified flow dW/dt = -grad L - (eta/2) Hess L grad L (first-order backward error analysis),

both integrated by dlnsim's DOPRI5 (rtol 1e-11, atol 1e-13) and evaluated at the GD times t_k = k eta
(``dlnsim.compare_flow``).  The distance is ||W_GD(k) - W_flow(t_k)||_F over
the factor tuple; we take its maximum over the records in [0, T] and fit log(distance) against log(eta): the
theory of one-step methods predicts slope 1 for the plain flow (GD is forward Euler) and slope 2 for the
modified flow.  The grid is (N, multiple); a cell is one GD run with its flows.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

import dlnsim
import dlnsim.plot as P

from . import _common as C

__all__ = ["DEPTHS", "NAME", "cell", "compute", "plot", "run", "summary"]

NAME = "gd_vs_flow"
#: ``run(quick, outdir, cells=None, **engine)``: compute, write ``<outdir>/<NAME>.nc`` and the figure
run = functools.partial(C.run_study, NAME)
DEPTHS = (2, 3, 5)
SEED = 0
RTOL, ATOL = 1e-11, 1e-13
FLOWS = ("factor", "modified")


def cell(N: int, multiple: float, seed: int, T: float, record: str) -> xr.Dataset:
    """One GD run with stepsize ``multiple`` eta* for the flow time T, and the flows at its times."""
    problem, W0 = C.compressed_paper(N, seed)
    bound = dlnsim.stepsize_bound(problem, W0)
    eta = multiple * bound.eta
    n_iter = round(T / eta)
    return dlnsim.compare_flow(problem, W0, eta, n_iter, record=record, kind=FLOWS,
                               tolerances=dlnsim.Tolerances(rtol=RTOL, atol=ATOL, max_steps=10_000_000), bound=bound,
                               attrs={"eta_value": eta, "eta_over_bound": multiple, "run_n_iter": n_iter})


def _cost(point: dict[str, Any]) -> float:
    return 1.0 / point["multiple"] * (point["N"] + 1) * 1e4 + 2e4


LONG_NAMES = {
    "eta_value": "constant stepsize eta = multiple x eta*", "run_n_iter": "GD steps (T/eta)",
    "status": "GD run status", "final_loss": "GD loss at the end", "bound_eta": "eta* = bound (5.1)",
    "flow_factor_n_steps": "accepted DOPRI5 steps of the factor flow",
    "flow_modified_n_steps": "accepted DOPRI5 steps of the modified flow",
    "flow_factor_status": "integrator status of the factor flow",
    "flow_modified_status": "integrator status of the modified flow",
}
SERIES = ("loss", "t", "flow_distance", "modified_flow_distance", "flow_product_distance",
          "modified_flow_product_distance", "flow_loss")


def compute(quick: bool, *, directory: Path | None = None, executor: Any = "threads", workers: int | None = None,
            scheduler: str | None = None) -> xr.Dataset:
    """The study's Dataset; the cells live in ``directory`` (None: a temporary one), see `dlnsim.run_grid`."""
    multiples = [32.0, 16.0, 8.0] if quick else [32.0, 16.0, 8.0, 4.0, 2.0, 1.0]
    T = 2.0 if quick else 5.0
    record = "log:100"
    grid = C.grid(cell, {"N": list(DEPTHS), "multiple": multiples}, {"seed": SEED, "T": T, "record": record},
                  directory=directory, label=NAME, cost=_cost, executor=executor, workers=workers, scheduler=scheduler)
    scalars: dict[str, tuple[str, ...] | None] = {k: None for k in (
        "eta_value", "run_n_iter", "status", "final_loss", "flow_factor_n_steps", "flow_modified_n_steps",
        "flow_factor_status", "flow_modified_status")}
    scalars["bound_eta"] = ("N",)
    ds = C.archive_layout(grid, SERIES, scalars, LONG_NAMES)
    ds = ds.assign_coords(flow=("flow", list(FLOWS)))
    C.describe(ds, {"N": C.DEPTH, "multiple": "stepsize as a multiple of eta* (5.1)",
                    "flow": "compared flow: factor (2.2) or modified (O(eta^2))"})
    sup = xr.concat([ds["flow_distance"].max("k"), ds["modified_flow_distance"].max("k")], dim="flow")
    ds["sup_distance"] = sup.transpose("N", "multiple", "flow").assign_attrs(
        units="1", long_name="max over the records in [0, T] of ||W_GD(k) - W_flow(t_k)||_F")
    slopes = np.full((len(DEPTHS), len(FLOWS)), np.nan)
    inters = np.full_like(slopes, np.nan)
    for i, N in enumerate(DEPTHS):
        for j, f in enumerate(FLOWS):
            slopes[i, j], inters[i, j] = C.fit_loglog(ds["eta_value"].sel(N=N), ds["sup_distance"].sel(N=N, flow=f))
    ds["slope"] = xr.DataArray(slopes, dims=("N", "flow"), attrs={
        "units": "1", "long_name": "least-squares slope of log10(sup distance) against log10(eta) "
                                   "(expected: 1 factor flow, 2 modified flow)"})
    ds["intercept"] = xr.DataArray(inters, dims=("N", "flow"), attrs={
        "units": "1", "long_name": "intercept of that fit (log10 distance at eta = 1)"})
    ds.attrs.update(C.study_attrs(NAME, quick, "distance at equal times between GD and the factor gradient flow / "
                                               "the modified flow as eta -> 0, Section-5 instance, N = 2, 3, 5"))
    ds.attrs.update({
        "seed": SEED, "setup_call": f"dlnsim.paper_setup(N, seed={SEED}), {C.COMPRESSED}", "flow_time": T,
        "multiples": multiples, "record": record, "flow_rtol": RTOL, "flow_atol": ATOL,
        "compare_call": "dlnsim.compare_flow(problem, W0, eta, round(T/eta), record=record, "
                        "kind=('factor', 'modified'), tolerances=dlnsim.Tolerances(rtol, atol, max_steps=10**7))",
    })
    return ds


def summary(ds: xr.Dataset) -> list[str]:
    """Headline numbers: per depth the fitted slopes and the distances at the smallest stepsize."""
    return [f"N={N}: slope factor flow {float(s.slope.sel(flow='factor')):.3f}, modified flow "
            f"{float(s.slope.sel(flow='modified')):.3f}; sup distance at eta* x {float(s.multiple[-1]):g}: "
            f"{float(s.sup_distance.isel(multiple=-1).sel(flow='factor')):.2e} (factor), "
            f"{float(s.sup_distance.isel(multiple=-1).sel(flow='modified')):.2e} (modified)"
            for N, s in C.by_depth(ds)]


def plot(ds: xr.Dataset, outdir: Path) -> list[Path]:
    with P.style():
        fig, axes = P.subplots(1, 3, figsize=(7.0, 3.6))
        axes = axes.ravel()
        ax = axes[0]
        for N in ds["N"].values:
            eta = ds["eta_value"].sel(N=N).values
            for f, marker, ls, mfc in (("factor", "o", "-", None), ("modified", "s", "--", "white")):
                y = ds["sup_distance"].sel(N=N, flow=f).values
                s = float(ds["slope"].sel(N=N, flow=f))
                b = float(ds["intercept"].sel(N=N, flow=f))
                color = P.depth_color(N)
                ax.loglog(eta, y, marker, color=color, mfc=mfc or color, ms=3.5)
                ax.loglog(eta, 10**b * eta**s, ls, color=color, lw=0.9, label=f"N={N} {f}: slope {s:.2f}")
        ax.set_xlabel(r"stepsize $\eta$")
        ax.set_ylabel(r"$\max_{t_k\leq T}\|W_{\rm GD}(k)-W(t_k)\|_F$")
        ax.set_title("(a) distance to the flows", loc="left")
        fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=3, fontsize=7,
                   title="(a): fitted power laws, distance $\\propto\\eta^{\\rm slope}$ "
                         "(solid/filled: factor flow, dashed/open: modified flow)", title_fontsize=7)
        for ax, var, power, title in ((axes[1], "flow_distance", 1, "(b) factor flow (2.2)"),
                                      (axes[2], "modified_flow_distance", 2, "(c) modified flow")):
            for N in ds["N"].values:
                for m in ds["multiple"].values:
                    r = ds.sel(N=N, multiple=m)
                    ok = np.isfinite(r[var].values) & (r["k"].values > 0)
                    eta = float(r["eta_value"])
                    ax.plot(r["t"].values[ok], r[var].values[ok] / eta**power, color=P.depth_color(N), lw=0.8,
                            alpha=0.4 + 0.6 * (m == ds["multiple"].values.min()),
                            label=f"N={N}" if m == ds["multiple"].values.min() else None)
            ax.set_xlabel(r"flow time $t_k=k\eta$")
            ax.set_ylabel(rf"distance / $\eta^{power}$" if power > 1 else r"distance / $\eta$")
            ax.set_title(title, loc="left")
            ax.legend(loc="upper left", fontsize=7)
        fig.suptitle(f"GD vs gradient flow at equal times, Section-5 instance (seed {int(ds.attrs['seed'])}), "
                     f"flow time T = {float(ds.attrs['flow_time']):g}\n$\\eta/\\eta^*\\in$ "
                     f"{{{', '.join(f'{m:g}' for m in ds['multiple'].values)}}}; "
                     "in (b) and (c) the curves of all $\\eta$ (faint) collapse onto the smallest (solid)", fontsize=9)
    return C.save_figure(fig, outdir, NAME)
