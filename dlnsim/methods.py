"""Step rules: how a gradient method moves the factors from one iterate to the next.

A step rule is a small frozen object passed as ``method=`` to `dlnsim.run_gd` (and to the sweeps).  With
g(W) = grad L^N(W) (all factors at once) and the stepsize eta_k of the schedule:

`GD` (2.1)
    W(k+1) = W(k) - eta_k g(W(k)).
`HeavyBall` (Polyak momentum, coefficient beta in [0, 1))
    v(k+1) = beta v(k) - eta_k g(W(k)),   W(k+1) = W(k) + v(k+1),   v(0) = 0.
`Nesterov` (coefficient beta in [0, 1)), implemented on the look-ahead iterate y, where the gradient is taken:
    v(k+1) = beta v(k) - eta_k g(y(k)),   y(k+1) = y(k) + beta v(k+1) - eta_k g(y(k)),   v(0) = 0, y(0) = W(0).
    This is the usual form W(k+1) = y(k) - eta_k g(y(k)), y(k+1) = W(k+1) + beta (W(k+1) - W(k)) written in
    y alone; a run records the loss and the state diagnostics at y(k) (the point whose gradient is taken),
    which has the same limit as W(k).
`SGD` (minibatch stochastic gradient descent, batch size b)
    W(k+1) = W(k) - eta_k (m/b) grad L_{B_k}(W(k)) with L_B(W) = 1/2 ||W X_B - Y_B||_F^2 over the columns
    B_k of the data: (m/b) grad L_B is an unbiased estimate of g(W) (the loss has no 1/m).  The batches come
    from random reshuffling (each epoch a permutation of the m samples, cut into m // b batches; the last
    m mod b samples of the permutation are left out of that epoch) or from sampling with replacement (b
    indices drawn independently per step), from generators seeded per block of epochs or steps (``SGD.batches``
    gives the exact order), so the batches of any step are known without drawing those of earlier blocks.
    Optional momentum: ``beta`` (heavy-ball, or Nesterov with ``nesterov=True``) as above with the stochastic
    gradient.

Linear stability at a minimiser with Hessian eigenvalue lambda (a quadratic model, constant eta; x = eta
lambda): GD is stable iff x < 2; heavy-ball iff x < 2 (1 + beta); Nesterov iff x < 2 (1 + beta) / (1 + 2 beta)
(the roots of z^2 - (1 + beta)(1 - x) z + beta (1 - x) lie in the unit disc; Jury's conditions).

How a step rule fits the engine (and how the next ones are added):

* **One kernel per step rule.**  Each rule names the Numba kernel that runs its steps in chunks
  (``kernel``); the typed Python layer around it (validation, schedules, records, diagnostics, convergence
  tests, statuses, the Dataset) is shared by every rule, so a new rule adds a kernel and this object, nothing
  else.
* **State besides the weights.**  A rule may carry per-run state of the shape of the flat weights (a velocity
  for heavy-ball and Nesterov momentum): ``state_vectors`` says how many such vectors its kernel keeps,
  allocated by the Python layer and passed to the kernel.
* **Randomness.**  A stochastic rule (minibatch SGD) carries an integer ``seed``; the Python layer draws
  everything random before the kernel runs (the minibatch order, ``SGD.batches``, from NumPy generators seeded
  with ``[seed, block]``), so the kernel is deterministic, and the seed is recorded in the run's attributes.
* **Provenance.**  ``attrs()`` gives the attributes a run file carries (``method`` and the rule's
  parameters); ``to_json()`` / ``method_from_json`` are how a sweep stores the rule in its manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from dlnsim.checks import flag, is_int, positive_float
from dlnsim.options import Option

__all__ = ["GD", "METHODS", "SGD", "HeavyBall", "Nesterov", "StepRule", "as_method", "method_from_json"]

#: the kernel rules (closure constants of the gradient-descent kernels)
PLAIN, HEAVY_BALL, NESTEROV = 0, 1, 2


class StepRule(Option):
    """Base of the step rules (see the module docstring)."""

    #: name of the rule in run attributes and on the command line
    name: ClassVar[str] = ""
    #: what the rule is called in messages ("the <label> kernel")
    label: ClassVar[str] = ""
    #: what a run of the rule is called in its title
    title: ClassVar[str] = ""
    #: number of extra state vectors (of the size of the flat weights) the rule's kernel keeps
    state_vectors: ClassVar[int] = 0

    @property
    def momentum(self) -> tuple[int, float]:
        """The kernel's momentum rule (`PLAIN`, `HEAVY_BALL` or `NESTEROV`) and its coefficient beta."""
        return PLAIN, 0.0

    def stability_limit(self, sharpness: float) -> float:
        """The largest constant stepsize that is linearly stable at a minimiser whose Hessian has largest
        eigenvalue ``sharpness`` (for the full-batch rules; see the module docstring)."""
        rule, beta = self.momentum
        factor = {PLAIN: 2.0, HEAVY_BALL: 2.0 * (1.0 + beta), NESTEROV: 2.0 * (1.0 + beta) / (1.0 + 2.0 * beta)}
        return factor[rule] / sharpness

    def attrs(self) -> dict[str, Any]:
        """The attributes a run with this rule carries: ``method`` and the rule's parameters (a flag as 0 or 1:
        NetCDF attributes have no boolean type, and xarray's ``to_netcdf`` refuses one)."""
        out: dict[str, Any] = {"method": self.name}
        for key, value in self.to_json().items():
            if key != "type":
                out[f"method_{key}"] = int(value) if isinstance(value, bool) else value
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
    label: ClassVar[str] = "gradient-descent"
    title: ClassVar[str] = "gradient descent"


def _beta(value: Any, field: str) -> float:
    beta = positive_float(value, field, allow_zero=True)
    if not beta < 1.0:
        raise ValueError(f"{field} must be in [0, 1), got {value!r}")
    return beta


@dataclass(frozen=True)
class HeavyBall(StepRule):
    """Heavy-ball (Polyak) momentum: v(k+1) = beta v(k) - eta_k g(W(k)), W(k+1) = W(k) + v(k+1).

    Examples
    --------
    >>> HeavyBall(beta=0.9).stability_limit(sharpness=4.0)
    0.95
    """

    beta: float = 0.9
    name: ClassVar[str] = "heavy_ball"
    label: ClassVar[str] = "heavy-ball"
    title: ClassVar[str] = "gradient descent with heavy-ball momentum"
    state_vectors: ClassVar[int] = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "beta", _beta(self.beta, "HeavyBall.beta"))

    @property
    def momentum(self) -> tuple[int, float]:
        return HEAVY_BALL, self.beta


@dataclass(frozen=True)
class Nesterov(StepRule):
    """Nesterov momentum on the look-ahead iterate (module docstring): v(k+1) = beta v(k) - eta_k g(y(k)),
    y(k+1) = y(k) + beta v(k+1) - eta_k g(y(k))."""

    beta: float = 0.9
    name: ClassVar[str] = "nesterov"
    label: ClassVar[str] = "Nesterov"
    title: ClassVar[str] = "gradient descent with Nesterov momentum"
    state_vectors: ClassVar[int] = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "beta", _beta(self.beta, "Nesterov.beta"))

    @property
    def momentum(self) -> tuple[int, float]:
        return NESTEROV, self.beta


#: how `SGD` draws its batches
SAMPLINGS = ("reshuffle", "replacement")


@dataclass(frozen=True)
class SGD(StepRule):
    """Minibatch stochastic gradient descent with batches of ``batch_size`` samples (module docstring).

    ``sampling``: ``"reshuffle"`` (a new permutation each epoch, the default) or ``"replacement"``; ``seed``:
    the seed of the batches (recorded with the run); ``beta``, ``nesterov``: optional momentum.

    Examples
    --------
    >>> SGD(batch_size=16, seed=0).attrs()["method_batch_size"]
    16
    """

    batch_size: int
    seed: int = 0
    sampling: str = "reshuffle"
    beta: float = 0.0
    nesterov: bool = False
    name: ClassVar[str] = "sgd"
    label: ClassVar[str] = "minibatch SGD"
    title: ClassVar[str] = "minibatch SGD"
    state_vectors: ClassVar[int] = 1

    def __post_init__(self) -> None:
        if not is_int(self.batch_size) or int(self.batch_size) < 1:
            raise ValueError(f"SGD.batch_size must be an integer >= 1 (at most the number of samples m), got "
                             f"{self.batch_size!r}")
        object.__setattr__(self, "batch_size", int(self.batch_size))
        if not is_int(self.seed) or int(self.seed) < 0:
            raise ValueError(f"SGD.seed must be an integer >= 0, got {self.seed!r}")
        object.__setattr__(self, "seed", int(self.seed))
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"SGD.sampling must be one of {list(SAMPLINGS)}, got {self.sampling!r}")
        object.__setattr__(self, "beta", _beta(self.beta, "SGD.beta"))
        object.__setattr__(self, "nesterov", flag(self.nesterov, "SGD.nesterov"))

    @property
    def momentum(self) -> tuple[int, float]:
        if self.beta == 0.0:
            return PLAIN, 0.0
        return (NESTEROV if self.nesterov else HEAVY_BALL), self.beta

    def checked_batch_size(self, m: int) -> int:
        """The batch size, checked against the number of samples ``m`` of the problem."""
        if self.batch_size > m:
            raise ValueError(f"SGD.batch_size must be in [1, m = {m}] (the number of samples), got {self.batch_size}")
        return self.batch_size

    def batches(self, m: int, k0: int, k1: int) -> np.ndarray:
        """The sample indices of the batches of steps k0 <= k < k1, an int64 array (k1 - k0, batch_size).

        The single definition of the batch order (the runs, the benchmarks and the tests take it from here).
        With q = m // b batches per epoch:

        ``"reshuffle"``
            step k is batch s = k mod q of epoch e = k // q: the samples ``perm[s b : (s + 1) b]`` of the
            permutation ``perm`` of epoch e, which is the (e mod 64)-th call (counting from 0) of
            ``rng.permutation(m)`` on ``rng = numpy.random.default_rng([seed, e // 64])``: one generator per
            block of `RESHUFFLE_BLOCK` = 64 epochs (equivalently, row e mod 64 of
            ``rng.permuted(np.tile(np.arange(m), (64, 1)), axis=1)``, which is how it is drawn).  The last
            m mod b samples of each permutation are not used in that epoch.
        ``"replacement"``
            step k is row k mod 1024 of ``numpy.random.default_rng([seed, k // 1024]).integers(0, m,
            size=(1024, b))``: one generator per block of `REPLACEMENT_BLOCK` = 1024 steps.
        """
        b = self.checked_batch_size(m)
        out = np.empty((max(k1 - k0, 0), b), dtype=np.int64)
        if k1 <= k0:
            return out
        if self.sampling == "reshuffle":
            per_epoch = m // b
            used = per_epoch * b
            e_first, e_last = k0 // per_epoch, (k1 - 1) // per_epoch
            rows_at_once = max(1, _PERMUTED_INDICES // m)  # permutations drawn per call: a few MB at most
            for block in range(e_first // RESHUFFLE_BLOCK, e_last // RESHUFFLE_BLOCK + 1):
                rng = np.random.default_rng([self.seed, block])
                e0 = block * RESHUFFLE_BLOCK  # epoch of the generator's first permutation
                stop = min(e0 + RESHUFFLE_BLOCK, e_last + 1)
                e = e0
                while e < stop:
                    take = min(rows_at_once, stop - e)
                    perms = rng.permuted(np.tile(np.arange(m, dtype=np.int64), (take, 1)), axis=1)
                    if e + take > e_first:
                        steps = perms[:, :used].reshape(take * per_epoch, b)  # the batches of epochs e..e+take-1
                        s0 = e * per_epoch  # step of the first of them
                        lo, hi = max(k0, s0), min(k1, s0 + take * per_epoch)
                        out[lo - k0 : hi - k0] = steps[lo - s0 : hi - s0]
                    e += take
        else:
            block = REPLACEMENT_BLOCK
            k = k0
            while k < k1:
                index, row = divmod(k, block)
                draws = np.random.default_rng([self.seed, index]).integers(0, m, size=(block, b), dtype=np.int64)
                take = min(block - row, k1 - k)
                out[k - k0 : k - k0 + take] = draws[row : row + take]
                k += take
        return out


#: epochs per independently seeded block of `SGD` with reshuffling
RESHUFFLE_BLOCK = 64
#: steps per independently seeded block of `SGD` with replacement
REPLACEMENT_BLOCK = 1024
#: sample indices of the permutations ``SGD.batches`` draws in one call (bounds its memory for large m)
_PERMUTED_INDICES = 1 << 20

#: the step rules by class name (for ``method_from_json``) and by ``name`` (for the command line)
METHODS: dict[str, type[StepRule]] = {"GD": GD, "HeavyBall": HeavyBall, "Nesterov": Nesterov, "SGD": SGD}


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
            if cls.name == method and cls is not SGD:  # SGD needs a batch size
                return cls()
        raise ValueError(f"method must be a step rule ({', '.join(sorted(METHODS))}) or one of "
                         f"{[c.name for c in METHODS.values()]}, got {method!r}")
    if isinstance(method, dict):
        return method_from_json(method)
    raise ValueError(f"method must be a step rule such as dlnsim.GD(), got {method!r}")
