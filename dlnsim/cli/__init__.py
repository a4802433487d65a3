"""The ``dlnsim`` command, one module per group of subcommands (`app`: the parser and run, flow, compare, bound, info;
`sweep`: sweep and critical; `plot`: plot)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``dlnsim`` command with ``argv`` (default: ``sys.argv[1:]``); returns the exit status.

    ``dlnsim --version`` answers before the numerical stack is imported (it takes a second or two).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--version"]:
        from dlnsim import __version__

        print(f"dlnsim {__version__}")
        return 0
    from dlnsim.cli.app import main as app_main

    return app_main(args)
