"""Exact round trip of NetCDF attributes (the codec behind `dlnsim.save` and `dlnsim.load`; see `dlnsim.io.dataset`)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["ATTR_TYPES", "clean_attrs", "decode_attrs", "encode_attrs"]

#: name of the companion attribute that records the types of the other attributes (reserved)
ATTR_TYPES = "dlnsim_attr_types"

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
