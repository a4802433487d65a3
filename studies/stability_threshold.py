"""Stability threshold: what sets the critical stepsize of GD on the Section-5 instance?

Hypothesis: eta_crit approaches, from below, the linear-stability limit eta_flat = 2/lambda_max at the flattest
global minimiser with the least-squares product (no minimiser is linearly stable for larger eta), and GD at
eta_crit settles at a minimiser with lambda_max <= 2/eta.  For every depth N and seed of
``dlnsim.paper_setup(N, seed)`` the cell computes

* ``sharpness_min``: lambda_max of the Hessian of L^N at the balanced global minimiser (the gradient flow's limit
  from the balanced start: the flow conserves balancedness (2.3)); closed form
  (`dlnsim.analysis.stability.balanced_minimum_sharpness`), checked against Lanczos at the integrated flow limit
  (`dlnsim.analysis.stability.flow_limit`) for the seeds in ``flow_seeds``;
* ``sharpness_flat``: the flattest minimiser with the same product (unbalanced; a local minimum of lambda_max
  over the set of minimisers, `dlnsim.analysis.minima.flattest_minimum`);
* ``eta_crit``: the critical constant stepsize at the horizon ``n_iter`` by bisection
  (`dlnsim.analysis.stability.stable_critical_stepsize`, criterion `dlnsim.analysis.critical.STABLE_CRITERION`): a
  trial converges when GD ends its horizon within the convergence tests at a linearly stable point; a run stops
  at its first tolerance hit only when that point is stable, and is continued to the horizon otherwise (GD may
  leave an unstable minimiser and settle at a flatter one).  The bracket is [BRACKET[0], BRACKET[1]] x eta_flat;
  its upper end is taken as failing without a run (above eta_flat no minimiser with this product is stable), the
  lower end is run (the search walks down when it fails);
* the horizon dependence: ``eta_crit_short`` at ``n_iter_short`` read from the same trials (a trial converges
  at the shorter horizon when the tests held from its settle iteration <= n_iter_short on; a bracket, not a
  bisection), and ``eta_crit_long`` at ``n_iter_long`` for the cells in ``long_cells`` (bisection between
  eta_crit, which converges at every longer horizon, and the upper end of the bracket);
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
from dlnsim.objective import unflatten
from dlnsim.runs.gd import solve_gd

from . import _common as C

NAME = "stability_threshold"
#: fractions of eta_crit at which the minimiser GD reaches is recorded (1 = the search's own run at eta_crit)
FRACS = (0.5, 0.9, 1.0)
#: fractions of eta_crit of the trajectories with the sharpness along the way
TRAJ_FRACS = (0.5, 1.0)
#: convergence tests of each GD run (relative excess loss; gradient relative to the problem's gradient scale)
LTOL, GTOL = 1e-12, 1e-8
#: the convergence tests of the search
STOP = dlnsim.Stop(gtol=GTOL, ltol=LTOL)
#: the same, stopping at the first iteration where one holds / running to the horizon
STOP_FIRST, STOP_FULL = STOP.replace(early=True), STOP.replace(early=False)
#: what the runs that only need their end point record
ENDPOINT = dlnsim.Record([0], diagnostics=False, final_weights=True)
#: depths between which the coarse local exponents are taken
COARSE_N = (2, 3, 4, 6, 8, 12, 16, 23, 30)
#: depths from which the power law of eta_crit is fitted
FIT_FROM_N = 8
#: bootstrap resamples of the seeds for the fitted exponent's interval
N_BOOT = 2000
BRACKET = (0.985, 1.001)  # x eta_flat; the upper end is taken as failing
FACTOR = 1.01
LANCZOS = {"iters": 400, "tol": 1e-11}
CRITERION_SHORT = ("within the convergence tests and linearly stable (lambda_max <= 2/eta) at the end of the "
                   "horizon; runs continue past a first tolerance hit at an unstable point")


def _unit(value: Any, long_name: str, dims: tuple[str, ...] = (), units: str = "1") -> xr.Variable:
    return xr.Variable(dims, np.asarray(value), attrs={"units": units, "long_name": long_name})


def _sharp(problem: dlnsim.Problem, W: list[np.ndarray]) -> float:
    return float(dlnsim.sharpness(problem, W, **LANCZOS))


def end_state(problem: dlnsim.Problem, W0: list[np.ndarray], eta: float, n_iter: int,
              bound: Any) -> tuple[list[np.ndarray] | None, int, float]:
    """Where GD with ``eta`` ends by the criterion of the search: stopped at the first tolerance hit when that
    point is linearly stable, else continued to ``n_iter``.  (factors, iteration, lambda_max) when it ends within
    the tests (stable or not), (None, iteration, NaN) otherwise."""
    r = solve_gd(problem, W0, eta, n_iter, record=ENDPOINT, stop=STOP_FIRST, bound=bound)
    if r.status != "converged":
        return None, int(r.stop_iteration), math.nan
    W = unflatten(r.w, r.dims)
    lam = _sharp(problem, W)
    if lam * eta <= 2.0:
        return W, int(r.stop_iteration), lam
    r = solve_gd(problem, W0, eta, n_iter, record=ENDPOINT, stop=STOP_FULL, bound=bound)
    if r.status != "converged":
        return None, int(r.stop_iteration), math.nan
    W = unflatten(r.w, r.dims)
    return W, int(r.stop_iteration), _sharp(problem, W)


def at_horizon(res: S.StableCriticalStepsize, horizon: int, hi: float) -> tuple[float, float]:
    """eta_crit at a horizon shorter than the search's, from its trials: a trial converges at ``horizon`` when it
    converged and the tests held from ``trial_settle_iteration`` <= horizon on.  (largest such eta, smallest
    failing eta above it; ``hi`` when none failed there)."""
    ok = [(e, o == "converged" and 0 <= s <= horizon)
          for e, o, s in zip(res.trial_eta, res.trial_outcome, res.trial_settle_iteration, strict=True)]
    conv = [e for e, c in ok if c]
    if not conv:
        return math.nan, min(res.trial_eta, default=math.nan)
    lo = max(conv)
    return lo, min([e for e, c in ok if not c and e > lo] + [hi])


def cell(N: int, seed: int, *, n_iter: int, n_iter_short: int, n_iter_long: int, long_cells: list[str],
         rtol: float, flow_seeds: list[int], traj_seeds: list[int], n_traj: int) -> xr.Dataset:
    """One (N, seed): sharpness of the minimisers, the critical stepsize at three horizons, the minimisers GD
    reaches."""
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
    flow: dict[str, Any] = {"flow_sharpness": nan, "flow_product_error": nan, "flow_balancedness": nan,
                            "flow_time": nan, "flow_excess_loss": nan, "flow_grad_norm": nan, "flow_resolution": nan,
                            "flow_status": "not_integrated"}
    if seed in flow_seeds:
        fl = S.flow_limit(problem, W0)
        Wp = dlnsim.product(fl.W)
        flow = {"flow_sharpness": _sharp(problem, fl.W),
                "flow_product_error": float(np.linalg.norm(Wp - problem.W_ls) / np.linalg.norm(problem.W_ls)),
                "flow_balancedness": fl.balancedness, "flow_time": fl.t, "flow_excess_loss": fl.excess_loss,
                "flow_grad_norm": fl.grad_norm, "flow_resolution": fl.resolution, "flow_status": fl.status}
    eta_flat = 2.0 / flat.sharpness
    hi = BRACKET[1] * eta_flat
    res = S.stable_critical_stepsize(problem, W0, n_iter=n_iter, bracket=(BRACKET[0] * eta_flat, hi), rtol=rtol,
                                     factor=FACTOR, stop=STOP, bound=bound, sharpness_tol=LANCZOS["tol"],
                                     assume_bracket="upper")
    eta_crit = res.eta_crit
    i_crit = res.trial_eta.index(eta_crit) if eta_crit in res.trial_eta else -1
    settle_crit = float(res.trial_settle_iteration[i_crit]) if i_crit >= 0 else nan
    short_lo, short_hi = at_horizon(res, n_iter_short, hi)
    # the long horizon: bisection from eta_crit(n_iter) (it converges at every longer horizon) to hi
    long = {"eta_crit_long": nan, "eta_hi_long": nan, "settle_crit_long": nan, "n_trials_long": 0.0}
    if f"{N},{seed}" in long_cells and math.isfinite(eta_crit):
        rl = S.stable_critical_stepsize(problem, W0, n_iter=n_iter_long, bracket=(eta_crit, hi), rtol=rtol,
                                        stop=STOP, bound=bound, sharpness_tol=LANCZOS["tol"], assume_bracket=True)
        j = rl.trial_eta.index(rl.eta_crit) if rl.eta_crit in rl.trial_eta else -1
        long = {"eta_crit_long": rl.eta_crit, "eta_hi_long": rl.eta_hi,
                "settle_crit_long": float(rl.trial_settle_iteration[j]) if j >= 0 else settle_crit,
                "n_trials_long": float(len(rl.trial_eta))}
    # the minimiser reached at fractions of eta_crit
    reached = {k: np.full(len(FRACS), nan) for k in ("sharpness", "balancedness", "iterations", "excess")}
    for i, f in enumerate(FRACS):
        if not math.isfinite(eta_crit):
            break
        if f == 1.0:
            W, it = res.limit_weights, res.trial_stop_iteration[i_crit]
            lam = res.trial_sharpness[i_crit]
        else:
            W, it, lam = end_state(problem, W0, f * eta_crit, n_iter, bound)
        if W is None:
            continue
        reached["sharpness"][i] = lam
        reached["balancedness"][i] = float(np.max(dlnsim.balancedness(W)))
        reached["iterations"][i] = it
        reached["excess"][i] = dlnsim.loss(problem, W) - problem.lstar
    # the sharpness along the trajectory (continued to the horizon when the search's run at eta_crit was)
    traj = {k: np.full((len(TRAJ_FRACS), n_traj + 2), nan) for k in ("k", "loss", "sharpness", "balancedness")}
    if seed in traj_seeds and math.isfinite(eta_crit):
        for i, f in enumerate(TRAJ_FRACS):
            full = f == 1.0 and res.trial_continued[i_crit]
            r = solve_gd(problem, W0, f * eta_crit, n_iter, record=dlnsim.Record(f"log:{n_traj}", diagnostics=False),
                         stop=STOP_FULL if full else STOP_FIRST, bound=bound, snapshots=True)
            assert r.snapshots is not None
            ok = np.isfinite(r.records["loss"])
            for j in np.flatnonzero(ok)[: n_traj + 2]:
                Wj = unflatten(r.snapshots[j], r.dims)
                traj["k"][i, j] = r.k[j]
                traj["loss"][i, j] = r.records["loss"][j]
                traj["sharpness"][i, j] = _sharp(problem, Wj)
                traj["balancedness"][i, j] = float(np.max(dlnsim.balancedness(Wj)))
    tr = res.trial_arrays()
    n_tr = len(res.trial_eta)
    data = {
        "eta_crit": _unit(eta_crit, f"critical constant stepsize at the horizon n_iter (largest converging eta of "
                                    f"the bisection; criterion: {CRITERION_SHORT})"),
        "eta_hi": _unit(res.eta_hi, "smallest failing stepsize of the final bracket"),
        "settle_crit": _unit(settle_crit, "iteration from which GD at eta_crit stays within the convergence tests "
                                          "(record resolution n_iter/400 for continued runs)"),
        "eta_crit_short": _unit(short_lo, "critical stepsize at the horizon n_iter_short, from the search's trials "
                                          "(largest eta that converged with settle_crit <= n_iter_short)"),
        "eta_hi_short": _unit(short_hi, "smallest stepsize above eta_crit_short that does not converge at the "
                                        "horizon n_iter_short (upper end of the search bracket when none)"),
        **{k: _unit(v, {"eta_crit_long": "critical stepsize at the horizon n_iter_long (bisection between "
                                         "eta_crit and the upper end of the bracket; cells in long_cells)",
                        "eta_hi_long": "smallest failing stepsize of the final bracket at n_iter_long",
                        "settle_crit_long": "iteration from which GD at eta_crit_long stays within the tests",
                        "n_trials_long": "trial runs of the search at n_iter_long"}[k]) for k, v in long.items()},
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
                        "flow_excess_loss": "L^N - L* at the flow's final time",
                        "flow_grad_norm": "||grad L^N||_F at the flow's final time",
                        "flow_resolution": "the smallest gradient norm the flow's integration resolves there "
                                           "(dlnsim.analysis.stability.gradient_resolution)",
                        "flow_status": "why the flow integration stopped: converged (gradient test), rounding_floor "
                                       "(the gradient stopped falling at or below flow_resolution), t_max (horizon "
                                       "reached first), an integrator status, or not_integrated (seed not in "
                                       "flow_seeds)"}[k]) for k, v in flow.items()},
        "reached_sharpness": _unit(reached["sharpness"], "lambda_max of Hess L^N where GD with eta = eta_frac x "
                                                         "eta_crit ended within the tests", ("eta_frac",)),
        "reached_balancedness": _unit(reached["balancedness"], "max_j ||W_{j+1}^T W_{j+1} - W_j W_j^T|| where "
                                                               "GD with eta_frac x eta_crit ended", ("eta_frac",)),
        "reached_iterations": _unit(reached["iterations"], "iteration where GD with eta_frac x eta_crit ended "
                                                           "(first tolerance hit, or n_iter when continued)",
                                    ("eta_frac",)),
        "reached_excess_loss": _unit(reached["excess"], "L^N - L* where GD with eta_frac x eta_crit ended",
                                     ("eta_frac",)),
        "traj_k": _unit(traj["k"], "iteration of the trajectory record", ("traj_frac", "traj_point")),
        "traj_loss": _unit(traj["loss"], "L^N along GD with eta = traj_frac x eta_crit",
                           ("traj_frac", "traj_point")),
        "traj_sharpness": _unit(traj["sharpness"], "lambda_max of Hess L^N along GD with eta = traj_frac x "
                                                   "eta_crit (Lanczos)", ("traj_frac", "traj_point")),
        "traj_balancedness": _unit(traj["balancedness"], "max_j ||W_{j+1}^T W_{j+1} - W_j W_j^T|| along GD "
                                                         "with eta = traj_frac x eta_crit",
                                   ("traj_frac", "traj_point")),
        "trial_eta": _unit(tr["trial_eta"], "stepsize of each trial run of the search", ("trial",)),
        "trial_outcome": xr.Variable(("trial",), tr["trial_outcome"],
                                     attrs={"long_name": "outcome of each trial run at the horizon (converged, "
                                                         "not_converged, unstable_limit, diverged)"}),
        "trial_stop_iteration": _unit(tr["trial_stop_iteration"].astype(float),
                                      "iteration where each trial run ended", ("trial",)),
        "trial_sharpness": _unit(tr["trial_sharpness"], "lambda_max where a trial run ended within the tests "
                                                        "(NaN otherwise)", ("trial",)),
        "trial_first_hit": _unit(tr["trial_first_hit"].astype(float), "first iteration where a convergence test "
                                                                       "held (-1: never)", ("trial",)),
        "trial_first_sharpness": _unit(tr["trial_first_sharpness"], "lambda_max at the first tolerance hit",
                                       ("trial",)),
        "trial_settle_iteration": _unit(tr["trial_settle_iteration"].astype(float),
                                        "iteration from which the tests held to the end (converged trials; -1 "
                                        "otherwise)", ("trial",)),
        "trial_continued": _unit(tr["trial_continued"].astype(float), "1 when the trial was continued past a "
                                                                      "first hit at a linearly unstable point",
                                 ("trial",)),
    }
    coords = {"eta_frac": ("eta_frac", np.array(FRACS)), "traj_frac": ("traj_frac", np.array(TRAJ_FRACS)),
              "traj_point": ("traj_point", np.arange(n_traj + 2)), "trial": ("trial", np.arange(1, n_tr + 1))}
    return xr.Dataset(data, coords=coords, attrs={"search_status": res.status, "n_trials": n_tr})


# ---------------------------------------------------------------------------------------------------- the study


def _config(quick: bool) -> dict[str, Any]:
    if quick:
        return {"depths": [2, 3, 5, 8], "seeds": [0, 1], "n_iter": 20000, "n_iter_short": 5000,
                "n_iter_long": 50000, "long_cells": ["2,0", "8,0"], "rtol": 0.004, "flow_seeds": [0],
                "traj_seeds": [0], "n_traj": 12}
    depths = [2, 3, 4, 5, 6, 8, 12, 16, 23, 30]
    return {"depths": depths, "seeds": list(range(6)), "n_iter": 20000, "n_iter_short": 5000,
            "n_iter_long": 100000, "long_cells": [f"{N},0" for N in (2, 5, 12, 30)], "rtol": 0.002,
            "flow_seeds": [0], "traj_seeds": [0], "n_traj": 16}


def _cost(point: dict[str, Any]) -> float:
    return float(point["N"]) + (60.0 if point["seed"] == 0 else 0.0)


def local_exponents(N: np.ndarray, y: np.ndarray) -> np.ndarray:
    """d log y / d log N between neighbouring depths (len(N) - 1 values)."""
    N = np.asarray(N, dtype=float)
    y = np.asarray(y, dtype=float)
    return np.diff(np.log(y)) / np.diff(np.log(N))


def fit_exponent(N: np.ndarray, y: np.ndarray, n_boot: int = N_BOOT, seed: int = 0) -> tuple[float, float, float]:
    """Slope of log(median over seeds of y) against log N (y over (N, seed)), and the 2.5 and 97.5 percentiles of
    the slope over bootstrap resamples of the seeds."""
    lx = np.log(np.asarray(N, dtype=float))
    y = np.asarray(y, dtype=float)
    if lx.size < 3:  # a line through two points has no uncertainty to estimate
        return math.nan, math.nan, math.nan
    slope = float(np.polyfit(lx, np.log(np.nanmedian(y, axis=1)), 1)[0])
    rng = np.random.default_rng(seed)
    boot = np.empty(n_boot)
    for b in range(n_boot):
        pick = rng.integers(0, y.shape[1], y.shape[1])
        boot[b] = np.polyfit(lx, np.log(np.nanmedian(y[:, pick], axis=1)), 1)[0]
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return slope, float(lo), float(hi)


def compute(quick: bool, *, directory: Path | None = None, executor: Any = "threads", workers: int | None = None,
            scheduler: str | None = None) -> xr.Dataset:
    """The study's Dataset over (N, seed); the cells live in ``directory`` (None: a temporary one)."""
    cfg = _config(quick)
    params = {k: cfg[k] for k in ("n_iter", "n_iter_short", "n_iter_long", "long_cells", "rtol", "flow_seeds",
                                  "traj_seeds", "n_traj")}
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
    for name, long_name in (("search_status", "status of the search (ok, no_converging_eta, no_failing_eta)"),):
        if name in ds.attrs:  # the same in every cell: keep it as a variable over (N, seed) anyway
            ds[name] = xr.DataArray(np.full((ds.sizes["N"], ds.sizes["seed"]), ds.attrs[name], dtype=object),
                                    dims=("N", "seed"))
        ds[name] = ds[name].astype(str).assign_attrs(long_name=long_name)
    ds = ds.drop_vars([v for v in ("status", "error", "n_trials") if v in ds.variables])
    ds.attrs = {}
    if "trial_outcome" in ds:
        ds["trial_outcome"] = ds["trial_outcome"].astype(str)

    def var(name: str, value: Any, long_name: str) -> None:
        ds[name] = (value if isinstance(value, xr.DataArray) else xr.DataArray(value)).assign_attrs(
            units="1", long_name=long_name)

    var("eta_sharpness", 2.0 / ds["sharpness_min"],
        "2 / sharpness_min: linear-stability limit of GD at the flow's (balanced) minimiser")
    var("eta_flat", 2.0 / ds["sharpness_flat"],
        "2 / sharpness_flat: linear-stability limit at the flattest minimiser with the same product")
    var("flat_gain", ds["eta_flat"] / ds["eta_sharpness"] - 1.0,
        "eta_flat / eta_sharpness - 1: how far the two predictions differ")
    var("ratio_sharpness", ds["eta_crit"] / ds["eta_sharpness"], "eta_crit / eta_sharpness")
    var("ratio_flat", ds["eta_crit"] / ds["eta_flat"], "eta_crit / eta_flat")
    var("ratio_flat_short", ds["eta_crit_short"] / ds["eta_flat"], "eta_crit_short / eta_flat (horizon n_iter_short)")
    var("ratio_flat_long", ds["eta_crit_long"] / ds["eta_flat"], "eta_crit_long / eta_flat (horizon n_iter_long)")
    var("resolution", ds["eta_hi"] / ds["eta_crit"] - 1.0,
        "eta_hi / eta_crit - 1: relative width of the final bracket at n_iter")
    var("resolution_short", ds["eta_hi_short"] / ds["eta_crit_short"] - 1.0,
        "eta_hi_short / eta_crit_short - 1 (the bracket at n_iter_short, from the trials of the search)")
    var("resolution_long", ds["eta_hi_long"] / ds["eta_crit_long"] - 1.0, "eta_hi_long / eta_crit_long - 1")
    var("ratio_star", ds["eta_crit"] / ds["eta_star"], "eta_crit / eta_star: how conservative the bound (5.1) is")
    var("kappa", (ds["sharpness_min"] - (ds["N"] - 1) * ds["c_row"]) / ds["c_max"],
        "(sharpness_min - (N - 1) c_row) / c_max: the coefficient kappa of lambda_max = (N - 1) c_row + kappa c_max")
    var("reached_stability", ds["reached_sharpness"] * ds["eta_frac"] * ds["eta_crit"] / 2.0,
        "eta lambda_max / 2 at the minimiser GD reached with eta = eta_frac x eta_crit (1 = edge of stability)")
    var("reached_flatness", ds["reached_sharpness"] / ds["sharpness_min"],
        "lambda_max at the minimiser GD reached / lambda_max at the balanced minimiser")
    var("reached_over_flat", ds["reached_sharpness"] / ds["sharpness_flat"],
        "lambda_max at the minimiser GD reached / lambda_max at the flattest minimiser")
    var("traj_stability", ds["traj_sharpness"] * ds["traj_frac"] * ds["eta_crit"] / 2.0,
        "eta lambda_max / 2 along GD with eta = traj_frac x eta_crit")
    for name in ("eta_crit", "eta_star", "eta_sharpness", "ratio_sharpness", "ratio_flat", "ratio_star",
                 "flat_gain", "ratio_flat_short", "resolution", "kappa", "settle_crit"):
        for stat in ("median", "min", "max"):
            var(f"{name}_{stat}", getattr(ds[name], stat)("seed"), f"{stat} over seeds of {name}")
    # the trials: how many were continued past an unstable first hit, and how those ended
    cont = ds["trial_continued"] == 1
    var("n_trials", ds["trial_eta"].notnull().sum("trial"), "trial runs of the search at n_iter")
    var("n_continued", cont.sum("trial"), "trials continued past a first hit at a linearly unstable point")
    var("n_continued_converged", (cont & (ds["trial_outcome"] == "converged")).sum("trial"),
        "continued trials that converged (settled at a stable minimiser within the horizon)")
    var("n_continued_unstable", (cont & (ds["trial_outcome"] == "unstable_limit")).sum("trial"),
        "continued trials still within the tests at an unstable point at the horizon")
    var("n_above_flat_converged", ((ds["trial_eta"] > ds["eta_flat"]) & (ds["trial_outcome"] == "converged")).sum(
        "trial"), "trials with eta > eta_flat that converged (0 if eta_flat bounds eta_crit)")
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
    big = ds.sel(N=Ns[Ns >= FIT_FROM_N])
    for name in ("eta_crit", "eta_flat"):
        slope, lo, hi = fit_exponent(big["N"].values, big[name].transpose("N", "seed").values)
        var(f"{name}_exponent", slope, f"slope of log median {name} against log N for N >= {FIT_FROM_N}")
        var(f"{name}_exponent_lo", lo, f"2.5 percentile of that slope over {N_BOOT} bootstrap resamples of the seeds")
        var(f"{name}_exponent_hi", hi, f"97.5 percentile of that slope over {N_BOOT} bootstrap resamples of the seeds")
    k = ds["traj_k"]
    var("traj_stability_start", ds["traj_stability"].where(k == 0).max("traj_point"),
        "eta lambda_max / 2 at the start W(0) (seeds in traj_seeds)")
    var("traj_stability_max", ds["traj_stability"].where(k >= 1).max("traj_point"),
        "max over the recorded k >= 1 of eta lambda_max(W(k)) / 2 (seeds in traj_seeds)")
    var("traj_stability_end", ds["traj_stability"].where(k == k.max("traj_point")).max("traj_point"),
        "eta lambda_max / 2 where the trajectory ended (seeds in traj_seeds)")
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
        "description": "critical stepsize of GD against the linear-stability limits 2/lambda_max at the balanced "
                       "and at the flattest minimiser, and against the bound (5.1), Section-5 instances, by depth N "
                       "and seed, at three horizons",
        "quick": int(quick),
        "command": f"python -m studies {'--quick ' if quick else ''}{NAME}",
        "source": f"studies/{NAME}.py",
        "setup_call": "dlnsim.paper_setup(N, seed), hidden widths compressed to 2 "
                      "(dlnsim.analysis.stability.compress_widths)",
        "criterion": S.STABLE_CRITERION,
        "horizon": cfg["n_iter"],
        "horizon_short": cfg["n_iter_short"],
        "horizon_long": cfg["n_iter_long"],
        "long_cells": ";".join(cfg["long_cells"]),
        "ltol": LTOL,
        "gtol": GTOL,
        "rtol": cfg["rtol"],
        "bracket_lo": BRACKET[0],
        "bracket_hi": BRACKET[1],
        "bracket": f"[{BRACKET[0]}, {BRACKET[1]}] x eta_flat; the upper end taken as failing without a run, the "
                   f"lower end run and walked down by factor {FACTOR} when it fails",
        "fit_from_N": FIT_FROM_N,
        "n_boot": N_BOOT,
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
    for name, color, label in (("ratio_sharpness", "k", r"$\eta_{\rm crit}\,\lambda_{\max}^{\rm bal}/2$"),
                               ("ratio_flat", "#009E73", r"$\eta_{\rm crit}\,\lambda_{\max}^{\rm flat}/2$")):
        ax2.scatter(xN, ds[name].values.ravel(), s=6, color=color, alpha=0.45, linewidths=0)
        ax2.plot(Ns, ds[f"{name}_median"].values, "o-", color=color, ms=3, lw=0.8, label=label + " (median)")
    h = int(ds.attrs["horizon"])
    for name, marker, label in (("ratio_flat_short", "v", f"flat, {int(ds.attrs['horizon_short']):.0e} steps"),
                                ("ratio_flat_long", "^", f"flat, {int(ds.attrs['horizon_long']):.0e} steps")):
        ax2.scatter(xN, ds[name].values.ravel(), s=9, marker=marker, color="#CC79A7", alpha=0.7, linewidths=0,
                    label=label.replace("e+0", "e"))
    ax2.axhline(1.0, color="0.5", lw=0.6)
    ax2.set_xscale("log")
    ax2.set_xlabel("depth $N$")
    ax2.set_ylabel(r"$\eta_{\rm crit}$ / stability limit")
    ax2.set_title(rf"(b) $\eta_{{\rm crit}}$ against 2/sharpness ({h:.0e} steps)".replace("e+0", "e"), loc="left")
    ax2.legend(loc="upper right")
    cols = _colors(Ns)
    show = [i for i, n in enumerate(Ns) if int(n) in (2, 3, 5, 10, 20, 30)] or list(range(len(Ns)))
    x_all = (ds["eta_frac"] * ds["eta_crit"] / ds["eta_flat"])
    y_all = ds["reached_over_flat"]
    for i in show:
        x = x_all.isel(N=i).transpose("seed", "eta_frac").values
        y = y_all.isel(N=i).transpose("seed", "eta_frac").values
        ax3.scatter(x.ravel(), y.ravel(), s=6, color=cols[i], alpha=0.6, linewidths=0)
        ax3.plot(np.nanmedian(x, axis=0), np.nanmedian(y, axis=0), "-", color=cols[i], lw=0.9,
                 label=f"N = {int(Ns[i])}")
    xx = np.linspace(0.88, 1.01, 50)
    ax3.plot(xx, 1.0 / xx, ":", color="k", label=r"$\lambda_{\max} = 2/\eta$")
    ax3.set_xlabel(r"$\eta\,/\,\eta_{\rm flat}$")
    ax3.set_ylabel(r"$\lambda_{\max}$ reached / $\lambda_{\max}^{\rm flat}$")
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
                 f"converged = within the tolerance at step {int(ds.attrs['horizon'])} at a point with "
                 r"$\lambda_{\max}\leq 2/\eta$ (runs continue past unstable tolerance hits)", fontsize=9)
    return C.save_figure(fig, outdir, NAME)


def summary(ds: xr.Dataset) -> list[str]:
    """Headline numbers, read from the Dataset."""
    lines = []
    for name, label in (("ratio_flat", "eta_crit/eta_flat"), ("ratio_sharpness", "eta_crit/eta_sharpness"),
                        ("ratio_flat_short", f"eta_crit({int(ds.attrs['horizon_short'])})/eta_flat"),
                        ("ratio_flat_long", f"eta_crit({int(ds.attrs['horizon_long'])})/eta_flat"),
                        ("resolution", "eta_hi/eta_crit - 1")):
        v = ds[name].values
        lines.append(f"{label}: median {np.nanmedian(v):.4f}, range {np.nanmin(v):.4f}-{np.nanmax(v):.4f} over "
                     f"{int(np.isfinite(v).sum())} (N, seed)")
    lines.append(f"trials continued past an unstable first hit: {int(ds['n_continued'].sum())} of "
                 f"{int(ds['n_trials'].sum())}; of those converged {int(ds['n_continued_converged'].sum())}, still "
                 f"unstable at the horizon {int(ds['n_continued_unstable'].sum())}; trials above eta_flat that "
                 f"converged: {int(ds['n_above_flat_converged'].sum())}")
    for N in ds["N"].values:
        s = ds.sel(N=N)
        lines.append(
            f"N={int(N)}: eta_crit {float(s.eta_crit_median):.4g} (x{float(s.ratio_star_median):.3g} eta*), "
            f"eta_crit/eta_flat {float(s.ratio_flat_median):.4f} "
            f"[{float(s.ratio_flat_min):.4f}, {float(s.ratio_flat_max):.4f}], "
            f"eta_crit/eta_sharpness {float(s.ratio_sharpness_median):.4f} "
            f"[{float(s.ratio_sharpness_min):.4f}, {float(s.ratio_sharpness_max):.4f}], "
            f"eta_flat/eta_sharpness - 1 {float(s.flat_gain_median):.4f}, settle at eta_crit "
            f"{float(s.settle_crit_min):.0f}-{float(s.settle_crit_max):.0f}")
    for name in ("eta_crit", "eta_flat"):
        lines.append(f"exponent of {name} for N >= {int(ds.attrs['fit_from_N'])}: {float(ds[name + '_exponent']):.3f} "
                     f"[{float(ds[name + '_exponent_lo']):.3f}, {float(ds[name + '_exponent_hi']):.3f}]")
    return lines


__all__ = ["NAME", "cell", "compute", "local_exponents", "plot", "run", "summary"]
