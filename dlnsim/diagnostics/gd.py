"""State diagnostics of the records of gradient descent (balancedness, ||W_j||^2, singular values of the
product) through the compressed problems of `dlnsim.diagnostics.flow`.

A rank-r balanced start keeps rank r under gradient descent as under the flow: the gradient block of W_j has its
column space in the row space of W_{j+1} and its row space in the column space of W_{j-1}, so at every inner
width the subspace of a balanced start (col W_j = row W_{j+1}) does not move, in exact arithmetic.  Each recorded
state is then a constant "dense output" for `compress_steps` and `step_diagnostics`, with their a posteriori
bounds; the states whose bounds do not close at rounding level (and all of them for layers of higher rank) get
the dense eigenvalue problems of `dlnsim.options.stack_diagnostics`.
"""

from __future__ import annotations

import numpy as np

from dlnsim.diagnostics.dense import stack_diagnostics
from dlnsim.diagnostics.flow import compress_steps, compression_bases, step_diagnostics

__all__ = ["states_diagnostics"]

#: widest bases for which `states_diagnostics` compresses (wider: the dense problems are as cheap)
_K_MAX = 8


def states_diagnostics(states: np.ndarray, dims: np.ndarray, offs: np.ndarray, bal: np.ndarray, lnorm: np.ndarray,
                       sv: np.ndarray) -> None:
    """`record.stack_diagnostics` of a stack of factor states (m, n), into the rows of ``bal``, ``lnorm``,
    ``sv``: through the compressed problems of `step_diagnostics` (bases from the first state, each state a
    constant polynomial), with the same acceptance tests, when the layers have a numerical rank of at most
    `_K_MAX`; the states whose bounds do not close, and all of them otherwise, densely.  The values agree with
    `stack_diagnostics` to rounding (the acceptance tests bound the difference at that level).  All in numpy:
    gradient descent does not wait for the compile of the flow's diagnostic kernel."""
    m = states.shape[0]
    n = len(dims) - 1
    if m == 0 or not (bal.size or lnorm.size or sv.size):
        return
    states = np.ascontiguousarray(states)
    rest = np.arange(m)
    if n >= 2 and np.all(np.isfinite(states[0])):
        Q = compression_bases(states[0], dims, offs)
        if Q[1].shape[1] <= _K_MAX:
            part = compress_steps(states[:, None, :], m, dims, offs, Q, sv.size > 0)
            done = step_diagnostics(part, np.arange(m), np.zeros(m), dims, bal, lnorm, sv)
            rest = np.flatnonzero(~done)
    if rest.size:
        b, ln, s = bal[rest], lnorm[rest], sv[rest]
        stack_diagnostics(states[rest], dims, offs, b, ln, s)
        bal[rest], lnorm[rest], sv[rest] = b, ln, s
