"""The audit log of the API's writes on the real database over the API: writes of
several kinds (200, 204, 401, 403, 404, 422) recorded with the key's id and role and
the outcome, unauthenticated attempts with an unknown author, no GET recorded; secrets
sent in bodies or as keys absent from the table and from ``GET /v1/audit``; filters,
pagination, 403 for non-admins, 422 for bad filters; and a write whose audit row cannot
be stored still answered with its own outcome."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import psycopg
import pytest

from tests.support.api import api_client, assert_problem, auth

pytestmark = pytest.mark.integration

CARD_TOKEN = "pm_SECRET_card_token_4242"
PASSWORD = "hunter2-hunter2-secret"
WRONG_KEY = "cf_0123456789abcdef_not-the-real-secret-at-all"
METHOD = "/v1/id-tags/TAG-AUD/payment-method"


def key_id(key: str) -> str:
    return key.split("_")[1]


def audit_table(db_url: str) -> str:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT row_to_json(a)::text FROM api_audit a").fetchall()
    return "\n".join(r[0] for r in rows)


async def walk(client: httpx.AsyncClient, key: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        resp = await client.get("/v1/audit", params=query, headers=auth(key))
        assert resp.status_code == 200, resp.text
        items.extend(resp.json()["items"])
        cursor = resp.json()["next_cursor"]
        if cursor is None:
            return items


async def _writes(client: httpx.AsyncClient, keys: dict[str, str]) -> None:
    stripe = {"provider": "stripe", "customer": "cus_AUD", "payment_method": CARD_TOKEN}
    made = await client.put(METHOD, json=stripe, headers=auth(keys["billing"]))
    assert made.status_code == 200, made.text
    removed = await client.delete(METHOD, headers=auth(keys["admin"]))
    assert removed.status_code == 204, removed.text
    reset = "/v1/stations/AUD-NONE/commands/reset"
    assert_problem(
        await client.post(reset, json={"type": "soft"}, headers=auth(keys["operator"])), 404
    )
    assert_problem(
        await client.post(reset, json={"type": "soft"}, headers=auth(keys["billing"])), 403
    )
    assert_problem(await client.post(reset, json={"password": PASSWORD}), 401)
    assert_problem(await client.post(reset, json={"type": "soft"}, headers=auth(WRONG_KEY)), 401)
    bad = {
        "provider": "stripe",
        "customer": "cus_AUD",
        "payment_method": CARD_TOKEN,
        "pw": PASSWORD,
    }
    assert_problem(await client.put(METHOD, json=bad, headers=auth(keys["billing"])), 422)
    # Reads are not audited.
    assert (await client.get("/v1/commands", headers=auth(keys["operator"]))).status_code == 200


async def test_every_write_is_audited_with_its_author_and_outcome_and_no_secret(
    clean_db: str, keys: dict[str, str]
) -> None:
    async with api_client(clean_db) as client:
        await _writes(client, keys)
        admin = keys["admin"]
        items = await walk(client, admin, limit=2)
        got = [(i["method"], i["route"], i["status"], i["api_key_id"], i["role"]) for i in items]
        route = "/v1/stations/{station_id}/commands/reset"
        assert got == [
            ("PUT", "/v1/id-tags/{id_tag}/payment-method", 422, key_id(keys["billing"]), "billing"),
            ("POST", route, 401, None, None),
            ("POST", route, 401, None, None),
            ("POST", route, 403, key_id(keys["billing"]), "billing"),
            ("POST", route, 404, key_id(keys["operator"]), "operator"),
            ("DELETE", "/v1/id-tags/{id_tag}/payment-method", 204, key_id(admin), "admin"),
            ("PUT", "/v1/id-tags/{id_tag}/payment-method", 200, key_id(keys["billing"]), "billing"),
        ]
        put = items[-1]
        assert put["path_params"] == {"id_tag": "TAG-AUD"}
        assert put["summary"] == {
            "bytes": put["summary"]["bytes"],
            "media_type": "application/json",
            "fields": ["customer", "payment_method", "provider"],
        }
        assert put["summary"]["bytes"] > 0
        assert items[3]["path_params"] == {"station_id": "AUD-NONE"}
        times = [i["at"] for i in items]
        assert times == sorted(times, reverse=True)

        for text in (str(items), audit_table(clean_db)):
            for secret in (CARD_TOKEN, PASSWORD, WRONG_KEY, "not-the-real-secret", *keys.values()):
                assert secret not in text
            assert key_id(keys["billing"]) in text

        # Filters (AND).
        billing = await walk(client, admin, api_key_id=key_id(keys["billing"]))
        assert [i["status"] for i in billing] == [422, 403, 200]
        assert [i["status"] for i in await walk(client, admin, method="DELETE")] == [204]
        stations = await walk(client, admin, path_prefix="/v1/stations/")
        assert [i["status"] for i in stations] == [401, 401, 403, 404]
        failed = await walk(client, admin, outcome="client_error")
        assert len(failed) == 5
        assert [i["status"] for i in await walk(client, admin, outcome="success")] == [204, 200]
        assert await walk(client, admin, outcome="server_error") == []
        window = await walk(client, admin, since=items[-2]["at"], until=items[0]["at"])
        assert window == [i for i in items[1:-1] if i["at"] >= items[-2]["at"]]
        assert await walk(client, admin, path_prefix="/v1/%") == []


async def test_only_admins_read_it_and_bad_filters_are_422(
    clean_db: str, keys: dict[str, str]
) -> None:
    async with api_client(clean_db) as client:
        for role in ("operator", "maintenance", "billing", "public"):
            assert_problem(await client.get("/v1/audit", headers=auth(keys[role])), 403)
        assert_problem(await client.get("/v1/audit"), 401)
        admin = auth(keys["admin"])
        for params in (
            {"method": "GET"},
            {"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
            {"until": "tomorrow"},
            {"cursor": "0-xyz"},
            {"path_prefix": "v1/stations"},
            {"outcome": "maybe"},
            {"limit": 0},
        ):
            problem = assert_problem(
                await client.get("/v1/audit", params=params, headers=admin), 422
            )
            assert problem["errors"], params
        # Reading the log writes nothing to it; the 403s above were reads too.
        assert (await client.get("/v1/audit", headers=admin)).json()["items"] == []


async def test_a_write_whose_audit_cannot_be_stored_keeps_its_outcome(
    clean_db: str, keys: dict[str, str]
) -> None:
    with psycopg.connect(clean_db, autocommit=True) as conn:
        conn.execute("ALTER TABLE api_audit RENAME TO api_audit_away")
    try:
        async with api_client(clean_db) as client:
            wallet = {"provider": "wallet", "customer": "AUD"}
            made = await client.put(METHOD, json=wallet, headers=auth(keys["billing"]))
            assert made.status_code == 200, made.text
            assert made.json()["provider"] == "wallet"
            metrics = (await client.get("/metrics")).text
            assert "chargeflow_api_audit_failures_total 1.0" in metrics
    finally:
        with psycopg.connect(clean_db, autocommit=True) as conn:
            conn.execute("ALTER TABLE api_audit_away RENAME TO api_audit")


async def test_more_concurrent_writes_than_pool_connections_are_all_answered_and_audited(
    clean_db: str, keys: dict[str, str]
) -> None:
    """The handler's connection goes back before the audit takes one: a request never
    holds two, so a full pool cannot wait on itself (it answered 503 at 100 writes/s)."""
    writes = 8
    wallet = {"provider": "wallet", "customer": "AUD"}
    async with api_client(clean_db, pool_max_size=2, pool_timeout_s=2.0) as client:
        answers = await asyncio.gather(
            *(
                client.put(
                    f"/v1/id-tags/TAG-POOL-{n}/payment-method",
                    json=wallet,
                    headers=auth(keys["billing"]),
                )
                for n in range(writes)
            )
        )
    assert [a.status_code for a in answers] == [200] * writes
    with psycopg.connect(clean_db) as conn:
        [(audited,)] = conn.execute(
            "SELECT count(*) FROM api_audit WHERE route = %s AND status = 200",
            ("/v1/id-tags/{id_tag}/payment-method",),
        ).fetchall()
    assert audited == writes
