"""Building blocks of the gradient-flow right-hand sides (see `dlnsim._kernels.flow` for the flows).

* `_hvp`: the Hessian-vector product Hess L^N(w) v in closed form (the modified flow, the sharpness).
* `_product_loss`, `_e2e_rhs`: excess loss and right-hand side -A_W(grad L^1(W)) of the end-to-end flow
  (2.5) on the flat product W.
* `_excess_loss`: the excess loss of factors without the gradient, with its own workspace.

Flat layout as in `dlnsim._kernels.linalg`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .blas import _matmul, _matmul_add
from .linalg import _loss_and_grad, _workspace_size


@njit(cache=True, nogil=True)
def _hvp(w, v, dims, offs, Rt, F, out):
    """out = Hess L^N(w) v, the directional derivative of (3.2) along v.

    With the prefixes P_j = W_{j:1} (d_j x d_0), suffixes S_j = W_{N:j+1} (d_N x d_j), G = W C - E and their
    derivatives along v (dP_j = W_j dP_{j-1} + V_j P_{j-1}, dS_j = dS_{j+1} W_{j+1} + S_{j+1} V_{j+1},
    dW = dP_N, dG = dW C):

        (H v)_j = dS_j^T G P_{j-1}^T + S_j^T (dG P_{j-1}^T + G dP_{j-1}^T).

    G is formed from the residual Z = W R^T - F as Z R (no cancellation), C = R^T R.
    """
    n = dims.shape[0] - 1
    d0 = dims[0]
    dn = dims[n]
    # flat C-ordered blocks (see `blas._matmul`): P_j, dP_j at poff[j], S_j, dS_j at soff[j]
    poff = np.empty(n + 2, dtype=np.int64)
    soff = np.empty(n + 2, dtype=np.int64)
    poff[0] = 0
    soff[0] = 0
    for j in range(n + 1):
        poff[j + 1] = poff[j] + dims[j] * d0
        soff[j + 1] = soff[j] + dn * dims[j]
    pb = np.zeros(poff[n + 1])
    dpb = np.zeros(poff[n + 1])
    sb = np.zeros(soff[n + 1])
    dsb = np.zeros(soff[n + 1])
    for i in range(d0):
        pb[i * d0 + i] = 1.0  # P_0 = I, dP_0 = 0
    for i in range(dn):
        sb[soff[n] + i * dn + i] = 1.0  # S_N = I, dS_N = 0

    for j in range(1, n + 1):  # P_j = W_j P_{j-1},  dP_j = W_j dP_{j-1} + V_j P_{j-1}
        _matmul(False, False, dims[j], d0, dims[j - 1], w, offs[j - 1], pb, poff[j - 1], pb, poff[j])
        _matmul(False, False, dims[j], d0, dims[j - 1], w, offs[j - 1], dpb, poff[j - 1], dpb, poff[j])
        _matmul_add(False, False, dims[j], d0, dims[j - 1], v, offs[j - 1], pb, poff[j - 1], dpb, poff[j], 1.0)
    for j in range(n - 1, 0, -1):  # S_j = S_{j+1} W_{j+1},  dS_j = dS_{j+1} W_{j+1} + S_{j+1} V_{j+1}
        _matmul(False, False, dn, dims[j], dims[j + 1], sb, soff[j + 1], w, offs[j], sb, soff[j])
        _matmul(False, False, dn, dims[j], dims[j + 1], dsb, soff[j + 1], w, offs[j], dsb, soff[j])
        _matmul_add(False, False, dn, dims[j], dims[j + 1], sb, soff[j + 1], v, offs[j], dsb, soff[j], 1.0)

    # scratch: Z (then G), dW R^T, dG, and a_j, b_j (d_N x d_{j-1} each, at most d_N x max_j d_j)
    dmax = 0
    for j in range(n + 1):
        dmax = max(dmax, dims[j])
    size = dn * d0
    tmp = np.empty(4 * size + 2 * dn * dmax)
    p_z, p_g, p_dwr, p_dg = 0, size, 2 * size, 3 * size
    p_a = 4 * size
    p_b = p_a + dn * dmax
    ff = F.reshape(size)
    _matmul(False, False, dn, d0, d0, pb, poff[n], Rt, 0, tmp, p_z)  # Z = W R^T - F
    z = tmp[p_z : p_z + size]  # a slice: no per-element wraparound check (see linalg._copy_flat)
    for i in range(size):
        z[i] -= ff[i]
    _matmul(False, True, dn, d0, d0, tmp, p_z, Rt, 0, tmp, p_g)  # G = Z R
    _matmul(False, False, dn, d0, d0, dpb, poff[n], Rt, 0, tmp, p_dwr)
    _matmul(False, True, dn, d0, d0, tmp, p_dwr, Rt, 0, tmp, p_dg)  # dG = dW C
    for j in range(1, n + 1):
        dj, djm = dims[j], dims[j - 1]
        # a_j = G P_{j-1}^T,  b_j = dG P_{j-1}^T + G dP_{j-1}^T,  (H v)_j = dS_j^T a_j + S_j^T b_j
        _matmul(False, True, dn, djm, d0, tmp, p_g, pb, poff[j - 1], tmp, p_a)
        _matmul(False, True, dn, djm, d0, tmp, p_dg, pb, poff[j - 1], tmp, p_b)
        _matmul_add(False, True, dn, djm, d0, tmp, p_g, dpb, poff[j - 1], tmp, p_b, 1.0)
        _matmul(True, False, dj, djm, dn, dsb, soff[j], tmp, p_a, out, offs[j - 1])
        _matmul_add(True, False, dj, djm, dn, sb, soff[j], tmp, p_b, out, offs[j - 1], 1.0)


@njit(cache=True, nogil=True)
def _product_loss(y, dims, Rt, F):
    """Excess loss 1/2 ||W R^T - F||_F^2 of the end-to-end matrix W stored flat in ``y``."""
    n = dims.shape[0] - 1
    wm = y.reshape((dims[n], dims[0]))
    z = np.dot(wm, Rt) - F
    return 0.5 * np.sum(z * z)


@njit(cache=True, nogil=True)
def _e2e_rhs(y, f, dims, Rt, F, rank):
    """f = -A_W(grad L^1(W)) for the end-to-end flow (2.5); returns the excess loss at W."""
    n = dims.shape[0] - 1
    d0 = dims[0]
    dn = dims[n]
    wm = y.reshape((dn, d0))
    z = np.dot(wm, Rt) - F
    ex = 0.5 * np.sum(z * z)
    if not np.isfinite(ex):
        f[:] = np.nan
        return ex
    g = np.dot(z, Rt.T)  # grad L^1 = W C - E = Z R
    u, s, vt = np.linalg.svd(wm)
    r = min(rank, s.shape[0])
    # power tables a_i^m, b_k^m for m = 0..N-1 with a_i = s_i^{2/N} (0 beyond the rank); 0^0 = 1
    apow = np.zeros((dn, n))
    bpow = np.zeros((d0, n))
    for i in range(dn):
        ai = s[i] ** (2.0 / n) if i < r else 0.0
        p = 1.0
        for m in range(n):
            apow[i, n - 1 - m] = p  # reversed: apow[i, q] = a_i^{N-1-q}
            p *= ai
    for k in range(d0):
        bk = s[k] ** (2.0 / n) if k < r else 0.0
        p = 1.0
        for m in range(n):
            bpow[k, m] = p
            p *= bk
    mm = np.dot(apow, bpow.T)  # M_ik = sum_m a_i^{N-1-m} b_k^m
    h = np.dot(np.dot(u.T, g), vt.T)
    h *= mm
    fm = f.reshape((dn, d0))
    np.dot(np.dot(u, h), vt, fm)
    for i in range(f.shape[0]):
        f[i] = -f[i]
    return ex


@njit(cache=True, nogil=True)
def _excess_loss(w, dims, offs, pivot, Rt, F):
    """Excess loss 1/2 ||W R^T - F||_F^2 of the factors ``w`` (own workspace): `linalg._loss_and_grad`
    without the gradient, the function the integrator records the loss with."""
    ws = np.empty(_workspace_size(dims, pivot))
    return _loss_and_grad(w, dims, offs, pivot, Rt, F, ws, ws, np.int64(0))
