"""Sweeps: gradient descent over grids of setups x stepsizes and critical stepsizes per setup
(`grid_sweeps`), on setups built per grid point (`setups`); domain users of `dlnsim.grid`."""
