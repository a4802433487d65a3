"""Combine runs laid out on a grid into one Dataset over the grid's axes.

Rules (the same for a grid directory and for `combine_runs` on runs made by hand):

* Every variable of the runs gains the grid axes in front of its own dimensions (a variable named like an axis, such
  as run_gd's per-step ``eta`` on an ``eta`` axis, becomes ``<name>_<its first dim>``: ``eta_k``). Along a run's own
  dimensions (``k``, ``layer``, ``sv``, ...) shorter runs are padded: with NaN for floats, -1 for integers and
  ``""`` for text.  Where a dimension has a coordinate, the combined coordinate is the sorted union of the runs'
  values and each run is placed by value (two runs recorded at different iterations line up by ``k``); without a
  coordinate, runs are aligned by position.  Non-index coordinates (``t`` along ``k``) are stacked the same way and
  stay coordinates.
* Attributes of the runs: one equal in every run becomes a global attribute; one that differs becomes a
  variable over the grid axes (with a trailing ``<name>_index`` dimension for arrays).  Run outcomes
  (``status``, ``stop_iteration``, ``error``, ...) are always variables, so the layout does not depend on
  the values.  A run that is missing has status ``not_run``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from dlnsim.io import dataset, integrity

__all__ = ["ALWAYS_VARIABLES", "Run", "combine", "combine_runs"]

#: run attributes that are always variables of a combined grid (outcomes of a run, not settings), so that the
#: layout does not depend on the values
ALWAYS_VARIABLES = tuple(dataset.RUN_ATTRS)
#: attributes of a run that a combined grid does not keep (it has its own)
DROPPED = ("created", "title", "Conventions", "format", "history")
_FILL_TEXT = {"status": "not_run", "search_status": "not_run"}


def _py(v: Any) -> Any:
    """numpy scalars to Python, 1-element-free arrays kept as arrays."""
    if isinstance(v, np.ndarray):
        return v if v.ndim else v.item()
    if isinstance(v, np.generic):
        return v.item()
    return v


class Run:
    """A run as plain arrays: ``attrs``, ``vars`` (name -> (dims, values, attrs)), ``coords`` (names of the
    coordinates among ``vars``) and ``sizes``."""

    __slots__ = ("attrs", "coords", "sizes", "vars")

    def __init__(self, attrs: dict[str, Any], vars: dict[str, tuple[tuple[str, ...], np.ndarray, dict[str, Any]]],
                 coords: set[str], sizes: dict[str, int]) -> None:
        # a run's outcomes are 0-d variables of its file; here they join the attributes, which the combined
        # Dataset stores as variables over the grid axes (`ALWAYS_VARIABLES`), filled for missing cells
        for name in [n for n, (dims, _, _) in vars.items() if not dims and n in ALWAYS_VARIABLES]:
            attrs[name] = _py(vars.pop(name)[1])
            coords.discard(name)
        self.attrs = attrs
        self.vars = vars
        self.coords = coords
        self.sizes = sizes

    @staticmethod
    def from_dataset(ds: xr.Dataset) -> Run:
        v = {str(n): (tuple(str(d) for d in x.dims), np.asarray(x.values), dict(x.attrs))
             for n, x in ds.variables.items()}
        # attributes as a file would give them back (a tuple becomes a list), so that a grid kept in memory
        # equals one combined from its files
        attrs = dataset.clean_attrs(ds.attrs)
        attrs.pop(integrity.DIGEST_ATTR, None)
        return Run({k: _py(a) for k, a in attrs.items()}, v, {str(c) for c in ds.coords},
                   {str(d): int(n) for d, n in ds.sizes.items()})

    @staticmethod
    def from_bytes(data: bytes, name: str) -> Run:
        """Parse a NetCDF file held in memory with netCDF4 (much faster than xarray for many small files).

        The file is checked as `dlnsim.load` checks one: declared sizes and type tags before anything is
        allocated from them, and the digest it carries (ValueError naming ``name`` otherwise).
        """
        import netCDF4

        with netCDF4.Dataset(name, mode="r", memory=data) as nc:
            integrity.check_netcdf(nc, len(data), repr(name))
            integrity.check_digest(nc, repr(name))
            nc.set_auto_scale(True)  # (the digest read raw values)
            nc.set_auto_mask(False)
            raw = {k: nc.getncattr(k) for k in nc.ncattrs() if k != integrity.DIGEST_ATTR}
            attrs = dataset.decode_attrs(raw)
            vars_: dict[str, tuple[tuple[str, ...], np.ndarray, dict[str, Any]]] = {}
            coords: set[str] = set()
            for vname, var in nc.variables.items():
                values = np.array(var[...])
                if values.dtype.kind == "U":  # a NetCDF string variable
                    values = values.astype(object)
                vattrs = {k: var.getncattr(k) for k in var.ncattrs() if not k.startswith("_")}
                extra = vattrs.pop("coordinates", None)
                if isinstance(extra, str):
                    coords.update(extra.split())
                vars_[vname] = (tuple(var.dimensions), values, vattrs)
                if var.dimensions == (vname,):
                    coords.add(vname)
            coords.update(str(c) for c in (attrs.pop("coordinates", "") or "").split())
            sizes = {dn: len(dim) for dn, dim in nc.dimensions.items()}
        renames = dataset.legacy_renames({n: (d, a) for n, (d, _, a) in vars_.items()})  # earlier versions' names
        if renames:
            vars_ = {renames.get(n, n): (tuple(renames.get(d, d) for d in dims), values,
                                         dataset.legacy_attrs(n, a) if n in renames else a)
                     for n, (dims, values, a) in vars_.items()}
            coords = {renames.get(c, c) for c in coords}
            sizes = {renames.get(d, d): s for d, s in sizes.items()}
        for vname, (dims, _, vattrs) in list(vars_.items()):  # text dimension coordinates (`dataset.save`)
            label = vattrs.get(dataset.LABELS_ATTR)
            if isinstance(label, str) and label in vars_ and vars_[label][0] == dims:
                _, lab_values, lab_attrs = vars_.pop(label)
                vars_[vname] = (dims, lab_values, lab_attrs)
                coords.discard(label)
        return Run({k: _py(v) for k, v in attrs.items()}, vars_, coords & set(vars_), sizes)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        x, y = np.asarray(a), np.asarray(b)
        if x.shape != y.shape or (x.dtype.kind in "OUS") != (y.dtype.kind in "OUS"):
            return False
        return bool(np.array_equal(x, y, equal_nan=x.dtype.kind == "f" and y.dtype.kind == "f"))
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and bool(a == b)


def _kind(values: Sequence[Any]) -> str:
    """Storage kind of a set of values: 'O' text, 'i' integers, 'b' booleans, 'f' floats."""
    kinds = set()
    for v in values:
        a = np.asarray(v)
        k = a.dtype.kind
        kinds.add("O" if k in "OUS" else "b" if k == "b" else "i" if k in "iu" else "f")
    if "O" in kinds:
        return "O"
    if kinds == {"b"}:
        return "b"
    if kinds <= {"i"}:
        return "i"
    return "f"


def _empty(shape: tuple[int, ...], kind: str, text_fill: str = "") -> np.ndarray:
    if kind == "O":
        out = np.empty(shape, dtype=object)
        out[...] = text_fill
        return out
    if kind in "ib":
        return np.full(shape, -1, dtype=np.int64)
    return np.full(shape, np.nan)


def _to_text(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return ", ".join(str(x) for x in v.ravel())
    return v if isinstance(v, str) else str(v)


def _inner_coords(runs: Sequence[Run]) -> tuple[dict[str, np.ndarray | None], dict[str, dict[str, Any]]]:
    """Per inner dimension: the union of the runs' coordinate values (None: aligned by position)."""
    dims: dict[str, list[np.ndarray]] = {}
    sizes: dict[str, int] = {}
    meta: dict[str, dict[str, Any]] = {}
    for r in runs:
        for d, n in r.sizes.items():
            sizes[d] = max(sizes.get(d, 0), n)
            if d in r.vars and r.vars[d][0] == (d,):
                dims.setdefault(d, []).append(r.vars[d][1])
                meta.setdefault(d, r.vars[d][2])
    out: dict[str, np.ndarray | None] = {}
    for d in sizes:
        vals = dims.get(d)
        if not vals:
            out[d] = None
            continue
        if len(vals) == len(runs) and all(np.array_equal(vals[0], v) for v in vals[1:]):
            out[d] = np.asarray(vals[0])  # the common case: every run has the same coordinate
            continue
        allv = np.concatenate([np.asarray(v) for v in vals])
        out[d] = np.unique(allv) if allv.dtype.kind in "iuf" else np.array(list(dict.fromkeys(allv.tolist())))
    for d, n in sizes.items():
        if out[d] is None:
            meta.setdefault(d, {})
            meta[d]["_size"] = n
    return out, meta


def combine(
    cells: Mapping[tuple[int, ...], Run | None],
    axes: Mapping[str, Sequence[Any]],
    axis_attrs: Mapping[str, dict[str, Any]] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """One Dataset over ``axes`` from runs keyed by their index in the grid (None or absent: not run)."""
    names = list(axes)
    shape = tuple(len(axes[n]) for n in names)
    present = {idx: r for idx, r in cells.items() if r is not None}
    runs = list(present.values())
    inner, inner_meta = _inner_coords(runs)
    clash = sorted(set(inner) & set(names))
    if clash:
        raise ValueError(f"axes: {', '.join(clash)} is both a grid axis and a dimension of the runs")

    def inner_size(d: str) -> int:
        c = inner[d]
        return int(inner_meta[d]["_size"]) if c is None else len(c)

    variables: dict[str, xr.Variable] = {}
    coord_names: set[str] = set()
    var_names: dict[str, None] = {}
    for r in runs:
        for v in r.vars:
            var_names.setdefault(v)
    for v in var_names:
        have = [(idx, r) for idx, r in present.items() if v in r.vars]
        vdims, _, vattrs = have[0][1].vars[v]
        if vdims == (v,):  # an index coordinate: combined below
            continue
        # a run's own variable named like a grid axis (run_gd's per-step ``eta`` on an ``eta`` axis) keeps its
        # values under ``<name>_<first dim>`` (``eta_k``)
        out = v if v not in names else f"{v}_{vdims[0] if vdims else 'run'}"
        kind = _kind([r.vars[v][1] for _, r in have])
        arr = _empty(shape + tuple(inner_size(d) for d in vdims), kind)
        for idx, r in have:
            dims_r, values, _ = r.vars[v]
            if dims_r != vdims:
                raise ValueError(f"runs: variable {v!r} has dims {dims_r} in one run and {vdims} in another")
            where: list[Any] = []
            for d, n in zip(vdims, values.shape, strict=True):
                c = inner[d]
                if c is None or d not in r.vars:
                    where.append(slice(0, n))
                    continue
                own = r.vars[d][1]
                pos = np.searchsorted(c, own) if c.dtype.kind in "iuf" else np.array(
                    [int(np.flatnonzero(c == x)[0]) for x in own], dtype=np.int64)
                if pos.size and (pos.max() >= c.size or not np.array_equal(c[pos], own)):
                    raise ValueError(f"runs: coordinate {d!r} of a run does not fit the combined one")
                where.append(pos if pos.size != c.size or not np.array_equal(pos, np.arange(c.size)) else slice(None))
            if not vdims:
                arr[idx] = values[()]
                continue
            sub = arr[idx]
            if all(isinstance(w, slice) for w in where):
                sub[tuple(where)] = values
            else:
                sub[np.ix_(*[np.arange(inner_size(d))[w] if isinstance(w, slice) else w
                             for d, w in zip(vdims, where, strict=True)])] = values
        if kind == "b":
            arr = arr.astype(np.int8)
        variables[out] = xr.Variable((*names, *vdims), arr, attrs=dict(vattrs))
        if any(v in r.coords for _, r in have):
            coord_names.add(out)

    # run attributes
    keys: dict[str, None] = {}
    for r in runs:
        for k in r.attrs:
            if k not in DROPPED and k not in names:
                keys.setdefault(k)
    global_attrs: dict[str, Any] = {}
    # a cell that raised has no attributes but its outcome: it does not make the others' differ
    ok = [r for r in runs if r.attrs.get("status") != "error"]
    for k in list(ALWAYS_VARIABLES) + [k for k in keys if k not in ALWAYS_VARIABLES]:
        if k in names:  # an outcome named like an axis: the axis holds it
            continue
        vals = [(idx, r.attrs[k]) for idx, r in present.items() if k in r.attrs]
        if k not in ALWAYS_VARIABLES:
            same = [r.attrs[k] for r in ok if k in r.attrs]
            if same and len(same) == len(ok) and all(_same(same[0], x) for x in same[1:]):
                global_attrs[k] = same[0]
                continue
        elif k != "status" and not vals:
            continue  # an outcome no run has
        avals = [x for _, x in vals]
        kind = _kind(avals) if avals else "O"
        arrays = kind != "O" and any(np.ndim(x) > 0 for x in avals)
        if arrays:
            n = max(int(np.size(x)) for x in avals)
            arr = _empty((*shape, n), kind)
            for idx, x in vals:
                flat = np.ravel(x)
                arr[idx][: flat.size] = flat
            variables[k] = xr.Variable((*names, f"{k}_index"), arr.astype(np.int8) if kind == "b" else arr,
                                       attrs=dataset.attr_variable_meta(k))
            continue
        arr = _empty(shape, kind, _FILL_TEXT.get(k, ""))
        if k == "status":  # a finished cell without a status of its own
            for idx in present:
                arr[idx] = "done"
        for idx, x in vals:
            arr[idx] = _to_text(x) if kind == "O" else x
        variables[k] = xr.Variable(names, arr.astype(np.int8) if kind == "b" else arr,
                                   attrs=dataset.attr_variable_meta(k))

    coords: dict[str, xr.Variable] = {}
    for n in names:
        meta = dict((axis_attrs or {}).get(n) or dataset.axis_meta(n))
        values = np.asarray(axes[n])
        coords[n] = xr.Variable((n,), values.astype(object) if values.dtype.kind == "U" else values, attrs=meta)
    for d, c in inner.items():
        if c is not None:
            m = {k: val for k, val in inner_meta[d].items() if not k.startswith("_")}
            coords[d] = xr.Variable((d,), c, attrs=m)
    for name in coord_names:
        coords[name] = variables.pop(name)
    ds = xr.Dataset(variables, coords=coords)
    ds.attrs = {**global_attrs, **dict(attrs or {})}
    return ds


def combine_runs(datasets: Any, dims: Mapping[str, Sequence[Any]]) -> xr.Dataset:
    """Combine runs made by hand into one Dataset over ``dims`` (rules: module docstring).

    Parameters
    ----------
    datasets : mapping or sequence
        Either a mapping from a tuple of axis values (one per dim, in order) to a Dataset, or a flat
        sequence of Datasets in C order of ``dims`` (``None`` marks a run that is missing).
    dims : mapping of str to sequence
        The grid axes and their values, in dimension order, e.g. ``{"N": [2, 3], "seed": [0, 1]}``.

    Returns
    -------
    xarray.Dataset
        Over ``dims`` + the runs' own dimensions; attributes equal in every run are global, with the
        combination's own ``title``, ``Conventions``, ``history`` and format tag (those of the runs are dropped).
    """
    from dlnsim.grid.plan import validate_axes

    axes = validate_axes(dims)
    names = list(axes)
    shape = tuple(len(v) for v in axes.values())
    cells: dict[tuple[int, ...], Run | None] = {}
    if isinstance(datasets, Mapping):
        index = {n: {v: i for i, v in enumerate(axes[n])} for n in names}
        for key, ds in datasets.items():
            key_t = key if isinstance(key, tuple) else (key,)
            if len(key_t) != len(names):
                raise ValueError(f"datasets: key {key!r} does not match dims {names}")
            try:
                idx = tuple(index[n][_py(v)] for n, v in zip(names, key_t, strict=True))
            except KeyError:
                raise ValueError(f"datasets: key {key!r} is not a point of dims {dict(axes)}") from None
            cells[idx] = _run_of(ds, key)
    elif isinstance(datasets, Sequence):
        if len(datasets) != int(np.prod(shape)):
            raise ValueError(f"datasets: expected {int(np.prod(shape))} runs (one per point of {names}, in C "
                             f"order), got {len(datasets)}")
        for idx, ds in zip(np.ndindex(*shape), datasets, strict=True):
            cells[tuple(int(i) for i in idx)] = _run_of(ds, idx)
    else:
        raise ValueError(f"datasets: expected a mapping or a sequence of Datasets, got {type(datasets).__name__}")
    # the runs' own title, Conventions, history and format tag are dropped (`DROPPED`): the combination has its own
    return combine(cells, axes, attrs=dataset.file_attrs("dlnsim runs combined over (" + ", ".join(names) + ")"))


def _run_of(ds: Any, where: Any) -> Run | None:
    if ds is None:
        return None
    if not isinstance(ds, xr.Dataset):
        raise ValueError(f"datasets: the run at {where!r} is a {type(ds).__name__}, not an xarray.Dataset")
    return Run.from_dataset(ds)
