"""One line on stderr when a call is about to compile Numba kernels (the first use on an empty cache).

The kernels are compiled on first use and cached on disk (``cache=True``), so only the very first call of a
fresh installation, or the first after a kernel's source changed, pays the compile time.  That call can take
from a few seconds to a minute on a busy machine, so it says what it is doing::

    dlnsim: compiling the gradient-flow kernel (first use, about 5-15 s; cached afterwards)

`needs_compile` tells from the dispatcher whether a kernel would compile: no signature compiled or loaded in
this process, and no entry for it in its on-disk cache index (missing, stale after a source change, or made
for other closure constants or another CPU).
`compile_notice` prints the line once per kernel and process, and only then.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["compile_notice", "needs_compile"]

_lock = threading.Lock()
_shown: set[str] = set()


def needs_compile(dispatcher: Any) -> bool:
    """True when calling ``dispatcher`` (a Numba ``njit`` function) would compile it: nothing compiled or
    loaded in this process, and no entry for this function (its code, its closure constants, this CPU) in
    its on-disk cache index."""
    if getattr(dispatcher, "signatures", None):
        return False
    try:
        cache = dispatcher._cache
        index = cache._cache_file._load_index()  # {} when missing, of another version or stale
        want = cache._index_key(None, dispatcher.targetctx.codegen())[1:]  # the key without the signature
    except Exception:  # no disk cache (cache=False) or another Numba layout: it will compile
        return True
    return not any(key[1:] == want for key in index)


@contextmanager
def compile_notice(dispatchers: Any, what: str, about: str = "5-15 s") -> Iterator[None]:
    """Around the first calls of ``dispatchers`` (one or a tuple): print ``dlnsim: compiling <what> (first
    use, about <about>; cached afterwards)`` to stderr when one of them is going to compile (once per ``what``
    and process)."""
    if any(needs_compile(d) for d in (dispatchers if isinstance(dispatchers, tuple) else (dispatchers,))):
        with _lock:
            show = what not in _shown
            _shown.add(what)
        if show:
            print(f"dlnsim: compiling {what} (first use, about {about}; cached afterwards)", file=sys.stderr,
                  flush=True)
    yield
