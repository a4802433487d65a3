"""dlnsim: gradient descent on deep linear networks, next to the theory of Nguegnang-Rauhut-Terstiege (2024).

Public API; everything is re-exported here and nothing else lives in this module.
"""

__version__ = "0.1.0"

from dlnsim import plot
from dlnsim.analysis import stability
from dlnsim.analysis.critical import (
    CriticalStepsize,
    StableCriticalStepsize,
    critical_stepsize,
    stable_critical_stepsize,
)
from dlnsim.analysis.sharpness import sharpness
from dlnsim.grid import combine_runs, open_grid, run_grid
from dlnsim.init import balanced_init, balancedness, gaussian_init, haar_orthogonal, perturbed_init
from dlnsim.io.dataset import open, save
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
from dlnsim.theory.set_bound import set_stepsize_bound

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
    "Linear",
    "LogSpaced",
    "Nesterov",
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
    "Tolerances",
    "__version__",
    "admissible_alpha",
    "balanced_init",
    "balancedness",
    "combine_runs",
    "compare_flow",
    "critical_stepsize",
    "critical_sweep",
    "gaussian_init",
    "gradient",
    "haar_orthogonal",
    "hessian_form",
    "hessian_vector_product",
    "loss",
    "open",
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
    "weights_from",
]
