"""Gradient descent against the gradient flow it discretises, at equal times t_k = eta_0 + ... + eta_{k-1}.

GD with a constant stepsize eta stays within O(eta) of the factor flow (2.2) and within O(eta^2) of the
modified flow -grad L - (eta/2) Hess L grad L over a fixed time interval (docs/theory.md, sections
"gradient-flows" and "the-modified-flow-of-backward-error-analysis").  This script measures both orders and
checks that a balanced start gives the same product under the factor flow and the end-to-end flow (2.5).

Run it with ``python examples/02_gd_vs_flow.py``; it writes ``gd_vs_flow.png`` in the current directory.
The first flow run in a fresh environment compiles the integrator (about a minute); later runs load it
from Numba's cache.
"""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import NullFormatter

import dlnsim

# a small instance of the paper's Section-5 setup: d = 10, m = 30, widths (10, 2, 6, 10), balanced W(0)
problem, widths, W0 = dlnsim.paper_setup(3, seed=0, d=10, m=30)
eta_star = dlnsim.stepsize_bound(problem, W0).eta
print(f"widths {widths}, eta* = {eta_star:.3e}")

# --- GD next to the flows over the time interval [0, T], for four stepsizes -----------------------------------
T = 2.0
etas, to_flow, to_modified = [], [], []
for multiple in (64, 32, 16, 8):
    eta = multiple * eta_star
    n_iter = round(T / eta)
    ds = dlnsim.compare_flow(problem, W0, eta, n_iter, record="log:50")  # factor and modified flows by default
    etas.append(eta)
    to_flow.append(float(ds.flow_distance.max()))  # max_k ||W_GD(k) - W_flow(t_k)||_F
    to_modified.append(float(ds.modified_flow_distance.max()))
    print(
        f"eta = {eta:.2e} ({n_iter:5d} steps): distance to the flow {to_flow[-1]:.2e}, "
        f"to the modified flow {to_modified[-1]:.2e}"
    )

p_flow = np.polyfit(np.log(etas), np.log(to_flow), 1)[0]
p_modified = np.polyfit(np.log(etas), np.log(to_modified), 1)[0]
print(f"fitted orders: distance to the flow ~ eta^{p_flow:.2f}, to the modified flow ~ eta^{p_modified:.2f}")
assert abs(p_flow - 1.0) < 0.1 and abs(p_modified - 2.0) < 0.2

# the variables of the last comparison (the GD run's and the flows', over the record points k)
print(sorted(name for name in ds.data_vars if "flow" in name))

# --- the flows on their own: factor flow (2.2) and end-to-end flow (2.5) at 11 times ----------------------------
times = np.linspace(0.0, T, 11)
factor = dlnsim.run_flow(problem, W0, times)  # kind="factor"
end_to_end = dlnsim.run_flow(problem, W0, times, kind="end_to_end")  # needs a balanced start
print("factor flow loss:", np.round(factor.loss.values, 4))
print(f"largest difference of the two flows' losses: {np.max(np.abs(factor.loss - end_to_end.loss)):.1e}")
print(f"the factor flow conserves balancedness (2.3): max {float(factor.balancedness_max.max()):.1e}")

# --- a figure: distance against stepsize, log-log ---------------------------------------------------------------
fig, ax = plt.subplots(figsize=(4.5, 3.5))
ax.loglog(etas, to_flow, "o-", label=f"factor flow (2.2), slope {p_flow:.2f}")
ax.loglog(etas, to_modified, "s-", label=f"modified flow, slope {p_modified:.2f}")
ax.xaxis.set_minor_formatter(NullFormatter())  # decades only on the short stepsize axis
ax.set_xlabel("stepsize η")
ax.set_ylabel(r"$\max_k \|W_{GD}(k) - W(t_k)\|_F$")
ax.legend()
fig.tight_layout()
fig.savefig("gd_vs_flow.png", dpi=120)
print("wrote gd_vs_flow.png")
