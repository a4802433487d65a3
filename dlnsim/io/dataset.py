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
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from dlnsim.checks import positive_float
from dlnsim.io import integrity
from dlnsim.io.attrs import ATTR_TYPES, clean_attrs, decode_attrs, encode_attrs

__all__ = [
    "ATTR_TYPES",
    "AXES",
    "LEGACY_NAMES",
    "RUN_ATTRS",
    "SCHEMA",
    "attr_variable_meta",
    "axis_meta",
    "build",
    "clean_attrs",
    "decode_attrs",
    "encode_attrs",
    "file_attrs",
    "file_digest",
    "legacy_attrs",
    "legacy_renames",
    "open",
    "outcome",
    "outcome_variable",
    "outcomes",
    "save",
    "write_json_atomic",
]

FORMAT_TAG = "dlnsim-results-2"
#: tags of older versions' files that `open` still reads (without a digest; their run outcomes are attributes,
#: which `outcome` reads too)
OLDER_FORMAT_TAGS = ("dlnsim-results",)

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
    "eta_k": (("k",), "1", "stepsize eta_k of the step from iteration k"),
    "t": (("k",), "1", "gradient-flow time t_k = eta_0 + ... + eta_(k-1)"),
    "final_weights": (("param",), "1", "final factors W_1..W_N flattened in C order (see attrs widths)"),
    # critical-stepsize searches: one entry per GD run of the search
    "trial": (("trial",), "1", "number of the GD run in the search (1 = first)"),
    "trial_eta": (("trial",), "1", "constant stepsize of the run"),
    "trial_outcome": (("trial",), "1", "converged, not_converged or diverged (see attribute criterion)"),
    "trial_final_loss": (("trial",), "1", "loss at the end of the run"),
    "trial_stop_iteration": (("trial",), "1", "iteration where the run ended (n_iter unless it stopped early)"),
}

#: grid axes: name -> (long_name, label); any other axis gets a generic entry (see `axis_meta`)
AXES: dict[str, tuple[str, str]] = {
    "N": ("depth N (number of layers)", "N"),
    "eta": ("stepsize eta (constant, or a1 = a2 of a power-decay schedule)", "η"),
    "eta_factor": ("stepsize as a multiple of the bound eta* (5.1) of the start (the stepsize is eta_value)",
                   "η/η*"),
    "seed": ("seed of the data and initialisation", "seed"),
    "gamma": ("decay rate gamma of the power-decay schedule", "γ"),
    "scale": ("initialisation scale", "scale"),
    "width": ("hidden width", "width"),
    "m": ("number of samples m", "m"),
    "alpha": ("alpha of Theorem 2.4", "α"),
    "beta": ("momentum coefficient beta of the step rule", "β"),
    "batch_size": ("batch size b of minibatch SGD", "b"),
}

#: attributes of one run that a combined grid always stores as variables over its axes (outcomes of the run
#: and quantities of its start, so that the layout does not depend on the values): name -> (long_name, label)
RUN_ATTRS: dict[str, tuple[str, str]] = {
    "status": ("run status (not_run: cell missing; error: the cell raised, see error)", "status"),
    "status_reason": ("why the run ended", "reason"),
    "stop_iteration": ("iteration where the run ended (-1: not run)", "k_stop"),
    "error": ("the exception a failed cell raised (empty: no error)", "error"),
    "search_status": ("ok, no_converging_eta or no_failing_eta (not_run: cell missing)", "search"),
    "final_loss": ("loss at the last evaluated iteration", "L_final"),
    "final_grad_norm_sq": ("||grad L||_F^2 at the last evaluated iteration", "|∇L|²_final"),
    "initial_loss": ("loss L(0) at the start", "L(0)"),
    "optimal_loss": ("least-squares optimum L*", "L*"),
    "eta_value": ("stepsize used (for a power-decay schedule: a1 = a2)", "η"),
    "widths": ("widths d_0..d_N of the network (-1 beyond N)", "d_j"),
    "min_descent_ratio": ("min over all steps of the descent ratio (Prop. 3.4(4))", "min ratio"),
    "max_loss_increase": ("max over all steps of L(k+1) - L(k) (Prop. 3.4(2))", "max ΔL"),
    "divergence_threshold": ("loss above which a run counts as diverged", "L_blowup"),
    "pivot_layer": ("layer where the kernels split the chain products", "pivot"),
    "q": ("rank of Q = Y X^T (X X^T)^(-1/2)", "q"),
    "bound_eta": ("bound eta* (5.1) of the start", "η*"),
    "bound_M": ("constant M of (2.11)", "M"),
    "bound_delta": ("delta of the bound", "δ"),
    "bound_K": ("K_delta of (2.10)", "K"),
    "bound_B": ("B_delta of (2.9)", "B"),
    "bound_sigma": ("sigma of Prop. 3.4(4)", "σ"),
    "bound_L0": ("initial loss used by the bound", "L(0)"),
    "bound_eta_descent": ("descent condition of (3.14)", "η_descent"),
    "bound_eta_balance": ("balancedness condition of (3.14)", "η_balance"),
    "bound_balancedness0": ("balancedness constant of W(0)", "balancedness(0)"),
    "eta_crit": ("largest stepsize found to converge (= eta_lo)", "η_crit"),
    "eta_lo": ("lower end of the final bracket (converges)", "η_lo"),
    "eta_hi": ("upper end of the final bracket (does not converge)", "η_hi"),
    "eta_star": ("bound eta* (5.1) of the start (NaN: unbalanced start)", "η*"),
    "ratio": ("eta_crit / eta_star", "η_crit/η*"),
    "n_trials": ("number of GD runs of the search", "trials"),
    "lambda_max_XXt": ("largest eigenvalue of X X^T", "λ_max(XXᵀ)"),
    "gtol_iteration": ("first iteration where ||grad L||_F <= gtol held (-1: never)", "k_gtol"),
    "ltol_iteration": ("first iteration where the excess-loss test held (-1: never)", "k_ltol"),
}
RUN_ATTRS.update({
    "final_excess_loss": ("excess loss L - L* at the last evaluated iteration", "excess_final"),
    "initial_excess_loss": ("excess loss L(0) - L* at the start", "excess(0)"),
    "gradient_scale": ("gradient scale ||Y X^T||_F ||W_ls||_F^((N-1)/N) of the gradient test", "g_scale"),
    "gtol_abs": ("threshold of the gradient test on ||grad L||_F (gtol x gradient scale)", "gtol_abs"),
    "ltol_abs": ("threshold of the loss test on L - L* (-1: no loss test)", "ltol_abs"),
    "bound_alpha": ("alpha of Theorem 2.4 used by the bound", "α"),
    "bound_N": ("depth N of the bound", "N"),
    "bound_rule": ("how delta of the bound was chosen", "δ rule"),
    "bound_k_constant": ("which K_delta the bound uses", "K rule"),
    "bound_eta_closed_form": ("closed-form bound of Remark 2.5(b) (NaN unless that rule)", "η_closed"),
    "n_steps": ("accepted steps of the flow integration", "steps"),
    "n_rejected": ("rejected steps of the flow integration", "rejected"),
    "n_rhs": ("evaluations of the flow's right-hand side", "rhs"),
    "n_times_done": ("number of requested times reached", "times done"),
    "t_reached": ("time the flow integration reached", "t_reached"),
    "first_step": ("first step size of the integration", "h0"),
    "end_to_end_rank": ("rank of the end-to-end product at the start", "rank"),
    "initial_balancedness_rel": ("balancedness of W(0) relative to max_j ||W_j||^2", "balancedness(0)"),
})
for _kind in ("factor", "modified", "end_to_end"):  # outcomes of the flows that compare_flow integrates
    RUN_ATTRS[f"flow_{_kind}_status"] = (f"status of the {_kind} flow integration", "flow status")
    RUN_ATTRS[f"flow_{_kind}_n_steps"] = (f"accepted steps of the {_kind} flow integration", "steps")
    RUN_ATTRS[f"flow_{_kind}_n_rejected"] = (f"rejected steps of the {_kind} flow integration", "rejected")
    RUN_ATTRS[f"flow_{_kind}_t_reached"] = (f"time the {_kind} flow integration reached", "t")


def axis_meta(name: str) -> dict[str, Any]:
    """``units``, ``long_name`` and ``label`` of a grid axis."""
    long_name, label = AXES.get(name, (f"grid axis {name}", name))
    return {"units": "1", "long_name": long_name, "label": label}


def attr_variable_meta(name: str) -> dict[str, Any]:
    """``long_name`` and ``label`` of a run attribute stored as a variable of a combined grid."""
    long_name, label = RUN_ATTRS.get(name, (f"per-run attribute {name}", name))
    return {"long_name": long_name, "label": label}


def provenance() -> dict[str, Any]:
    """Versions of dlnsim and its numerical stack, and the creation time."""
    import numba
    import scipy

    from dlnsim import __version__

    created = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    return {
        "dlnsim_version": __version__,
        "numpy_version": np.__version__,
        "numba_version": numba.__version__,
        "scipy_version": scipy.__version__,
        "xarray_version": xr.__version__,
        "created": created,
        "history": history_line(),
    }


#: the CF conventions the files follow
CONVENTIONS = "CF-1.11"


def history_line() -> str:
    """The CF ``history`` line of a file dlnsim makes: the version that made it (the time is the attribute
    ``created``, so that two runs with the same inputs differ in ``created`` alone)."""
    from dlnsim import __version__

    return f"made by dlnsim {__version__}"


def file_attrs(title: str) -> dict[str, Any]:
    """The global attributes every file dlnsim makes carries: ``title``, the CF ``Conventions`` and ``history``
    and the format tag (for Datasets that `build` does not make: a failed grid cell, runs combined by hand)."""
    return {"title": title, "Conventions": CONVENTIONS, "history": history_line(), "format": FORMAT_TAG}


def build(
    data: dict[str, np.ndarray],
    coords: dict[str, np.ndarray],
    attrs: dict[str, Any],
    schema: dict[str, tuple[tuple[str, ...], str, str]] | None = None,
    outcomes: dict[str, Any] | None = None,
) -> xr.Dataset:
    """A Dataset whose variables carry the schema's dims, ``long_name`` and ``units``.

    ``schema`` adds entries (same form as `SCHEMA`) for variables that other modules define.  String (and
    other non-numeric) data variables get a ``long_name`` but no ``units``; coordinates always get both.
    ``outcomes`` (name -> a number, a string or None) become 0-d variables described by `RUN_ATTRS`: what a run
    found (status, stop and test iterations, losses, bound constants), stored like the outcomes of a grid's
    cells, so that a run and a grid are read the same way and ``xarray.concat`` of runs keeps them.  None
    becomes NaN.  The global attributes (settings and provenance) pass through `clean_attrs`, so the Dataset
    equals what `open` returns after `save`.
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

    # one constructor call: assigning variables one by one costs xarray a merge each (tens of ms per run)
    variables = {name: var(name, v, False) for name, v in data.items()}
    variables.update({name: outcome_variable(name, value) for name, value in (outcomes or {}).items()})
    ds = xr.Dataset(variables, coords={name: var(name, v, True) for name, v in coords.items()})
    ds.attrs = {"Conventions": CONVENTIONS, "format": FORMAT_TAG, **clean_attrs(attrs)}
    return ds


def outcome_variable(name: str, value: Any) -> xr.Variable:
    """The 0-d variable of one outcome of a run (see `build`)."""
    if value is None:
        value = np.nan
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        arr = np.asarray(np.int8(value))
    elif isinstance(value, int):
        arr = np.asarray(np.int64(value))
    elif isinstance(value, float):
        arr = np.asarray(np.float64(value))
    elif isinstance(value, str):
        arr = np.asarray(value, dtype=object)
    else:
        raise TypeError(f"outcome {name!r}: expected a number, a string or None, got {type(value).__name__}")
    meta = attr_variable_meta(name)
    if arr.dtype.kind in "biuf":
        meta = {"units": "1", **meta}
    return xr.Variable((), arr, attrs=meta)


def outcomes(ds: xr.Dataset) -> dict[str, Any]:
    """Every outcome of a run (its 0-d variables) as Python values."""
    return {str(name): v.values.item() for name, v in ds.data_vars.items() if v.ndim == 0}


def outcome(ds: xr.Dataset, name: str, default: Any = None) -> Any:
    """An outcome of a run as a Python value: its 0-d variable, or (files of older versions, runs made by
    hand) its attribute; ``default`` when it has neither."""
    if name in ds.data_vars and ds[name].ndim == 0:
        return ds[name].values.item()
    return ds.attrs.get(name, default)


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
    either the old file or the complete new one.  Attributes are encoded as the module docstring says; every
    numeric array is checksummed (HDF5 Fletcher-32) and the file carries a SHA-256 of all it holds (attribute
    ``dlnsim_digest``, see ``dlnsim.io.integrity``), so that `open` refuses damaged data.  Ctrl-C during the write
    takes effect when it is complete.

    Parameters
    ----------
    ds : xarray.Dataset
        The dataset to write (not modified).
    path : str or os.PathLike
        Target file; must end in ``.nc`` and its directory must exist.  An existing file is replaced.
    durable : bool, default True
        Whether to fsync the file and the directory; ``False`` skips the two fsyncs (faster, still atomic
        against a crash of the process, not of the machine).

    Returns
    -------
    pathlib.Path
        ``path`` as a `pathlib.Path`.

    Raises
    ------
    ValueError
        If ``ds`` is not an `xarray.Dataset`, ``path`` does not end in ``.nc`` or its directory does not exist.
    OSError
        When writing fails; naming the directory and the reason when the file system is full or the process's
        file-size limit was reached.
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
    out = _labelled_index(out)
    for name, v in out.variables.items():
        if v.ndim > 0 and v.dtype.kind in "biuf":
            encoding[name] = {"fletcher32": True}
            if v.dtype.kind == "f":
                encoding[name].update(zlib=True, complevel=4)
        if name in out.coords:
            # CF: coordinates have no missing values, so no fill value (xarray gives float ones NaN)
            encoding.setdefault(name, {})["_FillValue"] = None
    out.attrs.pop(integrity.DIGEST_ATTR, None)
    # with a dask.distributed Client active xarray routes the write lock through the scheduler, which makes
    # small writes several times slower; the data here is in memory, so write synchronously
    sync: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if "dask" in sys.modules:
        import dask

        sync = dask.config.set(scheduler="synchronous")
    # Ctrl-C waits for the end of the write: an interrupted NetCDF write can leave xarray's HDF5 lock held,
    # and every later write in this process would wait on it
    with integrity.defer_sigint():
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            try:
                with sync:
                    out.to_netcdf(tmp, engine="netcdf4", format="NETCDF4", encoding=encoding)
                _add_digest(tmp)
            except Exception as exc:
                full = _no_room(path.parent, tmp, exc)
                if full is not None:
                    raise full from None
                raise
            _publish(tmp, path, durable)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return path


#: attribute of an integer index that stands in a file for a dimension coordinate of text values
LABELS_ATTR = "dlnsim_labels"


def _labelled_index(ds: xr.Dataset) -> xr.Dataset:
    """Text-valued dimension coordinates (``case``, ``init``, ...) as CF wants them in a file: the dimension
    coordinate an integer index 0..n-1, the text an auxiliary coordinate ``<name>_label`` along it (with the
    coordinate's attributes); `open` puts them back."""
    for name in [str(c) for c in ds.coords if ds[c].dims == (c,) and ds[c].dtype.kind in "OUS"]:
        label = f"{name}_label"
        if label in ds.variables:
            continue  # an unusual name clash: left as it is
        var = ds[name].variable
        n = var.shape[0]
        ds = ds.assign_coords({label: xr.Variable((name,), np.asarray(var.values, dtype=object), attrs=var.attrs)})
        index = xr.Variable((name,), np.arange(n, dtype=np.int64),
                            attrs={"units": "1", "long_name": f"index of {name} (its values are in {label})",
                                   LABELS_ATTR: label})
        ds = ds.assign_coords({name: index})
    return ds


def _restore_labels(ds: xr.Dataset) -> xr.Dataset:
    """The inverse of `_labelled_index`, on a Dataset read from a file."""
    for name in [str(c) for c in ds.coords if LABELS_ATTR in ds[c].attrs]:
        label = str(ds[name].attrs[LABELS_ATTR])
        if label not in ds.variables or ds[label].dims != (name,):
            continue
        lab = ds[label].variable
        ds = ds.drop_vars(label).assign_coords({name: xr.Variable((name,), lab.values, attrs=lab.attrs)})
    return ds


#: names that files of earlier versions used -> (current name, the earlier long_name, the current long_name): a
#: flow's time dimension was ``time``, which CF readers take for a calendar time (units "<unit> since <date>")
LEGACY_NAMES: dict[str, tuple[str, str, str]] = {"time": ("t", "gradient-flow time t", "flow time t")}


def legacy_renames(variables: dict[str, tuple[tuple[str, ...], dict[str, Any]]]) -> dict[str, str]:
    """The renames that bring a file of an earlier version to the current names, from its variables (name ->
    (dims, attributes)): ``time`` -> ``t`` for a flow's time (a dimension coordinate ``time`` with units "1"
    and the long_name that version gave it, in a file that has no ``t``).  Any other ``time`` is left alone."""
    out: dict[str, str] = {}
    for old, (new, before, _) in LEGACY_NAMES.items():
        dims, attrs = variables.get(old, ((), {}))
        if (tuple(dims) == (old,) and str(attrs.get("units", "")) == "1" and attrs.get("long_name") == before
                and new not in variables):
            out[old] = new
    return out


def legacy_attrs(old: str, attrs: dict[str, Any]) -> dict[str, Any]:
    """The attributes of the variable renamed from ``old``, with the current long_name."""
    return {**attrs, "long_name": LEGACY_NAMES[old][2]}


def _rename_legacy(ds: xr.Dataset) -> xr.Dataset:
    """A Dataset read from a file of an earlier version under the current names (see `legacy_renames`)."""
    renames = legacy_renames({str(n): (tuple(str(d) for d in v.dims), dict(v.attrs)) for n, v in ds.variables.items()})
    if not renames:
        return ds
    ds = ds.rename(renames)
    for old, new in renames.items():
        ds[new].attrs = legacy_attrs(old, dict(ds[new].attrs))
    return ds


def _add_digest(tmp: str) -> None:
    """Store the digest of the file's contents in the file (read back through the library, as `open` will)."""
    import netCDF4

    with netCDF4.Dataset(tmp, mode="a") as nc:
        nc.setncattr(integrity.DIGEST_ATTR, "sha256:" + integrity.netcdf_digest(nc))


def _no_room(directory: Path, tmp: str, exc: Exception) -> OSError | None:
    """The OSError to raise instead of the library's ``NetCDF: HDF error`` when the write failed for lack of
    room: a full file system or the process's file-size limit (``ulimit -f``).  None when neither is the case."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return None  # already says so
    with contextlib.suppress(OSError, ValueError, ImportError):
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
        # the write stopped at the limit (HDF5 writes in pieces of up to some 64 KiB)
        if soft != resource.RLIM_INFINITY and os.stat(tmp).st_size + (64 << 10) >= soft:
            return OSError(errno.EFBIG, f"the file-size limit of this process ({soft} bytes, ulimit -f) was reached "
                           f"while writing ({type(exc).__name__}: {exc})", str(directory))
    with contextlib.suppress(OSError, AttributeError):
        st = os.statvfs(directory)
        free = st.f_bavail * st.f_frsize
        if free < 1 << 20:
            return OSError(errno.ENOSPC, f"no space left on the device ({free} bytes free) while writing "
                           f"({type(exc).__name__}: {exc})", str(directory))
    return None


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
import math
import os
import sys
import netCDF4

def walk(group, limit):
    declared = sum(math.prod(v.shape) * (v.dtype.itemsize if hasattr(v.dtype, "itemsize") else 64)
                   for v in group.variables.values())
    if declared > limit:  # checked before reading: unwritten chunks read as fill values, without bound
        sys.exit(f"declares {declared} bytes of variables in a file of {os.path.getsize(sys.argv[1])} bytes")
    for name in group.ncattrs():
        group.getncattr(name)
    for var in group.variables.values():
        var.set_auto_maskandscale(False)
        for name in var.ncattrs():
            var.getncattr(name)
        var[...]
    for sub in group.groups.values():
        walk(sub, limit)

with netCDF4.Dataset(sys.argv[1], "r") as nc:
    walk(nc, int(sys.argv[2]))
"""


def _validation_command(path: Path) -> list[str]:
    """The command that reads every attribute and variable of ``path`` in a separate process."""
    limit = integrity.DECLARED_PER_FILE_BYTE * path.stat().st_size + (1 << 20)
    return [sys.executable, "-I", "-c", _VALIDATE_SCRIPT, str(path), str(limit)]


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

    Parameters
    ----------
    path : str or os.PathLike
        A NetCDF file written by `save`.
    timeout : float, optional
        Seconds, finite and > 0; default None (no separate reader).  A damaged file can make the NetCDF/HDF5
        library spin forever, so with a timeout the file is first read completely by a separate Python
        process, stopped after ``timeout`` seconds (its start takes about half a second: allow for it).

    Returns
    -------
    xarray.Dataset
        The dataset, loaded into memory, with its attributes decoded.

    Raises
    ------
    ValueError
        Naming ``path`` for a missing, truncated, corrupt or foreign file (one without dlnsim's format tag), and
        for damaged attribute type tags, for data that does not match the digest the file carries, for a file
        that declares far more data than it could hold (unwritten chunks would read as fill values, gigabytes of
        them from a few kilobytes); when the separate reader hangs or crashes ("did not open within N s:
        damaged?"); and when ``timeout`` is not a positive number or None.

    Examples
    --------
    >>> import os, tempfile
    >>> import dlnsim
    >>> problem, widths, W0 = dlnsim.paper_setup(N=2, seed=0, d=8, m=24)
    >>> ds = dlnsim.run_gd(problem, W0, "bound", 100, record="log:10")
    >>> path = dlnsim.save(ds, os.path.join(tempfile.mkdtemp(), "run.nc"))
    >>> again = dlnsim.load(path)  # dlnsim.load is this function
    >>> again["status"].item() == ds["status"].item(), again["loss"].attrs["units"]
    (True, '1')
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path: no such file {str(path)!r}")
    t: Any = timeout
    if t is not None:
        if isinstance(t, str | bytes):
            raise ValueError(f"timeout must be a number of seconds or None, got {t!r}")
        _validate_in_subprocess(path, positive_float(t, "timeout (seconds)"))
    where = f"path: {str(path)!r}"
    try:
        # one read of the bytes: what is checked below is what xarray decodes (no second look at the disk)
        data = integrity.read_regular(path, sys.maxsize, follow=True)
    except ValueError as exc:
        raise ValueError(f"path: {exc}") from None
    with integrity.defer_sigint():  # an interrupted read can leave xarray's HDF5 lock held, as a write can
        return _open_bytes(data, where)


def _open_bytes(data: bytes, where: str) -> xr.Dataset:
    import netCDF4

    try:
        nc = netCDF4.Dataset("memory.nc", mode="r", memory=data)
    except Exception as exc:  # netCDF4 raises OSError/RuntimeError/ValueError for damaged files
        raise ValueError(f"{where} is not a readable NetCDF file (truncated or corrupt?): {exc}") from None
    try:
        try:
            fmt = nc.getncattr("format") if "format" in nc.ncattrs() else None
        except Exception as exc:
            raise ValueError(f"{where} is not a readable NetCDF file (truncated or corrupt?): {exc}") from None
        if fmt not in (FORMAT_TAG, *OLDER_FORMAT_TAGS):
            raise ValueError(f"{where} is a NetCDF file but was not written by dlnsim (no format tag)"
                             if fmt is None else f"{where} has the format tag {fmt!r}, not one dlnsim reads")
        try:
            integrity.check_netcdf(nc, len(data), where)
            if fmt == FORMAT_TAG:  # files of older versions carry no digest
                integrity.check_digest(nc, where)
            ds = xr.open_dataset(xr.backends.NetCDF4DataStore(nc)).load()  # type: ignore[no-untyped-call]
        except ValueError as exc:
            if str(exc).startswith(where):
                raise
            raise ValueError(f"{where} is not a readable NetCDF file (truncated or corrupt?): {exc}") from None
        except Exception as exc:
            raise ValueError(f"{where} is not a readable NetCDF file (truncated or corrupt?): {exc}") from None
    finally:
        with contextlib.suppress(Exception):
            nc.close()
    ds.attrs.pop(integrity.DIGEST_ATTR, None)
    try:
        ds.attrs = decode_attrs(ds.attrs)
        for v in ds.variables.values():
            v.attrs = decode_attrs(v.attrs)
    except ValueError as exc:
        raise ValueError(f"{where} has damaged attribute type tags: {exc}") from None
    return _rename_legacy(_restore_labels(ds))
