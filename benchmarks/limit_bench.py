"""How close a GD step comes to the physical limit: its FLOPs at the single-thread DGEMM rate.

For the N = 5 paper setup (widths 70-2-19-36-53-70, pivot = the narrowest layer d_1 = 2) the FLOPs of one step
are counted exactly from the shapes, for the association order of `dlnsim._kernels.linalg._loss_grad` (every
chain through the pivot, loss in residual form Z = W R^T - F): `kernel_calls` lists its products in order
(2 m n k FLOPs each; dgemm calls, or for a pivot of width 2 the loops of `dlnsim._kernels.narrow`), and the
step adds Z -= F, 1/2 ||Z||^2, ||grad||^2 and the update w - eta grad.

The limit is FLOPs / rate, with the single-thread DGEMM rate measured in the same run, right after each timed
step run (pairs, so that this VM's drift cancels): at n = 70 (the size of the data matrices) and at n = 512
(the machine's peak).  Reported: the step time of `dlnsim.run_gd` (one record at the end) and of the bare
gradient kernel in a loop, each as a multiple of both limits (target: within 2x of the DGEMM(70) limit).

Where the time goes: every dgemm call of the kernel timed alone, with its shapes, in a compiled loop through
the same BLAS entry point (``numba_xxgemm``), against its FLOPs at the DGEMM rate (the BLAS overhead of small
products); then the kernel's two loops against the BLAS sequence they replace, on the same data (checked to
agree to 1e-12): `fused`, the 70 x 70 part of the step (Z = U (L R^T) - F, 1/2 ||Z||^2, U^T Z, Z (L R^T)^T;
3 gemm, a subtraction pass and a ddot, or one pass over F), and `rank2`, the rank-2 gradient products
grad_j = V_j U_{j-1}^T with ||grad||^2 (gemm + ddot, or a loop); and the sum of the parts against the
kernel's time.

Run: ``python -m benchmarks.limit_bench [--quick]``; `run()` returns the rows.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit

import dlnsim
from dlnsim._kernels.blas import _dot, _matmul
from dlnsim._kernels.linalg import _loss_grad, workspace_size
from dlnsim._kernels.narrow import NARROW, _rank_update, _residual_pass, _transpose

Call = tuple[str, bool, bool, int, int, int]  # (label, ta, tb, m, n, k)


def loop_product(label: str, dims: list[int], b: int) -> bool:
    """Whether the kernel forms this product of `kernel_calls` in a loop of `narrow` (pivot width 2) instead
    of a dgemm call: the residual pass (Z, U_N^T Z, V_N) and the gradient blocks with inner dimension 2."""
    if dims[b] != NARROW:
        return False
    if label.startswith(("Z = ", "T = ", "V_N = ")):
        return 0 < b < len(dims) - 1  # the one-pass residual (the kernel's `fused`)
    return label.startswith("grad_")


def kernel_calls(dims: list[int], b: int) -> list[Call]:
    """The products of `_loss_grad` in order, for widths ``dims`` (d_0..d_N) and pivot ``b`` (`loop_product`
    says which of them are loops).

    Mirrors the kernel's branches (see dlnsim/_kernels/linalg.py); C (m x n) = op(A) op(B), k inner.
    """
    n = len(dims) - 1
    d0, dn, db = dims[0], dims[n], dims[b]
    calls: list[Call] = []
    if b > 0:
        for j in range(b - 1, 0, -1):
            calls.append((f"L_{j - 1} = L_{j} W_{j}", False, False, db, dims[j - 1], dims[j]))
        calls.append(("L_0 R^T", False, False, db, d0, d0))
    if b < n:
        for j in range(b + 2, n + 1):
            calls.append((f"U_{j} = W_{j} U_{j - 1}", False, False, dims[j], db, dims[j - 1]))
        calls.append(("Z = U_N (L_0 R^T)" if b > 0 else "Z = U_N R^T", False, False, dn, d0, db))
    if b > 0:
        if b < n:
            calls.append(("T = U_N^T Z", True, False, db, d0, dn))
            calls.append(("M_0 = T R", False, True, db, d0, d0))
        else:
            calls.append(("M_0 = Z R", False, True, db, d0, d0))
        for j in range(1, b):
            calls.append((f"M_{j} = M_{j - 1} W_{j}^T", False, True, db, dims[j], dims[j - 1]))
        for j in range(1, b):
            calls.append((f"grad_{j} = L_{j}^T M_{j - 1}", True, False, dims[j], dims[j - 1], db))
    if b < n:
        calls.append(("V_N = Z (L_0 R^T)^T", False, True, dn, db, d0))
        for j in range(n, b + 1, -1):
            calls.append((f"V_{j - 1} = W_{j}^T V_{j}", True, False, dims[j - 1], db, dims[j]))
        for j in range(b + 2, n + 1):
            calls.append((f"grad_{j} = V_{j} U_{j - 1}^T", False, True, dims[j], dims[j - 1], db))
    return calls


def step_flops(dims: list[int], b: int) -> dict[str, float]:
    """FLOPs of one GD step: gemm (2 m n k each), the residual pass, and the vector passes of the GD loop."""
    n = len(dims) - 1
    size = sum(dims[j] * dims[j - 1] for j in range(1, n + 1))
    gemm = sum(2.0 * m * nn * k for _, _, _, m, nn, k in kernel_calls(dims, b))
    zsize = dims[n] * dims[0]
    other = zsize + 2.0 * zsize + 2.0 * size + 2.0 * size  # Z -= F, ||Z||^2, ||grad||^2, w -= eta grad
    return {"gemm": gemm, "other": other, "total": gemm + other, "params": float(size)}


@njit(cache=False, nogil=True)
def _gemm_loop(ta, tb, m, n, k, a, b, c, reps):
    for _ in range(reps):
        _matmul(ta, tb, m, n, k, a, 0, b, 0, c, 0)


@njit(cache=False, nogil=True)
def _grad_loop(w, dims, offs, b, Rt, F, g, ws, reps):
    s = 0.0
    for _ in range(reps):
        s += _loss_grad(w, dims, offs, b, Rt, F, g, ws)
    return s


def _dgemm_rate(n: int, flops: float) -> tuple[float, float]:
    """(seconds, GFLOP/s) of n x n x n DGEMMs worth ``flops`` FLOPs (at least 3 products)."""
    rng = np.random.default_rng(0)
    a, b, c = rng.random(n * n), rng.random(n * n), np.empty(n * n)
    reps = max(3, round(flops / (2.0 * n**3)))
    t0 = time.perf_counter()
    _gemm_loop(False, False, n, n, n, a, b, c, reps)
    t = time.perf_counter() - t0
    return t, 2.0 * n**3 * reps / t / 1e9


def _layout(W: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    dims = np.array([W[0].shape[1]] + [Wj.shape[0] for Wj in W], dtype=np.int64)
    offs = np.zeros(len(W) + 1, dtype=np.int64)
    offs[1:] = np.cumsum([Wj.size for Wj in W])
    w = np.concatenate([Wj.ravel() for Wj in W])
    return w, dims, offs, int(np.argmin(dims))


# ------------------------------------------------------------------- the kernel's loops against a BLAS sequence


@njit(cache=False, nogil=True)
def _z_part_blas(U, LR, F, Z, T, V, reps):
    """Z = U LR (gemm), Z -= F, 1/2 ||Z||^2 (ddot), T = U^T Z, V = Z LR^T (gemm): what the kernel does for pivots
    other than 2."""
    dn, db = U.shape
    d0 = LR.shape[1]
    u, lr, ff, z, t, v = U.ravel(), LR.ravel(), F.ravel(), Z.ravel(), T.ravel(), V.ravel()
    ex = 0.0
    for _ in range(reps):
        _matmul(False, False, dn, d0, db, u, 0, lr, 0, z, 0)
        for i in range(dn * d0):
            z[i] -= ff[i]
        ex = 0.5 * _dot(dn * d0, z, 0, z, 0)
        _matmul(True, False, db, d0, dn, u, 0, z, 0, t, 0)
        _matmul(False, True, dn, db, d0, z, 0, lr, 0, v, 0)
    return ex


@njit(cache=False, nogil=True)
def _z_part_loop(U, LR, F, T, V, reps):
    """The same by the kernel's one-pass loop `narrow._residual_pass` (pivot width 2)."""
    dn = U.shape[0]
    d0 = LR.shape[1]
    u, lr, ff, t, v = U.ravel(), LR.ravel(), F.ravel(), T.ravel(), V.ravel()
    ex = 0.0
    for _ in range(reps):
        ex = _residual_pass(dn, d0, u, 0, lr, 0, ff, t, 0, True, v, 0, True)
    return ex


def fused(reps: int, n: int, dn: int = 70, db: int = 2, d0: int = 70) -> dict[str, Any]:
    rng = np.random.default_rng(3)
    U, LR, F = rng.normal(size=(dn, db)), rng.normal(size=(db, d0)), rng.normal(size=(dn, d0))
    Z, T1, V1 = np.empty((dn, d0)), np.empty((db, d0)), np.empty((dn, db))
    T2, V2 = np.empty((db, d0)), np.empty((dn, db))
    e1 = _z_part_blas(U, LR, F, Z, T1, V1, 1)
    e2 = _z_part_loop(U, LR, F, T2, V2, 1)
    err = max(abs(e1 - e2) / abs(e1), float(np.max(np.abs(T1 - T2)) / np.max(np.abs(T1))),
              float(np.max(np.abs(V1 - V2)) / np.max(np.abs(V1))))
    if err > 1e-12:
        raise AssertionError(f"the residual pass disagrees with the BLAS sequence: {err:.2e}")
    tb, tf = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        _z_part_blas(U, LR, F, Z, T1, V1, n)
        tb.append((time.perf_counter() - t0) / n)
        t0 = time.perf_counter()
        _z_part_loop(U, LR, F, T2, V2, n)
        tf.append((time.perf_counter() - t0) / n)
    return {"blas_us": statistics.median(tb) * 1e6, "fused_us": statistics.median(tf) * 1e6,
            "ratio": statistics.median([a / b for a, b in zip(tb, tf, strict=True)]), "max_rel_diff": err}


@njit(cache=False, nogil=True)
def _rank2_blas(V, U, C, shapes, reps):
    """grad_j = V_j U_{j-1}^T (k = 2) by gemm for each (m, n) in ``shapes``, then ||grad||^2 by ddot."""
    s = 0.0
    for _ in range(reps):
        for q in range(shapes.shape[0]):
            m, n = shapes[q, 0], shapes[q, 1]
            _matmul(False, True, m, n, 2, V, 0, U, 0, C, 0)
            s += _dot(m * n, C, 0, C, 0)
    return s


@njit(cache=False, nogil=True)
def _rank2_loop(V, U, C, shapes, reps):
    """The same by the kernel's loops (`narrow._transpose`, `narrow._rank_update`, which returns ||grad||^2)."""
    s = 0.0
    ut = np.empty(140)
    for _ in range(reps):
        for q in range(shapes.shape[0]):
            m, n = shapes[q, 0], shapes[q, 1]
            _transpose(n, 2, U, 0, ut, 0)
            s += _rank_update(m, n, V, 0, 2, 1, ut, 0, C, 0, C, 0.0, False)
    return s


def rank2(reps: int, n: int, shapes: list[tuple[int, int]]) -> dict[str, Any]:
    """BLAS against the kernel's loops for the k = 2 gradient products of the upper layers (and ||grad||^2)."""
    rng = np.random.default_rng(4)
    V, U, C = rng.normal(size=140), rng.normal(size=140), np.empty(70 * 70)
    sh = np.array(shapes, dtype=np.int64)
    a, b = _rank2_blas(V, U, C, sh, 1), _rank2_loop(V, U, C, sh, 1)
    if abs(a - b) > 1e-12 * abs(a):
        raise AssertionError(f"rank-2 loop disagrees with gemm: {a} vs {b}")
    tb, tl = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        _rank2_blas(V, U, C, sh, n)
        tb.append((time.perf_counter() - t0) / n)
        t0 = time.perf_counter()
        _rank2_loop(V, U, C, sh, n)
        tl.append((time.perf_counter() - t0) / n)
    return {"blas_us": statistics.median(tb) * 1e6, "loop_us": statistics.median(tl) * 1e6,
            "ratio": statistics.median([x / y for x, y in zip(tb, tl, strict=True)])}


# ------------------------------------------------------------------------------------------------------ run


def _paired(fn: Callable[[], None], steps: int, flops_per_step: float, reps: int) -> dict[str, float]:
    """Median step time of ``fn`` (``steps`` steps per call) and, paired, the DGEMM(70) and DGEMM(512) limits."""
    ts, lim70, lim512, r70, r512 = [], [], [], [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        t = (time.perf_counter() - t0) / steps
        _, g70 = _dgemm_rate(70, flops_per_step * min(steps, 20_000))
        _, g512 = _dgemm_rate(512, flops_per_step * min(steps, 20_000))
        ts.append(t)
        r70.append(t / (flops_per_step / (g70 * 1e9)))
        r512.append(t / (flops_per_step / (g512 * 1e9)))
        lim70.append(g70)
        lim512.append(g512)
    return {"us_per_step": statistics.median(ts) * 1e6, "us_min": min(ts) * 1e6, "us_max": max(ts) * 1e6,
            "x_limit70": statistics.median(r70), "x_limit70_min_max": f"{min(r70):.2f}-{max(r70):.2f}",
            "x_limit512": statistics.median(r512), "dgemm70_gflops": statistics.median(lim70),
            "dgemm512_gflops": statistics.median(lim512)}


def run(quick: bool = False) -> list[dict[str, Any]]:
    from threadpoolctl import threadpool_limits

    reps = 5 if quick else 9
    steps = 5000 if quick else 20_000
    s = dlnsim.paper_setup(5, 0)
    p, W0 = s.problem, s.W0
    eta = dlnsim.stepsize_bound(p, W0).eta
    w, dims, offs, b = _layout(W0)
    dl = [int(x) for x in dims]
    fl = step_flops(dl, b)
    rows: list[dict[str, Any]] = []
    with threadpool_limits(1, user_api="blas"):
        _dgemm_rate(70, 1e6)
        _dgemm_rate(512, 1e6)
        dlnsim.run_gd(p, W0, eta, 10)
        g, ws = np.empty_like(w), np.empty(workspace_size(dims, b))
        _grad_loop(w.copy(), dims, offs, b, p.Rt, p.F, g, ws, 1)
        step = _paired(lambda: dlnsim.run_gd(p, W0, eta, steps, record=[steps]), steps, fl["total"], reps)
        rows.append({"case": "GD step (run_gd), N=5 paper", **step, "flops_per_step": fl["total"],
                     "gemm_flops": fl["gemm"], "reps": reps, "steps": steps})
        grad = _paired(lambda: _grad_loop(w.copy(), dims, offs, b, p.Rt, p.F, g, ws, steps), steps,
                       fl["gemm"] + 3.0 * dl[-1] * dl[0], reps)
        rows.append({"case": "gradient kernel alone (_loss_grad loop), N=5 paper", **grad,
                     "flops_per_step": fl["gemm"] + 3.0 * dl[-1] * dl[0], "reps": reps, "steps": steps})
        # every dgemm call alone, same shapes, same BLAS entry point
        big = 70 * 70
        rng = np.random.default_rng(1)
        a, bb, c = rng.random(big), rng.random(big), np.empty(big)
        n_call = 20_000 if quick else 50_000
        rate70 = step["dgemm70_gflops"] * 1e9
        total_calls = 0.0
        gemm_calls = [c for c in kernel_calls(dl, b) if not loop_product(c[0], dl, b)]
        for label, ta, tb, m, nn, k in gemm_calls:
            _gemm_loop(ta, tb, m, nn, k, a, bb, c, 10)
            ts = []
            for _ in range(3):
                t0 = time.perf_counter()
                _gemm_loop(ta, tb, m, nn, k, a, bb, c, n_call)
                ts.append((time.perf_counter() - t0) / n_call)
            t = min(ts)
            total_calls += t
            f = 2.0 * m * nn * k
            rows.append({"case": f"  gemm {label}", "shape": f"{m}x{nn}, k={k}{' (A^T)' if ta else ''}"
                                                          f"{' (B^T)' if tb else ''}",
                         "flops": f, "us_per_call": t * 1e6, "gflops": f / t / 1e9,
                         "x_at_dgemm70_rate": t / (f / rate70)})
        fz = fused(reps, 20_000 if quick else 100_000)
        rows.append({"case": "  loop: 70x70 part (Z, ||Z||^2, U^T Z, Z (LR^T)^T), one pass (BLAS sequence: blas_us)",
                     "us_per_step": fz["fused_us"], "blas_us": fz["blas_us"], "speedup": fz["ratio"],
                     "max_rel_diff": fz["max_rel_diff"], "reps": reps})
        shapes = [(m, nn) for lab, _, _, m, nn, k in kernel_calls(dl, b) if lab.startswith("grad_") and k == 2]
        r2 = rank2(reps, 20_000 if quick else 100_000, shapes)
        rows.append({"case": f"  loop: k=2 gradient products {shapes} + ||grad||^2 (gemm + ddot: blas_us)",
                     "us_per_step": r2["loop_us"], "blas_us": r2["blas_us"], "speedup": r2["ratio"], "reps": reps})
        parts = total_calls * 1e6 + fz["fused_us"] + r2["loop_us"]
        rows.append({"case": "  sum of the parts timed alone (dgemm calls + the two loops)", "us_per_step": parts,
                     "share_of_gradient_kernel": parts / grad["us_per_step"],
                     "at_dgemm70_rate_us": fl["gemm"] / rate70 * 1e6, "dgemm_calls": len(gemm_calls)})
    return rows


if __name__ == "__main__":
    for r in run():
        print(r)
