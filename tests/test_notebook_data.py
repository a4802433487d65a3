"""Where the analysis notebook finds the archived results (`studies._find_data.find_data`, copied into the
notebook): ``DLNSIM_DATA`` relative to the working directory, else to the repository root."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if importlib.util.find_spec("studies") is None:  # `pytest`, unlike `python -m pytest`, does not add the root
    sys.path.insert(0, str(REPO))

from studies import _find_data as M  # noqa: E402


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "data" / "quick").mkdir(parents=True)
    (root / "data" / "fig1_constant.nc").write_bytes(b"")
    (root / "studies").mkdir()
    return root


def test_relative_path_from_the_working_directory_first(repo: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "data" / "quick").mkdir(parents=True)
    assert M.find_data("data/quick", cwd=elsewhere, repo=repo) == (elsewhere / "data" / "quick").resolve()


def test_relative_path_falls_back_to_the_repository_root(repo: Path) -> None:
    # Jupyter starts the kernel in studies/, where data/quick is not
    assert M.find_data("data/quick", cwd=repo / "studies", repo=repo) == (repo / "data" / "quick").resolve()


def test_absolute_path_and_missing_directory(repo: Path, tmp_path: Path) -> None:
    assert M.find_data(str(repo / "data"), cwd=tmp_path, repo=tmp_path) == (repo / "data").resolve()
    with pytest.raises(FileNotFoundError, match=r"DLNSIM_DATA='data/nothing': no such directory \(tried .*studies"):
        M.find_data("data/nothing", cwd=repo / "studies", repo=repo)


def test_unset_finds_data_of_the_repository(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert M.find_data("", cwd=tmp_path, repo=repo) == (repo / "data").resolve()
    assert M.find_data("", cwd=repo / "studies", repo=tmp_path / "no-repo") == (repo / "data").resolve()
    monkeypatch.delenv("DLNSIM_DATA", raising=False)
    assert M.find_data(cwd=tmp_path) == (REPO / "data").resolve()  # the repository of the imported dlnsim
    monkeypatch.setenv("DLNSIM_DATA", "data")
    assert M.find_data(cwd=REPO / "studies") == (REPO / "data").resolve()


def test_the_notebook_carries_this_function() -> None:
    import inspect

    pytest.importorskip("nbformat")  # the notebook's own packages (the slow session installs them)
    from studies import _make_notebook

    source = _make_notebook.build().cells[1].source
    assert inspect.getsource(M.find_data) in source
    assert "DATA = find_data()" in source
