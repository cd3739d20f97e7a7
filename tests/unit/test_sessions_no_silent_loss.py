"""flows.sessions.logic: nothing a station sent is dropped silently.

Distinct TransactionEvents that share a seqNo all count (and flag the session), a
closed session without any energy figure says ``missing``, ``sample_count``
counts what is stored, and a connector never holds two active sessions.
"""

from __future__ import annotations

import pickle
from datetime import timedelta
from typing import Any

from bus.sessions import (
    ClosedBy,
    Quality,
    decode_session_closed,
    encode_session_closed,
    session_closed_from_row,
)
from flows.sessions.logic import SessionRow, apply_batch, parse_event
from tests.support.sessions import T0, final, meter, register, rows, run, start, sv, tx_event

M = timedelta(minutes=1)


def same_seq_no_session(cp: str = "CP2", tx: str = "tx-1") -> list[Any]:
    """Started, Updated, Ended all with seqNo 0 (as some station simulators send them)."""
    return [
        tx_event(cp, "Started", tx, 0, T0, sv(1_000, context="Transaction.Begin")),
        tx_event(cp, "Updated", tx, 0, T0 + 10 * M, sv(3_000)),
        tx_event(
            cp,
            "Ended",
            tx,
            0,
            T0 + 30 * M,
            sv(8_000, context="Transaction.End"),
            reason="EVDisconnected",
        ),
    ]


def test_distinct_events_sharing_a_seq_no_all_count_and_flag_the_session() -> None:
    _, out = run(same_seq_no_session())
    row = final(out)
    assert (row.status, row.closed_by, row.stop_reason) == ("closed", "stop", "EVDisconnected")
    assert (row.energy_wh, row.meter_start_wh, row.meter_stop_wh) == (7_000, 1_000, 8_000)
    assert row.sample_count == 3
    assert "seq_no_reused" in row.quality_reasons
    assert row.quality == "corrected"


def test_a_resent_transaction_event_is_still_one_event() -> None:
    events = same_seq_no_session()
    resent = tx_event("CP2", "Updated", "tx-1", 0, T0 + 10 * M, sv(3_000))  # new message id
    _, out = run([*events[:2], resent, events[2]])
    assert final(out) == final(run(events)[1])


def test_consistent_seq_nos_stay_exact_when_an_event_is_resent() -> None:
    events = [
        tx_event("CP2", "Started", "t", 0, T0, sv(1_000, context="Transaction.Begin")),
        tx_event("CP2", "Updated", "t", 1, T0 + 10 * M, sv(3_000)),
        tx_event("CP2", "Updated", "t", 1, T0 + 10 * M, sv(3_000)),  # resent
        tx_event("CP2", "Ended", "t", 2, T0 + 30 * M, sv(8_000, context="Transaction.End")),
    ]
    row = final(run(events)[1])
    assert (row.energy_wh, row.quality, row.quality_reasons) == (7_000, "exact", ())
    assert row.sample_count == 3


def test_seq_no_reuse_is_flagged_whatever_the_arrival_order() -> None:
    events = same_seq_no_session()
    forward = final(run(events)[1])
    backward = final(run([events[0], events[2], events[1]])[1])
    assert "seq_no_reused" in backward.quality_reasons
    assert (backward.energy_wh, backward.quality) == (forward.energy_wh, forward.quality)


def test_a_closed_session_without_any_energy_figure_is_missing_not_corrected() -> None:
    events = [
        tx_event("CP2", "Started", "t", 0, T0),
        tx_event("CP2", "Ended", "t", 1, T0 + 30 * M),
    ]
    _, out = run(events)
    active = rows(out)[0]
    assert active.status == "active"
    row = final(out)
    assert (row.energy_wh, row.energy_source, row.quality) == (None, None, "missing")
    assert "register_missing" in row.quality_reasons


def test_an_orphan_stop_has_no_figure_of_its_own() -> None:
    [row] = rows(
        run([tx_event("CP2", "Ended", "t", 3, T0, sv(8_000, context="Transaction.End"))])[1]
    )
    assert (row.status, row.energy_wh, row.energy_source) == ("closed", None, None)
    assert row.quality == "missing"
    assert "start_unknown" in row.quality_reasons


def test_sample_count_counts_each_stored_sample_once() -> None:
    sample = register(T0 + 5 * M, 1_500)
    events = [
        start("CP1", 7, 1_000),
        meter("CP1", 7, sample),
        meter("CP1", 7, sample),  # resent by the station: a new message id, not stored
        meter("CP1", 7, register(T0 + 10 * M, 2_000)),
    ]
    _, out = run(events)
    assert rows(out)[-1].sample_count == 2


def test_an_updated_first_session_closes_the_one_still_open_on_its_evse() -> None:
    events = [
        tx_event("CP2", "Started", "a", 0, T0, sv(1_000, context="Transaction.Begin")),
        tx_event("CP2", "Updated", "a", 1, T0 + 10 * M, sv(2_000)),
        # a's Ended never came; b's Started was lost, its first event is an Updated.
        tx_event("CP2", "Updated", "b", 1, T0 + 40 * M, sv(5_000)),
    ]
    state, out = run(events)
    a = final(out, "a")
    assert (a.closed_by, a.stopped_at, a.energy_wh) == ("next_start", T0 + 10 * M, 1_000)
    assert [t.transaction_id for t in state.txs.values() if not t.final] == ["b"]


def test_a_late_start_of_an_older_session_never_leaves_two_active() -> None:
    # Offline buffering delivered b (newer) first; a's start on the same EVSE comes later.
    events = [
        tx_event("CP2", "Started", "b", 0, T0 + 60 * M, sv(9_000, context="Transaction.Begin")),
        tx_event("CP2", "Started", "a", 0, T0, sv(1_000, context="Transaction.Begin")),
        tx_event("CP2", "Updated", "a", 1, T0 + 10 * M, sv(2_000)),
    ]
    state, out = run(events)
    assert [t.transaction_id for t in state.txs.values() if not t.final] == ["b"]
    assert final(out, "a").closed_by == "next_start"
    latest: dict[str, SessionRow] = {r.transaction_id: r for r in rows(out)}
    assert [r.transaction_id for r in latest.values() if r.status == "active"] == ["b"]


def test_batch_and_single_folds_agree_on_a_reused_seq_no_session() -> None:
    envs = same_seq_no_session()
    _, single = run(envs)
    _, batch = apply_batch(None, [parse_event(e) for e in envs])
    assert final(batch) == final(single)


def test_sessions_closed_carries_missing_energy_and_reconciled_close() -> None:
    payload = {
        "message_id": "ab",
        "session_id": "ab",
        "charge_point_id": "CP1",
        "connector_id": 1,
        "transaction_id": "7",
        "started_at": "2026-01-01T00:00:00+00:00",
        "stopped_at": "2026-01-01T01:00:00+00:00",
        "closed_at": "2026-01-01T01:00:05+00:00",
        "energy_wh": None,
        "energy_source": None,
        "quality": "missing",
        "quality_reasons": ["state_lost", "stop_missing", "register_missing"],
        "closed_by": "reconciled",
    }
    message = decode_session_closed(encode_session_closed(session_closed_from_row(payload)))
    assert (message.energy_wh, message.quality, message.closed_by) == (
        None,
        Quality.MISSING,
        ClosedBy.RECONCILED,
    )
    assert message.quality != Quality.CORRECTED
    assert b'"quality":"missing"' in encode_session_closed(message)  # plain strings on the wire


def test_state_pickled_without_the_new_fields_resumes() -> None:
    state, _ = run(same_seq_no_session()[:2])
    [tx] = state.txs.values()
    slots: dict[str, Any] = {name: getattr(tx, name) for name in type(tx).__slots__}
    del slots["fingerprints"], slots["sample_keys"]  # as a recovery store of before
    old = object.__new__(type(tx))
    old.__setstate__((None, slots))
    state.txs[tx.transaction_id] = old
    _, out = run(same_seq_no_session()[2:], state=state)
    row = final(out)
    assert (row.energy_wh, row.closed_by) == (7_000, "stop")
    assert row.sample_count == 3  # the two counted before, plus the stop's
    assert pickle.loads(pickle.dumps(state)).txs["tx-1"].sample_keys == old.sample_keys
