"""The message envelope every producer writes and every consumer reads.

One envelope per fact: a CALL a charge point sent (with the answer the gateway
gave), later also meter readings and connection events. Consumers de-duplicate
on ``message_id``; the Kafka key is the charge point id.

>>> from datetime import UTC, datetime
>>> t = datetime(2026, 1, 1, tzinfo=UTC)
>>> env = Envelope(message_id="m1", charge_point_id="CP1", received_at=t,
...                measured_at=t, kind=Kind.OCPP_CALL, action="Heartbeat", payload={})
>>> decode_envelope(encode_envelope(env)) == env
True
>>> decode_envelope(b"not json")
Traceback (most recent call last):
...
bus.envelope.EnvelopeError: envelope is not valid JSON: ...
"""

from __future__ import annotations

import itertools
import os
import time
from datetime import datetime
from enum import StrEnum
from typing import Any

import msgspec

from bus.codec import decode_versioned
from bus.normalized import Normalized, normalize_v16, normalize_v201

SCHEMA_VERSION = 1


class Kind(StrEnum):
    """What an envelope carries."""

    OCPP_CALL = "ocpp.call"  # a CALL from a charge point, with the gateway's answer
    METER_READING = "meter.reading"  # a smart meter reading, bridged from MQTT (ingest.meters)
    # A station came online / went offline (gateway; payload {"state": "online"|"offline",
    # "reason": str, "gateway_id": str}), published to ocpp.events keyed by the station.
    STATION_CONNECTION = "station.connection"
    # Suspicious activity (gateway: repeated failed logins of a station or source IP,
    # an idTag used at two stations at once), published to ``alerts`` keyed by the
    # station; payload {"alert": str, ..., "gateway_id": str}.
    SECURITY_ALERT = "security.alert"


class Envelope(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=False):
    message_id: str
    charge_point_id: str
    received_at: datetime
    measured_at: datetime
    kind: Kind
    payload: dict[str, Any]
    schema_version: int = SCHEMA_VERSION
    ocpp_version: str | None = None
    action: str | None = None
    # The OCPP-J message id of the CALL (not unique across stations or retries).
    unique_id: str | None = None
    # The payload the gateway answers with once the event is stored, e.g. the
    # transactionId it assigned in a StartTransaction.conf.
    response: dict[str, Any] | None = None
    # Version-independent facts in this CALL (see bus.normalized), next to the raw
    # payload; None when the producer did not normalise (older envelopes).
    normalized: list[Normalized] | None = None


class EnvelopeError(ValueError):
    """A message that is not a valid envelope; it belongs on the dead-letter topic."""


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Envelope)


class _MessageIds:
    """UUIDv7 (RFC 9562) as 32 hex digits: the creation time in ms (48 bits), then
    74 bits that are a random tag drawn once per process (32 bits) and a counter that
    starts at a random value (42 bits). Unique across replicas and restarts like
    uuid4 (ids can only repeat within the same millisecond in two processes that drew
    the same 74 random bits), time-ordered, and about ten times cheaper: one
    ``os.urandom`` per process instead of one per id (``uuid.uuid4``). A forked child
    draws its own tag."""

    def __init__(self) -> None:
        self.reseed()

    def reseed(self) -> None:
        seed = int.from_bytes(os.urandom(10), "big")
        tag = seed >> 48  # 32 bits
        # rand_a = the tag's top 12 bits; rand_b = its low 20 bits, then the counter
        self._high = (0x7 << 12) | (tag >> 20)  # version 7 | rand_a: bits 64..79
        self._low = (0b10 << 62) | ((tag & 0xFFFFF) << 42)  # variant | tag: bits 0..63
        self._counter = itertools.count(seed & (2**42 - 1))

    def new(self) -> str:
        low = self._low | (next(self._counter) & (2**42 - 1))
        return f"{time.time_ns() // 1_000_000 & (2**48 - 1):012x}{self._high:04x}{low:016x}"


_message_ids = _MessageIds()
os.register_at_fork(after_in_child=_message_ids.reseed)


def new_message_id() -> str:
    """A fresh envelope id (see :class:`_MessageIds`)."""
    return _message_ids.new()


def encode_envelope(envelope: Envelope) -> bytes:
    return _encoder.encode(envelope)


def decode_envelope(data: bytes | None) -> Envelope:
    if data is None:
        raise EnvelopeError("message has no value")
    envelope = decode_versioned(_decoder, data, "envelope", EnvelopeError, SCHEMA_VERSION)
    if envelope.received_at.tzinfo is None or envelope.measured_at.tzinfo is None:
        raise EnvelopeError("envelope times must carry a UTC offset")
    return envelope


class FactsEnvelope(msgspec.Struct, kw_only=True, frozen=True):
    """:class:`Envelope` with the raw payload and response left undecoded: what a
    consumer of the normalised facts needs (building the camelCase dicts costs
    about as much as the rest of an envelope's decoding). See :func:`decode_facts_envelope`."""

    message_id: str
    charge_point_id: str
    received_at: datetime
    measured_at: datetime
    kind: Kind
    payload: msgspec.Raw
    schema_version: int = SCHEMA_VERSION
    ocpp_version: str | None = None
    action: str | None = None
    unique_id: str | None = None
    response: msgspec.Raw = msgspec.Raw(b"null")
    normalized: list[Normalized] | None = None


_facts_decoder = msgspec.json.Decoder(FactsEnvelope)
_OBJECT, _NULL = ord("{"), ord("n")


def decode_facts_envelope(data: bytes | None) -> FactsEnvelope | None:
    """The OCPP envelope in ``data`` when it carries normalised facts and passes
    every check :func:`decode_envelope` makes (its payload only checked to be a
    JSON object); None for anything else -- other kinds, envelopes without facts,
    invalid ones -- which the caller then takes through :func:`decode_envelope`
    (raising its :class:`EnvelopeError`).

    >>> from datetime import UTC, datetime
    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> env = Envelope(message_id="m1", charge_point_id="CP1", received_at=t,
    ...                measured_at=t, kind=Kind.OCPP_CALL, action="Heartbeat", payload={},
    ...                normalized=[])
    >>> decode_facts_envelope(encode_envelope(env)).normalized
    []
    >>> decode_facts_envelope(b"not json") is None, decode_facts_envelope(None) is None
    (True, True)
    """
    if data is None:
        return None
    try:
        env = _facts_decoder.decode(data)
    except msgspec.DecodeError:
        return None
    if (
        env.normalized is None
        or env.kind != Kind.OCPP_CALL
        or env.schema_version > SCHEMA_VERSION
        or env.received_at.tzinfo is None
        or env.measured_at.tzinfo is None
        or memoryview(env.payload)[0] != _OBJECT
        or memoryview(env.response)[0] not in (_OBJECT, _NULL)
    ):
        return None
    return env


def is_v201(ocpp_version: str | None) -> bool:
    """Whether a station speaks OCPP 2.x (2.0.1 today); 1.6 otherwise."""
    return (ocpp_version or "").startswith("2")


def normalized_facts(envelope: Envelope) -> list[Normalized]:
    """The version-independent facts of an OCPP CALL: those the gateway put in the
    envelope, else (envelopes written before it did, or by another producer) the
    normaliser of the envelope's OCPP version run on its payload and response.

    >>> from datetime import UTC, datetime
    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> env = Envelope(message_id="m1", charge_point_id="CP1", received_at=t,
    ...                measured_at=t, kind=Kind.OCPP_CALL, ocpp_version="1.6",
    ...                action="StatusNotification",
    ...                payload={"connectorId": 1, "status": "Charging", "errorCode": "NoError"})
    >>> [(f.connector_id, f.status) for f in normalized_facts(env)]
    [(1, 'Charging')]
    """
    if envelope.normalized is not None:
        return list(envelope.normalized)
    if envelope.action is None:
        return []
    normalize = normalize_v201 if is_v201(envelope.ocpp_version) else normalize_v16
    return normalize(
        envelope.charge_point_id,
        envelope.action,
        envelope.payload,
        envelope.response,
        envelope.received_at,
    )
