"""The Examples sections of the public docstrings run as doctests.

The main entry points (`run_gd`, `run_flow`, `compare_flow`, `stepsize_bound`, `paper_setup`, `sweep`, `load`)
and the option and step-rule objects show their use in a numpydoc "Examples" section; this runs every ``>>>``
line of those modules and compares the output (with ``ELLIPSIS`` and ``NORMALIZE_WHITESPACE``).  The examples
print only values that do not depend on the machine: statuses, shapes, comparisons, and numbers rounded well
above the rounding level.  ``dlnsim`` is in the namespace of every example.
"""

from __future__ import annotations

import doctest
import importlib
import inspect

import pytest

import dlnsim

MODULES = (
    "dlnsim.problem",  # paper_setup
    "dlnsim.theory.bounds",  # stepsize_bound
    "dlnsim.runs.gd",  # run_gd
    "dlnsim.runs.flow",  # run_flow
    "dlnsim.runs.compare",  # compare_flow
    "dlnsim.sweeps.grid_sweeps",  # sweep
    "dlnsim.io.dataset",  # load (dlnsim.io.dataset.open)
    "dlnsim.options",
    "dlnsim.methods",
)
#: the public functions whose docstrings must have an Examples section
WITH_EXAMPLES = ("run_gd", "run_flow", "compare_flow", "stepsize_bound", "paper_setup", "sweep", "load")
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str, tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # whatever an example writes lands here
    module = importlib.import_module(name)
    result = doctest.testmod(module, extraglobs={"dlnsim": dlnsim}, optionflags=FLAGS, verbose=False, report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} doctest lines of {name} failed (see above)"


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_main_functions_have_examples(name: str) -> None:
    # cleandoc: Python 3.13 strips the docstring's indentation at compile time, earlier versions keep it
    doc = inspect.cleandoc(getattr(dlnsim, name).__doc__ or "")
    assert "\nExamples\n--------\n" in doc and ">>> " in doc, f"dlnsim.{name} has no Examples section"


def test_modules_hold_examples() -> None:
    finder = doctest.DocTestFinder()
    counts = {name: sum(len(t.examples) for t in finder.find(importlib.import_module(name))) for name in MODULES}
    assert all(counts.values()), counts
