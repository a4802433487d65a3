"""Compare two directories of study files, variable by variable: what a regeneration of the archive changed.

``python -m studies.compare OLD NEW [--rtol R] [NAME ...]`` reads every ``<name>.nc`` of OLD (or the named
studies) and its namesake in NEW and prints, per file, each variable that differs:

* numbers: the largest relative difference |a - b| / |a| over the entries finite in both, how many entries
  differ by more than ``--rtol``, and entries that are NaN or infinite in one file only;
* text and integers: how many entries differ, with the first few pairs;
* a changed shape or a variable present in one file only;
* attributes that differ, except the provenance ones (creation time, history, versions, digests).

Exit status 0 when nothing differs beyond ``--rtol`` (default 0: the same numbers bit for bit), 1 otherwise,
2 for a missing file.  Use it after ``python -m studies --outdir NEW`` to see which numbers a code change moved
before the archive in ``data/`` is replaced.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

import dlnsim

from . import STUDIES
from . import _common as C

__all__ = ["PROVENANCE", "differences", "main"]

#: attributes that record when and with what a file was written, not what it holds
PROVENANCE = frozenset({"created", "history", "dlnsim_version", "numpy_version", "numba_version", "scipy_version",
                        "xarray_version", "dlnsim_digest", "format"})


def _relative(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return np.abs(a - b) / np.maximum(np.abs(a), np.finfo(float).tiny)


def _variable(name: str, x: np.ndarray, y: np.ndarray, rtol: float) -> str | None:
    """One line on how ``y`` differs from ``x`` (None: equal within ``rtol``)."""
    if x.shape != y.shape:
        return f"{name}: shape {x.shape} -> {y.shape}"
    if x.dtype.kind == "f" or y.dtype.kind == "f":
        try:
            a, b = x.astype(float), y.astype(float)
        except (TypeError, ValueError):
            return f"{name}: dtype {x.dtype} -> {y.dtype}"
        both = np.isfinite(a) & np.isfinite(b)
        pattern = int(np.sum((np.isnan(a) != np.isnan(b)) | (np.isinf(a) & (a != b))))
        rel = _relative(a[both], b[both])
        worst = float(rel.max()) if rel.size else 0.0
        over = int(np.sum(rel > rtol))
        if over == 0 and pattern == 0:
            return None
        return (f"{name}: largest relative difference {worst:.2e}, {over} of {rel.size} entries above {rtol:g}"
                + (f", {pattern} entries NaN or infinite in one file only" if pattern else ""))
    xs, ys = x.astype(str), y.astype(str)
    diff = np.argwhere(xs != ys)
    if not diff.size:
        return None
    pairs = ", ".join(f"{str(xs[tuple(i)])!r} -> {str(ys[tuple(i)])!r}" for i in diff[:3])
    return f"{name}: {len(diff)} of {x.size} entries differ ({pairs}{', ...' if len(diff) > 3 else ''})"


def _same_attr(a: Any, b: Any) -> bool:
    x, y = np.asarray(a), np.asarray(b)
    if x.dtype.kind in "fc" and y.dtype.kind in "fc":
        return bool(np.array_equal(x, y, equal_nan=True))
    return x.shape == y.shape and bool(np.all(x.astype(str) == y.astype(str)))


def differences(old: xr.Dataset, new: xr.Dataset, rtol: float = 0.0) -> list[str]:
    """How ``new`` differs from ``old``: one line per variable or attribute (empty: the same within ``rtol``)."""
    lines = []
    for name in sorted(map(str, set(old.variables) | set(new.variables))):
        if name not in new.variables:
            lines.append(f"{name}: only in the old file")
        elif name not in old.variables:
            lines.append(f"{name}: only in the new file")
        else:
            line = _variable(name, np.asarray(old[name].values), np.asarray(new[name].values), rtol)
            if line is not None:
                lines.append(line)
    for key in sorted(set(old.attrs) | set(new.attrs)):
        if key in PROVENANCE:
            continue
        if key not in old.attrs or key not in new.attrs:
            lines.append(f"attribute {key}: only in the {'new' if key in new.attrs else 'old'} file")
        elif not _same_attr(old.attrs[key], new.attrs[key]):
            lines.append(f"attribute {key}: {old.attrs[key]!r} -> {new.attrs[key]!r}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m studies.compare", description=__doc__.split("\n\n")[0])
    ap.add_argument("old", type=Path, help=f"directory of the reference files (e.g. {C.DATA})")
    ap.add_argument("new", type=Path, help="directory of the files to compare with them")
    ap.add_argument("names", nargs="*", metavar="NAME", help="studies to compare (default: every file of OLD)")
    ap.add_argument("--rtol", type=float, default=0.0,
                    help="relative difference of numbers that counts as equal (default 0: bit for bit)")
    args = ap.parse_args(argv)
    if not args.rtol >= 0.0:
        ap.error(f"--rtol must be >= 0, got {args.rtol}")
    unknown = [n for n in args.names if n not in STUDIES]
    if unknown:
        ap.error(f"unknown study name(s) {', '.join(unknown)}; choose from {', '.join(STUDIES)}")
    names = args.names or sorted(p.stem for p in args.old.glob("*.nc"))
    missing = [p for n in names for p in (args.old / f"{n}.nc", args.new / f"{n}.nc") if not p.is_file()]
    if missing:
        print("missing: " + ", ".join(map(str, missing)), file=sys.stderr)
        return 2
    changed = 0
    for n in names:
        lines = differences(dlnsim.load(args.old / f"{n}.nc"), dlnsim.load(args.new / f"{n}.nc"), args.rtol)
        print(f"{n}: " + ("same" if not lines else f"{len(lines)} difference(s)"))
        for line in lines:
            print(f"    {line}")
        changed += bool(lines)
    print(f"{changed} of {len(names)} file(s) differ" + (f" beyond rtol {args.rtol:g}" if args.rtol else ""))
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
