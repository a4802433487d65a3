"""Unbalanced starts: which alpha and delta of Theorem 2.4 admit them, and the stepsize bound that follows.

Theorem 2.4 asks for a start with balancedness constant alpha*delta, alpha in [0, 1).  A start with
balancedness b = max_j ||W_{j+1}^T W_{j+1} - W_j W_j^T|| > 0 is admitted exactly when b <= alpha*delta; the
smallest alpha = b/delta gives the largest bound (2.8) for that delta (docs/theory.md, section
"unbalanced-starts-and-alpha").

Run it with ``python examples/04_unbalanced_start.py``.
"""

import numpy as np

import dlnsim

# a small instance of the paper's Section-5 setup (d = 10, m = 30, widths (10, 2, 6, 10))
problem, widths, W_balanced = dlnsim.paper_setup(3, seed=0, d=10, m=30)

# --- a Gaussian start is not balanced --------------------------------------------------------------------------
W0 = dlnsim.gaussian_init(widths, np.random.default_rng(5), std=0.1)
b = float(dlnsim.balancedness(W0).max())
print(f"Gaussian start: balancedness per pair {dlnsim.balancedness(W0)}, b = {b:.4f}")

try:  # alpha = 0 (the default) admits balanced starts only
    dlnsim.stepsize_bound(problem, W0)
except ValueError as err:
    print("alpha = 0 refused:", err)

# which alpha admit it at the Section-5 delta = M^{2/N}/N^3, and which deltas for a chosen alpha
adm = dlnsim.admissible_alpha(problem, W0)
print(
    f"at delta = {adm.delta:.4f} the smallest admissible alpha is b/delta = {adm.alpha_min:.3f}; "
    f"for alpha = 0.9 every delta >= {adm.delta_range(0.9)[0]:.4f} admits the start"
)

# --- the bound for an unbalanced start ---------------------------------------------------------------------------
at_min = dlnsim.stepsize_bound(problem, W0, alpha="min")  # Section-5 delta, alpha = b/delta
best = dlnsim.stepsize_bound(problem, W0, delta="optimal", alpha="min")  # the best admissible (alpha, delta)
chosen = dlnsim.stepsize_bound(problem, W0, delta=b / 0.9, alpha=0.9)  # a pair of your own: b <= alpha delta
for name, bd in (("Section-5 delta, smallest alpha", at_min), ("best pair", best), ("alpha = 0.9", chosen)):
    print(f"{name:32s}: eta = {bd.eta:.3e}  delta = {bd.delta:.4f}  alpha = {bd.alpha:.3f}  sigma = {bd.sigma:.4f}")
assert best.eta >= at_min.eta and best.eta >= chosen.eta

# --- GD at the best admissible stepsize: Proposition 3.4 holds along the run ---------------------------------
ds = dlnsim.run_gd(problem, W0, best.eta, 20_000)
assert float(ds.balancedness_max.max()) <= best.delta  # (1): the balancedness stays below delta
assert float(ds["max_loss_increase"]) <= 0.0  # (2): the loss never increases
assert float(ds["min_descent_ratio"]) >= best.sigma  # (4): sufficient decrease at every step
print(
    f"GD at eta = {best.eta:.3e}: loss {float(ds.loss[0]):.3f} -> {float(ds.loss[-1]):.3f}, "
    f"balancedness {b:.4f} -> {float(ds.balancedness_max[-1]):.4f} (delta = {best.delta:.4f})"
)

# --- prescribed balancedness: perturbed_init reaches b = alpha*delta exactly -------------------------------------
delta = dlnsim.stepsize_bound(problem, W_balanced).delta  # the Section-5 delta of the balanced start
print(f"starts with balancedness alpha*delta, delta = {delta:.4f}:")
for alpha in (0.0, 0.25, 0.5, 0.75, 0.9):
    Wp = dlnsim.perturbed_init(widths, np.random.default_rng(0), balancedness_constant=alpha * delta)
    bd = dlnsim.stepsize_bound(problem, Wp, delta=delta, alpha=alpha)
    print(
        f"  alpha = {alpha:4.2f}: balancedness {float(dlnsim.balancedness(Wp).max()):.4f}, "
        f"L(0) = {bd.L0:.3f}, eta = {bd.eta:.3e}"
    )
