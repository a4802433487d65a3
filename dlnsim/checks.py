"""Input checks shared by the public functions: every error names the parameter and what was expected."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def _refuse_complex(a: Any, name: str) -> None:
    """ValueError naming ``name`` when ``a`` holds complex numbers (a float64 cast would drop the imaginary part)."""
    if isinstance(a, complex | np.complexfloating):
        raise ValueError(f"{name} must be real, got the complex number {a!r}")
    dtype = getattr(a, "dtype", None)
    if dtype is None and isinstance(a, list | tuple):
        try:
            dtype = np.asarray(a).dtype
        except (TypeError, ValueError):  # ragged or otherwise not an array: the float64 cast reports it
            return
    if isinstance(dtype, np.dtype) and dtype.kind == "c":
        raise ValueError(
            f"{name} must be real, got a complex array (dtype {dtype}); pass the real part explicitly if intended"
        )


def as_matrix(a: Any, name: str, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A finite 2-D float64 C-contiguous copy of ``a``; ValueError naming ``name`` otherwise.

    Complex input is refused (it is never cast silently to its real part).
    """
    _refuse_complex(a, name)
    try:
        arr = np.array(a, dtype=np.float64, order="C", copy=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a 2-D array of real numbers ({exc})") from None
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got {arr.ndim} dimension(s) with shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    if shape is not None and arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.sum(~np.isfinite(arr)))
        raise ValueError(f"{name} must be finite; it has {bad} non-finite entr{'y' if bad == 1 else 'ies'}")
    return arr


def as_widths(widths: Any, name: str = "widths") -> tuple[int, ...]:
    """Widths d_0, ..., d_N as a tuple of positive ints (N >= 1)."""
    if isinstance(widths, str | bytes) or not isinstance(widths, Sequence | np.ndarray):
        raise ValueError(f"{name} must be a sequence of positive integers d_0, ..., d_N, got {widths!r}")
    out = []
    for v in widths:
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
            raise ValueError(f"{name} must contain positive integers, got {list(widths)!r}")
        out.append(int(v))
    if len(out) < 2:
        raise ValueError(f"{name} must have at least two entries (d_0 and d_N, so N >= 1), got {out!r}")
    return tuple(out)


def as_weights(W: Any, name: str = "W0", widths: Sequence[int] | None = None) -> list[np.ndarray]:
    """A list of N finite float64 matrices with chained shapes W_j: (d_j, d_{j-1})."""
    if isinstance(W, np.ndarray) or not isinstance(W, Sequence) or len(W) == 0:
        raise ValueError(f"{name} must be a non-empty list of matrices [W_1, ..., W_N]")
    mats = [as_matrix(Wj, f"{name}[{j}]") for j, Wj in enumerate(W)]
    for j in range(1, len(mats)):
        if mats[j].shape[1] != mats[j - 1].shape[0]:
            raise ValueError(
                f"{name}: shapes do not chain: {name}[{j - 1}] is {mats[j - 1].shape} and {name}[{j}] is "
                f"{mats[j].shape} (W_j must be (d_j, d_(j-1)))"
            )
    if widths is not None:
        want = tuple(int(v) for v in widths)
        got = (mats[0].shape[1], *(M.shape[0] for M in mats))
        if got != want:
            raise ValueError(f"{name} does not match the widths: its widths are {got}, expected {want}")
    return mats


def positive_float(x: Any, name: str, *, allow_zero: bool = False) -> float:
    """A finite float > 0 (or >= 0); ValueError naming ``name`` otherwise."""
    if isinstance(x, bool | np.bool_ | complex | np.complexfloating):
        raise ValueError(f"{name} must be a real number, got {x!r}")
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {x!r}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        expect = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {expect}, got {x!r}")
    return v


def is_int(x: Any) -> bool:
    """Whether ``x`` is a Python or numpy integer (bools excluded)."""
    return isinstance(x, int | np.integer) and not isinstance(x, bool | np.bool_)


def nonneg_int(x: Any, name: str, *, minimum: int = 0) -> int:
    """An int >= minimum; ValueError naming ``name`` otherwise."""
    if isinstance(x, bool) or not isinstance(x, int | np.integer) or x < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {x!r}")
    return int(x)


def flag(value: Any, name: str) -> bool:
    """``value`` as a Python bool; only True/False (or numpy bools) are accepted, never 0/1, "yes" or None."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    raise ValueError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")


def attrs_arg(attrs: Any) -> dict[str, Any]:
    """The extra global attributes ``attrs`` of a run (None or a dict with str keys) as a new dict."""
    if attrs is None:
        return {}
    if not isinstance(attrs, dict) or not all(isinstance(k, str) for k in attrs):
        raise ValueError(f"attrs must be a dict with str keys (extra global attributes), got {attrs!r}")
    return dict(attrs)


def blas_arg(n: Any) -> int | None:
    """The ``blas_threads`` argument: None or an int >= 1."""
    return None if n is None else nonneg_int(n, "blas_threads", minimum=1)
