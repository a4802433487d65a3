"""The IOOS compliance checker (``compliance-checker --test cf:1.11``) as a test helper: the high and medium
findings of a file and the checks that did not run to the end."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from typing import Any

import pytest

#: the CF version the files declare (``Conventions``) and are checked against
TEST = "cf:1.11"


def available() -> bool:
    """Whether compliance_checker is installed (the ``test`` extra installs it)."""
    return importlib.util.find_spec("compliance_checker") is not None


def suite() -> Any:
    """The checker's suite with its checkers loaded (skips the test when compliance_checker is missing)."""
    with warnings.catch_warnings():  # the checker's imports warn on some versions of its dependencies
        warnings.simplefilter("ignore")
        runner = pytest.importorskip("compliance_checker.runner",
                                     reason="compliance_checker is not installed (pip install -e '.[test]')")
        cs = runner.CheckSuite()
        cs.load_all_available_checkers()
    return cs


def findings(cs: Any, path: str | Path) -> dict[str, list[str]]:
    """``{"high": [...], "medium": [...], "low": [...], "errors": [...]}`` of ``path``: the failed checks of each
    weight, each as its name and messages, and the checks that raised (the checker did not run to the end)."""
    out: dict[str, list[str]] = {"high": [], "medium": [], "low": [], "errors": []}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = cs.load_dataset(str(path))
        try:
            results, errors = cs.run_all(ds, [TEST], skip_checks=[])[TEST]
        finally:
            ds.close()
    level = {3: "high", 2: "medium", 1: "low"}
    for r in results:
        value = r.value
        ok = value[0] == value[1] if isinstance(value, tuple) else bool(value)
        if not ok:
            out[level.get(r.weight, "low")].append(f"{r.name}: {'; '.join(map(str, r.msgs))}")
    out["errors"] = [f"{name}: {err[0]!r}" for name, err in errors.items()]
    return out


def problems(cs: Any, path: str | Path) -> list[str]:
    """The high and medium findings of ``path`` and the checks that raised (empty: the file is clean)."""
    f = findings(cs, path)
    return [f"{Path(path).name} [{kind}] {msg}" for kind in ("high", "medium", "errors") for msg in f[kind]]
