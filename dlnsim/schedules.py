"""Stepsize schedules eta_k, k = 0, 1, ... (Theorem 2.4: eta_k > 0, sum_k eta_k = infinity, (2.8)).

* `Constant(eta)`: eta_k = eta (Figure 1).
* `PowerDecay(a1, a2, gamma)`: eta_k = max{a1 (k+1)^{-gamma}, a2/(k+1)} -- the (5.2) family of Figure 2.
  **The exact form of (5.2) is a reconstruction** (unresolved, see docs/theory.md): the paper only says "for some
  decay rate gamma >= 0 and constants a_1, a_2".  With a1 = a2 = eta* (panels 2a/2b) every candidate form
  gives eta* (k+1)^{-gamma}.  The max keeps eta_k >= a2/k, the condition of Theorem 2.6(2).
* `Power(a, gamma)`: eta_k = a (k+1)^{-gamma} (Remark 2.5(c)).
* `Explicit(values)`: any positive array, one entry per iteration.

Every schedule gives ``values(n_iter)`` (an array of length n_iter, or of length 1 for a constant, which the
kernel treats as constant) and ``attrs()`` for the provenance attributes of a Dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dlnsim.checks import positive_float

__all__ = ["Constant", "Explicit", "Power", "PowerDecay", "Schedule", "as_schedule"]


class Schedule:
    """Base class: a rule k -> eta_k > 0."""

    kind = "schedule"

    def values(self, n_iter: int) -> np.ndarray:
        raise NotImplementedError

    def max(self, n_iter: int) -> float:
        """The largest stepsize used in the first n_iter steps."""
        v = self.values(max(n_iter, 1))
        return float(v.max())

    def attrs(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class Constant(Schedule):
    eta: float
    kind = "constant"

    def __post_init__(self) -> None:
        object.__setattr__(self, "eta", positive_float(self.eta, "eta"))

    def values(self, n_iter: int) -> np.ndarray:
        return np.array([self.eta])

    def attrs(self) -> dict[str, Any]:
        return {"schedule": self.kind, "schedule_eta": self.eta}


@dataclass(frozen=True)
class PowerDecay(Schedule):
    a1: float
    a2: float
    gamma: float
    kind = "power_decay"

    def __post_init__(self) -> None:
        object.__setattr__(self, "a1", positive_float(self.a1, "a1"))
        object.__setattr__(self, "a2", positive_float(self.a2, "a2", allow_zero=True))
        object.__setattr__(self, "gamma", positive_float(self.gamma, "gamma", allow_zero=True))

    def values(self, n_iter: int) -> np.ndarray:
        k1 = np.arange(1, n_iter + 1, dtype=np.float64)
        return np.maximum(self.a1 * k1 ** (-self.gamma), self.a2 / k1)

    def attrs(self) -> dict[str, Any]:
        return {
            "schedule": self.kind,
            "schedule_formula": "eta_k = max(a1*(k+1)**(-gamma), a2/(k+1)) [reconstruction of (5.2)]",
            "schedule_a1": self.a1,
            "schedule_a2": self.a2,
            "schedule_gamma": self.gamma,
        }


@dataclass(frozen=True)
class Power(Schedule):
    a: float
    gamma: float
    kind = "power"

    def __post_init__(self) -> None:
        object.__setattr__(self, "a", positive_float(self.a, "a"))
        object.__setattr__(self, "gamma", positive_float(self.gamma, "gamma", allow_zero=True))

    def values(self, n_iter: int) -> np.ndarray:
        return self.a * np.arange(1, n_iter + 1, dtype=np.float64) ** (-self.gamma)

    def attrs(self) -> dict[str, Any]:
        return {"schedule": self.kind, "schedule_formula": "eta_k = a*(k+1)**(-gamma)",
                "schedule_a": self.a, "schedule_gamma": self.gamma}


class Explicit(Schedule):
    kind = "explicit"

    def __init__(self, values: Any) -> None:
        if np.iscomplexobj(values):
            raise ValueError("eta: an explicit schedule must be real, got complex values")
        try:
            v = np.array(values, dtype=np.float64, copy=True).ravel()
        except (TypeError, ValueError):
            raise ValueError("eta: an explicit schedule must be an array of real numbers") from None
        if v.size == 0:
            raise ValueError("eta: an explicit schedule must not be empty")
        if not np.all(np.isfinite(v)) or np.any(v <= 0):
            i = int(np.argmax(~np.isfinite(v) | (v <= 0)))
            raise ValueError(f"eta must be finite and > 0 at every step; eta[{i}] = {v[i]!r}")
        v.setflags(write=False)
        self._v = v

    def values(self, n_iter: int) -> np.ndarray:
        if n_iter > self._v.size:
            raise ValueError(f"eta has {self._v.size} entries but n_iter = {n_iter} steps were asked for")
        return self._v[:n_iter]

    def attrs(self) -> dict[str, Any]:
        return {"schedule": self.kind, "schedule_length": int(self._v.size)}

    def __repr__(self) -> str:
        return f"Explicit(<{self._v.size} values in [{self._v.min():.3g}, {self._v.max():.3g}]>)"


def as_schedule(eta: Any) -> Schedule:
    """A float -> Constant, an array -> Explicit, a Schedule as is."""
    if isinstance(eta, Schedule):
        return eta
    if isinstance(eta, bool):
        raise ValueError(f"eta must be a positive number, an array or a Schedule, got {eta!r}")
    if isinstance(eta, int | float | np.integer | np.floating):
        return Constant(float(eta))
    if isinstance(eta, np.ndarray | list | tuple):
        return Explicit(eta)
    raise ValueError(f"eta must be a positive number, an array or a Schedule, got {type(eta).__name__}")
