"""The only Numba code of dlnsim (DESIGN §3): small private kernels on preallocated float64 arrays."""
