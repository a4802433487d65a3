"""Balancedness drift: how far GD leaves the balanced set, against the delta Theorem 2.4 allows.

For the Section-5 instance (``dlnsim.paper_setup(N, seed=0)``, balanced W(0), hidden widths compressed to 2:
`_common.compressed_paper`, the same balancedness) and N = 2, 3, 5 we run GD with constant stepsizes from eta*
(the bound (5.1)) up to 0.95 eta_crit and record the balancedness constant
max_j ||W_{j+1}^T W_{j+1} - W_j W_j^T|| along the run.  eta_crit is the critical stepsize of this instance from
``dlnsim.critical_sweep``: the largest constant stepsize found (bisection, rtol) whose run reaches 1e-3 of the
initial excess loss, and half the lowest saddle's, within n steps without diverging.  Theorem 2.4 (alpha = 0) keeps
the drift <= delta = M^{2/N}/N^3 for eta <= eta*.  The stepsizes: 9 geometric from eta* to 0.9 eta_crit, and 0.6,
0.75, 0.95 eta_crit.

Horizon: every run stops once its excess loss is <= LTOL = 1e-10 of the initial one (the loss test of
`dlnsim.run_gd`; capped at the flow time T_MAX = 200).  After that the drift can change by at most
eta (L - L*)/min descent ratio (the one-step identity D_j(k+1) - D_j(k) = eta^2 (G_{j+1}^T G_{j+1} - G_j G_j^T)
summed over the rest of a monotone run), a bound stored per run (``drift_change_bound``): the final drift is
the drift of the limit.  The runs stop at nearly the same flow time t = k eta (``stop_time``).

Since the drift after a fixed flow time is about eta times an eta-independent integral, log(final drift)
against log(eta) should have slope 1 for small eta.  The fit uses only the small-eta end where that holds:
the longest run of stepsizes from eta* upward on which one straight line (log-log) passes within LIN_TOL = 2 %
of every point (``lin_*``).  Above it the local slopes between neighbouring stepsizes (``local_slope``) show
how the drift steepens towards eta_crit.

Two grids: the critical search over N, then the GD runs over (N, eta_index); a cell is one search or one run.
"""

from __future__ import annotations

import functools
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

import dlnsim
import dlnsim.plot as P

from . import _common as C

__all__ = ["DEPTHS", "NAME", "cell", "compute", "linear_range", "plot", "run", "stepsizes", "summary"]

NAME = "balancedness_drift"
#: ``run(quick, outdir, cells=None, **engine)``: compute, write ``<outdir>/<NAME>.nc`` and the figure
run = functools.partial(C.run_study, NAME)
DEPTHS = (2, 3, 5)
SEED = 0
GTOL = 1e-10
LTOL = 1e-10
T_MAX = 200.0
TOP = 0.9  # largest eta of the geometric grid, as a fraction of eta_crit
EXTRA = (0.6, 0.75, 0.95)  # further stepsizes near eta_crit, as fractions of it
LIN_TOL = 0.02  # relative distance of every point of the small-eta fit from its line


def stepsizes(eta_star: float, eta_crit: float, n_geom: int) -> np.ndarray:
    """The stepsizes of one depth: ``n_geom`` geometric from eta* to TOP eta_crit, and EXTRA x eta_crit, sorted."""
    top = max(TOP * eta_crit / eta_star, 1.0)
    extra = [f * eta_crit for f in EXTRA if f * eta_crit > eta_star]
    return np.sort(np.concatenate([np.geomspace(1.0, top, n_geom) * eta_star, extra]))


def cell(N: int, eta_index: int, seed: int, n_geom: int, crit: dict[str, list[float]]) -> xr.Dataset:
    """One GD run: the ``eta_index``-th stepsize of the grid of this N, until the loss test holds.

    ``crit[str(N)]`` is ``[eta*, eta_crit]`` of the instance (from the critical search).
    """
    eta_star, eta_crit = crit[str(N)]
    eta = float(stepsizes(eta_star, eta_crit, n_geom)[eta_index])
    n_iter = int(np.ceil(T_MAX / eta))
    problem, W0 = C.compressed_paper(N, seed)
    bound = dlnsim.stepsize_bound(problem, W0)
    attrs = {"eta_value": eta, "eta_over_bound": eta / bound.eta, "eta_over_crit": eta / eta_crit,
             "eta_index": eta_index, "run_n_iter": n_iter}
    ds = dlnsim.run_gd(problem, W0, eta, n_iter, record=dlnsim.Record("log:200", final_weights=True),
                       stop=dlnsim.Stop(gtol=GTOL, ltol=LTOL, early=True), bound=bound, attrs=attrs)
    # the balancedness where GD ended (an early stop usually falls between two record points)
    W_end = dlnsim.weights_from(ds)
    ok = all(np.all(np.isfinite(W)) for W in W_end)
    ds.attrs["final_drift"] = float(dlnsim.balancedness(W_end).max()) if ok else float("nan")
    ds.attrs["stop_time"] = eta * int(ds["stop_iteration"])
    ratio = float(ds["min_descent_ratio"])
    excess = float(ds["final_excess_loss"])
    ds.attrs["drift_change_bound"] = eta * excess / ratio if ratio > 0 else float("nan")
    return ds.drop_vars("final_weights")


def _cost(point: dict[str, Any]) -> float:
    return (1 + point["N"]) / (1 + point["eta_index"]) ** 2


def linear_range(eta: Any, drift: Any, tol: float = LIN_TOL) -> int:
    """The number n >= 2 of stepsizes from the smallest on which one least-squares line of log drift against
    log eta passes within a factor 1 + ``tol`` of every point (the largest such n)."""
    x, y = np.log(np.asarray(eta, dtype=float)), np.log(np.asarray(drift, dtype=float))
    n_ok = 2
    for n in range(3, x.size + 1):
        slope, icpt = np.polyfit(x[:n], y[:n], 1)
        if np.max(np.abs(y[:n] - (slope * x[:n] + icpt))) > math.log1p(tol):
            break
        n_ok = n
    return n_ok


LONG_NAMES = {
    "eta_value": "constant stepsize eta", "eta_over_bound": "eta / eta* (eta* = bound (5.1))",
    "eta_over_crit": "eta / eta_crit",
    "run_n_iter": "largest number of GD steps of the run (flow time T_MAX / eta)",
    "status": C.STATUS,
    "stop_iteration": "iteration where the run stopped", "final_loss": "loss at the last evaluated iteration",
    "stop_time": "flow time t = k eta where the run stopped",
    "drift_change_bound": "eta (L - L*)/min descent ratio where the run stopped: bound on any further change of "
                          "the balancedness constant along a monotone run",
    "bound_eta": "eta* = bound (5.1)", "bound_delta": "delta = M^(2/N)/N^3 that Theorem 2.4 allows (alpha = 0)",
    "bound_K": "K_delta", "bound_sigma": "sigma of Prop. 3.4(4)",
}


def compute(quick: bool, *, directory: Path | None = None, executor: Any = "threads", workers: int | None = None,
            scheduler: str | None = None) -> xr.Dataset:
    """The study's Dataset; the cells of its two grids live in ``directory/critical`` and ``directory/runs``
    (None: temporary directories), see `dlnsim.run_grid`."""
    n_geom = 4 if quick else 9
    crit_iter, crit_rtol = (2000, 0.05) if quick else (5000, 0.02)
    engine = {"executor": executor, "workers": workers, "scheduler": scheduler}
    crit = dlnsim.critical_sweep(C.subdir(directory, "critical"), N=list(DEPTHS), seed=[SEED], n_iter=crit_iter,
                                 rtol=crit_rtol, bracket=(0.05, 0.3), setup=C.compressed_paper,
                                 engine=dlnsim.Engine(progress=sys.stderr.isatty(), **engine))
    C.check_cells(crit, f"{NAME} critical")
    per_N = {str(N): [float(crit["eta_star"].sel(N=N, seed=SEED)), float(crit["eta_crit"].sel(N=N, seed=SEED))]
             for N in DEPTHS}
    n_eta = min(len(stepsizes(*per_N[str(N)], n_geom)) for N in DEPTHS)
    grid = C.grid(cell, {"N": list(DEPTHS), "eta_index": list(range(n_eta))},
                  {"seed": SEED, "n_geom": n_geom, "crit": per_N}, directory=C.subdir(directory, "runs"),
                  label=NAME, cost=_cost, **engine)
    scalars: dict[str, tuple[str, ...] | None] = {k: None for k in (
        "eta_value", "eta_over_bound", "eta_over_crit", "run_n_iter", "status", "stop_iteration", "stop_time",
        "final_loss", "final_drift", "drift_change_bound")}
    scalars.update({k: ("N",) for k in ("bound_eta", "bound_delta", "bound_K", "bound_sigma")})
    ds = C.archive_layout(grid, ["balancedness_max", "loss", "t", "layer_norm_sq"], scalars, LONG_NAMES)
    C.describe(ds, {"N": C.DEPTH, "eta_index": "index of the stepsize on the grid of this N (ascending)"})
    ds["final_drift"].attrs["long_name"] = ("balancedness constant max_j ||W_{j+1}^T W_{j+1} - W_j W_j^T|| where "
                                            "GD ended (the loss test, or n_iter)")
    ds["final_drift_over_delta"] = (ds["final_drift"] / ds["bound_delta"]).assign_attrs(
        units="1", long_name="final balancedness constant / delta of Theorem 2.4")
    ds["max_drift_over_delta"] = (np.maximum(ds["balancedness_max"].max("k"), ds["final_drift"])
                                  / ds["bound_delta"]).assign_attrs(
        units="1", long_name="max over the records and the end of the run of the balancedness constant / delta")
    # the small-eta fit, only where one line holds; the local slopes everywhere
    lin = {"lin_n": [], "lin_slope": [], "lin_intercept": [], "lin_eta_max": [], "lin_max_residual": []}
    local = []
    for N in DEPTHS:
        eta, drift = ds["eta_value"].sel(N=N).values, ds["final_drift"].sel(N=N).values
        n = linear_range(eta, drift)
        slope, icpt = np.polyfit(np.log10(eta[:n]), np.log10(drift[:n]), 1)
        resid = np.abs(np.log10(drift[:n]) - (slope * np.log10(eta[:n]) + icpt)).max()
        for key, v in zip(lin, (n, slope, icpt, eta[n - 1], 10**resid - 1), strict=True):
            lin[key].append(v)
        local.append(C.local_exponents(eta, drift))
    names = {"lin_n": "number of stepsizes (from eta*) in the small-eta fit: the longest run on which one line "
                      f"passes within {LIN_TOL:.0%} of every point",
             "lin_slope": "slope of log10(final drift) against log10(eta) over the small-eta fit",
             "lin_intercept": "intercept of that fit (log10 drift at eta = 1)",
             "lin_eta_max": "largest stepsize in the small-eta fit",
             "lin_max_residual": "largest relative distance of a point of the small-eta fit from its line"}
    for key, values in lin.items():
        ds[key] = xr.DataArray(np.asarray(values), dims="N", attrs={"units": "1", "long_name": names[key]})
    ds["lin_n"] = ds["lin_n"].astype(np.int64)
    ds["local_slope"] = xr.DataArray(np.array(local), dims=("N", "eta_interval"), attrs={
        "units": "1", "long_name": "local slope d log(final drift)/d log(eta) between stepsizes eta_index and "
                                   "eta_index + 1"})
    ds["eta_crit"] = xr.DataArray(crit["eta_crit"].sel(seed=SEED).values, dims="N", attrs={
        "units": "1", "long_name": "eta_crit: the largest constant stepsize found (bisection, rtol) whose run reaches "
                                   "1e-3 of the initial excess loss, and half the lowest saddle's, within n steps "
                                   "without diverging"})
    ds.attrs.update(C.study_attrs(NAME, quick, "balancedness drift of GD from a balanced start against the delta "
                                               "of Theorem 2.4, Section-5 instance, N = 2, 3, 5"))
    ds.attrs.update({
        "seed": SEED,
        "setup_call": f"dlnsim.paper_setup(N, seed={SEED}), {C.COMPRESSED}",
        "horizon": f"until the loss test L - L* <= {LTOL:g} (L(0) - L*) holds (gtol {GTOL:g}), at most the flow "
                   f"time {T_MAX:g} (n_iter = ceil({T_MAX:g}/eta))",
        "eta_grid": f"eta* x geomspace(1, {TOP} eta_crit/eta*, {n_geom}) and {list(EXTRA)} x eta_crit",
        "critical_search": f"dlnsim.critical_sweep(N, seed={SEED}, n_iter={crit_iter}, rtol={crit_rtol}, "
                           "bracket=(0.05, 0.3)); " + str(crit.attrs.get("criterion", "")),
        "record": "log:200 (and the stop)",
        "gtol": GTOL, "ltol": LTOL, "t_max": T_MAX, "lin_tol": LIN_TOL,
        "stop_early": 1,
    })
    # the stepsizes differ per depth (multiples of eta*(N)): their values are coordinates along (N, eta_index)
    return ds.set_coords(["eta_value", "eta_over_bound"])


def summary(ds: xr.Dataset) -> list[str]:
    """Headline numbers: per depth the drift at eta* against delta, the small-eta slope and the steepening."""
    lines = []
    for N, s in C.by_depth(ds):
        n = int(s.lin_n)
        d0, d1 = (float(s["final_drift"].isel(eta_index=i)) for i in (0, -1))
        lines.append(
            f"N={N}: delta={float(s.bound_delta):.3g}; final drift {d0:.2e} at eta* ({d0 / float(s.bound_delta):.1e} "
            f"delta) to {d1:.2e} at {float(s.eta_over_crit.isel(eta_index=-1)):.2f} eta_crit "
            f"({d1 / float(s.bound_delta):.1e} delta); small-eta slope {float(s.lin_slope):.3f} over eta* to "
            f"{float(s.eta_over_bound.isel(eta_index=n - 1)):.0f} eta* ({n} points); local slopes above: "
            + ", ".join(f"{v:.2f}" for v in s.local_slope.values[n - 1:])
            + f"; runs stop at t = {float(s.stop_time.min()):.1f}-{float(s.stop_time.max()):.1f}")
    return lines


def plot(ds: xr.Dataset, outdir: Path) -> list[Path]:
    import matplotlib
    from matplotlib import cm, colors

    mults = ds["eta_over_bound"].values
    norm = colors.LogNorm(vmin=1.0, vmax=float(np.nanmax(mults)))
    cmap = matplotlib.colormaps["viridis"]
    with P.style():
        fig, axes = P.subplots(2, 3, figsize=(7.0, 5.6))
        for ax, N, letter in zip(axes[0], ds["N"].values, "abc", strict=True):
            s = ds.sel(N=N)
            for i in s["eta_index"].values:
                r = s.sel(eta_index=i)
                ok = np.isfinite(r["balancedness_max"].values) & (r["t"].values > 0)
                ax.loglog(r["t"].values[ok], r["balancedness_max"].values[ok],
                          color=cmap(norm(float(r["eta_over_bound"]))), lw=0.9)
            delta = float(s["bound_delta"])
            ax.axhline(delta, color="k", ls="--", lw=1.0, label=rf"$\delta$ = {delta:.3g}")
            t0, t1 = float(s["stop_time"].min()), float(s["stop_time"].max())
            ax.set_title(f"({letter}) N = {N}: runs stop at\nt = {t0:.1f}-{t1:.1f} (converged)", loc="left",
                         fontsize=8)
            ax.set_xlabel(r"flow time $t=k\eta$")
            lo = float(s["balancedness_max"].where(s["t"] > 0).min())
            ax.set_ylim(lo / 3, 10 * max(delta, float(s["balancedness_max"].max())))
            ax.legend(loc="lower right", fontsize=7)
        axes[0, 0].set_ylabel(r"$\max_j\|W_{j+1}^TW_{j+1}-W_jW_j^T\|$")
        fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes[0, :], label=r"$\eta/\eta^*$", shrink=0.9,
                     pad=0.01)
        ax_d, ax_e, ax_f = axes[1]
        for N in ds["N"].values:
            s = ds.sel(N=N)
            color = P.depth_color(N)
            x = s["eta_over_bound"].values
            n = int(s["lin_n"])
            ax_d.loglog(x, s["final_drift_over_delta"].values, "o", ms=3, color=color,
                        label=f"N={N}: slope {float(s['lin_slope']):.2f}")
            fit = 10 ** (float(s["lin_intercept"]) + float(s["lin_slope"]) * np.log10(s["eta_value"].values))
            delta = float(s["bound_delta"])
            ax_d.loglog(x[:n], fit[:n] / delta, "-", color=color, lw=1.0)
            ax_d.loglog(x[n - 1:], fit[n - 1:] / delta, ":", color=color, lw=0.8)
            mid = np.sqrt(s["eta_over_crit"].values[:-1] * s["eta_over_crit"].values[1:])
            ax_e.semilogx(mid, s["local_slope"].values, "o-", ms=3, lw=0.9, color=color, label=f"N={N}")
            ax_e.semilogx(mid[: n - 1], s["local_slope"].values[: n - 1], "o", ms=5, mfc="none", color=color)
            ax_f.semilogx(x, s["stop_time"].values, "o-", ms=3, lw=0.9, color=color, label=f"N={N}")
        ax_d.axhline(1.0, color="k", ls="--", lw=1.0)
        ax_d.set_title("(d) final drift / $\\delta$; line: small-$\\eta$ fit", loc="left", fontsize=8)
        ax_d.set_xlabel(r"$\eta/\eta^*$")
        ax_d.legend(loc="upper left", fontsize=6.5)
        ax_e.axhline(1.0, color="0.5", lw=0.8)
        ax_e.set_title("(e) local slope; open: in the fit", loc="left", fontsize=8)
        ax_e.set_xlabel(r"$\eta/\eta_{\rm crit}$ (between neighbours)")
        ax_e.legend(loc="upper left", fontsize=6.5)
        ax_f.set_title("(f) flow time where each run stopped", loc="left", fontsize=8)
        ax_f.set_xlabel(r"$\eta/\eta^*$")
        ax_f.set_ylabel(r"$t_{\rm stop}=k_{\rm stop}\eta$")
        ax_f.set_ylim(bottom=0)
        fig.suptitle("Balancedness drift of GD from a balanced start, Section-5 instance (seed "
                     f"{int(ds.attrs['seed'])})\n"
                     r"$\eta$ from $\eta^*$ to 0.95 $\eta_{\rm crit}$ (colour); every run stops once "
                     rf"$L-L^*\leq${C.fmt_e(float(ds.attrs['ltol']), 0)}$(L(0)-L^*)$", fontsize=9)
    return C.save_figure(fig, outdir, NAME)
