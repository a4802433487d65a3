"""Results as self-describing xarray Datasets, and atomic NetCDF files (DESIGN §4).

`SCHEMA` names every variable and coordinate dlnsim writes: its dims, ``units``, ``long_name`` and a short
description.  `build` applies it, `save` writes through a temporary file in the target directory and
renames it into place (a crash never leaves a half-written file under the final name), and `open` loads a
file fully into memory and refuses files that are truncated or were not written by dlnsim.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["SCHEMA", "open", "save"]

FORMAT_TAG = "dlnsim-results"

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


def _attr_value(v: Any) -> Any:
    """A NetCDF-storable attribute: bools -> int, None -> 'none', sequences -> arrays, numpy scalars -> Python."""
    if isinstance(v, bool | np.bool_):
        return int(v)
    if v is None:
        return "none"
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, list | tuple | np.ndarray):
        arr = np.asarray(v)
        if arr.dtype.kind in "iub":
            return arr.astype(np.int64)
        if arr.dtype.kind == "f":
            return arr.astype(np.float64)
        return ", ".join(str(x) for x in v)
    if isinstance(v, int | float | str):
        return v
    return str(v)


def clean_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    return {str(k): _attr_value(v) for k, v in attrs.items()}


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
    """A Dataset whose variables carry the schema's dims, units and long_name.

    ``schema`` adds entries (same form as `SCHEMA`) for variables that other modules define.
    """
    table = SCHEMA if schema is None else {**SCHEMA, **schema}

    def var(name: str, values: np.ndarray) -> xr.Variable:
        if name not in table:
            raise KeyError(f"{name!r} is not in the dataset schema")
        dims, units, long_name = table[name]
        return xr.Variable(dims, values, attrs={"units": units, "long_name": long_name})

    ds = xr.Dataset(
        {name: var(name, v) for name, v in data.items()},
        coords={name: var(name, v) for name, v in coords.items()},
    )
    ds.attrs = {"Conventions": "CF-1.10", "format": FORMAT_TAG, **clean_attrs(attrs)}
    return ds


def save(ds: xr.Dataset, path: str | os.PathLike[str]) -> Path:
    """Write ``ds`` to NetCDF-4 at ``path`` atomically (zlib-compressed floats, lossless)."""
    if not isinstance(ds, xr.Dataset):
        raise ValueError(f"ds must be an xarray.Dataset, got {type(ds).__name__}")
    path = Path(path)
    if path.suffix != ".nc":
        raise ValueError(f"path must end in .nc, got {str(path)!r}")
    if not path.parent.exists():
        raise ValueError(f"path: directory {str(path.parent)!r} does not exist")
    out = ds.copy()
    out.attrs = clean_attrs(dict(ds.attrs))
    out.attrs.setdefault("format", FORMAT_TAG)
    encoding = {
        name: {"zlib": True, "complevel": 4}
        for name, v in out.variables.items()
        if v.dtype.kind == "f" and v.ndim > 0
    }
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
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def open(path: str | os.PathLike[str]) -> xr.Dataset:
    """Read a file written by `save` fully into memory (the file is closed on return)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path: no such file {str(path)!r}")
    try:
        with xr.open_dataset(path, engine="netcdf4") as f:
            ds = f.load()
    except Exception as exc:  # netCDF4 raises OSError/RuntimeError/ValueError for damaged files
        raise ValueError(f"path: {str(path)!r} is not a readable NetCDF file (truncated or corrupt?): {exc}") from None
    if ds.attrs.get("format") != FORMAT_TAG:
        raise ValueError(f"path: {str(path)!r} is a NetCDF file but was not written by dlnsim (no format tag)")
    return ds
