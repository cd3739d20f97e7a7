"""Connector status history and current availability: pure step logic, no I/O.

What the status dataflow and the tests use: :func:`decode_event` (bytes) and
:func:`parse_envelope` turn a message into a :class:`StatusEvent`
(:mod:`flows.status.parse`); :func:`apply` folds it into the station's
:class:`StationStatus` and emits :class:`HistoryRow` and :class:`AvailabilityRow` s
(:mod:`flows.status.station`, which states the rules); :func:`apply_batch` folds a
station's events of one input batch.
"""

from __future__ import annotations

from bus.envelope import decode_envelope
from flows.connection import ConnectionChange
from flows.status.parse import StatusEvent, StatusFact, parse_envelope
from flows.status.station import (
    AvailabilityRow,
    HistoryRow,
    Output,
    StationStatus,
    apply,
)

__all__ = [
    "AvailabilityRow",
    "ConnectionChange",
    "HistoryRow",
    "Output",
    "StationStatus",
    "StatusEvent",
    "StatusFact",
    "apply",
    "apply_batch",
    "decode_event",
    "parse_envelope",
]


def decode_event(data: bytes | None) -> StatusEvent | None:
    """The status facts of a Kafka message's value (None: none); raises
    ``EnvelopeError`` (not an envelope) or ``InvalidEvent``."""
    return parse_envelope(decode_envelope(data))


def apply_batch(
    state: StationStatus | None, events: list[StatusEvent]
) -> tuple[StationStatus | None, list[Output]]:
    """:func:`apply` every event in order; the rows of all of them."""
    rows: list[Output] = []
    for event in events:
        state, out = apply(state, event)
        rows.extend(out)
    return state, rows
