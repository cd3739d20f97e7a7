"""The Kafka contract: topic names, the message envelope, serde and client helpers."""

from bus.envelope import (
    SCHEMA_VERSION,
    Envelope,
    EnvelopeError,
    Kind,
    decode_envelope,
    encode_envelope,
    new_message_id,
)
from bus.topics import Topics

__all__ = [
    "SCHEMA_VERSION",
    "Envelope",
    "EnvelopeError",
    "Kind",
    "Topics",
    "decode_envelope",
    "encode_envelope",
    "new_message_id",
]
