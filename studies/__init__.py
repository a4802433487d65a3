"""Studies of dlnsim: the paper's Figures 1 and 2 and the studies the paper could not do.

Run them with ``python -m studies [--quick] [NAME ...]`` (``nox -s studies`` does this).  A study is one module:
module-level grid axes, a module-level cell function (one point of the grid -> an `xarray.Dataset`) and a
plot.  Its ``compute(quick, *, directory=None, executor="threads", workers=None, scheduler=None)`` runs the
cells on dlnsim's grid engine (`dlnsim.run_grid`, or `dlnsim.critical_sweep`) and shapes the combined grid
into the study's Dataset; ``run(quick, outdir, cells=None, **engine)`` also writes ``<outdir>/<name>.nc``
(atomically, with `dlnsim.save`) and the figure ``<outdir>/figures/<name>.png`` and ``.pdf``;
``summary(ds)`` gives its headline numbers.

Output directories: the full-size results are archived in ``data/`` (committed); the ``--quick`` variants go
to ``data/quick/`` (git-ignored), so quick runs and tests never overwrite the archive.  ``--outdir`` picks
another directory.  While a study runs, its cells live in ``<outdir>/cells/<name>/`` (git-ignored), one
NetCDF file per cell: an interrupted ``python -m studies`` resumes where it stopped.

The cells run on threads by default (the kernels release the GIL and the engine gives each cell one BLAS
thread, so nothing here sets the BLAS environment), on processes with ``--executor processes``, or on a dask
cluster with ``--scheduler ADDRESS``.  The numbers are the same on every executor.
"""

from __future__ import annotations

#: study names in the order `python -m studies` runs them (each is a module of this package)
STUDIES = (
    "fig1_constant",
    "fig2_decreasing",
    "balancedness_drift",
    "gd_vs_flow",
    "critical_stepsize",
    "limit_rank",
    "stability_threshold",
    "regime_map",
    "out_of_sample",
    "bound_tightness",
    "theorems",
    "step_rules",
)

__all__ = ["STUDIES"]
