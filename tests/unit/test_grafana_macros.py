"""dashboards.macros against Grafana's documented PostgreSQL expansion (the examples of
Grafana's PostgreSQL data source documentation and its macro engine's tests), template
variables as Grafana's template service and SQL data source interpolate them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dashboards.macros import (
    ALL,
    MacroError,
    TimeRange,
    Variable,
    expand,
    expand_macros,
    format_interval,
    interpolate_globals,
    interpolate_variables,
    rfc3339nano,
)

FROM = datetime(2018, 4, 12, 18, tzinfo=UTC)
RANGE = TimeRange(FROM, FROM + timedelta(minutes=5))


@pytest.mark.parametrize(
    ("sql", "expanded"),
    [
        ("select $__time(time_column)", 'select time_column AS "time"'),
        ("select $__timeEpoch(time_column)", 'select extract(epoch from time_column) as "time"'),
        (
            "WHERE $__timeFilter(time_column)",
            "WHERE time_column BETWEEN '2018-04-12T18:00:00Z' AND '2018-04-12T18:05:00Z'",
        ),
        ("select $__timeFrom()", "select '2018-04-12T18:00:00Z'"),
        ("select $__timeTo()", "select '2018-04-12T18:05:00Z'"),
        (
            "GROUP BY $__timeGroup(time_column,'5m')",
            "GROUP BY floor(extract(epoch from time_column)/300)*300",
        ),
        (
            "GROUP BY $__timeGroup(time_column, '5m')",
            "GROUP BY floor(extract(epoch from time_column)/300)*300",
        ),
        (
            "GROUP BY $__timeGroup(time_column,'5m', NULL)",
            "GROUP BY floor(extract(epoch from time_column)/300)*300",
        ),
        (
            "select $__timeGroupAlias(time_column,'5m')",
            'select floor(extract(epoch from time_column)/300)*300 AS "time"',
        ),
        # before Grafana 5.3 $__timeGroup added the alias: kept when a comma follows
        (
            "select $__timeGroup(time_column,'5m'), value",
            'select floor(extract(epoch from time_column)/300)*300 AS "time", value',
        ),
        (
            "select $__timeGroup(time_column,'1.5s') ",
            "select floor(extract(epoch from time_column)/1.5)*1.5 ",
        ),
        (
            "select $__unixEpochFilter(time)",
            "select time >= 1523556000 AND time <= 1523556300",
        ),
        (
            "select $__unixEpochNanoFilter(time)",
            "select time >= 1523556000000000000 AND time <= 1523556300000000000",
        ),
        ("select $__unixEpochNanoFrom()", "select 1523556000000000000"),
        ("select $__unixEpochNanoTo()", "select 1523556300000000000"),
        (
            "select $__unixEpochGroup(time_column,'5m')",
            "select floor((time_column)/300)*300",
        ),
        (
            "select $__unixEpochGroupAlias(time_column,'5m')",
            'select floor((time_column)/300)*300 AS "time"',
        ),
    ],
)
def test_documented_expansions(sql: str, expanded: str) -> None:
    assert expand_macros(sql, RANGE) == expanded


@pytest.mark.parametrize(
    ("interval", "bucket"),
    [
        ("'5m'", "'300.000s'"),
        ("'12d'", "'1036800.000s'"),
        ("'20ms'", "'0.020s'"),
        ("'1h'", "'3600.000s'"),
    ],
)
def test_time_group_with_timescaledb_is_time_bucket(interval: str, bucket: str) -> None:
    sql = f"GROUP BY $__timeGroup(time_column, {interval})"
    assert (
        expand_macros(sql, RANGE, timescaledb=True) == f"GROUP BY time_bucket({bucket},time_column)"
    )
    alias = expand_macros(f"SELECT $__timeGroupAlias(c, {interval})", RANGE, timescaledb=True)
    assert alias == f'SELECT time_bucket({bucket},c) AS "time"'


def test_times_are_utc_rfc3339_with_fractions_only_when_there_are_some() -> None:
    cet = datetime(2018, 4, 12, 9, 0, 0, 500_000, tzinfo=UTC).astimezone()
    assert rfc3339nano(cet) == "2018-04-12T09:00:00.5Z"
    assert rfc3339nano(datetime(2018, 4, 12, 9, 0, 0, 123_000, tzinfo=UTC)) == (
        "2018-04-12T09:00:00.123Z"
    )
    r = TimeRange(FROM + timedelta(microseconds=250_000), FROM + timedelta(minutes=5))
    assert expand_macros("$__timeFrom()", r) == "'2018-04-12T18:00:00.25Z'"


@pytest.mark.parametrize(
    "sql",
    ["$__unknown(x)", "$__timeFilter()", "$__timeGroup(t)", "$__timeGroup(t, '5x')", "$__time()"],
)
def test_bad_macros_are_errors(sql: str) -> None:
    with pytest.raises(MacroError):
        expand_macros(sql, RANGE)


def test_global_substitutions_run_first() -> None:
    sql = "$__timeGroup(t, $__interval) $__interval_ms $__unixEpochFrom() $__unixEpochTo()"
    done = interpolate_globals(sql, RANGE, timedelta(minutes=5))
    assert done == "$__timeGroup(t, 5m) 300000 1523556000 1523556300"
    assert expand_macros(done, RANGE).startswith("floor(extract(epoch from t)/300)*300 ")


@pytest.mark.parametrize(
    ("interval", "text"),
    [
        (timedelta(milliseconds=500), "500ms"),
        (timedelta(seconds=30), "30s"),
        (timedelta(seconds=90), "1m"),
        (timedelta(hours=2), "2h"),
        (timedelta(days=3), "3d"),
        (timedelta(days=800), "2y"),
        (timedelta(microseconds=10), "1ms"),
    ],
)
def test_interval_text(interval: timedelta, text: str) -> None:
    assert format_interval(interval) == text


SITE = Variable("site", multi=True, include_all=True, all_value="'__all'", options=("s1", "s2"))
PLAIN_ALL = Variable("cp", multi=True, include_all=True, options=("CP1", "O'Neil"))
SINGLE = Variable("name")


def test_single_value_variables_are_escaped_not_quoted() -> None:
    sql = interpolate_variables("name = '$name'", {"name": SINGLE}, {"name": "O'Brien"})
    assert sql == "name = 'O''Brien'"


def test_multi_value_variables_are_quoted_literals_joined_by_commas() -> None:
    variables = {"cp": PLAIN_ALL}
    assert interpolate_variables("IN ($cp)", variables, {"cp": ["A", "B'C"]}) == "IN ('A','B''C')"
    assert interpolate_variables("IN (${cp})", variables, {"cp": "A"}) == "IN ('A')"
    assert interpolate_variables("IN (${cp:csv})", variables, {"cp": ["A", "B"]}) == "IN (A,B)"
    assert interpolate_variables("[[cp]]", variables, {"cp": ["A"]}) == "'A'"


def test_all_is_the_custom_all_value_unformatted() -> None:
    sql = "('__all' IN ($site) OR site_id IN ($site))"
    assert interpolate_variables(sql, {"site": SITE}, {"site": ALL}) == (
        "('__all' IN ('__all') OR site_id IN ('__all'))"
    )
    assert interpolate_variables(sql, {"site": SITE}, {"site": [ALL]}) == (
        "('__all' IN ('__all') OR site_id IN ('__all'))"
    )


def test_all_without_a_custom_value_is_every_option() -> None:
    assert interpolate_variables("IN ($cp)", {"cp": PLAIN_ALL}, {"cp": ALL}) == (
        "IN ('CP1','O''Neil')"
    )
    empty = Variable("cp", multi=True, include_all=True)
    assert interpolate_variables("IN ($cp)", {"cp": empty}, {"cp": ALL}) == "IN ()"


def test_macros_and_unknown_names_are_left_to_the_server() -> None:
    sql = "$__timeFilter(at) AND $other AND ${site}"
    assert interpolate_variables(sql, {"site": SITE}, {"site": ["s1"]}) == (
        "$__timeFilter(at) AND $other AND 's1'"
    )


def test_expand_runs_grafanas_order() -> None:
    sql = (
        "SELECT $__timeGroupAlias(bucket, $__interval), v FROM t"
        " WHERE $__timeFilter(bucket) AND site IN ($site)"
    )
    out = expand(
        sql,
        time_range=RANGE,
        interval=timedelta(minutes=1),
        variables={"site": SITE},
        selected={"site": ["s1", "s2"]},
    )
    assert out == (
        'SELECT floor(extract(epoch from bucket)/60)*60 AS "time", v FROM t WHERE bucket'
        " BETWEEN '2018-04-12T18:00:00Z' AND '2018-04-12T18:05:00Z' AND site IN ('s1','s2')"
    )
