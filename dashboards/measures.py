"""The two measures the Operations dashboard defines beyond plain counts: uptime per
port as the US NEVI rule defines it, and first-try charging success.

**Uptime (23 CFR 680.116(b)).** For each charging port (a connector >= 1) over the
selected range, from ``connector_status_history`` (every status change, ``Offline`` rows
while the station's connection is down):

    uptime % = (T_observed - (T_outage - T_excluded)) / T_observed x 100

* T_observed: the part of the range from the port's first known status on (NEVI's
  525,600 minutes are the 12 months before; choose "Last 1 year" for the rule's figure);
* T_outage: time in ``Faulted``, ``Unavailable`` or ``Offline``;
* T_excluded: outages NEVI excludes (grid failures, vandalism, scheduled maintenance,
  the EV's fault, ...). chargeflow records no cause of an outage, so it is 0 and the
  figure is a lower bound of the rule's uptime.

The status in force at the range's start is the last change before it; changes at the
same instant are ordered as ``store.status.status_history`` orders them.

**First-try success.** The attempts and failures of :mod:`models.sessions_success`
(the fault model's definition) over the sessions *started* in the range, as far as the
``sessions`` table tells them: an attempt fails when it delivered less than
``min_energy_wh`` or the station stopped it (:data:`STATION_STOPS`, or ``Other`` within
``early`` of the start); sessions ended for the driver's account
(:data:`NOT_THE_STATIONS`) are no attempt. The model's own rolling rate (which also
knows the statuses: an EV that declined is no attempt) is shown beside it.
"""

from __future__ import annotations

from dashboards.common import stations_match
from models.sessions_success import NOT_THE_STATIONS, STATION_STOPS, SessionSuccess

OUTAGE_STATUSES = ("Faulted", "Unavailable", "Offline")


def _text_array(values: frozenset[str] | tuple[str, ...]) -> str:
    return "ARRAY[" + ", ".join(f"'{v}'" for v in sorted(values)) + "]::text[]"


def uptime_sql() -> str:
    outage = _text_array(OUTAGE_STATUSES)
    same_instant = "CASE WHEN x.status = 'Offline' THEN 2 WHEN x.reason IS NULL THEN 1 ELSE 0 END"
    return f"""
WITH ports AS (
    SELECT charge_point_id, connector_id FROM connectors
    WHERE connector_id >= 1 AND {stations_match("charge_point_id")}
), changes AS (
    SELECT p.charge_point_id, p.connector_id, x.at, x.status,
        lead(x.at) OVER (PARTITION BY p.charge_point_id, p.connector_id
            ORDER BY x.at, {same_instant}, x.status DESC) AS next_at
    FROM ports p CROSS JOIN LATERAL (
        (SELECT h.at, h.status, h.reason FROM connector_status_history h
            WHERE h.charge_point_id = p.charge_point_id AND h.connector_id = p.connector_id
                AND h.at <= $__timeFrom()
            ORDER BY h.at DESC, CASE WHEN h.status = 'Offline' THEN 0
                WHEN h.reason IS NULL THEN 1 ELSE 2 END, h.status
            LIMIT 1)
        UNION ALL
        (SELECT h.at, h.status, h.reason FROM connector_status_history h
            WHERE h.charge_point_id = p.charge_point_id AND h.connector_id = p.connector_id
                AND h.at > $__timeFrom() AND h.at < $__timeTo())
    ) x
), spans AS (
    SELECT charge_point_id, connector_id, status = ANY({outage}) AS outage,
        extract(epoch FROM least(coalesce(next_at, $__timeTo()::timestamptz),
            $__timeTo()::timestamptz) - greatest(at, $__timeFrom()::timestamptz)) AS seconds
    FROM changes
)
SELECT charge_point_id AS station, connector_id AS port,
    round(sum(seconds) / 60) AS observed_min,
    round(coalesce(sum(seconds) FILTER (WHERE outage), 0) / 60) AS outage_min,
    0 AS excluded_min,
    100 * (sum(seconds) - coalesce(sum(seconds) FILTER (WHERE outage), 0))
        / sum(seconds) AS uptime_pct
FROM spans
WHERE seconds > 0
GROUP BY charge_point_id, connector_id
ORDER BY uptime_pct, station, port
"""


def first_try_sql() -> str:
    rules = SessionSuccess()
    early_s = int(rules.early.total_seconds())
    return f"""
WITH attempts AS (
    SELECT charge_point_id,
        NOT (coalesce(energy_wh, 0) < {rules.min_energy_wh}
            OR stop_reason = ANY({_text_array(STATION_STOPS)})
            OR (stop_reason = 'Other'
                AND stopped_at - started_at < make_interval(secs => {early_s}))) AS ok
    FROM sessions
    WHERE status = 'closed' AND $__timeFilter(started_at)
        AND {stations_match("charge_point_id")}
        AND NOT coalesce(stop_reason = ANY({_text_array(NOT_THE_STATIONS)}), false)
), model AS (
    SELECT station_id, min((features ->> 'first_try_success')::double precision) AS rate
    FROM connector_health
    WHERE features ->> 'first_try_success' IS NOT NULL
    GROUP BY station_id
)
SELECT a.charge_point_id AS station, count(*) AS attempts,
    count(*) FILTER (WHERE a.ok) AS first_try_ok,
    avg(a.ok::int)::double precision AS success_rate,
    min(m.rate) AS model_rate
FROM attempts a LEFT JOIN model m ON m.station_id = a.charge_point_id
GROUP BY a.charge_point_id
ORDER BY success_rate, station
"""
