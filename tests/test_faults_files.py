"""Fault injection on result files: byte flips never read back as changed data, tiny files that ask for
gigabytes, full disks, terminal escapes in attributes, bad scheduler addresses."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import dlnsim
from dlnsim.io import dataset, integrity
from dlnsim.io.attrs import ATTR_TYPES


def _result() -> xr.Dataset:
    """A small run-like result: float series (compressed, checksummed), a matrix, integers, text, attributes."""
    rng = np.random.default_rng(0)
    k = np.arange(101)
    return xr.Dataset({"loss": ("k", rng.random(101)), "grad_norm_sq": ("k", rng.random(101)),
                       "product_sv": (("k", "sv"), rng.random((101, 2))), "n": ("k", k * 3),
                       "label": ((), "converged")}, coords={"k": k},
                      attrs={"format": dataset.FORMAT_TAG, "widths": np.array([3, 2, 4]), "pair": (1, 2.5),
                             "none": None, "flag": True, "note": "text"})


# ------------------------------------------------------------------------------------------------ byte flips

# The flips run in a child process: a few kinds of damage make the HDF5 library loop for ever (what
# `dlnsim.load(timeout=)` is for), and a hang must not hang the test.  The child imports dlnsim's io modules
# without the package's __init__ (which compiles kernels), so it starts in under a second.
_CHILD = textwrap.dedent("""
    import json, sys, types
    pkg = types.ModuleType("dlnsim")
    pkg.__path__ = [sys.argv[1]]
    sys.modules["dlnsim"] = pkg
    from dlnsim.io import dataset

    good, scratch = sys.argv[2], sys.argv[3]
    ref = dataset.open(good)
    data = open(good, "rb").read()
    for line in sys.stdin:
        offset, mask = json.loads(line)
        damaged = bytearray(data)
        damaged[offset] ^= mask
        open(scratch, "wb").write(bytes(damaged))
        try:
            back = dataset.open(scratch)
        except ValueError:
            result = "refused"
        else:
            result = "same" if back.identical(ref) else "changed"
        print(json.dumps([offset, mask, result]), flush=True)
""")


def _flip(tmp_path: Path, n: int, seed: int) -> dict[str, list[tuple[int, int]]]:
    """Flip bits of a saved file at ``n`` random offsets; the outcome of each: same, refused, changed or hang."""
    good = dataset.save(_result(), tmp_path / "good.nc")
    size = good.stat().st_size
    rng = np.random.default_rng(seed)
    flips = [(int(o), int(m)) for o, m in zip(rng.integers(0, size, n), rng.choice([1, 2, 16, 128, 255], n),
                                              strict=True)]
    outcome: dict[str, list[tuple[int, int]]] = {"same": [], "refused": [], "changed": [], "hang": []}
    package = str(Path(dataset.__file__).resolve().parent.parent)
    todo = list(flips)
    while todo:
        child = subprocess.Popen([sys.executable, "-c", _CHILD, package, str(good), str(tmp_path / "x.nc")],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write("".join(json.dumps(f) + "\n" for f in todo))
        child.stdin.close()
        while todo:
            ready, _, _ = select.select([child.stdout], [], [], 20)
            line = child.stdout.readline() if ready else ""
            if not line:  # a hang (or a crash) on the next flip: note it, go on after it in a new child
                child.kill()
                outcome["hang"].append(todo.pop(0))
                break
            offset, mask, result = json.loads(line)
            assert [offset, mask] == list(todo[0])
            outcome[result].append(todo.pop(0))
        child.wait()
        child.stdout.close()
    return outcome


def test_byte_flips_of_a_saved_file_are_never_read_back_changed(tmp_path: Path) -> None:
    outcome = _flip(tmp_path, 50, seed=0)
    assert outcome["changed"] == []
    assert outcome["refused"]  # (the flips did land in data and metadata)


@pytest.mark.slow  # 1000 flips, about a minute
def test_a_thousand_byte_flips(tmp_path: Path) -> None:
    outcome = _flip(tmp_path, 1000, seed=1)
    assert outcome["changed"] == [], outcome["changed"]


def test_a_file_without_its_digest_or_with_another_is_refused(tmp_path: Path) -> None:
    import netCDF4

    path = dataset.save(_result(), tmp_path / "a.nc")
    with netCDF4.Dataset(path, "a") as nc:
        nc.variables["loss"][3] = 0.5  # data changed through the library: every checksum is right
    with pytest.raises(ValueError, match=r"a\.nc'.*does not match the digest it carries"):
        dataset.open(path)
    with netCDF4.Dataset(path, "a") as nc:
        nc.delncattr(integrity.DIGEST_ATTR)
    with pytest.raises(ValueError, match="carries no digest"):
        dataset.open(path)


# ------------------------------------------------------------------------------------------- memory bombs


def _peak(fn: object) -> tuple[BaseException | None, int]:
    tracemalloc.start()
    try:
        try:
            fn()  # type: ignore[operator]
        except Exception as exc:
            return exc, tracemalloc.get_traced_memory()[1]
        return None, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_small_file_whose_type_tag_asks_for_a_huge_string_array(tmp_path: Path) -> None:
    import netCDF4

    path = tmp_path / "bomb.nc"
    with netCDF4.Dataset(path, "w") as nc:
        nc.setncattr("format", dataset.FORMAT_TAG)
        nc.setncattr("x", json.dumps(["a"] * 60))
        nc.setncattr(ATTR_TYPES, json.dumps({"x": ["ndarray", "<U9999999", [60]]}))  # 60 x 40 MB
    with netCDF4.Dataset(path, "a") as nc:  # a crafted file can carry a digest that matches
        nc.setncattr(integrity.DIGEST_ATTR, "sha256:" + integrity.netcdf_digest(nc))
    assert path.stat().st_size < 16 << 10
    exc, peak = _peak(lambda: dataset.open(path))
    assert isinstance(exc, ValueError) and "asking for a 2399999760-byte string array" in str(exc)
    assert peak < 32 << 20


def test_a_small_file_declaring_a_huge_variable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import netCDF4

    path = tmp_path / "bomb.nc"
    with netCDF4.Dataset(path, "w") as nc:
        nc.setncattr("format", dataset.FORMAT_TAG)
        nc.setncattr(integrity.DIGEST_ATTR, "sha256:" + "0" * 64)
        nc.createDimension("n", 250_000_000)
        nc.createVariable("v", "f8", ("n",), chunksizes=(1 << 20,), zlib=True)  # no chunk written: fill values
    assert path.stat().st_size < 16 << 10
    exc, peak = _peak(lambda: dataset.open(path))
    assert isinstance(exc, ValueError) and "declares 2000000000 bytes of variables" in str(exc)
    assert peak < 32 << 20
    with pytest.raises(ValueError, match="declares 2000000000 bytes"):  # the separate reader checks it too
        dataset.open(path, timeout=60)
    from dlnsim.cli.app import main

    assert main(["info", str(path)]) == 2
    assert "declares 2000000000 bytes" in capsys.readouterr().err


def test_a_crafted_cell_with_a_matching_log_line_is_checked_too(tmp_path: Path) -> None:
    import hashlib

    import netCDF4
    from test_faults_grid import echo

    d = tmp_path / "g"
    dlnsim.run_grid(d, echo, {"x": [1]}, progress=False, executor="serial")
    cell = d / "cell_x1.nc"
    cell.unlink()
    with netCDF4.Dataset(cell, "w") as nc:
        nc.createDimension("n", 250_000_000)
        nc.createVariable("v", "f8", ("n",), chunksizes=(1 << 20,))
    data = cell.read_bytes()
    with (d / "cells.log").open("a") as fh:
        fh.write(json.dumps({"cell": cell.name, "point": {"x": 1}, "status": "ok", "bytes": len(data),
                             "sha256": hashlib.sha256(data).hexdigest()}) + "\n")
    exc, peak = _peak(lambda: dlnsim.open_grid(d))
    assert isinstance(exc, ValueError) and "declares 2000000000 bytes" in str(exc)
    assert peak < 32 << 20


# ------------------------------------------------------------------------------------------- smaller ones


def test_a_full_disk_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(self: xr.Dataset, *args: object, **kwargs: object) -> None:
        raise RuntimeError("NetCDF: HDF error")

    class Full:
        f_bavail, f_frsize = 3, 4096

    monkeypatch.setattr(xr.Dataset, "to_netcdf", fail)
    monkeypatch.setattr(os, "statvfs", lambda path: Full())
    with pytest.raises(OSError, match="no space left on the device") as info:
        dataset.save(_result(), tmp_path / "a.nc")
    assert info.value.filename == str(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == []


def test_a_file_size_limit_is_named(tmp_path: Path) -> None:
    resource = pytest.importorskip("resource")
    big = xr.Dataset({"v": ("k", np.random.default_rng(0).random(200_000))}, attrs={"format": dataset.FORMAT_TAG})
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 << 10, hard))  # ulimit -f: writes past it fail (EFBIG)
    try:
        with pytest.raises(OSError, match=r"file-size limit of this process \(262144 bytes, ulimit -f\)"):
            dataset.save(big, tmp_path / "a.nc")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert [p.name for p in tmp_path.iterdir()] == []


def test_info_prints_terminal_escapes_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dlnsim.cli.app import main

    ds = _result()
    ds.attrs.update(title="\x1b]0;owned\x07run \x1b[2J", status="ok\x1b[8m", created="\x9b31m")
    path = dataset.save(ds, tmp_path / "a.nc")
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\x9b" not in out
    assert "\\x1b]0;owned\\x07run \\x1b[2J" in out


def test_a_scheduler_address_that_is_not_one_names_scheduler() -> None:
    pytest.importorskip("distributed")
    from dlnsim.grid.executors import connect

    t0 = time.monotonic()
    with pytest.raises(ValueError, match=r"^scheduler: 'tcp://localhost:notaport' is not a scheduler address"):
        connect("tcp://localhost:notaport", timeout=5)
    assert time.monotonic() - t0 < 10
