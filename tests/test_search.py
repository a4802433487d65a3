"""The search core shared by critical_stepsize and stable_critical_stepsize, on synthetic trials (no GD runs)."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from dlnsim.analysis.critical import _bracket_and_bisect, _Outcome

INITIAL = 1.0


def _trials(threshold: float, final_loss: float = 2.0) -> tuple[list[float], Callable[[float], _Outcome]]:
    """Stepsizes below ``threshold`` converge; the others end at ``final_loss`` (above L(0): they 'failed')."""
    seen: list[float] = []

    def trial(eta: float) -> _Outcome:
        seen.append(eta)
        return _Outcome(eta < threshold, 0.0 if eta < threshold else final_loss, INITIAL)

    return seen, trial


@pytest.mark.parametrize("lo, hi", [(0.1, 0.2), (0.5, 0.6), (0.001, 10.0)])
def test_bisection_brackets_the_threshold(lo: float, hi: float) -> None:
    seen, trial = _trials(0.37)
    L, U, status = _bracket_and_bisect(trial, lo, hi, factor=2.0, max_expand=40, rtol=1e-3,
                                       walk_down_gives_up=True)
    assert status == "ok"
    assert L is not None and U is not None
    assert L < 0.37 <= U and U <= L * (1 + 1e-3)
    assert len(seen) == len(set(seen))  # no stepsize is run twice


def test_walk_up_stops_when_the_final_loss_stops_improving() -> None:
    """Too slow everywhere (loss below L(0) but no convergence), and no better for larger stepsizes."""
    seen: list[float] = []

    def trial(eta: float) -> _Outcome:
        seen.append(eta)
        return _Outcome(False, 0.5, INITIAL)

    L, U, status = _bracket_and_bisect(trial, 0.1, 0.2, factor=2.0, max_expand=40, rtol=1e-3,
                                       walk_down_gives_up=True)
    assert (L, U, status) == (None, 0.2, "no_converging_eta")
    assert seen == [0.1, 0.2]


@pytest.mark.parametrize("gives_up, n_trials", [(True, 2), (False, 6)])
def test_walk_down_gives_up_only_when_asked(gives_up: bool, n_trials: int) -> None:
    """Every stepsize fails with the same final loss: the walk down stops after one step only when it gives up."""
    seen, trial = _trials(-math.inf, final_loss=3.0)
    L, U, status = _bracket_and_bisect(trial, 1.0, 2.0, factor=2.0, max_expand=5, rtol=1e-3,
                                       walk_down_gives_up=gives_up)
    assert L is None and status == "no_converging_eta"
    assert len(seen) == n_trials
    assert seen[-2] == U


def test_no_failing_stepsize() -> None:
    seen, trial = _trials(math.inf)
    L, U, status = _bracket_and_bisect(trial, 1.0, 2.0, factor=2.0, max_expand=3, rtol=1e-3,
                                       walk_down_gives_up=True)
    assert status == "no_failing_eta" and U is None
    assert seen == [1.0, 2.0, 4.0, 8.0, 16.0] and L == 16.0
