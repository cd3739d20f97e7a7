"""Availability, status history and load endpoints against the real database."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.support.api import api_client, assert_problem, auth
from tests.support.load_events import T0, seed_load_data

pytestmark = pytest.mark.integration

M = timedelta(minutes=1)


@pytest.fixture
def seeded(clean_db: str) -> str:
    seed_load_data(clean_db)
    return clean_db


async def test_availability_for_every_role_with_filters(seeded: str, keys: dict[str, str]) -> None:
    async with api_client(seeded) as client:
        r = await client.get("/v1/availability")
        assert r.status_code == 401
        r = await client.get("/v1/availability", headers=auth(keys["public"]))
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        assert [
            (i["charge_point_id"], i["connector_id"], i["status"], i["available"]) for i in items
        ] == [
            ("N1", 1, "Charging", False),
            ("N1", 2, "Available", True),
            ("N2", 1, "Offline", False),
            ("X1", 1, "Faulted", False),
        ]
        assert {i["error_code"] for i in items} == {None}  # hidden from the public
        r = await client.get(
            "/v1/availability",
            params={"site": "S-NORTH", "status": "Offline"},
            headers=auth(keys["operator"]),
        )
        [offline] = r.json()["items"]
        assert (
            offline["charge_point_id"],
            offline["connector_status"],
            offline["online"],
            offline["site_id"],
        ) == ("N2", "Available", False, "S-NORTH")
        r = await client.get(
            "/v1/availability", params={"station": "X1"}, headers=auth(keys["maintenance"])
        )
        assert r.json()["items"][0]["error_code"] == "GroundFailure"
        r = await client.get(
            "/v1/availability", params={"status": "Broken"}, headers=auth(keys["admin"])
        )
        assert r.status_code == 422


async def test_status_history(seeded: str, keys: dict[str, str]) -> None:
    async with api_client(seeded) as client:
        url = "/v1/stations/N1/status-history"
        r = await client.get(url, headers=auth(keys["public"]))
        assert r.status_code == 403
        r = await client.get(url, headers=auth(keys["maintenance"]))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["charge_point_id"] == "N1"
        assert [(i["connector_id"], i["status"]) for i in body["items"]] == [
            (1, "Charging"),
            (1, "Preparing"),
            (1, "Available"),
            (2, "Available"),
        ]
        r = await client.get(
            url,
            params={"connector": 1, "from": (T0 + M).isoformat(), "limit": 1},
            headers=auth(keys["operator"]),
        )
        assert [i["status"] for i in r.json()["items"]] == ["Charging"]
        r = await client.get(
            url,
            params={"from": (T0 + 60 * M).isoformat(), "to": T0.isoformat()},
            headers=auth(keys["operator"]),
        )
        assert assert_problem(r, 422)["errors"][0]["name"] == "from"
        r = await client.get("/v1/stations/NOPE/status-history", headers=auth(keys["admin"]))
        assert r.status_code == 404


async def test_site_load(seeded: str, keys: dict[str, str]) -> None:
    async with api_client(seeded) as client:
        r = await client.get("/v1/load/sites/S-NORTH", headers=auth(keys["billing"]))
        assert r.status_code == 403
        r = await client.get("/v1/load/sites/S-NORTH", headers=auth(keys["operator"]))
        assert r.status_code == 200, r.text
        body = r.json()
        assert (
            body["total_w"],
            body["capacity_w"],
            body["utilisation_pct"],
            body["over_capacity"],
            body["offline_stations"],
        ) == (33000.0, 30000, 110.0, True, 1)
        assert [s["charge_point_id"] for s in body["stations"]] == ["N1", "N2"]
        r = await client.get("/v1/load/sites/S-EMPTY", headers=auth(keys["operator"]))
        assert r.json()["total_w"] == 0.0
        assert r.json()["as_of"] is None
        assert r.json()["utilisation_pct"] is None
        r = await client.get("/v1/load/sites/NOPE", headers=auth(keys["operator"]))
        assert r.status_code == 404


async def test_connector_series(seeded: str, keys: dict[str, str]) -> None:
    url = "/v1/load/connectors/N1/1"
    window = {"from": T0.isoformat(), "to": (T0 + timedelta(hours=2)).isoformat()}
    async with api_client(seeded) as client:
        r = await client.get(url, params=window, headers=auth(keys["operator"]))
        assert r.status_code == 200, r.text
        points = r.json()["points"]
        assert len(points) == 90
        assert points[0]["avg_power_w"] == 7000.0
        assert points[0]["energy_wh"] == 115.0
        r = await client.get(
            url, params={**window, "resolution": "1h"}, headers=auth(keys["maintenance"])
        )
        hours: list[dict[str, Any]] = r.json()["points"]
        assert [p["energy_wh"] for p in hours] == [60 * 115.0, 30 * 115.0]
        assert hours[0]["avg_power_w"] == pytest.approx(7000.0 + 29.5)
        assert hours[1]["max_power_w"] == 7100.0 + 89
        r = await client.get(
            url, params={**window, "resolution": "1d"}, headers=auth(keys["admin"])
        )
        assert [p["energy_wh"] for p in r.json()["points"]] == [90 * 115.0]
        r = await client.get(
            url,
            params={"from": "2020-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
            headers=auth(keys["admin"]),
        )
        assert "range too long" in assert_problem(r, 422)["errors"][0]["reason"]
        r = await client.get(url, params={"resolution": "5m"}, headers=auth(keys["admin"]))
        assert r.status_code == 422
        r = await client.get(url, headers=auth(keys["public"]))
        assert r.status_code == 403
