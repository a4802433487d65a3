"""The package layout: no module imports another module's private (``_name``) names.

A private name is an implementation detail of its module; a second module that needs it shows that the
boundary between the two is in the wrong place.  The Numba kernels (``dlnsim._kernels``) share their privates
among themselves, and the package may import them from there.
"""

from __future__ import annotations

import ast
import pathlib

import dlnsim

PACKAGE = pathlib.Path(dlnsim.__file__).parent


def _module_of(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    if level == 0:
        return name or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def private_imports() -> list[str]:
    """Every ``from X import _name`` in the package where X is another module outside ``dlnsim._kernels``."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_of(path)
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            source = _resolve(module, path.name == "__init__.py", node.level, node.module)
            if not source.startswith("dlnsim") or source == module:
                continue
            if source.startswith("dlnsim._kernels"):
                continue  # the kernels' package: private kernels are its interface to the typed wrappers
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{module}:{node.lineno} imports {source}.{alias.name}")
    return found


def test_no_module_imports_another_modules_private_names() -> None:
    assert private_imports() == []


def test_the_checker_finds_a_private_import(tmp_path: pathlib.Path) -> None:
    # the detector itself: a private import parsed from source is reported, a public one is not
    src = "from dlnsim.runs.flow import _integrate\nfrom dlnsim.runs.flow import run_flow\n"
    tree = ast.parse(src)
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names]
    assert [n for n in names if n.startswith("_") and not n.startswith("__")] == ["_integrate"]
    assert _resolve("dlnsim.runs.gd", False, 1, "flow") == "dlnsim.runs.flow"
    assert _resolve("dlnsim.grid", True, 2, "io") == "dlnsim.io"
