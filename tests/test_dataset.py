"""Dataset schema, NetCDF round trip, atomic writes, corrupt and foreign files."""

from __future__ import annotations

import builtins
import hashlib
import json
import math
import os
import stat
import sys
import time
from pathlib import Path
from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import xarray as xr
from conftest import paper
from hypothesis import given, settings
from hypothesis import strategies as st

import dlnsim
from dlnsim.io import dataset, integrity


@pytest.fixture(scope="module")
def result() -> xr.Dataset:
    s = paper(3)
    return dlnsim.run_gd(s.problem, s.W0, "bound", 2000, record=dlnsim.Record(final_weights=True))


def test_schema_units_and_provenance(result: xr.Dataset) -> None:
    for name, var in result.variables.items():
        assert var.attrs.get("units") or var.dtype.kind == "O", name  # text outcomes (status) have no units
        assert var.attrs.get("long_name"), name
    a = result.attrs
    for key in ("N", "widths", "seed", "n_iter", "schedule", "record_rule", "dlnsim_version", "numpy_version",
                "numba_version", "xarray_version", "created"):  # settings and provenance: attributes
        assert key in a, key
    for key in ("status", "stop_iteration", "bound_eta", "bound_delta", "bound_K", "bound_sigma"):
        assert key in result.data_vars and result[key].ndim == 0 and key not in a, key  # outcomes: 0-d variables
    assert list(a["widths"]) == [70, 2, 36, 70]
    n_params = 2 * 70 + 36 * 2 + 70 * 36
    assert dict(result.sizes) == {"k": result.sizes["k"], "layer": 3, "pair": 2, "sv": 2, "param": n_params}


def test_roundtrip_is_identical(result: xr.Dataset, tmp_path: Path) -> None:
    path = dlnsim.save(result, tmp_path / "run.nc")
    back = dlnsim.load(path)
    xr.testing.assert_identical(back, result)
    for Wa, Wb in zip(dlnsim.weights_from(back), dlnsim.weights_from(result), strict=True):
        np.testing.assert_array_equal(Wa, Wb)
    assert [p.name for p in tmp_path.iterdir()] == ["run.nc"]  # no temporary left behind


def test_every_kind_of_result_is_written_by_xarray_itself(tmp_path: Path) -> None:
    """A result opened in a notebook can be saved with xarray's own ``to_netcdf`` (not only `dlnsim.save`):
    its attributes are numbers, strings and arrays, never a bool or None, which NetCDF cannot hold."""
    s = dlnsim.paper_setup(2, 0, d=6, m=12)
    eta = dlnsim.stepsize_bound(s.problem, s.W0).eta
    engine = dlnsim.Engine("serial", progress=False)
    results = {
        "gd": dlnsim.run_gd(s.problem, s.W0, eta, 30),
        "heavy_ball": dlnsim.run_gd(s.problem, s.W0, eta, 30, method=dlnsim.HeavyBall(beta=0.5)),
        "sgd": dlnsim.run_gd(s.problem, s.W0, eta, 30, method=dlnsim.SGD(batch_size=4, seed=0, nesterov=True,
                                                                           beta=0.5)),
        "flow": dlnsim.run_flow(s.problem, s.W0, 1.0),
        "modified_flow": dlnsim.run_flow(s.problem, s.W0, 1.0, kind="modified", eta=eta),
        "compare": dlnsim.compare_flow(s.problem, s.W0, eta, 30),
        "sweep": dlnsim.sweep(None, N=[2], seed=[0], eta_factor=[1.0], n_iter=20, d=6, m=12, engine=engine),
        "critical": dlnsim.critical_sweep(None, N=[2], seed=[0], n_iter=100, rtol=0.1, d=6, m=12, engine=engine),
    }
    for name, ds in results.items():
        path = tmp_path / f"{name}.nc"
        ds.to_netcdf(path)
        with xr.open_dataset(path) as back:
            assert set(back.attrs) == set(ds.attrs) and set(back.data_vars) == set(ds.data_vars), name


def test_the_archive_is_written_by_xarray_itself(tmp_path: Path) -> None:
    """Every study file of data/, read with `dlnsim.load` (which restores the attribute types), can be written
    again by xarray's ``to_netcdf``: no boolean or None attribute."""
    files = sorted((Path(__file__).resolve().parent.parent / "data").glob("*.nc"))
    if not files:
        pytest.skip("data/*.nc not written yet")
    for path in files:
        ds = dlnsim.load(path)
        ds.to_netcdf(tmp_path / path.name)
        with xr.open_dataset(tmp_path / path.name) as back:
            assert set(back.data_vars) == set(ds.data_vars), path.name


def test_roundtrip_of_a_diverged_run(tmp_path: Path) -> None:
    s = paper(2)
    ds = dlnsim.run_gd(s.problem, s.W0, 0.5, 500, record="all")
    back = dlnsim.load(dlnsim.save(ds, tmp_path / "div.nc"))
    xr.testing.assert_identical(back, ds)
    assert back["status"].item() == "diverged"


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
        dlnsim.load(trunc)
    junk = tmp_path / "junk.nc"
    junk.write_text("hello")
    with pytest.raises(ValueError, match="not a readable NetCDF file"):
        dlnsim.load(junk)
    foreign = tmp_path / "foreign.nc"
    xr.Dataset({"a": ("x", np.arange(3.0))}).to_netcdf(foreign, engine="netcdf4")
    with pytest.raises(ValueError, match="not written by dlnsim"):
        dlnsim.load(foreign)
    with pytest.raises(ValueError, match="no such file"):
        dlnsim.load(tmp_path / "missing.nc")


def test_save_rejects_bad_paths(result: xr.Dataset, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"path must end in \.nc"):
        dlnsim.save(result, tmp_path / "run.txt")
    with pytest.raises(ValueError, match="does not exist"):
        dlnsim.save(result, tmp_path / "nope" / "run.nc")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------ durable writes


def _counting_fsync(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Replace os.fsync by a wrapper that counts calls on regular files and on directories."""
    counts = {"file": 0, "dir": 0}
    real = os.fsync

    def fsync(fd: int) -> None:
        mode = os.fstat(fd).st_mode
        counts["dir" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "other"] += 1
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return counts


def _small() -> xr.Dataset:
    return dataset.build({"loss": np.linspace(1.0, 0.0, 20)}, {"k": np.arange(20)}, {"N": 2, "stop_early": True})


def test_save_fsyncs_file_and_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    counts = _counting_fsync(monkeypatch)
    dataset.save(_small(), tmp_path / "a.nc")
    assert counts == {"file": 1, "dir": 1}
    dataset.write_json_atomic({"a": 1}, tmp_path / "m.json")
    assert counts == {"file": 2, "dir": 2}
    dataset.save(_small(), tmp_path / "b.nc", durable=False)  # atomic, without the two flushes
    dataset.write_json_atomic([1], tmp_path / "n.json", durable=False)
    assert counts == {"file": 2, "dir": 2}


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_file_mode_follows_umask(tmp_path: Path, umask: int) -> None:
    """mkstemp creates 0600; the published files get 0666 & ~umask like any other new file."""
    old = os.umask(umask)
    try:
        nc = dataset.save(_small(), tmp_path / "a.nc")
        js = dataset.write_json_atomic({"x": [1, 2]}, tmp_path / "m.json")
        assert dataset._umask() == umask
    finally:
        os.umask(old)
    assert stat.S_IMODE(nc.stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE(js.stat().st_mode) == 0o666 & ~umask


def test_umask_fallback_without_proc(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where /proc/self/status cannot be read, the umask is read by setting and restoring it."""
    real_open = builtins.open

    def no_proc(file: object, *args: object, **kwargs: object) -> object:
        if str(file).startswith("/proc/"):
            raise OSError("no /proc here")
        return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(builtins, "open", no_proc)
    old = os.umask(0o027)
    try:
        assert dataset._umask() == 0o027
        assert dataset._umask() == 0o027  # restored after reading
    finally:
        os.umask(old)


def test_write_json_atomic(tmp_path: Path) -> None:
    target = tmp_path / "manifest.json"
    obj = {"cells": {"a": "done"}, "x": [1.5, None, True]}
    assert dataset.write_json_atomic(obj, target) == target
    text = target.read_text()
    assert json.loads(text) == obj and text.endswith("\n")
    assert text == json.dumps(obj, indent=1) + "\n"  # the sweep manifest's layout
    dataset.write_json_atomic({"b": 2}, target)  # replaces
    assert json.loads(target.read_text()) == {"b": 2}
    with pytest.raises(TypeError):
        dataset.write_json_atomic({"bad": object()}, target)
    assert json.loads(target.read_text()) == {"b": 2}  # untouched, no temporary left
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]
    with pytest.raises(ValueError, match="does not exist"):
        dataset.write_json_atomic({}, tmp_path / "nope" / "m.json")


def test_file_digest(tmp_path: Path) -> None:
    path = dataset.save(_small(), tmp_path / "a.nc")
    digest = dataset.file_digest(path)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest() and len(digest) == 64
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * 9000)  # more than one 1 MiB block
    assert dataset.file_digest(big) == hashlib.sha256(big.read_bytes()).hexdigest()
    with pytest.raises(ValueError, match="no such file"):
        dataset.file_digest(tmp_path / "missing.nc")


# ------------------------------------------------------------------------------------- damaged files, hangs


def _damaged(src: Path, dst: Path) -> Path:
    """A copy of ``src`` with every 37th byte after the HDF5 superblock flipped."""
    data = bytearray(src.read_bytes())
    for i in range(512, len(data), 37):
        data[i] ^= 0xFF
    dst.write_bytes(bytes(data))
    return dst


def test_open_with_timeout_reads_good_files(result: xr.Dataset, tmp_path: Path) -> None:
    path = dlnsim.save(result, tmp_path / "run.nc")
    xr.testing.assert_identical(dataset.open(path, timeout=120), result)


def test_open_with_timeout_refuses_a_damaged_file(tmp_path: Path) -> None:
    good = dataset.save(_small(), tmp_path / "good.nc")
    bad = _damaged(good, tmp_path / "bad.nc")
    with pytest.raises(ValueError, match=r"bad\.nc.*(not a readable NetCDF file|damaged\?)"):
        dataset.open(bad, timeout=120)
    with pytest.raises(ValueError, match=r"bad\.nc.*not a readable NetCDF file"):
        dataset.open(bad)


def test_checksums_catch_flipped_data_bytes(tmp_path: Path) -> None:
    """Every numeric array carries a Fletcher-32 checksum: a flipped byte in the data is refused, not read."""
    good = dataset.save(_small(), tmp_path / "good.nc")
    data = good.read_bytes()
    ref = dataset.open(good)
    silent = 0
    for i in range(0, len(data), 53):
        d = bytearray(data)
        d[i] ^= 0x55
        (tmp_path / "x.nc").write_bytes(bytes(d))
        try:
            back = dataset.open(tmp_path / "x.nc")
        except ValueError:
            continue
        silent += not back.identical(ref)
    assert silent == 0


def test_open_timeout_stops_a_hanging_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = dataset.save(_small(), tmp_path / "a.nc")
    monkeypatch.setattr(dataset, "_validation_command",
                        lambda p: [sys.executable, "-c", "import time; time.sleep(120)", str(p)])
    t0 = time.monotonic()
    with pytest.raises(ValueError, match=r"a\.nc' did not open within 1 s: damaged\?"):
        dataset.open(path, timeout=1)
    assert time.monotonic() - t0 < 60  # the reader was stopped (loose: a busy 2-core machine)


def test_open_timeout_reports_a_crashing_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = dataset.save(_small(), tmp_path / "a.nc")
    monkeypatch.setattr(dataset, "_validation_command", lambda p: [
        sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", str(p)])
    with pytest.raises(ValueError, match=r"crashed a NetCDF reader \(signal 11\): damaged\?"):
        dataset.open(path, timeout=60)


@pytest.mark.parametrize("timeout", [0, -1.0, float("nan"), float("inf"), True, "5"])
def test_open_rejects_bad_timeouts(tmp_path: Path, timeout: object) -> None:
    path = dataset.save(_small(), tmp_path / "a.nc")
    with pytest.raises(ValueError, match="timeout"):
        dataset.open(path, timeout=timeout)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------- schema


def test_string_variables_have_no_units() -> None:
    ds = dataset.build(
        {"loss": np.ones(3), "status": np.array(["done", "diverged", "done"], dtype=object)},
        {"k": np.arange(3), "case": np.array(["a", "b"])},
        {},
        schema={"status": (("k",), "1", "run status"), "case": (("case",), "1", "case name")},
    )
    assert ds["status"].attrs == {"long_name": "run status"}
    assert ds["loss"].attrs["units"] == "1" and ds["loss"].attrs["long_name"]
    for c in ("k", "case"):  # coordinates always carry both
        assert ds[c].attrs["units"] == "1" and ds[c].attrs["long_name"]


# ------------------------------------------------------------------------------------------------ attributes


def _same(a: Any, b: Any) -> bool:
    """Equal with the same types, nan equal to nan, -0.0 different from 0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        if a.dtype != b.dtype or a.shape != b.shape:
            return False
        if a.dtype.kind == "f":
            return bool(np.array_equal(a, b, equal_nan=True) and np.array_equal(np.signbit(a), np.signbit(b)))
        return bool(np.array_equal(a, b))
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float | np.floating):
        if math.isnan(a):
            return math.isnan(b)
        return bool(a == b) and math.copysign(1.0, a) == math.copysign(1.0, b)
    return bool(a == b)


def test_clean_attrs_documented_forms() -> None:
    got = dataset.clean_attrs({"t": (1, 2), "l": [1.5, "a"], "p": Path("/x"), "n": np.int32(3), "z": np.array(2.5),
                               "e": np.str_("s"), 7: "key"})
    assert got == {"t": [1, 2], "l": [1.5, "a"], "p": "/x", "n": 3, "z": 2.5, "e": "s", "7": "key"}
    assert type(got["n"]) is np.int32 and type(got["z"]) is np.float64 and type(got["e"]) is str


def test_attribute_round_trip_examples(tmp_path: Path) -> None:
    attrs: dict[str, Any] = {
        "none": None, "yes": True, "no": False, "int": -7, "huge": 3**60, "float": 0.1, "nan": math.nan,
        "minf": -math.inf, "negzero": -0.0, "empty": "", "uni": "Grüße, ∑ 𝔼 ✓", "nul": "a\x00b", "ints": (70, 2, 70),
        "floats": [0.5, math.nan], "strs": ("a", "", "b, c"), "bools": [True, False], "mixed": [1, "x", None, 2.5],
        "nothing": [], "np_i8": np.int8(-3), "np_u64": np.uint64(2**64 - 1), "np_f32": np.float32(0.1),
        "np_f16": np.float16(-2.5), "np_bool": np.bool_(True), "np_f64": np.float64(1e-300), "np_i64": np.int64(9),
        "arr2d": np.arange(6, dtype=np.int16).reshape(2, 3), "arr_s": np.array(["x", "yz"]), "arr_1": np.array([4.0]),
        "arr_b": np.array([True, False, True]), "arr_0": np.zeros(0, dtype=np.uint8),
    }
    ds = xr.Dataset({"a": ("x", np.arange(3.0), {"units": "1", "flag": True, "missing": None})},
                    attrs={"format": dataset.FORMAT_TAG, **attrs})
    back = dataset.open(dataset.save(ds, tmp_path / "a.nc"))
    want = dataset.clean_attrs(ds.attrs)
    assert set(back.attrs) == set(want)  # the companion attribute is gone
    for k, v in want.items():
        assert _same(back.attrs[k], v), (k, back.attrs[k], v)
    assert back["a"].attrs == {"units": "1", "flag": True, "missing": None}
    assert type(back.attrs["ints"]) is list  # lists and tuples come back as lists
    xr.testing.assert_identical(back, _canonical_ds(ds))


def _canonical_ds(ds: xr.Dataset) -> xr.Dataset:
    out = ds.copy()
    out.attrs = dataset.clean_attrs(ds.attrs)
    for name, v in ds.variables.items():
        out.variables[name].attrs = dataset.clean_attrs(v.attrs)
    return out


_NAME = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(lambda s: s != "format")
_TEXT = st.text(st.characters(exclude_categories=()), max_size=12)  # lone surrogates and NUL included
_PLAIN = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), _TEXT)
_NUMPY_DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16",
                 "float32", "float64"]
_NUMPY_SCALAR = st.sampled_from(_NUMPY_DTYPES).flatmap(
    lambda name: hnp.from_dtype(np.dtype(name)).map(np.dtype(name).type))
_ARRAY = st.one_of(
    st.sampled_from(_NUMPY_DTYPES).flatmap(
        lambda name: hnp.arrays(np.dtype(name), hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=3))),
    hnp.arrays(np.dtype("<U4"), hnp.array_shapes(min_dims=1, max_dims=2, min_side=0, max_side=3)),
)
_VALUE = st.one_of(
    _PLAIN,
    _NUMPY_SCALAR,
    st.lists(_PLAIN, max_size=5),
    st.lists(_PLAIN, max_size=5).map(tuple),
    st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=5),  # stored as a NetCDF int64 array
    st.lists(st.floats(), min_size=1, max_size=5).map(tuple),  # stored as a NetCDF float64 array
    st.lists(_TEXT, max_size=4),
    _ARRAY,
)


@settings(max_examples=150, deadline=None)
@given(attrs=st.dictionaries(_NAME, _VALUE, max_size=6), var_attrs=st.dictionaries(_NAME, _VALUE, max_size=3))
def test_attribute_round_trip_property(tmp_path_factory: pytest.TempPathFactory, attrs: dict[str, Any],
                                       var_attrs: dict[str, Any]) -> None:
    """save -> open gives back clean_attrs(attrs) exactly (same types), for global and variable attributes."""
    var_attrs.pop("units", None)
    ds = xr.Dataset({"a": ("x", np.arange(2.0), var_attrs)}, attrs={**attrs, "format": dataset.FORMAT_TAG})
    path = tmp_path_factory.getbasetemp() / "prop.nc"
    back = dataset.open(dataset.save(ds, path, durable=False))
    for got, src in ((back.attrs, ds.attrs), (back["a"].attrs, var_attrs)):
        want = dataset.clean_attrs(src)
        assert set(got) == set(want)
        for k, v in want.items():
            assert _same(got[k], v), (k, got[k], v)
    xr.testing.assert_identical(back, _canonical_ds(ds))
    # and clean_attrs is idempotent: a built Dataset saves and reopens identical
    assert all(_same(dataset.clean_attrs(back.attrs)[k], v) for k, v in back.attrs.items())


@pytest.mark.parametrize(
    ("types", "raw", "match"),
    [
        ("not json", {"a": 1}, "not a JSON map"),
        ('["a"]', {"a": 1}, "not a JSON map"),
        ('{"b": "bool"}', {"a": 1}, "missing"),
        ('{"a": "pickle"}', {"a": "x"}, "unknown type tag"),
        ('{"a": "numpy.object_"}', {"a": np.int64(1)}, "unknown numpy type"),
        ('{"a": ["ndarray", "object", [1]]}', {"a": np.int64(1)}, "known dtype"),
        ('{"a": ["ndarray", "int64", [3]]}', {"a": np.arange(2)}, "expected 3 numbers"),
        ('{"a": "bool"}', {"a": np.int8(2)}, "expected 0 or 1"),
        ('{"a": "int"}', {"a": "__import__('os')"}, "decimal integer"),
        ('{"a": "list_json"}', {"a": '[{"x": 1}]'}, "JSON list of scalars"),
        ('{"a": "str"}', {"a": "[1]"}, "JSON string"),
    ],
)
def test_damaged_type_tags_are_refused(types: str, raw: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        dataset.decode_attrs({**raw, dataset.ATTR_TYPES: types})


def test_open_refuses_damaged_type_tags(tmp_path: Path) -> None:
    import netCDF4

    path = dataset.save(_small(), tmp_path / "a.nc")
    with netCDF4.Dataset(path, "a") as nc:
        nc.setncattr(dataset.ATTR_TYPES, '{"stop_early": "eval"}')
    with pytest.raises(ValueError, match="does not match the digest it carries"):
        dataset.open(path)
    with netCDF4.Dataset(path, "a") as nc:  # the same edit with a digest to match: the tags are still checked
        nc.setncattr(integrity.DIGEST_ATTR, "sha256:" + integrity.netcdf_digest(nc))
    with pytest.raises(ValueError, match="damaged attribute type tags"):
        dataset.open(path)


def test_files_without_type_tags_still_open(tmp_path: Path) -> None:
    """Files written by hand (no companion attribute): values come back as stored, int64/float64 as int/float.
    Without the digest that `save` adds they are refused: a missing digest could be damage."""
    import netCDF4

    path = tmp_path / "old.nc"
    xr.Dataset({"a": ("x", np.arange(3.0))},
               attrs={"format": dataset.FORMAT_TAG, "n": 3, "f": 0.5, "w": np.array([1, 2]), "s": "none"}
               ).to_netcdf(path, engine="netcdf4")
    with pytest.raises(ValueError, match="carries no digest"):
        dataset.open(path)
    with netCDF4.Dataset(path, "a") as nc:
        nc.setncattr(integrity.DIGEST_ATTR, "sha256:" + integrity.netcdf_digest(nc))
    back = dataset.open(path)
    assert back.attrs["n"] == 3 and type(back.attrs["n"]) is int and type(back.attrs["f"]) is float
    np.testing.assert_array_equal(back.attrs["w"], [1, 2])
    assert back.attrs["s"] == "none"


def test_big_endian_and_object_arrays(tmp_path: Path) -> None:
    attrs = {"be": np.arange(3, dtype=">i4"), "obj": np.array(["a", "bc"], dtype=object),
             "f": np.arange(2, dtype=">f8")}
    want = dataset.clean_attrs(attrs)
    assert want["be"].dtype == np.dtype("int32") and want["obj"].dtype == np.dtype("<U2")
    ds = xr.Dataset(attrs={"format": dataset.FORMAT_TAG, **attrs})
    back = dataset.open(dataset.save(ds, tmp_path / "a.nc"))
    for k, v in want.items():
        assert _same(back.attrs[k], v), k
