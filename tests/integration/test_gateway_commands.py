"""Remote commands end to end over the real broker, database and websockets:
``ocpp.commands`` -> gateway -> simulated station -> ``ocpp.command-results`` and the
``commands`` table; routing across two replicas; effects on the simulation."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from bus.admin import read_topic
from bus.commands import Command, CommandResult, CommandStatus, decode_result, new_command
from bus.envelope import Envelope
from bus.producer import Producer, producer_config
from bus.topics import Topics
from chargeflow.stack import EmbeddedBroker
from ingest.gateway.server import Gateway
from ingest.simulator.station import SimulatedStation
from store import commands as store
from store.stations import provision_station
from tests.support.gateway import SIM_TAG as TAG
from tests.support.gateway import STATION_PASSWORD, envelopes, gateway_config, sim_station
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration


@asynccontextmanager
async def submitter(gw: Gateway) -> AsyncIterator[Callable[[Command], Any]]:
    producer = Producer(producer_config(gw.config.kafka_bootstrap))
    conn = await psycopg.AsyncConnection.connect(gw.config.database_url, autocommit=True)
    try:

        async def submit(command: Command) -> Command:
            assert await store.submit_command(conn, producer, gw.config.topics, command)
            return command

        yield submit
    finally:
        await conn.close()
        await asyncio.to_thread(producer.close, 5.0)


def results(broker: EmbeddedBroker, topics: Topics) -> list[CommandResult]:
    return [
        decode_result(m.value()) for m in read_topic(broker.bootstrap, topics.ocpp_command_results)
    ]


async def wait_results(
    broker: EmbeddedBroker, topics: Topics, commands: list[Command], wait_s: float = 30
) -> dict[str, CommandResult]:
    """The result of each command (by action; actions unique in ``commands``)."""
    ids = {c.command_id for c in commands}

    def fetch() -> dict[uuid.UUID, CommandResult]:
        return {r.command_id: r for r in results(broker, topics) if r.command_id in ids}

    got = await asyncio.to_thread(
        poll_until,
        fetch,
        lambda r: len(r) == len(ids),
        wait_s,
        f"results of {sorted(c.action for c in commands)}",
    )
    return {c.action: got[c.command_id] for c in commands}


async def wait_envelopes(
    broker: EmbeddedBroker,
    topics: Topics,
    done: Callable[[list[Envelope]], bool],
    what: str,
    wait_s: float = 30,
) -> list[Envelope]:
    return await asyncio.to_thread(
        poll_until, lambda: envelopes(broker, topics.ocpp_events), done, wait_s, what
    )


async def until(condition: Callable[[], Any], what: str, wait_s: float = 20) -> None:
    """Poll in-process state (the simulated station's) with a deadline."""
    deadline = time.monotonic() + wait_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {wait_s}s waiting for {what}")
        await asyncio.sleep(0.02)


def row(database_url: str, command_id: uuid.UUID) -> dict[str, Any]:
    with psycopg.connect(database_url) as conn:
        cur = conn.execute(
            "SELECT status, gateway_id, sent_at, completed_at, response, error, ocpp_version, "
            "requested_by FROM commands WHERE command_id = %s",
            (command_id,),
        )
        values = cur.fetchone()
        assert values is not None, f"no row for {command_id}"
        return dict(zip([d.name for d in cur.description or []], values, strict=True))


def cmd(cp_id: str, action: str, payload: dict[str, Any], **kw: Any) -> Command:
    kw.setdefault("timeout_s", 5)
    return new_command(cp_id, action, payload, requested_by="test", **kw)


def power_w(envelope: Envelope) -> float | None:
    """Power.Active.Import in a 1.6 MeterValues / 2.0.1 TransactionEvent envelope."""
    for mv in envelope.payload.get("meterValue", []):
        for sv in mv.get("sampledValue", []):
            if sv.get("measurand") == "Power.Active.Import":
                return float(sv["value"])
    return None


# ------------------------------------------------------------------ payloads

V16_COMMANDS: list[tuple[str, dict[str, Any]]] = [
    ("ChangeConfiguration", {"key": "HeartbeatInterval", "value": "120"}),
    ("GetConfiguration", {"key": ["HeartbeatInterval"]}),
    (
        "SetChargingProfile",
        {
            "connectorId": 1,
            "csChargingProfiles": {
                "chargingProfileId": 1,
                "stackLevel": 0,
                "chargingProfilePurpose": "TxDefaultProfile",
                "chargingProfileKind": "Relative",
                "chargingSchedule": {
                    "chargingRateUnit": "W",
                    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": Decimal("7400.3")}],
                },
            },
        },
    ),
    ("GetCompositeSchedule", {"connectorId": 1, "duration": 3600, "chargingRateUnit": "W"}),
    ("ClearChargingProfile", {"id": 1}),
    ("TriggerMessage", {"requestedMessage": "MeterValues", "connectorId": 1}),
    (
        "UpdateFirmware",
        {"location": "https://fw.example/1.1.bin", "retrieveDate": "2026-01-01T00:00:00Z"},
    ),
    ("GetDiagnostics", {"location": "ftp://diag.example/upload"}),
    (
        "SendLocalList",
        {
            "listVersion": 3,
            "updateType": "Full",
            "localAuthorizationList": [{"idTag": TAG, "idTagInfo": {"status": "Accepted"}}],
        },
    ),
    ("GetLocalListVersion", {}),
    (
        "ReserveNow",
        {"connectorId": 1, "expiryDate": "2030-01-01T00:00:00Z", "idTag": TAG, "reservationId": 7},
    ),
    ("CancelReservation", {"reservationId": 7}),
    ("ClearCache", {}),
    ("DataTransfer", {"vendorId": "org.chargeflow", "messageId": "ping", "data": "x"}),
    ("UnlockConnector", {"connectorId": 1}),
    ("ChangeAvailability", {"connectorId": 1, "type": "Inoperative"}),
]

V201_COMMANDS: list[tuple[str, dict[str, Any]]] = [
    (
        "SetVariables",
        {
            "setVariableData": [
                {
                    "attributeValue": "120",
                    "component": {"name": "OCPPCommCtrlr"},
                    "variable": {"name": "HeartbeatInterval"},
                }
            ]
        },
    ),
    (
        "GetVariables",
        {
            "getVariableData": [
                {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}
            ]
        },
    ),
    (
        "SetChargingProfile",
        {
            "evseId": 1,
            "chargingProfile": {
                "id": 1,
                "stackLevel": 0,
                "chargingProfilePurpose": "TxDefaultProfile",
                "chargingProfileKind": "Relative",
                "chargingSchedule": [
                    {
                        "id": 1,
                        "chargingRateUnit": "W",
                        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": Decimal("7400.3")}],
                    }
                ],
            },
        },
    ),
    ("GetCompositeSchedule", {"duration": 3600, "evseId": 1, "chargingRateUnit": "W"}),
    ("ClearChargingProfile", {"chargingProfileId": 1}),
    ("TriggerMessage", {"requestedMessage": "MeterValues", "evse": {"id": 1}}),
    (
        "UpdateFirmware",
        {
            "requestId": 11,
            "firmware": {
                "location": "https://fw.example/1.1.bin",
                "retrieveDateTime": "2026-01-01T00:00:00Z",
            },
        },
    ),
    (
        "GetLog",
        {
            "logType": "DiagnosticsLog",
            "requestId": 12,
            "log": {"remoteLocation": "https://logs.example/upload"},
        },
    ),
    ("GetBaseReport", {"requestId": 13, "reportBase": "ConfigurationInventory"}),
    ("SendLocalList", {"versionNumber": 3, "updateType": "Full"}),
    ("GetLocalListVersion", {}),
    (
        "ReserveNow",
        {
            "id": 7,
            "expiryDateTime": "2030-01-01T00:00:00Z",
            "idToken": {"idToken": TAG, "type": "ISO14443"},
            "evseId": 1,
        },
    ),
    ("CancelReservation", {"reservationId": 7}),
    ("ClearCache", {}),
    ("DataTransfer", {"vendorId": "org.chargeflow", "messageId": "ping"}),
    ("UnlockConnector", {"evseId": 1, "connectorId": 1}),
    ("ChangeAvailability", {"operationalStatus": "Inoperative", "evse": {"id": 1}}),
]


@dataclass(frozen=True)
class Flow:
    """A version's start/stop/reset commands and what the station sends after the
    other commands."""

    start: str
    stop: str
    reset: tuple[str, dict[str, Any]]
    commands: list[tuple[str, dict[str, Any]]]
    follow_ups: frozenset[str]


FLOW = {
    "1.6": Flow(
        "RemoteStartTransaction",
        "RemoteStopTransaction",
        ("Reset", {"type": "Soft"}),
        V16_COMMANDS,
        frozenset({"FirmwareStatusNotification", "DiagnosticsStatusNotification", "MeterValues"}),
    ),
    "2.0.1": Flow(
        "RequestStartTransaction",
        "RequestStopTransaction",
        ("Reset", {"type": "Immediate"}),
        V201_COMMANDS,
        frozenset(
            {"FirmwareStatusNotification", "LogStatusNotification", "NotifyReport", "MeterValues"}
        ),
    ),
}


def start_payload(version: str) -> dict[str, Any]:
    if version == "1.6":
        return {"connectorId": 1, "idTag": TAG}
    return {"idToken": {"idToken": TAG, "type": "ISO14443"}, "remoteStartId": 1, "evseId": 1}


def started_tx(version: str, cp_id: str, envs: list[Envelope]) -> Any:
    for e in envs:
        if e.charge_point_id != cp_id:
            continue
        if version == "1.6" and e.action == "StartTransaction":
            return e.response["transactionId"] if e.response else None
        if (
            version == "2.0.1"
            and e.action == "TransactionEvent"
            and e.payload["eventType"] == "Started"
        ):
            return e.payload["transactionInfo"]["transactionId"]
    return None


def stopped_reason(version: str, cp_id: str, envs: list[Envelope]) -> str | None:
    for e in envs:
        if e.charge_point_id != cp_id:
            continue
        if version == "1.6" and e.action == "StopTransaction":
            return str(e.payload.get("reason"))
        if (
            version == "2.0.1"
            and e.action == "TransactionEvent"
            and e.payload["eventType"] == "Ended"
        ):
            return str(e.payload["transactionInfo"].get("stoppedReason"))
    return None


# --------------------------------------------------------------------- tests


Submit = Callable[[Command], Any]


async def _submit_every_command(
    broker: EmbeddedBroker, topics: Topics, gw: Gateway, cp: str, version: str, submit: Submit
) -> tuple[dict[str, CommandResult], list[Command]]:
    """Submits the version's commands, then availability back to Operative (order is kept
    per station); returns the batch's results by action and every command sent."""
    batch = [cmd(cp, a, p) for a, p in FLOW[version].commands]
    operative = cmd(
        cp,
        "ChangeAvailability",
        {"connectorId": 1, "type": "Operative"}
        if version == "1.6"
        else {"operationalStatus": "Operative"},
    )
    for c in [*batch, operative]:
        await submit(c)
    got = await wait_results(broker, topics, batch)
    for action, result in got.items():
        assert result.status == CommandStatus.ACCEPTED, (action, result)
        assert result.gateway_id == gw.gateway_id
        assert result.ocpp_version == version
        assert result.sent_at is not None
    assert (await wait_results(broker, topics, [operative]))[
        "ChangeAvailability"
    ].status == CommandStatus.ACCEPTED
    return got, [*batch, operative]


def _check_the_answers_are_kept(got: dict[str, CommandResult], cp: str, version: str) -> None:
    """The station's answers are kept, exactly (Decimal limits survive)."""
    if version == "1.6":
        assert got["GetConfiguration"].response == {
            "configurationKey": [{"key": "HeartbeatInterval", "readonly": False, "value": "120"}]
        }
        assert got["GetCompositeSchedule"].response["chargingSchedule"][  # type: ignore[index]
            "chargingSchedulePeriod"
        ] == [{"startPeriod": 0, "limit": Decimal("7400.3")}]
        assert got["GetDiagnostics"].response == {"fileName": f"{cp}-diagnostics.log"}
        assert got["UnlockConnector"].response == {"status": "Unlocked"}
    else:
        assert (
            got["GetVariables"].response["getVariableResult"][0][  # type: ignore[index]
                "attributeValue"
            ]
            == "120"
        )
        assert got["GetCompositeSchedule"].response["schedule"][  # type: ignore[index]
            "chargingSchedulePeriod"
        ] == [{"startPeriod": 0, "limit": Decimal("7400.3")}]


def _check_each_sent_once_and_recorded(
    station: SimulatedStation, sent: list[Command], database_url: str, gw: Gateway
) -> None:
    received = [a for a, _ in station.state.received]
    assert received == [c.action for c in sent]  # each sent once, in order
    sent_profile = dict(station.state.received)["SetChargingProfile"]
    assert "7400.3" in repr(sent_profile)  # serialised exactly, not as a float
    record = row(database_url, sent[0].command_id)
    assert record["status"] == "accepted"
    assert record["requested_by"] == "test"
    assert record["gateway_id"] == gw.gateway_id
    assert record["sent_at"] <= record["completed_at"]


async def _remote_start_stop_and_reset(
    broker: EmbeddedBroker, topics: Topics, station: SimulatedStation, version: str, submit: Submit
) -> None:
    """Remote start -> a session starts (no Authorize: not configured), remote stop
    -> it stops with reason Remote, reset -> the station boots again."""
    cp, flow = station.cp_id, FLOW[version]
    start = await submit(cmd(cp, flow.start, start_payload(version)))
    assert (await wait_results(broker, topics, [start]))[
        start.action
    ].status == CommandStatus.ACCEPTED
    await until(lambda: station.state.running.get(1) is not None, "the session")
    envs = await wait_envelopes(
        broker,
        topics,
        lambda es: started_tx(version, cp, es) is not None,
        "the remote-started session",
    )
    assert not [e for e in envs if e.charge_point_id == cp and e.action == "Authorize"]
    tx = started_tx(version, cp, envs)
    assert str(tx) == str(station.state.running[1])
    stop = await submit(cmd(cp, flow.stop, {"transactionId": tx}))
    assert (await wait_results(broker, topics, [stop]))[
        stop.action
    ].status == CommandStatus.ACCEPTED
    await wait_envelopes(
        broker,
        topics,
        lambda es: stopped_reason(version, cp, es) == "Remote",
        "the session stopped remotely",
    )
    boots = len([e for e in envs if e.charge_point_id == cp and e.action == "BootNotification"])
    reset_action, reset_payload = flow.reset
    reset = await submit(cmd(cp, reset_action, reset_payload))
    assert (await wait_results(broker, topics, [reset]))["Reset"].status == CommandStatus.ACCEPTED
    await wait_envelopes(
        broker,
        topics,
        lambda es: (
            len([e for e in es if e.charge_point_id == cp and e.action == "BootNotification"])
            > boots
        ),
        "a BootNotification after the reset",
    )


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_every_command_is_sent_answered_and_recorded(
    broker: EmbeddedBroker, clean_db: str, topics: Topics, version: str
) -> None:
    flow = FLOW[version]
    async with (
        Gateway(gateway_config(broker, clean_db, topics)) as gw,
        sim_station(gw, f"CMD{version}-", version) as station,
        submitter(gw) as submit,
    ):
        cp = station.cp_id
        got, sent = await _submit_every_command(broker, topics, gw, cp, version, submit)
        _check_the_answers_are_kept(got, cp, version)
        _check_each_sent_once_and_recorded(station, sent, clean_db, gw)

        # Follow-up messages the commands asked for reach ocpp.events.
        follow_ups = flow.follow_ups
        await wait_envelopes(
            broker,
            topics,
            lambda envs: follow_ups <= {e.action for e in envs if e.charge_point_id == cp},
            f"{follow_ups} from {cp}",
        )
        await _remote_start_stop_and_reset(broker, topics, station, version, submit)


def _commands_that_do_not_succeed(cp: str) -> dict[str, Command]:
    now = datetime.now(UTC)
    return {
        "rejected": cmd(cp, "Reset", {"type": "Hard"}),
        "callerror": cmd(cp, "ClearCache", {}),
        "silent": cmd(cp, "GetLocalListVersion", {}, timeout_s=0.5),
        "invalid": cmd(cp, "UnlockConnector", {"connectorId": "one"}),
        "wrong_version": cmd(
            cp,
            "RequestStartTransaction",
            {"idToken": {"idToken": TAG, "type": "ISO14443"}, "remoteStartId": 1},
        ),
        "expired": cmd(
            cp,
            "DataTransfer",
            {"vendorId": "org.chargeflow"},
            now=now - timedelta(seconds=20),
            ttl_s=10,
        ),
        "read_only": cmd(cp, "ChangeConfiguration", {"key": "NumberOfConnectors", "value": "2"}),
        "unknown_key": cmd(cp, "GetConfiguration", {"key": ["NoSuchKey"]}),
    }


async def _check_offline_fails_fast(
    broker: EmbeddedBroker, topics: Topics, submit: Submit
) -> Command:
    """Returns the command sent to the station that never connected."""
    started = time.monotonic()
    offline = await submit(cmd("CMD-NEVER-CONNECTED", "Reset", {"type": "Soft"}))
    off = (await wait_results(broker, topics, [offline]))["Reset"]
    assert off.status == CommandStatus.OFFLINE
    assert time.monotonic() - started < 5  # fails fast
    assert off.sent_at is None
    assert "not connected" in (off.error or "")
    return offline


def _check_the_outcomes(got: dict[uuid.UUID, CommandResult], sent: dict[str, Command]) -> None:
    def result(name: str) -> CommandResult:
        return got[sent[name].command_id]

    assert result("rejected").status == CommandStatus.REJECTED
    assert result("rejected").response == {"status": "Rejected"}
    assert result("callerror").status == CommandStatus.FAILED
    assert result("callerror").error_code == "NotSupported"
    assert result("callerror").response["errorCode"] == "NotSupported"  # type: ignore[index]
    assert result("silent").status == CommandStatus.TIMED_OUT
    for bad in ("invalid", "wrong_version"):
        assert result(bad).status == CommandStatus.FAILED
        assert (result(bad).error or "").startswith("not sent: ")
        assert result(bad).sent_at is None
    assert "connectorId" in (result("invalid").error or "")
    assert result("expired").status == CommandStatus.EXPIRED
    assert result("expired").sent_at is None
    assert result("read_only").status == CommandStatus.REJECTED
    assert result("read_only").response == {"status": "Rejected"}
    assert result("unknown_key").status == CommandStatus.REJECTED
    assert result("unknown_key").response == {
        "configurationKey": [],
        "unknownKey": ["NoSuchKey"],
    }


async def test_refusals_errors_timeouts_invalid_expired_and_offline(
    broker: EmbeddedBroker, clean_db: str, topics: Topics
) -> None:
    behaviour = {"Reset": "reject", "ClearCache": "not_supported", "GetLocalListVersion": "ignore"}
    async with (
        Gateway(gateway_config(broker, clean_db, topics)) as gw,
        sim_station(gw, "CMDFAIL-", "1.6", command_behaviour=behaviour) as station,
        submitter(gw) as submit,
    ):
        cp = station.cp_id
        await asyncio.to_thread(
            provision_station, clean_db, "CMD-NEVER-CONNECTED", password=STATION_PASSWORD
        )
        sent = _commands_that_do_not_succeed(cp)
        for c in sent.values():
            await submit(c)
        offline = await _check_offline_fails_fast(broker, topics, submit)

        got = {
            r.command_id: r
            for r in (await wait_results(broker, topics, list(sent.values()))).values()
        }
        _check_the_outcomes(got, sent)
        # Nothing invalid, expired or for the wrong version reached the station.
        assert [a for a, _ in station.state.received] == [
            "Reset",
            "ClearCache",
            "GetLocalListVersion",
            "ChangeConfiguration",
            "GetConfiguration",
        ]
        assert row(clean_db, sent["silent"].command_id)["status"] == "timed_out"
        assert row(clean_db, sent["callerror"].command_id)["error"].startswith(
            "CALLERROR NotSupported"
        )
        assert row(clean_db, offline.command_id)["status"] == "offline"


async def test_undecodable_command_is_dead_lettered_once(
    broker: EmbeddedBroker, clean_db: str, topics: Topics
) -> None:
    cfg = gateway_config(broker, clean_db, topics)
    async with (
        Gateway(replace(cfg, gateway_id="gw-a")) as a,
        Gateway(replace(cfg, gateway_id="gw-b")) as b,
    ):
        assert a.gateway_id != b.gateway_id
        producer = Producer(producer_config(broker.bootstrap))
        try:
            await producer.publish(topics.ocpp_commands, b"CP-X", b"{not json")
            good = cmd("CP-UNKNOWN", "Reset", {"type": "Soft"})
            async with submitter(a) as submit:
                await submit(good)
            # Both replicas read past the bad message to the good one.
            assert (await wait_results(broker, topics, [good]))[
                "Reset"
            ].status == CommandStatus.OFFLINE
        finally:
            await asyncio.to_thread(producer.close, 5.0)
        dead = await asyncio.to_thread(
            poll_until,
            lambda: list(read_topic(broker.bootstrap, topics.deadletter)),
            lambda d: len(d) >= 1,
            20,
            "the dead letter",
        )
        assert [m.value() for m in dead] == [b"{not json"]
        headers = dict(dead[0].headers() or [])
        assert headers["deadletter.stage"] == b"gateway.commands"
        assert b"not valid JSON" in headers["deadletter.reason"]
        # Exactly one result for the good command although two replicas read it.
        assert len([r for r in results(broker, topics) if r.command_id == good.command_id]) == 1


async def test_two_replicas_send_each_command_exactly_once(
    broker: EmbeddedBroker, clean_db: str, topics: Topics
) -> None:
    cfg = gateway_config(broker, clean_db, topics)
    async with (
        Gateway(replace(cfg, gateway_id="gw-a")) as a,
        Gateway(replace(cfg, gateway_id="gw-b")) as b,
        sim_station(a, "CMDA-", "1.6") as on_a,
        sim_station(b, "CMDB-", "2.0.1") as on_b,
        submitter(a) as submit,
    ):
        for_a = [
            cmd(on_a.cp_id, "ClearCache", {}),
            cmd(on_a.cp_id, "GetLocalListVersion", {}),
            cmd(on_a.cp_id, "TriggerMessage", {"requestedMessage": "Heartbeat"}),
        ]
        for_b = [cmd(on_b.cp_id, "ClearCache", {}), cmd(on_b.cp_id, "GetLocalListVersion", {})]
        for c in [*for_a, *for_b]:
            await submit(c)
        got_a = await wait_results(broker, topics, for_a)
        got_b = await wait_results(broker, topics, for_b)
        assert {r.status for r in [*got_a.values(), *got_b.values()]} == {CommandStatus.ACCEPTED}
        assert {r.gateway_id for r in got_a.values()} == {a.gateway_id}
        assert {r.gateway_id for r in got_b.values()} == {b.gateway_id}
        assert [x for x, _ in on_a.state.received] == [c.action for c in for_a]
        assert [x for x, _ in on_b.state.received] == [c.action for c in for_b]
        ids = {c.command_id for c in [*for_a, *for_b]}
        published = [r for r in results(broker, topics) if r.command_id in ids]
        assert len(published) == len(ids)  # one result each, nobody failed them as offline
        assert a.commands is not None
        assert b.commands is not None
        assert a.commands.metrics.ignored._value.get() == len(for_b)
        assert b.commands.metrics.ignored._value.get() == len(for_a)


def _current_limit_profile(version: str) -> dict[str, Any]:
    """A 4.3 A on 3 phases TxProfile for the running transaction."""
    if version == "1.6":
        return {
            "connectorId": 1,
            "csChargingProfiles": {
                "chargingProfileId": 5,
                "stackLevel": 1,
                "chargingProfilePurpose": "TxProfile",
                "chargingProfileKind": "Relative",
                "chargingSchedule": {
                    "chargingRateUnit": "A",
                    "chargingSchedulePeriod": [
                        {"startPeriod": 0, "limit": Decimal("4.3"), "numberPhases": 3}
                    ],
                },
            },
        }
    return {
        "evseId": 1,
        "chargingProfile": {
            "id": 5,
            "stackLevel": 1,
            "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Relative",
            "chargingSchedule": [
                {
                    "id": 5,
                    "chargingRateUnit": "A",
                    "chargingSchedulePeriod": [
                        {"startPeriod": 0, "limit": Decimal("4.3"), "numberPhases": 3}
                    ],
                }
            ],
        },
    }


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_charging_profile_lowers_the_power_in_the_next_meter_values(
    broker: EmbeddedBroker, clean_db: str, topics: Topics, version: str
) -> None:
    async with (
        Gateway(gateway_config(broker, clean_db, topics)) as gw,
        sim_station(gw, f"CMDPWR{version}-", version) as station,
        submitter(gw) as submit,
    ):
        cp = station.cp_id
        flow = FLOW[version]
        start = await submit(cmd(cp, flow.start, start_payload(version)))
        assert (await wait_results(broker, topics, [start]))[
            start.action
        ].status == CommandStatus.ACCEPTED

        def powers(envs: list[Envelope]) -> list[float]:
            return [
                p for e in envs if e.charge_point_id == cp for p in [power_w(e)] if p is not None
            ]

        before = powers(
            await wait_envelopes(
                broker, topics, lambda es: len(powers(es)) >= 2, "meter values while charging"
            )
        )
        assert min(before) > 3000
        limit = await submit(cmd(cp, "SetChargingProfile", _current_limit_profile(version)))
        assert (await wait_results(broker, topics, [limit]))[
            "SetChargingProfile"
        ].status == CommandStatus.ACCEPTED
        seen = len(powers(await asyncio.to_thread(envelopes, broker, topics.ocpp_events)))
        # 4.3 A x 3 phases from the next meter interval on, at the simulated grid's voltage
        # (a day cycle within EN 50160's 230 V +-10 %: at most 253 V).
        after = await wait_envelopes(
            broker, topics, lambda es: len(powers(es)) >= seen + 2, "meter values after the profile"
        )
        assert powers(after)[seen + 1] <= 4.3 * 253 * 3


async def test_sweeper_expires_pending_and_fails_orphaned_commands(clean_db: str) -> None:
    conn = await psycopg.AsyncConnection.connect(clean_db, autocommit=True)
    try:
        past = new_command(
            "CP-SWEEP",
            "Reset",
            {"type": "Soft"},
            requested_by="t",
            now=datetime.now(UTC) - timedelta(minutes=5),
            ttl_s=60,
            timeout_s=1,
        )
        orphan = new_command("CP-SWEEP", "ClearCache", {}, requested_by="t", timeout_s=1)
        for c in (past, orphan):
            assert await store.insert_if_missing(conn, c)
            assert not await store.insert_if_missing(conn, c)  # idempotent
        claimed = await store.claim(conn, orphan.command_id, "gw-dead", CommandStatus.SENT)
        assert claimed is not None
        assert claimed.status == CommandStatus.SENT
        assert (
            await store.claim(conn, orphan.command_id, "gw-other", CommandStatus.SENT) is None
        )  # exactly one claim wins
        await conn.execute(
            "UPDATE commands SET sent_at = now() - interval '1 minute' WHERE command_id = %s",
            (orphan.command_id,),
        )
        expired = await store.expire_overdue(conn, "gw-sweeper")
        assert [r.command_id for r in expired if r.charge_point_id == "CP-SWEEP"] == [
            past.command_id
        ]
        assert expired[0].to_result().status == CommandStatus.EXPIRED
        abandoned = await store.abandon_orphaned(conn, grace_s=5)
        mine = [r for r in abandoned if r.command_id == orphan.command_id]
        assert len(mine) == 1
        assert mine[0].status == CommandStatus.FAILED
        assert "gw-dead" in (mine[0].error or "")
        assert await store.complete(conn, orphan.command_id, CommandStatus.ACCEPTED) is None
    finally:
        await conn.close()


async def test_results_left_unpublished_are_published_by_a_heartbeat(
    broker: EmbeddedBroker, clean_db: str, topics: Topics
) -> None:
    """A replica that died between the terminal update and the publish (the row is
    the outbox): another replica's heartbeat publishes the result once and marks it."""
    conn = await psycopg.AsyncConnection.connect(clean_db, autocommit=True)
    try:
        lost = new_command("CP-LOST", "Reset", {"type": "Soft"}, requested_by="t", timeout_s=1)
        assert await store.insert_if_missing(conn, lost)
        assert await store.claim(conn, lost.command_id, "gw-dead", CommandStatus.SENT)
        done = await store.complete(
            conn, lost.command_id, CommandStatus.ACCEPTED, response={"status": "Accepted"}
        )
        assert done is not None
        await conn.execute(
            "UPDATE commands SET completed_at = now() - interval '1 minute' WHERE command_id = %s",
            (lost.command_id,),
        )

        cfg = gateway_config(broker, clean_db, topics, replica_heartbeat_s=0.2, replica_grace_s=5.0)
        async with Gateway(cfg) as gw, submitter(gw) as submit:
            got = (await wait_results(broker, topics, [lost]))["Reset"]
            assert (got.status, got.response, got.gateway_id) == (
                CommandStatus.ACCEPTED,
                {"status": "Accepted"},
                "gw-dead",
            )

            async def published_at(command_id: uuid.UUID) -> Any:
                cur = await conn.execute(
                    "SELECT result_published_at FROM commands WHERE command_id = %s", (command_id,)
                )
                found = await cur.fetchone()
                assert found is not None
                return found[0]

            await until_async(lambda: published_at(lost.command_id), "the row marked")
            # A command finished the normal way is marked right after its publish.
            offline = await submit(cmd("CP-LOST", "ClearCache", {}))
            assert (await wait_results(broker, topics, [offline]))[
                "ClearCache"
            ].status == CommandStatus.OFFLINE
            await until_async(lambda: published_at(offline.command_id), "the normal mark")
            assert gw.commands is not None
            assert await store.publish_unpublished(gw.commands.pool, _never, 0) == []
        assert [r.command_id for r in results(broker, topics)].count(lost.command_id) == 1
    finally:
        await conn.close()


async def _never(record: store.CommandRecord) -> None:
    raise AssertionError(f"nothing is left to publish, got {record.command_id}")


async def until_async(fetch: Callable[[], Any], what: str, wait_s: float = 20) -> Any:
    deadline = time.monotonic() + wait_s
    while True:
        value = await fetch()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {wait_s}s waiting for {what}")
        await asyncio.sleep(0.05)
