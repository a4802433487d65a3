"""The shared input checks: every refusal is a ValueError that names the parameter."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import random_problem

import dlnsim
from dlnsim.checks import as_matrix, as_weights, flag, is_int, nonneg_int, positive_float


@pytest.mark.parametrize("value", [True, False, np.True_, np.False_])
def test_flag_accepts_bools(value: object) -> None:
    out = flag(value, "stop_early")
    assert out is bool(value)


@pytest.mark.parametrize("value", [1, 0, 1.0, "yes", "True", None, np.int8(1), [True]])
def test_flag_refuses_everything_else(value: object) -> None:
    with pytest.raises(ValueError, match="stop_early must be True or False, got"):
        flag(value, "stop_early")


def test_is_int() -> None:
    assert is_int(3) and is_int(np.int32(-2)) and is_int(np.uint64(5))
    assert not any(is_int(v) for v in (True, np.True_, 3.0, "3", None))


@pytest.mark.parametrize("value", [1j, np.complex128(2.0), np.complex64(0.5)])
def test_positive_float_refuses_complex(value: object) -> None:
    with pytest.raises(ValueError, match="eta must be a real number"):
        positive_float(value, "eta")


def test_nonneg_int() -> None:
    assert nonneg_int(np.int64(3), "n") == 3
    for bad in (True, -1, 2.0, np.bool_(True)):
        with pytest.raises(ValueError, match="n must be an integer >= 0"):
            nonneg_int(bad, "n")


@pytest.mark.parametrize(
    "value",
    [np.ones((2, 2), dtype=np.complex128), np.ones((2, 2), dtype=np.complex64), [[1 + 0j, 2.0]],
     [np.array([1j, 1.0])], np.array([[1.0, 2.0j]], dtype=object)],
)
def test_matrices_refuse_complex_values(value: object) -> None:
    with pytest.raises(ValueError, match=r"X must be (real|a 2-D array of real numbers)"):
        as_matrix(value, "X")


def test_weights_refuse_complex_factors() -> None:
    W = [np.ones((2, 3)), np.ones((4, 2))]
    with pytest.raises(ValueError, match=r"W0\[1\] must be real"):
        as_weights([W[0], W[1] + 1j], "W0")
    p = random_problem(3, 4, 8, seed=0)
    with pytest.raises(ValueError, match=r"W\[0\] must be real"):
        dlnsim.loss(p, [W[0].astype(np.complex128), W[1]])


def test_schedules_refuse_complex_stepsizes() -> None:
    with pytest.raises(ValueError, match="eta: an explicit schedule must be real"):
        dlnsim.Explicit(np.array([0.1, 0.2j]))
    with pytest.raises(ValueError, match="eta must be a real number"):
        dlnsim.Constant(0.1 + 0j)  # type: ignore[arg-type]
