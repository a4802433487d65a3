"""The experiment engine: a grid of named axes times a cell function, run anywhere, stored per cell, combined.

A *grid* is a set of named axes with values (``N``, ``eta``, ``seed``, ``gamma``, an initialisation scale,
a data-set name, ... any keyword the cell understands).  A *cell* is a module-level function from one point
of the grid to an `xarray.Dataset`.  `run_grid` computes every cell (on threads by default), keeps one atomic
NetCDF file per finished cell in a directory (so a rerun resumes) and combines them into one Dataset over
the axes; `open_grid` combines what a directory holds; `combine_runs` combines runs made by hand.

Modules: ``plan`` (axes, manifest), ``store`` (directory, files, lock), ``executors``, ``combine``, ``engine``.
"""

from dlnsim.grid.combine import combine_runs
from dlnsim.grid.engine import open_grid, run_grid
from dlnsim.grid.executors import EXECUTORS, process_pool
from dlnsim.grid.plan import MAX_CELLS

__all__ = ["EXECUTORS", "MAX_CELLS", "combine_runs", "open_grid", "process_pool", "run_grid"]
