"""Availability, status history and load endpoints against the real database."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from store.aggregates import refresh_aggregates
from store.apikeys import create_api_key
from store.registry import provision_station
from tests.integration.test_api_sessions import api_client, assert_problem, auth
from tests.unit.load_events import T0

pytestmark = pytest.mark.integration

M = timedelta(minutes=1)


@pytest.fixture
def keys(clean_db: str) -> dict[str, str]:
    return {
        role: create_api_key(clean_db, f"test-{role}", role)
        for role in ("admin", "operator", "maintenance", "billing", "public")
    }


@pytest.fixture
def seeded(clean_db: str) -> str:
    seed_load_data(clean_db)
    return clean_db


def seed_load_data(database_url: str) -> None:
    """Sites S-NORTH (stations N1, N2) and S-EMPTY, station X1, their availability,
    status history, 90 minutes of N1 connector 1 load and S-NORTH's live load."""
    clean_db = database_url
    with psycopg.connect(clean_db, autocommit=True) as db:
        db.execute(
            "INSERT INTO sites (site_id, name, capacity_w) VALUES"
            " ('S-NORTH', 'North', 30000), ('S-EMPTY', 'Empty', NULL)"
        )
        for cp in ("N1", "N2"):
            provision_station(clean_db, cp, "S-NORTH")
        provision_station(clean_db, "X1")
        avail = [
            ("N1", 0, "Available", "Available", "NoError", True),
            ("N1", 1, "Charging", "Charging", "NoError", True),
            ("N1", 2, "Available", "Available", "NoError", True),
            ("N2", 1, "Offline", "Available", None, False),
            ("X1", 1, "Faulted", "Faulted", "GroundFailure", True),
        ]
        with db.cursor() as cur:
            cur.executemany(
                "INSERT INTO connector_availability (charge_point_id, connector_id, status,"
                " connector_status, ocpp_status, error_code, status_at, online,"
                " connection_changed_at, updated_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [
                    (cp, c, s, cs, cs, e, T0, online, T0 + M, T0 + M)
                    for cp, c, s, cs, e, online in avail
                ],
            )
            cur.executemany(
                "INSERT INTO connector_status_history (charge_point_id, connector_id, at,"
                " status, ocpp_status, error_code) VALUES (%s, %s, %s, %s, %s, %s)",
                [
                    ("N1", 1, T0 + k * M, s, s, "NoError")
                    for k, s in enumerate(["Available", "Preparing", "Charging"])
                ]
                + [("N1", 2, T0, "Available", "Available", "NoError")],
            )
            cur.executemany(
                "INSERT INTO load_connector_1m (charge_point_id, connector_id, bucket,"
                " sample_count, power_sum_w, avg_power_w, max_power_w, energy_wh, register_wh,"
                " source) VALUES (%s, 1, %s, 2, %s, %s, %s, %s, %s, 'ocpp')",
                [
                    (
                        "N1",
                        T0 + k * M,
                        2 * (7000.0 + k),
                        7000.0 + k,
                        7100.0 + k,
                        Decimal(115),
                        Decimal(10_000 + 115 * k),
                    )
                    for k in range(90)
                ],
            )
        db.execute(
            "INSERT INTO site_load_live (site_id, as_of, published_at, total_w, capacity_w,"
            " utilisation_pct, over_capacity, station_count, offline_stations, stations)"
            " VALUES ('S-NORTH', %s, %s, 33000, 30000, 110, true, 2, 1, %s)",
            (
                T0 + M,
                T0 + M,
                Jsonb(
                    [
                        {
                            "charge_point_id": "N1",
                            "power_w": 22000.0,
                            "as_of": (T0 + M).isoformat(),
                            "offline": False,
                            "connectors": [{"connector_id": 1, "power_w": 22000.0}],
                        },
                        {
                            "charge_point_id": "N2",
                            "power_w": 11000.0,
                            "as_of": T0.isoformat(),
                            "offline": True,
                            "connectors": [{"connector_id": 1, "power_w": 11000.0}],
                        },
                    ]
                ),
            ),
        )
        refresh_aggregates(db, force=True)  # the rows bypassed the writer


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
