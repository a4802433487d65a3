"""Stepsize bounds of Theorem 2.4, Section 5, Remark 2.5(b), Theorem 2.6."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import paper, random_problem

import dlnsim


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
