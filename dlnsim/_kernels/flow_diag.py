"""Numba kernels of the state diagnostics of a gradient flow from the dense output of its integrator (used by
`dlnsim._flow_diagnostics`, which explains the method and its bounds).

* `_compress`: one layer of a batch of steps compressed onto orthonormal bases, in one pass over the data:
  the compressed matrices, the residual norms, the Gram blocks of the five dense-output vectors;
* `_times_k2`: the diagnostics and their acceptance tests time by time, for bases of two columns (closed
  forms for 2 x 2 matrices).

Plain loops, no LAPACK: they compile in about a second each.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _compress(poly, n_slots, lo, rows, cols, qrt, ql, xr, xl, res, gr, gl):
    """Compressions of one layer in the dense-output slots of the integrator, for the diagnostics of
    `dlnsim.record.poly_diagnostics`, in one pass over the data.

    For s < ``n_slots`` and p < P (P = ``poly.shape[1]``: 5 for the dense output of a step, 1 for plain
    states) the block V_p = ``poly[s, p, lo : lo + rows * cols]`` is a C-ordered (rows x cols) matrix.  Writes
    ``xr[s, p]`` = V_p Q_r (rows x kr, flat), ``xl[s, p]`` = Q_l^T V_p (kl x cols, flat), ``res[s, p]`` =
    ||V_p (I - Q_r Q_r^T)||_F (formed explicitly: a difference of norms would cancel; ||V_p||_F when kr = 0),
    and the Gram blocks ``gr[s, P p + q]`` = (V_p Q_r)^T (V_q Q_r) (kr x kr, flat) and ``gl[s, P p + q]`` =
    (Q_l^T V_p) (Q_l^T V_q)^T.  ``qrt`` = Q_r^T (kr x cols) and
    ``ql`` (rows x kl) have orthonormal rows and columns.  Reassociation only changes rounding (no
    finiteness tests here).
    """
    kr = qrt.shape[0]
    kl = ql.shape[1]
    npoly = poly.shape[1]
    size = rows * cols
    e = np.empty(cols)
    two = kr == 2 and (kl == 2 or kl == 0)
    for s in range(n_slots):
        for p in range(npoly):
            v = poly[s, p, lo : lo + size]
            x_r = xr[s, p]
            x_l = xl[s, p]
            for q in range(kl * cols):
                x_l[q] = 0.0
            acc = 0.0
            for r in range(rows):
                row = v[r * cols : (r + 1) * cols]
                if two:  # the common case, fused: two dot products, then residual and left sums
                    q0 = qrt[0]
                    q1 = qrt[1]
                    t0 = 0.0
                    t1 = 0.0
                    for c in range(cols):
                        t0 += row[c] * q0[c]
                        t1 += row[c] * q1[c]
                    x_r[2 * r] = t0
                    x_r[2 * r + 1] = t1
                    if kl == 2:
                        w0 = ql[r, 0]
                        w1 = ql[r, 1]
                        l0 = x_l[:cols]
                        l1 = x_l[cols : 2 * cols]
                        for c in range(cols):
                            x = row[c]
                            d = x - t0 * q0[c] - t1 * q1[c]
                            acc += d * d
                            l0[c] += w0 * x
                            l1[c] += w1 * x
                    else:
                        for c in range(cols):
                            d = row[c] - t0 * q0[c] - t1 * q1[c]
                            acc += d * d
                    continue
                for c in range(cols):
                    e[c] = row[c]
                for a in range(kr):
                    qa = qrt[a]
                    t = 0.0
                    for c in range(cols):
                        t += row[c] * qa[c]
                    x_r[r * kr + a] = t
                    for c in range(cols):
                        e[c] -= t * qa[c]
                for c in range(cols):
                    acc += e[c] * e[c]
                for b in range(kl):
                    w = ql[r, b]
                    xb = x_l[b * cols : (b + 1) * cols]
                    for c in range(cols):
                        xb[c] += w * row[c]
            res[s, p] = np.sqrt(acc)
        for p in range(npoly):  # Gram blocks of the compressed matrices of this slot (q >= p, then mirrored)
            for q in range(p, npoly):
                xp = xr[s, p]
                xq = xr[s, q]
                if kr == 2:
                    t00 = 0.0
                    t01 = 0.0
                    t10 = 0.0
                    t11 = 0.0
                    for r in range(rows):
                        p0 = xp[2 * r]
                        p1 = xp[2 * r + 1]
                        q0 = xq[2 * r]
                        q1 = xq[2 * r + 1]
                        t00 += p0 * q0
                        t01 += p0 * q1
                        t10 += p1 * q0
                        t11 += p1 * q1
                    gr[s, npoly * p + q, 0] = gr[s, npoly * q + p, 0] = t00
                    gr[s, npoly * p + q, 1] = gr[s, npoly * q + p, 2] = t01
                    gr[s, npoly * p + q, 2] = gr[s, npoly * q + p, 1] = t10
                    gr[s, npoly * p + q, 3] = gr[s, npoly * q + p, 3] = t11
                else:
                    for a in range(kr):
                        for b in range(kr):
                            t = 0.0
                            for r in range(rows):
                                t += xp[r * kr + a] * xq[r * kr + b]
                            gr[s, npoly * p + q, a * kr + b] = gr[s, npoly * q + p, b * kr + a] = t
                lp = xl[s, p]
                lq = xl[s, q]
                for a in range(kl):
                    for b in range(kl):
                        t = 0.0
                        la = lp[a * cols : (a + 1) * cols]
                        lb = lq[b * cols : (b + 1) * cols]
                        for c in range(cols):
                            t += la[c] * lb[c]
                        gl[s, npoly * p + q, a * kl + b] = gl[s, npoly * q + p, b * kl + a] = t




@njit(cache=True, nogil=True)
def _times_k2(gram, lin, res, safe, step, th, dims, tol, bal, ln, sv, ok):
    """`dlnsim._flow_diagnostics.step_diagnostics` for bases of K = 2 columns, one time after the other.

    ``gram`` (S, 9, 4 nk), ``lin`` (S, 5, .), ``res`` (S, 5, nk) and ``safe`` (S,) are the arrays of
    `compress_steps` (nk = 2N - 2 compressed matrices: R_2..R_N, then L_1..L_{N-1}); ``step`` and ``th``
    the step and position of each time; ``tol`` (3,): the factors of eps of the three acceptance tests
    (balancedness per d_j, layer norms, singular values per N d_max).  Writes ``ok`` and the diagnostics
    into the rows of ``bal``, ``ln``, ``sv`` (those with columns), NaN where a time is not accepted.  Plain
    scalar loops (closed forms for 2 x 2): a few hundred operations per time instead of numpy's per-call
    overhead on many small arrays.
    """
    n = dims.shape[0] - 1
    nk = 2 * n - 2
    eps = 2.220446049250313e-16
    dmax = 0
    for j in range(n + 1):
        dmax = max(dmax, dims[j])
    rR = min(dims[n], 10)
    rL = min(dims[0], 10)
    c = np.empty(5)
    pw = np.empty(9)
    gv = np.empty(4 * nk)
    g = np.empty((nk, 4))
    rho = np.empty(nk)
    hi = np.empty(nk)
    tr = np.empty(nk)
    a_ln = np.empty(n)
    ub = np.empty(n)
    yR = np.empty(2 * rR)
    yL = np.empty(2 * rL)
    tri = np.empty((2, 3))
    w = np.empty(4)
    for t in range(step.shape[0]):
        s = step[t]
        x = th[t]
        x1 = 1.0 - x
        c[0] = 1.0
        c[1] = x
        c[2] = x * x1
        c[3] = x * x * x1
        c[4] = x * x * x1 * x1
        pw[0] = 1.0
        for e in range(1, 9):
            pw[e] = pw[e - 1] * x
        for i in range(4 * nk):  # the Gram matrices: polynomials of degree 8 in th
            gv[i] = 0.0
        for e in range(9):
            row = gram[s, e]
            for i in range(4 * nk):
                gv[i] += pw[e] * row[i]
        for k in range(nk):
            for e in range(4):
                g[k, e] = gv[4 * k + e]
            r = 0.0
            for p in range(5):
                r += abs(c[p]) * res[s, p, k]
            rho[k] = r
            tr[k] = g[k, 0] + g[k, 3]
            hi[k] = 0.5 * (g[k, 0] + g[k, 3]) + np.hypot(0.5 * (g[k, 0] - g[k, 3]), 0.5 * (g[k, 1] + g[k, 2]))
        good = safe[s]
        # ||W_j||^2: key L_1 for j = 1, R_j for j >= 2
        for j in range(n):
            k = n - 1 if j == 0 else j - 1
            a_ln[j] = hi[k]
            ub[j] = np.sqrt(max(hi[k], 0.0) + rho[k] * rho[k])
            if ln.shape[1] > 0 and not rho[k] * rho[k] <= tol[1] * eps * (tr[k] + rho[k] * rho[k]):
                good = False
        if bal.shape[1] > 0:
            for j in range(n - 1):  # A = W_{j+2} (key R_{j+2} = j), B = W_{j+1} (key L_{j+1} = n - 1 + j)
                kA = j
                kB = n - 1 + j
                h0 = g[kA, 0] - g[kB, 0]  # H = Q^T D Q = G_A - G_B: its eigenvalues in closed form
                h3 = g[kA, 3] - g[kB, 3]
                rad = np.hypot(0.5 * (h0 - h3), 0.5 * (g[kA, 1] + g[kA, 2] - g[kB, 1] - g[kB, 2]))
                lo_h = 0.5 * (h0 + h3) - rad
                hi_h = 0.5 * (h0 + h3) + rad
                rA2 = rho[kA] * rho[kA]
                rB2 = rho[kB] * rho[kB]
                e = rho[kA] * np.sqrt(max(tr[kA], 0.0)) + rho[kB] * np.sqrt(max(tr[kB], 0.0))
                up = 0.5 * (hi_h + rA2) + np.hypot(0.5 * (hi_h - rA2), e)
                low = 0.5 * (lo_h - rB2) - np.hypot(0.5 * (lo_h + rB2), e)
                est = max(abs(hi_h), abs(lo_h))
                if not max(up, -low) - est <= tol[0] * dims[j + 1] * eps * (tr[kA] + rA2 + tr[kB] + rB2):
                    good = False
                bal[t, j] = est
        if sv.shape[1] > 0:
            # T_R, T_L: the triangular factors (Gram-Schmidt twice) of Y_R, Y_L (rows x 2, R_N = U Y_R and
            # L_1^T = U' Y_L with orthonormal U, U'), one after the other in tri
            for side in range(2):
                rows = rR if side == 0 else rL
                at = 0 if side == 0 else 2 * rR
                y = yR if side == 0 else yL
                for i in range(2 * rows):
                    acc = 0.0
                    for p in range(5):
                        acc += c[p] * lin[s, p, at + i]
                    y[i] = acc
                sq = 0.0
                for i in range(rows):
                    sq += y[2 * i] * y[2 * i]
                r00 = np.sqrt(sq)
                inv = 1.0 / r00 if r00 > 0.0 else 0.0
                for i in range(rows):
                    y[2 * i] *= inv
                r01 = 0.0
                for _ in range(2):
                    dot = 0.0
                    for i in range(rows):
                        dot += y[2 * i] * y[2 * i + 1]
                    for i in range(rows):
                        y[2 * i + 1] -= dot * y[2 * i]
                    r01 += dot
                sq = 0.0
                for i in range(rows):
                    sq += y[2 * i + 1] * y[2 * i + 1]
                tri[side, 0] = r00
                tri[side, 1] = r01
                tri[side, 2] = np.sqrt(sq)
            a00, a01, a11 = tri[0, 0], tri[0, 1], tri[0, 2]
            m00, m01, m10, m11 = tri[1, 0], 0.0, tri[1, 1], tri[1, 2]  # T_L^T, then the inner compressions
            col = 2 * (rR + rL)
            for _ in range(2, n):
                for e in range(4):
                    acc = 0.0
                    for p in range(5):
                        acc += c[p] * lin[s, p, col + e]
                    w[e] = acc
                m00, m01, m10, m11 = (w[0] * m00 + w[1] * m10, w[0] * m01 + w[1] * m11,
                                      w[2] * m00 + w[3] * m10, w[2] * m01 + w[3] * m11)
                col += 4
            p00 = a00 * m00 + a01 * m10  # T_R @ mid
            p01 = a00 * m01 + a01 * m11
            p10 = a11 * m10
            p11 = a11 * m11
            sp = np.hypot(p00 + p11, p10 - p01)
            sm = np.hypot(p00 - p11, p10 + p01)
            bound = 0.0
            for j in range(1, n):
                prod = rho[j - 1]
                for i in range(n):
                    if i != j:
                        prod *= ub[i]
                bound += prod
            full = 1.0
            for i in range(n):
                full *= ub[i]
            if not bound <= tol[2] * n * dmax * eps * full:
                good = False
            for q in range(sv.shape[1]):
                sv[t, q] = 0.5 * (sp + sm) if q == 0 else (0.5 * abs(sp - sm) if q == 1 else 0.0)
        for j in range(ln.shape[1]):
            ln[t, j] = a_ln[j]
        ok[t] = good
        if not good:  # left to the caller, as not computed
            for j in range(bal.shape[1]):
                bal[t, j] = np.nan
            for j in range(ln.shape[1]):
                ln[t, j] = np.nan
            for j in range(sv.shape[1]):
                sv[t, j] = np.nan
