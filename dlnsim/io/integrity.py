"""Reading untrusted files without hanging or allocating without bound, digests of NetCDF data, deferred Ctrl-C.

The readers here treat their input as untrusted: a grid directory or a result file may be damaged (a disk
error, a torn write) or crafted.  Hence

* `read_regular`: regular files only (no symbolic link, FIFO, device or directory: opening a FIFO blocks, a
  device such as ``/dev/zero`` never ends), at most a given number of bytes;
* `loads_json`: JSON with a nesting-depth cap (deep nesting would exhaust the interpreter's stack);
* `check_netcdf`: a NetCDF file's declared variable sizes and attribute type tags checked against its size
  before anything is allocated from them (a few hundred bytes can declare gigabytes of fill values);
* `netcdf_digest`: a SHA-256 of everything a NetCDF file's root group holds, which `dlnsim.save` stores in the
  file and `dlnsim.load` checks (HDF5's Fletcher-32 covers chunks, not the index that locates them: damage
  there makes HDF5 return fill values, silently);
* `defer_sigint`: Ctrl-C held back while a file is written (an interrupted NetCDF write can leave xarray's
  HDF5 lock held, and the next write then waits on it for ever).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
import signal
import stat
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from dlnsim.io.attrs import ATTR_TYPES

__all__ = [
    "DIGEST_ATTR",
    "JSON_MAX_DEPTH",
    "NotRegularFile",
    "check_digest",
    "check_netcdf",
    "declared_bytes",
    "defer_sigint",
    "loads_json",
    "netcdf_digest",
    "open_regular",
    "read_regular",
    "stored_digest",
]

#: global attribute of a file written by `dlnsim.save`: ``sha256:`` and the hex digest of `netcdf_digest`
DIGEST_ATTR = "dlnsim_digest"
#: deepest nesting of lists and maps accepted in JSON read from a file (dlnsim writes at most 4 levels)
JSON_MAX_DEPTH = 32
#: a NetCDF file may declare at most this many bytes of variable data per byte of file, plus `_DECLARED_SLACK`:
#: zlib compresses at most ~1032:1, so a file that declares more holds unwritten chunks (fill values)
DECLARED_PER_FILE_BYTE = 4096
_DECLARED_SLACK = 1 << 20
#: an attribute type tag may ask for at most this many bytes of string array, plus 1024 per byte of file
_TAG_SLACK = 64 << 20
#: bytes per element counted for a variable-length (string) variable: a pointer and a small Python object
_VLEN_ITEM = 64
_STR_DTYPE = re.compile(r"<U([0-9]{1,7})")


class NotRegularFile(ValueError):
    """A path that is a symbolic link, FIFO, device, socket or directory where a regular file was expected."""


def open_regular(path: str | os.PathLike[str], flags: int = os.O_RDONLY, mode: int = 0o666, *,
                 follow: bool = False) -> int:
    """A file descriptor of ``path`` opened with ``flags``, only if it is a regular file.

    ``O_NOFOLLOW`` refuses a symbolic link as the last component (unless ``follow``: a path the user gave may
    be a link), ``O_NONBLOCK`` keeps a FIFO from blocking the open; the type is then checked on the open
    descriptor (no window between check and use).

    Raises
    ------
    NotRegularFile
        Naming ``path`` when it is not a regular file.
    OSError
        When it cannot be opened (``FileNotFoundError`` when it does not exist).
    """
    try:
        fd = os.open(path, flags | (0 if follow else os.O_NOFOLLOW) | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW on a symbolic link
            raise NotRegularFile(f"{str(path)!r} is a symbolic link, not a regular file") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(f"{str(path)!r} is not a regular file (a FIFO, device, socket or directory)")
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: str | os.PathLike[str], limit: int, expected: int | None = None, *,
                 follow: bool = False) -> bytes:
    """The bytes of the regular file ``path``: at most ``limit`` bytes, exactly ``expected`` if given (``follow``:
    as for `open_regular`).

    Raises
    ------
    NotRegularFile
        When ``path`` is not a regular file.
    ValueError
        Naming ``path`` when it is larger than ``limit`` bytes or its size is not ``expected``.
    OSError
        When it cannot be read.
    """
    fd = open_regular(path, follow=follow)
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise ValueError(f"{str(path)!r} is {size} bytes, more than the {limit} bytes expected at most")
        if expected is not None and size != expected:
            raise ValueError(f"{str(path)!r} is {size} bytes, not the {expected} bytes expected")
        chunks = []
        left = size
        while left > 0:  # a file that shrinks meanwhile ends early; one that grows is read to ``size``
            block = os.read(fd, min(left, 1 << 24))
            if not block:
                break
            chunks.append(block)
            left -= len(block)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) != size:
        raise ValueError(f"{str(path)!r} changed while it was read")
    return data


def _depth(obj: Any) -> int:
    """Nesting depth of lists and maps, iteratively (no recursion to exhaust)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(obj, 0)]
    while stack:
        item, d = stack.pop()
        if isinstance(item, dict):
            stack.extend((v, d + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, d + 1) for v in item)
        else:
            continue
        deepest = max(deepest, d + 1)
        if deepest > JSON_MAX_DEPTH:
            break
    return deepest


def loads_json(text: str | bytes, max_depth: int = JSON_MAX_DEPTH) -> Any:
    """`json.loads` with a cap on the nesting depth; ValueError for invalid or too deeply nested JSON."""
    try:
        obj = json.loads(text)
    except RecursionError:  # nested beyond the interpreter's limit: the C decoder gives up cleanly
        raise ValueError(f"JSON nested more than {max_depth} levels deep") from None
    if _depth(obj) > max_depth:
        raise ValueError(f"JSON nested more than {max_depth} levels deep")
    return obj


# ------------------------------------------------------------------------------------------------- NetCDF


def _item_bytes(dtype: Any) -> int:
    return int(dtype.itemsize) if isinstance(dtype, np.dtype) else _VLEN_ITEM


def declared_bytes(nc: Any) -> int:
    """Bytes the variables of an open netCDF4 Dataset (root group) take in memory once read."""
    return sum(math.prod(v.shape) * _item_bytes(v.dtype) for v in nc.variables.values())


def _check_tags(raw: Any, file_bytes: int, where: str) -> None:
    """ValueError when a type tag companion (see `dlnsim.io.attrs`) would allocate without bound."""
    if raw is None:
        return
    if not isinstance(raw, str):
        raise ValueError(f"{where}: attribute {ATTR_TYPES!r} is not text")
    if len(raw) > 16 * max(file_bytes, 1 << 16):
        raise ValueError(f"{where}: attribute {ATTR_TYPES!r} is larger than the file could hold")
    tags = loads_json(raw)
    if not isinstance(tags, dict):
        return  # refused by the decoder with its own message
    for name, tag in tags.items():
        if not (isinstance(tag, list) and len(tag) == 3 and tag[0] == "ndarray" and isinstance(tag[1], str)
                and isinstance(tag[2], list)):
            continue
        shape = tag[2]
        if len(shape) > 32 or not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**62
                                      for n in shape):
            raise ValueError(f"{where}: attribute {name!r} has a type tag with an impossible shape {shape!r}")
        m = _STR_DTYPE.fullmatch(tag[1])
        if m is None:
            continue  # a numeric array: its values are read from the file, the tag only reshapes them
        need = 4 * int(m.group(1)) * math.prod(shape)
        if need > _TAG_SLACK + 1024 * file_bytes:
            raise ValueError(f"{where}: attribute {name!r} has a type tag asking for a {need}-byte string array "
                             f"in a file of {file_bytes} bytes: damaged or crafted")


def check_netcdf(nc: Any, file_bytes: int, where: str) -> None:
    """Check an open netCDF4 Dataset before its data or attributes are decoded: its variables declare at most
    ``DECLARED_PER_FILE_BYTE`` times ``file_bytes`` (plus 1 MiB) and its attribute type tags ask for bounded
    string arrays.  ValueError starting with ``where`` otherwise."""
    total = declared_bytes(nc)
    if total > DECLARED_PER_FILE_BYTE * file_bytes + _DECLARED_SLACK:
        raise ValueError(f"{where}: declares {total} bytes of variables in a file of {file_bytes} bytes "
                         "(they would be fill values, not data): damaged or crafted")
    _check_tags(nc.__dict__.get(ATTR_TYPES), file_bytes, where)
    for var in nc.variables.values():
        _check_tags(var.__dict__.get(ATTR_TYPES), file_bytes, where)


def _feed(h: Any, tag: bytes, data: bytes) -> None:
    h.update(tag + len(data).to_bytes(8, "little") + data)


def _feed_value(h: Any, v: Any) -> None:
    """Hash a value as read by netCDF4: type, shape and bytes, so that no two different values feed the same."""
    if isinstance(v, str):
        _feed(h, b"s", v.encode("utf-8", "surrogatepass"))
    elif isinstance(v, bytes):
        _feed(h, b"b", v)
    elif isinstance(v, list | tuple):
        _feed(h, b"l", str(len(v)).encode())
        for x in v:
            _feed_value(h, x)
    elif isinstance(v, np.ndarray | np.generic):
        a = np.asarray(v)
        if a.dtype.kind == "O":
            _feed(h, b"o", repr(a.shape).encode())
            for x in a.ravel():
                _feed_value(h, x)
        else:
            _feed(h, b"n", f"{a.dtype.str}{a.shape}".encode())
            _feed(h, b"d", np.ascontiguousarray(a).tobytes())
    else:
        _feed(h, b"r", repr(v).encode())


def netcdf_digest(nc: Any) -> str:
    """The SHA-256 (hex) of the root group of an open netCDF4 Dataset: global attributes (except `DIGEST_ATTR`),
    dimensions, and every variable's name, dimensions, type, attributes and raw values (no masking or scaling)."""
    h = hashlib.sha256()
    for name in sorted(nc.ncattrs()):
        if name != DIGEST_ATTR:
            _feed(h, b"A", name.encode())
            _feed_value(h, nc.getncattr(name))
    for name in sorted(nc.dimensions):
        _feed(h, b"D", f"{name}={len(nc.dimensions[name])}".encode())
    for name in sorted(nc.variables):
        var = nc.variables[name]
        var.set_auto_maskandscale(False)
        _feed(h, b"V", name.encode())
        _feed(h, b"T", f"{var.dtype}{tuple(var.dimensions)}".encode())
        for a in sorted(var.ncattrs()):
            _feed(h, b"a", a.encode())
            _feed_value(h, var.getncattr(a))
        _feed_value(h, var[...])
    return h.hexdigest()


def stored_digest(nc: Any) -> str | None:
    """The hex digest a file carries in `DIGEST_ATTR`, or None when it carries none."""
    if DIGEST_ATTR not in nc.ncattrs():
        return None
    value = nc.getncattr(DIGEST_ATTR)
    if not isinstance(value, str) or not re.fullmatch(r"sha256:[0-9a-f]{64}", value):
        return "invalid"
    return value[7:]


# ------------------------------------------------------------------------------------------------- Ctrl-C


@contextlib.contextmanager
def defer_sigint() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) for the duration of the block and raise KeyboardInterrupt after it.

    Only in the main thread (where Python runs signal handlers) and only while SIGINT has Python's default
    handler: a handler of the caller is left alone, and a nested block defers to the outer one.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        old = signal.getsignal(signal.SIGINT)
    except ValueError:  # pragma: no cover - no signals in this interpreter
        old = None
    if old is not signal.default_int_handler:
        yield
        return
    pending: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        pending.append(signum)

    signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
        if pending:
            raise KeyboardInterrupt


def check_digest(nc: Any, where: str) -> None:
    """ValueError starting with ``where`` when the file carries no valid `DIGEST_ATTR` or its contents do not
    match it.  (Every file of the current format tag is written with one: a missing digest is damage too.)"""
    stored = stored_digest(nc)
    if stored is None:
        raise ValueError(f"{where}: it carries no digest of its data (damaged, or not written by dlnsim.save)")
    if stored == "invalid" or stored != netcdf_digest(nc):
        raise ValueError(f"{where}: its data does not match the digest it carries (damaged)")
