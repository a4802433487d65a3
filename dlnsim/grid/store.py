"""A grid's directory: the manifest, one atomic NetCDF file per cell, a log of finished cells, a lock.

Layout::

    grid.json        the manifest (the grid: cell, axes, parameters), written once, before any cell runs
    cells.log        one JSON line per finished cell: file name, point, status, size and SHA-256 of its bytes
    cell_N2_seed0.nc one file per finished cell, written atomically (temporary file, fsync, rename)

A cell counts as finished only when its log line names it with its point and its file matches the line byte
for byte (size and SHA-256).  A missing, damaged or foreign cell file is therefore never combined: it is
recomputed on the next run, and the run says so.  The digest is checked *before* the file is parsed, so a
damaged file is never handed to the NetCDF/HDF5 library (which can loop forever on some damage).  The log is
append-only, each line is written whole (or the write raises) and fsynced, and a line torn by a crash or a
full disk is closed before the next one, so a crash loses at most the line being written (its cell is then
recomputed).

The directory is read as untrusted input: only regular files are read or appended to (a symbolic link, a
FIFO or a device in place of the log or a cell is refused or ignored, never followed or opened for a blocking
read), sizes taken from the log are capped, log lines are bounded in length and checked against a schema.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import difflib
import errno
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import xarray as xr

from dlnsim.grid.plan import Plan, point_json
from dlnsim.io import dataset, integrity

__all__ = ["LOG", "MANIFEST", "MAX_CELL_BYTES", "Store"]

MANIFEST = "grid.json"
LOG = "cells.log"
#: a log line longer than this is not ours (bounded reads of an untrusted file; a point of 32 axes fits)
_MAX_LINE = 16384
#: the largest cell file a grid writes or reads (a size in the log above it is damage, not a cell)
MAX_CELL_BYTES = 1 << 30
_MAX_MANIFEST = 64 * 1024 * 1024
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")
_STATUS = re.compile(r"[A-Za-z0-9_.+\-]{1,64}\Z")


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
        if not os.path.lexists(f):
            return None
        try:
            m: dict[str, Any] = integrity.loads_json(integrity.read_regular(f, _MAX_MANIFEST).decode("utf-8"))
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
            if any(path.glob("cell_*.nc")) or os.path.lexists(path / LOG):
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

    def read_log(self, expected: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """The last valid log line of every cell of ``expected`` (file name -> point).

        A line counts when it is at most `_MAX_LINE` bytes of a JSON object with the fields a run writes, of the
        right types, naming a planned cell with that cell's point; damaged, torn or foreign lines are skipped.
        ValueError when the log is not a regular file (a link, a FIFO, a device): the directory is not one that
        `run_grid` made.
        """
        f = self.path / LOG
        out: dict[str, dict[str, Any]] = {}
        try:
            fd = integrity.open_regular(f)
        except FileNotFoundError:
            return out
        except (OSError, ValueError) as exc:
            raise ValueError(f"directory: the log cannot be read ({exc}); this is not a directory run_grid made, "
                             "or it was tampered with") from None
        points: dict[str, str] = {}  # canonical JSON of each planned point, made when a line names its cell
        with os.fdopen(fd, "rb") as fh:
            for raw in _bounded_lines(fh):
                rec = _record(raw)
                if rec is None:
                    continue
                name = rec["cell"]
                point = expected.get(name)
                if point is None:
                    continue
                text = points.get(name)
                if text is None:
                    text = points[name] = point_json(point)
                with contextlib.suppress(ValueError):  # (NaN in a damaged point)
                    if point_json(rec["point"]) == text:
                        out[name] = rec
        return out

    def _append_log(self, rec: dict[str, Any]) -> None:
        """Append one line, whole or not at all as far as readers go: a short write raises (OSError naming the
        log), and a line left torn by an earlier failure is closed first, so that this one starts on its own."""
        f = self.path / LOG
        line = (json.dumps(rec, sort_keys=True) + "\n").encode()
        try:
            fd = integrity.open_regular(f, os.O_RDWR | os.O_APPEND | os.O_CREAT)  # (read: the last byte)
        except integrity.NotRegularFile as exc:
            raise ValueError(f"directory: refusing to append to the log: {exc}") from None
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line
            view = memoryview(line)
            while view:
                try:
                    n = os.write(fd, view)
                except OSError as exc:
                    raise OSError(exc.errno, f"cannot append to the log ({exc.strerror}); the cells not logged are "
                                  "recomputed on the next run", str(f)) from None
                if n <= 0:
                    raise OSError(errno.EIO, "cannot append to the log (short write); the cells not logged are "
                                  "recomputed on the next run", str(f))
                view = view[n:]
            os.fsync(fd)
        finally:
            os.close(fd)

    # ---------------------------------------------------------------------------------------------- cells

    def write_cell(self, name: str, point: Mapping[str, Any], ds: xr.Dataset) -> dict[str, Any]:
        """Write a finished cell and log it with its point; returns its log record.  A result whose file would
        be larger than `MAX_CELL_BYTES` is kept as an error of the cell (a later read would refuse it)."""
        f = self.path / name
        # no fsync of the cell file: its log line (fsynced) carries the digest, so a file that a power loss left
        # incomplete does not match it and is recomputed
        dataset.save(ds, f, durable=False)
        status = str(dataset.outcome(ds, "status", "done"))
        try:
            data = integrity.read_regular(f, MAX_CELL_BYTES)
        except ValueError as exc:
            status = "error"
            message = (f"ValueError: the cell's result does not fit a grid ({exc}); keep less per cell "
                       f"(at most {MAX_CELL_BYTES} bytes)")
            attrs = {**dataset.file_attrs("dlnsim grid cell that failed"), "status": "error", "error": message}
            dataset.save(xr.Dataset(attrs=attrs), f, durable=False)
            data = integrity.read_regular(f, MAX_CELL_BYTES)
        rec = {"cell": name, "point": dict(point), "status": status if _STATUS.match(status) else "done",
               "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        self._append_log(rec)
        return rec

    def read_cell(self, name: str, rec: dict[str, Any] | None) -> bytes | None:
        """The bytes of a finished cell, or None when the file is missing, not a regular file, or does not
        match its log line."""
        if rec is None:
            return None
        try:
            data = integrity.read_regular(self.path / name, MAX_CELL_BYTES, expected=rec["bytes"])
        except (OSError, ValueError):
            return None
        return data if hashlib.sha256(data).hexdigest() == rec["sha256"] else None


def _bounded_lines(fh: Any, block: int = 1 << 20) -> Iterator[bytes]:
    """The complete lines of a binary file (with their newline), skipping any longer than `_MAX_LINE` without
    holding more than one block and one line in memory; a last line without a newline is torn and not given."""
    buf = b""
    skipping = False
    while True:
        chunk = fh.read(block)
        if not chunk:
            return
        buf += chunk
        start = 0
        while True:
            end = buf.find(b"\n", start)
            if end < 0:
                break
            if not skipping and end + 1 - start <= _MAX_LINE:
                yield buf[start:end + 1]
            skipping = False
            start = end + 1
        buf = buf[start:]
        if len(buf) > _MAX_LINE:  # the line in progress is too long: drop it up to its newline
            buf = b""
            skipping = True


def _record(raw: bytes) -> dict[str, Any] | None:
    """A log line as a record when it has the schema a run writes, else None."""
    try:
        rec = integrity.loads_json(raw, max_depth=3)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(rec, dict):
        return None
    cell, point, status, size, sha = (rec.get(k) for k in ("cell", "point", "status", "bytes", "sha256"))
    if not (isinstance(cell, str) and isinstance(point, dict) and isinstance(status, str)
            and _STATUS.match(status) and isinstance(sha, str) and _SHA256.match(sha)
            and type(size) is int and 0 <= size <= MAX_CELL_BYTES):
        return None
    return rec


def suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
