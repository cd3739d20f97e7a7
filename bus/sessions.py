"""``sessions.closed``: one message per closed charging session.

Key = charge point id (like every topic). ``message_id`` is the session id (hex),
the same on every resend: the flow publishes from a transactional outbox
(at-least-once), so consumers de-duplicate on it. Energy is in whole Wh;
``quality`` is ``exact`` | ``corrected`` | ``estimated`` with ``quality_reasons``
(billing should hold back everything but ``exact``); ``energy_source`` is
``station_register`` | ``smart_meter`` | ``power_integration``.

>>> from datetime import UTC, datetime
>>> t = datetime(2026, 1, 1, tzinfo=UTC)
>>> m = SessionClosed(message_id="ab", session_id="ab", charge_point_id="CP1",
...     connector_id=1, transaction_id="7", started_at=t, stopped_at=t, closed_at=t,
...     energy_wh=1200, energy_source="station_register", quality="exact")
>>> decode_session_closed(encode_session_closed(m)) == m
True
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

SCHEMA_VERSION = 1
KIND = "session.closed"


class SessionClosed(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=False):
    message_id: str
    session_id: str
    charge_point_id: str
    connector_id: int
    transaction_id: str
    started_at: datetime
    stopped_at: datetime | None
    closed_at: datetime
    energy_wh: int | None
    energy_source: str | None
    quality: str
    quality_reasons: list[str] = msgspec.field(default_factory=list)
    id_tag: str | None = None
    meter_start_wh: int | None = None
    meter_stop_wh: int | None = None
    station_energy_wh: int | None = None
    smart_meter_energy_wh: int | None = None
    smart_meter_id: str | None = None
    closed_by: str | None = None
    stop_reason: str | None = None
    ocpp_version: str | None = None
    kind: str = KIND
    schema_version: int = SCHEMA_VERSION


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(SessionClosed)


def encode_session_closed(message: SessionClosed) -> bytes:
    return _encoder.encode(message)


def decode_session_closed(data: bytes) -> SessionClosed:
    return _decoder.decode(data)


def session_closed_from_row(row: dict[str, Any]) -> SessionClosed:
    """From a JSON object with the session's columns (``sessions_outbox.payload``)."""
    return msgspec.convert(row, SessionClosed, strict=False)
