"""A grid: named axes with values, a cell function and its fixed parameters; validated, and as a manifest.

The manifest is the JSON record of a grid that lives in the grid's directory.  It is read back as untrusted
input: every field is validated exactly as a grid given in Python is, so a hand-edited manifest can neither
name a file outside the directory nor make the engine allocate without bound.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["MAX_CELLS", "Plan", "cell_id_of", "validate_axes"]

FORMAT = "dlnsim-grid"
VERSION = 1
#: a directory of one file per cell serves up to this many cells (beyond: a consolidated store, see the README)
MAX_CELLS = 1_000_000
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}\Z")
_TEXT = re.compile(r"[A-Za-z0-9_+\-][A-Za-z0-9_.+\-]{0,63}\Z")
_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_.]*\Z")


def _axis_value(v: Any, name: str) -> int | float | str | bool:
    if isinstance(v, bool | np.bool_):
        return bool(v)
    if isinstance(v, int | np.integer):
        return int(v)
    if isinstance(v, float | np.floating):
        f = float(v)
        if not math.isfinite(f):
            raise ValueError(f"axis {name!r}: values must be finite, got {v!r}")
        return f
    if isinstance(v, str):
        if not _TEXT.match(v):
            raise ValueError(f"axis {name!r}: a text value must be 1-64 letters, digits or '_.+-' (not starting "
                             f"with '.'), got {v!r}")
        return v
    raise ValueError(f"axis {name!r}: values must be numbers or short strings, got {type(v).__name__} {v!r}")


def validate_axes(axes: Any, reserved: Sequence[str] = ()) -> dict[str, list[Any]]:
    """Axes as ``{name: [values]}`` (validated, in order).  ``reserved`` names may not be axes."""
    if not isinstance(axes, Mapping) or not axes:
        raise ValueError(f"axes: expected a non-empty mapping of axis name -> values, got {axes!r}")
    out: dict[str, list[Any]] = {}
    total = 1
    for name, values in axes.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"axes: an axis name must be an identifier of letters, digits and '_', got {name!r}")
        if name in reserved:
            raise ValueError(f"axis {name!r}: this name is reserved (it is a dimension of every cell)")
        if isinstance(values, str | bytes) or values is None or isinstance(values, Mapping):
            raise ValueError(f"axis {name!r}: expected a list of values, got {values!r}")
        if isinstance(values, np.ndarray):
            if values.ndim != 1:
                raise ValueError(f"axis {name!r}: expected a 1-D list of values, got shape {values.shape}")
            values = values.tolist()
        if not isinstance(values, Sequence):
            values = [values]
        if len(values) == 0:
            raise ValueError(f"axis {name!r}: the axis is empty; give at least one value")
        total *= len(values)
        if total > MAX_CELLS:
            raise ValueError(f"axes: the grid has more than {MAX_CELLS} cells (one file each); split it, or see "
                             "the README on very large grids")
        vals = [_axis_value(v, name) for v in values]
        kinds = {"s" if isinstance(v, str) else "n" for v in vals}
        if len(kinds) > 1:
            raise ValueError(f"axis {name!r}: mixes numbers and strings: {vals!r}")
        seen: set[Any] = set()
        dup = []
        for v in vals:
            key = (type(v) is str, v)
            if key in seen:
                dup.append(v)
            seen.add(key)
        if dup:
            raise ValueError(f"axis {name!r}: duplicate values {dup}")
        out[name] = vals
    return out


def cell_id_of(fn: Callable[..., Any]) -> str:
    """``module:qualname`` of a module-level function (how a manifest names the cell and the setup)."""
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname:
        raise ValueError(f"expected a module-level function (recorded by name in the manifest, so that a rerun "
                         f"can check it is the same), got {fn!r}")
    return f"{module}:{qualname}"


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return str(v)
    return repr(float(v)) if isinstance(v, float) else str(v)


def _json(obj: Any, what: str) -> Any:
    try:
        out = json.loads(json.dumps(obj))
    except (TypeError, ValueError):
        raise ValueError(f"{what}: must be plain numbers, strings, booleans, None, lists and dicts (it is stored "
                         f"in the manifest), got {obj!r}") from None
    return out


@dataclass(frozen=True)
class Plan:
    """A validated grid: the cell's id, the axes (in dimension order) and the fixed parameters."""

    cell_id: str
    axes: dict[str, list[Any]]
    params: dict[str, Any]

    @staticmethod
    def make(cell_id: Any, axes: Any, params: Any, reserved: Sequence[str] = ()) -> Plan:
        if not isinstance(cell_id, str) or not _ID.match(cell_id):
            raise ValueError(f"cell_id: expected 'module:qualname', got {cell_id!r}")
        ax = validate_axes(axes, reserved)
        if params is None:
            params = {}
        if not isinstance(params, Mapping) or not all(isinstance(k, str) for k in params):
            raise ValueError(f"params: expected a mapping of keyword -> value, got {params!r}")
        both = sorted(set(ax) & set(params))
        if both:
            raise ValueError(f"params: {', '.join(both)} is both an axis and a fixed parameter")
        return Plan(cell_id, ax, _json(dict(params), "params"))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.axes.values())

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def manifest(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "cell": self.cell_id, "axes": self.axes,
                "params": self.params}

    def cells(self) -> Iterator[tuple[tuple[int, ...], str, dict[str, Any]]]:
        """(index, file name, point) of every cell, in C order."""
        names = list(self.axes)
        for idx in np.ndindex(*self.shape):
            point = {n: self.axes[n][i] for n, i in zip(names, idx, strict=True)}
            yield tuple(int(i) for i in idx), cell_name(point), point

    @staticmethod
    def from_manifest(m: Any, where: str, reserved: Sequence[str] = ()) -> Plan:
        if not isinstance(m, dict) or m.get("format") != FORMAT:
            raise ValueError(f"directory: {where} is not a dlnsim grid manifest")
        if m.get("version") != VERSION:
            raise ValueError(f"directory: {where} has manifest version {m.get('version')!r}; this dlnsim reads "
                             f"version {VERSION}")
        try:
            return Plan.make(m.get("cell"), m.get("axes"), m.get("params"), reserved)
        except ValueError as exc:
            raise ValueError(f"directory: {where} is a damaged grid manifest ({exc})") from None


def cell_name(point: Mapping[str, Any]) -> str:
    """The file name of a cell: ``cell_N2_eta0.5_seed0.nc`` (a hash when that would be too long)."""
    name = "cell_" + "_".join(f"{k}{_fmt(v)}" for k, v in point.items())
    if len(name) > 200:
        digest = hashlib.sha256(json.dumps(point, sort_keys=True).encode()).hexdigest()[:24]
        name = f"cell_{digest}"
    return name + ".nc"
