"""Options of a run, as small frozen objects: what to record (`Record`), when to stop (`Stop`), how exactly to
integrate a flow (`Tolerances`) and where the cells of a grid run (`Engine`).

Each object validates itself once, when it is made, and every error names the field (``Stop.gtol``).  Each
has ``to_json()`` / ``from_json()`` (a plain dict with a ``"type"`` key), which is how sweeps put them in a
grid's manifest: a resumed sweep compares them as they are, with no list of keys kept by hand.  Functions that
take an option also take the plain value where that is unambiguous: ``record="log"`` is ``Record("log")``,
``stop=None`` is ``Stop()``.

`Record`
    ``points``: *where along the run* the state is recorded, for every kind of run:

    * gradient descent (iterations k): ``"log"`` (about 200 log-spaced iterations, the default), ``"log:N"``,
      ``"linear:N"`` (N equally spaced iterations), ``"all"``, ``"every:N"`` or an int N (every N-th),
      `Every` / `LogSpaced`, or an array of iterations.  The first (0) and the last (n_iter) iteration are
      always included, and so is the iteration where a run stopped early (unless ``stop_point=False``).
    * gradient flows (times t): an array of times, or with a final time T: ``"linear"`` / ``"linear:N"``
      (N equally spaced times in [0, T], default 200, the default) or ``"log"`` / ``"log:N"`` (0 and N - 1
      log-spaced times in [1e-6 T, T]).

    ``None`` (the default) takes the run's default.  ``diagnostics``: *which state diagnostics*: True (all,
    the default), False (none) or a collection of names from ``DIAGNOSTICS``: ``grad_norm_sq``
    (||grad L^N||_F^2), ``balancedness`` (per pair, with its max ``balancedness_max``), ``layer_norm_sq``
    (||W_j||^2 per layer) and ``product_sv`` (singular values of the product).  The loss and the excess loss
    are always recorded (and for GD the stepsize, the descent ratio and the time t_k).  ``final_weights``:
    store the final factors.

`Stop`
    The convergence tests of gradient descent and its divergence threshold (see `dlnsim.run_gd`): ``gtol``,
    ``ltol``, ``early`` (stop at the first iteration where a test holds) and ``blowup``.

`Tolerances`
    The flow integrator's tolerances: ``rtol``, ``atol``, ``max_steps``, ``first_step``, ``fixed_step`` and
    ``balance_tol`` (how balanced a start of the end-to-end flow must be).

`Engine`
    Where the cells of a sweep run: ``executor``, ``workers``, ``client``, ``scheduler``, ``progress``.  It
    never changes a number, so it is not part of a grid's manifest.

Records are refused before anything is allocated when they would not fit in memory: more than
``MAX_RECORD_BYTES`` of records, or more than ``MAX_N_ITER`` iterations.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np

from dlnsim.checks import flag, nonneg_int, positive_float

__all__ = ["DIAGNOSTICS", "MAX_N_ITER", "MAX_RECORD_BYTES", "Engine", "Every", "LogSpaced", "Record", "Stop",
           "Tolerances", "as_engine", "as_record", "as_stop", "as_tolerances", "diagnostics_set", "flow_times",
           "record_points"]

#: the optional state diagnostics, in the order they are stored
DIAGNOSTICS = ("grad_norm_sq", "balancedness", "layer_norm_sq", "product_sv")
#: largest total size of the records of one run (bytes)
MAX_RECORD_BYTES = 2**30
#: largest number of iterations of one run
MAX_N_ITER = 2**62


def _size(n_bytes: float) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.3g} {unit}"
    return f"{n_bytes:.0f} B"


def check_size(n_rows: int, row_floats: int, name: str) -> None:
    """ValueError naming ``name`` when n_rows x row_floats float64 values exceed ``MAX_RECORD_BYTES``."""
    n_bytes = float(n_rows) * float(max(row_floats, 1)) * 8.0
    if n_bytes > MAX_RECORD_BYTES:
        raise ValueError(
            f"{name}: {n_rows} record points x {row_floats} values would take {_size(n_bytes)}, more than "
            f"{_size(MAX_RECORD_BYTES)}; record fewer points (e.g. 'log')"
        )


@dataclass(frozen=True)
class Every:
    """Record every n-th iteration (and the last)."""

    n: int

    def __post_init__(self) -> None:
        nonneg_int(self.n, "record (every n-th iteration)", minimum=1)

    def count(self, n_iter: int) -> int:
        return n_iter // self.n + 2

    def points(self, n_iter: int) -> np.ndarray:
        return np.union1d(np.arange(0, n_iter + 1, self.n, dtype=np.int64), [n_iter])

    def describe(self) -> str:
        return f"every {self.n}"


@dataclass(frozen=True)
class LogSpaced:
    """About n log-spaced iterations, plus the first (0) and the last; all iterations when n > n_iter."""

    n: int = 200

    def __post_init__(self) -> None:
        nonneg_int(self.n, "record (number of log-spaced points)", minimum=2)

    def count(self, n_iter: int) -> int:
        return min(self.n, n_iter + 1) + 2

    def points(self, n_iter: int) -> np.ndarray:
        if n_iter == 0:
            return np.zeros(1, dtype=np.int64)
        if self.n >= n_iter + 1:
            return np.arange(n_iter + 1, dtype=np.int64)
        pts = np.round(np.logspace(0.0, math.log10(n_iter), self.n))
        pts = np.unique(np.clip(pts, 1.0, float(n_iter)).astype(np.int64))  # rounding may pass n_iter
        return np.union1d(pts[pts < n_iter], [0, n_iter]).astype(np.int64)

    def describe(self) -> str:
        return f"log-spaced {self.n}"


@dataclass(frozen=True)
class Linear:
    """About n equally spaced iterations, the first (0) and the last included; all iterations when n > n_iter."""

    n: int = 200

    def __post_init__(self) -> None:
        nonneg_int(self.n, "record (number of equally spaced points)", minimum=2)

    def count(self, n_iter: int) -> int:
        return min(self.n, n_iter + 1) + 1

    def points(self, n_iter: int) -> np.ndarray:
        if self.n >= n_iter + 1:
            return np.arange(n_iter + 1, dtype=np.int64)
        return np.unique(np.round(np.linspace(0.0, float(n_iter), self.n)).astype(np.int64))

    def describe(self) -> str:
        return f"linear {self.n}"


class _Points:
    def __init__(self, pts: np.ndarray) -> None:
        self.pts = pts

    def count(self, n_iter: int) -> int:
        return int(self.pts.size) + 2

    def points(self, n_iter: int) -> np.ndarray:
        if self.pts.size and (self.pts[0] < 0 or self.pts[-1] > n_iter):
            raise ValueError(f"record: iterations must lie in [0, n_iter = {n_iter}]")
        return np.union1d(self.pts, [0, n_iter]).astype(np.int64)

    def describe(self) -> str:
        return f"explicit {self.pts.size}"


Rule = Every | LogSpaced | Linear | _Points

_RECORD_FORMS = ("'log', 'log:N', 'linear:N', 'all', 'every:N', an int N, Every(N), LogSpaced(N) or an array of "
                 "iterations")


def _count(text: str, record: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"record must be {_RECORD_FORMS}; N in {record!r} is not an integer") from None


def record_rule(record: Any) -> Rule:
    """The record rule of a ``record`` argument of `run_gd`; ValueError naming ``record`` otherwise."""
    if isinstance(record, Every | LogSpaced | Linear):
        return record
    if isinstance(record, str):
        if record == "log":
            return LogSpaced()
        if record == "all":
            return Every(1)
        if record.startswith("log:"):
            return LogSpaced(_count(record[4:], record))
        if record.startswith("every:"):
            return Every(_count(record[6:], record))
        if record.startswith("linear:"):
            return Linear(_count(record[7:], record))
        raise ValueError(f"record must be {_RECORD_FORMS}, got {record!r}")
    if isinstance(record, int | np.integer) and not isinstance(record, bool | np.bool_):
        return Every(int(record))
    if isinstance(record, Sequence | np.ndarray) and not isinstance(record, bytes):
        arr = np.asarray(record)
        if arr.dtype.kind not in "iu" or arr.ndim != 1:
            raise ValueError("record: an explicit list of iterations must be a 1-D sequence of integers")
        return _Points(np.unique(arr.astype(np.int64)))
    raise ValueError(f"record must be {_RECORD_FORMS}, got {record!r}")


def checked_n_iter(n_iter: Any) -> int:
    """n_iter as an int in [0, MAX_N_ITER]; ValueError naming n_iter otherwise."""
    n = nonneg_int(n_iter, "n_iter")
    if n > MAX_N_ITER:
        raise ValueError(f"n_iter must be at most 2**62 = {MAX_N_ITER}, got {n}")
    return n


def record_points(n_iter: int, record: Any = "log") -> np.ndarray:
    """The iterations (sorted, first and last included) at which `run_gd` records (a run that stops early
    also records the iteration where it stopped).

    Parameters
    ----------
    n_iter : int
        Number of GD iterations, an integer in [0, 2**62].
    record : str, int, Every, LogSpaced or sequence of int, default "log"
        The record rule, as ``record`` of `run_gd`: ``"log"`` / ``"log:N"`` (about N log-spaced iterations,
        default 200, all iterations when N > n_iter), ``"all"``, ``"every:N"`` or an int N (every N-th
        iteration), an `Every` or `LogSpaced`, or an explicit 1-D sequence of integer iterations in
        [0, n_iter].

    Returns
    -------
    numpy.ndarray
        The sorted, unique int64 iterations, 0 and ``n_iter`` included.

    Raises
    ------
    ValueError
        If ``n_iter`` is not an integer in [0, 2**62], ``record`` is not one of the forms above (or an explicit
        iteration lies outside [0, n_iter]), or the record would exceed the size limit.
    """
    n = checked_n_iter(n_iter)
    rule = record_rule(record)
    check_size(rule.count(n), 1, "record")
    return rule.points(n)


def diagnostics_set(diagnostics: Any, name: str = "diagnostics") -> tuple[str, ...]:
    """The diagnostics selected by ``diagnostics`` (True, False or names from ``DIAGNOSTICS``), in the
    order of ``DIAGNOSTICS``; errors name ``name``."""
    if isinstance(diagnostics, bool | np.bool_):
        return DIAGNOSTICS if diagnostics else ()
    if isinstance(diagnostics, str):
        diagnostics = (diagnostics,)
    if not isinstance(diagnostics, Collection):
        raise ValueError(f"{name} must be True, False or a list of names from {list(DIAGNOSTICS)}, "
                         f"got {diagnostics!r}")
    names = list(diagnostics)
    bad = [d for d in names if not isinstance(d, str) or d not in DIAGNOSTICS]
    if bad:
        raise ValueError(f"{name}: unknown name(s) {bad}; choose from {list(DIAGNOSTICS)}")
    return tuple(d for d in DIAGNOSTICS if d in names)


def flow_times(T: Any, record: Any = "linear", row_floats: int = 1) -> np.ndarray:
    """The times at which `run_flow` records for a final time ``T``: ``"linear"`` / ``"linear:N"`` (N equally
    spaced times in [0, T], default 200) or ``"log"`` / ``"log:N"`` (0 and N - 1 log-spaced times in
    [1e-6 T, T], default 200).  ``row_floats``: the values recorded per time, for the size check."""
    T = positive_float(T, "t (final time)")
    if not isinstance(record, str):
        raise ValueError(f"record must be 'linear', 'linear:N', 'log' or 'log:N' with a final time t, got {record!r}")
    kind, _, num = record.partition(":")
    if kind not in ("linear", "log"):
        raise ValueError(f"record must be 'linear', 'linear:N', 'log' or 'log:N' with a final time t, got {record!r}")
    n = _count(num, record) if num else 200
    n = nonneg_int(n, "record (number of times)", minimum=2)
    check_size(n, row_floats, "record")
    if kind == "log":
        return np.concatenate([[0.0], np.geomspace(T * 1e-6, T, n - 1)])
    return np.linspace(0.0, T, n)


# ------------------------------------------------------------------------------------------- option objects

_O = TypeVar("_O", bound="Option")
_POINT_WORDS = ("log", "linear", "all", "every")


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


class Option:
    """Shared behaviour of the option objects: a JSON form with a type tag, and ``replace``."""

    _json_types: ClassVar[dict[str, type]] = {}

    def to_json(self) -> dict[str, Any]:
        """This object as a JSON-serialisable dict, with its class name under ``"type"``."""
        out: dict[str, Any] = {"type": type(self).__name__}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            out[f.name] = _jsonable(getattr(self, f.name))
        return out

    @classmethod
    def from_json(cls: type[_O], data: Any) -> _O:
        """The object ``to_json`` described; ValueError for another type or an unknown field."""
        name = cls.__name__
        if not isinstance(data, dict) or data.get("type") != name:
            raise ValueError(f"{name}.from_json: expected a dict with type {name!r}, got {data!r}")
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known - {"type"})
        if unknown:
            raise ValueError(f"{name}.from_json: unknown field(s) {unknown}; {name} has {sorted(known)}")
        return cls(**{k: v for k, v in data.items() if k != "type"})

    def replace(self: _O, **changes: Any) -> _O:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


def _points(points: Any) -> Any:
    """``Record.points`` in its canonical form: None, a string, or a tuple of iterations or of times."""
    field = "Record.points"
    if points is None:
        return None
    if isinstance(points, Every):
        return f"every:{points.n}"
    if isinstance(points, LogSpaced):
        return f"log:{points.n}"
    if isinstance(points, Linear):
        return f"linear:{points.n}"
    if isinstance(points, str):
        word, sep, num = points.partition(":")
        if word not in _POINT_WORDS or (word == "all" and sep) or (word == "every" and not sep):
            raise ValueError(f"{field} must be {_RECORD_FORMS} (or for a flow 'linear', 'linear:N', 'log', 'log:N' "
                             f"or an array of times), got {points!r}")
        if sep:
            try:
                n = int(num)
            except ValueError:
                raise ValueError(f"{field}: N in {points!r} is not an integer") from None
            nonneg_int(n, f"{field} (N in {points!r})", minimum=1 if word == "every" else 2)
            return f"{word}:{n}"
        return word
    if isinstance(points, bool | np.bool_):
        raise ValueError(f"{field} must be {_RECORD_FORMS}, got {points!r}")
    if isinstance(points, int | np.integer):
        return f"every:{nonneg_int(points, f'{field} (every n-th iteration)', minimum=1)}"
    if isinstance(points, Sequence | np.ndarray) and not isinstance(points, bytes):
        arr = np.asarray(points)
        if arr.ndim != 1 or arr.dtype.kind not in "iuf":
            raise ValueError(f"{field}: an explicit list must be a 1-D sequence of iterations (integers) or of "
                             f"times (floats), got {points!r}")
        if arr.dtype.kind == "f":
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{field}: times must be finite")
            return tuple(float(v) for v in arr)
        return tuple(int(v) for v in arr)
    raise ValueError(f"{field} must be {_RECORD_FORMS}, got {points!r}")


@dataclass(frozen=True)
class Record(Option):
    """What a run records: where along the run (``points``), which state diagnostics, the state where it
    stopped early, and the final weights (see the module docstring for the forms of ``points``).

    Examples
    --------
    >>> Record("log:50", diagnostics=["balancedness"]).to_json()["diagnostics"]
    ['balancedness']
    """

    points: Any = None
    diagnostics: Any = True
    stop_point: bool = True
    final_weights: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "points", _points(self.points))
        object.__setattr__(self, "diagnostics", diagnostics_set(self.diagnostics, "Record.diagnostics"))
        object.__setattr__(self, "stop_point", flag(self.stop_point, "Record.stop_point"))
        object.__setattr__(self, "final_weights", flag(self.final_weights, "Record.final_weights"))

    def iteration_rule(self) -> Rule:
        """The record rule for gradient descent (iterations); ValueError for a flow-only form."""
        points = "log" if self.points is None else self.points
        if isinstance(points, tuple):
            if points and any(isinstance(v, float) for v in points):
                raise ValueError("Record.points: gradient descent records at iterations (integers), got times")
            return record_rule(np.asarray(points, dtype=np.int64))
        if points == "linear":
            raise ValueError("Record.points: 'linear' needs a number of points for gradient descent, "
                             "e.g. 'linear:200'")
        return record_rule(points)


@dataclass(frozen=True)
class Stop(Option):
    """When gradient descent stops, and what counts as converged (see `dlnsim.run_gd`).

    ``gtol``: the gradient test, relative to the gradient scale of the problem (>= 0); ``ltol``: the loss
    test, relative to the initial excess loss, in [0, 1) (None: gtol^2; 0 turns it off); ``early``: stop at
    the first iteration where a test holds; ``blowup``: the run diverges when the loss exceeds
    blowup x max(L(0), 1/2 ||Y||_F^2).
    """

    gtol: float = 1e-10
    ltol: float | None = None
    early: bool = False
    blowup: float = 1e8

    def __post_init__(self) -> None:
        object.__setattr__(self, "gtol", positive_float(self.gtol, "Stop.gtol", allow_zero=True))
        if self.ltol is not None:
            ltol = positive_float(self.ltol, "Stop.ltol", allow_zero=True)
            if ltol >= 1.0:
                raise ValueError(f"Stop.ltol must be < 1 (a fraction of the initial excess loss), got {ltol!r}")
            object.__setattr__(self, "ltol", ltol)
        object.__setattr__(self, "early", flag(self.early, "Stop.early"))
        object.__setattr__(self, "blowup", positive_float(self.blowup, "Stop.blowup"))

    @property
    def ltol_value(self) -> float:
        """The loss test's tolerance: ``ltol``, or gtol^2 when it is None."""
        return self.gtol * self.gtol if self.ltol is None else self.ltol


@dataclass(frozen=True)
class Tolerances(Option):
    """How exactly a gradient flow is integrated (see `dlnsim.run_flow`).

    ``rtol``, ``atol``: the error tolerances of the adaptive steps (> 0); ``max_steps``: at most this many
    steps; ``first_step``: the first step size (0: chosen automatically); ``fixed_step``: integrate with this
    constant step instead of adaptive ones; ``balance_tol``: how balanced the start of the end-to-end flow must
    be (a balanced start is its hypothesis).
    """

    rtol: float = 1e-10
    atol: float = 1e-12
    max_steps: int = 1_000_000
    first_step: float = 0.0
    fixed_step: float | None = None
    balance_tol: float = 1e-8

    def __post_init__(self) -> None:
        object.__setattr__(self, "rtol", positive_float(self.rtol, "Tolerances.rtol"))
        object.__setattr__(self, "atol", positive_float(self.atol, "Tolerances.atol"))
        object.__setattr__(self, "max_steps", nonneg_int(self.max_steps, "Tolerances.max_steps", minimum=1))
        object.__setattr__(self, "first_step", positive_float(self.first_step, "Tolerances.first_step",
                                                              allow_zero=True))
        if self.fixed_step is not None:
            object.__setattr__(self, "fixed_step", positive_float(self.fixed_step, "Tolerances.fixed_step"))
        object.__setattr__(self, "balance_tol", positive_float(self.balance_tol, "Tolerances.balance_tol",
                                                               allow_zero=True))


@dataclass(frozen=True)
class Engine(Option):
    """Where the cells of a sweep run (never what they compute).

    ``executor``: ``"threads"`` (default), ``"processes"``, ``"dask"``, ``"serial"`` or a
    `concurrent.futures.Executor`; ``workers``: the number of workers (default: the cores); ``client``: a
    ``dask.distributed.Client`` and ``scheduler``: a dask scheduler address (for ``"dask"``); ``progress``:
    show a progress bar.
    """

    executor: Any = "threads"
    workers: int | None = None
    client: Any = None
    scheduler: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        from dlnsim.grid.executors import EXECUTORS  # the grid's own list of executor names

        if isinstance(self.executor, str) and self.executor not in EXECUTORS:
            raise ValueError(f"Engine.executor must be one of {list(EXECUTORS)} or a concurrent.futures.Executor, "
                             f"got {self.executor!r}")
        if self.workers is not None:
            object.__setattr__(self, "workers", nonneg_int(self.workers, "Engine.workers", minimum=1))
        if self.scheduler is not None and not isinstance(self.scheduler, str):
            raise ValueError(f"Engine.scheduler must be a dask scheduler address (str), got {self.scheduler!r}")
        object.__setattr__(self, "progress", flag(self.progress, "Engine.progress"))

    def grid_kwargs(self) -> dict[str, Any]:
        """The keywords of `dlnsim.grid.run_grid` this engine sets."""
        return {"executor": self.executor, "workers": self.workers, "client": self.client,
                "scheduler": self.scheduler, "progress": self.progress}


def _as(cls: type[_O], value: Any, name: str, plain: str) -> _O:
    if isinstance(value, cls):
        return value
    if isinstance(value, Option):
        raise ValueError(f"{name} must be a {cls.__name__}{plain}, got a {type(value).__name__}")
    if value is None:
        return cls()
    if isinstance(value, dict) and value.get("type") == cls.__name__:
        return cls.from_json(value)
    raise ValueError(f"{name} must be a {cls.__name__}{plain}, got {value!r}")


def as_record(value: Any, name: str = "record") -> Record:
    """A `Record` from a Record, None (the defaults), its JSON form or a plain ``points`` value (``"log"``)."""
    if isinstance(value, Record) or value is None or isinstance(value, dict):
        return _as(Record, value, name, "")
    if isinstance(value, Option):
        raise ValueError(f"{name} must be a Record or the points to record, got a {type(value).__name__}")
    try:
        return Record(value)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None


def as_stop(value: Any, name: str = "stop") -> Stop:
    """A `Stop` from a Stop, None (the defaults) or its JSON form."""
    return _as(Stop, value, name, " (or None for the defaults)")


def as_tolerances(value: Any, name: str = "tolerances") -> Tolerances:
    """`Tolerances` from Tolerances, None (the defaults) or its JSON form."""
    return _as(Tolerances, value, name, " (or None for the defaults)")


def as_engine(value: Any, name: str = "engine") -> Engine:
    """An `Engine` from an Engine, None (the defaults), its JSON form or an executor name (``"processes"``)."""
    if isinstance(value, str):
        return Engine(executor=value)
    return _as(Engine, value, name, ", an executor name or None")
