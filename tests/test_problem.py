"""Problem validation and cached quantities; the paper's Section-5 instance."""

from __future__ import annotations

import copy
import itertools
import pickle

import numpy as np
import pytest
from conftest import paper, random_problem

import dlnsim


def test_cached_quantities_match_definitions() -> None:
    p = random_problem(5, 3, 12, seed=1)
    C = p.X @ p.X.T
    np.testing.assert_allclose(p.XXt, C, rtol=1e-14)
    np.testing.assert_allclose(p.YXt, p.Y @ p.X.T, rtol=1e-14)
    assert p.norm_X == pytest.approx(np.linalg.norm(p.X, 2), rel=1e-12)
    assert p.sigma_min_X == pytest.approx(np.linalg.svd(p.X, compute_uv=False)[-1], rel=1e-10)
    assert p.norm_XYt == pytest.approx(np.linalg.norm(p.X @ p.Y.T, 2), rel=1e-12)
    # Q = Y X^T (X X^T)^{-1/2}: Q (XX^T)^{1/2} = Y X^T
    w, v = np.linalg.eigh(C)
    np.testing.assert_allclose(p.Q @ (v * np.sqrt(w)) @ v.T, p.YXt, rtol=1e-10, atol=1e-12)
    assert p.q == 3
    # Cholesky pieces used by the kernels: R^T R = C and F R = E
    np.testing.assert_allclose(p.Rt @ p.Rt.T, C, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(p.F @ p.Rt.T, p.YXt, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="read-only"):
        p.XXt[0, 0] = 1.0


def _assert_read_only(p: dlnsim.Problem) -> None:
    arrays = {k: v for k, v in vars(p).items() if isinstance(v, np.ndarray)}
    assert {"X", "Y", "XXt", "YXt", "Rt", "F", "Q", "W_ls", "optimal_loss_by_rank"} <= set(arrays)
    for name, a in arrays.items():
        assert not a.flags.writeable, name
        with pytest.raises(ValueError, match="read-only"):
            a[(0,) * a.ndim] = 1.0
    for name in [*vars(p), "q", "new_attribute"]:
        if name.startswith("_"):
            continue
        with pytest.raises(AttributeError, match="Problem is immutable: cannot set"):
            setattr(p, name, 1.0)
    with pytest.raises(AttributeError, match="Problem is immutable: cannot delete"):
        del p.X
    for change in (lambda m: m.update(seed=1), lambda m: m.__setitem__("seed", 1), lambda m: m.pop("seed"),
                   lambda m: m.clear(), lambda m: m.__delitem__("seed"), lambda m: m.setdefault("x", 1)):
        with pytest.raises(TypeError, match="Problem is immutable: its meta is read-only"):
            change(p.meta)


def test_problem_is_immutable() -> None:
    """Changing X or Y (or anything else) would leave F, R^T, L* ... describing the old data: all refused."""
    X, Y = _data()
    p = dlnsim.Problem(X, Y, meta={"seed": 0})
    _assert_read_only(p)
    assert X.flags.writeable and Y.flags.writeable  # the caller's arrays are copied, not frozen
    X[0, 0] += 1.0
    assert p.X[0, 0] != X[0, 0]
    np.testing.assert_array_equal(p.X, _data()[0])
    assert p.meta == {"seed": 0} and p.lstar == dlnsim.Problem(*_data()).lstar


def test_problem_stays_immutable_through_copy_and_pickle() -> None:
    p = dlnsim.Problem(*_data(), meta={"seed": 0, "name": "x"})
    for q in (pickle.loads(pickle.dumps(p)), copy.deepcopy(p), copy.copy(p)):
        _assert_read_only(q)
        assert q.meta == p.meta and q.lstar == p.lstar
        np.testing.assert_array_equal(q.F, p.F)
    assert pickle.loads(pickle.dumps(p.meta)) == p.meta
    assert {**p.meta} == {"seed": 0, "name": "x"}  # unpacks like a dict (the runs copy it into their attributes)


def test_with_meta_returns_a_new_problem() -> None:
    p = dlnsim.paper_setup(2, 0, d=5, m=10).problem
    q = p.with_meta(init="balanced", init_seed=3)
    assert q.meta == {**p.meta, "init": "balanced", "init_seed": 3}
    assert "init" not in p.meta
    assert q.X is p.X and q.F is p.F and q.lstar == p.lstar  # the read-only arrays are shared
    _assert_read_only(q)


def test_rank_k_optimum_against_brute_force() -> None:
    """Eckart-Young: min_{rank W <= k} L^1(W) = L* + 1/2 sum_{i>k} sigma_i(Q)^2; check k = 1 by optimising."""
    p = random_problem(4, 3, 10, seed=2)
    assert p.optimal_loss() == pytest.approx(p.loss_of_product(p.W_ls), rel=1e-12)
    assert p.optimal_loss(0) == pytest.approx(0.5 * np.sum(p.Y**2), rel=1e-12)
    vals = [p.optimal_loss(k) for k in range(4)]
    assert all(a >= b - 1e-12 for a, b in itertools.pairwise(vals))
    # rank-1 optimum from the truncated SVD of Q mapped back: W = Q_1 (XX^T)^{-1/2}
    U, s, Vt = np.linalg.svd(p.Q)
    w, v = np.linalg.eigh(p.XXt)
    W1 = (s[0] * np.outer(U[:, 0], Vt[0])) @ (v / np.sqrt(w)) @ v.T
    assert p.loss_of_product(W1) == pytest.approx(p.optimal_loss(1), rel=1e-10)
    rng = np.random.default_rng(0)
    for _ in range(200):  # no random rank-1 matrix does better
        W = np.outer(rng.standard_normal(3), rng.standard_normal(4))
        assert p.loss_of_product(W) >= p.optimal_loss(1) - 1e-10


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"X": np.ones(5), "Y": np.ones((2, 5))}, "X must be a 2-D array"),
        ({"X": np.ones((2, 5)), "Y": np.ones((2, 4))}, "same number of samples"),
        ({"X": np.full((2, 5), np.nan), "Y": np.ones((2, 5))}, "X must be finite"),
        ({"X": np.eye(2, 5), "Y": np.array([[np.inf] * 5])}, "Y must be finite"),
        ({"X": np.ones((3, 5)), "Y": np.ones((2, 5))}, r"X: X X\^T must have full rank; its smallest eigenvalue"),
        ({"X": np.ones((4, 3)), "Y": np.ones((2, 3))}, "at least d_x"),
        ({"X": [["a"]], "Y": np.ones((1, 1))}, "X must be a 2-D array of real numbers"),
    ],
)
def test_problem_rejects_bad_input(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        dlnsim.Problem(kwargs["X"], kwargs["Y"])


def test_paper_widths() -> None:
    assert dlnsim.paper_widths(2) == (70, 2, 70)
    assert dlnsim.paper_widths(3) == (70, 2, 36, 70)
    assert dlnsim.paper_widths(5) == (70, 2, 19, 36, 53, 70)
    with pytest.raises(ValueError, match="N must be an integer >= 1"):
        dlnsim.paper_widths(0)


def test_paper_setup_is_the_section5_instance() -> None:
    s = paper(3)
    p = s.problem
    assert (p.d_x, p.d_y, p.m) == (70, 70, 210)
    assert s.widths == (70, 2, 36, 70)
    assert [W.shape for W in s.W0] == [(2, 70), (36, 2), (70, 36)]
    # rank Y = rank Q = 2 and the minimum of L^N is 0
    assert np.linalg.matrix_rank(p.Y) == 2 and p.q == 2
    assert p.optimal_loss() < 1e-20
    # X entries have variance 1/d: sample variance of 14 700 entries within 5 %
    assert np.var(p.X) == pytest.approx(1 / 70, rel=0.05)
    # W(0) has two unit singular values (no scale factor)
    sv = np.linalg.svd(dlnsim.product(s.W0), compute_uv=False)
    np.testing.assert_allclose(sv[:2], 1.0, rtol=1e-13)
    assert sv[2] < 1e-13
    # same seed -> same X for every N, same numbers; another seed -> another instance
    np.testing.assert_array_equal(paper(5).problem.X, p.X)
    np.testing.assert_array_equal(dlnsim.paper_setup(3, 0).W0[1], s.W0[1])
    assert not np.array_equal(dlnsim.paper_setup(3, 1).problem.X, p.X)


@pytest.mark.parametrize(
    ("N", "L0", "M", "delta", "K", "B", "eta"),
    [  # seed 0, from an independent numpy implementation with the same draw order
        (2, 5.890, 20.33, 2.541, 30.49, 2555.6, 7.80e-4),
        (3, 5.434, 19.15, 0.2651, 9.543, 11446, 1.73e-4),
        (5, 5.851, 20.39, 0.02672, 4.008, 54057, 3.64e-5),
    ],
)
def test_seed0_matches_spec_table(N: int, L0: float, M: float, delta: float, K: float, B: float, eta: float) -> None:
    s = paper(N)
    b = dlnsim.stepsize_bound(s.problem, s.W0)
    # the table prints 3-5 significant digits: compare to that precision
    for got, want in ((b.L0, L0), (b.M, M), (b.delta, delta), (b.K, K), (b.B, B), (b.eta, eta)):
        assert got == pytest.approx(want, rel=3e-3)


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((5, 12)), rng.standard_normal((3, 12))


@pytest.mark.parametrize(
    ("xs", "ys", "match"),
    [
        (1e160, 1.0, r"X: its values are too large to square in float64: X X\^T overflows"),
        (1e-160, 1.0, r"X: its values are too small to square in float64: X X\^T underflows"),
        (1e-300, 1.0, r"X: its values are too small"),
        (1.0, 1e160, r"Y: its values are too large to square in float64"),
        (1.0, 1e-170, r"Y: its values are too small to square in float64"),
    ],
)
def test_problem_refuses_values_that_overflow_or_underflow(xs: float, ys: float, match: str) -> None:
    """Scales whose squares leave the float64 range are refused by name, not met by LinAlgError later."""
    X, Y = _data()
    with pytest.raises(ValueError, match=match):
        dlnsim.Problem(X * xs, Y * ys)


def test_problem_accepts_extreme_but_representable_scales() -> None:
    X, Y = _data()
    ref = dlnsim.Problem(X, Y)
    for s in (1e150, 1e-150):  # X X^T ~ 1e+-300: still normal float64 numbers
        p = dlnsim.Problem(X * s, Y)
        assert p.lambda_min == pytest.approx(ref.lambda_min * s**2, rel=1e-10)
        assert p.lstar == pytest.approx(ref.lstar, rel=1e-8)  # the fit does not depend on the scale of X
    assert dlnsim.Problem(X, np.zeros_like(Y)).lstar == 0.0  # Y = 0 is a (trivial) problem, not an underflow


def test_problem_refuses_complex_data() -> None:
    X, Y = _data()
    with pytest.raises(ValueError, match=r"X must be real, got a complex array \(dtype complex128\)"):
        dlnsim.Problem(X + 0j, Y)
    with pytest.raises(ValueError, match="Y must be real, got a complex array"):
        dlnsim.Problem(X, Y.astype(np.complex64))
    with pytest.raises(ValueError, match="Y must be real"):
        dlnsim.Problem(X, [[complex(v) for v in row] for row in Y])


def test_paper_setup_argument_checks() -> None:
    with pytest.raises(ValueError, match="d must be an integer"):
        dlnsim.paper_setup(2, 0, d=7.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seed must be an integer"):
        dlnsim.paper_setup(2, 0.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"need 1 <= r <= d"):
        dlnsim.paper_setup(2, 0, d=3, r=4)
    with pytest.raises(ValueError, match="m must be an integer >= d"):
        dlnsim.paper_setup(2, 0, d=5, m=4)
    with pytest.raises(ValueError, match="rank must be a non-negative integer"):
        paper(2).problem.optimal_loss(True)  # type: ignore[arg-type]
