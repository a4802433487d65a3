"""Stepsize bounds of Theorem 2.4, Section 5, Remark 2.5(b), Theorem 2.6."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from conftest import paper, random_problem

import dlnsim
from dlnsim.theory.bounds import admissible_alpha


@pytest.mark.parametrize(("N", "paper_eta"), [(2, 7.73e-4), (3, 1.29e-4), (5, 3.91e-5)])
def test_bound_matches_paper_over_seeds(N: int, paper_eta: float) -> None:
    """The paper reports one random instance; our mean over 24 instances lies within 25 %."""
    etas = [dlnsim.stepsize_bound(*dlnsim.paper_setup(N, 1000 + s)[::2]).eta for s in range(24)]
    assert np.mean(etas) == pytest.approx(paper_eta, rel=0.25)


@pytest.mark.parametrize("N", [1, 2, 3, 5])
def test_bound_identities(N: int) -> None:
    s = paper(N) if N > 1 else dlnsim.paper_setup(1, 0)
    b = dlnsim.stepsize_bound(s.problem, s.W0)
    m2n = b.M ** (2 / N)
    assert b.delta == pytest.approx(m2n / N**3, rel=1e-14)
    assert pytest.approx((1 + 1 / N) * m2n, rel=1e-14) == b.K
    # (5.1) written out equals the general (2.8) at alpha = 0
    p = s.problem
    eta51 = 2 / (4 * N**3 * b.L0 * b.M ** (-2 / N)
                 + 2 * math.e * N * (1 + 1 / N) ** (N - 1) * b.M ** (2 - 2 / N) * p.norm_X**2
                 + math.sqrt(math.e) * N * (1 + 1 / N) ** (N / 2 - 1) * b.M ** (1 - 2 / N) * p.norm_XYt)
    assert b.eta == pytest.approx(eta51, rel=1e-12)
    # with sigma of the proof both conditions (3.14) equal (2.8)
    assert b.eta_descent == pytest.approx(b.eta, rel=1e-12)
    assert b.eta_balance == pytest.approx(b.eta, rel=1e-12)
    assert 0 < b.sigma < 1


@pytest.mark.parametrize("N", [2, 3, 5])
def test_delta_choices(N: int) -> None:
    s = paper(N)
    sec5 = dlnsim.stepsize_bound(s.problem, s.W0)
    opt = dlnsim.stepsize_bound(s.problem, s.W0, delta="optimal")
    assert opt.eta >= sec5.eta
    # the optimum is a stationary point: nearby deltas give no larger eta (1e-9 relative slack)
    for f in (0.9, 1.1):
        near = dlnsim.stepsize_bound(s.problem, s.W0, delta=opt.delta * f)
        assert near.eta <= opt.eta * (1 + 1e-9)
    rem = dlnsim.stepsize_bound(s.problem, s.W0, delta="remark2.5")
    assert rem.delta == pytest.approx(rem.M ** (2 / N) / (N * (N + 1) ** 2), rel=1e-14)
    assert pytest.approx((1 + 1 / N) * rem.M ** (2 / N), rel=1e-14) == rem.K
    # the closed form is a sufficient condition for (2.8): never larger
    assert 0 < rem.eta_closed_form <= rem.eta
    thm = dlnsim.stepsize_bound(s.problem, s.W0, delta=sec5.delta, k_constant="theorem")
    assert thm.eta < sec5.eta  # (N+1)^2 > N^2 in K


def test_remark25_closed_form_seed0() -> None:
    """The reference table quotes Remark 2.5(b)'s bound on seed 0: 6.09e-4, 1.27e-4, 2.29e-5 (3 digits)."""
    for N, want in ((2, 6.09e-4), (3, 1.27e-4), (5, 2.29e-5)):
        s = paper(N)
        rem = dlnsim.stepsize_bound(s.problem, s.W0, delta="remark2.5")
        assert rem.eta_closed_form == pytest.approx(want, rel=5e-3)


def test_alpha_and_unbalanced_starts() -> None:
    p = random_problem(6, 4, 15, seed=3)
    widths = [6, 3, 4, 4]
    W = dlnsim.perturbed_init(widths, np.random.default_rng(0), 0.02)
    with pytest.raises(ValueError, match=r"balancedness constant .* > alpha\*delta"):
        dlnsim.stepsize_bound(p, W)
    b = dlnsim.stepsize_bound(p, W, delta=0.05, alpha=0.5)
    assert b.balancedness0 == pytest.approx(0.02, rel=1e-9)
    b0 = dlnsim.stepsize_bound(p, dlnsim.balanced_init(widths, np.random.default_rng(0)), delta=0.05)
    assert b.eta < b0.eta * 1.5  # (1 - alpha) shrinks the bound (different L0, so only a loose check)
    with pytest.raises(ValueError, match=r"alpha must lie in \[0, 1\)"):
        dlnsim.stepsize_bound(p, W, alpha=1.0)
    with pytest.raises(ValueError, match="delta must be 'section5'"):
        dlnsim.stepsize_bound(p, W, delta="best")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="delta must be finite and > 0"):
        dlnsim.stepsize_bound(p, W, delta=-1.0)


def test_set_bound_reduces_to_theorem24() -> None:
    """(2.14) for the one-point set B = {W(0)} is (2.8)."""
    s = paper(3)
    b = dlnsim.stepsize_bound(s.problem, s.W0, delta=0.1, alpha=0.0, k_constant="theorem")
    sb = dlnsim.set_stepsize_bound(s.problem, 3, delta_B=0.0, L_B=b.L0, alpha=0.0, delta=0.1)
    assert sb.eta == pytest.approx(b.eta, rel=1e-14)
    # a larger set (larger L_B) gives a smaller bound; optimal delta respects delta >= delta_B / alpha
    sb2 = dlnsim.set_stepsize_bound(s.problem, 3, delta_B=0.01, L_B=2 * b.L0, alpha=0.5)
    assert sb2.eta < dlnsim.set_stepsize_bound(s.problem, 3, delta_B=0.0, L_B=b.L0, alpha=0.5).eta
    assert sb2.delta >= 0.02
    with pytest.raises(ValueError, match="alpha must be > 0 when delta_B > 0"):
        dlnsim.set_stepsize_bound(s.problem, 3, delta_B=0.01, L_B=1.0, alpha=0.0)


# ------------------------------------------------------------------------------------------ unbalanced starts


@pytest.fixture(scope="module")
def gaussian_start() -> tuple[dlnsim.Problem, list[np.ndarray], float]:
    s = paper(3)
    W = dlnsim.gaussian_init(s.widths, np.random.default_rng(1), 0.1)
    return s.problem, W, float(dlnsim.balancedness(W).max())


def _eta28(b: dlnsim.StepsizeBound) -> float:
    """(2.8) written as in the paper."""
    return 2 * (1 - b.alpha) * b.delta / (4 * b.L0 + (1 - b.alpha) * b.delta * b.B)


def test_gaussian_start_needs_a_delta_above_its_balancedness(gaussian_start: tuple) -> None:
    p, W, bal = gaussian_start
    assert bal > 1.0  # above the section-5 delta M^{2/3}/27 of this start (about 0.23)
    with pytest.raises(ValueError, match=r"balancedness constant .* > alpha\*delta .* no alpha in \[0, 1\) admits"):
        dlnsim.stepsize_bound(p, W, alpha=0.5)
    with pytest.raises(ValueError, match=r"no alpha in \[0, 1\) admits .*rule 'section5'"):
        admissible_alpha(p, W)
    with pytest.raises(ValueError, match=r"with alpha = 0 \(only balanced starts\)"):
        dlnsim.stepsize_bound(p, W, delta="optimal")


def test_optimal_delta_over_the_admissible_deltas(gaussian_start: tuple) -> None:
    p, W, bal = gaussian_start
    b = dlnsim.stepsize_bound(p, W, delta="optimal", alpha=0.5)
    assert b.balancedness0 == pytest.approx(bal, rel=1e-12) and b.alpha == 0.5
    assert b.delta >= 2 * bal * (1 - 1e-12)  # delta >= balancedness / alpha
    assert b.eta == pytest.approx(_eta28(b), rel=1e-12)
    # the largest bound among admissible deltas (1e-9 relative slack for the numerical search)
    for d in 2 * bal * np.geomspace(1, 100, 25):
        assert dlnsim.stepsize_bound(p, W, delta=float(d), alpha=0.5).eta <= b.eta * (1 + 1e-9)


def test_best_pair_alpha_min(gaussian_start: tuple) -> None:
    p, W, bal = gaussian_start
    best = dlnsim.stepsize_bound(p, W, delta="optimal", alpha="min")
    assert best.alpha * best.delta == pytest.approx(bal, rel=1e-12)  # the start sits on the boundary
    assert best.eta == pytest.approx(_eta28(best), rel=1e-12)
    assert best.eta >= dlnsim.stepsize_bound(p, W, delta="optimal", alpha=0.5).eta
    for d in bal * np.geomspace(1.001, 100, 30):  # every admissible pair, at its best alpha = bal/delta
        assert dlnsim.stepsize_bound(p, W, delta=float(d), alpha=bal / d).eta <= best.eta * (1 + 1e-9)
    adm = admissible_alpha(p, W, delta="optimal")
    assert adm.delta == pytest.approx(best.delta, rel=1e-12) and adm.alpha_min == pytest.approx(best.alpha, rel=1e-12)
    assert adm.bound.eta == pytest.approx(best.eta, rel=1e-12)
    assert adm.delta_min == pytest.approx(bal, rel=1e-12)


def test_admissible_alpha_for_a_fixed_delta(gaussian_start: tuple) -> None:
    p, W, bal = gaussian_start
    adm = admissible_alpha(p, W, delta=4 * bal)
    assert adm.alpha_min == pytest.approx(0.25, rel=1e-12) and adm.rule == "value"
    assert adm.delta_range(0.5) == (pytest.approx(2 * bal, rel=1e-12), math.inf)
    with pytest.raises(ValueError, match="alpha = 0 admits only balanced starts"):
        adm.delta_range(0.0)
    with pytest.raises(ValueError, match=r"alpha must lie in \[0, 1\)"):
        adm.delta_range(1.0)
    # alpha_min is admitted, anything noticeably smaller is not
    at = dlnsim.stepsize_bound(p, W, delta=4 * bal, alpha=adm.alpha_min)
    assert at.eta == pytest.approx(adm.bound.eta, rel=1e-14)
    assert dlnsim.stepsize_bound(p, W, delta=4 * bal, alpha="min").eta == pytest.approx(at.eta, rel=1e-14)
    with pytest.raises(ValueError, match=r"smallest admissible alpha there is b/delta = 0\.25"):
        dlnsim.stepsize_bound(p, W, delta=4 * bal, alpha=0.24)
    # (2.8) decreases in alpha: the smallest admissible alpha is the best one
    assert dlnsim.stepsize_bound(p, W, delta=4 * bal, alpha=0.5).eta < at.eta


def test_balanced_start_is_admitted_with_alpha_zero() -> None:
    s = paper(2)
    adm = admissible_alpha(s.problem, s.W0)
    assert adm.alpha_min == 0.0 and adm.balancedness0 == 0.0  # rounding-level balancedness counts as 0
    assert adm.bound.eta == dlnsim.stepsize_bound(s.problem, s.W0).eta
    assert adm.delta_range(0.0) == (0.0, math.inf)
    # field by field with NaN equal to NaN (eta_closed_form is NaN here; dataclass == compares fields with ==
    # from Python 3.13 on, where NaN != NaN)
    np.testing.assert_equal(dataclasses.astuple(dlnsim.stepsize_bound(s.problem, s.W0, alpha="min")),
                            dataclasses.astuple(dlnsim.stepsize_bound(s.problem, s.W0)))


def test_perturbed_start_on_the_boundary() -> None:
    """A start built with balancedness alpha*delta is admitted at exactly (alpha, delta)."""
    p = random_problem(6, 4, 15, seed=3)
    W = dlnsim.perturbed_init([6, 3, 4, 4], np.random.default_rng(0), 0.02)
    b = dlnsim.stepsize_bound(p, W, delta=0.08, alpha=0.25)
    assert b.balancedness0 == pytest.approx(0.02, rel=1e-9)
    assert admissible_alpha(p, W, delta=0.08).alpha_min == pytest.approx(0.25, rel=1e-9)


# ------------------------------------------------------------------------------------------- large deltas


def test_huge_delta() -> None:
    """delta = 1e300: a finite (tiny) bound while B_delta is a float64 number, else ValueError naming delta."""
    b1 = dlnsim.stepsize_bound(dlnsim.paper_setup(1, 0).problem, dlnsim.paper_setup(1, 0).W0, delta=1e300)
    assert 0 < b1.eta < 1 and math.isfinite(b1.eta)  # N = 1: B_delta decreases in delta
    s2 = paper(2)
    b2 = dlnsim.stepsize_bound(s2.problem, s2.W0, delta=1e300)
    # (2.8) = 2/(4 L0/delta + B_delta) with 4 L0/delta negligible; delta*B_delta itself overflows
    assert b2.eta == pytest.approx(2 / b2.B, rel=1e-12) and b2.eta > 0
    assert b2.eta_descent == pytest.approx(b2.eta, rel=1e-12) and b2.eta_balance == pytest.approx(b2.eta, rel=1e-12)
    s3 = paper(3)
    with pytest.raises(ValueError, match=r"delta = 1e\+300 is too large: B_delta .* overflows float64"):
        dlnsim.stepsize_bound(s3.problem, s3.W0, delta=1e300)
    with pytest.raises(ValueError, match="delta = 1e\\+300 is too large"):
        dlnsim.set_stepsize_bound(s3.problem, 3, delta_B=0.0, L_B=1.0, alpha=0.0, delta=1e300)


def test_stable_forms_equal_the_paper_formulas() -> None:
    s = paper(5)
    for delta in ("section5", "remark2.5", "optimal", 0.01, 3.0):
        b = dlnsim.stepsize_bound(s.problem, s.W0, delta=delta)
        assert b.eta == pytest.approx(_eta28(b), rel=1e-14)
        assert b.sigma == pytest.approx(4 * b.L0 / (4 * b.L0 + b.delta * b.B), rel=1e-14)


def test_bad_arguments_name_the_parameter() -> None:
    s = paper(2)
    with pytest.raises(ValueError, match=r"problem must be a dlnsim\.Problem, got str"):
        dlnsim.set_stepsize_bound("p", 2, 0.0, 1.0, 0.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"problem must be a dlnsim\.Problem"):
        admissible_alpha(None, s.W0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="N must be an integer >= 1"):
        dlnsim.set_stepsize_bound(s.problem, 0, 0.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="N must be an integer >= 1"):
        dlnsim.set_stepsize_bound(s.problem, True, 0.0, 1.0, 0.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="delta must be 'optimal' or a positive number"):
        dlnsim.set_stepsize_bound(s.problem, 2, 0.0, 1.0, 0.0, delta="section5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="alpha must be a number in \\[0, 1\\) or 'min'"):
        dlnsim.stepsize_bound(s.problem, s.W0, alpha="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="delta must be 'section5'"):
        dlnsim.stepsize_bound(s.problem, s.W0, delta=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="alpha must be a real number"):
        dlnsim.stepsize_bound(s.problem, s.W0, alpha=0.5j)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"W0\[0\] must be real"):
        dlnsim.stepsize_bound(s.problem, [s.W0[0] + 0j, s.W0[1]])
    with pytest.raises(ValueError, match="W0: the loss L\\^N\\(W0\\) overflows float64"):
        dlnsim.stepsize_bound(s.problem, [s.W0[0] * 1e200, s.W0[1] * 1e200])
