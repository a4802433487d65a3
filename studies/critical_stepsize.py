"""Critical stepsize against the theorem: how conservative is the bound (5.1), and how does that grow with N?

For N = 2..6 and 12 seeds of the Section-5 instance (``dlnsim.paper_setup(N, seed)``), find the critical constant
stepsize eta_crit, the largest eta for which GD converges, by bisection (``dlnsim.critical_sweep``):
a run *converges* when it does not diverge and its final excess loss is <= 1e-3 x the initial one within
n_iter = 5000 steps.  Compare with eta* of (5.1) on the same instance: the ratio eta_crit/eta* measures how
conservative the theorem is.  The paper's construction gives eta* ~ N^-3 (delta = M^{2/N}/N^3); we fit power
laws in N to eta*, eta_crit and their ratio.  The grid is (N, seed); a cell is one search, the sweep's own
cell (``dlnsim.critical_sweep``).
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

import dlnsim

from . import _common as C

__all__ = ["NAME", "compute", "plot", "run", "summary"]

NAME = "critical_stepsize"
#: ``run(quick, outdir, cells=None, **engine)``: compute, write ``<outdir>/<NAME>.nc`` and the figure
run = functools.partial(C.run_study, NAME)
BRACKET = (0.05, 0.3)
LOSS_TOL = 1e-3


def compute(quick: bool, *, directory: Path | None = None, executor: Any = "threads", workers: int | None = None,
            scheduler: str | None = None) -> xr.Dataset:
    """The study's Dataset; the cells live in ``directory`` (None: a temporary one), see `dlnsim.critical_sweep`."""
    if quick:
        depths, seeds, n_iter, rtol = [2, 3, 4], [0, 1], 2000, 0.05
    else:
        depths, seeds, n_iter, rtol = [2, 3, 4, 5, 6], list(range(12)), 5000, 0.02
    if directory is not None:
        Path(directory).parent.mkdir(parents=True, exist_ok=True)
    ds = dlnsim.critical_sweep(directory, N=depths, seed=seeds, n_iter=n_iter, rtol=rtol, loss_tol=LOSS_TOL,
                               bracket=BRACKET, eta_mode="absolute", executor=executor, workers=workers,
                               scheduler=scheduler, progress=sys.stderr.isatty())
    C.check_cells(ds, NAME)
    # the names of this study's file: bound_eta as the other bound constants; the sweep's bookkeeping of a
    # finished cell (status) and the widths (those of paper_setup(N)) are not kept
    ds = ds.rename({"eta_bound": "bound_eta"}).drop_vars(["status", "widths"], errors="ignore")
    ds.attrs = {k: v for k, v in ds.attrs.items() if k != "title"}
    for v in ds.variables.values():
        v.attrs.setdefault("units", "1")
    fits = {}
    for name in ("eta_star", "eta_crit", "ratio"):
        for stat in ("median", "min", "max"):
            ds[f"{name}_{stat}"] = xr.DataArray(getattr(ds[name], stat)("seed").values, dims="N",
                                                attrs={"units": "1", "long_name": f"{stat} over seeds of {name}"})
        x = np.broadcast_to(ds["N"].values[:, None], ds[name].shape)
        fits[name] = C.fit_loglog(x, ds[name].values)
    ds = ds.assign_coords(quantity=("quantity", list(fits)))
    C.describe(ds, {"quantity": "fitted quantity"})
    ds["fit_exponent"] = xr.DataArray([fits[q][0] for q in fits], dims="quantity", attrs={
        "units": "1", "long_name": "p of the least-squares power law quantity ~ c N^p over all (N, seed)"})
    ds["fit_log10_prefactor"] = xr.DataArray([fits[q][1] for q in fits], dims="quantity", attrs={
        "units": "1", "long_name": "log10 c of that power law"})
    ds.attrs.update(C.study_attrs(NAME, quick, "critical constant stepsize of GD (bisection) against the bound (5.1), "
                                               "Section-5 instances, by depth N and seed"))
    ds.attrs.update({
        "seeds": seeds,
        "depths": depths,
        "setup_call": "dlnsim.paper_setup(N, seed)",
        "search_call": f"dlnsim.critical_sweep(N={depths}, seed={seeds}, n_iter={n_iter}, rtol={rtol}, "
                       f"loss_tol={LOSS_TOL}, bracket={BRACKET}, eta_mode='absolute')",
        "n_iter": n_iter,
        "rtol": rtol,
        "loss_tol": LOSS_TOL,
    })
    return ds


def summary(ds: xr.Dataset) -> list[str]:
    """Headline numbers: per depth eta*, eta_crit and their ratio over the seeds; the power laws."""
    fit = ", ".join(f"{q} ~ N^{float(ds.fit_exponent.sel(quantity=q)):.2f}" for q in ds["quantity"].values)
    return [f"N={N}: eta* median {float(s.eta_star_median):.3g}, eta_crit median {float(s.eta_crit_median):.3g}, "
            f"eta_crit/eta* median {float(s.ratio_median):.0f} (range {float(s.ratio_min):.0f}-"
            f"{float(s.ratio_max):.0f}); searches ok: {int(np.sum(s.search_status.values == 'ok'))}/{s.sizes['seed']}"
            for N, s in C.by_depth(ds)] + [f"power laws: {fit}"]


def plot(ds: xr.Dataset, outdir: Path) -> list[Path]:
    plt = C.pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(7.0, 3.0), constrained_layout=True)
    Ns = ds["N"].values.astype(float)
    n_seed = ds.sizes["seed"]
    jitter = np.linspace(-0.02, 0.02, n_seed)
    fit = {str(q): (float(ds["fit_exponent"].sel(quantity=q)), float(ds["fit_log10_prefactor"].sel(quantity=q)))
           for q in ds["quantity"].values}
    for name, color, marker, label in (("eta_crit", "#D55E00", "o", r"$\eta_{\rm crit}$ (bisection)"),
                                       ("eta_star", "#0072B2", "s", r"$\eta^*$ (5.1)")):
        vals = ds[name].values
        ax1.scatter((Ns[:, None] * (1 + jitter[None, :])).ravel(), vals.ravel(), s=7, color=color, marker=marker,
                    alpha=0.5, linewidths=0)
        p, c = fit[name]
        ax1.loglog(Ns, 10**c * Ns**p, "-", color=color, label=rf"{label}: fit $\propto N^{{{p:.2f}}}$")
    ref = float(ds["eta_star_median"].isel(N=0)) * (Ns / Ns[0]) ** -3.0
    ax1.loglog(Ns, ref, ":", color="k", label=r"$\propto N^{-3}$ (through median $\eta^*$ at N=2)")
    ax1.set_xlabel("depth $N$")
    ax1.set_ylabel(r"stepsize $\eta$")
    ax1.set_title(f"(a) critical stepsize and bound, {n_seed} seeds per N", loc="left")
    ax1.legend(loc="center left")
    vals = ds["ratio"].values
    ax2.scatter((Ns[:, None] * (1 + jitter[None, :])).ravel(), vals.ravel(), s=7, color="#009E73", alpha=0.6,
                linewidths=0, label="one seed")
    ax2.loglog(Ns, ds["ratio_median"].values, "o", color="k", ms=4, label="median")
    p, c = fit["ratio"]
    ax2.loglog(Ns, 10**c * Ns**p, "-", color="#009E73", label=rf"fit $\propto N^{{{p:.2f}}}$")
    ax2.set_xlabel("depth $N$")
    ax2.set_ylabel(r"$\eta_{\rm crit}/\eta^*$")
    ax2.set_title("(b) how conservative the bound is", loc="left")
    ax2.legend(loc="upper left")
    for ax in (ax1, ax2):
        from matplotlib.ticker import FixedLocator, NullLocator

        ax.xaxis.set_major_locator(FixedLocator(Ns))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([f"{int(n)}" for n in Ns])
    fig.suptitle(f"Critical constant stepsize vs the bound (5.1), Section-5 instances\nconverged = final excess "
                 f"loss $\\leq 10^{{-3}}\\times$ initial within {int(ds.attrs['n_iter'])} steps", fontsize=9)
    return C.save_figure(fig, outdir, NAME)
