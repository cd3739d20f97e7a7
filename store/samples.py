"""Meter samples (table ``meter_samples``): written with the sessions of their batch.

Samples are binary COPYed straight into ``meter_samples`` inside a savepoint: a batch of
new samples (the normal case) costs no conflict handling at all. If any sample of the
batch is already stored (a replay after recovery, a station resending values) or repeats
within the batch, the unique key on the natural key (``(series_key, measured_at)``,
migration 0007) makes the COPY fail, the savepoint is rolled back and the batch goes the
safe way: COPY into a temporary staging table, then ``INSERT ... SELECT ... ON CONFLICT
DO NOTHING``. Either way exactly the samples not yet stored are inserted. After such a
fallback the next :data:`SAFE_BATCHES_AFTER_CONFLICT` batches of that connection go the
safe way directly (a replay usually spans several batches; a failed COPY costs the work
of the batch).

The rows are duck-typed (:class:`MeterSample`) so this module does not depend on ``flows``.
"""

from __future__ import annotations

import weakref
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

import psycopg

from store.db import AsyncDb, StagingTable, execute

# Batches written the safe way (staging + ON CONFLICT) after a batch that conflicted.
SAFE_BATCHES_AFTER_CONFLICT = 16


class MeterSample(Protocol):
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


STAGING = StagingTable(
    "meter_samples_staging",
    (
        ("measured_at", "timestamptz"),
        ("charge_point_id", "text"),
        ("connector_id", "int4"),
        ("transaction_id", "text"),
        ("measurand", "text"),
        ("phase", "text"),
        ("location", "text"),
        ("context", "text"),
        ("unit", "text"),
        ("value", "numeric"),
        ("unit_multiplier", "int2"),
    ),
)
_COLUMN_LIST = ", ".join(STAGING.column_names)
_INSERT_FROM_STAGING = (
    f"INSERT INTO meter_samples ({_COLUMN_LIST}) "
    f"SELECT {_COLUMN_LIST} FROM {STAGING.name} ON CONFLICT DO NOTHING"
)
_COPY_DIRECT = f"COPY meter_samples ({_COLUMN_LIST}) FROM STDIN (FORMAT BINARY)"

# Connection -> how many more sample batches go the safe way (after a conflict).
_safe_batches: weakref.WeakKeyDictionary[psycopg.Connection[Any], int] = weakref.WeakKeyDictionary()


def _copy(cur: psycopg.Cursor[Any], statement: str, rows: list[MeterSample]) -> None:
    STAGING.copy_rows(
        cur,
        (
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
            for s in rows
        ),
        statement,
    )


def write_samples(
    conn: psycopg.Connection[Any], cur: psycopg.Cursor[Any], rows: list[MeterSample]
) -> None:
    """Insert the samples not stored yet (module docstring: direct COPY, else staging),
    in the caller's transaction; :data:`STAGING` must exist on ``conn``."""
    safe = _safe_batches.get(conn, 0)
    if safe == 0:
        try:
            with conn.transaction():  # a savepoint: a conflict rolls back only the COPY
                _copy(cur, _COPY_DIRECT, rows)
            return
        except psycopg.errors.UniqueViolation:
            safe = SAFE_BATCHES_AFTER_CONFLICT
    _safe_batches[conn] = safe - 1 if safe > 0 else 0
    _copy(cur, STAGING.copy, rows)
    cur.execute(_INSERT_FROM_STAGING)


async def session_samples(
    db: AsyncDb, charge_point_id: str, connector_id: int, transaction_id: str
) -> list[tuple[datetime, str, str, str, Decimal]]:
    """A transaction's stored samples as (measured_at, measurand, phase, unit, value),
    oldest first (what billing prices a session from)."""
    rows = await execute(
        db,
        "SELECT measured_at, measurand, phase, unit, value FROM meter_samples"
        " WHERE charge_point_id = %s AND connector_id = %s AND transaction_id = %s"
        " ORDER BY measured_at",
        (charge_point_id, connector_id, transaction_id),
    )
    return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]
