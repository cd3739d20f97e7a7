"""What of an envelope the message history keeps (pure): every ``ocpp.call`` envelope
(a CALL a station sent, with the gateway's answer) as one :class:`MessageRow`, its
payload and answer masked (``bus.redaction.redact_ocpp``); other kinds (connection
events, meter readings) are not OCPP messages and are skipped. And when the
retention delete is due (:class:`RetentionClock`)."""

from __future__ import annotations

from dataclasses import dataclass

from bus.envelope import Envelope, Kind, decode_envelope
from bus.redaction import redact_ocpp
from store.messages import MessageRow


def message_row(envelope: Envelope) -> MessageRow | None:
    """The history row of ``envelope``; None when it is not a station's CALL."""
    if envelope.kind != Kind.OCPP_CALL:
        return None
    return MessageRow(
        message_id=envelope.message_id,
        charge_point_id=envelope.charge_point_id,
        received_at=envelope.received_at,
        action=envelope.action,
        ocpp_version=envelope.ocpp_version,
        unique_id=envelope.unique_id,
        payload=redact_ocpp(envelope.payload),
        response=None if envelope.response is None else redact_ocpp(envelope.response),
    )


def decode_event(value: bytes | None) -> MessageRow | None:
    """The flow's decoder (``flows.source.DecodeEvent``): EnvelopeError for what is
    not an envelope (a dead letter)."""
    return message_row(decode_envelope(value))


@dataclass
class RetentionClock:
    """Due at the first check, then every ``interval_s`` (monotonic seconds).

    >>> clock = RetentionClock(60.0)
    >>> clock.due(0.0), clock.due(59.0), clock.due(60.0), clock.due(61.0)
    (True, False, True, False)
    """

    interval_s: float
    last: float | None = None

    def due(self, now: float) -> bool:
        if self.last is not None and now - self.last < self.interval_s:
            return False
        self.last = now
        return True
