"""Gradient flows of a deep linear network, integrated by an explicit Dormand-Prince 5(4) method.

Right-hand sides (selected by the integer ``kind``)
---------------------------------------------------
* ``FACTOR`` (0): the factor flow (2.2), dW_j/dt = -grad_{W_j} L^N, on the flat factor vector of
  `linalg` (layer j at ``w[offs[j-1]:offs[j]]``, a C-ordered (d_j, d_{j-1}) matrix).  It calls
  `linalg._loss_and_grad`, the gradient kernel of gradient descent.
* ``END_TO_END`` (1): the end-to-end flow (2.5) of a balanced start on the product W (flat C-ordered
  (d_N, d_0) matrix), dW/dt = -A_W(grad L^1(W)) with
  A_W(Z) = sum_{j=1}^N (W W^T)^{(N-j)/N} Z (W^T W)^{(j-1)/N}.
  With the full SVD W = U diag(s) V^T, (W W^T)^a = U diag(s^{2a}) U^T and (W^T W)^b = V diag(s^{2b}) V^T
  (the zero singular values of the complements included, and (.)^0 = identity), so
  A_W(Z) = U [M o (U^T Z V)] V^T with M_ik = sum_{m=0}^{N-1} a_i^{N-1-m} b_k^m, a_i = s_i^{2/N},
  b_k = s_k^{2/N}.
  Singular values beyond ``rank`` are treated as exact zeros: the balanced flow keeps the rank of W, and
  without the cut the rounding-level singular values of a rank-deficient W would enter through
  s^{2/N} (1e-16^{2/5} ~ 4e-7 for N = 5), because A_W is not Lipschitz where the rank drops.
* ``MODIFIED`` (2): the first-order modified equation of GD with stepsize eta (backward error analysis),
  dW/dt = -grad L - (eta/2) Hess L grad L, with the closed-form Hessian-vector product `_hvp`.

Integrator
----------
Dormand-Prince 5(4) as in DOPRI5 (coefficients and controller constants in `dopri`): FSAL, local
extrapolation, the RMS error norm, the PI step-size controller, Hairer's initial step when ``h_init`` is 0,
and the continuous extension of order 4 for the requested times, so steps are never shortened to hit them.
With ``h_fixed > 0`` the error control is off: steps of equal length <= h_fixed.

Outputs and diagnostics
-----------------------
At each requested time the kernel records the loss (and optionally ||grad L||^2) and may keep the state.
The state diagnostics (eigen- and singular values) are not computed here: the kernel hands the dense
output of each step that reaches a requested time (five vectors per step, the state at th in [0, 1] being
a polynomial in th) to a buffer of slots and returns when it is full; the caller computes the diagnostics
from them in numpy (`dlnsim.options`) and calls again, and the run resumes where it stopped.  That keeps
LAPACK out of the integrator: it compiles faster, and the diagnostics of all the times of a step come
from one set of vectors.

Compile time
------------
Numba links every compiled callee into its caller and re-optimises the whole linked module at each level,
so the glue functions (`_rhs`, `_emit`, `_initial_step`, ...) are inlined into the integrator at the Numba
IR level (``inline="always"``) instead of being compiled on their own.  There is one entry point per flow
(`_integrate_factor`, `_integrate_end_to_end`, `_integrate_modified`, one signature each) with the kind
as a constant, so each compiles only the right-hand side it uses, and only when it is first used.
Products go through `blas._matmul` on flat buffers, as in the gradient kernel.

Status codes, never exceptions: DONE, MAX_STEPS (accepted + rejected steps reached ``max_steps``),
NONFINITE (the right-hand side at the start or at an accepted state is not finite, or too large for any
representable first step, or a fixed step produced a non-finite state), STEP_UNDERFLOW (the step became
smaller than 10 eps |t|, e.g. after repeated non-finite trial steps, which the adaptive mode rejects and
shrinks), and BUFFER_FULL (not an end: the dense-output slots are full, see above).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from . import dopri as dp
from .flow_rhs import (
    _e2e_rhs,
    _excess_loss,  # noqa: F401  (the loss at the requested times, for callers of this module)
    _hvp,
    _product_loss,
)
from .linalg import SOURCES, _grad_norm_sq, _loss_and_grad, _workspace_size

FACTOR = 0
END_TO_END = 1
MODIFIED = 2
HVP = 3  # `flow_point._point` only: a Hessian-vector product

DONE = 0
MAX_STEPS = 1
NONFINITE = 2
STEP_UNDERFLOW = 3
BUFFER_FULL = 4  # the dense-output slots are full: read them and call again

# rows of the per-time record ``rec``
REC_EX = 0  # excess loss L - L*
REC_GN2 = 1  # ||grad L^N||_F^2
REC_TH = 2  # position th in [0, 1] of the time inside its step (dense output)
N_REC = 3

# slots of the integer statistics (also the state of a run between calls)
S_ACCEPTED = 0
S_REJECTED = 1
S_RHS = 2
S_DONE_TIMES = 3  # requested times filled
S_STARTED = 4  # 0: a new run
S_LAST_REJECTED = 5
S_SLOTS = 6  # dense-output slots filled by the last call
N_ISTATS = 7
# slots of the float statistics
F_T = 0  # time reached
F_H = 1  # proposed next step
F_H0 = 2  # first step used
F_FACOLD = 3  # error of the last accepted step (step-size controller)
N_FSTATS = 4

# ----------------------------------------------------------------------------------------------------------
# the right-hand sides (building blocks in `flow_rhs`)
# ----------------------------------------------------------------------------------------------------------


@njit(cache=True, nogil=True, inline="always")
def _rhs(kind, y, f, dims, offs, pivot, Rt, F, eta, rank, ws, g):
    """f = right-hand side of flow ``kind`` at y; returns the excess loss at y (``g``: scratch, len(y))."""
    if kind == END_TO_END:
        return _e2e_rhs(y, f, dims, Rt, F, rank)
    if kind == MODIFIED:
        ex = _loss_and_grad(y, dims, offs, pivot, Rt, F, g, ws, np.int64(1))
        _hvp(y, g, dims, offs, Rt, F, f)
        c = 0.5 * eta
        for i in range(f.shape[0]):
            f[i] = -g[i] - c * f[i]
        return ex
    ex = _loss_and_grad(y, dims, offs, pivot, Rt, F, f, ws, np.int64(1))
    for i in range(f.shape[0]):
        f[i] = -f[i]
    return ex


@njit(cache=True, nogil=True, inline="always")
def _all_finite(a):
    for i in range(a.shape[0]):
        if not np.isfinite(a[i]):
            return False
    return True


# ----------------------------------------------------------------------------------------------------------
# output at a requested time
# ----------------------------------------------------------------------------------------------------------


@njit(cache=True, nogil=True, inline="always")
def _emit(kind, y, i, dims, offs, pivot, Rt, F, ws, g, save_idx, out_y, rec, with_loss, with_grad):
    """Record the state ``y`` as the value at requested time number ``i``: the excess loss (and with
    ``with_grad`` the squared gradient norm) into ``rec``, the state into ``out_y`` when it is kept."""
    if save_idx[i] >= 0:
        # a loop, not out_y[row, :] = y: that slice assignment compiles a shape-error path (several s)
        row = save_idx[i]
        for q in range(y.shape[0]):
            out_y[row, q] = y[q]
    if kind == END_TO_END:
        if with_loss:
            rec[REC_EX, i] = _product_loss(y, dims, Rt, F)
    elif with_grad:
        rec[REC_EX, i] = _loss_and_grad(y, dims, offs, pivot, Rt, F, g, ws, np.int64(2))
        rec[REC_GN2, i] = _grad_norm_sq(y, dims, offs, pivot, g, ws)
    elif with_loss:
        rec[REC_EX, i] = _loss_and_grad(y, dims, offs, pivot, Rt, F, g, ws, np.int64(0))


@njit(cache=True, nogil=True, inline="always")
def _initial_step(kind, y0, f0, t_span, rtol, atol, dims, offs, pivot, Rt, F, eta, rank, ws, g, y1, f1):
    """Hairer's starting step (Solving ODEs I, II.4; HINIT of DOPRI5) for a method of order 5."""
    n = y0.shape[0]
    dnf = 0.0
    dny = 0.0
    for i in range(n):
        sk = atol + rtol * abs(y0[i])
        dnf += (f0[i] / sk) ** 2
        dny += (y0[i] / sk) ** 2
    dnf /= max(n, 1)
    dny /= max(n, 1)
    if not (np.isfinite(dnf) and np.isfinite(dny)):
        return 0.0  # the scaled right-hand side overflows: the caller reports NONFINITE
    if dnf <= 1e-10 or dny <= 1e-10:
        h = 1.0e-6
    else:
        h = 0.01 * np.sqrt(dny / dnf)
    h = min(h, t_span)
    if not h > 0.0:
        return 0.0
    for i in range(n):
        y1[i] = y0[i] + h * f0[i]
    _rhs(kind, y1, f1, dims, offs, pivot, Rt, F, eta, rank, ws, g)
    der2 = 0.0
    for i in range(n):
        sk = atol + rtol * abs(y0[i])
        der2 += ((f1[i] - f0[i]) / sk) ** 2
    der2 = np.sqrt(der2 / max(n, 1)) / h
    der12 = max(abs(der2), np.sqrt(dnf))
    if not np.isfinite(der12):
        return h * 1e-3
    if der12 <= 1e-15:
        h1 = max(1.0e-6, abs(h) * 1.0e-3)
    else:
        h1 = (0.01 / der12) ** 0.2
    return min(100.0 * abs(h), h1, t_span)


# ----------------------------------------------------------------------------------------------------------
# the integrator
# ----------------------------------------------------------------------------------------------------------


def _make_integrator(kind: int, name: str, stamp: str = SOURCES) -> Any:
    """The integrator of flow ``kind``, compiled on first use and cached under ``name``.

    ``kind`` is a closure constant, so Numba drops the code of the other flows (the factor flow never
    compiles the SVD of the end-to-end flow or the Hessian-vector product of the modified one); the body is
    compiled once per flow, not inlined into entry points (Numba's inlining copies the whole IR, which cost
    seconds of compile time for a body this size).
    """

    def integrate(work, data, layout, controls, records):
        """Integrate the flow through the requested times ``t_eval`` (non-decreasing, >= 0) from t = 0, or
        resume a run that returned BUFFER_FULL.

        The arguments are the named tuples of `dlnsim._kernels.args`.  ``work`` (`FlowWork`): ``y`` (n,), the
        state, overwritten with the state where the call returns; ``ks`` (7, n), the stages, kept between
        calls (ks[0] = f(t, y), FSAL); ``istats``/``fstats``, the counters.  ``data`` (`Data`), ``layout``
        (`Layout`).  ``controls`` (`FlowControls`): the requested times ``t_eval``, rtol, atol, the first step
        (0: automatic), the fixed step (0: adaptive), eta of the modified flow, max_steps, the rank of the
        end-to-end flow, with_loss, with_grad.  ``records`` (`FlowRecords`): ``save_idx``, ``out_y``, ``rec``,
        ``slot``, ``poly`` as below.

        At requested time i: with_loss ``rec[REC_EX, i]`` = L - L*, with_grad also ``rec[REC_GN2, i]`` =
        ||grad L^N||_F^2 (factor and modified flows), and the state into ``out_y[save_idx[i]]`` when
        ``save_idx[i] >= 0``.  Dense output: the state at time i is
        y + th (r0 + (1 - th) (r1 + th (r2 + (1 - th) r3))) with th = ``rec[REC_TH, i]`` and the five vectors
        (y, r0, r1, r2, r3) of the step in ``poly[slot[i]]`` (shape (n_slots, 5, n)); the state at a time
        t <= 0 is the initial state (``slot[i]`` = -1).  With n_slots > 0 every step that reaches a requested
        time fills the next slot (``istats[S_SLOTS]`` counts them in this call), and the call returns
        BUFFER_FULL after the step that fills the last one; the caller reads the slots and calls again with the
        same arguments to go on.  With n_slots = 0 nothing goes to ``poly``.
        Entries of times not reached stay as the caller initialised them.
        Returns DONE, MAX_STEPS, NONFINITE, STEP_UNDERFLOW or BUFFER_FULL.
        """
        stamp  # noqa: B018  (the kernels' sources: part of the cache key, see `linalg.SOURCES`)
        y, ks, istats, fstats = work
        Rt, F, _ = data
        dims, offs, pivot = layout
        t_eval, rtol, atol, h_init, h_fixed, eta, max_steps, rank, with_loss, with_grad = controls
        save_idx, out_y, rec, slot, poly = records
        n = y.shape[0]
        n_t = t_eval.shape[0]
        n_slots = poly.shape[0]
        ws = np.empty(_workspace_size(dims, pivot))
        g = np.empty(n)
        y1 = np.empty(n)
        ytmp = np.empty(n)
        rc = np.empty((4, n))  # dense-output coefficients
        tab = dp._tableau()
        t_end = t_eval[n_t - 1] if n_t > 0 else 0.0
        fixed = h_fixed > 0.0
        n_fix = 0
        h_fix = 0.0
        if fixed:
            n_fix = int(np.ceil(t_end / h_fixed * (1.0 - 1e-12)))
            if n_fix < 1:
                n_fix = 1
            h_fix = t_end / n_fix
        istats[S_SLOTS] = 0

        if istats[S_STARTED] == 0:
            for q in range(N_ISTATS):
                istats[q] = 0
            for q in range(N_FSTATS):
                fstats[q] = 0.0
            idx = 0
            # requested times at t = 0
            while idx < n_t and t_eval[idx] <= 0.0:
                _emit(kind, y, idx, dims, offs, pivot, Rt, F, ws, g, save_idx, out_y, rec, with_loss, with_grad)
                rec[REC_TH, idx] = 0.0
                slot[idx] = -1
                idx += 1
            istats[S_DONE_TIMES] = idx
            if idx >= n_t:
                return DONE
            _rhs(kind, y, ks[0], dims, offs, pivot, Rt, F, eta, rank, ws, g)
            istats[S_RHS] += 1
            if not _all_finite(ks[0]):
                return NONFINITE
            if fixed:
                h = h_fix
            elif h_init > 0.0:
                h = min(h_init, t_end)
            else:
                h = _initial_step(kind, y, ks[0], t_end, rtol, atol, dims, offs, pivot, Rt, F, eta, rank, ws, g,
                                  ytmp, ks[1])
                istats[S_RHS] += 1
            fstats[F_H0] = h
            if not (h > 0.0 and np.isfinite(h)):
                # no representable first step: the right-hand side is too large for the error norm (an
                # overflowing start); a requested first_step is > 0, a fixed step > 0 by the callers' checks
                return NONFINITE
            t = 0.0
            facold = 1.0e-4
            last_rejected = False
            istats[S_STARTED] = 1
        else:
            idx = istats[S_DONE_TIMES]
            t = fstats[F_T]
            h = fstats[F_H]
            facold = fstats[F_FACOLD]
            last_rejected = istats[S_LAST_REJECTED] != 0

        n_acc = istats[S_ACCEPTED]
        n_attempt = n_acc + istats[S_REJECTED]
        while True:
            if n_attempt >= max_steps:
                fstats[F_T] = t
                fstats[F_H] = h
                return MAX_STEPS
            if fixed:
                t_new = t_end if n_acc + 1 >= n_fix else (n_acc + 1) * h
                h_step = t_new - t
            else:
                if h < 10.0 * 2.220446049250313e-16 * max(abs(t), 1e-300):
                    fstats[F_T] = t
                    fstats[F_H] = h
                    return STEP_UNDERFLOW
                last = t + 1.01 * h >= t_end
                if last:
                    h = t_end - t
                h_step = h
                t_new = t_end if last else t + h_step
            n_attempt += 1

            # stages 2..7 (ks[0] = f(t, y) by FSAL); the 7th stage is evaluated at the new state y1
            for st in range(1, 7):
                tgt = y1 if st == 6 else ytmp
                for i in range(n):
                    tgt[i] = y[i]
                for j in range(st):
                    c = h_step * tab[st, j]
                    if c != 0.0:
                        kj = ks[j]
                        for i in range(n):
                            tgt[i] += c * kj[i]
                _rhs(kind, tgt, ks[st], dims, offs, pivot, Rt, F, eta, rank, ws, g)
            istats[S_RHS] += 6

            if fixed:
                if not (_all_finite(y1) and _all_finite(ks[6])):
                    fstats[F_T] = t
                    fstats[F_H] = h
                    return NONFINITE
                accept = True
                h_next = h
            else:
                err = 0.0
                for i in range(n):
                    sk = atol + rtol * max(abs(y[i]), abs(y1[i]))
                    e = h_step * (dp.E1 * ks[0, i] + dp.E3 * ks[2, i] + dp.E4 * ks[3, i] + dp.E5 * ks[4, i]
                                  + dp.E6 * ks[5, i] + dp.E7 * ks[6, i])
                    err += (e / sk) ** 2
                err = np.sqrt(err / max(n, 1))
                if not np.isfinite(err):
                    # a non-finite trial step: reject and shrink hard
                    accept = False
                    h_next = 0.1 * h_step
                    last_rejected = True
                else:
                    fac11 = err**dp.EXPO1
                    fac = fac11 / facold**dp.BETA  # PI (Lund-stabilised) controller of DOPRI5
                    fac = max(dp.FACC2, min(dp.FACC1, fac / dp.SAFE))
                    if err <= 1.0:
                        accept = True
                        facold = max(err, 1.0e-4)
                        h_next = h_step / fac
                        if last_rejected:
                            h_next = min(h_next, h_step)
                        last_rejected = False
                    else:
                        accept = False
                        h_next = h_step / min(dp.FACC1, fac11 / dp.SAFE)
                        last_rejected = True

            if not accept:
                istats[S_REJECTED] += 1
                h = h_next
                continue

            n_acc += 1
            istats[S_ACCEPTED] = n_acc
            # dense output on (t, t_new] when a requested time lies there
            if idx < n_t and t_eval[idx] <= t_new:
                for i in range(n):
                    ydiff = y1[i] - y[i]
                    bspl = h_step * ks[0, i] - ydiff
                    rc[0, i] = ydiff
                    rc[1, i] = bspl
                    rc[2, i] = ydiff - h_step * ks[6, i] - bspl
                    rc[3, i] = h_step * (dp.D1 * ks[0, i] + dp.D3 * ks[2, i] + dp.D4 * ks[3, i] + dp.D5 * ks[4, i]
                                         + dp.D6 * ks[5, i] + dp.D7 * ks[6, i])
                # 1-D rows: loops over contiguous vectors that LLVM vectorises (rc[q, i] does not)
                r0 = rc[0]
                r1 = rc[1]
                r2 = rc[2]
                r3 = rc[3]
                s = -1
                if n_slots > 0:
                    s = istats[S_SLOTS]
                    istats[S_SLOTS] = s + 1
                    p0 = poly[s, 0]
                    p1 = poly[s, 1]
                    p2 = poly[s, 2]
                    p3 = poly[s, 3]
                    p4 = poly[s, 4]
                    for i in range(n):
                        p0[i] = y[i]
                        p1[i] = r0[i]
                        p2[i] = r1[i]
                        p3[i] = r2[i]
                        p4[i] = r3[i]
                while idx < n_t and t_eval[idx] <= t_new:
                    # the state at a requested time only where something is recorded from it (a pass over
                    # the state per time: most of the work when states are kept at a few of many times)
                    need = save_idx[idx] >= 0 or with_loss or with_grad
                    if t_eval[idx] == t_new:
                        th = 1.0
                        if need:
                            for i in range(n):
                                ytmp[i] = y1[i]
                    else:
                        th = (t_eval[idx] - t) / h_step
                        th1 = 1.0 - th
                        if need:
                            for i in range(n):
                                ytmp[i] = y[i] + th * (r0[i] + th1 * (r1[i] + th * (r2[i] + th1 * r3[i])))
                    if need:
                        _emit(kind, ytmp, idx, dims, offs, pivot, Rt, F, ws, g, save_idx, out_y, rec, with_loss,
                              with_grad)
                    rec[REC_TH, idx] = th
                    slot[idx] = s
                    idx += 1
                istats[S_DONE_TIMES] = idx
            # FSAL
            for i in range(n):
                y[i] = y1[i]
                ks[0, i] = ks[6, i]
            t = t_new
            h = h_next
            fstats[F_T] = t
            fstats[F_H] = h
            fstats[F_FACOLD] = facold
            istats[S_LAST_REJECTED] = 1 if last_rejected else 0
            if not _all_finite(ks[0]):
                return NONFINITE
            if idx >= n_t or t >= t_end:
                return DONE
            if n_slots > 0 and istats[S_SLOTS] >= n_slots:
                return BUFFER_FULL

    integrate.__name__ = integrate.__qualname__ = name
    return njit(cache=True, nogil=True)(integrate)


#: the integrators of the three flows (arguments: see `_make_integrator`)
_integrate_factor = _make_integrator(FACTOR, "_integrate_factor")
_integrate_end_to_end = _make_integrator(END_TO_END, "_integrate_end_to_end")
_integrate_modified = _make_integrator(MODIFIED, "_integrate_modified")

#: the entry point of each flow kind
ENTRY = {FACTOR: _integrate_factor, END_TO_END: _integrate_end_to_end, MODIFIED: _integrate_modified}
