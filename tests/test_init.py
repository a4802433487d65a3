"""Initialisations: exact balancedness (2.4), prescribed balancedness, Haar orthogonality."""

from __future__ import annotations

import numpy as np
import pytest

import dlnsim


@pytest.mark.parametrize("N", [2, 3, 4, 5, 6])
@pytest.mark.parametrize("widths_kind", ["paper", "wide", "narrow_middle", "narrow_input"])
def test_balanced_init_is_balanced(N: int, widths_kind: str) -> None:
    rng = np.random.default_rng(N)
    widths = {
        "paper": list(dlnsim.paper_widths(N)),
        "wide": [40] * (N + 1),
        "narrow_middle": [30, *([25] * (N // 2)), 3, *([20] * (N - N // 2 - 1)), 35][: N + 1],
        "narrow_input": [4, *rng.integers(5, 30, size=N).tolist()],
    }[widths_kind]
    W = dlnsim.balanced_init(widths, rng, scale=1.3)
    assert [Wj.shape for Wj in W] == [(widths[j + 1], widths[j]) for j in range(N)]
    # exact construction: only rounding, ||W_j|| = 1.3
    assert dlnsim.balancedness(W).max() <= 1e-13
    s = min(widths)
    for Wj in W:
        sv = np.linalg.svd(Wj, compute_uv=False)
        np.testing.assert_allclose(sv[:s], 1.3, rtol=1e-13)
        assert np.all(sv[s:] < 1e-13)


def test_haar_orthogonal(rng: np.random.Generator) -> None:
    Q = dlnsim.haar_orthogonal(7, rng)
    np.testing.assert_allclose(Q.T @ Q, np.eye(7), atol=1e-14)
    # Haar: the mean of Q_11 over draws is 0 and its variance 1/n (loose statistical bounds, 2000 draws)
    vals = np.array([dlnsim.haar_orthogonal(4, rng)[0, 0] for _ in range(2000)])
    assert abs(vals.mean()) < 0.05 and vals.var() == pytest.approx(0.25, rel=0.1)


@pytest.mark.parametrize("target", [1e-3, 0.05, 0.4])
def test_perturbed_init_has_prescribed_balancedness(target: float) -> None:
    widths = [8, 3, 5, 6]
    W = dlnsim.perturbed_init(widths, np.random.default_rng(1), target)
    assert dlnsim.balancedness(W).max() == pytest.approx(target, rel=1e-10)


def test_gaussian_init_std(rng: np.random.Generator) -> None:
    W = dlnsim.gaussian_init([200, 300, 100], rng, [0.5, 2.0])
    assert np.std(W[0]) == pytest.approx(0.5, rel=0.02) and np.std(W[1]) == pytest.approx(2.0, rel=0.02)


def test_init_errors(rng: np.random.Generator) -> None:
    with pytest.raises(ValueError, match="widths must have at least two entries"):
        dlnsim.balanced_init([3], rng)
    with pytest.raises(ValueError, match="widths must contain positive integers"):
        dlnsim.balanced_init([3, 0, 2], rng)
    with pytest.raises(ValueError, match=r"rng must be a numpy\.random\.Generator"):
        dlnsim.balanced_init([3, 2], 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="std must be one number or 2 numbers"):
        dlnsim.gaussian_init([3, 2, 2], rng, [1.0])
    with pytest.raises(ValueError, match="scale must be finite"):
        dlnsim.balanced_init([3, 2], rng, scale=float("nan"))


def test_balancedness_checks_its_input(rng: np.random.Generator) -> None:
    W = dlnsim.balanced_init([4, 3, 5], rng)
    with pytest.raises(ValueError, match=r"W\[1\] must be real"):
        dlnsim.balancedness([W[0], W[1] * (1 + 0j)])
    with pytest.raises(ValueError, match="shapes do not chain"):
        dlnsim.balancedness([W[0], W[1].T])
    assert dlnsim.balancedness([W[0]]).shape == (0,)
    # Gram matrices that overflow float64 give inf (no warning), which stepsize_bound then refuses by name
    assert dlnsim.balancedness([W[0] * 1e200, W[1]])[0] == np.inf


def test_init_refuses_complex_parameters(rng: np.random.Generator) -> None:
    with pytest.raises(ValueError, match="std must be a real number"):
        dlnsim.gaussian_init([3, 2], rng, 1j)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"scale must be a real number"):
        dlnsim.balanced_init([3, 2], rng, scale=np.complex128(1.0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="balancedness_constant must be a real number"):
        dlnsim.perturbed_init([3, 2, 2], rng, True)  # type: ignore[arg-type]
