"""Gradient flow: dlnsim's Numba DOPRI5 vs scipy ``solve_ivp(method="DOP853", dense_output=True)``.

Case: the N = 5 paper setup (``paper_setup(5, 0)``, d = 70, d_1 = 2), factor flow (2.2) from the
balanced start to T = 20, evaluated at the 20 000 GD times t_k = eta k (eta = T / 20 000, k = 1..20 000),
both at rtol = 1e-8, atol = 1e-10, in the same process, BLAS on one thread for both (dlnsim's default).

Rows, each timed from the initial state to the last output (best of 3 runs per side, alternating):

* ``to T``: the integrators alone from 0 to T, final state only (no dense output on either side).
* ``states``: integrate and evaluate the solution at all 20 000 times, keeping every 100th state (the whole
  record would be 1 GB).  dlnsim: the kernel behind `run_flow` / `compare_flow` (`dlnsim.runs.flow.integrate`)
  with the loss switched off; reference: ``solve_ivp(..., dense_output=True)``, then ``sol.sol(t)`` at the
  20 000 times in chunks of 500.  This is the benchmark target.
* ``states+loss``: the same plus the loss L^N at all 20 000 times, with the same Numba loss function
  (`dlnsim._kernels.flow._excess_loss`) on both sides: inside the kernel for dlnsim, in a jitted loop over
  the columns of each ``sol.sol`` chunk for the reference.

Two right-hand sides for scipy: ``reference_s`` uses -grad L from dlnsim's GD kernel called directly from
Python (what `dlnsim.gradient` computes without its input checks: the strongest scipy setup, so the ratio
measures the integrators and their dense output); ``reference_numpy_s`` uses a numpy gradient (X X^T and
Y X^T precomputed, prefix/suffix products: what a scipy user would write).

Accuracy: ``max_rel_diff`` is the largest ||y_dlnsim - y_ref||_2 / ||y_ref||_2 over the kept times
(target <= 10 rtol); ``dlnsim_err`` and ``reference_err`` are each side's error against a tight DOP853 run
(rtol = 1e-13, atol = 1e-15, untimed) at the same times, which says which side a difference comes from.
Compilation is excluded (warm-up calls first).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit
from scipy.integrate import solve_ivp

import dlnsim
from dlnsim._blas import blas_threads
from dlnsim._kernels.flow import _excess_loss
from dlnsim._kernels.linalg import _loss_grad, workspace_size
from dlnsim.objective import flat_layout, unflatten
from dlnsim.runs.flow import KINDS, integrate


@njit
def _column_losses(ys, dims, offs, pivot, Rt, F, lstar, out):  # pragma: no cover - jitted
    """out[q] = L^N of the state ys[:, q] (the reference's consumer: same loss function as the kernel)."""
    buf = np.empty(ys.shape[0])
    for q in range(ys.shape[1]):
        for i in range(ys.shape[0]):
            buf[i] = ys[i, q]
        out[q] = lstar + _excess_loss(buf, dims, offs, pivot, Rt, F)


def _flat(W: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([Wj.ravel() for Wj in W])


def _rel_err(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.max(np.linalg.norm(a - ref, axis=1) / np.linalg.norm(ref, axis=1)))


def _numpy_gradient(problem: dlnsim.Problem, dims: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """grad L^N by (3.2) in numpy: C, E precomputed, prefixes P_j = W_{j:1}, suffixes S_j = W_{N:j+1}."""
    C, E = problem.XXt, problem.YXt
    n = len(dims) - 1

    def grad(y: np.ndarray) -> np.ndarray:
        W = unflatten(y, dims)
        P = [np.eye(int(dims[0]))]
        for j in range(n):
            P.append(W[j] @ P[-1])
        S = [np.eye(int(dims[n]))]
        for j in range(n - 1, 0, -1):
            S.append(S[-1] @ W[j])
        S.reverse()  # S[j - 1] = W_{N:j+1}
        G = P[n] @ C - E
        return np.concatenate([(S[j - 1].T @ G @ P[j - 1].T).ravel() for j in range(1, n + 1)])

    return grad


def _case(N: int, seed: int, T: float, n_times: int, rtol: float, atol: float, keep_every: int,
          repeats: int) -> list[dict[str, Any]]:
    setup = dlnsim.paper_setup(N, seed)
    problem, W0 = setup.problem, setup.W0
    w0, dims, offs, pivot = flat_layout(W0)
    t = T / n_times * np.arange(1, n_times + 1, dtype=np.float64)
    t[-1] = T
    keep = np.zeros(n_times, dtype=bool)
    keep[keep_every - 1 :: keep_every] = True
    code = KINDS["factor"]
    g = np.empty_like(w0)
    ws = np.empty(workspace_size(dims, pivot))

    def rhs_kernel(_t: float, y: np.ndarray) -> np.ndarray:
        _loss_grad(y, dims, offs, pivot, problem.Rt, problem.F, g, ws)
        return -g

    np_grad = _numpy_gradient(problem, dims)

    def rhs_numpy(_t: float, y: np.ndarray) -> np.ndarray:
        return -np_grad(y)

    g_ref = _flat(dlnsim.gradient(problem, W0))
    assert np.array_equal(rhs_kernel(0.0, w0), -g_ref)  # the same kernel
    assert np.allclose(rhs_numpy(0.0, w0), -g_ref, rtol=1e-12, atol=1e-12 * np.abs(g_ref).max())

    # warm-up (compilation / cache loading), untimed
    integrate(problem, W0, t[:2], code, 0.0, rtol, atol, 1000, 0.0, 0.0, None, False)
    _column_losses(np.zeros((w0.size, 1)), dims, offs, pivot, problem.Rt, problem.F, 0.0, np.empty(1))

    # tight reference for the errors, untimed
    tight = solve_ivp(rhs_kernel, (0.0, T), w0, method="DOP853", rtol=1e-13, atol=1e-15, dense_output=True)

    def ours(row: str) -> Any:
        if row == "to T":
            out = integrate(problem, W0, t[-1:], code, 0.0, rtol, atol, 10_000_000, 0.0, 0.0,
                             np.ones(1, dtype=bool), False, with_loss=False)
        else:
            out = integrate(problem, W0, t, code, 0.0, rtol, atol, 10_000_000, 0.0, 0.0, keep, False,
                             with_loss=row == "states+loss")
        if out.status != 0:
            raise RuntimeError(f"dlnsim flow stopped with status {out.status}")
        return out

    Rhs = Callable[[float, np.ndarray], np.ndarray]

    def reference(row: str, rhs: Rhs) -> tuple[Any, np.ndarray, np.ndarray]:
        if row == "to T":
            sol = solve_ivp(rhs, (0.0, T), w0, method="DOP853", rtol=rtol, atol=atol)
            return sol, sol.y[:, -1:].T, np.empty(0)
        sol = solve_ivp(rhs, (0.0, T), w0, method="DOP853", rtol=rtol, atol=atol, dense_output=True)
        ref_loss = np.full(n_times, np.nan)
        kept = []
        for a in range(0, n_times, 500):
            ys = sol.sol(t[a : a + 500])
            if row == "states+loss":
                _column_losses(ys, dims, offs, pivot, problem.Rt, problem.F, problem.lstar,
                               ref_loss[a : a + 500])
            kept.append(ys[:, keep[a : a + 500]])
        return sol, np.concatenate(kept, axis=1).T, ref_loss

    rows = []
    for row in ("to T", "states", "states+loss"):
        times = {"ours": np.inf, "kernel": np.inf, "numpy": np.inf}
        for _ in range(repeats):
            t0 = time.perf_counter()
            res = ours(row)
            times["ours"] = min(times["ours"], time.perf_counter() - t0)
            for name, rhs in (("kernel", rhs_kernel), ("numpy", rhs_numpy)):
                t0 = time.perf_counter()
                sol, ref_states, ref_loss = reference(row, rhs)
                times[name] = min(times[name], time.perf_counter() - t0)
                if name == "kernel":
                    ref_kernel = (sol, ref_states, ref_loss)
        sol, ref_states, ref_loss = ref_kernel
        at = t[-1:] if row == "to T" else t[keep]
        y_tight = tight.sol(at).T
        what = "final state only" if row == "to T" else f"{n_times} times"
        out: dict[str, Any] = {
            "case": f"{row}: factor flow, paper setup N={N} seed={seed}, T={T:g}, {what}, rtol={rtol:g}, "
            f"atol={atol:g}",
            "dlnsim_s": times["ours"],
            "reference_s": times["kernel"],
            "ratio": times["kernel"] / times["ours"],
            "reference_numpy_s": times["numpy"],
            "ratio_numpy": times["numpy"] / times["ours"],
            "max_rel_diff": _rel_err(res.states, ref_states),
            "dlnsim_err": _rel_err(res.states, y_tight),
            "reference_err": _rel_err(ref_states, y_tight),
        }
        if row == "states+loss":
            diff = np.max(np.abs(res.loss - ref_loss))
            out["max_loss_diff_rel_L0"] = float(diff / dlnsim.loss(problem, W0))
        out.update({
            "dlnsim_steps": int(res.istats[0]),
            "dlnsim_rejected": int(res.istats[1]),
            "dlnsim_rhs": int(res.istats[2]),
            "reference_steps": len(sol.t) - 1,
            "reference_rhs": int(sol.nfev),
            "repeats": repeats,
            "rtol": rtol,
        })
        rows.append(out)
    return rows


def diagnostics_cost(N: int = 5, seed: int = 0, T: float = 20.0, n_times: int = 20_000,
                     pairs: int = 11) -> dict[str, Any]:
    """`dlnsim.run_flow` with its default diagnostics (balancedness, layer norms, singular values, loss and
    gradient norm at every time) against the same run with ``diagnostics=False``, in ``pairs`` back-to-back pairs
    (the median of the pairs' ratios: this VM drifts by tens of per cent between seconds)."""
    s = dlnsim.paper_setup(N, seed)
    t = np.linspace(0.0, T, n_times)
    dlnsim.run_flow(s.problem, s.W0, t)  # load the kernels
    dlnsim.run_flow(s.problem, s.W0, t, diagnostics=False)
    bare, full, ratio = [], [], []
    for _ in range(pairs):
        t0 = time.perf_counter()
        dlnsim.run_flow(s.problem, s.W0, t, diagnostics=False)
        bare.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        dlnsim.run_flow(s.problem, s.W0, t)
        full.append(time.perf_counter() - t0)
        ratio.append(full[-1] / bare[-1])
    return {"case": f"diagnostics: run_flow default diagnostics vs diagnostics=False, paper setup N={N} "
                    f"seed={seed}, T={T:g}, {n_times} times", "dlnsim_s": statistics.median(full),
            "bare_s": statistics.median(bare), "diagnostics_ratio": statistics.median(ratio),
            "ratio_min_max": f"{min(ratio):.2f}-{max(ratio):.2f}", "pairs": pairs}


def run(quick: bool = False) -> list[dict[str, Any]]:
    """The benchmark rows (``quick``: one timing run per side instead of the best of 3, 5 pairs for the
    diagnostics' cost instead of 11)."""
    with blas_threads(1):
        rows = _case(N=5, seed=0, T=20.0, n_times=20_000, rtol=1e-8, atol=1e-10, keep_every=100,
                     repeats=1 if quick else 3)
        rows.append(diagnostics_cost(pairs=5 if quick else 11))
        return rows


def main() -> None:
    for row in run():
        print(row["case"])
        for key, val in row.items():
            if key != "case":
                print(f"  {key:>20}: {val:.4g}" if isinstance(val, float) else f"  {key:>20}: {val}")


if __name__ == "__main__":
    main()
