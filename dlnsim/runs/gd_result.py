"""The result of a gradient-descent run before it is a Dataset (`GDResult`), and its Dataset (`gd_dataset`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from dlnsim.io import dataset
from dlnsim.objective import unflatten
from dlnsim.schedules import Schedule

__all__ = ["GDResult", "gd_dataset", "weights_from"]


@dataclass
class GDResult:
    """What one gradient-descent run produced, before it becomes a Dataset (see `gd_dataset`).

    ``records`` maps a variable name to its values over the record points ``k`` (first axis): ``loss``,
    ``excess_loss``, ``descent_ratio``, ``eta``, ``t`` and the selected ``diagnostics`` (``grad_norm_sq``,
    ``balancedness`` (k, pair), ``layer_norm_sq`` (k, layer), ``product_sv`` (k, sv)).  ``w`` is the final
    flat state (factor layout of ``dims``), ``snapshots`` the flat state at every record point when asked
    for (NaN where not reached).  ``schedule`` is the stepsize schedule used, ``status`` one of
    `dlnsim.runs.gd.STATUSES`, ``stop_iteration`` the iteration where the run ended, ``outcomes`` what the run
    found (status, stop and test iterations, losses, theory constants: 0-d variables of the Dataset), ``attrs``
    the run's attributes (settings and provenance).
    """

    k: np.ndarray
    records: dict[str, np.ndarray]
    w: np.ndarray
    dims: np.ndarray
    schedule: Schedule
    status: str
    stop_iteration: int
    diagnostics: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict)
    outcomes: dict[str, Any] = field(default_factory=dict)
    snapshots: np.ndarray | None = None
    keep_weights: bool = False


def gd_dataset(res: GDResult) -> xr.Dataset:
    """The Dataset of a `GDResult`: the records over ``k``, t_k as a coordinate along ``k``, the schema's
    units and long names, and the run's attributes.

    To put a GD run and a flow run (over ``t``, same variable names) on one time axis, make t the
    dimension and keep k as a variable (the flow has no iterations):
    ``xr.concat([gd.swap_dims(k="t").reset_coords("k"), flow], dim="t")``; side by side
    on the union of the times: the same with ``dim=pandas.Index(["gd", "flow"], name="run"), join="outer"``.
    """
    rec = res.records
    n = len(res.dims) - 1
    data = {("eta_k" if name == "eta" else name): v for name, v in rec.items() if name != "t"}
    coords: dict[str, np.ndarray] = {"k": res.k, "t": rec["t"]}
    if "balancedness" in res.diagnostics:
        data["balancedness_max"] = (np.max(rec["balancedness"], axis=1) if n > 1
                                    else np.zeros(res.k.size) * rec["loss"])
        coords["pair"] = np.arange(1, n, dtype=np.int64)
    else:
        del data["balancedness"]
    if "layer_norm_sq" in res.diagnostics:
        coords["layer"] = np.arange(1, n + 1, dtype=np.int64)
    else:
        del data["layer_norm_sq"]
    if "product_sv" in res.diagnostics:
        coords["sv"] = np.arange(1, rec["product_sv"].shape[1] + 1, dtype=np.int64)
    else:
        del data["product_sv"]
    if res.keep_weights:
        data["final_weights"] = res.w
    return dataset.build(data, coords, res.attrs, outcomes=res.outcomes)


def weights_from(ds: xr.Dataset) -> list[np.ndarray]:
    """The final factors [W_1, ..., W_N] stored by ``run_gd(..., keep_weights=True)``.

    Parameters
    ----------
    ds : xarray.Dataset
        A Dataset of `run_gd` (or `dlnsim.compare_flow`) run with ``keep_weights=True``.

    Returns
    -------
    list of numpy.ndarray
        [W_1, ..., W_N], W_j of shape (d_j, d_{j-1}) from the attribute ``widths``.

    Raises
    ------
    ValueError
        If ``ds`` has no variable ``final_weights``.
    """
    if "final_weights" not in ds:
        raise ValueError("ds has no final_weights; run run_gd with keep_weights=True")
    dims = np.asarray(ds.attrs["widths"], dtype=np.int64)
    return unflatten(np.asarray(ds["final_weights"].values), dims)
