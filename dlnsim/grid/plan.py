"""A grid: named axes with values, a cell function and its fixed parameters; validated, and as a manifest.

The manifest is the JSON record of a grid that lives in the grid's directory.  It is read back as untrusted
input: every field is validated exactly as a grid given in Python is, so a hand-edited manifest can neither
name a file outside the directory nor make the engine allocate without bound.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dlnsim.io import dataset

__all__ = ["MAX_CELLS", "RESERVED", "Plan", "cell_id_of", "cell_name", "point_digest", "point_json",
           "validate_axes"]

FORMAT = "dlnsim-grid"
VERSION = 1
#: a directory of one file per cell serves up to this many cells (beyond: a consolidated store, see the README)
MAX_CELLS = 1_000_000
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}\Z")
_TEXT = re.compile(r"[A-Za-z0-9_+\-][A-Za-z0-9_.+\-]{0,63}\Z")
_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_.]*\Z")
#: names a grid axis may not have: the per-cell variables a combined grid always holds (``status``, ``error``)
#: and the dimensions of dlnsim's runs (``k``, ``layer``, ``sv``, ...); either would clash only when the cells
#: are combined, after every cell ran.  A run outcome named like an axis (``ratio``) is no clash: the axis holds
#: the cell's value, as for any other run attribute named like an axis
RESERVED: tuple[str, ...] = tuple(dict.fromkeys(
    ["status", "error", *(d for dims, _, _ in dataset.SCHEMA.values() for d in dims)]))


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
            raise ValueError(f"axis {name!r}: this name is reserved (a per-cell variable or a dimension of dlnsim's "
                             "runs, which the combined grid holds too); rename the axis")
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
    def make(cell_id: Any, axes: Any, params: Any, reserved: Sequence[str] = RESERVED) -> Plan:
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
        plan = Plan(cell_id, ax, _json(dict(params), "params"))
        plan.check_names()
        return plan

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.axes.values())

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def manifest(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "cell": self.cell_id, "axes": self.axes,
                "params": self.params}

    @functools.cached_property
    def _names(self) -> list[str]:
        # computed once: a grid of a million cells takes seconds to name, and a run lists its cells several times
        return [cell_name(point) for point in self._points()]

    def _points(self) -> Iterator[dict[str, Any]]:
        names = list(self.axes)
        for idx in np.ndindex(*self.shape):
            yield {n: self.axes[n][i] for n, i in zip(names, idx, strict=True)}

    def check_names(self) -> None:
        """ValueError when two cells would share a file name, also when letter case is ignored (a case-insensitive
        file system); `cell_name` is built to be injective, so this guards that property before any cell runs."""
        seen: dict[str, int] = {}
        for i, name in enumerate(self._names):
            j = seen.setdefault(name.casefold(), i)
            if j != i:
                raise ValueError(f"axes: two points of the grid would share the cell file {name!r} "
                                 f"(cells {j} and {i} in C order); rename an axis or a value")

    def cells(self) -> Iterator[tuple[tuple[int, ...], str, dict[str, Any]]]:
        """(index, file name, point) of every cell, in C order."""
        for idx, name, point in zip(np.ndindex(*self.shape), self._names, self._points(), strict=True):
            yield tuple(int(i) for i in idx), name, point

    @staticmethod
    def from_manifest(m: Any, where: str, reserved: Sequence[str] = RESERVED) -> Plan:
        if not isinstance(m, dict) or m.get("format") != FORMAT:
            raise ValueError(f"directory: {where} is not a dlnsim grid manifest")
        if m.get("version") != VERSION:
            raise ValueError(f"directory: {where} has manifest version {m.get('version')!r}; this dlnsim reads "
                             f"version {VERSION}")
        try:
            return Plan.make(m.get("cell"), m.get("axes"), m.get("params"), reserved)
        except ValueError as exc:
            raise ValueError(f"directory: {where} is a damaged grid manifest ({exc})") from None


def _escape(text: str) -> str:
    """A text value without ``_`` (the separator of a file name) or upper-case letters (on a case-insensitive
    file system ``A`` and ``a`` would name one file): each becomes ``%`` and its two hex digits, and ``%`` is
    never in a value, so the escape is reversible."""
    return "".join(f"%{ord(c):02X}" if c == "_" or c.isupper() else c for c in text)


def cell_name(point: Mapping[str, Any]) -> str:
    """The file name of a cell: ``cell_N2_eta0.5_seed0.nc`` (``cell_%`` and a digest when that would be too long).

    For the axes of one grid the name is injective, also when letter case is ignored: text values are escaped
    (see `_escape`), numbers and booleans hold no ``_``, so the value of each axis ends at the first ``_`` after
    the axis name.  A digest name starts with ``cell_%``, which no readable name does (an axis name is a letter).
    """
    name = "cell_" + "_".join(f"{k}{_escape(v) if isinstance(v, str) else _fmt(v)}" for k, v in point.items())
    if len(name) > 200:
        name = "cell_%" + point_digest(point)[:32]
    return name + ".nc"


def point_digest(point: Mapping[str, Any]) -> str:
    """The SHA-256 (hex) of a point's canonical JSON (what a digest file name and a log line are checked by)."""
    return hashlib.sha256(point_json(point).encode()).hexdigest()


def point_json(point: Mapping[str, Any]) -> str:
    """A point as canonical JSON text (sorted keys): equal text means equal values of equal types."""
    return json.dumps(dict(point), sort_keys=True, allow_nan=False)
