"""``sessions.closed``: one message per closed charging session.

Key = charge point id (like every topic). ``message_id`` is the session id (hex),
the same on every resend: the flow publishes from a transactional outbox
(at-least-once), so consumers de-duplicate on it. Energy is in whole Wh;
``quality`` (:class:`Quality`) is ``exact`` | ``corrected`` | ``estimated`` |
``missing`` with ``quality_reasons`` (billing should hold back everything but
``exact``; ``missing`` has ``energy_wh`` null: there is no figure at all);
``energy_source`` (:class:`EnergySource`) is ``station_register`` | ``smart_meter`` |
``power_integration``, null without a figure; ``closed_by`` (:class:`ClosedBy`) is
``stop`` | ``next_start`` | ``timeout`` | ``reconciled``; every entry of
``quality_reasons`` is a :class:`QualityReason` (a plain string list on the wire, so that
a consumer of an older release still reads a message with a reason it does not know).
The enums are str enums: on the wire they are the plain strings.

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

from bus.codec import JsonCodec

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


class QualityReason(StrEnum):
    """Why a session's figure is not ``exact`` (or what it stands on despite doubt)."""

    START_UNKNOWN = "start_unknown"  # the start was never seen (2.0.1 Updated/Ended first)
    START_REGISTER_MISSING = "start_register_missing"  # the first sample is the start
    STOP_REGISTER_MISSING = "stop_register_missing"  # the last sample is the stop
    STOP_MISSING = "stop_missing"  # closed by next_start or timeout
    STOP_LATE = "stop_late"  # the stop came after such a close
    SEQ_NO_GAP = "seq_no_gap"
    SEQ_NO_REUSED = "seq_no_reused"  # two distinct events with one seqNo
    OFFLINE = "offline"  # an event was sent offline
    CONFLICTING_REGISTER_VALUES = "conflicting_register_values"
    REGISTER_MISSING = "register_missing"  # not two register readings
    REGISTER_OUTLIER = "register_outlier"
    REGISTER_JUMP = "register_jump"
    START_REGISTER_IMPLAUSIBLE = "start_register_implausible"
    REGISTER_ROLLOVER = "register_rollover"
    REGISTER_RESET = "register_reset"
    REGISTER_DECREASED = "register_decreased"
    SAMPLE_ABOVE_STOP = "sample_above_stop"  # the stop register is trusted over a sample
    SMART_METER_INCOMPLETE = "smart_meter_incomplete"  # a billing meter lacks a side
    SMART_METER_MISMATCH = "smart_meter_mismatch"  # a meter disagrees with the station
    STATE_LOST = "state_lost"  # closed by reconciliation (the flow lost its state)


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


_codec = JsonCodec(SessionClosed)
encode_session_closed = _codec.encode
decode_session_closed = _codec.decode


def session_closed_from_row(row: dict[str, Any]) -> SessionClosed:
    """From a JSON object with the session's columns (``sessions_outbox.payload``)."""
    return msgspec.convert(row, SessionClosed, strict=False)
