"""State diagnostics of runs (balancedness, ||W_j||^2, singular values of the product): of gradient-descent
records (`gd`) and of a flow's dense output (`flow`)."""
