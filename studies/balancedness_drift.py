"""Balancedness drift: how far GD leaves the balanced set, against the delta Theorem 2.4 allows.

For the Section-5 instance (``dlnsim.paper_setup(N, seed=0)``, balanced W(0)) and N = 2, 3, 5 we run GD with
constant stepsizes from eta* (the bound (5.1)) up to 0.9 eta_crit, where eta_crit is the critical stepsize of
this instance (largest eta that still converges, found first by ``dlnsim.critical_sweep``), and
record the balancedness constant  max_j ||W_{j+1}^T W_{j+1} - W_j W_j^T||  along the run.  Theorem 2.4 (alpha = 0)
keeps it <= delta = M^{2/N}/N^3 for eta <= eta*.

Horizon: every run covers the same flow time T_N = n_ref eta*(N) (n_ref = 10^6, quick 2 x 10^4), i.e.
n_iter = n_ref eta*/eta steps, so runs with different eta are compared at equal times.  Since
D_j(k+1) - D_j(k) = eta^2 (G_{j+1}^T G_{j+1} - G_j G_j^T), the drift after time T is about eta times an
eta-independent integral: we fit log(final drift) against log(eta) and expect slope 1.

Two grids: the critical search over N, then the GD runs over (N, eta_index); a cell is one search or one run.
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

__all__ = ["DEPTHS", "NAME", "cell", "compute", "plot", "run", "summary"]

NAME = "balancedness_drift"
#: ``run(quick, outdir, cells=None, **engine)``: compute, write ``<outdir>/<NAME>.nc`` and the figure
run = functools.partial(C.run_study, NAME)
DEPTHS = (2, 3, 5)
SEED = 0
GTOL = 1e-10
TOP = 0.9  # largest eta of the grid, as a fraction of eta_crit


def cell(N: int, eta_index: int, seed: int, n_ref: int, n_eta: int, crit: dict[str, list[float]]) -> xr.Dataset:
    """One GD run: the ``eta_index``-th stepsize of the grid of this N, for the flow time n_ref eta*.

    ``crit[str(N)]`` is ``[eta*, eta_crit]`` of the instance (from the critical search).
    """
    eta_star, eta_crit = crit[str(N)]
    top = max(TOP * eta_crit / eta_star, 1.0)
    eta = float(np.geomspace(1.0, top, n_eta)[eta_index] * eta_star)
    n_iter = int(np.ceil(n_ref * eta_star / eta))
    grid_k = dlnsim.record_points(n_ref, "log:200")
    record = [int(k) for k in grid_k[grid_k <= n_iter]]
    setup = dlnsim.paper_setup(N, seed)
    bound = dlnsim.stepsize_bound(setup.problem, setup.W0)
    attrs = {"eta_value": eta, "eta_over_bound": eta / bound.eta, "eta_index": eta_index, "run_n_iter": n_iter}
    ds = dlnsim.run_gd(setup.problem, setup.W0, eta, n_iter, record, gtol=GTOL, stop_early=True, bound=bound,
                       keep_weights=True, attrs=attrs)
    # the balancedness where GD ended (an early stop usually falls between two record points)
    W_end = dlnsim.weights_from(ds)
    ok = all(np.all(np.isfinite(W)) for W in W_end)
    ds.attrs["final_drift"] = float(dlnsim.balancedness(W_end).max()) if ok else float("nan")
    return ds.drop_vars("final_weights")


def _cost(point: dict[str, Any]) -> float:
    return (1 + point["N"]) / (1 + point["eta_index"])


LONG_NAMES = {
    "eta_value": "constant stepsize eta", "eta_over_bound": "eta / eta* (eta* = bound (5.1))",
    "run_n_iter": "number of GD steps of the run (n_ref eta*/eta)",
    "status": C.STATUS,
    "stop_iteration": "iteration where the run stopped", "final_loss": "loss at the last evaluated iteration",
    "bound_eta": "eta* = bound (5.1)", "bound_delta": "delta = M^(2/N)/N^3 that Theorem 2.4 allows (alpha = 0)",
    "bound_K": "K_delta", "bound_sigma": "sigma of Prop. 3.4(4)",
}


def compute(quick: bool, *, directory: Path | None = None, executor: Any = "threads", workers: int | None = None,
            scheduler: str | None = None) -> xr.Dataset:
    """The study's Dataset; the cells of its two grids live in ``directory/critical`` and ``directory/runs``
    (None: temporary directories), see `dlnsim.run_grid`."""
    n_ref = 20_000 if quick else 1_000_000
    n_eta = 4 if quick else 9
    crit_iter, crit_rtol = (2000, 0.05) if quick else (5000, 0.02)
    engine = {"executor": executor, "workers": workers, "scheduler": scheduler}
    crit = dlnsim.critical_sweep(C.subdir(directory, "critical"), N=list(DEPTHS), seed=[SEED], n_iter=crit_iter,
                                 rtol=crit_rtol, bracket=(0.05, 0.3), eta_mode="absolute",
                                 progress=sys.stderr.isatty(), **engine)
    C.check_cells(crit, f"{NAME} critical")
    per_N = {str(N): [float(crit["eta_star"].sel(N=N, seed=SEED)), float(crit["eta_crit"].sel(N=N, seed=SEED))]
             for N in DEPTHS}
    grid = C.grid(cell, {"N": list(DEPTHS), "eta_index": list(range(n_eta))},
                  {"seed": SEED, "n_ref": n_ref, "n_eta": n_eta, "crit": per_N}, directory=C.subdir(directory, "runs"),
                  label=NAME, cost=_cost, **engine)
    scalars: dict[str, tuple[str, ...] | None] = {k: None for k in (
        "eta_value", "eta_over_bound", "run_n_iter", "status", "stop_iteration", "final_loss", "final_drift")}
    scalars.update({k: ("N",) for k in ("bound_eta", "bound_delta", "bound_K", "bound_sigma")})
    ds = C.archive_layout(grid, ["balancedness_max", "loss", "t", "layer_norm_sq"], scalars, LONG_NAMES)
    C.describe(ds, {"N": C.DEPTH, "eta_index": "index of the stepsize on the grid of this N"})
    ds["final_drift"].attrs["long_name"] = ("balancedness constant max_j ||W_{j+1}^T W_{j+1} - W_j W_j^T|| where "
                                            "GD ended (n_iter or the early stop)")
    ds["final_drift_over_delta"] = (ds["final_drift"] / ds["bound_delta"]).assign_attrs(
        units="1", long_name="final balancedness constant / delta of Theorem 2.4")
    ds["max_drift_over_delta"] = (np.maximum(ds["balancedness_max"].max("k"), ds["final_drift"])
                                  / ds["bound_delta"]).assign_attrs(
        units="1", long_name="max over the records and the end of the run of the balancedness constant / delta")
    slopes, inters = [], []
    for N in DEPTHS:
        s, b = C.fit_loglog(ds["eta_value"].sel(N=N), ds["final_drift"].sel(N=N))
        slopes.append(s)
        inters.append(b)
    ds["drift_slope"] = xr.DataArray(slopes, dims="N", attrs={
        "units": "1", "long_name": "least-squares slope of log10(final drift) against log10(eta)"})
    ds["drift_intercept"] = xr.DataArray(inters, dims="N", attrs={
        "units": "1", "long_name": "intercept of that fit (log10 drift at eta = 1)"})
    ds["eta_crit"] = xr.DataArray(crit["eta_crit"].sel(seed=SEED).values, dims="N", attrs={
        "units": "1", "long_name": "critical constant stepsize of the instance (dlnsim.critical_sweep)"})
    ds["flow_time"] = xr.DataArray(n_ref * ds["bound_eta"].values, dims="N", attrs={
        "units": "1", "long_name": "flow time T = n_ref eta* covered by every run of this N"})
    ds.attrs.update(C.study_attrs(NAME, quick, "balancedness drift of GD from a balanced start against the delta "
                                               "of Theorem 2.4, Section-5 instance, N = 2, 3, 5"))
    ds.attrs.update({
        "seed": SEED,
        "setup_call": f"dlnsim.paper_setup(N, seed={SEED})",
        "n_ref": n_ref,
        "horizon": "n_iter = ceil(n_ref eta*/eta): equal flow time T = n_ref eta* for every eta of one N",
        "eta_grid": f"eta* x geomspace(1, {TOP} eta_crit/eta*, {n_eta})",
        "critical_search": f"dlnsim.critical_sweep(N, seed={SEED}, n_iter={crit_iter}, rtol={crit_rtol}, "
                           "bracket=(0.05, 0.3), eta_mode='absolute'); " + str(crit.attrs.get("criterion", "")),
        "record": "the log-spaced points of record_points(n_ref, 'log:200') up to n_iter, and n_iter",
        "gtol": GTOL,
        "stop_early": 1,
    })
    return ds


def summary(ds: xr.Dataset) -> list[str]:
    """Headline numbers: per depth the drift at the ends of the stepsize grid against delta, and the slope."""
    lines = []
    for N, s in C.by_depth(ds):
        d0, d1 = (float(s["final_drift"].isel(eta_index=i)) for i in (0, -1))
        lines.append(
            f"N={N}: delta={float(s.bound_delta):.3g}; final drift {d0:.2e} at eta* ({d0 / float(s.bound_delta):.1e} "
            f"delta) to {d1:.2e} at {float(s.eta_over_bound.isel(eta_index=-1)):.0f} eta* "
            f"({d1 / float(s.bound_delta):.1e} delta); slope {float(s.drift_slope):.2f}; "
            f"eta_crit/eta* = {float(s.eta_crit / s.bound_eta):.0f}")
    return lines


def plot(ds: xr.Dataset, outdir: Path) -> list[Path]:
    plt = C.pyplot()
    from matplotlib import cm, colors

    fig, axes = plt.subplots(2, 2, figsize=(7.0, 5.4), constrained_layout=True)
    mults = ds["eta_over_bound"].values
    norm = colors.LogNorm(vmin=1.0, vmax=float(np.nanmax(mults)))
    cmap = plt.get_cmap("viridis")
    for ax, N, letter in zip(axes.ravel()[:3], ds["N"].values, "abc", strict=True):
        s = ds.sel(N=N)
        for i in s["eta_index"].values:
            r = s.sel(eta_index=i)
            k, b = C.with_end(r, "balancedness_max", "final_drift")
            ax.loglog(k[k >= 1], b[k >= 1], color=cmap(norm(float(r["eta_over_bound"]))), lw=1.0)
        delta = float(s["bound_delta"])
        ax.axhline(delta, color="k", ls="--", lw=1.0, label=rf"$\delta$ of Thm 2.4 = {delta:.3g}")
        ax.set_title(f"({letter}) N = {N}: drift along GD, T = {float(s['flow_time']):.3g}", loc="left")
        ax.set_xlabel("iteration $k$")
        ax.set_ylabel(r"$\max_j\|W_{j+1}^TW_{j+1}-W_jW_j^T\|$")
        lo = float(s["balancedness_max"].where(s["k"] >= 1).min())
        ax.set_ylim(lo / 3, 10 * max(delta, float(s["balancedness_max"].max())))
        ax.legend(loc="lower right")
    sm = cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=axes[0, :], label=r"$\eta/\eta^*$", shrink=0.9, pad=0.01)
    ax = axes[1, 1]
    for N in ds["N"].values:
        s = ds.sel(N=N)
        x = s["eta_over_bound"].values
        y = s["final_drift_over_delta"].values
        slope = float(s["drift_slope"])
        ax.loglog(x, y, "o", ms=3.5, color=C.depth_color(N), label=f"N={N}: slope {slope:.2f}")
        fit = 10 ** (float(s["drift_intercept"]) + slope * np.log10(x * float(s["bound_eta"])))
        ax.loglog(x, fit / float(s["bound_delta"]), "-", color=C.depth_color(N), lw=0.9)
    ax.axhline(1.0, color="k", ls="--", lw=1.0, label=r"drift $=\delta$")
    ax.set_title(r"(d) final drift / $\delta$ against $\eta/\eta^*$ (fit: drift $\propto\eta^{\rm slope}$)",
                 loc="left")
    ax.set_xlabel(r"stepsize $\eta/\eta^*$")
    ax.set_ylabel(r"final drift / $\delta$")
    ax.legend(loc="upper left")
    fig.suptitle("Balancedness drift of GD from a balanced start, Section-5 instance (seed "
                 f"{int(ds.attrs['seed'])}), N = 2, 3, 5\n"
                 r"$\eta$ from $\eta^*$ to $0.9\,\eta_{\rm crit}$ (colour); all runs of one N cover the same "
                 "flow time T", fontsize=9)
    return C.save_figure(fig, outdir, NAME)
