"""Step rules: how a gradient method moves the factors from one iterate to the next.

A step rule is a small frozen object passed as ``method=`` to `dlnsim.run_gd` (and to the sweeps).  Plain
gradient descent (2.1) is `GD`:

    W_j(k+1) = W_j(k) - eta_k grad_{W_j} L^N(W(k)),   j = 1, ..., N.

How a step rule fits the engine (and how the next ones are added):

* **One kernel per step rule.**  Each rule names the Numba kernel that runs its steps in chunks
  (``kernel``); the typed Python layer around it (validation, schedules, records, diagnostics, convergence
  tests, statuses, the Dataset) is shared by every rule, so a new rule adds a kernel and this object, nothing
  else.
* **State besides the weights.**  A rule may carry per-run state of the shape of the flat weights (a velocity
  for heavy-ball and Nesterov momentum): ``state_vectors`` says how many such vectors its kernel keeps,
  allocated by the Python layer and passed to the kernel.
* **Randomness.**  A stochastic rule (minibatch SGD) carries an integer ``seed``; the Python layer draws
  everything random before the kernel runs (the minibatch order, from ``numpy.random.default_rng(seed)``),
  so the kernel is deterministic, and the seed is recorded in the run's attributes.
* **Provenance.**  ``attrs()`` gives the attributes a run file carries (``method`` and the rule's
  parameters); ``to_json()`` / `method_from_json` are how a sweep stores the rule in its manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from dlnsim.options import Option

__all__ = ["GD", "METHODS", "StepRule", "as_method", "method_from_json"]


class StepRule(Option):
    """Base of the step rules (see the module docstring)."""

    #: name of the rule in run attributes and on the command line
    name: ClassVar[str] = ""
    #: number of extra state vectors (of the size of the flat weights) the rule's kernel keeps
    state_vectors: ClassVar[int] = 0

    def attrs(self) -> dict[str, Any]:
        """The attributes a run with this rule carries: ``method`` and the rule's parameters."""
        out: dict[str, Any] = {"method": self.name}
        for key, value in self.to_json().items():
            if key != "type":
                out[f"method_{key}"] = value
        return out


@dataclass(frozen=True)
class GD(StepRule):
    """Plain (full-batch) gradient descent (2.1): W_j(k+1) = W_j(k) - eta_k grad_{W_j} L^N(W(k)).

    Examples
    --------
    >>> GD().attrs()
    {'method': 'gd'}
    """

    name: ClassVar[str] = "gd"


#: the step rules by class name (for `method_from_json`) and by ``name`` (for the command line)
METHODS: dict[str, type[StepRule]] = {"GD": GD}


def method_from_json(data: Any) -> StepRule:
    """The step rule a ``to_json()`` dict describes; ValueError for an unknown type."""
    if not isinstance(data, dict) or data.get("type") not in METHODS:
        raise ValueError(f"method: expected the JSON form of one of {sorted(METHODS)}, got {data!r}")
    return METHODS[data["type"]].from_json(data)


def as_method(method: Any) -> StepRule:
    """``method`` as a step rule: a `StepRule`, None (plain `GD`), a name (``"gd"``) or a JSON form."""
    if method is None:
        return GD()
    if isinstance(method, StepRule):
        return method
    if isinstance(method, str):
        for cls in METHODS.values():
            if cls.name == method:
                return cls()
        raise ValueError(f"method must be a step rule ({', '.join(sorted(METHODS))}) or one of "
                         f"{[c.name for c in METHODS.values()]}, got {method!r}")
    if isinstance(method, dict):
        return method_from_json(method)
    raise ValueError(f"method must be a step rule such as dlnsim.GD(), got {method!r}")
