"""Per-charge-point session accounting: pure functions, no I/O.

The flow keys OCPP 1.6J events by charge point id and folds them through
:func:`update` (``(state | None, envelope) -> (state, outputs)``). Outputs are
:class:`SessionRow` snapshots (on start, on meter values, on stop) and
:class:`MeterSampleRow` rows (one per sampled value). Both are plain frozen
dataclasses so the sink (``store.writers``) can upsert them idempotently.

Energy rules (DESIGN.md "Correctness rules")
--------------------------------------------
* Session energy is ``meterStop - meterStart`` in Wh from the station's own
  register, never integrated from power. Registers are ``int`` Wh; sampled values
  are ``Decimal`` and converted to Wh when the unit is ``kWh``.
* Sampled ``Energy.Active.Import.Register`` values without a phase (the total
  register) are cross-checked against ``[meterStart, meterStop]``:

  - a sample below ``meterStart`` -> reason ``sample_below_start`` (the sample is
    ignored for ``last_register_wh``/energy-so-far);
  - a sample lower than an earlier one in the same transaction -> ``register_decreased``;
  - a sample above ``meterStop`` -> reason ``sample_above_stop``; the energy stays
    ``meterStop - meterStart`` (the final signed register is authoritative and we
    never bill above it);
  - ``meterStop < meterStart`` (register reset/rollover or a bad value) -> reason
    ``meter_stop_below_start`` and the energy becomes ``max sampled register -
    meterStart`` when a valid sample exists, else ``0`` (never negative, never more
    than the evidence shows).

  Any reason makes ``quality`` ``'corrected'`` (the figure was adjusted or stands
  despite inconsistent evidence); ``'exact'`` means both registers and all samples
  agree. ``'estimated'`` is reserved for power integration (not done here).
* A ``StopTransaction`` whose start this state never saw (state lost, start on a
  crashed epoch) still yields a closed row with ``meter_start_wh``/``energy_wh``
  ``None``, quality ``'corrected'`` and reason ``start_unknown``; the sink then
  takes the start from the stored row and derives the energy from the stored
  ``meter_start_wh`` (see ``store.writers``). Its transactionData samples cannot be
  keyed (the connector is unknown) and are counted but not written.
* While a session is active, ``energy_wh`` is the energy so far:
  ``last valid register - meterStart`` (0 before the first sample).

Duplicates: the state remembers the last :data:`RECENT_MESSAGES` message ids and
the last :data:`RECENT_CLOSED` closed transaction ids, so a redelivered envelope or
a repeated ``StopTransaction`` changes nothing and emits nothing. A
``StartTransaction`` for a transaction that is already open is ignored as well.

Timestamps without a UTC offset inside MeterValues are read as UTC. Sampled values
in ``SignedData`` format are not numbers and are skipped. Everything else that does
not fit OCPP 1.6 raises :class:`InvalidEvent` from :func:`parse_event`; the flow
routes those messages to the dead-letter topic before they reach the state.
"""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any, Literal

from bus.envelope import Envelope, Kind

SESSION_NAMESPACE = uuid.UUID("5b0c54a4-3f0e-4c53-9a0c-6a1d2f6f8e31")
ENERGY_REGISTER = "Energy.Active.Import.Register"
RECENT_MESSAGES = 256
RECENT_CLOSED = 64

Quality = Literal["exact", "corrected", "estimated"]

SESSION_ACTIONS = frozenset({"StartTransaction", "MeterValues", "StopTransaction"})


def session_id_for(charge_point_id: str, transaction_id: str | int) -> uuid.UUID:
    """The stable session id: ``uuid5(SESSION_NAMESPACE, "<cp>/<tx>")``.

    >>> session_id_for("CP1", 7) == session_id_for("CP1", "7")
    True
    """
    return uuid.uuid5(SESSION_NAMESPACE, f"{charge_point_id}/{transaction_id}")


class InvalidEvent(ValueError):
    """A session message that does not fit OCPP 1.6; it belongs on the dead-letter topic."""


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
    energy_source: str
    quality: Quality
    quality_reasons: tuple[str, ...]
    stop_reason: str | None
    sample_count: int


@dataclass(frozen=True, slots=True)
class MeterSampleRow:
    """One sampled value; natural key (cp, connector, measurand, phase, location,
    context, measured_at)."""

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


Output = SessionRow | MeterSampleRow


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Sample:
    """A numeric sampled value, as parsed from a MeterValues/transactionData entry."""

    measured_at: datetime
    measurand: str
    phase: str
    location: str
    context: str
    unit: str
    value: Decimal

    def register_wh(self) -> Decimal | None:
        """The value in Wh if this is the total import register, else None."""
        if self.measurand != ENERGY_REGISTER or self.phase:
            return None
        if self.unit == "kWh":
            return self.value * 1000
        if self.unit in ("Wh", ""):
            return self.value
        return None


@dataclass(frozen=True, slots=True)
class StartEvent:
    message_id: str
    charge_point_id: str
    transaction_id: str
    connector_id: int
    id_tag: str
    meter_start_wh: int
    started_at: datetime


@dataclass(frozen=True, slots=True)
class MeterEvent:
    message_id: str
    charge_point_id: str
    connector_id: int
    transaction_id: str | None
    samples: tuple[Sample, ...]


@dataclass(frozen=True, slots=True)
class StopEvent:
    message_id: str
    charge_point_id: str
    transaction_id: str
    meter_stop_wh: int
    stopped_at: datetime
    reason: str | None
    id_tag: str | None
    samples: tuple[Sample, ...]


Event = StartEvent | MeterEvent | StopEvent


def _int(payload: dict[str, Any], name: str, what: str) -> int:
    value = payload.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidEvent(f"{what}: {name} must be an integer, got {value!r}")
    return value


def _opt_int(payload: dict[str, Any], name: str, what: str) -> int | None:
    return None if payload.get(name) is None else _int(payload, name, what)


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
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _default_unit(measurand: str) -> str:
    return "Wh" if measurand.startswith("Energy.") else ""


def parse_samples(meter_values: Any, what: str) -> tuple[Sample, ...]:
    """The numeric samples of an OCPP 1.6 ``meterValue``/``transactionData`` list."""
    if meter_values is None:
        return ()
    if not isinstance(meter_values, list):
        raise InvalidEvent(f"{what}: meter values must be a list")
    samples: list[Sample] = []
    for entry in meter_values:
        if not isinstance(entry, dict):
            raise InvalidEvent(f"{what}: meterValue entries must be objects")
        measured_at = _time(entry.get("timestamp"), what)
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
                value = Decimal(str(raw).strip())
            except InvalidOperation:
                raise InvalidEvent(f"{what}: sampled value {raw!r} is not a number") from None
            if not value.is_finite():
                raise InvalidEvent(f"{what}: sampled value {raw!r} is not finite")
            measurand = str(sv.get("measurand") or ENERGY_REGISTER)
            samples.append(
                Sample(
                    measured_at=measured_at,
                    measurand=measurand,
                    phase=str(sv.get("phase") or ""),
                    location=str(sv.get("location") or ""),
                    context=str(sv.get("context") or ""),
                    unit=str(sv.get("unit") or _default_unit(measurand)),
                    value=value,
                )
            )
    return tuple(samples)


def parse_event(envelope: Envelope) -> Event | None:
    """The session event an envelope carries, or None for other actions/kinds.

    Raises :class:`InvalidEvent` when a session action does not fit OCPP 1.6.
    """
    if envelope.kind != Kind.OCPP_CALL or envelope.action not in SESSION_ACTIONS:
        return None
    p = envelope.payload
    cp = envelope.charge_point_id
    what = f"{envelope.action} from {cp}"
    if envelope.action == "StartTransaction":
        response = envelope.response or {}
        tx = _int(response, "transactionId", what + " (response)")
        return StartEvent(
            message_id=envelope.message_id,
            charge_point_id=cp,
            transaction_id=str(tx),
            connector_id=_int(p, "connectorId", what),
            id_tag=_str(p, "idTag", what),
            meter_start_wh=_int(p, "meterStart", what),
            started_at=_time(p.get("timestamp"), what),
        )
    if envelope.action == "MeterValues":
        tx_id = _opt_int(p, "transactionId", what)
        return MeterEvent(
            message_id=envelope.message_id,
            charge_point_id=cp,
            connector_id=_int(p, "connectorId", what),
            transaction_id=None if tx_id is None else str(tx_id),
            samples=parse_samples(p.get("meterValue"), what),
        )
    # StopTransaction
    reason = p.get("reason")
    id_tag = p.get("idTag")
    return StopEvent(
        message_id=envelope.message_id,
        charge_point_id=cp,
        transaction_id=str(_int(p, "transactionId", what)),
        meter_stop_wh=_int(p, "meterStop", what),
        stopped_at=_time(p.get("timestamp"), what),
        reason=reason if isinstance(reason, str) else None,
        id_tag=id_tag if isinstance(id_tag, str) else None,
        samples=parse_samples(p.get("transactionData"), what),
    )


# --------------------------------------------------------------------------- state


@dataclass(slots=True)
class OpenTransaction:
    """What we know about one running transaction."""

    connector_id: int
    id_tag: str
    meter_start_wh: int
    started_at: datetime
    last_register_wh: int | None = None
    last_register_at: datetime | None = None
    max_register_wh: int | None = None
    sample_count: int = 0
    reasons: tuple[str, ...] = ()


@dataclass(slots=True)
class ChargePointState:
    """Per charge point: open transactions plus bounded memories for de-duplication."""

    open: dict[str, OpenTransaction] = field(default_factory=dict)
    recent_messages: deque[str] = field(default_factory=lambda: deque(maxlen=RECENT_MESSAGES))
    recent_closed: deque[str] = field(default_factory=lambda: deque(maxlen=RECENT_CLOSED))

    def seen(self, message_id: str) -> bool:
        return message_id in self.recent_messages

    def remember(self, message_id: str) -> None:
        self.recent_messages.append(message_id)


def _add_reason(reasons: tuple[str, ...], reason: str) -> tuple[str, ...]:
    return reasons if reason in reasons else (*reasons, reason)


def _floor_wh(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_FLOOR))


def _sample_rows(
    cp: str, connector_id: int, tx_id: str | None, samples: tuple[Sample, ...]
) -> list[Output]:
    return [
        MeterSampleRow(
            measured_at=s.measured_at, charge_point_id=cp, connector_id=connector_id,
            transaction_id=tx_id, measurand=s.measurand, phase=s.phase, location=s.location,
            context=s.context, unit=s.unit, value=s.value,
        )
        for s in samples
    ]


def _absorb(tx: OpenTransaction, samples: tuple[Sample, ...]) -> None:
    """Fold sampled registers into a transaction (count, last/max register, flags)."""
    tx.sample_count += len(samples)
    for s in samples:
        wh = s.register_wh()
        if wh is None:
            continue
        if wh < tx.meter_start_wh:
            tx.reasons = _add_reason(tx.reasons, "sample_below_start")
            continue
        register = _floor_wh(wh)
        if tx.max_register_wh is not None and register < tx.max_register_wh and (
            tx.last_register_at is None or s.measured_at >= tx.last_register_at
        ):
            tx.reasons = _add_reason(tx.reasons, "register_decreased")
        if tx.max_register_wh is None or register > tx.max_register_wh:
            tx.max_register_wh = register
        if tx.last_register_at is None or s.measured_at >= tx.last_register_at:
            tx.last_register_wh = register
            tx.last_register_at = s.measured_at


def _active_row(cp: str, tx_id: str, tx: OpenTransaction) -> SessionRow:
    so_far = tx.max_register_wh if tx.max_register_wh is not None else tx.meter_start_wh
    return SessionRow(
        session_id=session_id_for(cp, tx_id), charge_point_id=cp,
        connector_id=tx.connector_id, transaction_id=tx_id, id_tag=tx.id_tag,
        status="active", started_at=tx.started_at, stopped_at=None,
        meter_start_wh=tx.meter_start_wh, meter_stop_wh=None,
        last_register_wh=tx.last_register_wh, energy_wh=so_far - tx.meter_start_wh,
        energy_source="register", quality="corrected" if tx.reasons else "exact",
        quality_reasons=tx.reasons, stop_reason=None, sample_count=tx.sample_count,
    )


def closed_energy(tx: OpenTransaction, meter_stop_wh: int) -> tuple[int, tuple[str, ...]]:
    """Energy (Wh) of a finished transaction and the quality reasons (module docstring)."""
    reasons = tx.reasons
    if tx.max_register_wh is not None and tx.max_register_wh > meter_stop_wh:
        reasons = _add_reason(reasons, "sample_above_stop")
    if meter_stop_wh < tx.meter_start_wh:
        reasons = _add_reason(reasons, "meter_stop_below_start")
        best = tx.max_register_wh if tx.max_register_wh is not None else tx.meter_start_wh
        return best - tx.meter_start_wh, reasons
    return meter_stop_wh - tx.meter_start_wh, reasons


def apply(
    state: ChargePointState | None, event: Event | None
) -> tuple[ChargePointState, list[Output]]:
    """Fold one parsed event into a charge point's state; return the rows to write."""
    if state is None:
        state = ChargePointState()
    if event is None or state.seen(event.message_id):
        return state, []
    state.remember(event.message_id)
    cp = event.charge_point_id

    if isinstance(event, StartEvent):
        if event.transaction_id in state.open or event.transaction_id in state.recent_closed:
            return state, []
        tx = OpenTransaction(
            connector_id=event.connector_id, id_tag=event.id_tag,
            meter_start_wh=event.meter_start_wh, started_at=event.started_at,
        )
        state.open[event.transaction_id] = tx
        return state, [_active_row(cp, event.transaction_id, tx)]

    if isinstance(event, MeterEvent):
        outputs = _sample_rows(cp, event.connector_id, event.transaction_id, event.samples)
        if event.transaction_id is not None and event.samples:
            running = state.open.get(event.transaction_id)
            if running is not None:
                _absorb(running, event.samples)
                outputs.append(_active_row(cp, event.transaction_id, running))
        return state, outputs

    # StopEvent
    tx_id = event.transaction_id
    if tx_id in state.recent_closed:
        return state, []
    state.recent_closed.append(tx_id)
    open_tx = state.open.pop(tx_id, None)
    if open_tx is None:
        # The start is unknown here; the connector is unknown too, so transaction
        # data samples cannot be keyed and are not written.
        return state, [
            SessionRow(
                session_id=session_id_for(cp, tx_id), charge_point_id=cp, connector_id=None,
                transaction_id=tx_id, id_tag=event.id_tag, status="closed", started_at=None,
                stopped_at=event.stopped_at, meter_start_wh=None,
                meter_stop_wh=event.meter_stop_wh, last_register_wh=None, energy_wh=None,
                energy_source="register", quality="corrected",
                quality_reasons=("start_unknown",), stop_reason=event.reason,
                sample_count=len(event.samples),
            )
        ]
    outputs = _sample_rows(cp, open_tx.connector_id, tx_id, event.samples)
    _absorb(open_tx, event.samples)
    energy, reasons = closed_energy(open_tx, event.meter_stop_wh)
    outputs.append(
        replace(
            _active_row(cp, tx_id, open_tx),
            status="closed", stopped_at=event.stopped_at, meter_stop_wh=event.meter_stop_wh,
            energy_wh=energy, quality="corrected" if reasons else "exact",
            quality_reasons=reasons, stop_reason=event.reason,
        )
    )
    return state, outputs


def update(
    state: ChargePointState | None, envelope: Envelope
) -> tuple[ChargePointState, list[Output]]:
    """``apply(state, parse_event(envelope))``; raises :class:`InvalidEvent`."""
    return apply(state, parse_event(envelope))
