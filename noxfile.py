#!/usr/bin/env -S uv run --script
# /// script
# dependencies = ["nox>=2025.2.9"]
# ///
"""Sessions: ``nox`` (= tests), ``nox -s lint``, ``nox -s slow``, ``nox -s bench``, ``nox -s studies``,
``nox -s docs``.  Only ``tests`` runs by default (the others have ``default=False``); ``./noxfile.py`` also
works (a PEP 723 script: ``uv run``, or ``python3 noxfile.py`` with nox installed).

Every session forwards extra arguments: ``nox -s tests -- -k bound -x``, ``nox -s studies -- --quick``.
"""

from __future__ import annotations

import os

import nox

nox.needs_version = ">=2025.2.9"  # nox.main() and default= per session
nox.options.reuse_existing_virtualenvs = True
nox.options.default_venv_backend = "venv"

PYTHON = "3.11"
# one BLAS thread per process: the kernels are single-threaded by design and sweeps parallelise over cells
ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _numba_cache(session: nox.Session) -> dict[str, str]:
    # keep compiled kernels in the venv, so a warm session does not recompile
    return {**ENV, "NUMBA_CACHE_DIR": os.path.join(session.virtualenv.location, "numba-cache")}


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The default test run (fast tests; the slow ones run in ``nox -s slow``)."""
    session.install("-e", ".[test]")
    session.run("pytest", "-m", "not slow", *session.posargs, env=_numba_cache(session))


@nox.session(python=PYTHON, default=False)
def slow(session: nox.Session) -> None:
    """Long tests: studies' quick variants, the notebook, long trajectories."""
    session.install("-e", ".[test,dask]", "nbclient", "nbformat", "ipykernel")
    session.run("pytest", "-m", "slow", *session.posargs, env=_numba_cache(session))


@nox.session(python=PYTHON, default=False)
def lint(session: nox.Session) -> None:
    """ruff (style) and mypy (types of the package)."""
    session.install("-e", ".[dev,dask]")  # dask too: mypy must see the same imports as the package uses
    session.run("ruff", "check", "dlnsim", "tests", "benchmarks", "studies", "examples", "docs", *session.posargs)
    session.run("mypy", "dlnsim")


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
    """The HTML site in docs/_build/html (Sphinx; every warning is an error).  ``-- -E`` rebuilds from scratch."""
    session.install("-e", ".[docs]")
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", *session.posargs, "docs", "docs/_build/html",
                env=_numba_cache(session))


if __name__ == "__main__":
    nox.main()
