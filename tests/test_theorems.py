"""Published convergence theorems (dlnsim.theory.published): translation rules, bounds against hand
computations, envelopes along GD runs, the reference paper's instance, not-checkable hypotheses."""

from __future__ import annotations

import math

import numpy as np
import pytest

import dlnsim
from dlnsim.theory import starts
from dlnsim.theory.published import end_to_end_residual, theorem, theorem_names, theorems
from dlnsim.theory.theorems import FAILS, HOLDS, NOT_CHECKABLE, envelope_ratio


def gd_numpy(problem: dlnsim.Problem, W: list[np.ndarray], eta: float, steps: int) -> list[np.ndarray]:
    W = [w.copy() for w in W]
    for _ in range(steps):
        G = dlnsim.gradient(problem, W)
        W = [w - eta * g for w, g in zip(W, G, strict=True)]
    return W


def prod(W: list[np.ndarray]) -> np.ndarray:
    P = W[0]
    for w in W[1:]:
        P = w @ P
    return P


def random_problem(d_x: int, d_y: int, m: int, seed: int) -> dlnsim.Problem:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((d_x, m)) / math.sqrt(d_x)
    return dlnsim.Problem(X, rng.standard_normal((d_y, d_x)) / math.sqrt(d_x) @ X)


def whitened_acgh_instance(N: int = 3, d: int = 3, seed: int = 0) -> tuple[dlnsim.Problem, list[np.ndarray]]:
    """Unit-whitened data, Phi = I + E (full rank), identity start: ACGH Theorem 1's checkable hypotheses."""
    rng = np.random.default_rng(seed)
    X = np.linalg.qr(rng.standard_normal((2 * d, d)))[0].T  # X X^T = I
    E = rng.standard_normal((d, d))
    Phi = np.eye(d) + 0.2 * E / np.linalg.norm(E)
    return dlnsim.Problem(X, Phi @ X), starts.identity_init([d] * (N + 1))


# ------------------------------------------------------------------------------------------ translation rules


def test_loss_scaling_rule_R1() -> None:
    # GD on s L with stepsize eta' is GD on L with stepsize s eta'; s L is the loss of (sqrt(s) X, sqrt(s) Y)
    p = random_problem(3, 2, 8, 1)
    s = 7.5
    ps = dlnsim.Problem(math.sqrt(s) * p.X, math.sqrt(s) * p.Y)
    W0 = dlnsim.gaussian_init((3, 4, 2), np.random.default_rng(2), 0.5)
    a = gd_numpy(ps, W0, 0.003, 40)
    b = gd_numpy(p, W0, s * 0.003, 40)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-14)


def test_whitening_identity_R2() -> None:
    p = random_problem(3, 2, 9, 3)
    for scale, s in (("unit", 1.0), ("samples", 9.0), (2.5, 2.5)):
        w = starts.whiten(p, scale)
        np.testing.assert_allclose(w.problem.XXt, s * np.eye(3), atol=1e-12 * s)
        Phi = w.problem.YXt / s
        rng = np.random.default_rng(4)
        offsets = []
        for _ in range(3):
            W = rng.standard_normal((2, 3))
            # L(W) = s/2 ||W - Phi||_F^2 + L*
            offsets.append(w.problem.loss_of_product(W) - 0.5 * s * np.sum((W - Phi) ** 2))
        np.testing.assert_allclose(offsets, w.problem.lstar, atol=1e-12 * max(1.0, p.norm_Y_F**2))
        # the start map keeps the loss; GD from it is a different run
        W0 = dlnsim.gaussian_init((3, 3, 2), rng, 0.5)
        Ww = w.start(W0)
        assert math.isclose(w.problem.loss_of_product(prod(Ww)), p.loss_of_product(prod(W0)), rel_tol=1e-12)
        for x, y in zip(w.original_start(Ww), W0, strict=True):
            np.testing.assert_allclose(x, y, atol=1e-12)
    w = starts.whiten(p, "unit")
    W0 = dlnsim.gaussian_init((3, 3, 2), np.random.default_rng(5), 0.5)
    a = prod(gd_numpy(p, W0, 0.05, 5))
    b = prod(w.original_start(gd_numpy(w.problem, w.start(W0), 0.05, 5)))
    assert np.linalg.norm(a - b) > 1e-4 * np.linalg.norm(a)
    with pytest.raises(ValueError, match="scale"):
        starts.whiten(p, "bogus")  # type: ignore[arg-type]


def test_output_scale_rule_R4_step_for_step() -> None:
    # Du-Hu's network x -> alpha W_N ... W_1 x with iid N(0, 1) factors, GD on 1/2 ||alpha P X - Y||^2
    p = random_problem(3, 2, 10, 6)
    widths, N, h = (3, 8, 8, 2), 3, 8
    alpha = starts.output_scale(widths)
    assert math.isclose(alpha, (h ** (N - 1) * 2) ** -0.5)
    rng = np.random.default_rng(7)
    theirs = [rng.standard_normal((widths[j + 1], widths[j])) for j in range(N)]
    eta = 0.01
    ours = starts.from_scaled(theirs, alpha)
    eta_ours = starts.scaled_stepsize(eta, alpha, N)
    assert math.isclose(eta_ours, eta * alpha ** (2 / N))
    for _ in range(50):
        R = alpha * prod(theirs) @ p.X - p.Y
        grads = []
        for j in range(N):
            left = prod(theirs[j + 1:]) if j < N - 1 else np.eye(2)
            right = prod(theirs[:j]) if j > 0 else np.eye(3)
            grads.append(alpha * left.T @ R @ p.X.T @ right.T)
        theirs = [w - eta * g for w, g in zip(theirs, grads, strict=True)]
        ours = gd_numpy(p, ours, eta_ours, 1)
        for x, y in zip(starts.from_scaled(theirs, alpha), ours, strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(alpha * prod(theirs), prod(ours), rtol=1e-12, atol=1e-14)
    for x, y in zip(starts.to_scaled(ours, alpha), theirs, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------------------- the starts


def test_starts() -> None:
    rng = np.random.default_rng(8)
    A = rng.standard_normal((2, 4))
    W = starts.procedure1_init((4, 3, 5, 2), A)
    np.testing.assert_allclose(prod(W), A, atol=1e-13)
    assert dlnsim.balancedness(W).max() < 1e-13
    with pytest.raises(ValueError, match="widths"):
        starts.procedure1_init((4, 1, 2), rng.standard_normal((2, 4)))
    W = starts.acgh_random_init((6, 2, 1), rng, 0.1)
    assert prod(W).shape == (1, 6) and dlnsim.balancedness(W).max() < 1e-14
    W = starts.hxp_init((3, 8, 8, 2), rng)
    c2 = (8 / 2) ** (1 / 3)
    np.testing.assert_allclose(W[0].T @ W[0], c2 * np.eye(3), atol=1e-12)
    np.testing.assert_allclose(W[1] @ W[1].T, c2 * np.eye(8), atol=1e-12)
    np.testing.assert_allclose(W[2] @ W[2].T, c2 * np.eye(2), atol=1e-12)
    with pytest.raises(ValueError, match="hidden width"):
        starts.hxp_init((3, 2, 2, 2), rng)
    W = starts.du_hu_init((50, 200, 200, 10), rng)
    std = (200**2 * 10) ** (-1 / 6)
    assert all(abs(np.std(w) / std - 1) < 0.05 for w in W)
    with pytest.raises(ValueError, match="equal"):
        starts.du_hu_init((3, 4, 5, 2), rng)
    assert all(np.array_equal(w, np.eye(3)) for w in starts.identity_init((3, 3, 3)))
    with pytest.raises(ValueError, match="rng"):
        starts.hxp_init((3, 8, 8, 2), 0)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- bounds by hand computation


def test_acgh_theorem1_by_hand() -> None:
    # X = I (whitened, s = 1), Phi = diag(1.2, 1.1), N = 2, identity start
    X = np.eye(2)
    p = dlnsim.Problem(X, np.diag([1.2, 1.1]) @ X)
    t = theorem("acgh2019", p, starts.identity_init((2, 2, 2)))
    c = 1.1 - math.sqrt(0.2**2 + 0.1**2)  # sigma_min(Phi) - ||I - Phi||_F
    phiF2 = 1.2**2 + 1.1**2  # ||Phi||_F^2
    assert math.isclose(t.constants["c"], c, rel_tol=1e-12)
    assert math.isclose(t.constants["delta_required"], c**2 / (256 * 8 * phiF2 ** 0.5), rel_tol=1e-12)
    # c^((4N-2)/N) / (6144 N^3 ||Phi||_F^((6N-4)/N)) at N = 2
    assert math.isclose(t.eta, c**3 / (6144 * 8 * phiF2**2), rel_tol=1e-12)
    assert math.isclose(t.rate_coefficient, c, rel_tol=1e-12)  # c^(2(N-1)/N)
    e0 = 0.5 * (0.2**2 + 0.1**2)
    assert math.isclose(t.excess0, e0, rel_tol=1e-12)
    assert t.iterations(1e-6) == math.ceil(math.log(e0 / 1e-6) / (t.eta * c))
    assert t.admitted and t.certified
    # samples-whitened data (X X^T = m I): the same theorem, our stepsize divided by m
    m = 4
    Xm = math.sqrt(m) * np.linalg.qr(np.random.default_rng(0).standard_normal((m, 2)))[0].T
    pm = dlnsim.Problem(Xm, np.diag([1.2, 1.1]) @ Xm)
    tm = theorem("acgh2019", pm, starts.identity_init((2, 2, 2)))
    assert math.isclose(tm.eta * m, t.eta, rel_tol=1e-10) and math.isclose(tm.excess0, m * e0, rel_tol=1e-10)


def test_acgh_theorem2_by_hand() -> None:
    # scalar output, unit-whitened data in d_x = 4, N = 2, product with entries of size s
    X = np.eye(4)
    phi = np.array([[1.0, 2.0, 0.0, 2.0]])  # ||Phi|| = 3
    p = dlnsim.Problem(X, phi @ X)
    s = 0.05
    W0 = starts.procedure1_init((4, 1, 1), s * np.array([[1.0, 0.0, 0.0, 0.0]]))
    t = theorem("acgh2019_thm2", p, W0, s=s)
    eta = (s**2 * 4) ** 3 / (1e5 * 8 * 3.0**7)  # (s^2 d0)^(4-2/N) / (1e5 N^3 ||Phi||^((10N-6)/N))
    assert math.isclose(t.eta, eta, rel_tol=1e-12)
    T = 4 / eta * (math.log(4) * (3 / (s**2 * 4)) + 3 ** (-1) * math.log(9 / (8 * 1e-3)))
    assert t.iterations(1e-3) == math.ceil(T)
    assert t.hypothesis("input_dimension").status == NOT_CHECKABLE
    assert t.hypothesis("init_scale").status == NOT_CHECKABLE
    assert t.hypothesis("scalar_output").status == HOLDS
    assert not t.certified
    with pytest.raises(TypeError, match="s"):
        theorem("acgh2019_thm2", p, W0)


def test_du_hu_and_hxp_by_hand() -> None:
    # X = diag(2, 1) (||X||^2 = 4, lambda_min = 1), d_y = 2, h = 4, N = 3
    X = np.diag([2.0, 1.0])
    p = dlnsim.Problem(X, np.array([[1.0, 0.5], [0.0, 1.0]]) @ X)
    W0 = starts.hxp_init((2, 4, 4, 2), np.random.default_rng(1))
    a2n = (4**2 * 2) ** (-1 / 3)  # alpha^(2/N)
    du = theorem("du_hu2019", p, W0)
    assert math.isclose(du.eta_own, 2 / (3 * 3 * 4), rel_tol=1e-12)
    assert math.isclose(du.eta, 2 / (3 * 3 * 4) * a2n, rel_tol=1e-12)
    assert math.isclose(du.contraction(), 1 - (2 / 36) * 3 * 1 / (4 * 2), rel_tol=1e-12)
    hx = theorem("hxp2020", p, W0)
    assert math.isclose(hx.eta_own, 2 / (2 * 3 * 4), rel_tol=1e-12)
    assert math.isclose(hx.eta, 2 / 24 * a2n, rel_tol=1e-12)
    assert math.isclose(hx.contraction(), 1 - 0.5 * (2 / 24) * 3 * 1 / 2, rel_tol=1e-12)
    q = hx.contraction()
    assert hx.iterations(1e-8) == math.ceil(math.log(hx.excess0 / 1e-8) / -math.log(q))
    np.testing.assert_allclose(hx.envelope([0, 1, 5]), hx.excess0 * q ** np.array([0, 1, 5]))
    assert hx.hypothesis("init_orthogonal").status == HOLDS
    assert hx.hypothesis("width").status == NOT_CHECKABLE


def test_nrt_wraps_the_existing_bound_by_hand() -> None:
    s = dlnsim.paper_setup(2, 0, d=6, r=2)
    p, W0 = s.problem, s.W0
    t = theorem("nrt2024", p, W0, delta="section5", alpha=0.0)
    N, L0 = 2, p.loss_of_product(prod(W0))
    M = (p.norm_X * math.sqrt(2 * L0) + p.norm_XYt) / p.lambda_min
    delta = M ** (2 / N) / N**3
    K = M ** (2 / N) + N**2 * delta
    B = 2 * math.e * N * K ** (N - 1) * p.norm_X**2 + math.sqrt(math.e) * N * K ** (N / 2 - 1) * p.norm_XYt
    assert math.isclose(t.eta, 2 * delta / (4 * L0 + delta * B), rel_tol=1e-12)
    assert math.isclose(t.eta, dlnsim.stepsize_bound(p, W0).eta, rel_tol=1e-14)
    best = theorem("nrt2024", p, W0)
    assert best.eta >= t.eta and best.admitted and not best.has_rate
    assert math.isnan(best.iterations(1e-3))
    r = theorem("nrt2024_remark2.5", p, W0)
    assert math.isclose(r.eta, dlnsim.stepsize_bound(p, W0, delta="remark2.5").eta_closed_form, rel_tol=1e-14)
    s6 = theorem("nrt2024_thm2.6", p, W0)
    assert math.isclose(s6.eta, dlnsim.set_stepsize_bound(p, 2, 0.0, L0, 0.0).eta, rel_tol=1e-12)
    assert s6.hypothesis("generic_start").status == NOT_CHECKABLE and s6.admitted and not s6.certified
    # an unbalanced start with a fixed alpha = 0: the balancedness hypothesis fails, no stepsize
    Wu = dlnsim.perturbed_init(s.widths, np.random.default_rng(1), 0.3)
    u = theorem("nrt2024", p, Wu, delta="section5", alpha=0.0)
    assert not u.admitted and u.failing[0].key == "balancedness" and math.isnan(u.eta)
    assert theorem("nrt2024", p, Wu).admitted  # alpha = "min", best delta: some pair admits it


# -------------------------------------------------------------------------------------- envelopes along runs


@pytest.mark.parametrize("name", ["hxp2020", "du_hu2019"])
def test_gd_at_the_stepsize_stays_under_the_envelope_wide(name: str) -> None:
    p = random_problem(3, 3, 9, 10)
    rng = np.random.default_rng(11)
    widths = (3, 64, 64, 64, 3)
    W0 = starts.hxp_init(widths, rng) if name == "hxp2020" else starts.du_hu_init(widths, rng)
    t = theorem(name, p, W0)
    assert t.admitted and [h.key for h in t.unchecked] == ["width"]
    run = dlnsim.run_gd(p, W0, t.eta, 400, record="all")
    ratio = envelope_ratio(t, run)
    assert ratio.attrs["within_stepsize"] == 1
    assert np.nanmax(ratio.values) <= 1.0 + 1e-9  # k = 0 is 1 to rounding
    assert np.isfinite(ratio.values[:50]).all()


def test_gd_at_the_stepsize_stays_under_the_envelope_acgh() -> None:
    p, W0 = whitened_acgh_instance()
    t = theorem("acgh2019", p, W0)
    assert t.admitted and t.certified
    run = dlnsim.run_gd(p, W0, t.eta, 300, record="all")
    ratio = envelope_ratio(t, run)
    assert np.nanmax(ratio.values) <= 1.0 + 1e-9  # k = 0 is 1 to rounding
    # a stepsize above the bound is reported as such
    assert theorem("acgh2019", p, W0, eta=2 * t.eta).hypothesis("stepsize").status == FAILS
    with pytest.raises(ValueError, match="rate"):
        envelope_ratio(theorem("nrt2024", p, W0), run)


# --------------------------------------------------------------------------------- the reference paper's case


def test_paper_instance_only_the_reference_theorem_admits() -> None:
    s = dlnsim.paper_setup(3, 0)
    reports = theorems(s.problem, s.W0)
    gd_with_eta = {n for n, t in reports.items() if t.kind == "gd" and math.isfinite(t.eta) and t.admitted}
    assert gd_with_eta == {"nrt2024", "nrt2024_remark2.5", "nrt2024_thm2.6"}
    assert {h.key for h in reports["acgh2019"].failing} == {"whitened", "no_bottleneck", "margin", "balanced"}
    assert {"equal_widths", "output_width"} <= {h.key for h in reports["du_hu2019"].failing}
    assert {"equal_widths", "width_io", "init_orthogonal"} <= {h.key for h in reports["hxp2020"].failing}
    assert reports["ec2021"].failing[0].key == "scalar_output"
    assert reports["ach2018"].admitted and reports["ach2018"].constants["identity_residual"] < 1e-12
    # whitening does not rescue ACGH: the target has rank 2 < 70, no margin
    w = starts.whiten(s.problem, "samples")
    t = theorem("acgh2019", w.problem, w.start(s.W0))
    assert t.hypothesis("whitened").status == HOLDS and t.hypothesis("margin").status == FAILS


def test_not_checkable_is_never_holding() -> None:
    p = random_problem(3, 3, 9, 12)
    W0 = starts.hxp_init((3, 16, 16, 3), np.random.default_rng(0))
    for name in ("du_hu2019", "hxp2020"):
        h = theorem(name, p, W0).hypothesis("width")
        assert h.status == NOT_CHECKABLE and h.status != HOLDS and "C is not given" in h.detail
    t = theorem("ec2021", p, W0)
    assert math.isnan(t.eta) and {h.key for h in t.unchecked} >= {"near_zero", "stepsize"}
    assert not theorem("hxp2020", p, W0).certified


def test_ach_identity_and_first_order_gd() -> None:
    s = dlnsim.paper_setup(3, 1, d=6, r=2)
    identity, step1 = end_to_end_residual(s.problem, s.W0, eta=1e-3)
    _, step2 = end_to_end_residual(s.problem, s.W0, eta=5e-4)
    assert identity < 1e-12
    assert 0.4 < step2 / step1 < 0.6  # O(eta)
    Wu = dlnsim.perturbed_init(s.widths, np.random.default_rng(1), 0.3)
    t = theorem("ach2018", s.problem, Wu)
    assert not t.admitted and t.constants["identity_residual"] > 1e-6 and math.isnan(t.eta)


def test_theorem_errors() -> None:
    p, W0 = whitened_acgh_instance()
    with pytest.raises(ValueError, match="name"):
        theorem("nope", p, W0)
    with pytest.raises(TypeError, match="bogus"):
        theorem("hxp2020", p, W0, bogus=1)
    with pytest.raises(ValueError, match="delta"):
        theorem("du_hu2019", p, [np.eye(3)] * 3, delta=2.0)
    with pytest.raises(ValueError, match="problem"):
        theorem("acgh2019", "p", W0)
    with pytest.raises(ValueError, match="W0"):
        theorem("acgh2019", p, [np.eye(2)])
    assert set(theorem_names()) >= {"nrt2024", "acgh2019", "du_hu2019", "hxp2020"}
    t = theorem("hxp2020", p, W0)
    assert "hxp2020" in t.summary() and t.admitted  # the identity with h = d is a scaled orthogonal start
