"""Runs: the gradient-descent family (`gd`), the gradient flows (`flow`), GD next to the flows (`compare`), and
what a run records (`record`); each run returns a small result object (`gd_result`, `flow_result`) that the
schema turns into a Dataset."""
