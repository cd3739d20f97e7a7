"""What a simulated fleet is: how many stations of which OCPP versions, how they
charge, where they connect and how they answer commands."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ingest.simulator.behaviours import command_behaviours
from ingest.simulator.ground_truth import InjectedFault
from ingest.simulator.physics import Rating
from ingest.simulator.profiles import DEFAULT_MODEL, STATION_MODELS
from ingest.simulator.versions import VERSIONS

PROFILE_BEHAVIOURS = ("obey", "reject", "ignore")


def default_id_tags(count: int = 20) -> tuple[str, ...]:
    return tuple(f"SIM-TAG-{i:04d}" for i in range(1, count + 1))


@dataclass(frozen=True)
class FleetConfig:
    gateway_url: str = "ws://127.0.0.1:9000/ocpp"  # stations connect to {url}/{id}
    stations: int = 10
    station_id_prefix: str = "SIM-"
    connectors_per_station: int = 1
    sessions_per_station: int | None = None  # None = run forever
    meter_interval_s: float = 60.0  # simulated seconds between MeterValues
    time_scale: float = 1.0  # simulated seconds per real second
    id_tags: tuple[str, ...] = field(default_factory=default_id_tags)
    seed: int = 0
    max_power_w: float = 22_000.0
    voltage_v: float = 230.0
    phases: int = 3
    mean_arrival_gap_s: float = 1800.0  # simulated, between sessions on a connector
    # Simulated seconds a connector stays free at least before the next EV arrives (on
    # top of the random gap): room for a smart meter's reading between two sessions.
    min_arrival_gap_s: float = 0.0
    mean_dwell_s: float = 3 * 3600.0  # simulated, how long an EV stays plugged in
    call_timeout_s: float = 15.0  # real seconds to wait for a CALLRESULT
    heartbeat_interval_s: float | None = None  # None = what the gateway's boot answer says
    retry_initial_s: float = 0.2  # real seconds, doubled per attempt
    retry_max_s: float = 10.0
    vendor: str = "chargeflow"
    model: str = "SIM-AC22"
    # When set, stations and id tags are provisioned in this database first (with
    # station_password as their Basic-auth password).
    database_url: str | None = None
    # HTTP Basic password of every station (username = its id; OCPP security
    # profile 1); None = connect without credentials.
    station_password: str | None = None
    # CA bundle (PEM) to trust for wss:// gateway URLs (None = the system's).
    tls_ca_file: str | None = None
    # OCPP version per station, cycling: ("1.6", "2.0.1") = odd stations 1.6, even 2.0.1.
    ocpp_versions: tuple[str, ...] = ("1.6",)
    # How stations answer commands from the CSMS, per action: "reject" (refusing
    # status), "not_supported" (CALLERROR NotSupported), "ignore" (no answer); any
    # other action is answered like a real station (see ingest.simulator.handlers
    # and ingest.simulator.behaviours).
    command_behaviour: dict[str, str] = field(default_factory=dict)
    # Healthy variation (ingest.simulator.profiles): station models cycled over the
    # stations (("mixed",): a seeded draw per station), and varied use (heavy/light
    # stations, EVs that stop drawing early).
    station_models: tuple[str, ...] = (DEFAULT_MODEL,)
    varied_use: bool = False
    # Simulated seconds between a free connector's clock-aligned MeterValues (its
    # idle temperature = the ambient, its idle voltage); None = none.
    idle_meter_interval_s: float | None = None
    # Simulated seconds a start that never happens stays Preparing.
    start_timeout_s: float = 120.0
    # Where the station clocks start (None: now); faults are planned against it.
    start: datetime | None = None
    # Injected faults (ingest.simulator.behaviours.faults.plan_faults), the ground truth.
    faults: tuple[InjectedFault, ...] = ()
    # Eichrecht meters: every station's start and end registers are also sent signed
    # (OCMF-like records: 1.6 SignedData, 2.0.1 signedMeterValue; ingest.simulator.ocmf).
    signed_meter_values: bool = False
    # Smart charging: simulated seconds from a received charging profile to the EV's
    # draw following it (IEC 61851-1 gives an EV 5 s to follow a lower PWM duty), and
    # stations that do not obey: station id -> "reject" (SetChargingProfile Rejected) or
    # "ignore" (Accepted, and the EV keeps drawing: non-compliant).
    profile_reaction_s: float = 5.0
    profile_behaviour: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = [v for v in self.ocpp_versions if v not in VERSIONS]
        if not self.ocpp_versions or unknown:
            raise ValueError(
                f"ocpp_versions must be from {sorted(VERSIONS)}, got {self.ocpp_versions!r}"
            )
        command_behaviours(self.command_behaviour)  # raises for an unknown behaviour
        wrong = {k: v for k, v in self.profile_behaviour.items() if v not in PROFILE_BEHAVIOURS}
        if wrong:
            raise ValueError(f"profile_behaviour must be one of {PROFILE_BEHAVIOURS}, got {wrong}")
        if self.profile_reaction_s < 0:
            raise ValueError("profile_reaction_s must be >= 0")
        unknown_models = set(self.station_models) - {*STATION_MODELS, "mixed"}
        if not self.station_models or unknown_models:
            raise ValueError(
                f"station_models must be from {sorted(STATION_MODELS)} or ('mixed',), "
                f"got {self.station_models!r}"
            )

    @property
    def rating(self) -> Rating:
        return Rating(self.max_power_w, self.voltage_v, self.phases)

    def profile_handling(self, cp_id: str) -> dict[str, Any]:
        """How station ``cp_id`` treats charging profiles (``StationState``'s options)."""
        return {
            "profile_behaviour": self.profile_behaviour.get(cp_id, "obey"),
            "reaction_s": self.profile_reaction_s,
        }

    def station_ids(self) -> list[str]:
        return [f"{self.station_id_prefix}{i:04d}" for i in range(1, self.stations + 1)]

    def station_versions(self) -> dict[str, str]:
        """Station id -> OCPP version."""
        return {
            cp: self.ocpp_versions[i % len(self.ocpp_versions)]
            for i, cp in enumerate(self.station_ids())
        }
