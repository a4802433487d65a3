"""Step rules beyond plain GD: heavy-ball and Nesterov momentum, minibatch SGD.

Each update against a plain numpy reference of its formula (dlnsim.methods), the exact reductions (beta = 0 is
GD bit for bit, SGD with the whole data set as one batch is GD to rounding), the linear-stability threshold
of heavy-ball on a quadratic (N = 1), the batches (seeded, the same in any chunking), and bad input.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

import dlnsim
from dlnsim.methods import method_from_json
from dlnsim.objective import gradient, loss

INSTANCES = [(1, 0), (2, 1), (3, 2)]  # (N, seed) of a small paper setup


def _small(N: int, seed: int) -> tuple[dlnsim.Problem, list[np.ndarray]]:
    s = dlnsim.paper_setup(N=N, seed=seed, d=8, m=24)
    rng = np.random.default_rng(seed)
    W0 = [W + 0.05 * rng.standard_normal(W.shape) for W in s.W0]  # unbalanced: every factor moves
    return s.problem, W0


def _eta(problem: dlnsim.Problem, W0: list[np.ndarray]) -> float:
    return 0.3 / dlnsim.sharpness(problem, W0)


def _reference(problem: dlnsim.Problem, W0: list[np.ndarray], eta: float, n: int, rule: str, beta: float = 0.0,
               batches: np.ndarray | None = None) -> np.ndarray:
    """The losses L(W(0..n)) of the update rule in plain numpy (for Nesterov the look-ahead iterate y)."""
    W = [x.copy() for x in W0]
    V = [np.zeros_like(x) for x in W0]
    out = []
    for k in range(n + 1):
        out.append(loss(problem, W))
        if k == n:
            break
        if batches is None:
            G = gradient(problem, W)
        else:
            cols = batches[k]
            sub = dlnsim.Problem(problem.X[:, cols], problem.Y[:, cols]) if cols.size >= problem.d_x else None
            G = _batch_gradient(problem, W, cols) if sub is None else gradient(sub, W)
            G = [problem.m / cols.size * g for g in G]
        V = [beta * v - eta * g for v, g in zip(V, G, strict=True)]
        if rule == "nesterov":
            W = [x + beta * v - eta * g for x, v, g in zip(W, V, G, strict=True)]
        else:
            W = [x + v for x, v in zip(W, V, strict=True)]
    return np.array(out)


def _batch_gradient(problem: dlnsim.Problem, W: list[np.ndarray], cols: np.ndarray) -> list[np.ndarray]:
    """grad of 1/2 ||W_N...W_1 X_B - Y_B||_F^2 by the chain rule (3.2), for batches too small for a Problem."""
    X, Y = problem.X[:, cols], problem.Y[:, cols]
    P = W[0]
    for Wj in W[1:]:
        P = Wj @ P
    G = (P @ X - Y) @ X.T
    grads = []
    for j in range(len(W)):
        up = np.eye(P.shape[0])
        for Wi in W[j + 1:][::-1]:
            up = up @ Wi
        low = np.eye(W[0].shape[1])
        for Wi in W[:j]:
            low = Wi @ low
        grads.append(up.T @ G @ low.T)
    return grads


@pytest.mark.parametrize(("N", "seed"), INSTANCES)
def test_beta_zero_is_gd_bit_for_bit(N: int, seed: int) -> None:
    problem, W0 = _small(N, seed)
    eta = _eta(problem, W0)
    gd = dlnsim.run_gd(problem, W0, eta, 200, record="all")
    for rule in (dlnsim.HeavyBall(beta=0.0), dlnsim.Nesterov(beta=0.0)):
        ds = dlnsim.run_gd(problem, W0, eta, 200, record="all", method=rule)
        assert np.array_equal(ds.loss.values, gd.loss.values)
        assert np.array_equal(ds.grad_norm_sq.values, gd.grad_norm_sq.values)


@pytest.mark.parametrize(("N", "seed"), INSTANCES)
@pytest.mark.parametrize("rule", ["heavy_ball", "nesterov"])
def test_momentum_against_numpy(N: int, seed: int, rule: str) -> None:
    problem, W0 = _small(N, seed)
    eta, beta = _eta(problem, W0), 0.7
    method = dlnsim.HeavyBall(beta=beta) if rule == "heavy_ball" else dlnsim.Nesterov(beta=beta)
    ds = dlnsim.run_gd(problem, W0, eta, 150, record="all", method=method)
    ref = _reference(problem, W0, eta, 150, rule, beta)
    # rounding differs (fused kernel step vs numpy); 150 steps of a contracting map keep it near 1e-13; the
    # numpy loss 1/2 ||Y - W X||^2 itself is only accurate to about eps ||Y||^2 (cancellation near L*)
    np.testing.assert_allclose(ds.loss.values, ref, rtol=1e-10, atol=1e-13 * ref[0])
    assert ds.attrs["method"] == rule and ds.attrs["method_beta"] == beta


@pytest.mark.parametrize(("N", "seed"), INSTANCES)
@pytest.mark.parametrize("sampling", ["reshuffle", "replacement"])
def test_sgd_against_numpy(N: int, seed: int, sampling: str) -> None:
    problem, W0 = _small(N, seed)
    eta = 0.3 * _eta(problem, W0)
    method = dlnsim.SGD(batch_size=5, seed=seed, sampling=sampling, beta=0.5)
    ds = dlnsim.run_gd(problem, W0, eta, 120, record="all", method=method)
    ref = _reference(problem, W0, eta, 120, "heavy_ball", 0.5, batches=method.batches(problem.m, 0, 120))
    np.testing.assert_allclose(ds.loss.values, ref, rtol=1e-10, atol=1e-13 * ref[0])  # as for momentum
    assert np.all(np.isnan(ds.descent_ratio.values))  # not defined without the full loss at every step


@pytest.mark.parametrize(("N", "seed"), INSTANCES)
def test_sgd_with_all_samples_is_gd(N: int, seed: int) -> None:
    problem, W0 = _small(N, seed)
    eta = _eta(problem, W0)
    gd = dlnsim.run_gd(problem, W0, eta, 300, record="all")
    sgd = dlnsim.run_gd(problem, W0, eta, 300, record="all", method=dlnsim.SGD(batch_size=problem.m, seed=1))
    # every batch is the whole data set in another column order: only the rounding of the sums differs
    np.testing.assert_allclose(sgd.excess_loss.values, gd.excess_loss.values, rtol=1e-13 * 300, atol=0)
    # the loss near L* has the rounding of its own size: compared with the initial loss as the scale
    np.testing.assert_allclose(sgd.loss.values, gd.loss.values, rtol=0, atol=1e-13 * float(gd.loss[0]))


@pytest.mark.parametrize("rule", ["heavy_ball", "nesterov"])
def test_momentum_runs_do_not_depend_on_the_chunks(rule: str) -> None:
    """The momentum kernels rotate three buffers; a chunk ends with the state and the previous point back in
    place, so one step per chunk (a record at every step) gives the iterates of one chunk bit for bit."""
    problem, W0 = _small(3, 2)
    eta = _eta(problem, W0)
    method = dlnsim.HeavyBall(beta=0.7) if rule == "heavy_ball" else dlnsim.Nesterov(beta=0.7)
    for n in (149, 150, 151):  # every phase of the rotation at the end
        one = dlnsim.run_gd(problem, W0, eta, n, record=dlnsim.Record([n], final_weights=True), method=method)
        every = dlnsim.run_gd(problem, W0, eta, n, record=dlnsim.Record("all", final_weights=True), method=method)
        assert float(one.loss[-1]) == float(every.loss[-1])
        for a, b in zip(dlnsim.weights_from(one), dlnsim.weights_from(every), strict=True):
            assert np.array_equal(a, b)


def _pivot_problem(seed: int) -> tuple[dlnsim.Problem, list[np.ndarray]]:
    """A network whose narrowest layer (width 2) is in the middle: widths 5, 4, 2, 3, 6."""
    rng = np.random.default_rng(seed)
    widths = [5, 4, 2, 3, 6]
    X = rng.standard_normal((5, 20))
    Y = rng.standard_normal((6, 5)) @ X
    W0 = [0.5 * rng.standard_normal((widths[j + 1], widths[j])) for j in range(4)]
    return dlnsim.Problem(X, Y), W0


@pytest.mark.parametrize(("beta", "nesterov"), [(0.0, False), (0.5, False), (0.5, True)])
def test_sgd_through_a_middle_pivot_against_numpy(beta: float, nesterov: bool) -> None:
    """The SGD step of loops through a width-2 layer with layers on both sides of it (both chains)."""
    problem, W0 = _pivot_problem(0)
    eta = 0.1 * _eta(problem, W0)
    method = dlnsim.SGD(batch_size=3, seed=2, beta=beta, nesterov=nesterov)
    ds = dlnsim.run_gd(problem, W0, eta, 100, record="all", method=method)
    ref = _reference(problem, W0, eta, 100, "nesterov" if nesterov else "heavy_ball", beta,
                     batches=method.batches(problem.m, 0, 100))
    np.testing.assert_allclose(ds.loss.values, ref, rtol=1e-10, atol=1e-13 * ref[0])


def test_reshuffled_batches_follow_their_definition() -> None:
    """Epoch e is cut from the (e mod 64)-th permutation(m) of default_rng([seed, e // 64]) (`SGD.batches`)."""
    m, b, seed = 23, 5, 7
    per_epoch = m // b
    rule = dlnsim.SGD(batch_size=b, seed=seed)
    got = rule.batches(m, 250, 700)  # epochs 62..174: three generators
    for k in range(250, 700):
        e, s = divmod(k, per_epoch)
        rng = np.random.default_rng([seed, e // 64])
        for _ in range(e % 64 + 1):
            perm = rng.permutation(m)
        assert np.array_equal(got[k - 250], perm[s * b : (s + 1) * b])


def test_batches_are_seeded_and_chunk_independent() -> None:
    for sampling in ("reshuffle", "replacement"):
        rule = dlnsim.SGD(batch_size=7, seed=11, sampling=sampling)
        whole = rule.batches(50, 0, 3000)
        parts = np.concatenate([rule.batches(50, 0, 37), rule.batches(50, 37, 1500), rule.batches(50, 1500, 3000)])
        assert np.array_equal(whole, parts)
        assert whole.shape == (3000, 7) and whole.min() >= 0 and whole.max() < 50
        other = dlnsim.SGD(batch_size=7, seed=12, sampling=sampling).batches(50, 0, 3000)
        assert not np.array_equal(whole, other)
    # reshuffling: each epoch (7 batches of 7 out of 50 samples) uses distinct samples
    epoch = dlnsim.SGD(batch_size=7, seed=11).batches(50, 0, 7)
    assert np.unique(epoch).size == 49


def test_sgd_runs_are_reproducible_and_record_their_seed() -> None:
    problem, W0 = _small(2, 0)
    eta = 0.3 * _eta(problem, W0)
    a = dlnsim.run_gd(problem, W0, eta, 500, record="log:20", method=dlnsim.SGD(batch_size=4, seed=5))
    b = dlnsim.run_gd(problem, W0, eta, 500, record="log:20", method=dlnsim.SGD(batch_size=4, seed=5),
                      progress=True)  # other chunks: the same numbers
    c = dlnsim.run_gd(problem, W0, eta, 500, record="log:20", method=dlnsim.SGD(batch_size=4, seed=6))
    assert np.array_equal(a.loss.values, b.loss.values)
    assert not np.array_equal(a.loss.values, c.loss.values)
    assert a.attrs["method"] == "sgd" and a.attrs["method_seed"] == 5 and a.attrs["method_batch_size"] == 4


def test_sgd_divergence_is_data() -> None:
    problem, W0 = _small(3, 0)
    ds = dlnsim.run_gd(problem, W0, 50 * _eta(problem, W0), 2000, method=dlnsim.SGD(batch_size=4, seed=0))
    assert ds["status"].item() == "diverged"
    assert 0 < int(ds["stop_iteration"]) < 2000


@pytest.mark.parametrize("beta", [0.0, 0.5, 0.9])
def test_heavy_ball_threshold_on_a_quadratic(beta: float) -> None:
    """N = 1 is linear regression: heavy-ball converges iff eta lambda_max(X X^T) < 2 (1 + beta)."""
    s = dlnsim.paper_setup(N=1, seed=0, d=6, m=18)
    lam = float(np.linalg.eigvalsh(s.problem.X @ s.problem.X.T)[-1])
    limit = dlnsim.HeavyBall(beta=beta).stability_limit(lam)
    assert limit == pytest.approx(2 * (1 + beta) / lam, rel=1e-15)
    rtol = 0.002
    res = dlnsim.critical_stepsize(s.problem, s.W0, n_iter=20_000, bracket=(0.5 * limit, 1.5 * limit), rtol=rtol,
                                   loss_tol=1e-3, method=dlnsim.HeavyBall(beta=beta))
    assert res.status == "ok"
    # no stepsize above the limit converges; below it every one does, except within about 1e-4 of the limit,
    # where the slowest mode (a root of modulus near 1) needs more than the 20 000 steps of the horizon
    assert all(t.outcome != "converged" for t in res.trials if t.eta > limit)
    assert res.eta_lo <= limit
    assert res.eta_hi >= limit * (1 - 1e-3)
    assert res.eta_lo >= limit * (1 - rtol - 1e-3)


def test_nesterov_threshold_formula() -> None:
    """2 (1 + beta) / (1 + 2 beta): the largest x = eta lambda with both roots of z^2 - (1+beta)(1-x) z
    + beta (1-x) in the unit disc."""
    for beta in (0.0, 0.3, 0.9):
        x_lim = dlnsim.Nesterov(beta=beta).stability_limit(1.0)
        for x, inside in ((0.999 * x_lim, True), (1.001 * x_lim, False)):
            roots = np.roots([1.0, -(1 + beta) * (1 - x), beta * (1 - x)])
            assert bool(np.max(np.abs(roots)) < 1) == inside


@pytest.mark.parametrize(("make", "match"), [
    (lambda: dlnsim.HeavyBall(beta=1.0), "HeavyBall.beta"),
    (lambda: dlnsim.HeavyBall(beta=-0.1), "HeavyBall.beta"),
    (lambda: dlnsim.Nesterov(beta=float("nan")), "Nesterov.beta"),
    (lambda: dlnsim.SGD(batch_size=0), "SGD.batch_size"),
    (lambda: dlnsim.SGD(batch_size=2.5), "SGD.batch_size"),  # type: ignore[arg-type]
    (lambda: dlnsim.SGD(batch_size=True), "SGD.batch_size"),
    (lambda: dlnsim.SGD(batch_size=4, sampling="bootstrap"), "SGD.sampling"),
    (lambda: dlnsim.SGD(batch_size=4, beta=1.5), "SGD.beta"),
    (lambda: dlnsim.SGD(batch_size=4, seed=-1), "SGD.seed"),
])
def test_bad_step_rules_name_the_field(make: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_batch_larger_than_the_data_is_refused() -> None:
    problem, W0 = _small(2, 0)
    with pytest.raises(ValueError, match=r"SGD.batch_size must be in \[1, m = 24\]"):
        dlnsim.run_gd(problem, W0, 1e-3, 10, method=dlnsim.SGD(batch_size=25))


def test_step_rules_round_trip_through_json() -> None:
    for rule in (dlnsim.GD(), dlnsim.HeavyBall(beta=0.5), dlnsim.Nesterov(beta=0.25),
                 dlnsim.SGD(batch_size=16, seed=3, sampling="replacement", beta=0.9, nesterov=True)):
        assert method_from_json(json.loads(json.dumps(rule.to_json()))) == rule


def test_sweep_over_beta_and_batch_size_is_the_same_on_every_executor(tmp_path: Any) -> None:
    kw: dict[str, Any] = dict(N=[2], seed=[0, 1], eta_factor=[5.0], n_iter=300, d=6, m=18,
                              method=dlnsim.SGD(batch_size=3, seed=4, beta=0.5), batch_size=[3, 6], beta=[0.0, 0.5],
                              record="log:20")
    serial = dlnsim.sweep(None, **kw, engine=dlnsim.Engine("serial", progress=False))
    threads = dlnsim.sweep(tmp_path / "t", **kw, engine=dlnsim.Engine("threads", workers=2, progress=False))
    assert {"beta", "batch_size"} <= set(serial.dims)
    for name in ("loss", "final_loss", "status"):
        assert np.array_equal(serial[name].values, threads[name].values)
    # each cell is the run made by hand with that step rule
    one = serial.sel(N=2, seed=1, eta_factor=5.0, beta=0.5, batch_size=6)
    s = dlnsim.paper_setup(N=2, seed=1, d=6, m=18)
    ref = dlnsim.run_gd(s.problem, s.W0, "5xbound", 300, record="log:20",
                        method=dlnsim.SGD(batch_size=6, seed=4, beta=0.5))
    assert np.array_equal(one.loss.dropna("k").values, ref.loss.values)
    # resumed: nothing recomputed, the same Dataset
    files = {p: p.stat().st_mtime_ns for p in (tmp_path / "t").rglob("*.nc")}
    again = dlnsim.sweep(tmp_path / "t", **kw, engine=dlnsim.Engine("threads", progress=False))
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "t").rglob("*.nc")} == files
    assert np.array_equal(again.loss.values, threads.loss.values, equal_nan=True)


def test_method_axes_are_checked_before_any_cell() -> None:
    with pytest.raises(ValueError, match="batch_size: the step rule GD has no batch_size"):
        dlnsim.sweep(None, N=[2], seed=[0], eta_factor=[1.0], n_iter=10, batch_size=[4, 8])
    with pytest.raises(ValueError, match=r"HeavyBall\.beta"):
        dlnsim.sweep(None, N=[2], seed=[0], eta_factor=[1.0], n_iter=10, method=dlnsim.HeavyBall(),
                     beta=[0.5, 1.0])


def test_heavy_ball_follows_the_flow_at_rescaled_times_to_first_order() -> None:
    """GD with heavy-ball momentum against the gradient flow at t_k / (1 - beta): the distance at a fixed time
    halves with eta (first order)."""
    s = dlnsim.paper_setup(N=2, seed=0, d=6, m=18)
    lam = dlnsim.sharpness(s.problem, s.W0)
    beta, T = 0.5, 2.0
    dist = {}
    for eta in (0.02 / lam, 0.01 / lam):
        n = round(T * (1 - beta) / eta)
        ds = dlnsim.compare_flow(s.problem, s.W0, eta, n, kind="factor", record=[n],
                                 method=dlnsim.HeavyBall(beta=beta))
        assert ds.attrs["flow_time_scale"] == pytest.approx(1 / (1 - beta))
        dist[eta] = float(ds.flow_distance.sel(k=n))
    small, large = sorted(dist)
    assert 1.7 < dist[large] / dist[small] < 2.3  # first order: ratio 2 of the stepsizes
    with pytest.raises(ValueError, match="modified flow is that of plain gradient descent"):
        dlnsim.compare_flow(s.problem, s.W0, 0.01 / lam, 10, kind="modified", method=dlnsim.HeavyBall(beta=beta))


def test_command_line_step_rules(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from dlnsim.cli import main

    out = tmp_path / "sgd.nc"
    assert main(["run", "--N", "2", "--d", "6", "--m", "18", "--eta", "0.5xbound", "--iters", "200", "--method",
                 "sgd", "--batch-size", "6", "--sgd-seed", "2", "--beta", "0.5", "--out", str(out), "--quiet"]) == 0
    ds = dlnsim.load(out)
    assert ds.attrs["method"] == "sgd" and ds.attrs["method_batch_size"] == 6 and ds.attrs["method_seed"] == 2
    assert ds.attrs["method_beta"] == 0.5
    assert main(["run", "--N", "2", "--d", "6", "--m", "18", "--eta", "1e-3", "--iters", "10", "--batch-size", "6",
                 "--out", str(tmp_path / "x.nc"), "--quiet"]) != 0
    assert "--batch-size: only used with --method sgd" in capsys.readouterr().err
    assert not (tmp_path / "x.nc").exists()
