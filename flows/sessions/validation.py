"""What a session message must carry before the normaliser reads it: pure checks that
raise :class:`flows.errors.InvalidEvent` (-> dead letter).

Envelopes with the gateway's normalised facts were checked at the gateway; older
envelopes carry only the raw 1.6 payload, and the normaliser skips what does not fit
rather than refusing it, so a session CALL that does not fit OCPP 1.6 is refused here.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from bus.envelope import Envelope
from bus.times import parse_rfc3339
from flows.errors import InvalidEvent

SESSION_ACTIONS = frozenset({"StartTransaction", "MeterValues", "StopTransaction"})


def integer(payload: dict[str, Any], name: str, what: str) -> int:
    value = payload.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidEvent(f"{what}: {name} must be an integer, got {value!r}")
    return value


def text(payload: dict[str, Any], name: str, what: str) -> str:
    value = payload.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidEvent(f"{what}: {name} must be a non-empty string, got {value!r}")
    return value


def timestamp(value: Any, what: str) -> datetime:
    if not isinstance(value, str):
        raise InvalidEvent(f"{what}: timestamp must be a string, got {value!r}")
    try:
        return parse_rfc3339(value)
    except ValueError:
        raise InvalidEvent(f"{what}: timestamp {value!r} is not ISO 8601") from None


def _check_sampled_value(sv: Any, what: str) -> None:
    if not isinstance(sv, dict):
        raise InvalidEvent(f"{what}: sampledValue entries must be objects")
    if sv.get("format") == "SignedData":
        return
    raw = sv.get("value")
    if not isinstance(raw, str | int) or isinstance(raw, bool):
        raise InvalidEvent(f"{what}: sampled value must be a string, got {raw!r}")
    try:
        number = Decimal(str(raw).strip())
    except InvalidOperation:
        raise InvalidEvent(f"{what}: sampled value {raw!r} is not a number") from None
    if not number.is_finite():
        raise InvalidEvent(f"{what}: sampled value {raw!r} is not finite")


def _check_meter_values(meter_values: Any, what: str) -> None:
    """Reject 1.6 meterValue/transactionData that the normaliser would silently skip."""
    if meter_values is None:
        return
    if not isinstance(meter_values, list):
        raise InvalidEvent(f"{what}: meter values must be a list")
    for entry in meter_values:
        if not isinstance(entry, dict):
            raise InvalidEvent(f"{what}: meterValue entries must be objects")
        timestamp(entry.get("timestamp"), what)
        sampled = entry.get("sampledValue")
        if not isinstance(sampled, list) or not sampled:
            raise InvalidEvent(f"{what}: sampledValue must be a non-empty list")
        for sv in sampled:
            _check_sampled_value(sv, what)


def validate_v16(envelope: Envelope) -> None:
    """Raise :class:`InvalidEvent` when a 1.6 session CALL does not fit OCPP 1.6."""
    p = envelope.payload
    what = f"{envelope.action} from {envelope.charge_point_id}"
    if envelope.action == "StartTransaction":
        integer(envelope.response or {}, "transactionId", what + " (response)")
        integer(p, "connectorId", what)
        text(p, "idTag", what)
        integer(p, "meterStart", what)
        timestamp(p.get("timestamp"), what)
    elif envelope.action == "MeterValues":
        integer(p, "connectorId", what)
        if p.get("transactionId") is not None:
            integer(p, "transactionId", what)
        _check_meter_values(p.get("meterValue"), what)
    elif envelope.action == "StopTransaction":
        integer(p, "transactionId", what)
        integer(p, "meterStop", what)
        timestamp(p.get("timestamp"), what)
        _check_meter_values(p.get("transactionData"), what)
