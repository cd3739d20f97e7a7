"""Closing sessions the sessions flow no longer knows (its state was lost).

The flow holds every running transaction in its state; the ``sessions`` table holds
its snapshots. When the flow starts without its state (a fresh recovery store: the
launcher resets it with the in-memory embedded broker, an operator may delete it),
sessions stored as ``active`` would stay active forever and a new session on the
same connector would be a second active one. Two rules close them:

* :func:`reconcile_active_sessions` (the launcher calls it when it starts the flows
  without their recovery state and without the topics that held the events, so
  nothing will be replayed): every stored ``active`` session closes by
  ``reconciled``.
* :data:`SUPERSEDE_STALE_ACTIVE` (``store.sessions``, every batch): a session the flow
  writes as active on a connector closes any *other* stored active session there
  by ``next_start`` -- unless the written session is already closed in the table
  (a replay re-sends old active snapshots; they change nothing). The partial
  unique index ``sessions_one_active_per_connector`` (migration 0010) holds the
  rule in the schema (connector 0, the placeholder of orphan stops, excepted).

Either way the closed row keeps what the table knows: the energy of its last
snapshot when there was a register (or power) figure, else ``energy_wh`` NULL with
quality ``missing``; ``stopped_at`` is the stop when the station had sent one (the
session only waited for its smart-meter reading), else the latest stored sample
of the transaction, else the start. Quality is never ``exact`` (reasons
``state_lost``, and ``stop_missing`` without a stop), and the session gets its
``sessions_outbox`` row, so ``sessions.closed`` is published for it.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

from bus.sessions import ClosedBy
from store.sessions_outbox import INSERT_SESSIONS_OUTBOX

# Applied to the stale rows ``sessions AS s`` (the statements below add FROM/WHERE).
_CLOSE_SET = """
    status = 'closed',
    closed_by = CASE WHEN s.stopped_at IS NOT NULL THEN 'stop' ELSE %(closed_by)s END,
    stopped_at = COALESCE(s.stopped_at, (
        SELECT max(m.measured_at) FROM meter_samples m
        WHERE m.charge_point_id = s.charge_point_id AND m.transaction_id = s.transaction_id
    ), s.started_at),
    energy_wh = CASE WHEN {figure} THEN s.energy_wh END,
    energy_source = CASE WHEN {figure} THEN s.energy_source END,
    station_energy_wh = CASE WHEN {figure} AND s.energy_source = 'station_register'
                             THEN s.energy_wh END,
    quality = CASE WHEN NOT ({figure}) THEN 'missing'
                   WHEN s.quality = 'estimated' THEN 'estimated'
                   ELSE 'corrected' END,
    quality_reasons = s.quality_reasons || ARRAY(
        SELECT r FROM unnest(ARRAY[
            'state_lost',
            CASE WHEN s.stopped_at IS NULL THEN 'stop_missing' END,
            CASE WHEN NOT ({figure}) THEN 'register_missing' END
        ]) WITH ORDINALITY AS t(r, n)
        WHERE r IS NOT NULL AND r <> ALL(s.quality_reasons) ORDER BY n)
""".format(
    figure=(
        # The last snapshot has a figure: a register after the start, the stop register,
        # or integrated power (an active snapshot without any says 0 Wh, not a figure).
        "(s.energy_wh IS NOT NULL AND (s.last_register_wh IS NOT NULL"
        " OR s.meter_stop_wh IS NOT NULL OR s.energy_source = 'power_integration'))"
    )
)

RECONCILE_ALL_ACTIVE = f"""
UPDATE sessions AS s SET {_CLOSE_SET}
WHERE s.status = 'active'
RETURNING s.session_id
"""

# Parameters: cps text[], connectors int[], ids uuid[] (the active snapshots of the
# batch), batch_ids uuid[] (every session of the batch), closed_by.
SUPERSEDE_STALE_ACTIVE = f"""
WITH incoming AS (
    SELECT * FROM unnest(%(cps)s::text[], %(connectors)s::int[], %(ids)s::uuid[])
        AS i(charge_point_id, connector_id, session_id)
), stale AS (
    SELECT s.session_id FROM sessions s JOIN incoming i
        ON s.charge_point_id = i.charge_point_id AND s.connector_id = i.connector_id
    -- (status and connector as in the partial unique index, which answers this join)
    WHERE s.status = 'active' AND s.connector_id <> 0
      AND s.session_id <> ALL(%(batch_ids)s::uuid[])
      AND NOT EXISTS (SELECT 1 FROM sessions c
                      WHERE c.session_id = i.session_id AND c.status = 'closed')
    FOR UPDATE OF s
)
UPDATE sessions AS s SET {_CLOSE_SET}
FROM stale WHERE s.session_id = stale.session_id
RETURNING s.session_id
"""


def reconcile_active_sessions(database_url: str) -> list[uuid.UUID]:
    """Close every stored ``active`` session by ``reconciled`` (module docstring) and
    queue its ``sessions.closed`` message; returns their ids. Only for a start of the
    sessions flow that neither resumes its state nor replays the events."""
    with psycopg.connect(database_url) as conn, conn.transaction(), conn.cursor() as cur:
        closed = close_all_active(cur)
    return closed


def close_all_active(cur: psycopg.Cursor[Any]) -> list[uuid.UUID]:
    cur.execute(RECONCILE_ALL_ACTIVE, {"closed_by": ClosedBy.RECONCILED})
    closed = [row[0] for row in cur.fetchall()]
    if closed:
        cur.execute(INSERT_SESSIONS_OUTBOX, (closed,))
    return closed
