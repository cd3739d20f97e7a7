"""The sessions flow's input events: envelopes of ``ocpp.events`` and
``meter.readings`` turned into :class:`StationMessage` and :class:`SmartMeterReading`.

Both OCPP versions arrive in the normalised form (:mod:`bus.normalized`):
``Envelope.normalized`` when the gateway attached it, else the raw payload is
normalised here (:func:`bus.envelope.normalized_facts`; 1.6 session CALLs of such
envelopes are validated first, :mod:`flows.sessions.validation`). What does not fit
raises :class:`flows.errors.InvalidEvent` -> dead letter. Only the transaction facts
(with the samples and signed meter values) are kept; a message without any (a
heartbeat, say) still advances the station's event time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

import msgspec

from bus.envelope import (
    Envelope,
    Kind,
    decode_envelope,
    decode_facts_envelope,
    is_v201,
    normalized_facts,
)
from bus.normalized import (
    MeterSample,
    Normalized,
    SignedMeterValue,
    TransactionEnd,
    TransactionStart,
    TransactionUpdate,
)
from flows.errors import InvalidEvent
from flows.sessions.validation import SESSION_ACTIONS, integer, validate_v16


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

TxFact = TransactionStart | TransactionUpdate | TransactionEnd
# The fact structs are final (msgspec), so exact type look-ups equal isinstance.
_SESSION_FACT_TYPES = frozenset(
    (TransactionStart, TransactionUpdate, TransactionEnd, MeterSample, SignedMeterValue)
)


def _reading(envelope: Envelope) -> SmartMeterReading:
    p = envelope.payload
    what = f"meter reading for {envelope.charge_point_id}"
    meter_id = p.get("meter_id")
    if not isinstance(meter_id, str) or not meter_id:
        raise InvalidEvent(f"{what}: meter_id must be a non-empty string")
    connector = integer(p, "connector_id", what)
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


def _facts(envelope: Envelope) -> list[Normalized]:
    if envelope.normalized is None and not is_v201(envelope.ocpp_version):
        if envelope.action not in SESSION_ACTIONS:
            return []  # no transaction facts in other 1.6 CALLs
        validate_v16(envelope)
    return normalized_facts(envelope)


def parse_event(envelope: Envelope) -> Event | None:
    """The event an envelope carries for this flow, or None (other kinds).

    Raises :class:`InvalidEvent` for session messages that do not fit.
    """
    if envelope.kind == Kind.METER_READING:
        return _reading(envelope)
    if envelope.kind != Kind.OCPP_CALL:
        return None
    return StationMessage(
        message_id=envelope.message_id,
        charge_point_id=envelope.charge_point_id,
        ocpp_version=envelope.ocpp_version,
        at=envelope.received_at,
        facts=tuple([f for f in _facts(envelope) if type(f) in _SESSION_FACT_TYPES]),
    )


def decode_event(data: bytes | None) -> Event | None:
    """``parse_event(decode_envelope(data))``, faster for OCPP envelopes that carry
    normalised facts: their raw payload is only checked to be a JSON object, not
    decoded. Raises :class:`bus.envelope.EnvelopeError` and :class:`InvalidEvent`
    exactly as those two do (anything unusual takes their path)."""
    env = decode_facts_envelope(data)
    if env is None or env.normalized is None:
        return parse_event(decode_envelope(data))  # raises the EnvelopeError, if any
    return StationMessage(
        message_id=env.message_id,
        charge_point_id=env.charge_point_id,
        ocpp_version=env.ocpp_version,
        at=env.received_at,
        facts=tuple([f for f in env.normalized if type(f) in _SESSION_FACT_TYPES]),
    )
