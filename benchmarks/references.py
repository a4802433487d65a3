"""Reference GD implementations that a researcher would write instead of using dlnsim.

Both compute exactly the trajectory of (2.1) with the loss 1/2 ||Y - W_N ... W_1 X||_F^2:

* `numpy_plain`: products with X and Y every step (the notebook formulation);
* `numpy_strong`: X X^T and Y X^T precomputed, prefix/suffix products with a fixed left-to-right association
  (the strong baseline of the GD benchmark).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def numpy_plain(X: np.ndarray, Y: np.ndarray, W0: Sequence[np.ndarray], eta: float, n_iter: int) -> np.ndarray:
    """Losses L(W(0)), ..., L(W(n_iter)) with the data touched every step."""
    W = [Wj.copy() for Wj in W0]
    n = len(W)
    losses = np.empty(n_iter + 1)
    for k in range(n_iter + 1):
        acts = [X]  # forward pass: W_{j:1} X
        for Wj in W:
            acts.append(Wj @ acts[-1])
        R = acts[-1] - Y
        losses[k] = 0.5 * float(np.sum(R * R))
        if k == n_iter:
            break
        back = R  # W_{N:j+1}^T R, then grad_j = back @ (W_{j-1:1} X)^T
        grads = [np.empty(0)] * n
        for j in range(n - 1, -1, -1):
            grads[j] = back @ acts[j].T
            back = W[j].T @ back
        for j in range(n):
            W[j] -= eta * grads[j]
    return losses


def numpy_strong(
    XXt: np.ndarray, YXt: np.ndarray, yy: float, W0: Sequence[np.ndarray], eta: float, n_iter: int
) -> np.ndarray:
    """Losses with C = X X^T, E = Y X^T precomputed and prefix/suffix products (yy = ||Y||_F^2)."""
    W = [Wj.copy() for Wj in W0]
    n = len(W)
    losses = np.empty(n_iter + 1)
    for k in range(n_iter + 1):
        pre = [np.eye(XXt.shape[0])]  # pre[j] = W_{j:1}
        for Wj in W:
            pre.append(Wj @ pre[-1])
        suf = [np.eye(YXt.shape[0])]  # suf[i] = W_{N:N-i+1}
        for Wj in reversed(W):
            suf.append(suf[-1] @ Wj)
        P = pre[n]
        PC = P @ XXt
        losses[k] = 0.5 * float(np.sum(PC * P)) - float(np.sum(YXt * P)) + 0.5 * yy
        if k == n_iter:
            break
        G = PC - YXt
        for j in range(n):
            # grad_{j+1} = W_{N:j+2}^T G W_{j:1}^T
            W[j] -= eta * (suf[n - j - 1].T @ G @ pre[j].T)
    return losses
