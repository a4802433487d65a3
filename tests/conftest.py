"""Shared fixtures: small random problems and the paper's Section-5 instances (cached per session)."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import dlnsim


def random_problem(d_x: int, d_y: int, m: int, seed: int) -> dlnsim.Problem:
    rng = np.random.default_rng(seed)
    return dlnsim.Problem(rng.standard_normal((d_x, m)) / np.sqrt(d_x), rng.standard_normal((d_y, m)))


@functools.cache
def paper(N: int, seed: int = 0) -> dlnsim.Setup:
    return dlnsim.paper_setup(N, seed)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)
