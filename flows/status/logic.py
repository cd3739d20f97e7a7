"""Connector status history and current availability: pure step logic, no I/O.

Keyed by charge point, :func:`apply` folds :class:`StatusEvent` s (from
:func:`parse_envelope`) into :class:`StationStatus` and emits

* a :class:`HistoryRow` for every ``ConnectorStatus`` fact (both OCPP versions, via
  ``Envelope.normalized``; the sink inserts them idempotently on
  ``(charge_point_id, connector_id, at, status)``), and
* an :class:`AvailabilityRow` per connector whose current state changed.

Connector identity: ``connector_id`` is the 1.6 connector / 2.0.1 EVSE id (what a
driver plugs into; 0 = the station as a whole); the 2.0.1 connector number inside
the EVSE is kept in ``ocpp_connector_id``.

Current status: the newest ``ConnectorStatus`` by its own timestamp (a status older
than the current one, e.g. queued while offline and sent late, goes to history
only). Availability is that status, except ``Offline`` while the station's last
``STATION_CONNECTION`` event said offline: offline overrides every connector of
the station until an online event. Connection events are applied in arrival order
(the gateway's clock and the station's clock are not comparable).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from bus.envelope import Envelope, Kind
from bus.normalized import ConnectorStatus, Normalized, normalize_v16, normalize_v201

OFFLINE = "Offline"


class InvalidEvent(ValueError):
    """An envelope this flow should understand but cannot (goes to dead letters)."""


@dataclass(frozen=True, slots=True)
class ConnectionChange:
    online: bool
    at: datetime


StatusFact = ConnectorStatus | ConnectionChange


@dataclass(frozen=True, slots=True)
class StatusEvent:
    charge_point_id: str
    facts: tuple[StatusFact, ...]


@dataclass(frozen=True, slots=True)
class HistoryRow:
    charge_point_id: str
    connector_id: int
    at: datetime
    status: str
    ocpp_status: str
    ocpp_connector_id: int | None
    error_code: str | None


@dataclass(frozen=True, slots=True)
class AvailabilityRow:
    charge_point_id: str
    connector_id: int
    status: str  # connector status, or Offline
    connector_status: str
    ocpp_status: str
    ocpp_connector_id: int | None
    error_code: str | None
    status_at: datetime
    online: bool
    connection_changed_at: datetime | None
    updated_at: datetime  # time of the fact that produced this row


Output = HistoryRow | AvailabilityRow


def _facts_of(envelope: Envelope) -> list[Normalized]:
    if envelope.normalized is not None:
        return list(envelope.normalized)
    if envelope.action != "StatusNotification":
        return []
    normalize = normalize_v201 if envelope.ocpp_version == "2.0.1" else normalize_v16
    return normalize(envelope.charge_point_id, envelope.action, envelope.payload,
                     envelope.response, envelope.received_at)


def parse_envelope(envelope: Envelope) -> StatusEvent | None:
    """The status facts in one envelope; None when there are none."""
    facts: list[StatusFact] = []
    if envelope.kind == Kind.OCPP_CALL:
        facts = [f for f in _facts_of(envelope) if isinstance(f, ConnectorStatus)]
    elif envelope.kind == Kind.STATION_CONNECTION:
        state = envelope.payload.get("state")
        if state not in ("online", "offline"):
            raise InvalidEvent(f"station connection state must be online/offline: {state!r}")
        facts = [ConnectionChange(state == "online", envelope.measured_at)]
    if not facts:
        return None
    return StatusEvent(envelope.charge_point_id, tuple(facts))


@dataclass
class StationStatus:
    connectors: dict[int, ConnectorStatus] = field(default_factory=dict)
    online: bool = True
    connection_changed_at: datetime | None = None


def availability(cp: str, state: StationStatus, connector_id: int, updated_at: datetime
                 ) -> AvailabilityRow:
    s = state.connectors[connector_id]
    return AvailabilityRow(
        charge_point_id=cp, connector_id=connector_id,
        status=s.status if state.online else OFFLINE, connector_status=s.status,
        ocpp_status=s.ocpp_status, ocpp_connector_id=s.connector_id, error_code=s.error_code,
        status_at=s.timestamp, online=state.online,
        connection_changed_at=state.connection_changed_at, updated_at=updated_at,
    )


def apply(state: StationStatus | None, event: StatusEvent
          ) -> tuple[StationStatus, list[Output]]:
    state = state if state is not None else StationStatus()
    out: list[Output] = []
    cp = event.charge_point_id
    for fact in event.facts:
        if isinstance(fact, ConnectionChange):
            changed = fact.online != state.online
            state.online = fact.online
            state.connection_changed_at = fact.at
            if changed:
                out.extend(availability(cp, state, cid, fact.at)
                           for cid in sorted(state.connectors))
            continue
        cid = fact.evse_id
        out.append(HistoryRow(cp, cid, fact.timestamp, fact.status, fact.ocpp_status,
                              fact.connector_id, fact.error_code))
        current = state.connectors.get(cid)
        if current is not None and fact.timestamp < current.timestamp:
            continue  # late: history only
        state.connectors[cid] = fact
        if current != fact:
            out.append(availability(cp, state, cid, fact.timestamp))
    return state, out
