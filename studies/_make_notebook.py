"""Write ``studies/analysis.ipynb`` (cells without outputs): ``python -m studies._make_notebook``.

The notebook opens the archived NetCDF files in ``data/`` with plain xarray and redraws Figure 1 with plain
matplotlib (no import of the studies package), so it doubles as a template for reading the results.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

CELLS = [
    new_markdown_cell(
        "# dlnsim studies: reading the archived results\n\n"
        "Every study of `python -m studies` writes a self-describing NetCDF file to `data/` (see "
        "`data/README.md`). This notebook opens them with plain **xarray** and redraws Figure 1 of "
        "Nguegnang–Rauhut–Terstiege (2024) from `data/fig1_constant.nc`, then prints the headline numbers of "
        "the other studies. Set the environment variable `DLNSIM_DATA` to read another directory "
        "(e.g. `data/quick`)."
    ),
    new_code_cell(
        "import os\n"
        "from pathlib import Path\n\n"
        "import matplotlib.pyplot as plt\n"
        "import numpy as np\n"
        "import xarray as xr\n\n"
        "DATA = Path(os.environ.get('DLNSIM_DATA', Path('..') / 'data')).resolve()\n"
        "print('reading', DATA)\n"
        "print(sorted(p.name for p in DATA.glob('*.nc')))"
    ),
    new_markdown_cell(
        "## Figure 1: constant stepsizes\n\n"
        "`loss` is over `(case, N, k)`; the run parameters are variables over `(case, N)` "
        "(`eta_value`, `status`, `stop_iteration`, ...) and the bound (5.1) per depth (`bound_eta`, "
        "`paper_eta`). The global attributes say how the file was made."
    ),
    new_code_cell(
        "with xr.open_dataset(DATA / 'fig1_constant.nc') as f:\n"
        "    fig1 = f.load()\n"
        "print(fig1.attrs['command'], '|', fig1.attrs['setup_call'], '| n_iter =', fig1.attrs['n_iter'])\n"
        "for N in fig1.N.values:\n"
        "    s = fig1.sel(N=N)\n"
        "    print(f'N={N}: eta* ours {float(s.bound_eta):.3e}, paper {float(s.paper_eta):.3e}')\n"
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
    new_markdown_cell("## Headline numbers of the other studies"),
    new_code_cell(
        "def load(name):\n"
        "    path = DATA / f'{name}.nc'\n"
        "    if not path.exists():\n"
        "        print(f'{path.name}: not found')\n"
        "        return None\n"
        "    with xr.open_dataset(path) as f:\n"
        "        return f.load()\n\n"
        "crit = load('critical_stepsize')\n"
        "if crit is not None:\n"
        "    ratio = crit.ratio.median('seed')\n"
        "    print('eta_crit / eta* (median over seeds):',\n"
        "          {int(N): round(float(v)) for N, v in zip(crit.N.values, ratio.values, strict=True)})\n"
        "    print('power laws in N:', dict(zip(crit.quantity.values.tolist(),\n"
        "                                        np.round(crit.fit_exponent.values, 2).tolist(), strict=True)))\n"
        "flow = load('gd_vs_flow')\n"
        "if flow is not None:\n"
        "    print('GD vs flow, slopes of sup distance against eta:')\n"
        "    print(flow.slope.to_pandas().round(3))\n"
        "drift = load('balancedness_drift')\n"
        "if drift is not None:\n"
        "    slopes = np.round(drift.drift_slope.values, 2).tolist()\n"
        "    print('balancedness drift: slope against eta',\n"
        "          dict(zip(drift.N.values.tolist(), slopes, strict=True)))\n"
        "    print('max drift / delta at eta = eta*:', drift.max_drift_over_delta.isel(eta_index=0).values)\n"
        "rank = load('limit_rank')\n"
        "if rank is not None:\n"
        "    for case in rank.case.values:\n"
        "        s = rank.sel(case=case)\n"
        "        vals, counts = np.unique(s.sv_rank.values, return_counts=True)\n"
        "        print(f'case {case}: r_bar = {s.r_bar.values.tolist()}, final numerical ranks',\n"
        "              dict(zip(vals.tolist(), counts.tolist(), strict=True)))"
    ),
]


def build() -> nbformat.NotebookNode:
    nb = new_notebook(cells=CELLS)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def main() -> None:
    nb = build()
    nbformat.validate(nb)
    nbformat.write(nb, HERE / "analysis.ipynb")
    print(f"wrote {HERE / 'analysis.ipynb'}")


if __name__ == "__main__":
    main()
