"""What the CSMS's commands change on a simulated station, kept across reconnections:
the configuration store, charging profiles, availability, reservations, the local list,
the transactions running and the stops asked for, and every CALL received.

Pure (no I/O): the handlers (``handlers.v16``, ``handlers.v201``) translate a CALL
into these decisions, the sessions read them (``power_limit_w``, ``take_stop``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ingest.simulator.charging_profiles import (
    PURPOSES,
    InstalledProfile,
    connector_limit_w,
    station_cap_w,
)
from ingest.simulator.physics import Rating


@dataclass(slots=True)
class Setting:
    value: str
    read_only: bool


# 1.6 configuration keys: key -> (value, read-only).
CONFIG_16: dict[str, tuple[str, bool]] = {
    "HeartbeatInterval": ("300", False),
    "MeterValueSampleInterval": ("60", False),
    "AuthorizeRemoteTxRequests": ("false", False),
    "LocalAuthListEnabled": ("true", False),
    "AuthorizationCacheEnabled": ("true", False),
    "ConnectionTimeOut": ("60", False),
    "NumberOfConnectors": ("1", True),
    "ChargeProfileMaxStackLevel": ("8", True),
    "SupportedFeatureProfiles": (
        "Core,FirmwareManagement,LocalAuthListManagement,Reservation,SmartCharging,RemoteTrigger",
        True,
    ),
}

# 2.0.1 variables: (component, variable) -> (value, read-only).
VARIABLES_201: dict[tuple[str, str], tuple[str, bool]] = {
    ("OCPPCommCtrlr", "HeartbeatInterval"): ("300", False),
    ("SampledDataCtrlr", "TxUpdatedInterval"): ("60", False),
    ("AuthCtrlr", "AuthorizeRemoteStart"): ("false", False),
    ("AuthCtrlr", "Enabled"): ("true", False),
    ("LocalAuthListCtrlr", "Enabled"): ("true", False),
    ("AuthCacheCtrlr", "Enabled"): ("true", False),
    ("SmartChargingCtrlr", "Enabled"): ("true", True),
    ("ChargingStation", "Model"): ("SIM-AC22", True),
    ("ChargingStation", "VendorName"): ("chargeflow", True),
}


def schedule_limit_w(unit: str, limit: float, phases: int | None, rating: Rating) -> float:
    """A schedule period's limit in W (``unit`` W, or A x voltage x phases)."""
    if unit == "A":
        return limit * rating.voltage_v * (phases or rating.phases)
    return limit


@dataclass(frozen=True, slots=True)
class Availability:
    """The answer to ChangeAvailability and the statuses the station sends after it."""

    status: str  # Accepted / Scheduled
    notify: tuple[int, ...]
    notify_status: str


class StationState:
    def __init__(
        self, connectors: Iterable[int], *, profile_behaviour: str = "obey", reaction_s: float = 0.0
    ) -> None:
        self.connectors = tuple(connectors)
        self.received: list[tuple[str, dict[str, Any]]] = []  # (action, payload) of each CALL
        self.configuration = {k: Setting(*v) for k, v in CONFIG_16.items()}
        self.configuration["NumberOfConnectors"].value = str(len(self.connectors))
        self.variables = {k: Setting(*v) for k, v in VARIABLES_201.items()}
        self.profiles: dict[int, InstalledProfile] = {}
        # Profiles replaced by a newer one, in force until it takes effect (the EV follows
        # the new limit after its reaction delay, the old one holds until then).
        self.superseded: list[InstalledProfile] = []
        # How the station treats SetChargingProfile: "obey", "reject" (answers Rejected)
        # or "ignore" (answers Accepted, keeps drawing: a non-compliant station).
        self.profile_behaviour = profile_behaviour
        self.reaction_s = reaction_s  # simulated seconds before a received limit takes effect
        self.started_at: dict[int, datetime] = {}  # connector -> its transaction's start
        self.unavailable: set[int] = set()
        self.scheduled_unavailable: set[int] = set()
        self.running: dict[int, int | str] = {}  # connector -> transaction id
        self.reservations: dict[int, int] = {}  # reservation id -> connector
        self.local_list_version = 0
        self.local_list: dict[str, str] = {}  # id tag -> status
        self.stops: dict[int, str] = {}  # connector -> stop reason asked for
        # Held by a session on the connector (the fleet's own ones and remote starts).
        self.locks = {cid: asyncio.Lock() for cid in self.connectors}
        self.starting: set[int] = set()  # claimed by a remote start, session not yet begun
        self.faulted: dict[int, str] = {}  # connector -> error code: out of service for good
        self.faults_reported: list[Any] = []  # FaultReports the CSMS acknowledged
        self.firmware_version = "1.0.0"  # in BootNotification; an installed update sets it

    # ------------------------------------------------------------- sessions

    def power_limit_w(self, cid: int, station_max_w: float, at: datetime) -> float:
        """The power cap on connector ``cid`` at ``at``: the lowest of ``station_max_w``,
        the connector's profile in force and the station's cap (ChargePointMaxProfile),
        which the connectors charging share evenly (:mod:`charging_profiles`)."""
        tx = self.running.get(cid)
        self.superseded = [
            p for p in self.superseded if p.superseded_at is None or p.superseded_at > at
        ]
        profiles = [*self.profiles.values(), *self.superseded]
        own = connector_limit_w(
            profiles,
            cid,
            at,
            None if tx is None else str(tx),
            self.started_at.get(cid),
        )
        cap = station_cap_w(profiles, at)
        if cap is not None:
            cap /= max(1, len(self.running))
        return min(x for x in (station_max_w, own, cap) if x is not None)

    def take_stop(self, cid: int) -> str | None:
        """A stop requested for the session on ``cid`` (by command), once."""
        return self.stops.pop(cid, None)

    def session_started(
        self, cid: int, transaction_id: int | str, at: datetime | None = None
    ) -> None:
        self.running[cid] = transaction_id
        if at is not None:
            self.started_at[cid] = at

    def session_ended(self, cid: int) -> bool:
        """Forget the session's transaction profiles; True when the connector becomes
        Unavailable now (a ChangeAvailability was scheduled for the session's end)."""
        self.running.pop(cid, None)
        self.started_at.pop(cid, None)
        self.superseded = [
            p for p in self.superseded if p.connector_id != cid or p.purpose != "TxProfile"
        ]
        for profile_id in [
            k
            for k, p in self.profiles.items()
            if p.connector_id == cid and p.purpose == "TxProfile"
        ]:
            del self.profiles[profile_id]
        if cid not in self.scheduled_unavailable:
            return False
        self.scheduled_unavailable.discard(cid)
        self.unavailable.add(cid)
        return True

    def free_connector(self, wanted: int | None) -> int | None:
        """``wanted`` (or the first connector) when a session can start on it now."""
        for cid in [wanted] if wanted else self.connectors:
            if (
                cid in self.connectors
                and cid not in self.running
                and cid not in self.unavailable
                and cid not in self.faulted
                and cid not in self.starting
                and not self.locks[cid].locked()
            ):
                return cid
        return None

    def connector_of(self, transaction_id: Any) -> int | None:
        for cid, tx in self.running.items():
            if str(tx) == str(transaction_id):
                return cid
        return None

    def connector_status(self, cid: int) -> str:
        """The connector's 1.6 status."""
        if cid in self.faulted:
            return "Faulted"
        if cid in self.unavailable:
            return "Unavailable"
        return "Charging" if cid in self.running else "Available"

    # --------------------------------------------------------- availability

    def change_availability(self, cids: list[int], operative: bool) -> Availability:
        """Inoperative while charging is Scheduled: applied when the session ends."""
        if not operative and any(cid in self.running for cid in cids):
            self.scheduled_unavailable.update(c for c in cids if c in self.running)
            idle = tuple(c for c in cids if c not in self.running)
            self.unavailable.update(idle)
            return Availability("Scheduled", idle, "Unavailable")
        if operative:
            self.unavailable.difference_update(cids)
            self.scheduled_unavailable.difference_update(cids)
        else:
            self.unavailable.update(cids)
        return Availability("Accepted", tuple(cids), "Available" if operative else "Unavailable")

    def reserve(self, reservation_id: int, cid: int | None) -> str:
        if cid and cid not in self.connectors:
            return "Rejected"
        if cid and cid in self.unavailable:
            return "Unavailable"
        free = self.free_connector(cid or None)
        if free is None:
            return "Occupied"
        self.reservations[reservation_id] = free
        return "Accepted"

    def cancel_reservation(self, reservation_id: int) -> bool:
        return self.reservations.pop(reservation_id, None) is not None

    # ----------------------------------------------------------- local list

    def update_local_list(
        self, version: int, full: bool, entries: dict[str, str | None], enabled: bool
    ) -> str:
        """Apply a SendLocalList (entries: id tag -> status, None = remove); its status:
        NotSupported when the list is disabled, VersionMismatch for a differential
        update not newer than the list."""
        if not enabled:
            return "NotSupported"
        if not full and version <= self.local_list_version:
            return "VersionMismatch"
        if full:
            self.local_list.clear()
        for tag, status in entries.items():
            if status is None:
                self.local_list.pop(tag, None)
            else:
                self.local_list[tag] = status
        self.local_list_version = version
        return "Accepted"

    # ------------------------------------------------------------- profiles

    def clear_profiles(
        self, profile_id: int | None, cid: int | None, purpose: str | None, stack_level: int | None
    ) -> bool:
        """Remove the profiles matching every criterion given; False when none did."""
        matches = [
            k
            for k, pr in self.profiles.items()
            if (profile_id is None or k == profile_id)
            and (cid is None or pr.connector_id == cid)
            and (purpose is None or pr.purpose == PURPOSES.get(purpose, purpose))
            and (stack_level is None or pr.stack_level == stack_level)
        ]
        for k in matches:
            self.superseded = [p for p in self.superseded if p.profile_id != k]
            del self.profiles[k]
        return bool(matches)

    def composite_limit(
        self, cid: int, unit: str | None, rating: Rating, at: datetime
    ) -> tuple[str, float]:
        """(unit, limit) in force on ``cid`` at ``at``, in A when asked so, else W (0.1
        precision)."""
        limit_w = self.power_limit_w(cid, rating.max_power_w, at)
        if unit == "A":
            return "A", round(limit_w / (rating.voltage_v * rating.phases), 1)
        return "W", round(limit_w, 1)

    # ---------------------------------------------------------- 2.0.1 variables

    def variable(self, component: str, variable: str) -> tuple[Setting | None, str]:
        """The variable and Accepted, or None and UnknownComponent/UnknownVariable."""
        entry = self.variables.get((component, variable))
        if entry is not None:
            return entry, "Accepted"
        if not any(c == component for c, _ in self.variables):
            return None, "UnknownComponent"
        return None, "UnknownVariable"
