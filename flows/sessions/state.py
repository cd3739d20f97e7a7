"""What the sessions flow remembers per charge point: its transactions, the smart-meter
readings around them and bounded memories for de-duplication.

Plain data, pickled into the flow's recovery snapshots at the end of every epoch; the
modules of :mod:`flows.sessions` change it (``lifecycle``, ``station``, ``readings``,
``brackets``). Some fields only bound the per-message scans (``closing``,
``idle_after``, ``final_count``, ``forget_after``): they never change a result, and
:mod:`flows.sessions.lifecycle` keeps them.
"""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from bus.sessions import ClosedBy
from flows.sessions.registers import Point, RegisterFold

RECENT_MESSAGES = 256
RECENT_CLOSED = 64

# A remembered smart-meter reading: (measured_at, meter_id, energy_wh, is_billing_meter).
Reading = tuple[datetime, str, Decimal, bool]


@dataclass(slots=True)
class Bracket:
    """One smart meter's readings around a transaction.

    ``before_start``/``after_start`` are the latest reading at or before and the
    earliest at or after the start (``start_ref``), ``before_stop``/``after_stop``
    the same around the stop (``stop_ref``), whatever their distance; ``start`` and
    ``stop`` are the figures derived from them (:func:`flows.sessions.brackets.settle`).
    ``near``: some reading fell within the transaction's window; the meter counts for
    the transaction when near or when a figure is pinned (``relevant``)."""

    billing: bool = False
    near: bool = False
    relevant: bool = False
    start_ref: datetime | None = None
    before_start: Point | None = None
    after_start: Point | None = None
    stop_ref: datetime | None = None
    before_stop: Point | None = None
    after_stop: Point | None = None
    start: Point | None = None
    stop: Point | None = None


@dataclass(slots=True)
class Tx:
    """Everything seen of one transaction (open, closing, or closed and amendable)."""

    transaction_id: str
    first_seen: datetime
    last_activity: datetime  # latest fact time (station clock)
    last_received: datetime  # latest receipt of a message about it (gateway clock)
    ocpp_version: str | None = None
    evse_id: int | None = None
    id_tag: str | None = None
    has_start: bool = False
    started_at: datetime | None = None
    start_register: Decimal | None = None
    stopped_at: datetime | None = None
    stop_register: Decimal | None = None
    stop_reason: str | None = None
    closed_by: ClosedBy | None = None
    final: bool = False  # a closed snapshot has been emitted
    stop_late: bool = False
    samples: list[Point] = field(default_factory=list)
    fold: RegisterFold = field(default_factory=RegisterFold)
    power: list[Point] = field(default_factory=list)
    sample_count: int = 0
    seq_nos: set[int] = field(default_factory=set)
    # What identifies each TransactionEvent seen (flows.sessions.station.fingerprint):
    # a resent event is the same one again, a distinct event with a used seqNo is not.
    fingerprints: set[bytes] = field(default_factory=set)
    # The natural keys of the samples counted (flows.sessions.samples.count_samples):
    # sample_count is what the sink stores, so a value sent twice counts once.
    sample_keys: set[int] = field(default_factory=set)
    offline: bool = False
    conflict: bool = False
    meters: dict[str, Bracket] = field(default_factory=dict)
    session_id: uuid.UUID | None = None  # cached session_id_for(cp, transaction_id)

    @property
    def open(self) -> bool:
        return self.closed_by is None

    def __setstate__(self, state: tuple[None, dict[str, Any]]) -> None:
        # A recovery store written before a field existed leaves it at its default.
        self.fingerprints = set()
        self.sample_keys = set()
        for name, value in state[1].items():
            setattr(self, name, value)


@dataclass(slots=True)
class ChargePointState:
    """Per charge point: its transactions, recent smart-meter readings per
    connector, its event time, and bounded memories for de-duplication."""

    txs: dict[str, Tx] = field(default_factory=dict)
    charge_point_id: str = ""
    readings: dict[int, list[Reading]] = field(default_factory=dict)
    watermark: datetime | None = None
    recent_messages: deque[str] = field(default_factory=lambda: deque(maxlen=RECENT_MESSAGES))
    recent_closed: deque[str] = field(default_factory=lambda: deque(maxlen=RECENT_CLOSED))
    _recent: set[str] = field(default_factory=set)  # recent_messages, for O(1) look-ups
    # Bounds that let the per-message scans skip (they change no result):
    # closed transactions without a closed snapshot yet (finalize_ready's candidates);
    closing: set[str] = field(default_factory=set)
    # no open transaction can be idle while the event time is at or before this
    # (None: unknown, scan; last_received only grows, so it stays a lower bound);
    idle_after: datetime | None = None
    # transactions with a closed snapshot, and no final one is older than the
    # amend window while the event time is at or before ``forget_after`` (None: scan).
    final_count: int = 0
    forget_after: datetime | None = None

    @property
    def open(self) -> dict[str, Tx]:
        """Transactions without a closed snapshot yet."""
        return {k: t for k, t in self.txs.items() if not t.final}

    def seen(self, message_id: str) -> bool:
        return message_id in self._recent

    def remember(self, message_id: str) -> None:
        if len(self.recent_messages) == self.recent_messages.maxlen:
            self._recent.discard(self.recent_messages[0])
        self.recent_messages.append(message_id)
        self._recent.add(message_id)
