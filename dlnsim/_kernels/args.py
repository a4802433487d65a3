"""The containers in which arguments travel to the kernels (Numba-typed named tuples).

Every kernel takes the same groups, in this order, so a call names what it passes and two arrays of the same
shape cannot be swapped silently:

``work``
    the state and the caller-owned scratch arrays that the kernel updates (`GDWork`, `FlowWork`);
``data``
    the problem, precomputed once (`Data`): R^T (d_x, d_x) with X X^T = R^T R, F = Y X^T R^{-1}
    (d_y, d_x) and the optimal loss L*, so that a step needs only products of the widths' sizes;
``layout``
    the layout of the flat factor vector (`Layout`): the widths d_0..d_N (int64, N + 1), the offsets of the
    layers (int64, N + 1; layer j at ``w[offs[j-1]:offs[j]]``, a C-ordered (d_j, d_{j-1}) matrix) and the
    pivot layer where the chain products split;
``controls``
    what the run is asked to do (`GDControls`, `FlowControls`): stepsizes or tolerances, limits, tests;
``records``
    the preallocated outputs at the record points (`GDRecords`, `FlowRecords`).

Scalars inside a tuple are typed by Numba like scalar arguments; a float field must be given a float and an
int field an int (the Python layer builds them with explicit types), or a new specialisation is compiled.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Data(NamedTuple):
    """The problem arrays: R^T (d_x, d_x), F (d_y, d_x) and L* (float)."""

    Rt: np.ndarray
    F: np.ndarray
    lstar: float


class Layout(NamedTuple):
    """The flat factor layout: widths (int64, N + 1), offsets (int64, N + 1) and the pivot layer (int)."""

    dims: np.ndarray
    offs: np.ndarray
    pivot: int


class GDWork(NamedTuple):
    """State and scratch of a gradient-descent run.

    ``w`` (n,): the state W(k), overwritten with the state where a call returns; ``g`` (n,): the second state
    buffer; ``ws``: workspace (`linalg.workspace_size`); ``acc`` (float, `gd.N_ACC`) and ``iacc`` (int64,
    `gd.N_IACC`): running statistics, kept between calls (slots in `dlnsim._kernels.gd`); ``v`` (n,): the
    state of a momentum rule (length 0 without momentum), kept between calls: the previous point of the
    recurrence for the GD-family kernels (W(0) at the start, `dlnsim._kernels.gd`), the velocity for SGD (zero
    at the start).
    """

    w: np.ndarray
    g: np.ndarray
    ws: np.ndarray
    acc: np.ndarray
    iacc: np.ndarray
    v: np.ndarray


class GDControls(NamedTuple):
    """What a gradient-descent run does: ``etas`` (one stepsize, or one per step), ``n_iter``, the divergence
    ``threshold`` on the loss, ``gtol_sq`` (the gradient test on ||grad||^2), ``stop_early`` and the momentum
    coefficient ``beta`` (0 without momentum)."""

    etas: np.ndarray
    n_iter: int
    threshold: float
    gtol_sq: float
    stop_early: bool
    beta: float


class Batches(NamedTuple):
    """The minibatches of a stochastic run: the full data transposed, ``XT`` (m, d_x) and ``YT`` (m, d_y) (a
    sample per row), the sample indices ``idx`` (int64, (steps, b)) of the steps k0 <= k < k0 + steps, the
    buffers ``xb`` (d_x, b) and ``yb`` (d_y, b) of one batch, the gradient ``scale`` m / b and ``k0``."""

    XT: np.ndarray
    YT: np.ndarray
    idx: np.ndarray
    xb: np.ndarray
    yb: np.ndarray
    scale: float
    k0: int


class GDRecords(NamedTuple):
    """Outputs at the record points ``k`` (int64, sorted): loss, excess loss, ||grad||^2, the descent ratio of
    the step from the point, the stepsize eta_k and the time t_k (float64, same length as ``k``)."""

    k: np.ndarray
    loss: np.ndarray
    excess: np.ndarray
    gn2: np.ndarray
    ratio: np.ndarray
    eta: np.ndarray
    t: np.ndarray


class FlowWork(NamedTuple):
    """State and scratch of a flow integration: ``y`` (n,), the stages ``ks`` (7, n), the integer counters
    ``istats`` (`flow.N_ISTATS`) and the float ones ``fstats`` (`flow.N_FSTATS`), kept between calls."""

    y: np.ndarray
    ks: np.ndarray
    istats: np.ndarray
    fstats: np.ndarray


class FlowControls(NamedTuple):
    """What a flow integration does: the requested times ``t_eval`` (non-decreasing, >= 0), ``rtol``,
    ``atol``, ``first_step`` (0: automatic), ``fixed_step`` (0: adaptive), ``eta`` of the modified flow,
    ``max_steps``, the ``rank`` of the end-to-end flow, ``with_loss`` and ``with_grad``."""

    t_eval: np.ndarray
    rtol: float
    atol: float
    first_step: float
    fixed_step: float
    eta: float
    max_steps: int
    rank: int
    with_loss: bool
    with_grad: bool


class FlowRecords(NamedTuple):
    """Outputs at the requested times: ``save_idx`` (int64, row of ``out_y`` or -1), the kept states ``out_y``
    (n_save, n), the per-time record ``rec`` (`flow.N_REC`, n_t), the dense-output ``slot`` of each time
    (int64) and the slots ``poly`` (n_slots, 5, n)."""

    save_idx: np.ndarray
    out_y: np.ndarray
    rec: np.ndarray
    slot: np.ndarray
    poly: np.ndarray
