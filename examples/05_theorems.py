"""Published convergence theorems on one instance: which admits the start, which stepsize each allows, how many
iterations each predicts, and what GD does at that stepsize.

Every theorem answers through one interface (`dlnsim.theory.published.theorem`, exported as ``dlnsim.theorem``):
its hypotheses checked on the instance (holds / fails / not checkable), its largest constant stepsize in our units
(loss 1/2 ||Y - W X||_F^2, GD on the factors), and, for the theorems with a linear rate, the envelope on the excess
loss and the predicted iterations.  docs/theorems.md has the statements and the translation rules.

Run it with ``python examples/05_theorems.py``.
"""

import numpy as np

import dlnsim
from dlnsim.theory import starts
from dlnsim.theory.published import theorem, theorems
from dlnsim.theory.theorems import envelope_ratio

# --- the reference paper's Section-5 instance (small: d = 10): only its own theorems admit it -------------------
problem, widths, W0 = dlnsim.paper_setup(3, seed=0, d=10, m=30)
for name, t in theorems(problem, W0).items():
    why = ", ".join(h.key for h in t.failing) or "-"
    print(f"{name:18s} admitted={t.admitted!s:5s} eta={t.eta:.3g}  failing: {why}")

# --- a wide network with Hu-Xiao-Pennington's orthogonal start (in our units) -------------------------------------
rng = np.random.default_rng(1)
X = rng.normal(0.0, 0.5, (4, 12))
wide = dlnsim.Problem(X, rng.normal(0.0, 0.5, (4, 4)) @ X)
W_orth = starts.hxp_init((4, 32, 32, 32, 4), rng)
t = theorem("hxp2020", wide, W_orth)
print()
print(t.summary())

eps = 1e-3 * t.excess0
run = dlnsim.run_gd(wide, W_orth, t.eta, 1000, record="all", stop=dlnsim.Stop(gtol=0.0, ltol=1e-3, early=True))
ratio = envelope_ratio(t, run)
print(
    f"\npredicted iterations to eps = 1e-3 (L(0) - L*): {t.iterations(eps):.0f}; "
    f"GD needed {int(run['ltol_iteration'].item())}; largest excess / envelope along the run: "
    f"{ratio.attrs['max_ratio']:.6f} (<= 1: the envelope holds)"
)
crit = dlnsim.critical_stepsize(wide, W_orth, n_iter=200, bracket=(0.01, 0.1))
print(f"eta_theorem / eta_crit = {t.eta / crit.eta_crit:.3f}")

# --- ACGH's setting needs whitened data: whitening makes a different problem (and a different GD run) ------------
white = starts.whiten(wide, "unit")
Phi = white.problem.YXt  # the target when X X^T = I
W_bal = starts.procedure1_init((4, 4, 4, 4), Phi + 0.05 * np.eye(4))
a = theorem("acgh2019", white.problem, W_bal)
print(
    f"\nACGH Theorem 1 on the whitened problem: admitted={a.admitted}, margin c = {a.constants['c']:.3g}, "
    f"eta = {a.eta:.3g}, predicted iterations to 1e-3 of the excess loss: {a.iterations(1e-3 * a.excess0):.3g}"
)
print("whitening:", white.NOTE)
