"""GET /v1/reports/usage on real PostgreSQL: the hand-computed day of
tests/support/reports.py as JSON, CSV and HTML (same numbers in each), the site filter
and the network, content negotiation, roles, and bad input as problems."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from tests.support.api import api_client, assert_problem, auth
from tests.support.reports import (
    EXPECTED_SITE,
    EXPECTED_SITE_TOTALS,
    PERIOD,
    SITE,
    ZONE,
    seed_usage_day,
)

pytestmark = pytest.mark.integration
URL = "/v1/reports/usage"


@pytest.fixture
def revenue(clean_db: str) -> dict[str, Decimal]:
    return seed_usage_day(clean_db)


async def test_site_report_json(
    clean_db: str, keys: dict[str, str], revenue: dict[str, Decimal]
) -> None:
    async with api_client(clean_db) as client:
        resp = await client.get(
            URL, params={**PERIOD, "site": SITE}, headers=auth(keys["operator"])
        )
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert (body["from"], body["to"]) == ("2026-06-01T00:00:00Z", "2026-06-02T00:00:00Z")
    assert body["observed_until"] == body["to"]  # a past period is observed whole
    assert (body["time_zone"], body["site_id"]) == (ZONE, SITE)
    rows = {(c["charge_point_id"], c["connector_id"]): c for c in body["connectors"]}
    assert set(rows) == set(EXPECTED_SITE)  # CP-X is on another site
    for key, expected in EXPECTED_SITE.items():
        assert {k: rows[key][k] for k in expected} == expected, key
        assert rows[key]["site_id"] == SITE
    totals = body["totals"]
    assert {k: totals[k] for k in EXPECTED_SITE_TOTALS} == EXPECTED_SITE_TOTALS
    assert totals["revenue"] == [
        {
            "currency": "EUR",
            "total_excl_vat": str(revenue["excl"]),
            "total_incl_vat": str(revenue["incl"]),
        }
    ]
    connector_revenue = [Decimal(r["total_incl_vat"]) for c in rows.values() for r in c["revenue"]]
    assert sum(connector_revenue) == revenue["incl"]
    # Peak hours local to Berlin (UTC+2): 08:05 UTC is 10 h, 20:00 UTC is 22 h, Monday.
    started = {
        (p["weekday"], p["hour"]): p["sessions"] for p in body["peak_hours"] if p["sessions"]
    }
    assert started == {(0, 10): 1, (0, 22): 1}
    assert sum(p["charging_s"] for p in body["peak_hours"]) == totals["charging_s"]


async def test_network_report_includes_every_site(
    clean_db: str, keys: dict[str, str], revenue: dict[str, Decimal]
) -> None:
    async with api_client(clean_db) as client:
        resp = await client.get(URL, params=PERIOD, headers=auth(keys["billing"]))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["time_zone"], body["site_id"]) == ("UTC", None)
    keys_seen = [(c["charge_point_id"], c["connector_id"]) for c in body["connectors"]]
    assert keys_seen == [("CP-R1", 1), ("CP-R1", 2), ("CP-X", 1)]
    totals = body["totals"]
    assert totals["energy_wh"] == EXPECTED_SITE_TOTALS["energy_wh"] + 10_000
    assert totals["sessions"] == 3
    assert totals["charging_s"] == EXPECTED_SITE_TOTALS["charging_s"] + 3_600
    assert totals["utilisation"] == "0.1111"  # 28,800 / (3 x 86,400)
    started = {(p["weekday"], p["hour"]) for p in body["peak_hours"] if p["sessions"]}
    assert started == {(0, 8), (0, 9), (0, 20)}  # UTC


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


async def test_csv_equals_json(
    clean_db: str, keys: dict[str, str], revenue: dict[str, Decimal]
) -> None:
    params = {**PERIOD, "site": SITE}
    async with api_client(clean_db) as client:
        body = (await client.get(URL, params=params, headers=auth(keys["operator"]))).json()
        resp = await client.get(
            URL, params={**params, "format": "csv"}, headers=auth(keys["operator"])
        )
        negotiated = await client.get(
            URL, params=params, headers={**auth(keys["operator"]), "Accept": "text/csv"}
        )
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "text/csv; charset=utf-8"
    assert negotiated.text == resp.text
    assert resp.text.endswith("\r\n")
    assert "\r\n" in resp.text.rstrip("\r\n")  # RFC 4180 line ends
    rows = _csv_rows(resp.text)
    assert [r["row"] for r in rows] == ["connector", "connector", "total"]
    for row, connector in zip(rows, body["connectors"], strict=False):
        assert (row["charge_point_id"], int(row["connector_id"])) == (
            connector["charge_point_id"],
            connector["connector_id"],
        )
        for field in ("charging_s", "idle_s", "downtime_s", "energy_wh", "sessions", "faults"):
            assert int(row[field]) == connector[field], field
        assert row["utilisation"] == connector["utilisation"]
    total = rows[-1]
    assert int(total["energy_wh"]) == body["totals"]["energy_wh"]
    assert total["utilisation"] == body["totals"]["utilisation"]
    assert Decimal(total["revenue_incl_vat_EUR"]) == revenue["incl"]
    assert Decimal(total["revenue_excl_vat_EUR"]) == revenue["excl"]
    assert rows[0]["error_codes"] == "GroundFailure=1"
    assert sum(int(r["charging_s"]) for r in rows[:-1]) == int(total["charging_s"])


def _data_values(page: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for field, value in re.findall(r'data-field="([^"]+)" data-value="([^"]*)"', page):
        values.setdefault(field, []).append(value)
    return values


async def test_html_is_self_contained_with_the_json_numbers(
    clean_db: str, keys: dict[str, str], revenue: dict[str, Decimal]
) -> None:
    params = {**PERIOD, "site": SITE}
    async with api_client(clean_db) as client:
        body = (await client.get(URL, params=params, headers=auth(keys["admin"]))).json()
        resp = await client.get(
            URL, params={**params, "format": "html"}, headers=auth(keys["admin"])
        )
        browser = await client.get(
            URL,
            params=params,
            headers={**auth(keys["admin"]), "Accept": "text/html,application/xhtml+xml,*/*;q=0.8"},
        )
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "text/html; charset=utf-8"
    assert browser.headers["content-type"] == "text/html; charset=utf-8"
    page = resp.text
    assert page.count("<svg") == 3
    for chart in ("utilisation", "peak-hours", "energy"):
        assert f'data-chart="{chart}"' in page
    # Self-contained: nothing fetched from elsewhere.
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "@media print" in page
    values = _data_values(page)
    totals = body["totals"]
    for field in ("utilisation", "energy_wh", "sessions", "charging_s", "faults", "alerts"):
        # The summary card and the table's total row.
        assert values[f"totals.{field}"] == [str(totals[field])], field
        assert values[field][-1] == str(totals[field]), field
    assert values["totals.revenue.EUR.total_incl_vat"] == [str(revenue["incl"])]
    per_connector = [c["energy_wh"] for c in body["connectors"]]
    assert [int(v) for v in values["energy_wh"][:-1]] == per_connector


async def test_roles(clean_db: str, keys: dict[str, str]) -> None:
    async with api_client(clean_db) as client:
        for role in ("operator", "billing", "admin"):
            resp = await client.get(URL, params=PERIOD, headers=auth(keys[role]))
            assert resp.status_code == 200, (role, resp.text)
        for role in ("maintenance", "public"):
            resp = await client.get(URL, params=PERIOD, headers=auth(keys[role]))
            assert_problem(resp, 403)
        assert_problem(await client.get(URL, params=PERIOD), 401)


@pytest.mark.parametrize(
    ("params", "status", "detail"),
    [
        ({"from": "2026-06-02T00:00:00Z", "to": "2026-06-01T00:00:00Z"}, 422, "earlier"),
        ({"from": "2026-06-01T00:00:00Z", "to": "2026-06-01T00:00:00Z"}, 422, "earlier"),
        ({"from": "2026-01-01T00:00:00Z", "to": "2026-06-01T00:00:00Z"}, 422, "93 days"),
        ({**PERIOD, "site": "NO-SUCH-SITE"}, 404, "NO-SUCH-SITE"),
        ({**PERIOD, "format": "pdf"}, 422, "format"),
        ({"from": "2026-06-01", "to": "2026-06-02T00:00:00Z"}, 422, "from"),
        ({"to": "2026-06-02T00:00:00Z"}, 422, "from"),
    ],
)
async def test_bad_input_is_a_problem(
    clean_db: str, keys: dict[str, str], params: dict[str, Any], status: int, detail: str
) -> None:
    async with api_client(clean_db) as client:
        resp = await client.get(URL, params=params, headers=auth(keys["operator"]))
    problem = assert_problem(resp, status)
    assert detail in resp.text, problem


async def test_empty_period_and_current_period(clean_db: str, keys: dict[str, str]) -> None:
    """No data: every figure is zero, the charts are still drawn; a period reaching into
    the future is observed up to now only."""
    now = datetime.now(UTC)
    async with api_client(clean_db) as client:
        resp = await client.get(URL, params=PERIOD, headers=auth(keys["operator"]))
        future = await client.get(
            URL,
            params={"from": _iso(now - timedelta(days=1)), "to": _iso(now + timedelta(days=1))},
            headers=auth(keys["operator"]),
        )
        page = await client.get(
            URL, params={**PERIOD, "format": "html"}, headers=auth(keys["operator"])
        )
    body = resp.json()
    assert body["connectors"] == []
    assert body["totals"]["connectors"] == 0
    assert body["totals"]["energy_wh"] == 0
    assert body["totals"]["revenue"] == []
    later = future.json()
    assert later["observed_until"] < later["to"]
    assert 86_400 <= later["totals"]["period_s"] < 2 * 86_400
    assert page.text.count("<svg") == 3
    assert "No connectors in scope." in page.text
