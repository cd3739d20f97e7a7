"""The sessions API against the real database: auth, roles, filters, pagination."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from store.api_keys import revoke_api_key
from tests.support.api import T0, api_client, assert_problem, auth, insert_session

pytestmark = pytest.mark.integration


async def test_anonymous_invalid_and_revoked_keys_get_401(
    db: psycopg.Connection[Any], clean_db: str, keys: dict[str, str]
) -> None:
    billing = keys["billing"]
    key_id, secret = billing[3:].split("_", 1)
    async with api_client(clean_db) as client:
        for headers in (
            {},
            {"X-API-Key": "nonsense"},
            {"X-API-Key": f"cf_{key_id}_{secret}x"},  # right id, wrong secret
            {"X-API-Key": f"cf_0000000000000000_{secret}"},  # unknown id
            {"Authorization": "Bearer cf_nope_nope"},
            {"Authorization": f"Basic {billing}"},
        ):
            resp = await client.get("/v1/sessions", headers=headers)
            assert_problem(resp, 401)
            assert "Bearer" in resp.headers["WWW-Authenticate"]
        assert (await client.get("/v1/sessions", headers=auth(billing))).status_code == 200
        assert revoke_api_key(clean_db, key_id) is True
        assert revoke_api_key(clean_db, key_id) is False
        resp = await client.get("/v1/sessions", headers=auth(billing))
        assert assert_problem(resp, 401)["detail"] == "invalid or revoked API key"


async def test_roles(db: psycopg.Connection[Any], clean_db: str, keys: dict[str, str]) -> None:
    row = insert_session(db)
    async with api_client(clean_db) as client:
        for role in ("billing", "operator", "admin"):
            resp = await client.get("/v1/sessions", headers=auth(keys[role]))
            assert resp.status_code == 200, role
            assert [i["session_id"] for i in resp.json()["items"]] == [str(row["session_id"])]
            one = await client.get(f"/v1/sessions/{row['session_id']}", headers=auth(keys[role]))
            assert one.status_code == 200
        # Bearer works as well as X-API-Key.
        resp = await client.get(
            "/v1/sessions", headers={"Authorization": f"Bearer {keys['operator']}"}
        )
        assert resp.status_code == 200
        for role in ("maintenance", "public"):
            for path in ("/v1/sessions", f"/v1/sessions/{row['session_id']}"):
                resp = await client.get(path, headers=auth(keys[role]))
                assert role in assert_problem(resp, 403)["detail"], path


def _insert_a_closed_and_an_active_session(
    db: psycopg.Connection[Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    closed = insert_session(
        db,
        charge_point_id="CP-9",
        connector_id=2,
        transaction_id="42",
        started_at=T0,
        stopped_at=T0 + timedelta(minutes=90, seconds=30),
        meter_start_wh=100,
        meter_stop_wh=22_100,
        energy_wh=22_000,
        quality="corrected",
        quality_reasons=["register_reset"],
        stop_reason="EVDisconnected",
        sample_count=37,
        energy_source="smart_meter",
        closed_by="stop",
        station_energy_wh=21_990,
        smart_meter_energy_wh=22_000,
        smart_meter_id="MTR-9",
        ocpp_version="2.0.1",
    )
    active = insert_session(
        db,
        status="active",
        stopped_at=None,
        meter_stop_wh=None,
        energy_wh=None,
        energy_source=None,
        stop_reason=None,
        id_tag=None,
        sample_count=3,
    )
    return closed, active


def _closed_session_body(session_id: Any) -> dict[str, Any]:
    return {
        "session_id": str(session_id),
        "charge_point_id": "CP-9",
        "connector_id": 2,
        "transaction_id": "42",
        "id_tag": "TAG-1",
        "status": "closed",
        "started_at": "2025-06-01T08:00:00Z",
        "stopped_at": "2025-06-01T09:30:30Z",
        "duration_s": 5430.0,
        "meter_start_wh": 100,
        "meter_stop_wh": 22_100,
        "energy_wh": 22_000,
        "energy_source": "smart_meter",
        "quality": "corrected",
        "quality_reasons": ["register_reset"],
        "stop_reason": "EVDisconnected",
        "sample_count": 37,
        "closed_by": "stop",
        "station_energy_wh": 21_990,
        "smart_meter_energy_wh": 22_000,
        "smart_meter_id": "MTR-9",
        "ocpp_version": "2.0.1",
        # Not started from the API (POST .../commands/remote-start), so no command.
        "remote_start_command_id": None,
    }


async def test_single_session_fields(
    db: psycopg.Connection[Any], clean_db: str, keys: dict[str, str]
) -> None:
    closed, active = _insert_a_closed_and_an_active_session(db)
    async with api_client(clean_db) as client:
        resp = await client.get(
            f"/v1/sessions/{closed['session_id']}", headers=auth(keys["billing"])
        )
        assert resp.status_code == 200
        assert resp.json() == _closed_session_body(closed["session_id"])
        resp = await client.get(f"/v1/sessions/{active['session_id']}", headers=auth(keys["admin"]))
        body = resp.json()
        assert body["status"] == "active"
        assert body["duration_s"] is None
        assert body["stopped_at"] is None
        assert body["energy_wh"] is None
        assert body["sample_count"] == 3

        resp = await client.get(f"/v1/sessions/{uuid.uuid4()}", headers=auth(keys["admin"]))
        assert "not found" in assert_problem(resp, 404)["detail"]
        resp = await client.get("/v1/sessions/not-a-uuid", headers=auth(keys["admin"]))
        assert assert_problem(resp, 422)["errors"][0]["name"] == "session_id"


async def _check_invalid_filters_are_422(
    client: httpx.AsyncClient, key: str, lo: datetime, hi: datetime
) -> None:
    bad: list[tuple[dict[str, Any], str]] = [
        ({"from": hi.isoformat(), "to": lo.isoformat()}, "from"),
        ({"from": lo.isoformat(), "to": lo.isoformat()}, "from"),
        ({"status": "open"}, "status"),
        ({"from": "yesterday"}, "from"),
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
    ]
    for params, name in bad:
        resp = await client.get("/v1/sessions", params=params, headers=auth(key))
        body = assert_problem(resp, 422)
        assert [e["name"] for e in body["errors"]] == [name], params


async def test_filters_return_exactly_the_matching_rows(
    db: psycopg.Connection[Any], clean_db: str, keys: dict[str, str]
) -> None:
    rows = [
        insert_session(
            db,
            charge_point_id=f"CP-{i % 3}",
            started_at=T0 + timedelta(hours=i),
            status="active" if i % 4 == 0 else "closed",
            stopped_at=None if i % 4 == 0 else T0 + timedelta(hours=i, minutes=20),
        )
        for i in range(12)
    ]

    def ids(selected: list[dict[str, Any]]) -> set[str]:
        return {str(r["session_id"]) for r in selected}

    async with api_client(clean_db) as client:

        async def query(**params: Any) -> set[str]:
            resp = await client.get("/v1/sessions", params=params, headers=auth(keys["billing"]))
            assert resp.status_code == 200, resp.text
            body = resp.json()
            assert body["next_cursor"] is None
            items = body["items"]
            starts = [(i["started_at"], i["session_id"]) for i in items]
            assert starts == sorted(starts, reverse=True)
            return {i["session_id"] for i in items}

        assert await query() == ids(rows)
        assert await query(station="CP-1") == ids(
            [r for r in rows if r["charge_point_id"] == "CP-1"]
        )
        assert await query(station="CP-404") == set()
        assert await query(status="active") == ids([r for r in rows if r["status"] == "active"])
        assert await query(status="closed") == ids([r for r in rows if r["status"] == "closed"])
        lo, hi = T0 + timedelta(hours=3), T0 + timedelta(hours=7)
        # from inclusive, to exclusive
        assert await query(**{"from": lo.isoformat(), "to": hi.isoformat()}) == ids(
            [r for r in rows if lo <= r["started_at"] < hi]
        )
        # Offsets other than UTC.
        assert await query(**{"from": "2025-06-01T12:00:00+02:00"}) == ids(
            [r for r in rows if r["started_at"] >= T0 + timedelta(hours=2)]
        )
        assert await query(to="2025-06-01T10:00:00Z") == ids(
            [r for r in rows if r["started_at"] < T0 + timedelta(hours=2)]
        )
        assert await query(station="CP-0", status="closed", **{"from": lo.isoformat()}) == ids(
            [
                r
                for r in rows
                if r["charge_point_id"] == "CP-0"
                and r["status"] == "closed"
                and r["started_at"] >= lo
            ]
        )
        await _check_invalid_filters_are_422(client, keys["billing"], lo, hi)


async def test_cursor_pagination_walks_every_row_once(
    db: psycopg.Connection[Any], clean_db: str, keys: dict[str, str]
) -> None:
    # 25 rows, many sharing started_at, so the session_id tiebreak matters.
    rows = [insert_session(db, started_at=T0 + timedelta(minutes=(i // 4) * 10)) for i in range(25)]
    expected = [
        str(r["session_id"])
        for r in sorted(rows, key=lambda r: (r["started_at"], r["session_id"]), reverse=True)
    ]
    async with api_client(clean_db) as client:
        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 7}
            if cursor is not None:
                params["cursor"] = cursor
            resp = await client.get("/v1/sessions", params=params, headers=auth(keys["operator"]))
            assert resp.status_code == 200, resp.text
            body = resp.json()
            pages += 1
            seen.extend(i["session_id"] for i in body["items"])
            cursor = body["next_cursor"]
            if cursor is None:
                break
            assert pages < 10
        assert pages == 4
        assert seen == expected
        assert len(set(seen)) == 25

        # A cursor combined with a filter keeps the filter.
        first = await client.get(
            "/v1/sessions",
            params={"limit": 7, "from": (T0 + timedelta(minutes=20)).isoformat()},
            headers=auth(keys["operator"]),
        )
        second = await client.get(
            "/v1/sessions",
            params={
                "limit": 7,
                "from": (T0 + timedelta(minutes=20)).isoformat(),
                "cursor": first.json()["next_cursor"],
            },
            headers=auth(keys["operator"]),
        )
        walked = [i["session_id"] for i in first.json()["items"] + second.json()["items"]]
        in_range = [
            str(r["session_id"])
            for r in sorted(rows, key=lambda r: (r["started_at"], r["session_id"]), reverse=True)
            if r["started_at"] >= T0 + timedelta(minutes=20)
        ]
        assert walked == in_range[:14]

        for bad in ("garbage", "eyJzdGFydGVkX2F0IjogMX0", "%%%", "1-" + "0" * 31):
            resp = await client.get(
                "/v1/sessions", params={"cursor": bad}, headers=auth(keys["operator"])
            )
            assert assert_problem(resp, 422)["errors"][0]["name"] == "cursor"


async def test_a_session_without_energy_figure_reads_missing_never_corrected(
    db: psycopg.Connection[Any], clean_db: str, keys: dict[str, str]
) -> None:
    missing = insert_session(
        db,
        energy_wh=None,
        energy_source=None,
        quality="missing",
        closed_by="reconciled",
        quality_reasons=["state_lost", "stop_missing", "register_missing"],
    )
    async with api_client(clean_db) as client:
        resp = await client.get(
            f"/v1/sessions/{missing['session_id']}", headers=auth(keys["billing"])
        )
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert (body["energy_wh"], body["energy_source"], body["quality"], body["closed_by"]) == (
            None,
            None,
            "missing",
            "reconciled",
        )
        schema = (await client.get("/openapi.json")).json()["components"]["schemas"]
        assert "missing" in schema["Quality"]["enum"]
        assert "reconciled" in schema["ClosedBy"]["enum"]
