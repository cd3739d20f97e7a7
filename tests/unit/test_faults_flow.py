"""flows.faults: what it decodes from its two input topics, its step (state per charge
point, snapshots), the wiring with Bytewax's testing source and the outbox's messages."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from bytewax.connectors.kafka import KafkaSinkMessage
from bytewax.testing import TestingSink, run_main

from bus.alerts import AlertStatus, FaultAlert, decode_fault_alert, encode_fault_alert
from bus.envelope import Envelope, EnvelopeError, Kind, encode_envelope
from flows.faults.dataflow import build_flow_with
from flows.faults.decode import decode_event
from flows.faults.logic import FaultsLogic, apply_batch
from flows.faults.sink import fault_alert_record
from store.alerts import version_key
from store.alerts_outbox import AlertOutboxMessage
from tests.support.faults import faulty_station, status
from tests.support.flows import kafka_like_input, message

T0 = datetime(2026, 7, 1, 12, tzinfo=UTC)


def envelope(kind: Kind, cp: str = "CP1") -> Envelope:
    return Envelope(
        message_id="m1", charge_point_id=cp, received_at=T0, measured_at=T0, kind=kind, payload={}
    )


def a_fault_alert() -> FaultAlert:
    [row] = apply_batch(None, [status("CP1", 2, T0, "GroundFailure", "Faulted")])[1]
    assert isinstance(row, FaultAlert)
    return row


@pytest.mark.parametrize("kind", [Kind.OCPP_CALL, Kind.STATION_CONNECTION, Kind.SECURITY_ALERT])
def test_the_kinds_the_diagnostics_read_are_decoded(kind: Kind) -> None:
    decoded = decode_event(encode_envelope(envelope(kind)))
    assert decoded is not None
    assert decoded.kind is kind


def test_its_own_fault_alerts_and_meter_readings_are_skipped() -> None:
    assert decode_event(encode_fault_alert(a_fault_alert())) is None
    assert decode_event(encode_envelope(envelope(Kind.METER_READING))) is None


def test_failed_logins_against_ids_that_are_not_provisioned_make_no_state() -> None:
    guess = msgspec.structs.replace(
        envelope(Kind.SECURITY_ALERT, "CP-GUESS-1"),
        payload={"alert": "repeated_failed_authentication", "known_station": False},
    )
    assert decode_event(encode_envelope(guess)) is None


@pytest.mark.parametrize("data", [None, b"junk", b'{"kind": "fault.alert"', b'{"kind": 3}', b"[]"])
def test_what_is_neither_an_envelope_nor_a_fault_alert_is_an_envelope_error(
    data: bytes | None,
) -> None:
    with pytest.raises(EnvelopeError):
        decode_event(data)


def test_the_step_resumes_from_its_snapshot_as_if_never_stopped() -> None:
    story = faulty_station("CP1", T0)
    whole = apply_batch(None, story)[1]
    logic = FaultsLogic(None)
    first, _ = logic.on_batch([story[:15]])
    resumed = FaultsLogic(logic.snapshot())
    rest, _ = resumed.on_batch([story[15:30], story[30:]])  # two chunks of one batch
    assert [r for out in first + rest for r in out] == whole
    assert resumed.state is not None
    assert resumed.state.station_id == "CP1"
    assert pickle.loads(resumed.snapshot()).station_id == "CP1"


def test_a_batch_without_news_emits_nothing() -> None:
    assert FaultsLogic(None).on_batch([[envelope(Kind.STATION_CONNECTION)]]) == (
        [],
        FaultsLogic.RETAIN,
    )


def test_wiring_keys_by_station_and_dead_letters_what_it_cannot_read() -> None:
    items: list[Envelope | bytes] = [
        *faulty_station("CP1", T0, 20),
        b"junk",
        encode_fault_alert(a_fault_alert()),
        *faulty_station("CP2", T0, 20),
    ]
    rows: list[Any] = []
    dead: list[KafkaSinkMessage[Any, Any]] = []
    run_main(
        build_flow_with(
            kafka_like_input([message(e, i) for i, e in enumerate(items)]),
            TestingSink(rows),
            TestingSink(dead),
        )
    )
    alerts = [r for r in rows if isinstance(r, FaultAlert)]
    opened = sorted(
        (a.station_id, a.connector_id, a.alert_kind.value)
        for a in alerts
        if a.status is AlertStatus.OPEN and a.first_seen == a.last_seen
    )
    assert opened == [
        ("CP1", 1, "meter_fault"),
        ("CP1", 2, "ground_fault"),
        ("CP2", 1, "meter_fault"),
        ("CP2", 2, "ground_fault"),
    ]
    assert sum(a.status is AlertStatus.RESOLVED for a in alerts) == 4
    assert [d.value for d in dead] == [b"junk"]


def test_an_outbox_row_is_published_as_the_alert_keyed_by_station_with_its_version() -> None:
    alert = a_fault_alert()
    payload = msgspec.json.decode(msgspec.json.encode(msgspec.to_builtins(alert)))  # as jsonb
    row = AlertOutboxMessage(alert.alert_id, version_key(alert), alert.station_id, payload)
    key, value, headers = fault_alert_record(row)
    assert key == b"CP1"
    assert value == encode_fault_alert(alert)
    assert decode_fault_alert(value) == alert
    assert dict(headers) == {
        "alert_id": alert.alert_id.encode(),
        "version": version_key(alert).encode(),
    }


def test_a_resolved_version_round_trips_through_the_outbox_payload() -> None:
    resolved = msgspec.structs.replace(
        a_fault_alert(), status=AlertStatus.RESOLVED, resolved_at=T0 + timedelta(minutes=3)
    )
    payload = msgspec.json.decode(msgspec.json.encode(msgspec.to_builtins(resolved)))
    row = AlertOutboxMessage(resolved.alert_id, version_key(resolved), "CP1", payload)
    assert decode_fault_alert(fault_alert_record(row)[1]) == resolved
