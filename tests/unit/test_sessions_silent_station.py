"""A station that goes silent: its waiting sessions close by the wall clock
(``logic.next_deadline``/``logic.expire_silent`` and ``SessionsLogic.notify_at``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from flows.sessions import logic
from flows.sessions.dataflow import SessionsLogic
from flows.sessions.logic import ChargePointState, SessionRow, SessionRules, parse_event
from tests.support.sessions import T0, meter, register, start, stop

M = timedelta(minutes=1)
RULES = SessionRules(idle_timeout=timedelta(hours=1))


def fold(state: ChargePointState | None, *envelopes: object) -> tuple[ChargePointState, list]:
    rows: list = []
    for env in envelopes:
        state, out = logic.apply(state, parse_event(env), RULES)  # type: ignore[arg-type]
        rows += out
    assert state is not None
    return state, rows


def sessions(rows: list) -> list[SessionRow]:
    return [r for r in rows if isinstance(r, SessionRow)]


def test_next_deadline_counts_from_the_last_message_of_the_transaction() -> None:
    state, _ = fold(
        None, start("CP", 1, 1_000, at=T0), meter("CP", 1, register(T0 + 10 * M, 1_500))
    )
    # The meter message moved both the watermark and the transaction's last news.
    assert logic.next_deadline(state, RULES) == timedelta(hours=1)
    assert logic.next_deadline(ChargePointState(), RULES) is None


def test_silence_shorter_than_the_idle_timeout_closes_nothing() -> None:
    state, _ = fold(
        None, start("CP", 1, 1_000, at=T0), meter("CP", 1, register(T0 + 10 * M, 1_500))
    )
    state, rows = logic.expire_silent(state, timedelta(minutes=59), RULES)
    assert rows == []
    assert state.txs["1"].open


def test_silence_past_the_idle_timeout_closes_like_the_next_message_would() -> None:
    events = (start("CP", 1, 1_000, at=T0), meter("CP", 1, register(T0 + 10 * M, 1_500)))
    silent, _ = fold(None, *events)
    silent, rows = logic.expire_silent(silent, timedelta(hours=1, seconds=1), RULES)
    [row] = sessions(rows)
    assert (row.status, row.closed_by, row.stopped_at) == ("closed", "timeout", T0 + 10 * M)
    assert row.energy_wh == 500
    assert "stop_missing" in row.quality_reasons
    assert row.charge_point_id == "CP"
    # The same as a heartbeat an hour later would have produced through event time.
    beat = meter("CP", None, register(T0 + 71 * M, 9_999), connector=0)
    _, by_event_time = fold(None, *events, beat)
    assert sessions(by_event_time)[-1] == row
    # Nothing left waiting, and the stored watermark is still the last one seen.
    assert logic.next_deadline(silent, RULES) is None
    assert silent.watermark == T0 + 10 * M


def test_a_stop_after_the_silent_close_amends_the_session() -> None:
    state, _ = fold(
        None, start("CP", 1, 1_000, at=T0), meter("CP", 1, register(T0 + 10 * M, 1_500))
    )
    state, _ = logic.expire_silent(state, timedelta(hours=2), RULES)
    state, rows = fold(state, stop("CP", 1, 1_800, at=T0 + 20 * M))
    [row] = sessions(rows)
    assert (row.closed_by, row.energy_wh, row.stopped_at) == ("stop", 800, T0 + 20 * M)
    assert "stop_late" in row.quality_reasons


def fake_clock(start_at: datetime) -> tuple[list[datetime], object]:
    now = [start_at]
    return now, lambda: now[0]


def test_sessions_logic_schedules_and_fires_the_wall_clock_close() -> None:
    wall = datetime(2030, 1, 1, 12, 0, tzinfo=T0.tzinfo)
    now, clock = fake_clock(wall)
    step = SessionsLogic(RULES, None, clock=clock)  # type: ignore[arg-type]
    assert step.notify_at() is None  # nothing known yet

    events = [
        parse_event(start("CP", 1, 1_000, at=T0)),
        parse_event(meter("CP", 1, register(T0 + 10 * M, 1_500))),
    ]
    assert None not in events
    out, _ = step.on_batch([events])  # type: ignore[list-item]
    assert out
    assert all(r.status == "active" for r in sessions(out[0]))
    due = step.notify_at()
    assert due is not None
    assert wall + timedelta(hours=1) < due <= wall + timedelta(hours=1, seconds=1)

    now[0] = due
    [rows], _ = step.on_notify()
    [row] = sessions(rows)
    assert (row.status, row.closed_by) == ("closed", "timeout")
    assert step.notify_at() is None  # settled: no busy re-notification


def test_sessions_logic_counts_silence_from_a_restart_not_from_the_snapshot() -> None:
    wall = datetime(2030, 1, 1, 12, 0, tzinfo=T0.tzinfo)
    now, clock = fake_clock(wall)
    step = SessionsLogic(RULES, None, clock=clock)  # type: ignore[arg-type]
    step.on_batch([[parse_event(start("CP", 1, 1_000, at=T0))]])  # type: ignore[list-item]
    snapshot = step.snapshot()

    now[0] = wall + timedelta(hours=5)  # the flow was down for five hours
    resumed = SessionsLogic(RULES, snapshot, clock=clock)  # type: ignore[arg-type]
    due = resumed.notify_at()
    assert due is not None
    assert due > now[0] + timedelta(minutes=59)
    out, _ = resumed.on_notify()  # even if asked right away: no silence counted yet
    assert out == []


def test_a_closed_session_stops_waiting_for_its_smart_meter_when_the_station_is_silent() -> None:
    reading = logic.SmartMeterReading(
        message_id="r1",
        charge_point_id="CP",
        meter_id="M1",
        connector_id=1,
        measured_at=T0 - M,
        energy_wh=Decimal(50_000),
        is_billing_meter=True,
    )
    state, _ = logic.apply(None, reading, RULES)
    state, rows = fold(state, start("CP", 1, 1_000, at=T0), stop("CP", 1, 1_800, at=T0 + 20 * M))
    assert all(r.status == "active" for r in sessions(rows))  # waits for the meter
    assert logic.next_deadline(state, RULES) == RULES.meter_grace
    state, rows = logic.expire_silent(state, RULES.meter_grace + timedelta(seconds=1), RULES)
    [row] = sessions(rows)
    assert (row.status, row.closed_by, row.energy_wh) == ("closed", "stop", 800)
    assert "smart_meter_incomplete" in row.quality_reasons
