"""The Maintenance dashboard: open alerts, risk per station over time and ranked, error
codes, firmware versions and rollout progress."""

from __future__ import annotations

from grafana_foundation_sdk.builders import barchart, piechart, table, timeseries
from grafana_foundation_sdk.builders import common as gcommon
from grafana_foundation_sdk.models import common as gcommon_model
from grafana_foundation_sdk.models import dashboard as gmodel

from dashboards.common import (
    Flavour,
    Layout,
    Sql,
    board,
    site_variable,
    station_variable,
    stations_match,
    thresholds,
    unit,
)

UID = "chargeflow-maintenance"

SEVERITY_RANK = "array_position(ARRAY['critical', 'high', 'medium', 'low']::text[], severity)"
OPEN = "status <> 'resolved'"

ALERTS_BY_SEVERITY = f"""
SELECT severity, count(*) AS alerts
FROM alerts
WHERE {OPEN} AND {stations_match("station_id")}
GROUP BY severity
ORDER BY {SEVERITY_RANK}
"""

ALERTS_BY_KIND = f"""
SELECT kind, count(*) AS alerts
FROM alerts
WHERE {OPEN} AND {stations_match("station_id")}
GROUP BY kind
ORDER BY alerts DESC, kind
"""

OPEN_ALERTS = f"""
SELECT severity, kind, station_id AS station, connector_id AS connector, status,
    first_seen, last_seen, detector, recommended_action
FROM alerts
WHERE {OPEN} AND {stations_match("station_id")}
ORDER BY {SEVERITY_RANK}, last_seen DESC
LIMIT 200
"""

RISK_OVER_TIME = f"""
SELECT $__timeGroupAlias(bucket, $__interval), station_id AS metric, max(max_risk) AS value
FROM connector_risk_1m
WHERE $__timeFilter(bucket) AND {stations_match("station_id")}
GROUP BY 1, 2
ORDER BY 1, 2
"""

RISK_RANKING = f"""
SELECT h.station_id AS station, max(h.risk) AS risk,
    (array_agg(h.connector_id ORDER BY h.risk DESC))[1] AS riskiest_connector,
    bool_and(h.phase = 'monitoring') AS monitoring, max(h.at) AS scored_at,
    (SELECT count(*) FROM alerts a WHERE a.station_id = h.station_id AND a.{OPEN})
        AS open_alerts
FROM connector_health h
WHERE {stations_match("h.station_id")}
GROUP BY h.station_id
ORDER BY risk DESC, station
LIMIT 25
"""

ERROR_CODES = "error_code IS NOT NULL AND error_code NOT IN ('', 'NoError')"

ERRORS_OVER_TIME = f"""
SELECT $__timeGroupAlias(at, $__interval), error_code AS metric, count(*)::bigint AS value
FROM connector_status_history
WHERE $__timeFilter(at) AND {ERROR_CODES} AND {stations_match("charge_point_id")}
GROUP BY 1, 2
ORDER BY 1, 2
"""

ERROR_RATES = f"""
SELECT charge_point_id AS station, error_code, count(*) AS reports,
    count(*) / (extract(epoch FROM $__timeTo()::timestamptz - $__timeFrom()::timestamptz)
        / 86400) AS per_day,
    max(at) AS last_at
FROM connector_status_history
WHERE $__timeFilter(at) AND {ERROR_CODES} AND {stations_match("charge_point_id")}
GROUP BY charge_point_id, error_code
ORDER BY per_day DESC, station, error_code
LIMIT 100
"""

FIRMWARE_VERSIONS = f"""
SELECT coalesce(firmware_version, 'unknown') AS firmware, count(*) AS stations
FROM stations
WHERE decommissioned_at IS NULL AND {stations_match("charge_point_id")}
GROUP BY 1
ORDER BY stations DESC, firmware
"""


def rollouts_sql(flavour: Flavour) -> str:
    last_status = flavour.latest("s.last_status", "s.updated_at")
    return f"""
SELECT r.name AS rollout, r.status, r.current_wave + 1 AS wave,
    count(s.charge_point_id) AS stations,
    count(*) FILTER (WHERE s.state = 'installed') AS installed,
    count(*) FILTER (WHERE s.state IN ('sent', 'downloading', 'installing')) AS in_progress,
    count(*) FILTER (WHERE s.state = 'queued') AS queued,
    count(*) FILTER (WHERE s.state IN ('failed', 'timed_out')) AS failed,
    coalesce(count(*) FILTER (WHERE s.state = 'installed')::double precision
        / nullif(count(s.charge_point_id), 0), 0) AS progress,
    {last_status} AS last_status, r.pause_reason, r.updated_at
FROM firmware_rollouts r LEFT JOIN firmware_rollout_stations s USING (rollout_id)
WHERE r.created_at <= $__timeTo()
    AND (r.status IN ('pending', 'running', 'paused') OR r.updated_at >= $__timeFrom())
GROUP BY r.rollout_id
ORDER BY r.created_at DESC
"""


def _alerts(layout: Layout) -> None:
    layout.row("Alerts")
    for title, sql, x in (
        ("Open alerts by severity", ALERTS_BY_SEVERITY, "severity"),
        ("Open alerts by kind", ALERTS_BY_KIND, "kind"),
    ):
        layout.add(barchart.Panel().title(title).with_target(Sql(sql)).x_field(x), 8, 8)
    layout.add(
        piechart.Panel()
        .title("Firmware versions")
        .description("Active stations per reported firmware version.")
        .with_target(Sql(FIRMWARE_VERSIONS))
        .reduce_options(gcommon.ReduceDataOptions().values(True).calcs(["lastNotNull"]))
        .unit("none"),
        8,
        8,
    )
    layout.add(table.Panel().title("Open alerts").with_target(Sql(OPEN_ALERTS)), 24, 9)


def _risk(layout: Layout) -> None:
    layout.row("Risk")
    layout.add(
        timeseries.Panel()
        .title("Risk per station over time")
        .description("Highest anomaly score of the station's connectors per interval [0, 1].")
        .with_target(Sql(RISK_OVER_TIME, "time_series"))
        .unit("percentunit")
        .min(0)
        .max(1)
        .thresholds(thresholds((None, "green"), (0.7, "orange"), (0.9, "red")))
        .thresholds_style(
            gcommon.GraphThresholdsStyleConfig().mode(gcommon_model.GraphThresholdsStyleMode.LINE)
        ),
        14,
        9,
    )
    layout.add(
        table.Panel()
        .title("Stations ranked by risk")
        .with_target(Sql(RISK_RANKING))
        .override_by_name("risk", unit("percentunit"))
        .override_by_name(
            "risk",
            [
                gmodel.DynamicConfigValue(
                    id_val="custom.cellOptions", value={"type": "color-background"}
                )
            ],
        )
        .thresholds(thresholds((None, "green"), (0.7, "orange"), (0.9, "red"))),
        10,
        9,
    )


def _errors_and_firmware(layout: Layout, flavour: Flavour) -> None:
    layout.row("Error codes and firmware")
    layout.add(
        timeseries.Panel()
        .title("Error codes reported")
        .description("StatusNotifications with an error code other than NoError, per interval.")
        .with_target(Sql(ERRORS_OVER_TIME, "time_series"))
        .unit("none")
        .draw_style(gcommon_model.GraphDrawStyle.BARS)
        .stacking(gcommon.StackingConfig().mode(gcommon_model.StackingMode.NORMAL))
        .fill_opacity(80),
        12,
        8,
    )
    layout.add(
        table.Panel()
        .title("Error-code rates per station")
        .with_target(Sql(ERROR_RATES))
        .override_by_name("per_day", [gmodel.DynamicConfigValue(id_val="decimals", value=2)]),
        12,
        8,
    )
    layout.add(
        table.Panel()
        .title("Firmware rollouts")
        .description("Rollouts open now or changed in the range: stations per state.")
        .with_target(Sql(rollouts_sql(flavour)))
        .override_by_name("progress", unit("percentunit"))
        .override_by_name(
            "progress",
            [
                gmodel.DynamicConfigValue(
                    id_val="custom.cellOptions", value={"type": "gauge", "mode": "basic"}
                )
            ],
        ),
        24,
        8,
    )


def build(flavour: Flavour) -> gmodel.Dashboard:
    dash = (
        board(
            UID,
            "chargeflow: Maintenance",
            "Open alerts, risk per station, error codes, firmware versions and rollouts.",
            refresh="1m",
            since="now-7d",
        )
        .with_variable(site_variable())
        .with_variable(station_variable())
    )
    layout = Layout(dash)
    _alerts(layout)
    _risk(layout)
    _errors_and_firmware(layout, flavour)
    return dash.build()
