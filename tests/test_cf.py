"""Every file dlnsim writes follows CF-1.11: the IOOS compliance checker (``compliance-checker --test cf:1.11``)
runs to the end on it and finds nothing of high or medium weight.  Fast: a fresh file of each kind (a GD run,
each flow, a GD-vs-flow comparison, runs combined by hand, a grid of flows with a failed cell and its cell files,
a critical-stepsize sweep and a cell).  Slow: GD and GD-vs-flow sweeps and every archived file in data/ (the
studies' quick files: tests/test_studies.py).  Also: a flow file or grid cell of an earlier version, whose time was
named ``time``, loads and combines with the current name ``t``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from cf_checker import problems, suite

import dlnsim
from dlnsim.io import dataset

ROOT = Path(__file__).resolve().parent.parent
ARCHIVE = sorted((ROOT / "data").glob("*.nc"))
SMALL = {"d": 6, "m": 12, "engine": dlnsim.Engine("serial", progress=False)}


def _setup(seed: int = 0) -> tuple[dlnsim.Problem, list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    problem = dlnsim.Problem(rng.standard_normal((3, 10)), rng.standard_normal((2, 10)))
    return problem, dlnsim.gaussian_init((3, 4, 2), rng, 0.5), dlnsim.balanced_init((3, 4, 2), rng, 0.5)


def _flow_cell(t_end: float) -> xr.Dataset:
    problem, W0, _ = _setup()
    return dlnsim.run_flow(problem, W0, t_end, record="linear:4")


def _failing_cell(x: int) -> xr.Dataset:
    if x == 1:
        raise RuntimeError("this cell fails")
    return _flow_cell(0.5)


def _one_cell(directory: Path) -> Path:
    return sorted(directory.glob("cell_*.nc"))[0]


def test_fresh_files_of_every_kind_are_cf_clean(tmp_path: Path) -> None:
    """A GD run, each flow, a comparison, runs combined by hand, a grid of flows with a failed cell (the
    combined file and both cell files) and a critical-stepsize sweep (combined and a cell)."""
    cs = suite()
    problem, W0, Wb = _setup()
    files = {
        "gd": dlnsim.run_gd(problem, W0, 1e-2, 100, record="log:10"),
        "flow": dlnsim.run_flow(problem, W0, 1.0, record="linear:5"),
        "flow_modified": dlnsim.run_flow(problem, Wb, 1.0, record="log:5", kind="modified", eta=1e-2),
        "flow_end_to_end": dlnsim.run_flow(problem, Wb, 1.0, record="linear:5", kind="end_to_end"),
        "compare": dlnsim.compare_flow(problem, Wb, 1e-2, 50, record="log:8", kind=("factor", "modified"),
                                       sharpness=True),
        # (an axis named T would differ from the flow's t only in case, which CF forbids, as for any two names)
        "combined_runs": dlnsim.combine_runs([_flow_cell(0.5), None], {"t_end": [0.5, 1.0]}),
    }
    paths = [dataset.save(ds, tmp_path / f"{name}.nc") for name, ds in files.items()]
    grid = dlnsim.run_grid(tmp_path / "flow_grid", _failing_cell, {"x": [0, 1]}, progress=False, executor="serial")
    assert list(grid["status"].values) == ["done", "error"]
    paths.append(dataset.save(grid, tmp_path / "flow_grid.nc"))
    paths += sorted((tmp_path / "flow_grid").glob("cell_*.nc"))  # a flow and a failed cell
    crit = dlnsim.critical_sweep(tmp_path / "critical", N=[2], seed=[0], n_iter=100, rtol=0.2, **SMALL)
    paths += [dataset.save(crit, tmp_path / "critical.nc"), _one_cell(tmp_path / "critical")]
    assert len(paths) == 11
    found = [p for path in paths for p in problems(cs, path)]
    assert not found, "\n".join(found)


@pytest.mark.slow
def test_fresh_sweeps_are_cf_clean(tmp_path: Path) -> None:
    """A GD sweep and a GD-vs-flow sweep, combined and a cell of each (the largest files: slow to check)."""
    cs = suite()
    gd = dlnsim.sweep(tmp_path / "gd", N=[2], seed=[0], eta_factor=[1.0, 60.0], n_iter=60, **SMALL)
    flow = dlnsim.sweep(tmp_path / "flow", N=[2], seed=[0], eta_factor=[1.0], n_iter=30, flow=True, **SMALL)
    paths = [dataset.save(gd, tmp_path / "gd.nc"), dataset.save(flow, tmp_path / "flow.nc"),
             _one_cell(tmp_path / "gd"), _one_cell(tmp_path / "flow")]
    found = [p for path in paths for p in problems(cs, path)]
    assert not found, "\n".join(found)


@pytest.mark.slow
@pytest.mark.parametrize("path", ARCHIVE, ids=[p.name for p in ARCHIVE])
def test_archived_files_are_cf_clean(path: Path) -> None:
    found = problems(suite(), path)
    assert not found, "\n".join(found)


def test_archive_is_there() -> None:
    assert len(ARCHIVE) >= 12  # the studies' files (checked by the slow test above)


def _as_earlier_version(flow: xr.Dataset) -> xr.Dataset:
    """A flow Dataset as a version before the rename made it: the time dimension and coordinate named ``time``,
    with its earlier long name (what that version's `save` wrote, `save` itself being unchanged)."""
    old = flow.rename(t="time")
    old["time"].attrs = {"units": "1", "long_name": "gradient-flow time t"}
    return old


def test_an_earlier_flow_file_loads_over_t(tmp_path: Path) -> None:
    flow = _flow_cell(1.0)
    assert flow["loss"].dims == ("t",) and flow["t"].attrs == {"units": "1", "long_name": "flow time t"}
    dataset.save(_as_earlier_version(flow), tmp_path / "old.nc")
    with xr.open_dataset(tmp_path / "old.nc") as raw:  # (xarray alone does not rename)
        assert "time" in raw.dims and "t" not in raw.variables
    xr.testing.assert_identical(dlnsim.load(tmp_path / "old.nc"), flow)


def test_an_earlier_flow_cell_combines_over_t(tmp_path: Path) -> None:
    """A grid directory with a cell file that an earlier version wrote combines over ``t``."""
    d = tmp_path / "g"
    ds = dlnsim.run_grid(d, _flow_cell, {"t_end": [0.5, 1.0]}, progress=False, executor="serial")
    cell = _one_cell(d)
    dataset.save(_as_earlier_version(dlnsim.load(cell)), tmp_path / "old_cell.nc")
    data = (tmp_path / "old_cell.nc").read_bytes()
    # the log line that an earlier version wrote for that file (the grid combines a cell only when they agree)
    lines = [json.loads(line) for line in (d / "cells.log").read_text().splitlines()]
    for rec in lines:
        if rec["cell"] == cell.name:
            rec.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    (d / "cells.log").write_text("".join(json.dumps(rec, sort_keys=True) + "\n" for rec in lines))
    cell.write_bytes(data)
    again = dlnsim.open_grid(d)
    assert again["loss"].dims == ("t_end", "t") and again["t"].attrs["long_name"] == "flow time t"
    keep = ("created", "history", "cells_done", "cells_failed")
    xr.testing.assert_identical(again.drop_attrs(), ds.drop_attrs())
    assert {k: v for k, v in again.attrs.items() if k not in keep} == {
        k: v for k, v in ds.attrs.items() if k not in keep}


def test_only_an_earlier_flow_time_is_renamed() -> None:
    """``time`` becomes ``t`` only where it is the flow time of an earlier version: a dimension coordinate with
    units 1 and that version's long name, in a file without ``t``."""
    old = {"units": "1", "long_name": "gradient-flow time t"}
    assert dataset.legacy_renames({"time": (("time",), old)}) == {"time": "t"}
    assert dataset.legacy_attrs("time", old) == {"units": "1", "long_name": "flow time t"}
    for variables in ({"time": (("time",), {**old, "units": "days since 2000-01-01"})},  # a calendar time
                      {"time": (("time",), {**old, "long_name": "time of the experiment"})},  # someone else's
                      {"time": (("time",), old), "t": (("k",), {"units": "1"})},  # t taken
                      {"time": (("k",), old)},  # not a dimension coordinate
                      {"t": (("t",), {"units": "1", "long_name": "flow time t"})}):  # the current name
        assert dataset.legacy_renames(variables) == {}, variables
