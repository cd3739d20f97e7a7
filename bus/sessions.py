"""``sessions.closed``: one message per closed charging session.

Key = charge point id (like every topic). ``message_id`` is the session id (hex),
the same on every resend: the flow publishes from a transactional outbox
(at-least-once), so consumers de-duplicate on it. Energy is in whole Wh;
``quality`` (:class:`Quality`) is ``exact`` | ``corrected`` | ``estimated`` |
``missing`` with ``quality_reasons`` (billing should hold back everything but
``exact``; ``missing`` has ``energy_wh`` null: there is no figure at all);
``energy_source`` (:class:`EnergySource`) is ``station_register`` | ``smart_meter`` |
``power_integration``, null without a figure; ``closed_by`` (:class:`ClosedBy`) is
``stop`` | ``next_start`` | ``timeout`` | ``reconciled``. The enums are str enums:
on the wire they are the plain strings.

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
from enum import StrEnum
from typing import Any

import msgspec

SCHEMA_VERSION = 1
KIND = "session.closed"


class Quality(StrEnum):
    EXACT = "exact"  # registers agree: billable
    CORRECTED = "corrected"  # a figure, adjusted or standing on doubtful evidence
    ESTIMATED = "estimated"  # integrated from power (no register figure)
    MISSING = "missing"  # no figure at all (energy_wh null)


class EnergySource(StrEnum):
    STATION_REGISTER = "station_register"
    SMART_METER = "smart_meter"
    POWER_INTEGRATION = "power_integration"


class ClosedBy(StrEnum):
    STOP = "stop"  # StopTransaction / TransactionEvent Ended
    NEXT_START = "next_start"  # a later session began on the connector
    TIMEOUT = "timeout"  # nothing heard of it for the idle timeout
    RECONCILED = "reconciled"  # the sessions flow restarted without its state


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
    energy_source: EnergySource | None
    quality: Quality
    quality_reasons: list[str] = msgspec.field(default_factory=list)
    id_tag: str | None = None
    meter_start_wh: int | None = None
    meter_stop_wh: int | None = None
    station_energy_wh: int | None = None
    smart_meter_energy_wh: int | None = None
    smart_meter_id: str | None = None
    closed_by: ClosedBy | None = None
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
