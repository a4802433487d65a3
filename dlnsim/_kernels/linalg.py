"""Numba building blocks: the loss and gradient of a deep linear network, ||grad||^2 alone, and the
compression of a flow's dense output for its state diagnostics (`_compress`).

Layout
------
The factors W_1, ..., W_N live in one flat float64 vector ``w``: layer j (1-based) occupies
``w[offs[j-1]:offs[j]]`` and is read as a C-ordered ``(dims[j], dims[j-1])`` matrix.  ``dims`` holds
d_0, ..., d_N.  A flat vector is also the state of the gradient flow, so GD and the flow share it.

Loss in residual form
---------------------
With C = X X^T = R^T R (Cholesky, ``Rt`` = R^T lower triangular), E = Y X^T and F = E R^{-1},

    L^N(W) = 1/2 ||Y - W X||_F^2 = L* + 1/2 ||Z||_F^2,      Z = W R^T - F,

where L* is the least-squares optimum (computed once, from a least-squares solve).  This form costs the
same as 1/2 tr(W C W^T) - tr(E^T W) + 1/2 ||Y||^2 but has no cancellation: the excess loss 1/2 ||Z||^2
keeps full relative accuracy as GD converges, so log-log loss curves and the descent ratio of
Prop. 3.4(4) stay meaningful down to 1e-30 and below.  The gradient of L^1 is G = W C - E = Z R.

Association order
-----------------
Every chain is carried through the narrowest layer b = argmin_j d_j (the "pivot").  With
L_j = W_{b:j+1} (d_b x d_j) and U_j = W_{j:b+1} (d_j x d_b) the product is W = U_N L_0 and the gradient (3.2)

    grad_j = W_{N:j+1}^T G W_{j-1:1}^T

is, for j <= b, L_j^T M_{j-1} with M_0 = (U_N^T Z) R, M_j = M_{j-1} W_j^T, and for j > b, V_j U_{j-1}^T with
V_N = Z (L_0 R^T)^T, V_{j-1} = W_j^T V_j.  Every product then has one side of size d_b, so with the paper's
d_1 = 2 a step costs O(d_b (d_0^2 + sum_j d_j d_{j-1})) instead of O(sum_j d_j d_{j-1} d_0).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from numba import njit

from .blas import _dot, _matmul


def _sources_digest() -> str:
    """A digest of the sources of all kernel modules.  The entry points compiled as closures (the integrators,
    `flow._point`, `gd._gd_chunk`) hold it as a closure constant, which is part of Numba's cache key: Numba
    checks only the source file of a cached function, not those of its callees, so without it an edit of this
    file or of `blas` would leave their cached machine code stale."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()


#: see `_sources_digest`
SOURCES = _sources_digest()


@njit(cache=True, nogil=True)
def _copy_flat(dst, dst_off, src, src_off, size):
    """dst[dst_off : dst_off + size] = src[src_off : src_off + size], for 1-D arrays.

    An explicit loop rather than a slice assignment: Numba lowers every array-to-array slice assignment
    with its own compiled shape-mismatch error path, which cost about 1 s of compile time per site.
    """
    # slices first: with an offset inside the index Numba cannot prove it non-negative, and the
    # wraparound check it adds per element keeps LLVM from vectorising the loop
    d = dst[dst_off : dst_off + size]
    r = src[src_off : src_off + size]
    for i in range(size):
        d[i] = r[i]


def workspace_size(dims: np.ndarray, b: int) -> int:
    """Length of the float64 workspace that `_loss_grad` needs (plain Python; `_workspace_size` in kernels).

    Chains L_0..L_{b-1} (d_b x d_j) and U_{b+1}..U_N (d_j x d_b), each twice (L/M and U/V), then
    L_0 R^T (d_b x d_0), Z (d_N x d_0) and U_N^T Z (d_b x d_0).
    """
    n = len(dims) - 1
    db = int(dims[b])
    chains = 0
    for j in range(n + 1):
        if j != b:
            chains += db * int(dims[j])
    return 2 * chains + (2 * db + int(dims[n])) * int(dims[0])


_workspace_size = njit(cache=True, nogil=True)(workspace_size)


@njit(cache=True, nogil=True)
def _loss_grad(w, dims, offs, b, Rt, F, g, ws):
    """Excess loss 1/2 ||Z||_F^2 at ``w``; writes the gradient of L^N into ``g`` (same layout as ``w``).

    ``ws`` is a workspace of length `_workspace_size(dims, b)`.  Returns the excess loss; the caller adds
    L*.  The kernels call `_loss_and_grad` (the same code, the gradient optional) directly.
    """
    return _loss_and_grad(w, dims, offs, b, Rt, F, g, ws, np.int64(1))


@njit(cache=True, nogil=True)
def _loss_and_grad(w, dims, offs, b, Rt, F, g, ws, grad):
    """Excess loss 1/2 ||Z||_F^2 at ``w``; ``grad`` = 1 writes the gradient of L^N into ``g`` (same layout as
    ``w``), 0 leaves ``g`` untouched, 2 leaves out the blocks that are products with inner dimension d_b
    (grad_j = L_j^T M_{j-1}, j < b, and V_j U_{j-1}^T, j > b + 1), for `_grad_norm_sq`.

    ``ws`` is a workspace of length `_workspace_size(dims, b)`.  Returns the excess loss; the caller adds
    L*.  No allocation and no reshapes: every matrix is a C-ordered block of ``w``, ``g``, ``ws``, ``Rt`` or
    ``F`` given by its offset, and every product is one dgemm call (`blas._matmul`), which keeps this
    kernel's compile time short.  One function for the three uses: the integrator needs all of them, and each
    compiled function costs seconds of compile time.  (Callers pass ``grad`` as a variable or ``np.int64(.)``:
    a literal constant would compile the function once more per value.)
    """
    n = dims.shape[0] - 1
    d0 = dims[0]
    dn = dims[n]
    db = dims[b]

    # offsets of L_j (db x d_j, j = 0..b-1) in the L/M chains and of U_j (d_j x db, j = b+1..N) in U/V
    loff = np.empty(b + 1, dtype=np.int64)
    q = 0
    for j in range(b):
        loff[j] = q
        q += db * dims[j]
    loff[b] = q
    uoff = np.empty(n + 2, dtype=np.int64)
    q = 0
    for j in range(b + 1, n + 1):
        uoff[j] = q
        q += dims[j] * db
    uoff[n + 1] = q
    size_l = loff[b]
    size_u = uoff[n + 1]

    # carve the workspace: L, U, M, V chains, then L_0 R^T, Z, U_N^T Z
    p_l = 0
    p_u = p_l + size_l
    p_m = p_u + size_u
    p_v = p_m + size_l
    p_lr = p_v + size_u
    p_z = p_lr + db * d0
    p_t1 = p_z + dn * d0

    # L_{b-1} = W_b and U_{b+1} = W_{b+1} are read in place from w, and the last matrices of the M and V
    # chains, M_{b-1} = grad_b and V_{b+1} = grad_{b+1}, are written straight into g: no copies.
    # w, ws and g have one Numba type, so a (buffer, offset) pair can name a matrix in any of them.

    # L chain: L_{j-1} = L_j W_j;  then L_0 R^T
    if b > 0:
        for j in range(b - 1, 0, -1):
            if j == b - 1:
                src, so = w, offs[b - 1]
            else:
                src, so = ws, p_l + loff[j]
            _matmul(False, False, db, dims[j - 1], dims[j], src, so, w, offs[j - 1], ws, p_l + loff[j - 1])
        if b == 1:
            src, so = w, offs[0]
        else:
            src, so = ws, p_l
        _matmul(False, False, db, d0, d0, src, so, Rt, 0, ws, p_lr)
    # U chain: U_j = W_j U_{j-1};  Z = U_N (L_0 R^T)  (L_0 R^T = R^T when b = 0)
    if b < n:
        for j in range(b + 2, n + 1):
            if j == b + 2:
                src, so = w, offs[b]
            else:
                src, so = ws, p_u + uoff[j - 1]
            _matmul(False, False, dims[j], db, dims[j - 1], w, offs[j - 1], src, so, ws, p_u + uoff[j])
        if n == b + 1:
            un, uo = w, offs[b]
        else:
            un, uo = ws, p_u + uoff[n]
        if b > 0:
            _matmul(False, False, dn, d0, db, un, uo, ws, p_lr, ws, p_z)
        else:
            _matmul(False, False, dn, d0, db, un, uo, Rt, 0, ws, p_z)
    else:
        _copy_flat(ws, p_z, ws, p_lr, dn * d0)
    # Z = W R^T - F; flat loops vectorise, and the norm goes to BLAS (a scalar running sum is latency-bound)
    ff = F.reshape(dn * d0)
    z = ws[p_z : p_z + dn * d0]  # a slice, so the loop index needs no wraparound check (see _copy_flat)
    for i in range(dn * d0):
        z[i] -= ff[i]
    ex = 0.5 * _dot(dn * d0, ws, p_z, ws, p_z)
    if grad == 0:
        return ex

    # lower layers j = 1..b: grad_j = L_j^T M_{j-1},  M_0 = (U_N^T Z) R,  M_j = M_{j-1} W_j^T,  grad_b = M_{b-1}
    if b > 0:
        if b == 1:
            dst, do = g, offs[0]
        else:
            dst, do = ws, p_m
        if b < n:
            _matmul(True, False, db, d0, dn, un, uo, ws, p_z, ws, p_t1)
            _matmul(False, True, db, d0, d0, ws, p_t1, Rt, 0, dst, do)
        else:
            _matmul(False, True, db, d0, d0, ws, p_z, Rt, 0, dst, do)
        for j in range(1, b):
            if j == b - 1:
                dst, do = g, offs[b - 1]
            else:
                dst, do = ws, p_m + loff[j]
            _matmul(False, True, db, dims[j], dims[j - 1], ws, p_m + loff[j - 1], w, offs[j - 1], dst, do)
        for j in range(1, b if grad == 1 else 1):
            if j == b - 1:
                src, so = w, offs[b - 1]
            else:
                src, so = ws, p_l + loff[j]
            _matmul(True, False, dims[j], dims[j - 1], db, src, so, ws, p_m + loff[j - 1], g, offs[j - 1])

    # upper layers j = b+1..N: grad_j = V_j U_{j-1}^T,  V_N = Z (L_0 R^T)^T,  V_{j-1} = W_j^T V_j,
    # grad_{b+1} = V_{b+1}
    if b < n:
        if n == b + 1:
            dst, do = g, offs[b]
        else:
            dst, do = ws, p_v + uoff[n]
        if b > 0:
            _matmul(False, True, dn, db, d0, ws, p_z, ws, p_lr, dst, do)
        else:
            _matmul(False, True, dn, db, d0, ws, p_z, Rt, 0, dst, do)
        for j in range(n, b + 1, -1):
            if j - 1 == b + 1:
                dst, do = g, offs[b]
            else:
                dst, do = ws, p_v + uoff[j - 1]
            _matmul(True, False, dims[j - 1], db, dims[j], w, offs[j - 1], ws, p_v + uoff[j], dst, do)
        for j in range(b + 2, n + 1 if grad == 1 else b + 2):
            if j - 1 == b + 1:
                src, so = w, offs[b]
            else:
                src, so = ws, p_u + uoff[j - 1]
            _matmul(False, True, dims[j], dims[j - 1], db, ws, p_v + uoff[j], src, so, g, offs[j - 1])
    return ex


@njit(cache=True, nogil=True)
def _grad_norm_sq(w, dims, offs, b, g, ws):
    """||grad L^N||_F^2 after `_loss_and_grad` with ``grad`` = 2 at ``w`` (``g`` and ``ws`` as it left them;
    ``g`` is scratch afterwards).

    The blocks grad_b = M_{b-1} and grad_{b+1} = V_{b+1} are in ``g``; the others are products with inner
    dimension d_b, L_q^T M_{q-1} (q < b) and V_q U_{q-1}^T (q > b + 1), read from the workspace in the layout
    of `_loss_and_grad`.  For d_b = 2 (the narrow layer of the paper's networks) their norms come from the QR
    A = Q T of the narrow factor A = L_q^T or U_{q-1} (Gram-Schmidt twice): ||A^T X||_F = ||T X||_F (X =
    M_{q-1} or V_q^T), as accurate as forming the block, for O(d) instead of O(d^2) work; for other d_b the
    blocks are formed.
    """
    n = dims.shape[0] - 1
    db = dims[b]
    size_l = 0
    for j in range(b):
        size_l += db * dims[j]
    size_u = 0
    for j in range(b + 1, n + 1):
        size_u += dims[j] * db
    p_l, p_u = 0, size_l
    p_m, p_v = size_l + size_u, 2 * size_l + size_u
    total = 0.0
    if b > 0:
        total += _dot(db * dims[b - 1], g, offs[b - 1], g, offs[b - 1])
    if b < n:
        total += _dot(dims[b + 1] * db, g, offs[b], g, offs[b])
    # the other blocks: A (m x 2) = a[a_off + i sa_i + c sa_c], X (2 x nx) = ws[x_off + c sx_c + k sx_q]
    lo = 0  # offset of L_{q-1} and M_{q-1} in their chains
    uo = 0  # offset of U_{q-1} and V_{q-1} in their chains (from U_{b+1})
    for q in range(1, n + 1):
        if q < b:
            in_w = q == b - 1
            a_off = offs[b - 1] if in_w else p_l + lo + db * dims[q - 1]  # L_q
            m, sa_i, sa_c = dims[q], 1, dims[q]
            x_off, nx, sx_c, sx_q = p_m + lo, dims[q - 1], dims[q - 1], 1  # M_{q-1}
            lo += db * dims[q - 1]
        elif q >= b + 2:
            in_w = q - 1 == b + 1
            a_off = offs[b] if in_w else p_u + uo  # U_{q-1}
            m, sa_i, sa_c = dims[q - 1], db, 1
            x_off, nx, sx_c, sx_q = p_v + uo + dims[q - 1] * db, dims[q], 1, db  # V_q, as X = V_q^T
            uo += dims[q - 1] * db
        else:  # q = b, b + 1: the blocks in g
            continue
        a = w if in_w else ws
        if db != 2:  # form the block (d_q x d_{q-1}) in g
            if q < b:
                _matmul(True, False, dims[q], dims[q - 1], db, a, a_off, ws, x_off, g, 0)
            else:
                _matmul(False, True, dims[q], dims[q - 1], db, ws, x_off, a, a_off, g, 0)
            total += _dot(dims[q] * dims[q - 1], g, 0, g, 0)
            continue
        a0 = g[:m]  # A = [a0 a1] = Q T, T = [[r00, r01], [0, r11]]
        a1 = g[m : 2 * m]
        for i in range(m):
            a0[i] = a[a_off + i * sa_i]
            a1[i] = a[a_off + i * sa_i + sa_c]
        s00 = 0.0
        for i in range(m):
            s00 += a0[i] * a0[i]
        r00 = np.sqrt(s00)
        inv = 1.0 / r00 if r00 > 0.0 else 0.0
        for i in range(m):
            a0[i] *= inv
        r01 = 0.0
        for _ in range(2):
            c01 = 0.0
            for i in range(m):
                c01 += a0[i] * a1[i]
            for i in range(m):
                a1[i] -= c01 * a0[i]
            r01 += c01
        s11 = 0.0
        for i in range(m):
            s11 += a1[i] * a1[i]
        r11 = np.sqrt(s11)
        for k in range(nx):
            x0 = ws[x_off + k * sx_q]
            x1 = ws[x_off + sx_c + k * sx_q]
            u = r00 * x0 + r01 * x1
            v = r11 * x1
            total += u * u + v * v
    return total


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _compress(poly, n_slots, lo, rows, cols, qrt, ql, xr, xl, res, gr, gl):
    """Compressions of one layer in the dense-output slots of the integrator, for the diagnostics of
    `dlnsim.record.poly_diagnostics`, in one pass over the data.

    For s < ``n_slots`` and p < 5 the block V_p = ``poly[s, p, lo : lo + rows * cols]`` is a C-ordered
    (rows x cols) matrix.  Writes ``xr[s, p]`` = V_p Q_r (rows x kr, flat), ``xl[s, p]`` = Q_l^T V_p
    (kl x cols, flat), ``res[s, p]`` = ||V_p (I - Q_r Q_r^T)||_F (formed explicitly: a difference of norms
    would cancel; ||V_p||_F when kr = 0), and the Gram blocks ``gr[s, 5 p + q]`` = (V_p Q_r)^T (V_q Q_r)
    (kr x kr, flat) and ``gl[s, 5 p + q]`` = (Q_l^T V_p) (Q_l^T V_q)^T.  ``qrt`` = Q_r^T (kr x cols) and
    ``ql`` (rows x kl) have orthonormal rows and columns.  Reassociation only changes rounding (no
    finiteness tests here).
    """
    kr = qrt.shape[0]
    kl = ql.shape[1]
    size = rows * cols
    e = np.empty(cols)
    two = kr == 2 and (kl == 2 or kl == 0)
    for s in range(n_slots):
        for p in range(5):
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
        for p in range(5):  # Gram blocks of the five compressed matrices of this step (q >= p, then mirrored)
            for q in range(p, 5):
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
                    gr[s, 5 * p + q, 0] = gr[s, 5 * q + p, 0] = t00
                    gr[s, 5 * p + q, 1] = gr[s, 5 * q + p, 2] = t01
                    gr[s, 5 * p + q, 2] = gr[s, 5 * q + p, 1] = t10
                    gr[s, 5 * p + q, 3] = gr[s, 5 * q + p, 3] = t11
                else:
                    for a in range(kr):
                        for b in range(kr):
                            t = 0.0
                            for r in range(rows):
                                t += xp[r * kr + a] * xq[r * kr + b]
                            gr[s, 5 * p + q, a * kr + b] = gr[s, 5 * q + p, b * kr + a] = t
                lp = xl[s, p]
                lq = xl[s, q]
                for a in range(kl):
                    for b in range(kl):
                        t = 0.0
                        la = lp[a * cols : (a + 1) * cols]
                        lb = lq[b * cols : (b + 1) * cols]
                        for c in range(cols):
                            t += la[c] * lb[c]
                        gl[s, 5 * p + q, a * kl + b] = gl[s, 5 * q + p, b * kl + a] = t




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
