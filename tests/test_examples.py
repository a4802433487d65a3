"""The examples, the README's and the how-to guides' Python code run as written, each in a fresh interpreter in a
temporary directory.

Each script runs in a subprocess with the temporary directory as its working directory (so whatever it writes
lands there) and a non-interactive matplotlib backend.  The environment is inherited, so ``NUMBA_CACHE_DIR``
(set by the nox sessions) shares the compiled kernels with the rest of the test run.

Timing on the 2-core development machine with a warm Numba cache: 01 and 04 take about 4 s each and run in
the default test run; 02 (compiles the flow integrator on an empty cache, about a minute), 03 (about 15 s)
and the README tour (a few seconds) are marked slow, as are the how-to guides (docs/howto/*.md, 10 to 30 s each;
their blocks that need a running dask scheduler are only compiled).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
SLOW = {"02_gd_vs_flow.py", "03_custom_sweep.py"}
#: what each example leaves in its working directory
OUTPUTS = {
    "01_own_data.py": ["own_data.nc"],
    "02_gd_vs_flow.py": ["gd_vs_flow.png"],
    "03_custom_sweep.py": ["sweep_own/grid.json", "grid_own/grid.json"],
}
TIMEOUT = 900  # seconds; generous: a cold Numba cache compiles the kernels first


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["MPLBACKEND"] = "Agg"
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    env.setdefault("MKL_NUM_THREADS", "1")
    # the package is imported from the checkout even when it is not installed
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _run(script: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [sys.executable, str(script)], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert res.returncode == 0, f"{script.name} failed:\n--- stdout\n{res.stdout}\n--- stderr\n{res.stderr}"
    return res


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 4, [p.name for p in EXAMPLES]


def test_every_example_is_in_the_docs() -> None:
    page = (ROOT / "docs" / "examples.md").read_text(encoding="utf-8")
    missing = [p.name for p in EXAMPLES if f"../examples/{p.name}" not in page]
    assert not missing, f"docs/examples.md does not include {missing}"


@pytest.mark.parametrize(
    "script",
    [pytest.param(p, id=p.stem, marks=[pytest.mark.slow] if p.name in SLOW else []) for p in EXAMPLES],
)
def test_example_runs(script: Path, tmp_path: Path) -> None:
    res = _run(script, tmp_path)
    assert res.stdout.strip(), f"{script.name} printed nothing"
    for rel in OUTPUTS.get(script.name, []):
        assert (tmp_path / rel).is_file(), f"{script.name} did not write {rel}"


def readme_python_blocks() -> list[str]:
    """The fenced ```python blocks of README.md, in order."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"^```python[ \t]*\n(.*?)^```[ \t]*$", text, flags=re.S | re.M)


def test_readme_has_python_blocks() -> None:
    assert readme_python_blocks(), "README.md has no ```python block"


@pytest.mark.slow
def test_readme_tour_runs_as_written(tmp_path: Path) -> None:
    """Every ```python block of the README, each as its own script, in order, in one working directory."""
    for i, code in enumerate(readme_python_blocks()):
        script = tmp_path / f"readme_block_{i}.py"
        script.write_text(code, encoding="utf-8")
        _run(script, tmp_path)


HOWTOS = sorted((ROOT / "docs" / "howto").glob("*.md"))
#: a block that needs something a test machine does not have (a dask cluster at a placeholder address)
NEEDS_CLUSTER = "SCHEDULER-HOST"


def python_blocks(path: Path) -> list[str]:
    """The fenced ```python blocks of a Markdown file, in order."""
    text = path.read_text(encoding="utf-8")
    return re.findall(r"^```python[ \t]*\n(.*?)^```[ \t]*$", text, flags=re.S | re.M)


def test_howto_blocks_compile() -> None:
    pages = [p for p in HOWTOS if p.name != "index.md"]
    assert len(pages) >= 4, [p.name for p in HOWTOS]
    for page in pages:
        blocks = python_blocks(page)
        assert blocks, f"{page.name} has no ```python block"
        for i, code in enumerate(blocks):
            compile(code, f"{page.name}[{i}]", "exec")


@pytest.mark.slow
@pytest.mark.parametrize("page", [pytest.param(p, id=p.stem) for p in HOWTOS if p.name != "index.md"])
def test_howto_runs_as_written(page: Path, tmp_path: Path) -> None:
    """Every runnable ```python block of a how-to page, each as its own script, in order, in one directory."""
    for i, code in enumerate(python_blocks(page)):
        if NEEDS_CLUSTER in code:
            continue
        if "distributed" in code:
            pytest.importorskip("distributed")
        script = tmp_path / f"{page.stem}_{i}.py"
        script.write_text(code, encoding="utf-8")
        _run(script, tmp_path)


def test_readme_is_short_and_its_links_exist() -> None:
    """The README stays an overview (at most 150 lines), and every relative link in it names an existing file."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 150, len(text.splitlines())
    links = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text)
    assert links
    missing = [link for link in links if not (ROOT / link).is_file()]
    assert not missing, f"README.md links to missing files: {missing}"
