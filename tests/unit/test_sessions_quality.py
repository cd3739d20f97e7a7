"""flows.sessions: energy quality rules (pure logic, both OCPP versions, smart meters)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec

from bus.envelope import Envelope, Kind
from bus.normalized import normalize_v16, normalize_v201
from flows.sessions.logic import (
    ChargePointState,
    Output,
    SessionRow,
    SessionRules,
    apply,
    parse_event,
)
from flows.sessions.registers import RegisterFold, RegisterRules
from tests.support.sessions import (
    T0,
    M,
    envelope,
    final,
    iso,
    meter,
    reading,
    register,
    rows,
    run,
    start,
    stop,
    sv,
    tx_event,
    v201,
)

# --------------------------------------------------------------------------- helpers


def heartbeat(cp: str, at: datetime) -> Envelope:
    return envelope(cp, "Heartbeat", {}, at=at)


def session_201(
    cp: str = "CP2",
    tx: str = "tx-1",
    begin: Any = 1000,
    end: Any = 8000,
    updates: tuple[Any, ...] = (3000, 6000),
    unit: str = "Wh",
) -> list[Envelope]:
    events = [tx_event(cp, "Started", tx, 0, T0, sv(begin, context="Transaction.Begin", unit=unit))]
    for i, value in enumerate(updates, start=1):
        events.append(tx_event(cp, "Updated", tx, i, T0 + 10 * i * M, sv(value, unit=unit)))
    events.append(
        tx_event(
            cp,
            "Ended",
            tx,
            len(updates) + 1,
            T0 + 60 * M,
            sv(end, context="Transaction.End", unit=unit),
            reason="EVDisconnected",
        )
    )
    return events


# --------------------------------------------------------------------------- OCPP 2.0.1


def test_v201_started_updated_ended_with_begin_and_end_registers() -> None:
    _, out = run(session_201())
    row = final(out)
    assert (row.energy_wh, row.meter_start_wh, row.meter_stop_wh) == (7000, 1000, 8000)
    assert (row.quality, row.quality_reasons, row.energy_source) == (
        "exact",
        (),
        "station_register",
    )
    assert (row.connector_id, row.id_tag, row.stop_reason, row.closed_by) == (
        1,
        "TOKEN",
        "EVDisconnected",
        "stop",
    )
    assert row.ocpp_version == "2.0.1"
    assert [r.energy_wh for r in rows(out)] == [0, 2000, 5000, 7000]


def test_v201_without_normalized_is_normalised_here() -> None:
    with_facts = session_201()
    without = [msgspec.structs.replace(e, normalized=None) for e in with_facts]
    assert run(with_facts)[1] == run(without)[1]


def test_v16_envelopes_with_and_without_normalized_agree() -> None:
    old = [start("CP1", 1, 100), meter("CP1", 1, register(T0 + M, 600)), stop("CP1", 1, 900)]
    new = [
        msgspec.structs.replace(
            e,
            normalized=normalize_v16(
                e.charge_point_id, e.action or "", e.payload, e.response, e.received_at
            ),
        )
        for e in old
    ]
    assert run(old)[1] == run(new)[1]
    assert final(run(new)[1]).energy_wh == 800


def test_seq_no_gap_and_offline_are_flagged() -> None:
    events = session_201()
    del events[1]  # seqNo 1 never arrived
    events[0] = tx_event(
        "CP2", "Started", "tx-1", 0, T0, sv(1000, context="Transaction.Begin"), offline=True
    )
    row = final(run(events)[1])
    assert row.energy_wh == 7000
    assert row.quality == "corrected"
    assert row.quality_reasons == ("seq_no_gap", "offline")


def test_duplicate_transaction_event_with_new_message_id_is_ignored() -> None:
    events = session_201()
    dup = tx_event("CP2", "Updated", "tx-1", 1, T0 + 10 * M, sv(3000))
    _, out = run([*events[:2], dup, *events[2:]])
    assert final(out).sample_count == final(run(events)[1]).sample_count
    assert final(out).quality == "exact"


def test_updated_before_started_opens_start_unknown_then_start_fills_in() -> None:
    events = session_201()
    _, out = run([events[1], events[0], *events[2:]])  # Started arrives late
    assert rows(out)[0].quality_reasons == ("start_unknown",)
    assert rows(out)[0].energy_wh is None
    row = final(out)
    assert (row.energy_wh, row.quality) == (7000, "exact")


# --------------------------------------------------------------------------- units


def test_kwh_and_multiplier_and_bare_values() -> None:
    # kWh register, 2.0.1 unitOfMeasure multiplier (1.2345 x 10^1 kWh), bare values = Wh.
    events = [
        tx_event("CP2", "Started", "t", 0, T0, sv("10.5", context="Transaction.Begin", unit="kWh")),
        tx_event("CP2", "Updated", "t", 1, T0 + 10 * M, sv("1.2345", unit="kWh", multiplier=1)),
        tx_event("CP2", "Updated", "t", 2, T0 + 20 * M, {"value": 12600}),  # bare: Wh register
        tx_event(
            "CP2",
            "Ended",
            "t",
            3,
            T0 + 30 * M,
            sv("1.3", context="Transaction.End", unit="kWh", multiplier=1),
        ),
    ]
    _, out = run(events)
    assert [r.energy_wh for r in rows(out)] == [0, 1845, 2100, 2500]
    assert final(out).quality == "exact"
    assert {(s.unit, s.unit_multiplier) for s in out if not isinstance(s, SessionRow)} == {
        ("kWh", 0),
        ("kWh", 1),
        ("Wh", 0),
    }


def test_per_phase_only_registers_are_summed() -> None:
    def phases(a: int, b: int, c: int, context: str = "Sample.Periodic") -> list[dict[str, Any]]:
        return [
            sv(a, phase="L1", context=context),
            sv(b, phase="L2", context=context),
            sv(c, phase="L3", context=context),
        ]

    events = [
        tx_event("CP2", "Started", "t", 0, T0, *phases(100, 200, 300, "Transaction.Begin")),
        tx_event("CP2", "Updated", "t", 1, T0 + 10 * M, *phases(600, 700, 800)),
        tx_event("CP2", "Ended", "t", 2, T0 + 20 * M, *phases(1100, 1200, 1300, "Transaction.End")),
    ]
    row = final(run(events)[1])
    assert (row.meter_start_wh, row.meter_stop_wh, row.energy_wh) == (600, 3600, 3000)
    assert row.quality == "exact"


def test_phase_less_total_wins_over_phases() -> None:
    events = session_201(updates=(0,))
    events[1] = tx_event(
        "CP2",
        "Updated",
        "tx-1",
        1,
        T0 + 10 * M,
        sv(4000),
        sv(1300, phase="L1"),
        sv(1300, phase="L2"),
        sv(1400, phase="L3"),
    )
    _, out = run(events)
    assert final(out).energy_wh == 7000
    assert rows(out)[1].last_register_wh == 4000


def test_duplicate_values_for_the_same_context_count_once() -> None:
    # A raw Wh value and a kWh value side by side: one reading, no conflict.
    events = session_201(updates=(0,))
    events[1] = tx_event(
        "CP2",
        "Updated",
        "tx-1",
        1,
        T0 + 10 * M,
        sv(4321),
        sv("4.321", unit="kWh"),
        sv(4321, context="Sample.Clock"),
    )
    _, out = run(events)
    assert (final(out).energy_wh, final(out).quality) == (7000, "exact")
    assert rows(out)[1].last_register_wh == 4321
    # Side by side values that disagree: the lower one, flagged.
    events[1] = tx_event("CP2", "Updated", "tx-1", 1, T0 + 10 * M, sv(4321), sv("4.9", unit="kWh"))
    _, out = run(events)
    assert final(out).quality_reasons == ("conflicting_register_values",)
    assert rows(out)[1].last_register_wh == 4321  # the lower of 4,321 and 4,900


def test_connector_zero_readings_are_not_billed_to_a_connector_session() -> None:
    main = v201(
        "CP2",
        "MeterValues",
        {
            "evseId": 0,
            "meterValue": [{"timestamp": iso(T0 + 5 * M), "sampledValue": [sv(9_999_999)]}],
        },
        at=T0 + 5 * M,
    )
    events = session_201()
    _, out = run([events[0], main, *events[1:]])
    row = final(out)
    assert (row.energy_wh, row.quality) == (7000, "exact")
    assert [
        (s.connector_id, s.transaction_id)
        for s in out
        if not isinstance(s, SessionRow)
        if s.value == 9_999_999
    ] == [(0, None)]
    # 1.6: connector 0 values with the transaction's id do not count either.
    old = [
        start("CP1", 1, 100),
        meter("CP1", 1, register(T0 + M, 5_000_000), connector=0),
        stop("CP1", 1, 900),
    ]
    row = final(run(old)[1])
    assert (row.energy_wh, row.quality) == (800, "exact")


def test_clock_aligned_values_without_transaction_id_belong_to_the_running_session() -> None:
    clock = v201(
        "CP2",
        "MeterValues",
        {
            "evseId": 1,
            "meterValue": [
                {"timestamp": iso(T0 + 15 * M), "sampledValue": [sv(4500, context="Sample.Clock")]}
            ],
        },
        at=T0 + 15 * M,
    )
    events = session_201()
    _, out = run([*events[:2], clock, *events[2:]])
    assert [r.energy_wh for r in rows(out)] == [0, 2000, 3500, 5000, 7000]


def test_batches_with_only_soc_or_power_do_not_wipe_the_running_total() -> None:
    soc = tx_event(
        "CP2", "Updated", "tx-1", 2, T0 + 15 * M, sv(55, measurand="SoC", unit="Percent")
    )
    events = session_201(updates=(3000,))
    ended = tx_event("CP2", "Ended", "tx-1", 3, T0 + 60 * M, sv(8000, context="Transaction.End"))
    _, out = run([events[0], events[1], soc, ended])
    assert [r.energy_wh for r in rows(out)] == [0, 2000, 2000, 7000]
    assert final(out).quality == "exact"


# --------------------------------------------------------------------------- register faults


def test_reset_mid_session_counts_from_zero() -> None:
    _, out = run(session_201(begin=50_000, updates=(52_000, 300, 1_500), end=2_000))
    row = final(out)
    assert row.energy_wh == 2_000 + 2_000  # 50k -> 52k, then 0 -> 2k
    assert row.quality_reasons == ("register_reset",)


def test_rollover_is_counted_across_the_wrap() -> None:
    _, out = run(session_201(begin=999_000, updates=(999_900, 400), end=1_200))
    row = final(out)
    assert row.energy_wh == 1_000_000 - 999_000 + 1_200
    assert row.quality_reasons == ("register_rollover",)


def test_implausible_jump_is_not_billed() -> None:
    # 10 minutes at most 350 kW (+10 %) is 64 kWh; +5 MWh is a jump, counting goes on after it.
    _, out = run(session_201(begin=1_000, updates=(3_000, 5_003_000, 5_006_000), end=5_008_000))
    row = final(out)
    assert row.energy_wh == 2_000 + 5_000
    assert row.quality_reasons == ("register_jump",)


def test_persistent_decrease_is_not_subtracted() -> None:
    _, out = run(session_201(begin=100_000, updates=(104_000, 90_000, 93_000), end=95_000))
    row = final(out)
    assert row.energy_wh == 4_000 + 5_000
    assert row.quality_reasons == ("register_decreased",)


def test_offline_begin_of_zero_does_not_bill_the_whole_register() -> None:
    events = session_201(begin=0, updates=(12_345_000, 12_348_000), end=12_350_000)
    events[0] = tx_event(
        "CP2", "Started", "tx-1", 0, T0, sv(0, context="Transaction.Begin"), offline=True
    )
    row = final(run(events)[1])
    assert row.energy_wh == 5_000
    assert row.quality == "corrected"
    assert row.quality_reasons == ("start_register_implausible", "offline")


def test_missing_begin_and_end_registers_use_the_samples() -> None:
    events = [
        tx_event("CP2", "Started", "t", 0, T0),
        tx_event("CP2", "Updated", "t", 1, T0 + 10 * M, sv(5_000)),
        tx_event("CP2", "Updated", "t", 2, T0 + 20 * M, sv(7_500)),
        tx_event("CP2", "Ended", "t", 3, T0 + 30 * M),
    ]
    row = final(run(events)[1])
    assert (row.energy_wh, row.meter_start_wh, row.meter_stop_wh) == (2_500, 5_000, None)
    assert row.quality_reasons == ("start_register_missing", "stop_register_missing")


def test_power_integration_only_without_registers_is_estimated() -> None:
    def power(w: int) -> dict[str, Any]:
        return sv(w, measurand="Power.Active.Import", unit="W")

    events = [
        tx_event("CP2", "Started", "t", 0, T0, power(7200)),
        tx_event("CP2", "Updated", "t", 1, T0 + 30 * M, power(7200)),
        tx_event("CP2", "Ended", "t", 2, T0 + 60 * M, power(0)),
    ]
    row = final(run(events)[1])
    assert row.energy_wh == 3600 + 1800
    assert (row.energy_source, row.quality) == ("power_integration", "estimated")
    assert "register_missing" in row.quality_reasons
    assert row.meter_start_wh is None


def test_fold_outlier_then_continue() -> None:
    fold = RegisterFold(RegisterRules())
    fold.start(T0, Decimal(1000))
    for minute, value in ((1, 1500), (2, 0), (3, 2500)):
        fold.push(T0 + minute * M, Decimal(value))
    assert fold.result() == (Decimal(1500), ("register_outlier",))


# --------------------------------------------------------------------------- delivery


def test_out_of_order_and_duplicated_messages_give_the_same_session() -> None:
    events = (
        [start("CP1", 7, 1_000)]
        + [meter("CP1", 7, register(T0 + i * M, 1_000 + 100 * i)) for i in range(1, 30)]
        + [stop("CP1", 7, 4_000)]
    )
    reference = final(run(events)[1])
    middle = events[1:-1]
    random.Random(3).shuffle(middle)
    again = final(run([events[0], *middle, *middle[:5], events[-1]])[1])
    assert again == reference
    assert reference.quality == "exact"


def test_missing_stop_is_closed_by_idle_timeout_in_event_time() -> None:
    rules = SessionRules(idle_timeout=timedelta(hours=1))
    events = [
        start("CP1", 1, 100),
        meter("CP1", 1, register(T0 + 5 * M, 600)),
        heartbeat("CP1", T0 + 30 * M),
    ]
    state, out = run(events, rules)
    assert all(r.status == "active" for r in rows(out))
    state, out = run([heartbeat("CP1", T0 + 66 * M)], rules, state)
    row = final(out)
    assert (row.closed_by, row.stopped_at, row.energy_wh, row.meter_stop_wh) == (
        "timeout",
        T0 + 5 * M,
        500,
        None,
    )
    assert row.quality_reasons == ("stop_missing",)
    # A late StopTransaction amends the closed row (published once, see store.sessions).
    state, out = run([stop("CP1", 1, 700, at=T0 + 10 * M)], rules, state)
    row = final(out)
    assert (row.closed_by, row.energy_wh, row.meter_stop_wh, row.stopped_at) == (
        "stop",
        600,
        700,
        T0 + 10 * M,
    )
    assert row.quality_reasons == ("stop_late",)
    _, out = run([stop("CP1", 1, 700, at=T0 + 10 * M)], rules, state)  # again: nothing
    assert out == []


def test_missing_stop_is_closed_by_the_next_start_on_the_same_connector() -> None:
    events = [
        start("CP1", 1, 100),
        meter("CP1", 1, register(T0 + 5 * M, 600)),
        start("CP1", 2, 5_000, connector=2, at=T0 + 6 * M),  # other connector: no
        start("CP1", 3, 900, at=T0 + 20 * M),
    ]
    state, out = run(events)
    row = final(out, "1")
    assert (row.closed_by, row.energy_wh, row.stopped_at) == ("next_start", 500, T0 + 5 * M)
    assert row.quality_reasons == ("stop_missing",)
    assert set(state.open) == {"2", "3"}


# --------------------------------------------------------------------------- smart meters


def test_billing_smart_meter_takes_precedence_and_holds_the_close_until_its_reading() -> None:
    events = [
        reading("CP1", T0 - 2 * M, 70_000),
        reading("CP1", T0 - M, 70_010),
        reading("CP1", T0 + M, 70_100),
        start("CP1", 1, 1_000),
        reading("CP1", T0 + 30 * M, 73_000),
        stop("CP1", 1, 8_000, at=T0 + 60 * M),
    ]
    state, out = run(events)
    assert rows(out)[-1].status == "active"  # waiting for the meter's reading after the stop
    state, out = run(
        [reading("CP1", T0 + 61 * M, 77_050), reading("CP1", T0 + 62 * M, 77_050)], state=state
    )
    [row] = rows(out)  # one closed snapshot; the later reading changes nothing
    assert row.status == "closed"
    assert (row.energy_wh, row.energy_source, row.smart_meter_id) == (
        7_040,
        "smart_meter",
        "MTR-1",
    )  # 77,050 (first at/after stop) - 70,010 (last before)
    assert (row.station_energy_wh, row.smart_meter_energy_wh) == (7_000, 7_040)
    assert row.quality == "exact"  # 40 Wh apart is within 1 % + 10 Wh


def test_smart_meter_cross_check_flags_a_disagreement() -> None:
    events = [
        reading("CP1", T0 - M, 50_000, billing=False),
        start("CP1", 1, 1_000),
        stop("CP1", 1, 8_000, at=T0 + 60 * M),
        reading("CP1", T0 + 61 * M, 57_500, billing=False),
    ]
    row = final(run(events)[1])
    assert (row.energy_wh, row.energy_source) == (7_000, "station_register")
    assert row.smart_meter_energy_wh == 7_500
    assert row.quality_reasons == ("smart_meter_mismatch",)


def test_smart_meter_without_a_reading_after_the_stop_falls_back_after_the_grace() -> None:
    events = [
        reading("CP1", T0 - M, 50_000),
        start("CP1", 1, 1_000),
        stop("CP1", 1, 8_000, at=T0 + 60 * M),
        heartbeat("CP1", T0 + 66 * M),
    ]
    row = final(run(events)[1])
    assert (row.energy_wh, row.energy_source) == (7_000, "station_register")
    assert row.quality_reasons == ("smart_meter_incomplete",)


def test_smart_meter_readings_for_another_connector_are_ignored() -> None:
    events = [
        reading("CP1", T0 - M, 50_000, connector=2),
        start("CP1", 1, 1_000),
        stop("CP1", 1, 8_000, at=T0 + 60 * M),
        reading("CP1", T0 + 61 * M, 90_000, connector=2),
    ]
    row = final(run(events)[1])
    assert (row.energy_wh, row.quality, row.smart_meter_id) == (7_000, "exact", None)


def test_meter_reading_parse_and_duplicates() -> None:
    env = reading("CP1", T0, "1234.5")
    event = parse_event(env)
    assert event is not None
    state, out = apply(None, event)
    state, out = apply(state, event)
    assert out == []
    assert state.readings[1] == [(T0, "MTR-1", Decimal("1234.5"), True)]


def test_decode_event_equals_parse_event_of_decode_envelope() -> None:
    """The flow's fast decoder (raw payload left undecoded) gives the same events and
    the same errors as the general path, for every kind of input."""
    from bus.envelope import EnvelopeError, decode_envelope, encode_envelope
    from flows.errors import InvalidEvent
    from flows.sessions.logic import StationMessage, decode_event

    old = [start("CP1", 1, 100), meter("CP1", 1, register(T0 + M, 600)), stop("CP1", 1, 900)]
    new = [
        msgspec.structs.replace(
            e,
            normalized=normalize_v16(
                e.charge_point_id, e.action or "", e.payload, e.response, e.received_at
            ),
        )
        for e in old
    ]
    valid = [encode_envelope(e) for e in old + new + session_201()]
    base = encode_envelope(new[1]).decode()
    broken = [
        None,
        b"",
        b"not json",
        b'{"message_id": 5}',
        b"[]",
        base.replace('"payload":{', '"payload":[{', 1).replace("]}]", "]}]]", 1).encode(),
        base.replace('"payload":{', '"payload":{"x":tru,', 1).encode(),
        base.replace('"response":null', '"response":[1]', 1).encode(),
        base.replace('"payload":{', '"payload":"text","p":{', 1).encode(),
        base.replace('"schema_version":1', '"schema_version":9', 1).encode(),
        base.replace('Z"', '"').encode(),  # naive timestamps
        base.replace('"normalized":[', '"normalized":[{"type":"nope"},', 1).encode(),
        encode_envelope(msgspec.structs.replace(new[0], response={})),  # no transactionId
        encode_envelope(msgspec.structs.replace(new[0], kind=Kind.STATION_CONNECTION)),
    ]
    for data in valid + broken:
        try:
            expected: Any = parse_event(decode_envelope(data))
        except (EnvelopeError, InvalidEvent) as exc:
            expected = (type(exc), str(exc))
        try:
            got: Any = decode_event(data)
        except (EnvelopeError, InvalidEvent) as exc:
            got = (type(exc), str(exc))
        assert got == expected, data
    assert sum(isinstance(decode_event(d), StationMessage) for d in valid) == len(valid)


def _fleet_events(rng: random.Random) -> list[Envelope]:
    """A messy multi-station history: 1.6 and 2.0.1 sessions, smart-meter readings,
    missing stops (next start, idle timeout), late stops, resets, duplicates and
    reordering."""
    events: list[Envelope] = []
    for n, cp in enumerate(("CP1", "CP2", "CP3")):
        t, wh, meter_wh = T0 + n * M, 1_000 * (n + 1), 50_000
        for tx in range(1, 9):
            base = 100 * n + tx
            meter_wh += rng.randrange(20)
            events.append(reading(cp, t - M, meter_wh))
            if tx % 3 == 0:  # 2.0.1 (tx ids are strings of their own)
                session = session_201(
                    cp, f"tx-{base}", begin=wh, end=wh + 900, updates=(wh + 300, wh + 600)
                )
                events.extend(
                    msgspec.structs.replace(
                        e,
                        received_at=e.received_at + (t - T0),
                        normalized=normalize_v201(
                            cp, "TransactionEvent", e.payload, {}, e.received_at + (t - T0)
                        ),
                    )
                    for e in session
                )
            else:
                events.append(start(cp, base, wh, at=t))
                for k in range(1, rng.randrange(2, 7)):
                    value = 0 if rng.random() < 0.05 else wh + 250 * k  # a reset now and then
                    events.append(meter(cp, base, register(t + 5 * k * M, value)))
                if tx % 4 != 1:  # else: closed by the next start or the idle timeout
                    events.append(stop(cp, base, wh + 2_000, at=t + 40 * M))
            meter_wh += 2_000
            events.append(reading(cp, t + 41 * M, meter_wh))
            wh += 2_000
            t += 90 * M
        events.append(heartbeat(cp, t + 30 * 60 * M))  # idle timeout for the last one
        events.append(stop(cp, 100 * n + 1, 3_000, at=T0 + 30 * M))  # very late stop
    for i in rng.sample(range(len(events)), 25):
        events.insert(i, events[i])  # redelivered
    for i in rng.sample(range(len(events) - 3), 15):
        events[i], events[i + 2] = events[i + 2], events[i]  # out of order
    return events


def test_apply_batch_gives_the_samples_and_the_last_snapshots_of_apply() -> None:
    """For every batch: the same sample rows in the same order, and for every session
    exactly the last snapshot per-event folding emits in that batch."""
    from flows.sessions.logic import MeterSampleRow, apply_batch

    rules = SessionRules(
        keep_closed=2, amend_window=timedelta(hours=3), idle_timeout=timedelta(hours=4)
    )  # forgets inside batches too
    for seed in range(6):
        rng = random.Random(seed)
        events = [parse_event(e) for e in _fleet_events(rng)]
        per_event: dict[str, ChargePointState | None] = {}
        batched: dict[str, ChargePointState | None] = {}
        i = 0
        while i < len(events):
            size = rng.choice((1, 2, 3, 7, 20, 60))
            by_cp: dict[str, list[Any]] = {}
            for e in events[i : i + size]:
                assert e is not None
                by_cp.setdefault(e.charge_point_id, []).append(e)
            i += size
            for cp, batch in by_cp.items():
                expected: list[Output] = []
                for e in batch:
                    per_event[cp], out = apply(per_event.get(cp), e, rules)
                    expected.extend(out)
                batched[cp], got = apply_batch(batched.get(cp), batch, rules)
                samples = [o for o in expected if isinstance(o, MeterSampleRow)]
                assert [o for o in got if isinstance(o, MeterSampleRow)] == samples
                last: dict[Any, SessionRow] = {}
                for o in expected:
                    if isinstance(o, SessionRow):
                        last[o.session_id] = o
                got_rows = [o for o in got if isinstance(o, SessionRow)]
                assert len({r.session_id for r in got_rows}) == len(got_rows)
                assert {r.session_id: r for r in got_rows} == last
