"""State diagnostics of a gradient flow from the dense output of its integrator.

The integrator (`dlnsim._kernels.flow`) hands over, for each step that reaches requested times, the five
vectors (y, r0, r1, r2, r3) of its dense output: the state at position th in [0, 1] of the step is
y + th (r0 + (1 - th) (r1 + th (r2 + (1 - th) r3))) (`dense_output`).  The diagnostics of `dlnsim.options`
(balancedness, ||W_j||^2, singular values of the product) are computed from them here:

* `Steps` / `compress_steps` / `step_diagnostics`: for factor flows, through small compressed problems with
  a posteriori bounds (see `step_diagnostics`), each step formed once and every time at O(k^2) cost;
* `dense_diagnostics`: from the states themselves (`record.stack_diagnostics`), for the times whose bounds
  do not close (their states from a second, identical integration, `states_at`), the times t <= 0, the
  end-to-end flow and N = 1.

`dlnsim.diagnostics.gd` applies the compressed problems to plain states (the records of gradient descent).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from dlnsim._kernels import flow as _fk
from dlnsim._kernels.args import FlowRecords, FlowWork
from dlnsim._kernels.flow_diag import _compress
from dlnsim.diagnostics.dense import layers_of, stack_diagnostics

__all__ = ["Steps", "compress_steps", "dense_diagnostics", "dense_output", "join_steps", "states_at",
           "step_diagnostics"]


def dense_output(poly: np.ndarray, slot: np.ndarray, th: np.ndarray) -> np.ndarray:
    """The states y + th (r0 + (1 - th) (r1 + th (r2 + (1 - th) r3))) of the dense output ``poly[slot]`` =
    (y, r0, r1, r2, r3) of the integrator (`dlnsim._kernels.flow`), one row per time."""
    p = poly[slot]
    t = th[:, None]
    t1 = 1.0 - t
    return np.asarray(p[:, 0] + t * (p[:, 1] + t1 * (p[:, 2] + t * (p[:, 3] + t1 * p[:, 4]))))


# ------------------------------------------------- state diagnostics from the dense output of an integrator

#: singular values below this fraction of the largest are left out of the bases of `compress_steps`
_RANK_TOL = 1e-10
_EPS = float(np.finfo(float).eps)


def _monomials() -> np.ndarray:
    """(9, 25): the coefficients of th^0..th^8 in the products c_p(th) c_q(th) (column 5 p + q) of the weights
    of the dense output, c = (1, th, th (1 - th), th^2 (1 - th), th^2 (1 - th)^2)."""
    P = np.polynomial.polynomial
    c = [[1.0], [0.0, 1.0], [0.0, 1.0, -1.0], [0.0, 0.0, 1.0, -1.0], [0.0, 0.0, 1.0, -2.0, 1.0]]
    out = np.zeros((9, 25))
    for p in range(5):
        for q in range(5):
            prod = P.polymul(c[p], c[q])
            out[: prod.size, 5 * p + q] = prod
    return out


#: see `_monomials`: the Gram matrices of a step as polynomials of degree 8 in th
_MONO = _monomials()
#: the acceptance tests of `step_diagnostics`, in eps: per d_j (||A||_F^2 + ||B||_F^2) for the balancedness, per
#: ||W_j||_F^2 for ||W_j||^2, per N d_max prod_j ||W_j|| for the singular values
_TOL = np.array([1.0, 4.0, 4.0])


def compression_bases(w: np.ndarray, dims: np.ndarray, offs: np.ndarray) -> dict[int, np.ndarray]:
    """For each inner width j = 1..N-1 an orthonormal basis of the numerically nonzero part of
    row(W_{j+1}) + col(W_j) at the state ``w``, as a (d_j x K) matrix whose columns beyond its k_j basis
    vectors are zero (K = max_j k_j, so that all compressed matrices have K columns)."""
    W = [a[0] for a in layers_of(w[None], dims, offs)]
    vecs = {}
    for j in range(1, len(W)):
        _, s, vt = np.linalg.svd(np.concatenate([W[j], W[j - 1].T], axis=0), full_matrices=False)
        k = int(np.sum(s > _RANK_TOL * s[0])) if s[0] > 0 else 0
        vecs[j] = vt[: max(k, 1)].T
    K = max(v.shape[1] for v in vecs.values())
    Q = {}
    for j, v in vecs.items():
        Q[j] = np.zeros((v.shape[0], K))
        Q[j][:, : v.shape[1]] = v
    return Q


def _eig_ends(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Smallest and largest eigenvalues of a stack of symmetric k x k matrices (closed form for k <= 2)."""
    k = g.shape[-1]
    if k == 1:
        return g[..., 0, 0], g[..., 0, 0]
    if k == 2:
        mid = 0.5 * (g[..., 0, 0] + g[..., 1, 1])
        rad = np.hypot(0.5 * (g[..., 0, 0] - g[..., 1, 1]), 0.5 * (g[..., 0, 1] + g[..., 1, 0]))
        return mid - rad, mid + rad
    # NaN for matrices with non-finite entries (LAPACK refuses them), so that their bounds never close
    g = 0.5 * (g + np.swapaxes(g, -1, -2))
    fin = np.all(np.isfinite(g), axis=(-2, -1))
    ev = np.full(g.shape[:-1], np.nan)
    ev[fin] = np.linalg.eigvalsh(g[fin])
    return ev[..., 0], ev[..., -1]


def _r_factor(y: np.ndarray) -> np.ndarray:
    """A k x k triangular T with the singular values of each y (m, r, k), r >= k (QR; Gram-Schmidt twice for
    k <= 2)."""
    k = y.shape[2]
    if k > 2:
        return np.asarray(np.linalg.qr(y, mode="r"))
    t = np.zeros((y.shape[0], k, k))
    a = y[:, :, 0]
    t[:, 0, 0] = r11 = np.sqrt(np.einsum("ti,ti->t", a, a))
    if k == 2:
        q = a / np.where(r11 > 0.0, r11, 1.0)[:, None]
        v = y[:, :, 1]
        r12 = np.einsum("ti,ti->t", q, v)
        v = v - r12[:, None] * q
        s = np.einsum("ti,ti->t", q, v)
        v -= s[:, None] * q
        t[:, 0, 1] = r12 + s
        t[:, 1, 1] = np.sqrt(np.einsum("ti,ti->t", v, v))
    return t


def _mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b for stacks of small matrices (written out for 2 x 2: numpy's matmul pays per matrix)."""
    if a.shape[1:] == (2, 2) and b.shape[1:] == (2, 2):
        out = np.empty_like(b)
        for i in range(2):
            for j in range(2):
                out[:, i, j] = a[:, i, 0] * b[:, 0, j] + a[:, i, 1] * b[:, 1, j]
        return out
    return np.asarray(a @ b)


def _per_step(step: np.ndarray, weights: tuple[np.ndarray, ...], coef: tuple[np.ndarray, ...]) -> list[np.ndarray]:
    """For each pair, row t of ``weights[i] @ coef[i][step[t]]``, with ``step`` non-decreasing: one batched
    product over the steps (times padded to the largest count per step when that costs at most twice the
    work), else one product per step."""
    m = step.size
    edges = np.concatenate([[0], np.flatnonzero(np.diff(step)) + 1, [m]])
    counts = np.diff(edges)
    out = [np.empty((m, cf.shape[2])) for cf in coef]
    width = int(counts.max())
    if counts.size * width <= 2 * m:
        pos = np.arange(m) - np.repeat(edges[:-1], counts)
        which = np.repeat(np.arange(counts.size), counts)
        for o, w, cf in zip(out, weights, coef, strict=True):
            pad = np.zeros((counts.size, width, w.shape[1]))
            pad[which, pos] = w
            o[:] = (pad @ cf[step[edges[:-1]]])[which, pos]
        return out
    for a, b in itertools.pairwise(edges):
        for o, w, cf in zip(out, weights, coef, strict=True):
            o[a:b] = w[a:b] @ cf[step[a]]
    return out


def _singular_values(a: np.ndarray) -> np.ndarray:
    """Singular values (decreasing) of a stack of k x k matrices (closed form for k <= 2)."""
    k = a.shape[1]
    if k == 1:
        return np.asarray(np.abs(a[:, :, 0]))
    if k == 2:
        sp = np.hypot(a[:, 0, 0] + a[:, 1, 1], a[:, 1, 0] - a[:, 0, 1])
        sm = np.hypot(a[:, 0, 0] - a[:, 1, 1], a[:, 1, 0] + a[:, 0, 1])
        return np.stack([0.5 * (sp + sm), 0.5 * np.abs(sp - sm)], axis=1)
    return np.asarray(np.linalg.svd(a, compute_uv=False))


def _frob(a: np.ndarray) -> np.ndarray:
    """Frobenius norms over the last two axes."""
    return np.asarray(np.sqrt(np.einsum("...ij,...ij->...", a, a)))


def _triangular(x: np.ndarray) -> np.ndarray:
    """For x (S, 5, rows, K): per step the triangular factor T of [X_0 ... X_4] = U T (orthonormal U), as the
    coefficients (S, 5, r K) of the r x K matrices T_p with X(c) = U sum_p c_p T_p."""
    S, _, rows, K = x.shape
    t = np.asarray(np.linalg.qr(np.swapaxes(x, 1, 2).reshape(S, rows, 5 * K), mode="r"))
    return t.reshape(S, t.shape[1], 5, K).transpose(0, 2, 1, 3).reshape(S, 5, -1)


def compress_steps(poly: np.ndarray, n_slots: int, dims: np.ndarray, offs: np.ndarray, Q: dict[int, np.ndarray],
                   with_sv: bool) -> dict[str, Any]:
    """Per step, what `step_diagnostics` needs of the dense output ``poly[:n_slots]`` of a factor flow (see
    there): the Gram matrices of the compressed layers as polynomials in th (``gram``, (S, 9, (2N - 2) K^2),
    the coefficients of th^0..th^8, see `_monomials`), the linear pieces of
    the product (``lin``, (S, 5, .)), the residual norms (``res``, (S, 5, 2N - 2)), the overflow guard
    (``safe``, (S,)) and the largest residual relative to its block (``worst``), with the bases ``Q``.

    ``poly`` may also hold plain states, (S, 1, n): the state of slot s at every th (the polynomials are
    constant; the gradient-descent records)."""
    n = len(dims) - 1
    npoly = poly.shape[1]
    d = [int(x) for x in dims]
    K = Q[1].shape[1]
    nk = 2 * n - 2  # compressed matrices: R_2..R_N, then L_1..L_{N-1}
    XR: dict[Any, np.ndarray] = {}
    XL: dict[int, np.ndarray] = {}
    grams: dict[tuple[str, int], np.ndarray] = {}
    nres = np.zeros((n_slots, 5, nk))
    vnorm = np.zeros((n_slots, 5, n))
    with np.errstate(all="ignore"):
        for j in range(1, n + 1):
            qrt = np.ascontiguousarray(Q[j - 1].T) if j >= 2 else np.zeros((0, d[j - 1]))
            ql = Q[j] if j <= n - 1 else np.zeros((d[j], 0))
            # (zeros for the vectors p >= npoly: the pieces of a constant polynomial)
            xr = np.zeros((n_slots, 5, d[j] * qrt.shape[0]))
            xl = np.zeros((n_slots, 5, ql.shape[1] * d[j - 1]))
            res = np.zeros((n_slots, 5))
            gr = np.empty((n_slots, npoly * npoly, qrt.shape[0] ** 2))
            gl = np.empty((n_slots, npoly * npoly, ql.shape[1] ** 2))
            if npoly == 1:  # plain states: numpy, as fast here, and gradient descent waits for no compile
                _compress_np(poly, n_slots, int(offs[j - 1]), d[j], d[j - 1], qrt, ql, xr, xl, res, gr, gl)
            else:
                _compress(poly, n_slots, int(offs[j - 1]), d[j], d[j - 1], qrt, ql, xr, xl, res, gr, gl)
            if npoly == 1:  # as the 5 x 5 blocks of the dense output, with V_1..V_4 = 0
                gr, gl = (np.concatenate([g, np.zeros((n_slots, 24, g.shape[2]))], axis=1) for g in (gr, gl))
            grams["R", j], grams["L", j] = gr, gl
            if j <= n - 1:
                XL[j] = xl.reshape(n_slots, 5, K, d[j - 1])
            if j >= 2:
                XR[j] = xr.reshape(n_slots, 5, d[j], K)
                nres[:, :, j - 2] = res
                vnorm[:, :, j - 1] = np.sqrt(_frob(XR[j]) ** 2 + res**2)
                if j <= n - 1:  # left residual <= that of R_j plus the right one
                    XR[j, "inner"] = inner = np.swapaxes(Q[j], 0, 1) @ XR[j]  # Q_j^T W_j Q_{j-1}
                    nres[:, :, n - 2 + j] = _frob(XR[j] - Q[j] @ inner) + res
            else:  # the first layer: its left residual directly
                v = poly[:n_slots, :, offs[0]:offs[1]].reshape(n_slots, npoly, d[1], d[0])
                nres[:, :npoly, n - 1] = rl = _frob(v - Q[1] @ XL[1][:, :npoly])
                vnorm[:, :npoly, 0] = np.sqrt(_frob(XL[1][:, :npoly]) ** 2 + rl**2)
        # overflow guard of `_diag_safe` per step, with max |W_j(th)| <= ||W_j(th)||_F <= sum_p ||V_p||_F
        big = vnorm.sum(axis=1) * float(max(d))
        safe = np.all(np.isfinite(big), axis=1) & (np.where(big > 1.0, np.log10(np.maximum(big, 1.0)), 0.0)
                                                   .sum(axis=1) < 150.0)
        # the residual of each step relative to its state, for the caller's choice of bases
        worst = float(np.max(nres[:, :, : n - 1].sum(axis=1) / np.maximum(vnorm[:, 0, 1:], np.finfo(float).tiny),
                             initial=0.0))
        gram = np.concatenate([grams["R", j] for j in range(2, n + 1)] + [grams["L", j] for j in range(1, n)],
                              axis=2)
        gram = np.ascontiguousarray(np.einsum("rk,skg->srg", _MONO, gram))  # as polynomials in th
        lin = []
        if with_sv:
            lin = [_triangular(XR[n]), _triangular(np.swapaxes(XL[1], 2, 3))]
            lin += [XR[j, "inner"].reshape(n_slots, 5, K * K) for j in range(2, n)]
    return {"K": K, "gram": gram, "lin": np.concatenate(lin, axis=2) if lin else np.zeros((n_slots, 5, 0)),
            "res": nres, "safe": safe, "worst": worst if np.isfinite(worst) else np.inf}


def _compress_np(poly: np.ndarray, n_slots: int, lo: int, rows: int, cols: int, qrt: np.ndarray, ql: np.ndarray,
                 xr: np.ndarray, xl: np.ndarray, res: np.ndarray, gr: np.ndarray, gl: np.ndarray) -> None:
    """`_compress` in numpy, for any number P of vectors per slot (``poly`` (S, P, n)), a block of slots at a
    time (each block's layer data stays in cache: the residual of all slots at once ran 5x slower).  For plain
    states (P = 1) as fast as the Numba kernel, without its compile time; for the five vectors of a flow's dense
    output the kernel's one pass is faster."""
    npoly = poly.shape[1]
    kr, kl = qrt.shape[0], ql.shape[1]
    block = max(1, 32768 // max(npoly * rows * cols, 1))  # slots per block: <= 256 kB of layer data
    for a in range(0, n_slots, block):
        b = min(n_slots, a + block)
        c = b - a
        v = np.ascontiguousarray(poly[a:b, :, lo:lo + rows * cols]).reshape(c, npoly, rows, cols)
        x_r = v @ qrt.T  # (c, P, rows, kr)
        x_l = ql.T @ v  # (c, P, kl, cols)
        xr[a:b, :npoly] = x_r.reshape(c, npoly, rows * kr)
        xl[a:b, :npoly] = x_l.reshape(c, npoly, kl * cols)
        # the residual formed explicitly (a difference of norms would cancel), one product for the block
        d = v.reshape(c * npoly * rows, cols) - x_r.reshape(c * npoly * rows, kr) @ qrt
        res[a:b, :npoly] = np.sqrt(np.einsum("ij,ij->i", d, d).reshape(c, npoly, rows).sum(axis=2))
        for x, out, k in ((np.swapaxes(x_r, 2, 3), gr, kr), (x_l, gl, kl)):  # x: (c, P, k, len)
            if k == 0:
                continue
            flat = x.reshape(c, npoly * k, -1)
            g = (flat @ np.swapaxes(flat, 1, 2)).reshape(c, npoly, k, npoly, k)
            out[a:b] = np.swapaxes(g, 2, 3).reshape(c, npoly * npoly, k * k)


def join_steps(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """`compress_steps` of consecutive buffers (same K) as one."""
    return {"K": parts[0]["K"], "worst": max(p["worst"] for p in parts),
            **{key: np.concatenate([p[key] for p in parts]) for key in ("gram", "lin", "res", "safe")}}


def step_diagnostics(steps: dict[str, Any], slot: np.ndarray, th: np.ndarray, dims: np.ndarray, bal: np.ndarray,
                     lnorm: np.ndarray, sv: np.ndarray) -> np.ndarray:
    """The state diagnostics (as `stack_diagnostics`) of a factor flow at the dense-output states of step
    ``slot`` at positions ``th`` (see `dense_output`), from `compress_steps`, through small compressed
    problems; returns the mask of the times done (the others are left as they are).

    The layers of a deep linear network often have a low numerical rank (a rank-r balanced start keeps rank
    r along the flow).  With orthonormal bases Q_j of the inner widths (`compression_bases`), every diagnostic of W_j
    comes from R_j = W_j Q_{j-1} (d_j x k) and L_j = Q_j^T W_j (k x d_{j-1}), linear in the five dense-output
    vectors of a step: their Gram matrices are quadratic forms in the five weights of a time, formed once per
    step, so each time costs O(k^2) work:

    * ||W_j||^2 >= lambda_max(R_j^T R_j) and <= that + rho^2, rho = ||W_j (I - Q Q^T)||_F;
    * the balancedness D_j = A^T A - B B^T (A = W_{j+1}, B = W_j): Q^T D_j Q = R_{j+1}^T R_{j+1} - L_j L_j^T,
      whose norm bounds ||D_j|| from below; from above, the 2 x 2 bound of a symmetric block matrix with
      off-diagonal block norm <= rho_A ||A Q|| + rho_B ||Q^T B|| and the far block within
      [-rho_B^2, rho_A^2];
    * the product W_N ... W_1 next to R_N (Q_{N-1}^T R_{N-1}) ... (Q_2^T R_2) L_1, which differs from it by
      at most sum_j rho_{j+1} prod_{i != j+1} ||W_i|| (Weyl: the singular values differ by no more); its
      singular values from the triangular factors of R_N and L_1^T.

    The residual norms rho are formed explicitly per step (for W_j, j >= 2, the left one is bounded by that of
    R_j plus the right one) and bounded over a step by the triangle inequality.  A time is done when every gap
    between bounds is at rounding level (d_j eps (||A||_F^2 + ||B||_F^2) for the balancedness,
    4 eps ||W_j||_F^2 for ||W_j||^2, 4 N d_max eps prod ||W_i|| for the singular values, about the rounding of
    the dense computation) and its states pass the overflow guard of `_diag_safe` (with ||W_j||_F for
    max |W_j|).
    """
    m = slot.size
    n = len(dims) - 1
    d = [int(x) for x in dims]
    K = steps["K"]
    nk = 2 * n - 2
    gall, lall = steps["gram"], steps["lin"]
    # (vectorised over the times; closed forms for K <= 2.  A compiled time-by-time version measured no faster
    # at 20 000 times and cost ~3 s of compile time on a first call.)
    with np.errstate(all="ignore"):
        # the five weights, one product per step for the Gram matrices and the linear pieces
        t = th[:, None]
        t1 = 1.0 - t
        c = np.concatenate([np.ones_like(t), t, t * t1, t * t * t1, t * t * t1 * t1], axis=1)
        powers = t ** np.arange(9)
        gv, lv = _per_step(slot, (powers, c), (gall, lall))
        G = gv.reshape(m, nk, K, K)
        rho = np.einsum("tp,tpk->tk", np.abs(c), steps["res"][slot])
        r2 = rho**2
        tr = np.trace(G, axis1=2, axis2=3)
        hi = _eig_ends(G)[1]
        ok: np.ndarray = steps["safe"][slot].copy()
        # ||W_j||^2 from R_j (j >= 2) and L_1
        il = [n - 1, *range(n - 1)]
        a_ln, r2_ln = hi[:, il], r2[:, il]
        ub_norm = np.sqrt(np.maximum(a_ln, 0.0) + r2_ln)
        if lnorm.size:
            ok &= np.all(r2_ln <= _TOL[1] * _EPS * (tr[:, il] + r2_ln), axis=1)
        if bal.size:  # pairs j = 1..N-1: A = W_{j+1} (key R_{j+1}), B = W_j (key L_j)
            iA, iB = slice(0, n - 1), slice(n - 1, nk)
            lo_h, hi_h = _eig_ends(G[:, iA] - G[:, iB])
            nA2, nB2, rA2, rB2 = tr[:, iA], tr[:, iB], r2[:, iA], r2[:, iB]
            e = rho[:, iA] * np.sqrt(np.maximum(nA2, 0.0)) + rho[:, iB] * np.sqrt(np.maximum(nB2, 0.0))
            ub = 0.5 * (hi_h + rA2) + np.hypot(0.5 * (hi_h - rA2), e)
            lb = 0.5 * (lo_h - rB2) - np.hypot(0.5 * (lo_h + rB2), e)
            bal_v = np.maximum(np.abs(hi_h), np.abs(lo_h))
            tol = _TOL[0] * np.array(d[1:n], dtype=float) * _EPS * (nA2 + rA2 + nB2 + rB2)
            ok &= np.all(np.maximum(ub, -lb) - bal_v <= tol, axis=1)
        if sv.size:
            nR = min(d[n], 5 * K) * K
            nL = min(d[0], 5 * K) * K
            tR = _r_factor(lv[:, :nR].reshape(m, -1, K))
            mid = np.swapaxes(_r_factor(lv[:, nR:nR + nL].reshape(m, -1, K)), 1, 2)
            col = nR + nL
            for _ in range(2, n):  # Q_j^T W_j Q_{j-1}, j = 2..N-1, from the left onto T_L^T
                mid = _mul(lv[:, col:col + K * K].reshape(m, K, K), mid)
                col += K * K
            s = _singular_values(_mul(tR, mid))
            # ||W - W_c|| <= sum_j rho(R_{j+1}) prod_{i != j+1} ||W_i||
            bound = np.zeros(m)
            for j in range(1, n):
                bound += rho[:, j - 1] * np.prod(ub_norm[:, :j], axis=1) * np.prod(ub_norm[:, j + 1:], axis=1)
            ok &= bound <= _TOL[2] * n * max(d) * _EPS * np.prod(ub_norm, axis=1)
            k = min(sv.shape[1], s.shape[1])
            sv[ok, :k] = s[ok, :k]
            sv[ok, k:] = 0.0
    if lnorm.size:
        lnorm[ok] = a_ln[ok]
    if bal.size:
        bal[ok] = bal_v[ok]
    return ok


class Steps:
    """The compressed dense output of the steps of one run (`record.compress_steps`), batch by batch, and the
    step of each time; `finish` evaluates the diagnostics of all times at once."""

    def __init__(self, dims: np.ndarray, offs: np.ndarray, n_t: int, with_sv: bool) -> None:
        self.dims, self.offs, self.with_sv = dims, offs, with_sv
        self.Q: dict[int, np.ndarray] | None = None
        self.parts: list[dict[str, Any]] = []  # batches since `first` with the same K
        self.first = 0
        self.segments: list[tuple[int, dict[str, Any]]] = []  # (first step, joined batches)
        self.n_steps = 0
        self.step = np.full(n_t, -1, dtype=np.int64)  # global step of each time (-1: none)
        self.rows: list[np.ndarray] = []  # the times waiting for `finish`

    def add(self, poly: np.ndarray, used: int, slot: np.ndarray, rows: np.ndarray) -> bool:
        """Compress the ``used`` slots of ``poly`` for the times ``rows`` (in slots ``slot``); False when they
        cannot be compressed (the caller computes them from their states)."""
        if used:
            if not np.all(np.isfinite(poly[0, 0])):
                return False
            reused = self.Q is not None
            if self.Q is None:
                self.Q = compression_bases(poly[0, 0], self.dims, self.offs)
            part = compress_steps(poly, used, self.dims, self.offs, self.Q, self.with_sv)
            if reused and part["worst"] > 1e-12:  # the layers left the old bases: new ones
                self.Q = compression_bases(poly[0, 0], self.dims, self.offs)
                part = compress_steps(poly, used, self.dims, self.offs, self.Q, self.with_sv)
            if self.parts and self.parts[-1]["K"] != part["K"]:
                self._close()
            self.parts.append(part)
        at = slot >= 0
        self.step[rows[at]] = slot[at] + self.n_steps
        self.n_steps += used
        self.rows.append(rows)
        return True

    def _close(self) -> None:
        if self.parts:
            self.segments.append((self.first, join_steps(self.parts)))
            self.first += sum(int(p["safe"].size) for p in self.parts)
            self.parts = []

    def finish(self, th: np.ndarray, bal: np.ndarray, ln: np.ndarray, sv: np.ndarray) -> np.ndarray:
        """Evaluate the waiting times; returns those left (t <= 0 and those whose bounds did not close)."""
        self._close()
        rows = np.concatenate(self.rows) if self.rows else np.zeros(0, dtype=np.int64)
        step = self.step[rows]
        done = np.zeros(rows.size, dtype=bool)
        for first, seg in self.segments:
            sel = np.flatnonzero((step >= first) & (step < first + seg["safe"].size))
            if sel.size:
                r = rows[sel]
                b, lnr, s = bal[r], ln[r], sv[r]
                done[sel] = step_diagnostics(seg, step[sel] - first, th[r], self.dims, b, lnr, s)
                bal[r], ln[r], sv[r] = b, lnr, s
        return np.asarray(rows[~done])


def states_at(kernel: Any, args: tuple[Any, ...], y0: np.ndarray, t: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """The states at the times ``idx`` (increasing, t > 0) from a second integration with the settings of
    ``args``: the same steps (the kernel is deterministic, and the steps depend only on the settings and the
    last requested time)."""
    _, data, layout, controls, _ = args
    keep = np.full(t.size, -1, dtype=np.int64)  # all the times: the last one sets the steps
    keep[idx] = np.arange(idx.size)
    states = np.full((idx.size, y0.size), np.nan)
    quiet = controls._replace(with_loss=False, with_grad=False)
    work = FlowWork(y0.copy(), np.empty((7, y0.size)), np.zeros(_fk.N_ISTATS, dtype=np.int64),
                    np.zeros(_fk.N_FSTATS))
    records = FlowRecords(keep, states, np.full((_fk.N_REC, t.size), np.nan), np.full(t.size, -1, dtype=np.int64),
                          np.empty((0, 5, y0.size)))
    kernel(work, data, layout, quiet, records)
    return states


def dense_diagnostics(e2e: bool, bal: np.ndarray, ln: np.ndarray, sv: np.ndarray, y0: np.ndarray,
                      poly: np.ndarray | None, slot: np.ndarray, th: np.ndarray, excess: np.ndarray, dims: np.ndarray,
                      offs: np.ndarray, rows: np.ndarray, states_at: Any = None) -> None:
    """The state diagnostics of the times ``rows`` from their states, into the rows of ``bal``, ``ln``, ``sv``:
    the initial state ``y0`` for t <= 0 (``slot`` < 0), else the dense output in ``poly`` (positions ``th``)
    or, without it, ``states_at(rows)`` (a second integration: in batches of up to 64 MiB of states).  For
    the end-to-end flow (``e2e``) the singular values of the product (NaN where ``excess`` is not finite)."""
    at0 = rows[slot[rows] < 0]
    rest = rows[slot[rows] >= 0]
    batch = max(256, 2**23 // max(y0.size, 1)) if poly is None else 256
    for chunk in [at0] + [rest[a:a + batch] for a in range(0, rest.size, batch)]:
        if not chunk.size:
            continue
        if chunk is at0:
            states = np.broadcast_to(y0, (chunk.size, y0.size))
        elif poly is not None:
            states = dense_output(poly, slot[chunk], th[chunk])
        else:
            states = states_at(chunk)
        for a in range(0, chunk.size, 256):  # diagnostics of at most 256 states at once
            part = chunk[a:a + 256]
            st = np.ascontiguousarray(states[a:a + 256])
            if e2e:
                sv[part] = _product_sv_e2e(st, dims, sv.shape[1], excess[part])
            else:
                b, lnp, s = bal[part], ln[part], sv[part]
                stack_diagnostics(st, dims, offs, b, lnp, s)
                bal[part], ln[part], sv[part] = b, lnp, s


def _product_sv_e2e(states: np.ndarray, dims: np.ndarray, n_sv: int, excess: np.ndarray) -> np.ndarray:
    """Top singular values of the end-to-end states (NaN where the loss is not finite)."""
    out = np.full((states.shape[0], n_sv), np.nan)
    ok = np.isfinite(excess) & np.all(np.isfinite(states), axis=1)
    if n_sv and np.any(ok):
        s = np.linalg.svd(states[ok].reshape(-1, int(dims[-1]), int(dims[0])), compute_uv=False)
        out[ok] = s[:, :n_sv]
    return out
