"""Step rules against their linear-stability predictions: heavy-ball and Nesterov momentum, minibatch SGD.

Three parts, each a grid of cells over (N, seed) on dlnsim's grid engine.

**Momentum** (the Section-5 instance, `_common.compressed_paper(N, seed)`, N = 2, 3, 5, 10, 8 seeds).  The
prediction: a constant stepsize is linearly stable at a minimiser whose Hessian has largest eigenvalue lambda
iff eta < 2/lambda (GD), 2 (1 + beta)/lambda (heavy-ball, Polyak 1964), 2 (1 + beta)/((1 + 2 beta) lambda)
(Nesterov) (`dlnsim.methods.StepRule.stability_limit`), with lambda = lambda_max at the flattest minimiser with
the least-squares product (`dlnsim.analysis.minima.flattest_minimum`; GD's eta_crit sits at its 2/lambda on this
instance, studies/stability_threshold.py).  The measurement: eta_crit by the search of `dlnsim.critical_stepsize`
(its criterion: a run of at most ``n_iter`` steps converges when it does not diverge and ends with L - L* <=
min(loss_tol (L(0) - L*), Delta/2), Delta = `dlnsim.analysis.critical.saddle_gap`), bracketed by [pred/64, 1.02
pred] (walks outward when that does not bracket), then the end point of the run at eta_crit is checked for linear
stability against the *rule's* limit, eta_crit <= rule.stability_limit(lambda_max(end))
(`dlnsim.analysis.critical.stable_critical_stepsize` checks lambda eta <= 2, GD's limit, for every rule; not usable
for momentum).  The trials are run by `dlnsim.runs.gd.solve_gd` (`run_gd` without its Dataset, which costs more than
a whole trial here) through the bracketing and bisection of `dlnsim.analysis.critical` (``bracket_and_bisect``, the
search of `dlnsim.critical_stepsize`; tests/test_step_rules_study.py checks that both give the same eta_crit).  Two
starts: the paper's W(0) (``start = "paper"``), and the flattest minimiser itself with a relative perturbation of
NEAR_EPS (``start = "near"``): there the linearisation is the dynamics, so eta_crit/pred tests the formula; from
W(0) it tests whether the transient lets the run get there.  For seed 0 every rule is also run on a grid of
stepsizes (``scan_*``): the set of converging stepsizes need not be an interval, and the bisection returns one edge
of it.

**Minibatch SGD** (``dlnsim.paper_setup(N, seed, d=SGD_D, m=SGD_M)``, realisable: Y = W~ X, so every
minimiser interpolates and SGD with a constant stepsize can converge; N = 2, 3, 8 seeds; widths compressed).
At an interpolating minimiser every per-sample loss l_i = 1/2 ||y_i - W x_i||^2 is minimal too, its Hessian is
G_i = J_i^T J_i (J_i the Jacobian of the parameters -> W x_i), H = sum_i G_i, and SGD linearised there is
e(k+1) = (I - eta H_B) e(k) with H_B = (m/b) sum_{i in B} G_i.  Its second moment evolves by
S -> T(S) = E_B[(I - eta H_B) S (I - eta H_B)] = (I - eta H) S (I - eta H) + eta^2 kappa (m sum_i G_i S G_i - H S H)
with kappa = 1/b (b indices drawn with replacement) or kappa = (m - b)/(b (m - 1)) (a uniform b-subset without
replacement: the one-batch approximation of reshuffling).  T is self-adjoint and positive on symmetric
matrices, so rho(T) < 1 iff I - T > 0 iff A - eta B > 0 with A = H (+) H (Kronecker sum) and
B = (1 - kappa) H (x) H + kappa m sum_i G_i (x) G_i: the mean-square stability limit is
eta_ms = 1/lambda_max(A^{-1/2} B A^{-1/2}) on the range of H (H and every G_i vanish on its kernel, the tangent
space of the minimisers).  kappa = 0 (b = m without replacement) gives 2/lambda_max(H).  `ms_limit` computes it
exactly (q^2 x q^2 with q = rank H = r (d_x + d_y - r) = 12 here).  eta_crit(b): the same search, a stepsize
converges when every one of SGD_SEEDS batch seeds reaches L - L* <= SGD_LTOL (L(0) - L*) within SGD_N_ITER steps
without diverging (runs stop there); the end point of each run at eta_crit is checked against eta_ms there.
b = m under reshuffling takes every sample in every step: that is GD (the same update, the sum in another
order), run as `dlnsim.GD`.

**The open question** (same small instances): at eta in {eta*, 10 eta*, 100 eta*, 0.9 eta_crit(b)} (eta* the
bound (5.1) of the start), for every (N, seed, b) one SGD run (reshuffling, batch seed 0) and GD at the same
eta, at most ceil(OQ_T / eta) steps (flow time OQ_T, capped at OQ_CAP steps), stopping once
L - L* <= OQ_LTOL (L(0) - L*): converged, diverged or unfinished, and the balancedness
max_j ||W_{j+1}^T W_{j+1} - W_j W_j^T|| (the ``balancedness`` record) at the start and where the run stopped.
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
from dlnsim.analysis.critical import LossCriterion, TrialOutcome, bracket_and_bisect
from dlnsim.analysis.minima import flattest_minimum
from dlnsim.analysis.stability import balanced_minimum_sharpness, compress_widths
from dlnsim.objective import unflatten
from dlnsim.runs.gd import solve_gd

from . import _common as C

__all__ = ["NAME", "compute", "jacobians", "momentum_cell", "ms_limit", "plot", "run", "search", "sgd_cell",
           "summary"]

NAME = "step_rules"
#: ``run(quick, outdir, cells=None, **engine)``: compute, write ``<outdir>/<NAME>.nc`` and the figure
run = functools.partial(C.run_study, NAME)

# ------------------------------------------------------------------------------------------------ settings
RULES = ("heavy_ball", "nesterov")
BETAS = (0.0, 0.5, 0.9, 0.99)
STARTS = ("paper", "near")
#: relative size of the perturbation of the flattest minimiser (start "near")
NEAR_EPS = 1e-3
#: momentum: horizon, relative loss tolerance, gradient test (tiny: runs stop at the loss test), search
MOM_N_ITER = 3000
MOM_LOSS_TOL = 1e-8
MOM_GTOL = 1e-14
MOM_BRACKET = {"paper": (math.nan, 1.02), "near": (0.97, 1.03)}  # x pred; paper: lower end `mom_lo`
MOM_RTOL = {"paper": 0.03, "near": 0.005}
MOM_FACTOR = {"paper": 2.0, "near": 1.05}
#: stepsizes of the scan (x pred), seed 0
SCAN = tuple(float(x) for x in np.geomspace(1.0 / 32.0, 1.1, 16))
LANCZOS = {"iters": 400, "tol": 1e-10}

SGD_D, SGD_M = 4, 12
SGD_BATCHES = (1, 2, 3, 6, 12)
SAMPLINGS = ("reshuffle", "replacement")
SGD_SEEDS = (0, 1, 2)
SGD_N_ITER = 3000
SGD_LTOL = 1e-8
SGD_BRACKET = (0.8, 1.25)  # x eta_ms at the flattest minimiser
SGD_RTOL = 0.02
SGD_FACTOR = 1.25
#: SGD evaluates the full loss (and its convergence tests) only at record points: every SGD_CHECK steps
SGD_CHECK = 20

#: sampling of the open-question runs (with replacement: one generator per 1024 steps, where reshuffling needs a
#: permutation of the m samples per epoch)
OQ_SAMPLING = "replacement"
OQ_CASES = ("eta_star", "10_eta_star", "100_eta_star", "0.9_eta_crit")
OQ_T = 60.0
OQ_CAP = 200_000
#: record points (full loss, tests, balancedness) of an open-question run of n steps: every max(1, n // OQ_RECORDS)
OQ_RECORDS = 500
OQ_LTOL = 1e-10


def mom_lo(beta: float) -> float:
    """Lower end of the bracket from W(0), x pred: 0.75 for GD, (1 - beta)/2 with momentum (the effective step
    eta/(1 - beta) of a slowly varying gradient then stays below GD's)."""
    return 0.75 if beta == 0.0 else (1.0 - beta) / 2.0


def _rule(name: str, beta: float) -> dlnsim.methods.StepRule:
    if beta == 0.0:
        return dlnsim.GD()
    return dlnsim.HeavyBall(beta) if name == "heavy_ball" else dlnsim.Nesterov(beta)


# ------------------------------------------------------------------------------------------- the search


def search(trial_fn: Any, bracket: tuple[float, float], *, rtol: float, factor: float,
           max_expand: int = 40) -> tuple[float, float, str, list[tuple[float, bool]]]:
    """The bracketing and bisection of `dlnsim.critical_stepsize` on ``trial_fn(eta) -> (converged,
    final_loss, initial_loss)``: ``(eta_crit, eta_hi, status, trials)`` (NaN where not found)."""
    trials: list[tuple[float, bool]] = []

    def trial(eta: float) -> TrialOutcome:
        ok, final, initial = trial_fn(eta)
        trials.append((eta, ok))
        return TrialOutcome(ok, final, initial)

    lo, hi = bracket
    L, U, status = bracket_and_bisect(trial, lo, hi, factor=factor, max_expand=max_expand, rtol=rtol,
                                       walk_down_gives_up=True)
    return (math.nan if L is None else L), (math.nan if U is None else U), status, trials


def _gd_trial(problem: dlnsim.Problem, W0: list[np.ndarray], rule: Any, n_iter: int, loss_tol: float,
              bound: Any, keep: dict[float, np.ndarray]) -> Any:
    """The trial of `dlnsim.critical_stepsize`, judged by its criterion (`LossCriterion`: not diverged, final
    excess <= loss_tol x initial and <= half the excess of the lowest saddle); the end state goes to ``keep``."""
    stop = dlnsim.Stop(gtol=MOM_GTOL, ltol=loss_tol, early=True)
    rec = dlnsim.Record([0], diagnostics=False)
    criterion = LossCriterion.for_start(problem, W0, loss_tol)

    def fn(eta: float) -> tuple[bool, float, float]:
        r = solve_gd(problem, W0, eta, n_iter, method=rule, record=rec, stop=stop, bound=bound)
        a = r.outcomes
        outcome = criterion.judge(a)
        final = float(a["final_loss"])
        keep[eta] = (r.w.copy(), int(r.stop_iteration))
        return (outcome == "converged", final if outcome != "diverged" and math.isfinite(final) else math.inf,
                float(a["initial_loss"]))

    return fn


def _dims(W: list[np.ndarray]) -> np.ndarray:
    return np.array([W[0].shape[1], *(Wj.shape[0] for Wj in W)], dtype=np.int64)


def near_start(factors: list[np.ndarray], seed: int, eps: float = NEAR_EPS) -> list[np.ndarray]:
    """The factors with each W_j moved by eps ||W_j||_F in a random direction (``default_rng([seed, 7])``)."""
    rng = np.random.default_rng([seed, 7])
    out = []
    for Wj in factors:
        G = rng.standard_normal(Wj.shape)
        out.append(Wj + eps * np.linalg.norm(Wj) * G / np.linalg.norm(G))
    return out


# ------------------------------------------------------------------------------------------- momentum cell


def momentum_cell(N: int, seed: int, *, n_iter: int, loss_tol: float, scan_seeds: list[int],
                  near_seeds: list[int]) -> xr.Dataset:
    """One (N, seed) of the Section-5 instance: eta_crit of every (rule, beta, start) and the prediction."""
    problem, W0 = C.compressed_paper(N, seed)
    bound = dlnsim.stepsize_bound(problem, dlnsim.paper_setup(N, seed).W0)
    flat = flattest_minimum(problem, N)
    lam = flat.sharpness
    near = near_start(flat.factors, seed)
    shape = (len(RULES), len(BETAS), len(STARTS))
    out = {k: np.full(shape, math.nan) for k in ("eta_crit", "eta_hi", "n_trials", "end_sharpness", "end_ratio",
                                                 "stop_iteration")}
    status = np.full(shape, "", dtype=object)
    scan = np.full((len(RULES), len(BETAS), len(SCAN)), "", dtype=object)
    done: dict[tuple[float, str], tuple[Any, ...]] = {}
    for ib, beta in enumerate(BETAS):
        for ir, name in enumerate(RULES):
            rule = _rule(name, beta)
            pred = rule.stability_limit(lam)
            for i_s, start in enumerate(STARTS):
                if start == "near" and seed not in near_seeds:
                    continue
                if beta == 0.0 and (beta, start) in done:  # GD: the same for both rules
                    res = done[(beta, start)]
                else:
                    keep: dict[float, Any] = {}
                    w0 = W0 if start == "paper" else near
                    fn = _gd_trial(problem, w0, rule, n_iter, loss_tol, bound, keep)
                    lo, hi = MOM_BRACKET[start]
                    lo = mom_lo(beta) if start == "paper" else lo
                    eta_c, eta_hi, st, trials = search(fn, (lo * pred, hi * pred), rtol=MOM_RTOL[start],
                                                       factor=MOM_FACTOR[start])
                    lam_end, ratio_end, k_end = math.nan, math.nan, math.nan
                    if math.isfinite(eta_c):
                        w, k_end = keep[eta_c]
                        lam_end = dlnsim.sharpness(problem, unflatten(w, _dims(w0)), **LANCZOS)
                        ratio_end = eta_c / rule.stability_limit(lam_end)
                    res = (eta_c, eta_hi, st, len(trials), lam_end, ratio_end, k_end)
                    done[(beta, start)] = res
                idx = (ir, ib, i_s)
                (out["eta_crit"][idx], out["eta_hi"][idx], status[idx], out["n_trials"][idx],
                 out["end_sharpness"][idx], out["end_ratio"][idx], out["stop_iteration"][idx]) = res
            if seed in scan_seeds:
                if beta == 0.0 and ir == 1:
                    scan[ir, ib] = scan[0, ib]
                    continue
                keep = {}
                fn = _gd_trial(problem, W0, rule, n_iter, loss_tol, bound, keep)
                for j, f in enumerate(SCAN):
                    ok, final, _ = fn(f * pred)
                    scan[ir, ib, j] = "converged" if ok else ("diverged" if math.isinf(final) else "not_converged")
    pred = np.array([[_rule(n, b).stability_limit(lam) for b in BETAS] for n in RULES])
    d3 = ("rule", "beta", "start")
    data = {
        "sharpness_flat": ((), lam),
        "sharpness_balanced": ((), balanced_minimum_sharpness(problem, N)),
        "eta_star": ((), bound.eta),
        "eta_pred": (("rule", "beta"), pred),
        "eta_crit": (d3, out["eta_crit"]),
        "eta_hi": (d3, out["eta_hi"]),
        "search_status": (d3, status.astype(str)),
        "n_trials": (d3, out["n_trials"]),
        "end_sharpness": (d3, out["end_sharpness"]),
        "end_ratio": (d3, out["end_ratio"]),
        "stop_iteration": (d3, out["stop_iteration"]),
        "scan_outcome": (("rule", "beta", "scan_frac"), scan.astype(str)),
    }
    coords = {"rule": list(RULES), "beta": list(BETAS), "start": list(STARTS), "scan_frac": list(SCAN)}
    return xr.Dataset(data, coords=coords)


# --------------------------------------------------------------------------------- mean-square stability


def jacobians(W: list[np.ndarray], X: np.ndarray) -> np.ndarray:
    """J of shape (m, d_y, P): J[i] is the Jacobian of the parameters -> W_N ... W_1 x_i (factors in order,
    each row-major: the layout of `dlnsim.objective.flat_layout`)."""
    N = len(W)
    blocks = []
    for j in range(N):
        A = np.eye(W[-1].shape[0])
        for k in range(N - 1, j, -1):
            A = A @ W[k]  # W_N ... W_{j+2}
        Bx = X
        for k in range(j):
            Bx = W[k] @ Bx  # W_j ... W_1 X
        blocks.append(np.einsum("ya,ci->iyac", A, Bx).reshape(X.shape[1], A.shape[0], -1))
    return np.concatenate(blocks, axis=2)


def ms_limit(W: list[np.ndarray], X: np.ndarray, b: int, sampling: str, tol: float = 1e-9) -> float:
    """Mean-square stability limit of SGD (batch size ``b``, ``sampling`` "replacement" or "reshuffle" = one
    uniform b-subset) linearised at the interpolating minimiser W (module docstring); 2/lambda_max(H) for
    b = m without replacement."""
    J = jacobians(W, X)
    m = X.shape[1]
    G = np.einsum("iyp,iyq->ipq", J, J)
    h, U = np.linalg.eigh(G.sum(0))
    keep = h > tol * h[-1]
    h, U = h[keep], U[:, keep]
    Gt = np.einsum("pa,ipq,qb->iab", U, G, U)
    kappa = 1.0 / b if sampling == "replacement" else (m - b) / (b * (m - 1))
    B = (1.0 - kappa) * np.kron(np.diag(h), np.diag(h))
    if kappa:
        B = B + kappa * m * np.einsum("iab,icd->acbd", Gt, Gt).reshape(h.size**2, h.size**2)
    dinv = 1.0 / np.sqrt((h[:, None] + h[None, :]).ravel())
    return float(1.0 / np.linalg.eigvalsh(dinv[:, None] * B * dinv[None, :])[-1])


# -------------------------------------------------------------------------------------------- SGD cell


def _sgd_method(b: int, sampling: str, bseed: int, m: int) -> Any:
    if b == m and sampling == "reshuffle":
        return dlnsim.GD()
    return dlnsim.SGD(b, seed=bseed, sampling=sampling)


def sgd_cell(N: int, seed: int, *, n_iter: int, batches: list[int], samplings: list[str],
             bseeds: list[int], oq: bool) -> xr.Dataset:
    """One (N, seed) of the small realisable instance: mean-square limits, eta_crit(b), the open question."""
    s = dlnsim.paper_setup(N, seed, d=SGD_D, m=SGD_M)
    problem = s.problem
    W0, _ = compress_widths(s.W0)
    bound = dlnsim.stepsize_bound(problem, s.W0)
    m = problem.m
    flat = flattest_minimum(problem, N)
    X = np.asarray(problem.X)
    nb, ns, nq = len(batches), len(samplings), len(bseeds)
    ms_flat = np.array([[ms_limit(flat.factors, X, b, sp) for b in batches] for sp in samplings])
    eta_crit = np.full((ns, nb), math.nan)
    eta_hi = np.full((ns, nb), math.nan)
    status = np.full((ns, nb), "", dtype=object)
    ntr = np.full((ns, nb), math.nan)
    end_ms = np.full((ns, nb, nq), math.nan)
    end_ms_other = np.full((ns, nb, nq), math.nan)  # the limit of the other sampling at the same end point
    end_sharp = np.full((ns, nb, nq), math.nan)
    stop = dlnsim.Stop(gtol=1e-30, ltol=SGD_LTOL, early=True)
    rec = dlnsim.Record(f"every:{SGD_CHECK}", diagnostics=False)
    for i_s, sp in enumerate(samplings):
        for i_b, b in enumerate(batches):
            keep: dict[float, list[Any]] = {}

            def fn(eta: float, b: int = b, sp: str = sp, keep: dict[float, list[Any]] = keep) -> tuple[bool, float,
                                                                                                         float]:
                ends: list[Any] = []
                worst, initial = 0.0, math.nan
                for q in (bseeds if not (b == m and sp == "reshuffle") else bseeds[:1]):
                    r = solve_gd(problem, W0, eta, n_iter, method=_sgd_method(b, sp, q, m), record=rec, stop=stop,
                                 bound=bound)
                    a = r.outcomes
                    initial = float(a["initial_loss"])
                    final = float(a["final_loss"])
                    if r.status == "diverged" or not math.isfinite(final):
                        return False, math.inf, initial
                    worst = max(worst, final)
                    if r.status != "converged":
                        return False, worst, initial
                    ends.append(r.w.copy())
                keep[eta] = ends
                return True, worst, initial

            pred = ms_flat[i_s, i_b]
            e_c, e_h, st, trials = search(fn, (SGD_BRACKET[0] * pred, SGD_BRACKET[1] * pred), rtol=SGD_RTOL,
                                          factor=SGD_FACTOR)
            eta_crit[i_s, i_b], eta_hi[i_s, i_b], status[i_s, i_b], ntr[i_s, i_b] = e_c, e_h, st, len(trials)
            if math.isfinite(e_c):
                other = next(o for o in SAMPLINGS if o != sp)
                ends = keep[e_c] * (nq if len(keep[e_c]) == 1 else 1)  # GD: one run for every batch seed
                for i_q, w in enumerate(ends):
                    Wq = unflatten(w, _dims(W0))
                    end_ms[i_s, i_b, i_q] = ms_limit(Wq, X, b, sp)
                    end_ms_other[i_s, i_b, i_q] = ms_limit(Wq, X, b, other)
                    end_sharp[i_s, i_b, i_q] = dlnsim.sharpness(problem, Wq, **LANCZOS)
    data: dict[str, Any] = {
        "sgd_sharpness_flat": ((), flat.sharpness),
        "sgd_eta_star": ((), bound.eta),
        "sgd_initial_balancedness": ((), float(np.max(dlnsim.balancedness(W0)))),
        "ms_flat": (("sampling", "batch_size"), ms_flat),
        "sgd_eta_crit": (("sampling", "batch_size"), eta_crit),
        "sgd_eta_hi": (("sampling", "batch_size"), eta_hi),
        "sgd_search_status": (("sampling", "batch_size"), status.astype(str)),
        "sgd_n_trials": (("sampling", "batch_size"), ntr),
        "sgd_end_ms": (("sampling", "batch_size", "batch_seed"), end_ms),
        "sgd_end_ms_other": (("sampling", "batch_size", "batch_seed"), end_ms_other),
        "sgd_end_sharpness": (("sampling", "batch_size", "batch_seed"), end_sharp),
    }
    if oq:
        data.update(_open_question(problem, W0, bound, batches, eta_crit[samplings.index(OQ_SAMPLING)]))
    coords = {"sampling": list(samplings), "batch_size": list(batches), "batch_seed": list(bseeds),
              "oq_case": list(OQ_CASES)}
    return xr.Dataset(data, coords=coords)


def _oq_run(problem: dlnsim.Problem, W0: list[np.ndarray], eta: float, method: Any, bound: Any) -> tuple[Any, ...]:
    n = int(min(OQ_CAP, math.ceil(OQ_T / eta)))
    rec = dlnsim.Record(f"every:{max(1, n // OQ_RECORDS)}", diagnostics=("balancedness",))
    r = solve_gd(problem, W0, eta, n, method=method, record=rec,
                 stop=dlnsim.Stop(gtol=1e-30, ltol=OQ_LTOL, early=True), bound=bound)
    bal = np.max(r.records["balancedness"], axis=1)
    bal = bal[np.isfinite(bal)]  # points after an early stop are not reached: the last finite one is the stop
    status = {"converged": "converged", "diverged": "diverged"}.get(r.status, "unfinished")
    ex0 = float(r.outcomes["initial_excess_loss"])
    end = float(bal[-1]) if bal.size > 1 else math.nan
    return status, float(bal[0]), end, int(r.stop_iteration), float(r.outcomes["final_excess_loss"]) / ex0, n


def _open_question(problem: dlnsim.Problem, W0: list[np.ndarray], bound: Any, batches: list[int],
                   eta_crit_b: np.ndarray) -> dict[str, Any]:
    m = problem.m
    shape = (len(batches), len(OQ_CASES))
    res: dict[str, np.ndarray] = {}
    for who in ("sgd", "gd"):
        res[f"{who}_status"] = np.full(shape, "", dtype=object)
        for k in ("drift_start", "drift_end", "stop", "excess_ratio", "horizon"):
            res[f"{who}_{k}"] = np.full(shape, math.nan)
    etas = np.full(shape, math.nan)
    gd_cache: dict[float, tuple[Any, ...]] = {}
    for i_b, b in enumerate(batches):
        for i_c, case in enumerate(OQ_CASES):
            eta = {"eta_star": bound.eta, "10_eta_star": 10 * bound.eta, "100_eta_star": 100 * bound.eta,
                   "0.9_eta_crit": 0.9 * float(eta_crit_b[i_b])}[case]
            if not math.isfinite(eta):
                continue
            etas[i_b, i_c] = eta
            for who in ("sgd", "gd"):
                if who == "gd":
                    if eta not in gd_cache:
                        gd_cache[eta] = _oq_run(problem, W0, eta, dlnsim.GD(), bound)
                    out = gd_cache[eta]
                else:
                    out = _oq_run(problem, W0, eta, _sgd_method(b, OQ_SAMPLING, 0, m), bound)
                for k, v in zip(("status", "drift_start", "drift_end", "stop", "excess_ratio", "horizon"), out,
                                strict=True):
                    res[f"{who}_{k}"][i_b, i_c] = v
    dims = ("batch_size", "oq_case")
    data = {"oq_eta": (dims, etas)}
    for k, v in res.items():
        data[f"oq_{k}"] = (dims, v.astype(str) if v.dtype == object else v)
    return data


# ------------------------------------------------------------------------------------------------- study


def _config(quick: bool) -> dict[str, Any]:
    if quick:
        return {"mom_depths": [2, 3], "mom_seeds": [0, 1], "scan_seeds": [0], "near_seeds": [0],
                "sgd_depths": [2], "sgd_seeds": [0, 1], "batches": [1, 3, SGD_M], "samplings": list(SAMPLINGS),
                "bseeds": list(SGD_SEEDS)}
    return {"mom_depths": [2, 3, 5, 10], "mom_seeds": list(range(8)), "scan_seeds": [0], "near_seeds": [0, 1],
            "sgd_depths": [2, 3], "sgd_seeds": list(range(8)), "batches": list(SGD_BATCHES),
            "samplings": list(SAMPLINGS), "bseeds": list(SGD_SEEDS)}


def compute(quick: bool, *, directory: Path | None = None, executor: Any = "threads", workers: int | None = None,
            scheduler: str | None = None) -> xr.Dataset:
    """The study's Dataset; the cells of the two grids live in ``directory`` (None: in memory)."""
    cfg = _config(quick)
    engine: dict[str, Any] = {"executor": executor, "workers": workers}
    if scheduler is not None:
        engine["scheduler"] = scheduler
    mom = C.grid(momentum_cell, {"N": cfg["mom_depths"], "seed": cfg["mom_seeds"]},
                 {"n_iter": MOM_N_ITER, "loss_tol": MOM_LOSS_TOL, "scan_seeds": cfg["scan_seeds"],
                  "near_seeds": cfg["near_seeds"]},
                 directory=C.subdir(directory, "momentum"), label=f"{NAME}:momentum",
                 cost=lambda p: float(p["N"]) + (20.0 if p["seed"] in cfg["scan_seeds"] else 0.0), **engine)
    sgd = C.grid(sgd_cell, {"N": cfg["sgd_depths"], "seed": cfg["sgd_seeds"]},
                 {"n_iter": SGD_N_ITER, "batches": cfg["batches"], "samplings": cfg["samplings"],
                  "bseeds": cfg["bseeds"], "oq": True},
                 directory=C.subdir(directory, "sgd"), label=f"{NAME}:sgd", cost=lambda p: float(p["N"]), **engine)
    return assemble(mom, sgd, cfg, quick)


def _drop_engine(ds: xr.Dataset) -> xr.Dataset:
    ds = ds.drop_vars([v for v in ("status", "error") if v in ds.variables])
    ds.attrs = {}
    return ds


def assemble(mom: xr.Dataset, sgd: xr.Dataset, cfg: dict[str, Any], quick: bool) -> xr.Dataset:
    """The archived layout: the momentum grid over (N, seed, ...), the SGD grid over (sgd_N, seed, ...)."""
    mom = _drop_engine(mom)
    sgd = _drop_engine(sgd).rename(N="sgd_N")
    for name in ("search_status", "scan_outcome"):
        mom[name] = mom[name].astype(str)
    for name in [v for v in sgd.data_vars if sgd[v].dtype == object]:
        sgd[name] = sgd[name].astype(str)
    ds = xr.merge([mom, sgd], compat="no_conflicts", join="outer")
    ds["ratio"] = ds["eta_crit"] / ds["eta_pred"]
    ds["ratio_gd"] = ds["eta_crit"] / (2.0 / ds["sharpness_flat"])
    ds["sgd_ratio_ms"] = ds["sgd_eta_crit"] / ds["ms_flat"]
    ds["sgd_ratio_gd"] = ds["sgd_eta_crit"] * ds["sgd_sharpness_flat"] / 2.0
    ds["sgd_ratio_end_ms"] = ds["sgd_eta_crit"] / ds["sgd_end_ms"].min("batch_seed")
    ds["ms_ratio_gd"] = ds["ms_flat"] * ds["sgd_sharpness_flat"] / 2.0
    names = {
        "N": "depth N of the momentum part (Section-5 instance)",
        "seed": "seed of the instance (dlnsim.paper_setup(N, seed[, d, m]))",
        "rule": "step rule (beta = 0: plain GD for both)",
        "beta": "momentum coefficient beta",
        "start": "start: the paper's W(0), or the flattest minimiser moved by NEAR_EPS (relative)",
        "scan_frac": "stepsize of the scan as a fraction of eta_pred (seed 0, start paper)",
        "sharpness_flat": "lambda_max of Hess L^N at the flattest minimiser with the least-squares product",
        "sharpness_balanced": "lambda_max of Hess L^N at the balanced minimiser (closed form)",
        "eta_star": "stepsize bound (5.1) of the paper's W(0)",
        "eta_pred": "linear-stability limit of the rule at the flattest minimiser, rule.stability_limit(lambda)",
        "eta_crit": "critical stepsize: largest converging eta of the search (the criterion of "
                    "dlnsim.critical_stepsize; horizon attribute mom_n_iter)",
        "eta_hi": "smallest failing stepsize of the final bracket",
        "search_status": "status of the search (ok, no_converging_eta, no_failing_eta)",
        "n_trials": "number of trial runs of the search",
        "end_sharpness": "lambda_max of Hess L^N where the run at eta_crit stopped (Lanczos)",
        "end_ratio": "eta_crit / rule.stability_limit(end_sharpness): <= 1 when the end point is linearly stable",
        "stop_iteration": "iteration where the run at eta_crit met the loss tolerance",
        "scan_outcome": "outcome of the run at scan_frac x eta_pred (converged, not_converged, diverged)",
        "ratio": "eta_crit / eta_pred",
        "ratio_gd": "eta_crit / (2 / sharpness_flat): eta_crit against plain GD's limit",
        "sgd_N": "depth N of the SGD part (small realisable instance)",
        "sampling": "minibatch sampling (reshuffle: per-epoch permutations; replacement)",
        "batch_size": "batch size b (b = m with reshuffle runs plain GD: the same update)",
        "batch_seed": "seed of the batches (dlnsim.SGD(seed=...))",
        "oq_case": "stepsize of the open-question runs",
        "sgd_sharpness_flat": "lambda_max of Hess L^N at the flattest minimiser (small instance)",
        "sgd_eta_star": "stepsize bound (5.1) of W(0) (small instance)",
        "sgd_initial_balancedness": "max_j ||W_{j+1}^T W_{j+1} - W_j W_j^T|| at W(0) (small instance)",
        "ms_flat": "mean-square stability limit of SGD linearised at the flattest minimiser (exact)",
        "sgd_eta_crit": "critical stepsize of SGD: largest eta of the search at which every batch seed reaches "
                        "the loss tolerance within sgd_n_iter steps",
        "sgd_eta_hi": "smallest failing stepsize of the final bracket (SGD)",
        "sgd_search_status": "status of the search (SGD)",
        "sgd_n_trials": "number of trial stepsizes of the search (SGD; each runs every batch seed until one fails)",
        "sgd_end_ms": "mean-square stability limit (same sampling) at the point where the run at sgd_eta_crit "
                      "stopped",
        "sgd_end_ms_other": "mean-square stability limit of the other sampling at the same end point",
        "sgd_end_sharpness": "lambda_max of Hess L^N where the run at sgd_eta_crit stopped",
        "sgd_ratio_ms": "sgd_eta_crit / ms_flat",
        "sgd_ratio_gd": "sgd_eta_crit / (2 / sgd_sharpness_flat)",
        "sgd_ratio_end_ms": "sgd_eta_crit / min over batch seeds of sgd_end_ms (<= 1: every end point is "
                            "mean-square stable)",
        "ms_ratio_gd": "ms_flat / (2 / sgd_sharpness_flat)",
        "oq_eta": "stepsize of the open-question runs (NaN: eta_crit(b) not found)",
        "oq_sgd_status": "SGD (reshuffle, batch seed 0) at oq_eta: converged, diverged or unfinished (horizon)",
        "oq_gd_status": "GD at oq_eta: converged, diverged or unfinished (horizon)",
        "oq_sgd_drift_start": "balancedness max_j ||W_{j+1}^T W_{j+1} - W_j W_j^T|| at W(0)",
        "oq_gd_drift_start": "balancedness at W(0) (GD run)",
        "oq_sgd_drift_end": "balancedness where the SGD run stopped",
        "oq_gd_drift_end": "balancedness where the GD run stopped",
        "oq_sgd_stop": "iteration where the SGD run stopped",
        "oq_gd_stop": "iteration where the GD run stopped",
        "oq_sgd_excess_ratio": "(L - L*) / (L(0) - L*) where the SGD run stopped",
        "oq_gd_excess_ratio": "(L - L*) / (L(0) - L*) where the GD run stopped",
        "oq_sgd_horizon": "step budget of the SGD run: min(OQ_CAP, ceil(OQ_T / eta))",
        "oq_gd_horizon": "step budget of the GD run",
    }
    for name, text in names.items():
        if name in ds.variables:
            ds[name].attrs = {"long_name": text}
    ds = C.describe_variables(ds)
    ds.attrs = C.study_attrs(
        NAME, quick,
        "heavy-ball, Nesterov and minibatch SGD: critical stepsizes against their linear-stability limits at the "
        "flattest minimiser, and SGD's convergence and balancedness drift at eta*, 10 eta*, 100 eta*, "
        "0.9 eta_crit(b)",
        setup_call="momentum: studies._common.compressed_paper(N, seed) (" + C.COMPRESSED + "); SGD: "
                   f"dlnsim.paper_setup(N, seed, d={SGD_D}, m={SGD_M}), widths compressed likewise",
        mom_n_iter=MOM_N_ITER, mom_loss_tol=MOM_LOSS_TOL, mom_gtol=MOM_GTOL,
        mom_bracket="start paper: [pred/64, 1.02 pred], factor 2, rtol 0.02; start near: [0.97, 1.03] x pred, "
                    "factor 1.05, rtol 0.005 (walks outward when that does not bracket)",
        near_eps=NEAR_EPS, near_seeds=cfg["near_seeds"], scan_seeds=cfg["scan_seeds"],
        sgd_n_iter=SGD_N_ITER, sgd_ltol=SGD_LTOL, sgd_batch_seeds=cfg["bseeds"],
        sgd_bracket="[0.8, 1.25] x ms_flat, factor 1.25, rtol 0.02",
        oq_flow_time=OQ_T, oq_cap=OQ_CAP, oq_ltol=OQ_LTOL,
        criterion_momentum="converged: not diverged and L(stop) - L* <= mom_loss_tol (L(0) - L*) within mom_n_iter "
                           "steps (the criterion of dlnsim.critical_stepsize)",
        criterion_sgd="converged: every batch seed reaches L - L* <= sgd_ltol (L(0) - L*) within sgd_n_iter steps "
                      "without diverging",
        ms_formula="T(S) = (I - eta H) S (I - eta H) + eta^2 kappa (m sum_i G_i S G_i - H S H), G_i = J_i^T J_i; "
                   "kappa = 1/b with replacement, (m - b)/(b (m - 1)) for one uniform b-subset (reshuffle); "
                   "eta_ms = 1 / lambda_max(A^{-1/2} B A^{-1/2}), A = H (+) H, B = (1 - kappa) H (x) H + "
                   "kappa m sum_i G_i (x) G_i, on the range of H",
    )
    return ds


# -------------------------------------------------------------------------------------------------- figure


def plot(ds: xr.Dataset, outdir: Path) -> list[Path]:
    plt = C.pyplot()
    fig, axs = plt.subplots(2, 2, figsize=(7.2, 6.0), constrained_layout=True)
    (ax1, ax2), (ax3, ax4) = axs
    betas = ds["beta"].values
    Ns = ds["N"].values
    markers = {"heavy_ball": "o", "nesterov": "s"}
    for rule in ds["rule"].values:
        for i, N in enumerate(Ns):
            color = C.depth_color(int(N))
            for start, style in (("paper", "-"), ("near", ":")):
                r = ds["ratio"].sel(rule=rule, N=N, start=start)
                med = r.median("seed").values
                x = np.arange(len(betas)) + (0.08 if rule == "nesterov" else -0.08) + 0.02 * i
                ax = ax1 if rule == "heavy_ball" else ax2
                ax.plot(x, med, style, marker=markers[str(rule)], color=color, ms=3.5, lw=0.9,
                        label=f"N = {int(N)}" if start == "paper" else None)
                ax.vlines(x, r.min("seed").values, r.max("seed").values, color=color, lw=0.6)
    for ax, rule in ((ax1, "heavy-ball"), (ax2, "Nesterov")):
        ax.axhline(1.0, color="0.5", lw=0.6)
        ax.set_yscale("log")
        ax.set_xticks(np.arange(len(betas)), [f"{b:g}" for b in betas])
        ax.set_xlabel(r"momentum $\beta$")
        ax.set_ylabel(r"$\eta_{\rm crit}$ / linear-stability limit")
        ax.set_title(f"({'a' if ax is ax1 else 'b'}) {rule}: from W(0) (solid), near the minimiser (dotted)",
                     loc="left", fontsize=7.5)
    ax1.legend(loc="lower left", fontsize=7)
    bs = ds["batch_size"].values
    for sp, style, mk in (("reshuffle", "-", "o"), ("replacement", "--", "s")):
        for N in ds["sgd_N"].values:
            color = C.depth_color(int(N))
            meas = ds["sgd_eta_crit"].sel(sampling=sp, sgd_N=N) * ds["sgd_sharpness_flat"].sel(sgd_N=N) / 2.0
            pred = ds["ms_flat"].sel(sampling=sp, sgd_N=N) * ds["sgd_sharpness_flat"].sel(sgd_N=N) / 2.0
            ax3.plot(bs, meas.median("seed").values, style, marker=mk, color=color, ms=3.5, lw=0.9,
                     label=f"measured, {sp}, N = {int(N)}")
            ax3.plot(bs, pred.median("seed").values, style, color=color, lw=2.2, alpha=0.35)
    ax3.axhline(1.0, color="0.5", lw=0.6)
    ax3.set_xscale("log")
    ax3.set_xticks(bs, [str(int(b)) for b in bs])
    ax3.set_xlabel("batch size $b$")
    ax3.set_ylabel(r"$\eta\,\lambda_{\max}^{\rm flat}/2$ (median over seeds)")
    ax3.set_title("(c) SGD: measured (markers), mean-square limit\nat the flattest minimiser (thick)", loc="left",
                  fontsize=7.5)
    ax3.legend(loc="lower right", fontsize=6)
    cases = list(ds["oq_case"].values)
    x = np.arange(len(cases))
    ratio = (ds["oq_sgd_drift_end"] / ds["oq_gd_drift_end"]).where(
        (ds["oq_sgd_status"] == "converged") & (ds["oq_gd_status"] == "converged"))
    for N in ds["sgd_N"].values:
        color = C.depth_color(int(N))
        for j, b in enumerate(bs):
            r = ratio.sel(sgd_N=N, batch_size=b).transpose("oq_case", "seed").values
            xx = x + 0.06 * (j - len(bs) / 2) + (0.02 if int(N) % 2 else 0)
            ax4.plot(np.repeat(xx[:, None], r.shape[1], axis=1).ravel(), r.ravel(), ".", color=color, ms=2.5,
                     alpha=0.6)
    conv = (ds["oq_sgd_status"] == "converged").mean(("sgd_N", "seed", "batch_size")).values
    ax4.set_yscale("log")
    ax4.axhline(1.0, color="0.5", lw=0.6)
    labels = {"eta_star": "η*", "10_eta_star": "10 η*", "100_eta_star": "100 η*", "0.9_eta_crit": "0.9 η_crit(b)"}
    ax4.set_xticks(x, [f"{labels.get(c, c)}\nSGD conv. {100 * f:.0f}%" for c, f in zip(cases, conv, strict=True)],
                   fontsize=6.5)
    ax4.set_ylabel("balancedness at the end: SGD / GD")
    ax4.set_title("(d) SGD's drift from balancedness against GD's,\nsame η (both converged)", loc="left",
                  fontsize=7.5)
    fig.suptitle("Step rules against linear stability: momentum on the Section-5 instance (a, b), minibatch SGD "
                 f"on d = {SGD_D}, m = {SGD_M} (c, d)", fontsize=8.5)
    return C.save_figure(fig, outdir, NAME)


# ------------------------------------------------------------------------------------------------- summary


def _range(v: Any) -> str:
    a = np.asarray(v, dtype=float).ravel()
    a = a[np.isfinite(a)]
    if not a.size:
        return "n/a"
    return f"median {np.median(a):.3f} [{a.min():.3f}, {a.max():.3f}] (n = {a.size})"


def summary(ds: xr.Dataset) -> list[str]:
    """Headline numbers, read from the Dataset."""
    lines = []
    for start in ds["start"].values:
        for rule in ds["rule"].values:
            for beta in ds["beta"].values:
                r = ds["ratio"].sel(start=start, rule=rule, beta=beta)
                ok = int((ds["search_status"].sel(start=start, rule=rule, beta=beta) == "ok").sum())
                lines.append(f"{start} {rule} beta={beta:g}: eta_crit/pred {_range(r)}; searches ok {ok}/{r.size}")
    for sp in ds["sampling"].values:
        for b in ds["batch_size"].values:
            s = ds.sel(sampling=sp, batch_size=b)
            lines.append(f"SGD {sp} b={int(b)}: eta_crit/eta_ms(flat) {_range(s.sgd_ratio_ms)}, "
                         f"eta_ms(flat) lambda/2 {_range(s.ms_ratio_gd)}, eta_crit/eta_ms(end) "
                         f"{_range(s.sgd_ratio_end_ms)}")
    for case in ds["oq_case"].values:
        s = ds.sel(oq_case=case)
        st = s["oq_sgd_status"].values.ravel()
        lines.append(f"{case}: SGD converged {np.mean(st == 'converged'):.2f}, diverged {np.mean(st == 'diverged'):.2f}"
                     f", unfinished {np.mean(st == 'unfinished'):.2f}; GD converged "
                     f"{np.mean(s['oq_gd_status'].values.ravel() == 'converged'):.2f}")
    return lines


# ------------------------------------------------------------------------------------ findings for the docs


def _mmm(v: Any, fmt: str = ".3f") -> str:
    a = np.asarray(v, dtype=float).ravel()
    a = a[np.isfinite(a)]
    if not a.size:
        return "–"
    return f"{np.median(a):{fmt}} [{a.min():{fmt}}, {a.max():{fmt}}]"


def findings(ds: xr.Dataset) -> str:
    """The findings section of docs/step_rules.md (markdown), every number read from ``ds``."""
    out = []
    Ns = [int(n) for n in ds["N"].values]
    n_seed = ds.sizes["seed"]
    near_seeds = [int(s) for s in np.atleast_1d(ds.attrs["near_seeds"])]
    out.append(f"**Momentum** (Section-5 instance, {n_seed} seeds per N; horizon {int(ds.attrs['mom_n_iter'])} "
               f"steps, loss tolerance {ds.attrs['mom_loss_tol']:g}). eta_crit / eta_pred, median [min, max] over "
               "seeds; eta_pred = the rule's limit at the flattest minimiser. Start \"near\": the flattest minimiser "
               f"moved by {ds.attrs['near_eps']:g} (relative), seeds {', '.join(map(str, near_seeds))}, all N "
               "together.\n")
    out.append("| rule | β | " + " | ".join(f"N = {n} (from W(0))" for n in Ns) + " | near the minimiser |")
    out.append("|---|---|" + "---|" * (len(Ns) + 1))
    for rule in ds["rule"].values:
        for beta in ds["beta"].values:
            if beta == 0.0 and rule != ds["rule"].values[0]:
                continue
            cells = []
            for n in Ns:
                s = ds.sel(rule=rule, beta=beta, N=n, start="paper")
                bad = int((s["search_status"] != "ok").sum())
                cells.append(_mmm(s["ratio"]) + (f" ({bad} no eta converged)" if bad else ""))
            near = ds["ratio"].sel(rule=rule, beta=beta, start="near")
            label = "GD (both)" if beta == 0.0 else str(rule).replace("_", "-")
            out.append(f"| {label} | {beta:g} | " + " | ".join(cells) + f" | {_mmm(near, '.4f')} |")
    er = ds["end_ratio"].sel(start="paper").transpose("N", "seed", "rule", "beta").values.copy()
    er[:, :, 1:, list(ds["beta"].values).index(0.0)] = np.nan  # beta = 0: GD, counted once
    out.append("")
    over = er > 1.0
    where = sorted({f"{str(ds['rule'].values[i]).replace('_', '-')} β = {ds['beta'].values[j]:g}, N = {Ns[n]}"
                    for n, _, i, j in zip(*np.nonzero(over.transpose(0, 1, 2, 3)), strict=True)})
    out.append(f"End-point check (from W(0)): eta_crit / rule.stability_limit(lambda_max at the end point) is "
               f"median {np.nanmedian(er):.3f}, at most {np.nanmax(er):.3f}; above 1 (the run met the loss tolerance "
               f"at a point that is linearly unstable for its rule) in {int(over.sum())} of "
               f"{int(np.isfinite(er).sum())} searches" + (f" ({'; '.join(where)})" if where else "") +
               ". Near the minimiser it is at most "
               f"{np.nanmax(ds['end_ratio'].sel(start='near').values):.4f}.")
    scan = ds["scan_outcome"].sel(seed=0)
    frag = []
    for rule in ds["rule"].values:
        for beta in ds["beta"].values:
            for n in Ns:
                o = scan.sel(rule=rule, beta=beta, N=n).values
                c = np.flatnonzero(o == "converged")
                if c.size and np.any(o[: c.max()] == "diverged"):
                    frag.append(f"{str(rule).replace('_', '-')} β = {beta:g}, N = {n}")
    out.append("")
    out.append(f"Scan (seed 0, {ds.sizes['scan_frac']} stepsizes from {ds['scan_frac'].values[0]:.3g} to "
               f"{ds['scan_frac'].values[-1]:.3g} eta_pred): the converging stepsizes are not an interval (a "
               "diverging stepsize below a converging one) for " + (", ".join(frag) if frag else "none") + ".")
    out.append("")
    out.append(f"**Minibatch SGD** (d = {SGD_D}, m = {SGD_M}, N = "
               f"{', '.join(str(int(n)) for n in ds['sgd_N'].values)}, {n_seed} seeds; "
               f"{len(np.atleast_1d(ds.attrs['sgd_batch_seeds']))} batch seeds per stepsize; horizon "
               f"{int(ds.attrs['sgd_n_iter'])} steps, loss tolerance {ds.attrs['sgd_ltol']:g}; b = m under "
               "reshuffling is GD). Median [min, max] over (N, seed).\n")
    out.append("| sampling | b | eta_ms(flat) / (2/λ) | eta_crit / eta_ms(flat) | eta_crit / (2/λ) | "
               "eta_crit / eta_ms(end point) |")
    out.append("|---|---|---|---|---|---|")
    for sp in ds["sampling"].values:
        for b in ds["batch_size"].values:
            s = ds.sel(sampling=sp, batch_size=b)
            out.append(f"| {sp} | {int(b)} | {_mmm(s['ms_ratio_gd'])} | {_mmm(s['sgd_ratio_ms'])} | "
                       f"{_mmm(s['sgd_ratio_gd'])} | {_mmm(s['sgd_ratio_end_ms'])} |")
    out.append("")
    out.append(f"**The open question** (same instances; SGD with sampling {OQ_SAMPLING}, batch seed 0, every b; at "
               f"most min({int(ds.attrs['oq_cap'])}, ceil({ds.attrs['oq_flow_time']:g} / eta)) steps, converged = "
               f"L - L* <= {ds.attrs['oq_ltol']:g} (L(0) - L*)). Fractions over (N, seed, b); drift = balancedness "
               "where the run stopped (the start is balanced: at most "
               f"{np.nanmax(ds['oq_gd_drift_start'].values):.1e}); ratio over the cells where both converged.\n")
    out.append("| eta | SGD converged | SGD diverged | SGD unfinished | GD converged | SGD drift | GD drift | "
               "SGD / GD drift |")
    out.append("|---|---|---|---|---|---|---|---|")
    for case in ds["oq_case"].values:
        s = ds.sel(oq_case=case)
        st = s["oq_sgd_status"].values.ravel()
        gst = s["oq_gd_status"].values.ravel()
        both = (s["oq_sgd_status"] == "converged") & (s["oq_gd_status"] == "converged")
        ratio = (s["oq_sgd_drift_end"] / s["oq_gd_drift_end"]).where(both)
        out.append(f"| {case.replace('_', ' ')} | {np.mean(st == 'converged'):.2f} | {np.mean(st == 'diverged'):.2f} | "
                   f"{np.mean(st == 'unfinished'):.2f} | {np.mean(gst == 'converged'):.2f} | "
                   f"{_mmm(s['oq_sgd_drift_end'].where(s['oq_sgd_status'] == 'converged'), '.2e')} | "
                   f"{_mmm(s['oq_gd_drift_end'].where(s['oq_gd_status'] == 'converged'), '.2e')} | "
                   f"{_mmm(ratio, '.2f')} |")
    return "\n".join(out) + "\n"


def write_docs(path: Path | None = None, data: Path | None = None) -> Path:
    """Rewrite the findings block of docs/step_rules.md from data/step_rules.nc."""
    path = Path(path or C.ROOT / "docs" / "step_rules.md")
    ds = dlnsim.load(data or C.DATA / f"{NAME}.nc")
    text = path.read_text()
    begin, end = "<!-- findings:begin -->\n", "<!-- findings:end -->"
    i, j = text.index(begin) + len(begin), text.index(end)
    path.write_text(text[:i] + findings(ds) + text[j:])
    return path


if __name__ == "__main__":  # python -m studies.step_rules: rewrite the findings of docs/step_rules.md
    print(write_docs())
    sys.exit(0)
