"""The result of a gradient-flow integration before it is a Dataset (`FlowResult`), and its Dataset
(`flow_dataset`): the variables of a GD Dataset, over ``t`` (the flow time, dimensionless) instead of ``k``.

The dimension is ``t``, as the time t_k of a GD Dataset (a coordinate along ``k`` there), not ``time``: CF
readers take a variable named ``time`` for a calendar time, whose units must be "<unit> since <date>"."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from dlnsim.io import dataset

__all__ = ["FLOW_SCHEMA", "FlowResult", "flow_dataset"]

#: the variables of a flow Dataset: the names of a GD Dataset, over ``t`` instead of ``k``
_FLOW_VARS = ("loss", "excess_loss", "grad_norm_sq", "balancedness", "balancedness_max", "layer_norm_sq",
              "product_sv")


def _flow_schema() -> dict[str, tuple[tuple[str, ...], str, str]]:
    table: dict[str, tuple[tuple[str, ...], str, str]] = {"t": (("t",), "1", "flow time t")}
    for name in _FLOW_VARS:
        dims, units, long_name = dataset.SCHEMA[name]
        table[name] = (("t", *dims[1:]), units, long_name)
    return table


#: name -> (dims, units, long_name) of the variables of a flow Dataset (passed to `dataset.build`)
FLOW_SCHEMA = _flow_schema()


@dataclass
class FlowResult:
    """What one flow integration produced, before it becomes a Dataset (see `flow_dataset`).

    ``records`` maps a variable name to its values over the requested times ``t`` (first axis):
    ``loss``, ``excess_loss`` and the selected diagnostics (``grad_norm_sq``, ``balancedness``,
    ``layer_norm_sq``, ``product_sv``; the end-to-end flow has no factors, so only ``product_sv``).
    ``states`` holds the flat states at the times selected by ``save`` (factor layout for factor/modified
    flows, the C-ordered product for end_to_end), ``status`` is one of `dlnsim.runs.flow.STATUSES`, ``attrs`` the run's
    attributes.
    """

    t: np.ndarray
    records: dict[str, np.ndarray]
    kind: str
    status: str
    n_layers: int
    attrs: dict[str, Any] = field(default_factory=dict)
    outcomes: dict[str, Any] = field(default_factory=dict)
    states: np.ndarray | None = None


def flow_dataset(res: FlowResult) -> xr.Dataset:
    """The Dataset of a `FlowResult`: the records over ``t`` under the same names as a GD Dataset."""
    data = dict(res.records)
    n = res.n_layers
    coords: dict[str, np.ndarray] = {"t": res.t}
    if "balancedness" in data:
        bal = data["balancedness"]
        data["balancedness_max"] = np.max(bal, axis=1) if n > 1 else np.zeros(res.t.size) * data["loss"]
        coords["pair"] = np.arange(1, n, dtype=np.int64)
    if "layer_norm_sq" in data:
        coords["layer"] = np.arange(1, n + 1, dtype=np.int64)
    if "product_sv" in data:
        coords["sv"] = np.arange(1, data["product_sv"].shape[1] + 1, dtype=np.int64)
    return dataset.build(data, coords, res.attrs, schema=FLOW_SCHEMA, outcomes=res.outcomes)
