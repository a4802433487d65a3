"""BLAS thread control for the kernels.

The kernels call BLAS (through Numba's np.dot, which uses SciPy's BLAS) on matrices of size ~70: threads
cost more than they give there, and with several processes (sweeps, or any busy machine) they oversubscribe
the cores and make a step several times slower.  Runs therefore limit BLAS to one thread by default.
"""

from __future__ import annotations

import contextlib
from typing import Any

_controller: Any = None


def blas_threads(n: int | None) -> contextlib.AbstractContextManager[Any]:
    """A context limiting every loaded BLAS to ``n`` threads (``None``: leave as is)."""
    global _controller
    if n is None:
        return contextlib.nullcontext()
    if _controller is None:
        import scipy.linalg.cython_blas  # noqa: F401  - loads the BLAS that Numba calls, so it is controlled
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()  # scanning the loaded libraries takes ~50 ms: do it once
    return _controller.limit(limits=n, user_api="blas")  # type: ignore[no-any-return]
