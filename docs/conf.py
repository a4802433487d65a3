"""Sphinx configuration of the dlnsim documentation (``nox -s docs`` builds it with warnings as errors)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import dlnsim

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
GENERATED = HERE / "_generated"

project = "dlnsim"
author = "dlnsim developers"
copyright = "2026, dlnsim developers"
version = release = dlnsim.__version__

extensions = [
    "myst_nb",  # Markdown pages (MyST) and notebooks, never executed here
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",  # NumPy-style docstring sections
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"
exclude_patterns = ["_build", "**.ipynb_checkpoints"]

# MyST: $...$ math, heading anchors like GitHub's ("theory.md#the-bound-51")
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3
nb_execution_mode = "off"  # the studies notebook is rendered as stored, never run during a build

# API reference
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": False}
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
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
