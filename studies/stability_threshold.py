"""Stability threshold: what sets the critical stepsize of GD on the Section-5 instance?

Hypothesis: eta_crit is the linear-stability limit 2/lambda_max of the minimiser GD is heading for.  For every
depth N and seed of ``dlnsim.paper_setup(N, seed)`` the cell computes

* ``sharpness_min``: lambda_max of the Hessian of L^N at the global minimiser the gradient flow from the
  balanced start reaches.  The flow conserves balancedness (2.3), so that minimiser is the balanced
  factorisation of the least-squares product W_ls; its sharpness has a closed form
  (`dlnsim.analysis.stability.balanced_minimum_sharpness`, docs/theory.md), checked against Lanczos at the
  integrated flow limit (`dlnsim.analysis.stability.flow_limit`) for the seeds in ``flow_seeds``;
* ``sharpness_flat``: the flattest minimiser with the same product (unbalanced; a local minimum of lambda_max
  over the set of minimisers, `dlnsim.analysis.minima.flattest_minimum`);
* ``eta_crit``: the critical constant stepsize by bisection (`dlnsim.analysis.stability.stable_critical_stepsize`): a
  stepsize converges when GD reaches the loss or gradient tolerance within the horizon *and* stops at a
  linearly stable point (lambda_max <= 2/eta), starting from the bracket [0.995 eta_sharpness,
  1.003 eta_flat] that the hypothesis predicts (walks outward when that is wrong);
* ``eta_star``: the bound (5.1) of the same start;
* the minimiser GD reaches at fractions of eta_crit (sharpness, balancedness), and, for the seeds in
  ``traj_seeds``, the sharpness along the GD trajectory at 0.5 and 1 x eta_crit.

GD runs on the network with hidden widths compressed to 2 (`dlnsim.analysis.stability.compress_widths`): with d_1 = 2
every iterate of the paper's network stays in the initial 2-dimensional hidden subspaces, so the losses are
the same and the nonzero Hessian spectrum at the minimisers is the same; a step is ~5x cheaper at N = 30.
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
from dlnsim.analysis.minima import flattest_minimum

from . import _common as C

NAME = "stability_threshold"
#: fractions of eta_crit at which the minimiser GD reaches is recorded (1 = the search's own run at eta_crit)
FRACS = (0.25, 0.5, 0.75, 0.9, 0.95, 0.98, 1.0)
#: fractions of eta_crit of the trajectories with the sharpness along the way
TRAJ_FRACS = (0.5, 1.0)
#: convergence tests of each GD run (relative excess loss; gradient relative to the problem's gradient scale)
LTOL, GTOL = 1e-12, 1e-8
#: the convergence tests of every run of the study (runs stop at the first iteration where one holds)
STOP = dlnsim.Stop(gtol=GTOL, ltol=LTOL, early=True)
#: what the runs that only need their end point record
ENDPOINT = dlnsim.Record([0], diagnostics=False, final_weights=True)
#: depths between which the coarse local exponents are taken
COARSE_N = (2, 3, 4, 6, 8, 12, 16, 23, 30)
BRACKET = (0.995, 1.003)  # x eta_sharpness (lower end), x eta_flat (upper end)
FACTOR = 1.01
LANCZOS = {"iters": 400, "tol": 1e-11}


def _unit(value: Any, long_name: str, dims: tuple[str, ...] = (), units: str = "1") -> xr.Variable:
    return xr.Variable(dims, np.asarray(value), attrs={"units": units, "long_name": long_name})


def cell(N: int, seed: int, *, n_iter: int, rtol: float, flow_seeds: list[int], traj_seeds: list[int],
         n_traj: int, n_iter_long: int) -> xr.Dataset:
    """One (N, seed): sharpness of the minimisers, the critical stepsize, the minimisers GD reaches."""
    setup = dlnsim.paper_setup(N, seed)
    problem = setup.problem
    W0, _ = S.compress_widths(setup.W0)
    bound = dlnsim.stepsize_bound(problem, setup.W0)
    lam_bal = S.balanced_minimum_sharpness(problem, N)
    flat = flattest_minimum(problem, N)
    _, _, Vt = np.linalg.svd(problem.W_ls)
    Vr = Vt[:2].T
    c_row = float(np.linalg.eigvalsh(Vr.T @ problem.XXt @ Vr)[-1])
    nan = math.nan
    flow = {"flow_sharpness": nan, "flow_product_error": nan, "flow_balancedness": nan, "flow_time": nan,
            "flow_excess_loss": nan}
    if seed in flow_seeds:
        fl = S.flow_limit(problem, W0)
        Wp = dlnsim.product(fl.W)
        flow = {"flow_sharpness": dlnsim.sharpness(problem, fl.W, **LANCZOS),
                "flow_product_error": float(np.linalg.norm(Wp - problem.W_ls) / np.linalg.norm(problem.W_ls)),
                "flow_balancedness": fl.balancedness, "flow_time": fl.t, "flow_excess_loss": fl.excess_loss}
    eta_bal, eta_flat = 2.0 / lam_bal, 2.0 / flat.sharpness
    res = S.stable_critical_stepsize(problem, W0, n_iter=n_iter, bracket=(BRACKET[0] * eta_bal,
                                                                          BRACKET[1] * eta_flat),
                                     rtol=rtol, factor=FACTOR, stop=STOP, bound=bound,
                                     sharpness_tol=LANCZOS["tol"])
    eta_crit = res.eta_crit
    # the minimiser reached at fractions of eta_crit
    reached = {k: np.full(len(FRACS), nan) for k in ("sharpness", "balancedness", "iterations", "excess")}
    for i, f in enumerate(FRACS):
        if not math.isfinite(eta_crit):
            break
        if f == 1.0:
            W = res.limit_weights
            it = res.trial_stop_iteration[res.trial_eta.index(eta_crit)]
        else:
            ds = dlnsim.run_gd(problem, W0, f * eta_crit, n_iter, record=ENDPOINT, stop=STOP, bound=bound)
            if ds["status"].item() != "converged":
                continue
            W, it = dlnsim.weights_from(ds), int(ds["stop_iteration"])
        if W is None:
            continue
        reached["sharpness"][i] = dlnsim.sharpness(problem, W, **LANCZOS)
        reached["balancedness"][i] = float(np.max(dlnsim.balancedness(W)))
        reached["iterations"][i] = it
        reached["excess"][i] = dlnsim.loss(problem, W) - problem.lstar
    # the horizon: does the failing end of the bracket converge with a 5x longer horizon?
    long_outcome, long_stop, long_sharp = "", nan, nan
    if seed in flow_seeds and math.isfinite(res.eta_hi):
        ds = dlnsim.run_gd(problem, W0, res.eta_hi, n_iter_long, record=ENDPOINT, stop=STOP, bound=bound)
        long_stop = int(ds["stop_iteration"])
        long_outcome = "not_converged" if ds["status"].item() == "max_iter" else str(ds["status"].item())
        if long_outcome == "converged":
            long_sharp = dlnsim.sharpness(problem, dlnsim.weights_from(ds), **LANCZOS)
            long_outcome = "converged" if long_sharp * res.eta_hi <= 2.0 else "unstable_limit"
    # the sharpness along the trajectory
    traj = {k: np.full((len(TRAJ_FRACS), n_traj + 2), nan) for k in ("k", "loss", "sharpness", "balancedness")}
    if seed in traj_seeds and math.isfinite(eta_crit):
        for i, f in enumerate(TRAJ_FRACS):
            r = dlnsim.runs.gd.solve_gd(problem, W0, f * eta_crit, n_iter,
                                        record=dlnsim.Record(f"log:{n_traj}", diagnostics=False), stop=STOP,
                                        bound=bound, snapshots=True)
            assert r.snapshots is not None
            ok = np.isfinite(r.records["loss"])
            for j in np.flatnonzero(ok)[: n_traj + 2]:
                Wj = _unflat(r.snapshots[j], r.dims)
                traj["k"][i, j] = r.k[j]
                traj["loss"][i, j] = r.records["loss"][j]
                traj["sharpness"][i, j] = dlnsim.sharpness(problem, Wj, **LANCZOS)
                traj["balancedness"][i, j] = float(np.max(dlnsim.balancedness(Wj)))
    n_tr = len(res.trial_eta)
    data = {
        "eta_crit": _unit(eta_crit, "critical constant stepsize (largest converging eta of the bisection)"),
        "eta_hi": _unit(res.eta_hi, "smallest failing stepsize of the final bracket"),
        "eta_star": _unit(bound.eta, "stepsize bound (5.1) of the start (Theorem 2.4, Section-5 delta)"),
        "bound_M": _unit(bound.M, "M of (2.11) at the start"),
        "initial_loss": _unit(res.initial_loss, "L^N at the start"),
        "sharpness_min": _unit(lam_bal, "lambda_max of Hess L^N at the balanced global minimiser the gradient "
                                        "flow from the balanced start reaches (closed form)"),
        "sharpness_flat": _unit(flat.sharpness, "lambda_max of Hess L^N at the flattest minimiser with the same "
                                                "product (local minimum over the set of minimisers)"),
        "c_row": _unit(c_row, "lambda_max(V_r^T X X^T V_r), V_r the right singular vectors of W_ls"),
        "c_max": _unit(problem.lambda_max, "lambda_max(X X^T)"),
        **{k: _unit(v, {"flow_sharpness": "lambda_max of Hess L^N at the integrated gradient-flow limit (Lanczos)",
                        "flow_product_error": "||W(T) - W_ls||_F / ||W_ls||_F of the gradient flow at its final "
                                              "time T",
                        "flow_balancedness": "max_j ||W_{j+1}^T W_{j+1} - W_j W_j^T|| at the flow's final time",
                        "flow_time": "final time T of the gradient-flow integration",
                        "flow_excess_loss": "L^N - L* at the flow's final time"}[k]) for k, v in flow.items()},
        "reached_sharpness": _unit(reached["sharpness"], "lambda_max of Hess L^N where GD with eta = eta_frac x "
                                                         "eta_crit stopped (converged)", ("eta_frac",)),
        "reached_balancedness": _unit(reached["balancedness"], "max_j ||W_{j+1}^T W_{j+1} - W_j W_j^T|| where "
                                                               "GD with eta_frac x eta_crit stopped", ("eta_frac",)),
        "reached_iterations": _unit(reached["iterations"], "iteration where GD with eta_frac x eta_crit met the "
                                                           "convergence tests", ("eta_frac",)),
        "reached_excess_loss": _unit(reached["excess"], "L^N - L* where GD with eta_frac x eta_crit stopped",
                                     ("eta_frac",)),
        "traj_k": _unit(traj["k"], "iteration of the trajectory record", ("traj_frac", "traj_point")),
        "traj_loss": _unit(traj["loss"], "L^N along GD with eta = traj_frac x eta_crit",
                           ("traj_frac", "traj_point")),
        "traj_sharpness": _unit(traj["sharpness"], "lambda_max of Hess L^N along GD with eta = traj_frac x "
                                                   "eta_crit (Lanczos)", ("traj_frac", "traj_point")),
        "traj_balancedness": _unit(traj["balancedness"], "max_j ||W_{j+1}^T W_{j+1} - W_j W_j^T|| along GD "
                                                         "with eta = traj_frac x eta_crit",
                                   ("traj_frac", "traj_point")),
        "long_stop_iteration": _unit(long_stop, "iteration where GD at eta_hi stopped with the long horizon"),
        "long_sharpness": _unit(long_sharp, "lambda_max where GD at eta_hi met the tests with the long horizon"),
        "trial_eta": _unit(np.array(res.trial_eta), "stepsize of each trial run of the search", ("trial",)),
        "trial_outcome": xr.Variable(("trial",), np.array(res.trial_outcome, dtype=object),
                                     attrs={"long_name": "outcome of each trial run (converged, not_converged, "
                                                         "unstable_limit, diverged)"}),
        "trial_stop_iteration": _unit(np.array(res.trial_stop_iteration, dtype=float),
                                      "iteration where each trial run stopped", ("trial",)),
        "trial_sharpness": _unit(np.array(res.trial_sharpness), "lambda_max of Hess L^N where a trial run met "
                                                                "the convergence tests (NaN otherwise)", ("trial",)),
    }
    coords = {"eta_frac": ("eta_frac", np.array(FRACS)), "traj_frac": ("traj_frac", np.array(TRAJ_FRACS)),
              "traj_point": ("traj_point", np.arange(n_traj + 2)), "trial": ("trial", np.arange(1, n_tr + 1))}
    return xr.Dataset(data, coords=coords, attrs={"search_status": res.status, "n_trials": n_tr,
                                                  "criterion": res.criterion, "long_outcome": long_outcome})


def _unflat(w: np.ndarray, dims: np.ndarray) -> list[np.ndarray]:
    out, p = [], 0
    for j in range(1, len(dims)):
        n = int(dims[j] * dims[j - 1])
        out.append(np.asarray(w[p : p + n]).reshape(int(dims[j]), int(dims[j - 1])).copy())
        p += n
    return out


# ---------------------------------------------------------------------------------------------------- the study


def _config(quick: bool) -> dict[str, Any]:
    if quick:
        return {"depths": [2, 3, 5, 8], "seeds": [0, 1], "n_iter": 20000, "rtol": 0.004, "flow_seeds": [0],
                "traj_seeds": [0], "n_traj": 12, "n_iter_long": 100000}
    depths = [*range(2, 13), 14, 16, 18, 20, 23, 26, 30]
    return {"depths": depths, "seeds": list(range(8)), "n_iter": 20000, "rtol": 0.002, "flow_seeds": [0],
            "traj_seeds": [0], "n_traj": 16, "n_iter_long": 100000}


def _cost(point: dict[str, Any]) -> float:
    return float(point["N"]) + (30.0 if point["seed"] == 0 else 0.0)


def local_exponents(N: np.ndarray, y: np.ndarray) -> np.ndarray:
    """d log y / d log N between neighbouring depths (len(N) - 1 values)."""
    N = np.asarray(N, dtype=float)
    y = np.asarray(y, dtype=float)
    return np.diff(np.log(y)) / np.diff(np.log(N))


def compute(quick: bool, *, directory: Path | None = None, executor: Any = "threads", workers: int | None = None,
            scheduler: str | None = None) -> xr.Dataset:
    """The study's Dataset over (N, seed); the cells live in ``directory`` (None: a temporary one)."""
    cfg = _config(quick)
    params = {k: cfg[k] for k in ("n_iter", "rtol", "flow_seeds", "traj_seeds", "n_traj", "n_iter_long")}
    if directory is not None:
        Path(directory).parent.mkdir(parents=True, exist_ok=True)
    engine: dict[str, Any] = {"executor": executor, "workers": workers}
    if scheduler is not None:
        engine["scheduler"] = scheduler
    ds = dlnsim.run_grid(directory, cell, {"N": cfg["depths"], "seed": cfg["seeds"]}, params=params,
                         cost=_cost, label=NAME, progress=sys.stderr.isatty(), **engine)
    status = ds["status"].values if "status" in ds else np.array([])
    if np.isin(status, ["error", "not_run"]).any():
        msg = str(ds["error"].values[np.isin(status, ["error", "not_run"])][0]) if "error" in ds else "not run"
        raise RuntimeError(f"{NAME}: a cell failed: {msg}")
    keep_attrs = {k: v for k, v in ds.attrs.items() if k == "criterion"}
    for name, long_name in (("search_status", "status of the search (ok, no_converging_eta, no_failing_eta)"),
                            ("long_outcome", "outcome of GD at eta_hi with the long horizon n_iter_long (seeds "
                                             "in flow_seeds; empty elsewhere)")):
        if name in ds.attrs:  # the same in every cell: keep it as a variable over (N, seed) anyway
            ds[name] = xr.DataArray(np.full((ds.sizes["N"], ds.sizes["seed"]), ds.attrs[name], dtype=object),
                                    dims=("N", "seed"))
        ds[name] = ds[name].astype(str).assign_attrs(long_name=long_name)
    ds = ds.drop_vars([v for v in ("status", "error") if v in ds.variables])
    ds.attrs = keep_attrs
    if "trial_outcome" in ds:
        ds["trial_outcome"] = ds["trial_outcome"].astype(str)
    ds["eta_sharpness"] = (2.0 / ds["sharpness_min"]).assign_attrs(
        units="1", long_name="2 / sharpness_min: linear-stability limit of GD at the flow's (balanced) minimiser")
    ds["eta_flat"] = (2.0 / ds["sharpness_flat"]).assign_attrs(
        units="1", long_name="2 / sharpness_flat: linear-stability limit at the flattest minimiser with the "
                             "same product")
    ds["ratio_sharpness"] = (ds["eta_crit"] / ds["eta_sharpness"]).assign_attrs(
        units="1", long_name="eta_crit / eta_sharpness")
    ds["ratio_flat"] = (ds["eta_crit"] / ds["eta_flat"]).assign_attrs(units="1", long_name="eta_crit / eta_flat")
    ds["ratio_star"] = (ds["eta_crit"] / ds["eta_star"]).assign_attrs(
        units="1", long_name="eta_crit / eta_star: how conservative the bound (5.1) is")
    ds["reached_stability"] = (ds["reached_sharpness"] * ds["eta_frac"] * ds["eta_crit"] / 2.0).assign_attrs(
        units="1", long_name="eta lambda_max / 2 at the minimiser GD reached with eta = eta_frac x eta_crit "
                             "(1 = edge of stability)")
    ds["reached_flatness"] = (ds["reached_sharpness"] / ds["sharpness_min"]).assign_attrs(
        units="1", long_name="lambda_max at the minimiser GD reached / lambda_max at the balanced minimiser")
    ds["traj_stability"] = (ds["traj_sharpness"] * ds["traj_frac"] * ds["eta_crit"] / 2.0).assign_attrs(
        units="1", long_name="eta lambda_max / 2 along GD with eta = traj_frac x eta_crit")
    for name in ("eta_crit", "eta_star", "eta_sharpness", "ratio_sharpness", "ratio_flat", "ratio_star"):
        for stat in ("median", "min", "max"):
            ds[f"{name}_{stat}"] = getattr(ds[name], stat)("seed").assign_attrs(
                units="1", long_name=f"{stat} over seeds of {name}")
    Ns = ds["N"].values
    mids = np.sqrt(Ns[1:] * Ns[:-1].astype(float))
    ds = ds.assign_coords(N_mid=("N_mid", mids, {"units": "1", "long_name": "geometric mean of neighbouring N"}))
    coarse = np.array([n for n in COARSE_N if n in Ns])
    cmids = np.sqrt(coarse[1:] * coarse[:-1].astype(float))
    ds = ds.assign_coords(N_mid_coarse=("N_mid_coarse", cmids, {
        "units": "1", "long_name": "geometric mean of neighbouring N of the coarse subsequence " + str(list(coarse))}))
    for name in ("eta_crit", "eta_star", "eta_sharpness", "ratio_star"):
        ds[f"{name}_local_exponent"] = xr.DataArray(
            local_exponents(Ns, ds[f"{name}_median"].values), dims="N_mid",
            attrs={"units": "1", "long_name": f"d log / d log N of the median of {name} between neighbouring N"})
        ds[f"{name}_local_exponent_coarse"] = xr.DataArray(
            local_exponents(coarse, ds[f"{name}_median"].sel(N=coarse).values), dims="N_mid_coarse",
            attrs={"units": "1", "long_name": f"d log / d log N of the median of {name} between neighbouring N "
                                              "of the coarse subsequence (less seed noise)"})
    k = ds["traj_k"]
    ds["traj_stability_start"] = ds["traj_stability"].where(k == 0).max("traj_point").assign_attrs(
        units="1", long_name="eta lambda_max / 2 at the start W(0) (seeds in traj_seeds)")
    ds["traj_stability_max"] = ds["traj_stability"].where(k >= 1).max("traj_point").assign_attrs(
        units="1", long_name="max over the recorded k >= 1 of eta lambda_max(W(k)) / 2 (seeds in traj_seeds)")
    ds["traj_stability_end"] = ds["traj_stability"].where(k == k.max("traj_point")).max("traj_point").assign_attrs(
        units="1", long_name="eta lambda_max / 2 where the trajectory stopped (seeds in traj_seeds)")
    for v in ("N", "seed", "eta_frac", "traj_frac", "traj_point", "trial"):
        if v in ds.coords:
            ds[v].attrs.setdefault("units", "1")
    ds["N"].attrs["long_name"] = "depth N"
    ds["seed"].attrs["long_name"] = "seed of dlnsim.paper_setup(N, seed)"
    ds["eta_frac"].attrs["long_name"] = "stepsize as a fraction of eta_crit"
    ds["traj_frac"].attrs["long_name"] = "stepsize of the trajectory as a fraction of eta_crit"
    ds["traj_point"].attrs["long_name"] = "index of the trajectory record (log-spaced iterations)"
    ds["trial"].attrs["long_name"] = "trial run of the search, in order"
    for v in ds.variables.values():  # self-describing: units on every variable ("1" for text, as elsewhere)
        v.attrs.setdefault("units", "1")
    ds.attrs.update({
        "title": f"dlnsim study {NAME}" + (" (quick variant)" if quick else ""),
        "study": NAME,
        "description": "critical stepsize of GD against the linear-stability limit 2/lambda_max at the "
                       "minimisers, and against the bound (5.1), Section-5 instances, by depth N and seed",
        "quick": int(quick),
        "command": f"python -m studies {'--quick ' if quick else ''}{NAME}",
        "source": f"studies/{NAME}.py",
        "setup_call": "dlnsim.paper_setup(N, seed), hidden widths compressed to 2 "
                      "(dlnsim.analysis.stability.compress_widths)",
        "horizon": cfg["n_iter"],
        "horizon_long": cfg["n_iter_long"],
        "horizon_reason": "at the stability edge GD converges slowly (N = 2, 3: up to ~2e4 steps while it drifts "
                          "to flatter minimisers); longer horizons move eta_crit by less than the bracket width",
        "ltol": LTOL,
        "gtol": GTOL,
        "rtol": cfg["rtol"],
        "bracket": "[0.995 eta_sharpness, 1.003 eta_flat], walked outward by factor 1.01 when it does not "
                   "bracket",
        "sharpness_method": "closed form at balanced minimisers; Lanczos with full reorthogonalisation on exact "
                            "Hessian-vector products (dlnsim.sharpness, residual tol 1e-11) elsewhere",
        "flow_seeds": cfg["flow_seeds"],
        "traj_seeds": cfg["traj_seeds"],
        **dlnsim.io.dataset.provenance(),
    })
    return ds


#: compute, write ``<outdir>/NAME.nc`` and the figure (see `studies._common.run_study`)
run = functools.partial(C.run_study, NAME)


def _colors(Ns: np.ndarray) -> list[Any]:
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    lo, hi = math.log(float(Ns.min())), math.log(float(Ns.max()))
    return [cmap(0.9 * (math.log(float(n)) - lo) / max(hi - lo, 1e-12)) for n in Ns]


def plot(ds: xr.Dataset, outdir: Path) -> list[Path]:
    plt = C.pyplot()
    fig, axs = plt.subplots(2, 2, figsize=(7.0, 5.8), constrained_layout=True)
    (ax1, ax2), (ax3, ax4) = axs
    Ns = ds["N"].values.astype(float)
    n_seed = ds.sizes["seed"]
    jit = 1 + np.linspace(-0.025, 0.025, n_seed)[None, :]
    xN = (Ns[:, None] * jit).ravel()
    ax1.scatter(xN, ds["eta_crit"].values.ravel(), s=6, color="#D55E00", alpha=0.6, linewidths=0)
    ax1.loglog(Ns, ds["eta_crit_median"].values, "o", color="#D55E00", ms=3.5, label=r"$\eta_{\rm crit}$ (median)")
    ax1.loglog(Ns, ds["eta_sharpness"].median("seed").values, "-", color="k",
               label=r"$2/\lambda_{\max}$ at the flow's minimiser")
    ax1.loglog(Ns, ds["eta_flat"].median("seed").values, "--", color="#009E73",
               label=r"$2/\lambda_{\max}$ at the flattest minimiser")
    ax1.scatter(xN, ds["eta_star"].values.ravel(), s=6, color="#0072B2", marker="s", alpha=0.5, linewidths=0)
    ax1.loglog(Ns, ds["eta_star_median"].values, "s", color="#0072B2", ms=3, label=r"$\eta^*$ (5.1)")
    ax1.set_xlabel("depth $N$")
    ax1.set_ylabel(r"stepsize $\eta$")
    ax1.set_title(f"(a) stepsizes, {n_seed} seeds per N", loc="left")
    ax1.legend(loc="center right", bbox_to_anchor=(1.0, 0.42))
    for name, color, label in (("ratio_sharpness", "k", r"$\eta_{\rm crit}\,\lambda_{\max}^{\rm flow}/2$"),
                               ("ratio_flat", "#009E73", r"$\eta_{\rm crit}\,\lambda_{\max}^{\rm flat}/2$")):
        ax2.scatter(xN, ds[name].values.ravel(), s=6, color=color, alpha=0.45, linewidths=0)
        ax2.plot(Ns, ds[f"{name}_median"].values, "o-", color=color, ms=3, lw=0.8, label=label + " (median)")
    ax2.axhline(1.0, color="0.5", lw=0.6)
    ax2.set_xscale("log")
    ax2.set_xlabel("depth $N$")
    ax2.set_ylabel(r"$\eta_{\rm crit}$ / stability limit")
    ax2.set_title(r"(b) $\eta_{\rm crit}$ against 2/sharpness", loc="left")
    ax2.legend(loc="upper right")
    cols = _colors(Ns)
    show = [i for i, n in enumerate(Ns) if int(n) in (2, 3, 5, 10, 20, 30)] or list(range(len(Ns)))
    x_all = (ds["eta_frac"] * ds["eta_crit"] / ds["eta_sharpness"])
    y_all = ds["reached_flatness"]
    for i in show:
        x = x_all.isel(N=i).transpose("seed", "eta_frac").values
        y = y_all.isel(N=i).transpose("seed", "eta_frac").values
        ax3.scatter(x.ravel(), y.ravel(), s=6, color=cols[i], alpha=0.6, linewidths=0)
        ax3.plot(np.nanmedian(x, axis=0), np.nanmedian(y, axis=0), "-", color=cols[i], lw=0.9,
                 label=f"N = {int(Ns[i])}")
    xx = np.linspace(0.9, 1.08, 50)
    ax3.plot(xx, 1.0 / xx, ":", color="k", label=r"$\lambda_{\max} = 2/\eta$")
    ax3.set_xlabel(r"$\eta\,/\,(2/\lambda_{\max}^{\rm flow})$")
    ax3.set_ylabel(r"$\lambda_{\max}$ reached / $\lambda_{\max}^{\rm flow}$")
    ax3.set_title("(c) sharpness of the minimiser GD reaches", loc="left")
    ax3.legend(loc="lower left", ncol=2)
    if "traj_stability" in ds:
        s0 = ds.isel(seed=0)
        for i in show:
            for f, style in ((1.0, "-"), (0.5, "--")):
                if f not in s0["traj_frac"].values:
                    continue
                k = s0["traj_k"].isel(N=i).sel(traj_frac=f).transpose("traj_point").values
                y = s0["traj_stability"].isel(N=i).sel(traj_frac=f).transpose("traj_point").values
                ok = np.isfinite(k) & np.isfinite(y)
                ax4.plot(k[ok] + 1, y[ok], style, color=cols[i], lw=0.9,
                         label=f"N = {int(Ns[i])}" if f == 1.0 else None)
        ax4.axhline(1.0, color="0.5", lw=0.6)
        ax4.set_xscale("log")
        ax4.set_xlabel("iteration $k + 1$")
        ax4.set_ylabel(r"$\eta\,\lambda_{\max}(W(k))/2$")
        ax4.set_title(r"(d) along GD, seed 0 (dashed: $\eta_{\rm crit}/2$)", loc="left")
        ax4.legend(loc="lower right", ncol=2)
    from matplotlib.ticker import FixedLocator, NullLocator

    ticks = [n for n in Ns if int(n) in (2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 30)]
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([f"{int(n)}" for n in ticks])
    fig.suptitle("What sets the critical stepsize: linear stability at the minimiser (Section-5 instances)\n"
                 f"converged = tolerance reached within {int(ds.attrs['horizon'])} steps at a point with "
                 r"$\lambda_{\max}\leq 2/\eta$", fontsize=9)
    return C.save_figure(fig, outdir, NAME)


def summary(ds: xr.Dataset) -> list[str]:
    """Headline numbers, read from the Dataset."""
    lines = []
    for name, label in (("ratio_sharpness", "eta_crit/eta_sharpness"), ("ratio_flat", "eta_crit/eta_flat")):
        v = ds[name].values
        lines.append(f"{label}: median {np.nanmedian(v):.4f}, range {np.nanmin(v):.4f}-{np.nanmax(v):.4f} over "
                     f"all (N, seed)")
    for N in ds["N"].values:
        s = ds.sel(N=N)
        lines.append(
            f"N={int(N)}: eta_crit {float(s.eta_crit_median):.4g} (x{float(s.ratio_star_median):.3g} eta*), "
            f"eta_crit/eta_sharpness {float(s.ratio_sharpness_median):.4f} "
            f"[{float(s.ratio_sharpness_min):.4f}, {float(s.ratio_sharpness_max):.4f}], "
            f"eta_crit/eta_flat {float(s.ratio_flat_median):.4f} "
            f"[{float(s.ratio_flat_min):.4f}, {float(s.ratio_flat_max):.4f}]")
    coarse = [n for n in COARSE_N if n in ds["N"].values]
    for name in ("eta_crit", "eta_star", "ratio_star"):
        ex = ", ".join(f"{a:.0f}-{b:.0f}: {e:.2f}" for a, b, e in zip(
            coarse[:-1], coarse[1:], ds[f"{name}_local_exponent_coarse"].values, strict=True))
        lines.append(f"local exponents of the median of {name}: {ex}")
    return lines


__all__ = ["NAME", "cell", "compute", "local_exponents", "plot", "run", "summary"]
