"""One interface for published convergence theorems: a hypothesis report, a stepsize, a rate envelope.

A `TheoremReport` is what a theorem says about one instance (problem, start): every hypothesis checked
(``"holds"``, ``"fails"`` with the measured and the required value, or ``"not_checkable"`` when it involves a
universal constant the paper does not give; such a hypothesis is never counted as holding), the largest constant
stepsize it admits in our units (loss 1/2 ||Y - W X||_F^2, GD on the factors), and, when it gives one, its
predicted envelope on the excess loss L(k) - L*:

    L(k) - L*  <=  (L(0) - L*) * prod_{i < k} (1 - a eta_i),

with the theorem's rate coefficient ``a`` (all the linear-rate theorems here have this form), and the number of
iterations it predicts to reach an excess loss eps.  `envelope_ratio` measures a GD run against the envelope.
The theorems themselves are in `dlnsim.theory.published`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import xarray as xr

from dlnsim.checks import positive_float

__all__ = ["FAILS", "HOLDS", "NOT_CHECKABLE", "Hypothesis", "TheoremReport", "envelope_ratio"]

Status = Literal["holds", "fails", "not_checkable"]
HOLDS: Status = "holds"
FAILS: Status = "fails"
NOT_CHECKABLE: Status = "not_checkable"

#: envelope values below this fraction of the initial loss are at rounding level: no ratio is taken there
ROUNDING = 1e-12


@dataclass(frozen=True)
class Hypothesis:
    """One hypothesis of a theorem, checked on an instance.

    ``measured`` and ``required`` are numbers where the hypothesis is a comparison (``measured relation
    required``, e.g. a width ``>=`` a bound); NaN where there is nothing to measure.  ``detail`` says what was
    compared and, for a not-checkable hypothesis, which constant is missing (and what it would have to be).
    """

    key: str
    statement: str
    status: Status
    measured: float = math.nan
    required: float = math.nan
    relation: str = ""
    detail: str = ""

    def __str__(self) -> str:
        value = ""
        if not math.isnan(self.measured):
            value = f": {self.measured:.4g}"
            if self.relation and not math.isnan(self.required):
                value += f" (required {self.relation} {self.required:.4g})"
        extra = f"; {self.detail}" if self.detail else ""
        return f"[{self.status}] {self.key}: {self.statement}{value}{extra}"


def comparison(key: str, statement: str, measured: float, relation: str, required: float,
               detail: str = "", rtol: float = 0.0) -> Hypothesis:
    """A checkable hypothesis ``measured relation required`` (relation one of <=, <, >=, >, ==)."""
    m, r = float(measured), float(required)
    tol = rtol * max(abs(r), abs(m))
    ok = {"<=": m <= r + tol, "<": m < r, ">=": m >= r - tol, ">": m > r, "==": abs(m - r) <= tol}[relation]
    return Hypothesis(key, statement, HOLDS if ok else FAILS, m, r, relation, detail)


def unknown(key: str, statement: str, detail: str, measured: float = math.nan, required: float = math.nan,
            relation: str = "") -> Hypothesis:
    """A hypothesis that involves a constant the source does not give: never counted as holding."""
    return Hypothesis(key, statement, NOT_CHECKABLE, float(measured), float(required), relation, detail)


@dataclass(frozen=True)
class TheoremReport:
    """What one theorem says about one instance (problem, start), in our units.

    Attributes
    ----------
    name, title, source : str
        Registry name (e.g. ``"hxp2020"``), the statement's name and the publication.
    confidence : str
        How the formulas are known (VERBATIM from the paper, from a restatement, RECONSTRUCTED, DERIVED
        translations), with what is not known.
    kind : {"gd", "flow"}
        A GD theorem, or a gradient-flow result (no stepsize).
    hypotheses : tuple of Hypothesis
        Every hypothesis, checked on this instance.
    eta : float
        The largest constant stepsize the theorem admits, in our units; NaN when it gives none (flows, or a
        stepsize not known from the source).  Computed whatever the hypotheses say (see ``admitted``).
    eta_own : float
        The same bound in the theorem's own units (its loss normalisation and parametrisation).
    rate_coefficient : float
        ``a`` of the envelope (1 - a eta) per step; NaN when the theorem gives no rate.
    excess0 : float
        L(0) - L* of the start (L* the least-squares optimum).
    loss0 : float
        L(0).
    conclusion : str
        What the theorem concludes (and with what probability).
    constants : mapping
        The intermediate quantities (margins, widths, norms, ...).
    params : mapping
        The theorem's own parameters as used.
    notes : tuple of str
        Caveats: reconstructed parts, translation rules used, what is not known.
    iterations_formula : callable or None
        For theorems that state an iteration count other than the envelope's (ACGH's Theorem 2): eps -> T.
    """

    name: str
    title: str
    source: str
    confidence: str
    kind: Literal["gd", "flow"]
    hypotheses: tuple[Hypothesis, ...]
    eta: float
    eta_own: float
    rate_coefficient: float
    excess0: float
    loss0: float
    conclusion: str
    constants: Mapping[str, float] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    stated_iterations: Callable[[float, float], float] | None = None

    @property
    def admitted(self) -> bool:
        """True when every checkable hypothesis holds (not-checkable ones are listed in ``unchecked``)."""
        return all(h.status != FAILS for h in self.hypotheses)

    @property
    def certified(self) -> bool:
        """True when every hypothesis was checked and holds (nothing not checkable)."""
        return all(h.status == HOLDS for h in self.hypotheses)

    @property
    def failing(self) -> tuple[Hypothesis, ...]:
        """The hypotheses that fail on this instance."""
        return tuple(h for h in self.hypotheses if h.status == FAILS)

    @property
    def unchecked(self) -> tuple[Hypothesis, ...]:
        """The hypotheses that cannot be checked (a constant the source does not give)."""
        return tuple(h for h in self.hypotheses if h.status == NOT_CHECKABLE)

    @property
    def has_rate(self) -> bool:
        """Whether the theorem gives a per-step envelope."""
        return math.isfinite(self.rate_coefficient)

    def hypothesis(self, key: str) -> Hypothesis:
        """The hypothesis named ``key``."""
        for h in self.hypotheses:
            if h.key == key:
                return h
        raise KeyError(f"{self.name} has no hypothesis {key!r}; it has {[h.key for h in self.hypotheses]}")

    def _eta(self, eta: float | None) -> float:
        if eta is None:
            if not (math.isfinite(self.eta) and self.eta > 0):
                raise ValueError(f"{self.name} gives no stepsize; pass eta")
            return self.eta
        return positive_float(eta, "eta")

    def contraction(self, eta: float | None = None) -> float:
        """The per-step factor 1 - a eta of the envelope (NaN without a rate); default eta = ``self.eta``."""
        if not self.has_rate:
            return math.nan
        return 1.0 - self.rate_coefficient * self._eta(eta)

    def envelope(self, k: Any, eta: float | Sequence[float] | np.ndarray | None = None) -> np.ndarray:
        """The predicted bound on L(k) - L* at iterations ``k`` for a constant ``eta`` (default ``self.eta``) or
        the stepsizes eta_0, eta_1, ... of a run (an array at least max(k) long); NaN without a rate."""
        ks = np.asarray(k, dtype=np.int64)
        if not self.has_rate:
            return np.full(ks.shape, math.nan)
        if eta is None or np.ndim(eta) == 0:
            q = self.contraction(None if eta is None else float(eta))  # type: ignore[arg-type]
            with np.errstate(under="ignore", divide="ignore"):
                return np.asarray(self.excess0 * np.power(max(q, 0.0), ks, dtype=float))
        etas = np.asarray(eta, dtype=float)
        if ks.size and ks.max() > etas.size:
            raise ValueError(f"eta: {etas.size} stepsizes, the envelope is asked at k = {int(ks.max())}")
        with np.errstate(divide="ignore"):
            logs = np.concatenate([[0.0], np.cumsum(np.log(np.maximum(1.0 - self.rate_coefficient * etas, 0.0)))])
        return np.asarray(self.excess0 * np.exp(logs[ks]))

    def iterations(self, eps: float, eta: float | None = None) -> float:
        """The number of iterations the theorem predicts to reach L - L* <= ``eps`` at the constant ``eta``
        (default ``self.eta``): its stated count when it has one, else the first k where the envelope is
        <= eps.  NaN when the theorem predicts none; inf when the envelope does not decrease."""
        e = positive_float(eps, "eps")
        if self.stated_iterations is not None:
            return float(self.stated_iterations(e, self._eta(eta)))
        if not self.has_rate:
            return math.nan
        if self.excess0 <= e:
            return 0.0
        q = self.contraction(eta)
        if q <= 0.0:
            return 1.0
        if q >= 1.0:
            return math.inf
        return float(math.ceil(math.log(self.excess0 / e) / -math.log(q)))

    def summary(self) -> str:
        """A readable report: the verdict, the stepsize, the rate and every hypothesis."""
        lines = [f"{self.name}: {self.title} ({self.source})",
                 f"  admitted: {self.admitted}" + ("" if self.certified or not self.admitted else
                                                    " (some hypotheses are not checkable)"),
                 f"  eta (our units): {self.eta:.4g}; own units: {self.eta_own:.4g}"]
        if self.has_rate:
            lines.append(f"  envelope: (L(0) - L*) (1 - {self.rate_coefficient:.4g} eta)^k, L(0) - L* = "
                         f"{self.excess0:.4g}")
        lines += ["  " + str(h) for h in self.hypotheses]
        lines.append(f"  conclusion: {self.conclusion}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def envelope_ratio(report: TheoremReport, run: xr.Dataset) -> xr.DataArray:
    """The measured excess loss of a GD run over the theorem's envelope at every record point.

    Where the theorem's hypotheses hold (``report.admitted`` and every eta_k <= ``report.eta``) the ratio must
    be <= 1; a value above 1 there is a bug or a wrong constant.  Points where the envelope is below
    1e-12 L(0) (rounding level) are NaN.

    Parameters
    ----------
    report : TheoremReport
        The theorem on the run's problem and start (see `dlnsim.theorem`), with a rate.
    run : xarray.Dataset
        A `dlnsim.run_gd` Dataset (``excess_loss`` and ``eta_k`` over ``k``).

    Returns
    -------
    xarray.DataArray
        Over ``k``; attributes ``theorem``, ``admitted`` (0/1), ``within_stepsize`` (0/1: every eta_k <=
        report.eta) and ``max_ratio``.

    Raises
    ------
    ValueError
        If the theorem gives no rate, or the run lacks ``excess_loss``, ``eta_k`` or ``k``.
    """
    if not isinstance(report, TheoremReport):
        raise ValueError(f"report must be a TheoremReport, got {type(report).__name__}")
    if not report.has_rate:
        raise ValueError(f"report: {report.name} gives no rate envelope")
    for name in ("excess_loss", "eta_k"):
        if name not in run:
            raise ValueError(f"run must be a dlnsim.run_gd Dataset with {name!r} over k")
    k = np.asarray(run["k"].values, dtype=np.int64)
    excess = np.asarray(run["excess_loss"].values, dtype=float)
    eta_k = np.asarray(run["eta_k"].values, dtype=float)
    etas = _stepsizes(k, eta_k)
    env = report.envelope(k, etas)
    floor = ROUNDING * max(report.loss0, report.excess0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(np.isfinite(excess) & (env > floor), excess / env, np.nan)
    within = bool(np.all(eta_k[np.isfinite(eta_k)] <= report.eta * (1 + 1e-12)))
    finite = ratio[np.isfinite(ratio)]
    return xr.DataArray(ratio, dims="k", coords={"k": k}, name="envelope_ratio", attrs={
        "units": "1", "long_name": f"(L(k) - L*) / envelope of {report.name}", "theorem": report.name,
        "admitted": int(report.admitted), "within_stepsize": int(within),
        "max_ratio": float(finite.max()) if finite.size else math.nan})


def _stepsizes(k: np.ndarray, eta_k: np.ndarray) -> np.ndarray:
    """eta_0, ..., eta_{K-1} from a run's eta_k at record points: a constant stepsize, or every step recorded;
    ValueError otherwise (the envelope needs every stepsize)."""
    ok = np.isfinite(eta_k)
    K = int(k.max()) if k.size else 0
    values = eta_k[ok]
    if values.size and np.all(values == values[0]):
        return np.full(K, values[0])
    if k.size == K + 1 and np.array_equal(k, np.arange(K + 1)) and np.all(ok[:K]):
        return eta_k[:K]
    raise ValueError("run: the stepsize varies and not every step is recorded (record='all'), so the envelope "
                     "cannot be evaluated")
