"""A grid's directory: the manifest, one atomic NetCDF file per cell, a log of finished cells, a lock.

Layout::

    grid.json        the manifest (the grid: cell, axes, parameters), written once, before any cell runs
    cells.log        one JSON line per finished cell: file name, status, size and SHA-256 of its bytes
    cell_N2_seed0.nc one file per finished cell, written atomically (temporary file, fsync, rename)

A cell counts as finished only when its file matches its log line byte for byte (size and SHA-256).  A
missing, damaged or foreign cell file is therefore never combined: it is recomputed on the next run, and
the run says so.  The digest is checked *before* the file is parsed, so a damaged file is never handed to
the NetCDF/HDF5 library (which can loop forever on some damage).  The log is append-only and each line is
fsynced, so a crash loses at most the line being written (its cell is then recomputed).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import difflib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import xarray as xr

from dlnsim.grid.plan import Plan
from dlnsim.io import dataset

__all__ = ["LOG", "MANIFEST", "Store"]

MANIFEST = "grid.json"
LOG = "cells.log"
#: a log line longer than this is not ours (bounded reads of an untrusted file)
_MAX_LINE = 4096


def utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _describe_diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    out = []
    if old.get("cell") != new["cell"]:
        out.append(f"cell is {old.get('cell')!r} there, {new['cell']!r} here")
    for group in ("axes", "params"):
        a, b = old.get(group) or {}, new[group]
        for k in sorted(set(a) | set(b)):
            if a.get(k, "<absent>") != b.get(k, "<absent>"):
                out.append(f"{k} is {a.get(k, '<absent>')!r} there, {b.get(k, '<absent>')!r} here")
    return "; ".join(out)


def _writable(directory: Path) -> bool:
    """Whether files can be created in ``directory``, by trying (permission bits say nothing for root or on a
    read-only mount)."""
    import tempfile

    try:
        with tempfile.NamedTemporaryFile(prefix=".dlnsim-probe-", dir=directory):
            return True
    except OSError:
        return False


class Store:
    """The directory of one grid."""

    def __init__(self, path: Path) -> None:
        self.path = path

    # ------------------------------------------------------------------------------------------- manifest

    def read_manifest(self) -> dict[str, Any] | None:
        f = self.path / MANIFEST
        if not f.is_file():
            return None
        try:
            if f.stat().st_size > 64 * 1024 * 1024:
                raise ValueError("larger than 64 MiB")
            m: dict[str, Any] = json.loads(f.read_text())
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"directory: {str(f)!r} is not a readable grid manifest: {exc}") from None
        return m

    def plan(self, reserved: tuple[str, ...] = ()) -> tuple[Plan, dict[str, Any]]:
        m = self.read_manifest()
        if m is None:
            raise ValueError(f"directory: {str(self.path)!r} has no grid manifest {MANIFEST}")
        return Plan.from_manifest(m, repr(str(self.path / MANIFEST)), reserved), m

    def check(self, plan: Plan) -> dict[str, Any] | None:
        """The existing manifest if it matches ``plan``; ValueError (nothing written) otherwise."""
        path = self.path
        if path.exists() and not path.is_dir():
            raise ValueError(f"directory: {str(path)!r} exists and is not a directory")
        if not path.exists():
            parent = path.parent
            if not parent.is_dir():
                raise ValueError(f"directory: the parent {str(parent)!r} of {str(path)!r} is not a directory")
            if not _writable(parent):
                raise ValueError(f"directory: cannot create {str(path)!r} (the parent is not writable)")
            return None
        if not _writable(path):
            raise ValueError(f"directory: {str(path)!r} is not writable")
        old = self.read_manifest()
        new = plan.manifest()
        if old is None:
            if any(path.glob("cell_*.nc")):
                raise ValueError(f"directory: {str(path)!r} holds cell files but no manifest {MANIFEST}; "
                                 "use a new directory")
            return None
        if {k: old.get(k) for k in new} != new:
            raise ValueError(f"directory: {str(path)!r} holds a different grid ({_describe_diff(old, new)}); "
                             "use a new directory, or the same parameters to resume")
        return old

    def create(self, plan: Plan, version: str) -> dict[str, Any]:
        manifest = {**plan.manifest(), "created": utc_now(), "dlnsim_version": version}
        dataset.write_json_atomic(manifest, self.path / MANIFEST)
        return manifest

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Only one run at a time in a directory (an advisory lock; RuntimeError when taken)."""
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            yield
            return
        fd = os.open(self.path, os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise RuntimeError(f"directory: another run is using {str(self.path)!r} (it is locked); wait "
                                   "for it to finish, or use another directory") from None
            yield
        finally:
            os.close(fd)  # releases the lock

    def clean_stale(self) -> None:
        """Remove temporary files left by a killed run (call under the lock: nobody is writing)."""
        for stale in (*self.path.glob(".cell_*.tmp"), *self.path.glob(f".{MANIFEST}.*.tmp")):
            stale.unlink(missing_ok=True)

    # ------------------------------------------------------------------------------------------------ log

    def read_log(self, names: set[str]) -> dict[str, dict[str, Any]]:
        """The last valid log line of every cell in ``names`` (damaged or foreign lines are skipped)."""
        f = self.path / LOG
        out: dict[str, dict[str, Any]] = {}
        if not f.is_file():
            return out
        with f.open("rb") as fh:
            for raw in fh:
                if len(raw) > _MAX_LINE or not raw.endswith(b"\n"):
                    continue
                try:
                    rec = json.loads(raw)
                except ValueError:
                    continue
                if (isinstance(rec, dict) and rec.get("cell") in names and isinstance(rec.get("sha256"), str)
                        and isinstance(rec.get("bytes"), int) and isinstance(rec.get("status"), str)):
                    out[rec["cell"]] = rec
        return out

    def _append_log(self, rec: dict[str, Any]) -> None:
        line = (json.dumps(rec, sort_keys=True) + "\n").encode()
        fd = os.open(self.path / LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    # ---------------------------------------------------------------------------------------------- cells

    def write_cell(self, name: str, ds: xr.Dataset) -> dict[str, Any]:
        """Write a finished cell and log it; returns its log record."""
        f = self.path / name
        # no fsync of the cell file: its log line (fsynced) carries the digest, so a file that a power loss left
        # incomplete does not match it and is recomputed
        dataset.save(ds, f, durable=False)
        data = f.read_bytes()
        rec = {"cell": name, "status": str(dataset.outcome(ds, "status", "done")), "bytes": len(data),
               "sha256": hashlib.sha256(data).hexdigest()}
        self._append_log(rec)
        return rec

    def read_cell(self, name: str, rec: dict[str, Any] | None) -> bytes | None:
        """The bytes of a finished cell, or None when the file is missing or does not match its log line."""
        if rec is None:
            return None
        f = self.path / name
        try:
            if f.stat().st_size != rec["bytes"]:
                return None
            data = f.read_bytes()
        except OSError:
            return None
        return data if hashlib.sha256(data).hexdigest() == rec["sha256"] else None


def suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
