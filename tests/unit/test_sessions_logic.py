"""flows.sessions.logic: the per-charge-point session state machine (pure)."""

from __future__ import annotations

import pickle
from datetime import timedelta
from decimal import Decimal
from itertools import count
from typing import Any

import pytest

from bus.envelope import Envelope
from bus.measurands import ENERGY_REGISTER
from flows.errors import InvalidEvent
from flows.sessions.logic import (
    ChargePointState,
    MeterSampleRow,
    Output,
    SessionRow,
    parse_event,
    session_id_for,
    update,
)
from flows.sessions.state import RECENT_MESSAGES
from tests.support.sessions import T0, envelope, iso, meter, register, start, stop


def run(
    events: list[Envelope], state: ChargePointState | None = None
) -> tuple[ChargePointState | None, list[Output]]:
    outputs: list[Output] = []
    for env in events:
        state, out = update(state, env)
        outputs.extend(out)
    return state, outputs


def sessions(outputs: list[Output]) -> list[SessionRow]:
    return [o for o in outputs if isinstance(o, SessionRow)]


def samples(outputs: list[Output]) -> list[MeterSampleRow]:
    return [o for o in outputs if isinstance(o, MeterSampleRow)]


def test_start_meter_stop_gives_exact_register_energy() -> None:
    t1, t2 = T0 + timedelta(minutes=15), T0 + timedelta(minutes=30)
    state, out = run(
        [
            start("CP1", 42, 1_000_000),
            meter("CP1", 42, register(t1, 1_002_500)),
            meter("CP1", 42, register(t2, 1_005_000)),
            stop("CP1", 42, 1_007_340),
        ]
    )
    rows = sessions(out)
    assert [r.status for r in rows] == ["active", "active", "active", "closed"]
    assert [r.energy_wh for r in rows] == [0, 2500, 5000, 7340]
    final = rows[-1]
    assert final.session_id == session_id_for("CP1", "42")
    assert final.transaction_id == "42"
    assert final.connector_id == 1
    assert final.id_tag == "TAG1"
    assert final.meter_start_wh == 1_000_000
    assert final.meter_stop_wh == 1_007_340
    assert final.last_register_wh == 1_005_000
    assert final.started_at == T0
    assert final.stopped_at == T0 + timedelta(hours=1)
    assert final.quality == "exact"
    assert final.quality_reasons == ()
    assert final.stop_reason == "Local"
    assert final.sample_count == 2
    assert final.energy_source == "station_register"
    assert state is not None
    assert state.open == {}
    assert [s.value for s in samples(out)] == [Decimal(1_002_500), Decimal(1_005_000)]
    s = samples(out)[0]
    assert (s.measured_at, s.charge_point_id, s.connector_id, s.transaction_id) == (
        t1,
        "CP1",
        1,
        "42",
    )
    assert (s.measurand, s.phase, s.location, s.context, s.unit) == (
        ENERGY_REGISTER,
        "",
        "Outlet",
        "Sample.Periodic",
        "Wh",
    )  # spec default location


def test_kwh_samples_are_converted_to_wh_and_stored_as_sent() -> None:
    t1 = T0 + timedelta(minutes=10)
    _, out = run(
        [
            start("CP1", 1, 12_000),
            meter("CP1", 1, register(t1, "13.5005", unit="kWh")),
            stop("CP1", 1, 14_000),
        ]
    )
    rows = sessions(out)
    assert rows[1].energy_wh == 1500  # floor(13500.5) - 12000
    assert rows[1].last_register_wh == 13_500
    assert rows[-1].energy_wh == 2000
    assert rows[-1].quality == "exact"
    assert samples(out)[0].value == Decimal("13.5005")
    assert samples(out)[0].unit == "kWh"


def test_measurand_defaults_and_other_measurands() -> None:
    t1 = T0 + timedelta(minutes=5)
    env = envelope(
        "CP1",
        "MeterValues",
        {
            "connectorId": 2,
            "transactionId": 9,
            "meterValue": [
                {
                    "timestamp": iso(t1),
                    "sampledValue": [
                        {"value": "5000"},
                        {
                            "value": "7200.5",
                            "measurand": "Power.Active.Import",
                            "unit": "W",
                            "phase": "L1",
                            "location": "Outlet",
                        },
                        {"value": "deadbeef", "format": "SignedData"},
                    ],
                }
            ],
        },
    )
    _, out = run([start("CP1", 9, 4000, connector=2), env])
    rows = samples(out)
    assert [(r.measurand, r.unit, r.phase, r.location, r.value) for r in rows] == [
        (ENERGY_REGISTER, "Wh", "", "Outlet", Decimal(5000)),  # spec defaults filled in
        ("Power.Active.Import", "W", "L1", "Outlet", Decimal("7200.5")),
    ]
    assert sessions(out)[-1].energy_wh == 1000  # power is not integrated
    assert sessions(out)[-1].sample_count == 2


def test_duplicate_message_ids_are_dropped() -> None:
    s = start("CP1", 5, 100)
    m = meter("CP1", 5, register(T0 + timedelta(minutes=1), 600))
    _state, out = run([s, s, m, m])
    assert len(sessions(out)) == 2
    assert len(samples(out)) == 1
    assert sessions(out)[-1].sample_count == 1


def test_duplicate_stop_does_nothing() -> None:
    state, out = run([start("CP1", 5, 100), stop("CP1", 5, 900)])
    assert sessions(out)[-1].energy_wh == 800
    # Same stop published twice by the gateway (new message id): ignored.
    state, again = run([stop("CP1", 5, 900)], state)
    assert again == []
    # A replayed start of a closed transaction does not reopen it either.
    state, again = run([start("CP1", 5, 100)], state)
    assert again == []


def test_stop_without_start_emits_closed_row_with_unknown_start() -> None:
    _, out = run([stop("CP9", 77, 5_000, reason="EVDisconnected")])
    [row] = out
    assert isinstance(row, SessionRow)
    assert row.status == "closed"
    assert row.transaction_id == "77"
    assert row.meter_stop_wh == 5_000
    assert row.meter_start_wh is None
    assert row.energy_wh is None
    assert row.started_at == T0 + timedelta(hours=1)  # first seen (the sink keeps a stored start)
    assert row.connector_id is None
    assert row.quality_reasons == ("start_unknown",)
    # No figure of its own: the sink merges it with a stored start (store.sessions).
    assert (row.quality, row.energy_source) == ("missing", None)
    assert row.stop_reason == "EVDisconnected"


def test_meter_values_without_transaction_are_samples_only() -> None:
    t1 = T0 + timedelta(minutes=3)
    _, out = run([meter("CP1", None, register(t1, 1234), connector=0)])
    [row] = out
    assert isinstance(row, MeterSampleRow)
    assert row.transaction_id is None
    assert row.connector_id == 0
    # Unknown transaction: samples keep its id, no session row is invented.
    _, out = run([meter("CP1", 31, register(t1, 1234))])
    assert [type(o) for o in out] == [MeterSampleRow]
    assert out[0].transaction_id == "31"


def test_sample_outside_register_range_is_flagged() -> None:
    t1, t2 = T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)
    _, out = run(
        [
            start("CP1", 1, 10_000),
            meter("CP1", 1, register(t1, 9_000)),  # below start: ignored for energy
            meter("CP1", 1, register(t2, 12_500)),  # above stop
            stop("CP1", 1, 12_000),
        ]
    )
    rows = sessions(out)
    # Alone, the drop looks real (counting restarts there, nothing subtracted) ...
    assert rows[1].quality == "corrected"
    assert rows[1].quality_reasons == ("register_decreased",)
    assert rows[1].energy_wh == 0
    assert rows[1].last_register_wh == 9_000
    # ... the next reading shows it was a one-off outlier.
    assert rows[2].quality_reasons == ("register_outlier",)
    assert rows[2].energy_wh == 2_500
    final = rows[-1]
    assert final.energy_wh == 2_000  # the signed stop register stays authoritative
    assert final.quality == "corrected"
    assert final.quality_reasons == ("register_outlier", "sample_above_stop")


def test_meter_stop_near_zero_is_a_register_reset_counted_from_zero() -> None:
    # A stop register far below the start that could
    # have been counted up from 0 in the time is a reset (reboot), not a bad value.
    t1 = T0 + timedelta(minutes=30)
    _, out = run(
        [
            start("CP1", 1, 50_000),
            meter("CP1", 1, register(t1, 53_000)),
            stop("CP1", 1, 10),
        ]
    )
    final = sessions(out)[-1]
    assert final.energy_wh == 3_010
    assert final.quality == "corrected"
    assert final.quality_reasons == ("register_reset",)
    _, out = run([start("CP2", 2, 50_000), stop("CP2", 2, 10)])
    final = sessions(out)[-1]
    assert final.energy_wh == 10
    assert final.quality_reasons == ("register_reset",)


def test_register_decrease_between_good_readings_is_an_outlier() -> None:
    t1, t2 = T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)
    _, out = run(
        [
            start("CP1", 1, 100),
            meter("CP1", 1, register(t1, 900)),
            meter("CP1", 1, register(t2, 500)),
            stop("CP1", 1, 1000),
        ]
    )
    final = sessions(out)[-1]
    assert final.quality_reasons == ("register_outlier",)
    assert final.energy_wh == 900
    assert final.last_register_wh == 500


def test_transaction_data_in_stop_is_sampled_and_checked() -> None:
    t1 = T0 + timedelta(minutes=59)
    data = [
        {
            "timestamp": iso(t1),
            "sampledValue": [
                {
                    "value": "1.2",
                    "unit": "kWh",
                    "measurand": ENERGY_REGISTER,
                    "context": "Transaction.End",
                }
            ],
        }
    ]
    _, out = run([start("CP1", 3, 0), stop("CP1", 3, 1200, transaction_data=data)])
    assert len(samples(out)) == 1
    assert samples(out)[0].context == "Transaction.End"
    final = sessions(out)[-1]
    assert final.energy_wh == 1200
    assert final.quality == "exact"
    assert final.sample_count == 1


def test_two_connectors_run_independent_transactions() -> None:
    _, out = run(
        [
            start("CP1", 1, 100, connector=1),
            start("CP1", 2, 5_000, connector=2),
            stop("CP1", 2, 5_500),
            stop("CP1", 1, 400),
        ]
    )
    closed = {r.transaction_id: r for r in sessions(out) if r.status == "closed"}
    assert closed["1"].energy_wh == 300
    assert closed["1"].connector_id == 1
    assert closed["2"].energy_wh == 500
    assert closed["2"].connector_id == 2


def test_non_session_actions_produce_nothing() -> None:
    cases: list[tuple[str, dict[str, Any]]] = [
        ("Heartbeat", {}),
        ("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}),
        ("Authorize", {"idTag": "TAG1"}),
        ("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"}),
    ]
    for action, payload in cases:
        state, out = update(None, envelope("CP1", action, payload))
        assert out == []
        assert state.open == {}


@pytest.mark.parametrize(
    ("action", "payload", "response", "match"),
    [
        (
            "StartTransaction",
            {"connectorId": 1, "idTag": "T", "meterStart": 1, "timestamp": "2026-01-01T00:00:00Z"},
            {},
            "transactionId",
        ),
        (
            "StartTransaction",
            {
                "connectorId": 1,
                "idTag": "T",
                "meterStart": "12",
                "timestamp": "2026-01-01T00:00:00Z",
            },
            {"transactionId": 1},
            "meterStart",
        ),
        (
            "StopTransaction",
            {"transactionId": 1, "meterStop": 5, "timestamp": "yesterday"},
            {},
            "ISO 8601",
        ),
        (
            "MeterValues",
            {
                "connectorId": 1,
                "meterValue": [
                    {"timestamp": "2026-01-01T00:00:00Z", "sampledValue": [{"value": "abc"}]}
                ],
            },
            None,
            "not a number",
        ),
        ("MeterValues", {"connectorId": 1, "meterValue": "x"}, None, "must be a list"),
    ],
)
def test_invalid_session_messages_raise(
    action: str, payload: dict[str, Any], response: dict[str, Any] | None, match: str
) -> None:
    with pytest.raises(InvalidEvent, match=match):
        parse_event(envelope("CP1", action, payload, response=response))


def test_state_is_bounded_and_picklable() -> None:
    state, _ = run([start("CP1", 1, 0)])
    for i in range(RECENT_MESSAGES + 50):
        state, _ = update(state, meter("CP1", 1, register(T0 + timedelta(seconds=i), i)))
    assert state is not None
    assert len(state.recent_messages) == RECENT_MESSAGES
    clone = pickle.loads(pickle.dumps(state))
    assert clone.open == state.open
    assert list(clone.recent_messages) == list(state.recent_messages)
    assert len(pickle.dumps(state)) < 64_000


def test_state_pickled_under_the_facade_module_name_resumes() -> None:
    state, _ = run([start("CP1", 1, 0), meter("CP1", 1, register(T0 + timedelta(minutes=1), 500))])
    assert state is not None
    data = pickle.dumps(state)
    # Recovery snapshots written while the state types lived in the facade module
    # name them flows.sessions.logic.<type> (the same length: the pickle stays valid).
    assert b"flows.sessions.state" in data
    old = data.replace(b"flows.sessions.state", b"flows.sessions.logic")
    resumed = pickle.loads(old)
    assert resumed.open == state.open
    _, rows = update(resumed, stop("CP1", 1, 1_500))
    _, expected = update(state, stop("CP1", 1, 1_500))
    assert rows == expected


def test_replay_is_deterministic() -> None:
    ids = count()
    events = (
        [start("CP1", 1, 10)]
        + [
            meter("CP1", 1, register(T0 + timedelta(minutes=next(ids)), 10 + 100 * i))
            for i in range(5)
        ]
        + [stop("CP1", 1, 700)]
    )
    assert run(events)[1] == run(events)[1]
