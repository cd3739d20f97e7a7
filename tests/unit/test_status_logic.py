"""flows.status.logic (pure) and its wiring with Bytewax's testing source."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from bytewax.connectors.kafka import KafkaSinkMessage
from bytewax.testing import TestingSink, run_main

from bus.envelope import Envelope
from bus.normalized import EvseStates
from flows.status.dataflow import build_flow_with
from flows.status.logic import (
    AvailabilityRow,
    HistoryRow,
    Output,
    StationStatus,
    apply,
    parse_envelope,
)
from tests.unit.load_events import T0, connection, status16, status201, tx201
from tests.unit.test_load_logic import kafka_like_input, message

M = timedelta(minutes=1)


def run(envs: Sequence[Envelope], state: StationStatus | None = None
        ) -> tuple[StationStatus, list[Output]]:
    out: list[Output] = []
    for env in envs:
        event = parse_envelope(env)
        if event is not None:
            state, rows = apply(state, event)
            out.extend(rows)
    assert state is not None
    return state, out


def current(out: Sequence[Output]) -> dict[int, str]:
    return {o.connector_id: o.status for o in out if isinstance(o, AvailabilityRow)}


def test_history_and_current_status_with_late_status() -> None:
    state, out = run([
        status16("CP", 1, "Available", T0),
        status16("CP", 1, "Preparing", T0 + M),
        status16("CP", 1, "Charging", T0 + 2 * M),
        status16("CP", 2, "Faulted", T0, error="GroundFailure"),
        status16("CP", 1, "Available", T0 - M),  # late: history only
    ])
    history = [(o.connector_id, o.status) for o in out if isinstance(o, HistoryRow)]
    assert history == [(1, "Available"), (1, "Preparing"), (1, "Charging"), (2, "Faulted"),
                       (1, "Available")]
    rows = [o for o in out if isinstance(o, AvailabilityRow)]
    assert [r.status for r in rows] == ["Available", "Preparing", "Charging", "Faulted"]
    assert rows[-1].error_code == "GroundFailure"
    assert state.connectors[1].status == "Charging"
    _, again = run([status16("CP", 1, "Charging", T0 + 2 * M)], state)
    assert current(again) == {}  # same status again: history row only (idempotent key)


def test_offline_overrides_until_online() -> None:
    state, _ = run([status16("CP", 1, "Charging", T0), status16("CP", 2, "Available", T0)])
    state, out = run([connection("CP", "offline", T0 + M)], state)
    assert current(out) == {1: "Offline", 2: "Offline"}
    assert all(not o.online for o in out if isinstance(o, AvailabilityRow))
    state, out = run([status16("CP", 2, "Preparing", T0 + 2 * M)], state)
    assert current(out) == {2: "Offline"}  # still offline, new status remembered
    state, out = run([connection("CP", "offline", T0 + 3 * M)], state)
    assert current(out) == {}
    state, out = run([connection("CP", "online", T0 + 4 * M)], state)
    assert current(out) == {1: "Charging", 2: "Preparing"}
    assert pickle.loads(pickle.dumps(state)) == state


def test_v201_evse_is_the_connector_and_occupied_is_refined() -> None:
    states = EvseStates()
    _, out = run([
        status201("CP2", 1, "Available", T0, states=states),
        status201("CP2", 2, "Available", T0, states=states),
        tx201("CP2", 2, "tx-1", "Started", T0 + M, charging_state="Charging", states=states),
        status201("CP2", 2, "Occupied", T0 + M, states=states),
    ])
    rows = [o for o in out if isinstance(o, AvailabilityRow)]
    assert [(r.connector_id, r.status, r.ocpp_status) for r in rows] == [
        (1, "Available", "Available"), (2, "Available", "Available"),
        (2, "Charging", "Occupied")]
    assert rows[-1].ocpp_connector_id == 1


def test_wiring_writes_rows_and_dead_letters() -> None:
    envs: list[Envelope | bytes] = [
        status16("CP", 1, "Available", T0), b"junk", connection("CP", "offline", T0 + M),
        connection("CP", "sideways", T0 + M),
    ]
    rows: list[Any] = []
    dead: list[KafkaSinkMessage[Any, Any]] = []
    run_main(build_flow_with(kafka_like_input([message(e, i) for i, e in enumerate(envs)]),
                             TestingSink(rows), TestingSink(dead)))
    assert [type(r).__name__ for r in rows] == ["HistoryRow", "AvailabilityRow",
                                                "AvailabilityRow"]
    assert rows[-1].status == "Offline"
    assert len(dead) == 2
