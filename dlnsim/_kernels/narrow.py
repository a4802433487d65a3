"""Products with the narrow layer written as loops, for a pivot of width d_b = 2 (`NARROW`).

Every product of the gradient kernel has one side of size d_b (see `linalg`).  When d_b is tiny (the paper's
networks have d_1 = 2), the products whose *inner* dimension is d_b have the arithmetic of a rank-d_b update,
and a dgemm call spends more on its set-up, packing and edge handling than on that arithmetic (a 70 x 53
product with k = 2 ran at a quarter of the DGEMM rate).  Here they are loops over unit-stride rows that LLVM
vectorises:

* `_residual_pass`: the residual Z = U (L_0 R^T) - F row by row, with 1/2 ||Z||_F^2, T = U^T Z and
  V = Z (L_0 R^T)^T accumulated in the same pass, so the d_N x d_0 data F is read once per step and Z is never
  stored (the kernel's BLAS sequence reads or writes a d_N x d_0 matrix five times);
* `_rank_update`: a gradient block op(A) B with inner dimension d_b, the two gradient forms L_j^T M_{j-1} and
  V_j U_{j-1}^T;
* `_times_data`, `_times_data_t`: the two products with the data, L_0 R^T and (U_N^T Z) R (2 x d_0 x d_0
  each); R^T is the Cholesky factor, lower triangular, so the loops read only its triangle.  As dgemm calls
  they took 3 us each, two thirds of a step of the paper's N = 2 network (9 us); as loops 0.8 and 0.6 us.

``fastmath`` allows only reassociation and contraction (FMA), so that the reductions vectorise; NaN and Inf
keep their meaning, which the callers' divergence tests rely on.  Results differ from the BLAS sequence by
rounding only (the tests compare the two to 1e-13 relative).
"""

from __future__ import annotations

from numba import njit

#: the pivot width the loops are written for.  Loops over a runtime d_b (any d_b <= 4) measured 2-4x slower than
#: these (the row is stored and reloaded per term) and no faster than dgemm; other widths keep BLAS.
NARROW = 2

_FM = {"reassoc", "contract"}


@njit(cache=True, nogil=True, fastmath=_FM)
def _residual_pass(dn, d0, u, uo, lr, lo, ff, t, to, want_t, v, vo, want_v):
    """1/2 ||Z||_F^2 for Z = U LR - F with U = u[uo:] (dn x 2), LR = lr[lo:] (2 x d0) and F = ff (dn x d0), all
    C-ordered, Z never stored.  With ``want_t``, T = U^T Z (2 x d0) is written to t[to:] (without it that slot
    is scratch: the loop forms T anyway, one loop body being cheaper in compile time than two); with
    ``want_v``, V = Z LR^T (dn x 2) goes to v[vo:]."""
    l0 = lr[lo : lo + d0]
    l1 = lr[lo + d0 : lo + 2 * d0]
    t0 = t[to : to + d0]
    t1 = t[to + d0 : to + 2 * d0]
    if want_t:
        for j in range(d0):
            t0[j] = 0.0
            t1[j] = 0.0
    s = 0.0
    for i in range(dn):
        fr = ff[i * d0 : (i + 1) * d0]
        u0 = u[uo + 2 * i]
        u1 = u[uo + 2 * i + 1]
        acc = 0.0
        v0 = 0.0
        v1 = 0.0
        for j in range(d0):
            z = u0 * l0[j] + u1 * l1[j] - fr[j]
            acc += z * z
            v0 += z * l0[j]
            v1 += z * l1[j]
            t0[j] += u0 * z
            t1[j] += u1 * z
        if want_v:
            v[vo + 2 * i] = v0
            v[vo + 2 * i + 1] = v1
        s += acc
    return 0.5 * s


@njit(cache=True, nogil=True, fastmath=_FM)
def _rank_update(m, n, a, ao, sa_i, sa_c, b, bo, c, co, base, keep, eta):
    """C = keep X - eta A B into c[co : co + m n] (m x n, C-ordered), X = base[co : co + m n], for an inner
    dimension 2: A (m x 2) has element (i, k) at a[ao + i sa_i + k sa_c] (any strides), B (2 x n) is C-ordered
    at b[bo:].  keep = 1: a gradient step taken as the block is formed; keep = 0, eta = -1: the product A B
    itself, exactly (for a finite X).  Returns ||A B||_F^2 (a gradient block's share of ||grad||^2, for the
    price of a vectorised reduction instead of another pass).  (One loop for both uses: every variant of a loop
    costs compile time at each of its call sites.)"""
    b0 = b[bo : bo + n]
    b1 = b[bo + n : bo + 2 * n]
    s = 0.0
    for i in range(m):
        row = c[co + i * n : co + (i + 1) * n]
        xr = base[co + i * n : co + (i + 1) * n]
        x0 = a[ao + i * sa_i]
        x1 = a[ao + i * sa_i + sa_c]
        acc = 0.0
        for j in range(n):
            x = x0 * b0[j] + x1 * b1[j]
            row[j] = keep * xr[j] - eta * x
            acc += x * x
        s += acc
    return s


@njit(cache=True, nogil=True, fastmath=_FM)
def _times_data(c, d, a, ao, rt, out, oo, lower):
    """out[oo:] = A R^T (2 x c, C-ordered) for A = a[ao:] (2 x d, C-ordered) and the data R^T = ``rt`` (d x c,
    C-ordered), row by row of R^T (an update of both output rows per row of R^T).  With ``lower`` (c = d, R^T
    lower triangular: the Cholesky factor of the full data) only the triangle is read, half the work.  (Four
    rows of R^T per pass measured 7 % faster: not worth the longer loop.)"""
    a0 = a[ao : ao + d]
    a1 = a[ao + d : ao + 2 * d]
    o0 = out[oo : oo + c]
    o1 = out[oo + c : oo + 2 * c]
    for j in range(c):
        o0[j] = 0.0
        o1[j] = 0.0
    for i in range(d):
        hi = i + 1 if lower else c
        r = rt[i * c : i * c + hi]
        x0 = a0[i]
        x1 = a1[i]
        for j in range(hi):
            o0[j] += x0 * r[j]
            o1[j] += x1 * r[j]


@njit(cache=True, nogil=True, fastmath=_FM)
def _times_data_t(c, d, a, ao, rt, out, oo, lower):
    """out[oo:] = A R (2 x d, C-ordered) for A = a[ao:] (2 x c, C-ordered) and R = (R^T)^T, R^T = ``rt`` (d x c,
    C-ordered): element (k, j) is the dot product of row k of A with row j of R^T.  With ``lower`` (c = d, R^T
    lower triangular) only the triangle is read."""
    a0 = a[ao : ao + c]
    a1 = a[ao + c : ao + 2 * c]
    for j in range(d):
        hi = j + 1 if lower else c
        r = rt[j * c : j * c + hi]
        s0 = 0.0
        s1 = 0.0
        for i in range(hi):
            s0 += a0[i] * r[i]
            s1 += a1[i] * r[i]
        out[oo + j] = s0
        out[oo + d + j] = s1


@njit(cache=True, nogil=True)
def _step_block(size, w, g, o, eta):
    """g[o : o + size] = w[o : o + size] - eta g[o : o + size] (a gradient block turned into the next iterate);
    returns the block's ||grad||^2."""
    gb = g[o : o + size]
    wb = w[o : o + size]
    s = 0.0
    for i in range(size):
        x = gb[i]
        s += x * x
        gb[i] = wb[i] - eta * x
    return s


@njit(cache=True, nogil=True)
def _transpose(m, n, a, ao, out, oo):
    """out[oo:] = A^T (n x m, C-ordered) for A = a[ao:] (m x n, C-ordered)."""
    for i in range(m):
        for j in range(n):
            out[oo + j * m + i] = a[ao + i * n + j]
