"""Figure 2 of the paper: GD with decreasing stepsizes on the Section-5 instance, N = 2, 3, 5.

The schedule is ``dlnsim.PowerDecay(a1, a2, gamma)``:  eta_k = max{a1 (k+1)^-gamma, a2/(k+1)}.
**This form of (5.2) is a reconstruction** (an open question, see docs/theory.md): the paper only says "for
some decay rate gamma >= 0 and constants a1, a2".  Panels (a) and (b) use a1 = a2 = eta*, where every
candidate form gives eta_k = eta* (k+1)^-gamma; panels (c) and (d) depend on the reconstructed form and on
constants the paper does not report (ours are below).

(a) gamma = 0.2, a1 = a2 = eta*;            (b) gamma = 0.4, a1 = a2 = eta*;
(c) gamma = 0.2, a1 = 10 eta*, a2 = 100 eta*: the bound is violated for the first ~10^5 steps, GD converges;
(d) gamma = 0.05, a1 = a2 = 1.75 eta_s, with eta_s = 2/lambda_max of the Hessian at the balanced global
    minimiser that GD heads for (`dlnsim.analysis.stability.balanced_minimum_sharpness`; the critical stepsize of
    these instances lies within a few per cent of it): a slowly decaying schedule whose stepsizes stay above
    that stability limit for long.  GD first lowers the loss and diverges once it nears the minimiser, while
    eta_k is still above eta_s: the schedule, not an oversized first step, makes it diverge.  (For N = 5 the
    schedule has decayed to eta_s by the time GD arrives: a marginal case, whose outcome depends on rounding;
    the README reports what the data say.)  (In the
    reconstructed form a2 only acts during the first (a2/a1)^(1/(1-gamma)) steps, so "a larger a2", the
    paper's recipe for its panel 2d, can only make GD diverge through its first steps.)

A reference case ``ref_constant`` (gamma = 0, eta_k = eta*: the run of Figure 1(a)) gives the loss at equal
flow time t_k = eta_0 + ... + eta_{k-1}: GD with small stepsizes follows the gradient flow, so the decreasing
schedules reach the loss of the constant run at the same t_k, and t_k grows only like k^(1-gamma).  From the
flow time the constant run needs to converge, T_conv, the study estimates the iterations a schedule
eta* (k+1)^-gamma needs to reach it: the k with t_k = T_conv (``iterations_needed``).

eta* is the bound (5.1) of ``dlnsim.paper_setup(N, seed=0)``; the runs use its hidden widths compressed to 2
(`_common.compressed_paper`: same losses, cheaper steps).  The grid is (case, N); a cell is one GD run.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

import dlnsim
import dlnsim.plot as P
from dlnsim.analysis.stability import balanced_minimum_sharpness

from . import _common as C

__all__ = ["CASES", "DEPTHS", "NAME", "cell", "compute", "flow_time_of", "iterations_for", "plot", "run", "summary"]

NAME = "fig2_decreasing"
#: ``run(quick, outdir, cells=None, **engine)``: compute, write ``<outdir>/<NAME>.nc`` and the figure
run = functools.partial(C.run_study, NAME)
DEPTHS = (2, 3, 5)
SEED = 0
GTOL = 1e-10
#: case -> (panel, gamma, a1, a2, unit of a1 and a2: "eta*" (bound (5.1)) or "eta_s" (2/lambda_max at the minimiser))
CASES: dict[str, tuple[str, float, float, float, str]] = {
    "a_gamma0.2": ("a", 0.2, 1.0, 1.0, "eta*"),
    "b_gamma0.4": ("b", 0.4, 1.0, 1.0, "eta*"),
    "c_above": ("c", 0.2, 10.0, 100.0, "eta*"),
    "d_diverging": ("d", 0.05, 1.75, 1.75, "eta_s"),
    "ref_constant": ("ref", 0.0, 1.0, 1.0, "eta*"),
}
#: the cases with eta_k = eta* (k+1)^-gamma, for which the iterations to reach T_conv are estimated
DECAYING = ("a_gamma0.2", "b_gamma0.4")
RECONSTRUCTION = ("eta_k = max{a1 (k+1)^-gamma, a2/(k+1)} is a reconstruction of (5.2) (the paper gives no "
                  "formula; see docs/theory.md)")


def _schedule(case: str, eta_star: float, eta_s: float) -> dlnsim.PowerDecay:
    _, gamma, a1, a2, unit = CASES[case]
    scale = eta_star if unit == "eta*" else eta_s
    return dlnsim.PowerDecay(a1 * scale, a2 * scale, gamma)


def cell(case: str, N: int, seed: int, n_iter: int, record: str) -> xr.Dataset:
    """One GD run: the schedule of ``case`` on ``paper_setup(N, seed)`` (hidden widths compressed)."""
    problem, W0 = C.compressed_paper(N, seed)
    bound = dlnsim.stepsize_bound(problem, W0)
    eta_s = 2.0 / balanced_minimum_sharpness(problem, N)
    sched = _schedule(case, bound.eta, eta_s)
    eta0 = max(sched.a1, sched.a2)
    attrs = {"case": case, "a1": sched.a1, "a2": sched.a2, "gamma": sched.gamma,
             "a1_over_bound": sched.a1 / bound.eta, "a2_over_bound": sched.a2 / bound.eta,
             "eta0_over_bound": eta0 / bound.eta, "eta0_over_sharpness": eta0 / eta_s, "eta_sharpness": eta_s}
    ds = dlnsim.run_gd(problem, W0, sched, n_iter, record=record, stop=dlnsim.Stop(gtol=GTOL, early=True),
                       bound=bound, attrs=attrs)
    # where the run ended: flow time, stepsize, and the least loss it reached on the way (a diverging run first
    # lowers the loss when the schedule, not the first step, makes it diverge)
    k_stop = int(ds["stop_iteration"])
    ds.attrs["stop_time"] = float(ds["t"].sel(k=k_stop)) if k_stop in ds["k"].values else float("nan")
    eta_stop = max(sched.a1 * (k_stop + 1.0) ** -sched.gamma, sched.a2 / (k_stop + 1.0))
    ds.attrs["stop_eta_over_sharpness"] = eta_stop / eta_s
    ds.attrs["min_loss"] = float(ds["loss"].min())
    return ds


def _cost(point: dict[str, Any]) -> float:
    return (1e-4 if point["case"].startswith("d") else 1.0) * (1 + point["N"])


#: t_k is summed exactly over the first HEAD steps, beyond them by the midpoint rule
HEAD = 1000


def _head(gamma: float) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.arange(1, HEAD + 1, dtype=float) ** -gamma)])


def flow_time_of(k: Any, eta: float, gamma: float) -> np.ndarray:
    """t_k = eta (1 + 2^-gamma + ... + k^-gamma) of eta_i = eta (i+1)^-gamma: summed for k <= HEAD, beyond by
    the midpoint rule with its first correction, sum_{HEAD < i <= k} i^-gamma = [x^(1-gamma)/(1-gamma)
    + gamma x^(-1-gamma)/24] from x = HEAD + 1/2 to k + 1/2 (relative error below 1e-12)."""
    k = np.asarray(k, dtype=float)
    g = 1.0 - gamma
    head = _head(gamma)

    def F(x: Any) -> Any:
        return x**g / g + gamma * x ** (-1.0 - gamma) / 24.0

    tail = head[-1] + F(k + 0.5) - F(HEAD + 0.5)
    return eta * np.where(k <= HEAD, np.interp(k, np.arange(HEAD + 1), head), tail)


def iterations_for(T: Any, eta: float, gamma: float) -> np.ndarray:
    """The k with t_k = T for eta_i = eta (i+1)^-gamma (the inverse of `flow_time_of`): t_k grows like
    k^(1-gamma)/(1-gamma), so k grows like T^(1/(1-gamma))."""
    s = np.asarray(T, dtype=float) / eta
    g = 1.0 - gamma
    head = _head(gamma)
    with np.errstate(invalid="ignore"):
        k = (g * (s - head[-1]) + (HEAD + 0.5) ** g) ** (1.0 / g) - 0.5  # without the correction
        for _ in range(3):  # Newton on flow_time_of (dt/dk ~ eta (k + 1/2)^-gamma)
            k = k - (flow_time_of(k, 1.0, gamma) - s) * (k + 0.5) ** gamma
    return np.where(s <= head[-1], np.interp(s, head, np.arange(HEAD + 1)), k)


LONG_NAMES = {
    "a1": "a1 of the schedule", "a2": "a2 of the schedule", "gamma": "decay rate gamma",
    "a1_over_bound": "a1 / eta*", "a2_over_bound": "a2 / eta*",
    "eta0_over_bound": "first stepsize eta_0 = max(a1, a2) over eta*",
    "eta0_over_sharpness": "first stepsize eta_0 over eta_s = 2/lambda_max at the balanced global minimiser",
    "status": C.STATUS,
    "status_reason": "why the run ended",
    "stop_iteration": "iteration where the run stopped (n_iter when it ran all steps)",
    "stop_time": "flow time t_k = eta_0 + ... + eta_{k-1} where the run stopped",
    "stop_eta_over_sharpness": "stepsize eta_k where the run stopped, over eta_s",
    "min_loss": "least recorded loss of the run",
    "final_loss": "loss at the last evaluated iteration", "initial_loss": "loss L^N(W(0))",
    "bound_eta": "eta* = bound (5.1) on our instance", "bound_delta": "delta = M^(2/N)/N^3 (Section 5)",
    "bound_sigma": "sigma of Prop. 3.4(4)",
    "eta_sharpness": "eta_s = 2/lambda_max of the Hessian at the balanced global minimiser (closed form)",
}
PER_RUN = ("a1", "a2", "gamma", "a1_over_bound", "a2_over_bound", "eta0_over_bound", "eta0_over_sharpness",
           "status", "status_reason", "stop_iteration", "stop_time", "stop_eta_over_sharpness", "min_loss",
           "final_loss", "initial_loss")
PER_N = ("bound_eta", "bound_delta", "bound_sigma", "eta_sharpness")


def compute(quick: bool, *, directory: Path | None = None, executor: Any = "threads", workers: int | None = None,
            scheduler: str | None = None) -> xr.Dataset:
    """The study's Dataset; the cells live in ``directory`` (None: a temporary one), see `dlnsim.run_grid`."""
    n_iter = 20_000 if quick else 1_000_000
    record = "log:300"
    grid = C.grid(cell, {"case": list(CASES), "N": list(DEPTHS)}, {"seed": SEED, "n_iter": n_iter, "record": record},
                  directory=directory, label=NAME, cost=_cost, executor=executor, workers=workers, scheduler=scheduler)
    scalars: dict[str, tuple[str, ...] | None] = {k: None for k in PER_RUN}
    scalars.update({k: ("N",) for k in PER_N})
    ds = C.archive_layout(grid, ["loss", "excess_loss", "eta_k", "t", "balancedness_max"], scalars, LONG_NAMES)
    ds = ds.assign_coords(panel=("case", [v[0] for v in CASES.values()]))
    C.describe(ds, {"panel": "panel of Figure 2 (ref: the constant-eta* reference, drawn against t_k)",
                    "case": "schedule case (see attribute cases)", "N": C.DEPTH})
    # the flow time the constant-eta* run needs to converge, and the iterations eta* (k+1)^-gamma needs for it
    ref = ds.sel(case="ref_constant")
    converged = ref["status"] == "converged"
    T_conv = ref["stop_time"].where(converged)
    ds["flow_time_needed"] = T_conv.assign_attrs(
        units="1", long_name="flow time T_conv at which the constant-eta* run converged (NaN: it did not)")
    ds = ds.assign_coords(decaying=("decaying", list(DECAYING)))
    needed = [iterations_for(T_conv.values, ds["bound_eta"].values, CASES[c][1]) for c in DECAYING]
    ds["iterations_needed"] = xr.DataArray(np.array(needed), dims=("decaying", "N"), attrs={
        "units": "1", "long_name": "iterations k with t_k = T_conv for eta_k = eta* (k+1)^-gamma "
                                   "(t_k ~ eta* k^(1-gamma)/(1-gamma))"})
    ds["flow_time_reached"] = xr.DataArray(
        np.array([ds["stop_time"].sel(case=c).values for c in DECAYING]), dims=("decaying", "N"), attrs={
            "units": "1", "long_name": "flow time t_k where the decaying run ended"})
    C.describe(ds, {"decaying": "cases with eta_k = eta* (k+1)^-gamma"})
    cases = "; ".join(f"{c}: gamma={g}, a1={a1} {u}, a2={a2} {u}" for c, (_, g, a1, a2, u) in CASES.items())
    ds.attrs.update(C.study_attrs(NAME, quick, "Figure 2 of the paper: GD with decreasing stepsizes eta_k = max{a1 "
                                               "(k+1)^-gamma, a2/(k+1)} on the Section-5 instance",
                                  **C.paper_gd_attrs(SEED, n_iter, record, GTOL), schedule_formula=RECONSTRUCTION,
                                  cases=cases, eta_s="2/lambda_max of the Hessian of L^N at the balanced global "
                                  "minimiser (dlnsim.analysis.stability.balanced_minimum_sharpness)"))
    return ds


def summary(ds: xr.Dataset) -> list[str]:
    """Headline numbers: how each case ended at each depth, and the iterations the decaying schedules need."""
    lines = [RECONSTRUCTION] + [
        f"{case}: " + "; ".join(f"N={N}: {C.outcome(s.sel(case=case))}, t={float(s.stop_time.sel(case=case)):.3g}"
                                for N, s in C.by_depth(ds))
        for case in ds["case"].values]
    for c in ds["decaying"].values:
        lines.append(f"{c}: iterations to reach T_conv of the constant run: " + ", ".join(
            f"N={N}: {float(s.iterations_needed.sel(decaying=c)):.2g} (T_conv {float(s.flow_time_needed):.3g})"
            for N, s in C.by_depth(ds)))
    d = ds.sel(case="d_diverging")
    lines.append("d_diverging: " + "; ".join(
        f"N={int(N)}: {d.status.sel(N=N).item()} at k={int(d.stop_iteration.sel(N=N))} after the loss fell to "
        f"{float(d.min_loss.sel(N=N)):.2g}, eta_k/eta_s there {float(d.stop_eta_over_sharpness.sel(N=N)):.2f}"
        for N in d["N"].values))
    return lines


def plot(ds: xr.Dataset, outdir: Path) -> list[Path]:
    g = {c: v[1] for c, v in CASES.items()}
    titles = {
        "a": rf"(a) $\gamma={g['a_gamma0.2']:g}$, $a_1=a_2=\eta^*$",
        "b": rf"(b) $\gamma={g['b_gamma0.4']:g}$, $a_1=a_2=\eta^*$",
        "c": rf"(c) $\gamma={g['c_above']:g}$, $a_1={CASES['c_above'][2]:g}\eta^*$, "
             rf"$a_2={CASES['c_above'][3]:g}\eta^*$ (converges)",
        "d": rf"(d) $\gamma={g['d_diverging']:g}$, $a_1=a_2={CASES['d_diverging'][2]:g}\,\eta_s$",
    }

    def label(case: str, N: int, run: xr.Dataset) -> tuple[str, str]:
        if case.startswith("d"):
            return (f"N={N}, {run['status'].item()} at k={int(run['stop_iteration'])} "
                    rf"($\eta_k$={float(run['stop_eta_over_sharpness']):.2f}$\eta_s$)"), "-"
        if run["status"].item() == "converged":
            return f"N={N}, converged at k={C.fmt_e(float(run['stop_iteration']), 1)}", "-"
        return f"N={N}, L={C.fmt_e(float(run['final_loss']), 1)} at k={C.fmt_e(float(run['stop_iteration']), 0)}", "-"

    from matplotlib.figure import Figure

    with P.style():
        fig = Figure(figsize=(7.0, 8.4), layout="constrained")
        top, bottom = fig.subfigures(2, 1, height_ratios=[2.0, 1.05])
        axes = top.subplots(2, 2)
        C.loss_panels(axes, ds, titles, label)
        styles = {"ref_constant": ("k", "-", 2.2), "a_gamma0.2": (None, "-", 1.2), "b_gamma0.4": (None, "--", 1.2),
                  "c_above": (None, ":", 1.2)}
        axes_t = bottom.subplots(1, ds.sizes["N"], sharey=True)
        for ax, N in zip(np.atleast_1d(axes_t), ds["N"].values, strict=True):
            for case, (color, ls, lw) in styles.items():
                run = ds.sel(case=case, N=N)
                ok = np.isfinite(run["loss"].values)
                t, loss = run["t"].values[ok], run["loss"].values[ok]
                text = r"constant $\eta^*$" if case == "ref_constant" else f"({CASES[case][0]})"
                ax.semilogy(t, loss, ls, color=color or P.depth_color(N), lw=lw,
                            alpha=0.35 if case == "ref_constant" else 1.0, label=text)
                if case != "ref_constant" and t.size:  # where the run ended (10^6 steps or converged)
                    ax.plot(t[-1], loss[-1], "o", ms=3.5, mfc="white", color=color or P.depth_color(N))
            T = float(ds["flow_time_needed"].sel(N=N))
            if np.isfinite(T):
                ax.axvline(T, color="0.5", lw=0.8, ls="-.")
            k4 = float(ds["iterations_needed"].sel(decaying="b_gamma0.4", N=N))
            need = rf": (b) needs k$\approx${C.fmt_e(k4, 1)}" if np.isfinite(k4) else ""
            ax.set_title(f"N={int(N)}{need}", loc="left", fontsize=8)
            ax.set_xlabel(r"flow time $t_k$")
            ax.set_xlim(left=0)
        np.atleast_1d(axes_t)[0].set_ylabel(r"loss $L^N(W(k))$")
        np.atleast_1d(axes_t)[0].legend(loc="lower left", fontsize=6.5)
        bottom.suptitle(r"(a)-(c) against the flow time $t_k=\eta_0+\dots+\eta_{k-1}$ lie on the constant-$\eta^*$ "
                        "run (grey)\n" r"circles: where each run ended; dash-dot: $T_{\rm conv}$, where the constant "
                        "run converged", fontsize=8)
        top.suptitle("Figure 2: decreasing stepsizes $\\eta_k=\\max\\{a_1(k+1)^{-\\gamma},\\,a_2/(k+1)\\}$ "
                     "(our reconstruction of (5.2))\nSection-5 instance (seed "
                     f"{int(ds.attrs['seed'])}), {C.fmt_pow10(int(ds.attrs['n_iter']))} iterations; "
                     r"$\eta_s=2/\lambda_{\max}$ at the minimiser", fontsize=9)
    return C.save_figure(fig, outdir, NAME)
