"""Results as self-describing xarray Datasets, and durable atomic NetCDF files.

`SCHEMA` names every variable and coordinate dlnsim writes: its dims, ``units``, ``long_name`` and a short
description.  `build` applies it, `save` writes through a temporary file in the target directory, flushes it
to disk and renames it into place (a crash never leaves a half-written file under the final name), and `open`
loads a file fully into memory and refuses files that are truncated or were not written by dlnsim.

Attributes round-trip exactly.  NetCDF attributes hold only strings and 1-D numeric arrays, so `save` stores
the other Python values in a NetCDF form and records their types in the companion global attribute
``dlnsim_attr_types`` (a JSON map name -> type tag; a variable's attributes get their own companion), which
`open` reads back and removes.  After `clean_attrs` (what `build` applies, and what `save` applies before
writing), ``open(save(ds)).attrs == clean_attrs(ds.attrs)`` with the same types:

* ``None``, ``bool``, ``int`` (any size), ``float`` (nan and +-inf included) and ``str`` (empty, any unicode,
  NUL characters included) come back as themselves;
* numpy scalars (``numpy.bool_``, every integer type, ``float16``/``float32``/``float64``) come back with their
  numpy type (``numpy.longdouble`` becomes ``float``);
* lists and tuples of ``None``/bool/int/float/str (numpy scalars inside become Python scalars) come back as
  **lists** (a list, unlike a tuple, is compared element by element by `xarray.testing.assert_identical`,
  so lists holding nan stay identical);
* numpy arrays of bools, integers, floats or strings come back with their dtype and shape;
* any other object (a Path, a dict, a complex number, ...) is stored as its ``str()`` (not reversible).

Nothing read from a file is evaluated: type tags are plain JSON, decoded against a fixed list of types.
"""

from __future__ import annotations

import builtins
import contextlib
import datetime as _dt
import errno
import hashlib
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ._validate import positive_float

__all__ = [
    "ATTR_TYPES",
    "SCHEMA",
    "clean_attrs",
    "decode_attrs",
    "encode_attrs",
    "file_digest",
    "open",
    "save",
    "write_json_atomic",
]

FORMAT_TAG = "dlnsim-results"
#: name of the companion attribute that records the types of the other attributes (reserved)
ATTR_TYPES = "dlnsim_attr_types"

#: name -> (dims, units, long_name)
SCHEMA: dict[str, tuple[tuple[str, ...], str, str]] = {
    "k": (("k",), "1", "iteration number"),
    "layer": (("layer",), "1", "layer index j of W_j"),
    "pair": (("pair",), "1", "index j of the layer pair (W_j, W_{j+1})"),
    "sv": (("sv",), "1", "rank of the singular value (1 = largest)"),
    "loss": (("k",), "1", "training loss L^N = 1/2 ||Y - W_N...W_1 X||_F^2"),
    "excess_loss": (("k",), "1", "loss minus the least-squares optimum, L^N - min_W L^1(W)"),
    "grad_norm_sq": (("k",), "1", "squared gradient norm ||grad L^N||_F^2"),
    "balancedness": (("k", "pair"), "1", "balancedness ||W_{j+1}^T W_{j+1} - W_j W_j^T|| (spectral)"),
    "balancedness_max": (("k",), "1", "balancedness constant max_j ||W_{j+1}^T W_{j+1} - W_j W_j^T||"),
    "layer_norm_sq": (("k", "layer"), "1", "squared spectral norm ||W_j||^2 (Prop. 3.4(3): <= K)"),
    "product_sv": (("k", "sv"), "1", "singular values of the product W_N...W_1"),
    "descent_ratio": (("k",), "1",
                      "descent ratio (L(k) - L(k+1)) / (eta_k ||grad L(k)||_F^2) (Prop. 3.4(4): >= sigma)"),
    "eta": (("k",), "1", "stepsize eta_k"),
    "t": (("k",), "1", "gradient-flow time t_k = eta_0 + ... + eta_(k-1)"),
    "final_weights": (("param",), "1", "final factors W_1..W_N flattened in C order (see attrs widths)"),
}

# ------------------------------------------------------------------------------------------------ attributes

#: numpy scalar / array dtypes that round-trip (float16 is stored as float32, bool as int8)
_NUMPY_TYPES = {
    "bool": np.bool_, "int8": np.int8, "int16": np.int16, "int32": np.int32, "int64": np.int64,
    "uint8": np.uint8, "uint16": np.uint16, "uint32": np.uint32, "uint64": np.uint64,
    "float16": np.float16, "float32": np.float32, "float64": np.float64,
}
_STR_DTYPE = re.compile(r"<U[0-9]{1,7}")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _plain_scalar(v: Any) -> Any:
    """A list element as a Python scalar (None, bool, int, float, str); TypeError for anything else."""
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, str):
        return str(v)
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, int | np.integer):
        return int(v)
    if isinstance(v, float | np.floating):
        return float(v)
    raise TypeError(type(v).__name__)


def _canonical(v: Any) -> Any:
    """The value an attribute has after a NetCDF round trip (see the module docstring)."""
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, np.generic):
        name = v.dtype.name
        if name in _NUMPY_TYPES:
            return v
        if v.dtype.kind == "f":  # longdouble
            return float(v)
        return str(v)  # numpy str_ (a str), bytes_, complex, datetime64, ...
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return float(v)
    if isinstance(v, str):
        return str(v)
    if isinstance(v, np.ndarray):
        if v.ndim == 0:
            return _canonical(v[()])
        if v.dtype.name in _NUMPY_TYPES or v.dtype.kind == "U":
            return np.array(v, dtype=v.dtype.newbyteorder("="), order="C")  # native byte order, as read back
        if v.dtype.kind == "O" and all(isinstance(x, str) for x in v.flat):
            return v.astype(str)
        if v.dtype.kind == "f":  # longdouble
            return v.astype(np.float64)
        return str(v.tolist())
    if isinstance(v, list | tuple):
        try:
            return [_plain_scalar(x) for x in v]
        except TypeError:
            return str(v)
    return str(v)


def clean_attrs(attrs: Mapping[Any, Any]) -> dict[str, Any]:
    """Attributes in the form `open` gives back after `save`: names as str, values as in the module docstring.

    Lists and tuples become lists; objects of other types become their ``str()``.
    """
    return {str(k): _canonical(v) for k, v in attrs.items() if str(k) != ATTR_TYPES}


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        return False
    return True


def _json(v: Any) -> str:
    """JSON text NetCDF can store: unicode kept readable unless it holds lone surrogates (then escaped)."""
    text = json.dumps(v, ensure_ascii=False)
    return text if _utf8(text) else json.dumps(v)


def _encode(v: Any) -> tuple[Any, Any]:
    """(value NetCDF can store, type tag or None) for a canonical attribute value."""
    if v is None:
        return "none", "none"
    if isinstance(v, bool):
        return np.int8(v), "bool"
    if isinstance(v, np.generic):
        name = v.dtype.name
        if name == "bool":
            return np.int8(v), "numpy.bool"
        if name == "float16":
            return np.float32(v), "numpy.float16"
        return v, f"numpy.{name}"
    if isinstance(v, int):
        if _INT64_MIN <= v <= _INT64_MAX:
            return np.int64(v), None
        return str(v), "int"
    if isinstance(v, float):
        return np.float64(v), None
    if isinstance(v, str):
        if "\x00" in v or not _utf8(v):  # NetCDF strings end at a NUL and must be UTF-8
            return json.dumps(v), "str"
        return v, None
    if isinstance(v, np.ndarray):
        tag = ["ndarray", v.dtype.name if v.dtype.kind != "U" else v.dtype.str, list(v.shape)]
        flat = v.ravel()
        if v.dtype.kind == "U":
            return _json(flat.tolist()), tag
        if v.dtype.kind == "b":
            return flat.astype(np.int8), tag
        if v.dtype.name == "float16":
            return flat.astype(np.float32), tag
        return flat.copy(), tag
    if isinstance(v, list):
        if v and all(isinstance(x, int) and not isinstance(x, bool) and _INT64_MIN <= x <= _INT64_MAX for x in v):
            return np.array(v, dtype=np.int64), "list_int"
        if v and all(isinstance(x, float) for x in v):
            return np.array(v, dtype=np.float64), "list_float"
        return _json(v), "list_json"
    raise TypeError(f"not a canonical attribute value: {type(v).__name__}")  # pragma: no cover


def encode_attrs(attrs: Mapping[Any, Any]) -> dict[str, Any]:
    """``clean_attrs(attrs)`` in a form NetCDF stores, with the companion `ATTR_TYPES` when a value needs it."""
    out: dict[str, Any] = {}
    tags: dict[str, Any] = {}
    for name, value in clean_attrs(attrs).items():
        stored, tag = _encode(value)
        out[name] = stored
        if tag is not None:
            tags[name] = tag
    if tags:
        out[ATTR_TYPES] = json.dumps(tags, sort_keys=True)
    return out


def _decode(raw: Any, tag: Any, name: str) -> Any:
    def bad(what: str) -> ValueError:
        return ValueError(f"attribute {name!r} (type tag {tag!r}): {what}, got {raw!r}")

    if tag is None:  # stored natively: a Python int or float, a string (or an older file's value as is)
        if isinstance(raw, np.int64):
            return int(raw)
        if isinstance(raw, np.float64):
            return float(raw)
        if isinstance(raw, np.str_):
            return str(raw)
        return raw
    if isinstance(tag, str):
        if tag == "none":
            return None
        if tag == "str" or tag == "list_json":
            if not isinstance(raw, str):
                raise bad("expected JSON text")
            try:
                val = json.loads(raw)
            except ValueError:
                raise bad("not valid JSON") from None
            if tag == "str":
                if not isinstance(val, str):
                    raise bad("expected a JSON string")
                return val
            if not isinstance(val, list) or not all(x is None or isinstance(x, bool | int | float | str)
                                                    for x in val):
                raise bad("expected a JSON list of scalars")
            return val
        if tag == "int":
            if not isinstance(raw, str) or not re.fullmatch(r"-?[0-9]+", raw):
                raise bad("expected a decimal integer")
            return int(raw)
        if tag not in ("bool", "numpy.bool", "list_int", "list_float") and not tag.startswith("numpy."):
            raise bad("unknown type tag")
        arr = np.atleast_1d(np.asarray(raw))
        if arr.dtype.kind not in "iuf" or arr.ndim != 1:
            raise bad("expected numbers")
        if tag == "bool" or tag == "numpy.bool":
            if arr.size != 1 or arr[0] not in (0, 1):
                raise bad("expected 0 or 1")
            return bool(arr[0]) if tag == "bool" else np.bool_(arr[0])
        if tag.startswith("numpy."):
            kind = _NUMPY_TYPES.get(tag[6:])
            if kind is None or arr.size != 1:
                raise bad("unknown numpy type or not a scalar")
            return kind(arr[0])
        if tag == "list_int":
            if arr.dtype.kind not in "iu":
                raise bad("expected integers")
            return [int(x) for x in arr]
        return [float(x) for x in arr]  # list_float
    if (isinstance(tag, list) and len(tag) == 3 and tag[0] == "ndarray" and isinstance(tag[1], str)
            and isinstance(tag[2], list) and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                                                 for n in tag[2])):
        shape = tuple(tag[2])
        size = math.prod(shape)
        if _STR_DTYPE.fullmatch(tag[1]):
            if not isinstance(raw, str):
                raise bad("expected JSON text")
            try:
                items = json.loads(raw)
            except ValueError:
                raise bad("not valid JSON") from None
            if not isinstance(items, list) or len(items) != size or not all(isinstance(x, str) for x in items):
                raise bad(f"expected a JSON list of {size} strings")
            return np.array(items, dtype=np.dtype(tag[1])).reshape(shape)
        kind = _NUMPY_TYPES.get(tag[1])
        arr = np.atleast_1d(np.asarray(raw))
        if kind is None or arr.dtype.kind not in "iuf" or arr.size != size:
            raise bad(f"expected {size} numbers of a known dtype")
        return arr.astype(kind).reshape(shape)
    raise bad("unknown type tag")


def decode_attrs(attrs: Mapping[Any, Any]) -> dict[str, Any]:
    """The inverse of `encode_attrs`: the values as they were before `save`, without the companion attribute.

    Raises ``ValueError`` when the companion is not a JSON map of known type tags or a value does not fit its
    tag (a damaged file).  Attributes without a tag are returned as stored (int64 / float64 scalars as Python
    int / float).
    """
    raw_tags = attrs.get(ATTR_TYPES)
    tags: dict[str, Any] = {}
    if raw_tags is not None:
        try:
            tags = json.loads(raw_tags) if isinstance(raw_tags, str) else None  # type: ignore[assignment]
        except ValueError:
            tags = None  # type: ignore[assignment]
        if not isinstance(tags, dict):
            raise ValueError(f"attribute {ATTR_TYPES!r} is not a JSON map of type tags: {raw_tags!r}")
        missing = sorted(set(tags) - {str(k) for k in attrs})
        if missing:
            raise ValueError(f"attribute {ATTR_TYPES!r} names attributes that are missing: {missing}")
    return {str(k): _decode(v, tags.get(str(k)), str(k)) for k, v in attrs.items() if str(k) != ATTR_TYPES}


# --------------------------------------------------------------------------------------------- the Datasets


def provenance() -> dict[str, Any]:
    """Versions of dlnsim and its numerical stack, and the creation time."""
    import numba
    import scipy

    from . import __version__

    return {
        "dlnsim_version": __version__,
        "numpy_version": np.__version__,
        "numba_version": numba.__version__,
        "scipy_version": scipy.__version__,
        "xarray_version": xr.__version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def build(
    data: dict[str, np.ndarray],
    coords: dict[str, np.ndarray],
    attrs: dict[str, Any],
    schema: dict[str, tuple[tuple[str, ...], str, str]] | None = None,
) -> xr.Dataset:
    """A Dataset whose variables carry the schema's dims, ``long_name`` and ``units``.

    ``schema`` adds entries (same form as `SCHEMA`) for variables that other modules define.  String (and
    other non-numeric) data variables get a ``long_name`` but no ``units``; coordinates always get both.
    The global attributes pass through `clean_attrs`, so the Dataset equals what `open` returns after `save`.
    """
    table = SCHEMA if schema is None else {**SCHEMA, **schema}

    def var(name: str, values: np.ndarray, coord: bool) -> xr.Variable:
        if name not in table:
            raise KeyError(f"{name!r} is not in the dataset schema")
        dims, units, long_name = table[name]
        v = xr.Variable(dims, values)
        numeric = v.dtype.kind in "biufc"  # (datetimes get their units from xarray's CF encoding)
        v.attrs = {"units": units, "long_name": long_name} if numeric or coord else {"long_name": long_name}
        return v

    ds = xr.Dataset(
        {name: var(name, v, False) for name, v in data.items()},
        coords={name: var(name, v, True) for name, v in coords.items()},
    )
    ds.attrs = {"Conventions": "CF-1.10", "format": FORMAT_TAG, **clean_attrs(attrs)}
    return ds


# -------------------------------------------------------------------------------------------- durable files

_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    """The process umask, read without changing it where possible (Linux: /proc/self/status)."""
    with contextlib.suppress(OSError, ValueError), builtins.open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    with _UMASK_LOCK:  # elsewhere: set and restore, with a restrictive mask in the short window
        old = os.umask(0o077)
        os.umask(old)
    return old


def _fsync_dir(directory: Path) -> None:
    """Flush a directory entry (a rename) to disk; a no-op where directories cannot be opened or synced."""
    if os.name == "nt":  # pragma: no cover
        return
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems refuse fsync on directories
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _target(path: str | os.PathLike[str], suffix: str | None) -> Path:
    path = Path(path)
    if suffix is not None and path.suffix != suffix:
        raise ValueError(f"path must end in {suffix}, got {str(path)!r}")
    if not path.parent.is_dir():
        raise ValueError(f"path: directory {str(path.parent)!r} does not exist")
    return path


def _publish(tmp: str, path: Path, durable: bool) -> None:
    """Give the finished temporary file the umask's mode, flush it, rename it to ``path``, flush the rename."""
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600
    if durable:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    os.replace(tmp, path)
    if durable:
        _fsync_dir(path.parent)


def save(ds: xr.Dataset, path: str | os.PathLike[str], *, durable: bool = True) -> Path:
    """Write ``ds`` to NetCDF-4 at ``path`` atomically (zlib-compressed floats, lossless).

    The file is written under a temporary name in the same directory, given the mode 0o666 & ~umask, flushed to
    disk (fsync), renamed to ``path`` and the directory is flushed too, so that after a crash ``path`` holds
    either the old file or the complete new one.  ``durable=False`` skips the two fsyncs (faster, still atomic
    against a crash of the process, not of the machine).  Attributes are encoded as the module docstring says.
    """
    if not isinstance(ds, xr.Dataset):
        raise ValueError(f"ds must be an xarray.Dataset, got {type(ds).__name__}")
    path = _target(path, ".nc")
    out = ds.copy()
    attrs = encode_attrs(ds.attrs)
    attrs.setdefault("format", FORMAT_TAG)
    out.attrs = attrs
    for name, v in ds.variables.items():
        out.variables[name].attrs = encode_attrs(v.attrs)
    # compress floats; checksum every numeric array (HDF5 Fletcher-32 per chunk), so that damaged data is
    # refused on reading instead of being returned silently
    encoding: dict[Hashable, dict[str, Any]] = {}
    for name, v in out.variables.items():
        if v.ndim > 0 and v.dtype.kind in "biuf":
            encoding[name] = {"fletcher32": True}
            if v.dtype.kind == "f":
                encoding[name].update(zlib=True, complevel=4)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    # with a dask.distributed Client active xarray routes the write lock through the scheduler, which makes
    # small writes several times slower; the data here is in memory, so write synchronously
    sync: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if "dask" in sys.modules:
        import dask

        sync = dask.config.set(scheduler="synchronous")
    try:
        with sync:
            out.to_netcdf(tmp, engine="netcdf4", format="NETCDF4", encoding=encoding)
        _publish(tmp, path, durable)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(obj: Any, path: str | os.PathLike[str], *, indent: int | None = 1,
                      durable: bool = True) -> Path:
    """Write ``obj`` as JSON (plus a final newline) to ``path`` with the guarantees of `save`.

    Temporary file in the same directory, mode 0o666 & ~umask, fsync of the file, rename, fsync of the
    directory.  Raises ``ValueError`` naming ``path`` when its directory does not exist; ``TypeError`` from
    `json.dump` for objects JSON cannot hold (nothing is written then).
    """
    path = _target(path, None)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=indent)
            fh.write("\n")
        _publish(tmp, path, durable)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def file_digest(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of the file's bytes, as 64 lowercase hex digits."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path: no such file {str(path)!r}")
    h = hashlib.sha256()
    with builtins.open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------ reading

_VALIDATE_SCRIPT = """\
import sys
import netCDF4

def walk(group):
    for name in group.ncattrs():
        group.getncattr(name)
    for var in group.variables.values():
        var.set_auto_maskandscale(False)
        for name in var.ncattrs():
            var.getncattr(name)
        var[...]
    for sub in group.groups.values():
        walk(sub)

with netCDF4.Dataset(sys.argv[1], "r") as nc:
    walk(nc)
"""


def _validation_command(path: Path) -> list[str]:
    """The command that reads every attribute and variable of ``path`` in a separate process."""
    return [sys.executable, "-I", "-c", _VALIDATE_SCRIPT, str(path)]


def _validate_in_subprocess(path: Path, timeout: float) -> None:
    try:
        res = subprocess.run(_validation_command(path), stdin=subprocess.DEVNULL, capture_output=True,
                             timeout=timeout, check=False)
    except subprocess.TimeoutExpired:  # run() has killed the reader
        raise ValueError(
            f"path: {str(path)!r} did not open within {timeout:g} s: damaged? (a separate reader was stopped)"
        ) from None
    if res.returncode < 0:
        raise ValueError(f"path: {str(path)!r} crashed a NetCDF reader (signal {-res.returncode}): damaged?")
    if res.returncode != 0:
        lines = res.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ValueError(
            f"path: {str(path)!r} is not a readable NetCDF file (truncated or corrupt?): "
            f"{lines[-1] if lines else 'reader exit status ' + str(res.returncode)}"
        )


def open(path: str | os.PathLike[str], timeout: float | None = None) -> xr.Dataset:
    """Read a file written by `save` fully into memory (the file is closed on return).

    ``timeout`` (seconds): a damaged file can make the NetCDF/HDF5 library spin forever, so with a timeout the
    file is first read completely by a separate Python process, stopped after ``timeout`` seconds (its start
    takes about half a second: allow for it).  A hang or crash there raises ``ValueError`` ("did not open
    within N s: damaged?").  Raises ``ValueError`` naming ``path`` for a missing, truncated, corrupt or foreign
    file, and for damaged attribute type tags.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path: no such file {str(path)!r}")
    t: Any = timeout
    if t is not None:
        if isinstance(t, str | bytes):
            raise ValueError(f"timeout must be a number of seconds or None, got {t!r}")
        _validate_in_subprocess(path, positive_float(t, "timeout (seconds)"))
    try:
        with xr.open_dataset(path, engine="netcdf4") as f:
            ds = f.load()
    except Exception as exc:  # netCDF4 raises OSError/RuntimeError/ValueError for damaged files
        raise ValueError(f"path: {str(path)!r} is not a readable NetCDF file (truncated or corrupt?): {exc}") from None
    if ds.attrs.get("format") != FORMAT_TAG:
        raise ValueError(f"path: {str(path)!r} is a NetCDF file but was not written by dlnsim (no format tag)")
    try:
        ds.attrs = decode_attrs(ds.attrs)
        for v in ds.variables.values():
            v.attrs = decode_attrs(v.attrs)
    except ValueError as exc:
        raise ValueError(f"path: {str(path)!r} has damaged attribute type tags: {exc}") from None
    return ds
