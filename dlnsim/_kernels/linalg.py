"""Numba building blocks: the loss and gradient of a deep linear network, and record-point diagnostics.

Layout
------
The factors W_1, ..., W_N live in one flat float64 vector ``w``: layer j (1-based) occupies
``w[offs[j-1]:offs[j]]`` and is read as a C-ordered ``(dims[j], dims[j-1])`` matrix.  ``dims`` holds
d_0, ..., d_N.  A flat vector is also the state of the gradient flow, so GD and the flow share it.

Loss in residual form
---------------------
With C = X X^T = R^T R (Cholesky, ``Rt`` = R^T lower triangular), E = Y X^T and F = E R^{-1},

    L^N(W) = 1/2 ||Y - W X||_F^2 = L* + 1/2 ||Z||_F^2,      Z = W R^T - F,                (spec §1)

where L* is the least-squares optimum (computed once, from a least-squares solve).  This form costs the
same as 1/2 tr(W C W^T) - tr(E^T W) + 1/2 ||Y||^2 but has no cancellation: the excess loss 1/2 ||Z||^2
keeps full relative accuracy as GD converges, so log-log loss curves and the descent ratio of
Prop. 3.4(4) stay meaningful down to 1e-30 and below.  The gradient of L^1 is G = W C - E = Z R.

Association order (DESIGN §3)
-----------------------------
Every chain is carried through the narrowest layer b = argmin_j d_j (the "pivot").  With
L_j = W_{b:j+1} (d_b x d_j) and U_j = W_{j:b+1} (d_j x d_b) the product is W = U_N L_0 and the gradient (3.2)

    grad_j = W_{N:j+1}^T G W_{j-1:1}^T

is, for j <= b, L_j^T M_{j-1} with M_0 = (U_N^T Z) R, M_j = M_{j-1} W_j^T, and for j > b, V_j U_{j-1}^T with
V_N = Z (L_0 R^T)^T, V_{j-1} = W_j^T V_j.  Every product then has one side of size d_b, so with the paper's
d_1 = 2 a step costs O(d_b (d_0^2 + sum_j d_j d_{j-1})) instead of O(sum_j d_j d_{j-1} d_0).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .blas import _dot, _matmul


@njit(cache=True, nogil=True)
def _layer(w, dims, offs, j):
    """View of W_j (1-based j) as a (d_j, d_{j-1}) matrix."""
    return w[offs[j - 1] : offs[j]].reshape((dims[j], dims[j - 1]))


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
    return _loss_and_grad(w, dims, offs, b, Rt, F, g, ws, True)


@njit(cache=True, nogil=True)
def _loss_and_grad(w, dims, offs, b, Rt, F, g, ws, grad):
    """Excess loss 1/2 ||Z||_F^2 at ``w``, and with ``grad`` the gradient of L^N into ``g`` (same layout as
    ``w``; untouched without ``grad``).

    ``ws`` is a workspace of length `_workspace_size(dims, b)`.  Returns the excess loss; the caller adds
    L*.  No allocation and no reshapes: every matrix is a C-ordered block of ``w``, ``g``, ``ws``, ``Rt`` or
    ``F`` given by its offset, and every product is one dgemm call (`blas._matmul`), which keeps this
    kernel's compile time short.  One function for the loss with and without the gradient: the integrator
    needs both, and each compiled function costs seconds of compile time.
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
    if not grad:
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
        for j in range(1, b):
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
        for j in range(b + 2, n + 1):
            if j - 1 == b + 1:
                src, so = w, offs[b]
            else:
                src, so = ws, p_u + uoff[j - 1]
            _matmul(False, True, dims[j], dims[j - 1], db, ws, p_v + uoff[j], src, so, g, offs[j - 1])
    return ex


@njit(cache=True, nogil=True)
def _sym_spectral_norm(a):
    """Spectral norm of a symmetric matrix: the largest |eigenvalue|."""
    if a.shape[0] == 0:
        return 0.0
    ev = np.linalg.eigvalsh(a)
    return max(abs(ev[0]), abs(ev[-1]))


@njit(cache=True, nogil=True)
def _balancedness(w, dims, offs, out):
    """out[j-1] = ||W_{j+1}^T W_{j+1} - W_j W_j^T|| (spectral), j = 1..N-1  (Definition 2.3)."""
    n = dims.shape[0] - 1
    for j in range(1, n):
        wj = _layer(w, dims, offs, j)
        wj1 = _layer(w, dims, offs, j + 1)
        d = np.dot(wj1.T, wj1) - np.dot(wj, wj.T)
        # symmetrise the rounding so eigvalsh sees an exactly symmetric matrix
        out[j - 1] = _sym_spectral_norm(0.5 * (d + d.T))


@njit(cache=True, nogil=True)
def _layer_norms_sq(w, dims, offs, out):
    """out[j-1] = ||W_j||^2 (spectral), through the smaller Gram matrix."""
    n = dims.shape[0] - 1
    for j in range(1, n + 1):
        wj = _layer(w, dims, offs, j)
        if dims[j] <= dims[j - 1]:
            gram = np.dot(wj, wj.T)
        else:
            gram = np.dot(wj.T, wj)
        out[j - 1] = _sym_spectral_norm(0.5 * (gram + gram.T))


@njit(cache=True, nogil=True)
def _product(w, dims, offs):
    """The end-to-end matrix W = W_N ... W_1 (d_N x d_0), multiplied from the narrow end."""
    n = dims.shape[0] - 1
    b = 0
    for j in range(n + 1):
        if dims[j] < dims[b]:
            b = j
    # lower part W_{b:1} (d_b x d_0), upper part W_{N:b+1} (d_N x d_b)
    low = np.eye(dims[0])
    if b > 0:
        low = np.ascontiguousarray(_layer(w, dims, offs, b))
        for j in range(b - 1, 0, -1):
            low = np.dot(low, _layer(w, dims, offs, j))
    if b == n:
        return low
    up = np.ascontiguousarray(_layer(w, dims, offs, b + 1))
    for j in range(b + 2, n + 1):
        up = np.dot(_layer(w, dims, offs, j), up)
    if b == 0:
        return up
    return np.dot(up, low)


@njit(cache=True, nogil=True)
def _product_singular_values(w, dims, offs, out):
    """Largest ``out.shape[0]`` singular values of W = W_N ... W_1, in decreasing order.

    With a narrow layer (d_b < min(d_0, d_N)) W = U L has rank <= d_b; with U = Q_1 R_1 and L^T = Q_2 R_2
    the nonzero singular values are those of the small d_b x d_b matrix R_1 R_2^T, which keeps the tiny
    singular values accurate (no squaring) at a fraction of the cost of a full SVD.
    """
    n = dims.shape[0] - 1
    b = 0
    for j in range(n + 1):
        if dims[j] < dims[b]:
            b = j
    k = out.shape[0]
    if 0 < b < n:
        low = np.ascontiguousarray(_layer(w, dims, offs, b))
        for j in range(b - 1, 0, -1):
            low = np.dot(low, _layer(w, dims, offs, j))
        up = np.ascontiguousarray(_layer(w, dims, offs, b + 1))
        for j in range(b + 2, n + 1):
            up = np.dot(_layer(w, dims, offs, j), up)
        _, r1 = np.linalg.qr(up)
        _, r2 = np.linalg.qr(np.ascontiguousarray(low.T))
        small = np.dot(r1, r2.T)
    else:
        small = _product(w, dims, offs)
    s = np.linalg.svd(small)[1]
    for i in range(k):
        out[i] = s[i] if i < s.shape[0] else 0.0
