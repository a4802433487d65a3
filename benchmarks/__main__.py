"""``python -m benchmarks [--quick] [--full] [--only gd,flow,sweep,scale,jax,limit,system,methods]``: dlnsim next
to its references.

Prints one table per group and every performance target with its measured value, and writes everything to
``benchmarks/results/<timestamp>.json`` (plus ``latest.json``) with a description of the machine and its load.

Groups: ``gd`` (GD step vs numpy), ``flow`` (vs scipy), ``sweep`` (grid on all cores vs serial), ``scale``
(10^4-cell grid costs; default 2000 cells, ``--full`` 10^4), ``jax`` (16 seeds vs JAX jit+vmap; skipped with a
note without jax), ``limit`` (step time vs FLOPs at the DGEMM rate, where the time goes), ``system`` (start-up
time of ``import dlnsim`` and ``dlnsim --version``, compile time, memory), ``methods`` (heavy-ball and Nesterov
steps vs the GD step, an SGD step vs JAX).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "numpy": np.__version__,
    }
    try:
        import numba

        info["numba"] = numba.__version__
    except ImportError:  # pragma: no cover
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [{k: d.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
                        for d in threadpool_info() if d.get("user_api") == "blas"]
    except ImportError:
        pass
    return info


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def table(rows: list[dict[str, Any]]) -> str:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    cells = [[_fmt(r.get(k, "")) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    lines = ["  ".join(k.ljust(w) for k, w in zip(keys, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def targets(results: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Each performance target with its measurement."""
    results = {g: [r for r in rows if "error" not in r] for g, rows in results.items()}
    out: list[dict[str, Any]] = []
    gd = results.get("gd", [])
    for case in sorted({r["case"] for r in gd}):
        strong = [r for r in gd if r["case"] == case and r["impl"] == "numpy_strong"]
        if not strong:
            continue
        want = 10.0 if case.startswith("paper") else 1.3
        out.append({"target": f"GD step {case}: x numpy_strong", "want": f">= {want:g}",
                    "measured": strong[0]["ratio"], "met": strong[0]["ratio"] >= want})
    for r in gd:
        if "fraction_of_dgemm" in r:
            out.append({"target": "wide N=5: fraction of single-thread DGEMM(70)", "want": ">= 0.7",
                        "measured": r["fraction_of_dgemm"], "met": r["fraction_of_dgemm"] >= 0.7})
    for r in results.get("flow", []):
        # the target: the flow to T evaluated at all GD times; the other rows are for information
        if "ratio" in r and str(r.get("case", "")).startswith("states:"):
            out.append({"target": f"flow {r.get('case', '')}: x scipy", "want": ">= 10",
                        "measured": r["ratio"], "met": r["ratio"] >= 10})
            # "agreeing to within 10 rtol": the difference of the two solutions, and each one's error against
            # a DOP853 run at rtol 1e-13 (which side a disagreement comes from)
            rtol = float(r["rtol"])
            for key, what in (("max_rel_diff", "dlnsim vs scipy"), ("dlnsim_err", "dlnsim vs tight reference"),
                              ("reference_err", "scipy vs tight reference")):
                out.append({"target": f"flow states agreement, {what} (in units of rtol)", "want": "<= 10",
                            "measured": r[key] / rtol, "met": r[key] / rtol <= 10})
        if "diagnostics_ratio" in r:
            out.append({"target": "run_flow with default diagnostics / without (20 000 times)", "want": "<= 2",
                        "measured": r["diagnostics_ratio"], "met": r["diagnostics_ratio"] <= 2})
    for r in results.get("sweep", []):
        if "efficiency" in r:
            out.append({"target": "grid on all cores (threads), end to end: rate / (cores x serial rate)",
                        "want": ">= 0.9", "measured": r["efficiency"], "met": r["efficiency"] >= 0.9})
            if "machine_ceiling" in r:  # context: the same ratio for independent GD runs on threads
                out.append({"target": "  (machine ceiling: independent runs on all cores / cores)", "want": "",
                            "measured": r["machine_ceiling"], "met": ""})
            if "cpu_efficiency" in r:
                out.append({"target": "  (CPU time: serial / threads, load-independent)", "want": "",
                            "measured": r["cpu_efficiency"], "met": ""})
        if str(r.get("case", "")).startswith("fresh process"):
            out.append({"target": "grid: call -> first cell starts (fresh process, warm kernel cache)",
                        "want": "<= 1 s", "measured": r["value"], "met": r["value"] <= 1.0})
    for r in results.get("scale", []):
        if "ms_per_cell" in r:
            out.append({"target": f"scale: {r['case']} (ms per cell; peak RSS MB)", "want": "",
                        "measured": f"{r['ms_per_cell']:.3g} ms; {r['peak_rss_mb']:.0f} MB", "met": ""})
    for r in results.get("jax", []):
        if str(r.get("case", "")).startswith("jax_strong"):
            out.append({"target": "16 seeds x 20000 steps N=5: dlnsim 1 core / JAX strong (time ratio)",
                        "want": ">= 3", "measured": r["dlnsim_serial_x"], "met": r["dlnsim_serial_x"] >= 3})
            if "dlnsim_serial_x_cpu" in r:
                out.append({"target": "  (the same in CPU time: JAX may use every core)", "want": ">= 3",
                            "measured": r["dlnsim_serial_x_cpu"], "met": r["dlnsim_serial_x_cpu"] >= 3})
            if "dlnsim_runs_x" in r:
                out.append({"target": "  (dlnsim run_gd on the prepared setups, no files / JAX strong)", "want": "",
                            "measured": r["dlnsim_runs_x"], "met": ""})
            if "dlnsim_serial_no_diagnostics_x" in r:
                out.append({"target": "  (dlnsim 1 core with diagnostics=False / JAX strong)", "want": "",
                            "measured": r["dlnsim_serial_no_diagnostics_x"], "met": ""})
        if str(r.get("case", "")).startswith("target:"):
            out.append({"target": f"  (dlnsim 1 core vs the fastest JAX variant; {r['case'].split('(')[-1][:-1]})",
                        "want": "", "measured": r["dlnsim_serial_x"], "met": ""})
        if str(r.get("case", "")).startswith("note"):
            out.append({"target": "JAX comparison", "want": ">= 3", "measured": r["case"], "met": ""})
    for r in results.get("limit", []):
        if str(r.get("case", "")).startswith("GD step"):
            out.append({"target": "GD step N=5 paper: time / (FLOPs at the DGEMM(70) rate)", "want": "<= 2",
                        "measured": r["x_limit70"], "met": r["x_limit70"] <= 2})
    for r in results.get("methods", []):
        if str(r.get("case", "")).startswith("momentum:") and "ratio" in r:
            out.append({"target": r["case"].split(" (")[0].removeprefix("momentum: "), "want": "<= 1.15",
                        "measured": r["ratio"], "met": r["ratio"] <= 1.15})
        if str(r.get("case", "")).startswith("sgd: b=") and "ratio" in r and "jax" in r["case"]:
            out.append({"target": "SGD step b=16 N=5, one core: JAX time / dlnsim time", "want": ">= 3",
                        "measured": r["ratio"], "met": r["ratio"] >= 3})
    for r in results.get("system", []):
        if r["case"].startswith("startup:"):
            out.append({"target": r["case"], "want": f"<= {r['target_s']:g} s", "measured": r["seconds"],
                        "met": r["seconds"] <= r["target_s"]})
        elif r["case"].startswith("compile"):
            # first run_gd <= 5 s and first run_flow <= 10 s on an empty cache, any first call <= 1 s on a warm one
            lim = (10.0 if "run_flow" in r["case"] else 5.0) if "empty" in r["case"] else 1.0
            out.append({"target": r["case"], "want": f"<= {lim:g} s", "measured": r["seconds"],
                        "met": r["seconds"] <= lim})
        elif "run_increment_mb" in r:
            # the run's own memory: peak RSS during the run minus the process before it (the interpreter with
            # numpy, scipy, numba, xarray loaded is ~200 MB by itself, reported as rss_before_run_mb)
            out.append({"target": "memory of a 10^6-step run (peak RSS - RSS before)", "want": "< 100 MB",
                        "measured": r["run_increment_mb"], "met": r["run_increment_mb"] < 100})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions and steps")
    ap.add_argument("--full", action="store_true", help="the scale group at its full size (10^4 cells)")
    ap.add_argument("--only", default="gd,flow,sweep,scale,jax,limit,system,methods",
                    help="comma-separated groups")
    args = ap.parse_args(argv)
    groups = [g.strip() for g in args.only.split(",") if g.strip()]
    results: dict[str, list[dict[str, Any]]] = {}
    t_start = time.perf_counter()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    info = machine()
    for g in groups:
        t0 = time.perf_counter()
        if g == "gd":
            from .gd_bench import run
        elif g == "flow":
            from .flow_bench import run  # type: ignore[no-redef]
        elif g == "sweep":
            from .sweep_bench import run  # type: ignore[no-redef]
        elif g == "scale":
            from .scale_bench import run  # type: ignore[no-redef]
        elif g == "jax":
            from .jax_bench import run  # type: ignore[no-redef]
        elif g == "limit":
            from .limit_bench import run  # type: ignore[no-redef]
        elif g == "system":
            from .system_bench import run  # type: ignore[no-redef]
        elif g == "methods":
            from .methods_bench import run  # type: ignore[no-redef]
        else:
            ap.error(f"--only: unknown group {g!r} (gd, flow, sweep, scale, jax, limit, system, methods)")
        load = os.getloadavg()[0]
        try:
            if g == "scale" and args.full:
                from .scale_bench import FULL

                rows = run(quick=args.quick, cells=FULL)  # type: ignore[call-arg]
            else:
                rows = run(quick=args.quick)  # type: ignore[call-arg]
        except Exception as exc:  # one failing group (e.g. the package changing under it) keeps the others
            import traceback

            traceback.print_exc()
            rows = [{"case": f"error: the {g} group failed", "error": f"{type(exc).__name__}: {exc}"[:500]}]
        if not rows and g == "jax":
            rows = [{"case": "note: jax is not installed (pip install 'dlnsim[bench]'): no JAX rows"}]
        for r in rows:  # other processes skew every number: the 1-minute load average when the group started
            r.setdefault("load_avg_1min", round(load, 2))
        results[g] = rows
        print(f"\n== {g} ({time.perf_counter() - t0:.0f} s)")
        print(table(rows))
        sys.stdout.flush()
        _write(stamp, {"machine": info, "quick": args.quick, "partial": True, "results": results})
    tg = targets(results)
    print("\n== targets")
    print(table(tg))
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s")
    _write(stamp, {"machine": info, "quick": args.quick, "results": results, "targets": tg})
    print(f"wrote {RESULTS / (stamp + '.json')}")
    return 0


def _write(stamp: str, payload: dict[str, Any]) -> None:
    """Write the results so far (after every group, so that a failure later keeps them)."""
    RESULTS.mkdir(exist_ok=True)
    text = json.dumps(payload, indent=1, default=str)
    (RESULTS / f"{stamp}.json").write_text(text)
    (RESULTS / "latest.json").write_text(text)


if __name__ == "__main__":
    raise SystemExit(main())
