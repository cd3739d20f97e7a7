"""Per-charge-point session accounting over the normalised form: pure, no I/O.

The flow keys two topics by charge point id -- OCPP events (``ocpp.events``) and
smart-meter readings (``meter.readings``) -- and folds them through :func:`apply`
(``(state | None, event) -> (state, outputs)``) or, a batch of one charge point at
a time, :func:`apply_batch`; :func:`parse_event` (:func:`decode_event` from bytes)
turns an envelope into an event. Outputs are :class:`SessionRow` snapshots (upserted
by session id, last wins), :class:`MeterSampleRow` rows (one per sampled value) and
:class:`SignedValueRow` rows (one per signed meter value of a transaction).
A silent station's waits end by :func:`next_deadline` and :func:`expire_silent`.

This module is the package's face: the flow, the bench and the tests import from
here. Each part has its own module, and its docstring has the rules:

* :mod:`~flows.sessions.events` -- envelopes to events (with
  :mod:`~flows.sessions.validation` for raw 1.6 payloads);
* :mod:`~flows.sessions.station` -- an OCPP message folded in (transaction facts,
  duplicates, samples: :mod:`~flows.sessions.samples`);
* :mod:`~flows.sessions.readings` and :mod:`~flows.sessions.brackets` -- smart-meter
  readings and which of them bound a transaction;
* :mod:`~flows.sessions.snapshot` -- the energy figure, its source and its quality
  (the station register itself: :mod:`~flows.sessions.registers`);
* :mod:`~flows.sessions.lifecycle` -- how transactions close and are forgotten;
* :mod:`~flows.sessions.state`, :mod:`~flows.sessions.rules`,
  :mod:`~flows.sessions.rows` -- what is remembered, the limits, what is written.

Each snapshot is a function of everything seen for the transaction, not of arrival
order, so replays converge to the same rows.

>>> from datetime import UTC, datetime, timedelta
>>> from bus.normalized import TransactionStart
>>> at = datetime(2026, 1, 1, tzinfo=UTC)
>>> state, rows = apply(None, StationMessage("m1", "CP", "1.6", at, (TransactionStart(
...     charge_point_id="CP", transaction_id="7", evse_id=1, connector_id=1, timestamp=at),)))
>>> [(r.transaction_id, r.status, r.quality) for r in rows]
[('7', 'active', <Quality.CORRECTED: 'corrected'>)]
>>> next_deadline(state, SessionRules(idle_timeout=timedelta(hours=1)))
datetime.timedelta(seconds=3600)
"""

from __future__ import annotations

from collections.abc import Iterable

from bus.envelope import Envelope
from flows.sessions.events import (
    Event,
    SmartMeterReading,
    StationMessage,
    decode_event,
    parse_event,
)
from flows.sessions.lifecycle import expire_silent, next_deadline
from flows.sessions.readings import apply_reading
from flows.sessions.rows import (
    MeterSampleRow,
    Output,
    SessionRow,
    SignedValueRow,
    session_id_for,
)
from flows.sessions.rules import DEFAULT_RULES, SessionRules
from flows.sessions.snapshot import session_row

# Bracket and Tx are named here too: recovery snapshots pickled before the state
# types had their own module refer to them as flows.sessions.logic.<name>.
from flows.sessions.state import Bracket, ChargePointState, Tx
from flows.sessions.station import apply_station

__all__ = [
    "DEFAULT_RULES",
    "Bracket",
    "ChargePointState",
    "Event",
    "MeterSampleRow",
    "Output",
    "SessionRow",
    "SessionRules",
    "SignedValueRow",
    "SmartMeterReading",
    "StationMessage",
    "Tx",
    "apply",
    "apply_batch",
    "decode_event",
    "expire_silent",
    "next_deadline",
    "parse_event",
    "session_id_for",
    "update",
]


def apply(
    state: ChargePointState | None,
    event: Event | None,
    rules: SessionRules = DEFAULT_RULES,
) -> tuple[ChargePointState, list[Output]]:
    """Fold one event into a charge point's state; return the rows to write."""
    if state is None:
        state = ChargePointState()
    if event is None:
        return state, []
    state.charge_point_id = event.charge_point_id
    if isinstance(event, SmartMeterReading):
        return state, apply_reading(state, event, rules)
    if event.facts:
        if state.seen(event.message_id):
            return state, []
        state.remember(event.message_id)
    return state, apply_station(state, event, rules)


def apply_batch(
    state: ChargePointState | None,
    events: Iterable[Event | None],
    rules: SessionRules = DEFAULT_RULES,
) -> tuple[ChargePointState, list[Output]]:
    """Fold several events of one charge point, in order, like repeated :func:`apply`,
    but emit each transaction's session snapshot once, as of the end of the batch
    (or as of when it is forgotten), instead of after every event that touched it.

    The meter sample rows are exactly those of :func:`apply`, in the same order; the
    snapshots are the *last* ones :func:`apply` would have emitted for each session
    (a snapshot is a function of the transaction's state, and every change that
    alters a snapshot also emits one). The sink keeps only the last snapshot per
    session of a write anyway, so the tables do not change -- it only saves
    building snapshots that would be overwritten in the same transaction.
    """
    if state is None:
        state = ChargePointState()
    outputs: list[Output] = []
    pending: dict[str, None] = {}  # tx ids with a deferred snapshot, in touch order
    cp = ""
    for event in events:
        if event is None:
            continue
        cp = state.charge_point_id = event.charge_point_id
        if isinstance(event, SmartMeterReading):
            outputs.extend(apply_reading(state, event, rules, pending))
            continue
        if event.facts:
            if state.seen(event.message_id):
                continue
            state.remember(event.message_id)
        outputs.extend(apply_station(state, event, rules, pending))
    outputs.extend(session_row(cp, state.txs[t], rules) for t in pending if t in state.txs)
    return state, outputs


def update(
    state: ChargePointState | None,
    envelope: Envelope,
    rules: SessionRules = DEFAULT_RULES,
) -> tuple[ChargePointState, list[Output]]:
    """``apply(state, parse_event(envelope))``; raises :class:`flows.errors.InvalidEvent`."""
    return apply(state, parse_event(envelope), rules)
