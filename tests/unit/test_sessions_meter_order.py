"""flows.sessions: smart-meter brackets do not depend on how the two topics interleave.

``ocpp.events`` and ``meter.readings`` are not ordered relative to each other (and
replays reorder freely); an idle meter's run of equal readings is compressed to its
first and latest reading, so a run spanning the start (or stop) pins the register
there (registers never decrease) wherever the run began.
"""

from __future__ import annotations

import random
from datetime import datetime

from bus.envelope import Envelope, Kind
from flows.sessions.logic import SessionRow, apply_batch, parse_event, update
from tests.support.sessions import T0, M, meter, reading, register, start, stop


def final_rows(events: list[Envelope]) -> dict[str, SessionRow]:
    state = None
    last: dict[str, SessionRow] = {}
    for env in events:
        state, out = update(state, env)
        for o in out:
            if isinstance(o, SessionRow):
                last[o.transaction_id] = o
    return last


def idle_run(first: datetime, last: datetime, wh: int, every: int = 5) -> list[Envelope]:
    """Readings of an idle meter, every ``every`` minutes from ``first`` to ``last``."""
    out: list[Envelope] = []
    t = first
    while t <= last:
        out.append(reading("CP1", t, wh))
        t += every * M
    return out


def test_reading_just_after_the_start_arriving_first_keeps_the_start_figure() -> None:
    before = idle_run(T0 - 60 * M, T0 - 5 * M, 70_000)  # began long before the start
    after_start = reading("CP1", T0 + M, 70_000)
    tail = [stop("CP1", 1, 8_000, at=T0 + 60 * M), reading("CP1", T0 + 61 * M, 77_000)]
    in_order = final_rows([*before, start("CP1", 1, 1_000), after_start, *tail])["1"]
    reordered = final_rows([*before, after_start, start("CP1", 1, 1_000), *tail])["1"]
    assert in_order.smart_meter_energy_wh == 7_000
    assert reordered == in_order
    assert (reordered.energy_source, reordered.quality) == ("smart_meter", "exact")


def test_a_run_spanning_the_start_pins_the_register_even_if_it_began_long_before() -> None:
    events = [
        reading("CP1", T0 - 60 * M, 70_000),
        reading("CP1", T0 + M, 70_000),
        start("CP1", 1, 1_000),
        stop("CP1", 1, 8_000, at=T0 + 60 * M),
        reading("CP1", T0 + 61 * M, 77_000),
    ]
    row = final_rows(events)["1"]
    assert (row.energy_wh, row.energy_source, row.quality) == (7_000, "smart_meter", "exact")


def test_a_run_spanning_the_stop_pins_the_register_even_if_it_ended_long_after() -> None:
    # The car was full 30 minutes before the stop: the meter idles across the stop.
    events = [
        reading("CP1", T0 - M, 70_000),
        start("CP1", 1, 1_000),
        *idle_run(T0 + 30 * M, T0 + 90 * M, 77_000),
        stop("CP1", 1, 8_000, at=T0 + 60 * M),
    ]
    row = final_rows(events)["1"]
    assert (row.energy_wh, row.energy_source, row.quality) == (7_000, "smart_meter", "exact")


def test_a_lone_far_reading_does_not_pin() -> None:
    # No reading within the window before the start and nothing equal after it.
    events = [
        reading("CP1", T0 - 60 * M, 70_000),
        reading("CP1", T0 + M, 70_100),
        start("CP1", 1, 1_000),
        stop("CP1", 1, 8_000, at=T0 + 60 * M),
        reading("CP1", T0 + 61 * M, 77_000),
        reading("CP1", T0 + 70 * M, 77_000),
    ]
    row = final_rows(events)["1"]
    assert row.energy_source == "station_register"
    assert row.quality_reasons == ("smart_meter_incomplete",)


def stream() -> tuple[list[Envelope], list[Envelope]]:
    """Two sessions on one connector with an idle, then charging, then idle meter."""
    station = [
        start("CP1", 1, 1_000, at=T0),
        meter("CP1", 1, register(T0 + 20 * M, 3_000)),
        stop("CP1", 1, 5_000, at=T0 + 40 * M),
        start("CP1", 2, 5_000, at=T0 + 100 * M),
        meter("CP1", 2, register(T0 + 110 * M, 6_000)),
        stop("CP1", 2, 7_000, at=T0 + 120 * M),
    ]
    readings = [
        *idle_run(T0 - 60 * M, T0, 70_000, every=6),
        reading("CP1", T0 + 2 * M, 70_000),
        reading("CP1", T0 + 20 * M, 72_000),
        *idle_run(T0 + 35 * M, T0 + 101 * M, 74_000, every=6),
        reading("CP1", T0 + 110 * M, 75_000),
        *idle_run(T0 + 118 * M, T0 + 180 * M, 76_000, every=6),
    ]
    return station, readings


def interleave(a: list[Envelope], b: list[Envelope], rng: random.Random) -> list[Envelope]:
    """A random merge keeping each topic's own order."""
    slots = [0] * len(a) + [1] * len(b)
    rng.shuffle(slots)
    ia, ib = iter(a), iter(b)
    return [next(ia) if s == 0 else next(ib) for s in slots]


def test_final_rows_do_not_depend_on_the_interleaving_of_the_two_topics() -> None:
    station, readings = stream()
    by_time = sorted([*station, *readings], key=lambda e: (e.measured_at, e.kind != Kind.OCPP_CALL))
    expected = final_rows(by_time)
    assert set(expected) == {"1", "2"}
    assert {
        k: (r.status, r.energy_source, r.energy_wh, r.quality) for k, r in expected.items()
    } == {
        "1": ("closed", "smart_meter", 4_000, "exact"),
        "2": ("closed", "smart_meter", 2_000, "exact"),
    }
    rng = random.Random(20261121)
    for _ in range(300):
        order = interleave(station, readings, rng)
        assert final_rows(order) == expected, [
            (e.kind, e.measured_at, parse_event(e)) for e in order
        ]


def test_apply_batch_over_random_batches_gives_the_same_final_rows() -> None:
    station, readings = stream()
    expected = final_rows([*station, *readings])
    rng = random.Random(7)
    for _ in range(100):
        events = [parse_event(e) for e in interleave(station, readings, rng)]
        state = None
        last: dict[str, SessionRow] = {}
        i = 0
        while i < len(events):
            n = rng.randint(1, 8)
            state, out = apply_batch(state, events[i : i + n])
            i += n
            last.update((o.transaction_id, o) for o in out if isinstance(o, SessionRow))
        assert last == expected
