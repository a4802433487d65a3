"""Figures of dlnsim results: loss curves, the hypotheses of Theorem 2.4, GD against the flows, sweeps.

Every function takes a Dataset as `dlnsim.run_gd`, `dlnsim.run_flow`, `dlnsim.compare_flow`, `dlnsim.sweep`
or `dlnsim.critical_sweep` return it (or `dlnsim.load` / `dlnsim.open_sweep` read it back).  A run over ``k``
(gradient descent) or over ``t`` (a gradient flow) draws one line; a combined grid (dims such as ``N``,
``eta``, ``seed`` besides ``k``) draws one line per grid point, coloured by ``hue``.  Flow variables are found
under their GD names (``loss``) and under the older ``_t`` names (``loss_t``).

Figures are made without pyplot (`matplotlib.figure.Figure`): nothing global changes, no display is needed,
and nothing has to be closed.  Return a Figure as the last expression of a notebook cell to see it, save it
with `save_figure`, or pass your own ``ax`` / ``axes`` (e.g. from ``plt.subplots``) to draw into them.
Axis labels are short symbols: a variable's ``label`` attribute when it has one (``LABELS`` typesets a plain
subscript such as ``L_final``), else ``LABELS``, else its ``long_name`` when that has at most 40 characters, with
the ``units`` in brackets (`label`).  Titles and legends say statuses in words ("iteration budget reached"), and
a legend that would cover data moves outside its axes.
The quantities and the constants of Theorem 2.4 they are drawn against are defined in docs/theory.md.
"""

from __future__ import annotations

from dlnsim.plot._data import with_end
from dlnsim.plot._runs import flow_distance, loss, theory_panel
from dlnsim.plot._standard import standard_panels
from dlnsim.plot._style import (
    DEPTH_COLORS,
    LABELS,
    STYLE,
    depth_color,
    label,
    plain_log_ticks,
    save_figure,
    style,
    subplots,
)
from dlnsim.plot._sweeps import sweep_facets

__all__ = [
    "DEPTH_COLORS",
    "LABELS",
    "STYLE",
    "depth_color",
    "flow_distance",
    "label",
    "loss",
    "plain_log_ticks",
    "save_figure",
    "standard_panels",
    "style",
    "subplots",
    "sweep_facets",
    "theory_panel",
    "with_end",
]
