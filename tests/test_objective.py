"""Gradient (3.2), Hessian form and HVP against finite differences and against each other."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import paper, random_problem
from hypothesis import given, settings
from hypothesis import strategies as st

import dlnsim
from dlnsim.objective import product


def naive_gradient(problem: dlnsim.Problem, W: list[np.ndarray]) -> list[np.ndarray]:
    """(3.2) written out with the data: grad_j = W_{N:j+1}^T (W X - Y) X^T W_{j-1:1}^T."""
    n = len(W)
    G = (product(W) @ problem.X - problem.Y) @ problem.X.T
    return [product(W, n, j + 1).T @ G @ product(W, j - 1, 1).T for j in range(1, n + 1)]


def inner(A: list[np.ndarray], B: list[np.ndarray]) -> float:
    return float(sum(np.sum(a * b) for a, b in zip(A, B, strict=True)))


def axpy(W: list[np.ndarray], V: list[np.ndarray], h: float) -> list[np.ndarray]:
    return [a + h * b for a, b in zip(W, V, strict=True)]


@settings(max_examples=25, deadline=None)
@given(
    widths=st.lists(st.integers(1, 6), min_size=2, max_size=6),
    seed=st.integers(0, 2**31 - 1),
)
def test_gradient_matches_central_differences(widths: list[int], seed: int) -> None:
    """N = 1..5, random widths (every pivot position): directional derivative vs central difference."""
    rng = np.random.default_rng(seed)
    m = widths[0] + 3
    problem = dlnsim.Problem(rng.standard_normal((widths[0], m)), rng.standard_normal((widths[-1], m)))
    W = dlnsim.gaussian_init(widths, rng, 0.7)
    V = dlnsim.gaussian_init(widths, rng, 1.0)
    g = dlnsim.gradient(problem, W)
    # the kernel's pivot-ordered chains against the plain formula: same math, rounding only
    for a, b in zip(g, naive_gradient(problem, W), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10 * (1 + np.abs(b).max()))
    h = 1e-5
    fd = (dlnsim.loss(problem, axpy(W, V, h)) - dlnsim.loss(problem, axpy(W, V, -h))) / (2 * h)
    # central differences: O(h^2) truncation plus eps*L/h rounding -> 1e-6 relative is loose but safe
    assert fd == pytest.approx(inner(g, V), rel=1e-6, abs=1e-7)


@pytest.mark.parametrize("N", [1, 2, 3, 4, 5])
def test_hessian_form_matches_second_difference(N: int) -> None:
    rng = np.random.default_rng(N)
    widths = [5, *rng.integers(2, 6, size=N - 1).tolist(), 4]
    problem = random_problem(5, 4, 9, seed=N)
    W = dlnsim.gaussian_init(widths, rng, 0.8)
    V = dlnsim.gaussian_init(widths, rng, 1.0)
    h = 1e-4
    second = (dlnsim.loss(problem, axpy(W, V, h)) - 2 * dlnsim.loss(problem, W)
              + dlnsim.loss(problem, axpy(W, V, -h))) / h**2
    form = dlnsim.hessian_form(problem, W, V)
    # second difference: O(h^2) truncation, eps*L/h^2 ~ 1e-8 rounding
    assert form == pytest.approx(second, rel=1e-5, abs=1e-6)
    # the closed-form HVP gives the same quadratic form (pure rounding)
    hv = dlnsim.hessian_vector_product(problem, W, V)
    assert inner(V, hv) == pytest.approx(form, rel=1e-11, abs=1e-11)
    # ... and is the derivative of the gradient
    gp = dlnsim.gradient(problem, axpy(W, V, h))
    gm = dlnsim.gradient(problem, axpy(W, V, -h))
    for a, b, c in zip(hv, gp, gm, strict=True):
        np.testing.assert_allclose(a, (b - c) / (2 * h), rtol=1e-5, atol=1e-6)


def test_hvp_is_symmetric(rng: np.random.Generator) -> None:
    widths = [4, 3, 2, 5, 3]
    problem = random_problem(4, 3, 7, seed=3)
    W = dlnsim.gaussian_init(widths, rng, 0.9)
    U = dlnsim.gaussian_init(widths, rng, 1.0)
    V = dlnsim.gaussian_init(widths, rng, 1.0)
    a = inner(U, dlnsim.hessian_vector_product(problem, W, V))
    b = inner(V, dlnsim.hessian_vector_product(problem, W, U))
    assert a == pytest.approx(b, rel=1e-11)  # symmetric Hessian, rounding only


@pytest.mark.parametrize("N", [2, 3, 5])
def test_paper_gradient_and_loss(N: int) -> None:
    s = paper(N)
    for a, b in zip(dlnsim.gradient(s.problem, s.W0), naive_gradient(s.problem, s.W0), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12 * np.abs(b).max())
    direct = 0.5 * np.sum((s.problem.Y - product(s.W0) @ s.problem.X) ** 2)
    assert dlnsim.loss(s.problem, s.W0) == pytest.approx(direct, rel=1e-13)


def test_one_step_balancedness_identity() -> None:
    """D_j(k+1) - D_j(k) = eta^2 (G_{j+1}^T G_{j+1} - G_j G_j^T): first-order terms cancel."""
    rng = np.random.default_rng(7)
    widths = [6, 3, 4, 5, 2]
    problem = random_problem(6, 2, 11, seed=7)
    W = dlnsim.gaussian_init(widths, rng, 0.6)
    eta = 0.05
    G = dlnsim.gradient(problem, W)
    W1 = axpy(W, G, -eta)
    for j in range(len(W) - 1):
        D0 = W[j + 1].T @ W[j + 1] - W[j] @ W[j].T
        D1 = W1[j + 1].T @ W1[j + 1] - W1[j] @ W1[j].T
        rhs = eta**2 * (G[j + 1].T @ G[j + 1] - G[j] @ G[j].T)
        # the difference of two O(1) matrices: rounding ~1e-16 relative to ||W||^2
        np.testing.assert_allclose(D1 - D0, rhs, rtol=0, atol=1e-14 * (1 + np.abs(D0).max()))
        assert np.abs(rhs).max() > 1e-6  # the identity is not trivially 0 = 0


@pytest.mark.parametrize("widths", [[2, 5, 7, 4], [6, 2, 5, 7], [5, 4, 2, 7, 3], [6, 5, 3, 2], [6, 3, 4, 2, 5, 1],
                                    [4, 3, 5, 6], [9, 2, 2, 2, 2, 8], [40, 2, 30, 20, 2, 2, 35], [30, 20, 25, 40]])
@pytest.mark.parametrize("data", ["cholesky", "columns"])
def test_kernel_modes_against_the_formula(widths: list[int], data: str) -> None:
    """The gradient kernel's modes, with a pivot of width 2 (its loops) first, inside and last, and a pivot of
    another width (dgemm only): loss, gradient, ||grad||^2 (mode 3) and the step w - eta grad (mode 4, w left
    as it was) against (3.2) written out, to 1e-13 relative (rounding only: same formula, other order).  The
    data as the full-batch kernels pass it (the triangular Cholesky factor R^T and F, ``lower``) and as a
    minibatch does (the columns X and Y themselves, 1/2 ||W X - Y||^2 = L* + excess, not triangular).  The
    last three: a network compressed to width 2, two narrow layers, a pivot of width 20."""
    from dlnsim._kernels.linalg import _loss_grad_norm, workspace_size

    rng = np.random.default_rng(sum(widths))
    m = widths[0] + 4
    problem = dlnsim.Problem(rng.standard_normal((widths[0], m)), rng.standard_normal((widths[-1], m)))
    W = dlnsim.gaussian_init(widths, rng, 0.8)
    dims = np.array(widths, dtype=np.int64)
    offs = np.concatenate([[0], np.cumsum([a.size for a in W])]).astype(np.int64)
    w = np.concatenate([a.ravel() for a in W])
    b = int(np.argmin(dims))
    lower = data == "cholesky"
    Rt, F = (problem.Rt, problem.F) if lower else (problem.X, problem.Y)
    ws = np.empty(workspace_size(dims, b, Rt.shape[1]))
    ref = np.concatenate([a.ravel() for a in naive_gradient(problem, W)])
    excess = 0.5 * np.sum((product(W) @ problem.X - problem.Y) ** 2) - (problem.lstar if lower else 0.0)
    scale = np.abs(ref).max()
    eta = 0.037
    for mode in (1, 3, 4):
        g = np.full_like(w, np.nan)
        w_before = w.copy()
        ex, gsq = _loss_grad_norm(w, dims, offs, b, Rt, F, g, ws, np.int64(mode), eta, lower)
        assert ex == pytest.approx(excess, rel=1e-12)
        np.testing.assert_array_equal(w, w_before)
        if mode == 4:
            np.testing.assert_allclose(g, w - eta * ref, rtol=0, atol=1e-13 * (np.abs(w).max() + eta * scale))
        else:
            np.testing.assert_allclose(g, ref, rtol=0, atol=1e-13 * scale)
        if mode == 1:
            assert np.isnan(gsq)
        else:
            assert gsq == pytest.approx(float(ref @ ref), rel=1e-13)
