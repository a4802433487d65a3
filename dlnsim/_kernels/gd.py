"""Gradient descent (2.1) W_j(k+1) = W_j(k) - eta_k grad_{W_j} L^N(W(k)), run in resumable chunks.

The loop evaluates the state W(k) for k = k_start, ..., k_stop - 1: loss and gradient every step (cheap,
see `linalg._loss_grad_norm`), records loss, ||grad||^2, eta_k and t_k when k is the next record point, then takes
the step unless k = n_iter.  The expensive diagnostics (eigenvalues, singular values) are left to the caller,
which ends chunks at record points: that keeps LAPACK out of this kernel and its compile time short.

Running statistics over *every* step (not only record points) are kept in ``acc``, so the checks of
Prop. 3.4 (2) and (4) hold for the whole trajectory:

* the largest one-step loss increase max_k L(k+1) - L(k)      (Prop. 3.4(2) needs <= 0),
* the smallest descent ratio (L(k) - L(k+1)) / (eta_k ||grad L(k)||_F^2)   (Prop. 3.4(4) needs >= sigma).

Two convergence tests run every step (one comparison each): the gradient test ||grad L||_F^2 <= ``gtol_sq``
and the loss test L - L* <= ``acc[A_LTOL]``.  The first iteration where each held is kept in ``iacc``; with
``stop_early`` the run stops (CONVERGED) at the first iteration where either holds.

Momentum (``rule``, a closure constant: one compiled kernel per rule, the plain one compiling nothing of the
others): the fused step writes x = w - eta grad into the second buffer, and one pass over the state turns it
into the next iterate, with a third buffer ``v`` holding the previous point of the recurrence instead of a
velocity (`_momentum_step`): heavy-ball W(k+1) = x + beta (W(k) - W(k-1)) (v holds W(k-1)), Nesterov on the
look-ahead iterate y(k+1) = x + beta (x - x(k)) with x(k) = y(k-1) - eta grad L(y(k-1)) (v holds x(k); see
`dlnsim.methods`).  The three buffers then rotate, so the pass reads three vectors and writes one (heavy-ball)
or reads two and writes one (Nesterov), where a velocity costs an extra write and read; the pass is bound by
the memory traffic (the 52 kB vectors of the paper's N = 5 network are beyond the first-level cache).  The
heavy-ball iterates are those of the velocity form bit for bit (beta (W(k) - W(k-1)) is the same product of
the same numbers).  With beta = 0 both add exact zeros: the iterates are those of plain GD bit for bit.  At
k = 0 the previous point is W(0) itself (the Python layer passes v = W(0)); a chunk returns with the state in
``w`` and the previous point in ``v``.

Stop reasons are returned as status codes; nothing is raised from inside the kernel.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from .linalg import SOURCES, _copy_flat, _loss_grad_norm

RUNNING = 0
CONVERGED = 1
DIVERGED_NONFINITE = 2
DIVERGED_BLOWUP = 3

# momentum rules (as in `dlnsim.methods`)
PLAIN = 0
HEAVY_BALL = 1
NESTEROV = 2

# slots of the float accumulator
A_T = 0  # cumulative time t_k = eta_0 + ... + eta_{k-1}
A_PREV_EXCESS = 1  # excess loss at the previous step
A_PREV_DEN = 2  # eta_{k-1} ||grad L(k-1)||^2
A_MIN_RATIO = 3
A_MAX_INCREASE = 4
A_LAST_LOSS = 5  # loss at the last evaluated state
A_LAST_GN2 = 6  # ||grad||^2 at the last evaluated state
A_LTOL = 7  # input: the loss test is excess loss <= this (< 0: no loss test)
A_LAST_EXCESS = 8  # excess loss at the last evaluated state
N_ACC = 9
# slots of the integer accumulator
I_NEXT_REC = 0  # index of the next record point
I_PENDING = 1  # record slot waiting for its descent ratio (-1: none)
I_STOP = 2  # iteration where the run stopped (-1: still running)
I_STATUS = 3
I_LAST_K = 4  # last evaluated iteration
I_GTOL_K = 5  # first iteration where ||grad||^2 <= gtol_sq (-1: none yet)
I_LTOL_K = 6  # first iteration where the excess loss <= acc[A_LTOL] (-1: none yet)
N_IACC = 7


@njit(cache=True, nogil=True)
def _momentum(rule, beta, cur, nxt, v):
    """The velocity form of the momentum step (the SGD kernels, whose state is a velocity): turn the gradient
    step nxt = cur - eta grad into the momentum step of ``rule``, updating the velocity ``v`` (heavy-ball:
    nxt += beta v, v = nxt - cur; Nesterov on the look-ahead iterate: v = beta v + (nxt - cur), nxt += beta v)."""
    if rule == HEAVY_BALL:
        for i in range(cur.shape[0]):
            nxt[i] += beta * v[i]
            v[i] = nxt[i] - cur[i]
    else:
        for i in range(cur.shape[0]):
            vi = beta * v[i] + (nxt[i] - cur[i])
            v[i] = vi
            nxt[i] += beta * vi


@njit(cache=True, nogil=True)
def _momentum_step(rule, beta, cur, nxt, prv):
    """Turn the gradient step x = ``nxt`` (cur - eta grad) into the next iterate, in ``prv``, the previous point
    of the recurrence (heavy-ball: W(k-1), giving x + beta (cur - W(k-1)); Nesterov: x(k), giving
    x + beta (x - x(k))).  Afterwards the caller rotates the buffers: heavy-ball (prv, cur, nxt) <- (cur, prv,
    nxt), so the next iterate is the state and ``cur`` the previous point; Nesterov (prv, cur, nxt) <-
    (nxt, prv, cur), the new x the previous point.  (Slices: unit-stride loops without index checks.)"""
    n = cur.shape[0]
    c = cur[:n]
    x = nxt[:n]
    p = prv[:n]
    if rule == HEAVY_BALL:
        for i in range(n):
            p[i] = x[i] + beta * (c[i] - p[i])
    else:
        for i in range(n):
            xi = x[i]
            p[i] = xi + beta * (xi - p[i])


@njit(cache=True, nogil=True)
def _tests(k, gn2, ex, gtol_sq, ltol_ex, stop_early, iacc):
    """The convergence tests at iteration k: the first iteration where each held goes to ``iacc``; returns
    CONVERGED (the stop recorded in ``iacc``) when one holds and the run stops early, else RUNNING."""
    g_met = gn2 <= gtol_sq
    l_met = ex <= ltol_ex
    if g_met or l_met:
        if g_met and iacc[I_GTOL_K] < 0:
            iacc[I_GTOL_K] = k
        if l_met and iacc[I_LTOL_K] < 0:
            iacc[I_LTOL_K] = k
        if stop_early:
            iacc[I_STATUS] = CONVERGED
            iacc[I_STOP] = k
            return CONVERGED
    return RUNNING


def _make_gd_chunk(rule: int, name: str, stamp: str = SOURCES) -> Any:
    """The chunk kernel of momentum ``rule``, compiled on first use and cached under ``name``; ``stamp`` (the
    kernels' sources, `linalg.SOURCES`) is a closure constant, part of the cache key, so an edit of the
    gradient kernel recompiles it."""

    def _gd_chunk(work, data, layout, controls, records, k_start, k_stop):
        """Run iterations k_start <= k < k_stop (k_stop <= n_iter + 1).  Returns the status code.

        The arguments are the named tuples of `dlnsim._kernels.args`: ``work`` (`GDWork`: the state ``w``,
        which holds the state where the call returns, the second buffer ``g``, the workspace ``ws`` and the
        running statistics ``acc``/``iacc``), ``data`` (`Data`), ``layout`` (`Layout`), ``controls``
        (`GDControls`) and ``records`` (`GDRecords`).
        """
        stamp  # noqa: B018  (the kernels' sources: part of the cache key, see `linalg.SOURCES`)
        w, g, ws, acc, iacc, v = work
        Rt, F, lstar = data
        dims, offs, pivot = layout
        etas, n_iter, threshold, gtol_sq, stop_early, beta = controls
        rec_k, rec_loss, rec_excess, rec_gn2, rec_ratio, rec_eta, rec_t = records
        constant = etas.shape[0] == 1
        n_rec = rec_k.shape[0]
        ltol_ex = acc[A_LTOL]
        # The kernel writes the next iterate w - eta grad into the other buffer, and a step swaps the two;
        # ``cur`` is the state, ``nxt`` the candidate (w stays untouched until a step is taken).  With momentum a
        # third buffer ``prv`` holds the previous point of the recurrence, and the three rotate.
        cur, nxt, prv = w, g, v
        status = RUNNING
        for k in range(k_start, k_stop):
            eta = 0.0
            if k < n_iter:
                eta = etas[0] if constant else etas[k]
            ex, gn2 = _loss_grad_norm(cur, dims, offs, pivot, Rt, F, nxt, ws, np.int64(4), eta, True)
            loss = lstar + ex
            iacc[I_LAST_K] = k
            acc[A_LAST_LOSS] = loss
            acc[A_LAST_GN2] = gn2
            acc[A_LAST_EXCESS] = ex
            # statistics of the step k-1 -> k
            if k > 0 and np.isfinite(ex):
                dec = acc[A_PREV_EXCESS] - ex
                if -dec > acc[A_MAX_INCREASE]:
                    acc[A_MAX_INCREASE] = -dec
                den = acc[A_PREV_DEN]
                if den > 0.0:
                    ratio = dec / den
                    if ratio < acc[A_MIN_RATIO]:
                        acc[A_MIN_RATIO] = ratio
                    if iacc[I_PENDING] >= 0:
                        rec_ratio[iacc[I_PENDING]] = ratio
            iacc[I_PENDING] = -1
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
            r = iacc[I_NEXT_REC]
            if r < n_rec and rec_k[r] == k:
                rec_loss[r] = loss
                rec_excess[r] = ex
                rec_gn2[r] = gn2
                rec_eta[r] = eta if k < n_iter else np.nan
                rec_t[r] = acc[A_T]
                iacc[I_PENDING] = r
                iacc[I_NEXT_REC] = r + 1
            status = _tests(k, gn2, ex, gtol_sq, ltol_ex, stop_early, iacc)
            if status != RUNNING:
                break
            if k == n_iter:
                iacc[I_STOP] = k
                break
            acc[A_PREV_EXCESS] = ex
            acc[A_PREV_DEN] = eta * gn2
            if rule == PLAIN:
                cur, nxt = nxt, cur
            else:
                _momentum_step(rule, beta, cur, nxt, prv)
                if rule == HEAVY_BALL:
                    cur, prv = prv, cur
                else:
                    cur, prv, nxt = prv, nxt, cur
            acc[A_T] += eta
        if rule != PLAIN:
            # back to the canonical buffers: the state in w, the previous point in v (g is scratch)
            if prv is w:
                _copy_flat(v if cur is g else g, 0, prv, 0, w.shape[0])  # keep it where cur does not lie
                prv = v if cur is g else g
            if cur is not w:
                _copy_flat(w, 0, cur, 0, w.shape[0])
            if prv is not v:
                _copy_flat(v, 0, prv, 0, w.shape[0])
        elif cur is not w:
            _copy_flat(w, 0, cur, 0, w.shape[0])
        return status

    _gd_chunk.__qualname__ = name
    _gd_chunk.__name__ = name
    return njit(cache=True, nogil=True)(_gd_chunk)


_gd_chunk = _make_gd_chunk(PLAIN, "_gd_chunk")
_heavy_ball_chunk = _make_gd_chunk(HEAVY_BALL, "_heavy_ball_chunk")
_nesterov_chunk = _make_gd_chunk(NESTEROV, "_nesterov_chunk")

#: the chunk kernel of each momentum rule
CHUNKS = {PLAIN: _gd_chunk, HEAVY_BALL: _heavy_ball_chunk, NESTEROV: _nesterov_chunk}
