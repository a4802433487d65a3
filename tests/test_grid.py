"""The grid engine on any problem: user setups equal direct runs bit for bit, any axis, executors, combine_runs,
damaged cells recomputed, no __main__ guard needed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import dlnsim
from dlnsim.grid.plan import Plan

SMALL = {"d": 8, "m": 24, "r": 2}


def my_setup(N: int, seed: int, scale: float, m: int = 30) -> tuple:
    """A user's own data, widths and initialisation: Gaussian data, widths 6-3-...-3-4, a scaled balanced start."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((6, m))
    Y = rng.standard_normal((4, 6)) @ X + 0.1 * rng.standard_normal((4, m))
    widths = (6, *([3] * (N - 1)), 4)
    W0 = dlnsim.balanced_init(widths, np.random.default_rng(seed + 100), scale=scale)
    return dlnsim.Problem(X, Y), W0


def test_sweep_on_a_user_setup_equals_direct_runs(tmp_path: Path) -> None:
    ds = dlnsim.sweep(tmp_path / "s", setup=my_setup, N=[2, 3], eta=[1e-3, 5e-3], seed=[0, 1], scale=[0.5, 1.0],
                      m=40, n_iter=300, record="log:30", engine=dlnsim.Engine("threads", workers=2, progress=False))
    assert ds.loss.dims == ("N", "eta", "seed", "scale", "k")
    assert ds.attrs["grid_cell"] == "dlnsim.sweeps.grid_sweeps:gd_cell"
    manifest = (tmp_path / "s" / "grid.json").read_text()
    assert "test_grid:my_setup" in manifest and '"m": 40' in manifest
    for N in (2, 3):
        for eta in (1e-3, 5e-3):
            for seed in (0, 1):
                for scale in (0.5, 1.0):
                    problem, W0 = my_setup(N, seed, scale, m=40)
                    ref = dlnsim.run_gd(problem, W0, eta, 300, record="log:30")
                    cell = ds.sel(N=N, eta=eta, seed=seed, scale=scale)
                    for v in ("loss", "grad_norm_sq", "balancedness_max", "t"):
                        # by value of k: the combined k is the union of every run's record points (a run that
                        # stops adds its stop iteration), so positions need not line up
                        np.testing.assert_array_equal(cell[v].sel(k=ref["k"].values).values, ref[v].values)
                    assert cell.status.item() == ref["status"].item()
    # eta as a multiple of the bound of each start
    rel = dlnsim.sweep(None, setup=my_setup, N=[2], eta_factor=[0.5], seed=[0], scale=[1.0], n_iter=20,
                       engine=dlnsim.Engine("serial", progress=False))
    problem, W0 = my_setup(2, 0, 1.0)
    assert rel.eta_value.item() == 0.5 * dlnsim.stepsize_bound(problem, W0).eta


@pytest.mark.parametrize("bad", [{"temperature": [1.0]}, {"scael": [1.0]}])
def test_unknown_axis_is_refused_before_anything_is_written(tmp_path: Path, bad: dict) -> None:
    name = next(iter(bad))
    with pytest.raises(ValueError, match=f"unknown parameter or axis '{name}'"):
        dlnsim.sweep(tmp_path / "s", setup=my_setup, N=[2], eta=[1e-3], seed=[0], scale=[1.0], n_iter=5,
                     engine=dlnsim.Engine(progress=False), **bad)
    assert not (tmp_path / "s").exists()
    with pytest.raises(ValueError, match="module-level function"):
        dlnsim.sweep(tmp_path / "s", setup=lambda **kw: my_setup(**kw), N=[2], eta=[1e-3], seed=[0], n_iter=5)
    assert not (tmp_path / "s").exists()


def cell_any_axes(kind: str, x: float, n: int) -> xr.Dataset:
    """A cell on string and float axes whose own dimension grows with n."""
    if kind == "bad" and x > 1:
        raise ValueError("no such data set")
    k = np.arange(n)
    return xr.Dataset({"y": ("k", x * k.astype(float)), "label": ((), f"{kind}-{x}")},
                      coords={"k": k}, attrs={"status": "ok", "n": n, "source": "unit test"})


def test_run_grid_on_any_axes_pads_and_records_errors(tmp_path: Path) -> None:
    ds = dlnsim.run_grid(tmp_path / "g", cell_any_axes, {"kind": ["good", "bad"], "x": [0.5, 2.0]},
                         params={"n": 3}, progress=False)
    assert ds.y.dims == ("kind", "x", "k")
    np.testing.assert_array_equal(ds.y.sel(kind="good", x=2.0).values, [0.0, 2.0, 4.0])
    assert ds.status.sel(kind="bad", x=2.0).item() == "error"
    assert "ValueError: no such data set" in ds.error.sel(kind="bad", x=2.0).item()
    assert np.all(np.isnan(ds.y.sel(kind="bad", x=2.0)))
    assert ds.attrs["source"] == "unit test" and ds.attrs["n"] == 3  # equal in every finished cell: global
    xr.testing.assert_identical(dlnsim.open_grid(tmp_path / "g"), ds)


def test_combine_runs_by_hand_pads_and_aligns_by_coordinate() -> None:
    a = xr.Dataset({"loss": ("k", [3.0, 2.0, 1.0])}, coords={"k": [0, 10, 100]}, attrs={"status": "max_iter"})
    b = xr.Dataset({"loss": ("k", [5.0, 4.0])}, coords={"k": [0, 100]}, attrs={"status": "diverged"})
    ds = dlnsim.combine_runs({(2, 0): a, (3, 0): b}, {"N": [2, 3], "seed": [0]})
    np.testing.assert_array_equal(ds.k, [0, 10, 100])
    np.testing.assert_array_equal(ds.loss.sel(N=3, seed=0), [5.0, np.nan, 4.0])
    assert list(ds.status.values.ravel()) == ["max_iter", "diverged"]
    flat = dlnsim.combine_runs([a, None], {"N": [2, 3]})
    assert flat.status.sel(N=3).item() == "not_run"
    with pytest.raises(ValueError, match="expected 2 runs"):
        dlnsim.combine_runs([a], {"N": [2, 3]})


def test_manifest_is_validated_as_untrusted_input() -> None:
    for bad in ({"cell": "m:f", "axes": {"N": ["../x"]}, "params": {}},
                {"cell": "m:f", "axes": {"N": list(range(2000)), "s": list(range(1000))}, "params": {}},
                {"cell": "../x", "axes": {"N": [1]}, "params": {}}):
        with pytest.raises(ValueError, match="damaged grid manifest"):
            Plan.from_manifest({"format": "dlnsim-grid", "version": 1, **bad}, "test")


def test_damaged_cell_is_recomputed_not_combined(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "s"
    args = {"N": [2], "eta": [1e-3], "seed": [0, 1], "n_iter": 10, "engine": dlnsim.Engine("serial", progress=False),
            **SMALL}
    ref = dlnsim.sweep(d, **args)
    f = d / "cell_N2_eta0.001_seed0.nc"
    for offset in (930, 2000, f.stat().st_size - 10):
        b = bytearray(f.read_bytes())
        b[offset] ^= 0xFF
        f.write_bytes(bytes(b))
        assert dlnsim.open_sweep(d).status.sel(seed=0).item() == "not_run"  # never combined
        again = dlnsim.sweep(d, **args)
        assert "damaged; recomputing" in capsys.readouterr().err
        xr.testing.assert_identical(again.drop_attrs(), ref.drop_attrs())


NO_GUARD = textwrap.dedent("""
    import dlnsim
    ds = dlnsim.sweep(None, N=[2, 3], eta=[1e-3], seed=[0, 1], n_iter=50, d=8, m=24,
                      engine=dlnsim.Engine(progress=False))
    print(sorted(set(ds.status.values.ravel().tolist())), ds.attrs["cells_done"])
""")


def test_a_script_without_main_guard_runs_a_sweep(tmp_path: Path) -> None:
    script = tmp_path / "no_guard.py"
    script.write_text(NO_GUARD)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=env,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['max_iter'] 4"


@pytest.mark.slow  # 200 resumes, about 30 s
def test_fault_injection_flipped_bytes_are_recomputed_never_combined(tmp_path: Path) -> None:
    """Flip one byte at 200 offsets of a finished cell file: every resume recomputes the cell (the digest in the
    log does not match) and returns the original values; nothing hangs (the file is never parsed)."""
    d = tmp_path / "s"
    args = {"N": [2], "eta": [1e-3], "seed": [0], "n_iter": 10, "record": "all",
            "engine": dlnsim.Engine("serial", progress=False), **SMALL}
    ref = dlnsim.sweep(d, **args).drop_attrs()
    f = d / "cell_N2_eta0.001_seed0.nc"
    good = f.read_bytes()
    rng = np.random.default_rng(0)
    for offset in rng.choice(len(good), size=200, replace=False):
        b = bytearray(good)
        b[int(offset)] ^= 0xFF
        f.write_bytes(bytes(b))
        again = dlnsim.sweep(d, **args)
        xr.testing.assert_identical(again.drop_attrs(), ref)
        good = f.read_bytes()  # the recomputed file (same values; its creation time may differ)


def dies_once(marker: str, x: int) -> xr.Dataset:
    """A cell whose worker process dies the first time it computes x = 1 (as a killed worker would)."""
    m = Path(marker)
    if x == 1 and not m.exists():
        m.write_text("died")
        os._exit(3)
    return xr.Dataset({"y": ((), float(x))}, attrs={"status": "ok"})


@pytest.mark.slow  # spawns worker processes
def test_killed_worker_is_retried_once_and_the_grid_finishes(tmp_path: Path) -> None:
    ds = dlnsim.run_grid(tmp_path / "g", dies_once, {"x": [0, 1, 2, 3]}, params={"marker": str(tmp_path / "m")},
                         executor="processes", workers=2, progress=False)
    assert list(ds.status.values) == ["ok"] * 4
    np.testing.assert_array_equal(ds.y.values, [0.0, 1.0, 2.0, 3.0])


def test_sweep_on_a_problem_with_widths_and_init_equals_direct_runs() -> None:
    problem, _ = my_setup(2, 7, 1.0)
    ds = dlnsim.sweep(None, problem=problem, N=[2, 3], width=[2, 3], seed=[0, 1], scale=[0.3], eta=[2e-3],
                      n_iter=100, record="log:20", init="balanced", engine=dlnsim.Engine("serial", progress=False))
    assert ds.loss.dims == ("N", "eta", "seed", "width", "scale", "k")
    for N in (2, 3):
        for width in (2, 3):
            widths = (6, *([width] * (N - 1)), 4)
            W0 = dlnsim.balanced_init(widths, np.random.default_rng(1), scale=0.3)
            ref = dlnsim.run_gd(problem, W0, 2e-3, 100, record="log:20")
            cell = ds.sel(N=N, width=width, seed=1, scale=0.3, eta=2e-3)
            np.testing.assert_array_equal(cell.loss.values, ref.loss.values)
    fixed = dlnsim.sweep(None, problem=problem, widths=(6, 2, 4), seed=[0], eta=[2e-3], n_iter=10, init="gaussian",
                         scale=0.1, engine=dlnsim.Engine("serial", progress=False))
    W0 = dlnsim.gaussian_init((6, 2, 4), np.random.default_rng(0), std=0.1)
    np.testing.assert_array_equal(fixed.loss.isel(eta=0, seed=0).values, dlnsim.run_gd(problem, W0, 2e-3, 10).loss)
    # the setup raises in the cell: recorded, not raised
    bad = dlnsim.sweep(None, problem=problem, widths=(5, 2, 4), seed=[0], eta=[1e-3], n_iter=5,
                       engine=dlnsim.Engine("serial", progress=False))
    assert bad.status.item() == "error" and "widths must start with d_x = 6" in bad.error.item()
    with pytest.raises(ValueError, match=r"either setup= .* or problem="):
        dlnsim.sweep(None, problem=problem, setup=my_setup, seed=[0], eta=[1e-3], n_iter=5)


def test_combine_runs_of_run_gd_on_an_eta_axis_keeps_the_per_step_stepsize() -> None:
    s = dlnsim.paper_setup(2, 0, **SMALL)
    runs = {(eta,): dlnsim.run_gd(s.problem, s.W0, eta, 20, record="all") for eta in (1e-3, 2e-3)}
    ds = dlnsim.combine_runs(runs, {"eta": [1e-3, 2e-3]})
    np.testing.assert_array_equal(ds.eta_k.sel(eta=2e-3).values[:-1], 2e-3)
    seeds = dlnsim.sweep(None, N=2, eta=1e-3, seed=range(2), n_iter=5,
                         engine=dlnsim.Engine("serial", progress=False), **SMALL)
    assert list(seeds.seed.values) == [0, 1]


def test_run_gd_eta_bound_with_alpha_on_an_unbalanced_start() -> None:
    s = dlnsim.paper_setup(2, 0, **SMALL)
    W0 = dlnsim.perturbed_init(s.widths, np.random.default_rng(3), balancedness_constant=1e-3)
    with pytest.raises(ValueError):
        dlnsim.run_gd(s.problem, W0, "bound", 5)  # alpha = 0: Theorem 2.4 does not admit the start
    b = dlnsim.stepsize_bound(s.problem, W0, alpha="min")
    ds = dlnsim.run_gd(s.problem, W0, "bound", 5, alpha="min")
    assert ds.eta_k.values[0] == b.eta
    ds2 = dlnsim.run_gd(s.problem, W0, "0.5xbound", 5, bound=b)
    assert ds2.eta_k.values[0] == 0.5 * b.eta


def cell_varied_attrs(kind: str, x: float) -> xr.Dataset:
    """Attributes of every kind the codec carries (bool, None, tuple, list, int, float, NaN, text), some equal
    in every cell (global) and some not (variables), integer, text and boolean-free variables, and an error."""
    if kind == "bad" and x > 1:
        raise RuntimeError("broken cell")
    k = np.arange(int(2 + x))
    return xr.Dataset({"y": ("k", np.sqrt(x) * k), "n": ("k", k * 3), "tag": ((), f"{kind}:{x}")},
                      coords={"k": k}, attrs={"status": "ok", "flag": x > 1, "none": None, "pair": (1, 2.5),
                                              "seq": [x, 2 * x], "ratio": x / 3, "nan": float("nan"),
                                              "units_note": "text", "count": int(4 * x)})


@pytest.mark.parametrize("case", ["varied", "gd_sweep", "flow_sweep", "critical"])
def test_a_grid_without_directory_equals_one_on_disk(tmp_path: Path, case: str) -> None:
    """directory=None keeps the cells in memory (no NetCDF round trip): the combined Dataset is the one the same
    grid gives from its files, attributes and variables alike (only the creation time differs)."""

    def grid(directory: Path | None) -> xr.Dataset:
        small = {"d": 8, "m": 24, "engine": dlnsim.Engine(progress=False)}
        if case == "varied":
            return dlnsim.run_grid(directory, cell_varied_attrs, {"kind": ["good", "bad"], "x": [0.5, 2.0, 3.0]},
                                   progress=False, executor="serial")
        if case == "gd_sweep":
            return dlnsim.sweep(directory, N=[2, 3], seed=[0, 1], eta_factor=[1.0, 60.0], n_iter=300,
                                **small)
        if case == "flow_sweep":
            return dlnsim.sweep(directory, N=[2], seed=[0], eta_factor=[1.0], n_iter=50, flow=True,
                                **small)
        return dlnsim.critical_sweep(directory, N=[2], seed=[0, 1], n_iter=400, rtol=0.1, **small)

    def comparable(ds: xr.Dataset) -> xr.Dataset:
        out = ds.copy()
        out.attrs = {k: ("nan" if isinstance(v, float) and np.isnan(v) else v) for k, v in ds.attrs.items()
                     if k != "created"}
        if isinstance(out.attrs.get("history"), str):  # the CF history line: its creation time aside
            out.attrs["history"] = re.sub(r"\d{4}-\d\d-\d\dT[\d:.]+(?:Z|[+-]\d\d:\d\d)?", "<created>",
                                          out.attrs["history"])
        return out

    in_memory, on_disk = grid(None), grid(tmp_path / "g")
    xr.testing.assert_identical(comparable(in_memory), comparable(on_disk))
    if case == "varied":
        assert in_memory.status.sel(kind="bad", x=2.0).item() == "error"
        assert in_memory.attrs["none"] is None and in_memory.attrs["units_note"] == "text"
