"""How a simulated station answers the CSMS's commands (CALLs from the gateway).

Every command the platform sends (``ingest.gateway.commands.COMMANDS``) is answered
the way a real station would, with effects on the simulation:

- RemoteStartTransaction / RequestStartTransaction: a session starts on the given
  (or first free) connector with the given id tag; Authorize first only if the
  station is configured so (1.6 ``AuthorizeRemoteTxRequests``, 2.0.1
  ``AuthCtrlr.AuthorizeRemoteStart``; default false). Rejected when no connector is
  free or the connector is unavailable.
- RemoteStopTransaction / RequestStopTransaction: the session stops with reason
  ``Remote``; Rejected for an unknown transaction.
- Reset: Accepted, running sessions stop (1.6 Hard/SoftReset, 2.0.1 ImmediateReset),
  the station closes its connection, reconnects and boots again.
- UnlockConnector: Unlocked (1.6 NotSupported / 2.0.1 UnknownConnector for a
  connector the station does not have).
- ChangeAvailability: Inoperative -> StatusNotification Unavailable (Scheduled while
  charging: applied when the session ends); Operative -> Available. A station in
  Inoperative answers remote starts Rejected.
- Get/ChangeConfiguration, Get/SetVariables: a config store; read-only keys answer
  Rejected, unknown keys NotSupported (1.6) / UnknownComponent/UnknownVariable (2.0.1).
- SetChargingProfile: the first schedule period's limit (W, or A x voltage x phases)
  caps the simulated power of that connector (0 = all) from the next meter interval;
  ClearChargingProfile removes it (Unknown when nothing matched); GetCompositeSchedule
  answers the limit in force.
- TriggerMessage: sends the requested message after answering (NotImplemented for
  messages the simulator does not send).
- UpdateFirmware / GetDiagnostics / GetLog: status notifications follow
  (Downloading..Installed, Uploading/Uploaded); GetBaseReport: a NotifyReport follows.
- Local list, reservations, ClearCache, DataTransfer: plausible answers
  (DataTransfer: Accepted for vendor ``org.chargeflow``, else UnknownVendorId).

``FleetConfig.command_behaviour`` maps an action to ``"reject"`` (answer with the
action's refusing status), ``"not_supported"`` (CALLERROR NotSupported) or
``"ignore"`` (never answer). Every CALL received is recorded in ``received``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ocpp.v16 import call as c16
from ocpp.v201 import call as c201

from ingest.simulator.dialect import Reading, Sample, iso

if TYPE_CHECKING:
    from ingest.simulator.fleet import SimulatedStation

Effect = Callable[[], Awaitable[None]]
Answer = tuple[dict[str, Any], Effect | None]

# Refusing status per action when the behaviour is "reject".
_REFUSAL = {
    "UnlockConnector": "UnlockFailed",
    "ReserveNow": "Rejected",
    "ClearChargingProfile": "Unknown",
    "SendLocalList": "Failed",
    "DataTransfer": "Rejected",
}

# 1.6 configuration keys: key -> (value, read-only).
CONFIG_16: dict[str, tuple[str, bool]] = {
    "HeartbeatInterval": ("300", False),
    "MeterValueSampleInterval": ("60", False),
    "AuthorizeRemoteTxRequests": ("false", False),
    "LocalAuthListEnabled": ("true", False),
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
    ("SmartChargingCtrlr", "Enabled"): ("true", True),
    ("ChargingStation", "Model"): ("SIM-AC22", True),
    ("ChargingStation", "VendorName"): ("chargeflow", True),
}

TRIGGERABLE = frozenset(
    {
        "BootNotification",
        "Heartbeat",
        "StatusNotification",
        "MeterValues",
        "FirmwareStatusNotification",
        "DiagnosticsStatusNotification",
        "LogStatusNotification",
    }
)


class CommandRefused(Exception):
    """Answer with a CALLERROR (code, description)."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


@dataclass
class Profile:
    profile_id: int
    connector_id: int
    stack_level: int
    purpose: str
    limit_w: float


class StationCommands:
    """Command handling and the state commands change, for one simulated station."""

    def __init__(self, station: SimulatedStation, behaviour: dict[str, str] | None = None) -> None:
        self.station = station
        self.version = station.dialect.version
        self.behaviour = dict(behaviour or {})
        self.received: list[tuple[str, dict[str, Any]]] = []  # (action, payload)
        self.config_16 = {k: list(v) for k, v in CONFIG_16.items()}
        self.config_16["NumberOfConnectors"][0] = str(len(station.registers))
        self.variables = {k: list(v) for k, v in VARIABLES_201.items()}
        self.profiles: dict[int, Profile] = {}
        self.unavailable: set[int] = set()
        self.scheduled_unavailable: set[int] = set()
        self.running: dict[int, int | str] = {}  # connector -> transaction id
        self.reservations: dict[int, int] = {}  # reservation id -> connector
        self.local_list_version = 0
        self._stops: dict[int, str] = {}
        # Held by a session on the connector (the fleet's own ones and remote starts).
        self.locks = {cid: asyncio.Lock() for cid in station.registers}
        self.starting: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # --------------------------------------------------------------- fleet hooks

    def power_limit_w(self, cid: int, station_max_w: float) -> float:
        """The power cap on connector ``cid``: the lowest profile limit in force."""
        limits = [p.limit_w for p in self.profiles.values() if p.connector_id in (0, cid)]
        return min([station_max_w, *limits])

    def take_stop(self, cid: int) -> str | None:
        """A stop requested for the session on ``cid`` (by command), once."""
        return self._stops.pop(cid, None)

    def session_started(self, cid: int, transaction_id: int | str) -> None:
        self.running[cid] = transaction_id

    def session_ended(self, cid: int) -> None:
        self.running.pop(cid, None)
        for profile_id in [
            k
            for k, p in self.profiles.items()
            if p.connector_id == cid and p.purpose == "TxProfile"
        ]:
            del self.profiles[profile_id]
        if cid in self.scheduled_unavailable:
            self.scheduled_unavailable.discard(cid)
            self.unavailable.add(cid)
            self._spawn(self.station._status(cid, "Unavailable"))

    @property
    def authorize_remote_start(self) -> bool:
        if self.version == "1.6":
            return str(self.config_16["AuthorizeRemoteTxRequests"][0]).lower() == "true"
        return str(self.variables[("AuthCtrlr", "AuthorizeRemoteStart")][0]).lower() == "true"

    # ------------------------------------------------------------ the interceptor

    async def intercept(self, client: Any, raw: str | bytes) -> bool:
        """Handle a CALL from the CSMS; False for anything else (the library's)."""
        try:
            msg = json.loads(raw, parse_float=Decimal)
        except ValueError:
            return False
        if not isinstance(msg, list) or len(msg) != 4 or msg[0] != 2:
            return False
        unique_id, action, payload = str(msg[1]), str(msg[2]), msg[3]
        self.received.append((action, payload))
        behaviour = self.behaviour.get(action)
        if behaviour == "ignore":
            return True
        effect: Effect | None = None
        try:
            if behaviour == "not_supported":
                raise CommandRefused("NotSupported", f"{action} is not supported here")
            handler = getattr(self, f"_{'v16' if self.version == '1.6' else 'v201'}_{action}", None)
            if handler is None:
                raise CommandRefused("NotImplemented", f"{action} is not implemented")
            if behaviour == "reject":
                response: dict[str, Any] = {"status": _REFUSAL.get(action, "Rejected")}
            else:
                response, effect = handler(payload)
            frame = json.dumps([3, unique_id, response], default=_json_default)
        except CommandRefused as exc:
            frame = json.dumps([4, unique_id, exc.code, exc.description, {}])
        except (KeyError, TypeError, ValueError) as exc:
            frame = json.dumps([4, unique_id, "FormationViolation", repr(exc)[:200], {}])
        await client._send(frame)
        if effect is not None:
            self._spawn(effect())
        return True

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            await coro

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -------------------------------------------------------------------- helpers

    def _free_connector(self, wanted: int | None) -> int | None:
        candidates = [wanted] if wanted else list(self.station.registers)
        for cid in candidates:
            if (
                cid in self.station.registers
                and cid not in self.running
                and cid not in self.unavailable
                and cid not in self.starting
                and not self.locks[cid].locked()
            ):
                return cid
        return None

    def _start(self, cid: int, id_tag: str) -> Effect:
        authorize = self.authorize_remote_start
        self.starting.add(cid)  # taken from now on, for later commands

        async def start() -> None:
            async with self.locks[cid]:
                self.starting.discard(cid)
                await self.station._session(cid, id_tag=id_tag, authorize=authorize)

        return start

    def _stop(self, transaction_id: Any, reason: str) -> bool:
        for cid, tx in self.running.items():
            if str(tx) == str(transaction_id):
                self._stops[cid] = reason
                return True
        return False

    def _limit_w(self, schedule: dict[str, Any]) -> float:
        period = schedule["chargingSchedulePeriod"][0]
        limit = float(period["limit"])
        if schedule["chargingRateUnit"] == "A":
            phases = int(period.get("numberPhases", self.station.config.phases))
            return limit * self.station.config.voltage_v * phases
        return limit

    def _composite(self, cid: int, unit: str | None) -> tuple[str, Decimal]:
        limit_w = self.power_limit_w(cid, self.station.config.max_power_w)
        if unit == "A":
            cfg = self.station.config
            return "A", Decimal(str(round(limit_w / (cfg.voltage_v * cfg.phases), 1)))
        return "W", Decimal(str(round(limit_w, 1)))

    def _reboot(self, reason: str) -> Effect:
        async def reboot() -> None:
            for cid in list(self.running):
                self._stops[cid] = reason
            await self.station.reboot()

        return reboot

    def _idle_sample(self, cid: int) -> Sample:
        register = self.station.registers.get(cid) or next(iter(self.station.registers.values()))
        return Sample(
            self.station.clock.now(),
            (Reading("Energy.Active.Import.Register", register.wh, "Wh", "Outlet"),),
        )

    async def _send_all(self, payloads: list[Any]) -> None:
        for payload in payloads:
            await self.station._best_effort(payload)

    # ----------------------------------------------------------------- OCPP 1.6

    def _v16_RemoteStartTransaction(self, p: dict[str, Any]) -> Answer:
        cid = self._free_connector(p.get("connectorId"))
        if cid is None:
            return {"status": "Rejected"}, None
        if "chargingProfile" in p:
            prof = p["chargingProfile"]
            self.profiles[int(prof["chargingProfileId"])] = Profile(
                int(prof["chargingProfileId"]),
                cid,
                int(prof["stackLevel"]),
                "TxProfile",
                self._limit_w(prof["chargingSchedule"]),
            )
        return {"status": "Accepted"}, self._start(cid, str(p["idTag"]))

    def _v16_RemoteStopTransaction(self, p: dict[str, Any]) -> Answer:
        ok = self._stop(p["transactionId"], "Remote")
        return {"status": "Accepted" if ok else "Rejected"}, None

    def _v16_Reset(self, p: dict[str, Any]) -> Answer:
        return {"status": "Accepted"}, self._reboot(f"{p['type']}Reset")

    def _v16_UnlockConnector(self, p: dict[str, Any]) -> Answer:
        cid = int(p["connectorId"])
        if cid not in self.station.registers:
            return {"status": "NotSupported"}, None
        if cid in self.running:
            self._stops[cid] = "UnlockCommand"
        return {"status": "Unlocked"}, None

    def _availability(self, cids: list[int], operative: bool) -> Answer:
        if not operative and any(cid in self.running for cid in cids):
            self.scheduled_unavailable.update(c for c in cids if c in self.running)
            idle = [c for c in cids if c not in self.running]
            self.unavailable.update(idle)
            return {"status": "Scheduled"}, self._statuses(idle, "Unavailable")
        if operative:
            self.unavailable.difference_update(cids)
            self.scheduled_unavailable.difference_update(cids)
        else:
            self.unavailable.update(cids)
        return {"status": "Accepted"}, self._statuses(
            cids, "Available" if operative else "Unavailable"
        )

    def _statuses(self, cids: list[int], status: str) -> Effect:
        async def send() -> None:
            for cid in cids:
                await self.station._status(cid, status)

        return send

    def _v16_ChangeAvailability(self, p: dict[str, Any]) -> Answer:
        cid = int(p["connectorId"])
        cids = list(self.station.registers) if cid == 0 else [cid]
        if cid != 0 and cid not in self.station.registers:
            return {"status": "Rejected"}, None
        return self._availability(cids, p["type"] == "Operative")

    def _v16_ChangeConfiguration(self, p: dict[str, Any]) -> Answer:
        entry = self.config_16.get(p["key"])
        if entry is None:
            return {"status": "NotSupported"}, None
        if entry[1]:
            return {"status": "Rejected"}, None
        entry[0] = str(p["value"])
        return {"status": "Accepted"}, None

    def _v16_GetConfiguration(self, p: dict[str, Any]) -> Answer:
        keys = p.get("key") or list(self.config_16)
        known = [
            {"key": k, "readonly": bool(self.config_16[k][1]), "value": self.config_16[k][0]}
            for k in keys
            if k in self.config_16
        ]
        response: dict[str, Any] = {"configurationKey": known}
        unknown = [k for k in keys if k not in self.config_16]
        if unknown:
            response["unknownKey"] = unknown
        return response, None

    def _v16_SetChargingProfile(self, p: dict[str, Any]) -> Answer:
        cid = int(p["connectorId"])
        prof = p["csChargingProfiles"]
        purpose = str(prof["chargingProfilePurpose"])
        if cid != 0 and cid not in self.station.registers:
            return {"status": "Rejected"}, None
        if purpose == "TxProfile" and cid not in self.running:
            return {"status": "Rejected"}, None  # a TxProfile needs a transaction
        self.profiles[int(prof["chargingProfileId"])] = Profile(
            int(prof["chargingProfileId"]),
            cid,
            int(prof["stackLevel"]),
            purpose,
            self._limit_w(prof["chargingSchedule"]),
        )
        return {"status": "Accepted"}, None

    def _clear(
        self, profile_id: int | None, cid: int | None, purpose: str | None, stack_level: int | None
    ) -> bool:
        matches = [
            k
            for k, pr in self.profiles.items()
            if (profile_id is None or k == profile_id)
            and (cid is None or pr.connector_id == cid)
            and (purpose is None or pr.purpose == purpose)
            and (stack_level is None or pr.stack_level == stack_level)
        ]
        for k in matches:
            del self.profiles[k]
        return bool(matches)

    def _v16_ClearChargingProfile(self, p: dict[str, Any]) -> Answer:
        ok = self._clear(
            p.get("id"), p.get("connectorId"), p.get("chargingProfilePurpose"), p.get("stackLevel")
        )
        return {"status": "Accepted" if ok else "Unknown"}, None

    def _v16_GetCompositeSchedule(self, p: dict[str, Any]) -> Answer:
        cid = int(p["connectorId"])
        unit, limit = self._composite(cid, p.get("chargingRateUnit"))
        return {
            "status": "Accepted",
            "connectorId": cid,
            "scheduleStart": iso(self.station.clock.now()),
            "chargingSchedule": {
                "duration": int(p["duration"]),
                "chargingRateUnit": unit,
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}],
            },
        }, None

    def _v16_TriggerMessage(self, p: dict[str, Any]) -> Answer:
        what = str(p["requestedMessage"])
        cid = p.get("connectorId")
        cids = [int(cid)] if cid else list(self.station.registers)
        dialect = self.station.dialect
        payloads: list[Any]
        if what == "BootNotification":
            payloads = [
                dialect.boot(
                    vendor=self.station.config.vendor,
                    model=self.station.config.model,
                    serial=f"{self.station.cp_id}-SN",
                    firmware="1.0.0",
                )
            ]
        elif what == "Heartbeat":
            payloads = [dialect.heartbeat()]
        elif what == "StatusNotification":
            payloads = [
                dialect.status(c, self._connector_status(c), self.station.clock.now()) for c in cids
            ]
        elif what == "MeterValues":
            from ingest.simulator.v16 import sampled_values

            payloads = [
                c16.MeterValues(
                    connector_id=c, meter_value=[sampled_values(self._idle_sample(c), "Trigger")]
                )
                for c in cids
            ]
        elif what == "DiagnosticsStatusNotification":
            payloads = [c16.DiagnosticsStatusNotification(status="Idle")]
        elif what == "FirmwareStatusNotification":
            payloads = [c16.FirmwareStatusNotification(status="Idle")]
        else:
            return {"status": "NotImplemented"}, None

        async def send() -> None:
            await self._send_all(payloads)

        return {"status": "Accepted"}, send

    def _connector_status(self, cid: int) -> str:
        if cid in self.unavailable:
            return "Unavailable"
        return "Charging" if cid in self.running else "Available"

    def _v16_UpdateFirmware(self, p: dict[str, Any]) -> Answer:
        async def update() -> None:
            await self._send_all(
                [
                    c16.FirmwareStatusNotification(status=s)
                    for s in ("Downloading", "Downloaded", "Installing", "Installed")
                ]
            )

        return {}, update

    def _v16_GetDiagnostics(self, p: dict[str, Any]) -> Answer:
        async def upload() -> None:
            await self._send_all(
                [c16.DiagnosticsStatusNotification(status=s) for s in ("Uploading", "Uploaded")]
            )

        return {"fileName": f"{self.station.cp_id}-diagnostics.log"}, upload

    def _v16_SendLocalList(self, p: dict[str, Any]) -> Answer:
        self.local_list_version = int(p["listVersion"])
        return {"status": "Accepted"}, None

    def _v16_GetLocalListVersion(self, p: dict[str, Any]) -> Answer:
        return {"listVersion": self.local_list_version}, None

    def _reserve(self, reservation_id: int, cid: int | None) -> str:
        if cid and cid not in self.station.registers:
            return "Rejected"
        if cid and cid in self.unavailable:
            return "Unavailable"
        free = self._free_connector(cid or None)
        if free is None:
            return "Occupied"
        self.reservations[reservation_id] = free
        return "Accepted"

    def _v16_ReserveNow(self, p: dict[str, Any]) -> Answer:
        return {"status": self._reserve(int(p["reservationId"]), int(p["connectorId"]))}, None

    def _v16_CancelReservation(self, p: dict[str, Any]) -> Answer:
        found = self.reservations.pop(int(p["reservationId"]), None) is not None
        return {"status": "Accepted" if found else "Rejected"}, None

    def _v16_ClearCache(self, p: dict[str, Any]) -> Answer:
        return {"status": "Accepted"}, None

    def _v16_DataTransfer(self, p: dict[str, Any]) -> Answer:
        ok = p["vendorId"] == "org.chargeflow"
        return {"status": "Accepted" if ok else "UnknownVendorId"}, None

    # ---------------------------------------------------------------- OCPP 2.0.1

    def _v201_RequestStartTransaction(self, p: dict[str, Any]) -> Answer:
        cid = self._free_connector(p.get("evseId"))
        if cid is None:
            return {"status": "Rejected"}, None
        if "chargingProfile" in p:
            prof = p["chargingProfile"]
            self.profiles[int(prof["id"])] = Profile(
                int(prof["id"]),
                cid,
                int(prof["stackLevel"]),
                "TxProfile",
                self._limit_w(prof["chargingSchedule"][0]),
            )
        return {"status": "Accepted"}, self._start(cid, str(p["idToken"]["idToken"]))

    def _v201_RequestStopTransaction(self, p: dict[str, Any]) -> Answer:
        ok = self._stop(p["transactionId"], "Remote")
        return {"status": "Accepted" if ok else "Rejected"}, None

    def _v201_Reset(self, p: dict[str, Any]) -> Answer:
        if p["type"] == "OnIdle" and self.running:
            return {"status": "Scheduled"}, None
        return {"status": "Accepted"}, self._reboot("ImmediateReset")

    def _v201_UnlockConnector(self, p: dict[str, Any]) -> Answer:
        cid = int(p["evseId"])
        if cid not in self.station.registers or int(p["connectorId"]) != 1:
            return {"status": "UnknownConnector"}, None
        if cid in self.running:
            return {"status": "OngoingAuthorizedTransaction"}, None
        return {"status": "Unlocked"}, None

    def _v201_ChangeAvailability(self, p: dict[str, Any]) -> Answer:
        evse = p.get("evse")
        cids = [int(evse["id"])] if evse else list(self.station.registers)
        if any(cid not in self.station.registers for cid in cids):
            return {"status": "Rejected"}, None
        return self._availability(cids, p["operationalStatus"] == "Operative")

    def _variable(self, item: dict[str, Any]) -> tuple[list[Any] | None, str]:
        component, variable = item["component"]["name"], item["variable"]["name"]
        entry = self.variables.get((component, variable))
        if entry is not None:
            return entry, "Accepted"
        if not any(c == component for c, _ in self.variables):
            return None, "UnknownComponent"
        return None, "UnknownVariable"

    def _v201_SetVariables(self, p: dict[str, Any]) -> Answer:
        results = []
        for item in p["setVariableData"]:
            entry, status = self._variable(item)
            if entry is not None:
                if entry[1]:
                    status = "Rejected"
                else:
                    entry[0] = str(item["attributeValue"])
            results.append(
                {
                    "attributeStatus": status,
                    "component": item["component"],
                    "variable": item["variable"],
                }
            )
        return {"setVariableResult": results}, None

    def _v201_GetVariables(self, p: dict[str, Any]) -> Answer:
        results = []
        for item in p["getVariableData"]:
            entry, status = self._variable(item)
            result: dict[str, Any] = {
                "attributeStatus": status,
                "component": item["component"],
                "variable": item["variable"],
            }
            if entry is not None:
                result["attributeValue"] = entry[0]
            results.append(result)
        return {"getVariableResult": results}, None

    def _v201_SetChargingProfile(self, p: dict[str, Any]) -> Answer:
        cid = int(p["evseId"])
        prof = p["chargingProfile"]
        purpose = str(prof["chargingProfilePurpose"])
        if cid != 0 and cid not in self.station.registers:
            return {"status": "Rejected"}, None
        if purpose == "TxProfile" and cid not in self.running:
            return {"status": "Rejected"}, None
        self.profiles[int(prof["id"])] = Profile(
            int(prof["id"]),
            cid,
            int(prof["stackLevel"]),
            purpose,
            self._limit_w(prof["chargingSchedule"][0]),
        )
        return {"status": "Accepted"}, None

    def _v201_ClearChargingProfile(self, p: dict[str, Any]) -> Answer:
        criteria = p.get("chargingProfileCriteria") or {}
        ok = self._clear(
            p.get("chargingProfileId"),
            criteria.get("evseId"),
            criteria.get("chargingProfilePurpose"),
            criteria.get("stackLevel"),
        )
        return {"status": "Accepted" if ok else "Unknown"}, None

    def _v201_GetCompositeSchedule(self, p: dict[str, Any]) -> Answer:
        cid = int(p["evseId"])
        unit, limit = self._composite(cid, p.get("chargingRateUnit"))
        return {
            "status": "Accepted",
            "schedule": {
                "evseId": cid,
                "duration": int(p["duration"]),
                "scheduleStart": iso(self.station.clock.now()),
                "chargingRateUnit": unit,
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}],
            },
        }, None

    def _v201_TriggerMessage(self, p: dict[str, Any]) -> Answer:
        what = str(p["requestedMessage"])
        evse = p.get("evse")
        cids = [int(evse["id"])] if evse else list(self.station.registers)
        dialect = self.station.dialect
        payloads: list[Any]
        if what == "BootNotification":
            payloads = [
                dialect.boot(
                    vendor=self.station.config.vendor,
                    model=self.station.config.model,
                    serial=f"{self.station.cp_id}-SN",
                    firmware="1.0.0",
                )
            ]
        elif what == "Heartbeat":
            payloads = [dialect.heartbeat()]
        elif what == "StatusNotification":
            payloads = [
                c201.StatusNotification(
                    timestamp=iso(self.station.clock.now()),
                    evse_id=cid,
                    connector_id=1,
                    connector_status="Unavailable"
                    if cid in self.unavailable
                    else ("Occupied" if cid in self.running else "Available"),
                )
                for cid in cids
            ]
        elif what == "MeterValues":
            from ingest.simulator.v201 import meter_value

            payloads = [
                c201.MeterValues(
                    evse_id=cid, meter_value=[meter_value(self._idle_sample(cid), "Trigger")]
                )
                for cid in cids
            ]
        elif what == "FirmwareStatusNotification":
            payloads = [c201.FirmwareStatusNotification(status="Idle")]
        elif what == "LogStatusNotification":
            payloads = [c201.LogStatusNotification(status="Idle")]
        else:
            return {"status": "NotImplemented"}, None

        async def send() -> None:
            await self._send_all(payloads)

        return {"status": "Accepted"}, send

    def _v201_UpdateFirmware(self, p: dict[str, Any]) -> Answer:
        request_id = int(p["requestId"])

        async def update() -> None:
            await self._send_all(
                [
                    c201.FirmwareStatusNotification(status=s, request_id=request_id)
                    for s in ("Downloading", "Downloaded", "Installing", "Installed")
                ]
            )

        return {"status": "Accepted"}, update

    def _v201_GetLog(self, p: dict[str, Any]) -> Answer:
        request_id = int(p["requestId"])

        async def upload() -> None:
            await self._send_all(
                [
                    c201.LogStatusNotification(status=s, request_id=request_id)
                    for s in ("Uploading", "Uploaded")
                ]
            )

        return {"status": "Accepted", "filename": f"{self.station.cp_id}-log.txt"}, upload

    def _v201_GetBaseReport(self, p: dict[str, Any]) -> Answer:
        request_id = int(p["requestId"])
        data = [
            {
                "component": {"name": comp},
                "variable": {"name": var},
                "variableAttribute": [
                    {"value": value, "mutability": "ReadOnly" if ro else "ReadWrite"}
                ],
            }
            for (comp, var), (value, ro) in self.variables.items()
        ]

        async def report() -> None:
            await self._send_all(
                [
                    c201.NotifyReport(
                        request_id=request_id,
                        generated_at=iso(self.station.clock.now()),
                        seq_no=0,
                        tbc=False,
                        report_data=data,
                    )
                ]
            )

        return {"status": "Accepted"}, report

    def _v201_SendLocalList(self, p: dict[str, Any]) -> Answer:
        self.local_list_version = int(p["versionNumber"])
        return {"status": "Accepted"}, None

    def _v201_GetLocalListVersion(self, p: dict[str, Any]) -> Answer:
        return {"versionNumber": self.local_list_version}, None

    def _v201_ReserveNow(self, p: dict[str, Any]) -> Answer:
        return {"status": self._reserve(int(p["id"]), p.get("evseId"))}, None

    def _v201_CancelReservation(self, p: dict[str, Any]) -> Answer:
        found = self.reservations.pop(int(p["reservationId"]), None) is not None
        return {"status": "Accepted" if found else "Rejected"}, None

    def _v201_ClearCache(self, p: dict[str, Any]) -> Answer:
        return {"status": "Accepted"}, None

    def _v201_DataTransfer(self, p: dict[str, Any]) -> Answer:
        ok = p["vendorId"] == "org.chargeflow"
        return {"status": "Accepted" if ok else "UnknownVendorId"}, None


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class CommandsMixin:
    """For the station-side ocpp clients: CALLs from the CSMS go to ``commands``."""

    commands: StationCommands | None = None

    async def route_message(self, raw_msg: Any) -> None:
        if self.commands is not None and await self.commands.intercept(self, raw_msg):
            return
        await super().route_message(raw_msg)  # type: ignore[misc]
