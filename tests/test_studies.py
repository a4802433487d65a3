"""The studies' quick variants (``python -m studies --quick``) and the analysis notebook (slow: ``nox -s slow``).

Each study runs once per session into a temporary directory (never into data/), then the tests check the
Dataset (dims, variables, what the theory says about the numbers) and the files it wrote.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import dlnsim

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
STUDIES_DIR = ROOT / "studies"
if importlib.util.find_spec("studies") is None:  # `pytest`, unlike `python -m pytest`, does not add the root
    sys.path.insert(0, str(ROOT))

# dims and variables every quick Dataset must have
EXPECTED = {
    "fig1_constant": ({"case", "N", "k"}, {"loss", "eta_value", "status", "stop_iteration", "bound_eta", "paper_eta"}),
    "fig2_decreasing": ({"case", "N", "k"}, {"loss", "eta", "a1", "a2", "gamma", "status", "bound_eta"}),
    "balancedness_drift": ({"N", "eta_index", "k"}, {"balancedness_max", "final_drift", "bound_delta",
                                                     "drift_slope", "eta_value", "eta_crit"}),
    "gd_vs_flow": ({"N", "multiple", "flow", "k"}, {"flow_distance", "modified_flow_distance", "sup_distance",
                                                    "slope", "eta_value"}),
    "critical_stepsize": ({"N", "seed"}, {"eta_crit", "eta_star", "ratio", "search_status", "fit_exponent"}),
    "limit_rank": ({"case", "N", "init", "scale_index", "seed", "k"}, {"loss", "final_sv", "sv_rank", "loss_rank",
                                                                       "r_bar", "reached_global_min"}),
}


def _has_flow() -> bool:
    return importlib.util.find_spec("dlnsim.flow") is not None


@pytest.fixture(scope="session")
def quick_outdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("studies_quick")


@pytest.fixture(scope="session")
def quick_run(quick_outdir: Path):
    """``quick_run(name)``: the Dataset of the study's quick variant (computed once per session)."""
    cache: dict[str, xr.Dataset] = {}

    def get(name: str) -> xr.Dataset:
        if name not in cache:
            mod = importlib.import_module(f"studies.{name}")
            cache[name] = mod.run(quick=True, outdir=quick_outdir)
        return cache[name]

    yield get
    from studies import _common

    _common.shutdown_pool()


@pytest.mark.parametrize("name", list(EXPECTED))
def test_quick_variant_writes_dataset_and_figures(name: str, quick_run, quick_outdir: Path) -> None:
    if name == "gd_vs_flow" and not _has_flow():
        pytest.skip("dlnsim.flow (compare_flow) is not available")
    ds = quick_run(name)
    dims, variables = EXPECTED[name]
    assert dims <= set(ds.dims), f"{name}: dims {set(ds.dims)}"
    assert variables <= set(ds.data_vars) | set(ds.coords), f"{name}: missing {variables - set(ds.data_vars)}"
    assert ds.attrs["study"] == name
    assert ds.attrs["quick"] == 1
    assert "--quick" in ds.attrs["command"]
    for v in ds.data_vars.values():  # self-describing: every variable has units and a long name
        assert "units" in v.attrs and "long_name" in v.attrs, v.name
    nc = quick_outdir / f"{name}.nc"
    assert nc.is_file()
    back = dlnsim.open(nc)
    assert set(back.data_vars) == set(ds.data_vars)
    for ext in ("png", "pdf"):
        f = quick_outdir / "figures" / f"{name}.{ext}"
        assert f.is_file() and f.stat().st_size > 10_000, f


def test_quick_outputs_never_go_to_the_archive() -> None:
    from studies import _common

    assert _common.default_outdir(True) != _common.default_outdir(False)
    assert _common.default_outdir(False) == ROOT / "data"
    assert _common.default_outdir(True).is_relative_to(ROOT / "data" / "quick")


def test_fig1_a_to_c_decrease_and_d_diverges(quick_run) -> None:
    ds = quick_run("fig1_constant")
    for case in ("a_bound", "a_paper", "b_below", "c_above"):
        for N in ds["N"].values:
            run = ds.sel(case=case, N=N)
            loss = run["loss"].dropna("k").values
            assert run["status"].item() != "diverged", (case, N)
            assert loss[-1] < 0.9 * loss[0], (case, N, loss[0], loss[-1])
            if case in ("a_bound", "b_below"):
                # Prop. 3.4(2): at or below the bound the loss never increases (rtol: rounding of the loss)
                assert np.all(np.diff(loss) <= 1e-12 * loss[:-1]), (case, N)
    assert np.all(ds["status"].sel(case="d_diverging").values == "diverged")
    # the paper's values are labelled as such and differ from ours
    np.testing.assert_allclose(ds["paper_eta"].values, [7.73e-4, 1.29e-4, 3.91e-5], rtol=0, atol=0)
    np.testing.assert_allclose(ds["eta_value"].sel(case="a_bound").values, ds["bound_eta"].values, rtol=1e-15)


def test_fig2_schedule_is_the_reconstructed_power_decay(quick_run) -> None:
    ds = quick_run("fig2_decreasing")
    assert "reconstruction" in ds.attrs["schedule_formula"]
    run = ds.sel(case="b_gamma0.4", N=2)
    k = run["k"].values
    eta = run["eta"].values
    ok = np.isfinite(eta)
    a1, a2, gamma = float(run["a1"]), float(run["a2"]), float(run["gamma"])
    expected = np.maximum(a1 * (k[ok] + 1.0) ** -gamma, a2 / (k[ok] + 1.0))
    np.testing.assert_allclose(eta[ok], expected, rtol=1e-14)
    assert np.all(ds["status"].sel(case="d_diverging").values == "diverged")
    assert not np.any(ds["status"].sel(case=["a_gamma0.2", "b_gamma0.4", "c_above"]).values == "diverged")


def test_balancedness_drift_stays_below_delta_at_the_bound(quick_run) -> None:
    ds = quick_run("balancedness_drift")
    # Theorem 2.4 (alpha = 0): for eta <= eta* the balancedness constant stays <= delta along the whole run
    assert np.all(ds["max_drift_over_delta"].isel(eta_index=0).values <= 1.0)
    np.testing.assert_allclose(ds["eta_over_bound"].isel(eta_index=0).values, 1.0, rtol=1e-12)
    assert np.all(ds["drift_slope"].values > 0.5)


@pytest.mark.skipif(not _has_flow(), reason="dlnsim.flow (compare_flow) is not available")
def test_gd_vs_flow_slopes(quick_run) -> None:
    ds = quick_run("gd_vs_flow")
    # forward Euler: O(eta) from the gradient flow, O(eta^2) from the modified flow
    np.testing.assert_allclose(ds["slope"].sel(flow="factor").values, 1.0, atol=0.2)
    np.testing.assert_allclose(ds["slope"].sel(flow="modified").values, 2.0, atol=0.2)


def test_critical_stepsize_exceeds_the_bound(quick_run) -> None:
    ds = quick_run("critical_stepsize")
    assert np.all(ds["search_status"].values == "ok")
    assert np.all(ds["ratio"].values > 1.0)  # the bound is sufficient, so eta_crit >= eta*
    assert float(ds["fit_exponent"].sel(quantity="ratio")) > 0  # the bound gets more conservative with N


def test_limit_rank_counts_are_consistent(quick_run) -> None:
    ds = quick_run("limit_rank")
    np.testing.assert_array_equal(ds["r_bar"].values, [[3], [4]])
    assert np.all(ds["sv_rank"].values <= ds["r_bar"].values[:, :, None, None, None])
    assert np.all(ds["loss_rank"].values >= 0)
    assert not np.any(ds["status"].values == "diverged")
    # large balanced starts reach the global minimum (rank r_bar) within the quick budget
    big = ds.sel(init="balanced", scale_index=0)
    assert np.all(big["reached_global_min"].values == 1)


def test_cli_rejects_unknown_study() -> None:
    from studies.__main__ import main

    with pytest.raises(SystemExit) as exc:
        main(["--quick", "no_such_study"])
    assert exc.value.code == 2


def test_notebook_executes_on_the_archive(monkeypatch: pytest.MonkeyPatch) -> None:
    data = ROOT / "data"
    if not (data / "fig1_constant.nc").is_file():
        pytest.skip(f"the archived results are missing ({data / 'fig1_constant.nc'}); run `python -m studies`")
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")  # jupyter_core's platformdirs migration warning
    monkeypatch.setenv("DLNSIM_DATA", str(data))
    nb = nbformat.read(STUDIES_DIR / "analysis.ipynb", as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(STUDIES_DIR)}})
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any(o.get("output_type") == "display_data" and "image/png" in o.get("data", {}) for o in outputs)
