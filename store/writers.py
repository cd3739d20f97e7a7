"""Batch writers for the flows: one function per batch, one transaction per call.

Idempotent under replay (Bytewax sinks are at-least-once):

* sessions are upserted on ``session_id``; within a batch the last snapshot of a
  session wins; a closed session is never reopened by a replayed active snapshot
  (``WHERE sessions.status <> 'closed' OR EXCLUDED.status = 'closed'``); there are
  no write-time columns, so replaying the same events leaves the table identical.
* meter samples are binary COPYed straight into ``meter_samples`` inside a
  savepoint: a batch of new samples (the normal case) costs no conflict handling
  at all. If any sample of the batch is already stored (a replay after recovery, a
  station resending values) or repeats within the batch, the unique key on the
  natural key (``(series_key, measured_at)``, migration 0007) makes the COPY
  fail, the savepoint is rolled back and the batch goes the safe way: COPY into a
  temporary staging table, then ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``.
  Either way exactly the samples not yet stored are inserted. After such a
  fallback the next :data:`SAFE_BATCHES_AFTER_CONFLICT` batches of that
  connection go the safe way directly (a replay usually spans several batches; a
  failed COPY costs the work of the batch).

Performance: one transaction and a handful of statements per batch, whatever its
size. Session snapshots that know their start (all but orphan stops) are binary
COPYed into a staging table and upserted by one ``INSERT ... SELECT ... ON
CONFLICT DO UPDATE``; the rare orphan stops (``start_unknown``) keep the per-row
merge statement, sent pipelined (``executemany``). The staging tables are created
once per connection (``ON COMMIT DELETE ROWS``).

A closed snapshot whose start the flow never saw carries ``start_unknown`` in
``quality_reasons`` and no start fields: the upsert then keeps the stored start
(connector, id tag, started_at, meter_start_wh) and computes
``energy_wh = meter_stop_wh - sessions.meter_start_wh`` (source
``station_register``, quality ``corrected``; NULL with quality ``missing`` if
negative). If no row exists yet, it is inserted with placeholders that keep the
columns NOT NULL (connector 0 = the charge point as a whole, started_at =
stopped_at, meter_start_wh = meter_stop_wh), ``energy_wh`` NULL and quality
``missing``; the reason stays on the row, and a replayed orphan stop leaves such a
placeholder row as it is (energy stays NULL).

One active session per connector: an active snapshot closes any other stored
active session on its connector that the flow no longer knows (its state was
lost), unless the snapshot's own session is closed already (a replay);
:mod:`store.session_reconcile` has the rule, migration 0010 the unique index.

The rows are duck-typed (see :class:`SessionRecord`, :class:`SampleRecord`) so
this module does not depend on ``flows``.
"""

from __future__ import annotations

import uuid
import weakref
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

import psycopg

from store.outbox import INSERT_SESSIONS_OUTBOX
from store.session_reconcile import SUPERSEDE_STALE_ACTIVE

START_UNKNOWN = "start_unknown"
# Batches written the safe way (staging + ON CONFLICT) after a batch that conflicted.
SAFE_BATCHES_AFTER_CONFLICT = 16


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
    def energy_source(self) -> str | None: ...
    @property
    def quality(self) -> str: ...
    @property
    def quality_reasons(self) -> Sequence[str]: ...
    @property
    def stop_reason(self) -> str | None: ...
    @property
    def sample_count(self) -> int: ...
    @property
    def closed_by(self) -> str | None: ...
    @property
    def station_energy_wh(self) -> int | None: ...
    @property
    def smart_meter_energy_wh(self) -> int | None: ...
    @property
    def smart_meter_id(self) -> str | None: ...
    @property
    def ocpp_version(self) -> str | None: ...


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
    @property
    def unit_multiplier(self) -> int: ...


_UPSERT_SESSION = """
INSERT INTO sessions AS s (
    session_id, charge_point_id, connector_id, transaction_id, id_tag, status,
    started_at, stopped_at, meter_start_wh, meter_stop_wh, last_register_wh, energy_wh,
    energy_source, quality, quality_reasons, stop_reason, sample_count, closed_by,
    station_energy_wh, smart_meter_energy_wh, smart_meter_id, ocpp_version
) VALUES (
    %(session_id)s, %(charge_point_id)s, COALESCE(%(connector_id)s, 0), %(transaction_id)s,
    %(id_tag)s, %(status)s, COALESCE(%(started_at)s, %(stopped_at)s), %(stopped_at)s,
    COALESCE(%(meter_start_wh)s, %(meter_stop_wh)s), %(meter_stop_wh)s,
    %(last_register_wh)s, %(energy_wh)s, %(energy_source)s,
    CASE WHEN %(start_unknown)s AND %(status)s = 'closed' THEN 'missing' ELSE %(quality)s END,
    %(quality_reasons)s, %(stop_reason)s, %(sample_count)s, %(closed_by)s,
    %(station_energy_wh)s, %(smart_meter_energy_wh)s, %(smart_meter_id)s, %(ocpp_version)s
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
    energy_wh = CASE WHEN NOT %(start_unknown)s THEN EXCLUDED.energy_wh ELSE {merged} END,
    energy_source = CASE WHEN NOT %(start_unknown)s THEN EXCLUDED.energy_source
                         WHEN {merged} IS NOT NULL THEN 'station_register' END,
    quality = CASE WHEN NOT %(start_unknown)s THEN EXCLUDED.quality
                   WHEN {merged} IS NOT NULL THEN 'corrected'
                   WHEN EXCLUDED.status = 'closed' THEN 'missing'
                   ELSE EXCLUDED.quality END,
    quality_reasons = EXCLUDED.quality_reasons,
    stop_reason = EXCLUDED.stop_reason,
    sample_count = CASE WHEN %(start_unknown)s
                        THEN GREATEST(s.sample_count, EXCLUDED.sample_count)
                        ELSE EXCLUDED.sample_count END,
    closed_by = EXCLUDED.closed_by,
    station_energy_wh = EXCLUDED.station_energy_wh,
    smart_meter_energy_wh = EXCLUDED.smart_meter_energy_wh,
    smart_meter_id = EXCLUDED.smart_meter_id,
    ocpp_version = COALESCE(EXCLUDED.ocpp_version, s.ocpp_version)
WHERE s.status <> 'closed' OR EXCLUDED.status = 'closed'
""".replace(
    "{merged}",
    """(CASE
        -- the stored row is itself an orphan stop: its start fields are placeholders
        -- unless an earlier merge found a real start (then energy is not NULL)
        WHEN 'start_unknown' = ANY(s.quality_reasons) AND s.energy_wh IS NULL THEN NULL
        WHEN EXCLUDED.meter_stop_wh >= s.meter_start_wh
            THEN EXCLUDED.meter_stop_wh - s.meter_start_wh
        END)""",
)

# The same merge for a snapshot that knows its start (``start_unknown`` false):
# every CASE of _UPSERT_SESSION then takes the EXCLUDED value, so one set-based
# statement from the staging table does what _UPSERT_SESSION does row by row.
_SESSION_COLUMNS = (
    "session_id",
    "charge_point_id",
    "connector_id",
    "transaction_id",
    "id_tag",
    "status",
    "started_at",
    "stopped_at",
    "meter_start_wh",
    "meter_stop_wh",
    "last_register_wh",
    "energy_wh",
    "energy_source",
    "quality",
    "quality_reasons",
    "stop_reason",
    "sample_count",
    "closed_by",
    "station_energy_wh",
    "smart_meter_energy_wh",
    "smart_meter_id",
    "ocpp_version",
)
_SESSION_TYPES = (
    "uuid",
    "text",
    "int4",
    "text",
    "text",
    "text",
    "timestamptz",
    "timestamptz",
    "int8",
    "int8",
    "int8",
    "int8",
    "text",
    "text",
    "text[]",
    "text",
    "int4",
    "text",
    "int8",
    "int8",
    "text",
    "text",
)
_SESSIONS_STAGING = "sessions_staging"
_UPSERT_SESSIONS_FROM_STAGING = f"""
INSERT INTO sessions AS s ({", ".join(_SESSION_COLUMNS)})
SELECT session_id, charge_point_id, COALESCE(connector_id, 0), transaction_id, id_tag, status,
       COALESCE(started_at, stopped_at), stopped_at, COALESCE(meter_start_wh, meter_stop_wh),
       meter_stop_wh, last_register_wh, energy_wh, energy_source, quality, quality_reasons,
       stop_reason, sample_count, closed_by, station_energy_wh, smart_meter_energy_wh,
       smart_meter_id, ocpp_version
FROM {_SESSIONS_STAGING}
ON CONFLICT (session_id) DO UPDATE SET
    connector_id = EXCLUDED.connector_id,
    id_tag = EXCLUDED.id_tag,
    status = EXCLUDED.status,
    started_at = EXCLUDED.started_at,
    stopped_at = EXCLUDED.stopped_at,
    meter_start_wh = EXCLUDED.meter_start_wh,
    meter_stop_wh = EXCLUDED.meter_stop_wh,
    last_register_wh = EXCLUDED.last_register_wh,
    energy_wh = EXCLUDED.energy_wh,
    energy_source = EXCLUDED.energy_source,
    quality = EXCLUDED.quality,
    quality_reasons = EXCLUDED.quality_reasons,
    stop_reason = EXCLUDED.stop_reason,
    sample_count = EXCLUDED.sample_count,
    closed_by = EXCLUDED.closed_by,
    station_energy_wh = EXCLUDED.station_energy_wh,
    smart_meter_energy_wh = EXCLUDED.smart_meter_energy_wh,
    smart_meter_id = EXCLUDED.smart_meter_id,
    ocpp_version = EXCLUDED.ocpp_version
WHERE s.status <> 'closed' OR EXCLUDED.status = 'closed'
"""

_SAMPLE_COLUMNS = (
    "measured_at",
    "charge_point_id",
    "connector_id",
    "transaction_id",
    "measurand",
    "phase",
    "location",
    "context",
    "unit",
    "value",
    "unit_multiplier",
)
_SAMPLE_TYPES = (
    "timestamptz",
    "text",
    "int4",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "numeric",
    "int2",
)
_STAGING = "meter_samples_staging"
_CREATE_STAGING = (
    f"CREATE TEMP TABLE IF NOT EXISTS {_STAGING} ("
    + ", ".join(f"{c} {t}" for c, t in zip(_SAMPLE_COLUMNS, _SAMPLE_TYPES, strict=True))
    + ") ON COMMIT DELETE ROWS;"
    f"CREATE TEMP TABLE IF NOT EXISTS {_SESSIONS_STAGING} ("
    + ", ".join(f"{c} {t}" for c, t in zip(_SESSION_COLUMNS, _SESSION_TYPES, strict=True))
    + ") ON COMMIT DELETE ROWS"
)
_SAMPLE_COLUMN_LIST = ", ".join(_SAMPLE_COLUMNS)
_COPY_SAMPLES = f"COPY {_STAGING} ({_SAMPLE_COLUMN_LIST}) FROM STDIN (FORMAT BINARY)"
_INSERT_SAMPLES = (
    f"INSERT INTO meter_samples ({_SAMPLE_COLUMN_LIST}) "
    f"SELECT {_SAMPLE_COLUMN_LIST} FROM {_STAGING} ON CONFLICT DO NOTHING"
)
_COPY_SAMPLES_DIRECT = f"COPY meter_samples ({_SAMPLE_COLUMN_LIST}) FROM STDIN (FORMAT BINARY)"
_COPY_SESSIONS = (
    f"COPY {_SESSIONS_STAGING} ({', '.join(_SESSION_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
)

# A session closed by the batch (for the outbox: one row, added only in the
# transaction that first stores it as closed), locked against a concurrent writer.
_ALREADY_CLOSED = (
    "SELECT session_id FROM sessions WHERE session_id = ANY(%s) AND status = 'closed' FOR UPDATE"
)

# Connections whose temporary staging tables exist (added only after a commit, as
# a rolled-back CREATE TEMP TABLE leaves nothing behind).
_staged: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()
# Connection -> how many more sample batches go the safe way (after a conflict).
_safe_batches: weakref.WeakKeyDictionary[psycopg.Connection[Any], int] = weakref.WeakKeyDictionary()


def _start_unknown(row: SessionRecord) -> bool:
    return row.meter_start_wh is None and START_UNKNOWN in row.quality_reasons


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
        "closed_by": row.closed_by,
        "station_energy_wh": row.station_energy_wh,
        "smart_meter_energy_wh": row.smart_meter_energy_wh,
        "smart_meter_id": row.smart_meter_id,
        "ocpp_version": row.ocpp_version,
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
    """Upsert session snapshots and insert meter samples in one transaction; a
    session stored as closed for the first time gets its ``sessions_outbox`` row in
    the same transaction."""
    session_rows = latest_per_session(sessions)
    sample_rows = samples if isinstance(samples, list) else list(samples)
    if not session_rows and not sample_rows:
        return
    known = [r for r in session_rows if not _start_unknown(r)]
    orphans = [r for r in session_rows if _start_unknown(r)]
    closing = [r.session_id for r in session_rows if r.status == "closed"]
    created = conn not in _staged
    with conn.transaction(), conn.cursor() as cur:
        if created:
            cur.execute(_CREATE_STAGING)
        if closing:
            # Which closed snapshots close their session now (locked against a
            # concurrent writer of the same session, e.g. during a rebalance).
            cur.execute(_ALREADY_CLOSED, (closing,))
            already = {row[0] for row in cur.fetchall()}
            closing = [sid for sid in closing if sid not in already]
        if sample_rows:
            _write_samples(conn, cur, sample_rows)
        superseded = _supersede_stale_active(cur, session_rows)
        if known:
            with cur.copy(_COPY_SESSIONS) as copy:
                copy.set_types(_SESSION_TYPES)
                write = copy.write_row
                for r in known:
                    write(
                        (
                            r.session_id,
                            r.charge_point_id,
                            r.connector_id,
                            r.transaction_id,
                            r.id_tag,
                            r.status,
                            r.started_at,
                            r.stopped_at,
                            r.meter_start_wh,
                            r.meter_stop_wh,
                            r.last_register_wh,
                            r.energy_wh,
                            r.energy_source,
                            r.quality,
                            list(r.quality_reasons),
                            r.stop_reason,
                            r.sample_count,
                            r.closed_by,
                            r.station_energy_wh,
                            r.smart_meter_energy_wh,
                            r.smart_meter_id,
                            r.ocpp_version,
                        )
                    )
            cur.execute(_UPSERT_SESSIONS_FROM_STAGING)
        if orphans:
            cur.executemany(_UPSERT_SESSION, [_session_params(r) for r in orphans])
        if closing or superseded:
            cur.execute(INSERT_SESSIONS_OUTBOX, (closing + superseded,))
    if created and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        _staged.add(conn)  # committed (not a savepoint inside a caller's transaction)


def _supersede_stale_active(cur: psycopg.Cursor[Any], rows: list[SessionRecord]) -> list[uuid.UUID]:
    """Close the stored active sessions the batch's active ones replace on their
    connector (:mod:`store.session_reconcile`); returns their ids."""
    active = [r for r in rows if r.status == "active" and r.connector_id]
    if not active:
        return []
    cur.execute(
        SUPERSEDE_STALE_ACTIVE,
        {
            "cps": [r.charge_point_id for r in active],
            "connectors": [r.connector_id for r in active],
            "ids": [r.session_id for r in active],
            "batch_ids": [r.session_id for r in rows],
            "closed_by": "next_start",
        },
    )
    return [row[0] for row in cur.fetchall()]


def _copy_samples(cur: psycopg.Cursor[Any], statement: str, rows: list[SampleRecord]) -> None:
    with cur.copy(statement) as copy:
        copy.set_types(_SAMPLE_TYPES)
        write = copy.write_row
        for s in rows:
            write(
                (
                    s.measured_at,
                    s.charge_point_id,
                    s.connector_id,
                    s.transaction_id,
                    s.measurand,
                    s.phase,
                    s.location,
                    s.context,
                    s.unit,
                    s.value,
                    s.unit_multiplier,
                )
            )


def _write_samples(
    conn: psycopg.Connection[Any], cur: psycopg.Cursor[Any], rows: list[SampleRecord]
) -> None:
    """Insert the samples not stored yet (module docstring: direct COPY, else staging)."""
    safe = _safe_batches.get(conn, 0)
    if safe == 0:
        try:
            with conn.transaction():  # a savepoint: a conflict rolls back only the COPY
                _copy_samples(cur, _COPY_SAMPLES_DIRECT, rows)
            return
        except psycopg.errors.UniqueViolation:
            safe = SAFE_BATCHES_AFTER_CONFLICT
    _safe_batches[conn] = safe - 1 if safe > 0 else 0
    _copy_samples(cur, _COPY_SAMPLES, rows)
    cur.execute(_INSERT_SAMPLES)
