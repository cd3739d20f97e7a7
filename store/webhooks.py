"""Webhook deliveries (table ``webhook_deliveries``): one row per (endpoint, alert
version), the outbox the webhooks worker delivers from (async psycopg 3).

* :func:`insert_deliveries`: the intake's rows; a version already there (the alerts
  topic read again after a restart) inserts nothing, so nothing is delivered twice;
* :func:`claim_due`: due ``pending`` rows for this worker's endpoints, locked with
  ``FOR UPDATE SKIP LOCKED`` (several workers never claim the same row) and hidden for a
  lease (``next_attempt_at`` moves past the request); the claim counts the attempt;
* ``record_*``: the outcome of an attempt, only if the row is still the one claimed
  (``attempts`` unchanged: a worker whose lease ran out cannot overwrite a newer try).

Times (``next_attempt_at``, the lease) are the database's clock, shared by all workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Jsonb

from store.db import AsyncDb, execute


@dataclass(frozen=True)
class NewDelivery:
    endpoint: str
    alert_id: str
    version_key: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class DueDelivery:
    delivery_row: int  # the table's delivery_id (bigserial)
    endpoint: str
    alert_id: str
    version_key: str
    payload: dict[str, Any]
    attempt: int  # this attempt's number, 1 = the first


_INSERT = """
INSERT INTO webhook_deliveries (endpoint, alert_id, version_key, payload)
SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::jsonb[])
ON CONFLICT (endpoint, alert_id, version_key) DO NOTHING
RETURNING 1
"""


async def insert_deliveries(db: AsyncDb, rows: Sequence[NewDelivery]) -> int:
    """Add the deliveries not stored yet (one statement); returns how many were new."""
    if not rows:
        return 0
    inserted = await execute(
        db,
        _INSERT,
        (
            [r.endpoint for r in rows],
            [r.alert_id for r in rows],
            [r.version_key for r in rows],
            [Jsonb(r.payload) for r in rows],
        ),
    )
    return len(inserted)


_CLAIM = """
WITH due AS (
    SELECT delivery_id FROM webhook_deliveries
    WHERE status = 'pending' AND next_attempt_at <= now() AND endpoint = ANY(%(endpoints)s)
    ORDER BY next_attempt_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE webhook_deliveries d
SET attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => %(lease_s)s)
FROM due WHERE d.delivery_id = due.delivery_id
RETURNING d.delivery_id, d.endpoint, d.alert_id, d.version_key, d.payload, d.attempts
"""


async def claim_due(
    db: AsyncDb, endpoints: Sequence[str], *, limit: int, lease_s: float
) -> list[DueDelivery]:
    """Claim up to ``limit`` due deliveries of ``endpoints``, oldest due first."""
    if not endpoints or limit < 1:
        return []
    rows = await execute(
        db, _CLAIM, {"endpoints": list(endpoints), "limit": limit, "lease_s": lease_s}
    )
    claimed = [DueDelivery(int(r[0]), r[1], r[2], r[3], r[4], int(r[5])) for r in rows]
    return sorted(claimed, key=lambda d: d.delivery_row)


_DELIVERED = """
UPDATE webhook_deliveries SET status = 'delivered', delivered_at = now(), last_error = NULL
WHERE delivery_id = %s AND attempts = %s AND status = 'pending'
RETURNING 1
"""

_RETRY = """
UPDATE webhook_deliveries
SET last_error = %s, next_attempt_at = now() + make_interval(secs => %s)
WHERE delivery_id = %s AND attempts = %s AND status = 'pending'
RETURNING 1
"""

_DEAD = """
UPDATE webhook_deliveries SET status = 'dead', last_error = %s
WHERE delivery_id = %s AND attempts = %s AND status = 'pending'
RETURNING 1
"""


async def record_delivered(db: AsyncDb, due: DueDelivery) -> bool:
    """The receiver took it (2xx); False if the claim was no longer this one's."""
    return bool(await execute(db, _DELIVERED, (due.delivery_row, due.attempt)))


async def record_retry(db: AsyncDb, due: DueDelivery, error: str, delay_s: float) -> bool:
    """The attempt failed: try again in ``delay_s`` seconds."""
    return bool(await execute(db, _RETRY, (error, delay_s, due.delivery_row, due.attempt)))


async def record_dead(db: AsyncDb, due: DueDelivery, error: str) -> bool:
    """The last attempt failed: give up (the row stays, with its last error)."""
    return bool(await execute(db, _DEAD, (error, due.delivery_row, due.attempt)))


async def count_by_status(db: AsyncDb) -> dict[str, int]:
    """Deliveries per status (for the metrics)."""
    rows = await execute(db, "SELECT status, count(*) FROM webhook_deliveries GROUP BY status", ())
    return {str(status): int(n) for status, n in rows}
