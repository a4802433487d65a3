"""Minibatch stochastic gradient descent, run in resumable chunks like `gd`.

Step k takes the batch ``idx[k - k0]`` of sample indices and makes the fused step w -> w - eta (m/b) grad
L_B(w) (written into the second buffer) with L_B(W) = 1/2 ||W X_B - Y_B||_F^2, the columns B of the data
read as rows of X^T and Y^T (one contiguous row of d_0 + d_N numbers per sample, read where it is: no copy
of the batch).  For a pivot of width 2 inside the network (0 < p < N with d_p = 2, the paper's networks) the
step is `_narrow_step`: loops that make two passes over the factors and one over the batch,

* forward: the chains L_j = W_{p:j+1} (2 x d_j, j < p) and U_j^T = (W_{j:p+1})^T (2 x d_j, j > p), one pass
  over every factor (two multiply-adds per weight);
* the batch: per sample i, l = L_0 x_i (2 numbers), z = U_N l - y_i (d_N), 1/2 ||z||^2, and the
  accumulations V_N^T += l z^T (2 x d_N) and M_0 += (U_N^T z) x_i^T (2 x d_0): about 12 (d_0 + d_N)
  flops per sample;
* backward and step, one pass over every factor: grad_j = L_j^T M_{j-1} (j <= p, M_j = M_{j-1} W_j^T)
  and grad_j = V_j U_{j-1}^T (j > p, V_{j-1} = W_j^T V_j), each row of the next iterate written as the row
  of the gradient is formed (with momentum, its update of that row while it is in cache), together with
  ||grad L_B||^2 (six flops per weight).

So a step costs about 10 n + 12 b (d_0 + d_N) flops (n = sum_j d_j d_{j-1} weights) and reads the factors
twice: linear in the batch size b, the weights' share independent of it.  On the paper's N = 5 network
(n = 6480, d_0 = d_N = 70) that is 65 kflop + 1.7 kflop per sample; measured on one core of a shared 2-core
AMD EPYC: 6.3 us at b = 1, 8 us at b = 16, 12 us at b = 64, 24 us at b = m = 210 (about 6 us + 0.09 us per
sample), against 17 us for b = 16 by copying the batch (2 us) and calling the general kernel (15 us: dgemm
calls with a side of 2, whose set-up dominates at these sizes).  Other layouts (a pivot
wider than 2, or at the input or output) copy the batch into ``xb``, ``yb`` (O((d_0 + d_N) b)) and make the
fused step of the full-batch kernel on it: `linalg._loss_grad_norm` with R^T = X_B and F = Y_B costs
O(d_p sum_j d_j d_{j-1}) for the chains plus O((d_p + d_N) d_0 b) for the products with the data.

The full-data loss and gradient norm are evaluated only at the record points (the residual form of the full
data, as in `gd`): there the records are written, and the convergence tests (gradient and loss test, early
stop) and the divergence threshold are checked on the full loss.  At every step the batch loss is checked:
a non-finite batch loss or gradient, or an estimate (m/b) L_B above the threshold, is a divergence; the full
loss of that state is then evaluated for the record of the stop.  The descent statistics of `gd` (one-step
increase, descent ratio) need the full loss at every step and are not kept.

Momentum (``rule``) as in `gd`, with the stochastic gradient.  Status codes as in `gd`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from .gd import (
    A_LAST_EXCESS,
    A_LAST_GN2,
    A_LAST_LOSS,
    A_LTOL,
    A_T,
    DIVERGED_BLOWUP,
    DIVERGED_NONFINITE,
    HEAVY_BALL,
    I_LAST_K,
    I_NEXT_REC,
    I_STATUS,
    I_STOP,
    NESTEROV,
    PLAIN,
    RUNNING,
    _momentum,
    _tests,
)
from .linalg import SOURCES, _copy_flat, _loss_grad_norm

#: reassociation (so that the reductions vectorise) and contraction (FMA) only: NaN and Inf keep their meaning,
#: which the divergence tests rely on
_FM = {"reassoc", "contract"}


def narrow_pivot(dims: np.ndarray, pivot: int) -> bool:
    """Whether the SGD step of a network of widths ``dims`` with pivot layer ``pivot`` is `_narrow_step`."""
    return 0 < pivot < len(dims) - 1 and int(dims[pivot]) == 2


def workspace_size(dims: np.ndarray) -> int:
    """Length of the float64 workspace of `_narrow_step`: two 2 x d_j matrices per width d_j."""
    return 4 * int(np.sum(dims))


@njit(cache=True, nogil=True, fastmath=_FM)
def _narrow_step(cur, nxt, v, rule, beta, dims, offs, p, XT, YT, row, ws, e):
    """The SGD step through a pivot ``p`` of width 2 (0 < p < N; the module docstring): ``nxt`` = cur -
    e grad L_B(cur) for the batch B = ``row`` (rows of ``XT`` (m, d_0) and ``YT`` (m, d_N)), then the momentum
    step of ``rule`` with the velocity ``v`` (row by row, the formulas of `gd._momentum`).  ``ws``:
    `workspace_size`.  Returns (L_B, ||grad L_B||^2) at ``cur``.

    Workspace: two regions of 2 x d_j matrices (C-ordered, at offset 2 (d_0 + ... + d_{j-1}) in the region),
    A: L_j (j < p), the identity (j = p), U_j^T (j > p); B: M_j (j < p), V_j^T (j > p).  Every matrix is
    a 2-D view (made once per layer) indexed by loop counters, and no row is a view of its own: the inner loops
    have unit stride and no index checks, so they vectorise, and no array is reference-counted per row.
    """
    n = dims.shape[0] - 1
    d0 = dims[0]
    dn = dims[n]
    half = 0
    for j in range(n + 1):
        half += 2 * dims[j]
    sp = 0  # slot of the pivot: sa(j) = 2 (d_0 + ... + d_{j-1})
    for j in range(p):
        sp += 2 * dims[j]
    ws[sp] = 1.0
    ws[sp + 1] = 0.0
    ws[sp + 2] = 0.0
    ws[sp + 3] = 1.0
    momentum = rule != PLAIN
    # forward, lower chain: L_{j-1} = L_j W_j (row c: sum_i L_j[c, i] W_j[i, :]), j = p..1
    so = sp
    for j in range(p, 0, -1):
        dj, dk = dims[j], dims[j - 1]
        sl = so - 2 * dk
        L = ws[so : so + 2 * dj].reshape((2, dj))
        O = ws[sl : sl + 2 * dk].reshape((2, dk))
        W = cur[offs[j - 1] : offs[j]].reshape((dj, dk))
        for k in range(dk):
            O[0, k] = 0.0
            O[1, k] = 0.0
        for i in range(dj):
            a0 = L[0, i]
            a1 = L[1, i]
            for k in range(dk):
                x = W[i, k]
                O[0, k] += a0 * x
                O[1, k] += a1 * x
        so = sl
    # forward, upper chain: U_j^T[c, i] = W_j[i, :] . U_{j-1}^T[c, :], j = p+1..N
    so = sp
    for j in range(p + 1, n + 1):
        dj, dk = dims[j], dims[j - 1]
        su = so + 2 * dk
        Q = ws[so : so + 2 * dk].reshape((2, dk))
        O = ws[su : su + 2 * dj].reshape((2, dj))
        W = cur[offs[j - 1] : offs[j]].reshape((dj, dk))
        for i in range(dj):
            s0 = 0.0
            s1 = 0.0
            for k in range(dk):
                x = W[i, k]
                s0 += x * Q[0, k]
                s1 += x * Q[1, k]
            O[0, i] = s0
            O[1, i] = s1
        so = su
    # the batch: z = U_N (L_0 x) - y per sample; V_N^T += l z^T, M_0 += (U_N^T z) x^T
    U = ws[so : so + 2 * dn].reshape((2, dn))
    L = ws[0 : 2 * d0].reshape((2, d0))
    M = ws[half : half + 2 * d0].reshape((2, d0))
    Q = ws[half + so : half + so + 2 * dn].reshape((2, dn))
    for k in range(d0):
        M[0, k] = 0.0
        M[1, k] = 0.0
    for k in range(dn):
        Q[0, k] = 0.0
        Q[1, k] = 0.0
    ex = 0.0
    for s in range(row.shape[0]):
        r = row[s]
        a0 = 0.0
        a1 = 0.0
        for k in range(d0):
            x = XT[r, k]
            a0 += L[0, k] * x
            a1 += L[1, k] * x
        acc = 0.0
        t0 = 0.0
        t1 = 0.0
        for i in range(dn):
            z = U[0, i] * a0 + U[1, i] * a1 - YT[r, i]
            acc += z * z
            t0 += U[0, i] * z
            t1 += U[1, i] * z
            Q[0, i] += a0 * z
            Q[1, i] += a1 * z
        ex += acc
        for k in range(d0):
            x = XT[r, k]
            M[0, k] += t0 * x
            M[1, k] += t1 * x
    gs = 0.0
    # backward and step.  Layer j: rows i of the gradient g = a0 P[0, :] + a1 P[1, :], with (a0, a1) column i of
    # L_j and P = M_{j-1} (j <= p; and M_j[c, i] = M_{j-1}[c, :] . W_j[i, :] for j < p), or (a0, a1) column i
    # of V_j^T and P = U_{j-1}^T (j > p; and V_{j-1}^T += a W_j[i, :] for j > p + 1).  Order: j = 1..p, then
    # j = N..p+1 (each chain from the batch towards the pivot)
    for t in range(n):
        j = t + 1 if t < p else n + p - t
        dj, dk = dims[j], dims[j - 1]
        sk = 0  # slot of width d_{j-1}
        for q in range(j - 1):
            sk += 2 * dims[q]
        sj = sk + 2 * dk  # slot of width d_j
        lower = j <= p
        if lower:
            A = ws[sj : sj + 2 * dj].reshape((2, dj))  # L_j
            P = ws[half + sk : half + sk + 2 * dk].reshape((2, dk))  # M_{j-1}
            O = ws[half + sj : half + sj + 2 * dj].reshape((2, dj))  # M_j
            mode = 2 if j < p else 0
        else:
            A = ws[half + sj : half + sj + 2 * dj].reshape((2, dj))  # V_j^T
            P = ws[sk : sk + 2 * dk].reshape((2, dk))  # U_{j-1}^T
            O = ws[half + sk : half + sk + 2 * dk].reshape((2, dk))  # V_{j-1}^T
            mode = 1 if j > p + 1 else 0
            if mode == 1:
                for k in range(dk):
                    O[0, k] = 0.0
                    O[1, k] = 0.0
        W = cur[offs[j - 1] : offs[j]].reshape((dj, dk))
        Nx = nxt[offs[j - 1] : offs[j]].reshape((dj, dk))
        V = v[offs[j - 1] : offs[j]].reshape((dj, dk)) if momentum else Nx
        for i in range(dj):
            a0 = A[0, i]
            a1 = A[1, i]
            g2 = 0.0
            if mode == 1:
                for k in range(dk):
                    x = W[i, k]
                    g = a0 * P[0, k] + a1 * P[1, k]
                    g2 += g * g
                    Nx[i, k] = x - e * g
                    O[0, k] += a0 * x
                    O[1, k] += a1 * x
            elif mode == 2:
                s0 = 0.0
                s1 = 0.0
                for k in range(dk):
                    x = W[i, k]
                    g = a0 * P[0, k] + a1 * P[1, k]
                    g2 += g * g
                    Nx[i, k] = x - e * g
                    s0 += P[0, k] * x
                    s1 += P[1, k] * x
                O[0, i] = s0
                O[1, i] = s1
            else:
                for k in range(dk):
                    g = a0 * P[0, k] + a1 * P[1, k]
                    g2 += g * g
                    Nx[i, k] = W[i, k] - e * g
            gs += g2
            # the momentum step of the row while it is in cache (`gd._momentum`)
            if rule == HEAVY_BALL:
                for k in range(dk):
                    y = Nx[i, k] + beta * V[i, k]
                    Nx[i, k] = y
                    V[i, k] = y - W[i, k]
            elif rule == NESTEROV:
                for k in range(dk):
                    y = Nx[i, k]
                    vi = beta * V[i, k] + (y - W[i, k])
                    V[i, k] = vi
                    Nx[i, k] = y + beta * vi
    return 0.5 * ex, gs


def _make_sgd_chunk(rule: int, name: str, stamp: str = SOURCES) -> Any:
    """The SGD chunk kernel of momentum ``rule``, compiled on first use and cached under ``name``."""

    def _sgd_chunk(work, data, layout, controls, records, batches, k_start, k_stop):
        """Run steps k_start <= k < k_stop (k_stop <= n_iter + 1) with the batches ``batches`` (`args.Batches`,
        covering these steps); the other arguments as in `gd._gd_chunk`.  Returns the status code."""
        stamp  # noqa: B018  (the kernels' sources: part of the cache key, see `linalg.SOURCES`)
        w, g, ws, acc, iacc, v = work
        Rt, F, lstar = data
        dims, offs, pivot = layout
        etas, n_iter, threshold, gtol_sq, stop_early, beta = controls
        rec_k, rec_loss, rec_excess, rec_gn2, _, rec_eta, rec_t = records
        XT, YT, idx, xb, yb, scale, k0 = batches
        constant = etas.shape[0] == 1
        n_rec = rec_k.shape[0]
        ltol_ex = acc[A_LTOL]
        bsize = idx.shape[1]
        dx = XT.shape[1]
        dy = YT.shape[1]
        narrow = 0 < pivot < dims.shape[0] - 1 and dims[pivot] == 2  # as `narrow_pivot`
        cur, nxt = w, g
        status = RUNNING
        for k in range(k_start, k_stop):
            eta = 0.0
            if k < n_iter:
                eta = etas[0] if constant else etas[k]
            r = iacc[I_NEXT_REC]
            if (r < n_rec and rec_k[r] == k) or k == n_iter:
                # the full data at a record point (nxt is scratch here: the step below overwrites it)
                ex, gn2 = _loss_grad_norm(cur, dims, offs, pivot, Rt, F, nxt, ws, np.int64(3), 0.0, True)
                loss = lstar + ex
                iacc[I_LAST_K] = k
                acc[A_LAST_LOSS] = loss
                acc[A_LAST_GN2] = gn2
                acc[A_LAST_EXCESS] = ex
                if not (np.isfinite(loss) and np.isfinite(gn2)):
                    status = DIVERGED_NONFINITE
                    iacc[I_STATUS] = status
                    iacc[I_STOP] = k
                    break
                if loss > threshold:
                    status = DIVERGED_BLOWUP
                    iacc[I_STATUS] = status
                    iacc[I_STOP] = k
                    break
                if r < n_rec and rec_k[r] == k:
                    rec_loss[r] = loss
                    rec_excess[r] = ex
                    rec_gn2[r] = gn2
                    rec_eta[r] = eta if k < n_iter else np.nan
                    rec_t[r] = acc[A_T]
                    iacc[I_NEXT_REC] = r + 1
                status = _tests(k, gn2, ex, gtol_sq, ltol_ex, stop_early, iacc)
                if status != RUNNING:
                    break
            if k == n_iter:
                iacc[I_STOP] = k
                break
            # the step on the batch of step k
            row = idx[k - k0]
            if narrow:
                exb, gnb = _narrow_step(cur, nxt, v, rule, beta, dims, offs, pivot, XT, YT, row, ws, eta * scale)
            else:
                for j in range(bsize):
                    src = XT[row[j]]
                    for i in range(dx):
                        xb[i, j] = src[i]
                    src = YT[row[j]]
                    for i in range(dy):
                        yb[i, j] = src[i]
                exb, gnb = _loss_grad_norm(cur, dims, offs, pivot, xb, yb, nxt, ws, np.int64(4), eta * scale, False)
            if not (np.isfinite(exb) and np.isfinite(gnb)) or scale * exb > threshold:
                # a divergence seen in the batch: the full loss of this state for the record of the stop
                ex, gn2 = _loss_grad_norm(cur, dims, offs, pivot, Rt, F, nxt, ws, np.int64(3), 0.0, True)
                iacc[I_LAST_K] = k
                acc[A_LAST_LOSS] = lstar + ex
                acc[A_LAST_GN2] = gn2
                acc[A_LAST_EXCESS] = ex
                status = DIVERGED_BLOWUP if np.isfinite(exb) and np.isfinite(gnb) else DIVERGED_NONFINITE
                iacc[I_STATUS] = status
                iacc[I_STOP] = k
                break
            if rule != PLAIN and not narrow:  # (the narrow step applies the momentum row by row)
                _momentum(rule, beta, cur, nxt, v)
            cur, nxt = nxt, cur
            acc[A_T] += eta
        if cur is not w:
            _copy_flat(w, 0, cur, 0, w.shape[0])
        return status

    _sgd_chunk.__qualname__ = name
    _sgd_chunk.__name__ = name
    return njit(cache=True, nogil=True)(_sgd_chunk)


_sgd_chunk = _make_sgd_chunk(PLAIN, "_sgd_chunk")
_sgd_heavy_ball_chunk = _make_sgd_chunk(HEAVY_BALL, "_sgd_heavy_ball_chunk")
_sgd_nesterov_chunk = _make_sgd_chunk(NESTEROV, "_sgd_nesterov_chunk")

#: the SGD chunk kernel of each momentum rule
SGD_CHUNKS = {PLAIN: _sgd_chunk, HEAVY_BALL: _sgd_heavy_ball_chunk, NESTEROV: _sgd_nesterov_chunk}
