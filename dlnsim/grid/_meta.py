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
    "min_descent_ratio": ("min over all steps of the descent ratio (Prop. 3.4(4))", "min ratio"),
    "max_loss_increase": ("max over all steps of L(k+1) - L(k) (Prop. 3.4(2))", "max ΔL"),
    "divergence_threshold": ("loss above which a run counts as diverged", "L_blowup"),
    "pivot_layer": ("layer where the kernels split the chain products", "pivot"),
    "q": ("rank of Q = Y X^T (X X^T)^(-1/2)", "q"),
    "bound_eta": ("bound eta* (5.1) of the start", "η*"),
    "bound_M": ("constant M of (2.11)", "M"),
    "bound_delta": ("delta of the bound", "δ"),
    "bound_K": ("K_delta of (2.10)", "K"),
    "bound_B": ("B_delta of (2.9)", "B"),
    "bound_sigma": ("sigma of Prop. 3.4(4)", "σ"),
    "bound_L0": ("initial loss used by the bound", "L(0)"),
    "bound_eta_descent": ("descent condition of (3.14)", "η_descent"),
    "bound_eta_balance": ("balancedness condition of (3.14)", "η_balance"),
    "bound_balancedness0": ("balancedness constant of W(0)", "balancedness(0)"),
    "eta_crit": ("largest stepsize found to converge (= eta_lo)", "η_crit"),
    "eta_lo": ("lower end of the final bracket (converges)", "η_lo"),
    "eta_hi": ("upper end of the final bracket (does not converge)", "η_hi"),
    "eta_star": ("bound eta* (5.1) of the start (NaN: unbalanced start)", "η*"),
    "ratio": ("eta_crit / eta_star", "η_crit/η*"),
    "n_trials": ("number of GD runs of the search", "trials"),
    "lambda_max_XXt": ("largest eigenvalue of X X^T", "λ_max(XXᵀ)"),
}


def axis_meta(name: str) -> dict[str, Any]:
    long_name, label = AXES.get(name, (f"grid axis {name}", name))
    return {"units": "1", "long_name": long_name, "label": label}


def attr_variable_meta(name: str) -> dict[str, Any]:
    long_name, label = RUN_ATTRS.get(name, (f"per-run attribute {name}", name))
    return {"long_name": long_name, "label": label}

