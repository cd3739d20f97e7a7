"""Batch writers for the flows: one function per batch, one transaction per call.

Idempotent under replay (Bytewax sinks are at-least-once):

* sessions are upserted on ``session_id``; within a batch the last snapshot of a
  session wins; a closed session is never reopened by a replayed active snapshot
  (``WHERE sessions.status <> 'closed' OR EXCLUDED.status = 'closed'``); there are
  no write-time columns, so replaying the same events leaves the table identical.
* meter samples go through binary COPY into a temporary staging table and then
  ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` on their natural key.

A closed snapshot whose start the flow never saw carries ``start_unknown`` in
``quality_reasons`` and no start fields: the upsert then keeps the stored start
(connector, id tag, started_at, meter_start_wh) and computes
``energy_wh = meter_stop_wh - sessions.meter_start_wh`` (NULL if negative). If no
row exists yet, it is inserted with placeholders that keep the columns NOT NULL
(connector 0 = the charge point as a whole, started_at = stopped_at,
meter_start_wh = meter_stop_wh) and ``energy_wh`` NULL; the reason stays on the row,
and a replayed orphan stop leaves such a placeholder row as it is (energy stays NULL).

The rows are duck-typed (see :class:`SessionRecord`, :class:`SampleRecord`) so
this module does not depend on ``flows``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

import psycopg

START_UNKNOWN = "start_unknown"


class SessionRecord(Protocol):
    @property
    def session_id(self) -> uuid.UUID: ...
    @property
    def charge_point_id(self) -> str: ...
    @property
    def connector_id(self) -> int | None: ...
    @property
    def transaction_id(self) -> str: ...
    @property
    def id_tag(self) -> str | None: ...
    @property
    def status(self) -> str: ...
    @property
    def started_at(self) -> datetime | None: ...
    @property
    def stopped_at(self) -> datetime | None: ...
    @property
    def meter_start_wh(self) -> int | None: ...
    @property
    def meter_stop_wh(self) -> int | None: ...
    @property
    def last_register_wh(self) -> int | None: ...
    @property
    def energy_wh(self) -> int | None: ...
    @property
    def energy_source(self) -> str: ...
    @property
    def quality(self) -> str: ...
    @property
    def quality_reasons(self) -> Sequence[str]: ...
    @property
    def stop_reason(self) -> str | None: ...
    @property
    def sample_count(self) -> int: ...


class SampleRecord(Protocol):
    @property
    def measured_at(self) -> datetime: ...
    @property
    def charge_point_id(self) -> str: ...
    @property
    def connector_id(self) -> int: ...
    @property
    def transaction_id(self) -> str | None: ...
    @property
    def measurand(self) -> str: ...
    @property
    def phase(self) -> str: ...
    @property
    def location(self) -> str: ...
    @property
    def context(self) -> str: ...
    @property
    def unit(self) -> str: ...
    @property
    def value(self) -> Decimal: ...


_UPSERT_SESSION = """
INSERT INTO sessions AS s (
    session_id, charge_point_id, connector_id, transaction_id, id_tag, status,
    started_at, stopped_at, meter_start_wh, meter_stop_wh, last_register_wh, energy_wh,
    energy_source, quality, quality_reasons, stop_reason, sample_count
) VALUES (
    %(session_id)s, %(charge_point_id)s, COALESCE(%(connector_id)s, 0), %(transaction_id)s,
    %(id_tag)s, %(status)s, COALESCE(%(started_at)s, %(stopped_at)s), %(stopped_at)s,
    COALESCE(%(meter_start_wh)s, %(meter_stop_wh)s), %(meter_stop_wh)s,
    %(last_register_wh)s, %(energy_wh)s, %(energy_source)s, %(quality)s,
    %(quality_reasons)s, %(stop_reason)s, %(sample_count)s
)
ON CONFLICT (session_id) DO UPDATE SET
    connector_id = CASE WHEN %(start_unknown)s THEN s.connector_id ELSE EXCLUDED.connector_id END,
    id_tag = CASE WHEN %(start_unknown)s THEN COALESCE(s.id_tag, EXCLUDED.id_tag)
                  ELSE EXCLUDED.id_tag END,
    status = EXCLUDED.status,
    started_at = CASE WHEN %(start_unknown)s THEN s.started_at ELSE EXCLUDED.started_at END,
    stopped_at = EXCLUDED.stopped_at,
    meter_start_wh = CASE WHEN %(start_unknown)s THEN s.meter_start_wh
                          ELSE EXCLUDED.meter_start_wh END,
    meter_stop_wh = EXCLUDED.meter_stop_wh,
    last_register_wh = CASE WHEN %(start_unknown)s THEN s.last_register_wh
                            ELSE EXCLUDED.last_register_wh END,
    energy_wh = CASE
        WHEN NOT %(start_unknown)s THEN EXCLUDED.energy_wh
        -- the stored row is itself an orphan stop: its start fields are placeholders
        -- unless an earlier merge found a real start (then energy is not NULL)
        WHEN 'start_unknown' = ANY(s.quality_reasons) AND s.energy_wh IS NULL THEN NULL
        WHEN EXCLUDED.meter_stop_wh >= s.meter_start_wh
            THEN EXCLUDED.meter_stop_wh - s.meter_start_wh
        END,
    energy_source = EXCLUDED.energy_source,
    quality = EXCLUDED.quality,
    quality_reasons = EXCLUDED.quality_reasons,
    stop_reason = EXCLUDED.stop_reason,
    sample_count = CASE WHEN %(start_unknown)s
                        THEN GREATEST(s.sample_count, EXCLUDED.sample_count)
                        ELSE EXCLUDED.sample_count END
WHERE s.status <> 'closed' OR EXCLUDED.status = 'closed'
"""

_SAMPLE_COLUMNS = (
    "measured_at", "charge_point_id", "connector_id", "transaction_id", "measurand",
    "phase", "location", "context", "unit", "value",
)
_SAMPLE_TYPES = (
    "timestamptz", "text", "int4", "text", "text", "text", "text", "text", "text", "numeric",
)
_STAGING = "meter_samples_staging"


def _session_params(row: SessionRecord) -> dict[str, Any]:
    reasons = list(row.quality_reasons)
    return {
        "session_id": row.session_id,
        "charge_point_id": row.charge_point_id,
        "connector_id": row.connector_id,
        "transaction_id": row.transaction_id,
        "id_tag": row.id_tag,
        "status": row.status,
        "started_at": row.started_at,
        "stopped_at": row.stopped_at,
        "meter_start_wh": row.meter_start_wh,
        "meter_stop_wh": row.meter_stop_wh,
        "last_register_wh": row.last_register_wh,
        "energy_wh": row.energy_wh,
        "energy_source": row.energy_source,
        "quality": row.quality,
        "quality_reasons": reasons,
        "stop_reason": row.stop_reason,
        "sample_count": row.sample_count,
        "start_unknown": row.meter_start_wh is None and START_UNKNOWN in reasons,
    }


def latest_per_session(rows: Iterable[SessionRecord]) -> list[SessionRecord]:
    """De-duplicate snapshots by session id; the last one of each session wins."""
    latest: dict[uuid.UUID, SessionRecord] = {}
    for row in rows:
        latest.pop(row.session_id, None)
        latest[row.session_id] = row
    return list(latest.values())


def write_sessions_batch(
    conn: psycopg.Connection[Any],
    sessions: Iterable[SessionRecord],
    samples: Iterable[SampleRecord],
) -> None:
    """Upsert session snapshots and insert meter samples in one transaction."""
    session_rows = latest_per_session(sessions)
    sample_rows = list(samples)
    if not session_rows and not sample_rows:
        return
    with conn.transaction(), conn.cursor() as cur:
        if sample_rows:
            cur.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {_STAGING} "
                "(LIKE meter_samples INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            columns = ", ".join(_SAMPLE_COLUMNS)
            with cur.copy(f"COPY {_STAGING} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(list(_SAMPLE_TYPES))
                for s in sample_rows:
                    copy.write_row(
                        (
                            s.measured_at, s.charge_point_id, s.connector_id, s.transaction_id,
                            s.measurand, s.phase, s.location, s.context, s.unit, s.value,
                        )
                    )
            cur.execute(
                f"INSERT INTO meter_samples ({columns}) SELECT {columns} FROM {_STAGING} "
                "ON CONFLICT DO NOTHING"
            )
        if session_rows:
            cur.executemany(_UPSERT_SESSION, [_session_params(r) for r in session_rows])
