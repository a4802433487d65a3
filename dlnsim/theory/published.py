"""Published convergence theorems for GD on deep linear networks, each as a `TheoremReport` on an instance.

Every theorem is translated to our units: loss L = 1/2 ||Y - W_N ... W_1 X||_F^2 (no 1/m), GD on the factors
with stepsize eta.  The translation rules (derived, checked in the tests):

(R1) loss scaling: GD on s L with stepsize eta' is GD on L with stepsize s eta'.
(R2) whitened data: if X X^T = s I then L(W) = s/2 ||W - Phi||_F^2 + L*, Phi = Y X^T / s; so GD on
     1/2 ||W - Phi||_F^2 with stepsize eta' (Arora-Cohen-Golowich-Hu's objective) is our GD with eta = eta'/s,
     and their excess loss is ours divided by s.  ACGH normalise 1/m X X^T = I (s = m); the statement only uses
     the reduced objective, so any s works the same way.
(R3) non-whitened data: no transfer (whitening makes GD a preconditioned GD in W_1); `starts.whiten` builds the
     whitened problem, a different run.
(R4) output scale alpha (Du-Hu, Hu-Xiao-Pennington): GD with eta on 1/2 ||alpha W_N ... W_1 X - Y||^2 is our GD
     in W'_j = alpha^{1/N} W_j with eta_ours = alpha^{2/N} eta, alpha = (h^{N-1} d_y)^{-1/2}.
(R5) ACGH's balancedness uses the Frobenius norm, ours the spectral norm.

The theorems (name: statement, how it is known):

* ``nrt2024``: the reference paper's Theorem 2.4 with (2.8) (wraps `dlnsim.stepsize_bound`); convergence to a
  critical point, no rate.  ``nrt2024_remark2.5``: the closed form of Remark 2.5(b).  ``nrt2024_thm2.6``:
  Theorem 2.6 for a set of starts (wraps `dlnsim.set_stepsize_bound`).
* ``acgh2019``: Arora-Cohen-Golowich-Hu (ICLR 2019) Theorem 1 (verbatim from a restatement, corroborated by the
  paper's text); ``acgh2019_thm2``: their Theorem 2 (scalar output), RECONSTRUCTED.
* ``du_hu2019``: Du-Hu (ICML 2019) Theorem 4.1 (verbatim from the paper); its width constant C is not given.
* ``hxp2020``: Hu-Xiao-Pennington (ICLR 2020) Theorem 4.1 (verbatim from the submission version); C not given.
* ``ach2018``: Arora-Cohen-Hazan (ICML 2018) end-to-end dynamics, a gradient-flow identity (no stepsize).
* ``ec2021``: Elkabetz-Cohen (NeurIPS 2021), only the hypotheses known from their summaries; their stepsize and
  iteration count are not known here.
* ``bhl2018``: Bartlett-Helmbold-Long (ICML 2018), abstract-level hypotheses only; no constants.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dlnsim.checks import as_weights, positive_float
from dlnsim.init import balancedness
from dlnsim.objective import gradient
from dlnsim.problem import Problem
from dlnsim.theory.bounds import StepsizeBound, stepsize_bound
from dlnsim.theory.set_bound import set_stepsize_bound
from dlnsim.theory.theorems import FAILS, Hypothesis, TheoremReport, comparison, unknown

__all__ = [
    "THEOREMS",
    "end_to_end_operator",
    "end_to_end_residual",
    "theorem",
    "theorem_names",
    "theorems",
]

#: relative tolerance of the "data are whitened" check, ||X X^T / s - I|| <= WHITE_TOL
WHITE_TOL = 1e-8
#: relative tolerance of exact structural checks (balanced, orthogonal), for rounding
EXACT_TOL = 1e-10


@dataclass(frozen=True)
class _Instance:
    """The quantities of (problem, W0) every theorem uses."""

    problem: Problem
    W: list[np.ndarray]
    widths: tuple[int, ...]
    N: int
    product: np.ndarray
    loss0: float
    excess0: float
    bal_spec: float  # max_j ||W_{j+1}^T W_{j+1} - W_j W_j^T|| (spectral)
    bal_frob: float  # the same in the Frobenius norm
    white_scale: float  # s = tr(X X^T) / d_x
    white_dev: float  # ||X X^T / s - I|| (spectral)

    @property
    def hidden(self) -> tuple[int, ...]:
        return self.widths[1:-1]

    @property
    def factor_scale(self) -> float:
        """max_j ||W_j||^2, the scale of the balancedness differences."""
        return max(float(np.linalg.norm(Wj, 2)) ** 2 for Wj in self.W)


def _instance(problem: Any, W0: Any) -> _Instance:
    if not isinstance(problem, Problem):
        raise ValueError(f"problem must be a dlnsim.Problem, got {type(problem).__name__}")
    W = as_weights(W0, "W0")
    if W[0].shape[1] != problem.d_x or W[-1].shape[0] != problem.d_y:
        raise ValueError(f"W0 does not fit the problem: W_1 has {W[0].shape[1]} columns (d_x = {problem.d_x}) and "
                         f"W_N has {W[-1].shape[0]} rows (d_y = {problem.d_y})")
    P = W[0]
    for Wj in W[1:]:
        P = Wj @ P
    loss0 = 0.5 * float(np.sum((problem.Y - P @ problem.X) ** 2))
    N = len(W)
    frob = 0.0
    for j in range(N - 1):
        frob = max(frob, float(np.linalg.norm(W[j + 1].T @ W[j + 1] - W[j] @ W[j].T)))
    C = np.asarray(problem.XXt)
    s = float(np.trace(C)) / problem.d_x
    dev = float(np.linalg.norm(C / s - np.eye(problem.d_x), 2))
    widths = (W[0].shape[1], *(Wj.shape[0] for Wj in W))
    return _Instance(problem, W, widths, N, P, loss0, max(loss0 - problem.lstar, 0.0),
                     float(balancedness(W).max()) if N > 1 else 0.0, frob, s, dev)


def _check_eta(eta: Any, bound: float, key: str = "stepsize") -> Hypothesis | None:
    """The hypothesis eta <= bound for a stepsize the caller asks about (None when not asked)."""
    if eta is None:
        return None
    e = positive_float(eta, "eta")
    return comparison(key, "constant stepsize eta <= the theorem's bound (our units)", e, "<=", bound,
                      rtol=1e-12)


def _whitened(inst: _Instance) -> Hypothesis:
    return comparison("whitened", "whitened inputs: X X^T = s I for some s > 0", inst.white_dev, "<=", WHITE_TOL,
                      detail=f"||X X^T/s - I|| with s = tr(X X^T)/d_x = {inst.white_scale:.6g}; "
                             "dlnsim.theory.starts.whiten builds the whitened problem (a different GD run)")


def _hypotheses(*items: Hypothesis | None) -> tuple[Hypothesis, ...]:
    return tuple(h for h in items if h is not None)


# ------------------------------------------------------------------------------------------ the reference paper

_NRT_SOURCE = "Nguegnang, Rauhut, Terstiege, Adv. Contin. Discrete Models 2024:23 (arXiv 2108.02040)"
_NRT_CONF = ("(2.8)-(2.11) RECONSTRUCTED with high confidence from the text and the three reported stepsizes; "
             "statement structure VERIFIED-TEXT")


def _nrt_common(inst: _Instance, b: StepsizeBound | None, alpha_delta: float, why: str) -> list[Hypothesis]:
    problem = inst.problem
    hyps = [comparison("full_rank", "X X^T has full rank", problem.lambda_min, ">", 0.0,
                       detail="lambda_min(X X^T)")]
    if b is None:
        hyps.append(Hypothesis("balancedness", "W(0) has balancedness constant alpha*delta with alpha in [0, 1)",
                               FAILS, inst.bal_spec, alpha_delta, "<=", why))
    else:
        hyps.append(comparison("balancedness", "W(0) has balancedness constant alpha*delta with alpha in [0, 1)",
                               b.balancedness0 if b.balancedness0 > 1e-12 * max(1.0, b.M ** (2 / inst.N)) else 0.0,
                               "<=", b.alpha * b.delta, rtol=1e-12,
                               detail=f"spectral norm; alpha = {b.alpha:.4g}, delta = {b.delta:.4g} ({b.rule})"))
    return hyps


def nrt2024(problem: Problem, W0: Sequence[np.ndarray], *, delta: Any = "optimal", alpha: Any = "min",
            k_constant: Any = None, eta: float | None = None) -> TheoremReport:
    """The reference paper's Theorem 2.4 with (2.8): ``delta``, ``alpha``, ``k_constant`` as in
    `dlnsim.stepsize_bound` (default: the (alpha, delta) with the largest bound)."""
    inst = _instance(problem, W0)
    try:
        b: StepsizeBound | None = stepsize_bound(problem, inst.W, delta=delta, alpha=alpha, k_constant=k_constant)
        why = ""
    except ValueError as exc:
        if "balancedness" not in str(exc):
            raise
        b, why = None, str(exc)
    constants: dict[str, float] = {"balancedness0": inst.bal_spec}
    if b is not None:
        constants.update(M=b.M, delta=b.delta, K=b.K, B=b.B, sigma=b.sigma, alpha=b.alpha)
    try:
        constants["eta_section5"] = stepsize_bound(problem, inst.W, delta="section5", alpha="min").eta
    except ValueError:
        constants["eta_section5"] = math.nan
    eta_b = b.eta if b is not None else math.nan
    return TheoremReport(
        name="nrt2024", title="Theorem 2.4 with (2.8)", source=_NRT_SOURCE, confidence=_NRT_CONF, kind="gd",
        hypotheses=_hypotheses(*_nrt_common(inst, b, math.nan, why), _check_eta(eta, eta_b)),
        eta=eta_b, eta_own=eta_b, rate_coefficient=math.nan, excess0=inst.excess0, loss0=inst.loss0,
        conclusion=("GD with eta_k <= eta (and sum eta_k = inf) converges to a critical point of L^N; the loss "
                    "decreases and the balancedness stays <= delta (Prop. 3.4); no rate, no iteration count"),
        constants=constants, params={"delta": delta, "alpha": alpha, "k_constant": k_constant},
        notes=("our units are the paper's units",
               "eta_section5 is (5.1), the choice of the paper's experiments; eta uses the delta and alpha asked"))


def nrt2024_remark25(problem: Problem, W0: Sequence[np.ndarray], *, alpha: Any = "min",
                     eta: float | None = None) -> TheoremReport:
    """Remark 2.5(b): delta = M^{2/N}/(N (N+1)^2) and its explicit closed-form stepsize (a sufficient
    condition for (2.8))."""
    inst = _instance(problem, W0)
    try:
        b: StepsizeBound | None = stepsize_bound(problem, inst.W, delta="remark2.5", alpha=alpha)
        why = ""
    except ValueError as exc:
        if "balancedness" not in str(exc):
            raise
        b, why = None, str(exc)
    eta_b = b.eta_closed_form if b is not None else math.nan
    constants = {"balancedness0": inst.bal_spec}
    if b is not None:
        constants.update(M=b.M, delta=b.delta, eta_28=b.eta, alpha=b.alpha)
    return TheoremReport(
        name="nrt2024_remark2.5", title="Remark 2.5(b) (closed form of (2.8))", source=_NRT_SOURCE,
        confidence=_NRT_CONF + "; Remark 2.5(b) VERIFIED-TEXT (signs restored)", kind="gd",
        hypotheses=_hypotheses(*_nrt_common(inst, b, math.nan, why), _check_eta(eta, eta_b)),
        eta=eta_b, eta_own=eta_b, rate_coefficient=math.nan, excess0=inst.excess0, loss0=inst.loss0,
        conclusion="as Theorem 2.4: convergence to a critical point of L^N; no rate",
        constants=constants, params={"alpha": alpha},
        notes=("eta is the remark's closed form; (2.8) at the same delta is eta_28 (larger)",))


def nrt2024_thm26(problem: Problem, W0: Sequence[np.ndarray], *, delta_B: float | None = None,
                  L_B: float | None = None, alpha: float | None = None, delta: Any = "optimal",
                  k_constant: Any = "theorem", eta: float | None = None) -> TheoremReport:
    """Theorem 2.6 for a bounded set B of starts described by ``delta_B`` (2.12) and ``L_B`` (2.13) (default: B
    = {W0}); ``alpha`` default: the best of a grid in (0, 1) (0 when delta_B = 0)."""
    inst = _instance(problem, W0)
    dB = inst.bal_spec if delta_B is None else positive_float(delta_B, "delta_B", allow_zero=True)
    LB = inst.loss0 if L_B is None else positive_float(L_B, "L_B", allow_zero=True)
    tol = 1e-12 * max(1.0, inst.factor_scale)
    if dB <= tol:
        dB = 0.0
    if alpha is None:
        alphas = [0.0] if dB == 0.0 else list(np.linspace(0.05, 0.95, 19))
        bounds = [set_stepsize_bound(problem, inst.N, dB, LB, float(a), delta=delta, k_constant=k_constant)
                  for a in alphas]
        b = max(bounds, key=lambda x: x.eta)
    else:
        b = set_stepsize_bound(problem, inst.N, dB, LB, alpha, delta=delta, k_constant=k_constant)
    bal0 = inst.bal_spec if inst.bal_spec > tol else 0.0
    hyps = _hypotheses(
        comparison("full_rank", "X X^T has full rank", problem.lambda_min, ">", 0.0, detail="lambda_min(X X^T)"),
        comparison("start_in_B_loss", "W(0) in B: L(W(0)) <= L_B", inst.loss0, "<=", LB, rtol=1e-12),
        comparison("start_in_B_balancedness", "W(0) in B: balancedness(W(0)) <= delta_B", bal0, "<=", dB,
                   rtol=1e-12),
        comparison("set_balancedness", "delta_B <= alpha*delta, alpha in [0, 1)", dB, "<=", b.alpha * b.delta,
                   rtol=1e-12),
        unknown("generic_start", "W(0) outside the Lebesgue-null set of starts that converge to a strict saddle",
                "a null set, not checkable for one start (random starts avoid it with probability 1)"),
        _check_eta(eta, b.eta),
    )
    return TheoremReport(
        name="nrt2024_thm2.6", title="Theorem 2.6 with (2.14)", source=_NRT_SOURCE, confidence=_NRT_CONF,
        kind="gd", hypotheses=hyps, eta=b.eta, eta_own=b.eta, rate_coefficient=math.nan, excess0=inst.excess0,
        loss0=inst.loss0,
        conclusion=("for almost every start in B, GD with a constant eta <= eta converges to a critical point "
                    "whose product minimises L^1 over the matrices of some rank k <= min(rank Q, min_j d_j); for "
                    "N = 2 to a global minimiser of L^2; no rate"),
        constants={"delta_B": dB, "L_B": LB, "M_B": b.M, "delta": b.delta, "alpha": b.alpha, "B": b.B},
        params={"delta_B": delta_B, "L_B": L_B, "alpha": alpha, "delta": delta, "k_constant": k_constant},
        notes=("B = {W0} unless delta_B, L_B are given",))


# ------------------------------------------------------------------------------------------------------ ACGH

_ACGH_SOURCE = "Arora, Cohen, Golowich, Hu, ICLR 2019 (arXiv 1810.02281)"


def _acgh_target(inst: _Instance) -> tuple[float, np.ndarray]:
    """(s, Phi): the whitening scale and the target Y X^T / s (= the least-squares solution when whitened)."""
    s = inst.white_scale
    return s, np.asarray(inst.problem.YXt) / s


def acgh2019(problem: Problem, W0: Sequence[np.ndarray], *, c: float | None = None,
             eta: float | None = None) -> TheoremReport:
    """Arora-Cohen-Golowich-Hu Theorem 1 (deficiency margin ``c``, default the best one of the start:
    c = sigma_min(Phi) - ||W(0) - Phi||_F)."""
    inst = _instance(problem, W0)
    N = inst.N
    s, Phi = _acgh_target(inst)
    sv = np.linalg.svd(Phi, compute_uv=False)
    k = min(Phi.shape)
    smin = float(sv[k - 1]) if sv.size >= k else 0.0
    phiF = float(np.linalg.norm(Phi))
    dist = float(np.linalg.norm(inst.product - Phi))
    c_max = smin - dist
    if c is None:
        cc = c_max
        margin = comparison("margin", "W(0) has a deficiency margin c > 0: ||W(0) - Phi||_F <= sigma_min(Phi) - c",
                            c_max, ">", 0.0, detail=f"c = sigma_min(Phi) - ||W(0) - Phi||_F, sigma_min(Phi) = "
                            f"{smin:.4g}, ||W(0) - Phi||_F = {dist:.4g}")
    else:
        cc = positive_float(c, "c")
        margin = comparison("margin", "W(0) has deficiency margin c: ||W(0) - Phi||_F <= sigma_min(Phi) - c",
                            dist, "<=", smin - cc, rtol=1e-12, detail=f"c = {cc:.4g}")
    ok = cc > 0.0 and phiF > 0.0
    no_margin = "no deficiency margin c > 0: the required delta (and the stepsize) are undefined"
    delta_req = cc**2 / (256.0 * N**3 * phiF ** (2.0 * (N - 1) / N)) if ok else math.nan
    eta_own = cc ** ((4.0 * N - 2) / N) / (6144.0 * N**3 * phiF ** ((6.0 * N - 4) / N)) if ok else math.nan
    rate_a = s * cc ** (2.0 * (N - 1) / N) if ok else math.nan
    tol = 1e-13 * max(1.0, inst.factor_scale) * math.sqrt(max(inst.widths))
    bal = inst.bal_frob if inst.bal_frob > tol else 0.0
    k_min = min(inst.widths[0], inst.widths[-1])
    hyps = _hypotheses(
        _whitened(inst),
        comparison("no_bottleneck", "every hidden width >= min(d_x, d_y)", float(min(inst.hidden, default=k_min)),
                   ">=", float(k_min)),
        margin,
        comparison("balanced", "max_j ||W_{j+1}^T W_{j+1} - W_j W_j^T||_F <= c^2 / (256 N^3 ||Phi||_F^(2(N-1)/N))",
                   bal, "<=", delta_req, detail="Frobenius norm (rounding-level values count as 0)"
                   + ("" if ok else "; " + no_margin)),
        _check_eta(eta, eta_own / s),
    )
    e0 = inst.excess0

    def stated(eps: float, eta_: float) -> float:
        if not ok:
            return math.nan
        if e0 <= eps:
            return 0.0
        return float(math.ceil(math.log(e0 / eps) / (s * eta_ * cc ** (2.0 * (N - 1) / N))))

    return TheoremReport(
        name="acgh2019", title="Theorem 1 (deficiency margin, approximate balancedness)", source=_ACGH_SOURCE,
        confidence=("VERBATIM-S (course-notes restatement; the paper's text confirms 6144, ||Phi||_F and the "
                    "shape); linear rate per step VERBATIM-S/DERIVED from Lemma 1; units DERIVED via (R1), (R2)"),
        kind="gd", hypotheses=hyps, eta=eta_own / s, eta_own=eta_own, rate_coefficient=rate_a, excess0=e0,
        loss0=inst.loss0,
        conclusion=("L(T) - L* <= eps for T >= ln((L(0) - L*)/eps) / (s eta c^(2(N-1)/N)); per step "
                    "L(t) - L* <= (1 - s eta c^(2(N-1)/N))^t (L(0) - L*); deterministic"),
        constants={"whitening_scale": s, "sigma_min_Phi": smin, "norm_Phi_F": phiF, "distance": dist, "c_max": c_max,
                   "c": cc, "delta_required": delta_req, "balancedness_frobenius": inst.bal_frob},
        params={"c": c}, stated_iterations=stated,
        notes=("Phi = Y X^T / s with s = tr(X X^T)/d_x; on data that are not whitened the numbers are those of "
               "the formulas and predict nothing (R3)",
               "eta (ours) = eta (theirs) / s; excess loss (ours) = s * their l(t)"))


def acgh2019_thm2(problem: Problem, W0: Sequence[np.ndarray], *, s: float, eta: float | None = None
                  ) -> TheoremReport:
    """Arora-Cohen-Golowich-Hu Theorem 2 (scalar output, Procedure-1 start whose product has iid N(0, s^2)
    entries), RECONSTRUCTED; ``s`` is that standard deviation."""
    inst = _instance(problem, W0)
    sd = positive_float(s, "s")
    N = inst.N
    sw, Phi = _acgh_target(inst)
    phi = float(np.linalg.norm(Phi, 2))
    d0 = inst.widths[0]
    c_dist = float(np.linalg.norm(Phi)) - float(np.linalg.norm(inst.product - Phi))
    c_event = sd**2 * d0 / (2.0 * phi) if phi > 0 else math.nan
    tol = 1e-13 * max(1.0, inst.factor_scale) * math.sqrt(max(inst.widths))
    k_min = min(inst.widths[0], inst.widths[-1])
    hyps = _hypotheses(
        comparison("scalar_output", "scalar regression: d_y = 1", float(problem.d_y), "==", 1.0),
        _whitened(inst),
        comparison("no_bottleneck", "every hidden width >= min(d_x, d_y)", float(min(inst.hidden, default=k_min)),
                   ">=", float(k_min)),
        comparison("balanced", "Procedure-1 start: W_{j+1}^T W_{j+1} = W_j W_j^T (Frobenius, rounding level)",
                   inst.bal_frob, "<=", tol),
        unknown("input_dimension", "d_x >= d_0' (a constant depending on p)", "d_0' is not given; the paper says "
                "d_x >= 100 with a >= 100 gives a probability > 0.25", float(d0), 100.0, ">="),
        unknown("init_scale", "s <= ||Phi|| / sqrt(a d_x^2) (a constant depending on p)",
                f"a is not given; with a = 100: s = {sd:.4g} vs ||Phi||/(10 d_x) = {phi / (10 * d0):.4g}",
                sd, phi / (10 * d0), "<="),
        comparison("margin_event", "the event of the proof: W(0) has deficiency margin s^2 d_x / (2 ||Phi||)",
                   c_dist, ">=", c_event, detail="probability -> 1/2 over the start; checked on this draw"),
        _check_eta(eta, math.nan if phi == 0 else
                   (sd**2 * d0) ** (4 - 2 / N) / (1e5 * N**3 * phi ** ((10 * N - 6) / N)) / sw),
    )
    eta_own = (sd**2 * d0) ** (4 - 2 / N) / (1e5 * N**3 * phi ** ((10 * N - 6) / N)) if phi > 0 else math.nan

    def stated(eps: float, eta_: float) -> float:
        eta_a, eps_a = sw * eta_, eps / sw
        T = 4.0 / eta_a * (math.log(4.0) * (phi / (sd**2 * d0)) ** (2 - 2 / N)
                           + phi ** (2 / N - 2) * max(math.log(phi**2 / (8 * eps_a)), 0.0))
        return float(math.ceil(T))

    return TheoremReport(
        name="acgh2019_thm2", title="Theorem 2 (scalar output, balanced random start)", source=_ACGH_SOURCE,
        confidence=("RECONSTRUCTED (s, eta, T from memory, re-derived from the proof text: 2^4 6144 < 10^5, two "
                    "runs of Theorem 1); hypotheses VERBATIM-P prose; d_0' and a not given"),
        kind="gd", hypotheses=hyps, eta=eta_own / sw, eta_own=eta_own, rate_coefficient=math.nan,
        excess0=inst.excess0, loss0=inst.loss0,
        conclusion="with probability >= p over the start, L(T) - L* <= eps for T >= the stated count",
        constants={"whitening_scale": sw, "norm_Phi": phi, "margin_of_draw": c_dist, "margin_event": c_event},
        params={"s": sd}, stated_iterations=stated,
        notes=("a statement about a random start: a single draw is checked for the event the proof needs",
               "no per-step envelope is stated; iterations() is the theorem's count"))


# ---------------------------------------------------------------------------------------------- Du-Hu and HXP


def _equal_widths(inst: _Instance) -> tuple[Hypothesis, int]:
    hidden = inst.hidden
    if not hidden:
        return Hypothesis("equal_widths", "at least one hidden layer, all hidden widths equal", FAILS,
                          detail="N = 1 has no hidden layer"), 0
    return comparison("equal_widths", "all hidden widths equal (h)", float(min(hidden)), "==", float(max(hidden)),
                      detail=f"hidden widths {list(hidden)}"), hidden[0]


def _wide_constants(inst: _Instance) -> dict[str, float]:
    p = inst.problem
    kappa = p.lambda_max / p.lambda_min
    W_star = np.asarray(p.W_ls)
    return {"r": float(p.d_x), "kappa": kappa, "norm_W_star": float(np.linalg.norm(W_star, 2)),
            "stable_rank": float(np.sum(np.asarray(p.X) ** 2)) / p.lambda_max, "sigma_min_X_sq": p.lambda_min,
            "norm_X_sq": p.lambda_max}


def _gaussian_shape(W: np.ndarray) -> float:
    """||W^T W||_F^2 n p / (||W||_F^4 (n + p + 1)): about 1 for iid Gaussian entries, about 1/2 for a square
    scaled orthogonal matrix."""
    n, q = W.shape
    f2 = float(np.sum(W * W))
    return float(np.sum((W.T @ W) ** 2)) * n * q / (f2**2 * (n + q + 1)) if f2 > 0 else math.nan


def du_hu2019(problem: Problem, W0: Sequence[np.ndarray], *, delta: float = 0.1, eta: float | None = None
              ) -> TheoremReport:
    """Du-Hu Theorem 4.1 (Gaussian start, equal hidden widths h >= d_y); ``delta`` is the failure probability."""
    inst = _instance(problem, W0)
    dlt = positive_float(delta, "delta")
    if dlt >= 1:
        raise ValueError(f"delta must lie in (0, 1), got {delta!r}")
    N, d_y = inst.N, problem.d_y
    eq, h = _equal_widths(inst)
    k = _wide_constants(inst)
    hyps: list[Hypothesis | None] = [eq]
    if h:
        a2n = (h ** (N - 1) * d_y) ** (-1.0 / N)  # alpha^{2/N}
        std = math.sqrt(a2n)
        bracket = N * max(k["r"] * k["kappa"] ** 3 * d_y * (1 + k["norm_W_star"] ** 2),
                          k["r"] * k["kappa"] ** 3 * math.log(k["r"] / dlt), math.log(N))
        rms = [float(np.sqrt(np.mean(Wj**2))) for Wj in inst.W]
        scale_dev = max(abs(v / std - 1.0) for v in rms)
        n_min = min(Wj.size for Wj in inst.W)
        shapes = [_gaussian_shape(Wj) for Wj in inst.W if min(Wj.shape) >= 10]
        shape_dev = max((abs(v - 1.0) for v in shapes), default=math.nan)
        shape_text = ("max_j |||W^T W||_F^2 n p/(||W||_F^4 (n+p+1)) - 1| over layers with both sides >= 10 (about 0 "
                      "for Gaussian, sd <= 0.06; 1/2 for orthogonal); a check of one draw")
        shape = (comparison("init_gaussian", "iid Gaussian entries: the spread of the singular values of each layer",
                            shape_dev, "<=", 0.3, detail=shape_text) if shapes else
                 unknown("init_gaussian", "iid Gaussian entries", "no layer with both sides >= 10: the distribution "
                         "of one small draw is not checked"))
        # structure a Gaussian draw has with probability 0: an exactly balanced tuple, or a layer with all its
        # singular values equal (orthogonal-type layers)
        spreads = [float(sv[0] / sv[-1] - 1.0) if sv[-1] > 0 else math.inf
                   for sv in (np.linalg.svd(Wj, compute_uv=False) for Wj in inst.W if min(Wj.shape) >= 2)]
        spread = min(spreads, default=math.inf)
        balanced = inst.bal_spec <= 1e-10 * max(1.0, inst.factor_scale)
        generic = min(spread, math.inf if not balanced else 0.0)
        hyps += [
            comparison("init_generic", "a Gaussian draw: not exactly balanced and no layer with equal singular "
                       "values (both have probability 0)", generic, ">", 1e-8,
                       detail=f"min over layers of sigma_max/sigma_min - 1 = {spread:.3g}; balancedness "
                              f"{inst.bal_spec:.3g} (0 when exactly balanced)"),
            comparison("output_width", "h >= d_y", float(h), ">=", float(d_y)),
            unknown("width", "h >= C N max{r kappa^3 d_y (1 + ||Phi||^2), r kappa^3 log(r/delta), log N} (4)",
                    f"C is not given: h >= C x {bracket:.4g}; this start would need C <= {h / bracket:.3g}",
                    float(h), bracket, ">= C x"),
            comparison("init_scale", "iid N(0, (h^(N-1) d_y)^(-1/N)) entries: the entry scale of each layer",
                       scale_dev, "<=", 6.0 / math.sqrt(2.0 * n_min),
                       detail=f"max_j |rms(W_j)/std - 1|, std = {std:.4g}; 6 standard deviations of a Gaussian draw"),
            shape,
        ]
        eta_own = d_y / (3.0 * N * problem.lambda_max)
        eta_ours = eta_own * a2n
        rate_a = N * problem.lambda_min / (4.0 * d_y) / a2n
        hyps.append(_check_eta(eta, eta_ours))
        consts = {**k, "h": float(h), "width_bracket": bracket, "alpha_2_over_N": a2n}
    else:
        eta_own = eta_ours = rate_a = math.nan
        consts = dict(k)
    return TheoremReport(
        name="du_hu2019", title="Theorem 4.1 (Gaussian start, width)", source="Du, Hu, ICML 2019 (arXiv 1901.08572)",
        confidence=("VERBATIM-P (arXiv v3); units DERIVED via (R4); the universal constant C of the width condition "
                    "and the O() of the initial-loss bound are not given"),
        kind="gd", hypotheses=_hypotheses(*hyps), eta=eta_ours, eta_own=eta_own, rate_coefficient=rate_a,
        excess0=inst.excess0, loss0=inst.loss0,
        conclusion=(f"with probability >= 1 - delta = {1 - dlt:g} over the start: L(t) - L* <= "
                    "(1 - eta_own N lambda_min(X X^T)/(4 d_y))^t (L(0) - L*), eta_own = eta alpha^(-2/N)"),
        constants=consts, params={"delta": dlt},
        notes=("Phi = the least-squares solution (X X^T invertible: the only minimiser)",
               "our factors are alpha^(1/N) times theirs, alpha = (h^(N-1) d_y)^(-1/2); eta = alpha^(2/N) eta_own"))


def hxp2020(problem: Problem, W0: Sequence[np.ndarray], *, delta: float = 0.1, eta: float | None = None
            ) -> TheoremReport:
    """Hu-Xiao-Pennington Theorem 4.1 (scaled orthogonal start, equal hidden widths h >= max(d_x, d_y))."""
    inst = _instance(problem, W0)
    dlt = positive_float(delta, "delta")
    if dlt >= 1:
        raise ValueError(f"delta must lie in (0, 1), got {delta!r}")
    N, d_x, d_y = inst.N, problem.d_x, problem.d_y
    eq, h = _equal_widths(inst)
    k = _wide_constants(inst)
    hyps: list[Hypothesis | None] = [eq]
    if h:
        a2n = (h ** (N - 1) * d_y) ** (-1.0 / N)
        c2 = (h / d_y) ** (1.0 / N)  # squared singular value of every factor
        bracket = k["stable_rank"] * k["kappa"] ** 2 * (d_y * (1 + k["norm_W_star"] ** 2) + math.log(k["r"] / dlt))
        dev = 0.0
        for j, Wj in enumerate(inst.W):
            grams = []
            if j < N - 1 or Wj.shape[0] >= Wj.shape[1]:
                grams.append(Wj.T @ Wj)  # W_1 and the square layers: orthonormal columns
            if j > 0:
                grams.append(Wj @ Wj.T)  # W_N and the square layers: orthonormal rows
            for G in grams:
                if G.shape[0] <= h:
                    dev = max(dev, float(np.linalg.norm(G / c2 - np.eye(G.shape[0]), 2)))
        hyps += [
            comparison("width_io", "h >= max(d_x, d_y)", float(h), ">=", float(max(d_x, d_y))),
            unknown("width", "h >= C r~ kappa^2 (d_y (1 + ||W*||^2) + log(r/delta)) (5)",
                    f"C is not given: h >= C x {bracket:.4g}; this start would need C <= {h / bracket:.3g}",
                    float(h), bracket, ">= C x"),
            comparison("init_orthogonal", "scaled orthogonal layers: W_1^T W_1, W_i^T W_i = W_i W_i^T, W_N W_N^T "
                       "all = (h/d_y)^(1/N) I", dev, "<=", 1e-8,
                       detail="max relative deviation (spectral); the uniform distribution is not checkable on one "
                              "draw"),
        ]
        eta_own = d_y / (2.0 * N * problem.lambda_max)
        eta_ours = eta_own * a2n
        rate_a = N * problem.lambda_min / (2.0 * d_y) / a2n
        hyps.append(_check_eta(eta, eta_ours))
        consts = {**k, "h": float(h), "width_bracket": bracket, "alpha_2_over_N": a2n, "orthogonal_deviation": dev}
    else:
        eta_own = eta_ours = rate_a = math.nan
        consts = dict(k)
    return TheoremReport(
        name="hxp2020", title="Theorem 4.1 (orthogonal start)",
        source="Hu, Xiao, Pennington, ICLR 2020 (arXiv 2001.05992)",
        confidence=("VERBATIM-P (OpenReview submission version; the camera-ready was not seen); units DERIVED via "
                    "(R4); the universal constant C is not given"),
        kind="gd", hypotheses=_hypotheses(*hyps), eta=eta_ours, eta_own=eta_own, rate_coefficient=rate_a,
        excess0=inst.excess0, loss0=inst.loss0,
        conclusion=(f"with probability >= 1 - delta = {1 - dlt:g} over the start: L(t) - L* <= "
                    "(1 - eta_own N lambda_min(X X^T)/(2 d_y))^t (L(0) - L*), eta_own = eta alpha^(-2/N)"),
        constants=consts, params={"delta": dlt},
        notes=("W* = the least-squares solution (the minimum-norm minimiser, which makes (5) weakest)",
               "the width condition does not grow with the depth"))


# ------------------------------------------------------------------------------------------- flow and partial


def _psd_power(S: np.ndarray, p: float) -> np.ndarray:
    if p == 0.0:
        return np.eye(S.shape[0])
    w, v = np.linalg.eigh(0.5 * (S + S.T))
    # rounding-level eigenvalues of a rank-deficient W W^T are zeros (their fractional powers would not be small)
    w = np.where(w > S.shape[0] * np.finfo(float).eps * max(float(w.max()), 0.0), w, 0.0)
    return np.asarray((v * w**p) @ v.T)


def end_to_end_operator(W: np.ndarray, Z: np.ndarray, N: int) -> np.ndarray:
    """A_W(Z) = sum_{j=1}^N (W W^T)^{(N-j)/N} Z (W^T W)^{(j-1)/N} (PSD powers, power 0 = identity)."""
    L, R = W @ W.T, W.T @ W
    return np.asarray(sum(_psd_power(L, (N - j) / N) @ Z @ _psd_power(R, (j - 1) / N) for j in range(1, N + 1)))


def end_to_end_residual(problem: Problem, W0: Sequence[np.ndarray], eta: float | None = None) -> tuple[float, float]:
    """(identity, step): the relative residual of sum_j W_{N:j+1} grad_j W_{j-1:1} = A_W(grad L^1(W)) at ``W0``
    (rounding level for balanced tuples), and, with ``eta``, of one GD step's change of the product against
    -eta A_W(grad L^1(W)) (O(eta)); NaN without ``eta``."""
    inst = _instance(problem, W0)
    W, N = inst.W, inst.N
    G = gradient(problem, W)
    lhs = np.zeros_like(inst.product)
    for j in range(N):
        left = _prod(W[j + 1:], problem.d_y, W[j].shape[0])
        right = _prod(W[:j], W[j].shape[1], problem.d_x)
        lhs += left @ G[j] @ right
    A = end_to_end_operator(inst.product, (inst.product @ problem.XXt - problem.YXt), N)
    scale = max(float(np.linalg.norm(A)), float(np.linalg.norm(lhs)), 1e-300)
    identity = float(np.linalg.norm(lhs - A)) / scale
    step = math.nan
    if eta is not None:
        e = positive_float(eta, "eta")
        W1 = [Wj - e * Gj for Wj, Gj in zip(W, G, strict=True)]
        P1 = _prod(W1, problem.d_y, problem.d_x)
        step = float(np.linalg.norm(P1 - inst.product + e * A)) / (e * scale)
    return identity, step


def _prod(Ws: Sequence[np.ndarray], rows: int, cols: int) -> np.ndarray:
    """W_k ... W_1 of the given factors, the identity (rows == cols) for none."""
    if not Ws:
        return np.eye(rows, cols)
    P = Ws[0]
    for Wj in Ws[1:]:
        P = Wj @ P
    return P


def ach2018(problem: Problem, W0: Sequence[np.ndarray], *, eta: float | None = None) -> TheoremReport:
    """Arora-Cohen-Hazan end-to-end dynamics (a gradient-flow identity): checked at ``W0``; with ``eta`` also the
    first-order agreement of one GD step."""
    inst = _instance(problem, W0)
    identity, step = end_to_end_residual(problem, inst.W, eta)
    tol = 1e-12 * max(1.0, inst.factor_scale)
    hyps = (comparison("balanced", "balanced start: W_{j+1}^T W_{j+1} = W_j W_j^T (spectral, rounding level)",
                       inst.bal_spec, "<=", tol),)
    return TheoremReport(
        name="ach2018", title="end-to-end dynamics (Theorem 1), a gradient-flow result",
        source="Arora, Cohen, Hazan, ICML 2018 (arXiv 1802.06509)",
        confidence="VERBATIM-S (course-notes restatement); our A_W is the same sum with j -> N+1-j (DERIVED)",
        kind="flow", hypotheses=hyps, eta=math.nan, eta_own=math.nan, rate_coefficient=math.nan,
        excess0=inst.excess0, loss0=inst.loss0,
        conclusion=("under gradient flow the product obeys dW/dt = -A_W(grad L^1(W)); for GD only to first order "
                    "in eta; no stepsize"),
        constants={"identity_residual": identity, "gd_step_residual": step, "balancedness0": inst.bal_spec},
        params={"eta": eta},
        notes=("identity_residual: sum_j W_{N:j+1} grad_{W_j} L W_{j-1:1} vs A_W(grad L^1(W)) at W0, relative",
               "gd_step_residual: ||W(1) - W(0) + eta A_W|| / (eta ||A_W||), O(eta) when balanced"))


def ec2021(problem: Problem, W0: Sequence[np.ndarray]) -> TheoremReport:
    """Elkabetz-Cohen (NeurIPS 2021), deep linear GD result: the hypotheses known from summaries; no stepsize or
    iteration count (their constants are not known here)."""
    inst = _instance(problem, W0)
    tol = 1e-12 * max(1.0, inst.factor_scale)
    hyps = (
        comparison("scalar_output", "scalar output: d_y = 1", float(problem.d_y), "==", 1.0),
        comparison("balanced", "balanced start (random balanced near-zero initialisation)", inst.bal_spec, "<=",
                   tol),
        unknown("near_zero", "initialisation near zero", "the scale required is not known here",
                inst.factor_scale, math.nan, ""),
        unknown("whitened", "whitened data (probably assumed, as in ACGH; not confirmed)",
                f"||X X^T/s - I|| = {inst.white_dev:.3g}", inst.white_dev, WHITE_TOL, "<="),
        unknown("stepsize", "a constant stepsize below their bound", "the bound is not known here"),
    )
    return TheoremReport(
        name="ec2021", title="GD over deep linear networks with scalar output (partial)",
        source="Elkabetz, Cohen, NeurIPS 2021 (arXiv 2107.06608)",
        confidence="VERBATIM-S for the qualitative statement only; hypotheses' constants, stepsize, count UNCERTAIN",
        kind="gd", hypotheses=hyps, eta=math.nan, eta_own=math.nan, rate_coefficient=math.nan,
        excess0=inst.excess0, loss0=inst.loss0,
        conclusion="GD with a 'practical' stepsize converges to a global minimum almost surely (no constants known)",
        notes=("the paper body with the theorem's constants was not available",))


def bhl2018(problem: Problem, W0: Sequence[np.ndarray]) -> TheoremReport:
    """Bartlett-Helmbold-Long (ICML 2018): identity start, equal widths, isotropic inputs, symmetric positive
    definite target; abstract-level only, no constants."""
    inst = _instance(problem, W0)
    dims = inst.widths
    equal = comparison("equal_widths", "all widths equal d", float(min(dims)), "==", float(max(dims)))
    ident = max((float(np.linalg.norm(Wj - np.eye(*Wj.shape), 2)) for Wj in inst.W), default=0.0)
    s, Phi = _acgh_target(inst)
    square = Phi.shape[0] == Phi.shape[1]
    asym = float(np.linalg.norm(Phi - Phi.T, 2)) / max(float(np.linalg.norm(Phi, 2)), 1e-300) if square else math.inf
    lam = float(np.linalg.eigvalsh(0.5 * (Phi + Phi.T)).min()) if square else math.nan
    hyps = (
        equal,
        comparison("identity_start", "W_j(0) = I", ident, "<=", EXACT_TOL),
        comparison("whitened", "isotropic inputs (finite sample: X X^T = s I)", inst.white_dev, "<=", WHITE_TOL),
        comparison("symmetric_target", "Phi symmetric", asym, "<=", 1e-8),
        comparison("positive_target", "Phi positive definite", lam, ">", 0.0),
        unknown("close_start", "initial excess loss below a small constant", "the constant is not known here",
                inst.excess0 / s if s > 0 else math.nan),
        unknown("stepsize", "a stepsize below their bound", "the bound is not known here"),
    )
    return TheoremReport(
        name="bhl2018", title="identity start, positive definite target (partial)",
        source="Bartlett, Helmbold, Long, ICML 2018",
        confidence="abstract-level statement only; constants UNCERTAIN", kind="gd", hypotheses=hyps,
        eta=math.nan, eta_own=math.nan, rate_coefficient=math.nan, excess0=inst.excess0, loss0=inst.loss0,
        conclusion="poly(N, cond(Phi), log(d/eps)) iterations (constants not known here)",
        notes=("population loss with isotropic inputs; the finite-sample analogue is whitened data",))


# ----------------------------------------------------------------------------------------------------- entry

#: every theorem by name
THEOREMS: dict[str, Callable[..., TheoremReport]] = {
    "nrt2024": nrt2024,
    "nrt2024_remark2.5": nrt2024_remark25,
    "nrt2024_thm2.6": nrt2024_thm26,
    "acgh2019": acgh2019,
    "acgh2019_thm2": acgh2019_thm2,
    "du_hu2019": du_hu2019,
    "hxp2020": hxp2020,
    "ach2018": ach2018,
    "ec2021": ec2021,
    "bhl2018": bhl2018,
}


def theorem_names() -> tuple[str, ...]:
    """The names `theorem` accepts."""
    return tuple(THEOREMS)


def theorem(name: Any, problem: Problem, W0: Sequence[np.ndarray], **params: Any) -> TheoremReport:
    """What a published convergence theorem says about GD from ``W0`` on ``problem``, in our units.

    Every hypothesis is checked on the instance (holds / fails with the measured and required values / not
    checkable when it involves a constant the source does not give); ``eta`` is the largest constant stepsize
    the theorem admits (loss 1/2 ||Y - W X||_F^2, GD on the factors); theorems with a linear rate give the
    envelope on L(k) - L* and the predicted iterations to an excess loss eps.

    Parameters
    ----------
    name : str
        One of `theorem_names`: ``"nrt2024"``, ``"nrt2024_remark2.5"``, ``"nrt2024_thm2.6"``, ``"acgh2019"``,
        ``"acgh2019_thm2"``, ``"du_hu2019"``, ``"hxp2020"``, ``"ach2018"``, ``"ec2021"``, ``"bhl2018"``.
    problem : Problem
        The data.
    W0 : sequence of array_like
        The start [W_1, ..., W_N].
    **params
        The theorem's own parameters: ``nrt2024``: delta, alpha, k_constant (as `dlnsim.stepsize_bound`,
        default the best pair); ``nrt2024_remark2.5``: alpha; ``nrt2024_thm2.6``: delta_B, L_B, alpha, delta,
        k_constant; ``acgh2019``: c (deficiency margin, default the best); ``acgh2019_thm2``: s (required: the
        standard deviation of the product's entries); ``du_hu2019``, ``hxp2020``: delta (failure probability,
        default 0.1); ``ach2018``: eta (for the first-order GD check).  Every GD theorem with a stepsize also
        takes ``eta``, a stepsize to check against its bound (a ``stepsize`` hypothesis).

    Returns
    -------
    TheoremReport
        ``admitted``, ``eta``, ``hypotheses``, ``envelope(k)``, ``iterations(eps)``, ``summary()``, ...

    Raises
    ------
    ValueError
        If ``name`` is unknown, ``problem`` or ``W0`` is invalid, or a parameter is out of range (the message
        names it).
    TypeError
        If a parameter is not one of the theorem's.

    Examples
    --------
    >>> import numpy as np, dlnsim
    >>> from dlnsim.theory.starts import hxp_init
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((4, 12)); Y = rng.standard_normal((3, 4)) @ X
    >>> problem = dlnsim.Problem(X, Y)
    >>> W0 = hxp_init((4, 16, 16, 3), rng)
    >>> from dlnsim.theory.published import theorem  # exported as dlnsim.theorem
    >>> t = theorem("hxp2020", problem, W0)
    >>> t.admitted, [h.key for h in t.unchecked]
    (True, ['width'])
    >>> t.iterations(1e-6) > 0
    True
    >>> [h.key for h in theorem("du_hu2019", problem, W0).failing]
    ['init_generic', 'init_gaussian']
    """
    if name not in THEOREMS:
        raise ValueError(f"name must be one of {list(THEOREMS)}, got {name!r}")
    return THEOREMS[name](problem, W0, **params)


def theorems(problem: Problem, W0: Sequence[np.ndarray], names: Sequence[str] | None = None,
             params: dict[str, dict[str, Any]] | None = None) -> dict[str, TheoremReport]:
    """`theorem` for several names (default all but ``acgh2019_thm2``, which needs its ``s``), with per-theorem
    ``params``; a theorem whose parameters are missing raises."""
    chosen = [n for n in THEOREMS if n != "acgh2019_thm2"] if names is None else list(names)
    extra = params or {}
    return {n: theorem(n, problem, W0, **extra.get(n, {})) for n in chosen}
