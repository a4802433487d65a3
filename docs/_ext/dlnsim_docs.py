"""Pages of the dlnsim docs generated from the code at build time.

* ``_generated/cli_reference.md``: the help of the ``dlnsim`` command and of each subcommand, as argparse prints
  it (``dlnsim.cli.app.build_parser``), included by ``cli.md``.
* ``_generated/file_format_tables.md``: the variables and coordinates of result files, with their dims, units and
  long names, read from the schema registry (``dlnsim.io.dataset.SCHEMA``, ``AXES`` and ``RUN_ATTRS``, the flow
  schema of ``dlnsim.runs.flow_result`` and the one ``compare_flow`` adds in ``dlnsim.runs.compare``), included
  by ``file_format.md``.

A generated file is rewritten only when its text changes, so an unchanged build stays incremental.

It also resolves the short names dlnsim's annotations use for third-party types (``Axes``, ``np.ndarray``, ...:
strings under ``from __future__ import annotations``, which autodoc shows as written) to the full names the
intersphinx inventories know.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

GENERATED = Path(__file__).resolve().parents[1] / "_generated"
#: the width argparse wraps help at (the terminal's otherwise): a fixed width gives the same page everywhere
HELP_WIDTH = "100"


def _write(name: str, text: str) -> None:
    GENERATED.mkdir(exist_ok=True)
    path = GENERATED / name
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse has no public accessor for the subparsers
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def cli_reference() -> str:
    """The help of ``dlnsim`` and of every subcommand, as MyST text."""
    from dlnsim.cli.app import build_parser

    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_WIDTH
    try:
        parser = build_parser()
        parts = ["## `dlnsim`", "", "```text", parser.format_help().rstrip(), "```", ""]
        for name, sub in _subcommands(parser).items():
            parts += [f"## `dlnsim {name}`", "", "```text", sub.format_help().rstrip(), "```", ""]
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old
    return "\n".join(parts)


def _cell(text: Any) -> str:
    """A table cell: code for names, and the characters a Markdown table cannot hold escaped."""
    return str(text).replace("|", "\\|").replace("*", "\\*").replace("_", "\\_")


def _schema_table(table: dict[str, tuple[tuple[str, ...], str, str]]) -> list[str]:
    rows = ["| name | dims | units | long_name |", "|---|---|---|---|"]
    for name, (dims, units, long_name) in table.items():
        rows.append(f"| `{name}` | {', '.join(f'`{d}`' for d in dims)} | `{units}` | {_cell(long_name)} |")
    return rows


def file_format_tables() -> str:
    """The schema registry as MyST tables."""
    from dlnsim.io import dataset
    from dlnsim.runs.compare import COMPARE_SCHEMA
    from dlnsim.runs.flow_result import FLOW_SCHEMA

    searches = {k: v for k, v in dataset.SCHEMA.items() if k.startswith("trial")}
    runs = {k: v for k, v in dataset.SCHEMA.items() if k not in searches}
    out = [
        "### Gradient descent (`run_gd`)",
        "",
        "The records of a run over the iteration dimension, and their coordinates.",
        "",
    ]
    out += _schema_table(runs)
    out += [
        "",
        "### Gradient flows (`run_flow`)",
        "",
        "The same quantities over the flow time `t` instead of the iterations `k`.",
        "",
    ]
    out += _schema_table(FLOW_SCHEMA)
    out += [
        "",
        "### GD against the flows (`compare_flow`)",
        "",
        "Added to the variables of gradient descent, one group per flow kind compared.",
        "",
    ]
    out += _schema_table(COMPARE_SCHEMA)
    out += ["", "### Critical-stepsize searches (`critical_stepsize`)", "", "One entry per GD run of the search.", ""]
    out += _schema_table(searches)
    out += [
        "",
        "### Grid axes (`sweep`, `critical_sweep`, `run_grid`)",
        "",
        'Every axis is a coordinate with `units = "1"`, its `long_name` and a short `label` for plots; an axis '
        "not listed here gets the long name `grid axis <name>`.",
        "",
        "| axis | long_name | label |",
        "|---|---|---|",
    ]
    out += [f"| `{name}` | {_cell(long_name)} | {_cell(label)} |" for name, (long_name, label) in dataset.AXES.items()]
    out += [
        "",
        "### Outcomes of a run",
        "",
        "0-d variables of a single run; in a combined grid, variables over the grid's axes (each with its "
        "`long_name` and `label`).",
        "",
        "| name | long_name | label |",
        "|---|---|---|",
    ]
    out += [
        f"| `{name}` | {_cell(long_name)} | {_cell(label)} |" for name, (long_name, label) in dataset.RUN_ATTRS.items()
    ]
    return "\n".join(out) + "\n"


#: short names of third-party types in dlnsim's annotations -> their documented names
ANNOTATION_ALIASES = {
    "Array": "numpy.ndarray",
    "np.ndarray": "numpy.ndarray",
    "np.random.Generator": "numpy.random.Generator",
    "xr.Dataset": "xarray.Dataset",
    "xr.DataArray": "xarray.DataArray",
    "Axes": "matplotlib.axes.Axes",
    "Figure": "matplotlib.figure.Figure",
    "Path": "pathlib.Path",
}


#: names under which dlnsim re-exports the grid engine -> where the API page documents them
REEXPORTS = {f"dlnsim.{name}": f"dlnsim.grid.{name}" for name in ("run_grid", "open_grid", "combine_runs")}


def resolve_alias(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """A reference to one of `ANNOTATION_ALIASES` (resolved through intersphinx under its full name) or of
    `REEXPORTS` (resolved to the documented name)."""
    target = node.get("reftarget")
    if node.get("refdomain") != "py":
        return None
    if target in REEXPORTS:
        py = env.get_domain("py")
        return py.resolve_xref(
            env, node.get("refdoc"), app.builder, node.get("reftype"), REEXPORTS[target], node, contnode
        )
    if target not in ANNOTATION_ALIASES:
        return None
    from sphinx.ext import intersphinx

    node["reftarget"] = ANNOTATION_ALIASES[target]
    return intersphinx.missing_reference(app, env, node, contnode)


def generate(app: Any, config: Any) -> None:
    _write("cli_reference.md", cli_reference())
    _write("file_format_tables.md", file_format_tables())


def setup(app: Any) -> dict[str, Any]:
    app.connect("config-inited", generate)
    app.connect("missing-reference", resolve_alias)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
