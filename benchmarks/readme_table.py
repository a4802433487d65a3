"""The Performance table of the docs (docs/performance.md), rendered from benchmark result files, so that every
number in it is read from a file in ``benchmarks/results/``.

    python -m benchmarks.readme_table FILE [FILE ...]            # print the table
    python -m benchmarks.readme_table --write FILE [FILE ...]    # replace it in docs/performance.md
    python -m benchmarks.readme_table --check                    # the page's table == its files, rendered

Each group (gd, flow, jax, ...) is read from the first file that has it, so a later run of one group
(``nox -s bench -- --only flow``) can complete a full run.  The table sits between two marker comments in
docs/performance.md, which also name the files (``--check`` reads them from there).  (The module keeps its name
from when the table lived in the README.)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "performance.md"
START, END = "<!-- bench-table:start", "<!-- bench-table:end -->"

Row = tuple[str, str, str, str, str]  # what, dlnsim, reference, ratio, target


def _groups(files: list[Path]) -> tuple[dict[str, list[dict[str, Any]]], dict[str, str]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    source: dict[str, str] = {}
    for f in files:
        payload = json.loads(f.read_text())
        for g, rows in payload["results"].items():
            if g not in groups and rows and not any("error" in r for r in rows):
                groups[g], source[g] = rows, f.name
    return groups, source


def _find(rows: list[dict[str, Any]], test: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    for r in rows:
        if test(r):
            return r
    raise KeyError("no such row")


def _starts(prefix: str) -> Callable[[dict[str, Any]], bool]:
    return lambda r: str(r.get("case", "")).startswith(prefix)


def _mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def _g(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}g}"


def rows(groups: dict[str, list[dict[str, Any]]]) -> list[Row]:
    out: list[Row] = []
    gd = groups.get("gd", [])
    if gd:
        def gd_row(case: str, impl: str) -> dict[str, Any]:
            return _find(gd, lambda r: r["case"] == case and r["impl"] == impl)

        Ns = ("2", "3", "5")
        ours = [gd_row(f"paper N={N}", "dlnsim") for N in Ns]
        ref = [gd_row(f"paper N={N}", "numpy_strong") for N in Ns]
        ratios = [r["ratio"] for r in ref]
        out.append(("GD step, paper setup N = 2 / 3 / 5", " / ".join(_g(r["us_per_step"]) for r in ours) + " µs",
                    "numpy strong " + " / ".join(_g(r["us_per_step"], 3) for r in ref) + " µs",
                    " / ".join(f"{x:.1f}×" for x in ratios), f"≥ 10× {_mark(min(ratios) >= 10)}"))
        w, wr = gd_row("wide N=5 (all 70)", "dlnsim"), gd_row("wide N=5 (all 70)", "numpy_strong")
        out.append(("GD step, wide net N = 5 (all widths 70)", f"{_g(w['us_per_step'])} µs",
                    f"{_g(wr['us_per_step'])} µs", f"{wr['ratio']:.2f}×", f"≥ 1.3× {_mark(wr['ratio'] >= 1.3)}"))
        out.append(("same, fraction of single-thread DGEMM(70)", f"{w['fraction_of_dgemm']:.2f}", "", "",
                    f"≥ 0.7 {_mark(w['fraction_of_dgemm'] >= 0.7)}"))
    if "limit" in groups:
        r = _find(groups["limit"], _starts("GD step"))
        flops = f"{r['flops_per_step']:,.0f}".replace(",", " ")
        out.append((f"GD step N = 5 paper setup against its FLOP count at the DGEMM(70) rate ({flops} flops; "
                    f"median of {r['reps']}, range {r['x_limit70_min_max']})", f"{_g(r['us_per_step'])} µs", "",
                    f"{r['x_limit70']:.2f}× the limit",
                    f"≤ 2× {_mark(r['x_limit70'] <= 2)}"))
    flow = groups.get("flow", [])
    if flow:
        for prefix, what in (("states:", "factor flow N = 5, T = 20, 20 000 times (states kept at 200), rtol 1e-8"),
                             ("states+loss:", "same with the loss at every time (the state at every time)")):
            r = _find(flow, _starts(prefix))
            target = f"≥ 10× {_mark(r['ratio'] >= 10)}" if prefix == "states:" else ""
            out.append((what, f"{_g(r['dlnsim_s'], 2)} s", f"scipy DOP853 {_g(r['reference_s'], 3)} s",
                        f"{r['ratio']:.1f}×", target))
        try:
            r = _find(flow, lambda r: "diagnostics_ratio" in r)
            out.append((f"`run_flow` with its default diagnostics vs without, 20 000 times (median of {r['pairs']} "
                        f"pairs, range {r['ratio_min_max']})", f"{_g(r['dlnsim_s'], 2)} s", f"{_g(r['bare_s'], 2)} s",
                        f"{r['diagnostics_ratio']:.2f}×", f"≤ 2× {_mark(r['diagnostics_ratio'] <= 2)}"))
        except KeyError:
            pass
    jax = groups.get("jax", [])
    if jax and not _starts("note")(jax[0]):
        ser = _find(jax, _starts("dlnsim sweep, serial (1 core)"))
        strong = _find(jax, _starts("jax_strong"))
        steps = re.search(r"x (\d+) steps", ser["case"])
        n = steps.group(1) if steps else "?"
        out.append((f"16 seeds × {n} steps N = 5, default records: dlnsim on one core vs JAX `jit(vmap(lax.scan))` "
                    f"through the narrowest layer (median of {ser['reps']})", f"{ser['cells_per_s']:.2f} cells/s",
                    f"strong JAX {strong['cells_per_s']:.2f} cells/s", f"{strong['dlnsim_serial_x']:.2f}×",
                    f"≥ 3× {_mark(strong['dlnsim_serial_x'] >= 3)}"))
        out.append(("same in CPU seconds (JAX uses both cores)", f"{ser['cpu_seconds']:.2f} s",
                    f"{strong['cpu_seconds']:.2f} s", f"{strong['dlnsim_serial_x_cpu']:.2f}×", ""))
        try:
            bare = _find(jax, _starts("dlnsim sweep, serial, diagnostics=False"))
            out.append(("same, dlnsim with `diagnostics=False`", f"{bare['cells_per_s']:.2f} cells/s", "",
                        f"{strong['dlnsim_serial_no_diagnostics_x']:.2f}×", ""))
        except KeyError:
            pass
        try:
            runs = _find(jax, _starts("dlnsim_runs"))
            out.append(("same, dlnsim `run_gd` on the 16 setups prepared before the timing, as the JAX side "
                        "(no files)", f"{runs['cells_per_s']:.2f} cells/s", "", f"{strong['dlnsim_runs_x']:.2f}×",
                        ""))
        except KeyError:
            pass
        thr = _find(jax, _starts("dlnsim sweep, threads"))
        out.append(("same, dlnsim on both cores (threads)", f"{thr['cells_per_s']:.2f} cells/s", "",
                    f"{strong['dlnsim_threads_x']:.2f}×", ""))
        for prefix, what in (("jax_grad", "`jax.grad` of the factored loss"),
                             ("jax_user", "JAX written as a user would (product first)")):
            try:
                r = _find(jax, _starts(prefix))
            except KeyError:
                continue
            out.append((f"dlnsim on one core vs {what}", "", f"{r['cells_per_s']:.2f} cells/s",
                        f"{r['dlnsim_serial_x']:.2f}×", ""))
    sweep = groups.get("sweep", [])
    if sweep:
        thr = _find(sweep, _starts("threads (default)"))
        ser = _find(sweep, _starts("serial:"))
        cells = _find(sweep, _starts("load average (1 min) before"))
        out.append((f"grid: {cells['cells']} cells × {cells['n_iter']} steps on the threads executor vs serial "
                    f"(range {thr['efficiency_min_max']})", f"{thr['value']:.1f} cells/s",
                    f"{ser['value']:.1f} cells/s", f"{thr['efficiency']:.2f} × cores",
                    f"≥ 0.9 × cores {_mark(thr['efficiency'] >= 0.9)}"))
        pool = _find(sweep, _starts("processes, warm process_pool"))
        out.append(("same on a warm `process_pool(2)`", f"{pool['value']:.1f} cells/s", "",
                    f"{pool['efficiency_vs_cores']:.2f} × cores", ""))
        ceil = _find(sweep, _starts("machine ceiling"))
        out.append(("this machine's ceiling: two GD runs on two threads at once vs one alone", "", "",
                    f"{ceil['value']:.2f} × cores", ""))
        first = _find(sweep, _starts("fresh process"))
        out.append(("grid: call → first cell starts (fresh process, warm cache)", f"{first['value']:.3f} s", "", "",
                    f"≤ 1 s {_mark(first['value'] <= 1)}"))
    scale = groups.get("scale", [])
    if scale:
        parts = [_find(scale, lambda r, k=k: str(r.get("case", "")).endswith(k) and "ms_per_cell" in r)
                 for k in ("compute+write", "resume", "combine")]
        n = parts[0]["cells_done"]
        out.append((f"grid of {n} short cells: compute + write / resume / combine",
                    " / ".join(_g(p["ms_per_cell"], 2) for p in parts) + " ms per cell", "", "", ""))
    system = groups.get("system", [])
    if system:
        def sec(prefix: str) -> float:
            return float(_find(system, _starts(prefix))["seconds"])

        gd0, fl0 = sec("compile: first call, empty"), sec("compile: first run_flow call, empty")
        warm = max(sec("compile: first call, warm"), sec("compile: first run_flow call, warm"))
        out.append(("first `run_gd`, empty cache / first `run_flow`, empty cache (GD kernels cached) / warm",
                    f"{gd0:.1f} s / {fl0:.1f} s / {warm:.1f} s", "", "",
                    f"≤ 5 s {_mark(gd0 <= 5)} / ≤ 10 s {_mark(fl0 <= 10)} / ≤ 1 s {_mark(warm <= 1)}"))
        starts = [r for r in system if str(r.get("case", "")).startswith("startup:")]
        if starts:
            imp, ver = (_find(starts, lambda r, w=w: w in r["case"]) for w in ("import dlnsim", "--version"))
            out.append(("`import dlnsim` / `dlnsim --version`, fresh process, warm (median of 7)",
                        f"{imp['seconds']:.2f} s / {ver['seconds']:.2f} s", "", "",
                        f"≤ {imp['target_s']:g} s {_mark(imp['seconds'] <= imp['target_s'])} / "
                        f"≤ {ver['target_s']:g} s {_mark(ver['seconds'] <= ver['target_s'])}"))
    methods = groups.get("methods", [])
    if methods:
        for name, what in (("heavy_ball", "heavy-ball"), ("nesterov", "Nesterov")):
            rs = [_find(methods, lambda r, n=name, N=N: str(r.get("case", "")).startswith(f"momentum: {n} step")
                        and f"paper N={N} " in r["case"]) for N in (2, 3, 5)]
            ratios = [r["ratio"] for r in rs]
            out.append((f"{what} step (β = 0.9) vs the GD step, paper setup N = 2 / 3 / 5 (median of paired ratios)",
                        " / ".join(_g(r["us_per_step"]) for r in rs) + " µs",
                        "GD " + " / ".join(_g(r["gd_us_per_step"]) for r in rs) + " µs",
                        " / ".join(f"{x:.2f}×" for x in ratios), f"≤ 1.15× {_mark(max(ratios) <= 1.15)}"))
        try:
            r = _find(methods, lambda r: str(r.get("case", "")).startswith("sgd:") and "jax" in r["case"])
            out.append(("minibatch SGD b = 16 step, paper setup N = 5, one core, vs JAX `jit(lax.scan)` over the "
                        "same batches (the faster of two associations)", f"{_g(r['us_per_step'])} µs",
                        f"JAX {_g(r['ref_us_per_step'])} µs", f"{r['ratio']:.2f}×", f"≥ 3× {_mark(r['ratio'] >= 3)}"))
        except KeyError:
            pass
        try:
            r = _find(methods, lambda r: str(r.get("case", "")).startswith("sgd:") and "torch" in r["case"])
            out.append(("same vs eager PyTorch (autograd, one thread)", f"{_g(r['us_per_step'])} µs",
                        f"PyTorch {_g(r['ref_us_per_step'])} µs", f"{r['ratio']:.1f}×", ""))
        except KeyError:
            pass
    return out


def render(files: list[Path]) -> str:
    groups, source = _groups(files)
    loads = sorted({r["load_avg_1min"] for rows_ in groups.values() for r in rows_ if "load_avg_1min" in r})
    names = ", ".join(f"`benchmarks/results/{f.name}`" for f in files)
    which = "" if len(files) == 1 else " (" + ", ".join(f"{g} from {s}" for g, s in source.items()) + ")"
    load = f"; 1-minute load average {loads[0]:.1f}-{loads[-1]:.1f} when the groups started" if loads else ""
    lines = [f"{START} {' '.join(f.name for f in files)} -->",
             f"From {names}{which}{load}.",
             "",
             "| what | dlnsim | reference | ratio | target |",
             "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows(groups)]
    lines.append(END)
    return "\n".join(lines)


def _cited(text: str) -> list[Path]:
    m = re.search(re.escape(START) + r" ([^>]*?) -->", text)
    if not m:
        raise SystemExit(f"docs/performance.md has no {START} ... --> marker")
    return [ROOT / "benchmarks" / "results" / name for name in m.group(1).split()]


def _replace(text: str, table: str) -> str:
    a, b = text.index(START), text.index(END) + len(END)
    return text[:a] + table + text[b:]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.readme_table", description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", type=Path, help="result files (default: those docs/performance.md names)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="replace the table in docs/performance.md")
    mode.add_argument("--check", action="store_true", help="exit 1 when the page's table is not its files'")
    args = ap.parse_args(argv)
    text = PAGE.read_text()
    files = [f if f.is_absolute() else Path.cwd() / f for f in args.files] or _cited(text)
    table = render(files)
    if args.write:
        PAGE.write_text(_replace(text, table))
        print(f"wrote the Performance table of {PAGE}")
    elif args.check:
        if _replace(text, table) != text:
            print("docs/performance.md's table differs from its result files (run with --write)", file=sys.stderr)
            return 1
        print("docs/performance.md's table matches its result files")
    else:
        print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
