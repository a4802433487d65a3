"""The Numba kernel of the state diagnostics of a gradient flow from the dense output of its integrator (used
by `dlnsim.diagnostics.flow`, which explains the method and its bounds).

`_compress`: one layer of a batch of steps compressed onto orthonormal bases, in one pass over the data: the
compressed matrices, the residual norms, the Gram blocks of the dense-output vectors.  Plain loops, no LAPACK
(about 2 s of compile time on a first call).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _compress(poly, n_slots, lo, rows, cols, qrt, ql, xr, xl, res, gr, gl):
    """Compressions of one layer in the dense-output slots of the integrator, for the diagnostics of
    `dlnsim.options.poly_diagnostics`, in one pass over the data.

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
