"""Figure 2 of the paper: GD with decreasing stepsizes on the Section-5 instance, N = 2, 3, 5.

The schedule is ``dlnsim.PowerDecay(a1, a2, gamma)``:  eta_k = max{a1 (k+1)^-gamma, a2/(k+1)}.
**This form of (5.2) is a reconstruction** (an open question, see docs/theory.md): the paper only says "for
some decay rate gamma >= 0 and constants a1, a2".  Panels (a) and (b) use a1 = a2 = eta*, where every
candidate form gives eta_k = eta* (k+1)^-gamma; panels (c) and (d) depend on the reconstructed form and on
constants the paper does not report (ours are below).

(a) gamma = 0.2, a1 = a2 = eta*;            (b) gamma = 0.4, a1 = a2 = eta*;
(c) gamma = 0.2, a1 = 10 eta*, a2 = 100 eta*: the bound is violated for the first ~10^5 steps, GD converges;
(d) gamma = 0.2, a1 = 10 eta*, a2 = 1 (absolute): eta_0 = 1, far above the stability threshold: divergence.

eta* is the bound (5.1) of ``dlnsim.paper_setup(N, seed=0)``.  The grid is (case, N); a cell is one GD run.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import xarray as xr

import dlnsim

from . import _common as C

__all__ = ["CASES", "DEPTHS", "NAME", "cell", "compute", "plot", "run", "summary"]

NAME = "fig2_decreasing"
#: ``run(quick, outdir, cells=None, **engine)``: compute, write ``<outdir>/<NAME>.nc`` and the figure
run = functools.partial(C.run_study, NAME)
DEPTHS = (2, 3, 5)
SEED = 0
GTOL = 1e-10
#: case -> (panel, gamma, a1 as a multiple of eta*, a2 as a multiple of eta* or None, a2 absolute or None)
CASES: dict[str, tuple[str, float, float, float | None, float | None]] = {
    "a_gamma0.2": ("a", 0.2, 1.0, 1.0, None),
    "b_gamma0.4": ("b", 0.4, 1.0, 1.0, None),
    "c_above": ("c", 0.2, 10.0, 100.0, None),
    "d_diverging": ("d", 0.2, 10.0, None, 1.0),
}
RECONSTRUCTION = ("eta_k = max{a1 (k+1)^-gamma, a2/(k+1)} is a reconstruction of (5.2) (the paper gives no "
                  "formula; see docs/theory.md)")


def _schedule(case: str, eta_star: float) -> dlnsim.PowerDecay:
    _, gamma, a1, a2_rel, a2_abs = CASES[case]
    a2 = a2_rel * eta_star if a2_rel is not None else a2_abs
    assert a2 is not None
    return dlnsim.PowerDecay(a1 * eta_star, a2, gamma)


def cell(case: str, N: int, seed: int, n_iter: int, record: str) -> xr.Dataset:
    """One GD run: the schedule of ``case`` on ``paper_setup(N, seed)``."""
    setup = dlnsim.paper_setup(N, seed)
    bound = dlnsim.stepsize_bound(setup.problem, setup.W0)
    sched = _schedule(case, bound.eta)
    attrs = {"case": case, "a1": sched.a1, "a2": sched.a2, "gamma": sched.gamma,
             "a1_over_bound": sched.a1 / bound.eta, "a2_over_bound": sched.a2 / bound.eta,
             "eta0_over_bound": max(sched.a1, sched.a2) / bound.eta}
    return dlnsim.run_gd(setup.problem, setup.W0, sched, n_iter, record, gtol=GTOL, stop_early=True, bound=bound,
                         attrs=attrs)


def _cost(point: dict[str, Any]) -> float:
    return (1e-4 if point["case"].startswith("d") else 1.0) * (1 + point["N"])


LONG_NAMES = {
    "a1": "a1 of the schedule", "a2": "a2 of the schedule", "gamma": "decay rate gamma",
    "a1_over_bound": "a1 / eta*", "a2_over_bound": "a2 / eta*",
    "eta0_over_bound": "first stepsize eta_0 = max(a1, a2) over eta*",
    "status": C.STATUS,
    "status_reason": "why the run ended",
    "stop_iteration": "iteration where the run stopped (n_iter when it ran all steps)",
    "final_loss": "loss at the last evaluated iteration", "initial_loss": "loss L^N(W(0))",
    "bound_eta": "eta* = bound (5.1) on our instance", "bound_delta": "delta = M^(2/N)/N^3 (Section 5)",
    "bound_sigma": "sigma of Prop. 3.4(4)",
}
PER_RUN = ("a1", "a2", "gamma", "a1_over_bound", "a2_over_bound", "eta0_over_bound", "status", "status_reason",
           "stop_iteration", "final_loss", "initial_loss")
PER_N = ("bound_eta", "bound_delta", "bound_sigma")


def compute(quick: bool, *, directory: Path | None = None, executor: Any = "threads", workers: int | None = None,
            scheduler: str | None = None) -> xr.Dataset:
    """The study's Dataset; the cells live in ``directory`` (None: a temporary one), see `dlnsim.run_grid`."""
    n_iter = 20_000 if quick else 1_000_000
    record = "log:300"
    grid = C.grid(cell, {"case": list(CASES), "N": list(DEPTHS)}, {"seed": SEED, "n_iter": n_iter, "record": record},
                  directory=directory, label=NAME, cost=_cost, executor=executor, workers=workers, scheduler=scheduler)
    scalars: dict[str, tuple[str, ...] | None] = {k: None for k in PER_RUN}
    scalars.update({k: ("N",) for k in PER_N})
    ds = C.archive_layout(grid, ["loss", "excess_loss", "eta", "t", "balancedness_max"], scalars, LONG_NAMES)
    ds = ds.assign_coords(panel=("case", [v[0] for v in CASES.values()]))
    C.describe(ds, {"panel": "panel of Figure 2", "case": "schedule case (see attribute cases)", "N": C.DEPTH})
    cases = "; ".join(f"{c}: gamma={g}, a1={a1}*eta*, a2=" + (f"{a2r}*eta*" if a2r is not None else f"{a2a}")
                      for c, (_, g, a1, a2r, a2a) in CASES.items())
    ds.attrs.update(C.study_attrs(NAME, quick, "Figure 2 of the paper: GD with decreasing stepsizes eta_k = max{a1 "
                                               "(k+1)^-gamma, a2/(k+1)} on the Section-5 instance",
                                  **C.paper_gd_attrs(SEED, n_iter, record, GTOL), schedule_formula=RECONSTRUCTION,
                                  cases=cases))
    return ds


def summary(ds: xr.Dataset) -> list[str]:
    """Headline numbers: how each case ended at each depth."""
    return [RECONSTRUCTION] + [
        f"{case}: " + "; ".join(f"N={N}: {C.outcome(s.sel(case=case))}" for N, s in C.by_depth(ds))
        for case in ds["case"].values]


def plot(ds: xr.Dataset, outdir: Path) -> list[Path]:
    g = {c: v[1] for c, v in CASES.items()}
    titles = {
        "a": rf"(a) $\gamma={g['a_gamma0.2']:g}$, $a_1=a_2=\eta^*$",
        "b": rf"(b) $\gamma={g['b_gamma0.4']:g}$, $a_1=a_2=\eta^*$",
        "c": rf"(c) $\gamma={g['c_above']:g}$, $a_1={CASES['c_above'][2]:g}\eta^*$, "
             rf"$a_2={CASES['c_above'][3]:g}\eta^*$ (converges)",
        "d": rf"(d) $\gamma={g['d_diverging']:g}$, $a_1={CASES['d_diverging'][2]:g}\eta^*$, "
             rf"$a_2={CASES['d_diverging'][4]:g}$ (diverges)",
    }

    def label(case: str, N: int, run: xr.Dataset) -> tuple[str, str]:
        if case.startswith("d"):
            return f"N={N}, diverged at k={int(run['stop_iteration'])}", "-"
        return f"N={N}, $\\eta^*$={C.fmt_e(float(run['bound_eta']))}", "-"

    suptitle = ("Figure 2: decreasing stepsizes $\\eta_k=\\max\\{a_1(k+1)^{-\\gamma},\\,a_2/(k+1)\\}$ "
                "(our reconstruction of (5.2))\nSection-5 instance (seed "
                f"{int(ds.attrs['seed'])}), {C.fmt_pow10(int(ds.attrs['n_iter']))} iterations")
    fig = C.loss_panels(ds, titles, label, suptitle)
    return C.save_figure(fig, outdir, NAME)
