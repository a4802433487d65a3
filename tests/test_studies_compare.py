"""``python -m studies.compare``: what a regeneration of the archive changed, variable by variable."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import dlnsim

ROOT = Path(__file__).resolve().parent.parent
if importlib.util.find_spec("studies") is None:  # `pytest`, unlike `python -m pytest`, does not add the root
    sys.path.insert(0, str(ROOT))

from studies import compare  # noqa: E402

SOURCE = ROOT / "data" / "out_of_sample.nc"


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    if not SOURCE.exists():
        pytest.skip(f"{SOURCE} not written yet")
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    shutil.copy(SOURCE, old)
    return old, new


def test_identical_files_are_the_same(dirs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    old, new = dirs
    ds = dlnsim.load(old / SOURCE.name)
    dlnsim.save(ds, new / SOURCE.name)  # written again: other digest and time, same contents
    assert compare.main([str(old), str(new)]) == 0
    assert "out_of_sample: same" in capsys.readouterr().out


def test_changes_are_named_and_measured(dirs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    old, new = dirs
    ds = dlnsim.load(old / SOURCE.name)
    name = next(str(k) for k, v in ds.data_vars.items() if v.dtype.kind == "f" and v.size > 1
                and np.isfinite(v.values).all())
    text = next(str(k) for k, v in ds.data_vars.items() if v.dtype.kind in "OU")
    changed = ds.copy(deep=True)
    values = changed[name].values
    values.flat[0] *= 1.0 + 1e-9  # a rounding-level change of one entry
    changed[name] = changed[name].copy(data=values)
    labels = changed[text].values.copy()
    first = str(labels.flat[0])
    labels.flat[0] = "x" * len(first)
    changed[text] = changed[text].copy(data=labels)
    changed.attrs["horizon_note"] = "new"
    changed = changed.drop_vars([k for k in changed.data_vars if k not in (name, text)][:1])
    dlnsim.save(changed, new / SOURCE.name)
    assert compare.main([str(old), str(new)]) == 1
    out = capsys.readouterr().out
    assert f"{name}: largest relative difference 1.00e-09, 1 of {values.size} entries above 0" in out
    assert f"{text}: 1 of {labels.size} entries differ ({first!r} -> {'x' * len(first)!r})" in out
    assert "attribute horizon_note: only in the new file" in out
    assert "only in the old file" in out
    # within a tolerance the rounding-level change is no difference; the text still is
    assert compare.main([str(old), str(new), "--rtol", "1e-6"]) == 1
    out = capsys.readouterr().out
    assert f"{name}:" not in out and f"{text}:" in out


def test_missing_files_and_bad_arguments(dirs: tuple[Path, Path]) -> None:
    old, new = dirs
    assert compare.main([str(old), str(new)]) == 2  # nothing in new
    with pytest.raises(SystemExit):
        compare.main([str(old), str(new), "no_such_study"])
    with pytest.raises(SystemExit):
        compare.main([str(old), str(new), "--rtol", "-1"])
