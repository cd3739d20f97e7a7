"""What the three dashboards share: the PostgreSQL datasource reference, the raw SQL
query (the foundation SDK has no builder for the SQL data sources), the site and station
variables with their SQL filters, the storage flavour, and panel helpers.

The variables are multi-value with "All"; All is the custom all value ``'__all'`` (a SQL
literal Grafana inserts unformatted), so a filter reads ``('__all' IN ($site) OR site_id
IN ($site))``: All matches every row, also with no options at all (an empty database),
and a fleet of thousands of stations never becomes an ``IN`` list of thousands."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Self

from grafana_foundation_sdk.builders import dashboard as gdash
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard as gmodel

DATASOURCE_TYPE = "grafana-postgresql-datasource"
DATASOURCE_UID = "chargeflow-db"
DATASOURCE_NAME = "chargeflow"
DATASOURCE = gmodel.DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)
ALL_VALUE = "'__all'"
TAGS = ["chargeflow"]

Format = Literal["time_series", "table"]


@dataclass(frozen=True, slots=True)
class Flavour:
    """Which database the SQL is for: TimescaleDB (``time_bucket``, ``last``; the
    datasource's ``timescaledb`` option makes Grafana's ``$__timeGroup`` a
    ``time_bucket`` too) or plain PostgreSQL (``date_bin``, ordered ``array_agg``).
    Every table and aggregate the panels read has the same name and columns in both."""

    timescale: bool = True

    def day(self, column: str) -> str:
        """The UTC day of ``column`` (a timestamptz)."""
        if self.timescale:
            return f"time_bucket(INTERVAL '1 day', {column})"
        return f"date_bin(INTERVAL '1 day', {column}, TIMESTAMPTZ '2000-01-01 00:00:00+00')"

    def latest(self, value: str, at: str) -> str:
        """The aggregate: ``value`` of the row with the latest ``at`` in the group."""
        if self.timescale:
            return f"last({value}, {at})"
        return f"(array_agg({value} ORDER BY {at} DESC))[1]"


class SqlQuery(cogvariants.Dataquery):
    """A PostgreSQL data source target in code mode."""

    def __init__(self, ref_id: str, raw_sql: str, fmt: Format) -> None:
        self.ref_id = ref_id
        self.raw_sql = raw_sql
        self.format = fmt

    def to_json(self) -> dict[str, Any]:
        return {
            "refId": self.ref_id,
            "datasource": {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID},
            "editorMode": "code",
            "format": self.format,
            "rawQuery": True,
            "rawSql": self.raw_sql,
        }


class Sql(cogbuilder.Builder[SqlQuery]):
    def __init__(self, raw_sql: str, fmt: Format = "table", ref_id: str = "A") -> None:
        self._query = SqlQuery(ref_id, raw_sql.strip(), fmt)

    def build(self) -> SqlQuery:
        return self._query


def sites_match(column: str) -> str:
    """SQL: ``column`` (a site id) is among the selected sites."""
    return f"({ALL_VALUE} IN ($site) OR {column} IN ($site))"


def stations_match(column: str) -> str:
    """SQL: ``column`` (a charge point id) is a selected station of a selected site."""
    return (
        f"{column} IN (SELECT charge_point_id FROM stations WHERE {sites_match('site_id')}"
        f" AND ({ALL_VALUE} IN ($station) OR charge_point_id IN ($station)))"
    )


def _all() -> gmodel.VariableOption:
    return gmodel.VariableOption(selected=True, text="All", value="$__all")


def site_variable() -> gdash.QueryVariable:
    return (
        gdash.QueryVariable("site")
        .label("Site")
        .datasource(DATASOURCE)
        .query("SELECT site_id AS __value, name AS __text FROM sites ORDER BY name, site_id")
        .multi(True)
        .include_all(True)
        .all_value(ALL_VALUE)
        .current(_all())
        .refresh(gmodel.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(gmodel.VariableSort.DISABLED)
    )


def station_variable() -> gdash.QueryVariable:
    return (
        gdash.QueryVariable("station")
        .label("Station")
        .datasource(DATASOURCE)
        .query(
            "SELECT charge_point_id FROM stations WHERE decommissioned_at IS NULL"
            f" AND {sites_match('site_id')} ORDER BY charge_point_id"
        )
        .multi(True)
        .include_all(True)
        .all_value(ALL_VALUE)
        .current(_all())
        .refresh(gmodel.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(gmodel.VariableSort.DISABLED)
    )


def thresholds(*steps: tuple[float | None, str]) -> gdash.ThresholdsConfig:
    return (
        gdash.ThresholdsConfig()
        .mode(gmodel.ThresholdsMode.ABSOLUTE)
        .steps([gmodel.Threshold(value=value, color=color) for value, color in steps])
    )


def unit(value: str) -> list[gmodel.DynamicConfigValue]:
    """The properties of a field override that sets the unit."""
    return [gmodel.DynamicConfigValue(id_val="unit", value=value)]


class Layout:
    """Panel ids in order (1, 2, ...); the SDK places panels left to right, so each row
    of panels spans exactly the 24 grid columns."""

    def __init__(self, board: gdash.Dashboard) -> None:
        self.board = board
        self.next_id = 1

    def add(self, panel: Any, w: int, h: int) -> Self:
        self.board.with_panel(panel.id(self.next_id).datasource(DATASOURCE).span(w).height(h))
        self.next_id += 1
        return self

    def row(self, title: str) -> Self:
        self.board.with_row(gdash.Row(title).id(self.next_id))
        self.next_id += 1
        return self


def board(uid: str, title: str, description: str, refresh: str, since: str) -> gdash.Dashboard:
    return (
        gdash.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .refresh(refresh)
        .time(since, "now")
        .timezone("browser")
        .editable()
        .tooltip(gmodel.DashboardCursorSync.CROSSHAIR)
        .timepicker(gdash.TimePicker().refresh_intervals(["30s", "1m", "5m", "15m", "1h"]))
    )
