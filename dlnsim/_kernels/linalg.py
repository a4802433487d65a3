"""Numba building blocks: the loss and gradient of a deep linear network, and ||grad||^2 alone.

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
from .narrow import NARROW, _rank_update, _residual_pass, _step_block, _times_data, _times_data_t, _transpose


def _sources_digest() -> str:
    """A digest of the sources of all kernel modules.  The entry points compiled as closures (the integrators,
    `flow_point._point`, `gd._gd_chunk`) hold it as a closure constant, which is part of Numba's cache key: Numba
    checks only the source file of a cached function, not those of its callees, so without it an edit of the
    gradient kernel here or of `blas` would leave their cached machine code stale.  Kernels called from Python that
    are not closures (`_loss_grad`, `_loss_and_grad`, `flow_rhs._excess_loss`) are not covered: after an edit
    of a callee in another file (`blas`, `linalg`), delete their cache files."""
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


def workspace_size(dims: np.ndarray, b: int, cols: int = -1) -> int:
    """Length of the float64 workspace that `_loss_grad` needs (plain Python; `_workspace_size` in kernels).

    Chains L_0..L_{b-1} (d_b x d_j) and U_{b+1}..U_N (d_j x d_b), each twice (L/M and U/V), then
    L_0 R^T (d_b x c), Z (d_N x c), U_N^T Z (d_b x c) and a d_b x max_j d_j buffer (a transposed U_j
    for the loops of `narrow`).  ``cols`` is the number c of columns of the data matrices R^T and F (-1: d_0,
    the residual form of the full data; a minibatch of b samples has c = b).
    """
    n = len(dims) - 1
    db = int(dims[b])
    c = int(dims[0]) if cols < 0 else int(cols)
    chains = 0
    for j in range(n + 1):
        if j != b:
            chains += db * int(dims[j])
    return 2 * chains + (2 * db + int(dims[n])) * c + db * int(np.max(dims))


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
    (grad_j = L_j^T M_{j-1}, j < b, and V_j U_{j-1}^T, j > b + 1), for `_grad_norm_sq`.  `_loss_grad_norm`
    with the squared gradient norm left out."""
    return _loss_grad_norm(w, dims, offs, b, Rt, F, g, ws, grad, 0.0, True)[0]


@njit(cache=True, nogil=True)
def _loss_grad_norm(w, dims, offs, b, Rt, F, g, ws, grad, eta, lower):
    """(1/2 ||Z||_F^2, ||grad L^N||_F^2) at ``w``, ``grad`` as in `_loss_and_grad`, and two more:

    * 3: the gradient into ``g`` as for 1, and its squared norm (NaN for the other codes);
    * 4: the next gradient-descent iterate w - eta grad L^N(w) into ``g`` instead of the gradient, and the
      squared gradient norm; ``w`` is left as it is, so the caller can still decline the step.

    For a pivot of width 2 the norm and the step come from the loops that form the gradient blocks, so
    gradient descent makes no extra pass over the state (the pass over the 52 kB state of the paper's network
    cost about 1 us a step, an eighth of it).

    ``lower`` says that ``Rt`` is the lower-triangular Cholesky factor of the full data (a minibatch's X_B is
    not), so that the two products with it through a pivot of width 2 read only its triangle.

    ``ws`` is a workspace of length `_workspace_size(dims, b)`.  The caller adds L* to the excess loss.  No
    allocation and no reshapes: every matrix is a C-ordered block of ``w``, ``g``, ``ws``, ``Rt`` or ``F``
    given by its offset, and every product is one dgemm call (`blas._matmul`) or, for a pivot of width 2, a
    loop of `narrow`, which keeps this kernel's compile time short.  One function for all uses: the integrator
    needs most of them, and each compiled function costs seconds of compile time.  (Callers pass ``grad`` as a
    variable or ``np.int64(.)``: a literal constant would compile the function once more per value.)
    """
    n = dims.shape[0] - 1
    d0 = dims[0]
    dn = dims[n]
    db = dims[b]
    c = Rt.shape[1]  # columns of the data: d_0 for the residual form of the full data, b for a minibatch

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
    p_z = p_lr + db * c
    p_t1 = p_z + dn * c
    p_buf = p_t1 + db * c
    # a narrow pivot: the residual pass and the products with inner dimension d_b are loops (see `narrow`)
    narrow = db == NARROW
    fused = narrow and 0 < b < n  # the one-pass residual (b = 0 means d_0 = 2: no 70 x 70 data to save on)
    ff = F.reshape(dn * c)
    rtf = Rt.reshape(d0 * c)
    full = grad == 1 or grad >= 3  # every gradient block
    step = grad == 4
    gsq = 0.0 if grad >= 3 else np.nan

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
        if narrow:
            _times_data(c, d0, src, so, rtf, ws, p_lr, lower)
        else:
            _matmul(False, False, db, c, d0, src, so, rtf, 0, ws, p_lr)
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
        if fused:
            pass
        elif b > 0:
            _matmul(False, False, dn, c, db, un, uo, ws, p_lr, ws, p_z)
        else:
            _matmul(False, False, dn, c, db, un, uo, rtf, 0, ws, p_z)
    else:
        _copy_flat(ws, p_z, ws, p_lr, dn * c)
    if fused:
        # one pass: 1/2 ||Z||^2, and with the gradient also U_N^T Z (lower layers) and V_N = Z (L_0 R^T)^T
        # (one call site per loop kernel: each site is compiled, and vectorised, once more)
        if n == b + 1:
            vd, vo = g, offs[b]
        else:
            vd, vo = ws, p_v + uoff[n]
        want = grad != 0
        ex = _residual_pass(dn, c, un, uo, ws, p_lr, ff, ws, p_t1, want, vd, vo, want)
    else:
        # Z = W R^T - F; flat loops vectorise, and the norm goes to BLAS (a scalar running sum is latency-bound)
        z = ws[p_z : p_z + dn * c]  # a slice, so the loop index needs no wraparound check (see _copy_flat)
        for i in range(dn * c):
            z[i] -= ff[i]
        ex = 0.5 * _dot(dn * c, ws, p_z, ws, p_z)
    if grad == 0:
        return ex, gsq

    # lower layers j = 1..b: grad_j = L_j^T M_{j-1},  M_0 = (U_N^T Z) R,  M_j = M_{j-1} W_j^T,  grad_b = M_{b-1}
    if b > 0:
        if b == 1:
            dst, do = g, offs[0]
        else:
            dst, do = ws, p_m
        if b < n:
            if not fused:
                _matmul(True, False, db, c, dn, un, uo, ws, p_z, ws, p_t1)
            t_off = p_t1
        else:
            t_off = p_z
        if narrow:
            _times_data_t(c, d0, ws, t_off, rtf, dst, do, lower)
        else:
            _matmul(False, True, db, d0, c, ws, t_off, rtf, 0, dst, do)
        for j in range(1, b):
            if j == b - 1:
                dst, do = g, offs[b - 1]
            else:
                dst, do = ws, p_m + loff[j]
            _matmul(False, True, db, dims[j], dims[j - 1], ws, p_m + loff[j - 1], w, offs[j - 1], dst, do)
        for j in range(1, b if full and not narrow else 1):
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
        if fused:
            pass  # V_N came from the residual pass
        elif b > 0:
            _matmul(False, True, dn, db, c, ws, p_z, ws, p_lr, dst, do)
        else:
            _matmul(False, True, dn, db, c, ws, p_z, rtf, 0, dst, do)
        for j in range(n, b + 1, -1):
            if j - 1 == b + 1:
                dst, do = g, offs[b]
            else:
                dst, do = ws, p_v + uoff[j - 1]
            _matmul(True, False, dims[j - 1], db, dims[j], w, offs[j - 1], ws, p_v + uoff[j], dst, do)
        for j in range(b + 2, n + 1 if full and not narrow else b + 2):
            if j - 1 == b + 1:
                src, so = w, offs[b]
            else:
                src, so = ws, p_u + uoff[j - 1]
            _matmul(False, True, dims[j], dims[j - 1], db, ws, p_v + uoff[j], src, so, g, offs[j - 1])

    # a pivot of width 2: the blocks with inner dimension 2 as loops (L_j^T M_{j-1}, j < b; V_j U_{j-1}^T,
    # j > b + 1), each with its share of ||grad||^2 (and with grad = 4 the step)
    if narrow and full:
        # the step w - eta grad, or the gradient itself as 0 w + 1 grad (exact for a finite w; at a non-finite
        # w the gradient is not finite either)
        keep, r_eta = (1.0, eta) if step else (0.0, -1.0)
        for j in range(1, n + 1):
            if j < b:  # A = L_j^T: element (i, k) at so + k d_j + i
                if j == b - 1:
                    a_arr, a_off = w, offs[b - 1]
                else:
                    a_arr, a_off = ws, p_l + loff[j]
                sa_i, sa_c, b_off = 1, dims[j], p_m + loff[j - 1]
            elif j >= b + 2:  # A = V_j, B = U_{j-1}^T copied to unit-stride rows
                if j - 1 == b + 1:
                    u_arr, u_off = w, offs[b]
                else:
                    u_arr, u_off = ws, p_u + uoff[j - 1]
                _transpose(dims[j - 1], db, u_arr, u_off, ws, p_buf)
                a_arr, a_off, sa_i, sa_c, b_off = ws, p_v + uoff[j], 2, 1, p_buf
            else:
                continue
            gsq += _rank_update(dims[j], dims[j - 1], a_arr, a_off, sa_i, sa_c, ws, b_off, g, offs[j - 1], w, keep,
                                r_eta)
    # the blocks written by dgemm (all of them without a narrow pivot): their norm, and the step
    if grad >= 3:
        for q in range(2):
            if narrow:
                if q == 0 and b > 0:
                    o, size = offs[b - 1], db * dims[b - 1]
                elif q == 1 and b < n:
                    o, size = offs[b], dims[b + 1] * db
                else:
                    continue
            elif q == 0:
                o, size = 0, g.shape[0]
            else:
                continue
            if step:
                gsq += _step_block(size, w, g, o, eta)
            else:
                gsq += _dot(size, g, o, g, o)
    return ex, gsq


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
