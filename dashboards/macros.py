"""What Grafana does to a PostgreSQL panel's ``rawSql`` before the database sees it, in
Grafana's order, so the tests can run every panel's SQL without a Grafana server:

1. the browser replaces template variables (:func:`interpolate_variables`, the rules of
   Grafana's template service and of the SQL data source's ``interpolateVariable``);
2. the server's global substitutions (:func:`interpolate_globals`: ``$__interval_ms``,
   ``$__interval``, ``$__unixEpochFrom()``, ``$__unixEpochTo()``);
3. the PostgreSQL macro engine (:func:`expand_macros`: ``$__time``, ``$__timeEpoch``,
   ``$__timeFilter``, ``$__timeFrom``, ``$__timeTo``, ``$__timeGroup``,
   ``$__timeGroupAlias``, ``$__unixEpochFilter``, ``$__unixEpochNanoFilter``,
   ``$__unixEpochNanoFrom``, ``$__unixEpochNanoTo``, ``$__unixEpochGroup``,
   ``$__unixEpochGroupAlias``); an unknown macro is an error, as in Grafana.

Written from Grafana's documentation of the PostgreSQL data source and the behaviour of
Grafana 11 (docs/dashboards.md says what was checked how); pure, no I/O.

>>> from datetime import UTC, datetime
>>> r = TimeRange(datetime(2018, 4, 12, 18, tzinfo=UTC), datetime(2018, 4, 12, 18, 5, tzinfo=UTC))
>>> expand_macros("WHERE $__timeFilter(time_column)", r)
"WHERE time_column BETWEEN '2018-04-12T18:00:00Z' AND '2018-04-12T18:05:00Z'"
>>> expand_macros("SELECT $__timeGroup(t, '5m'), 1", r)
'SELECT floor(extract(epoch from t)/300)*300 AS "time", 1'
>>> expand_macros("GROUP BY $__timeGroup(t, '5m')", r, timescaledb=True)
"GROUP BY time_bucket('300.000s',t)"
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

ALL = "$__all"  # the value Grafana stores for a variable's "All" option


class MacroError(ValueError):
    """A macro Grafana would refuse (unknown, missing arguments, bad interval)."""


@dataclass(frozen=True, slots=True)
class TimeRange:
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class Variable:
    """A dashboard's template variable as far as interpolation cares."""

    name: str
    multi: bool = False
    include_all: bool = False
    all_value: str | None = None  # Grafana's "custom all value", inserted unformatted
    options: Sequence[str] = field(default_factory=tuple)  # the values of its options


Selection = str | Sequence[str]

# Grafana's template service: $var, [[var:fmt]], ${var}, ${var.field}, ${var:fmt}
_VARIABLE = re.compile(
    r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?\}"
)
_MACRO = re.compile(r"\$([_a-zA-Z0-9]+)\(([^\)]*)\)")


def _quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _format(value: Selection, variable: Variable, fmt: str | None) -> str:
    values = [value] if isinstance(value, str) else list(value)
    if fmt is None:  # the SQL data source's interpolateVariable
        if isinstance(value, str) and not (variable.multi or variable.include_all):
            return value.replace("'", "''")
        return ",".join(_quote_literal(v) for v in values)
    if fmt == "raw":
        return values[0] if isinstance(value, str) else "{" + ",".join(values) + "}"
    if fmt == "csv":
        return ",".join(values)
    if fmt == "singlequote":
        return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
    if fmt == "sqlstring":
        return ",".join(_quote_literal(v) for v in values)
    raise MacroError(f"format {fmt!r} of variable {variable.name} is not supported here")


def _is_all(value: Selection) -> bool:
    return value == ALL or (not isinstance(value, str) and list(value) == [ALL])


def interpolate_variables(
    sql: str, variables: Mapping[str, Variable], selected: Mapping[str, Selection]
) -> str:
    """``sql`` with every known template variable replaced by its selection (unknown
    names, such as the ``$__`` macros, are left as they are). "All" becomes the custom
    all value, unformatted, when there is one, else every option's value."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        fmt = match.group(3) or match.group(6)
        variable = variables.get(name)
        if variable is None:
            return match.group(0)
        value = selected.get(name, ALL if variable.include_all else "")
        if _is_all(value):
            if not variable.include_all:
                raise MacroError(f"variable {name} has no All option")
            if variable.all_value is not None and fmt not in ("text", "queryparam"):
                return interpolate_variables(variable.all_value, variables, selected)
            value = list(variable.options)
        return _format(value, variable, fmt)

    return _VARIABLE.sub(replace, sql)


def format_interval(interval: timedelta) -> str:
    """Grafana's ``$__interval`` text: the largest whole unit (``5m``, ``1h``, ``2d``)."""
    ms = interval // timedelta(milliseconds=1)
    for unit, size in (("y", 31_536_000_000), ("d", 86_400_000), ("h", 3_600_000)):
        if ms >= size:
            return f"{ms // size}{unit}"
    for unit, size in (("m", 60_000), ("s", 1000), ("ms", 1)):
        if ms >= size:
            return f"{ms // size}{unit}"
    return "1ms"


def _epoch(t: datetime) -> int:
    return int(t.timestamp())


def _epoch_ns(t: datetime) -> int:
    delta = t - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def interpolate_globals(sql: str, time_range: TimeRange, interval: timedelta) -> str:
    """The server's substitutions for every SQL data source, before the macros."""
    ms = interval // timedelta(milliseconds=1)
    sql = sql.replace("$__interval_ms", str(ms))
    sql = sql.replace("$__interval", format_interval(interval))
    sql = sql.replace("$__unixEpochFrom()", str(_epoch(time_range.start)))
    return sql.replace("$__unixEpochTo()", str(_epoch(time_range.end)))


def rfc3339nano(t: datetime) -> str:
    """Go's ``time.RFC3339Nano`` of ``t`` in UTC: fraction without trailing zeros."""
    utc = t.astimezone(UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += "." + f"{utc.microsecond:06d}".rstrip("0")
    return text + "Z"


_GO_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_interval(text: str) -> float:
    """Seconds of a macro's interval argument as Grafana parses it: ``Nd``/``Nw``, or a
    Go duration (``5m``, ``1h30m``, ``20ms``). Months and years depend on the calendar in
    Grafana and are refused here."""
    day = re.fullmatch(r"(\d+)([dw])", text)
    if day:
        return int(day.group(1)) * (86_400.0 if day.group(2) == "d" else 604_800.0)
    if text in ("0", ""):
        if text == "0":
            return 0.0
        raise MacroError("empty interval")
    pos, seconds = 0, 0.0
    for part in _GO_PART.finditer(text):
        if part.start() != pos:
            break
        seconds += float(part.group(1)) * _GO_UNITS[part.group(2)]
        pos = part.end()
    if pos != len(text) or pos == 0:
        raise MacroError(f"error parsing interval {text}")
    return seconds


def _go_float(x: float) -> str:
    """Go's ``%v`` of a float64 (shortest representation, no ``.0``)."""
    if x == int(x) and abs(x) < 1e21:
        return str(int(x))
    return repr(x)


def _interval_arg(name: str, args: list[str]) -> float:
    if len(args) < 2:
        raise MacroError(f"macro {name} needs time column and interval and optional fill value")
    try:
        return parse_interval(args[1].strip("'"))
    except MacroError:
        raise MacroError(f"error parsing interval {args[1]}") from None


def _needs_column(name: str, args: list[str]) -> str:
    if not args or args[0] == "":
        raise MacroError(f"missing time column argument for macro {name}")
    return args[0]


# One macro's expansion. Deliberately one flat dispatch, like Grafana's own.
def _evaluate(name: str, args: list[str], time_range: TimeRange, timescaledb: bool) -> str:
    start, end = time_range.start, time_range.end
    if name == "__time":
        return f'{_needs_column(name, args)} AS "time"'
    if name == "__timeEpoch":
        return f'extract(epoch from {_needs_column(name, args)}) as "time"'
    if name == "__timeFilter":
        column = _needs_column(name, args)
        return f"{column} BETWEEN '{rfc3339nano(start)}' AND '{rfc3339nano(end)}'"
    if name == "__timeFrom":
        return f"'{rfc3339nano(start)}'"
    if name == "__timeTo":
        return f"'{rfc3339nano(end)}'"
    if name == "__timeGroup":
        seconds = _interval_arg(name, args)
        if timescaledb:
            return f"time_bucket('{seconds:.3f}s',{args[0]})"
        s = _go_float(seconds)
        return f"floor(extract(epoch from {args[0]})/{s})*{s}"
    if name == "__timeGroupAlias":
        return _evaluate("__timeGroup", args, time_range, timescaledb) + ' AS "time"'
    if name in ("__unixEpochFilter", "__unixEpochNanoFilter"):
        column = _needs_column(name, args)
        of = _epoch if name == "__unixEpochFilter" else _epoch_ns
        return f"{column} >= {of(start)} AND {column} <= {of(end)}"
    if name == "__unixEpochNanoFrom":
        return str(_epoch_ns(start))
    if name == "__unixEpochNanoTo":
        return str(_epoch_ns(end))
    if name == "__unixEpochGroup":
        s = _go_float(_interval_arg(name, args))
        return f"floor(({args[0]})/{s})*{s}"
    if name == "__unixEpochGroupAlias":
        return _evaluate("__unixEpochGroup", args, time_range, timescaledb) + ' AS "time"'
    raise MacroError(f"unknown macro {name!r}")


def expand_macros(sql: str, time_range: TimeRange, *, timescaledb: bool = False) -> str:
    """The PostgreSQL macro engine over ``sql``. ``$__timeGroup(...)`` directly followed
    by a comma (Grafana looks at the first occurrence of the same text) is the alias
    form, for compatibility with Grafana before 5.3."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "__timeGroup":
            index = sql.find(match.group(0))
            after = index + len(match.group(0))
            if index >= 0 and after < len(sql) and sql[after] == ",":
                name = "__timeGroupAlias"
        args = [arg.strip(" ") for arg in match.group(2).split(",")]
        return _evaluate(name, args, time_range, timescaledb)

    return _MACRO.sub(replace, sql)


def expand(
    sql: str,
    *,
    time_range: TimeRange,
    interval: timedelta,
    variables: Mapping[str, Variable] | None = None,
    selected: Mapping[str, Selection] | None = None,
    timescaledb: bool = False,
) -> str:
    """Everything Grafana does to ``sql``, in its order."""
    sql = interpolate_variables(sql, variables or {}, selected or {})
    sql = interpolate_globals(sql, time_range, interval)
    return expand_macros(sql, time_range, timescaledb=timescaledb)
