"""The only Numba code of dlnsim: small private kernels on preallocated float64 arrays."""
