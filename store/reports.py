"""The usage report's inputs (``reports.usage.UsageInputs``), read in one repeatable-read
snapshot: the connectors in scope, their status history over the period (with the status
each had at its start), the sessions overlapping it with their register readings, the
issued CDRs and the alerts. Scope: every station on the site (``stations.site_id`` now),
or every station without a site filter."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from psycopg import AsyncConnection, IsolationLevel

from reports.usage import (
    AlertFacts,
    RegisterReading,
    RevenueItem,
    SessionFacts,
    StatusChange,
    UsageInputs,
)

REGISTER = "Energy.Active.Import.Register"

# Stations in scope: all, or the site's (%(site)s NULL: all).
_IN_SCOPE = (
    "(%(site)s::text IS NULL"
    " OR {column} IN (SELECT charge_point_id FROM stations WHERE site_id = %(site)s))"
)

_CONNECTORS = """
SELECT c.charge_point_id, c.connector_id, st.site_id
FROM connectors c JOIN stations st ON st.charge_point_id = c.charge_point_id
WHERE c.connector_id > 0 AND (%(site)s::text IS NULL OR st.site_id = %(site)s)
  AND (st.decommissioned_at IS NULL OR st.decommissioned_at > %(start)s)
ORDER BY c.charge_point_id, c.connector_id
"""

# Rows of one instant, oldest first: a status restored when the station came back, then
# one it reported, then Offline (store.status.status_history, reversed).
_SAME_INSTANT = "CASE WHEN status = 'Offline' THEN 2 WHEN reason IS NULL THEN 1 ELSE 0 END"

# Per connector (the gateway keeps a ``connectors`` row for every connector that reported),
# its last row before the period (one index probe each), then the period's rows.
_STATUS = f"""
(SELECT h.charge_point_id, h.connector_id, h.at, h.status, h.error_code, h.reason,
        0 AS part, h.tie
 FROM connectors c
 CROSS JOIN LATERAL (
     SELECT charge_point_id, connector_id, at, status, error_code, reason,
            {_SAME_INSTANT} AS tie
     FROM connector_status_history
     WHERE charge_point_id = c.charge_point_id AND connector_id = c.connector_id
       AND at < %(start)s
     ORDER BY at DESC, tie DESC, status DESC LIMIT 1) h
 WHERE c.connector_id > 0 AND {_IN_SCOPE.format(column="c.charge_point_id")})
UNION ALL
(SELECT charge_point_id, connector_id, at, status, error_code, reason, 1 AS part,
        {_SAME_INSTANT} AS tie
 FROM connector_status_history
 WHERE at >= %(start)s AND at < %(until)s AND connector_id > 0
   AND {_IN_SCOPE.format(column="charge_point_id")})
ORDER BY charge_point_id, connector_id, part, at, tie, status
"""

_SESSIONS = f"""
SELECT session_id::text, charge_point_id, connector_id, transaction_id, started_at,
       stopped_at, meter_start_wh, meter_stop_wh, energy_wh
FROM sessions
WHERE started_at < %(until)s AND (stopped_at IS NULL OR stopped_at > %(start)s)
  AND {_IN_SCOPE.format(column="charge_point_id")}
ORDER BY started_at, session_id
"""

# For each session crossing a boundary of the period: the register sampled last at or
# before it and first after it (what the energy in the period is interpolated from).
_BOUNDARY_READINGS = f"""
SELECT k.session_id, r.measured_at, r.unit, r.value
FROM unnest(%(ids)s::text[], %(cps)s::text[], %(connectors)s::int[], %(txs)s::text[])
     AS k(session_id, cp, connector, tx)
CROSS JOIN (VALUES (%(start)s::timestamptz), (%(until)s::timestamptz)) AS b(at)
CROSS JOIN LATERAL (
    (SELECT measured_at, unit, value FROM meter_samples m
     WHERE m.charge_point_id = k.cp AND m.transaction_id = k.tx AND m.connector_id = k.connector
       AND m.measurand = '{REGISTER}' AND m.phase = '' AND m.measured_at <= b.at
     ORDER BY m.measured_at DESC LIMIT 1)
    UNION ALL
    (SELECT measured_at, unit, value FROM meter_samples m
     WHERE m.charge_point_id = k.cp AND m.transaction_id = k.tx AND m.connector_id = k.connector
       AND m.measurand = '{REGISTER}' AND m.phase = '' AND m.measured_at > b.at
     ORDER BY m.measured_at LIMIT 1)
) r
"""

_CDRS = f"""
SELECT charge_point_id, connector_id, start_date_time, currency, total_excl_minor,
       total_incl_minor
FROM cdrs
WHERE start_date_time >= %(start)s AND start_date_time < %(end)s
  AND {_IN_SCOPE.format(column="charge_point_id")}
"""

_ALERTS = f"""
SELECT station_id, connector_id, first_seen, kind FROM alerts
WHERE first_seen >= %(start)s AND first_seen < %(end)s
  AND {_IN_SCOPE.format(column="station_id")}
"""


def register_wh(unit: str | None, value: Decimal) -> Decimal | None:
    """A register sample in Wh (OCPP's default unit is Wh); None for another unit."""
    if unit in (None, "", "Wh"):
        return value
    if unit == "kWh":
        return value * 1000
    return None


def _readings(
    row: tuple[Any, ...], sampled: list[tuple[datetime, Decimal]]
) -> tuple[RegisterReading, ...]:
    _, _, _, _, started_at, stopped_at, meter_start, meter_stop, _ = row
    points = {started_at: Decimal(meter_start)}
    for at, wh in sampled:
        if at > started_at and (stopped_at is None or at < stopped_at):
            points[at] = wh
    if stopped_at is not None and meter_stop is not None:
        points[stopped_at] = Decimal(meter_stop)
    return tuple(RegisterReading(at, points[at]) for at in sorted(points))


async def _sessions(conn: AsyncConnection[Any], params: dict[str, Any]) -> list[SessionFacts]:
    rows = await (await conn.execute(_SESSIONS, params)).fetchall()
    start, until = params["start"], params["until"]
    crossing = [r for r in rows if r[4] < start or r[5] is None or r[5] > until]
    sampled: dict[str, list[tuple[datetime, Decimal]]] = {}
    if crossing:
        cur = await conn.execute(
            _BOUNDARY_READINGS,
            {
                **params,
                "ids": [r[0] for r in crossing],
                "cps": [r[1] for r in crossing],
                "connectors": [r[2] for r in crossing],
                "txs": [r[3] for r in crossing],
            },
        )
        for session_id, at, unit, value in await cur.fetchall():
            wh = register_wh(unit, value)
            if wh is not None:
                sampled.setdefault(session_id, []).append((at, wh))
    return [
        SessionFacts(
            session_id=r[0],
            charge_point_id=r[1],
            connector_id=r[2],
            started_at=r[4],
            stopped_at=r[5],
            energy_wh=None if r[8] is None else int(r[8]),
            readings=_readings(r, sampled.get(r[0], [])),
        )
        for r in rows
    ]


async def usage_inputs(
    conn: AsyncConnection[Any],
    *,
    start: datetime,
    end: datetime,
    observed_until: datetime,
    site_id: str | None,
    time_zone: str,
) -> UsageInputs:
    """Everything :func:`reports.usage.usage_report` needs for ``[start, end)``, as one
    consistent snapshot (a read-only repeatable-read transaction)."""
    until = max(start, min(observed_until, end))
    params = {"start": start, "end": end, "until": until, "site": site_id}
    previous = conn.isolation_level
    await conn.set_isolation_level(IsolationLevel.REPEATABLE_READ)
    try:
        async with conn.transaction():
            await conn.execute("SET TRANSACTION READ ONLY")
            connectors = await (await conn.execute(_CONNECTORS, params)).fetchall()
            status = await (await conn.execute(_STATUS, params)).fetchall()
            sessions = await _sessions(conn, params)
            cdrs = await (await conn.execute(_CDRS, params)).fetchall()
            alerts = await (await conn.execute(_ALERTS, params)).fetchall()
    finally:
        await conn.set_isolation_level(previous)
    return UsageInputs(
        start=start,
        end=end,
        observed_until=until,
        time_zone=time_zone,
        site_id=site_id,
        connectors=[(cp, int(c), site) for cp, c, site in connectors],
        status_changes=[StatusChange(r[0], int(r[1]), r[2], r[3], r[4], r[5]) for r in status],
        sessions=sessions,
        revenue=[RevenueItem(r[0], int(r[1]), r[2], r[3], int(r[4]), int(r[5])) for r in cdrs],
        alerts=[AlertFacts(r[0], int(r[1]), r[2], r[3]) for r in alerts],
    )
