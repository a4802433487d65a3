"""Your own data: a Problem from X and Y, a balanced start, the stepsize of Theorem 2.4, a GD run, a file.

Run it with ``python examples/01_own_data.py``; it writes ``own_data.nc`` in the current directory.
The formulas are in docs/theory.md (sections "the-model-and-the-loss", "theorem-24" and "proposition-34").
"""

import numpy as np
import xarray as xr

import dlnsim

rng = np.random.default_rng(0)

# --- the data: samples as columns, X is (d_x, m) and Y is (d_y, m) ------------------------------------------
d_x, d_y, m = 8, 5, 100
X = rng.standard_normal((d_x, m)) / np.sqrt(d_x)
W_true = rng.standard_normal((d_y, d_x))
Y = W_true @ X + 0.05 * rng.standard_normal((d_y, m))  # a little noise: the optimal loss L* is not 0

problem = dlnsim.Problem(X, Y)  # checks shapes, finiteness and that X X^T has full rank
print(problem, f"L* = {problem.lstar:.4f}, rank Q = {problem.q}")

# --- a network of depth N = 3 with widths d_0 = 8, d_1 = d_2 = 6, d_3 = 5, balanced at the start ----------
widths = (d_x, 6, 6, d_y)
W0 = dlnsim.balanced_init(widths, rng, scale=0.5)  # W0[j-1] is W_j, of shape (d_j, d_{j-1})
print("balancedness of W(0) per pair:", dlnsim.balancedness(W0))  # rounding level, ~1e-16

# --- the theorem's constants for this start: (5.1), i.e. (2.8) with delta = M^{2/N}/N^3 ---------------------
bound = dlnsim.stepsize_bound(problem, W0)
print(
    f"eta* = {bound.eta:.3e}  M = {bound.M:.3f}  delta = {bound.delta:.4f}  K = {bound.K:.3f}  "
    f"B = {bound.B:.1f}  sigma = {bound.sigma:.4f}"
)
best = dlnsim.stepsize_bound(problem, W0, delta="optimal")  # (2.8) maximised over delta
print(f"with the best delta ({best.delta:.4f}): eta = {best.eta:.3e}")

# --- gradient descent at the bound: 50 000 steps, ~200 log-spaced records ------------------------------------
ds = dlnsim.run_gd(problem, W0, bound.eta, 50_000, record="log")
print(f"status {ds['status'].item()}, final excess loss L - L* = {float(ds.excess_loss[-1]):.3e}")

# Proposition 3.4 along the run: what the theorem promises at this stepsize
assert float(ds.balancedness_max.max()) <= bound.delta  # (1) balancedness constant stays <= delta
assert float(ds["max_loss_increase"]) <= 0.0  # (2) the loss never increases
assert float(ds.layer_norm_sq.max()) <= bound.K  # (3) ||W_j||^2 <= K_delta
assert float(ds["min_descent_ratio"]) >= bound.sigma  # (4) descent ratio >= sigma at every step
print(
    f"Prop. 3.4 holds: max balancedness {float(ds.balancedness_max.max()):.2e} <= delta, "
    f"max ||W_j||^2 {float(ds.layer_norm_sq.max()):.3f} <= K, min descent ratio "
    f"{float(ds['min_descent_ratio']):.3f} >= sigma"
)

# the bound is far from sharp: 100 times larger still converges, much faster
fast = dlnsim.run_gd(problem, W0, "100xbound", 5_000)
print(f"100 x eta*: status {fast['status'].item()}, excess loss {float(fast.excess_loss[-1]):.2e} after 5000 steps")

# --- save and reopen: one self-describing NetCDF file ---------------------------------------------------------
path = dlnsim.save(ds, "own_data.nc")
back = dlnsim.load(path)
xr.testing.assert_identical(ds, back)
print(f"saved {path} and read it back identical (with eta*: {float(back['bound_eta']):.3e})")
