"""Sites, id tokens and smart meters through the registry API on the real database:
create, read, list by pages, change, remove; every bad input a problem that changes
nothing (unknown time zone, duplicate ids, unknown station, a meter on a connector that
does not fit its role, a second billing meter) and the roles."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from store.stations import provision_station
from tests.support.api import api_client, assert_problem, auth
from tests.support.registry import created, id_token_body, meter_body, site_body

pytestmark = pytest.mark.integration


async def test_sites(clean_db: str, keys: dict[str, str], db: psycopg.Connection[Any]) -> None:
    key = keys["operator"]
    async with api_client(clean_db) as client:
        site = await created(client, key, "/v1/sites", site_body("S-1", capacity_w=50_000))
        assert (site["time_zone"], site["capacity_w"], site["max_current_a"]) == (
            "Europe/Berlin",
            50_000,
            None,
        )
        assert_problem(
            await client.post("/v1/sites", json=site_body("S-1"), headers=auth(key)), 409
        )
        bad_zone = await client.post(
            "/v1/sites", json=site_body("S-2", time_zone="Mars/Olympus"), headers=auth(key)
        )
        assert "unknown IANA time zone" in assert_problem(bad_zone, 422)["detail"]
        for body in (site_body("S-2", capacity_w=0), site_body("S-2", extra=1), {"site_id": "S-2"}):
            assert_problem(await client.post("/v1/sites", json=body, headers=auth(key)), 422)
        changed = await client.patch(
            "/v1/sites/S-1", json={"max_current_a": 80.0, "capacity_w": None}, headers=auth(key)
        )
        assert changed.status_code == 200, changed.text
        assert (changed.json()["max_current_a"], changed.json()["capacity_w"]) == (80.0, None)
        assert changed.json()["name"] == "Site S-1"
        for patch in ({"name": None}, {"time_zone": "CET+1"}):
            assert_problem(await client.patch("/v1/sites/S-1", json=patch, headers=auth(key)), 422)
        assert_problem(await client.patch("/v1/sites/NOPE", json={}, headers=auth(key)), 404)
        assert_problem(
            await client.post("/v1/sites", json=site_body("S-3"), headers=auth(keys["billing"])),
            403,
        )
        provision_station(clean_db, "CP-ON-S1", site_id="S-1")
        busy = await client.delete("/v1/sites/S-1", headers=auth(key))
        assert "still has stations" in assert_problem(busy, 409)["detail"]
        await created(client, key, "/v1/sites", site_body("S-0"))
        page = await client.get("/v1/sites", params={"limit": 1}, headers=auth(keys["maintenance"]))
        assert [s["site_id"] for s in page.json()["items"]] == ["S-0"]
        rest = await client.get(
            "/v1/sites", params={"cursor": page.json()["next_cursor"]}, headers=auth(key)
        )
        assert [s["site_id"] for s in rest.json()["items"]] == ["S-1"]
        assert (await client.delete("/v1/sites/S-0", headers=auth(key))).status_code == 204
        assert (await client.delete("/v1/sites/S-0", headers=auth(key))).status_code == 204
        assert_problem(await client.get("/v1/sites/S-0", headers=auth(key)), 404)
    got = db.execute("SELECT capacity_w, time_zone FROM sites WHERE site_id = 'S-1'").fetchall()
    assert got == [(None, "Europe/Berlin")]


async def test_id_tokens(clean_db: str, keys: dict[str, str]) -> None:
    key = keys["operator"]
    async with api_client(clean_db) as client:
        group = await created(
            client, key, "/v1/id-tags", id_token_body("FLEET-1", token_type="central")
        )
        assert (group["status"], group["membership_tier"]) == ("Accepted", "standard")
        card = await created(
            client,
            key,
            "/v1/id-tags",
            id_token_body(
                "RFID-1",
                parent_id_tag="FLEET-1",
                customer_ref="ACME",
                membership_tier="fleet",
                expiry_date="2030-01-01T00:00:00Z",
            ),
        )
        assert card["expiry_date"] == "2030-01-01T00:00:00Z"
        assert_problem(
            await client.post("/v1/id-tags", json=id_token_body("RFID-1"), headers=auth(key)), 409
        )
        for body in (
            id_token_body("RFID-2", status="Lost"),
            id_token_body("RFID-2", membership_tier="gold"),
            id_token_body("RFID-2", token_type="NFC"),
            id_token_body("X" * 37),
            id_token_body("RFID-2", expiry_date="2030-01-01"),
        ):
            assert_problem(await client.post("/v1/id-tags", json=body, headers=auth(key)), 422)
        blocked = await client.patch(
            "/v1/id-tags/RFID-1", json={"status": "Blocked", "expiry_date": None}, headers=auth(key)
        )
        assert blocked.status_code == 200, blocked.text
        assert (blocked.json()["status"], blocked.json()["expiry_date"]) == ("Blocked", None)
        assert blocked.json()["customer_ref"] == "ACME"
        assert_problem(
            await client.patch("/v1/id-tags/RFID-1", json={"status": None}, headers=auth(key)), 422
        )
        assert_problem(await client.patch("/v1/id-tags/NOPE", json={}, headers=auth(key)), 404)
        members = await client.get(
            "/v1/id-tags", params={"parent_id_tag": "FLEET-1"}, headers=auth(keys["billing"])
        )
        assert [t["id_tag"] for t in members.json()["items"]] == ["RFID-1"]
        by_status = await client.get("/v1/id-tags", params={"status": "Blocked"}, headers=auth(key))
        assert [t["id_tag"] for t in by_status.json()["items"]] == ["RFID-1"]
        assert_problem(
            await client.patch(
                "/v1/id-tags/RFID-1", json={"status": "Accepted"}, headers=auth(keys["billing"])
            ),
            403,
        )
        assert (await client.delete("/v1/id-tags/RFID-1", headers=auth(key))).status_code == 204
        assert_problem(await client.get("/v1/id-tags/RFID-1", headers=auth(key)), 404)
        # The payment-method route shares the tree and still answers.
        method = await client.get("/v1/id-tags/FLEET-1/payment-method", headers=auth(keys["admin"]))
        assert_problem(method, 404)


async def test_meters(clean_db: str, keys: dict[str, str], db: psycopg.Connection[Any]) -> None:
    key = keys["operator"]
    provision_station(clean_db, "CP-M", site_id="S-M")
    async with api_client(clean_db) as client:
        meter = await created(
            client, key, "/v1/meters", meter_body("MTR-1", "CP-M", is_billing_meter=True)
        )
        assert (meter["role"], meter["connector_id"]) == ("connector", 1)
        assert meter["mqtt_topic"] == "meters/MTR-1/reading"
        for body, status, why in (
            (meter_body("MTR-1", "CP-M"), 409, "exists already"),
            (meter_body("MTR-2", "CP-M", is_billing_meter=True), 409, "billing meter"),
            (meter_body("MTR-2", "CP-NONE"), 422, "unknown station"),
            (meter_body("MTR-2", "CP-M", role="station"), 422, "connector_id 0"),
            (meter_body("MTR-2", "CP-M", connector_id=0), 422, "connector_id >= 1"),
            (meter_body("-bad", "CP-M"), 422, "meter_id"),
        ):
            resp = await client.post("/v1/meters", json=body, headers=auth(key))
            assert why in str(assert_problem(resp, status)), resp.text
        load = await created(
            client,
            key,
            "/v1/meters",
            meter_body("MTR-L", "CP-M", role="non_controllable_load", connector_id=0),
        )
        assert load["is_billing_meter"] is False
        no_bill = await client.patch(
            "/v1/meters/MTR-L", json={"is_billing_meter": True}, headers=auth(key)
        )
        assert_problem(no_bill, 422)
        moved = await client.patch("/v1/meters/MTR-1", json={"connector_id": 2}, headers=auth(key))
        assert moved.status_code == 200
        assert moved.json()["connector_id"] == 2
        on_site = await client.get(
            "/v1/meters", params={"site": "S-M"}, headers=auth(keys["maintenance"])
        )
        assert [m["meter_id"] for m in on_site.json()["items"]] == ["MTR-1", "MTR-L"]
        assert_problem(await client.patch("/v1/meters/NOPE", json={}, headers=auth(key)), 404)
        assert_problem(await client.delete("/v1/meters/MTR-1", headers=auth(keys["public"])), 403)
        assert (await client.delete("/v1/meters/MTR-1", headers=auth(key))).status_code == 204
    assert db.execute("SELECT meter_id, role FROM meters").fetchall() == [
        ("MTR-L", "non_controllable_load")
    ]
