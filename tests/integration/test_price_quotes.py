"""Prices before charging, through the API on the real database: a quote for a connector
raises the energy price with the site's live demand within the operator's bounds, shows
every component per kWh first, is attached to the session once, and the session is then
billed at the quoted price even after demand falls and the tariff changes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import psycopg
import pytest

from billing.cdrs import CdrParty
from bus.sessions import SessionClosed
from invoicing.invoice import invoice_session
from store import tariff_assignments as assignment_store
from store import tariffs as tariff_store
from store.sites import upsert_site
from store.stations import provision_station
from tests.support.api import api_client, assert_problem, auth
from tests.support.billing import component, element, tariff_json
from tests.support.cdrs import closed_session

pytestmark = pytest.mark.integration

STATION = "CP-QUOTE-1"
NOW = datetime.now(UTC)


def tou(price: str) -> dict[str, object]:
    return tariff_json(
        element(component("ENERGY", price, vat=21), component("PARKING_TIME", "6.00", vat=21)),
        element(component("FLAT", "0.50", vat=21)),
        id="QUOTED",
    )


async def seed(url: str, *, load_w: int) -> None:
    upsert_site(url, "SITE-Q", "Car park", 100_000, time_zone="Europe/Amsterdam")
    provision_station(url, STATION, "SITE-Q")
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await tariff_store.create_tariff(conn, tou("0.40"), created_by="test")
        await assignment_store.assign(
            conn,
            tariff_id="QUOTED",
            scope=tariff_store.Scope.DEFAULT,
            target=None,
            valid_from=NOW - timedelta(days=1),
            created_by="test",
        )
        await conn.execute(
            "INSERT INTO site_load_live (site_id, as_of, published_at, total_w, capacity_w,"
            " utilisation_pct, over_capacity, station_count, offline_stations, stations)"
            " VALUES ('SITE-Q', now(), now(), %s, 100000, %s, false, 1, 0, '[]')",
            (load_w, load_w / 1000),
        )


async def attach_once(
    client: httpx.AsyncClient, keys: dict[str, str], quote_id: str, session_id: uuid.UUID
) -> None:
    attach = f"/v1/prices/quotes/{quote_id}/attach"
    body = {"session_id": str(session_id)}
    denied = await client.post(attach, json=body, headers=auth(keys["public"]))
    assert denied.status_code == 403
    used = await client.post(attach, json=body, headers=auth(keys["operator"]))
    assert used.status_code == 200, used.text
    again = await client.post(
        attach, json={"session_id": str(uuid.uuid4())}, headers=auth(keys["operator"])
    )
    assert "used by session" in assert_problem(again, 409)["detail"]


async def test_a_quote_follows_demand_is_used_once_and_bills_as_quoted(
    clean_db: str, keys: dict[str, str]
) -> None:
    await seed(clean_db, load_w=95_000)  # 95 % of the grid connection: demand pricing
    params: dict[str, str | int] = {"station": STATION, "connector": 1}
    async with api_client(clean_db) as client:
        answer = await client.get("/v1/prices/quote", params=params, headers=auth(keys["public"]))
        assert answer.status_code == 200, answer.text
        quote = answer.json()
        # (0.95 - 0.8) / 0.2 of the 20 % uplift: x 1.15 -> 0.46/kWh.
        assert Decimal(quote["demand"]["factor"]) == Decimal("1.15")
        assert [(p["type"], Decimal(p["price_excl_vat"])) for p in quote["prices"]] == [
            ("ENERGY", Decimal("0.46")),
            ("FLAT", Decimal("0.50")),
            ("PARKING_TIME", Decimal("0.1")),
        ]
        assert Decimal(quote["prices"][0]["price_incl_vat"]) == Decimal("0.5566")
        created = datetime.fromisoformat(quote["created_at"])
        assert datetime.fromisoformat(quote["valid_until"]) - created == timedelta(seconds=300)

        session_id = uuid.uuid4()
        await attach_once(client, keys, quote["quote_id"], session_id)
        assert_problem(
            await client.get(
                "/v1/prices/quote",
                params={**params, "station": "NOPE"},
                headers=auth(keys["public"]),
            ),
            404,
        )

    # Demand falls and the operator raises the tariff: the quoted session keeps 0.46.
    async with await psycopg.AsyncConnection.connect(clean_db, autocommit=True) as conn:
        await conn.execute("UPDATE site_load_live SET total_w = 1000")
        await tariff_store.create_tariff(conn, tou("0.99"), created_by="test")
        billed = await invoice_session(conn, an_hour_of_10_kwh(session_id), CdrParty("NL", "CFL"))
    assert billed.cdr is not None
    assert billed.cdr["total_cost"]["excl_vat"] == Decimal("5.10")  # 10 kWh x 0.46 + 0.50
    assert billed.cdr["tariffs"][0]["id"] == quote["tariff_id"]


def an_hour_of_10_kwh(session_id: uuid.UUID) -> SessionClosed:
    return closed_session(
        NOW + timedelta(minutes=1),
        energy_wh=10_000,
        minutes=60,
        charge_point_id=STATION,
        id_tag="TAG-Q",
        session_id=str(session_id),
        transaction_id="7",
        meter_start_wh=0,
    )


async def test_no_demand_pricing_below_the_threshold(clean_db: str, keys: dict[str, str]) -> None:
    await seed(clean_db, load_w=30_000)
    async with api_client(clean_db) as client:
        quote = (
            await client.get(
                "/v1/prices/quote",
                params={"station": STATION, "connector": 2},
                headers=auth(keys["public"]),
            )
        ).json()
    assert Decimal(quote["demand"]["factor"]) == 1
    assert quote["tariff_id"] == "QUOTED"
    assert Decimal(quote["demand"]["utilisation"]) == Decimal("0.3")
