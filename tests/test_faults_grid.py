"""Fault injection on the grid engine: colliding cell names, torn logs, Ctrl-C, stuck cells, crafted directories."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import dlnsim
from dlnsim.grid import plan as grid_plan
from dlnsim.grid.plan import Plan

RELEASE = threading.Event()  # set at the end of a test to let abandoned cells finish


def echo(x: object, y: object = "-") -> xr.Dataset:
    """A cell that records its own point (a file holding another cell's point is visible)."""
    return xr.Dataset({"v": ("j", np.arange(50.0) + len(str(x)))},
                      attrs={"status": "ok", "x_seen": str(x), "y_seen": str(y)})


def slow_echo(x: int, delay: float) -> xr.Dataset:
    time.sleep(delay)
    return xr.Dataset({"v": ("j", np.full(200, float(x)))}, attrs={"status": "ok"})


def maybe_stuck(x: int) -> xr.Dataset:
    if x == 1:
        RELEASE.wait(60)  # "never" returns within the test
    return xr.Dataset({"v": ((), float(x))}, attrs={"status": "ok"})


def with_k(x: int) -> xr.Dataset:
    return xr.Dataset({"v": ("x", np.arange(3.0))}, attrs={"status": "ok"})


def comparable(ds: xr.Dataset) -> xr.Dataset:
    out = ds.copy()
    out.attrs = {k: v for k, v in ds.attrs.items() if k != "created"}
    return out


# --------------------------------------------------------------------------------------------- cell names


def test_colliding_points_get_their_own_files(tmp_path: Path) -> None:
    d = tmp_path / "g"
    axes = {"x": ["a_yb", "a"], "y": ["c", "b_yc"]}
    ds = dlnsim.run_grid(d, echo, axes, progress=False, executor="serial")
    assert len(list(d.glob("cell_*.nc"))) == 4
    for x in axes["x"]:
        for y in axes["y"]:
            cell = ds.sel(x=x, y=y)
            assert (cell.x_seen.item(), cell.y_seen.item()) == (x, y)
    again = dlnsim.run_grid(d, echo, axes, progress=False, executor="serial")  # resume: nothing recomputed
    xr.testing.assert_identical(comparable(again), comparable(ds))
    log = [json.loads(line) for line in (d / "cells.log").read_text().splitlines()]
    assert len(log) == 4 and all(set(r["point"]) == {"x", "y"} for r in log)


def test_names_are_injective_when_case_is_ignored(tmp_path: Path) -> None:
    names = [grid_plan.cell_name({"x": v}) for v in ("A", "a", "A_", "a_", "%41")[:4]]
    assert len({n.casefold() for n in names}) == 4
    assert grid_plan.cell_name({"N": 2, "eta": 0.001, "seed": 0}) == "cell_N2_eta0.001_seed0.nc"
    ds = dlnsim.run_grid(tmp_path / "g", echo, {"x": ["A", "a"]}, progress=False, executor="serial")
    assert list(ds.x_seen.values) == ["A", "a"]


def test_duplicate_names_are_refused_before_anything_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grid_plan, "cell_name", lambda point: "cell_same.nc")
    with pytest.raises(ValueError, match=r"would share the cell file 'cell_same\.nc'"):
        dlnsim.run_grid(tmp_path / "g", echo, {"x": [1, 2]}, progress=False)
    assert not (tmp_path / "g").exists()


@pytest.mark.parametrize("name", ["status", "k", "error", "sv"])
def test_reserved_axis_names_are_refused_before_the_first_cell(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match=f"axis '{name}': this name is reserved"):
        dlnsim.run_grid(tmp_path / "g", echo, {name: [1, 2]}, progress=False)
    assert not (tmp_path / "g").exists()


def test_a_result_dimension_named_like_an_axis_stops_at_the_first_cell(tmp_path: Path) -> None:
    d = tmp_path / "g"
    with pytest.raises(ValueError, match="'x' is both a grid axis and a dimension of the cell's result"):
        dlnsim.run_grid(d, with_k, {"x": [1, 2, 3]}, progress=False, executor="serial")
    assert not list(d.glob("cell_*.nc"))
    assert dlnsim.open_grid(d).status.values.tolist() == ["not_run"] * 3  # the directory still opens


# ------------------------------------------------------------------------------------------------- the log


def test_torn_log_line_is_recomputed_and_the_next_line_starts_fresh(tmp_path: Path) -> None:
    d = tmp_path / "g"
    axes = {"x": [1, 2, 3]}
    ref = dlnsim.run_grid(d, echo, axes, progress=False, executor="serial")
    log = d / "cells.log"
    for cut in (2, 10, 40):  # power loss, disk full or ulimit -f in the middle of the last line
        data = log.read_bytes()
        log.write_bytes(data[:-cut])
        assert dlnsim.open_grid(d).status.values.tolist().count("not_run") == 1
        again = dlnsim.run_grid(d, echo, axes, progress=False, executor="serial")
        xr.testing.assert_identical(comparable(again), comparable(ref))
        lines = log.read_bytes().split(b"\n")
        assert lines[-1] == b"" and json.loads(lines[-2])["point"]["x"] in (1, 2, 3)
    log.write_bytes(log.read_bytes()[:-1])  # only the newline lost: torn all the same, its cell is recomputed
    assert dlnsim.open_grid(d).attrs["cells_done"] == 2
    dlnsim.run_grid(d, echo, axes, progress=False, executor="serial")
    assert dlnsim.open_grid(d).attrs["cells_done"] == 3


def test_a_short_log_write_raises_and_the_next_run_repairs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "g"
    axes = {"x": [1, 2]}
    real = os.write
    calls = {"n": 0}

    def half(fd: int, data: bytes) -> int:  # the second log line: half written, then the disk is full
        calls["n"] += 1
        if calls["n"] == 2:
            return real(fd, bytes(data[: len(data) // 2]))
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        return real(fd, data)

    from dlnsim.grid import store

    monkeypatch.setattr(store.os, "write", half)
    with pytest.raises(OSError, match="cannot append to the log"):
        dlnsim.run_grid(d, echo, axes, progress=False, executor="serial")
    monkeypatch.setattr(store.os, "write", real)
    ds = dlnsim.run_grid(d, echo, axes, progress=False, executor="serial")
    assert ds.attrs["cells_done"] == 2


def test_cells_left_without_a_valid_result_are_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dlnsim.grid import store

    monkeypatch.setattr(store.Store, "read_cell", lambda self, name, rec: None)  # as if every file were damaged
    with pytest.raises(RuntimeError, match=r"after the run 2 of 2 cell.s. have no valid result"):
        dlnsim.run_grid(tmp_path / "g", echo, {"x": [1, 2]}, progress=False, executor="serial")


# ---------------------------------------------------------------------------------------- Ctrl-C and time


@pytest.fixture
def sigint_raises() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt in this process, as at an interactive prompt, even when the test run
    started with SIGINT ignored (pytest as a background job of a shell inherits SIG_IGN, and Python then
    installs no handler)."""
    old = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _interrupted_runs(tmp_path: Path, repetitions: int, seed: int) -> None:
    """SIGINT at a random moment of a threads sweep: KeyboardInterrupt within 2 s each time, and a resume gives
    what an uninterrupted run gives."""
    axes = {"x": list(range(24))}
    params = {"delay": 0.03}
    ref = comparable(dlnsim.run_grid(None, slow_echo, axes, params=params, progress=False, workers=2))
    rng = np.random.default_rng(seed)
    for rep in range(repetitions):
        d = tmp_path / f"g{rep}"
        at = float(rng.uniform(0.0, 0.3))
        sent = threading.Event()
        sent_at = [0.0]

        def interrupt(at: float = at, sent: threading.Event = sent, sent_at: list[float] = sent_at) -> None:
            time.sleep(at)
            sent_at[0] = time.monotonic()
            sent.set()
            os.kill(os.getpid(), signal.SIGINT)

        t = threading.Thread(target=interrupt, daemon=True)
        try:
            t.start()
            dlnsim.run_grid(d, slow_echo, axes, params=params, progress=False, workers=2)
            sent.wait(5)
            time.sleep(0.5)  # the signal arrived after the run: let it land here
            pytest.fail("the run ended before the interrupt")
        except KeyboardInterrupt:
            assert sent.is_set()
            assert time.monotonic() - sent_at[0] < 2.0
        t.join()
        again = dlnsim.run_grid(d, slow_echo, axes, params=params, progress=False, workers=2)
        xr.testing.assert_identical(comparable(again), ref)


def test_ctrl_c_stops_a_threads_sweep_at_once_and_it_resumes(tmp_path: Path, sigint_raises: None) -> None:
    _interrupted_runs(tmp_path, 2, seed=1)


@pytest.mark.slow  # 20 interrupted sweeps
def test_ctrl_c_twenty_times(tmp_path: Path, sigint_raises: None) -> None:
    _interrupted_runs(tmp_path, 20, seed=2)


def test_a_stuck_cell_times_out_and_ctrl_c_does_not_wait_for_it(tmp_path: Path, sigint_raises: None) -> None:
    RELEASE.clear()
    try:
        t0 = time.monotonic()
        ds = dlnsim.run_grid(tmp_path / "g", maybe_stuck, {"x": [0, 1, 2, 3]}, progress=False, workers=2,
                             timeout=0.5)
        assert time.monotonic() - t0 < 10
        assert ds.status.values.tolist() == ["ok", "error", "ok", "ok"]
        assert "ran longer than timeout=0.5 s" in ds.error.sel(x=1).item()
        # without a timeout, Ctrl-C still ends the run at once (the stuck thread is abandoned, not joined)
        timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
        t0 = time.monotonic()
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            dlnsim.run_grid(tmp_path / "g", maybe_stuck, {"x": [0, 1, 2, 3]}, progress=False, workers=2)
        assert time.monotonic() - t0 < 2.5
        timer.join()
    finally:
        RELEASE.set()
    with pytest.raises(ValueError, match="timeout is not available with executor='serial'"):
        dlnsim.run_grid(None, echo, {"x": [1]}, executor="serial", timeout=1)
    with pytest.raises(ValueError, match="timeout must be a number of seconds > 0"):
        dlnsim.run_grid(None, echo, {"x": [1]}, timeout=0)


@pytest.mark.slow  # spawns worker processes
def test_a_stuck_cell_in_a_process_is_stopped(tmp_path: Path) -> None:
    ds = dlnsim.run_grid(tmp_path / "g", maybe_stuck, {"x": [0, 1, 2, 3]}, progress=False,
                         executor="processes", workers=2, timeout=3)
    assert ds.status.values.tolist() == ["ok", "error", "ok", "ok"]
    assert "was stopped" in ds.error.sel(x=1).item()


# ---------------------------------------------------------------------------------------- crafted entries


def _grid(tmp_path: Path) -> tuple[Path, dict[str, list[int]]]:
    d = tmp_path / "g"
    axes = {"x": [1, 2]}
    dlnsim.run_grid(d, echo, axes, progress=False, executor="serial")
    return d, axes


def _log_line(name: str, point: dict[str, int], data: bytes, size: int | None = None) -> str:
    return json.dumps({"cell": name, "point": point, "status": "ok", "bytes": len(data) if size is None else size,
                       "sha256": hashlib.sha256(data).hexdigest()}) + "\n"


def test_fifo_and_device_links_in_place_of_cells_are_never_read(tmp_path: Path) -> None:
    d, axes = _grid(tmp_path)
    f1, f2 = d / "cell_x1.nc", d / "cell_x2.nc"
    f1.unlink()
    os.mkfifo(f1)
    f2.unlink()
    f2.symlink_to("/dev/zero")
    with (d / "cells.log").open("a") as fh:
        fh.write(_log_line(f1.name, {"x": 1}, b""))  # a FIFO is 0 bytes
        fh.write(_log_line(f2.name, {"x": 2}, b"\0" * 4096))
        fh.write(_log_line(f2.name, {"x": 2}, b"", size=1 << 40))  # a size beyond any cell
    t0 = time.monotonic()
    assert dlnsim.open_grid(d).status.values.tolist() == ["not_run", "not_run"]
    ds = dlnsim.run_grid(d, echo, axes, progress=False, executor="serial")  # the entries are replaced
    assert time.monotonic() - t0 < 10
    assert ds.attrs["cells_done"] == 2 and f1.is_file() and not f1.is_symlink()


def test_a_fifo_or_a_link_as_the_log_is_refused(tmp_path: Path) -> None:
    d, axes = _grid(tmp_path)
    log = d / "cells.log"
    outside = tmp_path / "outside.log"
    outside.write_bytes(log.read_bytes())
    log.unlink()
    log.symlink_to(outside)
    before = outside.read_bytes()
    with pytest.raises(ValueError, match=r"the log cannot be read.*symbolic link"):
        dlnsim.run_grid(d, echo, axes, progress=False, executor="serial")
    assert outside.read_bytes() == before
    log.unlink()
    os.mkfifo(log)
    with pytest.raises(ValueError, match=r"the log cannot be read.*not a regular file"):
        dlnsim.open_grid(d)


def test_huge_and_malformed_log_lines_are_skipped_in_bounded_memory(tmp_path: Path) -> None:
    d, _ = _grid(tmp_path)
    log = d / "cells.log"
    good = log.read_bytes()
    with log.open("wb") as fh:
        fh.write(b'{"cell": ["a list"], "point": {}, "status": "ok", "bytes": 1, "sha256": "00"}\n')
        fh.write(b"[" * 20000 + b"\n")  # nested beyond the interpreter's recursion limit
        fh.write(b'{"cell": "cell_x1.nc", "bytes": true}\n')
        fh.truncate(fh.tell() + (64 << 20))  # a 64 MiB line of NUL bytes (sparse: costs no disk)
        fh.seek(0, 2)
        fh.write(b"\n" + good)
    tracemalloc.start()
    try:
        ds = dlnsim.open_grid(d)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert ds.attrs["cells_done"] == 2
    assert peak < 16 << 20


def test_a_deeply_nested_manifest_is_refused(tmp_path: Path) -> None:
    d, _ = _grid(tmp_path)
    (d / "grid.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="not a readable grid manifest: JSON nested more than"):
        dlnsim.open_grid(d)
    deep: list = [1]
    for _ in range(40):
        deep = [deep]
    (d / "grid.json").write_text(json.dumps({"a": deep}))
    with pytest.raises(ValueError, match="JSON nested more than 32 levels"):
        dlnsim.open_grid(d)


def test_manifest_is_validated_against_reserved_names() -> None:
    with pytest.raises(ValueError, match=r"damaged grid manifest.*reserved"):
        Plan.from_manifest({"format": "dlnsim-grid", "version": 1, "cell": "m:f", "axes": {"status": [1]},
                            "params": {}}, "test")


def ratio_cell(ratio: float) -> xr.Dataset:
    """A cell whose run has an outcome named like the grid axis."""
    return xr.Dataset({"ratio": ((), float(ratio)), "y": ((), 2.0 * ratio)})


def test_an_outcome_named_like_an_axis_is_no_clash(tmp_path: Path) -> None:
    ds = dlnsim.run_grid(None, ratio_cell, {"ratio": [0.5, 1.5]}, progress=False, executor="serial")
    assert list(ds["ratio"].values) == [0.5, 1.5]
    assert list(ds["y"].values) == [1.0, 3.0]


# ------------------------------------------------------------------------------------------ a lost scheduler


@pytest.mark.slow
def test_a_scheduler_lost_mid_run_stops_the_run_and_a_rerun_resumes(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    axes = {"x": list(range(12))}
    params = {"delay": 0.5}
    outcome: dict[str, object] = {}

    def sweep_on(address: str) -> None:
        try:
            outcome["ds"] = dlnsim.run_grid(tmp_path, slow_echo, axes, params=params, executor="dask",
                                            scheduler=address, progress=False)
        except BaseException as exc:  # the test inspects what the run raised
            outcome["error"] = exc

    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None)
    runner = threading.Thread(target=sweep_on, args=(cluster.scheduler_address,), daemon=True)
    runner.start()
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob("cell_*.nc")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(tmp_path.glob("cell_*.nc")), "no cell finished within 60 s"
    cluster.close()  # the scheduler and its worker go away mid-run
    runner.join(120)
    assert not runner.is_alive(), "the run hangs after its scheduler is gone"
    error = outcome.get("error")
    assert isinstance(error, RuntimeError) and "scheduler" in str(error) and "rerun to resume" in str(error), error
    done = {p.name for p in tmp_path.glob("cell_*.nc")}
    assert 0 < len(done) < 12  # what finished is kept

    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cl:
        before = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("cell_*.nc")}
        resumed = dlnsim.run_grid(tmp_path, slow_echo, axes, params=params, executor="dask",
                                  scheduler=cl.scheduler_address, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("cell_*.nc") if p.name in before} == before
    whole = dlnsim.run_grid(None, slow_echo, axes, params={"delay": 0.0}, executor="serial", progress=False)
    np.testing.assert_array_equal(resumed["v"].values, whole["v"].values)
