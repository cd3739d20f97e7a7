"""The Operations dashboard: load against site limits, power, availability, offline
stations, command outcomes, sessions, NEVI uptime per port and first-try success."""

from __future__ import annotations

from grafana_foundation_sdk.builders import barchart, stat, table, timeseries
from grafana_foundation_sdk.builders import common as gcommon
from grafana_foundation_sdk.models import common as gcommon_model
from grafana_foundation_sdk.models import dashboard as gmodel

from dashboards.common import (
    Flavour,
    Layout,
    Sql,
    board,
    site_variable,
    sites_match,
    station_variable,
    stations_match,
    thresholds,
    unit,
)
from dashboards.measures import first_try_sql, uptime_sql

UID = "chargeflow-operations"

SITE_LOAD = f"""
SELECT $__timeGroupAlias(m.bucket, $__interval), m.site_id AS metric, avg(m.kw) AS value
FROM (
    SELECT l.bucket, s.site_id, sum(l.avg_power_w) / 1000 AS kw
    FROM load_station_1m l JOIN stations s USING (charge_point_id)
    WHERE $__timeFilter(l.bucket) AND s.site_id IS NOT NULL AND {sites_match("s.site_id")}
    GROUP BY l.bucket, s.site_id
) m
GROUP BY 1, 2
ORDER BY 1, 2
"""

SITE_LIMIT = f"""
SELECT v.t AS "time", s.site_id || ' limit' AS metric, s.capacity_w / 1000.0 AS value
FROM sites s CROSS JOIN (VALUES ($__timeFrom()::timestamptz), ($__timeTo()::timestamptz)) v (t)
WHERE s.capacity_w IS NOT NULL AND {sites_match("s.site_id")}
ORDER BY 1, 2
"""

LIVE_SITES = f"""
SELECT site_id AS site, total_w / 1000 AS load_kw, capacity_w / 1000.0 AS limit_kw,
    utilisation_pct / 100 AS utilisation, over_capacity, station_count, offline_stations,
    as_of
FROM site_load_live
WHERE {sites_match("site_id")}
ORDER BY site_id
"""

STATION_POWER = f"""
SELECT $__timeGroupAlias(bucket, $__interval), charge_point_id AS metric,
    avg(avg_power_w) / 1000 AS value
FROM load_station_1m
WHERE $__timeFilter(bucket) AND {stations_match("charge_point_id")}
GROUP BY 1, 2
ORDER BY 1, 2
"""

AVAILABILITY = f"""
SELECT status, count(*) AS connectors
FROM connector_availability
WHERE connector_id >= 1 AND {stations_match("charge_point_id")}
GROUP BY status
ORDER BY connectors DESC, status
"""

OFFLINE_COUNT = f"""
SELECT count(*) AS offline
FROM stations s
WHERE s.decommissioned_at IS NULL AND {stations_match("s.charge_point_id")}
    AND NOT EXISTS (SELECT 1 FROM station_connections c WHERE c.charge_point_id = s.charge_point_id)
"""


def station_table_sql(flavour: Flavour) -> str:
    firmware_status = flavour.latest("f.status", "f.received_at")
    return f"""
SELECT s.charge_point_id AS station, s.site_id AS site,
    CASE WHEN c.charge_point_id IS NULL THEN 'Offline' ELSE 'Online' END AS connection,
    coalesce((SELECT string_agg(a.connector_id || ': ' || a.status, ', ' ORDER BY a.connector_id)
        FROM connector_availability a
        WHERE a.charge_point_id = s.charge_point_id AND a.connector_id >= 1), '') AS connectors,
    s.last_seen_at AS last_heartbeat, s.firmware_version AS firmware,
    (SELECT {firmware_status} FROM firmware_statuses f
        WHERE f.charge_point_id = s.charge_point_id) AS firmware_status,
    s.vendor, s.model, s.ocpp_version
FROM stations s LEFT JOIN station_connections c USING (charge_point_id)
WHERE s.decommissioned_at IS NULL AND {stations_match("s.charge_point_id")}
ORDER BY connection DESC, s.charge_point_id
"""


OFFLINE_TABLE = f"""
SELECT s.charge_point_id AS station, s.site_id AS site, s.last_seen_at AS last_seen,
    (SELECT max(a.connection_changed_at) FROM connector_availability a
        WHERE a.charge_point_id = s.charge_point_id AND NOT a.online) AS offline_since
FROM stations s
WHERE s.decommissioned_at IS NULL AND {stations_match("s.charge_point_id")}
    AND NOT EXISTS (SELECT 1 FROM station_connections c WHERE c.charge_point_id = s.charge_point_id)
ORDER BY last_seen NULLS FIRST, station
"""

COMMAND_OUTCOMES = f"""
SELECT $__timeGroupAlias(requested_at, $__interval), status AS metric, count(*)::bigint AS value
FROM commands
WHERE $__timeFilter(requested_at) AND {stations_match("charge_point_id")}
GROUP BY 1, 2
ORDER BY 1, 2
"""

COMMANDS_BY_ACTION = f"""
SELECT action, count(*) AS total,
    count(*) FILTER (WHERE status = 'accepted') AS accepted,
    count(*) FILTER (WHERE status = 'rejected') AS rejected,
    count(*) FILTER (WHERE status IN ('failed', 'timed_out', 'expired', 'offline')) AS failed,
    count(*) FILTER (WHERE status IN ('pending', 'sent')) AS open
FROM commands
WHERE $__timeFilter(requested_at) AND {stations_match("charge_point_id")}
GROUP BY action
ORDER BY total DESC, action
"""

SESSIONS = f"""
SELECT $__timeGroupAlias(started_at, $__interval), 'started' AS metric, count(*)::bigint AS value
FROM sessions
WHERE $__timeFilter(started_at) AND {stations_match("charge_point_id")}
GROUP BY 1
UNION ALL
SELECT $__timeGroupAlias(stopped_at, $__interval), 'stopped' AS metric, count(*)::bigint AS value
FROM sessions
WHERE stopped_at IS NOT NULL AND $__timeFilter(stopped_at)
    AND {stations_match("charge_point_id")}
GROUP BY 1
ORDER BY 1, 2
"""

STATUS_COLOURS = {
    "Available": "green",
    "Charging": "blue",
    "Preparing": "light-blue",
    "SuspendedEV": "purple",
    "SuspendedEVSE": "purple",
    "Finishing": "light-blue",
    "Reserved": "yellow",
    "Unavailable": "orange",
    "Faulted": "red",
    "Offline": "dark-red",
}


def _load(layout: Layout) -> None:
    layout.row("Load")
    layout.add(
        timeseries.Panel()
        .title("Site load against its limit")
        .description("Average site load per interval (kW, sum of its stations) and the limit.")
        .with_target(Sql(SITE_LOAD, "time_series"))
        .with_target(Sql(SITE_LIMIT, "time_series", ref_id="B"))
        .unit("kW")
        .min(0)
        .override_by_regexp(
            ".* limit$",
            [
                gmodel.DynamicConfigValue(id_val="custom.lineStyle", value={"fill": "dash"}),
                gmodel.DynamicConfigValue(id_val="custom.fillOpacity", value=0),
            ],
        )
        .fill_opacity(10),
        16,
        9,
    )
    layout.add(
        table.Panel()
        .title("Live site load")
        .description("The load flow's latest site totals (site_load_live).")
        .with_target(Sql(LIVE_SITES))
        .unit("kW")
        .override_by_name("utilisation", unit("percentunit"))
        .override_by_name(
            "utilisation",
            [
                gmodel.DynamicConfigValue(
                    id_val="custom.cellOptions", value={"type": "gauge", "mode": "basic"}
                )
            ],
        )
        .override_by_name("station_count", unit("none"))
        .override_by_name("offline_stations", unit("none"))
        .override_by_name("as_of", unit("dateTimeAsIso"))
        .thresholds(thresholds((None, "green"), (0.8, "orange"), (1.0, "red"))),
        8,
        9,
    )
    layout.add(
        timeseries.Panel()
        .title("Power per station")
        .with_target(Sql(STATION_POWER, "time_series"))
        .unit("kW")
        .min(0),
        24,
        8,
    )


def _availability(layout: Layout, flavour: Flavour) -> None:
    layout.row("Availability")
    layout.add(
        barchart.Panel()
        .title("Connectors by status")
        .description("Connector availability now (Offline: the station's connection is down).")
        .with_target(Sql(AVAILABILITY))
        .x_field("status")
        .unit("none")
        .mappings(
            [
                gmodel.ValueMap(
                    options={
                        status: gmodel.ValueMappingResult(color=colour)
                        for status, colour in STATUS_COLOURS.items()
                    }
                )
            ]
        ),
        8,
        8,
    )
    layout.add(
        stat.Panel()
        .title("Offline stations")
        .with_target(Sql(OFFLINE_COUNT))
        .unit("none")
        .thresholds(thresholds((None, "green"), (1, "red"))),
        4,
        8,
    )
    layout.add(
        table.Panel().title("Offline stations: since when").with_target(Sql(OFFLINE_TABLE)),
        12,
        8,
    )
    layout.add(
        table.Panel()
        .title("Stations")
        .description("Connection, connector statuses, last message seen (heartbeat), firmware.")
        .with_target(Sql(station_table_sql(flavour)))
        .override_by_name(
            "connection",
            [
                gmodel.DynamicConfigValue(
                    id_val="custom.cellOptions", value={"type": "color-text"}
                ),
                gmodel.DynamicConfigValue(
                    id_val="mappings",
                    value=[
                        {
                            "type": "value",
                            "options": {
                                "Online": {"color": "green"},
                                "Offline": {"color": "red"},
                            },
                        }
                    ],
                ),
            ],
        )
        .override_by_name("last_heartbeat", unit("dateTimeFromNow"))
        .footer(gcommon.TableFooterOptions().show(False).reducer(["count"]))
        .cell_height(gcommon_model.TableCellHeight.SM),
        24,
        10,
    )


def _activity(layout: Layout) -> None:
    layout.row("Commands and sessions")
    layout.add(
        timeseries.Panel()
        .title("Command outcomes")
        .description("Remote commands by the status they ended in (or are in), per interval.")
        .with_target(Sql(COMMAND_OUTCOMES, "time_series"))
        .unit("none")
        .draw_style(gcommon_model.GraphDrawStyle.BARS)
        .stacking(gcommon.StackingConfig().mode(gcommon_model.StackingMode.NORMAL))
        .fill_opacity(80),
        12,
        8,
    )
    layout.add(
        table.Panel().title("Commands by action").with_target(Sql(COMMANDS_BY_ACTION)), 12, 8
    )
    layout.add(
        timeseries.Panel()
        .title("Sessions started and stopped")
        .with_target(Sql(SESSIONS, "time_series"))
        .unit("none")
        .draw_style(gcommon_model.GraphDrawStyle.BARS)
        .fill_opacity(60),
        24,
        8,
    )


def _quality(layout: Layout) -> None:
    layout.row("Uptime and success")
    layout.add(
        table.Panel()
        .title("Uptime per port (NEVI, 23 CFR 680.116)")
        .description(
            "Uptime over the selected range: (observed - (outage - excluded)) / observed."
            " Outage: Faulted, Unavailable or Offline. NEVI requires > 97 % over 12 months"
            " (choose 'Last 1 year'). See docs/dashboards.md."
        )
        .with_target(Sql(uptime_sql()))
        .override_by_name("uptime_pct", unit("percent"))
        .override_by_name(
            "uptime_pct",
            [
                gmodel.DynamicConfigValue(
                    id_val="custom.cellOptions", value={"type": "color-background"}
                )
            ],
        )
        .override_by_name("observed_min", unit("m"))
        .override_by_name("outage_min", unit("m"))
        .override_by_name("excluded_min", unit("m"))
        .thresholds(thresholds((None, "red"), (97, "green"))),
        12,
        10,
    )
    layout.add(
        table.Panel()
        .title("First-try charging success per station")
        .description(
            "Sessions started in the range that delivered energy and were not stopped by"
            " the station (models.sessions_success's rules); model_rate: the fault"
            " model's rolling rate over each connector's last attempts (lowest connector)."
        )
        .with_target(Sql(first_try_sql()))
        .override_by_name("success_rate", unit("percentunit"))
        .override_by_name("model_rate", unit("percentunit"))
        .override_by_name(
            "success_rate",
            [
                gmodel.DynamicConfigValue(
                    id_val="custom.cellOptions", value={"type": "color-background"}
                )
            ],
        )
        .thresholds(thresholds((None, "red"), (0.6, "orange"), (0.9, "green"))),
        12,
        10,
    )


def build(flavour: Flavour) -> gmodel.Dashboard:
    dash = (
        board(
            UID,
            "chargeflow: Operations",
            "Live load against site limits, availability, offline stations, commands,"
            " sessions, uptime per port and first-try success.",
            refresh="30s",
            since="now-6h",
        )
        .with_variable(site_variable())
        .with_variable(station_variable())
    )
    layout = Layout(dash)
    _load(layout)
    _availability(layout, flavour)
    _activity(layout)
    _quality(layout)
    return dash.build()
