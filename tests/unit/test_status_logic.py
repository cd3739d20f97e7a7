"""flows.status.logic (pure) and its wiring with Bytewax's testing source."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from bytewax.connectors.kafka import KafkaSinkMessage
from bytewax.testing import TestingSink, run_main

from bus.envelope import Envelope, Kind
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
from tests.support.flows import kafka_like_input, message
from tests.support.load_events import T0, connection, status16, status201, tx201

M = timedelta(minutes=1)


def run(
    envs: Sequence[Envelope], state: StationStatus | None = None
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


def history(out: Sequence[Output]) -> list[tuple[int, datetime, str, str | None]]:
    return [(o.connector_id, o.at, o.status, o.reason) for o in out if isinstance(o, HistoryRow)]


def charging_station() -> StationStatus:
    """CP: connector 0 (the station) Available, 1 Charging, 2 Faulted (with an error)."""
    state, _ = run(
        [
            status16("CP", 0, "Available", T0),
            status16("CP", 1, "Charging", T0),
            status16("CP", 2, "Faulted", T0, error="GroundFailure"),
        ]
    )
    return state


def test_history_and_current_status_with_late_status() -> None:
    state, out = run(
        [
            status16("CP", 1, "Available", T0),
            status16("CP", 1, "Preparing", T0 + M),
            status16("CP", 1, "Charging", T0 + 2 * M),
            status16("CP", 2, "Faulted", T0, error="GroundFailure"),
            status16("CP", 1, "Available", T0 - M),  # late: history only
        ]
    )
    history = [(o.connector_id, o.status) for o in out if isinstance(o, HistoryRow)]
    assert history == [
        (1, "Available"),
        (1, "Preparing"),
        (1, "Charging"),
        (2, "Faulted"),
        (1, "Available"),
    ]
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


def test_offline_writes_an_offline_row_per_known_connector() -> None:
    state, out = run(
        [connection("CP", "offline", T0 + M, reason="closed by station")], charging_station()
    )
    rows = [o for o in out if isinstance(o, HistoryRow)]
    assert rows == [
        HistoryRow("CP", cid, T0 + M, "Offline", "Offline", None, None, "closed by station")
        for cid in (0, 1, 2)
    ]
    assert current(out) == {0: "Offline", 1: "Offline", 2: "Offline"}
    assert not state.online
    assert pickle.loads(pickle.dumps(state)) == state


def test_online_restores_each_connectors_last_status_at_the_online_time() -> None:
    state, _ = run([connection("CP", "offline", T0 + M)], charging_station())
    state, out = run([connection("CP", "online", T0 + 5 * M, reason="connected")], state)
    rows = [o for o in out if isinstance(o, HistoryRow)]
    assert rows == [
        HistoryRow("CP", 0, T0 + 5 * M, "Available", "Available", 0, "NoError", "connected"),
        HistoryRow("CP", 1, T0 + 5 * M, "Charging", "Charging", 1, "NoError", "connected"),
        HistoryRow("CP", 2, T0 + 5 * M, "Faulted", "Faulted", 2, "GroundFailure", "connected"),
    ]
    assert current(out) == {0: "Available", 1: "Charging", 2: "Faulted"}
    assert state.online


def test_repeated_connection_events_write_nothing_new() -> None:
    state = charging_station()
    state, out = run([connection("CP", "online", T0 + M)], state)  # reconnect within grace
    assert out == []
    offline = connection("CP", "offline", T0 + 2 * M)
    state, first = run([offline], state)
    assert len(history(first)) == 3
    state, again = run([offline, connection("CP", "offline", T0 + 3 * M)], state)
    assert again == []  # the same event redelivered, or another offline while offline
    online = connection("CP", "online", T0 + 4 * M)
    state, first = run([online], state)
    assert len(history(first)) == 3
    _, again = run([online, connection("CP", "online", T0 + 5 * M)], state)
    assert again == []


def test_replay_from_scratch_emits_the_same_rows() -> None:
    envs = [
        status16("CP", 1, "Charging", T0),
        status16("CP", 2, "Available", T0),
        connection("CP", "offline", T0 + M),
        connection("CP", "offline", T0 + M),
        status16("CP", 2, "Preparing", T0 + 2 * M),
        connection("CP", "online", T0 + 3 * M),
        connection("CP", "online", T0 + 3 * M),
    ]
    _, first = run(envs)
    _, second = run(envs)
    assert first == second
    history_keys = [(o.connector_id, o.at, o.status) for o in first if isinstance(o, HistoryRow)]
    assert len(history_keys) == len(set(history_keys))  # no duplicate natural keys


def test_status_while_offline_goes_to_history_and_is_what_online_restores() -> None:
    state, _ = run([connection("CP", "offline", T0 + M)], charging_station())
    state, out = run([status16("CP", 1, "Finishing", T0 + 2 * M)], state)
    assert history(out) == [(1, T0 + 2 * M, "Finishing", None)]
    assert current(out) == {1: "Offline"}  # availability stays Offline, as before
    state, out = run([connection("CP", "online", T0 + 3 * M, reason="connected")], state)
    assert history(out) == [
        (0, T0 + 3 * M, "Available", "connected"),
        (1, T0 + 3 * M, "Finishing", "connected"),
        (2, T0 + 3 * M, "Faulted", "connected"),
    ]
    assert current(out) == {0: "Available", 1: "Finishing", 2: "Faulted"}


def test_no_restore_row_when_a_newer_status_already_arrived() -> None:
    state, _ = run([connection("CP", "offline", T0 + M)], charging_station())
    # Arrival order differs from time order (e.g. the online event of the new
    # connection published after the station's first status on it).
    state, out = run(
        [
            status16("CP", 1, "Available", T0 + 3 * M),
            status16("CP", 2, "Available", T0 + 4 * M),
            connection("CP", "online", T0 + 3 * M, reason="connected"),
        ],
        state,
    )
    assert history(out) == [
        (1, T0 + 3 * M, "Available", None),
        (2, T0 + 4 * M, "Available", None),
        (0, T0 + 3 * M, "Available", "connected"),
    ]
    assert current(out) == {0: "Available", 1: "Available", 2: "Available"}


def test_station_without_known_connectors_and_reason_fallback() -> None:
    state, out = run([connection("NEW", "offline", T0)])
    assert out == []
    assert not state.online
    state, out = run([status16("NEW", 1, "Available", T0 + M)], state)
    assert history(out) == [(1, T0 + M, "Available", None)]
    assert current(out) == {1: "Offline"}
    no_reason = Envelope(
        message_id="m",
        charge_point_id="NEW",
        received_at=T0 + 2 * M,
        measured_at=T0 + 2 * M,
        kind=Kind.STATION_CONNECTION,
        payload={"state": "online"},
    )
    _, out = run([no_reason], state)
    assert history(out) == [(1, T0 + 2 * M, "Available", "online")]


def test_v201_evse_is_the_connector_and_occupied_is_refined() -> None:
    states = EvseStates()
    _, out = run(
        [
            status201("CP2", 1, "Available", T0, states=states),
            status201("CP2", 2, "Available", T0, states=states),
            tx201("CP2", 2, "tx-1", "Started", T0 + M, charging_state="Charging", states=states),
            status201("CP2", 2, "Occupied", T0 + M, states=states),
        ]
    )
    rows = [o for o in out if isinstance(o, AvailabilityRow)]
    assert [(r.connector_id, r.status, r.ocpp_status) for r in rows] == [
        (1, "Available", "Available"),
        (2, "Available", "Available"),
        (2, "Charging", "Occupied"),
    ]
    assert rows[-1].ocpp_connector_id == 1


def test_wiring_writes_rows_and_dead_letters() -> None:
    envs: list[Envelope | bytes] = [
        status16("CP", 1, "Available", T0),
        b"junk",
        connection("CP", "offline", T0 + M),
        connection("CP", "sideways", T0 + M),
    ]
    rows: list[Any] = []
    dead: list[KafkaSinkMessage[Any, Any]] = []
    run_main(
        build_flow_with(
            kafka_like_input([message(e, i) for i, e in enumerate(envs)]),
            TestingSink(rows),
            TestingSink(dead),
        )
    )
    assert [type(r).__name__ for r in rows] == [
        "HistoryRow",
        "AvailabilityRow",
        "HistoryRow",
        "AvailabilityRow",
    ]
    assert rows[-2].status == rows[-1].status == "Offline"
    assert len(dead) == 2


def test_a_stale_offline_from_the_previous_replica_is_ignored() -> None:
    """Rolling restart / sweep of a dead replica: the station reconnected at gw-2
    before gw-1's offline arrived. It stays online; gw-2's own offline counts."""
    state, out = run(
        [
            connection("CP", "online", T0, "connected", gateway_id="gw-1"),
            connection("CP", "online", T0 + M, "connected", gateway_id="gw-2"),
            connection("CP", "offline", T0 + 2 * M, "gateway gw-1 lost", gateway_id="gw-1"),
        ],
        charging_station(),
    )
    assert state.online
    assert state.gateway_id == "gw-2"
    assert out == []  # online while online, then the stale offline: nothing changes

    state, out = run(
        [connection("CP", "offline", T0 + 3 * M, "connection lost", gateway_id="gw-2")], state
    )
    assert not state.online
    offline = [r for r in out if isinstance(r, HistoryRow)]
    assert {(r.connector_id, r.status, r.reason) for r in offline} == {
        (0, "Offline", "connection lost"),
        (1, "Offline", "connection lost"),
        (2, "Offline", "connection lost"),
    }


def test_an_offline_without_a_known_replica_still_counts() -> None:
    """Events of producers that name no replica (older gateways) keep the old rule."""
    env = connection("CP", "offline", T0 + M)
    legacy = Envelope(
        message_id=env.message_id,
        charge_point_id="CP",
        received_at=env.received_at,
        measured_at=env.measured_at,
        kind=Kind.STATION_CONNECTION,
        payload={"state": "offline", "reason": "lost"},
    )
    state, _ = run([connection("CP", "online", T0, gateway_id="gw-1"), legacy], charging_station())
    assert not state.online
