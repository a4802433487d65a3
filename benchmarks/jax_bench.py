"""Many runs of one shape: a dlnsim sweep over 16 seeds against JAX ``jit`` + ``vmap`` of a ``lax.scan`` GD loop.

The grid: the paper setup ``dlnsim.paper_setup(5, seed)`` (d = 70, m = 210, widths 70-2-19-36-53-70) for
seeds 0..15, each with the constant stepsize 4 eta* of its own start (`dlnsim.stepsize_bound`), 20 000 GD
steps (also with ``--quick``, which times each side once and leaves out ``jax_user``).  Both sides compute
the same 16 trajectories in float64:

* dlnsim: ``dlnsim.sweep(None, N=5, seed=range(16), eta_factor=4, ...)`` with its default records
  (loss, gradient norm, stepsize every step; balancedness, layer norms, singular values at log-spaced
  iterations), one NetCDF file per cell, combined: on one core (``executor="serial"``) and on all cores
  (``executor="threads"``); and on one core with ``diagnostics=False`` (loss, gradient norm and stepsize
  only, still more than the JAX side keeps); and, like the JAX side, with the 16 setups and stepsizes
  prepared before the timing: `dlnsim.run_gd` on each in a loop, no files (``dlnsim_runs``);
* JAX (``pip install 'dlnsim[bench]'``; ``jax_enable_x64``, CPU): one ``jax.jit(jax.vmap(run))`` over the 16
  seeds, where ``run`` is a ``lax.scan`` of the GD step that keeps only the weights (no per-step loss, no
  records: less work than dlnsim does), then the final loss.  Three ways to write the gradient:

  - ``jax_user``: as a user would, product first: P = W_N ... W_1, R = P X - Y,
    grad_j = (W_N ... W_{j+1})^T (R X^T) (W_{j-1} ... W_1)^T;
  - ``jax_strong``: through the narrowest layer (d_1 = 2) with C = X X^T and E = Y X^T precomputed:
    L = W_1, U = W_N ... W_2, G = U (L C) - E, grad_1 = U^T G, and grad_j = B_j (W_{j-1} ... W_2)^T for
    j >= 2 with B_N = G L^T, B_{j-1} = W_j^T B_j (every product has a side of size 2);
  - ``jax_grad``: ``jax.grad`` of the loss written through the narrowest layer without any d x d matrix,
    1/2 tr(U^T U (L C L^T)) - tr(U^T (E L^T)) + 1/2 ||Y||^2 (cheaper than both, but it cancels as the loss
    goes to zero, which dlnsim's residual form does not).

The final losses of every JAX variant are checked against dlnsim's (relative difference, ``TOL``) before any
time is reported.  JAX's compile time is excluded (one warm-up call with the same shapes); each side is timed
``reps`` times, alternating (``jax_user``, about 10x slower, once), and the median is reported with the process CPU time
(JAX may use every core).

Without jax installed the group prints a note and returns only a note row.
Run: ``python -m benchmarks.jax_bench [--quick] [--reps R]``; `run()` returns the rows.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import dlnsim
from dlnsim.grid.executors import n_cores

N_LAYERS = 5
SEEDS = 16
ETA_MULTIPLE = 4.0
#: final losses of the two sides agree to this relative difference
TOL = 1e-8


def _setups(seeds: int) -> tuple[list[Any], np.ndarray]:
    setups = [dlnsim.paper_setup(N_LAYERS, s) for s in range(seeds)]
    etas = np.array([ETA_MULTIPLE * dlnsim.stepsize_bound(s.problem, s.W0).eta for s in setups])
    return setups, etas


def _dlnsim_sweep(n_iter: int, seeds: int, executor: str, diagnostics: bool = True) -> tuple[float, float, np.ndarray]:
    c0, t0 = time.process_time(), time.perf_counter()
    ds = dlnsim.sweep(None, N=N_LAYERS, seed=list(range(seeds)), eta_factor=ETA_MULTIPLE, n_iter=n_iter,
                      record=dlnsim.Record(diagnostics=diagnostics), engine=dlnsim.Engine(executor, progress=False))
    t = time.perf_counter() - t0
    return t, time.process_time() - c0, np.asarray(ds.final_loss.values, dtype=float).ravel()


def _jax_variants(jax: Any, jnp: Any, n_layers: int) -> dict[str, Callable[..., Any]]:
    """``name -> run(W0 tuple, X, Y, C, E, yy, eta, n_iter) -> final loss`` (unbatched; vmapped by the caller)."""
    lax = jax.lax

    def final_loss(W: tuple[Any, ...], X: Any, Y: Any) -> Any:
        P = W[0]
        for Wj in W[1:]:
            P = Wj @ P
        R = P @ X - Y
        return 0.5 * jnp.sum(R * R)

    def grads_user(W: tuple[Any, ...], X: Any, Y: Any, C: Any, E: Any) -> tuple[Any, ...]:
        pre = [W[0]]  # pre[j] = W_{j+1} ... W_1 (0-based j)
        for Wj in W[1:]:
            pre.append(Wj @ pre[-1])
        RXt = (pre[-1] @ X - Y) @ X.T
        g: list[Any] = [None] * n_layers
        S = None  # W_N ... W_{j+2}
        for j in range(n_layers - 1, -1, -1):
            A = RXt if S is None else S.T @ RXt
            g[j] = A if j == 0 else A @ pre[j - 1].T
            S = W[j] if S is None else S @ W[j]
        return tuple(g)

    def grads_strong(W: tuple[Any, ...], X: Any, Y: Any, C: Any, E: Any) -> tuple[Any, ...]:
        L = W[0]  # d_1 x d_0, d_1 = 2: the narrowest layer
        U = [W[1]]  # U[i] = W_{i+2} ... W_2 (d_{i+2} x d_1)
        for Wj in W[2:]:
            U.append(Wj @ U[-1])
        G = U[-1] @ (L @ C) - E
        g: list[Any] = [None] * n_layers
        g[0] = U[-1].T @ G
        B = G @ L.T  # d_N x d_1
        for j in range(n_layers - 1, 0, -1):  # 0-based layer j, grad = B (W_j ... W_2)^T
            g[j] = B if j == 1 else B @ U[j - 2].T
            if j > 1:
                B = W[j].T @ B
        return tuple(g)

    def loss_factored(W: tuple[Any, ...], C: Any, E: Any, yy: Any) -> Any:
        L = W[0]
        U = W[1]
        for Wj in W[2:]:
            U = Wj @ U
        LCLt = L @ C @ L.T
        return 0.5 * jnp.sum((U.T @ U) * LCLt) - jnp.sum(U * (E @ L.T)) + 0.5 * yy

    grad_factored = jax.grad(loss_factored)

    def make(grads: Callable[..., tuple[Any, ...]] | None) -> Callable[..., Any]:
        def run(W0: tuple[Any, ...], X: Any, Y: Any, C: Any, E: Any, yy: Any, eta: Any, n_iter: int) -> Any:
            def body(W: tuple[Any, ...], _: Any) -> tuple[tuple[Any, ...], None]:
                g = grad_factored(W, C, E, yy) if grads is None else grads(W, X, Y, C, E)
                return tuple(w - eta * gj for w, gj in zip(W, g, strict=True)), None

            W, _ = lax.scan(body, W0, None, length=n_iter)
            return final_loss(W, X, Y)

        return run

    return {"jax_user": make(grads_user), "jax_strong": make(grads_strong), "jax_grad": make(None)}


def run(quick: bool = False, reps: int | None = None, seeds: int = SEEDS) -> list[dict[str, Any]]:
    n_iter = 20_000
    reps = reps if reps is not None else (1 if quick else 3)
    cores = n_cores()
    rows: list[dict[str, Any]] = []
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        note = "note: jax is not installed: no JAX rows (pip install 'dlnsim[bench]' for jax and jaxlib)"
        print(note)
        return [{"case": note}]
    setups, etas = _setups(seeds)
    _dlnsim_sweep(2, seeds, "serial")  # load the kernels
    _dlnsim_sweep(2, seeds, "threads")
    variants: dict[str, Any] = {}
    if True:
        jax.config.update("jax_enable_x64", True)
        cpu = jax.devices("cpu")[0]
        W0 = tuple(jax.device_put(np.stack([s.W0[j] for s in setups]), cpu) for j in range(N_LAYERS))
        X = np.stack([s.problem.X for s in setups])
        Y = np.stack([s.problem.Y for s in setups])
        args = (W0, *(jax.device_put(a, cpu) for a in (X, Y, X @ X.transpose(0, 2, 1), Y @ X.transpose(0, 2, 1),
                                                           np.einsum("sij,sij->s", Y, Y), etas)))
        for name, fn in _jax_variants(jax, jnp, N_LAYERS).items():
            if quick and name == "jax_user":
                continue  # about 10x slower than the others and not the target (minutes at 20 000 steps)
            f = jax.jit(jax.vmap(fn, in_axes=(0, 0, 0, 0, 0, 0, 0, None)), static_argnums=7)
            t0 = time.perf_counter()
            f(*args, n_iter).block_until_ready()  # compile (and a first run)
            variants[name] = {"f": f, "compile_s": time.perf_counter() - t0, "t": [], "cpu": []}
    t_ser: list[float] = []
    t_thr: list[float] = []
    t_bare: list[float] = []
    t_runs: list[float] = []
    c_ser: list[float] = []
    c_thr: list[float] = []
    losses = None
    for _ in range(reps):
        t, c, losses = _dlnsim_sweep(n_iter, seeds, "serial")
        t_ser.append(t)
        c_ser.append(c)
        t_bare.append(_dlnsim_sweep(n_iter, seeds, "serial", diagnostics=False)[0])
        t0 = time.perf_counter()
        for st, eta in zip(setups, etas, strict=True):
            dlnsim.run_gd(st.problem, st.W0, float(eta), n_iter)
        t_runs.append(time.perf_counter() - t0)
        t, c, _ = _dlnsim_sweep(n_iter, seeds, "threads")
        t_thr.append(t)
        c_thr.append(c)
        for name, v in variants.items():
            if name == "jax_user" and v["t"] and not quick:
                continue  # ~10x slower than the others and not the target: timed once
            c0, t0 = time.process_time(), time.perf_counter()
            v["loss"] = np.asarray(v["f"](*args, n_iter).block_until_ready())
            v["t"].append(time.perf_counter() - t0)
            v["cpu"].append(time.process_time() - c0)
    assert losses is not None
    ts, tt = statistics.median(t_ser), statistics.median(t_thr)
    rows.append({"case": f"dlnsim sweep, serial (1 core), N=5 paper, {seeds} seeds x {n_iter} steps, eta = 4 eta*",
                 "cells_per_s": seeds / ts, "seconds": ts, "cpu_per_wall": statistics.median(c_ser) / ts,
                 "min_max_s": f"{min(t_ser):.2f}-{max(t_ser):.2f}", "reps": reps, "ratio_vs_dlnsim_serial": 1.0,
                 "cpu_seconds": statistics.median(c_ser)})
    rows.append({"case": f"dlnsim sweep, threads ({cores} cores)", "cells_per_s": seeds / tt, "seconds": tt,
                 "cpu_per_wall": statistics.median(c_thr) / tt, "min_max_s": f"{min(t_thr):.2f}-{max(t_thr):.2f}",
                 "reps": reps, "ratio_vs_dlnsim_serial": ts / tt})
    tn = statistics.median(t_bare)
    rows.append({"case": "dlnsim sweep, serial, diagnostics=False", "cells_per_s": seeds / tn, "seconds": tn,
                 "min_max_s": f"{min(t_bare):.2f}-{max(t_bare):.2f}", "reps": reps, "ratio_vs_dlnsim_serial": ts / tn})
    tr = statistics.median(t_runs)
    rows.append({"case": "dlnsim_runs: run_gd on the 16 prepared setups in a loop, one core, no files",
                 "cells_per_s": seeds / tr, "seconds": tr, "min_max_s": f"{min(t_runs):.2f}-{max(t_runs):.2f}",
                 "reps": reps, "ratio_vs_dlnsim_serial": ts / tr})
    for name, v in variants.items():
        err = float(np.max(np.abs(v["loss"] - losses) / np.abs(losses)))
        if not err <= TOL:
            raise AssertionError(f"{name}: final losses differ from dlnsim's by {err:.2e} (relative) > {TOL:g}")
        tj = statistics.median(v["t"])
        rows.append({"case": f"{name}: jit(vmap(lax.scan)) over the {seeds} seeds", "cells_per_s": seeds / tj,
                     "seconds": tj, "cpu_per_wall": statistics.median(v["cpu"]) / tj,
                     "min_max_s": f"{min(v['t']):.2f}-{max(v['t']):.2f}", "reps": len(v["t"]),
                     "compile_s": v["compile_s"], "final_loss_max_rel_diff": err,
                     # how many times faster dlnsim is than this variant (> 1: dlnsim faster)
                     "dlnsim_serial_x": tj / ts, "dlnsim_threads_x": tj / tt,
                     "dlnsim_serial_no_diagnostics_x": tj / tn, "dlnsim_runs_x": tj / tr,
                     # the same in CPU time (this process, all threads): on a machine busy with other work a
                     # multi-threaded JAX gets a larger share of the cores than one dlnsim thread, which skews
                     # the wall-time ratio; CPU time measures the work
                     "cpu_seconds": statistics.median(v["cpu"]),
                     "dlnsim_serial_x_cpu": statistics.median(v["cpu"]) / statistics.median(c_ser)})
    if variants:
        best = min(variants, key=lambda k: statistics.median(variants[k]["t"]))
        tb = statistics.median(variants[best]["t"])
        rows.append({"case": f"target: dlnsim on one core vs the fastest JAX variant ({best})",
                     "dlnsim_serial_x": tb / ts, "dlnsim_threads_x": tb / tt, "tolerance": f"rtol {TOL:g}",
                     "dlnsim_serial_x_cpu": statistics.median(variants[best]["cpu"]) / statistics.median(c_ser),
                     "reps": reps})
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.jax_bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one repetition, without jax_user")
    ap.add_argument("--reps", type=int, default=None, help="repetitions (default 3)")
    args = ap.parse_args(argv)
    for r in run(args.quick, args.reps):
        print(r)


if __name__ == "__main__":
    main()
