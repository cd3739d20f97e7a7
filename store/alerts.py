"""Alerts (tables ``alerts``, ``alert_events``, ``alerts_outbox``, ``connector_health``):
the faults flow's writes (sync psycopg 3, one transaction per batch) and the API's reads
and actions (async).

Writes are idempotent under replay (Bytewax sinks are at-least-once):

* a version of an alert is keyed by ``(alert_id, version_key)`` (status, severity,
  last_seen): a replayed version inserts nothing into ``alert_events`` or the outbox;
* ``alerts`` keeps the latest version by ``last_seen`` (a late, older version does not
  overwrite a newer one); a person's acknowledgement survives later ``open`` versions and
  a person's resolve is final for that alert id;
* ``connector_health`` keeps the latest snapshot per connector by ``at``.

Reads (async) list alerts newest first (``first_seen DESC, alert_id DESC``, keyset
pagination on ``alerts_first_seen_idx``: the caller passes the last row's position), one
alert's history (``alert_events`` in the order recorded) and a station's health.

People's actions (async, one transaction each: the row locked, updated and its
``alert_events`` row written together, ``at`` = the database clock, since a person acts
in wall time, not telemetry time):

* acknowledge: ``open`` -> ``acknowledged``; an alert already acknowledged is returned
  as it is (no second audit row, the repeat's note is not stored); a resolved one raises
  :class:`AlertConflictError`;
* resolve: -> ``resolved`` with ``resolved_at``/``resolved_by``; an alert a person
  resolved already is returned as it is (no second audit row). An alert the flow resolved
  itself gets the person's name (``resolved_by``, keeping the flow's ``resolved_at``) and
  an audit row: from then on it is final.

Size: just over 400 lines: a table's reads and writes share one module throughout
``store/``, and the flow's upsert and people's actions must agree on the status rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import msgspec
import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from bus.alerts import ConnectorHealth, FaultAlert
from bus.times import format_rfc3339
from store.db import Where


def version_key(alert: FaultAlert) -> str:
    """What makes one published version of an alert distinct from another."""
    return f"{alert.status.value}|{alert.severity.value}|{format_rfc3339(alert.last_seen)}"


def _action(alert: FaultAlert) -> str:
    if alert.status.value == "resolved":
        return "resolved"
    return "opened" if alert.last_seen == alert.first_seen else "updated"


_UPSERT_ALERT = """
INSERT INTO alerts AS a (alert_id, station_id, connector_id, kind, severity, status,
    first_seen, last_seen, detector, evidence, recommended_action, resolved_at)
VALUES (%(alert_id)s, %(station_id)s, %(connector_id)s, %(kind)s, %(severity)s, %(status)s,
    %(first_seen)s, %(last_seen)s, %(detector)s, %(evidence)s, %(recommended_action)s,
    %(resolved_at)s)
ON CONFLICT (alert_id) DO UPDATE SET
    severity = EXCLUDED.severity,
    status = CASE
        WHEN a.resolved_by IS NOT NULL THEN 'resolved'
        WHEN a.status = 'acknowledged' AND EXCLUDED.status = 'open' THEN 'acknowledged'
        ELSE EXCLUDED.status END,
    last_seen = EXCLUDED.last_seen,
    detector = EXCLUDED.detector,
    evidence = EXCLUDED.evidence,
    resolved_at = CASE WHEN a.resolved_by IS NOT NULL THEN a.resolved_at
        ELSE EXCLUDED.resolved_at END,
    updated_at = now()
WHERE (EXCLUDED.last_seen, EXCLUDED.status = 'resolved') > (a.last_seen, a.status = 'resolved')
"""

_INSERT_EVENT = """
INSERT INTO alert_events (alert_id, version_key, action, status, severity, at, evidence, actor)
VALUES (%(alert_id)s, %(version_key)s, %(action)s, %(status)s, %(severity)s, %(last_seen)s,
    %(evidence)s, %(detector)s)
ON CONFLICT (alert_id, version_key) DO NOTHING
RETURNING alert_id
"""

_INSERT_OUTBOX = """
INSERT INTO alerts_outbox (alert_id, version_key, station_id, payload)
VALUES (%(alert_id)s, %(version_key)s, %(station_id)s, %(payload)s)
ON CONFLICT (alert_id, version_key) DO NOTHING
"""

_UPSERT_HEALTH = """
INSERT INTO connector_health AS h (station_id, connector_id, at, risk, phase, contributions,
    features)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (station_id, connector_id) DO UPDATE SET
    at = EXCLUDED.at, risk = EXCLUDED.risk, phase = EXCLUDED.phase,
    contributions = EXCLUDED.contributions, features = EXCLUDED.features, updated_at = now()
WHERE EXCLUDED.at >= h.at
"""


def _alert_params(alert: FaultAlert) -> dict[str, Any]:
    return {
        "alert_id": alert.alert_id,
        "station_id": alert.station_id,
        "connector_id": alert.connector_id,
        "kind": alert.alert_kind.value,
        "severity": alert.severity.value,
        "status": alert.status.value,
        "first_seen": alert.first_seen,
        "last_seen": alert.last_seen,
        "detector": alert.detector,
        "evidence": Jsonb(msgspec.to_builtins(alert.evidence)),
        "recommended_action": alert.recommended_action,
        "resolved_at": alert.resolved_at,
        "version_key": version_key(alert),
        "action": _action(alert),
        "payload": Jsonb(msgspec.to_builtins(alert)),
    }


def write_alerts_batch(
    conn: psycopg.Connection[Any],
    alerts: Sequence[FaultAlert],
    health: Sequence[ConnectorHealth],
) -> None:
    """Store alert versions (current row, history, outbox) and health snapshots in one
    transaction; versions already stored change nothing."""
    if not alerts and not health:
        return
    with conn.transaction(), conn.cursor() as cur:
        for alert in alerts:
            params = _alert_params(alert)
            cur.execute(_UPSERT_ALERT, params)
            cur.execute(_INSERT_EVENT, params)
            if cur.fetchone() is not None:  # a new version: publish it after the commit
                cur.execute(_INSERT_OUTBOX, params)
        latest: dict[tuple[str, int], ConnectorHealth] = {}
        for snapshot in health:
            key = (snapshot.station_id, snapshot.connector_id)
            if key not in latest or snapshot.at >= latest[key].at:
                latest[key] = snapshot
        if latest:
            cur.executemany(
                _UPSERT_HEALTH,
                [
                    (
                        h.station_id,
                        h.connector_id,
                        h.at,
                        h.risk,
                        h.phase,
                        Jsonb(h.contributions),
                        Jsonb(h.features),
                    )
                    for h in latest.values()
                ],
            )


# --------------------------------------------------------------------------- reads

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
AlertAction = Literal["acknowledge", "resolve"]


class AlertConflictError(Exception):
    """The action does not apply to the alert's current status (acknowledging a resolved
    alert)."""


@dataclass(frozen=True, slots=True)
class AlertRecord:
    alert_id: str
    station_id: str
    site_id: str | None  # the station's site (None: not provisioned or on no site)
    connector_id: int
    kind: str
    severity: str
    status: str
    first_seen: datetime
    last_seen: datetime
    detector: str
    evidence: dict[str, Any]
    recommended_action: str
    resolved_at: datetime | None
    resolved_by: str | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    note: str | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class AlertEventRecord:
    event_id: int
    version_key: str | None  # None: a person's action
    action: str
    status: str
    severity: str
    at: datetime
    evidence: dict[str, Any] | None
    actor: str
    note: str | None
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class AlertFilter:
    """Filters for :func:`list_alerts`: ``since`` inclusive, ``until`` exclusive, both on
    ``first_seen``; ``site_id`` through the stations table."""

    station_id: str | None = None
    site_id: str | None = None
    kind: str | None = None
    severity: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class AlertPosition:
    """Where a page ended: the last row's sort key."""

    first_seen: datetime
    alert_id: str


@dataclass(frozen=True, slots=True)
class AlertPage:
    items: list[AlertRecord] = field(default_factory=list)
    next_after: AlertPosition | None = None  # None on the last page


_ALERT_COLUMNS = """
    a.alert_id, a.station_id, st.site_id, a.connector_id, a.kind, a.severity, a.status,
    a.first_seen, a.last_seen, a.detector, a.evidence, a.recommended_action, a.resolved_at,
    a.resolved_by, a.acknowledged_at, a.acknowledged_by, a.note, a.updated_at
"""
_ALERTS_FROM = "alerts a LEFT JOIN stations st ON st.charge_point_id = a.station_id"


async def list_alerts(
    conn: psycopg.AsyncConnection[Any],
    filters: AlertFilter | None = None,
    *,
    after: AlertPosition | None = None,
    limit: int = DEFAULT_LIMIT,
) -> AlertPage:
    """One page of alerts, newest ``first_seen`` first, after ``after`` if given."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
    filters = filters or AlertFilter()
    where = Where()
    where.add_given("a.station_id = %s", filters.station_id)
    where.add_given("st.site_id = %s", filters.site_id)
    where.add_given("a.kind = %s", filters.kind)
    where.add_given("a.severity = %s", filters.severity)
    where.add_given("a.status = %s", filters.status)
    where.add_given("a.first_seen >= %s", filters.since)
    where.add_given("a.first_seen < %s", filters.until)
    if after is not None:
        where.add("(a.first_seen, a.alert_id) < (%s, %s)", after.first_seen, after.alert_id)
    query = (
        f"SELECT {_ALERT_COLUMNS} FROM {_ALERTS_FROM} WHERE {where.sql}"
        " ORDER BY a.first_seen DESC, a.alert_id DESC LIMIT %s"
    )
    async with conn.cursor(row_factory=class_row(AlertRecord)) as cur:
        await cur.execute(query, [*where.params, limit + 1])
        rows = await cur.fetchall()
    items = rows[:limit]
    next_after = None
    if len(rows) > limit:
        next_after = AlertPosition(items[-1].first_seen, items[-1].alert_id)
    return AlertPage(items=items, next_after=next_after)


async def get_alert(conn: psycopg.AsyncConnection[Any], alert_id: str) -> AlertRecord | None:
    async with conn.cursor(row_factory=class_row(AlertRecord)) as cur:
        await cur.execute(
            f"SELECT {_ALERT_COLUMNS} FROM {_ALERTS_FROM} WHERE a.alert_id = %s", (alert_id,)
        )
        return await cur.fetchone()


async def alert_history(
    conn: psycopg.AsyncConnection[Any], alert_id: str
) -> list[AlertEventRecord]:
    """The alert's versions from the flow and people's actions, in the order recorded."""
    async with conn.cursor(row_factory=class_row(AlertEventRecord)) as cur:
        await cur.execute(
            "SELECT event_id, version_key, action, status, severity, at, evidence, actor,"
            " note, recorded_at FROM alert_events WHERE alert_id = %s ORDER BY event_id",
            (alert_id,),
        )
        return await cur.fetchall()


# --------------------------------------------------------------------------- actions

_ACKNOWLEDGE = """
UPDATE alerts SET status = 'acknowledged', acknowledged_at = now(), acknowledged_by = %(actor)s,
    note = COALESCE(%(note)s, note), updated_at = now()
WHERE alert_id = %(alert_id)s
RETURNING severity
"""
_RESOLVE = """
UPDATE alerts SET status = 'resolved', resolved_at = COALESCE(resolved_at, now()),
    resolved_by = %(actor)s, note = COALESCE(%(note)s, note), updated_at = now()
WHERE alert_id = %(alert_id)s
RETURNING severity
"""
_AUDIT = """
INSERT INTO alert_events (alert_id, version_key, action, status, severity, at, actor, note)
VALUES (%(alert_id)s, NULL, %(action)s, %(status)s, %(severity)s, now(), %(actor)s, %(note)s)
"""


async def act_on_alert(
    conn: psycopg.AsyncConnection[Any],
    alert_id: str,
    action: AlertAction,
    *,
    actor: str,
    note: str | None = None,
) -> AlertRecord | None:
    """Acknowledge or resolve an alert as ``actor`` (rules in the module docstring);
    the alert as it is afterwards, None if there is no such alert."""
    async with conn.transaction():
        async with conn.cursor() as cur:
            await cur.execute(
                "SELECT status, resolved_by FROM alerts WHERE alert_id = %s FOR UPDATE",
                (alert_id,),
            )
            row = await cur.fetchone()
            if row is None:
                return None
            status, resolved_by = row
            if action == "acknowledge" and status == "resolved":
                raise AlertConflictError(f"alert {alert_id} is resolved; it cannot be acknowledged")
            repeated = (action == "acknowledge" and status == "acknowledged") or (
                action == "resolve" and resolved_by is not None
            )
            if not repeated:
                done = "acknowledged" if action == "acknowledge" else "resolved"
                params = {
                    "alert_id": alert_id,
                    "actor": actor,
                    "note": note,
                    "action": done,  # the audit row's action and the status it gave
                    "status": done,
                }
                await cur.execute(_ACKNOWLEDGE if action == "acknowledge" else _RESOLVE, params)
                severity = await cur.fetchone()
                assert severity is not None  # the row is locked
                await cur.execute(_AUDIT, {**params, "severity": severity[0]})
        return await get_alert(conn, alert_id)


# --------------------------------------------------------------------------- health


@dataclass(frozen=True, slots=True)
class ConnectorHealthRecord:
    connector_id: int
    at: datetime
    risk: float
    phase: str
    contributions: dict[str, float]
    features: dict[str, float]


@dataclass(frozen=True, slots=True)
class StationHealthRecord:
    station_id: str
    connectors: list[ConnectorHealthRecord]
    unresolved_by_severity: dict[str, int]  # severity -> alerts open or acknowledged


async def station_health(
    conn: psycopg.AsyncConnection[Any], station_id: str
) -> StationHealthRecord:
    """The latest health of the station's connectors (those the faults flow scored) and
    its unresolved alerts per severity (whether the station exists is
    :func:`store.stations.station_exists`)."""
    async with conn.cursor() as cur:
        await cur.execute(
            "SELECT severity, count(*) FROM alerts"
            " WHERE station_id = %s AND status <> 'resolved' GROUP BY severity",
            (station_id,),
        )
        counts = {severity: int(n) for severity, n in await cur.fetchall()}
    async with conn.cursor(row_factory=class_row(ConnectorHealthRecord)) as cur:
        await cur.execute(
            "SELECT connector_id, at, risk, phase, contributions, features"
            " FROM connector_health WHERE station_id = %s ORDER BY connector_id",
            (station_id,),
        )
        connectors = await cur.fetchall()
    return StationHealthRecord(station_id, connectors, counts)
