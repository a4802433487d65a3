"""Published convergence theorems on numbers: which admits the start, which stepsize each allows, how many
iterations each predicts, and how far each is from what GD does.

Families of instances (``family``), each at depths N in (2, 3, 5, 10, 20, 30) and 8 seeds:

* ``paper``: the reference paper's Section-5 instance (``dlnsim.paper_setup(N, seed)``, hidden widths compressed
  to 2, `_common.compressed_paper`: the same trajectory);
* ``whitened``: Arora-Cohen-Golowich-Hu's setting: unit-whitened data X X^T = I (d_x = d_y = 4, m = 8), a
  full-rank target Phi = I + 0.2 E/||E||_F, widths 4, start = Procedure 1 (balanced) of Phi + 0.1 F/||F||_F
  (a deficiency margin);
* ``wide_gaussian`` / ``wide_orthogonal``: d_x = d_y = 4, m = 12, X with iid N(0, 1/4) entries, Y = W~ X with
  iid N(0, 1/4) target entries, equal hidden widths h = 32; Du-Hu's Gaussian start / Hu-Xiao-Pennington's
  scaled orthogonal start (both in our units, `dlnsim.theory.starts`);
* ``scalar``: scalar output d_y = 1, unit-whitened data (d_x = 16, m = 32), ||Phi|| = 1, hidden widths 4,
  ACGH's Procedure-1 start from a product with iid N(0, s^2) entries, s = ||Phi||/(10 d_x) (the scale ACGH's
  Theorem 2 asks for with their example constant a = 100).

For every theorem x family x N x seed (``dlnsim.theory.published.theorem``): admitted or not and the failing
hypotheses, the number of not-checkable hypotheses, eta_theorem (our units) and eta_theorem / eta_crit, the
predicted iterations to an excess loss eps = 1e-3 (L(0) - L*) at eta_theorem, the measured ones (for the admitted
theorems: a GD run at eta_theorem of at most ``n_cap`` steps that stops when L - L* <= eps; NaN = not reached
within n_cap) and the largest ratio of the measured excess loss to the theorem's envelope along that run
(theorems with a rate).  The runs are done for N <= 10; for N > 10 only the stepsizes and eta_crit.  eta_crit is
``dlnsim.critical_stepsize`` with a short horizon (the largest constant stepsize found whose run reaches 1e-3 of
the initial excess loss, and half the lowest saddle's, within ``horizon`` x max(1, N // 5) steps without
diverging).  Depth dependence: local
exponents d log eta / d log N of the medians over seeds.  The cells run as plain loops on a thread pool (the
kernels release the GIL).
"""

from __future__ import annotations

import functools
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

import dlnsim
import dlnsim.plot as P
from dlnsim.theory import starts
from dlnsim.theory.published import theorem
from dlnsim.theory.theorems import TheoremReport, envelope_ratio

from . import _common as C

__all__ = ["FAMILIES", "NAME", "THEOREMS", "cell", "compute", "instance", "plot", "run", "summary"]

NAME = "theorems"
#: ``run(quick, outdir, cells=None, **engine)``: compute, write ``<outdir>/<NAME>.nc`` and the figure
run = functools.partial(C.run_study, NAME)
FAMILIES = ("paper", "whitened", "wide_gaussian", "wide_orthogonal", "scalar")
THEOREMS = ("nrt2024", "nrt2024_remark2.5", "acgh2019", "acgh2019_thm2", "du_hu2019", "hxp2020", "ec2021",
            "ach2018")
#: depths with GD runs at the theorems' stepsizes; deeper ones only get the stepsizes and eta_crit
RUN_DEPTHS = (2, 3, 5, 10)
DEEP = (20, 30)
EPS_REL = 1e-3
WIDE_H = 32


def instance(family: str, N: int, seed: int) -> tuple[dlnsim.Problem, list[np.ndarray], dict[str, Any]]:
    """(problem, W0, theorem parameters) of ``family`` at depth ``N`` from ``seed`` (module docstring)."""
    rng = np.random.default_rng(seed)
    if family == "paper":
        problem, W0 = C.compressed_paper(N, seed)
        return problem, W0, {}
    if family == "whitened":
        d = 4
        X = np.linalg.qr(rng.standard_normal((2 * d, d)))[0].T
        E, F = rng.standard_normal((d, d)), rng.standard_normal((d, d))
        Phi = np.eye(d) + 0.2 * E / np.linalg.norm(E)
        return dlnsim.Problem(X, Phi @ X), starts.procedure1_init([d] * (N + 1), Phi + 0.1 * F / np.linalg.norm(F)), {}
    if family in ("wide_gaussian", "wide_orthogonal"):
        d, m = 4, 12
        X = rng.normal(0.0, 0.5, (d, m))
        Y = rng.normal(0.0, 0.5, (d, d)) @ X
        widths = (d, *([WIDE_H] * (N - 1)), d)
        W0 = starts.du_hu_init(widths, rng) if family == "wide_gaussian" else starts.hxp_init(widths, rng)
        return dlnsim.Problem(X, Y), W0, {}
    if family == "scalar":
        d, m = 16, 32
        X = np.linalg.qr(rng.standard_normal((m, d)))[0].T
        phi = rng.standard_normal((1, d))
        phi /= np.linalg.norm(phi)
        s = 1.0 / (10 * d)
        W0 = starts.acgh_random_init((d, *([4] * (N - 1)), 1), rng, s)
        return dlnsim.Problem(X, phi @ X), W0, {"acgh2019_thm2": {"s": s}}
    raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")


def _report(name: str, problem: dlnsim.Problem, W0: list[np.ndarray], params: dict[str, Any]) -> TheoremReport | None:
    if name == "acgh2019_thm2" and name not in params:
        return None  # needs the standard deviation s of its random start: only the scalar family has one
    return theorem(name, problem, W0, **params.get(name, {}))


def cell(family: str, N: int, seed: int, n_cap: int, horizon: int) -> dict[str, Any]:
    """Every theorem on one instance, eta_crit, and the GD runs at the theorems' stepsizes (N <= 10)."""
    problem, W0, params = instance(family, N, seed)
    crit = dlnsim.critical_stepsize(problem, W0, n_iter=horizon * max(1, N // 5), bracket=(0.01, 0.1), rtol=0.1)
    out: dict[str, Any] = {"eta_crit": crit.eta_crit, "crit_status": crit.status}
    rows = []
    for name in THEOREMS:
        t = _report(name, problem, W0, params)
        row: dict[str, Any] = {"admitted": math.nan, "certified": math.nan, "failing": "", "n_unchecked": math.nan,
                               "eta": math.nan, "predicted": math.nan, "measured": math.nan,
                               "max_envelope_ratio": math.nan, "final_excess_ratio": math.nan}
        if t is not None:
            eps = EPS_REL * t.excess0
            row.update(admitted=float(t.admitted), certified=float(t.certified),
                       failing=",".join(h.key for h in t.failing), n_unchecked=float(len(t.unchecked)), eta=t.eta)
            if t.kind == "gd" and math.isfinite(t.eta) and t.eta > 0:
                row["predicted"] = t.iterations(eps)
                if N in RUN_DEPTHS and t.admitted:
                    runs = dlnsim.run_gd(problem, W0, t.eta, n_cap, record="log:80",
                                         stop=dlnsim.Stop(gtol=0.0, ltol=EPS_REL, early=True))
                    k = int(runs["ltol_iteration"].item())
                    row["measured"] = float(k) if k >= 0 else math.nan
                    row["final_excess_ratio"] = float(runs["final_excess_loss"].item()) / t.excess0
                    if t.has_rate:
                        row["max_envelope_ratio"] = envelope_ratio(t, runs).attrs["max_ratio"]
        rows.append(row)
    for key in rows[0]:
        out[key] = [r[key] for r in rows]
    return out


LONG_NAMES = {
    "admitted": "1 if every checkable hypothesis of the theorem holds on the instance, 0 if one fails (NaN: not "
                "evaluated)",
    "certified": "1 if every hypothesis was checkable and holds",
    "failing": "the hypotheses that fail on the instance (comma-separated keys)",
    "n_unchecked": "number of hypotheses that are not checkable (a constant the source does not give)",
    "eta": "eta_theorem: the largest constant stepsize the theorem admits, our units (NaN: none)",
    "eta_ratio": "eta_theorem / eta_crit",
    "eta_crit": "eta_crit: the largest constant stepsize found (bisection) whose run reaches 1e-3 of the initial "
                "excess loss, and half the lowest saddle's, within the horizon without diverging",
    "crit_status": "status of the eta_crit search",
    "predicted": "iterations the theorem predicts to reach L - L* <= 1e-3 (L(0) - L*) at eta_theorem",
    "measured": "iterations GD at eta_theorem needed to reach L - L* <= 1e-3 (L(0) - L*) (NaN: not within n_cap)",
    "final_excess_ratio": "(L - L*) / (L(0) - L*) where the run at eta_theorem ended",
    "max_envelope_ratio": "largest (L(k) - L*) / envelope(k) along the run at eta_theorem (theorems with a rate)",
    "eta_median": "median over seeds of eta_theorem",
    "eta_ratio_median": "median over seeds of eta_theorem / eta_crit",
    "local_exponent": "local exponent log(eta(N_hi)/eta(N_lo)) / log(N_hi/N_lo) of the median eta_theorem",
}


def compute(quick: bool, *, directory: Path | None = None, executor: Any = "threads", workers: int | None = None,
            scheduler: str | None = None) -> xr.Dataset:
    """The study's Dataset.  Plain loops on a thread pool (``workers``, default one per core); ``directory``,
    ``executor`` and ``scheduler`` are accepted for the common interface and not used (no cell files)."""
    depths = [2, 3, 5, 10] if quick else [*RUN_DEPTHS, *DEEP]
    seeds = list(range(2)) if quick else list(range(8))
    n_cap, horizon = (1000, 200) if quick else (2000, 200)
    points = [(f, N, s) for f in FAMILIES for N in depths for s in seeds]
    n_workers = workers or os.cpu_count() or 1
    call = functools.partial(_cell_point, n_cap=n_cap, horizon=horizon)
    if executor == "serial" or n_workers == 1:
        results = [call(p) for p in points]
    else:
        with ThreadPoolExecutor(n_workers) as pool:
            results = list(pool.map(call, points))
    shape = (len(FAMILIES), len(depths), len(seeds))
    per_theorem = ("admitted", "certified", "failing", "n_unchecked", "eta", "predicted", "measured",
                   "max_envelope_ratio", "final_excess_ratio")
    data: dict[str, Any] = {}
    for key in per_theorem:
        values = np.array([r[key] for r in results], dtype=object if key == "failing" else float)
        data[key] = (("family", "N", "seed", "theorem"), values.reshape(*shape, len(THEOREMS)))
    for key in ("eta_crit", "crit_status"):
        values = np.array([r[key] for r in results], dtype=object if key == "crit_status" else float)
        data[key] = (("family", "N", "seed"), values.reshape(shape))
    ds = xr.Dataset(data, coords={"family": list(FAMILIES), "N": depths, "seed": seeds, "theorem": list(THEOREMS)})
    ds["eta_ratio"] = ds["eta"] / ds["eta_crit"]
    ds["eta_median"] = ds["eta"].median("seed")
    ds["eta_ratio_median"] = ds["eta_ratio"].median("seed")
    Ns = np.asarray(depths, dtype=float)
    expo = np.apply_along_axis(lambda y: C.local_exponents(Ns, y), ds["eta_median"].get_axis_num("N"),
                               ds["eta_median"].values)
    ds = ds.assign_coords(N_lo=("N_interval", np.asarray(depths[:-1])), N_hi=("N_interval", np.asarray(depths[1:])))
    ds["local_exponent"] = (("family", "N_interval", "theorem"), expo)
    for name, long_name in LONG_NAMES.items():
        ds[name].attrs.update({"long_name": long_name} | ({} if ds[name].dtype.kind in "OUS" else {"units": "1"}))
    C.describe(ds, {"N": C.DEPTH, "seed": "seed of the instance", "N_lo": "smaller depth of the interval",
                    "N_hi": "larger depth of the interval"})
    ds["family"].attrs["long_name"] = "instance family (see the attribute families)"
    ds["theorem"].attrs["long_name"] = "theorem (dlnsim.theory.published.theorem name)"
    ds.attrs.update(C.study_attrs(NAME, quick, "published convergence theorems on instance families: admission, "
                                               "stepsizes against eta_crit, predicted vs measured iterations, "
                                               "envelope ratios"))
    ds.attrs.update({"families": __doc__.split("Families of instances", 1)[1].split("For every theorem", 1)[0]
                     .strip() if __doc__ else "", "eps_rel": EPS_REL, "n_cap": n_cap, "horizon": horizon,
                     "run_depths": list(RUN_DEPTHS), "wide_width": WIDE_H})
    return ds


def _cell_point(point: tuple[str, int, int], n_cap: int, horizon: int) -> dict[str, Any]:
    family, N, seed = point
    return cell(family, N, seed, n_cap, horizon)


def _median_flag(ds: xr.Dataset, family: str, name: str, key: str) -> float:
    v = ds[key].sel(family=family, theorem=name).values.astype(float)
    return float(np.nanmin(v)) if np.isfinite(v).any() else math.nan


def summary(ds: xr.Dataset) -> list[str]:
    """Headline numbers: per family which theorems admit every seed, their eta / eta_crit at the smallest and
    largest depth, and the largest envelope ratio where admitted."""
    lines = []
    Ns = ds["N"].values
    for f in ds["family"].values:
        parts = []
        for name in ds["theorem"].values:
            adm = ds["admitted"].sel(family=f, theorem=name).values.astype(float)
            if not np.isfinite(adm).any():
                continue
            frac = float(np.nanmean(adm))
            r = ds["eta_ratio_median"].sel(family=f, theorem=name).values
            env = ds["max_envelope_ratio"].sel(family=f, theorem=name).where(
                ds["admitted"].sel(family=f, theorem=name) == 1).values
            text = f"{name}: admitted {frac:.0%}"
            if np.isfinite(r).any():
                text += f", eta/eta_crit {C.fmt_e(float(r[0]))} (N={int(Ns[0])}) .. {C.fmt_e(float(r[-1]))} " \
                        f"(N={int(Ns[-1])})"
            if np.isfinite(env).any():
                text += f", max envelope ratio {float(np.nanmax(env)):.3g}"
            parts.append(text)
        lines.append(f"{f}: " + "; ".join(parts))
    return lines


def plot(ds: xr.Dataset, outdir: Path) -> list[Path]:
    """One panel per family: eta_theorem / eta_crit (median over seeds) against N, log scale, every theorem
    with a stepsize; solid where every seed is admitted, dashed where some hypothesis fails."""
    styles = {"nrt2024": ("C0", "o"), "nrt2024_remark2.5": ("C0", "s"), "acgh2019": ("C1", "^"),
              "acgh2019_thm2": ("C1", "v"), "du_hu2019": ("C2", "D"), "hxp2020": ("C3", "P")}
    with P.style():
        fig, axes = P.subplots(1, len(ds["family"]), figsize=(12.0, 3.6))
        for ax, f in zip(np.ravel(axes), ds["family"].values, strict=True):
            for name, (color, marker) in styles.items():
                y = ds["eta_ratio_median"].sel(family=f, theorem=name).values
                if not np.isfinite(y).any():
                    continue
                adm = ds["admitted"].sel(family=f, theorem=name).values.astype(float)
                all_admitted = bool(np.all(adm[np.isfinite(adm)] == 1))
                ax.loglog(ds["N"].values, y, marker=marker, color=color, ls="-" if all_admitted else "--",
                          mfc=color if all_admitted else "white", ms=4, lw=1,
                          label=name + ("" if all_admitted else " (fails in some seed)"))
            ax.set_title(str(f), loc="left")
            ax.set_xlabel("depth $N$")
            P.plain_log_ticks(ax, "x")
            ax.legend(fontsize=6, loc="lower left")
        np.ravel(axes)[0].set_ylabel(r"$\eta_{\rm theorem}/\eta_{\rm crit}$ (median over seeds)")
        fig.suptitle("Published GD theorems: allowed constant stepsize over the critical one, per instance family "
                     "(dashed, open: a checkable hypothesis fails)", fontsize=9)
    return C.save_figure(fig, outdir, NAME)
