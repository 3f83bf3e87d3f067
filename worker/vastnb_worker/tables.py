"""pandas DataFrames and Series on the wire as plain columns.

pandas pickles its objects through its internals (block managers, extension arrays),
which only a full unpickler can rebuild. On the wire a DataFrame or Series travels as
its columns instead: numpy arrays of plain dtypes, lists of strings, categoricals as
codes and categories, time-zone-aware datetimes as UTC values and a zone name, and its
index the same way. That is data the notebook's safe result policy can rebuild without
running anything. A column of any other kind (mixed objects, nullable integers) leaves
the whole object to pandas' own pickling, which only a trusted box's results may use.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Optional

__all__ = ["table_reducer", "rebuild_table"]

Column = tuple[Any, ...]  # (kind, ...payload)


def table_reducer() -> Optional[Callable[[Any], Any]]:
    """A pickler reducer for DataFrames and Series (NotImplemented for anything else, or a
    pandas object it cannot send as plain columns); None when pandas is not loaded."""
    pandas = sys.modules.get("pandas")
    if pandas is None:
        return None

    def reduce(obj: Any) -> Any:
        kind = type(obj)
        if kind is not pandas.DataFrame and kind is not pandas.Series:
            return NotImplemented
        try:
            index = _column(pandas, obj.index)
            if kind is pandas.Series:
                return rebuild_table, ("series", [(obj.name, _column(pandas, obj))], index)
            if not obj.columns.is_unique:
                return NotImplemented
            return rebuild_table, ("frame", [(name, _column(pandas, obj[name])) for name in obj.columns], index)
        except _NotPlain:
            return NotImplemented

    return reduce


class _NotPlain(Exception):
    pass


def _column(pandas: Any, values: Any) -> Column:
    """One column (or an index) as plain data."""
    if isinstance(values, pandas.RangeIndex):
        return ("range", values.start, values.stop, values.step, values.name)
    if isinstance(values, pandas.MultiIndex):
        raise _NotPlain
    name = values.name if isinstance(values, pandas.Index) else None
    dtype = values.dtype
    if isinstance(dtype, pandas.CategoricalDtype):
        categorical = pandas.Categorical(values)
        return (
            "categorical",
            categorical.codes,
            _column(pandas, pandas.Index(categorical.categories)),
            bool(dtype.ordered),
            name,
        )
    if isinstance(dtype, pandas.DatetimeTZDtype):
        utc = pandas.DatetimeIndex(values).tz_convert("UTC").tz_localize(None)
        return ("datetime_tz", utc.to_numpy(), str(dtype.tz), name)
    if dtype.kind in "biufcmM" and not isinstance(dtype, pandas.api.extensions.ExtensionDtype):
        return ("array", values.to_numpy(), name)
    # A numpy dtype equals `object` without being it: == on purpose.
    if dtype == object or isinstance(dtype, pandas.StringDtype):  # noqa: E721
        items = [None if _missing(item) else item for item in values.tolist()]
        if all(item is None or isinstance(item, str) for item in items):
            return ("strings", items, "object" if dtype == object else str(dtype), name)  # noqa: E721
    raise _NotPlain


def _missing(item: Any) -> bool:
    """None, or a missing value pandas shows as NaN/NA in a string column."""
    return item is None or (isinstance(item, float) and item != item) or type(item).__name__ == "NAType"


def rebuild_table(kind: str, columns: list[tuple[Any, Column]], index: Column) -> Any:
    """The DataFrame (``kind`` "frame") or Series ("series") that :func:`table_reducer`
    sent. The notebook's safe policy checks the arguments before calling this."""
    import pandas

    rows = _rebuilt(pandas, index, as_index=True)
    built = {name: _rebuilt(pandas, column).set_axis(rows) for name, column in columns}
    if kind == "series":
        ((name, series),) = built.items()
        return series.rename(name)
    return pandas.DataFrame(built, index=rows) if built else pandas.DataFrame(index=rows)


def _rebuilt(pandas: Any, column: Column, *, as_index: bool = False) -> Any:
    """A column as a Series (or, ``as_index``, an Index), its dtype as it was sent."""
    kind, name, dtype = column[0], column[-1], None
    if kind == "range":
        return pandas.RangeIndex(column[1], column[2], column[3], name=name)
    if kind == "array":
        values = column[1]
    elif kind == "strings":
        values, dtype = column[1], column[2]  # pandas would infer "str" for an object column
    elif kind == "categorical":
        categories = _rebuilt(pandas, column[2], as_index=True)
        values = pandas.Categorical.from_codes(column[1], categories=categories, ordered=column[3])
    elif kind == "datetime_tz":
        values = pandas.DatetimeIndex(column[1]).tz_localize("UTC").tz_convert(column[2])
    else:
        raise ValueError(f"unknown column kind {kind!r}")
    return pandas.Index(values, name=name, dtype=dtype) if as_index else pandas.Series(values, name=name, dtype=dtype)
