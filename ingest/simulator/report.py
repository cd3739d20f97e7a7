"""The fleet's ground truth: every session as the stations saw it, and counters."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class SessionTruth:
    charge_point_id: str
    connector_id: int  # 2.0.1: the EVSE id (one connector per EVSE)
    transaction_id: int | str  # 1.6: assigned by the gateway; 2.0.1: the station's UUID
    id_tag: str
    meter_start_wh: int
    meter_stop_wh: int
    energy_wh: int
    started_at: str
    stopped_at: str
    stop_reason: str
    meter_value_messages: int  # 2.0.1: TransactionEvent Updated messages
    ocpp_version: str = "1.6"


@dataclass
class FleetReport:
    stations: list[str] = field(default_factory=list)
    sessions: list[SessionTruth] = field(default_factory=list)
    rejected_authorizations: int = 0
    call_errors: int = 0  # CALLERRORs and timeouts seen (each is retried or given up)
    retries: int = 0
    connects: int = 0
    connect_failures: int = 0
    failed_transaction_messages: int = 0
    failed_starts: int = 0  # authorised, never charged (an injected contactor fault)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @property
    def total_energy_wh(self) -> int:
        return sum(s.energy_wh for s in self.sessions)
