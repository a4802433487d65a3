"""Where GD ends for N >= 3: the rank of the limit product over many random initialisations.

Theorem 2.6(a) says GD (small enough stepsizes) converges to a critical point of L^N whose product has some rank
k <= r̄ = min(q, r) (q = rank of Q, r = min_j d_j); the paper conjectures that for almost every start it
reaches the global minimum, i.e. k = r̄.  The paper's setup has r̄ = 2.  To afford many runs we use two small
problems (d = 12 inputs and outputs, m = 36 samples, X_ij ~ N(0, 1/d), noiseless targets Y = W~ X):

* case ``A``: W~ of rank 3 (singular values 4, 2, 1), hidden widths 8: q = 3 < r = 8, r̄ = 3, min L^N = 0;
* case ``B``: W~ of rank 6 (singular values 4, 3, 2, 1.5, 1, 0.5), first hidden width 4, the others 8:
  r = 4 < q = 6, r̄ = 4, the global minimum is the best rank-4 fit (Eckart-Young on Q).

For N = 3 and 4 we start from balanced (`dlnsim.balanced_init`, every factor with singular values c) and
Gaussian (`dlnsim.gaussian_init`, std c/sqrt(d_{j-1})) initialisations at several scales c (small ones give
saddle-to-saddle plateaus at the rank-k optimal losses L*_k), 8 seeds each, and run GD with eta = 0.01 for 10^5
steps.  The end point is classified twice:

* ``sv_rank``: number of singular values of W_N...W_1 above TAU = 1e-2 times the largest, for the factors where
  GD ended (``keep_weights=True``: after n_iter steps, or where a convergence test stopped it);
* ``loss_rank``: the smallest k with L*_k <= L(final) + 1e-3 (L(0) - L*_{r̄}), the least rank a product needs
  to reach the final loss (a critical point that is the best rank-k fit has loss L*_k); it equals r̄ exactly
  when GD ended within that tolerance of the global minimum min L^N = L*_{r̄} (``reached_global_min``: "at
  the global minimum within tolerance", not exactly at it).

The grid is (case, N, init, scale_index, seed); a cell is one GD run with its end point classified.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

import dlnsim
import dlnsim.plot as P

from . import _common as C

__all__ = ["CASES", "NAME", "cell", "compute", "make_problem", "plot", "run", "summary", "widths_of"]

NAME = "limit_rank"
#: ``run(quick, outdir, cells=None, **engine)``: compute, write ``<outdir>/<NAME>.nc`` and the figure
run = functools.partial(C.run_study, NAME)
D, M_SAMPLES = 12, 36
ETA = 0.01
GTOL = 1e-9
TAU = 1e-2
LOSS_TOL = 1e-3
#: case -> (data seed, target singular values, hidden widths as a function of N)
CASES: dict[str, tuple[int, tuple[float, ...], str]] = {
    "A": (100, (4.0, 2.0, 1.0), "8"),
    "B": (101, (4.0, 3.0, 2.0, 1.5, 1.0, 0.5), "4,8"),
}
INITS = ("balanced", "gaussian")
#: per-layer scales c by depth: escape from the saddle at 0 takes ~ 1/(s_1 c^(N-2)) time, so deeper nets need
#: larger c to leave it within the budget
SCALES = {3: (1.0, 0.1, 0.01, 0.001), 4: (1.0, 0.3, 0.1, 0.03)}


def widths_of(case: str, N: int) -> tuple[int, ...]:
    hidden = [int(w) for w in CASES[case][2].split(",")]
    hidden += [hidden[-1]] * (N - 1 - len(hidden))
    return (D, *hidden[: N - 1], D)


def make_problem(case: str) -> dlnsim.Problem:
    """The data of a case (deterministic: draws from numpy.random.default_rng(data seed))."""
    seed, svals, _ = CASES[case]
    rng = np.random.default_rng(seed)
    X = rng.normal(0.0, np.sqrt(1.0 / D), size=(D, M_SAMPLES))
    U = dlnsim.haar_orthogonal(D, rng)[:, : len(svals)]
    V = dlnsim.haar_orthogonal(D, rng)[:, : len(svals)]
    target = (U * np.asarray(svals)) @ V.T
    return dlnsim.Problem(X, target @ X, meta={"setup": f"limit_rank case {case}", "data_seed": seed})


def initial_weights(case: str, N: int, init: str, scale: float, seed: int) -> list[np.ndarray]:
    widths = widths_of(case, N)
    rng = np.random.default_rng(seed)
    if init == "balanced":
        return dlnsim.balanced_init(widths, rng, scale)
    return dlnsim.gaussian_init(widths, rng, [scale / np.sqrt(w) for w in widths[:-1]])


def cell(case: str, N: int, init: str, scale_index: int, seed: int, n_iter: int, record: str) -> xr.Dataset:
    """One GD run from a random start, and the rank of its end point."""
    problem = make_problem(case)
    scale = SCALES[N][scale_index]
    W0 = initial_weights(case, N, init, scale, seed)
    r_bar = min(problem.q, min(widths_of(case, N)))
    # only the loss is kept along the run: no state diagnostics (half the cost of a step on these small problems)
    ds = dlnsim.run_gd(problem, W0, ETA, n_iter, record=dlnsim.Record(record, diagnostics=False, final_weights=True),
                       stop=dlnsim.Stop(gtol=GTOL, early=True),
                       attrs={"init": init, "init_scale": scale, "init_seed": seed, "r_bar": r_bar})
    # the state where GD ended (the stop of an early-stopped run usually falls between two record points)
    W_end = dlnsim.weights_from(ds)
    n_sv = min(widths_of(case, N))  # the rank of the product is at most the narrowest width
    if all(np.all(np.isfinite(W)) for W in W_end):
        sv = np.linalg.svd(dlnsim.product(W_end), compute_uv=False)[:n_sv]
    else:
        sv = np.full(n_sv, np.nan)
    ds = ds.drop_vars("final_weights")
    final = float(ds["final_loss"])
    L0 = float(ds["initial_loss"])
    tol = LOSS_TOL * (L0 - problem.optimal_loss(r_bar))
    loss_rank = next((k for k in range(r_bar + 1) if problem.optimal_loss(k) <= final + tol), -1)
    ok = np.isfinite(sv)
    sv_rank = int(np.sum(sv[ok] > TAU * sv[ok].max())) if ok.any() and sv[ok].max() > 0 else -1
    ds.attrs.update({"sv_rank": sv_rank, "loss_rank": loss_rank,
                     "excess_over_global_min": final - problem.optimal_loss(r_bar)})
    ds["final_sv"] = xr.DataArray(sv, dims="sv", attrs={
        "units": "1", "long_name": "singular values of W_N...W_1 where GD ended (n_iter or the early stop)"})
    return ds


def _cost(point: dict[str, Any]) -> float:
    return point["N"] * (1.0 if point["case"] == "A" else 0.2)


LONG_NAMES = {
    "sv_rank": f"number of singular values of the final product above {TAU:g} x the largest",
    "loss_rank": f"smallest k with L*_k <= final loss + {LOSS_TOL:g} (L(0) - L*_rbar) (-1: none)",
    "excess_over_global_min": "final loss minus min L^N = L*_rbar",
    "status": C.STATUS,
    "stop_iteration": "iteration where the run stopped", "final_loss": "loss at the last evaluated iteration",
    "initial_loss": "loss at W(0)",
}


def compute(quick: bool, *, directory: Path | None = None, executor: Any = "threads", workers: int | None = None,
            scheduler: str | None = None) -> xr.Dataset:
    """The study's Dataset; the cells live in ``directory`` (None: a temporary one), see `dlnsim.run_grid`."""
    depths = [3] if quick else [3, 4]
    seeds = list(range(2 if quick else 8))
    n_iter = 20_000 if quick else 100_000
    record = "log:150"
    axes = {"case": list(CASES), "N": depths, "init": list(INITS), "scale_index": list(range(len(SCALES[3]))),
            "seed": seeds}
    grid = C.grid(cell, axes, {"n_iter": n_iter, "record": record}, directory=directory, label=NAME, cost=_cost,
                  executor=executor, workers=workers, scheduler=scheduler)
    ds = C.archive_layout(grid, ["loss", "final_sv"],
                          {k: None for k in ("sv_rank", "loss_rank", "excess_over_global_min", "status",
                                             "stop_iteration", "final_loss", "initial_loss")}, LONG_NAMES)
    for v in ("sv_rank", "loss_rank", "stop_iteration"):
        ds[v] = ds[v].astype(np.int64)
    ds["init_scale"] = xr.DataArray([list(SCALES[N]) for N in depths], dims=("N", "scale_index"), attrs={
        "units": "1", "long_name": "per-layer scale c of the initialisation (see attribute init_rule)"})
    problems = {c: make_problem(c) for c in CASES}
    n_rank = max(len(p.optimal_loss_by_rank) for p in problems.values())
    ds["optimal_loss_by_rank"] = xr.DataArray(
        np.array([p.optimal_loss_by_rank for p in problems.values()]), dims=("case", "rank"),
        coords={"rank": np.arange(n_rank)},
        attrs={"units": "1", "long_name": "L*_k = min of L^1 over products of rank <= k (Eckart-Young)"})
    ds["q"] = xr.DataArray([p.q for p in problems.values()], dims="case",
                           attrs={"units": "1", "long_name": "rank q of Q = Y X^T (X X^T)^(-1/2)"})
    ds["r_bar"] = xr.DataArray([[min(problems[c].q, min(widths_of(c, N))) for N in depths] for c in CASES],
                               dims=("case", "N"), attrs={"units": "1", "long_name": "r_bar = min(q, min_j d_j)"})
    ds["widths"] = xr.DataArray([[list(widths_of(c, N)) + [0] * (max(depths) - N) for N in depths] for c in CASES],
                                dims=("case", "N", "width_index"),
                                attrs={"units": "1", "long_name": "widths d_0..d_N (0 beyond N)"})
    ds["reached_global_min"] = (ds["loss_rank"] == ds["r_bar"]).astype(np.int64).assign_attrs(
        units="1", long_name="1 if the final loss is within the tolerance of min L^N = L*_rbar")
    ds.attrs.update(C.study_attrs(NAME, quick, "rank of the product where GD ends, over random initialisations, "
                                               "small problems with r_bar = 3 (case A) and 4 (case B), N >= 3"))
    ds.attrs.update({
        "d": D, "m": M_SAMPLES,
        "cases": "; ".join(f"{c}: data seed {s}, target singular values {list(v)}, hidden widths {h}"
                           for c, (s, v, h) in CASES.items()),
        "data_rule": "rng = numpy.random.default_rng(data seed); X = rng.normal(0, sqrt(1/d), (d, m)); "
                     "U = haar_orthogonal(d, rng)[:, :s]; V = haar_orthogonal(d, rng)[:, :s]; "
                     "Y = (U diag(sv) V^T) X",
        "init_rule": "rng = numpy.random.default_rng(seed); balanced: dlnsim.balanced_init(widths, rng, c); "
                     "gaussian: dlnsim.gaussian_init(widths, rng, [c/sqrt(d_{j-1})])",
        "seeds": seeds,
        "eta": ETA, "n_iter": n_iter, "record": record, "gtol": GTOL, "stop_early": 1,
        "sv_threshold_relative": TAU, "loss_tolerance_relative": LOSS_TOL,
    })
    return ds


def _ranks(case: str, N: int, s: xr.Dataset) -> str:
    ranks, counts = np.unique(s["sv_rank"].values, return_counts=True)
    hist = ", ".join(f"rank {int(r)}: {int(c)}" for r, c in zip(ranks, counts, strict=True))
    return (f"case {case}, N={N}, r_bar={int(s['r_bar'])}: sv_rank counts {{{hist}}} of {s['sv_rank'].size}; "
            f"at the global minimum within tolerance {int(s['reached_global_min'].sum())}/{s['sv_rank'].size}; "
            f"diverged {int((s['status'] == 'diverged').sum())}")


def summary(ds: xr.Dataset) -> list[str]:
    """Headline numbers: per case and depth, how many runs end at each numerical rank and at the global minimum."""
    return [_ranks(str(case), int(N), ds.sel(case=case, N=N)) for case in ds["case"].values for N in ds["N"].values]


def plot(ds: xr.Dataset, outdir: Path) -> list[Path]:
    import matplotlib
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    with P.style():
        fig, axes = P.subplots(2, 2, figsize=(7.0, 6.4))
        N0 = int(ds["N"].values[0])
        cmap = matplotlib.colormaps["plasma"]
        n_sc = ds.sizes["scale_index"]
        colors = [cmap(si / max(n_sc, 2)) for si in range(n_sc)]
        for col, case in enumerate(ds["case"].values):
            rb = int(ds["r_bar"].sel(case=case, N=N0))
            opt = ds["optimal_loss_by_rank"].sel(case=case).values
            ax = axes[0, col]
            for si in range(n_sc):
                r = ds.sel(case=case, N=N0, init="balanced", scale_index=si, seed=ds["seed"].values[0])
                k, loss = C.with_end(r)
                c = float(ds["init_scale"].sel(N=N0, scale_index=si))
                ax.loglog(k[loss > 0] + 1, loss[loss > 0], color=colors[si], label=f"c = {c:g}")
            x_right = 1.15 * (float(ds["k"].max()) + 1)
            floor = 1e-8 * opt[0]
            for k in range(rb + 1):
                if opt[k] <= floor:  # L*_k = 0 up to rounding: not drawable on the log axis
                    continue
                ax.axhline(opt[k], color="0.4", ls=":", lw=0.8)
                ax.text(x_right, opt[k], f" $L^*_{k}$", fontsize=7, color="0.3", va="center", ha="left")
            ax.set_ylim(bottom=max(ax.get_ylim()[0], floor))
            ax.set_xlabel("iteration $k+1$")
            ax.set_ylabel(r"loss $L^N(W(k))$")
            ax.set_title(f"({'ab'[col]}) case {case} ($\\bar r={rb}$), N={N0}, balanced starts", loc="left")
            ax.legend(loc="lower left", fontsize=7)
            ax = axes[1, col]
            sub = ds.sel(case=case)
            rel = sub["final_sv"] / sub["final_sv"].max("sv")
            n_runs, n_at = 0, 0
            for N in sub["N"].values:
                for init, ls in zip(ds["init"].values, ("-", "--"), strict=True):
                    for si in range(n_sc):
                        for seed in ds["seed"].values:
                            y = rel.sel(N=N, init=init, scale_index=si, seed=seed).values
                            ok = np.isfinite(y) & (y > 0)
                            if ok.any():
                                ax.semilogy(np.arange(1, y.size + 1)[ok], y[ok], ls, color=colors[si], lw=0.6,
                                            alpha=0.6)
                counts = sub["sv_rank"].sel(N=N)
                n_runs += int(counts.size)
                n_at += int((counts == int(sub["r_bar"].sel(N=N))).sum())
            rb_all = int(sub["r_bar"].max())
            ax.axhline(TAU, color="k", ls=":", lw=1.0)
            ax.axvline(rb_all + 0.5, color="k", ls="-.", lw=0.8)
            glob = int(sub["reached_global_min"].sum())
            ax.set_title(f"({'cd'[col]}) case {case}: final singular values, all runs", loc="left")
            ax.text(0.98, 0.97, f"numerical rank $\\bar r={rb_all}$: {n_at}/{n_runs}\nat the global minimum within "
                    f"tolerance: {glob}/{n_runs}",
                    transform=ax.transAxes, ha="right", va="top", fontsize=7.5,
                    bbox={"boxstyle": "round", "fc": "white", "ec": "0.7", "alpha": 0.9})
            ax.set_xlabel("index $i$ of the singular value")
            ax.set_ylabel(r"$\sigma_i/\sigma_1$ of the final $W_N\cdots W_1$")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        handles = [Line2D([], [], color="0.2", ls="-", label="balanced start"),
                   Line2D([], [], color="0.2", ls="--", label="Gaussian start"),
                   Line2D([], [], color="k", ls=":", label=rf"threshold $\tau={TAU:g}$"),
                   Line2D([], [], color="k", ls="-.", label=r"$\bar r=\min(q, r)$")]
        scales = ds["init_scale"]
        for si in range(n_sc):
            text = " / ".join(f"{float(scales.sel(N=N, scale_index=si)):g}" for N in ds["N"].values)
            handles.append(Line2D([], [], color=colors[si], label=f"c = {text}"))
        fig.legend(handles=handles, loc="outside lower center", ncol=4, fontsize=7,
                   title="bottom panels; scale c for N = " + " / ".join(str(int(n)) for n in ds["N"].values),
                   title_fontsize=7)
        fig.suptitle(f"Where GD ends (N $\\geq$ 3): d={int(ds.attrs['d'])}, m={int(ds.attrs['m'])}, "
                     f"$\\eta$={float(ds.attrs['eta']):g}, {C.fmt_pow10(int(ds.attrs['n_iter']))} steps, "
                     f"{ds.sizes['seed']} seeds per start; N = {', '.join(str(int(n)) for n in ds['N'].values)}\n"
                     r"top: loss for one seed with plateaus at the rank-$k$ optima $L^*_k$; "
                     r"bottom: $\sigma_i/\sigma_1$ of the final product", fontsize=9)
    return C.save_figure(fig, outdir, NAME)
