"""Gradient descent: Prop. 3.4 along the trajectory, invariances, divergence as data, records, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from benchmarks_ref import numpy_strong
from conftest import paper, random_problem

import dlnsim
from dlnsim.io import dataset


@pytest.mark.parametrize("N", [2, 3, 5])
def test_prop34_along_20000_steps_at_the_bound(N: int) -> None:
    """Prop. 3.4 (1)-(4) at eta = eta*: (2), (4) over every step, (1), (3) at 2001 record points."""
    s = paper(N)
    b = dlnsim.stepsize_bound(s.problem, s.W0)
    ds = dlnsim.run_gd(s.problem, s.W0, b.eta, 20_000, record=10, bound=b)
    assert ds["status"].item() in ("max_iter", "converged")
    # (1) balancedness stays <= delta
    assert float(ds.balancedness_max.max()) <= b.delta
    # (2) the loss never increases (over all 20 000 steps, tracked by the kernel), and falls
    assert ds["max_loss_increase"].item() <= 0.0
    assert float(ds.loss[-1]) < float(ds.loss[0])
    # (3) ||W_j||^2 <= K
    assert float(ds.layer_norm_sq.max()) <= b.K
    # (4) descent ratio >= sigma at every step; at record points it is stored
    assert ds["min_descent_ratio"].item() >= b.sigma
    assert float(ds.descent_ratio.min()) >= ds["min_descent_ratio"].item()


def test_records_agree_with_direct_evaluation() -> None:
    s = paper(3)
    ds = dlnsim.run_gd(s.problem, s.W0, 1e-3, 50, record=dlnsim.Record("all", final_weights=True))
    W = dlnsim.weights_from(ds)
    # replay the steps in plain numpy
    Wr = [w.copy() for w in s.W0]
    for _ in range(50):
        G = dlnsim.gradient(s.problem, Wr)
        Wr = [a - 1e-3 * g for a, g in zip(Wr, G, strict=True)]
    for a, b in zip(W, Wr, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-13)
    assert float(ds.loss[-1]) == pytest.approx(dlnsim.loss(s.problem, Wr), rel=1e-12)
    np.testing.assert_allclose(ds.balancedness.values[-1], dlnsim.balancedness(Wr), rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(ds.layer_norm_sq.values[-1], [np.linalg.norm(w, 2) ** 2 for w in Wr], rtol=1e-12)
    sv = np.linalg.svd(dlnsim.product(Wr), compute_uv=False)[:2]
    np.testing.assert_allclose(ds.product_sv.values[-1], sv, rtol=1e-10)
    gn2 = sum(np.sum(g**2) for g in dlnsim.gradient(s.problem, Wr))
    assert float(ds.grad_norm_sq[-1]) == pytest.approx(gn2, rel=1e-12)
    # descent ratio at k from the stored losses (k < 50)
    L, g2 = ds.loss.values, ds.grad_norm_sq.values
    np.testing.assert_allclose(ds.descent_ratio.values[:-1], (L[:-1] - L[1:]) / (1e-3 * g2[:-1]), rtol=1e-8)
    assert np.isnan(ds.descent_ratio.values[-1])
    np.testing.assert_allclose(ds.t.values, 1e-3 * ds.k.values, rtol=1e-12)


@pytest.mark.parametrize("N", [2, 3])
def test_agrees_with_numpy_reference(N: int) -> None:
    s = paper(N)
    p = s.problem
    ref = numpy_strong(p.XXt, p.YXt, p.norm_Y_F**2, s.W0, 5e-3, 300)
    ds = dlnsim.run_gd(p, s.W0, 5e-3, 300, record="all")
    # same trajectory; the reference's loss formula cancels (absolute error ~ eps ||Y||^2)
    np.testing.assert_allclose(ds.loss.values, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("N", [3, 5])
def test_hidden_width_invariance(N: int) -> None:
    """With d_1 = 2 the loss curve equals that of the network with all hidden widths 2."""
    s = paper(N)
    W = s.W0
    # orthonormal bases of the 2-dim column spaces of the hidden layers
    B = [np.linalg.svd(Wj)[0][:, :2] for Wj in W[:-1]]
    Wc = [B[0].T @ W[0]] + [B[j].T @ W[j] @ B[j - 1] for j in range(1, N - 1)] + [W[-1] @ B[-1]]
    assert [w.shape for w in Wc] == [(2, 70)] + [(2, 2)] * (N - 2) + [(70, 2)]
    a = dlnsim.run_gd(s.problem, W, 2e-3, 3000, record=50)
    b = dlnsim.run_gd(s.problem, Wc, 2e-3, 3000, record=50)
    # observed 7e-15; allow 1e-12 relative for accumulated rounding
    np.testing.assert_allclose(a.loss.values, b.loss.values, rtol=1e-12)


def test_depth_one_converges_to_least_squares() -> None:
    p = random_problem(5, 3, 20, seed=4)
    W0 = [np.zeros((3, 5))]
    eta = 1.0 / p.lambda_max  # < 2 / lambda_max: linear convergence with rate 1 - lambda_min/lambda_max
    ds = dlnsim.run_gd(p, W0, eta, 4000, record=dlnsim.Record(final_weights=True))
    (W,) = dlnsim.weights_from(ds)
    np.testing.assert_allclose(W, p.W_ls, rtol=0, atol=1e-10)
    assert ds["status"].item() == "converged"
    assert float(ds.loss[-1]) == pytest.approx(p.optimal_loss(), rel=1e-12)


@pytest.mark.parametrize("N", [2, 3, 5])
def test_large_stepsize_diverges_as_data(N: int) -> None:
    s = paper(N)
    ds = dlnsim.run_gd(s.problem, s.W0, 0.5, 10_000, record="all")
    assert ds["status"].item() == "diverged"
    stop = ds["stop_iteration"].item()
    assert 0 < stop < 200
    before = ds.sel(k=slice(0, stop - 1))
    assert np.all(np.isfinite(before.loss)) and np.all(np.isfinite(before.balancedness_max))
    # the stop is a record point holding the offending loss; nothing is recorded after it
    at = float(ds.loss.sel(k=stop))
    assert not np.isfinite(at) or at > ds["divergence_threshold"].item()
    assert np.all(np.isnan(ds.sel(k=slice(stop + 1, None)).loss))


def test_schedules_and_explicit_arrays() -> None:
    s = paper(2)
    sched = dlnsim.PowerDecay(1e-3, 1e-3, 0.4)
    ds = dlnsim.run_gd(s.problem, s.W0, sched, 100, record="all")
    k = np.arange(100)
    np.testing.assert_allclose(ds.eta_k.values[:-1], 1e-3 * (k + 1.0) ** -0.4, rtol=1e-15)
    np.testing.assert_allclose(ds.t.values[1:], np.cumsum(1e-3 * (k + 1.0) ** -0.4), rtol=1e-12)
    arr = dlnsim.run_gd(s.problem, s.W0, sched.values(100), 100, record="all")
    np.testing.assert_array_equal(arr.loss.values, ds.loss.values)
    # max{a1 (k+1)^-g, a2/(k+1)}: a large a2 dominates early
    v = dlnsim.PowerDecay(1e-3, 1e-1, 0.2).values(10)
    np.testing.assert_allclose(v, np.maximum(1e-3 * np.arange(1, 11) ** -0.2, 1e-1 / np.arange(1, 11)))
    np.testing.assert_allclose(dlnsim.Power(2.0, 0.5).values(4), 2.0 / np.sqrt([1, 2, 3, 4]))
    assert ds.attrs["schedule"] == "power_decay" and ds.attrs["schedule_gamma"] == 0.4


def test_record_rules() -> None:
    assert dlnsim.record_points(10, 3).tolist() == [0, 3, 6, 9, 10]
    pts = dlnsim.record_points(10**6, "log")
    assert pts[0] == 0 and pts[-1] == 10**6 and 150 < pts.size <= 202
    assert np.all(np.diff(pts) > 0)
    assert dlnsim.record_points(5, [2, 4]).tolist() == [0, 2, 4, 5]
    with pytest.raises(ValueError, match=r"record: iterations must lie in \[0, n_iter = 5\]"):
        dlnsim.record_points(5, [7])
    with pytest.raises(ValueError, match="record must be"):
        dlnsim.record_points(5, "sometimes")


def test_eta_as_multiple_of_the_bound() -> None:
    s = paper(2)
    b = dlnsim.stepsize_bound(s.problem, s.W0)
    ds = dlnsim.run_gd(s.problem, s.W0, "10xbound", 5)
    assert ds.attrs["schedule_eta"] == pytest.approx(10 * b.eta, rel=1e-15)
    assert ds["bound_eta"].item() == pytest.approx(b.eta, rel=1e-15)


def test_early_stop_on_small_gradient() -> None:
    p = random_problem(4, 2, 12, seed=5)
    ds = dlnsim.run_gd(p, [np.zeros((2, 4))], 1.0 / p.lambda_max, 100_000,
                       stop=dlnsim.Stop(gtol=1e-8, ltol=0.0, early=True))
    a = dataset.outcomes(ds)
    assert a["status"] == "converged"
    stop = a["stop_iteration"]
    assert stop < 100_000 and a["gtol_iteration"] == stop and a["ltol_iteration"] == -1  # loss test off
    # gtol is relative to the gradient scale ||Y X^T||_F ||W_ls||_F^((N-1)/N) of the problem
    scale = np.linalg.norm(p.YXt)
    assert a["gradient_scale"] == pytest.approx(scale, rel=1e-12)
    assert a["final_grad_norm_sq"] <= (1e-8 * scale) ** 2
    # the stop is recorded, nothing after it
    assert float(ds.grad_norm_sq.sel(k=stop)) == a["final_grad_norm_sq"]
    assert np.isnan(float(ds.loss.sel(k=100_000)))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"eta": 0.0}, "eta must be finite and > 0"),
        ({"eta": -1e-3}, "eta must be finite and > 0"),
        ({"eta": float("nan")}, "eta must be finite and > 0"),
        ({"eta": np.array([1e-3, np.inf])}, r"eta must be finite and > 0 at every step; eta\[1\]"),
        ({"eta": np.full(3, 1e-3)}, "eta has 3 entries but n_iter = 10"),
        ({"eta": "fast"}, "eta: expected a number, 'bound' or '<c>xbound'"),
        ({"n_iter": -1}, "n_iter must be an integer >= 0"),
        ({"W0": []}, "W0 must be a non-empty list"),
        ({"W0": [np.ones((2, 70)), np.ones((70, 3))]}, "W0: shapes do not chain"),
        ({"W0": [np.ones((2, 69)), np.ones((70, 2))]}, "W0 does not fit the problem"),
        ({"W0": [np.ones((2, 70)), np.full((70, 2), np.nan)]}, r"W0\[1\] must be finite"),
        ({"record": 0}, r"Record.points .every n-th iteration. must be an integer >= 1"),
        ({"gtol": -1.0}, "Stop.gtol must be finite and >= 0"),
    ],
)
def test_run_gd_rejects_bad_input(change: dict[str, object], match: str) -> None:
    s = paper(2)
    kwargs: dict[str, object] = {"W0": s.W0, "eta": 1e-3, "n_iter": 10, "record": "log", **change}
    with pytest.raises(ValueError, match=match):
        dlnsim.run_gd(s.problem, kwargs["W0"], kwargs["eta"], kwargs["n_iter"], record=kwargs["record"],
                      stop=dlnsim.Stop(gtol=kwargs.get("gtol", 1e-10)))


# ---------------------------------------------------------------------------------------------------------
# first use: the compile notice and the progress bar
# ---------------------------------------------------------------------------------------------------------

_NOTICE = "dlnsim: compiling the gradient-descent kernel (first use, about 3-10 s; cached afterwards)"


def test_needs_compile_reads_the_dispatcher() -> None:
    from numba import njit

    from dlnsim._notice import needs_compile

    @njit
    def f(x: float) -> float:  # pragma: no cover - jitted
        return 2.0 * x

    assert needs_compile(f)  # nothing compiled, no disk cache
    f(1.0)
    assert not needs_compile(f)


def test_a_first_compile_says_so_once_and_a_warm_cache_says_nothing(tmp_path) -> None:
    """A fresh process on an empty Numba cache prints one line before compiling the GD kernel (two runs, one
    line); a second process on the filled cache prints nothing."""
    import os
    import subprocess
    import sys

    code = ("import dlnsim\n"
            "s = dlnsim.paper_setup(2, 0, d=6, m=20)\n"
            "for _ in range(2):\n"
            "    dlnsim.run_gd(s.problem, s.W0, 'bound', 5)\n")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    cold = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert [line for line in cold.stderr.splitlines() if "compiling" in line] == [_NOTICE]
    warm = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert "compiling" not in warm.stderr


def test_progress_bar_starts_after_the_first_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bar is made once the first chunk (which compiles the kernel on first use) has run, so its rate and
    remaining time leave the compilation out."""
    import tqdm.auto

    from dlnsim._kernels import gd as gd_kernel

    events: list[object] = []
    kernel = gd_kernel.CHUNKS[gd_kernel.PLAIN]  # the chunk kernel of plain GD

    def chunk(*args: object) -> int:
        events.append("chunk")
        return int(kernel(*args))

    chunk.signatures = kernel.signatures  # type: ignore[attr-defined]  # compiled: no notice

    class Bar:
        def __init__(self, *args: object, initial: int = 0, **kwargs: object) -> None:
            events.append(("bar", initial))

        def update(self, n: int) -> None:
            events.append(("update", n))

        def set_postfix(self, **kwargs: object) -> None:
            pass

        def close(self) -> None:
            pass

    s = paper(2)
    dlnsim.run_gd(s.problem, s.W0, 1e-3, 10)  # compiled before the patch
    monkeypatch.setitem(gd_kernel.CHUNKS, gd_kernel.PLAIN, chunk)
    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    dlnsim.run_gd(s.problem, s.W0, 1e-3, 3000, progress=True)
    assert events[0] == "chunk"
    assert events[1][0] == "bar" and events[1][1] >= 1  # type: ignore[index]
    assert sum(e[1] for e in events if isinstance(e, tuple)) == 3000  # initial + updates = n_iter


@pytest.mark.parametrize("start", ["balanced", "gaussian", "with_nan"])
def test_compressed_state_diagnostics_agree_with_the_dense_ones(start: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The records' diagnostics through the compressed rank-2 problems (`states_diagnostics`) against the dense
    eigenvalue problems (`stack_diagnostics`) on GD states: to 1e-12 times the layers' scale max_j ||W_j||^2
    (the acceptance tests allow differences of the order d eps times that scale, d <= 70).  Gaussian starts
    have full-rank layers (dense path); a non-finite state is left to the dense path's guard."""
    from dlnsim.diagnostics.dense import stack_diagnostics
    from dlnsim.diagnostics.gd import states_diagnostics

    s = paper(5)
    W0 = s.W0 if start != "gaussian" else dlnsim.gaussian_init([70, 2, 19, 36, 53, 70], np.random.default_rng(1), 0.2)
    eta = 4 * dlnsim.stepsize_bound(s.problem, s.W0).eta
    states = []
    for k in (0, 1, 10, 300, 3000):
        ds = dlnsim.run_gd(s.problem, W0, eta, max(k, 1), record=dlnsim.Record([max(k, 1)], final_weights=True))
        W = dlnsim.weights_from(ds) if k else W0
        states.append(np.concatenate([w.ravel() for w in W]))
    if start == "with_nan":
        states.append(np.full_like(states[0], np.nan))
    st = np.array(states)
    dims = np.array([70, 2, 19, 36, 53, 70])
    offs = np.concatenate([[0], np.cumsum(dims[1:] * dims[:-1])])
    out = [(np.full((len(st), 4), -1.0), np.full((len(st), 5), -1.0), np.full((len(st), 2), -1.0)) for _ in range(2)]
    import dlnsim.diagnostics.gd as fd

    dense_rows: list[int] = []

    def counting(states: np.ndarray, *args: np.ndarray) -> None:
        dense_rows.append(len(states))
        stack_diagnostics(states, *args)

    monkeypatch.setattr(fd, "stack_diagnostics", counting)
    states_diagnostics(st, dims, offs, *out[0])
    stack_diagnostics(st, dims, offs, *out[1])
    # which path: balanced rank-2 states all compressed, full-rank ones all dense, the NaN state dense
    assert sum(dense_rows) == {"balanced": 0, "gaussian": len(st), "with_nan": 1}[start]
    # the scale of every quantity is that of the layers, max_j ||W_j||^2 (the balancedness is a difference of
    # such Gram matrices: near a balanced state its rounding is eps ||W||^2, not eps times itself)
    scale = np.nanmax(np.where(out[1][1] > 0, out[1][1], np.nan))
    for a, b in zip(*out, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12 * max(scale, np.nanmax(np.abs(b))))


def test_the_loss_test_of_a_network_narrower_than_the_target_rank():
    """A width-2 layer and a rank-4 target: GD can only reach the best rank-2 fit, which lies far above the
    least-squares L*.  The loss test measures from that attainable minimum (attribute ``attainable_loss``), so it
    holds; measured from L* it never could.  With r >= q the attainable loss is L* itself."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((6, 30))
    U, V = (np.linalg.qr(rng.standard_normal((6, 6)))[0] for _ in range(2))
    problem = dlnsim.Problem(X, U[:, :4] @ np.diag([3.0, 2.0, 1.5, 1.0]) @ V[:, :4].T @ X)
    W0 = dlnsim.balanced_init([6, 2, 6], np.random.default_rng(0), scale=1.0)
    ds = dlnsim.run_gd(problem, W0, 2e-3, 50_000, record="log:20",
                       stop=dlnsim.Stop(gtol=0.0, ltol=1e-6, early=True))
    a = dataset.outcomes(ds)
    best = problem.optimal_loss(2)
    assert ds.attrs["attainable_loss"] == best and best - problem.lstar > 1.0
    assert a["status"] == "converged" and 0 < a["ltol_iteration"] == a["stop_iteration"] < 50_000
    L0, L = a["initial_loss"], a["final_loss"]
    assert L - best <= 1e-6 * (L0 - best) and L - best > 0.0
    # a tolerance below the rounding of L_r: the loss test is off (it would hold by chance), the gradient decides
    tight = dataset.outcomes(dlnsim.run_gd(problem, W0, 2e-3, 50_000, record="log:20",
                                           stop=dlnsim.Stop(gtol=1e-9, ltol=1e-18, early=True)))
    assert tight["status"] == "converged" and tight["ltol_iteration"] == -1
    assert 0 < tight["gtol_iteration"] == tight["stop_iteration"] > a["stop_iteration"]
    wide = dlnsim.run_gd(problem, dlnsim.balanced_init([6, 4, 6], np.random.default_rng(0), scale=1.0), 2e-3, 10)
    assert wide.attrs["attainable_loss"] == problem.lstar
