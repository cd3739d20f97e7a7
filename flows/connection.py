"""A ``station.connection`` envelope (the gateway's online/offline event) as the load
and status flows read it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bus.envelope import Envelope
from flows.errors import InvalidEvent


@dataclass(frozen=True, slots=True)
class ConnectionChange:
    online: bool
    at: datetime
    reason: str  # the gateway's reason ("connected", "closed by station", ...)
    gateway_id: str | None = None  # the replica the event is about


def connection_change(envelope: Envelope) -> ConnectionChange:
    """The change a ``station.connection`` envelope reports; raises
    :class:`InvalidEvent` when its state is neither online nor offline."""
    state = envelope.payload.get("state")
    if state not in ("online", "offline"):
        raise InvalidEvent(f"station connection state must be online/offline: {state!r}")
    reason = envelope.payload.get("reason")
    if not isinstance(reason, str) or not reason:
        reason = state  # older/foreign producers: the state is the best reason we have
    gateway = envelope.payload.get("gateway_id")
    return ConnectionChange(
        state == "online",
        envelope.measured_at,
        reason,
        gateway if isinstance(gateway, str) and gateway else None,
    )
