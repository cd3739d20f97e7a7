"""A station's connector status history and current availability.

Keyed by charge point, :func:`apply` folds :class:`flows.status.parse.StatusEvent` s
into :class:`StationStatus` and emits

* a :class:`HistoryRow` for every ``ConnectorStatus`` fact (both OCPP versions, via
  ``Envelope.normalized``) and per connector for a change of the station's
  connection (below); the sink inserts them idempotently on
  ``(charge_point_id, connector_id, at, status)``, and
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

Offline periods in the history: when the station goes offline (an ``offline``
event while it was online), every known connector of the station (connector 0
too, if the station reported it) gets an ``Offline`` row at the event's time
(``ocpp_status`` ``Offline``, ``reason`` = the gateway's reason). When it comes
back (``online`` while it was offline), every known connector gets a row with its
last known status at the online event's time (``reason`` = the online reason,
``connected``), which ends the offline period - unless the connector's current
status is already stamped at or after that time (a StatusNotification from the
reconnected station arrived first: its own row ends the period). Rows derived
from connection events carry a ``reason``; rows the station reported have none.

An ``offline`` about a replica other than the one the station was last ``online``
at is stale and ignored: the station moved (a rolling restart: the old replica's
offline can arrive after the new one's online), or a sweeper published the
connections of a replica it took for dead after the station had reconnected
elsewhere (``ingest.gateway.liveness``).

A repeated event (``offline`` while offline, ``online`` while online: at-least-once
delivery, a reconnect within the gateway's grace period) emits nothing, and a
replay emits the same rows with the same keys, which the sink skips. A station
with no known connector gets no history rows (nor availability rows). A
StatusNotification while offline goes to the history as usual and becomes the
connector's current status, but availability stays ``Offline``; it is what the
online event restores. A status the station queued while offline and sends after
the online event lands in the history at its own (earlier) time; the restore row
shows what was known at the reconnection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from bus.normalized import ConnectorStatus
from flows.connection import ConnectionChange
from flows.status.parse import StatusEvent

OFFLINE = "Offline"


@dataclass(frozen=True, slots=True)
class HistoryRow:
    charge_point_id: str
    connector_id: int
    at: datetime
    status: str
    ocpp_status: str
    ocpp_connector_id: int | None
    error_code: str | None
    # Set on rows derived from a station.connection event (Offline, or the status
    # restored when the station is back online); None on statuses the station sent.
    reason: str | None = None


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


@dataclass
class StationStatus:
    connectors: dict[int, ConnectorStatus] = field(default_factory=dict)
    online: bool = True
    connection_changed_at: datetime | None = None
    gateway_id: str | None = None  # the replica the station was last online at


def availability(
    cp: str, state: StationStatus, connector_id: int, updated_at: datetime
) -> AvailabilityRow:
    s = state.connectors[connector_id]
    return AvailabilityRow(
        charge_point_id=cp,
        connector_id=connector_id,
        status=s.status if state.online else OFFLINE,
        connector_status=s.status,
        ocpp_status=s.ocpp_status,
        ocpp_connector_id=s.connector_id,
        error_code=s.error_code,
        status_at=s.timestamp,
        online=state.online,
        connection_changed_at=state.connection_changed_at,
        updated_at=updated_at,
    )


def connection_history(
    cp: str, state: StationStatus, connector_id: int, change: ConnectionChange
) -> HistoryRow | None:
    """The history row that a change of the station's connection writes for one
    connector: ``Offline``, or back online the last known status (None when the
    connector already reported a status stamped at or after the reconnection)."""
    if not change.online:
        return HistoryRow(cp, connector_id, change.at, OFFLINE, OFFLINE, None, None, change.reason)
    s = state.connectors[connector_id]
    if s.timestamp >= change.at:
        return None
    return HistoryRow(
        cp,
        connector_id,
        change.at,
        s.status,
        s.ocpp_status,
        s.connector_id,
        s.error_code,
        change.reason,
    )


def _connection(cp: str, state: StationStatus, fact: ConnectionChange, out: list[Output]) -> None:
    if (
        not fact.online
        and state.online
        and fact.gateway_id is not None
        and state.gateway_id is not None
        and fact.gateway_id != state.gateway_id
    ):
        return  # a stale offline: the station is online at another replica
    if fact.online:
        state.gateway_id = fact.gateway_id
    changed = fact.online != state.online
    state.online = fact.online
    state.connection_changed_at = fact.at
    if changed:
        for cid in sorted(state.connectors):
            row = connection_history(cp, state, cid, fact)
            if row is not None:
                out.append(row)
            out.append(availability(cp, state, cid, fact.at))


def _status(cp: str, state: StationStatus, fact: ConnectorStatus, out: list[Output]) -> None:
    cid = fact.evse_id
    out.append(
        HistoryRow(
            cp,
            cid,
            fact.timestamp,
            fact.status,
            fact.ocpp_status,
            fact.connector_id,
            fact.error_code,
        )
    )
    current = state.connectors.get(cid)
    if current is not None and fact.timestamp < current.timestamp:
        return  # late: history only
    state.connectors[cid] = fact
    if current != fact:
        out.append(availability(cp, state, cid, fact.timestamp))


def apply(state: StationStatus | None, event: StatusEvent) -> tuple[StationStatus, list[Output]]:
    state = state if state is not None else StationStatus()
    out: list[Output] = []
    cp = event.charge_point_id
    for fact in event.facts:
        if isinstance(fact, ConnectionChange):
            _connection(cp, state, fact, out)
        else:
            _status(cp, state, fact, out)
    return state, out
