"""Out-of-sample test of the stability-threshold prediction: the same instance with other input data.

On the paper's data (X with i.i.d. N(0, 1/d) entries, m = 3d) the two predictions of eta_crit, 2/lambda_max at the
balanced minimiser (eta_bal) and at the flattest minimiser (eta_flat), differ by at most a few per cent, and by
less than the seed-to-seed spread for N >= 5.  Here the start W(0) and the target W~ of ``dlnsim.paper_setup(N,
seed)`` are kept and X is replaced by

* ``whitened``: X' = (c C^{-1/2}) X with C = X X^T and c^2 its mean eigenvalue, so X' X'^T = c^2 I: every
  minimiser with the product W~ has the balanced one's sharpness or more, and eta_flat = eta_bal;
* ``anisotropic``: X' = Q diag(a)^{1/2} Q^T C^{-1/2} X with C = Q diag(w) Q^T, the eigenvalues a geometric from
  mean(w)/10 to 10 mean(w) in the order of w (condition number 100): eta_flat exceeds eta_bal by 4-30 %;

with Y' = W~ X'.  eta_crit is found with the criterion and the search of the stability-threshold study (horizon
2e4, GD continued past a first tolerance hit at an unstable point), from a bracket [0.9 x eta_bal, 1.001 x
eta_flat] (the upper end taken as failing), and compared with both predictions.
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
from dlnsim.analysis.minima import flattest_minimum

from . import _common as C

NAME = "out_of_sample"
DATA_KINDS = ("whitened", "anisotropic")
#: condition number of X' X'^T of the anisotropic data
CONDITION = 100.0
LTOL, GTOL = 1e-12, 1e-8
STOP = dlnsim.Stop(gtol=GTOL, ltol=LTOL)
BRACKET = (0.9, 1.001)  # lower end x eta_bal (run), upper end x eta_flat (taken as failing)
FACTOR = 1.01
LANCZOS = {"iters": 400, "tol": 1e-11}


def variant(problem: dlnsim.Problem, kind: str, condition: float = CONDITION) -> dlnsim.Problem:
    """The instance with X replaced (module docstring) and Y' = W~ X' (W~ = the least-squares product of the
    original instance, its target)."""
    X = np.asarray(problem.X)
    w, Q = np.linalg.eigh(X @ X.T)
    if kind == "whitened":
        a = np.full_like(w, w.mean())
    elif kind == "anisotropic":
        a = w.mean() * np.geomspace(1.0 / math.sqrt(condition), math.sqrt(condition), w.size)
    else:
        raise ValueError(f"kind must be one of {DATA_KINDS}, got {kind!r}")
    Xn = (Q * np.sqrt(a / w)) @ Q.T @ X
    return dlnsim.Problem(Xn, np.asarray(problem.W_ls) @ Xn)


def cell(N: int, seed: int, data: str, *, n_iter: int, rtol: float) -> xr.Dataset:
    setup = dlnsim.paper_setup(N, seed)
    problem = variant(setup.problem, data)
    W0, _ = S.compress_widths(setup.W0)
    lam_bal = S.balanced_minimum_sharpness(problem, N)
    flat = flattest_minimum(problem, N)
    eta_bal, eta_flat = 2.0 / lam_bal, 2.0 / flat.sharpness
    res = S.stable_critical_stepsize(problem, W0, n_iter=n_iter,
                                     bracket=(BRACKET[0] * eta_bal, BRACKET[1] * max(eta_flat, eta_bal)),
                                     rtol=rtol, factor=FACTOR, stop=STOP, sharpness_tol=LANCZOS["tol"],
                                     assume_bracket="upper")
    i = res.trial_eta.index(res.eta_crit) if res.eta_crit in res.trial_eta else -1
    reached = res.trial_sharpness[i] if i >= 0 else math.nan
    w = np.linalg.eigvalsh(problem.XXt)

    def v(x: Any, long_name: str) -> tuple[tuple[()], float, dict[str, str]]:
        return ((), float(x), {"units": "1", "long_name": long_name})

    return xr.Dataset({
        "eta_crit": v(res.eta_crit, "critical constant stepsize (criterion of the stability-threshold study)"),
        "eta_hi": v(res.eta_hi, "smallest failing stepsize of the final bracket"),
        "sharpness_min": v(lam_bal, "lambda_max at the balanced minimiser with the target product (closed form)"),
        "sharpness_flat": v(flat.sharpness, "lambda_max at the flattest minimiser with that product"),
        "reached_sharpness": v(reached, "lambda_max where GD at eta_crit ended"),
        "settle_crit": v(res.trial_settle_iteration[i] if i >= 0 else math.nan,
                         "iteration from which GD at eta_crit stayed within the tests"),
        "condition": v(w[-1] / w[0], "condition number of X X^T"),
        "n_trials": v(len(res.trial_eta), "trial runs of the search"),
    }, attrs={"search_status": res.status})


def _config(quick: bool) -> dict[str, Any]:
    if quick:
        return {"depths": [2, 5], "seeds": [0], "n_iter": 20000, "rtol": 0.004}
    return {"depths": [2, 3, 5, 8], "seeds": [0, 1], "n_iter": 20000, "rtol": 0.002}


def compute(quick: bool, *, directory: Path | None = None, executor: Any = "threads", workers: int | None = None,
            scheduler: str | None = None) -> xr.Dataset:
    cfg = _config(quick)
    engine: dict[str, Any] = {"executor": executor, "workers": workers}
    if scheduler is not None:
        engine["scheduler"] = scheduler
    if directory is not None:
        Path(directory).parent.mkdir(parents=True, exist_ok=True)
    ds = dlnsim.run_grid(directory, cell, {"N": cfg["depths"], "seed": cfg["seeds"], "data": list(DATA_KINDS)},
                         params={"n_iter": cfg["n_iter"], "rtol": cfg["rtol"]}, label=NAME,
                         cost=lambda p: float(p["N"]), progress=sys.stderr.isatty(), **engine)
    if "status" in ds and np.isin(ds["status"].values, ["error", "not_run"]).any():
        msg = str(np.asarray(ds["error"].values).ravel()[0]) if "error" in ds else "not run"
        raise RuntimeError(f"{NAME}: a cell failed: {msg}")
    dims = ("N", "seed", "data")
    if "search_status" in ds.attrs:
        ds["search_status"] = xr.DataArray(np.full(tuple(ds.sizes[d] for d in dims), ds.attrs["search_status"],
                                                   dtype=object), dims=dims)
    ds["search_status"] = ds["search_status"].astype(str).assign_attrs(long_name="status of the search")
    ds = ds.drop_vars([x for x in ("status", "error") if x in ds.variables])
    ds.attrs = {}

    def var(name: str, value: xr.DataArray, long_name: str) -> None:
        ds[name] = value.assign_attrs(units="1", long_name=long_name)

    var("eta_sharpness", 2.0 / ds["sharpness_min"], "2 / sharpness_min (balanced prediction)")
    var("eta_flat", 2.0 / ds["sharpness_flat"], "2 / sharpness_flat (flattest prediction)")
    var("flat_gain", ds["eta_flat"] / ds["eta_sharpness"] - 1.0, "eta_flat / eta_sharpness - 1")
    var("ratio_sharpness", ds["eta_crit"] / ds["eta_sharpness"], "eta_crit / eta_sharpness")
    var("ratio_flat", ds["eta_crit"] / ds["eta_flat"], "eta_crit / eta_flat")
    var("resolution", ds["eta_hi"] / ds["eta_crit"] - 1.0, "eta_hi / eta_crit - 1")
    var("reached_over_flat", ds["reached_sharpness"] / ds["sharpness_flat"],
        "lambda_max where GD at eta_crit ended / sharpness_flat")
    for name in ("ratio_sharpness", "ratio_flat", "flat_gain"):
        for stat in ("min", "max"):
            var(f"{name}_{stat}", getattr(ds[name], stat)(("N", "seed")), f"{stat} over N and seed of {name}")
    for name, lname in (("N", "depth N"), ("seed", "seed of dlnsim.paper_setup(N, seed) (start and target)"),
                        ("data", "input data: whitened (X X^T = c I) or anisotropic (condition number "
                                 f"{CONDITION:g})")):
        ds[name].attrs.update(long_name=lname)
        if ds[name].dtype.kind not in "OUS":
            ds[name].attrs["units"] = "1"
    ds.attrs.update(C.study_attrs(
        NAME, quick, "critical stepsize of GD against 2/lambda_max at the balanced and at the flattest minimiser, "
                     "on the Section-5 start and target with whitened and with anisotropic input data",
        setup_call="dlnsim.paper_setup(N, seed) with X replaced (studies.out_of_sample.variant), hidden widths "
                   "compressed to 2",
        criterion=S.STABLE_CRITERION, horizon=cfg["n_iter"], rtol=cfg["rtol"], ltol=LTOL, gtol=GTOL,
        condition_anisotropic=CONDITION, bracket=f"[{BRACKET[0]} x eta_bal, {BRACKET[1]} x eta_flat], the upper "
                                                 "end taken as failing"))
    return ds


run = functools.partial(C.run_study, NAME)


def plot(ds: xr.Dataset, outdir: Path) -> list[Path]:
    plt = C.pyplot()
    fig, axs = plt.subplots(1, 2, figsize=(7.0, 3.0), constrained_layout=True, sharey=True)
    Ns = ds["N"].values.astype(float)
    for ax, name, title in ((axs[0], "ratio_flat", r"$\eta_{\rm crit}/\eta_{\rm flat}$"),
                            (axs[1], "ratio_sharpness", r"$\eta_{\rm crit}/\eta_{\rm bal}$")):
        for kind, color, marker in (("whitened", "#0072B2", "o"), ("anisotropic", "#D55E00", "s")):
            for j, s in enumerate(ds["seed"].values):
                y = ds[name].sel(data=kind, seed=s).values
                ax.plot(Ns * (1 + 0.03 * (j - 0.5)), y, marker, color=color, ms=4, mfc="none" if j else None,
                        label=f"{kind}, seed {int(s)}")
        ax.axhline(1.0, color="0.5", lw=0.6)
        ax.set_xscale("log")
        ax.set_xticks(Ns)
        ax.set_xticklabels([f"{int(n)}" for n in Ns])
        ax.set_xlabel("depth $N$")
        ax.set_title(title, loc="left")
    axs[0].legend(loc="lower left", fontsize=6)
    fig.suptitle("Out of sample: the same starts and targets with whitened and anisotropic X "
                 f"({int(ds.attrs['horizon'])} steps)", fontsize=9)
    return C.save_figure(fig, outdir, NAME)


def summary(ds: xr.Dataset) -> list[str]:
    lines = []
    for kind in ds["data"].values:
        d = ds.sel(data=kind)
        lines.append(f"{kind}: eta_crit/eta_flat {float(d.ratio_flat.min()):.4f}-{float(d.ratio_flat.max()):.4f}, "
                     f"eta_crit/eta_bal {float(d.ratio_sharpness.min()):.4f}-{float(d.ratio_sharpness.max()):.4f}, "
                     f"eta_flat/eta_bal - 1 {float(d.flat_gain.min()):.4f}-{float(d.flat_gain.max()):.4f}")
    return lines


__all__ = ["NAME", "cell", "compute", "plot", "run", "summary", "variant"]
