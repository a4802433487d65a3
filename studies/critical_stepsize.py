"""Critical stepsize against the theorem: how conservative is the bound (5.1), and how does that change with N?

For N = 2..6 and 12 seeds of the Section-5 instance (``dlnsim.paper_setup(N, seed)``, hidden widths compressed to
2: `_common.compressed_paper`, the same losses) ``dlnsim.critical_sweep`` finds eta_crit, **the largest constant
stepsize found (bisection to rtol) whose run reaches 1e-3 of the initial excess loss within n_iter = 5000 steps
without diverging**.  It is an operational threshold, not a stability limit: above it runs may lock into orbits
with a frozen loss or diverge late, not monotonically in eta.  The ratio eta_crit/eta* to the bound (5.1) of the
same start measures how conservative the theorem is.

Depth dependence, read locally: the exponents d log q / d log N between neighbouring depths of the medians over
seeds of q = eta*, eta_crit and their ratio (``local_exponent``), not one power law over a curved set of points.

eta* term by term: (5.1) is eta* = 2 / (4 L0/delta + B_delta) with delta = M^(2/N)/N^3 and
B_delta = 2e N K^(N-1) ||X||^2 + sqrt(e) N K^(N/2-1) ||X Y^T||, K = (1 + 1/N) M^(2/N).  The study stores both
parts of the denominator per (N, seed) (``loss_term`` = 4 L0/delta, ``B_first``, ``B_second``) and their shares.
For small N, B_delta is almost all of it, so eta* ~ 2/B_delta and delta nearly cancels: the depth dependence of
eta* comes from N K^(N-1) = N (1 + 1/N)^(N-1) M^(2-2/N), not from the N^-3 of delta.  ``crossover_N`` is the
depth at which 4 L0/delta = 4 N^3 L0 M^(-2/N) would overtake B_delta if the constants L0, M, ||X||, ||XY^T|| of
the instance stayed as they are (their distribution does not depend on N): only from there on does eta* fall like
N^-3.  The grid is (N, seed); a cell is one search, the sweep's own cell.
"""

from __future__ import annotations

import functools
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import scipy.optimize
import xarray as xr

import dlnsim
import dlnsim.plot as P

from . import _common as C

__all__ = ["CRITERION", "NAME", "compute", "denominator", "plot", "run", "summary"]

NAME = "critical_stepsize"
#: ``run(quick, outdir, cells=None, **engine)``: compute, write ``<outdir>/<NAME>.nc`` and the figure
run = functools.partial(C.run_study, NAME)
BRACKET = (0.05, 0.3)
LOSS_TOL = 1e-3
#: the operational definition of eta_crit, wherever it is named
CRITERION = ("eta_crit: the largest constant stepsize found (bisection, rtol) whose run reaches 1e-3 of the initial "
             "excess loss, and half the lowest saddle's, within n_iter steps without diverging")
QUANTITIES = ("eta_star", "eta_crit", "ratio")


def denominator(N: Any, L0: float, M: float, norm_X: float, norm_XYt: float) -> tuple[np.ndarray, ...]:
    """The parts of the denominator of (5.1) at depth ``N`` (a number or an array) for fixed constants:
    (4 L0/delta, 2e N K^(N-1) ||X||^2, sqrt(e) N K^(N/2-1) ||XY^T||) with delta = M^(2/N)/N^3, K = (1+1/N) M^(2/N)."""
    n = np.asarray(N, dtype=float)
    delta = M ** (2.0 / n) / n**3
    K = (1.0 + 1.0 / n) * M ** (2.0 / n)
    return (4.0 * L0 / delta, 2.0 * math.e * n * K ** (n - 1.0) * norm_X**2,
            math.sqrt(math.e) * n * K ** (n / 2.0 - 1.0) * norm_XYt)


def _crossover(L0: float, M: float, norm_X: float, norm_XYt: float) -> float:
    """The depth at which 4 L0/delta = B_delta, for these constants (NaN when not between 1 and 10^4)."""
    def gap(n: float) -> float:
        a, b1, b2 = denominator(n, L0, M, norm_X, norm_XYt)
        return float(np.log(a) - np.log(b1 + b2))

    if gap(1.0) >= 0 or gap(1e4) <= 0:
        return math.nan
    return float(scipy.optimize.brentq(gap, 1.0, 1e4, xtol=1e-10))


def _terms(N: int, seed: int) -> dict[str, float]:
    problem, W0 = C.compressed_paper(N, seed)
    b = dlnsim.stepsize_bound(problem, W0)
    loss_term, B1, B2 = (float(v) for v in denominator(N, b.L0, b.M, problem.norm_X, problem.norm_XYt))
    if not math.isclose(2.0 / (loss_term + B1 + B2), b.eta, rel_tol=1e-12):
        raise AssertionError(f"N={N}, seed={seed}: the denominator terms do not give eta* = {b.eta!r}")
    return {"bound_L0": b.L0, "bound_M": b.M, "bound_delta": b.delta, "bound_K": b.K, "bound_B": b.B,
            "norm_X": problem.norm_X, "norm_XYt": problem.norm_XYt, "loss_term": loss_term, "B_first": B1,
            "B_second": B2, "crossover_N": _crossover(b.L0, b.M, problem.norm_X, problem.norm_XYt)}


TERM_NAMES = {
    "bound_L0": "L0 = L^N(W(0))", "bound_M": "M of (2.11)", "bound_delta": "delta = M^(2/N)/N^3",
    "bound_K": "K_delta = (1 + 1/N) M^(2/N)", "bound_B": "B_delta of (2.9)", "norm_X": "||X|| (spectral)",
    "norm_XYt": "||X Y^T|| (spectral)",
    "loss_term": "4 L0/delta: the first part of the denominator of (5.1), eta* = 2/(4 L0/delta + B_delta)",
    "B_first": "2e N K^(N-1) ||X||^2: the first term of B_delta",
    "B_second": "sqrt(e) N K^(N/2-1) ||X Y^T||: the second term of B_delta",
    "crossover_N": "depth at which 4 L0/delta would overtake B_delta with this instance's L0, M, ||X||, ||XY^T|| "
                   "held fixed",
}


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
                               bracket=BRACKET, setup=C.compressed_paper,
                               engine=dlnsim.Engine(executor, workers=workers, scheduler=scheduler,
                                                    progress=sys.stderr.isatty()))
    C.check_cells(ds, NAME)
    # the names of this study's file: bound_eta as the other bound constants; the sweep's bookkeeping of a
    # finished cell (status), the widths and the engine's attributes are not kept
    ds = ds.rename({"eta_bound": "bound_eta"}).drop_vars(["status", "widths"], errors="ignore")
    ds.attrs = {k: v for k, v in ds.attrs.items() if k not in C.GRID_ATTRS}
    for v in ds.variables.values():
        v.attrs.setdefault("units", "1")
    ds["eta_crit"].attrs["long_name"] = CRITERION.replace("n_iter", f"n_iter = {n_iter}")
    # eta* term by term
    terms = [[_terms(N, s) for s in seeds] for N in depths]
    for key, long_name in TERM_NAMES.items():
        ds[key] = xr.DataArray([[t[key] for t in row] for row in terms], dims=("N", "seed"),
                               attrs={"units": "1", "long_name": long_name})
    total = ds["loss_term"] + ds["B_first"] + ds["B_second"]
    ds["B_share"] = ((ds["B_first"] + ds["B_second"]) / total).assign_attrs(
        units="1", long_name="B_delta / (4 L0/delta + B_delta): share of B_delta in the denominator of (5.1)")
    # medians over seeds and the local exponents between neighbouring depths
    for name in QUANTITIES:
        for stat in ("median", "min", "max"):
            ds[f"{name}_{stat}"] = xr.DataArray(getattr(ds[name], stat)("seed").values, dims="N",
                                                attrs={"units": "1", "long_name": f"{stat} over seeds of {name}"})
    Ns = np.asarray(depths, dtype=float)
    ds = ds.assign_coords(quantity=("quantity", list(QUANTITIES)),
                          N_lo=("N_interval", np.asarray(depths[:-1])), N_hi=("N_interval", np.asarray(depths[1:])))
    C.describe(ds, {"quantity": "quantity whose local exponent is given", "N_lo": "smaller depth of the interval",
                    "N_hi": "larger depth of the interval"})
    ds["local_exponent"] = xr.DataArray(
        np.array([C.local_exponents(Ns, ds[f"{q}_median"].values) for q in QUANTITIES]),
        dims=("quantity", "N_interval"), attrs={
            "units": "1", "long_name": "local exponent log(q(N_hi)/q(N_lo)) / log(N_hi/N_lo) of the median over "
                                       "seeds of the quantity q"})
    ds.attrs.update(C.study_attrs(NAME, quick, "critical constant stepsize of GD (bisection) against the bound (5.1), "
                                               "Section-5 instances, by depth N and seed"))
    ds.attrs.update({
        "seeds": seeds,
        "depths": depths,
        "setup_call": f"dlnsim.paper_setup(N, seed), {C.COMPRESSED}",
        "search_call": f"dlnsim.critical_sweep(N={depths}, seed={seeds}, n_iter={n_iter}, rtol={rtol}, "
                       f"loss_tol={LOSS_TOL}, bracket={BRACKET}, setup=compressed_paper)",
        "eta_crit_definition": CRITERION.replace("n_iter", f"n_iter = {n_iter}"),
        "n_iter": n_iter,
        "rtol": rtol,
        "loss_tol": LOSS_TOL,
    })
    return ds


def summary(ds: xr.Dataset) -> list[str]:
    """Headline numbers: per depth eta*, eta_crit and their ratio over the seeds, the share of B_delta; the local
    exponents; the crossover depth."""
    lines = [f"N={N}: eta* median {float(s.eta_star_median):.3g}, eta_crit median {float(s.eta_crit_median):.3g}, "
             f"eta_crit/eta* median {float(s.ratio_median):.0f} (range {float(s.ratio_min):.0f}-"
             f"{float(s.ratio_max):.0f}); B_delta {100 * float(s.B_share.min()):.1f}-"
             f"{100 * float(s.B_share.max()):.1f} % of the denominator; searches ok: "
             f"{int(np.sum(s.search_status.values == 'ok'))}/{s.sizes['seed']}"
             for N, s in C.by_depth(ds)]
    for q in ds["quantity"].values:
        lines.append(f"local exponents of median {q}: " + ", ".join(
            f"{int(a)}-{int(b)}: {v:.2f}" for a, b, v in zip(ds.N_lo.values, ds.N_hi.values,
                                                             ds.local_exponent.sel(quantity=q).values, strict=True)))
    c = ds["crossover_N"].values
    lines.append(f"4 L0/delta overtakes B_delta at N = {np.nanmedian(c):.0f} (median; {np.nanmin(c):.0f}-"
                 f"{np.nanmax(c):.0f} over all (N, seed))")
    return lines


def plot(ds: xr.Dataset, outdir: Path) -> list[Path]:
    from matplotlib.ticker import FixedLocator, NullLocator

    Ns = ds["N"].values.astype(float)
    n_seed = ds.sizes["seed"]
    jitter = np.linspace(-0.02, 0.02, n_seed)
    xs = (Ns[:, None] * (1 + jitter[None, :])).ravel()
    with P.style():
        fig, axes = P.subplots(2, 2, figsize=(7.0, 5.8))
        ax1, ax2, ax3, ax4 = axes.ravel()
        for name, color, marker, text in (("eta_crit", "#D55E00", "o", r"$\eta_{\rm crit}$ (bisection)"),
                                          ("eta_star", "#0072B2", "s", r"$\eta^*$ (5.1)")):
            ax1.scatter(xs, ds[name].values.ravel(), s=7, color=color, marker=marker, alpha=0.5, linewidths=0)
            ax1.loglog(Ns, ds[f"{name}_median"].values, "-", marker=marker, ms=3, color=color, label=text + ", median")
        ax1.set_ylabel(r"stepsize $\eta$")
        ax1.set_title(f"(a) critical stepsize and bound, {n_seed} seeds per N", loc="left", fontsize=8)
        ax1.legend(loc="center left", fontsize=6.5)
        ax2.scatter(xs, ds["ratio"].values.ravel(), s=7, color="#009E73", alpha=0.6, linewidths=0, label="one seed")
        ax2.loglog(Ns, ds["ratio_median"].values, "o-", color="k", ms=3, lw=0.9, label="median")
        ax2.set_ylabel(r"$\eta_{\rm crit}/\eta^*$")
        ax2.set_title("(b) how conservative the bound is", loc="left", fontsize=8)
        ax2.legend(loc="upper left", fontsize=6.5)
        mid = np.sqrt(ds["N_lo"].values * ds["N_hi"].values)
        med = {k: float(ds[k].median()) for k in ("bound_L0", "bound_M", "norm_X", "norm_XYt")}
        n_far = np.geomspace(Ns[0], 200.0, 200)
        a, b1, b2 = denominator(n_far, med["bound_L0"], med["bound_M"], med["norm_X"], med["norm_XYt"])
        ax3.semilogx(np.sqrt(n_far[1:] * n_far[:-1]), C.local_exponents(n_far, 2.0 / (a + b1 + b2)), "--",
                     color="#0072B2", lw=0.9, label=r"$\eta^*$ from (5.1), constants fixed")
        for q, color, text in (("eta_star", "#0072B2", r"$\eta^*$"), ("eta_crit", "#D55E00", r"$\eta_{\rm crit}$"),
                               ("ratio", "#009E73", r"$\eta_{\rm crit}/\eta^*$")):
            ax3.semilogx(mid, ds["local_exponent"].sel(quantity=q).values, "o-", ms=3, color=color, label=text)
        ax3.axhline(-1.0, color="#D55E00", ls=":", lw=0.9, label=r"$2/\lambda_{\max}\propto N^{-1}$ (large N)")
        ax3.axhline(0.0, color="0.5", lw=0.6)
        ax3.set_ylabel(r"local exponent $d\log q/d\log N$")
        ax3.set_title("(c) local exponents between neighbouring N (medians)", loc="left", fontsize=8)
        ax3.legend(loc="upper right", fontsize=6)
        # the denominator of (5.1): measured terms and the formula beyond, with the median constants held fixed
        ax4.loglog(n_far, a, "--", color="#CC79A7", lw=0.9)
        ax4.loglog(n_far, b1 + b2, "--", color="#0072B2", lw=0.9)
        ax4.loglog(Ns, ds["loss_term"].median("seed").values, "o", ms=3, color="#CC79A7",
                   label=r"$4L_0/\delta$ (median)")
        ax4.loglog(Ns, (ds["B_first"] + ds["B_second"]).median("seed").values, "s", ms=3, color="#0072B2",
                   label=r"$B_\delta$ (median)")
        cross = float(np.nanmedian(ds["crossover_N"].values))
        ax4.axvline(cross, color="0.4", ls=":", lw=0.9, label=f"crossover N = {cross:.0f}")
        ax4.set_title("(d) the denominator of (5.1); dashed: formula", loc="left", fontsize=8)
        ax4.legend(loc="upper left", fontsize=6.5)
        for ax in (ax1, ax2, ax4):
            ax.set_xlabel("depth $N$")
        ax3.set_xlabel("depth $N$ (measured: geometric middle of the interval)")
        for ax in (ax1, ax2):
            ax.xaxis.set_major_locator(FixedLocator(Ns))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xticklabels([f"{int(n)}" for n in Ns])
        ax3.set_ylim(-4.5, 7.5)
        fig.suptitle("Critical constant stepsize vs the bound (5.1), Section-5 instances\n"
                     r"$\eta_{\rm crit}$: largest constant $\eta$ found by bisection whose run reaches "
                     rf"$10^{{-3}}$ of the initial excess loss within {int(ds.attrs['n_iter'])} steps", fontsize=9)
    return C.save_figure(fig, outdir, NAME)
