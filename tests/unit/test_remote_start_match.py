"""The pure remote start -> transaction matching (ADR 0010): 1.6 by station, connector,
idTag and the station's own timestamp in the window; 2.0.1 by remoteStartId; and when
the API's wait / stream for a remote start is settled."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from api.command_watch import Until, history, settled
from bus.commands import CommandStatus
from ingest.gateway.remote_start_match import (
    CLOCK_SKEW_S,
    PendingStart,
    StartSeen,
    match_v16,
    matches_v16,
    pending_start_of,
    remote_start_id_of,
)
from store.commands import CommandRecord

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
WINDOW = 180.0


def pending(
    n: int, *, connector: int | None = 1, tag: str = "TAG-1", sent_s: float = 0
) -> PendingStart:
    sent = T0 + timedelta(seconds=sent_s)
    return PendingStart(uuid.UUID(int=n), connector, tag, sent, sent + timedelta(seconds=1))


def at(seconds: float, *, connector: int = 1, tag: str = "TAG-1") -> StartSeen:
    return StartSeen(connector, tag, T0 + timedelta(seconds=seconds))


def test_the_start_on_the_named_connector_with_the_tag_in_the_window_matches() -> None:
    assert match_v16(at(20), [pending(1)], WINDOW) == uuid.UUID(int=1)
    assert match_v16(at(20, tag="tag-1"), [pending(1)], WINDOW) == uuid.UUID(int=1)  # CiString


def test_another_tag_another_connector_or_outside_the_window_does_not() -> None:
    assert match_v16(at(20, tag="DRIVER-OWN"), [pending(1)], WINDOW) is None
    assert match_v16(at(20, connector=2), [pending(1)], WINDOW) is None
    # the window runs from the answer (1 s after the send) on the station's clock
    assert match_v16(at(1 + WINDOW + 0.001), [pending(1)], WINDOW) is None
    assert match_v16(at(1 + WINDOW), [pending(1)], WINDOW) == uuid.UUID(int=1)
    assert match_v16(at(-CLOCK_SKEW_S - 0.001), [pending(1)], WINDOW) is None
    assert match_v16(at(-CLOCK_SKEW_S), [pending(1)], WINDOW) == uuid.UUID(int=1)


def test_a_command_without_a_connector_takes_any_and_the_oldest_wins() -> None:
    anywhere = pending(2, connector=None, sent_s=5)
    assert matches_v16(at(30, connector=3), anywhere, WINDOW)
    assert match_v16(at(30), [anywhere, pending(1)], WINDOW) == uuid.UUID(int=1)
    assert match_v16(at(30), [pending(3, sent_s=10), anywhere], WINDOW) == uuid.UUID(int=2)


def test_a_start_before_the_answer_is_recorded_still_matches() -> None:
    in_flight = replace(pending(1), answered_at=None)
    assert matches_v16(at(0.5), in_flight, WINDOW)
    assert not matches_v16(at(WINDOW + 0.5), in_flight, WINDOW)


def test_stored_payloads_become_candidates() -> None:
    got = pending_start_of(uuid.UUID(int=1), {"idTag": "T", "connectorId": 0}, T0, None)
    assert got is not None
    assert got.connector_id is None
    assert pending_start_of(uuid.UUID(int=1), {"connectorId": 1}, T0, None) is None
    assert remote_start_id_of({"transaction_id": "t", "remote_start_id": 12}) == 12
    assert remote_start_id_of({"transaction_id": "t", "remote_start_id": True}) is None
    assert remote_start_id_of({"transaction_id": "t", "remote_start_id": "12"}) is None


def record(action: str, status: CommandStatus, **link: object) -> CommandRecord:
    base = CommandRecord(
        uuid.UUID(int=9),
        "CP",
        action,
        {},
        "1.6",
        "ops",
        T0,
        T0 + timedelta(minutes=2),
        30.0,
        status,
        "gw",
        T0,
        T0 + timedelta(seconds=1),
        None,
        None,
    )
    return replace(base, **link)  # type: ignore[arg-type]


def test_waiting_for_the_session_settles_only_a_non_remote_start_or_a_known_session() -> None:
    accepted = record("RemoteStartTransaction", CommandStatus.ACCEPTED)
    assert settled(accepted, until=Until.OUTCOME)
    assert not settled(accepted, until=Until.SESSION)
    linked = replace(accepted, transaction_id="7", linked_at=T0 + timedelta(seconds=9))
    assert not settled(linked, until=Until.SESSION)
    assert settled(replace(linked, session_id=uuid.UUID(int=3)), until=Until.SESSION)
    assert settled(record("RemoteStartTransaction", CommandStatus.REJECTED), until=Until.SESSION)
    assert settled(record("Reset", CommandStatus.ACCEPTED), until=Until.SESSION)
    steps = history(replace(linked, session_id=uuid.UUID(int=3)))
    assert [str(s) for s, _ in steps] == ["pending", "sent", "accepted", "transaction", "session"]
    assert steps[-1][1] == T0 + timedelta(seconds=9)
