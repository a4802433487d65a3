"""Gradient descent runs: validate, call the Numba kernel in chunks, return a `GDResult`, build the Dataset.

GD (2.1): W_j(k+1) = W_j(k) - eta_k grad_{W_j} L^N(W(k)).  The state W(k) is evaluated for k = 0..n_iter
(n_iter steps).  `solve_gd` runs it and returns a `GDResult`; `gd_dataset` turns that into a Dataset over
``k`` (with the time t_k = eta_0 + ... + eta_{k-1} as a coordinate along ``k``); `run_gd` does both.

Records (see `dlnsim.options` for ``record`` and ``diagnostics``): at record points the loss, the excess
loss L - L*, eta_k, the descent ratio of Prop. 3.4(4) and the selected diagnostics (||grad||^2, the
balancedness per pair and its max, ||W_j||^2 per layer, the singular values of the product).  Over *all*
steps the attributes keep max_k L(k+1) - L(k) and min_k of the descent ratio.

Convergence tests (evaluated at every iteration: two comparisons per step; thresholds in the attributes
``gtol_abs`` and ``ltol_abs``):

* the gradient test ||grad L^N(W(k))||_F <= gtol x g_scale, with the gradient scale of the problem
  g_scale = ||Y X^T||_F ||W_ls||_F^((N-1)/N) (W_ls the least-squares solution).  It scales like the
  gradient when X, Y are rescaled (and the factors with them), so the same gtol means the same thing for
  data of any magnitude.  Attribute ``gtol_iteration``: the first k where it held (-1: never).
* the loss test L(W(k)) - L_r <= max(ltol x (L(W0) - L_r), rounding level), relative to the initial excess
  loss, with L_r = min L^N for the network's widths (`Problem.attainable_loss` of the narrowest width r): the
  least-squares optimum L* when r >= q, else the best rank-r fit (attribute ``attainable_loss``); the rounding
  level 1/2 (64 eps ||F||_F)^2 (F = Y X^T R^{-1}, X X^T = R^T R) is where the computed excess loss of the
  optimum lies.  For r < q the excess loss does not go to 0 and is resolved only to the rounding of L_r,
  64 eps ||F||_F (||F||_F + sqrt(2 (L_r - L*))): a tolerance ltol x (L(W0) - L_r) below that turns the loss test
  off (it would hold by chance, far from the accuracy asked for) and the gradient test decides.  The default
  ltol = gtol^2 matches the default gtol (the excess loss is quadratic in the distance to a minimum, the
  gradient linear).  Attribute ``ltol_iteration``.

With ``stop_early=True`` the run stops at the first iteration where either test holds.

Status (attribute ``status``, with ``status_reason`` and ``stop_iteration``, the iteration where the run
ended: n_iter unless it stopped early):

``converged``
    a test held where the run ended (at the stop with ``stop_early``, else at k = n_iter).
``diverged``
    the loss or the gradient became non-finite, or the loss exceeded ``blowup`` x max(L(0), 1/2 ||Y||_F^2);
    the run stopped there.
``critical_start``
    W0 is (within gtol) a critical point that is not a minimiser, e.g. all factors zero for N >= 2: the
    gradient test held at k = 0 while the loss test did not, and the loss test still fails where the run
    ended.
``max_iter``
    n_iter steps were done and neither test holds at the end.

When a run stops early (``stop_early`` or divergence) the stop iteration is a record point too (unless
``record_stop=False``, which keeps exactly the planned record points): it holds the state where the run
stopped (for ``diverged`` the offending loss, non-finite or above the threshold).  Record points after the
stop stay NaN.  Diagnostics of a state too large to evaluate without overflow are NaN.  The tests compare
squared norms, so they lose their meaning where those leave the floating-point range (gradients beyond
about 1e154 count as non-finite, below about 1e-154 as zero).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from dlnsim._blas import blas_threads as _blas_threads
from dlnsim._kernels import gd as _gd
from dlnsim._kernels import sgd as _sgd
from dlnsim._kernels.args import Batches, Data, GDControls, GDRecords, GDWork, Layout
from dlnsim._kernels.linalg import workspace_size
from dlnsim._notice import compile_notice
from dlnsim.checks import attrs_arg, blas_arg, flag, positive_float
from dlnsim.diagnostics.dense import state_diagnostics
from dlnsim.diagnostics.gd import states_diagnostics
from dlnsim.io import dataset
from dlnsim.methods import SGD, StepRule, as_method
from dlnsim.objective import checked_weights, flat_layout
from dlnsim.options import Record, Stop, as_record, as_stop, check_size, checked_n_iter
from dlnsim.problem import Problem
from dlnsim.runs.gd_result import GDResult, gd_dataset, weights_from
from dlnsim.schedules import Constant, Schedule, as_schedule
from dlnsim.theory.bounds import StepsizeBound, stepsize_bound

__all__ = ["STATUSES", "GDResult", "gd_dataset", "run_gd", "solve_gd", "weights_from"]

#: the statuses of a GD run
STATUSES = ("converged", "diverged", "critical_start", "max_iter")

_EPS = float(np.finfo(float).eps)
#: sample indices of SGD's batches drawn at a time (ahead of the chunks that use them)
_SGD_CHUNK_INDICES = 1 << 20


def _eta_from_bound(eta: str, problem: Problem, W: list[np.ndarray], bound: StepsizeBound | None,
                    alpha: Any) -> tuple[float, StepsizeBound]:
    """'bound' or '<c>xbound' -> c * eta* of ``bound``, or of (5.1) for this start with ``alpha`` (an unbalanced
    start needs alpha > 0 or "min", see `dlnsim.stepsize_bound`)."""
    text = eta.strip().lower()
    if text == "bound":
        factor = 1.0
    elif text.endswith("xbound"):
        try:
            factor = float(text[: -len("xbound")])
        except ValueError:
            raise ValueError(f"eta: expected a number, 'bound' or '<c>xbound', got {eta!r}") from None
    else:
        raise ValueError(f"eta: expected a number, 'bound' or '<c>xbound', got {eta!r}")
    factor = positive_float(factor, "eta (multiple of the bound)")
    b = bound if bound is not None else stepsize_bound(problem, W, alpha=alpha)
    return factor * b.eta, b


def _quiet_bound(problem: Problem, W: list[np.ndarray]) -> StepsizeBound | None:
    """The section-5 bound of a balanced start, None when it does not apply or cannot be evaluated."""
    try:
        with np.errstate(all="ignore"):
            return stepsize_bound(problem, W)
    except (ValueError, ArithmeticError, np.linalg.LinAlgError):
        return None  # an unbalanced start (Theorem 2.4 with alpha = 0 does not apply), or overflow


def run_gd(
    problem: Problem,
    W0: Sequence[np.ndarray],
    eta: float | str | Schedule | np.ndarray,
    n_iter: int,
    *,
    method: StepRule | str | None = None,
    record: Record | Any = None,
    stop: Stop | None = None,
    bound: StepsizeBound | None = None,
    alpha: Any = 0.0,
    progress: bool = False,
    attrs: dict[str, Any] | None = None,
    blas_threads: int | None = 1,
) -> xr.Dataset:
    """Run ``n_iter`` steps of a gradient method from ``W0`` and return the records as a Dataset over ``k``.

    Plain GD is (2.1) (docs/theory.md#gradient-descent-21); the convergence tests and the statuses are
    described in the module docstring.  ``solve_gd`` takes the same arguments and returns the ``GDResult`` this
    Dataset is built from; GD next to the gradient flows is `dlnsim.compare_flow`.

    Parameters
    ----------
    problem : Problem
        The data X, Y.
    W0 : sequence of array_like
        The start [W_1, ..., W_N], W_j of shape (d_j, d_{j-1}), with d_0 = d_x and d_N = d_y.
    eta : float, str, Schedule or array_like
        A positive number, a `Schedule`, an array of n_iter stepsizes, or ``"bound"`` / ``"<c>xbound"`` (c
        times eta* of (5.1) for this start, or of ``bound`` when given; an unbalanced start needs ``alpha``
        > 0 or ``"min"``, as in `dlnsim.stepsize_bound`).
    n_iter : int
        Number of steps, in [0, 2**62].
    method : StepRule, optional
        The step rule (`dlnsim.methods`); default plain gradient descent, `dlnsim.GD`.
    record : Record, str, int or sequence of int, optional
        What is recorded (`dlnsim.Record`): the iterations (default ``"log"``: about 200 log-spaced ones),
        the state diagnostics (default all), the state where an early stop happened, the final weights.  A
        plain value is the points: ``record="log:50"`` is ``Record("log:50")``.
    stop : Stop, optional
        The convergence tests, early stopping and the divergence threshold (`dlnsim.Stop`); default
        ``Stop()`` (gtol 1e-10, ltol gtol^2, no early stop, blowup 1e8).
    bound : StepsizeBound, optional
        Theory constants to put in the run (and the eta* of ``"bound"`` / ``"<c>xbound"``); default the
        section-5 bound when W0 is balanced.
    alpha : float or "min", default 0.0
        The alpha of `dlnsim.stepsize_bound`, used only when ``eta`` is ``"bound"`` / ``"<c>xbound"`` and
        ``bound`` is not given.
    progress : bool, default False
        Show a progress bar on stderr, from the end of the first chunk of iterations on (so that its rate and
        remaining time never include the one-off compilation of the kernel, which a first call announces on
        stderr).
    attrs : dict, optional
        Extra global attributes (str keys).
    blas_threads : int or None, default 1
        Number of BLAS threads during the run (>= 1; 1 is faster for these matrix sizes); None leaves it.

    Returns
    -------
    xarray.Dataset
        The records over ``k`` (with the time t_k as a coordinate): loss, excess loss, eta_k, the descent
        ratio and the selected diagnostics; the run's outcomes (status, stop and test iterations, final and
        initial loss, the bound constants) as 0-d variables; its settings and provenance in the attributes.

    Raises
    ------
    ValueError
        For an invalid argument: ``W0`` not fitting ``problem``, a bad ``eta``, ``n_iter``, ``method``,
        ``record`` or ``stop``, a ``bound`` that is not a `StepsizeBound`, records larger than the size limit,
        or (for ``"bound"``) a start that `dlnsim.stepsize_bound` does not admit.

    Examples
    --------
    >>> import dlnsim
    >>> problem, widths, W0 = dlnsim.paper_setup(N=2, seed=0, d=8, m=24)
    >>> ds = dlnsim.run_gd(problem, W0, "10xbound", 5000, stop=dlnsim.Stop(gtol=1e-6, early=True))
    >>> ds["status"].item(), ds["stop_iteration"].item() < 5000
    ('converged', True)
    >>> ds["loss"].dims, float(ds["final_excess_loss"]) < 1e-6 * float(ds["initial_excess_loss"])
    (('k',), True)

    At the theorem's own stepsize every step lowers the loss by at least the guaranteed fraction
    (Prop. 3.4(4)):

    >>> b = dlnsim.stepsize_bound(problem, W0)
    >>> ds = dlnsim.run_gd(problem, W0, b.eta, 1000)
    >>> float(ds["min_descent_ratio"]) >= b.sigma
    True
    """
    return gd_dataset(solve_gd(problem, W0, eta, n_iter, method=method, record=record, stop=stop, bound=bound,
                               alpha=alpha, progress=progress, attrs=attrs, blas_threads=blas_threads))


def solve_gd(
    problem: Problem,
    W0: Sequence[np.ndarray],
    eta: float | str | Schedule | np.ndarray,
    n_iter: int,
    *,
    method: StepRule | str | None = None,
    record: Record | Any = None,
    stop: Stop | None = None,
    bound: StepsizeBound | None = None,
    alpha: Any = 0.0,
    progress: bool = False,
    attrs: dict[str, Any] | None = None,
    blas_threads: int | None = 1,
    snapshots: bool = False,
) -> GDResult:
    """`run_gd` without the Dataset: the `GDResult`.  With ``snapshots`` it also keeps the flat state W(k)
    at every record point, shape (n_rec, n_params) (NaN where not reached), for comparisons with the
    gradient flow at the same times."""
    rule_obj = as_method(method)
    rec_opt = as_record(record)
    stop_opt = as_stop(stop)
    sgd = rule_obj if isinstance(rule_obj, SGD) else None
    batch = sgd.checked_batch_size(problem.m) if sgd is not None else 0
    W = checked_weights(problem, W0, "W0")
    n_iter = checked_n_iter(n_iter)
    diag = rec_opt.diagnostics
    gtol, ltol, stop_early, blowup = stop_opt.gtol, stop_opt.ltol_value, stop_opt.early, stop_opt.blowup
    record_stop, keep_weights = rec_opt.stop_point, rec_opt.final_weights
    progress = flag(progress, "progress")
    snapshots = flag(snapshots, "snapshots")
    user_attrs = attrs_arg(attrs)
    blas = blas_arg(blas_threads)
    if bound is not None and not isinstance(bound, StepsizeBound):
        raise ValueError(f"bound must be a StepsizeBound (from dlnsim.stepsize_bound), got {type(bound).__name__}")
    rule = rec_opt.iteration_rule()
    w, dims, offs, pivot = flat_layout(W)
    n = len(W)
    n_sv = int(min(dims))
    row = 6 + (n - 1) + n + n_sv + (w.size if snapshots else 0)
    check_size(rule.count(n_iter) + 1, row, "record")  # + 1: the stop iteration
    if isinstance(eta, str):
        eta_value, bound = _eta_from_bound(eta, problem, W, bound, alpha)
        schedule: Schedule = as_schedule(eta_value)
        eta_label = eta
    else:
        schedule = as_schedule(eta)
        eta_label = "schedule"
    if not isinstance(schedule, Constant):
        check_size(n_iter, 1, "n_iter (a non-constant schedule stores one stepsize per step)")
    etas = np.ascontiguousarray(schedule.values(n_iter), dtype=np.float64)
    rec_k = rule.points(n_iter)

    # the initial excess loss in numpy, in the residual form of the kernel (a second compiled caller of
    # the gradient kernel would double the compile time); an overflowing start gives inf here and
    # "diverged" at k = 0
    with np.errstate(all="ignore"):
        P = W[0]
        for Wj in W[1:]:
            P = Wj @ P
        Z = P @ problem.Rt - problem.F
        excess0 = 0.5 * float(np.sum(Z * Z))
        g_scale = float(np.linalg.norm(problem.YXt)) * float(np.linalg.norm(problem.W_ls)) ** ((n - 1) / n)
        norm_F = float(np.linalg.norm(problem.F))
        floor = 0.5 * (64.0 * _EPS * norm_F) ** 2
    loss0 = problem.lstar + excess0
    if bound is None and np.isfinite(excess0):
        bound = _quiet_bound(problem, W)
    gtol_abs = gtol * g_scale
    # the loss test measures from the minimum of L^N for these widths: with a layer narrower than q it is the best
    # fit of that rank, a gap above L* that GD cannot close (measured from L*, the test could never hold)
    gap = problem.attainable_loss(n_sv) - problem.lstar
    if ltol == 0.0 or not np.isfinite(excess0):
        ltol_abs = -1.0
    elif gap > 0.0:
        # L_r is known to the rounding of its own size only (it does not go to 0 as L* - L* does), so a tolerance
        # below that resolution would be met by chance, far from the accuracy asked for: the test is off then
        resolution = 64.0 * _EPS * norm_F * (norm_F + np.sqrt(2.0 * gap))
        wanted = ltol * (excess0 - gap)
        ltol_abs = gap + wanted if wanted > resolution else -1.0
    else:
        ltol_abs = max(ltol * excess0, floor)
    threshold = blowup * max(loss0, 0.5 * problem.norm_Y_F**2, np.finfo(float).tiny)

    n_rec = rec_k.size
    nan = np.nan
    rec = {
        "loss": np.full(n_rec, nan),
        "excess_loss": np.full(n_rec, nan),
        "grad_norm_sq": np.full(n_rec, nan),
        "balancedness": np.full((n_rec, n - 1 if "balancedness" in diag else 0), nan),
        "layer_norm_sq": np.full((n_rec, n if "layer_norm_sq" in diag else 0), nan),
        "product_sv": np.full((n_rec, n_sv if "product_sv" in diag else 0), nan),
        "descent_ratio": np.full(n_rec, nan),
        "eta": np.full(n_rec, nan),
        "t": np.full(n_rec, nan),
    }
    acc = np.zeros(_gd.N_ACC)
    acc[_gd.A_MIN_RATIO] = np.inf
    acc[_gd.A_MAX_INCREASE] = -np.inf
    acc[_gd.A_LTOL] = ltol_abs
    iacc = np.zeros(_gd.N_IACC, dtype=np.int64)
    iacc[_gd.I_PENDING] = -1
    iacc[_gd.I_STOP] = -1
    iacc[_gd.I_GTOL_K] = -1
    iacc[_gd.I_LTOL_K] = -1
    snaps = np.full((n_rec, w.size), nan) if snapshots else None
    state_diag = bool(rec["balancedness"].size or rec["layer_norm_sq"].size or rec["product_sv"].size)

    total = n_iter + 1
    chunk = total if not progress else max(1000, total // 200)
    momentum, beta = rule_obj.momentum
    stochastic = sgd is not None
    if stochastic:  # the batches are drawn ahead, up to a few MB of indices at a time
        sgd_steps = max(1, _SGD_CHUNK_INDICES // batch)
        chunk = min(chunk, sgd_steps)
        XT = np.ascontiguousarray(problem.X.T, dtype=np.float64)  # a sample per row
        YT = np.ascontiguousarray(problem.Y.T, dtype=np.float64)
        xb, yb = np.empty((problem.d_x, batch)), np.empty((problem.d_y, batch))
        kernel = _sgd.SGD_CHUNKS[momentum]
        idx = np.empty((0, batch), dtype=np.int64)  # the batches of steps idx_k0 <= k < idx_k0 + len(idx)
        idx_k0 = 0
    else:
        kernel = _gd.CHUNKS[momentum]
    g = np.empty_like(w)
    ws_size = workspace_size(dims, pivot)
    if stochastic:
        ws_size = max(ws_size, workspace_size(dims, pivot, batch), _sgd.workspace_size(dims))
    # momentum state: SGD's kernels keep a velocity (zero at the start), the GD-family ones the previous point of
    # the recurrence (W(0) at the start, see `dlnsim._kernels.gd`)
    if momentum == _gd.PLAIN:
        velocity = np.zeros(0)
    else:
        velocity = np.zeros(w.size) if stochastic else w.copy()
    work = GDWork(w, g, np.empty(ws_size), acc, iacc, velocity)
    data = Data(problem.Rt, problem.F, float(problem.lstar))
    layout = Layout(dims, offs, int(pivot))
    controls = GDControls(etas, int(n_iter), float(threshold), float(gtol_abs * gtol_abs), bool(stop_early),
                          float(beta))
    records = GDRecords(rec_k, rec["loss"], rec["excess_loss"], rec["grad_norm_sq"], rec["descent_ratio"],
                        rec["eta"], rec["t"])
    bar = None  # made after the first chunk, so that a compilation is not in its rate and time estimate
    status = _gd.RUNNING
    k = 0
    r = 0  # next record point whose state-based diagnostics are pending
    # states at record points wait here for their diagnostics, at most ~32 MB of them at a time
    held = np.empty((max(1, min(n_rec, (32 << 20) // (8 * w.size))) if state_diag else 0, w.size))
    rows = np.empty(held.shape[0], dtype=np.int64)
    n_held = 0
    with _blas_threads(blas), np.errstate(all="ignore"), compile_notice(kernel, f"the {rule_obj.label} kernel",
                                                                       "3-10 s"):
        try:
            while k < total:
                # chunks end at record points, so W(rec_k[r]) is in w here: eigenvalues and SVDs in numpy
                if r < n_rec and rec_k[r] == k:
                    if state_diag:  # diagnosed in batches (few Python calls: threaded grids stay parallel)
                        held[n_held] = w
                        rows[n_held] = r
                        n_held += 1
                        if n_held == held.shape[0]:
                            _flush(held, rows, n_held, dims, offs, rec)
                            n_held = 0
                    if snaps is not None:
                        snaps[r] = w
                    r += 1
                k_stop = min(k + chunk, total, int(rec_k[r]) if r < n_rec else total)
                if sgd is not None:
                    if min(k_stop, n_iter) > idx_k0 + idx.shape[0]:  # drawn ahead, few calls for short chunks
                        idx_k0 = k
                        idx = sgd.batches(problem.m, k, min(k + sgd_steps, n_iter))
                    batches = Batches(XT, YT, idx, xb, yb, problem.m / batch, idx_k0)
                    status = kernel(work, data, layout, controls, records, batches, k, k_stop)
                else:
                    status = kernel(work, data, layout, controls, records, k, k_stop)
                if progress:
                    if bar is None:
                        from tqdm.auto import tqdm

                        bar = tqdm(total=n_iter, initial=min(k_stop, n_iter), unit="it",
                                   desc=f"{rule_obj.name.upper()} N={n}",
                                   dynamic_ncols=True, leave=False)
                    else:
                        bar.update(min(k_stop, n_iter) - min(k, n_iter))
                    bar.set_postfix(loss=f"{acc[_gd.A_LAST_LOSS]:.3e}", refresh=False)
                if status != _gd.RUNNING:
                    break
                k = k_stop
        finally:
            if bar is not None:
                bar.close()
        if n_held:
            _flush(held, rows, n_held, dims, offs, rec)

        stop_k = int(iacc[_gd.I_STOP])
        if status != _gd.RUNNING:  # stopped early or diverged: the state W(stop_k) is in w
            eta_stop = float(etas[0] if etas.size == 1 else etas[stop_k]) if stop_k < n_iter else nan
            rec_k, rec, snaps = _stop_record(rec_k, rec, snaps, stop_k, record_stop, w, dims, offs, eta_stop, acc,
                                             problem.lstar, state_diag)

    gtol_k, ltol_k = int(iacc[_gd.I_GTOL_K]), int(iacc[_gd.I_LTOL_K])
    last_ex, last_gn2 = float(acc[_gd.A_LAST_EXCESS]), float(acc[_gd.A_LAST_GN2])
    g_end = last_gn2 <= gtol_abs * gtol_abs
    l_end = last_ex <= ltol_abs
    tests = (f"gradient test ||grad L||_F <= gtol x g_scale = {gtol_abs:.3g}, "
             f"loss test L - L* <= {max(ltol_abs, 0.0):.3g}")
    if status in (_gd.DIVERGED_NONFINITE, _gd.DIVERGED_BLOWUP):
        status_name = "diverged"
        reason = (f"non-finite loss or gradient at k = {stop_k}" if status == _gd.DIVERGED_NONFINITE
                  else f"loss {acc[_gd.A_LAST_LOSS]:.3g} above the threshold {threshold:.3g} at k = {stop_k}")
    elif gtol_k == 0 and ltol_k != 0 and not l_end:
        status_name = "critical_start"
        reason = (f"W0 is a critical point that is not a minimiser: ||grad L(W0)||_F <= {gtol_abs:.3g} "
                  f"(gtol x g_scale) while L - L* = {excess0:.3g}")
    elif g_end or l_end:
        status_name = "converged"
        which = "gradient" if g_end else "loss"
        first = gtol_k if g_end else ltol_k
        reason = (f"the {which} test first held at k = {first}" + ("" if first == stop_k else
                  f" and holds at the end of the run, k = {stop_k}") + f" ({tests})")
    else:
        status_name = "max_iter"
        reason = f"n_iter = {n_iter} steps done, neither test holds ({tests})"

    run_attrs: dict[str, Any] = {
        "title": f"{rule_obj.title} on a depth-{n} linear network",
        **rule_obj.attrs(),
        "N": n,
        "widths": dims,
        "d_x": problem.d_x,
        "d_y": problem.d_y,
        "m": problem.m,
        "pivot_layer": pivot,
        "n_iter": n_iter,
        "eta_spec": eta_label,
        **schedule.attrs(),
        "record_rule": rule.describe(),
        "record_stop": int(record_stop),  # flags as 0/1: NetCDF has no boolean attribute (xarray refuses one)
        "diagnostics": ", ".join(diag) if diag else "none",
        "gtol": gtol,
        "ltol": ltol,
        "optimal_loss": problem.lstar,
        "attainable_loss": problem.lstar + gap,
        "q": problem.q,
        **problem.meta,
        "stop_early": int(stop_early),
        "blowup": blowup,
    }
    outcomes: dict[str, Any] = {
        "status": status_name,
        "status_reason": reason,
        "stop_iteration": stop_k,
        "gtol_iteration": gtol_k,
        "ltol_iteration": ltol_k,
        "final_loss": float(acc[_gd.A_LAST_LOSS]),
        "final_excess_loss": last_ex,
        "final_grad_norm_sq": last_gn2,
        "min_descent_ratio": float(acc[_gd.A_MIN_RATIO]) if np.isfinite(acc[_gd.A_MIN_RATIO]) else nan,
        "max_loss_increase": float(acc[_gd.A_MAX_INCREASE]) if np.isfinite(acc[_gd.A_MAX_INCREASE]) else nan,
        "initial_loss": loss0,
        "initial_excess_loss": excess0,
        "gradient_scale": g_scale,
        "gtol_abs": gtol_abs,
        "ltol_abs": ltol_abs,
        "divergence_threshold": threshold,
    }
    if bound is not None:
        outcomes.update(bound.outcomes())
        run_attrs.update(bound.attrs())
    run_attrs.update(dataset.provenance())
    run_attrs.update(user_attrs)
    if "grad_norm_sq" not in diag:
        del rec["grad_norm_sq"]
    return GDResult(k=rec_k, records=rec, w=w, dims=dims, schedule=schedule, status=status_name,
                    stop_iteration=stop_k, diagnostics=diag, attrs=run_attrs, outcomes=outcomes, snapshots=snaps,
                    keep_weights=keep_weights)


def _flush(held: np.ndarray, rows: np.ndarray, n_held: int, dims: np.ndarray, offs: np.ndarray,
           rec: dict[str, np.ndarray]) -> None:
    """The state diagnostics of the ``n_held`` states waiting in ``held``, into their record rows."""
    r = rows[:n_held]
    bal, lnorm, sv = rec["balancedness"][r], rec["layer_norm_sq"][r], rec["product_sv"][r]  # copies
    states_diagnostics(held[:n_held], dims, offs, bal, lnorm, sv)
    rec["balancedness"][r], rec["layer_norm_sq"][r], rec["product_sv"][r] = bal, lnorm, sv


def _stop_record(
    rec_k: np.ndarray, rec: dict[str, np.ndarray], snaps: np.ndarray | None, stop_k: int, record_stop: bool,
    w: np.ndarray, dims: np.ndarray, offs: np.ndarray, eta_stop: float, acc: np.ndarray, lstar: float,
    state_diag: bool,
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray | None]:
    """After an early stop at ``stop_k``: records after it NaN, and (with ``record_stop``) the state where
    the run stopped as a record point, inserted when it is not one already."""
    after = rec_k > stop_k if record_stop else rec_k >= stop_k
    for key in ("balancedness", "layer_norm_sq", "product_sv"):
        rec[key][after] = np.nan  # a state diagnosed before the kernel found it blown up
    if snaps is not None:
        snaps[after] = np.nan
    if not record_stop:
        return rec_k, rec, snaps
    r = int(np.searchsorted(rec_k, stop_k))
    if r == rec_k.size or rec_k[r] != stop_k:
        rec_k = np.insert(rec_k, r, stop_k)
        rec = {key: np.insert(v, r, np.nan, axis=0) for key, v in rec.items()}
        if snaps is not None:
            snaps = np.insert(snaps, r, np.nan, axis=0)
    ex = float(acc[_gd.A_LAST_EXCESS])
    rec["loss"][r] = lstar + ex
    rec["excess_loss"][r] = ex
    rec["grad_norm_sq"][r] = acc[_gd.A_LAST_GN2]
    rec["eta"][r] = eta_stop
    rec["t"][r] = acc[_gd.A_T]
    rec["descent_ratio"][r] = np.nan  # no step is taken from the stop
    if state_diag:
        for key in ("balancedness", "layer_norm_sq", "product_sv"):
            rec[key][r] = np.nan
        state_diagnostics(w, dims, offs, rec["balancedness"][r], rec["layer_norm_sq"][r], rec["product_sv"][r])
    if snaps is not None:
        snaps[r] = w if np.all(np.isfinite(w)) else np.nan
    return rec_k, rec, snaps
