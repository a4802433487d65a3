"""Figure 1 of the paper: GD with constant stepsizes on the Section-5 instance, N = 2, 3, 5.

Panels (one curve per depth, log-log loss against iteration):

(a) eta = eta*, the bound (5.1) computed on our instance (solid), and the paper's reported values
    7.73e-4, 1.29e-4, 3.91e-5 for its own (unknown) instance (dashed).  On our instance the paper's value for
    N = 5 lies *above* our bound (``paper_eta_over_bound`` > 1): that run is outside Theorem 2.4 here;
(b) eta = 0.5 eta*, "somewhat smaller" than the bound;
(c) eta = 100 eta*, far above the bound yet converging (the bound is not sharp);
(d) eta = 0.5 (absolute), above the empirical stability threshold (about 0.1-0.25): divergence.

The instance is ``dlnsim.paper_setup(N, seed=0)`` (d = 70, m = 210, d_1 = 2, balanced W(0)), run with its
hidden widths compressed to 2 (`_common.compressed_paper`: the same losses, a cheaper step).  Runs stop early
once a convergence test of `dlnsim.run_gd` holds (gtol = 1e-10 relative to the gradient scale, or the loss
test ltol = gtol^2 = 1e-20 of the initial excess loss; status ``converged``, see its ``status_reason``) or
when they diverge; the curves end there.  The grid is (case, N); a cell is one GD run.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import xarray as xr

import dlnsim
import dlnsim.plot as P

from . import _common as C

__all__ = ["CASES", "DEPTHS", "NAME", "cell", "compute", "plot", "run", "summary"]

NAME = "fig1_constant"
#: ``run(quick, outdir, cells=None, **engine)``: compute, write ``<outdir>/<NAME>.nc`` and the figure
run = functools.partial(C.run_study, NAME)
DEPTHS = (2, 3, 5)
SEED = 0
#: (case label, panel, description); the stepsize of each case is set in `_eta`
CASES = (
    ("a_bound", "a", "eta = eta* of (5.1) on our instance"),
    ("a_paper", "a", "eta = the paper's reported eta* (7.73e-4, 1.29e-4, 3.91e-5 for N = 2, 3, 5)"),
    ("b_below", "b", "eta = 0.5 eta*"),
    ("c_above", "c", "eta = 100 eta* (bound violated, converges)"),
    ("d_diverging", "d", "eta = 0.5 (absolute; diverges)"),
)
BELOW, ABOVE, DIVERGING = 0.5, 100.0, 0.5
GTOL = 1e-10


def _eta(case: str, N: int, eta_star: float) -> float:
    return {
        "a_bound": eta_star,
        "a_paper": C.PAPER_ETA[N],
        "b_below": BELOW * eta_star,
        "c_above": ABOVE * eta_star,
        "d_diverging": DIVERGING,
    }[case]


def cell(case: str, N: int, seed: int, n_iter: int, record: str) -> xr.Dataset:
    """One GD run: the stepsize of ``case`` on ``paper_setup(N, seed)``."""
    problem, W0 = C.compressed_paper(N, seed)
    bound = dlnsim.stepsize_bound(problem, W0)
    eta = _eta(case, N, bound.eta)
    attrs = {"case": case, "eta_value": eta, "eta_over_bound": eta / bound.eta, "paper_eta": C.PAPER_ETA[N],
             "paper_eta_over_bound": C.PAPER_ETA[N] / bound.eta}
    return dlnsim.run_gd(problem, W0, eta, n_iter, record=record, stop=dlnsim.Stop(gtol=GTOL, early=True), bound=bound,
                         attrs=attrs)


def _cost(point: dict[str, Any]) -> float:
    return {"c_above": 0.01, "d_diverging": 1e-4}.get(point["case"], 1.0) * (1 + point["N"])


LONG_NAMES = {
    "eta_value": "constant stepsize eta of the run",
    "eta_over_bound": "eta / eta* (eta* = bound (5.1) of this instance)",
    "status": C.STATUS,
    "status_reason": "why the run ended",
    "stop_iteration": "iteration where the run stopped (n_iter when it ran all steps)",
    "final_loss": "loss at the last evaluated iteration",
    "initial_loss": "loss L^N(W(0))",
    "min_descent_ratio": "min over all steps of (L(k)-L(k+1))/(eta ||grad L||_F^2) (Prop. 3.4(4): >= sigma)",
    "max_loss_increase": "max over all steps of L(k+1) - L(k)",
    "paper_eta": "eta* reported in the paper for its own instance (Figure 1 of the paper)",
    "paper_eta_over_bound": "paper's eta* / eta* of our instance (> 1: the paper's stepsize is above our bound)",
    "bound_eta": "eta* = bound (5.1) on our instance",
    "bound_M": "M of (2.11)",
    "bound_delta": "delta = M^(2/N)/N^3 (Section 5)",
    "bound_K": "K_delta = M^(2/N) + N^2 delta",
    "bound_B": "B_delta of (2.9)",
    "bound_sigma": "sigma of Prop. 3.4(4)",
    "bound_L0": "initial loss used in the bound",
}
PER_RUN = ("eta_value", "eta_over_bound", "status", "status_reason", "stop_iteration", "final_loss", "initial_loss",
           "min_descent_ratio", "max_loss_increase")
PER_N = ("paper_eta", "paper_eta_over_bound", "bound_eta", "bound_M", "bound_delta", "bound_K", "bound_B",
         "bound_sigma", "bound_L0")


def compute(quick: bool, *, directory: Path | None = None, executor: Any = "threads", workers: int | None = None,
            scheduler: str | None = None) -> xr.Dataset:
    """The study's Dataset; the cells live in ``directory`` (None: a temporary one), see `dlnsim.run_grid`."""
    n_iter = 20_000 if quick else 1_000_000
    record = "log:300"
    axes = {"case": [c for c, _, _ in CASES], "N": list(DEPTHS)}
    grid = C.grid(cell, axes, {"seed": SEED, "n_iter": n_iter, "record": record}, directory=directory, label=NAME,
                  cost=_cost, executor=executor, workers=workers, scheduler=scheduler)
    scalars: dict[str, tuple[str, ...] | None] = {k: None for k in PER_RUN}
    scalars.update({k: ("N",) for k in PER_N})
    ds = C.archive_layout(grid, ["loss", "excess_loss", "grad_norm_sq", "balancedness_max", "t"], scalars,
                          LONG_NAMES)
    ds = ds.assign_coords(panel=("case", [p for _, p, _ in CASES]))
    C.describe(ds, {"panel": "panel of Figure 1", "N": C.DEPTH,
                    "case": "stepsize case: " + "; ".join(f"{c}: {d}" for c, _, d in CASES)})
    ds.attrs.update(C.study_attrs(NAME, quick, "Figure 1 of the paper: GD with constant stepsizes on the Section-5 "
                                               "instance for N = 2, 3, 5",
                                  **C.paper_gd_attrs(SEED, n_iter, record, GTOL), factor_below=BELOW,
                                  factor_above=ABOVE, eta_diverging=DIVERGING))
    return ds


def summary(ds: xr.Dataset) -> list[str]:
    """Headline numbers: per depth the bound against the paper's, and how each case ended."""
    lines = []
    for N, s in C.by_depth(ds):
        above = " (the paper's eta is above our bound)" if float(s.paper_eta_over_bound) > 1 else ""
        lines.append(f"N={N}: eta* ours {C.fmt_e(float(s.bound_eta), 3)} vs paper {C.fmt_e(float(s.paper_eta), 3)} "
                     f"(paper/ours {float(s.paper_eta_over_bound):.2f}){above}")
        lines.append("    " + "; ".join(f"{case}: {C.outcome(s.sel(case=case))}" for case in ds["case"].values))
    return lines


def plot(ds: xr.Dataset, outdir: Path) -> list[Path]:
    titles = {
        "a": r"(a) $\eta=\eta^*$ (5.1): ours (solid), paper's values (dashed)",
        "b": rf"(b) $\eta={BELOW:g}\,\eta^*$ (below the bound)",
        "c": rf"(c) $\eta={ABOVE:g}\,\eta^*$ (above the bound, converges)",
        "d": rf"(d) $\eta={DIVERGING:g}$ (diverges)",
    }

    def label(case: str, N: int, run: xr.Dataset) -> tuple[str, str]:
        eta = float(run["eta_value"])
        if case == "a_paper":
            ratio = float(run["paper_eta_over_bound"])
            above = rf" ({ratio:.2f}$\eta^*$: above our bound)" if ratio > 1 else ""
            return f"N={N}, paper's $\\eta$={C.fmt_e(eta)}{above}", "--"
        if case == "d_diverging":
            return f"N={N}, diverged at k={int(run['stop_iteration'])}", "-"
        return f"N={N}, $\\eta$={C.fmt_e(eta)}", "-"

    with P.style():
        fig, axes = P.subplots(2, 2, figsize=(7.0, 5.6))
        C.loss_panels(axes, ds, titles, label)
        fig.suptitle(f"Figure 1: constant stepsizes on the Section-5 instance (seed {int(ds.attrs['seed'])}), "
                     f"{C.fmt_pow10(int(ds.attrs['n_iter']))} iterations\n"
                     r"$L^N=\frac{1}{2}\|Y-W_N\cdots W_1X\|_F^2$; a curve ends where GD diverged or converged "
                     rf"($L-L^*\leq${C.fmt_e(float(ds.attrs['ltol']), 0)}$\,(L(0)-L^*)$)", fontsize=9)
    return C.save_figure(fig, outdir, NAME)
