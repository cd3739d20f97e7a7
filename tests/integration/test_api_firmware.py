"""The typed update-firmware command end to end (real broker, database, gateway and
simulated 1.6 and 2.0.1 stations): the request in the station's version, the station's
FirmwareStatusNotification sequence stored by the gateway, the reboot with the new
firmware version, a seeded failure, and bodies that have no form in the version (422)."""

from __future__ import annotations

import httpx
import psycopg
import pytest

from bus.topics import Topics
from chargeflow.stack import EmbeddedBroker
from ingest.gateway.server import Gateway
from store.api_keys import create_api_key
from tests.support.api import api_client, assert_problem, auth
from tests.support.gateway import gateway_config, sim_station
from tests.support.polling import apoll

pytestmark = pytest.mark.integration

FINAL = {"Installed", "InstallationFailed", "DownloadFailed"}


def _statuses(db_url: str, cp: str) -> list[tuple[str, int | None]]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT status, request_id FROM firmware_statuses WHERE charge_point_id = %s "
            "ORDER BY status_id",
            (cp,),
        ).fetchall()
    return [(str(r[0]), r[1]) for r in rows]


def _firmware_version(db_url: str, cp: str) -> str | None:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT firmware_version FROM stations WHERE charge_point_id = %s", (cp,)
        ).fetchone()
    return None if row is None else row[0]


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_update_firmware_runs_the_status_sequence_and_reboots_with_the_new_version(
    broker: EmbeddedBroker, clean_db: str, topics: Topics, version: str
) -> None:
    key = create_api_key(clean_db, "fw-operator", "operator")
    async with (
        Gateway(gateway_config(broker, clean_db, topics)) as gw,
        sim_station(gw, f"FW{version}-", version) as station,
        api_client(clean_db, broker.bootstrap, topics=topics) as client,
    ):
        cp = station.cp_id
        body = {"location": "https://fw.example/sim-2.0.0.bin", "retries": 2}
        resp = await client.post(
            f"/v1/stations/{cp}/commands/update-firmware", json=body, headers=auth(key)
        )
        assert resp.status_code == 202, resp.text
        done = await client.get(resp.headers["location"], params={"wait": 20}, headers=auth(key))
        command = done.json()
        assert command["status"] == "accepted", command
        assert command["action"] == "UpdateFirmware"
        payload = command["payload"]
        request_id = None
        if version == "1.6":
            assert payload["location"] == body["location"]
            assert payload["retries"] == 2
            assert payload["retrieveDate"].endswith("Z")
        else:
            request_id = payload["requestId"]
            assert isinstance(request_id, int)
            assert payload["firmware"]["location"] == body["location"]
        seen = await apoll(
            lambda: _statuses(clean_db, cp),
            lambda s: len(s) >= 4 and s[-1][0] in FINAL,
            30,
            "the update",
        )
        steps = ["Downloading", "Downloaded", "Installing", "Installed"]
        if version == "2.0.1":
            steps.insert(2, "SignatureVerified")
        assert seen == [(s, request_id) for s in steps]
        assert await apoll(
            lambda: _firmware_version(clean_db, cp), lambda v: v == "sim-2.0.0", 20, "boot"
        )

        await _a_failed_update_keeps_the_version(client, key, clean_db, cp, len(steps))
        await _bodies_without_a_form_are_refused(client, key, cp, version)


async def _a_failed_update_keeps_the_version(
    client: httpx.AsyncClient, key: str, db_url: str, cp: str, steps: int
) -> None:
    failing = {"location": f"https://fw.example/sim-3.bin?install_fail={cp}"}
    resp = await client.post(
        f"/v1/stations/{cp}/commands/update-firmware", json=failing, headers=auth(key)
    )
    assert resp.status_code == 202, resp.text
    after = await apoll(
        lambda: _statuses(db_url, cp), lambda s: s[-1][0] == "InstallationFailed", 30, "a failure"
    )
    assert len(after) == 2 * steps
    assert _firmware_version(db_url, cp) == "sim-2.0.0"  # kept the old one


async def _bodies_without_a_form_are_refused(
    client: httpx.AsyncClient, key: str, cp: str, version: str
) -> None:
    body = {"location": "https://fw.example/sim-4.bin"}
    if version == "1.6":
        signed = {**body, "signature": "c2lnbmF0dXJl"}
        bad = await client.post(
            f"/v1/stations/{cp}/commands/update-firmware", json=signed, headers=auth(key)
        )
        assert "no signature" in assert_problem(bad, 422)["detail"]
    not_a_uri = await client.post(
        f"/v1/stations/{cp}/commands/update-firmware",
        json={"location": "no scheme"},
        headers=auth(key),
    )
    assert_problem(not_a_uri, 422)
    # JSON true is not a count: it must not become 1 retry.
    a_flag = await client.post(
        f"/v1/stations/{cp}/commands/update-firmware",
        json={**body, "retries": True},
        headers=auth(key),
    )
    assert assert_problem(a_flag, 422)["errors"][0]["name"] == "retries"
