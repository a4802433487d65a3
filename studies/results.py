"""The README's "## Results" headlines and the docs' Results page, rendered from the archived ``data/*.nc``.

``python -m studies.results`` prints the README section; ``--write`` puts it into README.md (replacing only that
section) and writes docs/results.md (the full results: every study's text, figures and detailed tables);
``--check`` exits 1 when either file differs from what the data give; ``--data DIR`` reads another directory.

Every number of the text goes through a `Numbers` collector, which formats it from a value read from the data and
remembers the pair: tests/test_results_numbers.py renders both texts again, compares them with README.md and
docs/results.md, and checks each number against the data.  The template itself holds no number other than
equation, theorem and figure references and the exponents of formulas (the test renders it with every number
blanked out and looks).
"""

from __future__ import annotations

import argparse
import math
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

import dlnsim

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
README = ROOT / "README.md"
RESULTS_PAGE = ROOT / "docs" / "results.md"
HEADING = "## Results"

__all__ = ["HEADING", "Numbers", "headlines", "main", "readme_section", "render", "replace_section"]


@dataclass
class Numbers:
    """Formats numbers read from the data and remembers each as (text, value, key).

    With ``blank=True`` every number is rendered as ``#`` (for the test that the template types no number).
    """

    blank: bool = False
    items: list[tuple[str, float, str]] = field(default_factory=list)

    def _add(self, text: str, value: float, key: str) -> str:
        self.items.append((text, float(value), key))
        return "#" if self.blank else text

    def e(self, x: Any, digits: int = 2, key: str = "") -> str:
        """3.64e-05 -> '3.64e-5' (mantissa with ``digits`` decimals)."""
        x = float(x)
        mant, exp = f"{x:.{digits}e}".split("e")
        return self._add(f"{mant}e{int(exp)}", x, key)

    def e_as(self, x: Any, exp: int, digits: int = 1, key: str = "") -> str:
        """x in units of 10^exp: (4e-5, -4) -> '0.4e-4' (a spread next to a mean printed with that exponent)."""
        x = float(x)
        return self._add(f"{x / 10.0**exp:.{digits}f}e{exp}", x, key)

    def f(self, x: Any, digits: int = 2, key: str = "") -> str:
        """Fixed point with ``digits`` decimals."""
        x = float(x)
        return self._add(f"{x:.{digits}f}", x, key)

    def i(self, x: Any, key: str = "") -> str:
        """An integer (rounded)."""
        x = float(x)
        return self._add(f"{round(x)}", x, key)

    def g(self, x: Any, sig: int = 3, key: str = "") -> str:
        """``sig`` significant digits, plain notation for 1e-3 <= |x| < 1e6 (else as `e`)."""
        x = float(x)
        if x != 0 and not 1e-3 <= abs(x) < 1e6:
            return self.e(x, sig - 1, key)
        r = float(f"{x:.{sig - 1}e}")  # rounded first: 0.09998 -> 0.100, not 0.1000
        digits = max(sig - 1 - math.floor(math.log10(abs(r))), 0) if r else 0
        return self._add(f"{r:.{digits}f}", x, key)

    def p(self, x: Any, key: str = "") -> str:
        """A parameter as it was set (shortest form: 0.5, 100, 1e-10)."""
        x = float(x)
        text = f"{x:g}".replace("e-0", "e-").replace("e+0", "e").replace("e+", "e")
        return self._add(text, x, key)

    def v(self, x: Any, key: str = "") -> str:
        """A value of any size: two significant digits, plain between 0.01 and 1e4."""
        x = float(x)
        return self.g(x, 2, key) if 0.01 <= abs(x) < 1e4 else self.e(x, 1, key)

    def pct(self, x: Any, digits: int = 1, key: str = "") -> str:
        """A fraction as a percentage (without the % sign)."""
        x = 100.0 * float(x)
        return self._add(f"{x:.{digits}f}", x, key)

    def word(self, text: Any) -> str:
        """A label read from the data (a coordinate value such as ``near_0.01``): kept as text, not a number."""
        self.items.append((str(text), math.nan, "label"))
        return "#" if self.blank else str(text)

    def seq(self, values: Any, fmt: Callable[..., str], sep: str = ", ", **kw: Any) -> str:
        return sep.join(fmt(v, **kw) for v in np.asarray(values, dtype=float).ravel())


#: the formulas of the text that contain digits (exponents, indices, W(0)); the test strips them before it
#: checks that no other digit is left in the template
FORMULAS: set[str] = set()


def F(text: str) -> str:
    """A formula of the text (kept as written; registered in `FORMULAS`)."""
    FORMULAS.add(text)
    return text


def _open(data: Path, name: str) -> xr.Dataset:
    return dlnsim.load(Path(data) / f"{name}.nc")


def _depths(ds: xr.Dataset, n: Numbers) -> str:
    return n.seq(ds["N"].values, n.i)


def _exp(x: Any) -> int:
    """The decimal exponent of x (3.64e-5 -> -5)."""
    return math.floor(math.log10(abs(float(x))))


def _figure(name: str, alt: str, prefix: str) -> str:
    return f"![{alt}]({prefix}data/figures/{name}.png)"


# ------------------------------------------------------------------------------------------------------- parts


def _intro(data: Path, n: Numbers) -> str:
    f1 = _open(data, "fig1_constant")
    cs = _open(data, "critical_stepsize")
    return (
        "`nox -s studies` (= `python -m studies`) regenerates the files in `data/` and their figures "
        "(`data/README.md` says what each file holds; `studies/analysis.ipynb` reopens them with xarray). This "
        "section is rendered from those files by `python -m studies.results --write`, and "
        "`tests/test_results_numbers.py` checks every number in it against them. Unless stated otherwise a run "
        f"uses `dlnsim.paper_setup(N, seed)` (d = {n.i(f1.attrs['setup_d'])}, m = {n.i(f1.attrs['setup_m'])}, "
        f"d₁ = {n.i(f1.attrs['setup_r'])}, balanced {F('W(0)')}); η* is the bound (5.1) of the same instance; "
        "**η_crit is the largest constant stepsize found (bisection, rtol "
        f"{n.p(cs.attrs['rtol'])}) whose run reaches {n.e(cs.attrs['loss_tol'], 0)} of the initial excess loss "
        f"within {n.i(cs.attrs['n_iter'])} steps without diverging** — an operational threshold, not a stability "
        "limit: above it runs may lock into orbits with a frozen loss or diverge late, not monotonically in η."
    )


def _fig1(data: Path, n: Numbers, prefix: str) -> str:
    ds = _open(data, "fig1_constant")
    cs = _open(data, "critical_stepsize")
    Ns = ds["N"].values
    a = ds.sel(case="a_bound")
    paper_over = ds["paper_eta_over_bound"]
    above = [int(N) for N in Ns if float(paper_over.sel(N=N)) > 1]
    stars = cs["eta_star"].sel(N=[N for N in Ns if N in cs["N"].values])
    spread = "; ".join(f"N = {n.i(N)}: {n.e(stars.sel(N=N).mean(), 1)} ± "
                       f"{n.e_as(stars.sel(N=N).std(ddof=1), _exp(stars.sel(N=N).mean()))}" for N in stars["N"].values)
    text_above = ""
    for N in above:
        text_above += (f" **The paper's value for N = {n.i(N)} is {n.f(paper_over.sel(N=N))} η* of our instance, "
                       "above our bound**: its dashed curve in (a) runs outside Theorem 2.4 here (it converges all "
                       "the same).")
    b5 = ds.sel(case="b_below")
    slow = [N for N in Ns if b5["status"].sel(N=N).item() != "converged"]
    both = [N for N in Ns if N not in slow]
    ratio = (b5["stop_iteration"] / a["stop_iteration"]).sel(N=both)
    slow_text = (f"{n.seq(ratio.values, n.f)} times as many iterations for N = {n.seq(both, n.i)}; "
                 + "; ".join(f"N = {n.i(N)} is still at L = {n.e(b5['final_loss'].sel(N=N), 1)} after "
                             f"{n.e(b5['stop_iteration'].sel(N=N), 0)} iterations" for N in slow))
    return (
        f"**Figure 1 (constant stepsizes)** — loss against iteration for N = {_depths(ds, n)} at η = η* (a), "
        f"{n.p(ds.attrs['factor_below'])} η* (b), {n.p(ds.attrs['factor_above'])} η* (c) and "
        f"η = {n.p(ds.attrs['eta_diverging'])} (d), seed {n.i(ds.attrs['seed'])}.\n\n"
        f"{_figure('fig1_constant', 'Figure 1', prefix)}\n\n"
        f"Our η* is {n.seq(ds['bound_eta'].values, n.e)}; the paper reports "
        f"{n.seq(ds['paper_eta'].values, n.e)} for its own, unpublished instance (over the "
        f"{n.i(cs.sizes['seed'])} seeds of the critical-stepsize study, mean ± sd: {spread}).{text_above} "
        "At η* GD lowers the loss at every step (the descent ratio of Prop. 3.4(4) stays ≥ "
        f"{n.f(a['min_descent_ratio'].min())}, where the theorem guarantees σ = "
        f"{n.seq(ds['bound_sigma'].values, n.e, digits=1)}) and converges (excess loss ≤ "
        f"{n.e(ds.attrs['ltol'], 0)} of its initial value) after {n.seq(a['stop_iteration'].values, n.i)} "
        f"iterations; the paper's η values take {n.seq(ds['stop_iteration'].sel(case='a_paper').values, n.i)}. "
        f"Half the bound takes twice as long ({slow_text}). At {n.p(ds.attrs['factor_above'])} η*, far "
        f"outside the theorem, GD converges in {n.seq(ds['stop_iteration'].sel(case='c_above').values, n.i)} "
        f"iterations; η = {n.p(ds.attrs['eta_diverging'])} diverges at k = "
        f"{n.seq(ds['stop_iteration'].sel(case='d_diverging').values, n.i)}. The four behaviours are the "
        "paper's; the instance and the stepsizes of (b)–(d) are ours (the paper does not give them)."
    )


def _fig2(data: Path, n: Numbers, prefix: str) -> str:
    ds = _open(data, "fig2_decreasing")
    Ns = ds["N"].values
    a, b, c, d = (ds.sel(case=k) for k in ("a_gamma0.2", "b_gamma0.4", "c_above", "d_diverging"))
    ga, gb, gd = (float(x["gamma"].isel(N=0)) for x in (a, b, d))

    def ends(run: xr.Dataset) -> str:
        parts = []
        for N in Ns:
            r = run.sel(N=N)
            if r["status"].item() == "converged":
                parts.append(f"N = {n.i(N)} converges at k = {n.e(r['stop_iteration'], 1)}")
            else:
                parts.append(f"N = {n.i(N)} ends at L = {n.v(r['final_loss'])}")
        return ", ".join(parts)

    c_violate = (float(c["a1_over_bound"].isel(N=0))) ** (1.0 / float(c["gamma"].isel(N=0)))
    need_a = ds["iterations_needed"].sel(decaying="a_gamma0.2")
    conv_a = [N for N in Ns if a["status"].sel(N=N).item() == "converged"]
    check = "; ".join(f"N = {n.i(N)}: estimate {n.i(need_a.sel(N=N))}, the run converged at "
                      f"{n.i(a['stop_iteration'].sel(N=N))}" for N in conv_a)
    not_conv = [N for N in Ns if b["status"].sel(N=N).item() != "converged"]
    # panel d, depth by depth from its status: the diverging runs, and any that converge instead (at this edge
    # the outcome can depend on rounding: say so when eta_k is within 2 % of eta_s where the run stopped)
    div = [N for N in Ns if d["status"].sel(N=N).item() == "diverged"]
    other = [N for N in Ns if N not in div]

    def at_stop(Ns_: list[Any]) -> str:
        return (f"k = {n.seq([d['stop_iteration'].sel(N=N) for N in Ns_], n.i)}, where η_k is still "
                f"{n.seq([d['stop_eta_over_sharpness'].sel(N=N) for N in Ns_], n.f)} η_s")

    panel_d = (f"N = {n.seq(div, n.i)} first lower{'s' if len(div) == 1 else ''} the loss (to "
               f"{n.seq([d['min_loss'].sel(N=N) for N in div], n.v)}) and diverge{'s' if len(div) == 1 else ''} at "
               f"{at_stop(div)}: the schedule, not an oversized first step, makes "
               f"{'it' if len(div) == 1 else 'them'} diverge.") if div else "No depth diverges."
    for N in other:
        r = float(d["stop_eta_over_sharpness"].sel(N=N))
        panel_d += (f" N = {n.i(N)} does not diverge: it ends {d['status'].sel(N=N).item()} at L = "
                    f"{n.v(d['final_loss'].sel(N=N))} (k = {n.i(d['stop_iteration'].sel(N=N))}, η_k = {n.f(r)} η_s)")
        if abs(r - 1.0) <= 0.02:
            panel_d += (", at the edge: η_k has decayed to η_s itself, where the balanced minimiser is barely "
                        "stable and GD can settle at a flatter one, and whether it diverges there depends on rounding "
                        "(with a kernel that summed in another order, this same run diverged)")
        panel_d += "."
    return (
        f"**Figure 2 (decreasing stepsizes)** — η_k = {F('max{a₁(k+1)^−γ, a₂/(k+1)}')} is **our reconstruction of "
        f"(5.2)** (docs/theory.md); with a₁ = a₂ = η* in (a) and (b) every candidate form gives {F('η*(k+1)^−γ')}. "
        f"{n.e(ds.attrs['n_iter'], 0)} iterations; the bottom row draws (a)–(c) against the flow time "
        f"t_k = η₀ + … + {F('η_{k−1}')}, next to the constant-η* run of Figure 1(a).\n\n"
        f"{_figure('fig2_decreasing', 'Figure 2', prefix)}\n\n"
        f"* (a) γ = {n.p(ga)}: {ends(a)}. (b) γ = {n.p(gb)}: "
        + ", ".join(f"N = {n.i(N)} ends at L = {n.v(b['final_loss'].sel(N=N))} (from "
                    f"{n.v(b['initial_loss'].sel(N=N))})" for N in Ns)
        + ". **This is where our Figure 2 differs from the paper**, which says both decreasing schedules converge: "
        f"ours do not within {n.e(ds.attrs['n_iter'], 0)} iterations for N = {n.seq(not_conv, n.i)} at "
        f"γ = {n.p(gb)} (nor N = {n.seq([N for N in Ns if N not in conv_a], n.i)} at γ = {n.p(ga)}).\n"
        "* Why: against t_k every schedule lies on the constant-η* run (GD with these small steps follows the "
        f"gradient flow), and t_k ≈ {F('η* k^(1−γ)/(1−γ)')} grows slowly. The constant run converges at T_conv = "
        f"{n.seq(ds['flow_time_needed'].values, n.g)}; after {n.e(ds.attrs['n_iter'], 0)} iterations γ = "
        f"{n.p(gb)} has reached t = {n.seq(ds['flow_time_reached'].sel(decaying='b_gamma0.4').values, n.g)} "
        f"(γ = {n.p(ga)}: {n.seq(ds['flow_time_reached'].sel(decaying='a_gamma0.2').values, n.g)}). Reaching "
        f"T_conv would take about {n.seq(ds['iterations_needed'].sel(decaying='b_gamma0.4').values, n.e, digits=1)} "
        f"iterations at γ = {n.p(gb)} and {n.seq(need_a.values, n.e, digits=1)} at γ = {n.p(ga)} (k with "
        f"t_k = T_conv; check: {check}).\n"
        f"* (c) a₁ = {n.p(c['a1_over_bound'].isel(N=0))} η*, a₂ = {n.p(c['a2_over_bound'].isel(N=0))} η* violates "
        f"the bound for the first {n.e(c_violate, 0)} steps: {ends(c)}.\n"
        f"* (d) is ours: a slowly decaying schedule, γ = {n.p(gd)}, a₁ = a₂ = "
        f"{n.p(d['eta0_over_sharpness'].isel(N=0))} η_s, where η_s = {F('2/λ_max')} of the Hessian at the balanced "
        f"global minimiser GD heads for (η_crit lies within a few per cent of it). {panel_d} The paper makes its "
        f"panel d diverge by a larger a₂; in our form a₂ only acts during the first {F('(a₂/a₁)^(1/(1−γ))')} steps, "
        "where a larger a₂ can only mean an oversized first step."
    )


def _drift(data: Path, n: Numbers, prefix: str) -> str:
    ds = _open(data, "balancedness_drift")
    Ns = ds["N"].values
    over = []
    for N in Ns:
        s = ds.sel(N=N)
        big = np.flatnonzero(s["final_drift_over_delta"].values > 1)
        if big.size:
            i = int(big[0])
            over.append(f"N = {n.i(N)} from {n.i(s['eta_over_bound'].values[i])} η* "
                        f"({n.f(s['eta_over_crit'].values[i])} η_crit) on, "
                        f"{n.v(s['final_drift_over_delta'].values[-1])} δ at "
                        f"{n.f(s['eta_over_crit'].values[-1])} η_crit")
    lin_top = [float(ds["eta_over_bound"].sel(N=N).values[int(ds["lin_n"].sel(N=N)) - 1]) for N in Ns]
    steep = [float(np.max(ds["local_slope"].sel(N=N).values[int(ds["lin_n"].sel(N=N)) - 1:])) for N in Ns]
    return (
        f"**Balancedness drift** — {F('max_j‖W_{j+1}^T W_{j+1} − W_j W_j^T‖')} along GD from a balanced start, for η "
        f"from η* to {n.f(ds['eta_over_crit'].max())} η_crit, against the δ = {F('M^(2/N)/N³')} of Theorem 2.4.\n\n"
        f"{_figure('balancedness_drift', 'Balancedness drift', prefix)}\n\n"
        f"Every run stops once L − L* ≤ {n.e(ds.attrs['ltol'], 0)} ({F('L(0)')} − L*) (the drift can change by at most "
        f"{n.e(ds['drift_change_bound'].max(), 0)} after that): at flow times t = kη between "
        f"{n.f(ds['stop_time'].min(), 1)} and {n.f(ds['stop_time'].max(), 1)} (panel f), so the horizon is "
        "convergence, not a common flow time. At η* the final drift is "
        f"{n.seq(ds['final_drift_over_delta'].isel(eta_index=0).values, n.e, digits=1)} δ "
        f"(δ = {n.seq(ds['bound_delta'].values, n.g)}): GD uses a small part of the balancedness budget of the "
        "theorem. **For small η the drift is first order in η**, as the one-step identity "
        f"{F('D_j(k+1) − D_j(k) = η²(G_{j+1}^T G_{j+1} − G_j G_j^T)')} predicts: slope "
        f"{n.seq(ds['lin_slope'].values, n.f)} for N = {_depths(ds, n)}, fitted from η* to "
        f"{n.seq(lin_top, n.i)} η* ({n.seq(ds['lin_n'].values, n.i)} stepsizes: the longest range from η* on "
        f"which one line passes within {n.i(100 * ds.attrs['lin_tol'])} % of every point). **Above that range the "
        "drift steepens towards η_crit** (panel e): local slopes between neighbouring stepsizes reach "
        f"{n.seq(steep, n.f)}. The drift exceeds δ before η_crit only for {'; '.join(over) or 'no depth'}, "
        "and GD still converges there: staying within δ is sufficient, not necessary."
    )


def _flow(data: Path, n: Numbers, prefix: str) -> str:
    ds = _open(data, "gd_vs_flow")
    small = ds.isel(multiple=int(np.argmin(ds["multiple"].values)))
    return (
        "**GD vs gradient flow** — the largest distance ‖W_GD(k) − W(t_k)‖_F over t_k ≤ T = "
        f"{n.p(ds.attrs['flow_time'])} to the factor flow (2.2) and to the modified flow {F('−∇L − (η/2)∇²L∇L')}, "
        f"for η = η* × {n.seq(ds['multiple'].values, n.p)}.\n\n"
        f"{_figure('gd_vs_flow', 'GD vs flow', prefix)}\n\n"
        "The distance to the factor flow scales as η^p with p = "
        f"{n.seq(ds['slope'].sel(flow='factor').values, n.f, digits=3)} (N = {_depths(ds, n)}), to the modified "
        "flow with p = "
        f"{n.seq(ds['slope'].sel(flow='modified').values, n.f, digits=3)}: first and second order, as for a "
        f"one-step method. At η = {n.p(small['multiple'])} η* the distances are "
        f"{n.seq(small['sup_distance'].sel(flow='factor').values, n.e, digits=1)} (factor flow) and "
        f"{n.seq(small['sup_distance'].sel(flow='modified').values, n.e, digits=1)} (modified flow): at the "
        "theorem's stepsize GD is the gradient flow to within these distances."
    )


def _critical(data: Path, n: Numbers, prefix: str, detail: bool) -> str:
    ds = _open(data, "critical_stepsize")
    st = _open(data, "stability_threshold")
    # the cells (N, seed) both studies ran: the loss-only eta_crit against eta_flat of the same instance
    shared_N = [N for N in ds["N"].values if N in st["N"].values]
    shared_s = [s for s in ds["seed"].values if s in st["seed"].values]
    loss_only = ds["eta_crit"].sel(N=shared_N, seed=shared_s)
    over_flat = loss_only / st["eta_flat"].sel(N=shared_N, seed=shared_s)
    over = over_flat > 1
    at_crit = ds["trial_eta"] == ds["eta_crit"]
    crit_loss = ds["trial_final_loss"].where(at_crit).max("trial").sel(N=shared_N, seed=shared_s).where(over)

    def stab(N: Any) -> str:
        if N not in st["N"].values:
            return "–"
        t = st.sel(N=N)
        return f"{n.g(t['eta_crit_median'])} ({n.g(t['eta_crit_min'])}–{n.g(t['eta_crit_max'])})"

    def flat_col(N: Any) -> str:
        if N not in shared_N:
            return "–"
        v = over_flat.sel(N=N)
        return f"{n.f(v.median(), 3)} ({n.f(v.min(), 3)}–{n.f(v.max(), 3)})"

    rows = "\n".join(
        f"| {n.i(N)} | {n.e(s['eta_star_median'])} | {n.g(s['eta_crit_median'])} | {stab(N)} | {flat_col(N)} | "
        f"{n.i(s['ratio_median'])} ({n.i(s['ratio_min'])}–{n.i(s['ratio_max'])}) | "
        f"{n.pct(s['B_share'].min())}–{n.pct(s['B_share'].max())} |"
        for N, s in ((N, ds.sel(N=N)) for N in ds["N"].values))

    def exps(q: str) -> str:
        v = ds["local_exponent"].sel(quantity=q)
        return ", ".join(f"{n.f(x)} ({n.i(a)}–{n.i(b)})"
                         for x, a, b in zip(v.values, ds["N_lo"].values, ds["N_hi"].values, strict=True))

    # the stability-threshold study: local exponents on its coarse subsequence of depths, beyond N = 6
    Nst = st["N"].values
    mids = st["N_mid_coarse"].values
    pairs = []  # the neighbouring depths (a, b) of the coarse subsequence, sqrt(a b) = mid, chained from min N
    lo = float(Nst.min())
    for m in mids:
        hi = float(m) ** 2 / lo
        pairs.append((lo, hi))
        lo = hi
    far = [i for i, (a, _) in enumerate(pairs) if a >= ds["N"].values.max() - 1e-9]

    def st_exps(var: str) -> str:
        v = st[var].values
        return ", ".join(f"{n.f(v[i])} ({n.i(pairs[i][0])}–{n.i(pairs[i][1])})" for i in far)

    cross = ds["crossover_N"].values
    table = ("| N | η* (median) | η_crit, loss only (median) | η_crit, stability criterion: median (min–max) | "
             "loss-only η_crit/η_flat, shared seeds: median (min–max) | η_crit/η* median (min–max) | B_δ share of "
             "the denominator of (5.1), % (min–max) |\n|---|---|---|---|---|---|---|\n" + rows)
    period2 = (
        f"The loss-only η_crit counts a run as converged when its loss ends within {n.e(ds.attrs['loss_tol'], 0)} of "
        f"the initial excess loss (and below half the lowest saddle's, a looser bound on these instances), and a "
        f"{F('period-2')} orbit can do that: in "
        f"{n.i(over.sum())} of the {n.i(over.size)} cells (N, seed) shared with the stability-threshold study "
        f"(seeds {n.seq(shared_s, n.i)}) it exceeds η_flat, by up to {n.pct(over_flat.max() - 1, 2)} %, where no "
        f"minimiser is stable; its runs there end with loss {n.e(crit_loss.min(), 0)} to {n.e(crit_loss.max(), 0)}, "
        f"on the {F('period-2')} orbits the regime map finds just above η_flat. The stability column (from that study, "
        f"{n.i(st.sizes['seed'])} seeds, {n.e(st.attrs['horizon'], 0)} steps) asks for a linearly stable minimiser "
        "at the end of the horizon."
    ) if bool(over.any()) else (
        f"In none of the {n.i(over.size)} cells (N, seed) shared with the stability-threshold study does the "
        "loss-only η_crit exceed η_flat.")
    text = (
        "**Critical stepsize against the bound** — η_crit (defined above) and η* for "
        f"{n.i(ds.sizes['seed'])} seeds per depth.\n\n"
        f"{_figure('critical_stepsize', 'Critical stepsize', prefix)}\n\n{table}\n\n{period2}\n\n"
        f"The ratio grows with depth, but **no power law fits**: local exponents between neighbouring N of the "
        f"medians are {exps('ratio')} for η_crit/η*, {exps('eta_star')} for η* and {exps('eta_crit')} for "
        f"η_crit (panel c). **η*, term by term:** (5.1) is η* = {F('2/(4L₀/δ + B_δ)')}. For these depths B_δ is "
        f"{n.pct(ds['B_share'].min())}–{n.pct(ds['B_share'].max())} % of the denominator, so η* ≈ {F('2/B_δ')} and "
        f"δ = {F('M^(2/N)/N³')} nearly cancels: η* falls with N because "
        f"B_δ ≈ {F('2eN(1+1/N)^(N−1)M^(2−2/N)‖X‖²')} grows (M ≈ {n.g(ds['bound_M'].median(), 2)}), not through the "
        f"{F('N^−3')} of δ. The {F('4L₀/δ = 4N³L₀M^(−2/N)')} term "
        f"overtakes B_δ only at N ≈ {n.i(np.nanmedian(cross))} ({n.i(np.nanmin(cross))}–{n.i(np.nanmax(cross))} "
        "over the instances, from the formula with each instance's L₀, M, ‖X‖, ‖XY^T‖; panel d), and only "
        f"beyond it does η* fall like {F('N^−3')}. The larger depths of the stability-threshold study (N up to "
        f"{n.i(Nst.max())}, {n.i(st.sizes['seed'])} seeds; its η_crit asks for a linearly stable minimiser at "
        f"the end of the horizon) continue the trend: η_crit falls as {F('2/λ_max')} of the Hessian at the flattest "
        f"minimiser does, with local exponents {st_exps('eta_crit_local_exponent_coarse')} (fitted over N = "
        f"{n.i(st.attrs['fit_from_N'])}–{n.i(Nst.max())}: {n.f(st['eta_crit_exponent'])}, {F('95 %')} seed-bootstrap "
        f"interval {n.f(st['eta_crit_exponent_lo'])} to {n.f(st['eta_crit_exponent_hi'])}), η*'s exponent "
        f"flattens ({st_exps('eta_star_local_exponent_coarse')}), and the ratio's keeps falling "
        f"({st_exps('ratio_star_local_exponent_coarse')}). The crossover lies beyond the depths run (N ≤ "
        f"{n.i(Nst.max())}); that the ratio's exponent rises past it towards that of {F('N^−3/N^−1 = N²')} is a "
        "reading of the formula, not a measurement."
    )
    if detail:
        rows2 = "\n".join(
            f"| {n.i(N)} | {n.g(s['loss_term'].median())} | {n.g(s['B_first'].median())} | "
            f"{n.g(s['B_second'].median())} | {n.g(s['bound_M'].median())} | {n.g(s['crossover_N'].median())} |"
            for N, s in ((N, ds.sel(N=N)) for N in ds["N"].values))
        text += ("\n\nThe denominator of (5.1) term by term (medians over seeds):\n\n| N | " + F("4L₀/δ") + " | "
                 + F("2eNK^(N−1)‖X‖²") + " | " + F("√e N K^(N/2−1)‖XY^T‖") + " | M | crossover N |\n"
                 "|---|---|---|---|---|---|\n" + rows2)
    return text


def _limit(data: Path, n: Numbers, prefix: str) -> str:
    ds = _open(data, "limit_rank")
    rows = []
    total = hit = 0
    for case in ds["case"].values:
        for N in ds["N"].values:
            s = ds.sel(case=case, N=N)
            rb = int(s["r_bar"])
            runs = int(s["sv_rank"].size)
            at = int((s["sv_rank"] == rb).sum())
            glob = int(s["reached_global_min"].sum())
            total += runs
            hit += glob
            rows.append(f"| {case} | {n.i(N)} | {n.i(rb)} | {n.i(runs)} | {n.i(at)} | {n.i(glob)} |")
    exceptions = []
    flat = ds["reached_global_min"].stack(run=("case", "N", "init", "scale_index", "seed"))
    for idx in np.flatnonzero(flat.values == 0):
        point = {k: flat["run"].values[idx][i] for i, k in enumerate(("case", "N", "init", "scale_index", "seed"))}
        r = ds.sel(point)
        rank = int(r["loss_rank"])
        opt = float(ds["optimal_loss_by_rank"].sel(case=point["case"], rank=rank))
        exceptions.append(
            f"case {point['case']}, N = {n.i(point['N'])}, {point['init']} start at c = "
            f"{n.p(ds['init_scale'].sel(N=point['N'], scale_index=point['scale_index']))}, seed "
            f"{n.i(point['seed'])}: final numerical rank {n.i(r['sv_rank'])}, loss {n.f(r['final_loss'], 5)} "
            f"after {n.e(r['stop_iteration'], 0)} steps against {n.f(opt, 5)}, the best fit of rank {n.i(rank)}: "
            "still at that saddle and only beginning to leave it, not a limit")
    scales = "; ".join(f"N = {n.i(N)}: c = {n.seq(ds['init_scale'].sel(N=N).values, n.p)}" for N in ds["N"].values)
    cases = []
    for case in ds["case"].values:
        w = ds["widths"].sel(case=case).isel(N=0).values
        hidden = sorted({int(x) for x in w[1:] if x > 0} - {int(w[0])})
        cases.append(f"case {case}: a rank-{n.i(ds['q'].sel(case=case))} target, hidden widths "
                     f"{n.seq(hidden, n.i, sep=' and ')}, r̄ = min(q, r) = {n.i(ds['r_bar'].sel(case=case).max())}")
    return (
        f"**Where GD ends for N ≥ {n.i(ds['N'].min())}** — two small problems (d = {n.i(ds.attrs['d'])}, "
        f"m = {n.i(ds.attrs['m'])}; {'; '.join(cases)}), balanced and Gaussian starts at "
        f"{n.i(ds.sizes['scale_index'])} scales ({scales}), {n.i(ds.sizes['seed'])} seeds, "
        f"η = {n.p(ds.attrs['eta'])}, at most {n.e(ds.attrs['n_iter'], 0)} steps.\n\n"
        f"{_figure('limit_rank', 'Limit rank', prefix)}\n\n"
        "| case | N | r̄ | runs | numerical rank of the final product = r̄ "
        f"(σ_i > {n.e(ds.attrs['sv_threshold_relative'], 0)} σ₁) | at the global minimum within tolerance |\n"
        "|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
        f"\"Within tolerance\": the final loss is within {n.e(ds.attrs['loss_tolerance_relative'], 0)} "
        f"({F('L(0)')} − L*_r̄) of min L^N = L*_r̄, the best rank-r̄ fit. "
        f"{n.i(hit)} of {n.i(total)} runs end there, consistent with the conjecture after Theorem 2.6"
        + (f"; the exception{'s' if len(exceptions) > 1 else ''} ({'; '.join(exceptions)})" if exceptions else "")
        + (f". {n.i(int((ds['status'] == 'diverged').sum()))} runs diverged." if (ds["status"] == "diverged").any()
           else ". No run diverged.")
    )


def _pct_range(n: Numbers, lo: Any, hi: Any, digits: int = 1) -> str:
    """'a–b' in per cent, or 'a' when both print the same."""
    a, b = n.pct(lo, digits), n.pct(hi, digits)
    if a == b and not n.blank:
        n.items.pop()
        return a
    return f"{a}–{b}"


def _range(n: Numbers, lo: Any, hi: Any, digits: int = 4) -> str:
    a, b = n.f(lo, digits), n.f(hi, digits)
    if a == b and not n.blank:
        n.items.pop()
        return a
    return f"{a}–{b}"


def _stability(data: Path, n: Numbers, prefix: str) -> str:
    st = _open(data, "stability_threshold")
    rm = _open(data, "regime_map")
    oos = _open(data, "out_of_sample")
    bt = _open(data, "bound_tightness")
    Nst = st["N"].values
    H, Hs, Hl = (int(st.attrs[k]) for k in ("horizon", "horizon_short", "horizon_long"))
    rf = st["ratio_flat"]
    above = int((rf > 1).sum())
    long = st["ratio_flat_long"]
    # at the short horizon a cell whose search never converged within it lies below the bracket: counted there
    short = st["ratio_flat_short"]
    n_below = int(short.isnull().sum())
    short_median = float(np.median(short.fillna(-np.inf).values))  # those cells lie below every finite one
    below = (f", and below {n.p(st.attrs['bracket_lo'])} in {n.i(n_below)} cells, where no trial had settled by "
             "then" if n_below else "")
    long_N = [int(N) for N in Nst if np.isfinite(long.sel(N=N)).any()]
    long_seeds = sorted({int(s) for s in st["seed"].values if np.isfinite(long.sel(seed=s)).any()})
    # from which depth on the two predictions differ by less than eta_crit's largest shortfall below eta_flat (at
    # that depth and every larger one): there these data cannot tell them apart
    gain = st["flat_gain"].max("seed").values
    shortfall = 1.0 - float(rf.min())
    n0 = next((int(Nst[i]) for i in range(Nst.size) if np.all(gain[i:] <= shortfall)), int(Nst.max()))
    big = st.where(st["N"] >= n0, drop=True)
    small = st.where(st["N"] < n0, drop=True)
    reach2 = st["reached_over_flat"].sel(N=Nst.min(), eta_frac=1.0)
    lam2 = (st["sharpness_flat"] / st["sharpness_min"]).sel(N=Nst.min())
    w = oos.sel(data="whitened")
    a = oos.sel(data="anisotropic")
    # the regime map, in units of eta_flat, at its horizon
    reg = rm["regime"]
    x = rm["eta_over_flat"]
    conv_max = x.where(reg == "converges").max()
    dec = reg == "decaying"
    dec_N = sorted({int(N) for N in rm["N"].values if bool(dec.sel(N=N).any())})
    decaying = (f"below it {n.i(dec.sum())} cells (N = {n.seq(dec_N, n.i)}, "
                f"{n.p(x.where(dec).min())}–{n.p(x.where(dec).max())} η_flat) still oscillate with a {F('period-2')} "
                "pattern whose loss still decays (converging, more slowly than the horizon allows); " if bool(dec.any())
                else "")
    per = (reg == "periodic") & (rm["period"] == 2)
    periods = sorted({int(p) for p in rm["period"].where(reg == "periodic").values.ravel() if np.isfinite(p)} - {2})
    other_periods = f" (other periods: {n.seq(periods, n.i)})" if periods else ""
    chaotic = reg == "chaotic"
    bounded = reg == "bounded"
    onset, se = rm["flip_onset"], rm["flip_onset_se"]
    first_div = rm["first_diverging"]
    lyap = rm["lyapunov"].where(chaotic)
    chaos = (f"{n.i(chaotic.sum())} of them have a positive largest Lyapunov exponent of the tangent map "
             f"({n.e(lyap.min(), 0)} to {n.e(lyap.max(), 0)} per step: chaotic at {n.e(rm.attrs['horizon'], 0)} steps)"
             if bool(chaotic.any()) else "none has a positive largest Lyapunov exponent of the tangent map, so "
             "none is called chaotic")
    nonper = int((chaotic | bounded).sum())
    best = bt["ratio"].where(bt["ratio"] == bt["ratio"].min(), drop=True)
    return (
        "**What sets η_crit; regimes above it; where the bound is tight** — the studies stability_threshold, "
        "regime_map, out_of_sample and bound_tightness (docs/stability.md).\n\n"
        f"{_figure('stability_threshold', 'Stability threshold', prefix)}\n\n"
        "In these studies a stepsize converges when GD ends its horizon within the convergence tests at a linearly "
        f"stable point ({F('λ_max ≤ 2/η')}); a run that first meets the tests at a sharper point is continued: of "
        f"the {n.i(st['n_continued'].sum())} such trials (of {n.i(st['n_trials'].sum())}), "
        f"{n.i(st['n_continued_converged'].sum())} left it and settled at a flatter, stable minimiser within the "
        f"horizon and {n.i(st['n_continued_unstable'].sum())} still sat on it at the end. For N = "
        f"{n.i(Nst.min())} to {n.i(Nst.max())} ({n.i(st.sizes['seed'])} seeds per depth, {n.e(H, 0)} steps), "
        "**η_crit approaches η_flat, 2/λ_max at the flattest minimiser with the least-squares product, from "
        f"below**: η_crit/η_flat has median {n.f(rf.median(), 4)} and range {_range(n, rf.min(), rf.max())} over "
        f"the {n.i(rf.size)} cells ({n.i(above) + ' exceed η_flat' if above else 'none exceeds η_flat'}; "
        f"bisection resolution ≤ "
        f"{n.pct(st['resolution'].max(), 2)} %). The gap is mostly the horizon: the median is "
        f"{n.f(short_median, 4)} at {n.e(Hs, 0)} steps (range {_range(n, short.min(), short.max())}{below}), "
        f"{n.f(rf.median(), 4)} at "
        f"{n.e(H, 0)} and {n.f(long.median(), 4)} at {n.e(Hl, 0)} (range {_range(n, long.min(), long.max())}; "
        f"N = {n.seq(long_N, n.i)}, seed {n.seq(long_seeds, n.i)}), and GD at η_crit takes "
        f"{n.i(st['settle_crit'].min())}–{n.i(st['settle_crit'].max())} steps to settle. At η_crit for N = "
        f"{n.i(Nst.min())} GD ends at a minimiser with λ_max = {_range(n, reach2.min(), reach2.max())} λ_flat (the "
        f"balanced one has {_range(n, 1 / lam2.max(), 1 / lam2.min(), 3)} λ_flat): it selects the flattest "
        f"minimiser. **The balanced minimiser's prediction {F('2/λ_bal')} coincides with η_flat on these data for N ≥ "
        f"{n.i(n0)}**, to within η_crit's own largest shortfall below η_flat ({n.pct(shortfall, 2)} %): η_flat "
        f"exceeds it by {_pct_range(n, big['flat_gain'].min(), big['flat_gain'].max(), 2)} % there, and η_crit/η_bal = "
        f"{_range(n, big['ratio_sharpness'].min(), big['ratio_sharpness'].max())}; **it differs "
        f"by {_pct_range(n, small['flat_gain'].min(), small['flat_gain'].max())} % for N ≤ "
        f"{n.i(small['N'].max())}**, where η_crit exceeds {F('2/λ_bal')} by up to "
        f"{n.pct(small['ratio_sharpness'].max() - 1)} %. Out of sample (the same starts and targets with other "
        f"X, N = {n.seq(oos['N'].values, n.i)}, {n.i(oos.sizes['seed'])} seeds): with whitened X the two "
        f"predictions coincide and η_crit/η_flat = {_range(n, w['ratio_flat'].min(), w['ratio_flat'].max())}; with "
        f"anisotropic X (condition number {n.i(oos.attrs['condition_anisotropic'])}) η_flat exceeds η_bal by "
        f"{_pct_range(n, a['flat_gain'].min(), a['flat_gain'].max())} %, and η_crit/η_flat = "
        f"{_range(n, a['ratio_flat'].min(), a['ratio_flat'].max())} while η_crit/η_bal = "
        f"{_range(n, a['ratio_sharpness'].min(), a['ratio_sharpness'].max())}. Fitted over N = "
        f"{n.i(st.attrs['fit_from_N'])}–{n.i(Nst.max())}: η_crit ∝ N^p with p = {n.f(st['eta_crit_exponent'])} "
        f"({F('95 %')} seed-bootstrap interval {n.f(st['eta_crit_exponent_lo'])} to "
        f"{n.f(st['eta_crit_exponent_hi'])}), "
        f"as η_flat (p = {n.f(st['eta_flat_exponent'])}); nothing here is measured beyond N = {n.i(Nst.max())}.\n\n"
        f"{_figure('regime_map', 'Regime map', prefix)}\n\n"
        f"Regime map (N = {_depths(rm, n)}, {n.i(rm.sizes['seed'])} seeds, η in units of η_flat; every label is "
        f"the state at {n.e(rm.attrs['horizon'], 0)} steps): every converging cell has η < η_flat (up to "
        f"{n.p(conv_max)} η_flat); "
        f"{decaying}settled {F('period-2')} orbits occur only above η_flat, from {n.p(x.where(per).min())} to "
        f"{n.p(x.where(per).max())} η_flat{other_periods}. **The {F('period-2')} orbit's mean excess loss "
        f"grows linearly "
        f"from an onset at {_range(n, onset.min(), onset.max(), 5)} η_flat** (standard errors ≤ {n.e(se.max(), 0)}; "
        f"slopes {n.v(rm['flip_slope'].min())}–{n.v(rm['flip_slope'].max())}): a flip "
        f"(period-doubling) bifurcation at the flattest minimiser. {n.i(nonper)} cells end bounded and not "
        f"periodic; {chaos}. Divergence within the horizon from {n.p(first_div.min())}–{n.p(first_div.max())} "
        "η_flat on. The bound comes closest, η_crit/η* = "
        f"{n.f(bt['ratio'].min())}, for N = {n.i(best['N'].values[0])}, data `{n.word(best['data'].values[0])}` "
        f"(whitened) and the start `{n.word(best['start'].values[0])}` next to the target; on the paper's data it is "
        "off by hundreds to thousands."
    )


# ---------------------------------------------------------------------------------------------------- assembly


def render(data: Path | str = DATA, *, detail: bool = False, prefix: str = "", blank: bool = False
           ) -> tuple[str, Numbers]:
    """The Results section (from its heading to the end, with a trailing newline) and the numbers in it.

    ``detail`` adds the tables of docs/results.md; ``prefix`` goes before the figure paths (``../`` from
    docs/); ``blank`` renders every number as ``#``.
    """
    data = Path(data)
    n = Numbers(blank=blank)
    parts = [HEADING, _intro(data, n), _fig1(data, n, prefix), _fig2(data, n, prefix), _drift(data, n, prefix),
             _flow(data, n, prefix), _critical(data, n, prefix, detail), _limit(data, n, prefix),
             _stability(data, n, prefix)]
    return "\n\n".join(_wrap(part) for part in parts) + "\n", n


def _wrap(part: str, width: int = 120) -> str:
    """Paragraphs and bullet items wrapped at ``width`` (tables, images and headings as they are)."""
    out = []
    for para in part.split("\n\n"):
        if para.startswith(("|", "![", "#")):
            out.append(para)
        elif para.startswith("* "):
            out.append("\n".join(textwrap.fill(item, width, subsequent_indent="  ", break_long_words=False,
                                                break_on_hyphens=False) for item in para.split("\n")))
        else:
            out.append(textwrap.fill(para, width, break_long_words=False, break_on_hyphens=False))
    return "\n\n".join(out)


def readme_section(text: str) -> tuple[int, int]:
    """The span of the "## Results" section of a README text: from its heading to the next "## " heading."""
    start = text.index(f"\n{HEADING}\n") + 1
    end = text.find("\n\n## ", start + len(HEADING))
    return start, (len(text) if end < 0 else end + 1)


def replace_section(readme: str, section: str) -> str:
    start, end = readme_section(readme)
    return readme[:start] + section + readme[end:]


def headlines(data: Path | str = DATA, *, blank: bool = False) -> tuple[str, Numbers]:
    """The README's short Results section (heading to end, trailing newline) and the numbers in it."""
    data = Path(data)
    n = Numbers(blank=blank)
    f1 = _open(data, "fig1_constant")
    cs = _open(data, "critical_stepsize")
    fl = _open(data, "gd_vs_flow")
    st = _open(data, "stability_threshold")
    lr = _open(data, "limit_rank")
    a = f1.sel(case="a_bound")
    rf = st["ratio_flat"]
    reached = lr["reached_global_min"]
    items = [
        f"* The bound (5.1) of `paper_setup(N, seed={n.i(f1.attrs['seed'])})` is η* = "
        f"{n.seq(f1['bound_eta'].values, n.e)} for N = {_depths(f1, n)} (the paper reports "
        f"{n.seq(f1['paper_eta'].values, n.e)} for its unpublished instance); at η* GD converges after "
        f"{n.seq(a['stop_iteration'].values, n.i)} iterations.",
        f"* The critical stepsize η_crit is {n.seq(cs['ratio_median'].values, n.i)} times η* (medians over "
        f"{n.i(cs.sizes['seed'])} seeds, N = {_depths(cs, n)}): on the paper's data the bound is conservative by "
        "hundreds to thousands, increasingly with depth.",
        f"* η_crit approaches η_flat = {F('2/λ_max')} at the flattest minimiser from below: η_crit/η_flat has median "
        f"{n.f(rf.median(), 4)} and range {_range(n, rf.min(), rf.max())} over {n.i(rf.size)} cells (N = "
        f"{n.i(st['N'].min())} to {n.i(st['N'].max())}).",
        "* GD tracks the gradient flow to first order in η and the modified flow to second order: fitted exponents "
        f"{n.seq(fl['slope'].sel(flow='factor').values, n.f, digits=3)} and "
        f"{n.seq(fl['slope'].sel(flow='modified').values, n.f, digits=3)} (N = {_depths(fl, n)}).",
        f"* {n.i(reached.sum())} of {n.i(reached.size)} runs of the limit-rank study (N = {_depths(lr, n)}, balanced "
        "and Gaussian starts) end at the global minimum of the rank-constrained problem.",
    ]
    intro = (
        "`nox -s studies` regenerates `data/*.nc` and `data/figures/`. The lines below and the full results (every "
        "study, its figures and tables: [docs/results.md](docs/results.md)) are rendered from those files by "
        "`python -m studies.results --write`; `tests/test_results_numbers.py` checks every number against them."
    )
    return HEADING + "\n\n" + _wrap(intro) + "\n\n" + _wrap("\n".join(items)) + "\n", n


def _results_page(data: Path) -> str:
    """docs/results.md: the full Results section with the detailed tables, as a page of the docs."""
    body, _ = render(data, detail=True, prefix="../")
    body = "# Results" + body[len(HEADING):]
    return ("<!-- Rendered by `python -m studies.results --write` from data/*.nc; do not edit by hand. -->\n\n"
            + body)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m studies.results", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DATA, help="directory of the study files (default: data/)")
    ap.add_argument("--write", action="store_true", help="write the section into README.md and docs/results.md")
    ap.add_argument("--check", action="store_true", help="exit 1 when README.md or docs/results.md is stale")
    args = ap.parse_args(argv)
    section, _ = headlines(args.data)
    readme = README.read_text()
    new_readme = replace_section(readme, section)
    page = _results_page(args.data)
    if args.write:
        README.write_text(new_readme)
        RESULTS_PAGE.write_text(page)
        print(f"wrote the Results section of {README} and {RESULTS_PAGE}")
    elif args.check:
        stale = [str(p) for p, new in ((README, new_readme), (RESULTS_PAGE, page))
                 if not p.is_file() or p.read_text() != new]
        if stale:
            print("stale: " + ", ".join(stale) + " (run `python -m studies.results --write`)")
            return 1
        print("README.md and docs/results.md match data/")
    else:
        sys.stdout.write(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
