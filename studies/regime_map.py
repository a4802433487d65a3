"""Regime map around and above the stability limit: what GD does for eta from 0.5 to 3 x eta_flat.

eta_flat = 2/lambda_max at the flattest global minimiser with the least-squares product
(`dlnsim.analysis.minima.flattest_minimum`): above it no minimiser GD could converge to is linearly stable.  For
N = 2, 3, 5 and two seeds of ``dlnsim.paper_setup(N, seed)`` (hidden widths compressed to 2,
`dlnsim.analysis.stability.compress_widths`) GD runs at eta = eta_over_flat x eta_flat for at most ``n_iter`` = 1e5
steps, and every label below is a statement about that horizon ("period-2 at 1e5 steps"), not about the limit
k -> infinity:

* ``converges``: at the end of the horizon GD is within the convergence tests (relative excess loss <= 1e-12 or
  gradient <= 1e-8 x the gradient scale) at a linearly stable point (lambda_max <= 2/eta).  The run stops at its
  first tolerance hit only when that point is stable, and is continued to the horizon otherwise (the criterion
  of the stability-threshold study); ``settle_iteration`` says when it settled;
* ``unstable_limit``: within the tests at the end of the horizon, at a point sharper than 2/eta;
* ``periodic``: over the last ``tail`` iterations the state repeats with a period 2 <= p <= 256:
  max_k ||w(k+p) - w(k)|| <= 1e-6 ||w|| (``period`` = the smallest such p), and the orbit's mean excess loss does
  not fall by more than ``DRIFT_TOL`` per step over the tail (``orbit_drift``);
* ``decaying``: the same repetition, but the mean excess loss falls faster than that: a slowly decaying
  oscillation on its way to a minimiser (it converges after the horizon);
* ``stalled``: the same with p = 1 but the tests not met (a critical point that is not a minimiser);
* ``chaotic``: finite, not periodic within that tolerance, and the largest Lyapunov exponent of the tangent map
  v -> (I - eta Hess L^N(w_k)) v over the last ``lyap_steps`` iterations is above ``LYAP_TOL`` per step;
* ``bounded``: finite, not periodic, and that exponent <= ``LYAP_TOL`` (quasi-periodic, or a slow transient);
* ``diverges``: the loss blew up or became non-finite (``stop_iteration`` = the iteration).

The last 64 losses of every run are kept (a bifurcation diagram over eta).  The flip (period-doubling)
bifurcation: near eta_flat the period-2 orbit's mean excess loss grows linearly in eta; a least-squares line
through the period-2 cells with eta_over_flat <= ``FLIP_FIT_MAX`` gives its onset (where the line crosses 0) and
slope, with standard errors from the fit.
"""

from __future__ import annotations

import functools
import math
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

import dlnsim
from dlnsim.analysis import stability as S
from dlnsim.analysis.minima import flattest_minimum
from dlnsim.objective import hessian_vector_product, unflatten
from dlnsim.runs.gd import solve_gd

from . import _common as C

NAME = "regime_map"
#: stepsizes in units of eta_flat
ETA_OVER_FLAT = (0.5, 0.9, 0.98, 0.995, 0.999, 1.0005, 1.001, 1.002, 1.003, 1.005, 1.01, 1.02, 1.05, 1.1, 1.13,
                 1.16, 1.2, 1.25, 2.0, 3.0)
REGIMES = ("converges", "unstable_limit", "decaying", "periodic", "stalled", "chaotic", "bounded", "diverges")
LTOL, GTOL = 1e-12, 1e-8  # the convergence tests of the runs (the same as in the stability-threshold study)
STOP = dlnsim.Stop(gtol=GTOL, ltol=LTOL)
PERIOD_TOL = 1e-6  # relative repetition of the state that counts as periodic
MAX_PERIOD = 256
N_TAIL_LOSS = 64
#: largest Lyapunov exponent (per step) that does not count as chaotic
LYAP_TOL = 1e-3
#: a repeating orbit whose mean excess loss falls faster than this (per step) over the tail is "decaying"
DRIFT_TOL = 1e-6
#: period-2 cells up to this eta_over_flat enter the fit of the flip bifurcation
FLIP_FIT_MAX = 1.0201
LANCZOS = {"iters": 400, "tol": 1e-11}


def flat_cell(N: int, seed: int) -> xr.Dataset:
    """eta_flat and eta_bal of one start."""
    setup = dlnsim.paper_setup(N, seed)
    lam = S.balanced_minimum_sharpness(setup.problem, N)
    flat = flattest_minimum(setup.problem, N)
    return xr.Dataset({"sharpness_flat": ((), flat.sharpness, {"units": "1", "long_name": "lambda_max at the "
                                                                                       "flattest minimiser"}),
                       "sharpness_min": ((), lam, {"units": "1", "long_name": "lambda_max at the balanced "
                                                                             "global minimiser"})})


def classify(states: np.ndarray, max_period: int = MAX_PERIOD, tol: float = PERIOD_TOL) -> tuple[int, float]:
    """Smallest p <= max_period with max_k ||w(k+p) - w(k)|| <= tol ||w|| over the rows of ``states`` (the last
    iterations, in order), or 0; and the smallest relative repetition distance found."""
    scale = max(float(np.linalg.norm(states[-1])), 1e-300)
    best = math.inf
    for p in range(1, min(max_period, states.shape[0] // 2) + 1):
        d = float(np.max(np.linalg.norm(states[p:] - states[:-p], axis=1))) / scale
        best = min(best, d)
        if d <= tol:
            return p, d
    return 0, best


def lyapunov(problem: dlnsim.Problem, states: np.ndarray, dims: np.ndarray, eta: float, seed: int = 0,
             discard: int = 64) -> float:
    """Largest Lyapunov exponent (per step) of GD along the consecutive states (rows of ``states``): the mean of
    log ||(I - eta H(w_k)) v_k|| over the steps after the first ``discard``, v_k normalised after every step
    (a random start that aligns with the top direction during the discarded steps)."""
    v = np.random.default_rng(seed).standard_normal(states.shape[1])
    v /= np.linalg.norm(v)
    logs = []
    for j in range(states.shape[0] - 1):
        W = unflatten(states[j], dims)
        Hv = np.concatenate([M.ravel() for M in hessian_vector_product(problem, W, unflatten(v, dims))])
        v = v - eta * Hv
        n = float(np.linalg.norm(v))
        if not math.isfinite(n) or n == 0.0:
            return math.nan
        logs.append(math.log(n))
        v /= n
    return float(np.mean(logs[discard:])) if len(logs) > discard else math.nan


def map_cell(N: int, seed: int, eta_over_flat: float, *, eta_flat: dict[str, float], n_iter: int, tail: int,
             lyap_steps: int) -> xr.Dataset:
    """GD at eta = eta_over_flat x eta_flat for n_iter steps, classified at the end of the horizon."""
    setup = dlnsim.paper_setup(N, seed)
    problem = setup.problem
    W0, _ = S.compress_widths(setup.W0)
    eta = eta_over_flat * eta_flat[f"{N},{seed}"]
    nan = math.nan
    rec = dlnsim.Record(np.arange(n_iter - tail + 1, n_iter + 1), diagnostics=["grad_norm_sq"])
    res = solve_gd(problem, W0, eta, n_iter, record=rec, stop=STOP.replace(early=True), snapshots=True)
    sharp, settle = nan, nan
    if res.status == "converged":
        W = unflatten(res.w, res.dims)
        sharp = float(dlnsim.sharpness(problem, W, **LANCZOS))
        settle = float(res.stop_iteration)
        if sharp * eta > 2.0:  # an unstable first hit: GD continues to the horizon
            res = solve_gd(problem, W0, eta, n_iter, record=rec, stop=STOP, snapshots=True)
            sharp, settle = nan, nan
            if res.status == "converged":
                sharp = float(dlnsim.sharpness(problem, unflatten(res.w, res.dims), **LANCZOS))
                o = res.outcomes
                g2, ex = res.records["grad_norm_sq"], res.records["excess_loss"]
                with np.errstate(invalid="ignore"):
                    held = (g2 <= float(o["gtol_abs"]) ** 2) | ((float(o["ltol_abs"]) >= 0) & (ex <= float(
                        o["ltol_abs"])))
                fail = np.flatnonzero(~held & (res.k > 0))
                settle = float(res.k[fail[-1] + 1]) if fail.size and fail[-1] + 1 < res.k.size else (
                    float(n_iter - tail + 1) if fail.size else nan)  # nan: within the tests over the whole tail
    period, rep, lyap, drift = 0, nan, nan, nan
    tail_loss = np.full(N_TAIL_LOSS, nan)
    if res.status == "diverged":
        regime = "diverges"
    elif res.status == "converged":
        regime = "converges" if sharp * eta <= 2.0 else "unstable_limit"
    else:
        assert res.snapshots is not None
        sel = res.k >= n_iter - tail + 1
        states = res.snapshots[sel]
        period, rep = classify(states)
        losses = res.records["loss"][sel]
        tail_loss = losses[-N_TAIL_LOSS:]
        ex = losses - problem.lstar
        first, last = float(np.mean(ex[:N_TAIL_LOSS])), float(np.mean(ex[-N_TAIL_LOSS:]))
        if first > 0 and last > 0:
            drift = math.log(last / first) / (tail - N_TAIL_LOSS)
        if period == 0:
            lyap = lyapunov(problem, states[-lyap_steps:], res.dims, eta)
            regime = "chaotic" if lyap > LYAP_TOL else "bounded"
        elif period == 1:
            regime = "stalled"
        else:
            regime = "decaying" if drift < -DRIFT_TOL else "periodic"
    loss_end = res.records["loss"][np.isfinite(res.records["loss"])]
    ex_tail = tail_loss - problem.lstar
    data = {
        "eta": ((), eta, {"units": "1", "long_name": "stepsize"}),
        "period": ((), float(period) if regime in ("periodic", "stalled", "decaying") else nan,
                   {"units": "1", "long_name": "period of the orbit (iterations) at the end of the horizon"}),
        "repetition": ((), rep, {"units": "1", "long_name": "min over p <= 256 of max_k ||w(k+p) - w(k)|| / ||w|| "
                                                            "over the tail (runs that neither converged nor "
                                                            "diverged)"}),
        "lyapunov": ((), lyap, {"units": "1", "long_name": "largest Lyapunov exponent per step of the tangent map "
                                                           "over the last lyap_steps iterations (non-periodic runs)"}),
        "orbit_drift": ((), drift, {"units": "1", "long_name": "d log(mean excess loss) / dk over the tail (first "
                                                               "64 against last 64 iterations)"}),
        "stop_iteration": ((), float(res.stop_iteration), {"units": "1", "long_name": "iteration where the run "
                                                                                     "ended (stable tolerance hit, "
                                                                                     "divergence, or n_iter)"}),
        "settle_iteration": ((), settle, {"units": "1", "long_name": "converged runs: iteration from which the "
                                                                    "tests held (first hit when stable there)"}),
        "limit_sharpness": ((), sharp, {"units": "1", "long_name": "lambda_max where a converged run ended"}),
        "orbit_excess_loss": ((), float(np.nanmean(ex_tail)) if regime in ("periodic", "decaying") else nan,
                              {"units": "1", "long_name": "mean excess loss L - L* over the last 64 iterations "
                                                          "(periodic runs)"}),
        "tail_loss_min": ((), float(np.nanmin(tail_loss)) if np.isfinite(tail_loss).any() else nan,
                          {"units": "1", "long_name": "smallest loss over the last 64 iterations"}),
        "tail_loss_max": ((), float(np.nanmax(tail_loss)) if np.isfinite(tail_loss).any() else nan,
                          {"units": "1", "long_name": "largest loss over the last 64 iterations"}),
        "final_loss": ((), float(loss_end[-1]) if loss_end.size else nan,
                       {"units": "1", "long_name": "loss at the last finite record"}),
        "tail_loss": (("tail_index",), tail_loss, {"units": "1", "long_name": "the last 64 losses (runs that "
                                                                               "neither converged nor diverged)"}),
    }
    return xr.Dataset(data, coords={"tail_index": np.arange(N_TAIL_LOSS)}, attrs={"regime": regime})


def flip_fit(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Least-squares line y = slope (x - onset) through the points; standard errors of slope and onset from the
    fit's covariance (onset by the delta method).  NaN with fewer than 3 points."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    out = {"flip_onset": math.nan, "flip_onset_se": math.nan, "flip_slope": math.nan, "flip_slope_se": math.nan,
           "flip_points": float(x.size), "flip_r2": math.nan}
    if x.size < 3:
        return out
    if x.size == 3:  # a line and its residual but no covariance estimate (numpy needs 4 points for it)
        (a, b), cov = np.polyfit(x, y, 1), np.full((2, 2), np.nan)
    else:
        (a, b), cov = np.polyfit(x, y, 1, cov=True)
    onset = -b / a
    g = np.array([b / a**2, -1.0 / a])  # d onset / d (a, b)
    resid = y - (a * x + b)
    out.update(flip_onset=float(onset), flip_onset_se=float(math.sqrt(max(g @ cov @ g, 0.0))), flip_slope=float(a),
               flip_slope_se=float(math.sqrt(cov[0, 0])),
               flip_r2=float(1.0 - np.sum(resid**2) / max(np.sum((y - y.mean()) ** 2), 1e-300)))
    return out


def add_flip_fit(ds: xr.Dataset) -> xr.Dataset:
    """The flip-bifurcation fit (`flip_fit`) of every (N, seed) as variables of ``ds`` (in place; returned)."""
    x = ds["eta_over_flat"]
    fits: dict[str, list[float]] = {}
    for N in ds["N"].values:
        for s in ds["seed"].values:
            d = ds.sel(N=N, seed=s)
            use = (d["regime"].values == "periodic") & (d["period"].values == 2) & (x.values <= FLIP_FIT_MAX)
            f = flip_fit(x.values[use], d["orbit_excess_loss"].values[use])
            for k, v in f.items():
                fits.setdefault(k, []).append(v)
    shape = (ds.sizes["N"], ds.sizes["seed"])
    for k, lname in (("flip_onset", "eta_over_flat where the fitted line of the period-2 orbit's mean excess "
                                    "loss crosses 0 (flip bifurcation)"),
                     ("flip_onset_se", "standard error of flip_onset (least squares, delta method)"),
                     ("flip_slope", "slope d(orbit mean excess loss) / d(eta_over_flat) of the fitted line"),
                     ("flip_slope_se", "standard error of flip_slope"),
                     ("flip_points", "period-2 cells in the fit"),
                     ("flip_r2", "coefficient of determination of the fitted line")):
        ds[k] = xr.DataArray(np.array(fits[k]).reshape(shape), dims=("N", "seed"), attrs={"units": "1",
                                                                                           "long_name": lname})
    ds.attrs["flip_fit_max"] = FLIP_FIT_MAX
    return ds


def _config(quick: bool) -> dict[str, Any]:
    if quick:
        return {"depths": [2, 3], "seeds": [0], "eta_over_flat": [0.9, 0.999, 1.001, 1.002, 1.005, 1.01, 1.05, 1.2,
                                                                  1.5, 3.0],
                "n_iter": 20000, "tail": 512, "lyap_steps": 256}
    return {"depths": [2, 3, 5], "seeds": [0, 1], "eta_over_flat": list(ETA_OVER_FLAT), "n_iter": 100000,
            "tail": 1024, "lyap_steps": 512}


def compute(quick: bool, *, directory: Path | None = None, executor: Any = "threads", workers: int | None = None,
            scheduler: str | None = None) -> xr.Dataset:
    """The map over (N, seed, eta_over_flat); the cells live in ``directory`` (None: temporary)."""
    cfg = _config(quick)
    engine: dict[str, Any] = {"executor": executor, "workers": workers}
    if scheduler is not None:
        engine["scheduler"] = scheduler
    sub = None if directory is None else Path(directory)
    if sub is not None:
        sub.mkdir(parents=True, exist_ok=True)
    flat = dlnsim.run_grid(None if sub is None else sub / "flat", flat_cell,
                           {"N": cfg["depths"], "seed": cfg["seeds"]}, label=f"{NAME} flat",
                           progress=sys.stderr.isatty(), **engine)
    _check(flat, "flat")
    eta_flat = {f"{int(N)},{int(s)}": 2.0 / float(flat["sharpness_flat"].sel(N=N, seed=s))
                for N in flat["N"].values for s in flat["seed"].values}
    ds = dlnsim.run_grid(None if sub is None else sub / "map", map_cell,
                         {"N": cfg["depths"], "seed": cfg["seeds"], "eta_over_flat": cfg["eta_over_flat"]},
                         params={"eta_flat": eta_flat, "n_iter": cfg["n_iter"], "tail": cfg["tail"],
                                 "lyap_steps": cfg["lyap_steps"]},
                         cost=lambda p: float(p["eta_over_flat"] > 0.99) * p["N"], label=f"{NAME} map",
                         progress=sys.stderr.isatty(), **engine)
    _check(ds, "map")
    dims = ("N", "seed", "eta_over_flat")
    if "regime" in ds.attrs:
        ds["regime"] = xr.DataArray(np.full(tuple(ds.sizes[d] for d in dims), ds.attrs["regime"], dtype=object),
                                    dims=dims)
    ds["regime"] = ds["regime"].astype(str).assign_attrs(
        long_name=f"regime of the run at the end of the horizon n_iter: {', '.join(REGIMES)}")
    ds = ds.drop_vars([v for v in ("status", "error") if v in ds.variables])
    ds.attrs = {}
    ds["sharpness_flat"] = flat["sharpness_flat"]
    ds["sharpness_min"] = flat["sharpness_min"]
    ds["eta_flat"] = (2.0 / flat["sharpness_flat"]).assign_attrs(units="1", long_name="2 / sharpness_flat")
    ds["eta_sharpness"] = (2.0 / flat["sharpness_min"]).assign_attrs(
        units="1", long_name="2 / sharpness_min (the balanced minimiser's limit)")
    ds["eta_over_sharpness"] = (ds["eta"] / ds["eta_sharpness"]).assign_attrs(
        units="1", long_name="eta / eta_sharpness")
    for name, lname in (("N", "depth N"), ("seed", "seed of dlnsim.paper_setup(N, seed)"),
                        ("eta_over_flat", "stepsize / eta_flat"), ("tail_index", "index in the last 64 iterations")):
        ds[name].attrs.update(units="1", long_name=lname)
    reg = ds["regime"]
    x = ds["eta_over_flat"]
    # the sharp boundary in units of eta_flat: the largest converging and the smallest periodic stepsize
    ds["largest_converging"] = x.where(reg == "converges").max("eta_over_flat").assign_attrs(
        units="1", long_name="largest eta_over_flat whose run converges at the horizon")
    ds["smallest_periodic"] = x.where(reg == "periodic").min("eta_over_flat").assign_attrs(
        units="1", long_name="smallest eta_over_flat whose run is periodic at the horizon")
    ds["largest_periodic"] = x.where(reg == "periodic").max("eta_over_flat").assign_attrs(
        units="1", long_name="largest eta_over_flat whose run is periodic at the horizon")
    div = reg == "diverges"
    ds["first_diverging"] = x.where(div).min("eta_over_flat").assign_attrs(
        units="1", long_name="smallest eta_over_flat whose run diverges within the horizon")
    ds["ratio_diverge"] = ds["first_diverging"]
    add_flip_fit(ds)
    counts = {r: int((reg == r).sum()) for r in REGIMES}
    for v in ds.variables.values():  # self-describing: units on every variable ("1" for text, as elsewhere)
        v.attrs.setdefault("units", "1")
    ds.attrs.update({
        "title": f"dlnsim study {NAME}" + (" (quick variant)" if quick else ""),
        "study": NAME,
        "description": "regimes of constant-stepsize GD at the end of a fixed horizon, for eta from 0.5 to 3 x "
                       "eta_flat, Section-5 instances; the flip bifurcation at eta_flat",
        "quick": int(quick),
        "command": f"python -m studies {'--quick ' if quick else ''}{NAME}",
        "source": f"studies/{NAME}.py",
        "setup_call": "dlnsim.paper_setup(N, seed), hidden widths compressed to 2",
        "n_iter": cfg["n_iter"],
        "horizon": cfg["n_iter"],
        "tail": cfg["tail"],
        "lyap_steps": cfg["lyap_steps"],
        "lyap_tol": LYAP_TOL,
        "drift_tol": DRIFT_TOL,
        "flip_fit_max": FLIP_FIT_MAX,
        "ltol": LTOL,
        "gtol": GTOL,
        "period_tol": PERIOD_TOL,
        "max_period": MAX_PERIOD,
        "criterion": S.STABLE_CRITERION,
        "regime_counts": "; ".join(f"{k} {v}" for k, v in counts.items()),
        "classification": "at the end of the horizon n_iter: converges: within the tests at a point with "
                          "lambda_max <= 2/eta (runs continue past a first hit at an unstable point); "
                          "unstable_limit: within the tests at a sharper point; periodic: max_k ||w(k+p) - w(k)|| "
                          "<= period_tol ||w|| over the tail for some 2 <= p <= max_period (smallest p) and the "
                          "orbit's mean excess loss falls by at most drift_tol per step; decaying: the same "
                          "repetition but a "
                          "faster fall (converging after the horizon); stalled: "
                          "the same with p = 1 (a critical point that is not a minimiser); chaotic: none of these "
                          "and the largest Lyapunov exponent of the tangent map over the last lyap_steps "
                          "iterations > lyap_tol per step; bounded: none of these, exponent <= lyap_tol; "
                          "diverges: loss blow-up",
        **dlnsim.io.dataset.provenance(),
    })
    return ds


def _check(ds: xr.Dataset, label: str) -> None:
    if "status" in ds and np.isin(ds["status"].values, ["error", "not_run"]).any():
        msg = str(np.asarray(ds["error"].values).ravel()[0]) if "error" in ds else "not run"
        raise RuntimeError(f"{NAME} {label}: a cell failed: {msg}")


REGIME_STYLE = {"converges": ("#009E73", "o"), "unstable_limit": ("#999999", "x"), "decaying": ("#56B4E9", "o"),
                "periodic": ("#0072B2", "s"),
                "stalled": ("#CC79A7", "P"), "chaotic": ("#E69F00", "D"), "bounded": ("#F0E442", "d"),
                "diverges": ("#D55E00", "v")}
ZOOM = (0.99, 1.3)


def _horizon(ds: xr.Dataset) -> str:
    return C.fmt_pow10(float(ds.attrs["horizon"]))


def _regime_panel(ax: Any, ds: xr.Dataset, xs: np.ndarray, label_periods: bool) -> None:
    Ns = ds["N"].values
    n_seed = ds.sizes["seed"]
    for i in range(len(Ns)):
        for j in range(n_seed):
            y = i + (j - (n_seed - 1) / 2) * 0.25
            for r in xs:
                k = int(np.flatnonzero(ds["eta_over_flat"].values == r)[0])
                reg = str(ds["regime"].values[i, j, k])
                color, marker = REGIME_STYLE.get(reg, ("k", "."))
                ax.plot(r, y, marker, color=color, ms=4)
                per = ds["period"].values[i, j, k]
                if label_periods and reg == "periodic" and np.isfinite(per) and per != 2:
                    ax.annotate(f"{int(per)}", (r, y), textcoords="offset points", xytext=(0, 4), fontsize=6,
                                ha="center")
    ax.axvline(1.0, color="0.5", lw=0.6)
    ax.set_yticks(range(len(Ns)))
    ax.set_yticklabels([f"N = {int(n)}" for n in Ns])
    ax.set_ylim(-0.6, len(Ns) - 0.4)
    ax.set_xlabel(r"$\eta/\eta_{\rm flat}$")


def plot(ds: xr.Dataset, outdir: Path) -> list[Path]:
    plt = C.pyplot()
    fig, axs = plt.subplots(1, 3, figsize=(7.0, 3.3), constrained_layout=True, width_ratios=[1.0, 1.15, 1.15])
    ax1, ax2, ax3 = axs
    xs = ds["eta_over_flat"].values
    _regime_panel(ax1, ds, xs, False)
    ax1.set_xscale("log")
    from matplotlib.ticker import FixedLocator, NullLocator

    ax1.xaxis.set_major_locator(FixedLocator([0.5, 1.0, 2.0, 3.0]))
    ax1.xaxis.set_minor_locator(NullLocator())
    ax1.set_xticklabels(["0.5", "1", "2", "3"])
    ax1.axvspan(*ZOOM, color="0.9", zorder=0)
    ax1.set_title("(a) regimes, 0.5-3 x", loc="left")
    zoom = xs[(xs >= ZOOM[0]) & (xs <= ZOOM[1])]
    _regime_panel(ax2, ds, zoom, True)
    ax2.set_xscale("log")
    ax2.xaxis.set_major_locator(FixedLocator([1.0, 1.1, 1.2, 1.3]))
    ax2.xaxis.set_minor_locator(NullLocator())
    ax2.set_xticklabels(["1", "1.1", "1.2", "1.3"])
    ax2.set_yticklabels([])
    ax2.set_title("(b) zoom", loc="left")
    for reg, (color, marker) in REGIME_STYLE.items():
        if (ds["regime"].values == reg).any():
            lab = reg.replace("_", " ") + (" (period 2 unless marked)" if reg == "periodic" else "")
            ax1.plot([], [], marker, color=color, ms=4, label=lab, linestyle="none")
    ax1.legend(loc="upper center", ncol=2, fontsize=5.5, bbox_to_anchor=(0.5, 1.0), handletextpad=0.2,
               columnspacing=0.6, title=f"at {_horizon(ds)} steps", title_fontsize=5.5)
    ax1.set_ylim(-0.6, len(ds["N"]) + 0.5)
    ax2.set_ylim(-0.6, len(ds["N"]) + 0.5)
    colors = ["#0072B2", "#D55E00", "#009E73", "#CC79A7"]
    x = ds["eta_over_flat"].values
    fit_max = float(ds.attrs["flip_fit_max"])
    for i, N in enumerate(ds["N"].values):
        for j, s in enumerate(ds["seed"].values):
            d = ds.sel(N=N, seed=s)
            y = d["orbit_excess_loss"].values
            use = (d["regime"].values == "periodic") & (x <= fit_max)
            ax3.plot(x[use], y[use], "os"[j % 2], color=colors[i % len(colors)], ms=3, mfc="none" if j else None,
                     label=f"N = {int(N)}, seed {int(s)}")
            a, onset = float(d["flip_slope"]), float(d["flip_onset"])
            if np.isfinite(a) and np.isfinite(onset):
                xx = np.array([onset, x[use].max()])
                ax3.plot(xx, a * (xx - onset), "-", color=colors[i % len(colors)], lw=0.6)
    ax3.axvline(1.0, color="0.5", lw=0.6)
    ax3.set_xlabel(r"$\eta/\eta_{\rm flat}$")
    ax3.set_ylabel("period-2 orbit: mean excess loss")
    ax3.set_title("(c) flip bifurcation at $\\eta_{\\rm flat}$", loc="left")
    ax3.legend(loc="upper left", fontsize=5)
    fig.suptitle(f"Constant-stepsize GD around and above $\\eta_{{\\rm flat}}$: regimes at {_horizon(ds)} steps "
                 "(Section-5 instances)", fontsize=9)
    return C.save_figure(fig, outdir, NAME)


#: compute, write ``<outdir>/NAME.nc`` and the figure (see `studies._common.run_study`)
run = functools.partial(C.run_study, NAME)


def summary(ds: xr.Dataset) -> list[str]:
    """For each (N, seed): the stepsizes (x eta_flat) of each regime at the horizon, and the flip fit."""
    lines = [f"regimes at {int(ds.attrs['horizon'])} steps: {ds.attrs['regime_counts']}"]
    x = ds["eta_over_flat"].values
    for N in ds["N"].values:
        for s in ds["seed"].values:
            d = ds.sel(N=N, seed=s)
            parts = []
            for reg in REGIMES:
                r = x[d["regime"].values == reg]
                if r.size:
                    extra = ""
                    if reg == "periodic":
                        extra = " periods " + ",".join(f"{p:.0f}" for p in d["period"].values[d["regime"].values
                                                                                                  == reg])
                    if reg in ("chaotic", "bounded"):
                        extra = " lyapunov " + ",".join(f"{v:.2g}" for v in d["lyapunov"].values[
                            d["regime"].values == reg])
                    if reg == "diverges":
                        extra = " at k = " + ",".join(str(int(k)) for k in d["stop_iteration"].values[
                            d["regime"].values == reg])
                    parts.append(f"{reg} at {','.join(f'{v:g}' for v in r)}{extra}")
            lines.append(f"N={int(N)} seed={int(s)}: " + "; ".join(parts))
            lines.append(f"    flip onset {float(d.flip_onset):.5f} +- {float(d.flip_onset_se):.5f}, slope "
                         f"{float(d.flip_slope):.3g} +- {float(d.flip_slope_se):.2g} ({int(d.flip_points)} points, "
                         f"R^2 {float(d.flip_r2):.4f})")
    return lines


# ------------------------------------------------------------------------------------ findings for the docs


def _spans(x: np.ndarray, mask: np.ndarray) -> str:
    """The grid values where ``mask`` holds, runs of neighbouring grid points as "a-b": "0.5-0.999, 1.2"."""
    out, i = [], 0
    while i < x.size:
        if not mask[i]:
            i += 1
            continue
        j = i
        while j + 1 < x.size and mask[j + 1]:
            j += 1
        out.append(f"{x[i]:g}" if i == j else f"{x[i]:g}-{x[j]:g}")
        i = j + 1
    return ", ".join(out)


def _where(ds: xr.Dataset, regime: str, extra: Any = None) -> str:
    """Per depth and seed the stepsizes (x eta_flat) of ``regime``: "N = 2: 1.1 (seed 0), 1.05 (seed 1); ...";
    ``extra(d, mask)`` adds a note per (N, seed)."""
    x = ds["eta_over_flat"].values
    parts = []
    for N in ds["N"].values:
        cells = []
        for s in ds["seed"].values:
            d = ds.sel(N=N, seed=s)
            mask = d["regime"].values == regime
            if mask.any():
                note = f"; {extra(d, mask)}" if extra is not None else ""
                cells.append(f"{_spans(x, mask)} (seed {int(s)}{note})")
        if cells:
            parts.append(f"N = {int(N)} at " + " and ".join(cells))
    return "; ".join(parts) if parts else "none"


def _num(x: float, fmt: str) -> str:
    """``x`` in format ``fmt`` with a short exponent: 5.2e-05 -> 5.2e-5."""
    return re.sub(r"e([+-])0*(\d)", lambda m: "e" + ("-" if m.group(1) == "-" else "") + m.group(2), f"{x:{fmt}}")


def _range(v: Any, fmt: str) -> str:
    a = np.asarray(v, dtype=float).ravel()
    a = a[np.isfinite(a)]
    if not a.size:
        return "n/a"
    lo, hi = _num(a.min(), fmt), _num(a.max(), fmt)
    return lo if lo == hi else f"{lo} to {hi}"


def findings(ds: xr.Dataset) -> str:
    """The regime list of docs/stability.md (markdown), every number read from ``ds`` (data/regime_map.nc)."""
    reg, x = ds["regime"], ds["eta_over_flat"]
    above = x > 1.0

    def count(mask: Any) -> int:
        return int(mask.sum())

    out = []
    conv_above = count((reg == "converges") & above)
    out.append(f"* converges (at {_num(float(ds.attrs['horizon']), '.0e')} steps): {_where(ds, 'converges')}; "
               + ("no cell above eta_flat converges." if not conv_above else f"{conv_above} cells above eta_flat."))
    dec = reg == "decaying"
    if count(dec):
        out.append(f"* decaying: {_where(ds, 'decaying')}: the orbit's mean excess loss falls by "
                   f"{_range(-ds['orbit_drift'].where(dec), '.1e')} per step at the end of the horizon.")
    per = reg == "periodic"
    periods = sorted({int(p) for p in ds["period"].where(per).values.ravel() if np.isfinite(p)})
    out.append(f"* periodic (periods found: {', '.join(map(str, periods))}; repetition tolerance "
               f"{_num(float(ds.attrs['period_tol']), 'g')} over the last {int(ds.attrs['tail'])} iterates, drift <= "
               f"{_num(float(ds.attrs['drift_tol']), 'g')} per step): {_where(ds, 'periodic')}; "
               + ("never below eta_flat." if not count(per & ~above) else f"{count(per & ~above)} cells below it."))
    slopes = "; ".join(f"N = {int(N)}: {_range(ds['flip_slope'].sel(N=N), '.2f')}" for N in ds["N"].values)
    gap = 1.0 - ds["flip_onset"]
    out.append(f"* Flip bifurcation: the least-squares line through the period-2 cells up to "
               f"{float(ds.attrs['flip_fit_max']):.4g} eta_flat ({_range(ds['flip_points'], '.0f')} cells per start) "
               f"crosses zero at {_range(ds['flip_onset'], '.5f')} eta_flat, {_range(gap, '.0e')} below it "
               f"(standard errors {_range(ds['flip_onset_se'], '.0e')}; R^2 >= {float(ds['flip_r2'].min()):.4f}); "
               f"slopes {slopes}.")

    def lyap(d: xr.Dataset, mask: np.ndarray) -> str:
        return f"exponent {_range(d['lyapunov'].values[mask], '.1e')}"

    out.append(f"* bounded, not periodic (largest Lyapunov exponent <= {float(ds.attrs['lyap_tol']):g} per step): "
               f"{_where(ds, 'bounded', lyap)}.")
    out.append(f"* chaotic (largest Lyapunov exponent above {float(ds.attrs['lyap_tol']):g} per step): "
               f"{_where(ds, 'chaotic', lyap)}.")

    def steps(d: xr.Dataset, mask: np.ndarray) -> str:
        return f"within {int(np.max(d['stop_iteration'].values[mask])):,} steps".replace(",", " ")

    first = "; ".join(f"N = {int(N)}: " + ", ".join(f"{float(ds['first_diverging'].sel(N=N, seed=s)):g} (seed "
                                                   f"{int(s)})" for s in ds["seed"].values) for N in ds["N"].values)
    out.append(f"* diverges within the horizon, from {first}; every cell: {_where(ds, 'diverges', steps)}.")
    return "\n".join(out) + "\n"


BEGIN, END = "<!-- regimes:begin -->\n", "<!-- regimes:end -->"


def write_docs(path: Path | None = None, data: Path | None = None) -> Path:
    """Rewrite the regime list of docs/stability.md from data/regime_map.nc."""
    path = Path(path or C.ROOT / "docs" / "stability.md")
    ds = dlnsim.load(data or C.DATA / f"{NAME}.nc")
    text = path.read_text()
    i, j = text.index(BEGIN) + len(BEGIN), text.index(END)
    path.write_text(text[:i] + findings(ds) + text[j:])
    return path


__all__ = ["NAME", "add_flip_fit", "classify", "compute", "findings", "flat_cell", "flip_fit", "lyapunov", "map_cell",
           "plot", "run", "summary", "write_docs"]


if __name__ == "__main__":  # python -m studies.regime_map: rewrite the regime list of docs/stability.md
    print(write_docs())
    sys.exit(0)
