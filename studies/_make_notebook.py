"""Write ``studies/analysis.ipynb`` and run it, so that it is stored with its outputs:
``python -m studies._make_notebook`` (``--no-execute`` writes the cells only).

The notebook opens the archived NetCDF files in ``data/`` with plain xarray and redraws Figure 1 with plain
matplotlib (no import of the studies package), so it doubles as a template for reading the results.  It finds
``data/`` with `find_data` (its source is copied into the notebook): ``$DLNSIM_DATA`` when set, a relative path
resolved against the working directory and, when not found there, against the repository root (so
``DLNSIM_DATA=data/quick`` works from the repository root and from ``studies/``, where Jupyter starts the
kernel); else ``data/`` of the repository of the installed dlnsim.
"""

from __future__ import annotations

import argparse
import inspect
import os
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from studies._find_data import find_data

HERE = Path(__file__).resolve().parent
NOTEBOOK = HERE / "analysis.ipynb"


CELLS = [
    new_markdown_cell(
        "# dlnsim studies: reading the archived results\n\n"
        "Every study of `python -m studies` writes a self-describing NetCDF file to `data/` (see "
        "`data/README.md`). This notebook opens them with plain **xarray**, redraws Figure 1 of "
        "Nguegnang–Rauhut–Terstiege (2024) from `data/fig1_constant.nc`, and prints the headline numbers of "
        "the other studies. It finds `data/` next to the dlnsim it imports (the repository of an editable "
        "install), whatever the working directory; set the environment variable `DLNSIM_DATA` to read another "
        "directory (e.g. `data/quick`: a relative path is taken from the working directory, else from the "
        "repository root)."
    ),
    new_code_cell(
        "from pathlib import Path\n\n"
        "import matplotlib.pyplot as plt\n"
        "import numpy as np\n"
        "import xarray as xr\n\n\n"
        + inspect.getsource(find_data)
        + "\n\n"
        "DATA = find_data()\n"
        "print('reading', DATA.name, 'of', DATA.parent.name)\n"
        "print(sorted(p.name for p in DATA.glob('*.nc')))"
    ),
    new_markdown_cell(
        "## Figure 1: constant stepsizes\n\n"
        "`loss` is over `(case, N, k)`; the run parameters are variables over `(case, N)` "
        "(`eta_value`, `status`, `stop_iteration`, ...) and the bound (5.1) per depth (`bound_eta`, "
        "`paper_eta`, and `paper_eta_over_bound`: above 1 the paper's stepsize is above our bound). The global "
        "attributes say how the file was made."
    ),
    new_code_cell(
        "def labelled(ds):\n"
        "    # CF files hold a text dimension (case, ...) as an index with its text in <name>_label\n"
        "    for c in [c for c in ds.coords if 'dlnsim_labels' in ds[c].attrs]:\n"
        "        label = ds[c].attrs['dlnsim_labels']\n"
        "        ds = ds.assign_coords({c: ds[label].values}).drop_vars(label)\n"
        "    return ds\n\n\n"
        "with xr.open_dataset(DATA / 'fig1_constant.nc') as f:\n"
        "    fig1 = labelled(f.load())\n"
        "print(fig1.attrs['command'], '|', fig1.attrs['setup_call'], '| n_iter =', fig1.attrs['n_iter'])\n"
        "for N in fig1.N.values:\n"
        "    s = fig1.sel(N=N)\n"
        "    print(f'N={N}: eta* ours {float(s.bound_eta):.3e}, paper {float(s.paper_eta):.3e} '\n"
        "          f'(paper/ours {float(s.paper_eta_over_bound):.2f})')\n"
        "fig1[['eta_value', 'status', 'stop_iteration', 'final_loss']].to_dataframe()"
    ),
    new_code_cell(
        "colors = {2: '#0072B2', 3: '#D55E00', 5: '#009E73'}\n"
        "titles = {'a': '(a) eta = eta* (solid: ours, dashed: paper)', 'b': '(b) below the bound',\n"
        "          'c': '(c) above the bound, converges', 'd': '(d) diverges'}\n"
        "fig, axes = plt.subplots(2, 2, figsize=(7, 5.2), layout='constrained')\n"
        "for ax, panel in zip(axes.ravel(), 'abcd', strict=True):\n"
        "    for case in fig1.case.values[fig1.panel.values == panel]:\n"
        "        for N in fig1.N.values:\n"
        "            run = fig1.sel(case=case, N=N)\n"
        "            loss = run.loss.dropna('k')\n"
        "            style = '--' if str(case).endswith('paper') else '-'\n"
        "            ax.loglog(loss.k + 1, loss, style, color=colors.get(int(N), 'k'),\n"
        "                      label=f'N={N}, eta={float(run.eta_value):.2e}')\n"
        "    ax.set_title(titles[panel], loc='left', fontsize=9)\n"
        "    ax.set_xlabel('iteration k + 1')\n"
        "    ax.set_ylabel('loss L^N(W(k))')\n"
        "    ax.legend(fontsize=7)\n"
        "plt.show()"
    ),
    new_markdown_cell(
        "## Headline numbers of the other studies\n\n"
        "The README's Results section quotes these (rendered by `python -m studies.results`)."
    ),
    new_code_cell(
        "def load(name):\n"
        "    path = DATA / f'{name}.nc'\n"
        "    if not path.exists():\n"
        "        print(f'{path.name}: not found')\n"
        "        return None\n"
        "    with xr.open_dataset(path) as f:\n"
        "        return labelled(f.load())\n\n\n"
        "fig2 = load('fig2_decreasing')\n"
        "if fig2 is not None:\n"
        "    print('Figure 2, final loss after', fig2.attrs['n_iter'], 'iterations:')\n"
        "    print(fig2.final_loss.to_pandas().round(6))\n"
        "    print('iterations eta* (k+1)^-gamma would need to reach T_conv of the constant run:')\n"
        "    print(fig2.iterations_needed.to_pandas().map(lambda v: f'{v:.2g}'))\n"
        "crit = load('critical_stepsize')\n"
        "if crit is not None:\n"
        "    print('eta_crit / eta* (median over seeds):',\n"
        "          {int(N): round(float(v)) for N, v in zip(crit.N.values, crit.ratio_median.values, strict=True)})\n"
        "    print('local exponents between neighbouring N (medians):')\n"
        "    print(crit.local_exponent.to_pandas().set_axis(\n"
        "        [f'{a}-{b}' for a, b in zip(crit.N_lo.values, crit.N_hi.values, strict=True)], axis=1).round(2))\n"
        "    print('share of B_delta in the denominator of (5.1):', float(crit.B_share.min()), '-',\n"
        "          float(crit.B_share.max()))\n"
        "flow = load('gd_vs_flow')\n"
        "if flow is not None:\n"
        "    print('GD vs flow, slopes of sup distance against eta:')\n"
        "    print(flow.slope.to_pandas().round(3))\n"
        "drift = load('balancedness_drift')\n"
        "if drift is not None:\n"
        "    print('balancedness drift: small-eta slope', dict(zip(drift.N.values.tolist(),\n"
        "                                                           np.round(drift.lin_slope.values, 2).tolist(),\n"
        "                                                           strict=True)))\n"
        "    print('flow time where the runs stopped:', round(float(drift.stop_time.min()), 1), '-',\n"
        "          round(float(drift.stop_time.max()), 1))\n"
        "rank = load('limit_rank')\n"
        "if rank is not None:\n"
        "    for case in rank.case.values:\n"
        "        s = rank.sel(case=case)\n"
        "        vals, counts = np.unique(s.sv_rank.values, return_counts=True)\n"
        "        print(f'case {case}: r_bar = {s.r_bar.values.tolist()}, final numerical ranks',\n"
        "              dict(zip(vals.tolist(), counts.tolist(), strict=True)),\n"
        "              f'at the global minimum within tolerance: {int(s.reached_global_min.sum())}/{s.sv_rank.size}')"
    ),
]


def build() -> nbformat.NotebookNode:
    nb = new_notebook(cells=CELLS)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def execute(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Run every cell (nbclient, kernel python3) in a temporary working directory: the notebook must not
    depend on it."""
    import tempfile

    import nbclient

    os.environ.setdefault("JUPYTER_PLATFORM_DIRS", "1")
    with tempfile.TemporaryDirectory() as cwd:
        nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": cwd}}).execute()
    for cell in nb.cells:  # no execution times in the stored file (reruns give the same file)
        cell.get("metadata", {}).pop("execution", None)
    return nb


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m studies._make_notebook", description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-execute", action="store_true", help="write the cells without running them")
    args = ap.parse_args(argv)
    nb = build()
    if not args.no_execute:
        nb = execute(nb)
    nbformat.validate(nb)
    nbformat.write(nb, NOTEBOOK)
    print(f"wrote {NOTEBOOK}" + ("" if args.no_execute else " (executed)"))


if __name__ == "__main__":
    main()
