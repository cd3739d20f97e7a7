"""bench.common's stream: StatusNotifications around sessions (for the status and load
flow benchmarks) leave the rest of the stream byte for byte unchanged."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from bench.common import (
    StreamSpec,
    messages,
    register_progress_wh,
    session_count,
    status_notification_count,
)
from bus.envelope import decode_envelope
from bus.normalized import ConnectorStatus
from flows.load import logic as load_logic
from flows.sessions import logic as sessions_logic
from flows.status import logic as status_logic

SPEC = StreamSpec(stations=3, meter_events=25, meter_values_per_session=4, seed=11)
WITH_STATUS = StreamSpec(
    stations=3, meter_events=25, meter_values_per_session=4, seed=11, status_notifications=True
)


def test_status_notifications_are_deterministic_and_leave_other_messages_unchanged() -> None:
    plain = messages(SPEC)
    with_status = messages(WITH_STATUS)
    assert messages(WITH_STATUS) == with_status
    assert [m for m in with_status if b'"StatusNotification"' not in m[1]] == plain
    assert status_notification_count(plain) == 0
    # 25 MeterValues over 3 stations, 4 per session: 7 sessions, 6 of them closed.
    assert session_count(with_status) == 7
    assert status_notification_count(with_status) == 7 + 2 * 6
    assert len(with_status) == len(plain) + 19


def test_status_notifications_frame_each_session_in_time() -> None:
    per_station: dict[str, list[tuple[str, datetime]]] = defaultdict(list)
    for key, value in messages(WITH_STATUS):
        envelope = decode_envelope(value)
        assert envelope.charge_point_id.encode() == key
        if envelope.action == "StatusNotification":
            event = status_logic.parse_envelope(envelope)
            assert event is not None
            (fact,) = event.facts
            assert isinstance(fact, ConnectorStatus)
            assert fact.evse_id == envelope.payload["connectorId"]
            per_station[key.decode()].append((fact.status, fact.timestamp))
            # The other flows decode them too: nothing for sessions, idle for load.
            message = sessions_logic.decode_event(value)
            assert isinstance(message, sessions_logic.StationMessage)
            assert message.facts == ()
            load_event = load_logic.parse_envelope(envelope)
            if fact.status == "Charging":
                assert load_event is None
            else:
                assert load_event is not None
                assert isinstance(load_event.facts[0], load_logic.ConnectorIdle)
        elif envelope.action in ("StartTransaction", "StopTransaction"):
            per_station[key.decode()].append((envelope.action, envelope.measured_at))
    assert len(per_station) == 3
    for events in per_station.values():
        names = [name for name, _ in events]
        closed = names.count("StopTransaction")
        assert (
            names[: 5 * closed]
            == [
                "StartTransaction",
                "Charging",
                "StopTransaction",
                "Finishing",
                "Available",
            ]
            * closed
        )
        assert names[5 * closed :] in ([], ["StartTransaction", "Charging"])
        times = [at for _, at in events]
        assert times == sorted(times)


def test_register_progress_is_last_minus_first_register_per_station() -> None:
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for _, value in messages(SPEC):
        envelope = decode_envelope(value)
        if envelope.action == "MeterValues":
            (mv,) = envelope.payload["meterValue"]
            wh = int(mv["sampledValue"][0]["value"])
            first.setdefault(envelope.charge_point_id, wh)
            last[envelope.charge_point_id] = wh
    expected = sum(last[cp] - first[cp] for cp in last)
    assert expected > 0
    assert register_progress_wh(messages(SPEC)) == expected
    assert register_progress_wh(messages(WITH_STATUS)) == expected
