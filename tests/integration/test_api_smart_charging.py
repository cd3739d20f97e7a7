"""Smart charging through the API on the real database: a site's limit windows
(replace, read, the limit in force now), a session's charging needs, the flow's
allocation; bad input is a problem that changes nothing, roles are enforced, writes are
audited."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from bus.times import format_rfc3339, utc_now
from store.smart_charging import load_site_rules, mark_non_compliant
from store.stations import provision_station
from tests.support.api import api_client, assert_problem, auth, insert_session
from tests.support.registry import created, site_body

pytestmark = pytest.mark.integration

ALLOCATION = {
    "site_id": "S-A",
    "at": "2026-12-07T12:00:00+00:00",
    "limit_a": [144.9, 144.9, 144.9],
    "base_load_a": [0, 0, 0],
    "fixed_load_a": [0, 0, 0],
    "allocated_a": [16, 16, 16],
    "headroom_a": [128.9, 128.9, 128.9],
    "sessions": [
        {
            "station_id": "CP-N",
            "connector_id": 1,
            "transaction_id": "77",
            "current_a": 16.0,
            "site_phases": [1, 2, 3],
            "reason": "max current",
            "controlled": True,
        }
    ],
    "non_compliant": {},
    "budgeted": [],
}


async def test_site_limit_windows(
    clean_db: str, keys: dict[str, str], db: psycopg.Connection[Any]
) -> None:
    key = keys["operator"]
    now = utc_now()
    window = {
        "starts_at": format_rfc3339(now - timedelta(minutes=5)),
        "ends_at": format_rfc3339(now + timedelta(hours=1)),
        "max_current_a": 80,
        "reason": "grid operator",
    }
    later = {
        "starts_at": format_rfc3339(now + timedelta(hours=2)),
        "ends_at": format_rfc3339(now + timedelta(hours=3)),
        "max_current_a": 50.04,
    }
    async with api_client(clean_db) as client:
        await created(client, key, "/v1/sites", site_body("S-L", capacity_w=100_000))
        before = await client.get("/v1/sites/S-L/limits", headers=auth(keys["maintenance"]))
        assert before.status_code == 200, before.text
        assert (before.json()["base_limit_a"], before.json()["limit_now_a"]) == (144.9, 144.9)
        put = await client.put(
            "/v1/sites/S-L/limits", json={"windows": [window, later]}, headers=auth(key)
        )
        assert put.status_code == 200, put.text
        body = put.json()
        assert body["limit_now_a"] == 80.0
        assert [w["max_current_a"] for w in body["windows"]] == [80.0, 50.0]
        # Bad input changes nothing: an inverted window, an unknown field, a negative limit.
        inverted = {**window, "ends_at": window["starts_at"], "starts_at": window["ends_at"]}
        for bad in (
            {"windows": [inverted]},
            {"windows": [{**window, "colour": "red"}]},
            {"windows": [{**window, "max_current_a": -1}]},
            {},
        ):
            assert_problem(
                await client.put("/v1/sites/S-L/limits", json=bad, headers=auth(key)), 422
            )
        assert_problem(
            await client.put("/v1/sites/NOPE/limits", json={"windows": []}, headers=auth(key)), 404
        )
        assert_problem(
            await client.put(
                "/v1/sites/S-L/limits", json={"windows": []}, headers=auth(keys["billing"])
            ),
            403,
        )
        read = await client.get("/v1/sites/S-L/limits", headers=auth(key))
        assert [w["max_current_a"] for w in read.json()["windows"]] == [80.0, 50.0]
        cleared = await client.put("/v1/sites/S-L/limits", json={"windows": []}, headers=auth(key))
        assert (cleared.json()["windows"], cleared.json()["limit_now_a"]) == ([], 144.9)
        assert_problem(await client.get("/v1/sites/S-L/allocation", headers=auth(key)), 404)
    audited = db.execute(
        "SELECT route, status FROM api_audit WHERE route = '/v1/sites/{site_id}/limits' ORDER BY at"
    ).fetchall()
    assert (audited[0][1], audited[-1][1]) == (200, 200)
    assert len(audited) >= 7


async def test_charging_needs_and_the_allocation(
    clean_db: str, keys: dict[str, str], db: psycopg.Connection[Any]
) -> None:
    key = keys["operator"]
    provision_station(clean_db, "CP-N")
    active = insert_session(db, charge_point_id="CP-N", status="active", transaction_id="77")
    ended = insert_session(db, charge_point_id="CP-N", transaction_id="76")
    departure = format_rfc3339(utc_now() + timedelta(hours=2))
    needs = {"departure_at": departure, "energy_wh": 20_000}
    async with api_client(clean_db) as client:
        put = await client.put(
            f"/v1/sessions/{active['session_id']}/charging-needs", json=needs, headers=auth(key)
        )
        assert put.status_code == 200, put.text
        assert (put.json()["transaction_id"], put.json()["energy_wh"]) == ("77", 20_000)
        again = await client.put(
            f"/v1/sessions/{active['session_id']}/charging-needs",
            json={"energy_wh": 5_000},
            headers=auth(key),
        )
        assert again.json()["departure_at"] is None
        assert_problem(
            await client.put(
                f"/v1/sessions/{ended['session_id']}/charging-needs", json=needs, headers=auth(key)
            ),
            409,
        )
        assert_problem(
            await client.put(
                f"/v1/sessions/{active['session_id']}/charging-needs",
                json={"energy_wh": -1},
                headers=auth(key),
            ),
            422,
        )
        assert_problem(
            await client.put(
                f"/v1/sessions/{active['session_id']}/charging-needs",
                json=needs,
                headers=auth(keys["billing"]),
            ),
            403,
        )
        # The flow's latest allocation, as it stored it.
        db.execute(
            "INSERT INTO smart_charging_allocations (site_id, at, body) VALUES ('S-A', now(), %s)",
            (Jsonb(ALLOCATION),),
        )
        allocation = await client.get("/v1/sites/S-A/allocation", headers=auth(key))
        assert allocation.status_code == 200, allocation.text
        assert allocation.json()["sessions"][0]["reason"] == "max current"
    stored = db.execute(
        "SELECT departure_at, energy_wh FROM session_charging_needs"
        " WHERE charge_point_id = 'CP-N' AND transaction_id = '77'"
    ).fetchall()
    assert stored == [(None, 5_000)]


async def test_a_station_reset_clears_its_non_compliance_for_the_flow(
    clean_db: str, keys: dict[str, str], db: psycopg.Connection[Any]
) -> None:
    key = keys["operator"]
    db.execute("INSERT INTO sites (site_id, name, capacity_w) VALUES ('S-R', 'Reset', 22000)")
    provision_station(clean_db, "CP-R", site_id="S-R")
    since = utc_now().replace(microsecond=0) - timedelta(hours=1)
    mark_non_compliant(db, [("CP-R", 1, since, 16.0, 30.5)])
    url = "/v1/stations/CP-R/smart-charging/reset"
    async with api_client(clean_db) as client:
        assert_problem(await client.post(url, headers=auth(keys["maintenance"])), 403)
        assert_problem(
            await client.post("/v1/stations/CP-NOPE/smart-charging/reset", headers=auth(key)), 404
        )
        first = await client.post(url, headers=auth(key))
        assert first.status_code == 200, first.text
        assert (first.json()["station_id"], first.json()["resets"]) == ("CP-R", 1)
        again = await client.post(url, headers=auth(key))
        assert again.json()["resets"] == 2
        assert again.json()["cleared_non_compliant_since"] is None
    assert datetime.fromisoformat(first.json()["cleared_non_compliant_since"]) == since
    # The marking is kept for the record, closed; a new one may be recorded.
    rows = db.execute(
        "SELECT cleared_by IS NOT NULL FROM station_compliance WHERE charge_point_id = 'CP-R'"
    ).fetchall()
    assert rows == [(True,)]
    mark_non_compliant(db, [("CP-R", 1, utc_now(), 16.0, 29.0)])
    assert db.execute("SELECT count(*) FROM station_compliance").fetchone() == (2,)
    # What the flow's directory reads: the count of resets.
    sites, _, _ = load_site_rules(db, utc_now() - timedelta(days=2))
    assert sites["S-R"].resets == {"CP-R": 2}
    audited = db.execute(
        "SELECT count(*) FROM api_audit WHERE route = %s",
        ("/v1/stations/{station_id}/smart-charging/reset",),
    ).fetchone()
    assert audited is not None
    assert audited[0] >= 3
