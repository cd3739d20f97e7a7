"""The typed smart charging, configuration, local list, cache, reservation and
diagnostics commands from the API end to end (real broker, database, gateway and a
simulated OCPP 1.6 or 2.0.1 station): each reaches the station in its version's form and
its answer is the command's outcome; at least one rejection per family, the composite
schedule read back from the command's response, and the 422s of what a version cannot
say."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import psycopg
import pytest

from bus.times import format_rfc3339, utc_now
from bus.topics import Topics
from chargeflow.stack import EmbeddedBroker
from ingest.simulator.station import SimulatedStation
from tests.support.api import assert_problem, insert_session
from tests.support.api_commands import keys, post, sent, station_and_api
from tests.support.gateway import SIM_TAG
from tests.support.polling import apoll

pytestmark = pytest.mark.integration
VERSIONS = pytest.mark.parametrize("version", ["1.6", "2.0.1"])


def profile(profile_id: int, limit: str, **fields: Any) -> dict[str, Any]:
    return {
        "connector_id": 1,
        "profile_id": profile_id,
        "purpose": "tx_default",
        "kind": "relative",
        "unit": "W",
        "periods": [{"start_period_s": 0, "limit": limit}],
        **fields,
    }


def schedule_of(response: dict[str, Any], version: str) -> dict[str, Any]:
    """The composite schedule in a GetCompositeSchedule answer."""
    schedule: dict[str, Any] = response["chargingSchedule" if version == "1.6" else "schedule"]
    return schedule


async def _tx_profile_by_session(
    client: httpx.AsyncClient, key: str, station: SimulatedStation, db_url: str
) -> None:
    """A tx profile naming a chargeflow session: the session's transaction is sent."""
    cp = station.cp_id
    started = await sent(client, key, cp, "remote-start", {"id_tag": SIM_TAG, "connector_id": 1})
    assert started["status"] == "accepted", started
    running = await apoll(
        lambda: station.state.running.get(1), lambda tx: tx is not None, 20, "a transaction"
    )
    with psycopg.connect(db_url, autocommit=True) as conn:
        session = insert_session(
            conn, charge_point_id=cp, transaction_id=str(running), status="active"
        )
    body = profile(30, "3700", purpose="tx", session_id=str(session["session_id"]))
    tx = await sent(client, key, cp, "set-charging-profile", body)
    assert tx["status"] == "accepted", tx
    charging = tx["payload"].get("csChargingProfiles") or tx["payload"]["chargingProfile"]
    assert str(charging["transactionId"]) == str(running)
    assert charging["chargingProfilePurpose"] == "TxProfile"
    # A transaction that is not the connector's: the station refuses the profile.
    other = await sent(
        client,
        key,
        cp,
        "set-charging-profile",
        profile(31, "3700", purpose="tx", transaction_id="999"),
    )
    assert other["status"] == "rejected", other
    unknown = profile(32, "3700", purpose="tx", session_id=str(uuid.uuid4()))
    missing = await post(client, key, cp, "set-charging-profile", unknown)
    assert "no session" in assert_problem(missing, 422)["detail"]
    stopped = await sent(client, key, cp, "remote-stop", {"session_id": str(session["session_id"])})
    assert stopped["status"] == "accepted", stopped


async def _clear_profiles(client: httpx.AsyncClient, key: str, cp: str, version: str) -> None:
    """Profile 10 by id (then Unknown), then by criteria what is left on connector 1."""
    cleared = await sent(client, key, cp, "clear-charging-profile", {"profile_id": 10})
    assert cleared["status"] == "accepted", cleared
    again = await sent(client, key, cp, "clear-charging-profile", {"profile_id": 10})
    assert again["status"] == "rejected"
    assert again["response"] == {"status": "Unknown"}
    by_criteria = await sent(
        client,
        key,
        cp,
        "clear-charging-profile",
        {"connector_id": 1, "purpose": "tx_default"},
    )
    # 2.0.1 still had profile 11 to clear; the 1.6 station had none left.
    assert by_criteria["status"] == ("rejected" if version == "1.6" else "accepted")


@VERSIONS
async def test_smart_charging_commands(
    broker: EmbeddedBroker, clean_db: str, topics: Topics, version: str
) -> None:
    key = keys(clean_db)["operator"]
    async with station_and_api(broker, clean_db, topics, f"APISC{version}-", version) as (
        station,
        client,
    ):
        cp = station.cp_id
        set_ = await sent(client, key, cp, "set-charging-profile", profile(10, "7400.3"))
        assert set_["status"] == "accepted", set_
        if version == "1.6":
            assert set_["action"] == "SetChargingProfile"
            assert set_["payload"]["connectorId"] == 1
            cs = set_["payload"]["csChargingProfiles"]
            assert cs["chargingProfilePurpose"] == "TxDefaultProfile"
            assert cs["chargingSchedule"]["chargingSchedulePeriod"] == [
                {"startPeriod": 0, "limit": 7400.3}
            ]
        else:
            assert set_["payload"]["evseId"] == 1
            assert set_["payload"]["chargingProfile"]["chargingSchedule"][0]["id"] == 10

        # The schedule in force, read back from the command's response.
        composite = await sent(
            client, key, cp, "get-composite-schedule", {"connector_id": 1, "duration_s": 600}
        )
        assert composite["status"] == "accepted", composite
        schedule = schedule_of(composite["response"], version)
        assert schedule["chargingRateUnit"] == "W"
        assert schedule["duration"] == 600
        assert schedule["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 7400.3}]
        unknown = await sent(
            client, key, cp, "get-composite-schedule", {"connector_id": 9, "duration_s": 60}
        )
        assert unknown["status"] == "rejected"
        assert unknown["response"] == {"status": "Rejected"}

        # 1.6 limits are multiples of 0.1: refused before anything is queued.
        fine = await post(client, key, cp, "set-charging-profile", profile(11, "16.05"))
        if version == "1.6":
            assert "multiples of 0.1" in assert_problem(fine, 422)["detail"]
        else:
            assert fine.status_code == 202, fine.text

        await _clear_profiles(client, key, cp, version)
        await _tx_profile_by_session(client, key, station, clean_db)


def cache_setting(version: str, enabled: str) -> dict[str, Any]:
    if version == "1.6":
        return {"key": "AuthorizationCacheEnabled", "value": enabled}
    return {"component": "AuthCacheCtrlr", "key": "Enabled", "value": enabled}


async def _configuration(client: httpx.AsyncClient, key: str, cp: str, version: str) -> None:
    """Change and read a setting, a read-only one refused, what one version cannot say."""
    heartbeat = {"component": "OCPPCommCtrlr", "key": "HeartbeatInterval"}
    changed = await sent(client, key, cp, "configuration", {**heartbeat, "value": "120"})
    assert changed["status"] == "accepted", changed
    read = await sent(
        client,
        key,
        cp,
        "get-configuration",
        {"keys": ["HeartbeatInterval"], "component": "OCPPCommCtrlr"},
    )
    assert read["status"] == "accepted", read
    if version == "1.6":
        assert changed["action"] == "ChangeConfiguration"
        assert changed["payload"] == {"key": "HeartbeatInterval", "value": "120"}
        assert read["response"]["configurationKey"][0]["value"] == "120"
    else:
        assert changed["action"] == "SetVariables"
        assert read["action"] == "GetVariables"
        assert read["response"]["getVariableResult"][0]["attributeValue"] == "120"
    read_only = await sent(
        client,
        key,
        cp,
        "configuration",
        {"component": "ChargingStation", "key": "Model", "value": "X"},
    )
    assert read_only["status"] == "rejected", read_only

    variables = {"variables": [{"component": "ChargingStation", "variable": "VendorName"}]}
    got = await post(client, key, cp, "get-variables", variables)
    if version == "1.6":
        assert "for OCPP 2.0.1 stations" in assert_problem(got, 422)["detail"]
        no_keys = await sent(client, key, cp, "get-configuration", {})
        assert no_keys["status"] == "accepted"
        assert len(no_keys["response"]["configurationKey"]) > 5
    else:
        vendor = await sent(client, key, cp, "get-variables", variables)
        assert vendor["response"]["getVariableResult"][0]["attributeValue"] == "chargeflow"
        no_component = await post(client, key, cp, "configuration", {"key": "X", "value": "1"})
        assert "give component" in assert_problem(no_component, 422)["detail"]


async def _local_list_and_cache(
    client: httpx.AsyncClient, key: str, station: SimulatedStation, version: str
) -> None:
    """A full list, a stale differential update refused, a newer one; the cache cleared,
    then refused once disabled."""
    cp = station.cp_id
    entries = [
        {"id_tag": "LOCAL-1", "status": "Accepted"},
        {"id_tag": "LOCAL-2", "status": "Blocked"},
    ]
    full = await sent(
        client,
        key,
        cp,
        "send-local-list",
        {"version": 3, "update_type": "full", "entries": entries},
    )
    assert full["status"] == "accepted", full
    assert station.state.local_list == {"LOCAL-1": "Accepted", "LOCAL-2": "Blocked"}
    stale = {"version": 3, "update_type": "differential", "entries": [{"id_tag": "LOCAL-2"}]}
    mismatch = await sent(client, key, cp, "send-local-list", stale)
    assert mismatch["status"] == "rejected"
    assert mismatch["response"] == {"status": "VersionMismatch"}
    newer = await sent(client, key, cp, "send-local-list", {**stale, "version": 4})
    assert newer["status"] == "accepted", newer
    assert station.state.local_list == {"LOCAL-1": "Accepted"}

    assert (await sent(client, key, cp, "clear-cache", {}))["status"] == "accepted"
    disabled = await sent(client, key, cp, "configuration", cache_setting(version, "false"))
    assert disabled["status"] == "accepted", disabled
    refused = await sent(client, key, cp, "clear-cache", {})
    assert refused["status"] == "rejected"
    assert refused["response"] == {"status": "Rejected"}


@VERSIONS
async def test_configuration_local_list_and_cache_commands(
    broker: EmbeddedBroker, clean_db: str, topics: Topics, version: str
) -> None:
    key = keys(clean_db)["operator"]
    async with station_and_api(broker, clean_db, topics, f"APICF{version}-", version) as (
        station,
        client,
    ):
        cp = station.cp_id
        await _configuration(client, key, cp, version)
        await _local_list_and_cache(client, key, station, version)


@VERSIONS
async def test_reservation_and_diagnostics_commands(
    broker: EmbeddedBroker, clean_db: str, topics: Topics, version: str
) -> None:
    key = keys(clean_db)["operator"]
    async with station_and_api(broker, clean_db, topics, f"APIRD{version}-", version) as (
        station,
        client,
    ):
        cp = station.cp_id
        until = format_rfc3339(utc_now() + timedelta(hours=1))
        reserve = {"id_tag": SIM_TAG, "expires_at": until, "connector_id": 1}
        reserved = await sent(client, key, cp, "reserve", reserve)
        assert reserved["status"] == "accepted", reserved
        field = "reservationId" if version == "1.6" else "id"
        reservation_id = reserved["payload"][field]
        assert station.state.reservations == {reservation_id: 1}
        elsewhere = await sent(client, key, cp, "reserve", {**reserve, "connector_id": 7})
        assert elsewhere["status"] == "rejected"
        assert elsewhere["payload"][field] == reservation_id + 1  # drawn from the sequence
        cancel = {"reservation_id": reservation_id}
        assert (await sent(client, key, cp, "cancel-reservation", cancel))["status"] == "accepted"
        assert (await sent(client, key, cp, "cancel-reservation", cancel))["status"] == "rejected"

        upload = {"location": "ftp://logs.example.test/up", "retries": 1}
        uploaded = await sent(client, key, cp, "upload-diagnostics", upload)
        assert uploaded["status"] == "accepted", uploaded
        if version == "1.6":
            assert uploaded["action"] == "GetDiagnostics"
            assert uploaded["response"] == {"fileName": f"{cp}-diagnostics.log"}
            security = await post(
                client, key, cp, "upload-diagnostics", {**upload, "log_type": "security"}
            )
            assert "no security log" in assert_problem(security, 422)["detail"]
            # 1.6 cannot refuse: the answer names no file (nothing to upload there).
            nowhere = await sent(client, key, cp, "upload-diagnostics", {"location": "sftp://h/x"})
            assert nowhere["status"] == "accepted"
            assert nowhere["response"] == {}
        else:
            assert uploaded["action"] == "GetLog"
            request_id = uploaded["payload"]["requestId"]
            assert uploaded["payload"]["log"] == {"remoteLocation": upload["location"]}
            sftp = await sent(client, key, cp, "upload-diagnostics", {"location": "sftp://h/x"})
            assert sftp["status"] == "rejected"
            assert sftp["payload"]["requestId"] == request_id + 1
