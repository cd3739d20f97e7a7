"""JSON (msgspec) for the messages of the Kafka contract: a typed encode/decode pair
per message type, and the checked decoding of the versioned messages a consumer must
not take on trust (envelopes, commands), with the errors they put on dead letters.

>>> import msgspec
>>> class Ping(msgspec.Struct, frozen=True):
...     schema_version: int = 1
>>> codec = JsonCodec(Ping)
>>> codec.decode(codec.encode(Ping())) == Ping()
True
>>> decode_versioned(codec.decoder, b'{"schema_version": 2}', "ping", ValueError, 1)
Traceback (most recent call last):
...
ValueError: ping schema_version 2 is newer than supported 1
"""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar

import msgspec

T = TypeVar("T")


class JsonCodec(Generic[T]):
    """The JSON encoding and decoding of one message type."""

    def __init__(self, message_type: type[T]) -> None:
        self.encoder = msgspec.json.Encoder()
        self.decoder = msgspec.json.Decoder(message_type)

    def encode(self, message: T) -> bytes:
        return self.encoder.encode(message)

    def decode(self, data: bytes) -> T:
        return self.decoder.decode(data)


class _Versioned(Protocol):
    @property
    def schema_version(self) -> int: ...


V = TypeVar("V", bound=_Versioned)


def decode_versioned(
    decoder: msgspec.json.Decoder[V],
    data: bytes,
    what: str,
    error: type[Exception],
    supported: int,
) -> V:
    """``data`` decoded; else ``error`` saying whether it is not JSON, does not match
    the schema or has a newer ``schema_version`` than ``supported``."""
    try:
        value = decoder.decode(data)
    except msgspec.DecodeError as exc:
        text = str(exc)
        if text.startswith(("JSON is malformed", "Input data was truncated")):
            raise error(f"{what} is not valid JSON: {text}") from None
        raise error(f"{what} does not match schema: {text}") from None
    if value.schema_version > supported:
        raise error(
            f"{what} schema_version {value.schema_version} is newer than supported {supported}"
        )
    return value
