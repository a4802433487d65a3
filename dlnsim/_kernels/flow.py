"""Gradient flows of a deep linear network, integrated by an explicit Dormand-Prince 5(4) method.

Right-hand sides (selected by the integer ``kind``)
---------------------------------------------------
* ``FACTOR`` (0): the factor flow (2.2), dW_j/dt = -grad_{W_j} L^N, on the flat factor vector of
  `linalg` (layer j at ``w[offs[j-1]:offs[j]]``, a C-ordered (d_j, d_{j-1}) matrix).  It calls
  `linalg._loss_grad`, the gradient kernel of gradient descent.
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
Dormand-Prince 5(4) (Hairer, Norsett & Wanner, *Solving ODEs I*, II.5 and the code DOPRI5): FSAL,
local extrapolation (the 5th-order solution is propagated), error norm
err = sqrt(mean((e_i / (atol + rtol max(|y_i|, |y_new_i|)))^2)), the PI step-size controller of DOPRI5
(beta = 0.04, safety 0.9, step ratio in [0.2, 10], no growth right after a rejection), the initial step of
Hairer's algorithm when ``h_init`` is 0, and the continuous extension of order 4 (CONTD5) for the
requested times, so steps are never shortened to hit them (only the last step ends exactly at the last
requested time).  With ``h_fixed > 0`` the error control is off: steps of equal length <= h_fixed.

Compile time
------------
Numba links every compiled callee into its caller and re-optimises the whole linked module at each level,
so the glue functions (`_rhs`, `_emit`, `_initial_step`, ...) are inlined into `_integrate` at the Numba IR
level (``inline="always"``) instead of being compiled on their own: the kernels they call are then optimised
once inside `_integrate` rather than once per level (first run_flow on an empty cache 63-69 s -> 42-47 s).
Products go through `blas._matmul` on flat buffers, as in the gradient kernel.

Status codes, never exceptions: DONE, MAX_STEPS (accepted + rejected steps reached ``max_steps``),
NONFINITE (the right-hand side at the start or at an accepted state is not finite, or too large for any
representable first step, or a fixed step produced a non-finite state), STEP_UNDERFLOW (the step became
smaller than 10 eps |t|, e.g. after repeated non-finite trial steps, which the adaptive mode rejects and
shrinks).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .flow_rhs import _e2e_rhs, _excess_loss, _hvp, _product_loss
from .linalg import _balancedness, _layer_norms_sq, _loss_grad, _product_singular_values, _workspace_size

FACTOR = 0
END_TO_END = 1
MODIFIED = 2
HVP = 3  # `_point` only: a Hessian-vector product

DONE = 0
MAX_STEPS = 1
NONFINITE = 2
STEP_UNDERFLOW = 3

# slots of the integer statistics
S_ACCEPTED = 0
S_REJECTED = 1
S_RHS = 2
S_DONE_TIMES = 3  # requested times filled
N_ISTATS = 4
# slots of the float statistics
F_T = 0  # time reached
F_H = 1  # proposed next step
F_H0 = 2  # first step used
N_FSTATS = 3

# Dormand-Prince 5(4) tableau
C2 = 1.0 / 5.0
C3 = 3.0 / 10.0
C4 = 4.0 / 5.0
C5 = 8.0 / 9.0
A21 = 1.0 / 5.0
A31 = 3.0 / 40.0
A32 = 9.0 / 40.0
A41 = 44.0 / 45.0
A42 = -56.0 / 15.0
A43 = 32.0 / 9.0
A51 = 19372.0 / 6561.0
A52 = -25360.0 / 2187.0
A53 = 64448.0 / 6561.0
A54 = -212.0 / 729.0
A61 = 9017.0 / 3168.0
A62 = -355.0 / 33.0
A63 = 46732.0 / 5247.0
A64 = 49.0 / 176.0
A65 = -5103.0 / 18656.0
A71 = 35.0 / 384.0
A73 = 500.0 / 1113.0
A74 = 125.0 / 192.0
A75 = -2187.0 / 6784.0
A76 = 11.0 / 84.0
# error coefficients: b_i (5th order) - bhat_i (4th order)
E1 = 71.0 / 57600.0
E3 = -71.0 / 16695.0
E4 = 71.0 / 1920.0
E5 = -17253.0 / 339200.0
E6 = 22.0 / 525.0
E7 = -1.0 / 40.0
# continuous extension (CONTD5)
D1 = -12715105075.0 / 11282082432.0
D3 = 87487479700.0 / 32700410799.0
D4 = -10690763975.0 / 1880347072.0
D5 = 701980252875.0 / 199316789632.0
D6 = -1453857185.0 / 822651844.0
D7 = 69997945.0 / 29380423.0



@njit(cache=True, nogil=True, inline="always")
def _tableau():
    """The Runge-Kutta matrix a_{sj} of the seven stages (row 6 = the 5th-order weights b_j)."""
    a = np.zeros((7, 7))
    a[1, 0] = A21
    a[2, 0] = A31
    a[2, 1] = A32
    a[3, 0] = A41
    a[3, 1] = A42
    a[3, 2] = A43
    a[4, 0] = A51
    a[4, 1] = A52
    a[4, 2] = A53
    a[4, 3] = A54
    a[5, 0] = A61
    a[5, 1] = A62
    a[5, 2] = A63
    a[5, 3] = A64
    a[5, 4] = A65
    a[6, 0] = A71
    a[6, 2] = A73
    a[6, 3] = A74
    a[6, 4] = A75
    a[6, 5] = A76
    return a


# step-size control (DOPRI5 defaults)
SAFE = 0.9
BETA = 0.04
EXPO1 = 0.2 - BETA * 0.75
FACC1 = 1.0 / 0.2  # smallest step ratio 0.2
FACC2 = 1.0 / 10.0  # largest step ratio 10


# ----------------------------------------------------------------------------------------------------------
# the right-hand sides (building blocks in `flow_rhs`)
# ----------------------------------------------------------------------------------------------------------


@njit(cache=True, nogil=True, inline="always")
def _rhs(kind, y, f, dims, offs, pivot, Rt, F, eta, rank, ws, g):
    """f = right-hand side of flow ``kind`` at y; returns the excess loss at y (``g``: scratch, len(y))."""
    if kind == END_TO_END:
        return _e2e_rhs(y, f, dims, Rt, F, rank)
    if kind == MODIFIED:
        ex = _loss_grad(y, dims, offs, pivot, Rt, F, g, ws)
        _hvp(y, g, dims, offs, Rt, F, f)
        c = 0.5 * eta
        for i in range(f.shape[0]):
            f[i] = -g[i] - c * f[i]
        return ex
    ex = _loss_grad(y, dims, offs, pivot, Rt, F, f, ws)
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
def _diag_safe(y, dims, offs):
    """True when the diagnostics of the factors ``y`` cannot overflow: every entry is finite and
    sum_j log10(d_max max|W_j|) (over the layers where it is positive) stays below 150, which bounds the
    entries of every Gram matrix and every product of layers by 1e150."""
    n = dims.shape[0] - 1
    dmax = 1.0
    for j in range(n + 1):
        if dims[j] > dmax:
            dmax = float(dims[j])
    total = 0.0
    for j in range(1, n + 1):
        m = 0.0
        for q in range(offs[j - 1], offs[j]):
            a = abs(y[q])
            if not a <= 1e300:  # also NaN
                return False
            if a > m:
                m = a
        if dmax * m > 1.0:
            total += np.log10(dmax * m)
    return total < 150.0


@njit(cache=True, nogil=True, inline="always")
def _emit(kind, y, i, dims, offs, pivot, Rt, F, ws, g, save_idx, out_y, out_ex, out_gn2, with_loss,
          with_grad, diag, out_bal, out_sv, out_ln):
    """Record the state ``y`` as the value at requested time number ``i``: the excess loss into ``out_ex``,
    and the diagnostics whose output has columns (skipped, NaN, where they could overflow)."""
    if save_idx[i] >= 0:
        # a loop, not out_y[row, :] = y: that slice assignment compiles a shape-error path (several s)
        row = save_idx[i]
        for q in range(y.shape[0]):
            out_y[row, q] = y[q]
    if kind == END_TO_END:
        ex = _product_loss(y, dims, Rt, F)
        if with_loss:
            out_ex[i] = ex
        if diag and out_sv.shape[1] > 0 and np.isfinite(ex):
            n = dims.shape[0] - 1
            s = np.linalg.svd(np.ascontiguousarray(y.reshape((dims[n], dims[0]))))[1]
            for q in range(out_sv.shape[1]):
                out_sv[i, q] = s[q] if q < s.shape[0] else 0.0
        return
    if with_grad:
        ex = _loss_grad(y, dims, offs, pivot, Rt, F, g, ws)
        gn2 = 0.0
        for q in range(g.shape[0]):
            gn2 += g[q] * g[q]
        out_gn2[i] = gn2
        out_ex[i] = ex
    elif with_loss:
        out_ex[i] = _excess_loss(y, dims, offs, pivot, Rt, F)
    if diag and _diag_safe(y, dims, offs):
        if out_bal.shape[1] > 0:
            _balancedness(y, dims, offs, out_bal[i])
        if out_ln.shape[1] > 0:
            _layer_norms_sq(y, dims, offs, out_ln[i])
        if out_sv.shape[1] > 0:
            _product_singular_values(y, dims, offs, out_sv[i])


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


@njit(cache=True, nogil=True)
def _integrate(
    kind,
    y,
    t_eval,
    rtol,
    atol,
    max_steps,
    h_init,
    h_fixed,
    dims,
    offs,
    pivot,
    Rt,
    F,
    eta,
    rank,
    save_idx,
    out_y,
    out_ex,
    out_gn2,
    with_loss,
    with_grad,
    diag,
    out_bal,
    out_sv,
    out_ln,
    istats,
    fstats,
):
    """Integrate flow ``kind`` from t = 0 (state ``y``, overwritten with the final state) through the
    requested times ``t_eval`` (non-decreasing, >= 0).

    At requested time i: with ``with_loss`` ``out_ex[i]`` (excess loss L - L*), with ``with_grad`` also
    ``out_gn2[i]`` (||grad L^N||_F^2; factor and modified flows), with ``diag`` ``out_bal[i]`` (balancedness
    per pair), ``out_ln[i]`` (||W_j||^2 per layer) and ``out_sv[i]`` (top singular values of the product)
    for those of the three with columns, and the state into ``out_y[save_idx[i]]`` when
    ``save_idx[i] >= 0``.  Entries of times not reached stay as the caller initialised them (NaN).
    ``istats``/``fstats`` receive the counters.
    Returns DONE, MAX_STEPS, NONFINITE or STEP_UNDERFLOW.
    """
    n = y.shape[0]
    n_t = t_eval.shape[0]
    ws = np.empty(_workspace_size(dims, pivot))
    g = np.empty(n)
    ks = np.empty((7, n))  # stages; ks[0] = f(t, y) (FSAL), ks[6] = f(t_new, y_new)
    y1 = np.empty(n)
    ytmp = np.empty(n)
    rc = np.empty((4, n))  # dense-output coefficients
    tab = _tableau()
    for q in range(N_ISTATS):
        istats[q] = 0
    for q in range(N_FSTATS):
        fstats[q] = 0.0

    t = 0.0
    t_end = t_eval[n_t - 1] if n_t > 0 else 0.0
    idx = 0
    # requested times at t = 0
    while idx < n_t and t_eval[idx] <= 0.0:
        _emit(kind, y, idx, dims, offs, pivot, Rt, F, ws, g, save_idx, out_y, out_ex, out_gn2,
              with_loss, with_grad, diag, out_bal, out_sv, out_ln)
        idx += 1
    istats[S_DONE_TIMES] = idx
    if idx >= n_t:
        return DONE

    _rhs(kind, y, ks[0], dims, offs, pivot, Rt, F, eta, rank, ws, g)
    istats[S_RHS] += 1
    if not _all_finite(ks[0]):
        return NONFINITE

    fixed = h_fixed > 0.0
    n_fix = 0
    if fixed:
        n_fix = int(np.ceil(t_end / h_fixed * (1.0 - 1e-12)))
        if n_fix < 1:
            n_fix = 1
        h = t_end / n_fix
    elif h_init > 0.0:
        h = min(h_init, t_end)
    else:
        h = _initial_step(kind, y, ks[0], t_end, rtol, atol, dims, offs, pivot, Rt, F, eta, rank, ws, g, ytmp,
                          ks[1])
        istats[S_RHS] += 1
    fstats[F_H0] = h
    if not (h > 0.0 and np.isfinite(h)):
        # no representable first step: the right-hand side is too large for the error norm (an overflowing
        # start); a requested first_step is > 0, a fixed step > 0 by the callers' checks
        return NONFINITE

    facold = 1.0e-4
    last_rejected = False
    n_attempt = 0
    n_acc = 0
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
                e = h_step * (E1 * ks[0, i] + E3 * ks[2, i] + E4 * ks[3, i] + E5 * ks[4, i] + E6 * ks[5, i]
                              + E7 * ks[6, i])
                err += (e / sk) ** 2
            err = np.sqrt(err / max(n, 1))
            if not np.isfinite(err):
                # a non-finite trial step: reject and shrink hard
                accept = False
                h_next = 0.1 * h_step
                last_rejected = True
            else:
                fac11 = err**EXPO1
                fac = fac11 / facold**BETA  # PI (Lund-stabilised) controller of DOPRI5
                fac = max(FACC2, min(FACC1, fac / SAFE))
                if err <= 1.0:
                    accept = True
                    facold = max(err, 1.0e-4)
                    h_next = h_step / fac
                    if last_rejected:
                        h_next = min(h_next, h_step)
                    last_rejected = False
                else:
                    accept = False
                    h_next = h_step / min(FACC1, fac11 / SAFE)
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
                rc[3, i] = h_step * (D1 * ks[0, i] + D3 * ks[2, i] + D4 * ks[3, i] + D5 * ks[4, i]
                                     + D6 * ks[5, i] + D7 * ks[6, i])
            while idx < n_t and t_eval[idx] <= t_new:
                if t_eval[idx] == t_new:
                    for i in range(n):
                        ytmp[i] = y1[i]
                else:
                    th = (t_eval[idx] - t) / h_step
                    th1 = 1.0 - th
                    # 1-D rows: a loop over contiguous vectors that LLVM vectorises (rc[q, i] does not)
                    r0 = rc[0]
                    r1 = rc[1]
                    r2 = rc[2]
                    r3 = rc[3]
                    for i in range(n):
                        ytmp[i] = y[i] + th * (r0[i] + th1 * (r1[i] + th * (r2[i] + th1 * r3[i])))
                _emit(kind, ytmp, idx, dims, offs, pivot, Rt, F, ws, g, save_idx, out_y, out_ex,
                      out_gn2, with_loss, with_grad, diag, out_bal, out_sv, out_ln)
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
        if not _all_finite(ks[0]):
            return NONFINITE
        if idx >= n_t or t >= t_end:
            return DONE


@njit(cache=True, nogil=True)
def _point(kind, y, v, dims, offs, pivot, Rt, F, eta, rank, out):
    """One evaluation at ``y`` (own workspace), the single entry point besides `_integrate`.

    ``kind`` FACTOR / END_TO_END / MODIFIED: ``out`` = right-hand side of that flow, returns the excess loss
    (``v`` unused); ``kind`` HVP: ``out`` = Hess L^N(y) v, returns 0.  (One entry compiles the call tree
    once; Numba compiles every entry point's callees anew.)
    """
    if kind == HVP:
        _hvp(y, v, dims, offs, Rt, F, out)
        return 0.0
    ws = np.empty(_workspace_size(dims, pivot))
    g = np.empty(y.shape[0])
    return _rhs(kind, y, out, dims, offs, pivot, Rt, F, eta, rank, ws, g)
