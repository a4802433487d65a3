"""The step-rules study (studies/step_rules.py) on tiny instances: the mean-square formula against the
second-moment map built by enumerating every batch, the search against `dlnsim.critical_stepsize`, the cells,
and docs/step_rules.md against data/step_rules.nc."""

from __future__ import annotations

import importlib.util
import itertools
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import dlnsim
from dlnsim.analysis.minima import flattest_minimum

ROOT = Path(__file__).resolve().parent.parent
if importlib.util.find_spec("studies") is None:  # `pytest`, unlike `python -m pytest`, does not add the root
    sys.path.insert(0, str(ROOT))

from studies import step_rules as S  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    setup = dlnsim.paper_setup(2, 0, d=3, m=6)
    flat = flattest_minimum(setup.problem, 2)
    return setup.problem, flat.factors


def _flat(mats):
    return np.concatenate([a.ravel() for a in mats])


def test_jacobians_give_the_hessian_at_an_interpolating_minimiser(tiny):
    problem, W = tiny
    J = S.jacobians(W, np.asarray(problem.X))
    H = np.einsum("iyp,iyq->pq", J, J)
    shapes = [Wj.shape for Wj in W]
    P = H.shape[0]
    cols = []
    for k in range(P):
        e = np.zeros(P)
        e[k] = 1.0
        parts, o = [], 0
        for a, b in shapes:
            parts.append(e[o : o + a * b].reshape(a, b))
            o += a * b
        cols.append(_flat(dlnsim.hessian_vector_product(problem, W, parts)))
    np.testing.assert_allclose(np.array(cols).T, H, atol=1e-12 * np.abs(H).max())


@pytest.mark.parametrize(("b", "sampling"), [(1, "replacement"), (2, "replacement"), (3, "replacement"),
                                             (1, "reshuffle"), (2, "reshuffle"), (6, "reshuffle")])
def test_ms_limit_is_where_the_enumerated_second_moment_map_reaches_one(tiny, b, sampling):
    """T = E_B[(I - eta H_B) (x) (I - eta H_B)] over every batch (ordered b-tuples with replacement, b-subsets
    without), on the range of H: spectral radius < 1 just below eta_ms, > 1 just above."""
    problem, W = tiny
    X = np.asarray(problem.X)
    m = X.shape[1]
    J = S.jacobians(W, X)
    G = np.einsum("iyp,iyq->ipq", J, J)
    h, U = np.linalg.eigh(G.sum(0))
    U = U[:, h > 1e-9 * h[-1]]
    Gt = np.einsum("pa,ipq,qb->iab", U, G, U)
    q = U.shape[1]
    batches = (list(itertools.product(range(m), repeat=b)) if sampling == "replacement"
               else list(itertools.combinations(range(m), b)))
    eta = S.ms_limit(W, X, b, sampling)

    def radius(f: float) -> float:
        T = np.zeros((q * q, q * q))
        for B in batches:
            M = np.eye(q) - f * eta * (m / b) * sum(Gt[i] for i in B)
            T += np.kron(M, M)
        return float(np.max(np.abs(np.linalg.eigvals(T / len(batches)))))

    assert radius(0.999) < 1.0 < radius(1.001)
    if b == m and sampling == "reshuffle":  # the whole data every step: GD's limit 2/lambda_max
        assert eta == pytest.approx(2.0 / h[-1], rel=1e-10)


def test_search_matches_critical_stepsize(tiny):
    """The study's search (solve_gd trials through the bracketing of dlnsim.critical_stepsize) gives the
    stepsize dlnsim.critical_stepsize gives."""
    setup = dlnsim.paper_setup(2, 1, d=3, m=6)
    problem = setup.problem
    W0, _ = dlnsim.analysis.stability.compress_widths(setup.W0)
    rule = dlnsim.HeavyBall(0.5)
    lam = flattest_minimum(problem, 2).sharpness
    pred = rule.stability_limit(lam)
    bound = dlnsim.stepsize_bound(problem, setup.W0)
    keep: dict = {}
    fn = S._gd_trial(problem, W0, rule, 400, 1e-6, bound, keep)
    eta_c, eta_hi, status, trials = S.search(fn, (0.25 * pred, 1.02 * pred), rtol=0.03, factor=2.0)
    ref = dlnsim.critical_stepsize(problem, W0, n_iter=400, bracket=(0.25 * pred, 1.02 * pred), loss_tol=1e-6,
                                   rtol=0.03, factor=2.0, method=rule,
                                   stop=dlnsim.Stop(gtol=S.MOM_GTOL, ltol=1e-6), bound=bound)
    assert status == ref.status == "ok"
    assert eta_c == ref.eta_crit and eta_hi == ref.eta_hi
    assert [t[0] for t in trials] == [t.eta for t in ref.trials]


def test_cells_on_tiny_instances(monkeypatch):
    """The SGD cell on a tiny instance: b = m under reshuffling is GD at its limit, the searches end, the
    open-question runs report a status and a balancedness."""
    monkeypatch.setattr(S, "SGD_D", 3)
    monkeypatch.setattr(S, "SGD_M", 6)
    monkeypatch.setattr(S, "OQ_CAP", 5000)
    ds = S.sgd_cell(2, 0, n_iter=600, batches=[1, 6], samplings=["reshuffle", "replacement"], bseeds=[0, 1],
                    oq=True)
    assert set(ds["sgd_search_status"].values.ravel()) == {"ok"}
    r = ds["ms_flat"].sel(sampling="reshuffle", batch_size=6) * ds["sgd_sharpness_flat"] / 2
    assert float(r) == pytest.approx(1.0, rel=1e-9)
    gd = ds["sgd_eta_crit"].sel(sampling="reshuffle", batch_size=6) / ds["ms_flat"].sel(sampling="reshuffle",
                                                                                        batch_size=6)
    assert 0.8 < float(gd) <= 1.0 + 1e-12
    assert set(ds["oq_sgd_status"].values.ravel()) <= {"converged", "diverged", "unfinished"}
    assert np.all(ds["oq_gd_drift_start"].values < 1e-10)  # balanced start


def test_momentum_cell_near_start_holds_the_formula(monkeypatch):
    monkeypatch.setattr(S, "BETAS", (0.0, 0.9))
    monkeypatch.setattr(S, "SCAN", (0.5, 1.1))
    ds = S.momentum_cell(2, 0, n_iter=1500, loss_tol=1e-6, scan_seeds=[0], near_seeds=[0])
    ratio = (ds["eta_crit"] / ds["eta_pred"]).sel(start="near").values
    assert np.all((ratio > 0.95) & (ratio <= 1.0 + 1e-12))
    assert np.all(ds["end_ratio"].sel(start="near").values <= 1.0 + 1e-9)  # the end point is stable for the rule
    assert ds["scan_outcome"].sel(beta=0.0, rule="heavy_ball").values[0] == "converged"


def test_docs_numbers_come_from_the_archive():
    """docs/step_rules.md's findings are the ones the study's summary writes from data/step_rules.nc."""
    path = ROOT / "data" / "step_rules.nc"
    doc = ROOT / "docs" / "step_rules.md"
    if not path.exists():
        pytest.skip("data/step_rules.nc not written yet")
    ds = dlnsim.load(path)
    text = doc.read_text()
    block = re.search(r"<!-- findings:begin -->\n(.*?)<!-- findings:end -->", text, re.S)
    assert block is not None
    assert block.group(1) == S.findings(ds)
