"""Input and output: the schema of every Dataset dlnsim writes and atomic NetCDF files (`dataset`), and the
exact round trip of attributes (`attrs`)."""
