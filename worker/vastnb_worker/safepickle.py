"""Unpickling bytes that may come from an attacker: data out, never code run, never a crash.

A pickle names the callables that rebuild its objects; an ordinary unpickler imports and
calls whatever it names. This one hands out only its own rebuilders, which check their
arguments before anything is built:

- plain data: containers, numbers, strings, bytes, dates, Decimal, Fraction, slices,
  Python's own exceptions;
  a ``range`` is bounded and ``bytes(n)``/``bytearray(n)`` (a 31-byte pickle can ask for
  2 GiB that way) are refused;
- numpy arrays and scalars of plain dtypes (booleans, integers, floats, complex numbers,
  fixed-width strings, datetimes and timedeltas): numpy's dtype is rebuilt from its name
  and byte order alone, never from the pickle's dtype state (whose forged flags can hide an
  object field and crash the process), and an array only from a buffer whose size matches
  its shape;
- torch tensors as the worker sends them (a numpy array and a dtype name);
- pandas DataFrames and Series as the worker sends them (``tables.py``: plain columns).

No module is imported because a pickle names it (numpy and torch are imported only when an
array or tensor is actually rebuilt). Anything else is refused with :class:`Refused`.

Before any of it, the opcodes are read once (``pickletools``, nothing built) for memo indexes
beyond the values stored so far: CPython's unpickler grows its memo to twice the index asked
for and zero-fills it, so a 20-byte pickle could make it fill gigabytes.
"""

from __future__ import annotations

import builtins
import collections
import datetime
import decimal
import fractions
import io
import math
import pickle
import pickletools
import re
from collections.abc import Sequence
from typing import Any, Callable, Optional

__all__ = ["Refused", "loads", "SafeUnpickler", "MAX_RANGE", "numpy_substitutes", "settled"]

#: The longest ``range`` a pickle may build (a list of it is built by the next opcode).
MAX_RANGE = 1 << 20

# numpy dtype names that are plain data: bool, ints, floats, complex, bytes/str, dates.
_PLAIN_DTYPE = re.compile(r"(b1|[iu][1248]|f[248]|f16|c(8|16|32)|[SU]\d{1,7}|[Mm]8)\Z")
_DATE_UNITS = frozenset({"Y", "M", "W", "D", "h", "m", "s", "ms", "us", "ns", "ps", "fs", "as", "generic"})
_TORCH_DTYPES = frozenset(
    {
        "float64",
        "float32",
        "float16",
        "bfloat16",
        "int64",
        "int32",
        "int16",
        "int8",
        "uint8",
        "bool",
        "complex64",
        "complex128",
    }
)


class Refused(pickle.UnpicklingError):
    """The pickle asks for something that is not plain data (``what`` names it)."""

    def __init__(self, what: str, why: str = "it is not plain data") -> None:
        super().__init__(f"{what}: {why}")
        self.what = what


def loads(data: bytes, buffers: Sequence[Any] = (), *, extra: Optional[dict[tuple[str, str], Any]] = None) -> Any:
    """Unpickle ``data`` (protocol 5 buffers in ``buffers``) as plain data; :class:`Refused`
    for anything else. ``extra`` allows more names (module, name) -> object."""
    return SafeUnpickler(io.BytesIO(data), buffers=buffers, extra=extra).load()


class SafeUnpickler(pickle.Unpickler):
    """See the module doc. ``extra`` allows more names (module, name) -> object."""

    def __init__(
        self, file: Any, *, buffers: Sequence[Any] = (), extra: Optional[dict[tuple[str, str], Any]] = None
    ) -> None:
        super().__init__(file, buffers=buffers)
        self._file = file
        self._extra = extra or {}
        self._stand_ins = False  # whether the pickle named what leaves stand-ins to settle

    def find_class(self, module: str, name: str) -> Any:
        found = _REBUILDERS.get((module, name), self._extra.get((module, name)))
        if found is None:
            raise Refused(f"{module}.{name}")
        self._stand_ins = self._stand_ins or found is _DType or found is _reconstruct
        return found

    def load(self) -> Any:
        start = self._file.tell()
        _check_memo(self._file)
        self._file.seek(start)
        value = super().load()
        return settled(value) if self._stand_ins else value  # plain data needs no second walk


_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})


def _check_memo(file: Any) -> None:
    """Refuse a memo index beyond the values stored so far (see the module doc). A pickle
    the scan cannot read is left to the unpickler, which says what is wrong with it."""
    stored = 0
    try:
        for opcode, arg, _ in pickletools.genops(file):
            if opcode.name == "MEMOIZE":
                stored += 1
            elif opcode.name in _PUTS:
                if not isinstance(arg, int) or arg > stored:
                    raise Refused(f"memo index {arg}", f"only {stored} values were stored before it")
                stored = max(stored, arg + 1)
    except Refused:
        raise
    except Exception:  # noqa: BLE001 - not a pickle genops can read: load() reports it
        return


def settled(value: Any) -> Any:
    """``value`` as read by an unpickler given these rebuilders (this one, or torch's
    weights-only loader given :func:`numpy_substitutes`): its stand-ins made real."""
    return _settled(value, {})


def numpy_substitutes() -> list[tuple[Any, str]]:
    """numpy's names, each with the rebuilder that stands in for it here, in the
    ``(object, "module.name")`` form torch's weights-only loader takes
    (``torch.serialization.safe_globals``): numpy arrays in a torch checkpoint are then
    rebuilt as :func:`loads` rebuilds them, never by numpy from the file's dtype state.
    Call :func:`settled` on what that loader returns."""
    found = [(value, f"{module}.{name}") for (module, name), value in _REBUILDERS.items() if module.startswith("numpy")]
    return found + [(_Array, f"{__name__}._Array"), (_DType, f"{__name__}._DType")]


# -- plain data -----------------------------------------------------------------------------


def _range(*args: int) -> range:
    made = range(*args)
    if len(made) > MAX_RANGE:
        raise Refused("builtins.range", f"{len(made)} items is more than {MAX_RANGE}")
    return made


def _no_size(kind: type) -> Callable[..., Any]:
    def make(*args: Any) -> Any:
        if args and isinstance(args[0], int):  # bytes(2**31): memory, not data
            raise Refused(f"builtins.{kind.__name__}", "a size, not data")
        return kind(*args)

    return make


# -- numpy ----------------------------------------------------------------------------------


class _DType:
    """Stands for a numpy dtype while the pickle is read: its name, byte order and (for
    dates) unit are kept; the rest of the pickle's dtype state is never given to numpy."""

    unit: Optional[str]

    def __init__(self, name: Any, align: Any = False, copy: Any = True) -> None:
        if not isinstance(name, str) or not _PLAIN_DTYPE.match(name):
            raise Refused(f"numpy.dtype({name!r})", "not a plain dtype (structured and object dtypes are refused)")
        self.name, self.order, self.unit = name, "|", None

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) < 8:
            raise Refused("numpy.dtype", "malformed state")
        order = state[1]
        if order not in ("<", ">", "|", "="):
            raise Refused("numpy.dtype", f"byte order {order!r}")
        self.order = order
        if self.name in ("M8", "m8"):  # state[8]: (metadata, (unit, count, ...))
            meta = state[8] if len(state) > 8 and isinstance(state[8], tuple) and len(state[8]) == 2 else (None, None)
            unit, count = meta[1][:2] if isinstance(meta[1], tuple) and len(meta[1]) >= 2 else (None, None)
            unit = unit.decode("ascii", "replace") if isinstance(unit, bytes) else unit
            if unit not in _DATE_UNITS or not (isinstance(count, int) and 1 <= count <= 1000):
                raise Refused("numpy.dtype", f"date unit {unit!r} x {count!r}")
            self.unit = unit if count == 1 else f"{count}{unit}"

    def real(self) -> Any:
        import numpy

        spec = self.name + (f"[{self.unit}]" if self.unit else "")
        return numpy.dtype(self.order + spec if self.order in "<>" else spec)  # '<f4' is float32 here


def _dtype(value: Any) -> Any:
    if not isinstance(value, _DType):
        raise Refused("numpy array", "its dtype is not a plain numpy dtype")
    return value.real()


def _shape(shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, tuple) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
    ):
        raise Refused("numpy array", f"shape {shape!r}")
    return shape


def _array(data: Any, dtype: Any, shape: Any, order: Any) -> Any:
    """A numpy array over ``data``, whose size must be exactly what the shape needs."""
    import numpy

    real, shape = _dtype(dtype), _shape(shape)
    if order not in ("C", "F"):
        raise Refused("numpy array", f"order {order!r}")
    size = memoryview(data).nbytes
    if size != math.prod(shape) * real.itemsize:
        raise Refused("numpy array", f"{size} bytes for shape {shape} of {real}")
    return numpy.frombuffer(data, dtype=real).reshape(shape, order=order)


def _frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any) -> Any:
    return _array(buffer, dtype, shape, order)


def _scalar(dtype: Any, data: Any = b"") -> Any:
    if not isinstance(data, bytes):
        raise Refused("numpy scalar", "its data is not bytes")
    return _array(data, dtype, (), "C")[()]


class _Array:
    """Stands for an array built the old way (``_reconstruct``, then its state), until the
    state arrives; replaced by the real array once the pickle is read."""

    array: Any = None

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) != 5 or not isinstance(state[4], (bytes, bytearray)):
            raise Refused("numpy array", "malformed state (object arrays are refused)")
        _, shape, dtype, fortran, raw = state
        self.array = _array(bytearray(raw), dtype, shape, "F" if fortran else "C")


def _reconstruct(kind: Any, shape: Any, typecode: Any) -> _Array:
    if kind is not _NDARRAY:
        raise Refused("numpy _reconstruct", "only plain arrays")
    return _Array()


_NDARRAY = object()  # what the pickle gets for numpy.ndarray: only _reconstruct takes it


# -- torch ----------------------------------------------------------------------------------


def _tensor(array: Any, dtype: Any, requires_grad: Any, device: Any) -> Any:
    from .protocol import _rebuild_tensor

    array = settled(array)
    if type(array).__module__ != "numpy" or dtype not in _TORCH_DTYPES or not isinstance(requires_grad, bool):
        raise Refused("torch tensor", f"a {dtype!r} tensor from {type(array).__name__}")
    if not isinstance(device, str) or not re.match(r"(cpu|cuda(:\d{1,3})?|mps)\Z", device):
        raise Refused("torch tensor", f"device {device!r}")
    return _rebuild_tensor(array, dtype, requires_grad, device)


# -- pandas ---------------------------------------------------------------------------------

_LABEL = (str, int, float, bool, type(None))
_ZONE = re.compile(r"[A-Za-z0-9_+\-/:]{1,64}\Z")
_STRING_DTYPES = frozenset({"object", "str", "string"})


def _table(kind: Any, columns: Any, index: Any) -> Any:
    """A DataFrame or Series sent as plain columns (``tables.py``), checked first."""
    from .tables import rebuild_table

    if kind not in ("frame", "series") or not isinstance(columns, list) or len(columns) > 1_000_000:
        raise Refused("pandas object", "malformed")
    if kind == "series" and len(columns) != 1:
        raise Refused("pandas Series", "not one column")
    columns, index = settled(columns), settled(index)  # stand-ins made real arrays, then checked
    for entry in columns:
        if not (isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], _LABEL)):
            raise Refused("pandas column", "malformed")
        _check_column(entry[1])
    _check_column(index)
    return rebuild_table(kind, columns, index)


def _check_column(column: Any) -> None:
    def array(value: Any, kinds: str) -> bool:
        return type(value).__module__ == "numpy" and type(value).__name__ == "ndarray" and value.dtype.kind in kinds

    ok = isinstance(column, tuple) and len(column) >= 3 and isinstance(column[-1], _LABEL)
    kind = column[0] if ok else None
    if kind == "range":
        ok = (
            len(column) == 5
            and all(isinstance(n, int) and not isinstance(n, bool) for n in column[1:4])
            and column[3] != 0
        )
    elif kind == "array":
        ok = len(column) == 3 and array(column[1], "biufcmM")
    elif kind == "strings":
        ok = (
            len(column) == 4
            and isinstance(column[1], list)
            and column[2] in _STRING_DTYPES
            and all(item is None or isinstance(item, str) for item in column[1])
        )
    elif kind == "categorical":
        ok = (
            len(column) == 5
            and array(column[1], "iu")
            and isinstance(column[3], bool)
            and column[2][0] != "categorical"
        )
        if ok:
            _check_column(column[2])
    elif kind == "datetime_tz":
        ok = len(column) == 4 and array(column[1], "M") and isinstance(column[2], str) and bool(_ZONE.match(column[2]))
    else:
        ok = False
    if not ok:
        raise Refused("pandas column", f"a malformed {kind!r} column")


def _settled(value: Any, seen: dict[int, tuple[Any, Any]]) -> Any:
    """``value`` with every stand-in (:class:`_Array`, :class:`_DType`) made real;
    lists and dicts are changed in place, tuples and sets rebuilt where one holds a
    stand-in. ``seen`` maps ``id(original)`` to (original, result): shared and cyclic
    containers are settled once, and the originals stay alive (their ids unique)."""
    if isinstance(value, _Array):
        if value.array is None:
            raise Refused("numpy array", "no state")
        return value.array
    if isinstance(value, _DType):
        return value.real()
    if type(value) not in (list, dict, tuple, set, frozenset, collections.OrderedDict):
        return value
    if id(value) in seen:
        return seen[id(value)][1]
    seen[id(value)] = (value, value)
    if isinstance(value, list):
        value[:] = [_settled(v, seen) for v in value]
    elif isinstance(value, dict):
        for key in list(value):
            value[key] = _settled(value[key], seen)
    elif any(isinstance(v, (_Array, _DType, list, dict, tuple)) for v in value):
        seen[id(value)] = (value, type(value)(_settled(v, seen) for v in value))
    return seen[id(value)][1]


_REBUILDERS: dict[tuple[str, str], Any] = {
    **{("builtins", k.__name__): k for k in (complex, slice, set, frozenset, list, tuple, dict, str, int, float, bool)},
    # An exception is data too (its type, its arguments): the box's errors come back as themselves.
    **{("builtins", n): k for n, k in vars(builtins).items() if isinstance(k, type) and issubclass(k, BaseException)},
    ("builtins", "range"): _range,
    ("builtins", "bytes"): _no_size(bytes),
    ("builtins", "bytearray"): _no_size(bytearray),
    **{("collections", k.__name__): k for k in (collections.OrderedDict, collections.defaultdict, collections.deque)},
    **{
        ("datetime", k.__name__): k
        for k in (datetime.datetime, datetime.date, datetime.time, datetime.timedelta, datetime.timezone)
    },
    ("decimal", "Decimal"): decimal.Decimal,
    ("fractions", "Fraction"): fractions.Fraction,
    **{(core, "_frombuffer"): _frombuffer for core in ("numpy.core.numeric", "numpy._core.numeric")},
    **{(core, "scalar"): _scalar for core in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(core, "_reconstruct"): _reconstruct for core in ("numpy.core.multiarray", "numpy._core.multiarray")},
    ("numpy", "dtype"): _DType,
    ("numpy", "ndarray"): _NDARRAY,
    ("vastnb_worker.protocol", "_rebuild_tensor"): _tensor,
    ("vastnb_worker.tables", "rebuild_table"): _table,
}
