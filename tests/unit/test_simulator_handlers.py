"""The simulated station's answers to the CSMS through the ocpp library's ``@on``
handlers, its behaviours, and its frames on the wire (pure, an in-memory connection)."""

from __future__ import annotations

import ast
import asyncio
import json
import logging
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from ocpp.messages import Call

from bus.measurands import ENERGY_REGISTER
from ingest.simulator.behaviours import BEHAVIOURS, command_behaviours
from ingest.simulator.behaviours.base import Effect
from ingest.simulator.charging_profiles import TX_DEFAULT, InstalledProfile, Period
from ingest.simulator.config import FleetConfig
from ingest.simulator.dialect import Dialect, FaultReport, Reading, Sample
from ingest.simulator.physics import Rating
from ingest.simulator.profiles import StationProfile, station_profile
from ingest.simulator.state import StationState
from ingest.simulator.versions import VERSIONS

T0 = datetime(2026, 1, 5, 10, tzinfo=UTC)
REGISTER_WH = 89_999_999_999  # a large register: every digit must survive


class Connection:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def send(self, message: str) -> None:
        self.sent.append(json.loads(message))

    async def recv(self) -> str:  # pragma: no cover - never read here
        raise AssertionError("not read")


class Station:
    """A ``StationPort`` that records what the handlers ask of it."""

    def __init__(self, version: str) -> None:
        self.cp_id = "SIM-0001"
        self.dialect: Dialect = VERSIONS[version].dialect()
        self.rating = Rating(22_000.0, 230.0, 3)
        self.state = StationState([1, 2])
        self.sent: list[Any] = []
        self.sessions: list[tuple[int, str | None, bool]] = []
        self.stops: list[tuple[int, str]] = []
        self.reboots = 0
        self.tasks: list[asyncio.Task[None]] = []

    def now(self) -> datetime:
        return T0

    async def sleep(self, simulated_s: float) -> None:
        pass

    def meter_sample(self, connector_id: int) -> Sample:
        return Sample(T0, (Reading(ENERGY_REGISTER, REGISTER_WH, "Wh", "Outlet"),))

    def boot_request(self) -> Any:
        return self.dialect.boot(vendor="v", model="m", serial="s", firmware="f")

    async def send(self, payload: Any, attempts: int = 3) -> Any | None:
        self.sent.append(payload)
        return None

    def send_transaction(self, payload: Any) -> asyncio.Future[Any]:
        raise AssertionError("no transaction messages here")

    async def send_status(self, connector_id: int, status: str) -> None:
        self.sent.append((connector_id, status))

    async def run_session(
        self, connector_id: int, id_tag: str | None = None, *, authorize: bool = True
    ) -> None:
        self.sessions.append((connector_id, id_tag, authorize))

    def stop_session(self, connector_id: int, reason: str) -> None:
        self.stops.append((connector_id, reason))

    async def reboot(self) -> None:
        self.reboots += 1

    @property
    def profile(self) -> StationProfile:
        return station_profile("CP1", 0, models=("SIM-AC22",), seed=0, varied_use=False)

    def effect(self, connector_id: int) -> Effect:
        return Effect()

    def refuses_start(self, connector_id: int) -> bool:
        return False

    async def report_fault(self, report: FaultReport, status: str | None = None) -> None:
        self.sent.append(report)

    async def clear_fault(self, connector_id: int) -> None:
        return None

    async def go_offline(self, until: datetime | None) -> None:
        return None

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        self.tasks.append(asyncio.get_running_loop().create_task(work))


async def answer(
    version: str,
    action: str,
    payload: dict[str, Any],
    behaviour: dict[str, str] | None = None,
    station: Station | None = None,
) -> tuple[Station, list[Any]]:
    """The frames the station's charge point sends for one CALL, and the station."""
    station, connection = station or Station(version), Connection()
    client = VERSIONS[version].charge_point(
        station,
        connection,
        command_behaviours(behaviour or {}),
        response_timeout=1,
        logger=logging.getLogger("test"),
    )
    await client.route_message(json.dumps([2, "id-1", action, payload]))
    await asyncio.gather(*station.tasks)
    return station, connection.sent


async def test_a_remote_start_starts_the_session_after_the_answer() -> None:
    station, sent = await answer("1.6", "RemoteStartTransaction", {"idTag": "T1"})
    assert sent == [[3, "id-1", {"status": "Accepted"}]]
    assert station.sessions == [(1, "T1", False)]
    assert station.state.received == [("RemoteStartTransaction", {"idTag": "T1"})]


async def test_the_library_validates_the_call_before_the_handler_sees_it() -> None:
    station, sent = await answer("1.6", "UnlockConnector", {"connectorId": "one"})
    assert sent[0][:3] == [4, "id-1", "TypeConstraintViolation"]
    assert station.state.received == [("UnlockConnector", {"connectorId": "one"})]


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_composite_schedule_answers_the_limit_exactly(version: str) -> None:
    key = "connectorId" if version == "1.6" else "evseId"
    station = Station(version)
    station.state.profiles[1] = InstalledProfile(1, 1, 0, TX_DEFAULT, (Period(0, 7400.3),), T0)
    _, sent = await answer(
        version,
        "GetCompositeSchedule",
        {key: 1, "duration": 3600, "chargingRateUnit": "W"},
        station=station,
    )
    result = sent[0][2]
    schedule = result["chargingSchedule"] if version == "1.6" else result["schedule"]
    assert schedule["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 7400.3}]


@pytest.mark.parametrize(
    ("behaviour", "frames"),
    [
        ("reject", [[3, "id-1", {"status": "Rejected"}]]),
        ("not_supported", [[4, "id-1", "NotSupported", "Reset is not supported here", {}]]),
        ("ignore", []),
    ],
)
async def test_behaviours_answer_before_the_library(behaviour: str, frames: list[Any]) -> None:
    station, sent = await answer("1.6", "Reset", {"type": "Soft"}, {"Reset": behaviour})
    assert sent == frames
    assert station.reboots == 0
    assert station.state.received == [("Reset", {"type": "Soft"})]


def test_an_unknown_behaviour_is_refused() -> None:
    assert sorted(BEHAVIOURS) == ["ignore", "not_supported", "reject"]
    with pytest.raises(ValueError, match="unknown command behaviours"):
        FleetConfig(command_behaviour={"Reset": "explode"})


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_triggered_meter_value_carries_the_register_exactly(version: str) -> None:
    trigger = (
        {"requestedMessage": "MeterValues", "connectorId": 1}
        if version == "1.6"
        else {"requestedMessage": "MeterValues", "evse": {"id": 1}}
    )
    station, sent = await answer(version, "TriggerMessage", trigger)
    assert sent == [[3, "id-1", {"status": "Accepted"}]]
    (meter_values,) = station.sent
    # As the library writes the CALL on the wire.
    frame = Call("u", "MeterValues", meter_values.__dict__).to_json()
    assert str(REGISTER_WH) in frame
    assert f"{REGISTER_WH}.0" not in frame


def test_imports_run_one_way() -> None:
    """Nothing below the station imports it, the fleet or the sessions."""
    root = Path(__file__).resolve().parents[2] / "ingest" / "simulator"
    upper = {"ingest.simulator.station", "ingest.simulator.fleet", "ingest.simulator.sessions"}
    lower = [
        *root.glob("handlers/*.py"),
        *root.glob("behaviours/*.py"),
        root / "port.py",
        root / "state.py",
        root / "dialect.py",
        root / "v16.py",
        root / "v201.py",
        root / "versions.py",
    ]
    for path in lower:
        tree = ast.parse(path.read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)} | {
            a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names
        }
        assert not imported & upper, path
        assert "TYPE_CHECKING" not in path.read_text(), path


async def test_variables_read_only_unknown_and_set() -> None:
    def item(component: str, variable: str, value: str) -> dict[str, Any]:
        return {
            "component": {"name": component},
            "variable": {"name": variable},
            "attributeValue": value,
        }

    data = [
        item("OCPPCommCtrlr", "HeartbeatInterval", "120"),
        item("ChargingStation", "Model", "X"),
        item("NoSuchCtrlr", "Enabled", "true"),
        item("AuthCtrlr", "NoSuchVariable", "true"),
    ]
    station, sent = await answer("2.0.1", "SetVariables", {"setVariableData": data})
    statuses = [r["attributeStatus"] for r in sent[0][2]["setVariableResult"]]
    assert statuses == ["Accepted", "Rejected", "UnknownComponent", "UnknownVariable"]
    assert station.state.variables[("OCPPCommCtrlr", "HeartbeatInterval")].value == "120"
    assert station.state.variables[("ChargingStation", "Model")].value == "SIM-AC22"


def _local_list(version: str, number: int, update: str, tag: str, status: str | None) -> Any:
    entry: dict[str, Any]
    if version == "1.6":
        entry = {"idTag": tag} | ({"idTagInfo": {"status": status}} if status else {})
        return {"listVersion": number, "updateType": update, "localAuthorizationList": [entry]}
    entry = {"idToken": {"idToken": tag, "type": "Central"}}
    entry |= {"idTokenInfo": {"status": status}} if status else {}
    return {"versionNumber": number, "updateType": update, "localAuthorizationList": [entry]}


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_the_local_list_is_kept_and_a_stale_update_refused(version: str) -> None:
    station = Station(version)
    steps = [
        (_local_list(version, 2, "Full", "A", "Accepted"), "Accepted", {"A": "Accepted"}),
        (_local_list(version, 2, "Differential", "B", "Blocked"), "VersionMismatch", None),
        (_local_list(version, 3, "Differential", "A", None), "Accepted", {}),
    ]
    for payload, status, kept in steps:
        _, sent = await answer(version, "SendLocalList", payload, station=station)
        assert sent[0][2] == {"status": status}
        if kept is not None:
            assert station.state.local_list == kept
    assert station.state.local_list_version == 3


@pytest.mark.parametrize(
    ("version", "action", "payload", "expected"),
    [
        ("1.6", "GetCompositeSchedule", {"connectorId": 9, "duration": 60}, {"status": "Rejected"}),
        ("2.0.1", "GetCompositeSchedule", {"evseId": 9, "duration": 60}, {"status": "Rejected"}),
        ("1.6", "GetDiagnostics", {"location": "sftp://h/x"}, {}),
        (
            "2.0.1",
            "GetLog",
            {"logType": "DiagnosticsLog", "requestId": 1, "log": {"remoteLocation": "sftp://h"}},
            {"status": "Rejected"},
        ),
        (
            "1.6",
            "ReserveNow",
            {
                "connectorId": 7,
                "expiryDate": "2999-01-01T00:00:00Z",
                "idTag": "T",
                "reservationId": 1,
            },
            {"status": "Rejected"},
        ),
    ],
)
async def test_refusals_of_an_unknown_connector_or_location(
    version: str, action: str, payload: Any, expected: Any
) -> None:
    _, sent = await answer(version, action, payload)
    assert sent[0][2] == expected


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_disabled_cache_is_not_cleared(version: str) -> None:
    station = Station(version)
    _, sent = await answer(version, "ClearCache", {}, station=station)
    assert sent[0][2] == {"status": "Accepted"}
    if version == "1.6":
        station.state.configuration["AuthorizationCacheEnabled"].value = "false"
    else:
        station.state.variables[("AuthCacheCtrlr", "Enabled")].value = "false"
    _, sent = await answer(version, "ClearCache", {}, station=station)
    assert sent[0][2] == {"status": "Rejected"}


def v16_profile(purpose: str, limit: float, *, connector: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "connectorId": connector,
        "csChargingProfiles": {
            "chargingProfileId": 7,
            "stackLevel": 1,
            "chargingProfilePurpose": purpose,
            "chargingProfileKind": "Absolute",
            "chargingSchedule": {
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}],
            },
            **extra,
        },
    }


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_profile_takes_effect_after_the_reaction_delay(version: str) -> None:
    station = Station(version)
    station.state.reaction_s = 5.0
    station.state.session_started(1, 42, T0)
    if version == "1.6":
        payload = v16_profile("TxProfile", 10.0, transactionId=42)
    else:
        payload = {
            "evseId": 1,
            "chargingProfile": {
                "id": 7,
                "stackLevel": 1,
                "chargingProfilePurpose": "TxProfile",
                "chargingProfileKind": "Absolute",
                "transactionId": "42",
                "chargingSchedule": [
                    {
                        "id": 7,
                        "chargingRateUnit": "A",
                        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10.0}],
                    }
                ],
            },
        }
    _, sent = await answer(version, "SetChargingProfile", payload, station=station)
    assert sent == [[3, "id-1", {"status": "Accepted"}]]
    before = station.state.power_limit_w(1, 22_000.0, T0 + timedelta(seconds=4.9))
    after = station.state.power_limit_w(1, 22_000.0, T0 + timedelta(seconds=5))
    assert (before, after) == (22_000.0, 10.0 * 230.0 * 3)


async def test_a_station_cap_is_shared_by_the_connectors_charging() -> None:
    station = Station("1.6")
    station.state.session_started(1, 1, T0)
    station.state.session_started(2, 2, T0)
    payload = v16_profile("ChargePointMaxProfile", 16.0, connector=0)
    _, sent = await answer("1.6", "SetChargingProfile", payload, station=station)
    assert sent == [[3, "id-1", {"status": "Accepted"}]]
    assert station.state.power_limit_w(1, 22_000.0, T0) == pytest.approx(16 * 230 * 3 / 2)


@pytest.mark.parametrize(
    ("behaviour", "status", "kept"), [("reject", "Rejected", 0), ("ignore", "Accepted", 0)]
)
async def test_a_station_may_reject_or_ignore_profiles(
    behaviour: str, status: str, kept: int
) -> None:
    station = Station("1.6")
    station.state.profile_behaviour = behaviour
    payload = v16_profile("TxDefaultProfile", 6.0)
    _, sent = await answer("1.6", "SetChargingProfile", payload, station=station)
    assert sent == [[3, "id-1", {"status": status}]]
    assert len(station.state.profiles) == kept
    assert station.state.power_limit_w(1, 22_000.0, T0) == 22_000.0


async def test_a_charge_point_max_profile_only_on_connector_0() -> None:
    payload = v16_profile("ChargePointMaxProfile", 16.0, connector=1)
    station, sent = await answer("1.6", "SetChargingProfile", payload)
    assert sent == [[3, "id-1", {"status": "Rejected"}]]
    assert station.state.profiles == {}


async def test_a_replaced_profile_holds_until_the_new_one_takes_effect() -> None:
    station = Station("1.6")
    station.state.reaction_s = 5.0
    first = v16_profile("TxDefaultProfile", 10.0, connector=0)
    await answer("1.6", "SetChargingProfile", first, station=station)
    later = T0 + timedelta(seconds=10)
    station.now = lambda: later  # type: ignore[method-assign]
    second = v16_profile("TxDefaultProfile", 0.0, connector=0)
    _, sent = await answer("1.6", "SetChargingProfile", second, station=station)
    assert sent == [[3, "id-1", {"status": "Accepted"}]]
    limits = [
        station.state.power_limit_w(1, 22_000.0, later + timedelta(seconds=s)) for s in (0, 4, 5)
    ]
    assert limits == [10.0 * 690, 10.0 * 690, 0.0]  # never unlimited in between
