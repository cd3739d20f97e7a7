"""flows.load.logic (pure) and flows.load.dataflow wiring with Bytewax's testing source."""

from __future__ import annotations

import pickle
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from bytewax.connectors.kafka import KafkaError, KafkaSinkMessage, KafkaSourceMessage
from bytewax.testing import TestingSink, run_main
from confluent_kafka import KafkaError as ConfluentKafkaError

from bus.envelope import Envelope, EnvelopeError, Kind, encode_envelope
from bus.load import decode_site_load
from bus.measurands import ENERGY_REGISTER
from flows.errors import InvalidEvent
from flows.load import logic
from flows.load.dataflow import SiteBatchLogic, StationsLogic, build_flow_with
from flows.load.logic import (
    MinuteRow,
    SiteInput,
    SiteLogic,
    SiteState,
    StationLoad,
    StationState,
    apply,
    parse_envelope,
)
from flows.source import decode_and_group
from tests.support.flows import kafka_like_input, message
from tests.support.load_events import (
    T0,
    call16,
    connection,
    iso,
    meter_reading,
    mv16,
    mv201,
    start16,
    status16,
    stop16,
)
from tests.support.paths import ROOT

S = timedelta(seconds=1)
M = timedelta(minutes=1)


def run(
    envelopes: Sequence[Envelope], state: StationState | None = None
) -> tuple[StationState, list[logic.Output]]:
    out: list[logic.Output] = []
    for env in envelopes:
        event = parse_envelope(env)
        if event is None:
            continue
        state, rows = apply(state, event)
        out.extend(rows)
    assert state is not None
    return state, out


def latest_minutes(out: Sequence[logic.Output]) -> dict[tuple[str, int, datetime], MinuteRow]:
    rows: dict[tuple[str, int, datetime], MinuteRow] = {}
    for o in out:
        if isinstance(o, MinuteRow):
            rows[(o.charge_point_id, o.connector_id, o.bucket)] = o
    return rows


def loads(out: Sequence[logic.Output]) -> list[StationLoad]:
    return [o for o in out if isinstance(o, StationLoad)]


def test_power_units_multiplier_and_phase_sum() -> None:
    cases = [
        (mv16("CP", 1, T0, watts="7400"), 7400.0),
        (mv16("CP", 1, T0, kw="7.4"), 7400.0),
        (mv16("CP", 1, T0, phases={"L1-N": "3680", "L2-N": "3680", "L3-N": "3640"}), 11000.0),
        (mv16("CP", 1, T0, watts="11000", phases={"L1": "1", "L2": "1"}), 11000.0),
        (mv201("CP", 1, T0, power=22.0, unit="kW"), 22000.0),
        (mv201("CP", 1, T0, power=74, unit="W", multiplier=2), 7400.0),
    ]
    for env, watts in cases:
        event = parse_envelope(env)
        assert event is not None
        [reading] = [f for f in event.facts if isinstance(f, logic.PowerReading)]
        assert reading.power_w == watts
        assert reading.connector_id == 1


def test_one_minute_aggregates_chain_register_deltas() -> None:
    envs = [
        mv16("CP", 1, T0 + 10 * S, watts="7000", register_wh=1000),
        mv16("CP", 1, T0 + 40 * S, watts="7400", register_wh=1050),
        mv16("CP", 1, T0 + M + 10 * S, watts="7200", register_wh=1110),
        mv16("CP", 1, T0 + 3 * M + 5 * S, watts="0", register_wh=1300),
    ]
    state, out = run(envs)
    rows = latest_minutes(out)
    first = rows[("CP", 1, T0)]
    assert (first.sample_count, first.avg_power_w, first.max_power_w) == (2, 7200.0, 7400.0)
    assert (first.energy_wh, first.register_wh) == (Decimal(50), Decimal(1050))
    assert rows[("CP", 1, T0 + M)].energy_wh == Decimal(60)
    assert rows[("CP", 1, T0 + 3 * M)].energy_wh == Decimal(190)
    assert sum(r.energy_wh or 0 for r in rows.values()) == Decimal(300)
    assert state.connectors[1].power_w == 0.0

    # Redelivered / repeated messages change nothing and emit nothing.
    _, again = run(envs, state)
    assert [o for o in again if isinstance(o, MinuteRow)] == []


def test_late_samples_update_open_minutes_and_old_ones_are_ignored() -> None:
    state, out = run(
        [
            mv16("CP", 1, T0 + 10 * S, watts="1000", register_wh=100),
            mv16("CP", 1, T0 + 2 * M + 10 * S, watts="3000", register_wh=300),
        ]
    )
    # A sample for the minute in between arrives late: its minute appears and the
    # later minute's delta shrinks (the chain is recomputed).
    state, out = run([mv16("CP", 1, T0 + M + 30 * S, watts="2000", register_wh=180)], state)
    rows = latest_minutes(out)
    assert rows[("CP", 1, T0 + M)].energy_wh == Decimal(80)
    assert rows[("CP", 1, T0 + 2 * M)].energy_wh == Decimal(120)
    # Far ahead: old minutes close; a sample for a closed minute is counted as late.
    state, _ = run([mv16("CP", 1, T0 + 30 * M, watts="0", register_wh=400)], state)
    state, out = run([mv16("CP", 1, T0 + 5 * S, watts="9999", register_wh=50)], state)
    assert latest_minutes(out) == {}
    assert state.late_samples == 2  # its power and register readings
    state, out = run([mv16("CP", 1, T0 + 31 * M, watts="0", register_wh=410)], state)
    assert latest_minutes(out)[("CP", 1, T0 + 31 * M)].energy_wh == Decimal(10)


def test_register_reset_gives_zero_and_restarts_the_chain() -> None:
    _, out = run(
        [
            mv16("CP", 1, T0, register_wh=5000),
            mv16("CP", 1, T0 + M, register_wh=20),
            mv16("CP", 1, T0 + 2 * M, register_wh=70),
        ]
    )
    rows = latest_minutes(out)
    assert [rows[("CP", 1, T0 + k * M)].energy_wh for k in range(3)] == [0, 0, 50]


def test_station_total_idles_on_status_and_transaction_end() -> None:
    state, out = run(
        [
            start16("CP", 1, 7, 0, T0),
            mv16("CP", 1, T0 + S, watts="7000", tx=7),
            mv16("CP", 2, T0 + 2 * S, kw="11"),
            mv16("CP", 0, T0 + 3 * S, watts="18500"),  # main meter: not added to outlets
        ]
    )
    assert loads(out)[-1].power_w == 18000.0
    state, out = run([stop16("CP", 7, 100, T0 + M)], state)  # 1.6 stop: no connector id
    assert loads(out)[-1].power_w == 11000.0
    state, out = run([status16("CP", 2, "Finishing", T0 + 2 * M)], state)
    assert loads(out)[-1].power_w == 0.0
    assert dict(loads(out)[-1].connectors) == {0: 18500.0, 1: 0.0, 2: 0.0}
    # Samples older than STALE_AFTER relative to the station's newest event drop out.
    state, out = run([mv16("CP", 1, T0 + 3 * M, watts="5000")], state)
    state, out = run([connection("CP", "offline", T0 + 30 * M)], state)
    last = loads(out)[-1]
    assert (last.power_w, last.offline, last.as_of) == (0.0, True, T0 + 30 * M)


def test_main_meter_counts_when_no_outlet_reports() -> None:
    _, out = run([mv16("CP", 0, T0, watts="9000")])
    assert loads(out)[-1].power_w == 9000.0


def test_billing_meter_beats_station_which_beats_plain_meter() -> None:
    state, out = run(
        [
            mv16("CP", 1, T0, watts="7000", register_wh=1000),
            meter_reading("CP", 1, T0 + 5 * S, 6900.0, 88_000),  # non-billing: ignored
        ]
    )
    assert latest_minutes(out)[("CP", 1, T0)].source == "ocpp"
    assert loads(out)[-1].power_w == 7000.0
    state, out = run([meter_reading("CP", 1, T0 + 10 * S, 7100.0, 90_000, billing=True)], state)
    row = latest_minutes(out)[("CP", 1, T0)]
    assert (row.source, row.sample_count, row.energy_wh) == ("meter:billing", 1, Decimal(0))
    state, out = run([mv16("CP", 1, T0 + 20 * S, watts="1")], state)  # ignored now
    assert loads(out)[-1].power_w == 7100.0
    # The billing meter falls silent; after SOURCE_STALE_AFTER the station takes over.
    state, out = run([mv16("CP", 1, T0 + 11 * M, watts="3000", register_wh=1500)], state)
    assert latest_minutes(out)[("CP", 1, T0 + 11 * M)].source == "ocpp"


def test_state_is_picklable() -> None:
    state, _ = run([mv16("CP", 1, T0, watts="7000", register_wh=1)])
    assert pickle.loads(pickle.dumps(state)) == state


# --------------------------------------------------------------------------- sites


def station(cp: str, watts: float, at: datetime = T0, offline: bool = False) -> StationLoad:
    return StationLoad(cp, at, watts, ((1, watts),), offline)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 6, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_site_total_against_capacity() -> None:
    state = SiteState()
    state.update(SiteInput("S1", 22_000, station("A", 11_000.0)))
    state.update(SiteInput("S1", 22_000, station("B", 12_000.0, T0 + M, offline=True)))
    msg = logic.site_load(state, T0)
    assert (msg.total_w, msg.capacity_w, msg.utilisation_pct, msg.over_capacity) == (
        23_000.0,
        22_000,
        104.5,
        True,
    )
    assert (msg.as_of, msg.station_count, msg.offline_stations) == (T0 + M, 2, 1)
    assert msg.message_id == logic.site_load(state, T0 + M).message_id  # content-derived
    state.update(SiteInput("S1", 22_000, station("B", 99.0, T0)))  # older view: ignored
    assert logic.site_load(state, T0).total_w == 23_000.0
    no_capacity = SiteState()
    no_capacity.update(SiteInput("S2", None, station("C", 5.0)))
    msg = logic.site_load(no_capacity, T0)
    assert (msg.utilisation_pct, msg.over_capacity) == (None, False)


def test_site_logic_publishes_at_most_every_interval_plus_heartbeat() -> None:
    clock = Clock()
    logic_ = SiteLogic(
        None, interval=timedelta(seconds=5), heartbeat=timedelta(seconds=30), clock=clock
    )
    out, _ = logic_.on_item(SiteInput("S1", 10_000, station("A", 1000.0)))
    assert [m.total_w for m in out] == [1000.0]
    clock.now += timedelta(seconds=1)
    out, _ = logic_.on_item(SiteInput("S1", 10_000, station("A", 2000.0, T0 + S)))
    assert list(out) == []
    assert logic_.notify_at() == clock.now + timedelta(seconds=4)
    clock.now += timedelta(seconds=4)
    out, _ = logic_.on_notify()
    assert [m.total_w for m in out] == [2000.0]
    assert logic_.notify_at() == clock.now + timedelta(seconds=30)  # heartbeat
    out, _ = logic_.on_notify()
    assert list(out) == []
    clock.now += timedelta(seconds=30)
    out, _ = logic_.on_notify()
    assert [m.total_w for m in out] == [2000.0]
    clock.now += timedelta(seconds=1)
    logic_.on_item(SiteInput("S1", 10_000, station("A", 3000.0, T0 + 2 * S)))
    out, _ = logic_.on_eof()
    assert [m.total_w for m in out] == [3000.0]
    resumed = SiteLogic(
        logic_.snapshot(),
        interval=timedelta(seconds=5),
        heartbeat=timedelta(seconds=30),
        clock=clock,
    )
    assert resumed.state == logic_.state


# --------------------------------------------------------------------------- wiring


def test_flow_wiring_minutes_sites_and_dead_letters() -> None:
    envs: list[Envelope | bytes] = [
        mv16("A1", 1, T0 + 10 * S, watts="7000", register_wh=1000),
        mv201("B1", 1, T0 + 20 * S, power=11.0, unit="kW", register_kwh=2.0),
        b"garbage",
        mv16("A1", 2, T0 + 30 * S, kw="3.6"),
        mv16("Z9", 1, T0 + 40 * S, watts="500"),  # no site: minutes only
        connection("A1", "nonsense", T0),
    ]
    rows: list[Any] = []
    sites: list[KafkaSinkMessage[Any, Any]] = []
    dead: list[KafkaSinkMessage[Any, Any]] = []
    directory = {"A1": ("S1", 20_000), "B1": ("S1", 20_000)}
    flow = build_flow_with(
        kafka_like_input([message(e, i) for i, e in enumerate(envs)]),
        TestingSink(rows),
        TestingSink(sites),
        TestingSink(dead),
        directory.get,
        publish_interval=timedelta(hours=1),
        clock=Clock(),
    )
    run_main(flow)

    minutes = {(r.charge_point_id, r.connector_id): r for r in rows if isinstance(r, MinuteRow)}
    assert set(minutes) == {("A1", 1), ("A1", 2), ("B1", 1), ("Z9", 1)}
    assert minutes[("B1", 1)].avg_power_w == 11000.0
    published = [decode_site_load(m.value) for m in sites]
    assert {m.key for m in sites} == {b"S1"}
    # The first station load publishes at once, the rest waits for the interval and
    # goes out at end of input.
    assert [p.total_w for p in published] == [7000.0, 21600.0]
    assert published[-1].over_capacity
    assert published[-1].utilisation_pct == 108.0
    assert [r for r in rows if not isinstance(r, MinuteRow)][-1] == published[-1]
    assert sorted(d.headers[1][1] for d in dead) == [b"decode", b"validate"]


# --------------------------------------------------------------------------- batches


def mixed_stream() -> list[Envelope]:
    """Two stations: late samples (inside and outside the open horizon), a redelivery,
    a register reset, transactions, idle statuses, a billing meter taking over and
    falling silent, an offline/online station."""
    n1 = mv16("A", 1, T0 + 40 * S, watts="7400", register_wh=1050)
    return [
        start16("A", 1, 7, 1000, T0),
        mv16("A", 1, T0 + 10 * S, watts="7000", register_wh=1000, tx=7),
        n1,
        mv16("B", 2, T0 + 15 * S, kw="11", register_wh=20),
        mv16("A", 1, T0 + M + 10 * S, watts="7200", register_wh=1110),
        n1,  # redelivered
        mv16("A", 2, T0 + M + 20 * S, phases={"L1": "3600", "L2": "3600"}),
        mv16("A", 1, T0 + 3 * M + 5 * S, watts="7100", register_wh=1300),
        mv16("A", 1, T0 + 2 * M + 30 * S, watts="7000", register_wh=1200),  # late, open
        meter_reading("B", 2, T0 + 2 * M, 10_000.0, 5_000, billing=True),  # takes over
        mv16("B", 2, T0 + 2 * M + 10 * S, kw="11", register_wh=40),  # ignored now
        mv16("A", 1, T0 + 9 * M, watts="6000", register_wh=1400),
        mv16("A", 1, T0 + M + 50 * S, watts="1", register_wh=1111),  # late, closed
        status16("A", 2, "Finishing", T0 + 9 * M + S),
        meter_reading("B", 2, T0 + 3 * M, 10_500.0, 5_200, billing=True),
        mv16("B", 2, T0 + 14 * M, kw="7", register_wh=90),  # meter silent: station again
        mv16("A", 1, T0 + 10 * M, watts="6000", register_wh=10),  # register reset
        stop16("A", 7, 1500, T0 + 10 * M + S),
        connection("B", "offline", T0 + 15 * M),
        mv16("B", 2, T0 + 16 * M, kw="7", register_wh=100),
        connection("B", "online", T0 + 17 * M),
    ]


def fold_in_batches(
    events: Sequence[logic.LoadEvent], size: int
) -> tuple[dict[str, StationState], list[MinuteRow], list[StationLoad]]:
    """What the flow does: per batch of ``size`` events, each station's share at once."""
    states: dict[str, StationState] = {}
    rows: list[MinuteRow] = []
    station_loads: list[StationLoad] = []
    for i in range(0, len(events), size):
        by_cp: dict[str, list[logic.LoadEvent]] = {}
        for e in events[i : i + size]:
            by_cp.setdefault(e.charge_point_id, []).append(e)
        for cp, chunk in by_cp.items():
            states[cp], r, s = logic.apply_batch(states.get(cp), chunk)
            rows.extend(r)
            station_loads.extend(s)
    return states, rows, station_loads


def test_batches_give_the_same_table_loads_and_state_as_one_event_at_a_time() -> None:
    events = [e for env in mixed_stream() if (e := parse_envelope(env)) is not None]
    states: dict[str, StationState] = {}
    one_by_one: list[logic.Output] = []
    for e in events:
        states[e.charge_point_id], out = apply(states.get(e.charge_point_id), e)
        one_by_one.extend(out)
    table = latest_minutes(one_by_one)
    assert {r.source for r in table.values()} == {"ocpp", "meter:billing"}

    def per_station(items: Sequence[StationLoad]) -> dict[str, list[StationLoad]]:
        grouped: dict[str, list[StationLoad]] = {}
        for s in items:
            grouped.setdefault(s.charge_point_id, []).append(s)
        return grouped

    for size in (1, 2, 3, 5, 8, len(events)):
        batch_states, rows, batch_loads = fold_in_batches(events, size)
        assert latest_minutes(rows) == table, size
        # The loads each station went through, in order (sites see every change).
        assert per_station(batch_loads) == per_station(loads(one_by_one)), size
        assert batch_states == states, size
        # Within one batch a minute row goes out at most once per station.
        if size == len(events):
            keys = [(r.charge_point_id, r.connector_id, r.bucket, r.source) for r in rows]
            assert len(keys) == len(set(keys))


def test_a_batch_emits_each_changed_minute_once_with_its_latest_figure() -> None:
    state, _ = run([mv16("CP", 1, T0 + k * M, watts="1000", register_wh=100 * k) for k in range(3)])
    batch = [
        parse_envelope(mv16("CP", 1, T0 + 2 * M + k * S, watts=str(2000 + k), register_wh=200 + k))
        for k in range(1, 6)
    ]
    state, rows, station_loads = logic.apply_batch(state, [e for e in batch if e])
    assert [(r.bucket, r.sample_count, r.max_power_w, r.energy_wh) for r in rows] == [
        (T0 + 2 * M, 6, 2005.0, Decimal(105))
    ]
    assert [s.power_w for s in station_loads] == [2001.0, 2002.0, 2003.0, 2004.0, 2005.0]
    # Nothing new: no rows; a late register in minute 1 moves minute 2's delta too.
    _, rows, _ = logic.apply_batch(state, [e for e in batch if e])
    assert rows == []
    late = parse_envelope(mv16("CP", 1, T0 + M + 50 * S, register_wh=150))
    assert late is not None
    _, rows, _ = logic.apply_batch(state, [late])
    assert [(r.bucket, r.energy_wh) for r in rows] == [
        (T0 + M, Decimal(150)),
        (T0 + 2 * M, Decimal(55)),
    ]


def test_minutes_that_open_and_close_within_one_batch_or_message_are_written() -> None:
    # A station sends what it buffered offline: the minutes that fall behind the open
    # horizon by the end of the batch (or of the message) still get their rows, so the
    # deltas add up to last - first register.
    events = [
        parse_envelope(mv16("CP", 1, T0 + k * M, watts="7000", register_wh=1000 + 100 * k))
        for k in (0, 1, 20)
    ]
    _, rows, _ = logic.apply_batch(None, [e for e in events if e])
    assert [(r.bucket, r.energy_wh) for r in rows] == [
        (T0, Decimal(0)),
        (T0 + M, Decimal(100)),
        (T0 + 20 * M, Decimal(1900)),
    ]
    payload = {
        "connectorId": 1,
        "meterValue": [
            {
                "timestamp": iso(T0 + k * M),
                "sampledValue": [
                    {
                        "value": str(1000 + 100 * k),
                        "unit": "Wh",
                        "measurand": ENERGY_REGISTER,
                    }
                ],
            }
            for k in (0, 1, 20)
        ],
    }
    _, out = run([call16("CP", "MeterValues", payload, T0 + 20 * M)])
    assert sum(r.energy_wh or 0 for r in latest_minutes(out).values()) == Decimal(2000)
    assert len(latest_minutes(out)) == 3


def test_a_source_taking_over_within_a_batch_keeps_the_rows_of_the_one_before() -> None:
    batch = [
        parse_envelope(env)
        for env in (
            mv16("CP", 1, T0 + 10 * S, watts="7000", register_wh=1000),
            mv16("CP", 1, T0 + M + 10 * S, watts="7000", register_wh=1100),
            meter_reading("CP", 1, T0 + M + 20 * S, 7100.0, 50_000, billing=True),
        )
    ]
    _, rows, _ = logic.apply_batch(None, [e for e in batch if e])
    assert [(r.bucket, r.source, r.register_wh) for r in rows] == [
        (T0, "ocpp", Decimal(1000)),
        (T0 + M, "ocpp", Decimal(1100)),
        (T0 + M, "meter:billing", Decimal(50_000)),
    ]  # the last row per minute wins


def test_decode_event_is_parse_envelope_of_decode_envelope() -> None:
    envs: list[Envelope] = [
        mv16("CP", 1, T0, watts="7000", register_wh=5, tx=3),
        mv16("CP", 2, T0, kw="7.4", phases={"L1": "1", "L2-N": "2"}),
        mv201("CP", 1, T0, power=74, unit="W", multiplier=2, register_kwh=2.5),
        start16("CP", 1, 9, 100, T0),
        stop16("CP", 9, 200, T0),
        status16("CP", 1, "Finishing", T0),
        status16("CP", 1, "Charging", T0),
        connection("CP", "offline", T0),
        meter_reading("CP", 1, T0, 1.5, 7),
        Envelope(
            message_id="h",
            charge_point_id="CP",
            received_at=T0,
            measured_at=T0,
            kind=Kind.OCPP_CALL,
            ocpp_version="1.6",
            action="Heartbeat",
            payload={},
            response={"currentTime": "x"},
            normalized=[],
        ),
    ]
    raw = mv16("CP", 1, T0, watts="7000", register_wh=5)
    envs.append(
        Envelope(**{**{f: getattr(raw, f) for f in raw.__struct_fields__}, "normalized": None})
    )  # an older gateway: normalised here
    for env in envs:
        assert logic.decode_event(encode_envelope(env)) == parse_envelope(env), env.action
    with pytest.raises(EnvelopeError):
        logic.decode_event(b"garbage")
    with pytest.raises(EnvelopeError):
        logic.decode_event(None)
    with pytest.raises(EnvelopeError):  # schema from the future
        logic.decode_event(
            encode_envelope(mv16("CP", 1, T0, watts="1")).replace(
                b'"schema_version":1', b'"schema_version":99'
            )
        )
    with pytest.raises(InvalidEvent):
        logic.decode_event(encode_envelope(connection("CP", "nonsense", T0)))


def test_decode_batch_groups_per_station_and_turns_errors_into_dead_letters() -> None:
    items: list[Any] = [
        message(mv16("A", 1, T0, watts="1"), 0),
        message(b"garbage", 1),
        message(mv16("B", 1, T0, watts="2"), 2),
        message(status16("A", 1, "Charging", T0), 3),
        message(mv16("A", 1, T0 + S, watts="3"), 4),
        KafkaError(
            err=ConfluentKafkaError(ConfluentKafkaError._MSG_TIMED_OUT),
            msg=KafkaSourceMessage(key=None, value=b"x", topic="t", partition=0, offset=5),
        ),
    ]
    out = decode_and_group(items, logic.decode_event)
    dead = [o for o in out if isinstance(o, KafkaSinkMessage)]
    assert [d.headers[1][1] for d in dead] == [b"decode", b"consume"]
    grouped = {
        o[0]: [f.power_w for e in o[1] for f in e.facts if isinstance(f, logic.PowerReading)]
        for o in out
        if isinstance(o, tuple)
    }
    assert grouped == {"A": [1.0, 3.0], "B": [2.0]}


def test_stations_logic_resumes_from_its_pickled_snapshot() -> None:
    events = [e for env in mixed_stream() if (e := parse_envelope(env)) is not None]
    a = [e for e in events if e.charge_point_id == "A"]
    whole = StationsLogic(None)
    (expected,), _ = whole.on_batch([a])
    first = StationsLogic(None)
    (head,), _ = first.on_batch([a[:5]])
    snapshot = first.snapshot()
    assert isinstance(snapshot, bytes)
    resumed = StationsLogic(snapshot)
    (tail,), _ = resumed.on_batch([a[5:8], a[8:]])  # two chunks of one Bytewax batch
    assert latest_minutes([*head[0], *tail[0]]) == latest_minutes(expected[0])
    assert [*head[1], *tail[1]] == expected[1]
    assert resumed.state == whole.state


def test_site_batch_logic_publishes_as_site_logic_does_item_by_item() -> None:
    def inputs(k: int) -> list[SiteInput]:
        return [
            SiteInput("S1", 10_000, station(cp, 1000.0 * k + i, T0 + k * S))
            for i, cp in enumerate(("A", "B"))
        ]

    one, batched = Clock(), Clock()
    single = SiteLogic(
        None, interval=timedelta(seconds=5), heartbeat=timedelta(seconds=30), clock=one
    )
    batch = SiteBatchLogic(
        SiteLogic(
            None, interval=timedelta(seconds=5), heartbeat=timedelta(seconds=30), clock=batched
        )
    )
    expected: list[Any] = []
    got: list[Any] = []
    for k in range(1, 8):
        for item in inputs(k):
            expected.extend(single.on_item(item)[0])
        got.extend(batch.on_batch([inputs(k)[:1], inputs(k)[1:]])[0])
        assert batch.notify_at() == single.notify_at()
        one.now += timedelta(seconds=2)
        batched.now += timedelta(seconds=2)
        expected.extend(single.on_notify()[0])
        got.extend(batch.on_notify()[0])
    expected.extend(single.on_eof()[0])
    got.extend(batch.on_eof()[0])
    assert got == expected
    assert len(expected) > 2
    assert batch.snapshot() == single.snapshot()


def test_tune_gc_freezes_the_loaded_heap_and_collects_young_objects_less_often() -> None:
    code = (
        "import gc; from runtime.gc import tune_gc;"
        " from flows.config import FLOW_GC_YOUNG_THRESHOLD; tune_gc(FLOW_GC_YOUNG_THRESHOLD);"
        " assert gc.get_freeze_count() > 1000, gc.get_freeze_count();"
        " assert gc.get_threshold()[0] == 10_000, gc.get_threshold()"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
