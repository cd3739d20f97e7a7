"""Which remote start produced a transaction (pure; the SQL is in
``store.remote_start_links``, the decision in ADR 0010).

OCPP 2.0.1 says it outright: the TransactionEvent carries the ``remoteStartId`` of the
RequestStartTransaction (on the Started event, or a later one with triggerReason
RemoteStart). OCPP 1.6 does not: the match is the first StartTransaction after the
command that has the same station, the connector the command named (any if it named
none) and the same idTag (1.6 idTags are case-insensitive), on telemetry time: its
``timestamp`` lies in ``[sent_at - CLOCK_SKEW_S, answered + window_s]``, where answered
is the command's ``completed_at`` (still ``sent``: its ``sent_at``). The lower bound is
the send, not the answer: the station accepts between the two, and its start may reach
the gateway before the answer is recorded. Of several candidates the oldest wins (a
station serves remote starts in the order it accepted them)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

REMOTE_START_ACTIONS = frozenset({"RemoteStartTransaction", "RequestStartTransaction"})
# The station's clock may run this far behind the gateway's.
CLOCK_SKEW_S = 2.0


@dataclass(frozen=True, slots=True)
class PendingStart:
    """A remote start not linked yet (status sent or accepted)."""

    command_id: uuid.UUID
    connector_id: int | None  # the one it named, or None: the station chooses
    id_tag: str
    sent_at: datetime
    answered_at: datetime | None  # completed_at; None while the answer is on its way


@dataclass(frozen=True, slots=True)
class StartSeen:
    """A 1.6 StartTransaction as the station sent it."""

    connector_id: int
    id_tag: str
    timestamp: datetime  # the station's, not the gateway's


def matches_v16(start: StartSeen, pending: PendingStart, window_s: float) -> bool:
    """Whether ``start`` can be what ``pending`` produced.

    >>> from datetime import UTC
    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> p = PendingStart(uuid.UUID(int=1), 1, "TAG", t, t + timedelta(seconds=1))
    >>> matches_v16(StartSeen(1, "tag", t + timedelta(seconds=30)), p, 60)
    True
    >>> matches_v16(StartSeen(2, "TAG", t + timedelta(seconds=30)), p, 60)  # other connector
    False
    >>> matches_v16(StartSeen(1, "TAG", t + timedelta(seconds=62)), p, 60)  # after the window
    False
    >>> matches_v16(StartSeen(1, "TAG", t - timedelta(seconds=5)), p, 60)  # before the send
    False
    """
    if pending.id_tag.casefold() != start.id_tag.casefold():
        return False
    if pending.connector_id is not None and pending.connector_id != start.connector_id:
        return False
    earliest = pending.sent_at - timedelta(seconds=CLOCK_SKEW_S)
    latest = (pending.answered_at or pending.sent_at) + timedelta(seconds=window_s)
    return earliest <= start.timestamp <= latest


def match_v16(
    start: StartSeen, pending: Iterable[PendingStart], window_s: float
) -> uuid.UUID | None:
    """The command a 1.6 start belongs to: the oldest matching one, else None."""
    fitting = [p for p in pending if matches_v16(start, p, window_s)]
    if not fitting:
        return None
    return min(fitting, key=lambda p: (p.sent_at, p.command_id.int)).command_id


def remote_start_id_of(transaction_info: dict[str, object]) -> int | None:
    """The ``remoteStartId`` of a 2.0.1 TransactionEvent's (snake_case) transactionInfo.

    >>> remote_start_id_of({"transaction_id": "t", "remote_start_id": 7})
    7
    >>> remote_start_id_of({"transaction_id": "t"}) is None
    True
    """
    value = transaction_info.get("remote_start_id")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def pending_start_of(
    command_id: uuid.UUID,
    payload: dict[str, object],
    sent_at: datetime,
    answered_at: datetime | None,
) -> PendingStart | None:
    """A stored 1.6 RemoteStartTransaction (wire payload) as a candidate; None without
    an idTag.

    >>> from datetime import UTC
    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> pending_start_of(uuid.UUID(int=1), {"idTag": "T", "connectorId": 2}, t, None).connector_id
    2
    """
    id_tag = payload.get("idTag")
    if not isinstance(id_tag, str):
        return None
    connector = payload.get("connectorId")
    return PendingStart(
        command_id,
        connector if isinstance(connector, int) and connector > 0 else None,
        id_tag,
        sent_at,
        answered_at,
    )


def answered_transaction_id(action: str, answer: dict[str, object] | None) -> str | None:
    """The transaction a 2.0.1 station named in its Accepted answer to
    RequestStartTransaction (it was running already, e.g. cable first), else None.

    >>> answered_transaction_id("RequestStartTransaction",
    ...     {"status": "Accepted", "transactionId": "T-1"})
    'T-1'
    >>> answered_transaction_id("RequestStartTransaction", {"status": "Rejected",
    ...     "transactionId": "T-1"}) is None
    True
    """
    if action != "RequestStartTransaction" or not answer or answer.get("status") != "Accepted":
        return None
    tx = answer.get("transactionId")
    return tx if isinstance(tx, str) and tx else None
