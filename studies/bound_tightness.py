"""Where is the bound (5.1) tight?  eta_crit/eta* as the data conditioning, the start and N vary (N = 2, 3).

The bound is eta* = 2 / (T_bal + T_curv + T_mix) with (Theorem 2.4, delta = M^{2/N}/N^3, K = (1 + 1/N) M^{2/N})

    T_bal  = 4 L_0 / delta               = 4 N^3 L_0 M^{-2/N},
    T_curv = 2 e N K^{N-1} ||X||^2      = 2 e (1 + 1/N)^{N-1}    N M^{2-2/N} ||X||^2,
    T_mix  = sqrt(e) N K^{N/2-1} ||XY^T|| = sqrt(e) (1 + 1/N)^{N/2-1} N M^{1-2/N} ||X Y^T||,

and M of (2.11).  So eta_crit/eta* = R_bal + R_curv + R_mix with R_x = eta_crit T_x / 2, and with
lambda = lambda_max of the Hessian at the balanced global minimiser W* (closed form) and s = ||W*||:

    R_curv = [2 e (1 + 1/N)^{N-1}] x [(M/s)^{2-2/N}] x [N ||X||^2 s^{2-2/N} / lambda] x [eta_crit lambda / 2],
    R_mix  = [sqrt(e) (1 + 1/N)^{N/2-1}] x [(M/s)^{1-2/N}] x [N ||X Y^T|| s^{1-2/N} / lambda] x [eta_crit lambda / 2],
    R_bal  = 2 N^3 L_0 M^{-2/N} eta_crit:

constants, the a-priori bound M against the actual ||W*||, the data factor (1 when X X^T = c I, since then
lambda = N c s^{2-2/N} for a target with equal singular values), and the stability factor (about 1, study
stability_threshold).  M/s itself splits into ||X|| sqrt(2 L_0)/(sigma_min(X)^2 s) (the initial loss) and
||X Y^T||/(sigma_min(X)^2 s) (the conditioning; = 1 when X X^T = c I).

Grid: N in {2, 3}; data ``gauss3`` (the paper's X, m = 3d), ``gauss10`` (m = 10d, better conditioned),
``white`` (the paper's X whitened: X X^T = 3 I); starts ``random_c`` (the paper's balanced start with every
factor scaled by c) and ``near_eps`` (a balanced factorisation of a rank-2 product at relative distance ~eps
from the target W*); two seeds.  The target is the paper's (two unit singular values), Y = W* X.  GD runs on the
network with hidden widths 2 (every start here is balanced with rank-2 factors).
"""

from __future__ import annotations

import functools
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

import dlnsim
from dlnsim.analysis import stability as S

from . import _common as C

NAME = "bound_tightness"
DATA = ("gauss3", "gauss10", "white")
STARTS = ("random_0.5", "random_1", "random_2", "near_1", "near_0.1", "near_0.01")
LTOL, GTOL = 1e-12, 1e-8


def constants(N: int) -> tuple[float, float]:
    """The pure constants of T_curv and T_mix: 2 e (1 + 1/N)^{N-1} and sqrt(e) (1 + 1/N)^{N/2-1}."""
    return 2 * math.e * (1 + 1 / N) ** (N - 1), math.sqrt(math.e) * (1 + 1 / N) ** (N / 2 - 1)


def floor_ratio(N: int) -> float:
    """eta_crit/eta* for whitened data, a target with equal singular values, L_0 -> 0 and eta_crit = 2/lambda:
    the sum of the two constants."""
    a, b = constants(N)
    return a + b


def make_problem(N: int, seed: int, data: str) -> tuple[dlnsim.Problem, list[np.ndarray]]:
    """The problem and the paper's balanced start (hidden widths 2) for one data variant."""
    if data == "gauss10":
        setup = dlnsim.paper_setup(N, seed, m=700)
        return setup.problem, S.compress_widths(setup.W0)[0]
    setup = dlnsim.paper_setup(N, seed)
    W0 = S.compress_widths(setup.W0)[0]
    if data == "gauss3":
        return setup.problem, W0
    if data != "white":
        raise ValueError(f"data must be one of {DATA}, got {data!r}")
    p = setup.problem
    w, q = np.linalg.eigh(p.XXt)
    Xw = math.sqrt(p.m / p.d_x) * ((q / np.sqrt(w)) @ q.T) @ p.X  # X X^T = (m/d) I
    return dlnsim.Problem(Xw, p.W_ls @ Xw), W0


def make_start(problem: dlnsim.Problem, W0: list[np.ndarray], N: int, seed: int, start: str) -> list[np.ndarray]:
    kind, _, value = start.partition("_")
    v = float(value)
    if kind == "random":
        return [v * Wj for Wj in W0]
    if kind != "near":
        raise ValueError(f"start must be random_<scale> or near_<eps>, got {start!r}")
    U, s, Vt = np.linalg.svd(problem.W_ls)
    rng = np.random.default_rng(10_000 + seed)
    A = rng.standard_normal((U.shape[0], 2))
    B = rng.standard_normal((Vt.shape[1], 2))
    A *= v / np.linalg.norm(A)
    B *= v / np.linalg.norm(B)
    P = (U[:, :2] + A) @ np.diag(s[:2]) @ (Vt[:2].T + B).T  # rank 2, ~v ||W*|| from the target
    return S.balanced_factors(P, N)


def cell(N: int, seed: int, data: str, start: str, *, n_iter: int, rtol: float) -> xr.Dataset:
    problem, W_paper = make_problem(N, seed, data)
    W0 = make_start(problem, W_paper, N, seed, start)
    bound = dlnsim.stepsize_bound(problem, W0)
    lam = S.balanced_minimum_sharpness(problem, N)
    res = S.stable_critical_stepsize(problem, W0, n_iter=n_iter, bracket=(0.97 * 2 / lam, 1.06 * 2 / lam),
                                     rtol=rtol, factor=1.05, stop=dlnsim.Stop(gtol=GTOL, ltol=LTOL), bound=bound)
    eta = res.eta_crit
    M, L0 = bound.M, bound.L0
    s = float(np.linalg.norm(problem.W_ls, 2))
    nX2, nXY, smin2 = problem.norm_X**2, problem.norm_XYt, problem.lambda_min
    c_curv, c_mix = constants(N)
    T_bal = 4 * N**3 * L0 * M ** (-2 / N)
    T_curv = c_curv * N * M ** (2 - 2 / N) * nX2
    T_mix = c_mix * N * M ** (1 - 2 / N) * nXY
    stab = eta * lam / 2
    f = {
        "eta_crit": (eta, "critical constant stepsize (linear-stability criterion)"),
        "eta_star": (bound.eta, "stepsize bound (5.1) of the start"),
        "eta_star_check": (2 / (T_bal + T_curv + T_mix), "2 / (T_bal + T_curv + T_mix), equal to eta_star"),
        "ratio": (eta / bound.eta, "eta_crit / eta_star"),
        "R_bal": (eta * T_bal / 2, "eta_crit T_bal / 2: the balancedness term 4 L_0/delta of (5.1)"),
        "R_curv": (eta * T_curv / 2, "eta_crit T_curv / 2: the curvature term 2 e N K^{N-1} ||X||^2"),
        "R_mix": (eta * T_mix / 2, "eta_crit T_mix / 2: the mixed term sqrt(e) N K^{N/2-1} ||X Y^T||"),
        "const_curv": (c_curv, "2 e (1 + 1/N)^{N-1}"),
        "const_mix": (c_mix, "sqrt(e) (1 + 1/N)^{N/2-1}"),
        "norm_factor_curv": ((M / s) ** (2 - 2 / N), "(M / ||W*||)^{2-2/N}: the a-priori norm bound against the "
                                                     "actual minimiser"),
        "norm_factor_mix": ((M / s) ** (1 - 2 / N), "(M / ||W*||)^{1-2/N}"),
        "data_factor_curv": (N * nX2 * s ** (2 - 2 / N) / lam, "N ||X||^2 ||W*||^{2-2/N} / lambda_max"),
        "data_factor_mix": (N * nXY * s ** (1 - 2 / N) / lam, "N ||X Y^T|| ||W*||^{1-2/N} / lambda_max"),
        "stability_factor": (stab, "eta_crit lambda_max / 2 (lambda_max at the balanced global minimiser)"),
        "M": (M, "M of (2.11)"),
        "M_loss_part": (problem.norm_X * math.sqrt(2 * L0) / smin2 / s, "||X|| sqrt(2 L_0) / (sigma_min(X)^2 "
                                                                        "||W*||): the initial-loss part of M/||W*||"),
        "M_data_part": (nXY / smin2 / s, "||X Y^T|| / (sigma_min(X)^2 ||W*||): the conditioning part of M/||W*||"),
        "initial_loss": (L0, "L^N at the start"),
        "condition_XXt": (problem.lambda_max / problem.lambda_min, "condition number of X X^T"),
        "sharpness_min": (lam, "lambda_max at the balanced global minimiser (closed form)"),
        "target_norm": (s, "||W*|| (spectral)"),
    }
    data_vars = {k: ((), float(v), {"units": "1", "long_name": ln}) for k, (v, ln) in f.items()}
    return xr.Dataset(data_vars, attrs={"search_status": res.status, "criterion": res.criterion})


def _config(quick: bool) -> dict[str, Any]:
    if quick:
        return {"depths": [2, 3], "seeds": [0], "data": ["gauss3", "white"],
                "starts": ["random_1", "near_0.1", "near_0.01"], "n_iter": 20000, "rtol": 0.01}
    return {"depths": [2, 3], "seeds": [0, 1], "data": list(DATA), "starts": list(STARTS), "n_iter": 20000,
            "rtol": 0.005}


def compute(quick: bool, *, directory: Path | None = None, executor: Any = "threads", workers: int | None = None,
            scheduler: str | None = None) -> xr.Dataset:
    cfg = _config(quick)
    engine: dict[str, Any] = {"executor": executor, "workers": workers}
    if scheduler is not None:
        engine["scheduler"] = scheduler
    if directory is not None:
        Path(directory).parent.mkdir(parents=True, exist_ok=True)
    axes = {"N": cfg["depths"], "seed": cfg["seeds"], "data": cfg["data"], "start": cfg["starts"]}
    ds = dlnsim.run_grid(directory, cell, axes, params={"n_iter": cfg["n_iter"], "rtol": cfg["rtol"]},
                         label=NAME, progress=sys.stderr.isatty(), **engine)
    if "status" in ds and np.isin(ds["status"].values, ["error", "not_run"]).any():
        msg = str(np.asarray(ds["error"].values).ravel()[0]) if "error" in ds else "not run"
        raise RuntimeError(f"{NAME}: a cell failed: {msg}")
    criterion = ds.attrs.get("criterion", S.STABLE_CRITERION)
    if "search_status" in ds.attrs:
        ds["search_status"] = xr.DataArray(np.full(tuple(ds.sizes[a] for a in axes), ds.attrs["search_status"],
                                                   dtype=object), dims=tuple(axes))
    ds["search_status"] = ds["search_status"].astype(str).assign_attrs(long_name="status of the search")
    ds = ds.drop_vars([v for v in ("status", "error") if v in ds.variables])
    ds.attrs = {}
    ds["floor_ratio"] = xr.DataArray([floor_ratio(int(N)) for N in ds["N"].values], dims="N", attrs={
        "units": "1", "long_name": "const_curv + const_mix: eta_crit/eta_star for whitened data, L_0 -> 0, "
                                  "eta_crit = 2/lambda_max"})
    ds["ratio_median"] = ds["ratio"].median("seed").assign_attrs(units="1", long_name="median over seeds of ratio")
    for name, lname in (("N", "depth N"), ("seed", "seed of dlnsim.paper_setup(N, seed)"),
                        ("data", "data variant"), ("start", "start variant")):
        ds[name].attrs.update(long_name=lname)
        if ds[name].dtype.kind in "iuf":
            ds[name].attrs["units"] = "1"
    for v in ds.variables.values():  # self-describing: units on every variable ("1" for text, as elsewhere)
        v.attrs.setdefault("units", "1")
    ds.attrs.update({
        "title": f"dlnsim study {NAME}" + (" (quick variant)" if quick else ""),
        "study": NAME,
        "description": "eta_crit / eta* of (5.1) against the data conditioning, the start and N, with the bound "
                       "split into its terms and factors",
        "quick": int(quick),
        "command": f"python -m studies {'--quick ' if quick else ''}{NAME}",
        "source": f"studies/{NAME}.py",
        "data_variants": "gauss3: dlnsim.paper_setup(N, seed) (X_ij ~ N(0, 1/d), m = 3d); gauss10: the same with "
                         "m = 10d; white: the gauss3 X mapped to sqrt(m/d) (X X^T)^{-1/2} X (X X^T = 3 I); "
                         "Y = W* X with the paper's target W* (two unit singular values)",
        "start_variants": "random_c = the paper's balanced start with every factor times c; near_eps = a "
                          "balanced factorisation of (U + A) S (V + B)^T with ||A||_F = ||B||_F = eps (W* = U S V^T)",
        "criterion": criterion,
        "n_iter": cfg["n_iter"],
        "rtol": cfg["rtol"],
        "ltol": LTOL,
        "gtol": GTOL,
        **dlnsim.io.dataset.provenance(),
    })
    return ds


def plot(ds: xr.Dataset, outdir: Path) -> list[Path]:
    plt = C.pyplot()
    fig, axs = plt.subplots(1, 2, figsize=(7.0, 3.4), constrained_layout=True)
    ax1, ax2 = axs
    starts = [str(s) for s in ds["start"].values]
    x = np.arange(len(starts))
    markers = {"gauss3": "o", "gauss10": "s", "white": "^"}
    colors = {2: "#0072B2", 3: "#D55E00"}
    for N in ds["N"].values:
        for data in ds["data"].values:
            y = ds["ratio"].sel(N=N, data=data).transpose("seed", "start").values
            ax1.plot(x, np.nanmedian(y, axis=0), marker=markers.get(str(data), "o"), color=colors.get(int(N), "k"),
                     ms=4, lw=0.8, label=f"N={int(N)}, {data}")
        ax1.axhline(float(ds["floor_ratio"].sel(N=N)), color=colors.get(int(N), "k"), ls=":", lw=0.8)
    ax1.axhline(10.0, color="k", lw=0.6)
    ax1.annotate("10x", (len(starts) - 1, 10.0), textcoords="offset points", xytext=(4, 3), fontsize=7)
    ax1.set_yscale("log")
    ax1.set_ylim(7.0, 8e3)
    ax1.set_xticks(x)
    ax1.set_xticklabels(starts, rotation=40, ha="right")
    ax1.set_ylabel(r"$\eta_{\rm crit}/\eta^*$ (median over seeds)")
    ax1.set_title("(a) how conservative (5.1) is; dotted: constants only", loc="left")
    ax1.legend(loc="upper right", fontsize=6, ncol=2)
    # term-by-term factors for the paper's setting and the tightest one
    cases = [("gauss3", "random_1"), ("white", starts[-1])]
    names = [("const_curv", "constants"), ("norm_factor_curv", r"$(M/\|W^*\|)^{2-2/N}$"),
             ("data_factor_curv", "data factor"), ("stability_factor", "stability"),
             ("R_bal", r"$R_{\rm bal}$"), ("R_mix", r"$R_{\rm mix}$"), ("ratio", "ratio")]
    width = 0.8 / (len(cases) * ds.sizes["N"])
    xi = np.arange(len(names))
    j = 0
    for N in ds["N"].values:
        for data, start in cases:
            if data not in ds["data"].values or start not in starts:
                continue
            vals = [float(ds[n].sel(N=N, data=data, start=start).median("seed")) for n, _ in names]
            ax2.bar(xi + (j - 1.5) * width, vals, width, label=f"N={int(N)}, {data}, {start}",
                    color=colors.get(int(N), "k"), alpha=0.45 + 0.5 * (data == "white"))
            j += 1
    ax2.set_yscale("log")
    ax2.axhline(1.0, color="k", lw=0.6)
    ax2.set_xticks(xi)
    ax2.set_xticklabels([lab for _, lab in names], rotation=40, ha="right")
    ax2.set_title(r"(b) $R_{\rm curv}$ = product of the first four", loc="left")
    ax2.legend(loc="upper left", fontsize=6)
    fig.suptitle("Tightness of the bound (5.1): critical stepsize over the bound, term by term", fontsize=9)
    return C.save_figure(fig, outdir, NAME)


#: compute, write ``<outdir>/NAME.nc`` and the figure (see `studies._common.run_study`)
run = functools.partial(C.run_study, NAME)


def summary(ds: xr.Dataset) -> list[str]:
    lines = []
    for N in ds["N"].values:
        for data in ds["data"].values:
            r = ds["ratio"].sel(N=N, data=data).median("seed")
            parts = ", ".join(f"{s}: {float(v):.3g}" for s, v in zip(ds["start"].values, r.values, strict=True))
            lines.append(f"N={int(N)} {data}: eta_crit/eta* {parts}")
        best = ds["ratio"].sel(N=N).min()
        where = ds["ratio"].sel(N=N).where(ds["ratio"].sel(N=N) == best, drop=True)
        lines.append(f"N={int(N)}: smallest ratio {float(best):.3g} at "
                     + ", ".join(f"{d}={where[d].values[0]}" for d in ("seed", "data", "start"))
                     + f"; constants alone give {float(ds['floor_ratio'].sel(N=N)):.3f}")
    return lines


__all__ = ["NAME", "cell", "compute", "constants", "floor_ratio", "make_problem", "make_start", "plot", "run",
           "summary"]
