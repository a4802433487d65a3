"""Metadata of grid axes and of run attributes stored as variables (units, long_name, label)."""

from __future__ import annotations

from typing import Any

#: axis name -> (long_name, label) for the axes dlnsim's own cells use; other axes get a generic entry
AXES: dict[str, tuple[str, str]] = {
    "N": ("depth N (number of layers)", "N"),
    "eta": ("stepsize as given in the grid: absolute, or a multiple of the bound eta* (see eta_mode)", "η"),
    "seed": ("seed of the data and initialisation", "seed"),
    "gamma": ("decay rate gamma of the power-decay schedule", "γ"),
    "scale": ("initialisation scale", "scale"),
    "m": ("number of samples m", "m"),
    "alpha": ("alpha of Theorem 2.4", "α"),
}

#: run attribute -> (long_name, label) when stored as a variable of a combined grid
RUN_ATTRS: dict[str, tuple[str, str]] = {
    "status": ("run status (not_run: cell missing; error: the cell raised, see error)", "status"),
    "status_reason": ("why the run ended", "reason"),
    "stop_iteration": ("iteration where the run ended (-1: not run)", "k_stop"),
    "error": ("the exception a failed cell raised (empty: no error)", "error"),
    "search_status": ("ok, no_converging_eta or no_failing_eta (not_run: cell missing)", "search"),
    "final_loss": ("loss at the last evaluated iteration", "L_final"),
    "final_grad_norm_sq": ("||grad L||_F^2 at the last evaluated iteration", "|∇L|²_final"),
    "initial_loss": ("loss L(0) at the start", "L(0)"),
    "optimal_loss": ("least-squares optimum L*", "L*"),
    "eta_value": ("stepsize used (for a power-decay schedule: a1 = a2)", "η"),
    "widths": ("widths d_0..d_N of the network (-1 beyond N)", "d_j"),
}


def axis_meta(name: str) -> dict[str, Any]:
    long_name, label = AXES.get(name, (f"grid axis {name}", name))
    return {"units": "1", "long_name": long_name, "label": label}


def attr_variable_meta(name: str) -> dict[str, Any]:
    long_name, label = RUN_ATTRS.get(name, (f"per-run attribute {name}", name))
    return {"long_name": long_name, "label": label}


def decode_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """Attributes as `dlnsim.open` returns them (the file's type tags decoded)."""
    from .. import dataset

    decode = getattr(dataset, "decode_attrs", None)
    return dict(attrs) if decode is None else dict(decode(attrs))
