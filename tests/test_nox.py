"""The noxfile and .ci/run: sessions on a supported Python whichever one runs nox, a missing interpreter an error,
CI on the lowest and the highest supported version.  The noxfile is loaded with a stand-in for nox (the test
environment does not have it), which records the sessions and the options."""

from __future__ import annotations

import importlib.util
import sys
import tomllib
import types
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load_noxfile(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, types.SimpleNamespace, dict[str, dict[str, Any]]]:
    sessions: dict[str, dict[str, Any]] = {}

    def session(**kwargs: Any) -> Any:
        def register(f: Any) -> Any:
            sessions[f.__name__] = kwargs
            return f

        return register

    options = types.SimpleNamespace()
    stub = types.ModuleType("nox")
    stub.__dict__.update(session=session, options=options, Session=object, main=lambda: None)
    monkeypatch.setitem(sys.modules, "nox", stub)
    spec = importlib.util.spec_from_file_location("noxfile_under_test", ROOT / "noxfile.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, options, sessions


def test_supported_versions_agree_with_pyproject(monkeypatch: pytest.MonkeyPatch) -> None:
    noxfile, _, _ = _load_noxfile(monkeypatch)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    prefix = "Programming Language :: Python :: 3."
    classified = tuple(c.rsplit(" :: ", 1)[1] for c in project["project"]["classifiers"] if c.startswith(prefix))
    assert classified == noxfile.SUPPORTED
    assert project["project"]["requires-python"] == f">={noxfile.SUPPORTED[0]}"
    assert project["tool"]["mypy"]["python_version"] == noxfile.SUPPORTED[0]


def test_a_missing_interpreter_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _, options, _ = _load_noxfile(monkeypatch)
    assert options.error_on_missing_interpreters is True


def test_sessions_run_on_the_python_running_nox_or_a_supported_one(monkeypatch: pytest.MonkeyPatch) -> None:
    noxfile, _, sessions = _load_noxfile(monkeypatch)
    found = {"python3.12", "python3.13"}

    def which(name: str) -> str | None:
        return f"/usr/bin/{name}" if name in found else None

    for v in noxfile.SUPPORTED:
        assert noxfile.default_python(tuple(map(int, v.split("."))), which) is None  # the running interpreter
    assert noxfile.default_python((3, 10), which) == "3.12"  # the first supported one on PATH
    assert noxfile.default_python((3, 14), lambda name: None) == noxfile.SUPPORTED[0]  # not found: nox's error
    assert sessions["tests_all"]["python"] == list(noxfile.SUPPORTED)
    assert {"tests", "tests_all", "slow", "lint", "docs", "bench", "studies"} <= set(sessions)
    for name, kwargs in sessions.items():
        if name != "tests_all":
            assert kwargs["python"] == noxfile.PYTHON, name
        assert kwargs.get("default", True) == (name == "tests"), name


def test_ci_runs_the_lowest_and_highest_python_lint_docs_and_slow(monkeypatch: pytest.MonkeyPatch) -> None:
    noxfile, _, _ = _load_noxfile(monkeypatch)
    script = (ROOT / ".ci" / "run").read_text()
    lowest, highest = noxfile.SUPPORTED[0], noxfile.SUPPORTED[-1]
    assert f"-s tests_all-{lowest} tests_all-{highest}" in script
    assert "-s lint docs" in script and "-s slow" in script
    pip = [line for line in script.splitlines() if "pip install" in line and not line.startswith("#")]
    assert pip and all(line.startswith('"$venv/bin/python" -m pip') for line in pip)  # never the system's pip
