#!/usr/bin/env -S uv run --script
# /// script
# requires-python = ">=3.11"
# dependencies = ["nox>=2025.2.9"]
# ///
"""Sessions: ``nox`` (= tests), ``nox -s lint``, ``nox -s slow``, ``nox -s bench``, ``nox -s studies``,
``nox -s docs``, ``nox -s tests_all``.  Only ``tests`` runs by default (the others have ``default=False``);
``./noxfile.py`` also works (a PEP 723 script: ``uv run``, or ``python3 noxfile.py`` with nox installed).

Every session except ``tests_all`` runs on the Python that runs nox when it is a supported one (3.11 to 3.13),
otherwise on the first of python3.11, python3.12, python3.13 found on PATH.  ``tests_all`` runs the fast
tests on each supported Python (``nox -s tests_all-3.13`` for one).  A Python that cannot be found is an
error, never a skipped session.

Every session forwards extra arguments: ``nox -s tests -- -k bound -x``, ``nox -s studies -- --quick``.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable

import nox

nox.needs_version = ">=2025.2.9"  # nox.main() and default= per session
nox.options.reuse_existing_virtualenvs = True
nox.options.default_venv_backend = "venv"
# without this nox reports a session whose Python is missing as "skipped" and exits 0 (outside CI)
nox.options.error_on_missing_interpreters = True

#: the Python versions dlnsim supports (pyproject.toml: requires-python and the classifiers)
SUPPORTED = ("3.11", "3.12", "3.13")


def default_python(running: tuple[int, int], which: Callable[[str], str | None]) -> str | None:
    """The interpreter of the single-Python sessions: None (= the one running nox) when ``running`` is a supported
    version, else the first supported ``pythonX.Y`` that ``which`` finds, else the lowest supported version (which
    nox then reports as not found, an error)."""
    if f"{running[0]}.{running[1]}" in SUPPORTED:
        return None
    for version in SUPPORTED:
        if which(f"python{version}"):
            return version
    return SUPPORTED[0]


PYTHON = default_python((sys.version_info[0], sys.version_info[1]), shutil.which)
# one BLAS thread per process: the kernels are single-threaded by design and sweeps parallelise over cells
ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _numba_cache(session: nox.Session) -> dict[str, str]:
    # keep compiled kernels in the venv, so a warm session does not recompile
    return {**ENV, "NUMBA_CACHE_DIR": os.path.join(session.virtualenv.location, "numba-cache")}


def _fast_tests(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    session.run("pytest", "-m", "not slow", *session.posargs, env=_numba_cache(session))


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The default test run (fast tests; the slow ones run in ``nox -s slow``)."""
    _fast_tests(session)


@nox.session(python=list(SUPPORTED), default=False)
def tests_all(session: nox.Session) -> None:
    """The fast tests on every supported Python, one session each (``nox -s tests_all-3.11``)."""
    _fast_tests(session)


@nox.session(python=PYTHON, default=False)
def slow(session: nox.Session) -> None:
    """Long tests: studies' quick variants, the notebook, long trajectories."""
    session.install("-e", ".[test,dask]", "nbclient", "nbformat", "ipykernel")
    session.run("pytest", "-m", "slow", *session.posargs, env=_numba_cache(session))


@nox.session(python=PYTHON, default=False)
def lint(session: nox.Session) -> None:
    """ruff (style), mypy (types of the package), then every pre-commit hook on every file.

    The hooks come from ``.pre-commit-config.yaml`` (local hooks installed from PyPI, kept in this session's
    venv); its mypy hook is skipped here, as the mypy run before it is the same check.  Arguments go to ruff.
    """
    session.install("-e", ".[dev,dask]", "pre-commit>=3.6")  # dask too: mypy must see the package's imports
    session.run("ruff", "check", "dlnsim", "tests", "benchmarks", "studies", "examples", "docs", *session.posargs)
    session.run("mypy", "dlnsim")
    session.run("pre-commit", "run", "--all-files", "--show-diff-on-failure",
                env={"PRE_COMMIT_HOME": os.path.join(session.virtualenv.location, "pre-commit"), "SKIP": "mypy"})


@nox.session(python=PYTHON, default=False)
def bench(session: nox.Session) -> None:
    """Benchmarks against the reference implementations (numpy, scipy, JAX); prints a table of ratios.

    ``nox -s bench -- --quick`` for a short run, ``-- --only jax,limit`` for some groups, ``-- --full`` for the
    10^4-cell scale group.
    """
    session.install("-e", ".[test,dask,bench]")
    session.run("python", "-m", "benchmarks", *session.posargs, env=_numba_cache(session))


@nox.session(python=PYTHON, default=False)
def studies(session: nox.Session) -> None:
    """Regenerate data/*.nc and data/figures/* (``-- --quick`` for the small versions, ``-- NAME`` for one)."""
    session.install("-e", ".[dask]")
    session.run("python", "-m", "studies", *session.posargs, env=_numba_cache(session))


@nox.session(python=PYTHON, default=False)
def docs(session: nox.Session) -> None:
    """The HTML site in docs/_build/html (Sphinx, nitpicky: every warning, an unresolved reference too, is an
    error).  The getting-started page is executed during the build (a Jupyter kernel of this session's venv);
    the intersphinx inventories are read from docs/_intersphinx/, so the build needs no network.  ``-- -E``
    rebuilds from scratch."""
    session.install("-e", ".[docs]")
    session.run("sphinx-build", "-n", "-W", "--keep-going", "-b", "html", *session.posargs, "docs",
                "docs/_build/html", env=_numba_cache(session))


if __name__ == "__main__":
    nox.main()
