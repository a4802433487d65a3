"""dlnsim.analysis.stability and dlnsim.analysis.minima: sharpness of minimisers (closed form vs Lanczos), flattest
minimiser, flow limit, width compression and the critical stepsize with the linear-stability check."""

from __future__ import annotations

import math

import numpy as np
import pytest

import dlnsim
from dlnsim.analysis import minima as M
from dlnsim.analysis import stability as S

LANCZOS = {"iters": 400, "tol": 1e-12}


def _problem(d_x: int, d_y: int, m: int, sv: tuple[float, ...], noise: float, seed: int) -> dlnsim.Problem:
    """X with anisotropic columns, Y = W~ X + noise, W~ with singular values ``sv``."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((d_x, m)) * np.linspace(0.5, 1.5, d_x)[:, None]
    U = np.linalg.qr(rng.standard_normal((d_y, d_y)))[0][:, : len(sv)]
    V = np.linalg.qr(rng.standard_normal((d_x, d_x)))[0][:, : len(sv)]
    Y = (U * np.array(sv)) @ V.T @ X + noise * rng.standard_normal((d_y, m))
    return dlnsim.Problem(X, Y)


def _instances() -> list[tuple[str, dlnsim.Problem, int, list[int] | None]]:
    setup = dlnsim.paper_setup(3, 1)
    return [
        ("paper N=2", dlnsim.paper_setup(2, 0).problem, 2, None),
        ("paper N=3, full widths", setup.problem, 3, list(setup.widths)),
        # distinct singular values, d_x != d_y, noisy Y (W_ls is still a critical point of L^1)
        ("random N=4", _problem(6, 4, 30, (2.0, 1.0, 0.4), 0.1, 7), 4, None),
    ]


@pytest.mark.parametrize("name, problem, N, widths", _instances(), ids=[i[0] for i in _instances()])
def test_closed_form_sharpness_matches_lanczos(name, problem, N, widths):
    closed = S.balanced_minimum_sharpness(problem, N)
    W = S.balanced_factors(problem.W_ls, N, widths)
    assert float(np.max(dlnsim.balancedness(W))) < 1e-13
    np.testing.assert_allclose(dlnsim.product(W), problem.W_ls, rtol=0, atol=1e-13)
    lanczos = dlnsim.sharpness(problem, W, **LANCZOS)
    assert abs(lanczos - closed) <= 1e-8 * closed  # Lanczos residual tol 1e-12: agreement to rounding


def test_closed_form_for_equal_singular_values_and_its_bounds():
    problem = dlnsim.paper_setup(5, 2).problem  # the Section-5 target has two unit singular values
    N = 5
    _, s, Vt = np.linalg.svd(problem.W_ls)
    np.testing.assert_allclose(s[:2], 1.0, rtol=1e-12)
    C = problem.XXt
    w, q = np.linalg.eigh(C)
    Ch = (q * np.sqrt(w)) @ q.T
    P = Vt[:2].T @ Vt[:2]
    simple = float(np.linalg.eigvalsh(Ch @ (np.eye(C.shape[0]) + (N - 1) * P) @ Ch)[-1])
    lam = S.balanced_minimum_sharpness(problem, N)
    assert lam == pytest.approx(simple, rel=1e-12)
    c_row = float(np.linalg.eigvalsh(Vt[:2] @ C @ Vt[:2].T)[-1])
    assert max(problem.lambda_max, N * c_row) <= lam * (1 + 1e-12)
    assert lam <= (problem.lambda_max + (N - 1) * c_row) * (1 + 1e-12)


def test_kappa_closed_form():
    x, y = 1.7, 0.4
    for N in (1, 2, 3, 6):
        direct = sum(x ** (2 * (N - j) / N) * y ** (2 * (j - 1) / N) for j in range(1, N + 1))
        assert float(S.kappa(x, y, N)) == pytest.approx(direct, rel=1e-14)
        if N > 1:
            assert float(S.kappa(x, y, N)) == pytest.approx((x**2 - y**2) / (x ** (2 / N) - y ** (2 / N)), rel=1e-12)
        assert float(S.kappa(x, x, N)) == pytest.approx(N * x ** (2 - 2 / N), rel=1e-14)
    assert float(S.kappa(0.0, 0.0, 3)) == 0.0
    assert float(S.kappa(0.0, 2.0, 1)) == 1.0  # 0^0 = 1


def test_linear_regression_threshold_is_two_over_lambda_max():
    """N = 1: GD is x -> (I - eta C) x on W - W_ls, stable iff eta < 2/lambda_max(X X^T); the search finds it."""
    problem = _problem(5, 3, 20, (1.0, 0.5), 0.05, 3)
    lam = problem.lambda_max
    assert S.balanced_minimum_sharpness(problem, 1) == pytest.approx(lam, rel=1e-14)
    W0 = [np.zeros((3, 5))]
    assert dlnsim.sharpness(problem, W0, **LANCZOS) == pytest.approx(lam, rel=1e-10)
    rtol = 0.002
    res = S.stable_critical_stepsize(problem, W0, n_iter=40000, bracket=(1.0 / lam, 1.5 / lam), rtol=rtol,
                                     factor=1.1)
    assert res.status == "ok"
    assert res.eta_lo <= 2.0 / lam <= res.eta_hi
    assert res.eta_hi <= res.eta_lo * (1 + rtol)
    assert res.eta_crit == res.eta_lo
    assert set(res.trial_outcome) <= {"converged", "not_converged", "unstable_limit", "diverged"}
    i = res.trial_eta.index(res.eta_lo)
    assert res.trial_sharpness[i] == pytest.approx(lam, rel=1e-8)


def test_flattest_minimum_is_a_minimiser_no_sharper_than_the_balanced_one():
    problem = dlnsim.paper_setup(2, 0).problem
    fm = M.flattest_minimum(problem, 2)
    assert fm.sharpness_balanced == pytest.approx(S.balanced_minimum_sharpness(problem, 2), rel=1e-14)
    assert fm.sharpness < 0.97 * fm.sharpness_balanced  # anisotropic X X^T: unbalanced minimisers are flatter
    np.testing.assert_allclose(dlnsim.product(fm.factors), problem.W_ls, rtol=0, atol=1e-12)
    assert dlnsim.sharpness(problem, fm.factors, **LANCZOS) == pytest.approx(fm.sharpness, rel=1e-8)
    assert dlnsim.loss(problem, fm.factors) - problem.lstar < 1e-20


def test_flattest_minimum_with_whitened_data_is_balanced():
    rng = np.random.default_rng(0)
    Q = np.linalg.qr(rng.standard_normal((12, 12)))[0]
    X = np.sqrt(2.0) * Q[:6]  # X X^T = 2 I
    W = rng.standard_normal((4, 2)) @ rng.standard_normal((2, 6))
    problem = dlnsim.Problem(X, W @ X)
    fm = M.flattest_minimum(problem, 3)
    assert fm.sharpness == pytest.approx(fm.sharpness_balanced, rel=1e-6)


def test_flow_limit_is_the_balanced_minimiser():
    setup = dlnsim.paper_setup(3, 0)
    W0, bases = S.compress_widths(setup.W0)
    assert [M.shape for M in W0] == [(2, 70), (2, 2), (70, 2)]
    assert len(bases) == 2
    lim = S.flow_limit(setup.problem, W0)
    assert lim.converged and lim.status == "converged"
    assert lim.reason == S.FLOW_LIMIT_STATUS["converged"]
    assert lim.grad_norm <= 1e-8 * np.linalg.norm(setup.problem.YXt)
    assert lim.balancedness < 1e-9  # conserved by the flow (2.3), up to the integrator's tolerance
    np.testing.assert_allclose(dlnsim.product(lim.W), setup.problem.W_ls, rtol=0, atol=1e-8)
    closed = S.balanced_minimum_sharpness(setup.problem, 3)
    assert dlnsim.sharpness(setup.problem, lim.W, **LANCZOS) == pytest.approx(closed, rel=1e-8)


def test_flow_limit_rounding_floor_is_where_the_gradient_stalls_at_the_resolution():
    setup = dlnsim.paper_setup(3, 0)
    W0, _ = S.compress_widths(setup.W0)
    lim = S.flow_limit(setup.problem, W0, gtol=1e-30)  # a tolerance no integration reaches
    assert lim.status == "rounding_floor" and not lim.converged
    assert lim.t < 1e4  # stopped at the floor, long before the horizon
    assert 0 < lim.grad_norm <= lim.resolution
    assert lim.resolution == pytest.approx(S.gradient_resolution(setup.problem, lim.W), rel=1e-12)
    assert lim.excess_loss < 1e-15


def test_flow_limit_a_slow_flow_is_not_a_rounding_floor():
    setup = dlnsim.paper_setup(3, 0)
    W0, _ = S.compress_widths(setup.W0)
    near_saddle = [1e-3 * M for M in W0]  # the flow lingers near W = 0 before it escapes
    short = S.flow_limit(setup.problem, near_saddle, t_max=100.0)
    assert short.status == "t_max" and not short.converged
    assert short.t == pytest.approx(100.0)
    assert short.grad_norm > 1e3 * short.resolution  # far above the level of rounding
    assert short.excess_loss > 1.0
    assert "t_max" in short.reason
    full = S.flow_limit(setup.problem, near_saddle)  # the same start, the default horizon: it converges
    assert full.status == "converged" and full.t > 100.0


def test_flow_limit_checks_its_arguments():
    setup = dlnsim.paper_setup(2, 0)
    with pytest.raises(ValueError, match="t_max"):
        S.flow_limit(setup.problem, setup.W0, t_max=0.0)
    with pytest.raises(ValueError, match="rtol"):
        S.flow_limit(setup.problem, setup.W0, rtol=-1.0)


def test_compressed_network_has_the_same_gd_losses():
    setup = dlnsim.paper_setup(4, 1)
    Wc, bases = S.compress_widths(setup.W0)
    full = dlnsim.run_gd(setup.problem, setup.W0, 0.05, 300, record=dlnsim.Record("all", diagnostics=False))
    small = dlnsim.run_gd(setup.problem, Wc, 0.05, 300, record=dlnsim.Record("all", diagnostics=False))
    np.testing.assert_allclose(small["loss"].values, full["loss"].values, rtol=1e-10, atol=1e-14)
    expanded = [Q @ M for Q, M in zip([*bases, np.eye(70)], Wc, strict=True)]
    expanded = [M @ Q.T for M, Q in zip(expanded, [np.eye(70), *bases], strict=True)]
    for A, B in zip(expanded, setup.W0, strict=True):
        np.testing.assert_allclose(A, B, rtol=0, atol=1e-13)


def test_critical_stepsize_flags_unstable_limits():
    """Above 2/sharpness a run can stop (tolerance met) at a minimiser before its unstable mode has grown; with
    the first-hit criterion the search counts it as failing (the default continues the run past that point and
    judges where GD is at the end of the horizon)."""
    setup = dlnsim.paper_setup(20, 0)
    W0, _ = S.compress_widths(setup.W0)
    eta = 1.004 * 2.0 / S.balanced_minimum_sharpness(setup.problem, 20)
    res = S.stable_critical_stepsize(setup.problem, W0, n_iter=4000, bracket=(eta, 1.01 * eta), rtol=0.01,
                                     factor=1.003, continue_unstable=False)
    assert res.trial_outcome[0] == "unstable_limit"
    assert res.trial_first_sharpness[0] * eta > 2.0  # where it first met the tolerance
    assert res.eta_crit < eta


def test_bad_input():
    problem = dlnsim.paper_setup(2, 0).problem
    with pytest.raises(ValueError, match="critical point"):
        S.balanced_minimum_sharpness(problem, 2, np.zeros_like(problem.W_ls) + 1.0)
    with pytest.raises(ValueError, match="N"):
        S.balanced_minimum_sharpness(problem, 0)
    with pytest.raises(ValueError, match="problem"):
        S.balanced_minimum_sharpness("not a problem", 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bracket"):
        S.stable_critical_stepsize(problem, dlnsim.paper_setup(2, 0).W0, n_iter=10, bracket=(0.2, 0.1))
    with pytest.raises(ValueError, match="widths"):
        S.balanced_factors(problem.W_ls, 3, [70, 1, 1, 70])
    assert math.isfinite(S.balanced_minimum_sharpness(problem, 2, problem.W_ls))
