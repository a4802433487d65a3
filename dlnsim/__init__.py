"""dlnsim: gradient descent on deep linear networks, next to the theory of Nguegnang-Rauhut-Terstiege (2024).

Public API; everything is re-exported here and nothing else lives in this module.  The names are loaded on
first use (PEP 562), so ``import dlnsim`` does not import numba, scipy or xarray until they are needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # the real imports, for type checkers and IDEs
    from dlnsim import plot
    from dlnsim.analysis import stability
    from dlnsim.analysis.critical import (
        CriticalStepsize,
        NoConvergingStepsizeWarning,
        StableCriticalStepsize,
        critical_stepsize,
        stable_critical_stepsize,
    )
    from dlnsim.analysis.sharpness import sharpness
    from dlnsim.grid import combine_runs, open_grid, run_grid
    from dlnsim.init import balanced_init, balancedness, gaussian_init, haar_orthogonal, perturbed_init
    from dlnsim.io.dataset import open as load
    from dlnsim.io.dataset import save
    from dlnsim.methods import GD, SGD, HeavyBall, Nesterov, StepRule
    from dlnsim.objective import gradient, hessian_form, hessian_vector_product, loss, product
    from dlnsim.options import Engine, Every, Linear, LogSpaced, Record, Stop, Tolerances, record_points
    from dlnsim.problem import Problem, Setup, paper_setup, paper_widths
    from dlnsim.runs.compare import compare_flow
    from dlnsim.runs.flow import run_flow
    from dlnsim.runs.gd import run_gd, weights_from
    from dlnsim.schedules import Constant, Explicit, Power, PowerDecay, Schedule
    from dlnsim.sweeps.grid_sweeps import critical_sweep, open_sweep, sweep
    from dlnsim.theory.bounds import Admissibility, StepsizeBound, admissible_alpha, stepsize_bound
    from dlnsim.theory.published import theorem, theorem_names, theorems
    from dlnsim.theory.set_bound import set_stepsize_bound
    from dlnsim.theory.starts import whiten
    from dlnsim.theory.theorems import Hypothesis, TheoremReport, envelope_ratio

#: public name -> (module, attribute in it; None: the module itself)
_EXPORTS: dict[str, tuple[str, str | None]] = {
    "Admissibility": ("dlnsim.theory.bounds", "Admissibility"),
    "admissible_alpha": ("dlnsim.theory.bounds", "admissible_alpha"),
    "balanced_init": ("dlnsim.init", "balanced_init"),
    "balancedness": ("dlnsim.init", "balancedness"),
    "combine_runs": ("dlnsim.grid", "combine_runs"),
    "compare_flow": ("dlnsim.runs.compare", "compare_flow"),
    "Constant": ("dlnsim.schedules", "Constant"),
    "critical_stepsize": ("dlnsim.analysis.critical", "critical_stepsize"),
    "critical_sweep": ("dlnsim.sweeps.grid_sweeps", "critical_sweep"),
    "CriticalStepsize": ("dlnsim.analysis.critical", "CriticalStepsize"),
    "Engine": ("dlnsim.options", "Engine"),
    "Every": ("dlnsim.options", "Every"),
    "Explicit": ("dlnsim.schedules", "Explicit"),
    "gaussian_init": ("dlnsim.init", "gaussian_init"),
    "GD": ("dlnsim.methods", "GD"),
    "gradient": ("dlnsim.objective", "gradient"),
    "haar_orthogonal": ("dlnsim.init", "haar_orthogonal"),
    "HeavyBall": ("dlnsim.methods", "HeavyBall"),
    "hessian_form": ("dlnsim.objective", "hessian_form"),
    "hessian_vector_product": ("dlnsim.objective", "hessian_vector_product"),
    "Linear": ("dlnsim.options", "Linear"),
    "LogSpaced": ("dlnsim.options", "LogSpaced"),
    "loss": ("dlnsim.objective", "loss"),
    "Nesterov": ("dlnsim.methods", "Nesterov"),
    "NoConvergingStepsizeWarning": ("dlnsim.analysis.critical", "NoConvergingStepsizeWarning"),
    "load": ("dlnsim.io.dataset", "open"),
    "open_grid": ("dlnsim.grid", "open_grid"),
    "open_sweep": ("dlnsim.sweeps.grid_sweeps", "open_sweep"),
    "paper_setup": ("dlnsim.problem", "paper_setup"),
    "paper_widths": ("dlnsim.problem", "paper_widths"),
    "perturbed_init": ("dlnsim.init", "perturbed_init"),
    "plot": ("dlnsim.plot", None),
    "Power": ("dlnsim.schedules", "Power"),
    "PowerDecay": ("dlnsim.schedules", "PowerDecay"),
    "Problem": ("dlnsim.problem", "Problem"),
    "product": ("dlnsim.objective", "product"),
    "Record": ("dlnsim.options", "Record"),
    "record_points": ("dlnsim.options", "record_points"),
    "run_flow": ("dlnsim.runs.flow", "run_flow"),
    "run_gd": ("dlnsim.runs.gd", "run_gd"),
    "run_grid": ("dlnsim.grid", "run_grid"),
    "save": ("dlnsim.io.dataset", "save"),
    "Schedule": ("dlnsim.schedules", "Schedule"),
    "set_stepsize_bound": ("dlnsim.theory.set_bound", "set_stepsize_bound"),
    "Setup": ("dlnsim.problem", "Setup"),
    "SGD": ("dlnsim.methods", "SGD"),
    "sharpness": ("dlnsim.analysis.sharpness", "sharpness"),
    "stability": ("dlnsim.analysis.stability", None),
    "stable_critical_stepsize": ("dlnsim.analysis.critical", "stable_critical_stepsize"),
    "StableCriticalStepsize": ("dlnsim.analysis.critical", "StableCriticalStepsize"),
    "StepRule": ("dlnsim.methods", "StepRule"),
    "stepsize_bound": ("dlnsim.theory.bounds", "stepsize_bound"),
    "StepsizeBound": ("dlnsim.theory.bounds", "StepsizeBound"),
    "Stop": ("dlnsim.options", "Stop"),
    "sweep": ("dlnsim.sweeps.grid_sweeps", "sweep"),
    "TheoremReport": ("dlnsim.theory.theorems", "TheoremReport"),
    "Hypothesis": ("dlnsim.theory.theorems", "Hypothesis"),
    "envelope_ratio": ("dlnsim.theory.theorems", "envelope_ratio"),
    "theorem": ("dlnsim.theory.published", "theorem"),
    "theorem_names": ("dlnsim.theory.published", "theorem_names"),
    "theorems": ("dlnsim.theory.published", "theorems"),
    "whiten": ("dlnsim.theory.starts", "whiten"),
    "Tolerances": ("dlnsim.options", "Tolerances"),
    "weights_from": ("dlnsim.runs.gd", "weights_from"),
}


def __getattr__(name: str) -> Any:
    try:
        module, attr = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'dlnsim' has no attribute {name!r}") from None
    value = importlib.import_module(module)
    if attr is not None:
        value = getattr(value, attr)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = [
    "GD",
    "SGD",
    "Admissibility",
    "Constant",
    "CriticalStepsize",
    "Engine",
    "Every",
    "Explicit",
    "HeavyBall",
    "Hypothesis",
    "Linear",
    "LogSpaced",
    "Nesterov",
    "NoConvergingStepsizeWarning",
    "Power",
    "PowerDecay",
    "Problem",
    "Record",
    "Schedule",
    "Setup",
    "StableCriticalStepsize",
    "StepRule",
    "StepsizeBound",
    "Stop",
    "TheoremReport",
    "Tolerances",
    "__version__",
    "admissible_alpha",
    "balanced_init",
    "balancedness",
    "combine_runs",
    "compare_flow",
    "critical_stepsize",
    "critical_sweep",
    "envelope_ratio",
    "gaussian_init",
    "gradient",
    "haar_orthogonal",
    "hessian_form",
    "hessian_vector_product",
    "load",
    "loss",
    "open_grid",
    "open_sweep",
    "paper_setup",
    "paper_widths",
    "perturbed_init",
    "plot",
    "product",
    "record_points",
    "run_flow",
    "run_gd",
    "run_grid",
    "save",
    "set_stepsize_bound",
    "sharpness",
    "stability",
    "stable_critical_stepsize",
    "stepsize_bound",
    "sweep",
    "theorem",
    "theorem_names",
    "theorems",
    "weights_from",
    "whiten",
]
