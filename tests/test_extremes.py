"""Extreme values and bad input: refused with a ValueError naming the parameter, or returned as a status."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dlnsim
from dlnsim.options import MAX_N_ITER
from dlnsim.runs.compare import compare_flow
from dlnsim.runs.flow import solve_flow
from dlnsim.runs.gd import STATUSES as GD_STATUSES

FLOW_STATUSES = ("done", "max_steps", "nonfinite", "step_underflow")


def _setup(seed: int = 0, widths: tuple[int, ...] = (3, 4, 2)) -> tuple[dlnsim.Problem, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    problem = dlnsim.Problem(rng.standard_normal((widths[0], 10)), rng.standard_normal((widths[-1], 10)))
    return problem, dlnsim.gaussian_init(widths, rng, 0.5)


def test_huge_stepsize_and_huge_start_diverge_as_data() -> None:
    s = dlnsim.paper_setup(2, 0)
    ds = dlnsim.run_gd(s.problem, s.W0, 1e200, 5)
    assert ds["status"].item() == "diverged" and ds["stop_iteration"].item() == 1
    assert np.isfinite(float(ds["loss"][0])) and not np.isfinite(float(ds["loss"].sel(k=1)))
    big = dlnsim.run_gd(s.problem, [1e103 * w for w in s.W0], 1e-3, 5)
    assert big["status"].item() == "diverged" and big["stop_iteration"].item() == 0
    assert np.all(np.isnan(big["product_sv"].values))  # no diagnostics of an overflowing state
    cmp = compare_flow(s.problem, [1e103 * w for w in s.W0], 1e-3, 5, kind=("factor",), sharpness=True)
    assert cmp["status"].item() == "diverged"


def test_flow_from_an_overflowing_start_is_nonfinite() -> None:
    problem, _ = _setup()
    W0 = dlnsim.gaussian_init((3, 4, 4, 2), np.random.default_rng(1), 1.0)
    ds = dlnsim.run_flow(problem, [1e50 * w for w in W0], [0.0, 1.0])
    assert ds["status"].item() == "nonfinite" and ds["n_steps"].item() == 0
    assert np.all(np.isnan(ds["balancedness"].values))  # diagnostics of an overflowing state: NaN


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"attrs": ["a", "b"]}, "attrs must be a dict"),
        ({"stop": {"early": "no"}}, "Stop.early must be True or False"),
        ({"record": {"stop_point": 1}}, "Record.stop_point must be True or False"),
        ({"record": {"final_weights": "yes"}}, "Record.final_weights must be True or False"),
        ({"record": "log:abc"}, "record: Record.points: N in 'log:abc' is not an integer"),
        ({"record": "every:x"}, "record: Record.points"),
        ({"record": 2.5}, "record: Record.points must be"),
        ({"record": {"diagnostics": ["svd"]}}, "Record.diagnostics: unknown name"),
        ({"record": {"diagnostics": 3}}, "Record.diagnostics must be True, False or a list"),
        ({"stop": {"ltol": 1.0}}, "Stop.ltol must be < 1"),
        ({"stop": {"ltol": -1.0}}, "Stop.ltol must be finite and >= 0"),
        ({"blas_threads": 0}, "blas_threads must be an integer >= 1"),
        ({"n_iter": 2**63}, "n_iter must be at most 2..62"),
        ({"n_iter": 10**12, "record": "all"}, r"record: 10000000000\d\d record points x \d+ values would take \d+ TiB"),
        ({"n_iter": 10**9, "eta": dlnsim.Power(1e-3, 0.5)}, "n_iter .a non-constant schedule.*GiB"),
    ],
)
def test_run_gd_refuses_bad_input_naming_the_parameter(kwargs: dict[str, object], match: str) -> None:
    problem, W0 = _setup()
    args: dict[str, object] = {"eta": 1e-2, "n_iter": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        # option objects given as their fields are made here: their own validation is part of the refusal
        for key, cls in (("record", dlnsim.Record), ("stop", dlnsim.Stop)):
            if isinstance(args.get(key), dict):
                args[key] = cls(**args[key])  # type: ignore[arg-type]
        dlnsim.run_gd(problem, W0, **args)  # type: ignore[arg-type]


def test_compare_flow_refuses_unknown_options_and_bad_attrs() -> None:
    problem, W0 = _setup()
    with pytest.raises(TypeError, match="tolerance"):  # unknown keywords: a TypeError of Python now
        compare_flow(problem, W0, 1e-2, 10, tolerance=1)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="attrs must be a dict"):
        compare_flow(problem, W0, 1e-2, 10, attrs=[1])
    with pytest.raises(ValueError, match="sharpness must be True or False"):
        compare_flow(problem, W0, 1e-2, 10, sharpness="yes")


def test_run_flow_refuses_bad_input_naming_the_parameter() -> None:
    problem, W0 = _setup()
    with pytest.raises(ValueError, match="attrs must be a dict"):
        dlnsim.run_flow(problem, W0, [0.0, 1.0], attrs=[1])
    with pytest.raises(ValueError, match=r"Record\.diagnostics: unknown name"):
        dlnsim.run_flow(problem, W0, [0.0, 1.0], record=dlnsim.Record(diagnostics=["loss"]))
    with pytest.raises(ValueError, match="record: 100000000 record points"):
        dlnsim.run_flow(problem, W0, 1.0, record="linear:100000000")
    with pytest.raises(ValueError, match=r"save \(states kept\): 10000000 record points x 20 values .* GiB"):
        solve_flow(problem, W0, np.linspace(0.0, 1.0, 10_000_000), save=True,
                   record=dlnsim.Record(diagnostics=False))


def test_limits_are_sane() -> None:
    assert MAX_N_ITER == 2**62
    assert dlnsim.record_points(MAX_N_ITER, "log")[-1] == MAX_N_ITER


_scales = st.sampled_from([0.0, 1e-150, 1e-100, 1e-8, 1.0, 1e8, 1e100, 1e150])
_etas = st.sampled_from([1e-150, 1e-8, 1e-2, 1.0, 1e8, 1e150])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sx=_scales, sw=_scales, eta=_etas, seed=st.integers(0, 3))
def test_extreme_scales_give_a_status_or_a_value_error(sx: float, sw: float, eta: float, seed: int) -> None:
    """X, Y and W0 from 1e-150 to 1e150 and eta from 1e-150 to 1e150: run_gd and run_flow return a status
    (or refuse the input with a ValueError); nothing else is raised and no warning escapes."""
    rng = np.random.default_rng(seed)
    X, Y = rng.standard_normal((3, 8)), rng.standard_normal((2, 8))
    W0 = [sw * w for w in dlnsim.gaussian_init((3, 4, 4, 2), rng, 0.7)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            problem = dlnsim.Problem(sx * X, sx * Y)
        except ValueError:
            return  # e.g. X X^T not representable: refused by Problem
        ds = dlnsim.run_gd(problem, W0, eta, 20, record="all")
        assert ds["status"].item() in GD_STATUSES
        stop = ds["stop_iteration"].item()
        assert 0 <= stop <= 20 and stop in ds["k"].values
        fl = dlnsim.run_flow(problem, W0, [0.0, 1e-3, 1.0], tolerances=dlnsim.Tolerances(max_steps=200))
        assert fl["status"].item() in FLOW_STATUSES
