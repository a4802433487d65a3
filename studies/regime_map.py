"""Regime map above the critical stepsize: what GD does for eta from 0.5 to 3 x eta_crit.

For N = 2, 3, 5 and two seeds of ``dlnsim.paper_setup(N, seed)`` (hidden widths compressed to 2,
`dlnsim.analysis.stability.compress_widths`), the first grid finds eta_crit with the linear-stability criterion
(`dlnsim.analysis.stability.stable_critical_stepsize`); the second runs GD for ``n_iter`` = 10^5 steps at eta = ratio x
eta_crit and classifies the run:

* ``converges``: it meets the convergence tests (relative excess loss <= 1e-12 or gradient <= 1e-8 x the
  gradient scale) at a linearly stable point (lambda_max <= 2/eta);
* ``unstable_limit``: it meets them at a point sharper than 2/eta (GD leaves such a point once its unstable
  mode has grown from rounding level);
* ``periodic``: over the last ``tail`` iterations the state repeats with a period 2 <= p <= 256:
  max_k ||w(k+p) - w(k)|| <= 1e-6 ||w|| (``period`` = the smallest such p; orbits that still drift slowly,
  e.g. towards a flatter minimiser, repeat to 1e-7, chaotic ones to 1e-4 or worse);
* ``stalled``: the same with p = 1 but the tests not met: GD sits at a critical point that is not a minimiser
  (a saddle of L^N), with the loss in ``final_loss``;
* ``bounded``: finite, not converged and not periodic within that tolerance (quasi-periodic or chaotic, or a
  transient longer than the horizon);
* ``diverges``: the loss blew up or became non-finite (``stop_iteration`` = the iteration).

The last 64 losses of every run are kept (a bifurcation diagram over eta).
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
from dlnsim.analysis import stability as S

from . import _common as C

NAME = "regime_map"
RATIOS = (0.5, 0.75, 0.9, 0.95, 0.98, 0.99, 0.995, 1.0, 1.005, 1.01, 1.02, 1.03, 1.05, 1.07, 1.1, 1.13, 1.16, 1.2,
          1.25, 1.3, 1.4, 1.6, 2.0, 2.5, 3.0)
REGIMES = ("converges", "unstable_limit", "periodic", "stalled", "bounded", "diverges")
LTOL, GTOL = 1e-12, 1e-8  # the convergence tests of the runs (the same as in the search for eta_crit)
PERIOD_TOL = 1e-6  # relative repetition of the state that counts as periodic
MAX_PERIOD = 256
N_TAIL_LOSS = 64


def crit_cell(N: int, seed: int, *, n_iter: int, rtol: float) -> xr.Dataset:
    """eta_crit of one start (linear-stability criterion, bracket from 2/sharpness)."""
    setup = dlnsim.paper_setup(N, seed)
    W0, _ = S.compress_widths(setup.W0)
    lam = S.balanced_minimum_sharpness(setup.problem, N)
    res = S.stable_critical_stepsize(setup.problem, W0, n_iter=n_iter, bracket=(0.995 * 2 / lam, 1.06 * 2 / lam),
                                     rtol=rtol, factor=1.01)
    return xr.Dataset({"eta_crit": ((), res.eta_crit, {"units": "1", "long_name": "critical stepsize"}),
                       "sharpness_min": ((), lam, {"units": "1", "long_name": "lambda_max at the balanced "
                                                                             "global minimiser"})},
                      attrs={"search_status": res.status})


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


def map_cell(N: int, seed: int, ratio: float, *, eta_crit: dict[str, float], n_iter: int, tail: int) -> xr.Dataset:
    """GD at eta = ratio x eta_crit for n_iter steps, classified."""
    setup = dlnsim.paper_setup(N, seed)
    problem = setup.problem
    W0, _ = S.compress_widths(setup.W0)
    eta = ratio * eta_crit[f"{N},{seed}"]
    rec = np.arange(n_iter - tail + 1, n_iter + 1)
    res = dlnsim.runs.gd.solve_gd(problem, W0, eta, n_iter, record=dlnsim.Record(rec, diagnostics=False),
                                  stop=dlnsim.Stop(gtol=GTOL, ltol=LTOL, early=True), snapshots=True)
    nan = math.nan
    period, rep, sharp = 0, nan, nan
    tail_loss = np.full(N_TAIL_LOSS, nan)
    if res.status == "diverged":
        regime = "diverges"
    elif res.status == "converged":
        w = res.w
        dims = res.dims
        W, p = [], 0
        for j in range(1, len(dims)):
            n = int(dims[j] * dims[j - 1])
            W.append(w[p : p + n].reshape(int(dims[j]), int(dims[j - 1])).copy())
            p += n
        sharp = dlnsim.sharpness(problem, W, iters=400, tol=1e-11)
        regime = "converges" if sharp * eta <= 2.0 else "unstable_limit"
    else:
        assert res.snapshots is not None
        sel = res.k >= n_iter - tail + 1
        period, rep = classify(res.snapshots[sel])
        regime = "bounded" if period == 0 else ("stalled" if period == 1 else "periodic")
        tail_loss = res.records["loss"][sel][-N_TAIL_LOSS:]
    loss_end = res.records["loss"][np.isfinite(res.records["loss"])]
    data = {
        "eta": ((), eta, {"units": "1", "long_name": "stepsize"}),
        "period": ((), float(period) if regime in ("periodic", "stalled") else nan,
                   {"units": "1", "long_name": "period of the orbit (iterations), periodic runs"}),
        "repetition": ((), rep, {"units": "1", "long_name": "min over p <= 256 of max_k ||w(k+p) - w(k)|| / ||w|| "
                                                            "over the tail (non-converged runs)"}),
        "stop_iteration": ((), float(res.stop_iteration), {"units": "1", "long_name": "iteration where the run "
                                                                                     "stopped (diverged or "
                                                                                     "converged) or n_iter"}),
        "limit_sharpness": ((), sharp, {"units": "1", "long_name": "lambda_max where a converged run stopped"}),
        "tail_loss_min": ((), float(np.nanmin(tail_loss)) if regime in ("periodic", "stalled", "bounded")
                          else nan, {"units": "1", "long_name": "smallest loss over the tail"}),
        "tail_loss_max": ((), float(np.nanmax(tail_loss)) if regime in ("periodic", "stalled", "bounded")
                          else nan, {"units": "1", "long_name": "largest loss over the tail"}),
        "final_loss": ((), float(loss_end[-1]) if loss_end.size else nan,
                       {"units": "1", "long_name": "loss at the last finite record"}),
        "tail_loss": (("tail_index",), tail_loss, {"units": "1", "long_name": "the last 64 losses (runs that "
                                                                               "neither converged nor diverged)"}),
    }
    return xr.Dataset(data, coords={"tail_index": np.arange(N_TAIL_LOSS)}, attrs={"regime": regime})


def _config(quick: bool) -> dict[str, Any]:
    if quick:
        return {"depths": [2, 3], "seeds": [0], "ratios": [0.9, 1.0, 1.05, 1.1, 1.2, 1.5, 3.0],
                "n_iter": 20000, "tail": 512, "crit_n_iter": 20000, "rtol": 0.004}
    return {"depths": [2, 3, 5], "seeds": [0, 1], "ratios": list(RATIOS), "n_iter": 100000, "tail": 1024,
            "crit_n_iter": 20000, "rtol": 0.002}


def compute(quick: bool, *, directory: Path | None = None, executor: Any = "threads", workers: int | None = None,
            scheduler: str | None = None) -> xr.Dataset:
    """The map over (N, seed, ratio); the cells live in ``directory`` (None: temporary)."""
    cfg = _config(quick)
    engine: dict[str, Any] = {"executor": executor, "workers": workers}
    if scheduler is not None:
        engine["scheduler"] = scheduler
    sub = None if directory is None else Path(directory)
    if sub is not None:
        sub.mkdir(parents=True, exist_ok=True)
    crit = dlnsim.run_grid(None if sub is None else sub / "crit", crit_cell,
                           {"N": cfg["depths"], "seed": cfg["seeds"]},
                           params={"n_iter": cfg["crit_n_iter"], "rtol": cfg["rtol"]}, label=f"{NAME} crit",
                           progress=sys.stderr.isatty(), **engine)
    _check(crit, "crit")
    eta_crit = {f"{int(N)},{int(s)}": float(crit["eta_crit"].sel(N=N, seed=s))
                for N in crit["N"].values for s in crit["seed"].values}
    ds = dlnsim.run_grid(None if sub is None else sub / "map", map_cell,
                         {"N": cfg["depths"], "seed": cfg["seeds"], "ratio": cfg["ratios"]},
                         params={"eta_crit": eta_crit, "n_iter": cfg["n_iter"], "tail": cfg["tail"]},
                         cost=lambda p: float(p["ratio"] > 1.0) * p["N"], label=f"{NAME} map",
                         progress=sys.stderr.isatty(), **engine)
    _check(ds, "map")
    if "regime" in ds.attrs:
        ds["regime"] = xr.DataArray(np.full(tuple(ds.sizes[d] for d in ("N", "seed", "ratio")), ds.attrs["regime"],
                                            dtype=object), dims=("N", "seed", "ratio"))
    ds["regime"] = ds["regime"].astype(str).assign_attrs(long_name="regime of the run: " + ", ".join(REGIMES))
    ds = ds.drop_vars([v for v in ("status", "error") if v in ds.variables])
    ds.attrs = {}
    ds["eta_crit"] = crit["eta_crit"].assign_attrs(units="1", long_name="critical stepsize (linear-stability "
                                                                         "criterion, horizon crit_n_iter)")
    ds["sharpness_min"] = crit["sharpness_min"]
    ds["eta_crit_over_eta_sharpness"] = (crit["eta_crit"] * crit["sharpness_min"] / 2).assign_attrs(
        units="1", long_name="eta_crit x sharpness_min / 2")
    for name, lname in (("N", "depth N"), ("seed", "seed of dlnsim.paper_setup(N, seed)"),
                        ("ratio", "stepsize / eta_crit"), ("tail_index", "index in the last 64 iterations")):
        ds[name].attrs.update(units="1", long_name=lname)
    # first ratio at which each start diverges, and the regime counts
    div = (ds["regime"] == "diverges")
    first = xr.where(div.any("ratio"), ds["ratio"].where(div).min("ratio"), np.nan)
    ds["ratio_diverge"] = first.assign_attrs(units="1", long_name="smallest ratio whose run diverges")
    for v in ds.variables.values():  # self-describing: units on every variable ("1" for text, as elsewhere)
        v.attrs.setdefault("units", "1")
    ds.attrs.update({
        "title": f"dlnsim study {NAME}" + (" (quick variant)" if quick else ""),
        "study": NAME,
        "description": "regimes of constant-stepsize GD for eta from 0.5 to 3 x eta_crit, Section-5 instances",
        "quick": int(quick),
        "command": f"python -m studies {'--quick ' if quick else ''}{NAME}",
        "source": f"studies/{NAME}.py",
        "setup_call": "dlnsim.paper_setup(N, seed), hidden widths compressed to 2",
        "n_iter": cfg["n_iter"],
        "tail": cfg["tail"],
        "crit_n_iter": cfg["crit_n_iter"],
        "rtol": cfg["rtol"],
        "ltol": LTOL,
        "gtol": GTOL,
        "period_tol": PERIOD_TOL,
        "max_period": MAX_PERIOD,
        "criterion": S.STABLE_CRITERION,
        "classification": "converges: tests met at a point with lambda_max <= 2/eta; unstable_limit: tests met at "
                          "a sharper point; periodic: max_k ||w(k+p) - w(k)|| <= period_tol ||w|| over the tail "
                          "for some 2 <= p <= max_period (smallest p); stalled: the same with p = 1 (a critical "
                          "point that is not a minimiser); bounded: none of these; diverges: loss blow-up",
        **dlnsim.io.dataset.provenance(),
    })
    return ds


def _check(ds: xr.Dataset, label: str) -> None:
    if "status" in ds and np.isin(ds["status"].values, ["error", "not_run"]).any():
        msg = str(np.asarray(ds["error"].values).ravel()[0]) if "error" in ds else "not run"
        raise RuntimeError(f"{NAME} {label}: a cell failed: {msg}")


REGIME_STYLE = {"converges": ("#009E73", "o"), "unstable_limit": ("#999999", "x"), "periodic": ("#0072B2", "s"),
                "stalled": ("#CC79A7", "P"), "bounded": ("#E69F00", "D"), "diverges": ("#D55E00", "v")}
ZOOM = (0.985, 1.3)


def _regime_panel(ax: Any, ds: xr.Dataset, ratios: np.ndarray, label_periods: bool) -> None:
    Ns = ds["N"].values
    n_seed = ds.sizes["seed"]
    for i in range(len(Ns)):
        for j in range(n_seed):
            y = i + (j - (n_seed - 1) / 2) * 0.25
            for r in ratios:
                k = int(np.flatnonzero(ds["ratio"].values == r)[0])
                reg = str(ds["regime"].values[i, j, k])
                color, marker = REGIME_STYLE.get(reg, ("k", "."))
                ax.plot(r, y, marker, color=color, ms=4)
                per = ds["period"].values[i, j, k]
                if label_periods and reg == "periodic" and np.isfinite(per) and per != 2:
                    ax.annotate(f"{int(per)}", (r, y), textcoords="offset points", xytext=(0, 4), fontsize=6,
                                ha="center")
                if reg == "diverges" and label_periods:
                    ax.annotate(f"{int(ds['stop_iteration'].values[i, j, k])}", (r, y), textcoords="offset points",
                                xytext=(0, -8), fontsize=5, ha="center", color="#D55E00")
    ax.axvline(1.0, color="0.5", lw=0.6)
    ax.set_yticks(range(len(Ns)))
    ax.set_yticklabels([f"N = {int(n)}" for n in Ns])
    ax.set_ylim(-0.6, len(Ns) - 0.4)
    ax.set_xlabel(r"$\eta/\eta_{\rm crit}$")


def plot(ds: xr.Dataset, outdir: Path) -> list[Path]:
    plt = C.pyplot()
    fig, axs = plt.subplots(1, 3, figsize=(7.0, 3.2), constrained_layout=True, width_ratios=[1.0, 1.15, 1.15])
    ax1, ax2, ax3 = axs
    ratios = ds["ratio"].values
    _regime_panel(ax1, ds, ratios, False)
    ax1.set_xscale("log")
    from matplotlib.ticker import FixedLocator, NullLocator

    ax1.xaxis.set_major_locator(FixedLocator([0.5, 1.0, 2.0, 3.0]))
    ax1.xaxis.set_minor_locator(NullLocator())
    ax1.set_xticklabels(["0.5", "1", "2", "3"])
    ax1.axvspan(*ZOOM, color="0.9", zorder=0)
    ax1.set_title("(a) regimes, 0.5-3 x", loc="left")
    zoom = ratios[(ratios >= ZOOM[0]) & (ratios <= ZOOM[1])]
    _regime_panel(ax2, ds, zoom, True)
    ax2.set_yticklabels([])
    ax2.set_title("(b) zoom; divergence iteration", loc="left")
    for reg, (color, marker) in REGIME_STYLE.items():
        if (ds["regime"].values == reg).any():
            lab = reg.replace("_", " ") + (" (period 2 unless marked)" if reg == "periodic" else "")
            ax1.plot([], [], marker, color=color, ms=4, label=lab, linestyle="none")
    ax1.legend(loc="upper center", ncol=2, fontsize=5.5, bbox_to_anchor=(0.5, 1.0), handletextpad=0.2,
               columnspacing=0.6)
    ax1.set_ylim(-0.6, len(ds["N"]) + 0.3)
    ax2.set_ylim(-0.6, len(ds["N"]) + 0.3)
    colors = ["#0072B2", "#D55E00", "#009E73", "#CC79A7"]
    s0 = ds.isel(seed=0)
    for i, N in enumerate(ds["N"].values):
        for r in zoom:
            k = int(np.flatnonzero(ds["ratio"].values == r)[0])
            tl = s0["tail_loss"].values[i, k]
            tl = tl[np.isfinite(tl)]
            if tl.size:
                ax3.plot(np.full(tl.size, r) * (1 + 0.002 * (i - 1)), tl, ".", color=colors[i % len(colors)], ms=2)
        ax3.plot([], [], ".", color=colors[i % len(colors)], label=f"N = {int(N)}")
    ax3.set_yscale("log")
    ax3.set_xlabel(r"$\eta/\eta_{\rm crit}$")
    ax3.set_ylabel("loss, last 64 iterations")
    ax3.set_title("(c) orbits (seed 0)", loc="left")
    ax3.legend(loc="lower right")
    fig.suptitle(f"Constant-stepsize GD around and above the critical stepsize, {int(ds.attrs['n_iter'])} steps "
                 "(Section-5 instances)", fontsize=9)
    return C.save_figure(fig, outdir, NAME)


#: compute, write ``<outdir>/NAME.nc`` and the figure (see `studies._common.run_study`)
run = functools.partial(C.run_study, NAME)


def summary(ds: xr.Dataset) -> list[str]:
    """For each (N, seed): the ratios of each regime, read from the Dataset."""
    lines = []
    for N in ds["N"].values:
        for s in ds["seed"].values:
            d = ds.sel(N=N, seed=s)
            parts = []
            for reg in REGIMES:
                r = d["ratio"].values[d["regime"].values == reg]
                if r.size:
                    extra = ""
                    if reg == "periodic":
                        extra = " periods " + ",".join(f"{p:.0f}" for p in d["period"].values[d["regime"].values
                                                                                                  == reg])
                    if reg == "diverges":
                        extra = " at k = " + ",".join(str(int(k)) for k in d["stop_iteration"].values[
                            d["regime"].values == reg])
                    parts.append(f"{reg} at {','.join(f'{x:g}' for x in r)}{extra}")
            lines.append(f"N={int(N)} seed={int(s)} (eta_crit {float(d.eta_crit):.4g}): " + "; ".join(parts))
    return lines


__all__ = ["NAME", "classify", "compute", "crit_cell", "map_cell", "plot", "run", "summary"]
