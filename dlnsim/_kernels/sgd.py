"""Minibatch stochastic gradient descent, run in resumable chunks like `gd`.

Step k takes the batch ``idx[k - k0]`` of sample indices, copies those columns of X and Y into ``xb`` and
``yb`` and makes the fused step of the gradient kernel on them: `linalg._loss_grad_norm` with R^T = X_B and
F = Y_B (the kernel's data matrices may have any number of columns) returns 1/2 ||W X_B - Y_B||_F^2 and writes
W - eta (m/b) grad L_B(W) into the second buffer.  The cost of a step is that of a full-batch step with b
columns of data instead of d_x: the chains through the narrowest layer cost O(d_b sum_j d_j d_{j-1}) as
before, and the products with the data O((d_b + d_N) d_0 b) instead of O((d_b + d_N) d_0^2), plus the copy of
the batch, O((d_0 + d_N) b).

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
        X, Y, idx, xb, yb, scale, k0 = batches
        constant = etas.shape[0] == 1
        n_rec = rec_k.shape[0]
        ltol_ex = acc[A_LTOL]
        bsize = idx.shape[1]
        dx = X.shape[0]
        dy = Y.shape[0]
        cur, nxt = w, g
        status = RUNNING
        for k in range(k_start, k_stop):
            eta = 0.0
            if k < n_iter:
                eta = etas[0] if constant else etas[k]
            r = iacc[I_NEXT_REC]
            if (r < n_rec and rec_k[r] == k) or k == n_iter:
                # the full data at a record point (nxt is scratch here: the step below overwrites it)
                ex, gn2 = _loss_grad_norm(cur, dims, offs, pivot, Rt, F, nxt, ws, np.int64(3), 0.0)
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
            # the batch of step k
            row = idx[k - k0]
            for i in range(dx):
                src = X[i]
                dst = xb[i]
                for j in range(bsize):
                    dst[j] = src[row[j]]
            for i in range(dy):
                src = Y[i]
                dst = yb[i]
                for j in range(bsize):
                    dst[j] = src[row[j]]
            exb, gnb = _loss_grad_norm(cur, dims, offs, pivot, xb, yb, nxt, ws, np.int64(4), eta * scale)
            if not (np.isfinite(exb) and np.isfinite(gnb)) or scale * exb > threshold:
                # a divergence seen in the batch: the full loss of this state for the record of the stop
                ex, gn2 = _loss_grad_norm(cur, dims, offs, pivot, Rt, F, nxt, ws, np.int64(3), 0.0)
                iacc[I_LAST_K] = k
                acc[A_LAST_LOSS] = lstar + ex
                acc[A_LAST_GN2] = gn2
                acc[A_LAST_EXCESS] = ex
                status = DIVERGED_BLOWUP if np.isfinite(exb) and np.isfinite(gnb) else DIVERGED_NONFINITE
                iacc[I_STATUS] = status
                iacc[I_STOP] = k
                break
            if rule != PLAIN:
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
