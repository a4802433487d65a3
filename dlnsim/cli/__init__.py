"""The ``dlnsim`` command, one module per group of subcommands (`app`: the parser and run, flow, compare, bound, info;
`sweep`: sweep and critical; `plot`: plot)."""

from dlnsim.cli.app import main

__all__ = ["main"]
