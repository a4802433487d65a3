"""Setups of a sweep: what a cell runs at its grid point, as ``(problem, W0)``.

* `paper`: the paper's Section-5 instance (the default of `dlnsim.sweep`);
* `on_problem`: your data with widths and an initialisation rule (``sweep(..., problem=p, widths=...)``);
* any module-level function of your own, ``setup(**point) -> (problem, W0)`` (``sweep(..., setup=f)``).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from dlnsim.checks import nonneg_int
from dlnsim.grid.plan import cell_id_of
from dlnsim.grid.store import suggest
from dlnsim.init import balanced_init, gaussian_init
from dlnsim.problem import Problem, paper_setup, paper_widths

__all__ = ["INITS", "on_problem", "paper", "problem_digest", "resolve", "start_of"]

#: initialisation rules of `on_problem` (or pass a function ``init(widths, rng, scale) -> W0``)
INITS = ("balanced", "gaussian")


def paper(N: int, seed: int, d: int = 70, m: int | None = None, r: int = 2) -> tuple[Problem, list[np.ndarray]]:
    """The paper's Section-5 instance ``paper_setup(N, seed, d, m, r)`` (data and balanced start)."""
    s = paper_setup(N, seed, d=d, m=m, r=r)
    return s.problem, s.W0


def on_problem(problem: Problem, init: str | Callable[..., Any], *, seed: int, widths: Sequence[int] | None = None,
               N: int | None = None, width: int | None = None, scale: float = 1.0) -> tuple[Problem, list[np.ndarray]]:
    """``problem`` with a start drawn by ``init`` from ``numpy.random.default_rng(seed)``.

    Parameters
    ----------
    problem : Problem
        The data (the same in every cell).
    init : {"balanced", "gaussian"} or callable
        ``"balanced"``: `balanced_init` with ``scale``; ``"gaussian"``: `gaussian_init` with ``std=scale``; a
        module-level function ``init(widths, rng, scale) -> W0``.
    seed : int
        Seed of the initialisation.
    widths : sequence of int, optional
        d_0, ..., d_N (d_0 = d_x and d_N = d_y of the problem).  Or give ``N`` and ``width``:
    N, width : int, optional
        Depth and hidden width: widths (d_x, width, ..., width, d_y); ``width`` defaults to min(d_x, d_y).
    scale : float
        Scale of the start.
    """
    if widths is None:
        if N is None:
            raise ValueError("widths: give widths=(d_0, ..., d_N), or N (and width) for the hidden layers")
        hidden = min(problem.d_x, problem.d_y) if width is None else int(width)
        widths = (problem.d_x, *([hidden] * (int(N) - 1)), problem.d_y)
    elif N is not None or width is not None:
        raise ValueError("widths: give either widths=(d_0, ..., d_N) or N and width, not both")
    widths = tuple(int(w) for w in widths)
    if widths[0] != problem.d_x or widths[-1] != problem.d_y:
        raise ValueError(f"widths must start with d_x = {problem.d_x} and end with d_y = {problem.d_y}, "
                         f"got {widths}")
    rng = np.random.default_rng(seed)
    if init == "balanced":
        return problem, balanced_init(widths, rng, scale=scale)
    if init == "gaussian":
        return problem, gaussian_init(widths, rng, std=scale)
    if callable(init):
        return problem, list(init(widths, rng, scale))
    raise ValueError(f"init must be one of {', '.join(map(repr, INITS))} or a function, got {init!r}")


def problem_digest(problem: Problem) -> str:
    """SHA-256 of a problem's X and Y (recorded in a grid's manifest, so another data set is refused)."""
    h = hashlib.sha256()
    for a in (problem.X, problem.Y):
        arr = np.ascontiguousarray(a, dtype=np.float64)
        h.update(repr(arr.shape).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def start_of(setup: Callable[..., Any], point: dict[str, Any]) -> tuple[Problem, list[np.ndarray]]:
    """``setup(**point)`` as ``(problem, W0)`` (a `Setup` or a pair)."""
    out = setup(**point)
    if hasattr(out, "problem") and hasattr(out, "W0"):
        return out.problem, list(out.W0)
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], Problem):
        return out[0], list(out[1])
    raise TypeError(f"the setup returned {type(out).__name__}; expected (problem, W0) or a dlnsim.Setup")


def resolve(setup: Any, problem: Any, init: Any, given: dict[str, Any], func: str,
                own: Sequence[str]) -> tuple[Callable[..., Any], str, dict[str, Any], dict[str, Any]]:
    """The setup function, its name, its grid axes and its fixed parameters, from the keywords ``given``
    (N, seed and every keyword `func` does not know)."""
    fn: Callable[..., Any]
    if problem is not None:
        if setup is not None:
            raise ValueError("give either setup= (a function) or problem= (data with widths and init), not both")
        if not isinstance(problem, Problem):
            raise ValueError(f"problem must be a dlnsim.Problem, got {type(problem).__name__}")
        if not (init in ("balanced", "gaussian") or callable(init)):
            raise ValueError(f"init must be 'balanced', 'gaussian' or a function (widths, rng, scale) -> W0, "
                             f"got {init!r}")
        if given.get("seed") is None:
            raise ValueError(f"{func}: problem= needs the axis seed (seeds of the initialisation)")
        if isinstance(given.get("widths"), list):
            raise ValueError("widths: a fixed tuple (d_0, ..., d_N); sweep depths with N=[...] and width=[...]")
        fn = functools.partial(on_problem, problem, init)
        init_name = init if isinstance(init, str) else cell_id_of(init)
        name = f"problem:{problem_digest(problem)}:{init_name}"
        given = {k: (tuple(v) if k == "widths" else v) for k, v in given.items()}
    elif init != "balanced":
        raise ValueError("init is only used with problem= (the paper setup and your setup= draw their own start)")
    else:
        fn = paper if setup is None else setup
        if not callable(fn):
            raise ValueError(f"setup must be a module-level function (grid point -> (problem, W0)), got {setup!r}")
        name = "paper" if setup is None else cell_id_of(fn)
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        sig = None
    accepts_any = sig is None or any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    known = [] if sig is None else [p for p in sig.parameters if sig.parameters[p].kind is not
                                    inspect.Parameter.VAR_KEYWORD]
    axes: dict[str, Any] = {}
    fixed: dict[str, Any] = {}
    for key, value in given.items():
        if value is None and key in ("N", "seed"):
            continue
        if not accepts_any and key not in known:
            raise ValueError(f"{func}: unknown parameter or axis {key!r}{suggest(key, [*own, *known])}; the setup "
                             f"{name} takes {', '.join(known) or 'no keywords'}")
        if key in ("N", "seed") or (isinstance(value, list | tuple | range | np.ndarray) and key != "widths"):
            axes[key] = value
        else:
            fixed[key] = value
    if setup is None and problem is None:
        for key in ("N", "seed"):
            if key not in axes:
                raise ValueError(f"{func}: the paper setup needs the axis {key} (a number or a list)")
        check_paper(axes, fixed)
    return fn, name, axes, fixed


def check_paper(axes: dict[str, Any], fixed: dict[str, Any]) -> None:
    def values(key: str, default: Any) -> list[Any]:
        v = axes.get(key, fixed.get(key, default))
        return list(v) if isinstance(v, list | tuple | range | np.ndarray) else [v]

    ns = values("N", None)
    for n in ns:
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
            raise ValueError(f"N: expected integers >= 1, got {n!r}")
    for s in values("seed", None):
        if isinstance(s, bool) or not isinstance(s, int | np.integer) or s < 0:
            raise ValueError(f"seed: expected integers >= 0, got {s!r}")
    for d in values("d", 70):
        d = nonneg_int(d, "d (input/output width of paper_setup)", minimum=1)
        for r in values("r", 2):
            r = nonneg_int(r, "r (narrowest width d_1 of paper_setup)", minimum=1)
            if r > d:
                raise ValueError(f"r must be <= d = {d}, got r = {r}")
            for n in ns:
                paper_widths(int(n), d, r)
        for m in values("m", None):
            if m is not None:
                nonneg_int(m, f"m (number of samples, >= d = {d} so that X X^T has full rank)", minimum=d)
