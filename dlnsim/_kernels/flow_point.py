"""Single evaluations of a flow's right-hand side, or of a Hessian-vector product, from Python (`_point`): for
tests, for `dlnsim.analysis.sharpness`, and wherever one value is wanted without integrating."""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from .flow import END_TO_END, FACTOR, HVP, MODIFIED, _rhs
from .flow_rhs import _hvp
from .linalg import SOURCES, _workspace_size


def _make_point(kind: int, name: str, stamp: str = SOURCES) -> Any:
    """The single evaluation of `_point` for ``kind``, compiled on first use (a closure constant, as in
    `_make_integrator`: the Hessian-vector product does not compile the flows' right-hand sides)."""

    def point(y, v, dims, offs, pivot, Rt, F, eta, rank, out):
        stamp  # noqa: B018  (the kernels' sources: part of the cache key, see `linalg.SOURCES`)
        if kind == HVP:
            _hvp(y, v, dims, offs, Rt, F, out)
            return 0.0
        ws = np.empty(_workspace_size(dims, pivot))
        g = np.empty(y.shape[0])
        return _rhs(kind, y, out, dims, offs, pivot, Rt, F, eta, rank, ws, g)

    point.__name__ = point.__qualname__ = name
    return njit(cache=True, nogil=True)(point)


_POINTS = {kind: _make_point(kind, f"_point_{label}")
           for kind, label in ((FACTOR, "factor"), (END_TO_END, "end_to_end"), (MODIFIED, "modified"), (HVP, "hvp"))}


def _point(kind: int, y: Any, v: Any, dims: Any, offs: Any, pivot: int, Rt: Any, F: Any, eta: float, rank: int,
           out: Any) -> float:
    """One evaluation at ``y`` (own workspace), from Python.

    ``kind`` FACTOR / END_TO_END / MODIFIED: ``out`` = right-hand side of that flow, returns the excess loss
    (``v`` unused); ``kind`` HVP: ``out`` = Hess L^N(y) v, returns 0.  Each kind is its own compiled function
    (`_make_point`), compiled on first use.
    """
    return float(_POINTS[kind](y, v, dims, offs, pivot, Rt, F, eta, rank, out))
