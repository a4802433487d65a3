"""Studies of dlnsim: the paper's Figures 1 and 2 and four studies the paper could not do (DESIGN §6).

Run them with ``python -m studies [--quick] [NAME ...]`` (``nox -s studies`` does this).  Each study is one
module with a function ``run(quick: bool, outdir: Path) -> xarray.Dataset`` that computes with dlnsim's
public API, writes ``<outdir>/<name>.nc`` (atomically, with `dlnsim.save`) and the figure
``<outdir>/figures/<name>.png`` and ``.pdf``.

Output directories: the full-size results are archived in ``data/`` (committed); the ``--quick`` variants go
to ``data/quick/`` (git-ignored), so quick runs and tests never overwrite the archive.  ``--outdir`` picks
another directory.

Independent runs are spread over a pool of worker processes (two by default, `_common.workers`), started
with one BLAS/OpenMP thread each.  The variables are set here too, before numpy is imported by the studies,
so the parent process does not oversubscribe the cores either.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

#: study names in the order `python -m studies` runs them (each is a module of this package)
STUDIES = (
    "fig1_constant",
    "fig2_decreasing",
    "balancedness_drift",
    "gd_vs_flow",
    "critical_stepsize",
    "limit_rank",
)

__all__ = ["STUDIES"]
