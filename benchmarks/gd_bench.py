"""GD step time of dlnsim next to the numpy references (and torch, when installed), in one process.

Every case first checks that the trajectories agree (losses to 1e-10 relative over the timed steps), then
times each implementation with repetitions after a warm-up and reports the median and the min-max.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import dlnsim

from .references import numpy_plain, numpy_strong


def _time(fn: Callable[[], Any], reps: int) -> tuple[float, float, float]:
    fn()  # warm-up
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), min(ts), max(ts)


def _case(name: str, problem: dlnsim.Problem, W0: list[np.ndarray], eta: float, steps: int,
          ref_steps: int, reps: int, with_plain: bool = True) -> list[dict[str, Any]]:
    """dlnsim (records every 10^9-th step, i.e. first and last only) vs the references, per step."""
    p = problem
    ds = dlnsim.run_gd(p, W0, eta, ref_steps, record="all")
    strong = numpy_strong(p.XXt, p.YXt, p.norm_Y_F**2, W0, eta, ref_steps)
    # the strong reference's loss formula cancels: compare where the loss is O(1) with 1e-10 relative
    err = float(np.max(np.abs(strong - ds.loss.values) / np.maximum(ds.loss.values, 1e-300)))
    if err > 1e-10:
        raise AssertionError(f"{name}: dlnsim and numpy_strong disagree: max relative loss difference {err:.2e}")
    rows = []
    t_dl = _time(lambda: dlnsim.run_gd(p, W0, eta, steps, record=[steps]), reps)
    per = [t / steps for t in t_dl]
    rows.append({"case": name, "impl": "dlnsim", "us_per_step": per[0] * 1e6, "min": per[1] * 1e6,
                 "max": per[2] * 1e6, "ratio": 1.0, "check": f"{err:.1e}"})
    refs: list[tuple[str, Callable[[], Any]]] = [
        ("numpy_strong", lambda: numpy_strong(p.XXt, p.YXt, p.norm_Y_F**2, W0, eta, ref_steps)),
    ]
    if with_plain:
        plain = numpy_plain(p.X, p.Y, W0, eta, ref_steps)
        perr = float(np.max(np.abs(plain - ds.loss.values) / ds.loss.values))
        if perr > 1e-10:
            raise AssertionError(f"{name}: numpy_plain disagrees: {perr:.2e}")
        refs.append(("numpy_plain", lambda: numpy_plain(p.X, p.Y, W0, eta, ref_steps)))
    try:
        from .torch_ref import torch_gd

        tl = torch_gd(p.X, p.Y, W0, eta, ref_steps)
        terr = float(np.max(np.abs(tl - ds.loss.values) / ds.loss.values))
        if terr > 1e-10:
            raise AssertionError(f"{name}: torch disagrees: {terr:.2e}")
        refs.append(("torch_cpu", lambda: torch_gd(p.X, p.Y, W0, eta, ref_steps)))
    except ImportError:
        pass
    for label, fn in refs:
        t = _time(fn, max(3, reps // 2))
        rp = [x / ref_steps for x in t]
        rows.append({"case": name, "impl": label, "us_per_step": rp[0] * 1e6, "min": rp[1] * 1e6,
                     "max": rp[2] * 1e6, "ratio": rp[0] / per[0], "check": "ok"})
    return rows


def _dgemm_loop() -> Callable[..., None]:
    from numba import njit

    @njit(cache=False)
    def loop(a: np.ndarray, b: np.ndarray, c: np.ndarray, k: int) -> None:
        for _ in range(k):
            np.dot(a, b, c)

    return loop  # type: ignore[no-any-return]


def paired_dgemm_fraction(run: Callable[[], Any], flops: float, n: int, reps: int) -> dict[str, float]:
    """Fraction of the DGEMM(n) rate that ``run`` (executing ``flops``) reaches, measured in pairs.

    This VM's speed drifts by tens of percent within a minute (other tenants), so a DGEMM rate measured at
    another moment skews the fraction.  Each repetition times ``run`` and then, straight after, the same
    number of FLOPs as n x n x n DGEMMs; the fraction of that pair is t_dgemm / t_run.  Returns the median
    (and min, max) over the pairs and the median DGEMM rate.
    """
    loop = _dgemm_loop()
    rng = np.random.default_rng(0)
    a, b, c = rng.random((n, n)), rng.random((n, n)), np.empty((n, n))
    loop(a, b, c, 1)
    run()
    k = max(1, round(flops / (2.0 * n**3)))
    fractions, rates = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        run()
        t_run = time.perf_counter() - t0
        t0 = time.perf_counter()
        loop(a, b, c, k)
        t_dgemm = time.perf_counter() - t0
        fractions.append(t_dgemm / t_run)
        rates.append(2.0 * n**3 * k / t_dgemm / 1e9)
    return {"fraction": statistics.median(fractions), "fraction_min": min(fractions),
            "fraction_max": max(fractions), "dgemm_gflops": statistics.median(rates)}


def wide_flops_per_step(widths: list[int]) -> float:
    """FLOPs the kernel executes per step for equal widths (pivot at layer 0): see _kernels/linalg.py."""
    n = len(widths) - 1
    d = widths[0]
    # U chain (N-1 products), Z = U_N R^T, V_N = Z R, V chain (N-1), grad_j = V_j U_{j-1}^T (N-1)
    return 2.0 * d**3 * (3 * (n - 1) + 2)


def run(quick: bool = False) -> list[dict[str, Any]]:
    reps = 5 if quick else 9
    steps = 2000 if quick else 20_000
    rows: list[dict[str, Any]] = []
    for N in (2, 3, 5):
        s = dlnsim.paper_setup(N, 0)
        eta = dlnsim.stepsize_bound(s.problem, s.W0).eta
        rows += _case(f"paper N={N}", s.problem, s.W0, eta, steps, 300 if quick else 1000, reps)
    # wide net: all widths 70, N = 5, balanced start of the same scale
    s = dlnsim.paper_setup(5, 0)
    widths = [70] * 6
    W0 = dlnsim.balanced_init(widths, np.random.default_rng(1))
    eta_wide = dlnsim.stepsize_bound(s.problem, W0).eta
    wide = _case("wide N=5 (all 70)", s.problem, W0, eta_wide, steps // 10, 200, reps, with_plain=False)
    wide_steps = steps // 10
    pair = paired_dgemm_fraction(lambda: dlnsim.run_gd(s.problem, W0, eta_wide, wide_steps, record=[wide_steps]),
                                 wide_flops_per_step(widths) * wide_steps, 70, reps)
    dl = wide[0]
    dl["gflops"] = wide_flops_per_step(widths) / (dl["us_per_step"] * 1e-6) / 1e9
    dl["dgemm70_gflops"] = pair["dgemm_gflops"]
    dl["fraction_of_dgemm"] = pair["fraction"]
    dl["fraction_min_max"] = f"{pair['fraction_min']:.2f}-{pair['fraction_max']:.2f}"
    rows += wide
    # larger case: d = 256, m = 768, all widths 256, N = 3
    rng = np.random.default_rng(2)
    d = 256
    X = rng.normal(0, np.sqrt(1 / d), (d, 3 * d))
    Wt = dlnsim.balanced_init([d] * 4, rng, rank=8)
    Y = dlnsim.product(Wt) @ X
    big = dlnsim.Problem(X, Y)
    W0 = dlnsim.balanced_init([d] * 4, rng)
    eta_big = dlnsim.stepsize_bound(big, W0).eta
    rows += _case("large N=3 (all 256)", big, W0, eta_big, 50 if quick else 300, 20 if quick else 100, 3,
                  with_plain=False)
    return rows


if __name__ == "__main__":
    for r in run():
        print(r)
