"""The README's "## Results" headlines and the docs' Results page (docs/results.md) against the archived data/*.nc.

Every number of both texts is produced by studies/results.py from the data: each must be exactly what
``python -m studies.results`` renders now, the template must type no number of its own (rendered with every
number blanked, the only digits left are equation, theorem and figure references and registered formulas), every
printed number must stand for its data value to the digits printed, and a set of headline numbers is read here
again straight from the files with xarray and looked for in the texts.
"""

from __future__ import annotations

import difflib
import importlib.util
import math
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import dlnsim

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
if importlib.util.find_spec("studies") is None:  # `pytest`, unlike `python -m pytest`, does not add the root
    sys.path.insert(0, str(ROOT))

from studies import results as R  # noqa: E402

FILES = ("fig1_constant", "fig2_decreasing", "balancedness_drift", "gd_vs_flow", "critical_stepsize", "limit_rank",
         "stability_threshold", "regime_map", "out_of_sample", "bound_tightness")
pytestmark = pytest.mark.skipif(not all((DATA / f"{f}.nc").is_file() for f in FILES),
                                reason="the archived data/*.nc are missing (python -m studies)")
#: digits the template may hold: equation numbers, theorem and figure references, figure file names
REFERENCES = (r"\(\d\.\d\)", r"Theorem \d\.\d", r"Prop\. \d\.\d\(\d\)", r"Figure \d(\([a-d]\))?", r"figures/fig\d_")
#: a number as results.py prints it: 12, 0.265, 7.80e-4, -3.95, (7.6 ± 0.4)e-4 is three of them
NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e-?\d+)?(?!\w|\.\d)")


def _section(joined: bool = False) -> str:
    """The README's Results section (with its lines joined: ``joined``)."""
    text = (ROOT / "README.md").read_text()
    start, end = R.readme_section(text)
    return " ".join(text[start:end].split()) if joined else text[start:end]


def _page(joined: bool = False) -> str:
    """docs/results.md, the full results (with its lines joined: ``joined``)."""
    text = (ROOT / "docs" / "results.md").read_text()
    return " ".join(text.split()) if joined else text


def _diff(a: str, b: str) -> str:
    return "\n".join(difflib.unified_diff(a.splitlines(), b.splitlines(), "README", "rendered", lineterm="", n=0))


@pytest.fixture(scope="module", params=["readme", "page"])
def rendered(request: pytest.FixtureRequest) -> tuple[str, R.Numbers]:
    """The README's headlines, then the full results of the docs page."""
    return R.headlines(DATA) if request.param == "readme" else R.render(DATA, detail=True, prefix="../")


def test_the_section_is_what_the_data_give() -> None:
    text, _ = R.headlines(DATA)
    section = _section()
    assert section == text, "README Results section is stale (python -m studies.results --write):\n" + _diff(
        section, text)


def test_results_page_is_what_the_data_give() -> None:
    page, new = _page(), R._results_page(DATA)
    assert page == new, "docs/results.md is stale (python -m studies.results --write):\n" + _diff(page, new)


def test_the_template_types_no_number() -> None:
    for blank_text in (R.render(DATA, blank=True)[0], R.render(DATA, blank=True, detail=True)[0],
                       R.headlines(DATA, blank=True)[0]):
        blank = " ".join(blank_text.split())  # lines joined: formulas whole
        for formula in sorted(R.FORMULAS, key=len, reverse=True):
            assert "." not in formula, formula  # a formula holds exponents and indices, never a measured value
            blank = blank.replace(formula, "")
        for pattern in REFERENCES:
            blank = re.sub(pattern, "", blank)
        left = [m.group(0) for m in re.finditer(r".{0,30}\d.{0,30}", blank)]
        assert not left, f"digits typed in the template of studies/results.py: {left}"


def _precision(text: str) -> float:
    """Half a unit of the last printed digit of ``text``."""
    mant, _, exp = text.partition("e")
    # an integer's trailing zeros may be rounding (three significant digits: 2600 for 2601.7)
    decimals = len(mant.split(".")[1]) if "." in mant else -(len(mant) - len(mant.rstrip("0")))
    if mant.strip("-0") == "":
        decimals = 0
    return 0.5 * 10.0 ** (-decimals + (int(exp) if exp else 0))


def test_every_number_stands_for_its_data_value(rendered: tuple[str, R.Numbers]) -> None:
    text, numbers = rendered
    printed = [(t, v) for t, v, key in numbers.items if key != "label"]
    assert len(printed) > 20
    for t, v in printed:
        assert math.isfinite(v), t
        # rtol: the rounding to the printed digits (plus float noise)
        assert abs(float(t) - v) <= _precision(t) * (1 + 1e-9) + 1e-12 * abs(v), (t, v)
    # and the section holds these numbers and no other (references and formulas aside; the collector records
    # them in the order they were formatted, which is not always the order of the text)
    stripped = " ".join(text.split())
    for formula in sorted(R.FORMULAS, key=len, reverse=True):
        stripped = stripped.replace(formula, " ")
    for pattern in REFERENCES:
        stripped = re.sub(pattern, " ", stripped)
    for label in {t for t, _, key in numbers.items if key == "label"}:
        stripped = stripped.replace(label, " ")
    found = NUMBER.findall(stripped.replace("−", "-"))
    assert Counter(found) == Counter(t for t, _ in printed)


# ------------------------------------------------------------------------------ headline numbers, read again


def _open(name: str) -> xr.Dataset:
    return dlnsim.load(DATA / f"{name}.nc")  # text dimension coordinates (case, ...) as text again


def _e(x: float, digits: int = 2) -> str:
    mant, exp = f"{x:.{digits}e}".split("e")
    return f"{mant}e{int(exp)}"


def test_readme_headlines_read_again_from_the_files() -> None:
    section = _section(joined=True)
    f1 = _open("fig1_constant")
    assert "η* = " + ", ".join(_e(float(f1["bound_eta"].sel(N=N))) for N in f1["N"].values) in section
    cs = _open("critical_stepsize")
    assert ", ".join(str(round(float(cs["ratio"].sel(N=N).median()))) for N in cs["N"].values) + " times η*" in section
    lr = _open("limit_rank")
    assert f"{int(lr['reached_global_min'].sum())} of {lr['reached_global_min'].size} runs" in section
    assert "docs/results.md" in section


def test_headline_numbers_read_again_from_the_files() -> None:
    section = _page(joined=True)
    f1 = _open("fig1_constant")
    # Figure 1: our eta*, the paper's, the paper's N = 5 value above our bound
    for N in (2, 3, 5):
        assert _e(float(f1["bound_eta"].sel(N=N))) in section
        assert _e(float(f1["paper_eta"].sel(N=N))) in section
    over = float(f1["paper_eta"].sel(N=5) / f1["bound_eta"].sel(N=5))
    assert over > 1 and f"{over:.2f} η* of our instance, above our bound" in section
    stops = ", ".join(str(int(v)) for v in f1["stop_iteration"].sel(case="a_bound").values)
    assert f"after {stops} iterations" in section
    # Figure 2: where gamma = 0.4 ends, and the iterations it would need
    f2 = _open("fig2_decreasing")
    b = f2.sel(case="b_gamma0.4")
    assert (b["status"] != "converged").all()
    for N in (3, 5):
        assert f"L = {float(b['final_loss'].sel(N=N)):.1f} (from {float(b['initial_loss'].sel(N=N)):.1f})" in section
    need = f2["iterations_needed"].sel(decaying="b_gamma0.4").values
    assert "about " + ", ".join(_e(v, 1) for v in need) + " iterations at γ = 0.4" in section
    # balancedness drift: the small-eta slopes and the stop times
    dr = _open("balancedness_drift")
    assert "slope " + ", ".join(f"{v:.2f}" for v in dr["lin_slope"].values) in section
    assert f"between {float(dr['stop_time'].min()):.1f} and {float(dr['stop_time'].max()):.1f}" in section
    # critical stepsize: medians, local exponents, the share of B_delta, the crossover
    cs = _open("critical_stepsize")
    for N in cs["N"].values:
        s = cs.sel(N=N)
        row = (f"| {N} | {_e(float(s['eta_star'].median()))} | ")
        assert row in section, row
        assert f"| {round(float(s['ratio'].median()))} ({round(float(s['ratio'].min()))}–" in section
    lo = np.log(cs["N"].values.astype(float))
    ratio_exp = np.diff(np.log(cs["ratio"].median("seed").values)) / np.diff(lo)
    assert ", ".join(f"{v:.2f} ({a}–{b})" for v, a, b in zip(ratio_exp, cs["N"].values[:-1], cs["N"].values[1:],
                                                             strict=True)) in section
    share = (cs["B_first"] + cs["B_second"]) / (cs["loss_term"] + cs["B_first"] + cs["B_second"])
    assert f"{100 * float(share.min()):.1f}–{100 * float(share.max()):.1f} % of the denominator" in section
    assert f"only at N ≈ {round(float(np.nanmedian(cs['crossover_N'].values)))}" in section
    # limit rank: the counts of the table
    lr = _open("limit_rank")
    for case in lr["case"].values:
        for N in lr["N"].values:
            s = lr.sel(case=case, N=N)
            rb = int(s["r_bar"])
            row = (f"| {case} | {N} | {rb} | {s['sv_rank'].size} | {int((s['sv_rank'] == rb).sum())} | "
                   f"{int(s['reached_global_min'].sum())} |")
            assert row in section, row
    # GD vs flow: the slopes
    fl = _open("gd_vs_flow")
    assert "p = " + ", ".join(f"{v:.3f}" for v in fl["slope"].sel(flow="factor").values) in section
