"""The Dormand-Prince 5(4) method of the flow integrator (`flow`): the tableau, the error coefficients, the
continuous extension of order 4 (CONTD5) and the constants of the PI step-size controller of DOPRI5 (Hairer,
Norsett & Wanner, *Solving ODEs I*, II.5 and the code DOPRI5).  Plain constants: Numba freezes them into the
integrator.

The integrator uses FSAL and local extrapolation (the 5th-order solution is propagated), the error norm
err = sqrt(mean((e_i / (atol + rtol max(|y_i|, |y_new_i|)))^2)), the PI controller (beta = 0.04, safety 0.9,
step ratio in [0.2, 10], no growth right after a rejection), the initial step of Hairer's algorithm, and the
continuous extension for the requested times (only the last step ends exactly at the last requested time).
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Dormand-Prince 5(4) tableau
C2 = 1.0 / 5.0
C3 = 3.0 / 10.0
C4 = 4.0 / 5.0
C5 = 8.0 / 9.0
A21 = 1.0 / 5.0
A31 = 3.0 / 40.0
A32 = 9.0 / 40.0
A41 = 44.0 / 45.0
A42 = -56.0 / 15.0
A43 = 32.0 / 9.0
A51 = 19372.0 / 6561.0
A52 = -25360.0 / 2187.0
A53 = 64448.0 / 6561.0
A54 = -212.0 / 729.0
A61 = 9017.0 / 3168.0
A62 = -355.0 / 33.0
A63 = 46732.0 / 5247.0
A64 = 49.0 / 176.0
A65 = -5103.0 / 18656.0
A71 = 35.0 / 384.0
A73 = 500.0 / 1113.0
A74 = 125.0 / 192.0
A75 = -2187.0 / 6784.0
A76 = 11.0 / 84.0
# error coefficients: b_i (5th order) - bhat_i (4th order)
E1 = 71.0 / 57600.0
E3 = -71.0 / 16695.0
E4 = 71.0 / 1920.0
E5 = -17253.0 / 339200.0
E6 = 22.0 / 525.0
E7 = -1.0 / 40.0
# continuous extension (CONTD5)
D1 = -12715105075.0 / 11282082432.0
D3 = 87487479700.0 / 32700410799.0
D4 = -10690763975.0 / 1880347072.0
D5 = 701980252875.0 / 199316789632.0
D6 = -1453857185.0 / 822651844.0
D7 = 69997945.0 / 29380423.0



@njit(cache=True, nogil=True, inline="always")
def _tableau():
    """The Runge-Kutta matrix a_{sj} of the seven stages (row 6 = the 5th-order weights b_j)."""
    a = np.zeros((7, 7))
    a[1, 0] = A21
    a[2, 0] = A31
    a[2, 1] = A32
    a[3, 0] = A41
    a[3, 1] = A42
    a[3, 2] = A43
    a[4, 0] = A51
    a[4, 1] = A52
    a[4, 2] = A53
    a[4, 3] = A54
    a[5, 0] = A61
    a[5, 1] = A62
    a[5, 2] = A63
    a[5, 3] = A64
    a[5, 4] = A65
    a[6, 0] = A71
    a[6, 2] = A73
    a[6, 3] = A74
    a[6, 4] = A75
    a[6, 5] = A76
    return a


# step-size control (DOPRI5 defaults)
SAFE = 0.9
BETA = 0.04
EXPO1 = 0.2 - BETA * 0.75
FACC1 = 1.0 / 0.2  # smallest step ratio 0.2
FACC2 = 1.0 / 10.0  # largest step ratio 10
