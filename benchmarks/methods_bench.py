"""Step rules beyond plain GD: heavy-ball and Nesterov steps against the GD step, and an SGD step against JAX.

Both groups time the steps, not a run's fixed costs: the runs go through `dlnsim.runs.gd.solve_gd` (what
`dlnsim.run_gd` calls before building its Dataset) with the section-5 bound passed in and no state
diagnostics, so the bound of the start, the SVDs at the record point and the Dataset (about 10 ms a run,
against 30-200 ms of steps, on a shared 2-core machine) are left out; CPU time (``time.process_time``) is
measured, which a loaded machine disturbs less than wall time.

* ``momentum``: `dlnsim.HeavyBall` / `dlnsim.Nesterov` (beta = 0.9) against plain GD on the paper setup
  (N = 2, 3, 5, seed 0, one record at the end), the same number of steps; ``pairs`` rounds, each timing GD,
  heavy-ball and Nesterov back to back in a rotating order; the ratio is the median over the rounds of
  (rule time / GD time of the same round), with the quartiles of those ratios.  Target: <= 1.15x the GD step.
* ``sgd``: minibatch SGD with b = 16 on the paper setup (N = 5, seed 0, random reshuffling) with `dlnsim.SGD`
  on one core against JAX (``pip install 'dlnsim[bench]'``; float64, CPU, one intra-op thread):
  ``jax.jit`` of a ``lax.scan`` over the same precomputed batch order (`dlnsim.SGD.batches`; dlnsim's time
  includes drawing it, JAX's does not), the gradient of the batch loss by ``jax.grad``.  Two JAX programs of
  the batch loss: ``narrow``, W = (W_N ... W_2)(W_1 X_B), every product with a side of size d_1 = 2 (the
  association dlnsim uses, about the same arithmetic), and ``layers``, W_N (... (W_2 (W_1 X_B))), every product
  with b = 16 columns (about six times the arithmetic).  The ratio is against the faster of the two
  (``ratio``), the other one's ratio is reported too.  Final losses are checked to agree (relative
  ``TOL``) before any time is reported; JAX's compile time is excluded (a warm-up call).  Target: dlnsim
  >= 3x.  PyTorch (CPU, float64, one thread) is compared too when it is installed: the same batches, the
  narrow association, ``torch.autograd.grad`` of the batch loss in an eager Python loop (PyTorch has no
  compiled scan; ``torch.compile`` of a step would still return to Python every step); else a note row.

Run: ``python -m benchmarks --only methods [--quick]``; `run()` returns the rows.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

import numpy as np

import dlnsim
from dlnsim.runs.gd import solve_gd

#: final losses of dlnsim and the reference agree to this relative difference
TOL = 1e-8
BATCH = 16


def _time(fn: Any) -> tuple[float, float]:
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def _steps(problem: dlnsim.Problem, W0: list[np.ndarray], eta: float, n_iter: int, rule: Any,
           bound: Any) -> float:
    """``n_iter`` steps of ``rule`` from ``W0`` (`solve_gd`, no diagnostics, the bound given): the final loss."""
    r = solve_gd(problem, W0, eta, n_iter, method=rule, record=dlnsim.Record([n_iter], diagnostics=False),
                 bound=bound)
    return float(r.outcomes["final_loss"])


def _momentum_rows(quick: bool) -> list[dict[str, Any]]:
    rows = []
    n_iter = 3_000 if quick else 10_000
    pairs = 15 if quick else 41
    for N in (2, 3, 5):
        s = dlnsim.paper_setup(N, 0)
        bound = dlnsim.stepsize_bound(s.problem, s.W0)
        eta = bound.eta
        rules = {"gd": dlnsim.GD(), "heavy_ball": dlnsim.HeavyBall(beta=0.9), "nesterov": dlnsim.Nesterov(beta=0.9)}
        names = list(rules)
        for rule in rules.values():  # compile / load the kernels
            _steps(s.problem, s.W0, eta, 10, rule, bound)
        times: dict[str, list[float]] = {k: [] for k in rules}
        for i in range(pairs):
            for name in names[i % 3 :] + names[: i % 3]:  # a rotating order: no rule always runs first
                times[name].append(_time(lambda r=rules[name], s=s, eta=eta, b=bound: _steps(
                    s.problem, s.W0, eta, n_iter, r, b))[1])
        gd = statistics.median(times["gd"])
        for name in ("heavy_ball", "nesterov"):
            ratios = [a / b for a, b in zip(times[name], times["gd"], strict=True)]
            q1, _, q3 = statistics.quantiles(ratios, n=4)
            rows.append({"case": f"momentum: {name} step / GD step, paper N={N} ({n_iter} steps, {pairs} rounds, "
                                 "median of paired CPU-time ratios)",
                         "us_per_step": 1e6 * statistics.median(times[name]) / n_iter,
                         "gd_us_per_step": 1e6 * gd / n_iter, "ratio": statistics.median(ratios),
                         "ratio_range": f"{q1:.3f}-{q3:.3f} (quartiles)"})
    return rows


def _jax_sgd(problem: dlnsim.Problem, W0: list[np.ndarray], eta: float, idx: np.ndarray,
             narrow: bool) -> tuple[Any, Any] | None:
    """(warm run() -> final loss, description) of JAX's SGD, or None without jax.  ``narrow``: the batch loss
    associated through the layer of width d_1 (see the module docstring), else layer by layer."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    X, Y = jnp.asarray(problem.X), jnp.asarray(problem.Y)
    scale = problem.m / idx.shape[1]

    def batch_loss(W: tuple[Any, ...], xb: Any, yb: Any) -> Any:
        if narrow:  # (W_N ... W_2) (W_1 X_B): every product has a side d_1 = 2
            U = W[1]
            for Wj in W[2:]:
                U = Wj @ U
            P = U @ (W[0] @ xb)
        else:  # W_N (... (W_2 (W_1 X_B))): every product has b columns
            P = W[0] @ xb
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
    what = "through the narrow layer" if narrow else "layer by layer"
    return (lambda: float(f(W0t, order))), f"jax {jax.__version__} jit(lax.scan), jax.grad {what}"


def _torch_sgd(problem: dlnsim.Problem, W0: list[np.ndarray], eta: float, idx: np.ndarray) -> tuple[Any, Any] | None:
    """(run() -> final loss, description) of eager PyTorch SGD through the narrow layer, or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    X, Y = torch.tensor(problem.X), torch.tensor(problem.Y)  # copies: the problem's arrays are read-only
    scale = problem.m / idx.shape[1]
    batches = [torch.from_numpy(np.ascontiguousarray(cols)) for cols in idx]
    step = eta * scale

    def run() -> float:
        W = [torch.tensor(w, dtype=torch.float64, requires_grad=True) for w in W0]
        for cols in batches:
            xb, yb = X[:, cols], Y[:, cols]
            U = W[1]
            for Wj in W[2:]:
                U = Wj @ U
            R = U @ (W[0] @ xb) - yb
            grads = torch.autograd.grad(0.5 * torch.sum(R * R), W)
            with torch.no_grad():
                for w, g in zip(W, grads, strict=True):
                    w -= step * g
        with torch.no_grad():
            P = W[0]
            for Wj in W[1:]:
                P = Wj @ P
            R = P @ X - Y
            return float(0.5 * torch.sum(R * R))

    return run, f"torch {torch.__version__} eager, autograd through the narrow layer"


def _torch_row(problem: dlnsim.Problem, W0: list[np.ndarray], eta: float, idx: np.ndarray, ours: Any,
               loss_ours: float, reps: int) -> dict[str, Any]:
    ref = _torch_sgd(problem, W0, eta, idx)
    if ref is None:
        return {"case": "note: PyTorch is not installed (pip install torch): no SGD-vs-PyTorch row"}
    fn, what = ref
    loss_torch = fn()
    rel = abs(loss_ours - loss_torch) / abs(loss_torch)
    if not rel <= TOL:
        return {"case": "sgd: dlnsim and PyTorch disagree", "error": f"final losses {loss_ours!r} vs {loss_torch!r}"}
    theirs, mine = [], []
    for _ in range(max(3, reps // 3)):
        theirs.append(_time(fn)[1])
        mine.append(_time(ours)[1])
    n_iter = idx.shape[0]
    return {"case": f"sgd: b={BATCH} step, paper N=5 ({n_iter} steps), dlnsim vs {what}",
            "us_per_step": 1e6 * statistics.median(mine) / n_iter,
            "ref_us_per_step": 1e6 * statistics.median(theirs) / n_iter,
            "ratio": statistics.median(a / b for a, b in zip(theirs, mine, strict=True)),
            "final_loss_rel_diff": rel}


def _sgd_rows(quick: bool) -> list[dict[str, Any]]:
    n_iter = 5_000 if quick else 20_000
    reps = 7 if quick else 15
    s = dlnsim.paper_setup(5, 0)
    bound = dlnsim.stepsize_bound(s.problem, s.W0)
    eta = bound.eta
    rule = dlnsim.SGD(batch_size=BATCH, seed=0)
    idx = rule.batches(s.problem.m, 0, n_iter)

    def ours() -> float:
        return _steps(s.problem, s.W0, eta, n_iter, rule, bound)

    ours()  # compile / load
    refs = {key: _jax_sgd(s.problem, s.W0, eta, idx, narrow=key == "narrow") for key in ("narrow", "layers")}
    if refs["narrow"] is None or refs["layers"] is None:
        return [{"case": "note: jax is not installed (pip install 'dlnsim[bench]'): no SGD-vs-JAX row"}]
    loss_ours = ours()
    rel = 0.0
    for ref in refs.values():
        assert ref is not None
        loss_jax = ref[0]()
        rel = max(rel, abs(loss_ours - loss_jax) / abs(loss_jax))
        if not abs(loss_ours - loss_jax) <= TOL * abs(loss_jax):
            return [{"case": "sgd: dlnsim and JAX disagree", "error": f"final losses {loss_ours!r} vs {loss_jax!r}"}]
    fns = {"ours": ours, **{k: v[0] for k, v in refs.items() if v is not None}}
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for key, fn in fns.items():
            t, c = _time(fn)
            wall[key].append(t)
            cpu[key].append(c)

    def paired(key: str) -> float:  # median over the rounds of (JAX CPU time / dlnsim CPU time)
        return statistics.median(a / b for a, b in zip(cpu[key], cpu["ours"], strict=True))

    best = min(("narrow", "layers"), key=lambda k: statistics.median(cpu[k]))
    other = "layers" if best == "narrow" else "narrow"
    rows: list[dict[str, Any]] = [{
        "case": f"sgd: b={BATCH} step, paper N=5 ({n_iter} steps, {reps} rounds), dlnsim vs {refs[best][1]}",
        "us_per_step": 1e6 * statistics.median(cpu["ours"]) / n_iter,
        "ref_us_per_step": 1e6 * statistics.median(cpu[best]) / n_iter,
        "ratio": paired(best),
        "ratio_wall": statistics.median(wall[best]) / statistics.median(wall["ours"]),
        f"ratio_{other}": paired(other),
        f"{other}_us_per_step": 1e6 * statistics.median(cpu[other]) / n_iter,
        "final_loss_rel_diff": rel,
    }]
    rows.append(_torch_row(s.problem, s.W0, eta, idx, ours, loss_ours, reps))
    return rows


def run(quick: bool = False) -> list[dict[str, Any]]:
    # one intra-op thread for JAX (set before it is imported): both sides on one core
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    return _momentum_rows(quick) + _sgd_rows(quick)


if __name__ == "__main__":
    import sys

    from benchmarks.__main__ import table

    print(table(run(quick="--quick" in sys.argv)))
