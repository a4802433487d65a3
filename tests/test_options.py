"""The option objects of a run (Record, Stop, Tolerances, Engine) and the step rules: validation naming the
field, the JSON round trip, sweeps resumed with equal or different options, and a run equal to its grid cell."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import dlnsim
from dlnsim.methods import method_from_json

SMALL = {"d": 8, "m": 24, "r": 2}
QUIET = dlnsim.Engine("serial", progress=False)

# ------------------------------------------------------------------------------------------------- validation

BAD_OPTIONS = [
    (dlnsim.Record, {"points": "sometimes"}, "Record.points"),
    (dlnsim.Record, {"points": "log:abc"}, "Record.points"),
    (dlnsim.Record, {"points": 0}, "Record.points"),
    (dlnsim.Record, {"points": True}, "Record.points"),
    (dlnsim.Record, {"points": [1.0, float("nan")]}, "Record.points"),
    (dlnsim.Record, {"diagnostics": ["svd"]}, "Record.diagnostics"),
    (dlnsim.Record, {"diagnostics": 3}, "Record.diagnostics"),
    (dlnsim.Record, {"stop_point": 1}, "Record.stop_point"),
    (dlnsim.Record, {"final_weights": "yes"}, "Record.final_weights"),
    (dlnsim.Stop, {"gtol": -1}, "Stop.gtol"),
    (dlnsim.Stop, {"gtol": float("nan")}, "Stop.gtol"),
    (dlnsim.Stop, {"ltol": 1.0}, "Stop.ltol"),
    (dlnsim.Stop, {"ltol": -1.0}, "Stop.ltol"),
    (dlnsim.Stop, {"early": "no"}, "Stop.early"),
    (dlnsim.Stop, {"blowup": 0.0}, "Stop.blowup"),
    (dlnsim.Stop, {"blowup": float("inf")}, "Stop.blowup"),
    (dlnsim.Tolerances, {"rtol": 0.0}, "Tolerances.rtol"),
    (dlnsim.Tolerances, {"atol": -1.0}, "Tolerances.atol"),
    (dlnsim.Tolerances, {"max_steps": 0}, "Tolerances.max_steps"),
    (dlnsim.Tolerances, {"max_steps": 2.5}, "Tolerances.max_steps"),
    (dlnsim.Tolerances, {"first_step": -1.0}, "Tolerances.first_step"),
    (dlnsim.Tolerances, {"fixed_step": 0.0}, "Tolerances.fixed_step"),
    (dlnsim.Tolerances, {"balance_tol": -1.0}, "Tolerances.balance_tol"),
    (dlnsim.Engine, {"executor": "cluster"}, "Engine.executor"),
    (dlnsim.Engine, {"workers": 0}, "Engine.workers"),
    (dlnsim.Engine, {"progress": "yes"}, "Engine.progress"),
]


@pytest.mark.parametrize(("cls", "kwargs", "field"), BAD_OPTIONS,
                         ids=[f"{f}={next(iter(k.values()))!r}" for _, k, f in BAD_OPTIONS])
def test_validation_errors_name_the_field(cls: type, kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=rf"^(record: )?{field.replace('.', '[.]')}\b"):
        cls(**kwargs)


def test_options_are_frozen_and_replace_validates() -> None:
    stop = dlnsim.Stop(gtol=1e-8)
    with pytest.raises(AttributeError):
        stop.gtol = 1.0  # type: ignore[misc]
    assert stop.replace(early=True) == dlnsim.Stop(gtol=1e-8, early=True)
    with pytest.raises(ValueError, match=r"^Stop\.gtol"):
        stop.replace(gtol=-1.0)


def test_plain_values_stand_for_options() -> None:
    from dlnsim.options import as_engine, as_record, as_stop, as_tolerances

    assert as_record("log:50") == dlnsim.Record("log:50")
    assert as_record(None) == dlnsim.Record() and as_stop(None) == dlnsim.Stop()
    assert as_tolerances(None) == dlnsim.Tolerances() and as_engine("serial") == dlnsim.Engine("serial")
    with pytest.raises(ValueError, match="stop must be a Stop"):
        as_stop(dlnsim.Record())
    with pytest.raises(ValueError, match="tolerances must be a Tolerances"):
        as_tolerances({"rtol": 1e-8})  # a dict without the type tag is not a JSON form


# ------------------------------------------------------------------------------------------------------ JSON

OPTIONS = [
    dlnsim.Record(),
    dlnsim.Record("log:50", diagnostics=["balancedness", "grad_norm_sq"], stop_point=False, final_weights=True),
    dlnsim.Record(np.array([0, 5, 10])),
    dlnsim.Record([0.0, 0.5, 1.0]),
    dlnsim.Record(dlnsim.Every(3), diagnostics=False),
    dlnsim.Stop(),
    dlnsim.Stop(gtol=1e-8, ltol=0.0, early=True, blowup=1e4),
    dlnsim.Tolerances(),
    dlnsim.Tolerances(rtol=1e-8, atol=1e-10, max_steps=100, first_step=1e-3, fixed_step=0.01, balance_tol=0.0),
    dlnsim.Engine(),
    dlnsim.Engine("processes", workers=2, progress=False),
    dlnsim.Engine("dask", scheduler="tcp://127.0.0.1:8786"),
]


@pytest.mark.parametrize("option", OPTIONS, ids=[repr(o) for o in OPTIONS])
def test_json_round_trip(option: Any) -> None:
    data = json.loads(json.dumps(option.to_json()))
    assert data["type"] == type(option).__name__
    back = type(option).from_json(data)
    assert back == option and type(back) is type(option)


def test_from_json_refuses_another_type_and_unknown_fields() -> None:
    with pytest.raises(ValueError, match=r"Stop\.from_json: expected a dict with type 'Stop'"):
        dlnsim.Stop.from_json(dlnsim.Record().to_json())
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['tol'\]"):
        dlnsim.Stop.from_json({"type": "Stop", "tol": 1.0})


def test_step_rule_json_round_trip() -> None:
    gd = dlnsim.GD()
    data = json.loads(json.dumps(gd.to_json()))
    assert data == {"type": "GD"}
    back = method_from_json(data)
    assert back == gd and isinstance(back, dlnsim.GD)
    with pytest.raises(ValueError, match="method: expected the JSON form"):
        method_from_json({"type": "Adam"})


# ------------------------------------------------------------------------------------------ sweeps and options


def _sweep(directory: Path | None, **kw: Any) -> xr.Dataset:
    args = {"N": [2], "eta_factor": [0.5, 1.0], "seed": [0], "n_iter": 50, "engine": QUIET, **SMALL, **kw}
    return dlnsim.sweep(directory, **args)


def _stamps(directory: Path) -> dict[str, tuple[int, int, int]]:
    return {f.name: (f.stat().st_ino, f.stat().st_mtime_ns, f.stat().st_size) for f in directory.iterdir()}


def test_a_sweep_resumed_with_equal_options_recomputes_nothing(tmp_path: Path) -> None:
    d = tmp_path / "s"
    record, stop = dlnsim.Record("log:20", diagnostics=["balancedness"]), dlnsim.Stop(gtol=1e-8)
    first = _sweep(d, record=record, stop=stop)
    before = _stamps(d)
    assert len([n for n in before if n.startswith("cell_")]) == 2
    # equal options, made anew (and one as its JSON form), another engine: nothing is run again
    again = _sweep(d, record=dlnsim.Record("log:20", diagnostics=("balancedness",)),
                   stop=dlnsim.Stop.from_json(json.loads(json.dumps(stop.to_json()))),
                   engine=dlnsim.Engine("threads", workers=2, progress=False))
    assert _stamps(d) == before
    xr.testing.assert_identical(again, first)


@pytest.mark.parametrize("change", [{"stop": dlnsim.Stop(gtol=1e-6)}, {"stop": dlnsim.Stop(gtol=1e-8, early=True)},
                                    {"record": dlnsim.Record("log:30", diagnostics=["balancedness"])},
                                    {"record": dlnsim.Record("log:20")}],
                         ids=["gtol", "early", "points", "diagnostics"])
def test_a_sweep_resumed_with_other_options_is_refused_untouched(tmp_path: Path, change: dict[str, Any]) -> None:
    d = tmp_path / "s"
    options = {"record": dlnsim.Record("log:20", diagnostics=["balancedness"]), "stop": dlnsim.Stop(gtol=1e-8)}
    _sweep(d, **options)
    before = _stamps(d)
    contents = {name: (d / name).read_bytes() for name in before}
    with pytest.raises(ValueError, match="different"):
        _sweep(d, **{**options, **change})
    assert _stamps(d) == before
    assert {name: (d / name).read_bytes() for name in before} == contents


# --------------------------------------------------------------------------------------- runs and their cells


def test_concat_of_runs_keeps_the_outcomes_as_variables() -> None:
    s = dlnsim.paper_setup(2, 0, **SMALL)
    small = dlnsim.run_gd(s.problem, s.W0, 1e-3, 20, record="all")
    large = dlnsim.run_gd(s.problem, s.W0, 50.0, 20, record="all")  # diverges
    both = xr.concat([small, large], dim=pd.Index([1e-3, 50.0], name="stepsize"))
    for name in ("status", "stop_iteration"):
        assert name in both.data_vars and both[name].dims == ("stepsize",), name
    assert list(both["status"].values) == [small["status"].item(), large["status"].item()]
    assert list(both["status"].values) == ["max_iter", "diverged"]
    assert list(both["stop_iteration"].values) == [20, large["stop_iteration"].item()]
    assert large["stop_iteration"].item() < 20


def _cell_run(N: int, seed: int, factor: float, n_iter: int, **options: Any) -> xr.Dataset:
    """The run of a sweep cell made with run_gd, as `dlnsim.sweeps.grid_sweeps.gd_cell` makes it: the bound of the
    start passed on, and the stepsize used in the attribute ``eta_value``."""
    s = dlnsim.paper_setup(N, seed, **SMALL)
    bound = dlnsim.stepsize_bound(s.problem, s.W0)
    eta = factor * bound.eta
    return dlnsim.run_gd(s.problem, s.W0, eta, n_iter, bound=bound, attrs={"eta_value": eta}, **options)


def test_a_grid_without_directory_holds_the_runs() -> None:
    stop = dlnsim.Stop(gtol=1e-6)
    grid = dlnsim.sweep(None, N=[2, 3], eta_factor=[0.5, 5000.0], seed=[0, 1], n_iter=200, stop=stop, engine=QUIET,
                        **SMALL)
    for N in (2, 3):
        for factor in (0.5, 5000.0):
            for seed in (0, 1):
                run = _cell_run(N, seed, factor, 200, stop=stop)
                cell = grid.sel(N=N, eta_factor=factor, seed=seed)
                assert cell["status"].item() == run["status"].item()
                np.testing.assert_array_equal(cell["final_loss"].values, run["final_loss"].values)
                np.testing.assert_array_equal(cell["loss"].values, run["loss"].values)
                np.testing.assert_array_equal(cell["k"].values, run["k"].values)
    assert "diverged" in set(grid["status"].values.ravel())  # both kinds of outcome were compared


def _without_created(ds: xr.Dataset) -> xr.Dataset:
    out = ds.copy()
    out.attrs = {k: v for k, v in ds.attrs.items() if k != "created"}
    return out


def test_a_cell_file_is_the_run(tmp_path: Path) -> None:
    record, stop = dlnsim.Record("log:30", final_weights=True), dlnsim.Stop(gtol=1e-8, early=True)
    _sweep(tmp_path / "s", N=[2, 3], eta_factor=[0.5, 5000.0], seed=[1], n_iter=300, record=record, stop=stop)
    for N in (2, 3):
        for factor in (0.5, 5000.0):
            cell = dlnsim.load(tmp_path / "s" / f"cell_N{N}_eta_factor{factor}_seed1.nc")
            run = _cell_run(N, 1, factor, 300, record=record, stop=stop)
            xr.testing.assert_identical(_without_created(cell), _without_created(run))
