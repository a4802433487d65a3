"""Sphinx configuration of the dlnsim documentation (``nox -s docs`` builds it nitpicky, with warnings as errors:
``sphinx-build -n -W``)."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path
from typing import Any

import dlnsim

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
GENERATED = HERE / "_generated"
sys.path.insert(0, str(HERE / "_ext"))

project = "dlnsim"
author = "dlnsim developers"
copyright = "2026, dlnsim developers"
version = release = dlnsim.__version__

extensions = [
    "myst_nb",  # Markdown pages (MyST) and notebooks
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",  # NumPy-style docstring sections
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "dlnsim_docs",  # docs/_ext: the CLI reference and the file-format tables, generated from the code
]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"
# _generated/*.md are included by cli.md and file_format.md, not pages of their own
exclude_patterns = ["_build", "**.ipynb_checkpoints", "_generated/*.md", "_intersphinx", "_ext"]

# MyST: $...$ math, heading anchors like GitHub's ("theory.md#the-bound-51")
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3
# Notebooks are rendered as stored (the studies notebook); the getting-started page alone is executed at build
# time, by its own front matter (mystnb: execution_mode: force, with a timeout).
nb_execution_mode = "off"
nb_execution_raise_on_error = True  # a failing cell of an executed page fails the build
nb_merge_streams = True

# Intersphinx: the inventories are read from docs/_intersphinx/ (the build runs offline; see make_partial.py
# there for where each file comes from); the links point to the published documentation.
intersphinx_mapping = {
    "python": ("https://docs.python.org/3/", "_intersphinx/python.inv"),
    "numpy": ("https://numpy.org/doc/stable/", "_intersphinx/numpy.inv"),
    "scipy": ("https://docs.scipy.org/doc/scipy/", "_intersphinx/scipy.inv"),
    "xarray": ("https://docs.xarray.dev/en/stable/", "_intersphinx/xarray.inv"),
    "matplotlib": ("https://matplotlib.org/stable/", "_intersphinx/matplotlib.inv"),
    "distributed": ("https://distributed.dask.org/en/stable/", "_intersphinx/distributed.inv"),
}

# nitpicky (-n): every reference must resolve.  The entries below are the ones that cannot, each named.
nitpicky = True
nitpick_ignore = [
    # the class of a ProcessPoolExecutor as Python reports it; the standard library documents it as
    # concurrent.futures.ProcessPoolExecutor (dlnsim.grid.process_pool's return annotation)
    ("py:class", "concurrent.futures.process.ProcessPoolExecutor"),
    # the type of dlnsim.plot.theory_panel's ``axes``, a phrase ("three matplotlib Axes") rather than a class
    ("py:class", "three matplotlib Axes"),
]

# API reference
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": False}
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
# the parameter types of the docstrings: "optional", "default ...", {"a", "b"} become plain text, and the short
# names below link to their classes
napoleon_preprocess_types = True
napoleon_type_aliases = {
    "ndarray": "numpy.ndarray",
    "np.ndarray": "numpy.ndarray",
    "array_like": ":term:`numpy:array_like`",
    "array-like": ":term:`numpy:array_like`",
    "Dataset": "xarray.Dataset",
    "xr.Dataset": "xarray.Dataset",
    "DataArray": "xarray.DataArray",
    "xr.DataArray": "xarray.DataArray",
    "Axes": "matplotlib.axes.Axes",
    "Figure": "matplotlib.figure.Figure",
    "Generator": "numpy.random.Generator",
    "Path": "pathlib.Path",
    "PathLike": "os.PathLike",
    "callable": "collections.abc.Callable",
    "sequence": "collections.abc.Sequence",
    "mapping": "collections.abc.Mapping",
    "iterable": "collections.abc.Iterable",
    "Executor": "concurrent.futures.Executor",
    "Problem": "dlnsim.Problem",
    "Record": "dlnsim.Record",
    "Stop": "dlnsim.Stop",
    "Tolerances": "dlnsim.Tolerances",
    "Engine": "dlnsim.Engine",
    "Schedule": "dlnsim.Schedule",
    "StepRule": "dlnsim.StepRule",
    "StepsizeBound": "dlnsim.StepsizeBound",
    "Setup": "dlnsim.Setup",
    "Whitening": "dlnsim.theory.starts.Whitening",
    "Trial": "dlnsim.analysis.critical.Trial",
    "matplotlib Axes": ":class:`matplotlib.axes.Axes`",
    "matplotlib Figure": ":class:`matplotlib.figure.Figure`",
}
default_role = "py:obj"  # `name` in a docstring links to that object when Sphinx can find it

html_theme = "furo"
html_title = f"dlnsim {release}"
html_static_path: list[str] = []


def _copy_inputs(app: Any, config: Any) -> None:
    """Copy what lives outside docs/ into docs/_generated/: the studies notebook (rendered, not executed)."""
    GENERATED.mkdir(exist_ok=True)
    nb = ROOT / "studies" / "analysis.ipynb"
    target = GENERATED / "analysis.ipynb"
    if nb.is_file():
        if not target.is_file() or target.read_bytes() != nb.read_bytes():
            shutil.copyfile(nb, target)
    elif target.exists():
        target.unlink()


def _check_api_page(app: Any) -> None:
    """Warn (an error under -W) when a public name of dlnsim or dlnsim.grid is missing from api.md."""
    from sphinx.util import logging

    import dlnsim.grid

    page = (HERE / "api.md").read_text(encoding="utf-8")
    documented = {name.rsplit(".", 1)[-1] for name in re.findall(r"^\.\. auto\w+:: (\S+)\s*$", page, flags=re.M)}
    public = [n for n in (*dlnsim.__all__, *dlnsim.grid.__all__) if n != "__version__"]
    missing = sorted({n for n in public if n not in documented})
    if missing:
        logging.getLogger(__name__).warning("docs/api.md does not document the public name(s): %s", ", ".join(missing))


def setup(app: Any) -> None:
    app.connect("config-inited", _copy_inputs)
    app.connect("builder-inited", _check_api_page)
