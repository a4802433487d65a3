"""BLAS thread control for the kernels.

The kernels call BLAS (SciPy's OpenBLAS, through Numba intrinsics) on matrices of size ~70: threads cost more
than they give there, and with several runs at once (grids, or any busy machine) they oversubscribe the cores
and make a step several times slower.  Runs therefore limit BLAS to one thread by default.

The limit is process-wide (it is a setting of the BLAS library), while runs may execute on several threads
at once (the threaded grid executor).  The one-thread limit is therefore reference-counted: it is set when
the first run enters and restored when the last one leaves, so that a run finishing early never lifts the
limit under a run that is still going (a different BLAS thread count may change results in the last bit).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

_controller: Any = None
_lock = threading.Lock()
_holders = 0
_limiter: Any = None


def _get_controller() -> Any:
    global _controller
    if _controller is None:
        import scipy.linalg.cython_blas  # noqa: F401  - loads the BLAS that Numba calls, so it is controlled
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()  # scanning the loaded libraries takes ~50 ms: do it once
    return _controller


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    global _holders, _limiter
    with _lock:
        if _holders == 0:
            _limiter = _get_controller().limit(limits=1, user_api="blas")
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0:
                _limiter.restore_original_limits()
                _limiter = None


def blas_threads(n: int | None) -> contextlib.AbstractContextManager[Any]:
    """A context limiting every loaded BLAS to ``n`` threads (``None``: leave as is).

    ``n = 1`` is safe to enter from several threads at once (reference-counted); other values are not.
    """
    if n is None:
        return contextlib.nullcontext()
    if n == 1:
        return _one_thread()
    return _get_controller().limit(limits=n, user_api="blas")  # type: ignore[no-any-return]
