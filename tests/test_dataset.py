"""Dataset schema, NetCDF round trip, atomic writes, corrupt and foreign files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from conftest import paper

import dlnsim


@pytest.fixture(scope="module")
def result() -> xr.Dataset:
    s = paper(3)
    return dlnsim.run_gd(s.problem, s.W0, "bound", 2000, keep_weights=True)


def test_schema_units_and_provenance(result: xr.Dataset) -> None:
    for name, var in result.variables.items():
        assert var.attrs.get("units"), name
        assert var.attrs.get("long_name"), name
    a = result.attrs
    for key in ("N", "widths", "seed", "n_iter", "schedule", "record_rule", "status", "stop_iteration",
                "bound_eta", "bound_delta", "bound_K", "bound_sigma", "dlnsim_version", "numpy_version",
                "numba_version", "xarray_version", "created"):
        assert key in a, key
    assert list(a["widths"]) == [70, 2, 36, 70]
    n_params = 2 * 70 + 36 * 2 + 70 * 36
    assert dict(result.sizes) == {"k": result.sizes["k"], "layer": 3, "pair": 2, "sv": 2, "param": n_params}


def test_roundtrip_is_identical(result: xr.Dataset, tmp_path: Path) -> None:
    path = dlnsim.save(result, tmp_path / "run.nc")
    back = dlnsim.open(path)
    xr.testing.assert_identical(back, result)
    for Wa, Wb in zip(dlnsim.weights_from(back), dlnsim.weights_from(result), strict=True):
        np.testing.assert_array_equal(Wa, Wb)
    assert [p.name for p in tmp_path.iterdir()] == ["run.nc"]  # no temporary left behind


def test_roundtrip_of_a_diverged_run(tmp_path: Path) -> None:
    s = paper(2)
    ds = dlnsim.run_gd(s.problem, s.W0, 0.5, 500, record="all")
    back = dlnsim.open(dlnsim.save(ds, tmp_path / "div.nc"))
    xr.testing.assert_identical(back, ds)
    assert back.attrs["status"] == "diverged"


def test_failed_write_leaves_nothing(
    result: xr.Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash in the middle of writing leaves neither the final file nor the temporary one."""

    def crash(self: xr.Dataset, path: str, **kwargs: object) -> None:
        Path(path).write_bytes(b"CDF half-written")
        raise RuntimeError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        dlnsim.save(result, tmp_path / "x.nc")
    assert list(tmp_path.iterdir()) == []


def test_open_rejects_truncated_and_foreign_files(result: xr.Dataset, tmp_path: Path) -> None:
    path = dlnsim.save(result, tmp_path / "run.nc")
    data = path.read_bytes()
    trunc = tmp_path / "trunc.nc"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable NetCDF file"):
        dlnsim.open(trunc)
    junk = tmp_path / "junk.nc"
    junk.write_text("hello")
    with pytest.raises(ValueError, match="not a readable NetCDF file"):
        dlnsim.open(junk)
    foreign = tmp_path / "foreign.nc"
    xr.Dataset({"a": ("x", np.arange(3.0))}).to_netcdf(foreign, engine="netcdf4")
    with pytest.raises(ValueError, match="not written by dlnsim"):
        dlnsim.open(foreign)
    with pytest.raises(ValueError, match="no such file"):
        dlnsim.open(tmp_path / "missing.nc")


def test_save_rejects_bad_paths(result: xr.Dataset, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"path must end in \.nc"):
        dlnsim.save(result, tmp_path / "run.txt")
    with pytest.raises(ValueError, match="does not exist"):
        dlnsim.save(result, tmp_path / "nope" / "run.nc")
    assert list(tmp_path.iterdir()) == []
