"""The envelope every builder of OCPP calls ends in, and telemetry time as OCPP writes it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bus.envelope import Envelope, Kind, new_message_id
from bus.normalized import Normalized


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def ocpp_call(
    cp: str,
    action: str,
    payload: dict[str, Any],
    *,
    at: datetime,
    version: str,
    response: dict[str, Any] | None,
    normalized: list[Normalized] | None = None,
    unique_id: str = "u1",
    message_id: str | None = None,
) -> Envelope:
    """A CALL as the gateway publishes it: received and measured at ``at``."""
    return Envelope(
        message_id=message_id or new_message_id(),
        charge_point_id=cp,
        received_at=at,
        measured_at=at,
        kind=Kind.OCPP_CALL,
        ocpp_version=version,
        action=action,
        unique_id=unique_id,
        payload=payload,
        response=response,
        normalized=normalized,
    )
