"""What the faults flow reads: the envelopes :class:`models.station.StationDiagnostics`
takes, from ``ocpp.events`` (OCPP calls, ``station.connection``) and ``alerts`` (the
gateway's ``security.alert``, unless about an id that is not provisioned). The flow's own
``fault.alert`` messages on ``alerts`` and envelopes of other kinds are skipped; anything
else that is not an envelope raises :class:`bus.envelope.EnvelopeError` (a dead letter,
:mod:`flows.source`).

>>> from datetime import UTC, datetime
>>> from bus.envelope import Envelope, Kind, encode_envelope
>>> t = datetime(2026, 7, 1, 12, tzinfo=UTC)
>>> env = Envelope(message_id="m1", charge_point_id="CP1", received_at=t, measured_at=t,
...     kind=Kind.STATION_CONNECTION, payload={"state": "online"})
>>> decode_event(encode_envelope(env)).charge_point_id
'CP1'
>>> decode_event(b'{"kind": "fault.alert", "alert_id": "a1"}') is None
True
>>> decode_event(b'{"kind": "other"}')
Traceback (most recent call last):
...
bus.envelope.EnvelopeError: envelope does not match schema: ...
"""

from __future__ import annotations

import msgspec

from bus.alerts import KIND as FAULT_ALERT
from bus.envelope import Envelope, EnvelopeError, Kind, decode_envelope
from models.security import names_a_known_station

USED_KINDS = frozenset({Kind.OCPP_CALL, Kind.STATION_CONNECTION, Kind.SECURITY_ALERT})


class _Kinded(msgspec.Struct):
    kind: str = ""


_kind_decoder = msgspec.json.Decoder(_Kinded)


def is_fault_alert(data: bytes) -> bool:
    """Whether ``data`` is a ``fault.alert`` message (:class:`bus.alerts.FaultAlert`)."""
    try:
        return _kind_decoder.decode(data).kind == FAULT_ALERT
    except msgspec.DecodeError:
        return False


def decode_event(data: bytes | None) -> Envelope | None:
    """The envelope in a Kafka message's value when the diagnostics use it, else None;
    raises ``EnvelopeError`` for what is neither an envelope nor a fault alert."""
    try:
        envelope = decode_envelope(data)
    except EnvelopeError:
        if data is not None and is_fault_alert(data):
            return None
        raise
    if envelope.kind not in USED_KINDS:
        return None
    if envelope.kind is Kind.SECURITY_ALERT and not names_a_known_station(envelope):
        return None  # no state for ids that are not provisioned
    return envelope
