"""State diagnostics in numpy, dense: balancedness ||W_{j+1}^T W_{j+1} - W_j W_j^T|| (spectral) per pair,
||W_j||^2 per layer and the singular values of the product W_N ... W_1, at one flat state (`state_diagnostics`)
or at a stack of states at once (`stack_diagnostics`).  The compressed versions for low-rank layers are in
`dlnsim.diagnostics.flow` and `dlnsim.diagnostics.gd`; they fall back on these."""

from __future__ import annotations

import numpy as np

__all__ = ["layers_of", "stack_diagnostics", "state_diagnostics"]


def _diag_safe(w: np.ndarray, dims: np.ndarray, offs: np.ndarray) -> bool:
    """True when the diagnostics of ``w`` cannot overflow (all finite, and sum_j log10(d_max max|W_j|) over
    the layers where it is positive below 150: Gram matrices and products of layers stay below 1e150)."""
    if not np.all(np.isfinite(w)):
        return False
    dmax = float(max(dims))
    total = 0.0
    for j in range(len(dims) - 1):
        m = float(np.max(np.abs(w[offs[j]:offs[j + 1]]), initial=0.0)) * dmax
        if m > 1.0:
            total += float(np.log10(m))
    return total < 150.0


def state_diagnostics(w: np.ndarray, dims: np.ndarray, offs: np.ndarray, bal: np.ndarray, lnorm: np.ndarray,
                 sv: np.ndarray) -> None:
    """Balancedness per pair, ||W_j||^2 per layer and the top singular values of the product, at one state,
    into the outputs that have entries (left as they are when the state could overflow)."""
    if not _diag_safe(w, dims, offs):
        return
    n = len(dims) - 1
    W = [w[offs[j]:offs[j + 1]].reshape(int(dims[j + 1]), int(dims[j])) for j in range(n)]
    if lnorm.size:
        for j in range(n):
            gram = W[j] @ W[j].T if dims[j + 1] <= dims[j] else W[j].T @ W[j]
            lnorm[j] = np.linalg.eigvalsh(gram)[-1]
    if bal.size:
        for j in range(n - 1):
            D = W[j + 1].T @ W[j + 1] - W[j] @ W[j].T
            ev = np.linalg.eigvalsh(0.5 * (D + D.T))
            bal[j] = max(abs(ev[0]), abs(ev[-1]))
    if not sv.size:
        return
    # product through the narrowest layer b: W = up @ low with up (d_N, d_b), low (d_b, d_0); the nonzero
    # singular values are those of R_up R_low^T (QR factors), which keeps small singular values accurate
    b = int(np.argmin(dims))
    low = np.eye(int(dims[0]))
    for j in range(b):
        low = W[j] @ low
    up = np.eye(int(dims[b]))
    for j in range(b, n):
        up = W[j] @ up
    if 0 < b < n:
        r_up = np.asarray(np.linalg.qr(up, mode="r"))
        r_low = np.asarray(np.linalg.qr(low.T, mode="r"))
        small = r_up @ r_low.T
    else:
        small = up @ low
    s = np.linalg.svd(small, compute_uv=False)
    sv[:] = 0.0
    sv[: min(sv.size, s.size)] = s[: sv.size]


# ------------------------------------------------------------------ state diagnostics of many states (numpy)


def layers_of(states: np.ndarray, dims: np.ndarray, offs: np.ndarray) -> list[np.ndarray]:
    """The layers of a stack of flat states (m, n): W_j as an (m, d_j, d_{j-1}) view."""
    m = states.shape[0]
    return [states[:, offs[j]:offs[j + 1]].reshape(m, int(dims[j + 1]), int(dims[j])) for j in range(len(dims) - 1)]


def _safe_rows(states: np.ndarray, dims: np.ndarray, offs: np.ndarray) -> np.ndarray:
    """`_diag_safe` of each row of ``states``."""
    with np.errstate(all="ignore"):
        total = np.zeros(states.shape[0])
        for a in layers_of(states, dims, offs):
            mx = np.max(np.abs(a.reshape(a.shape[0], -1)), axis=1, initial=0.0) * float(max(dims))
            total += np.where(mx > 1.0, np.log10(np.maximum(mx, 1.0)), 0.0)
        return np.asarray(np.all(np.isfinite(states), axis=1) & (total < 150.0), dtype=bool)


def _sym_norm(a: np.ndarray) -> np.ndarray:
    """Spectral norms of a stack of symmetric matrices (symmetrised first)."""
    ev = np.linalg.eigvalsh(0.5 * (a + np.swapaxes(a, -1, -2)))
    return np.maximum(np.abs(ev[..., 0]), np.abs(ev[..., -1]))


def stack_diagnostics(states: np.ndarray, dims: np.ndarray, offs: np.ndarray, bal: np.ndarray, lnorm: np.ndarray,
                      sv: np.ndarray) -> None:
    """`state_diagnostics` of a stack of flat factor states (m, n) at once, into the rows of ``bal``,
    ``lnorm``, ``sv`` (those with columns; rows of states that could overflow are left as they are)."""
    ok = _safe_rows(states, dims, offs)
    if not np.any(ok) or not (bal.size or lnorm.size or sv.size):
        return
    W = layers_of(np.ascontiguousarray(states[ok]), dims, offs)
    n = len(W)
    T = np.swapaxes
    if lnorm.size:
        lnorm[ok] = np.stack([np.linalg.eigvalsh(a @ T(a, 1, 2) if a.shape[1] <= a.shape[2] else T(a, 1, 2) @ a)[:, -1]
                              for a in W], axis=1)
    if bal.size and n > 1:
        bal[ok] = np.stack([_sym_norm(T(W[j + 1], 1, 2) @ W[j + 1] - W[j] @ T(W[j], 1, 2)) for j in range(n - 1)],
                           axis=1)
    if sv.size:
        sv[ok] = _product_sv(W, dims, sv.shape[1])


def _product_sv(W: list[np.ndarray], dims: np.ndarray, n_sv: int) -> np.ndarray:
    """The top ``n_sv`` singular values of W_N ... W_1 for stacks of layers, through the narrowest layer b as in
    `state_diagnostics` (the nonzero ones are those of R_up R_low^T, QR factors of the two parts)."""
    m, n = W[0].shape[0], len(W)
    b = int(np.argmin(dims))
    low = np.broadcast_to(np.eye(int(dims[0])), (m, int(dims[0]), int(dims[0])))
    for j in range(b):
        low = W[j] @ low
    up = np.broadcast_to(np.eye(int(dims[b])), (m, int(dims[b]), int(dims[b])))
    for j in range(b, n):
        up = W[j] @ up
    if 0 < b < n:
        small = np.linalg.qr(up, mode="r") @ np.swapaxes(np.linalg.qr(np.swapaxes(low, 1, 2), mode="r"), 1, 2)
    else:
        small = up @ low
    s = np.linalg.svd(small, compute_uv=False)
    out = np.zeros((m, n_sv))
    k = min(n_sv, s.shape[1])
    out[:, :k] = s[:, :k]
    return out
