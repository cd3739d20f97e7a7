"""What the smart-charging flow decides on and what it decides, per site (pure data):
the site's rules from the registry (:class:`SiteRules`), the events of its stations
(:data:`Event`) and the outputs (:data:`Output`). The decisions: :mod:`.logic`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from smart_charging.allocator import Allocation
from smart_charging.inputs import DEFAULT_MIN_A, NOMINAL_VOLTAGE_V, LimitWindow, SiteLimit

Key = tuple[str, int]


@dataclass(frozen=True, slots=True)
class ConnectorRating:
    phases: int = 3
    min_a: float = DEFAULT_MIN_A
    max_a: float = 32.0
    rotation: str = "RST"


@dataclass(frozen=True, slots=True)
class Needs:
    """A driver's charging needs for one transaction (API or NotifyEVChargingNeeds)."""

    departure: datetime | None = None
    energy_wh: float | None = None


@dataclass(frozen=True, slots=True)
class SiteRules:
    """What the registry says about a site now (``flows.smart_charging.directory``)."""

    site_id: str
    base_limit: SiteLimit
    windows: tuple[LimitWindow, ...] = ()
    voltage_v: float = NOMINAL_VOLTAGE_V
    stations: Mapping[str, str] = field(default_factory=dict)  # station -> OCPP version
    connectors: Mapping[Key, ConnectorRating] = field(default_factory=dict)
    tiers: Mapping[str, int] = field(default_factory=dict)  # id tag -> tier
    needs: Mapping[str, Needs] = field(default_factory=dict)  # transaction id -> needs
    load_meters: frozenset[str] = frozenset()  # the site's non-controllable-load meters
    resets: Mapping[str, int] = field(default_factory=dict)  # station -> operator resets


# ------------------------------------------------------------------------------ events


@dataclass(frozen=True, slots=True)
class Started:
    station_id: str
    connector_id: int
    transaction_id: str
    id_tag: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class Ended:
    station_id: str
    connector_id: int
    transaction_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Drawn:
    """A connector's highest phase current at ``at``."""

    station_id: str
    connector_id: int
    transaction_id: str | None
    at: datetime
    current_a: float


@dataclass(frozen=True, slots=True)
class OtherLoad:
    """A non-controllable load meter's current (A per phase)."""

    meter_id: str
    at: datetime
    current_a: float


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one of the flow's own commands ended (``bus.commands.CommandStatus``)."""

    station_id: str
    command_id: str
    status: str


@dataclass(frozen=True, slots=True)
class Connection:
    """The gateway saw the station come online or go offline (``at``: the gateway's clock;
    OCPP carries no station time for it)."""

    station_id: str
    at: datetime
    online: bool


@dataclass(frozen=True, slots=True)
class NeedsDeclared:
    """What the EV declared for the session on a connector (2.0.1 NotifyEVChargingNeeds,
    ISO 15118): its departure and energy need, its AC current range (A per phase) and
    how many phases it charges on (None: unknown, the connector's)."""

    station_id: str
    connector_id: int
    at: datetime
    needs: Needs
    ev_min_a: float | None = None
    ev_max_a: float | None = None
    phases: int | None = None


@dataclass(frozen=True, slots=True)
class RulesChanged:
    rules: SiteRules


Event = Started | Ended | Drawn | OtherLoad | Outcome | NeedsDeclared | Connection | RulesChanged


# ----------------------------------------------------------------------------- outputs


@dataclass(frozen=True, slots=True)
class ProfileRequest:
    """A SetChargingProfile to send (limits in A per phase)."""

    command_id: str
    station_id: str
    ocpp_version: str
    connector_id: int
    profile_id: int
    stack_level: int
    purpose: str  # tx, tx_default, charge_point_max (api.schemas.command_bodies)
    periods: tuple[tuple[int, float], ...]  # (start s, limit A)
    transaction_id: str | None
    start_schedule: datetime | None
    at: datetime  # telemetry time of the decision
    why: str


@dataclass(frozen=True, slots=True)
class AllocationView:
    """The site's latest allocation, per session with its reason (for the API)."""

    site_id: str
    allocation: Allocation
    transactions: Mapping[Key, str]
    non_compliant: Mapping[str, datetime]
    budgeted: tuple[str, ...]  # stations budgeted at full draw for another reason


@dataclass(frozen=True, slots=True)
class NonCompliant:
    station_id: str
    connector_id: int
    at: datetime
    limit_a: float
    measured_a: float


Output = ProfileRequest | AllocationView | NonCompliant
