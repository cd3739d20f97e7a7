"""SQL of the remote start -> transaction link (``commands.transaction_id``, migration
0023; the matching rules in ``ingest.gateway.remote_start_match``, ADR 0010).

The gateway that answers a start writes the link with a conditional UPDATE (``WHERE
transaction_id IS NULL`` and no command holds that transaction yet), so replicas, a
repeated event or two starts at once cannot link one command twice or one transaction
to two commands. Readers (the API) get the session from the transaction: a session's
id is ``session_id_for(station, transaction)``, and it is *known* once the sessions
flow stored that row.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from bus.commands import decode_json
from flows.sessions.rows import session_id_for
from store.commands import CommandRecord
from store.db import AsyncDb, execute

_LINK = """
UPDATE commands SET transaction_id = %(tx)s, linked_at = now()
WHERE command_id = %(command_id)s AND transaction_id IS NULL
  AND NOT EXISTS (SELECT 1 FROM commands o
                  WHERE o.charge_point_id = %(cp)s AND o.transaction_id = %(tx)s)
RETURNING command_id
"""


async def pending_v16(
    db: AsyncDb, charge_point_id: str, started_at: datetime, window_s: float
) -> list[tuple[uuid.UUID, dict[str, Any], datetime, datetime | None]]:
    """(command id, payload, sent_at, completed_at) of the station's unlinked 1.6 remote
    starts (sent or accepted) sent early enough to hold a start at ``started_at`` in
    their window (``completed_at`` is at most ``timeout_s`` after ``sent_at``)."""
    rows = await execute(
        db,
        """
        SELECT command_id, payload::text, sent_at, completed_at FROM commands
        WHERE charge_point_id = %s AND action = 'RemoteStartTransaction'
          AND transaction_id IS NULL AND status IN ('sent', 'accepted')
          AND sent_at >= %s - make_interval(secs => timeout_s + %s)
        ORDER BY sent_at
        """,
        (charge_point_id, started_at, window_s),
    )
    return [(r[0], decode_json(r[1]), r[2], r[3]) for r in rows]


async def link(
    db: AsyncDb, charge_point_id: str, command_id: uuid.UUID, transaction_id: str
) -> bool:
    """Record that ``command_id`` produced ``transaction_id`` (False: linked already)."""
    params = {"tx": transaction_id, "command_id": command_id, "cp": charge_point_id}
    return bool(await execute(db, _LINK, params))


async def link_v201(
    db: AsyncDb, charge_point_id: str, remote_start_id: int, transaction_id: str
) -> uuid.UUID | None:
    """Link a 2.0.1 transaction to the newest unlinked RequestStartTransaction of the
    station with this ``remoteStartId``; that command's id."""
    rows = await execute(
        db,
        """
        SELECT command_id FROM commands
        WHERE charge_point_id = %s AND action = 'RequestStartTransaction'
          AND transaction_id IS NULL AND status IN ('sent', 'accepted')
          AND payload->>'remoteStartId' = %s
        ORDER BY requested_at DESC LIMIT 1
        """,
        (charge_point_id, str(remote_start_id)),
    )
    if not rows or not await link(db, charge_point_id, rows[0][0], transaction_id):
        return None
    command_id: uuid.UUID = rows[0][0]
    return command_id


async def with_sessions(db: AsyncDb, records: Sequence[CommandRecord]) -> list[CommandRecord]:
    """``records`` with ``session_id`` set where their transaction's session is stored."""
    wanted = {
        r.command_id: session_id_for(r.charge_point_id, r.transaction_id)
        for r in records
        if r.transaction_id is not None
    }
    if not wanted:
        return list(records)
    rows = await execute(
        db, "SELECT session_id FROM sessions WHERE session_id = ANY(%s)", (list(wanted.values()),)
    )
    stored = {r[0] for r in rows}
    return [
        replace(r, session_id=wanted[r.command_id]) if wanted.get(r.command_id) in stored else r
        for r in records
    ]


async def command_of_session(
    db: AsyncDb, charge_point_id: str, transaction_id: str
) -> uuid.UUID | None:
    """The remote start that produced this transaction, or None."""
    rows = await execute(
        db,
        "SELECT command_id FROM commands WHERE charge_point_id = %s AND transaction_id = %s",
        (charge_point_id, transaction_id),
    )
    return None if not rows else uuid.UUID(str(rows[0][0]))
