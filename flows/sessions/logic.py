"""Per-charge-point session accounting over the normalised form: pure, no I/O.

The flow keys two topics by charge point id -- OCPP events (``ocpp.events``) and
smart-meter readings (``meter.readings``) -- and folds them through :func:`apply`
(``(state | None, event) -> (state, outputs)``); :func:`parse_event` turns an
envelope into an event. Outputs are :class:`SessionRow` snapshots (upserted by
session id, last wins) and :class:`MeterSampleRow` rows (one per sampled value).

Input
-----
Both OCPP versions through :mod:`bus.normalized`: ``Envelope.normalized`` when the
gateway attached it, else the raw payload is normalised here (1.6 payloads of
older envelopes are validated first; what does not fit raises
:class:`InvalidEvent` -> dead letter). Transactions are keyed by
``transaction_id`` and live on ``evse_id`` (1.6: the connector).
1.6 StartTransaction/StopTransaction and 2.0.1 Started/Updated/Ended open, update
and end them; a 2.0.1 Updated/Ended for an unknown transaction opens it as
``start_unknown`` (a later Started fills the start in). Samples with a
transaction id belong to it; samples without one (clock-aligned values, 2.0.1
MeterValues) belong to the single running transaction on their EVSE; samples of
EVSE/connector 0 (the main meter) never count for a transaction.

Energy (DESIGN.md "Correctness rules")
--------------------------------------
* ``station_register``: the station's register, folded by
  :class:`flows.sessions.registers.RegisterFold` from the start register (1.6
  meterStart, 2.0.1 ``Transaction.Begin``), the sampled registers and the stop
  register (meterStop, ``Transaction.End``); resets, rollovers, decreases, jumps and
  outliers are handled and named there. Without a start register the first
  sample is the start (``start_register_missing``); without a stop register the
  last sample is the stop (``stop_register_missing``).
* ``smart_meter``: when a reading on ``meter.readings`` for the transaction's
  connector says ``is_billing_meter``, the session energy is that meter's register
  at stop minus at start. We choose, per meter, the *latest reading at or before
  the start* and the *earliest reading at or after the stop*, each within
  ``meter_window`` (no interpolation: outside a session no energy flows through
  the connector, so these bracketing readings equal the register at start and at
  stop) -- or at any distance when the readings on both sides of the start (stop)
  are equal: registers never decrease, so an idle run spanning the instant pins
  the register there. Runs of equal readings are kept as their first and latest
  reading only, and this keeps the figure independent of the order in which
  ``ocpp.events`` and ``meter.readings`` interleave (:class:`Bracket`).
  Without both (``smart_meter_incomplete``) the station register is used.
  Every meter with both readings cross-checks the station register: a difference
  above ``meter_tolerance_ratio x max + meter_tolerance_wh`` (1 % + 10 Wh) is
  ``smart_meter_mismatch``.
* ``power_integration``: only when there are not two register readings at all,
  trapezoidal integration of ``Power.Active.Import`` (``register_missing``,
  quality ``estimated``).

``quality`` is ``estimated`` for power integration, else ``missing`` for a closed
session without any figure (``energy_wh`` None, ``energy_source`` None), else
``corrected`` when there is any reason (the figure was adjusted, or stands despite
doubtful evidence), else ``exact``. Billing holds back everything but ``exact``.

Closing
-------
* ``closed_by='stop'``: StopTransaction / Ended. When a smart meter is known on the
  connector and its reading after the stop has not arrived yet, the session
  stays ``active`` (with its stop) until that reading arrives or the station's
  event time passes ``stop + meter_grace``, so the first closed snapshot -- the one
  published on ``sessions.closed`` -- already has the meter figure.
* ``closed_by='next_start'``: one session at a time per EVSE -- a transaction that
  opens there (by its start, or by its first event when the start was lost) closes
  the one still open there, or is itself closed when it began before that one
  (:func:`_claim_evse`); ``closed_by='timeout'``: no message for the transaction while
  the station's event time (the latest ``measured_at`` of its OCPP messages,
  heartbeats included) moved ``idle_timeout`` past its last activity -- or, when
  the station sends nothing at all, after that long by the flow's wall clock
  (:func:`expire_silent`, scheduled by the flow's ``notify_at``). Both end at
  the last activity, reason ``stop_missing``. A StopTransaction that comes after
  such a close amends the row (``stop_late``); so do late samples or smart-meter
  readings while the closed transaction is remembered (``amend_window``,
  ``keep_closed``). Each snapshot is a function of everything seen for the
  transaction, not of arrival order, so replays converge to the same rows.

Duplicates: message ids (the last :data:`RECENT_MESSAGES`), 2.0.1
TransactionEvents by what identifies them (seqNo, event type, timestamp and
content: :func:`_fingerprint`; stations resend after a lost answer), identical
register points, smart-meter readings by (meter, time), and the ids of the last
:data:`RECENT_CLOSED` forgotten transactions. A distinct event is never dropped
for its seqNo alone: some stations send the same seqNo on every event, so a seqNo
carried by two different events is ``seq_no_reused``. A gap in a transaction's
``seqNo`` range is ``seq_no_gap``; any event sent ``offline`` is ``offline``;
duplicate register values that disagree are ``conflicting_register_values``.
``sample_count`` counts the distinct samples stored for the transaction.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, cast

import msgspec

from bus.envelope import Envelope, Kind, decode_envelope, decode_facts
from bus.normalized import (
    ENERGY_REGISTER,
    MeterSample,
    Normalized,
    TransactionEnd,
    TransactionStart,
    TransactionUpdate,
    normalize_v16,
    normalize_v201,
)
from flows.sessions.registers import (
    Point,
    RegisterFold,
    RegisterRules,
    fold_points,
    integrate_power,
    power_points,
    register_points,
)

__all__ = ["ENERGY_REGISTER"]

SESSION_NAMESPACE = uuid.UUID("5b0c54a4-3f0e-4c53-9a0c-6a1d2f6f8e31")
RECENT_MESSAGES = 256
RECENT_CLOSED = 64
MAX_READINGS = 512  # smart-meter readings remembered per connector

Quality = Literal["exact", "corrected", "estimated", "missing"]
STATION_REGISTER = "station_register"
SMART_METER = "smart_meter"
POWER_INTEGRATION = "power_integration"

SESSION_ACTIONS = frozenset({"StartTransaction", "MeterValues", "StopTransaction"})


def session_id_for(charge_point_id: str, transaction_id: str | int) -> uuid.UUID:
    """The stable session id: ``uuid5(SESSION_NAMESPACE, "<cp>/<tx>")``.

    >>> session_id_for("CP1", 7) == session_id_for("CP1", "7")
    True
    """
    return uuid.uuid5(SESSION_NAMESPACE, f"{charge_point_id}/{transaction_id}")


class InvalidEvent(ValueError):
    """A session message that does not fit OCPP; it belongs on the dead-letter topic."""


@dataclass(frozen=True, slots=True)
class SessionRules:
    """Configurable limits (module docstring)."""

    registers: RegisterRules = field(default_factory=RegisterRules)
    idle_timeout: timedelta = timedelta(hours=6)
    meter_window: timedelta = timedelta(minutes=15)
    meter_grace: timedelta = timedelta(minutes=5)
    meter_tolerance_ratio: Decimal = Decimal("0.01")
    meter_tolerance_wh: Decimal = Decimal(10)
    amend_window: timedelta = timedelta(hours=2)
    # Smart-meter readings kept per connector (for transactions whose start or stop
    # is processed after them; runs of equal values keep only their ends).
    meter_retention: timedelta = timedelta(hours=6)
    keep_closed: int = 16


DEFAULT_RULES = SessionRules()
_NEVER = datetime.max.replace(tzinfo=UTC)


# --------------------------------------------------------------------------- outputs


@dataclass(frozen=True, slots=True)
class SessionRow:
    """A snapshot of one session, upserted by ``session_id`` (last snapshot wins)."""

    session_id: uuid.UUID
    charge_point_id: str
    connector_id: int | None
    transaction_id: str
    id_tag: str | None
    status: Literal["active", "closed"]
    started_at: datetime | None
    stopped_at: datetime | None
    meter_start_wh: int | None
    meter_stop_wh: int | None
    last_register_wh: int | None
    energy_wh: int | None
    energy_source: str | None
    quality: Quality
    quality_reasons: tuple[str, ...]
    stop_reason: str | None
    sample_count: int
    closed_by: str | None = None  # stop | next_start | timeout
    station_energy_wh: int | None = None  # the station register's figure
    smart_meter_energy_wh: int | None = None  # the (billing, else first) smart meter's
    smart_meter_id: str | None = None
    ocpp_version: str | None = None


class MeterSampleRow(msgspec.Struct, frozen=True, gc=False):
    """One sampled value; natural key (cp, connector, measurand, phase, location,
    context, measured_at). ``value`` as sent, in ``unit`` x 10^``unit_multiplier``.

    A frozen msgspec struct (not a dataclass like :class:`SessionRow`): there are
    several per event, and it is built several times faster."""

    measured_at: datetime
    charge_point_id: str
    connector_id: int
    transaction_id: str | None
    measurand: str
    phase: str
    location: str
    context: str
    unit: str
    value: Decimal
    unit_multiplier: int = 0


Output = SessionRow | MeterSampleRow


# --------------------------------------------------------------------------- events


class StationMessage(msgspec.Struct, frozen=True, gc=False):
    """The transaction facts of one OCPP CALL (none for heartbeats etc.: those only
    advance the station's event time)."""

    message_id: str
    charge_point_id: str
    ocpp_version: str | None
    at: datetime  # received_at: the gateway's clock drives the idle timeout
    facts: tuple[Normalized, ...]


@dataclass(frozen=True, slots=True)
class SmartMeterReading:
    message_id: str
    charge_point_id: str
    meter_id: str
    connector_id: int
    measured_at: datetime
    energy_wh: Decimal
    is_billing_meter: bool


Event = StationMessage | SmartMeterReading


def _int(payload: dict[str, Any], name: str, what: str) -> int:
    value = payload.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidEvent(f"{what}: {name} must be an integer, got {value!r}")
    return value


def _str(payload: dict[str, Any], name: str, what: str) -> str:
    value = payload.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidEvent(f"{what}: {name} must be a non-empty string, got {value!r}")
    return value


def _time(value: Any, what: str) -> datetime:
    if not isinstance(value, str):
        raise InvalidEvent(f"{what}: timestamp must be a string, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidEvent(f"{what}: timestamp {value!r} is not ISO 8601") from None
    return parsed


def _check_meter_values(meter_values: Any, what: str) -> None:
    """Reject 1.6 meterValue/transactionData that the normaliser would silently skip."""
    if meter_values is None:
        return
    if not isinstance(meter_values, list):
        raise InvalidEvent(f"{what}: meter values must be a list")
    for entry in meter_values:
        if not isinstance(entry, dict):
            raise InvalidEvent(f"{what}: meterValue entries must be objects")
        _time(entry.get("timestamp"), what)
        sampled = entry.get("sampledValue")
        if not isinstance(sampled, list) or not sampled:
            raise InvalidEvent(f"{what}: sampledValue must be a non-empty list")
        for sv in sampled:
            if not isinstance(sv, dict):
                raise InvalidEvent(f"{what}: sampledValue entries must be objects")
            if sv.get("format") == "SignedData":
                continue
            raw = sv.get("value")
            if not isinstance(raw, str | int) or isinstance(raw, bool):
                raise InvalidEvent(f"{what}: sampled value must be a string, got {raw!r}")
            try:
                number = Decimal(str(raw).strip())
            except InvalidOperation:
                raise InvalidEvent(f"{what}: sampled value {raw!r} is not a number") from None
            if not number.is_finite():
                raise InvalidEvent(f"{what}: sampled value {raw!r} is not finite")


def validate_v16(envelope: Envelope) -> None:
    """Raise :class:`InvalidEvent` when a 1.6 session CALL does not fit OCPP 1.6."""
    p = envelope.payload
    what = f"{envelope.action} from {envelope.charge_point_id}"
    if envelope.action == "StartTransaction":
        _int(envelope.response or {}, "transactionId", what + " (response)")
        _int(p, "connectorId", what)
        _str(p, "idTag", what)
        _int(p, "meterStart", what)
        _time(p.get("timestamp"), what)
    elif envelope.action == "MeterValues":
        _int(p, "connectorId", what)
        if p.get("transactionId") is not None:
            _int(p, "transactionId", what)
        _check_meter_values(p.get("meterValue"), what)
    elif envelope.action == "StopTransaction":
        _int(p, "transactionId", what)
        _int(p, "meterStop", what)
        _time(p.get("timestamp"), what)
        _check_meter_values(p.get("transactionData"), what)


_SESSION_FACTS = (TransactionStart, TransactionUpdate, TransactionEnd, MeterSample)
# The fact structs are final (msgspec), so exact type look-ups equal isinstance.
_SESSION_FACT_TYPES = frozenset(_SESSION_FACTS)


def _reading(envelope: Envelope) -> SmartMeterReading:
    p = envelope.payload
    what = f"meter reading for {envelope.charge_point_id}"
    meter_id = p.get("meter_id")
    if not isinstance(meter_id, str) or not meter_id:
        raise InvalidEvent(f"{what}: meter_id must be a non-empty string")
    connector = _int(p, "connector_id", what)
    raw = p.get("energy_wh")
    try:
        energy = Decimal(raw) if isinstance(raw, str | int) and not isinstance(raw, bool) else None
    except InvalidOperation:
        energy = None
    if energy is None or not energy.is_finite() or energy < 0:
        raise InvalidEvent(f"{what}: energy_wh must be a non-negative decimal, got {raw!r}")
    return SmartMeterReading(
        message_id=envelope.message_id,
        charge_point_id=envelope.charge_point_id,
        meter_id=meter_id,
        connector_id=connector,
        measured_at=envelope.measured_at,
        energy_wh=energy,
        is_billing_meter=p.get("is_billing_meter") is True,
    )


def parse_event(envelope: Envelope) -> Event | None:
    """The event an envelope carries for this flow, or None (other kinds).

    Raises :class:`InvalidEvent` for session messages that do not fit.
    """
    if envelope.kind == Kind.METER_READING:
        return _reading(envelope)
    if envelope.kind != Kind.OCPP_CALL:
        return None
    facts: list[Normalized] | None = envelope.normalized
    action = envelope.action or ""
    v201 = (envelope.ocpp_version or "").startswith("2")
    if facts is None:
        if v201:
            facts = normalize_v201(
                envelope.charge_point_id,
                action,
                envelope.payload,
                envelope.response,
                envelope.received_at,
            )
        elif action in SESSION_ACTIONS:
            validate_v16(envelope)
            facts = normalize_v16(
                envelope.charge_point_id,
                action,
                envelope.payload,
                envelope.response,
                envelope.received_at,
            )
        else:
            facts = []
    return StationMessage(
        message_id=envelope.message_id,
        charge_point_id=envelope.charge_point_id,
        ocpp_version=envelope.ocpp_version,
        at=envelope.received_at,
        facts=tuple([f for f in facts if type(f) in _SESSION_FACT_TYPES]),
    )


def decode_event(data: bytes | None) -> Event | None:
    """``parse_event(decode_envelope(data))``, faster for OCPP envelopes that carry
    normalised facts: their raw payload is only checked to be a JSON object, not
    decoded. Raises :class:`bus.envelope.EnvelopeError` and :class:`InvalidEvent`
    exactly as those two do (anything unusual takes their path)."""
    env = decode_facts(data)
    if env is None or env.normalized is None:
        return parse_event(decode_envelope(data))  # raises the EnvelopeError, if any
    return StationMessage(
        message_id=env.message_id,
        charge_point_id=env.charge_point_id,
        ocpp_version=env.ocpp_version,
        at=env.received_at,
        facts=tuple([f for f in env.normalized if type(f) in _SESSION_FACT_TYPES]),
    )


# --------------------------------------------------------------------------- state


@dataclass(slots=True)
class Bracket:
    """One smart meter's readings around a transaction.

    ``before_start``/``after_start`` are the latest reading at or before and the
    earliest at or after the start (``start_ref``), ``before_stop``/``after_stop``
    the same around the stop (``stop_ref``), whatever their distance; ``start`` and
    ``stop`` are the figures derived from them (:func:`_settle`): the reading before
    the start (after the stop) when it is within ``meter_window``, or when the
    readings on both sides are equal -- registers never decrease, so two equal
    readings around an instant pin the register there. A function of the set of
    readings seen, and idle runs compressed to their ends (``_apply_reading``) keep
    it, so it does not depend on the order readings and OCPP events arrive in.
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
    closed_by: str | None = None
    final: bool = False  # a closed snapshot has been emitted
    stop_late: bool = False
    samples: list[Point] = field(default_factory=list)
    fold: RegisterFold = field(default_factory=RegisterFold)
    power: list[Point] = field(default_factory=list)
    sample_count: int = 0
    seq_nos: set[int] = field(default_factory=set)
    # What identifies each TransactionEvent seen (:func:`_fingerprint`): a resent
    # event is the same one again, a distinct event with a used seqNo is not.
    fingerprints: set[bytes] = field(default_factory=set)
    # The natural keys of the samples counted (:func:`_sample_key`): sample_count is
    # what the sink stores, so a value sent twice counts once.
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
    readings: dict[int, list[tuple[datetime, str, Decimal, bool]]] = field(default_factory=dict)
    watermark: datetime | None = None
    recent_messages: deque[str] = field(default_factory=lambda: deque(maxlen=RECENT_MESSAGES))
    recent_closed: deque[str] = field(default_factory=lambda: deque(maxlen=RECENT_CLOSED))
    _recent: set[str] = field(default_factory=set)  # recent_messages, for O(1) look-ups
    # Bounds that let the per-message scans skip (they change no result):
    # closed transactions without a closed snapshot yet (_finalize_ready's candidates);
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


def _floor(value: Decimal | None) -> int | None:
    return None if value is None else math.floor(value)


# --------------------------------------------------------------------------- energy


def _settle(b: Bracket, window: timedelta) -> None:
    """Derive ``start``/``stop`` and ``relevant`` from the tracked readings (Bracket)."""
    start = stop = None
    pinned = False
    before, after = b.before_start, b.after_start
    if before is not None and b.start_ref is not None:
        if after is not None and after[1] == before[1]:
            start, pinned = before, True
        elif b.start_ref - before[0] <= window:
            start = before
    before, after = b.before_stop, b.after_stop
    if after is not None and b.stop_ref is not None:
        if before is not None and before[1] == after[1]:
            stop, pinned = after, True
        elif after[0] - b.stop_ref <= window:
            stop = after
    b.start, b.stop = start, stop
    b.relevant = b.near or pinned


def _retrack(b: Bracket, start: datetime | None, stop: datetime | None) -> bool:
    """Track anew around a start that became known or a stop that (re)closed the
    transaction (the readings in the ring are offered again); True if anything reset."""
    reset = False
    if b.start_ref != start:
        b.start_ref, b.before_start, b.after_start, reset = start, None, None, True
    if b.stop_ref != stop:
        b.stop_ref, b.before_stop, b.after_stop, reset = stop, None, None, True
    return reset


def _offer(
    tx: Tx, rules: SessionRules, t: datetime, meter_id: str, wh: Decimal, billing: bool
) -> bool:
    """Consider one smart-meter reading for a transaction's brackets; True if what the
    session's snapshot sees of them changed."""
    start = tx.started_at if tx.has_start else None
    stop = tx.stopped_at
    bracket = tx.meters.get(meter_id)
    if bracket is None:
        bracket = tx.meters[meter_id] = Bracket()
    seen = (bracket.relevant, bracket.billing, bracket.start, bracket.stop)
    _retrack(bracket, start, stop)
    lo = (start or tx.first_seen) - rules.meter_window
    hi = (stop + rules.meter_window) if stop is not None else None
    if lo <= t and (hi is None or t <= hi):
        bracket.near = True
    if billing:
        bracket.billing = True
    point = (t, wh)
    if start is not None:
        if t <= start and (bracket.before_start is None or t > bracket.before_start[0]):
            bracket.before_start = point
        if t >= start and (bracket.after_start is None or t < bracket.after_start[0]):
            bracket.after_start = point
    if stop is not None:
        if t <= stop and (bracket.before_stop is None or t > bracket.before_stop[0]):
            bracket.before_stop = point
        if t >= stop and (bracket.after_stop is None or t < bracket.after_stop[0]):
            bracket.after_stop = point
    _settle(bracket, rules.meter_window)
    return (bracket.relevant, bracket.billing, bracket.start, bracket.stop) != seen


def _offer_all(tx: Tx, state: ChargePointState, rules: SessionRules) -> None:
    start = tx.started_at if tx.has_start else None
    for bracket in tx.meters.values():  # (also those without readings in the ring now)
        if _retrack(bracket, start, tx.stopped_at):
            _settle(bracket, rules.meter_window)
    if tx.evse_id is None:
        return
    for t, meter_id, wh, billing in state.readings.get(tx.evse_id, ()):
        _offer(tx, rules, t, meter_id, wh, billing)


def _meter_energy(bracket: Bracket) -> Decimal | None:
    if bracket.start is None or bracket.stop is None or bracket.stop[1] < bracket.start[1]:
        return None
    return bracket.stop[1] - bracket.start[1]


def _add(reasons: list[str], reason: str) -> None:
    if reason not in reasons:
        reasons.append(reason)


# Complexity over the limit on purpose: one decision table; splits with this module.
def _row(cp: str, tx: Tx, rules: SessionRules) -> SessionRow:  # noqa: C901
    """The snapshot of a transaction: a pure function of what was seen (docstring)."""
    closed = tx.final
    stop_point = (
        (tx.stopped_at, tx.stop_register)
        if (tx.stop_register is not None and tx.stopped_at is not None)
        else None
    )
    energy, fold_reasons = tx.fold.result(stop_point) if tx.has_start else (None, ())
    reasons = list(fold_reasons)
    if not tx.has_start:
        _add(reasons, "start_unknown")
    elif tx.start_register is None:
        _add(reasons, "start_register_missing")
    if tx.closed_by == "stop" and tx.stop_register is None:
        _add(reasons, "stop_register_missing")
    if tx.closed_by in ("timeout", "next_start"):
        _add(reasons, "stop_missing")
    if tx.stop_late:
        _add(reasons, "stop_late")
    if tx.seq_nos and len(tx.seq_nos) < max(tx.seq_nos) - min(tx.seq_nos) + 1:
        _add(reasons, "seq_no_gap")
    if len(tx.fingerprints) > len(tx.seq_nos):  # (each event has one seqNo)
        _add(reasons, "seq_no_reused")
    if tx.offline:
        _add(reasons, "offline")
    if tx.conflict:
        _add(reasons, "conflicting_register_values")

    source: str | None = STATION_REGISTER
    estimated = False
    if tx.has_start and energy is None:
        integrated = integrate_power(tx.power)
        if integrated is not None:
            energy, source, estimated = integrated, POWER_INTEGRATION, True
            _add(reasons, "register_missing")
        elif closed:
            _add(reasons, "register_missing")
            source = None
    station_energy = energy if source == STATION_REGISTER else None

    meter_energy: Decimal | None = None
    meter_id: str | None = None
    if closed and tx.has_start:
        meters = sorted(((m, b) for m, b in tx.meters.items() if b.relevant), key=lambda mb: mb[0])
        billing = [m for m, b in meters if b.billing]
        for m in billing:
            figure = _meter_energy(tx.meters[m])
            if figure is not None:
                meter_energy, meter_id = figure, m
                energy, source, estimated = figure, SMART_METER, False
                break
        else:
            if billing:
                _add(reasons, "smart_meter_incomplete")
        for m, bracket in meters:
            figure = _meter_energy(bracket)
            if figure is None:
                continue
            if meter_id is None:
                meter_energy, meter_id = figure, m
            if station_energy is not None:
                allowed = (
                    rules.meter_tolerance_ratio * max(figure, station_energy)
                    + rules.meter_tolerance_wh
                )
                if abs(figure - station_energy) > allowed:
                    _add(reasons, "smart_meter_mismatch")

    if not tx.has_start:
        # The sink takes the start from the stored row and sets the figure, its
        # source and quality from it (store.writers); on its own the stop has none.
        energy = None
        if closed:
            source = None
    elif energy is None and not closed:
        energy = Decimal(0)
    quality: Quality
    if estimated:
        quality = "estimated"
    elif closed and energy is None:
        quality = "missing"  # no figure at all: never to be taken for a corrected one
    else:
        quality = "corrected" if reasons else "exact"
    start_wh = (
        tx.start_register
        if tx.start_register is not None
        else (tx.samples[0][1] if tx.samples and tx.has_start else None)
    )
    if tx.session_id is None:
        tx.session_id = session_id_for(cp, tx.transaction_id)
    return SessionRow(
        session_id=tx.session_id,
        charge_point_id=cp,
        connector_id=tx.evse_id,
        transaction_id=tx.transaction_id,
        id_tag=tx.id_tag,
        status="closed" if closed else "active",
        started_at=tx.started_at if tx.has_start else tx.first_seen,
        stopped_at=tx.stopped_at,
        meter_start_wh=_floor(start_wh),
        meter_stop_wh=_floor(tx.stop_register),
        last_register_wh=_floor(tx.samples[-1][1]) if tx.samples else None,
        energy_wh=_floor(energy),
        energy_source=source,
        quality=quality,
        quality_reasons=tuple(reasons),
        stop_reason=tx.stop_reason,
        sample_count=tx.sample_count,
        closed_by=tx.closed_by if closed else None,
        station_energy_wh=_floor(station_energy),
        smart_meter_energy_wh=_floor(meter_energy),
        smart_meter_id=meter_id,
        ocpp_version=tx.ocpp_version,
    )


# --------------------------------------------------------------------------- folding


def _rebuild(tx: Tx, rules: SessionRules) -> None:
    start = (
        (tx.started_at, tx.start_register)
        if (tx.start_register is not None and tx.started_at is not None)
        else None
    )
    tx.fold = fold_points(rules.registers, start, tx.samples)


def _add_points(tx: Tx, points: Iterable[Point], rules: SessionRules) -> None:
    for point in points:
        i = bisect.bisect_left(tx.samples, point)
        if i < len(tx.samples) and tx.samples[i] == point:
            continue  # the same reading again
        in_order = i == len(tx.samples) and (not tx.samples or point[0] > tx.samples[-1][0])
        tx.samples.insert(i, point)
        if in_order:
            tx.fold.push(*point)
        else:
            _rebuild(tx, rules)
    if len(tx.samples) >= 2:
        tx.power.clear()  # power integration is only for transactions without registers


def _new_tx(
    state: ChargePointState,
    tx_id: str,
    at: datetime,
    received: datetime,
    version: str | None,
    rules: SessionRules,
) -> Tx:
    tx = Tx(
        transaction_id=tx_id,
        first_seen=at,
        last_activity=at,
        last_received=received,
        ocpp_version=version,
        fold=RegisterFold(rules.registers),
    )
    state.txs[tx_id] = tx
    if state.idle_after is not None:
        state.idle_after = min(state.idle_after, received + rules.idle_timeout)
    return tx


def _close(state: ChargePointState, tx: Tx, by: str, at: datetime) -> None:
    if tx.final:
        state.forget_after = None  # its stop time moves: rescan the amend window
    else:
        state.closing.add(tx.transaction_id)
    tx.closed_by = by
    tx.stopped_at = at


def _needs_meter(tx: Tx) -> bool:
    """Hold the close: a smart meter is known here and has no reading after the stop."""
    return (
        tx.has_start
        and any(b.relevant for b in tx.meters.values())
        and not any(b.stop is not None for b in tx.meters.values() if b.relevant)
    )


def _finalize_ready(
    state: ChargePointState,
    rules: SessionRules,
    touched: set[str],
    *,
    force_evse: int | None = None,
    mark: datetime | None = None,
) -> None:
    """Emit closed snapshots for closed transactions whose meter data is in (or late).
    ``mark``: the event time to judge by (default: the station's watermark)."""
    if not state.closing:
        return
    mark = state.watermark if mark is None else mark
    for tx_id in list(state.closing):
        tx = state.txs.get(tx_id)
        if tx is None or tx.final:
            state.closing.discard(tx_id)
            continue
        assert tx.stopped_at is not None
        waited = mark is not None and mark >= tx.stopped_at + rules.meter_grace
        if (
            not _needs_meter(tx)
            or waited
            or tx.closed_by != "stop"
            or (force_evse is not None and tx.evse_id == force_evse)
        ):
            tx.final = True
            state.closing.discard(tx_id)
            state.final_count += 1
            if state.forget_after is not None:
                state.forget_after = min(state.forget_after, tx.stopped_at + rules.amend_window)
            touched.add(tx.transaction_id)


def _close_idle(
    state: ChargePointState, rules: SessionRules, touched: set[str], mark: datetime | None = None
) -> None:
    mark = state.watermark if mark is None else mark
    if mark is None or (state.idle_after is not None and mark <= state.idle_after):
        return
    bound = _NEVER
    for tx in state.txs.values():
        if tx.open:
            if mark - tx.last_received > rules.idle_timeout:
                _close(state, tx, "timeout", tx.last_activity)
                touched.add(tx.transaction_id)
            else:
                bound = min(bound, tx.last_received + rules.idle_timeout)
    state.idle_after = bound


def _forget_old(
    state: ChargePointState,
    rules: SessionRules,
    pending: dict[str, None] | None = None,
    cp: str = "",
    outputs: list[Output] | None = None,
) -> None:
    mark = state.watermark
    if (
        state.final_count <= rules.keep_closed
        and state.forget_after is not None
        and (mark is None or mark <= state.forget_after)
    ):
        return  # nothing to forget (the common case: no scan)
    finals = [t for t in state.txs.values() if t.final]
    state.final_count = len(finals)
    window = rules.amend_window
    if len(finals) <= rules.keep_closed and (
        mark is None
        or not any(t.stopped_at is not None and mark - t.stopped_at > window for t in finals)
    ):
        state.forget_after = min(
            (t.stopped_at + window for t in finals if t.stopped_at is not None), default=_NEVER
        )
        return  # nothing to forget (no sort)
    closed = sorted(finals, key=lambda t: (t.stopped_at or t.last_activity, t.transaction_id))
    excess = len(closed) - rules.keep_closed
    for i, tx in enumerate(closed):
        old = (
            mark is not None
            and tx.stopped_at is not None
            and (mark - tx.stopped_at > rules.amend_window)
        )
        if i < excess or old:
            if pending is not None and tx.transaction_id in pending:
                del pending[tx.transaction_id]  # its deferred snapshot, before it goes
                assert outputs is not None
                outputs.append(_row(cp, tx, rules))
            del state.txs[tx.transaction_id]
            state.recent_closed.append(tx.transaction_id)
            state.final_count -= 1
    state.forget_after = None  # rescan next time for the new bound


def _sample_rows(cp: str, tx: Tx | None, samples: list[MeterSample]) -> list[Output]:
    rows: list[Output] = []
    append = rows.append
    row = MeterSampleRow
    fallback = tx.evse_id if tx is not None else None
    for s in samples:
        connector = s.evse_id if s.evse_id is not None else fallback
        if connector is None:
            continue  # not keyable (orphan stop data): counted, not written
        # Positional, in field order: (measured_at, charge_point_id, connector_id,
        # transaction_id, measurand, phase, location, context, unit, value, unit_multiplier)
        append(
            row(
                s.timestamp,
                cp,
                connector,
                s.transaction_id,
                s.measurand,
                s.phase or "",
                s.location,
                s.context,
                s.unit,
                s.value,
                s.unit_multiplier,
            )
        )
    return rows


_fingerprint_encoder = msgspec.msgpack.Encoder()


def _fingerprint(
    fact: TransactionStart | TransactionUpdate | TransactionEnd, samples: list[MeterSample]
) -> bytes:
    """What identifies one TransactionEvent: its seqNo, event type, timestamp and
    everything else the station sent in it (its transaction's samples included). The
    gateway's authorisation answer is left out: a resend may be answered differently.
    A digest, stable across processes (it lives in the pickled state)."""
    if fact.auth_status is not None:
        fact = msgspec.structs.replace(fact, auth_status=None)
    data = _fingerprint_encoder.encode((fact, samples))
    return hashlib.blake2b(data, digest_size=16).digest()


_SERIES_IDS: dict[tuple[int, str, str | None, str, str], int] = {}
_MAX_SERIES_IDS = 65_536


def _series_id(series: tuple[int, str, str | None, str, str]) -> int:
    """A number for a sample series (connector, measurand, phase, location, context)
    that is the same in every process (``hash`` of a str is not, and the sample keys
    live in state pickled across restarts)."""
    connector, measurand, phase, location, context = series
    text = f"{connector}\x1f{measurand}\x1f{phase or ''}\x1f{location}\x1f{context}"
    n = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest())
    if len(_SERIES_IDS) < _MAX_SERIES_IDS:
        _SERIES_IDS[series] = n
    return n


def _count_samples(tx: Tx, samples: list[MeterSample]) -> None:
    """``sample_count``: the distinct samples of the transaction the sink stores --
    one per natural key of ``meter_samples`` (series and time), kept as numbers in
    ``tx.sample_keys``; samples without any connector are not stored, not counted."""
    keys = tx.sample_keys
    before = len(keys)
    add = keys.add
    fallback = tx.evse_id
    ids = _SERIES_IDS
    at = None
    micros = 0
    for s in samples:
        connector = s.evse_id if s.evse_id is not None else fallback
        if connector is None:
            continue
        series = (connector, s.measurand, s.phase, s.location, s.context)
        n = ids.get(series)
        if n is None:
            n = _series_id(series)
        if s.timestamp != at:  # (the samples of one meter value share their time)
            at = s.timestamp
            micros = int(at.timestamp() * 1_000_000)
        add(micros ^ n)  # the time mixed with the series' 64 random-looking bits
    tx.sample_count += len(keys) - before


def _claim_evse(state: ChargePointState, tx: Tx, rules: SessionRules, touched: set[str]) -> None:
    """One session at a time per EVSE: the transaction that began last is the one
    running there, any other still open on that EVSE closes by ``next_start`` at its
    last activity (``tx`` itself when it began before the one running), and closed
    ones waiting for their smart-meter reading stop waiting."""
    evse = tx.evse_id
    if evse is None or evse == 0 or not tx.open:
        return
    for other in list(state.txs.values()):
        if other is tx or not other.open or other.evse_id != evse:
            continue
        if other.first_seen <= tx.first_seen:
            _close(state, other, "next_start", other.last_activity)
            touched.add(other.transaction_id)
        else:
            _close(state, tx, "next_start", tx.last_activity)
            touched.add(tx.transaction_id)
            break
    _finalize_ready(state, rules, touched, force_evse=evse)


def _context_register(samples: list[MeterSample], context: str, last: bool) -> Decimal | None:
    points, _ = register_points(s for s in samples if s.context == context)
    if not points:
        return None
    return points[-1][1] if last else points[0][1]


# Complexity over the limit on purpose: the hot loop, kept whole for speed.
def _apply_station(  # noqa: C901
    state: ChargePointState,
    msg: StationMessage,
    rules: SessionRules,
    pending: dict[str, None] | None = None,
) -> list[Output]:
    cp = msg.charge_point_id
    if state.watermark is None or msg.at > state.watermark:
        state.watermark = msg.at
    touched: set[str] = set()
    outputs: list[Output] = []
    by_tx: dict[str | None, list[MeterSample]] = {}
    tx_facts: list[TransactionStart | TransactionUpdate | TransactionEnd] = []
    for fact in msg.facts:
        if type(fact) is MeterSample:  # (exact: the fact structs are never subclassed)
            group = by_tx.get(fact.transaction_id)
            if group is None:
                by_tx[fact.transaction_id] = [fact]
            else:
                group.append(fact)
        elif isinstance(fact, TransactionStart | TransactionUpdate | TransactionEnd):
            tx_facts.append(fact)
    skip: set[str] = set()

    for fact in tx_facts:
        tx_id = fact.transaction_id
        if tx_id in state.recent_closed and tx_id not in state.txs:
            skip.add(tx_id)
            continue
        tx = state.txs.get(tx_id)
        fingerprint = None if fact.seq_no is None else _fingerprint(fact, by_tx.get(tx_id, []))
        if tx is not None and fingerprint is not None:
            if fingerprint in tx.fingerprints:
                skip.add(tx_id)  # the same TransactionEvent again
                continue
            # A distinct event, even when its seqNo was seen (then: seq_no_reused).
            tx.fingerprints.add(fingerprint)
            tx.seq_nos.add(cast(int, fact.seq_no))
        if isinstance(fact, TransactionStart):
            if tx is not None and tx.has_start:
                skip.add(tx_id)
                continue
            if tx is None:
                tx = _new_tx(state, tx_id, fact.timestamp, msg.at, msg.ocpp_version, rules)
            tx.has_start = True
            tx.started_at = fact.timestamp
            tx.first_seen = min(tx.first_seen, fact.timestamp)
            start = fact.meter_start_wh
            if start is None:
                start = _context_register(by_tx.get(tx_id, []), "Transaction.Begin", False)
            tx.start_register = start
            _rebuild(tx, rules)
        elif isinstance(fact, TransactionUpdate):
            if tx is None:
                tx = _new_tx(state, tx_id, fact.timestamp, msg.at, msg.ocpp_version, rules)
        else:  # TransactionEnd
            if tx is not None and tx.closed_by == "stop":
                skip.add(tx_id)  # the same stop again
                continue
            if tx is None:
                tx = _new_tx(state, tx_id, fact.timestamp, msg.at, msg.ocpp_version, rules)
            if tx.final:
                tx.stop_late = True
            stop = fact.meter_stop_wh
            if stop is None:
                stop = _context_register(by_tx.get(tx_id, []), "Transaction.End", True)
            _close(state, tx, "stop", fact.timestamp)
            tx.stop_register = stop
            tx.stop_reason = fact.stopped_reason
        tx.evse_id = tx.evse_id if fact.evse_id is None else fact.evse_id
        tx.id_tag = fact.id_tag or tx.id_tag
        tx.ocpp_version = tx.ocpp_version or msg.ocpp_version
        tx.last_activity = max(tx.last_activity, fact.timestamp)
        tx.last_received = max(tx.last_received, msg.at)
        tx.first_seen = min(tx.first_seen, fact.timestamp)
        if fingerprint is not None:
            tx.fingerprints.add(fingerprint)
            tx.seq_nos.add(cast(int, fact.seq_no))
        tx.offline = tx.offline or fact.offline
        _offer_all(tx, state, rules)
        touched.add(tx_id)
        _claim_evse(state, tx, rules, touched)

    for sample_tx, samples in by_tx.items():
        if sample_tx in skip:
            continue
        tx = state.txs.get(sample_tx) if sample_tx is not None else None
        billable = samples
        if sample_tx is None:
            # No transaction id: the one running transaction on that EVSE, if any.
            evses = {s.evse_id for s in samples}
            running = [
                t
                for t in state.txs.values()
                if t.open and t.evse_id in evses and t.evse_id not in (None, 0)
            ]
            tx = running[0] if len(running) == 1 else None
            billable = [s for s in samples if tx is not None and s.evse_id == tx.evse_id]
        outputs.extend(_sample_rows(cp, tx, samples))
        if tx is None:
            continue
        _count_samples(tx, billable)
        if any(s.evse_id == 0 for s in billable):
            billable = [s for s in billable if s.evse_id != 0]  # never the main meter
        points, conflict = register_points(billable)
        tx.conflict = tx.conflict or conflict
        _add_points(tx, points, rules)
        if len(tx.samples) < 2:
            tx.power.extend(p for p in power_points(billable) if p not in tx.power)
        latest = tx.last_activity
        for s in billable:
            if s.timestamp > latest:
                latest = s.timestamp
        tx.last_activity = latest
        if msg.at > tx.last_received:
            tx.last_received = msg.at
        touched.add(tx.transaction_id)

    _close_idle(state, rules, touched)
    _finalize_ready(state, rules, touched)
    if pending is None:
        outputs.extend(_row(cp, state.txs[t], rules) for t in sorted(touched) if t in state.txs)
    elif len(touched) == 1:
        [t] = touched
        if t in state.txs:
            pending[t] = None
    else:
        pending.update((t, None) for t in sorted(touched) if t in state.txs)
    _forget_old(state, rules, pending, cp, outputs)
    return outputs


def _apply_reading(
    state: ChargePointState,
    r: SmartMeterReading,
    rules: SessionRules,
    pending: dict[str, None] | None = None,
) -> list[Output]:
    ring = state.readings.setdefault(r.connector_id, [])
    entry = (r.measured_at, r.meter_id, r.energy_wh, r.is_billing_meter)
    i = bisect.bisect_left(ring, entry[:2])
    if any(e[:2] == entry[:2] for e in ring[i : i + 2]):
        return []  # the same reading again
    if i == len(ring):
        same = [k for k in range(len(ring) - 1, -1, -1) if ring[k][1] == r.meter_id][:2]
        if len(same) == 2 and ring[same[0]][2] == ring[same[1]][2] == r.energy_wh:
            ring.pop(same[0])  # idle: keep the first and the latest of equal readings
    ring.insert(bisect.bisect_left(ring, entry), entry)
    horizon = ring[-1][0] - rules.meter_retention
    while len(ring) > MAX_READINGS or (len(ring) > 1 and ring[0][0] < horizon):
        ring.pop(0)
    touched: set[str] = set()
    for tx in state.txs.values():
        if (
            tx.evse_id == r.connector_id
            and _offer(tx, rules, r.measured_at, r.meter_id, r.energy_wh, r.is_billing_meter)
            and tx.closed_by is not None
        ):
            touched.add(tx.transaction_id)
    _finalize_ready(state, rules, touched)
    if pending is not None:
        pending.update((t, None) for t in sorted(touched) if state.txs[t].final)
        return []
    return [
        _row(r.charge_point_id, state.txs[t], rules) for t in sorted(touched) if state.txs[t].final
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
        return state, _apply_reading(state, event, rules)
    if event.facts:
        if state.seen(event.message_id):
            return state, []
        state.remember(event.message_id)
    return state, _apply_station(state, event, rules)


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
            outputs.extend(_apply_reading(state, event, rules, pending))
            continue
        if event.facts:
            if state.seen(event.message_id):
                continue
            state.remember(event.message_id)
        outputs.extend(_apply_station(state, event, rules, pending))
    outputs.extend(_row(cp, state.txs[t], rules) for t in pending if t in state.txs)
    return state, outputs


def next_deadline(state: ChargePointState, rules: SessionRules = DEFAULT_RULES) -> timedelta | None:
    """How much further the station's event time must move before a waiting
    transaction closes by timeout or a closed one stops waiting for its smart-meter
    reading; None when nothing waits (see :func:`expire_silent`).

    >>> from datetime import UTC, datetime, timedelta
    >>> at = datetime(2026, 1, 1, tzinfo=UTC)
    >>> state, _ = apply(None, StationMessage("m1", "CP", "1.6", at, (TransactionStart(
    ...     charge_point_id="CP", transaction_id="7", evse_id=1, connector_id=1, timestamp=at),)))
    >>> next_deadline(state, SessionRules(idle_timeout=timedelta(hours=1)))
    datetime.timedelta(seconds=3600)
    """
    mark = state.watermark
    if mark is None:
        return None
    waits: list[timedelta] = []
    for tx in state.txs.values():
        if tx.final:
            continue
        if tx.closed_by is None:
            waits.append(tx.last_received + rules.idle_timeout - mark)
        elif tx.stopped_at is not None:
            waits.append(tx.stopped_at + rules.meter_grace - mark)
    return max(min(waits), timedelta(0)) if waits else None


def expire_silent(
    state: ChargePointState,
    silent_for: timedelta,
    rules: SessionRules = DEFAULT_RULES,
) -> tuple[ChargePointState, list[Output]]:
    """Close what a silent station leaves waiting: the station sent nothing for
    ``silent_for`` (wall clock, measured by the flow), so its event time is taken to
    be ``watermark + silent_for`` -- the gateway stamps ``received_at`` with its own
    clock, so silence advances it just as heartbeats would. Transactions idle past
    ``idle_timeout`` close by ``timeout`` and closed ones stop waiting for their
    smart-meter reading after ``meter_grace``, exactly as the next message of the
    station would have done. The stored watermark stays the last *seen* event time,
    so a replay (which sees no silence) and a late message converge to the same rows:
    a StopTransaction that arrives later amends the row (``stop_late``).
    """
    mark = state.watermark
    if mark is None or silent_for <= timedelta(0):
        return state, []
    mark = mark + silent_for
    touched: set[str] = set()
    _close_idle(state, rules, touched, mark)
    _finalize_ready(state, rules, touched, mark=mark)
    cp = state.charge_point_id
    return state, [_row(cp, state.txs[t], rules) for t in sorted(touched)]


def update(
    state: ChargePointState | None,
    envelope: Envelope,
    rules: SessionRules = DEFAULT_RULES,
) -> tuple[ChargePointState, list[Output]]:
    """``apply(state, parse_event(envelope))``; raises :class:`InvalidEvent`."""
    return apply(state, parse_event(envelope), rules)
