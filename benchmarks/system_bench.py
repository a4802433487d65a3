"""Start-up time (``import dlnsim``, ``dlnsim --version``), compile time (fresh process, empty Numba cache /
warm cache) and peak memory of a 10^6-step run.

Each measurement runs in its own subprocess so that nothing is already imported or compiled.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: start-up targets (seconds, the median wall time of a fresh process with warm caches)
STARTUP_TARGETS = {"import dlnsim": 0.5, "dlnsim --version": 0.3}

FIRST_CALL = """
import time, json, resource
t0 = time.perf_counter()
import dlnsim
s = dlnsim.paper_setup(3, 0)
t1 = time.perf_counter()
dlnsim.run_gd(s.problem, s.W0, 1e-4, 10)
t2 = time.perf_counter()
print(json.dumps({"import_setup_s": t1 - t0, "first_call_s": t2 - t1}))
"""

FIRST_FLOW = """
import time, json
t0 = time.perf_counter()
import dlnsim
s = dlnsim.paper_setup(3, 0)
t1 = time.perf_counter()
dlnsim.run_flow(s.problem, s.W0, [0.5, 1.0])
t2 = time.perf_counter()
print(json.dumps({"import_setup_s": t1 - t0, "first_call_s": t2 - t1}))
"""

LONG_RUN = """
import time, json
import dlnsim

def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")

s = dlnsim.paper_setup(5, 0)
dlnsim.run_gd(s.problem, s.W0, "bound", 10)  # load (or compile) the kernels first
base = status("VmRSS")
try:  # reset the peak-RSS counter (Linux >= 4.0), so VmHWM is the peak during the run alone
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
except OSError:
    pass
t0 = time.perf_counter()
ds = dlnsim.run_gd(s.problem, s.W0, "bound", 1_000_000, record="log")
t1 = time.perf_counter()
peak = status("VmHWM")
print(json.dumps({"run_s": t1 - t0, "peak_rss_mb": peak, "rss_before_run_mb": base, "run_increment_mb": peak - base,
                  "dataset_kb": ds.nbytes / 1024, "final_loss": float(ds.loss[-1]), "status": ds["status"].item()}))
"""


def _py(code: str, env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _command(what: str) -> list[str]:
    """The command line of a start-up case: the interpreter importing dlnsim, or the ``dlnsim`` console script
    next to the interpreter (``python -m dlnsim`` when there is none)."""
    if what == "import dlnsim":
        return [sys.executable, "-c", "import dlnsim"]
    script = Path(sys.executable).parent / "dlnsim"
    return [str(script), "--version"] if script.is_file() else [sys.executable, "-m", "dlnsim", "--version"]


def startup(repeats: int = 7) -> list[dict[str, Any]]:
    """Wall time of ``import dlnsim`` and of ``dlnsim --version``, each a fresh process: one run to warm the
    caches (bytecode, files), then the median of ``repeats`` runs (with the fastest and slowest)."""
    rows = []
    for what, target in STARTUP_TARGETS.items():
        cmd = _command(what)
        subprocess.run(cmd, capture_output=True, check=True)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            subprocess.run(cmd, capture_output=True, check=True)
            times.append(time.perf_counter() - t0)
        rows.append({"case": f"startup: {what} (warm, median of {repeats} processes)",
                     "seconds": statistics.median(times), "min_s": min(times), "max_s": max(times),
                     "target": f"<= {target:g} s", "target_s": target})
    return rows


def run(quick: bool = False) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = startup(repeats=3 if quick else 7)
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        cold = _py(FIRST_CALL, env)
        warm = _py(FIRST_CALL, env)
        # the flow kernels share the gradient kernel (now cached) but compile their own integrator and
        # record-point diagnostics
        flow_cold = _py(FIRST_FLOW, env)
        flow_warm = _py(FIRST_FLOW, env)
    rows.append({"case": "compile: first call, empty cache", "seconds": cold["first_call_s"],
                 "import_s": cold["import_setup_s"], "target": "<= 5 s"})
    rows.append({"case": "compile: first call, warm cache", "seconds": warm["first_call_s"],
                 "import_s": warm["import_setup_s"], "target": "<= 1 s"})
    rows.append({"case": "compile: first run_flow call, empty cache (GD kernels cached)",
                 "seconds": flow_cold["first_call_s"], "import_s": flow_cold["import_setup_s"], "target": "<= 10 s"})
    rows.append({"case": "compile: first run_flow call, warm cache", "seconds": flow_warm["first_call_s"],
                 "import_s": flow_warm["import_setup_s"], "target": "<= 1 s"})
    if not quick:
        t0 = time.perf_counter()
        long = _py(LONG_RUN, dict(os.environ))
        rows.append({"case": "10^6 steps, N=5 paper, log records", "seconds": long["run_s"],
                     "run_increment_mb": long["run_increment_mb"], "peak_rss_mb": long["peak_rss_mb"],
                     "rss_before_run_mb": long["rss_before_run_mb"], "dataset_kb": long["dataset_kb"],
                     "status": long["status"], "final_loss": long["final_loss"], "target": "< 100 MB",
                     "wall_s": time.perf_counter() - t0})
    return rows


if __name__ == "__main__":
    for r in run():
        print(r)
