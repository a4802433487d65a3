"""dlnsim.plot and ``dlnsim plot`` on real runs of tiny problems (d = 8, m = 24).

pytest turns warnings into errors, so every figure here is also drawn without a warning.
"""

from __future__ import annotations

import argparse
import io
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure

import dlnsim
from dlnsim import plot
from dlnsim.cli.plot import add_plot_cli

D, M = 8, 24
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FLOW_SERIES = ("loss", "excess_loss", "grad_norm_sq", "balancedness", "balancedness_max", "layer_norm_sq",
               "product_sv")


def old_flow_names(ds: xr.Dataset) -> xr.Dataset:
    """A flow Dataset with the ``_t`` names of the first flow layout (loss_t, ...)."""
    return ds.rename({v: f"{v}_t" for v in FLOW_SERIES if v in ds.data_vars})


def new_flow_names(ds: xr.Dataset) -> xr.Dataset:
    """A flow Dataset with the GD names (loss, ...) over t."""
    return ds.rename({f"{v}_t": v for v in FLOW_SERIES if f"{v}_t" in ds.data_vars})


@pytest.fixture(scope="module")
def setup() -> dlnsim.Setup:
    return dlnsim.paper_setup(3, 0, d=D, m=M)


@pytest.fixture(scope="module")
def gd(setup: dlnsim.Setup) -> xr.Dataset:
    eta = dlnsim.stepsize_bound(setup.problem, setup.W0).eta
    return dlnsim.run_gd(setup.problem, setup.W0, 50 * eta, 2000, progress=False)


@pytest.fixture(scope="module")
def gd_diverged(setup: dlnsim.Setup) -> xr.Dataset:
    ds = dlnsim.run_gd(setup.problem, setup.W0, 0.5, 2000, progress=False)
    assert ds["status"].item() == "diverged"
    return ds


@pytest.fixture(scope="module")
def flow(setup: dlnsim.Setup) -> xr.Dataset:
    return dlnsim.run_flow(setup.problem, setup.W0, np.linspace(0.0, 5.0, 40))


@pytest.fixture(scope="module")
def comparison(setup: dlnsim.Setup) -> xr.Dataset:
    eta = dlnsim.stepsize_bound(setup.problem, setup.W0).eta
    return dlnsim.compare_flow(setup.problem, setup.W0, 20 * eta, 300, progress=False)


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plot") / "sweep"
    dlnsim.sweep(path, N=[2, 3], eta_factor=[0.5, 2.0, 50.0], seed=[0, 1], n_iter=300, d=D, m=M,
                 engine=dlnsim.Engine(progress=False))
    return path


@pytest.fixture(scope="module")
def sweep(sweep_dir: Path) -> xr.Dataset:
    return dlnsim.open_sweep(sweep_dir)


@pytest.fixture(scope="module")
def flow_sweep() -> xr.Dataset:
    return dlnsim.sweep(None, N=[2, 3], eta_factor=[1.0, 3.0, 10.0], seed=[0], n_iter=100, flow=True,
                        d=D, m=M, engine=dlnsim.Engine(progress=False))


@pytest.fixture(scope="module")
def critical(tmp_path_factory: pytest.TempPathFactory) -> xr.Dataset:
    return dlnsim.critical_sweep(tmp_path_factory.mktemp("plot") / "critical", N=[2, 3], seed=[0], n_iter=200,
                                 d=D, m=M, engine=dlnsim.Engine(progress=False))


def texts(fig: Figure) -> list[str]:
    """Every axis label and title of a figure."""
    out = []
    for ax in fig.axes:
        out += [ax.get_xlabel(), ax.get_ylabel(), ax.get_title(loc="left")]
    return [t for t in out if t]


def assert_short(fig: Figure) -> None:
    """No xarray long names or '[1]' units: labels are symbols."""
    for text in texts(fig):
        assert "[1]" not in text and "||" not in text and len(text) < 60, text


def finite_lines(ax: Axes) -> list[Any]:
    return [ln for ln in ax.lines if np.asarray(ln.get_xdata()).size > 1]


# ------------------------------------------------------------------------------------------------ labels


def test_short_labels_of_dlnsim_names(gd: xr.Dataset, flow: xr.Dataset, sweep: xr.Dataset) -> None:
    assert plot.label(gd, "loss") == "L"
    assert plot.label(gd, "excess_loss") == "L − L*"
    assert plot.label(gd, "grad_norm_sq") == "‖∇L‖²"
    assert plot.label(gd, "k") == "k"
    assert plot.label(gd, "t") == "t"
    assert plot.label(old_flow_names(flow), "loss_t") == "L"
    assert plot.label(flow, "t") == "t"
    assert plot.label(sweep, "eta_factor") == "η/η*"  # the axis holds multiples of the bound
    assert plot.label(sweep, "N") == "N"
    assert plot.label(sweep, "loss") == "L"


def test_label_attribute_and_units_win() -> None:
    da = xr.DataArray([1.0], dims="x", name="loss", attrs={"label": "custom", "units": "s"})
    assert plot.label(da) == "custom [s]"
    assert plot.label(xr.DataArray([1.0], dims="x", name="unknown_name", attrs={"units": "1"})) == "unknown_name"
    with pytest.raises(ValueError, match="name"):
        plot.label(xr.Dataset())


# ------------------------------------------------------------------------------------------------ loss


@pytest.mark.parametrize("t_layout", ["coordinate", "variable"])
def test_loss_of_a_gd_run(gd: xr.Dataset, t_layout: str) -> None:
    ds = gd.set_coords("t") if t_layout == "coordinate" else gd.reset_coords("t")
    ax = plot.loss(ds)
    (line,) = finite_lines(ax)
    ok = np.isfinite(ds["loss"].values) & (ds["loss"].values > 0)
    np.testing.assert_array_equal(np.asarray(line.get_xdata()), ds["k"].values[ok] + 1.0)
    np.testing.assert_array_equal(line.get_ydata(), ds["loss"].values[ok])
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("k + 1", "L")
    assert ax.get_xscale() == ax.get_yscale() == "log"
    ax_t = plot.loss(ds, x="t", var="excess_loss")
    assert (ax_t.get_xlabel(), ax_t.get_ylabel()) == ("t", "L − L*")
    np.testing.assert_allclose(finite_lines(ax_t)[0].get_xdata(), ds["t"].values[1:], rtol=0)  # t_0 = 0: left out


def test_loss_ends_where_a_run_stopped(gd_diverged: xr.Dataset) -> None:
    ax = plot.loss(gd_diverged)
    line = finite_lines(ax)[0]
    k, y = plot.with_end(gd_diverged)
    assert k[-1] == gd_diverged["stop_iteration"].item() and y[-1] == gd_diverged["final_loss"].item()
    np.testing.assert_array_equal(line.get_xdata(), k + 1)
    np.testing.assert_array_equal(line.get_ydata(), y)


@pytest.mark.parametrize("names", ["gd_names", "t_names"])
def test_loss_of_a_flow_run_under_both_names(flow: xr.Dataset, names: str) -> None:
    ds = new_flow_names(flow) if names == "gd_names" else old_flow_names(flow)
    ax = plot.loss(ds)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("t", "L")
    (line,) = finite_lines(ax)
    np.testing.assert_array_equal(line.get_xdata(), ds["t"].values[1:])
    with pytest.raises(ValueError, match=r"^x: a gradient-flow run has no iteration k"):
        plot.loss(ds, x="k")


def test_loss_of_a_comparison_draws_the_flows(comparison: xr.Dataset) -> None:
    ax = plot.loss(comparison, var="excess_loss")
    labels = [ln.get_label() for ln in finite_lines(ax)]
    assert labels[0] == "GD" and "flow (2.2)" in labels and "modified flow" in labels
    assert len(finite_lines(plot.loss(comparison, flows=False))) == 1


def test_loss_of_a_sweep_one_line_per_grid_point(sweep: xr.Dataset) -> None:
    ax = plot.loss(sweep)
    assert len(finite_lines(ax)) == sweep["status"].size
    legend = ax.get_legend()
    assert legend is not None and [t.get_text() for t in legend.get_texts()] == ["N = 2", "N = 3"]
    colors = {ln.get_color() for ln in finite_lines(ax)}
    assert colors == {plot.depth_color(2), plot.depth_color(3)}
    ax_eta = plot.loss(sweep, hue="eta_factor")
    texts_eta = [t.get_text() for t in ax_eta.get_legend().get_texts()]  # type: ignore[union-attr]
    assert texts_eta == ["η/η* = 0.5", "η/η* = 2", "η/η* = 50"]
    with pytest.raises(ValueError, match=r"^hue: 'gamma' is not a grid dimension"):
        plot.loss(sweep, hue="gamma")


def test_loss_refuses_other_inputs(gd: xr.Dataset) -> None:
    with pytest.raises(ValueError, match=r"^var must be"):
        plot.loss(gd, var="grad_norm_sq")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^x must be 'k' or 't'"):
        plot.loss(gd, x="eta")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^ds: the Dataset has no variable 'loss'"):
        plot.loss(xr.Dataset({"a": ("k", [1.0])}))
    with pytest.raises(ValueError, match=r"^ds must be an xarray Dataset"):
        plot.loss(gd["loss"])  # type: ignore[arg-type]


def test_draws_into_given_axes(gd: xr.Dataset) -> None:
    fig, axes = plot.subplots(1, 4)
    assert plot.loss(gd, ax=axes[0, 0]) is axes[0, 0]
    assert plot.theory_panel(gd, axes=list(axes[0, 1:])) is fig
    with pytest.raises(ValueError, match=r"^axes: give three Axes"):
        plot.theory_panel(gd, axes=list(axes[0, :2]))


# ------------------------------------------------------------------------------------------------ theory


def test_theory_panel_constants_of_the_run(gd: xr.Dataset) -> None:
    fig = plot.theory_panel(gd)
    a, b, c = fig.axes
    assert a.get_title(loc="left").endswith("descent ratio ≥ σ")
    consts = {ax: [ln for ln in ax.lines if ln.get_linestyle() == "--"] for ax in (a, b, c)}
    for ax, key in ((a, "bound_sigma"), (b, "bound_delta"), (c, "bound_K")):
        (line,) = consts[ax]
        assert line.get_ydata()[0] == pytest.approx(gd[key].item(), rel=1e-15)
    # the measured quantities: ratio, max balancedness, max_j ||W_j||^2
    k = gd["k"].values + 1.0
    bal = gd["balancedness_max"].values
    line = next(ln for ln in b.lines if ln.get_linestyle() == "-")
    np.testing.assert_array_equal(line.get_xdata(), k[bal > 0])
    top = next(ln for ln in c.lines if ln.get_linestyle() == "-")
    np.testing.assert_allclose(top.get_ydata(), gd["layer_norm_sq"].max("layer").values, rtol=0)
    assert (a.get_ylabel(), c.get_ylabel()) == ("descent ratio", r"${\rm max}_j\|W_j\|^2$")
    assert_short(fig)


def test_theory_panel_with_a_given_bound(setup: dlnsim.Setup, gd: xr.Dataset) -> None:
    bound = dlnsim.stepsize_bound(setup.problem, setup.W0, delta="optimal")
    fig = plot.theory_panel(gd, bound=bound)
    dashed = [ln for ln in fig.axes[0].lines if ln.get_linestyle() == "--"]
    assert dashed[0].get_ydata()[0] == pytest.approx(bound.sigma, rel=1e-15)


def test_theory_panel_when_the_loss_rose(gd_diverged: xr.Dataset) -> None:
    fig = plot.theory_panel(gd_diverged)
    assert fig.axes[0].get_yscale() == "symlog"  # negative ratios stay visible
    assert np.nanmin(gd_diverged["descent_ratio"].values) < 0


def test_theory_panel_of_a_sweep_and_of_a_flow(sweep: xr.Dataset, flow: xr.Dataset) -> None:
    fig = plot.theory_panel(sweep)
    # sigma depends on (N, seed): a dashed segment per run in its colour
    dashed = [ln for ln in fig.axes[0].lines if ln.get_linestyle() == "--"]
    assert len(dashed) == sweep["status"].size
    fig_flow = plot.theory_panel(old_flow_names(flow))
    assert any("no descent_ratio recorded" in t.get_text() for t in fig_flow.axes[0].texts)
    assert fig_flow.axes[1].get_xlabel() == "t"


# ------------------------------------------------------------------------------------------------ flows


def test_flow_distance_of_a_comparison(comparison: xr.Dataset) -> None:
    ax = plot.flow_distance(comparison)
    labels = {ln.get_label() for ln in finite_lines(ax)}
    assert {"flow (2.2): factors", "flow (2.2): product", "modified flow: factors"} <= labels
    assert ax.get_xlabel() == "t" and ax.get_ylabel() == r"distance at $t_k$"
    ax_k = plot.flow_distance(comparison, x="k")
    assert ax_k.get_xlabel() == "k + 1"
    with pytest.raises(ValueError, match=r"^x: 'eta' needs a Dataset over several stepsizes"):
        plot.flow_distance(comparison, x="eta")


def test_flow_distance_refuses_a_run_without_flows(gd: xr.Dataset) -> None:
    with pytest.raises(ValueError, match=r"^ds: no GD-vs-flow distances"):
        plot.flow_distance(gd)
    with pytest.raises(ValueError, match=r"^x must be"):
        plot.flow_distance(gd.assign(flow_distance=gd["loss"]), x="time")  # type: ignore[arg-type]


def test_flow_distance_against_eta(flow_sweep: xr.Dataset) -> None:
    ax = plot.flow_distance(flow_sweep, x="eta")
    assert ax.get_xlabel() == "η" and ax.get_ylabel().startswith(r"${\rm max}_{t_k\leq T}$ distance")
    # one line per depth and distance, each over the three stepsizes
    lines = finite_lines(ax)
    assert len(lines) == 2 * 4 and all(len(ln.get_xdata()) == 3 for ln in lines)
    # the maximum over the common span: the largest eta reaches furthest, the smallest sets T
    T = float(flow_sweep["t"].max("k").min())
    sel = flow_sweep.sel(N=2, seed=0, eta_factor=10.0)
    t = sel["t"].values
    expected = float(np.nanmax(np.where(t <= T * (1 + 1e-12), sel["flow_distance"].values, np.nan)))
    got = lines[0].get_ydata()[np.argmax(lines[0].get_xdata())]
    assert got == pytest.approx(expected, rel=1e-15)


# ------------------------------------------------------------------------------------------------ facets


def test_sweep_facets_default_and_explicit(sweep: xr.Dataset) -> None:
    fig = plot.sweep_facets(sweep)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title(loc="left") for ax in visible] == ["N = 2", "N = 3"]
    assert len(finite_lines(visible[0])) == sweep.sizes["eta_factor"] * sweep.sizes["seed"]
    fig2 = plot.sweep_facets(sweep, "balancedness_max", row="seed", col="N", hue="eta_factor")
    assert len(fig2.axes) == 4 and fig2.axes[0].get_title(loc="left") == "seed = 0, N = 2"
    assert_short(fig2)


def test_sweep_facets_of_one_number_per_run(sweep: xr.Dataset) -> None:
    fig = plot.sweep_facets(sweep, "final_loss", col="N", hue="seed")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "η/η*" and ax.get_ylabel() == plot.LABELS["final_loss"]  # mathtext, not the plain L_final
    np.testing.assert_array_equal(finite_lines(ax)[0].get_xdata(), sweep["eta_factor"].values)
    with pytest.raises(ValueError, match=r"^x: for 'final_loss'"):
        plot.sweep_facets(sweep, "final_loss", col="N", hue="seed", x="N")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"row": "gamma"}, "^row: 'gamma' is not a grid dimension"),
    ({"col": "N", "hue": "N"}, "^row, col, hue must be different"),
    ({"var": "nope"}, "^var: the Dataset has no variable 'nope'"),
])
def test_sweep_facets_errors(sweep: xr.Dataset, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        plot.sweep_facets(sweep, **kwargs)


def test_sweep_facets_refuses_a_single_run(gd: xr.Dataset) -> None:
    with pytest.raises(ValueError, match=r"^ds: no grid dimensions"):
        plot.sweep_facets(gd)


# ------------------------------------------------------------------------------------------------ standard


@pytest.fixture(params=["gd", "gd_diverged", "flow", "flow_t_names", "comparison", "sweep", "flow_sweep",
                        "critical"])
def any_result(request: pytest.FixtureRequest) -> Iterator[tuple[str, xr.Dataset]]:
    name = request.param
    ds = old_flow_names(request.getfixturevalue("flow")) if name == "flow_t_names" else request.getfixturevalue(name)
    yield name, ds


def test_standard_panels_of_every_kind(any_result: tuple[str, xr.Dataset]) -> None:
    name, ds = any_result
    fig = plot.standard_panels(ds)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    expected = {"gd": 6, "gd_diverged": 6, "comparison": 6, "flow": 4, "flow_t_names": 4, "sweep": 4,
                "flow_sweep": 4, "critical": 3}[name]
    assert len(visible) == expected
    assert all(ax.lines for ax in visible), [ax.get_title(loc="left") for ax in visible]
    assert_short(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=40)  # drawing parses the mathtext labels: a bad one would fail here
    assert buf.getvalue()[:8] == PNG_MAGIC


def test_standard_panels_x_t_of_a_gd_run(gd: xr.Dataset) -> None:
    fig = plot.standard_panels(gd, x="t")
    assert {ax.get_xlabel() for ax in fig.axes if ax.get_visible()} == {"t"}


def test_standard_panels_refuses_foreign_datasets() -> None:
    with pytest.raises(ValueError, match=r"^ds: not a dlnsim result"):
        plot.standard_panels(xr.Dataset({"x": ("i", [1.0, 2.0])}))


def test_save_figure_is_reproducible_and_checks_suffix(gd: xr.Dataset, tmp_path: Path) -> None:
    fig = plot.loss(gd).get_figure(root=True)
    assert isinstance(fig, Figure)
    paths = plot.save_figure(fig, tmp_path / "a", formats=("png", "pdf"), dpi=50)
    assert [p.name for p in paths] == ["a.png", "a.pdf"]
    assert paths[0].read_bytes()[:8] == PNG_MAGIC and paths[1].read_bytes()[:5] == b"%PDF-"
    (b,) = plot.save_figure(fig, tmp_path / "b.pdf")
    assert b.read_bytes() == paths[1].read_bytes()  # no creation date in the file
    with pytest.raises(ValueError, match=r"^path: figures are written as"):
        plot.save_figure(fig, tmp_path / "a.txt")


def test_with_end_on_a_grid_point(sweep: xr.Dataset) -> None:
    run = sweep.isel(N=0, eta_factor=0, seed=0)
    k, y = plot.with_end(run)
    ok = np.isfinite(run["loss"].values)
    np.testing.assert_array_equal(k, run["k"].values[ok])  # ran to n_iter: nothing added
    np.testing.assert_array_equal(y, run["loss"].values[ok])
    _, excess = plot.with_end(run, "excess_loss")
    np.testing.assert_array_equal(excess, run["excess_loss"].values[ok])


# ------------------------------------------------------------------------------------------------ CLI


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dlnsim")
    add_plot_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


@pytest.mark.parametrize("kind", ["gd", "flow"])
def test_cli_writes_a_png_for_a_file(kind: str, request: pytest.FixtureRequest, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = dlnsim.save(request.getfixturevalue(kind), tmp_path / f"{kind}.nc")
    assert run_cli(["plot", str(path)]) == 0
    png = tmp_path / f"{kind}.png"
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert capsys.readouterr().out.strip() == f"wrote {png}"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"{kind}.nc", f"{kind}.png"])  # no leftovers


def test_cli_writes_a_png_for_a_sweep_directory(sweep_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "figure.png"
    assert run_cli(["plot", str(sweep_dir), "--out", str(out), "--x", "t"]) == 0
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert run_cli(["plot", f"{sweep_dir}/"]) == 0  # default: next to the directory
    assert (sweep_dir.parent / "sweep.png").read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize(("extra", "match"), [
    (["--out", "figure.txt"], "^--out must end in .png, .pdf or .svg"),
    (["--out", "no/such/dir/figure.png"], "^--out: directory"),
    (["--x", "k"], "^--x: a gradient-flow run has no iteration k; use --x t$"),
])
def test_cli_errors_name_the_argument(flow: xr.Dataset, tmp_path: Path, extra: list[str], match: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    dlnsim.save(flow, tmp_path / "flow.nc")
    with pytest.raises(ValueError, match=match):
        run_cli(["plot", "flow.nc", *extra])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flow.nc"]


def test_cli_errors_for_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^FILE: no such file"):
        run_cli(["plot", str(tmp_path / "missing.nc")])
    (tmp_path / "foreign.nc").write_bytes(b"not netcdf")
    with pytest.raises(ValueError, match=r"^FILE: .* is not a readable NetCDF file"):
        run_cli(["plot", str(tmp_path / "foreign.nc")])
    with pytest.raises(ValueError, match=r"^FILE: .* is a directory without grid.json"):
        run_cli(["plot", str(tmp_path)])
    with pytest.raises(ValueError, match=r"^FILE .*not a dlnsim result"):
        xr.Dataset({"x": ("i", [1.0])}, attrs={"title": "other"}).pipe(dlnsim.save, tmp_path / "other.nc")
        run_cli(["plot", str(tmp_path / "other.nc")])
    assert not list(tmp_path.glob("*.png"))


def test_dlnsim_command_has_plot(gd: xr.Dataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dlnsim.cli import app as cli

    commands: Any = [getattr(a, "choices", None) or {} for a in cli.build_parser()._actions]
    if not any("plot" in c for c in commands):
        pytest.skip("dlnsim plot is not wired into dlnsim.cli.app yet")
    path = dlnsim.save(gd, tmp_path / "gd.nc")
    assert cli.main(["plot", str(path)]) == 0
    assert cli.main(["plot", str(tmp_path / "missing.nc")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"dlnsim plot: error: FILE: no such file {str(tmp_path / 'missing.nc')!r}"]


def test_figures_need_no_pyplot(tmp_path: Path) -> None:
    """dlnsim.plot draws on plain Figures: no pyplot, no backend, no global state (and importing dlnsim does
    not import matplotlib at all)."""
    code = (
        "import sys, numpy as np, xarray as xr\n"
        "import dlnsim\n"
        "assert 'matplotlib' not in sys.modules\n"
        "from dlnsim import plot\n"
        "ds = xr.Dataset({'loss': ('k', np.geomspace(1, 1e-3, 5))}, coords={'k': np.arange(5)})\n"
        f"plot.save_figure(plot.loss(ds).get_figure(root=True), {str(tmp_path / 'a.png')!r}, dpi=30)\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    import subprocess
    import sys

    subprocess.run([sys.executable, "-W", "error", "-c", code], check=True, timeout=120)
    assert (tmp_path / "a.png").read_bytes()[:8] == PNG_MAGIC


def test_flow_distance_against_a_stepsize_axis_of_another_name(flow_sweep: xr.Dataset) -> None:
    """A grid whose stepsize axis is not called eta (e.g. multiples of the bound): found through eta_value."""
    ds = flow_sweep.rename(eta_factor="multiple")
    ax = plot.flow_distance(ds, x="eta")
    assert ax.get_xlabel() == "η" and len(finite_lines(ax)) == 2 * 4
    assert plot.standard_panels(ds).axes[2].get_title(loc="left") == "(c) GD − flow against the stepsize"


# ------------------------------------------------------------------------------------------------ defaults


def test_sweep_facets_of_a_critical_sweep_without_arguments(critical: xr.Dataset) -> None:
    two_seeds = xr.concat([critical, critical.assign_coords(seed=[1])], dim="seed")
    fig = plot.sweep_facets(two_seeds, var="eta_crit")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "N" and ax.get_ylabel() == plot.LABELS["eta_crit"]
    lines = finite_lines(ax)
    assert len(lines) == 2  # one per seed, over N
    np.testing.assert_array_equal(lines[0].get_xdata(), critical["N"].values)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["seed = 0", "seed = 1"]
    fig1 = plot.sweep_facets(critical)  # eta_crit by default; one seed: x is N, no colours
    assert fig1.axes[0].get_xlabel() == "N" and len(finite_lines(fig1.axes[0])) == 1
    assert fig1.axes[0].get_ylabel() == plot.LABELS["eta_crit"]


def test_sweep_facets_of_one_number_per_run_picks_x_panels_and_colours(sweep: xr.Dataset) -> None:
    fig = plot.sweep_facets(sweep, "final_loss")
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title(loc="left") for ax in visible] == ["N = 2", "N = 3"]
    assert visible[0].get_xlabel() == "η/η*"
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["seed = 0", "seed = 1"]


def test_sweep_facets_error_names_the_dims_when_no_x_is_left(sweep: xr.Dataset) -> None:
    with pytest.raises(ValueError, match=r"^x: .*every one of the grid dims \['N', 'eta_factor', 'seed'\]") as err:
        plot.sweep_facets(sweep, "final_loss", row="N", col="eta_factor", hue="seed")
    assert "use []" not in str(err.value)
    with pytest.raises(ValueError, match=r"the grid dims are \['N', 'eta_factor', 'seed'\], row, col, hue use \['N'\]"):
        plot.sweep_facets(sweep, "final_loss", col="N", x="N")


@pytest.mark.parametrize("name", ["critical_stepsize", "fig1_constant"])
def test_sweep_facets_default_on_archived_study_files(name: str) -> None:
    path = Path(__file__).resolve().parent.parent / "data" / f"{name}.nc"
    ds = dlnsim.load(path)
    var = "eta_crit" if "eta_crit" in ds.variables else "final_loss"
    fig = plot.sweep_facets(ds, var)
    assert finite_lines(fig.axes[0])


# ------------------------------------------------------------------------------------------------ titles


def test_titles_are_words(gd: xr.Dataset, gd_diverged: xr.Dataset, sweep: xr.Dataset,
                          critical: xr.Dataset) -> None:
    assert plot.standard_panels(gd)._suptitle.get_text() == (  # type: ignore[union-attr]
        "gradient descent on a depth-3 linear network: iteration budget reached at k = 2000")
    k_stop = int(gd_diverged["stop_iteration"])
    assert plot.standard_panels(gd_diverged)._suptitle.get_text().endswith(  # type: ignore[union-attr]
        f": diverged at k = {k_stop}")
    fig = plot.standard_panels(sweep)
    title = fig._suptitle.get_text()  # type: ignore[union-attr]
    assert title.startswith("12 runs over N ∈ {2, 3}, η/η* ∈ {0.5, 2, 50}, seed ∈ {0, 1} (")
    assert "max_iter" not in title and "dlnsim grid" not in title and "_" not in title
    texts_of_legends = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert not any("_" in t for t in texts_of_legends)  # statuses in words in the status map
    crit_title = plot.standard_panels(critical)._suptitle.get_text()  # type: ignore[union-attr]
    assert crit_title.startswith("critical constant stepsize over N ∈ {2, 3}, seed = 0")
    outcomes = [t.get_text() for t in plot.standard_panels(critical).axes[2].get_legend().get_texts()]
    assert "not_converged" not in outcomes


def test_figure_title_of_a_grid_point_and_of_a_study_file(sweep: xr.Dataset) -> None:
    from dlnsim.plot._standard import figure_title

    point = sweep.sel(N=3, eta_factor=2.0, seed=0)
    assert figure_title(point) == "gradient descent on a depth-3 linear network: iteration budget reached at k = 300"
    fig1 = dlnsim.load(Path(__file__).resolve().parent.parent / "data" / "fig1_constant.nc")
    assert figure_title(fig1).startswith("study fig1_constant: 15 runs over case ∈ {")


def test_axis_labels_from_long_name_and_units() -> None:
    ds = xr.Dataset({"gap": ("k", [1.0, 2.0], {"long_name": "distance to the start", "units": "m"}),
                     "other": ("k", [1.0, 2.0], {"long_name": "x" * 41, "units": "1"})})
    assert plot.label(ds, "gap") == "distance to the start [m]"
    assert plot.label(ds, "other") == "other"  # a long_name too long for an axis
    assert plot.label(ds, "gap", long_name=False) == "gap [m]"


# ------------------------------------------------------------------------------------------------ ticks


def test_descent_ratio_symlog_axis_has_readable_ticks(gd: xr.Dataset) -> None:
    ratio = gd["descent_ratio"].copy()
    ok = np.isfinite(ratio.values)
    ratio.values[ok] = np.linspace(1.0, -0.3, int(ok.sum()))  # the loss rose by a little at the end
    fig = plot.theory_panel(gd.assign(descent_ratio=ratio))
    ax = fig.axes[0]
    assert ax.get_yscale() == "symlog"
    fig.draw_without_rendering()
    ticks = [t for t in ax.get_yticks() if ax.get_ylim()[0] <= t <= ax.get_ylim()[1]]
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert len(ticks) >= 4, labels
    assert "0" in labels and "1" in labels and any(t.startswith("−") for t in labels), labels
    boxes = sorted((t.get_window_extent() for t in ax.get_yticklabels() if t.get_text()), key=lambda b: b.y0)
    assert all(a.y1 <= b.y0 + 0.5 for a, b in itertools.pairwise(boxes))  # no two labels overlap


def test_descent_ratio_ticks_over_many_decades(gd_diverged: xr.Dataset) -> None:
    fig = plot.theory_panel(gd_diverged)
    ax = fig.axes[0]
    fig.draw_without_rendering()
    boxes = sorted((t.get_window_extent() for t in ax.get_yticklabels() if t.get_text()), key=lambda b: b.y0)
    assert len(boxes) >= 4
    assert all(a.y1 <= b.y0 + 0.5 for a, b in itertools.pairwise(boxes))


# ------------------------------------------------------------------------------------------------ legends


def _points_under(ax: Axes, box: Any) -> int:
    """Line vertices of ``ax`` (display space) inside ``box``."""
    n = 0
    for line in ax.lines:
        pts = line.get_transform().transform(np.asarray(line.get_xydata(), dtype=float))
        pts = pts[np.all(np.isfinite(pts), axis=1)]
        n += int(np.sum((pts[:, 0] >= box.x0) & (pts[:, 0] <= box.x1) & (pts[:, 1] >= box.y0)
                        & (pts[:, 1] <= box.y1)))
    return n


def test_legend_covers_no_data_or_goes_outside() -> None:
    rng = np.random.default_rng(0)
    k = np.arange(300)
    loss = np.exp(rng.uniform(-8, 2, (8, k.size)))  # noise filling the whole axes: no free corner
    ds = xr.Dataset({"loss": (("seed", "k"), loss)}, coords={"seed": np.arange(8), "k": k})
    ax = plot.loss(ds, hue="seed")
    fig = ax.get_figure(root=True)
    assert fig is not None
    fig.draw_without_rendering()
    box = ax.get_legend().get_window_extent()
    assert box.x0 >= ax.get_window_extent().x1  # moved to the right of the axes
    assert _points_under(ax, box) == 0


def test_legend_inside_where_it_is_free(gd: xr.Dataset, sweep: xr.Dataset) -> None:
    for ax in (plot.loss(sweep), plot.flow_distance(sweep.assign(flow_distance=sweep["loss"]))):
        fig = ax.get_figure(root=True)
        assert fig is not None
        fig.draw_without_rendering()
        assert _points_under(ax, ax.get_legend().get_window_extent()) == 0


def test_sweep_facets_legend_is_outside_every_panel(sweep: xr.Dataset) -> None:
    fig = plot.sweep_facets(sweep)
    fig.draw_without_rendering()
    (leg,) = fig.legends
    box = leg.get_window_extent()
    for ax in fig.axes:
        a = ax.get_window_extent()
        assert box.x0 >= a.x1 or box.y1 <= a.y0  # right of or below each panel


def test_flow_time_is_named_in_one_place() -> None:
    from dlnsim.plot import _data, _runs, _standard, _style, _sweeps

    assert _style.FLOW_TIME in _data._SERIES
    for module in (_data, _runs, _standard, _sweeps):  # only _style spells the flow's time dim
        assert '"time"' not in Path(str(module.__file__)).read_text(), module.__name__


def test_narrow_log_axis_of_one_number_per_run_has_plain_ticks() -> None:
    ds = dlnsim.load(Path(__file__).resolve().parent.parent / "data" / "critical_stepsize.nc")
    fig = plot.standard_panels(ds)
    ax = fig.axes[1]  # eta_crit / eta*: between about 300 and 5000
    fig.draw_without_rendering()
    lo, hi = ax.get_ylim()
    shown = [t.get_text() for t, v in zip(ax.get_yticklabels(), ax.get_yticks(), strict=True) if lo <= v <= hi]
    assert len(shown) >= 3 and all(t.replace("0", "").isdigit() for t in shown), shown
