"""Health, OpenAPI and API key storage against the real broker and database."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from chargeflow.stack import EmbeddedBroker, free_port
from store.api_keys import create_api_key, list_api_keys, revoke_api_key, verify_api_key
from tests.support.api import api_client, assert_problem

pytestmark = pytest.mark.integration


async def test_ready_and_live_with_real_broker_and_database(
    broker: EmbeddedBroker, clean_db: str
) -> None:
    async with api_client(clean_db, broker.bootstrap) as client:
        for path in ("/readyz", "/healthz"):
            resp = await client.get(path)
            assert resp.status_code == 200
            assert resp.json() == {"status": "ok", "database": "ok", "broker": "ok"}
        live = await client.get("/livez")
    assert (live.status_code, live.json()) == (200, {"status": "ok"})


async def test_ready_with_the_broker_stopped(tmp_path: Path, clean_db: str) -> None:
    """The API needs only the database: a stopped broker is reported, never 503."""
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as own_broker:
        async with api_client(clean_db, own_broker.bootstrap, health_timeout_s=1.0) as client:
            assert (await client.get("/readyz")).json()["broker"] == "ok"
            own_broker.stop()
            started = time.monotonic()
            ready = await client.get("/readyz")
            elapsed = time.monotonic() - started
            health = await client.get("/healthz")
            live = await client.get("/livez")
    for resp in (ready, health):
        assert resp.status_code == 200, resp.text
        assert resp.json()["status"] == "ok"
        assert resp.json()["database"] == "ok"
        assert resp.json()["broker"].startswith("down")
    assert live.status_code == 200
    assert elapsed < 5


async def test_not_ready_when_database_unreachable(broker: EmbeddedBroker) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing?connect_timeout=1"
    async with api_client(url, broker.bootstrap, pool_timeout_s=1.0) as client:
        resp = await client.get("/readyz")
        live = await client.get("/livez")
        # Requests that need the database answer 503 problem details, not a crash.
        key = "cf_0123456789abcdef_secret"
        sessions = await client.get("/v1/sessions", headers={"X-API-Key": key})
    not_ready = assert_problem(resp, 503)
    assert not_ready["type"] == "urn:chargeflow:problem:not-ready"
    assert not_ready["database"].startswith("down")
    assert not_ready["broker"] == "ok"
    assert live.status_code == 200
    body = assert_problem(sessions, 503)
    assert body["detail"] == "database unavailable"
    assert sessions.headers["Retry-After"] == "5"


async def test_openapi_lists_endpoints_and_security_schemes(clean_db: str) -> None:
    async with api_client(clean_db) as client:
        spec = (await client.get("/openapi.json")).json()
        docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
    assert {"/healthz", "/v1/sessions", "/v1/sessions/{session_id}"} <= set(spec["paths"])
    schemes = spec["components"]["securitySchemes"]
    assert schemes["ApiKeyHeader"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": schemes["ApiKeyHeader"]["description"],
    }
    assert schemes["BearerKey"]["scheme"] == "bearer"
    listing = spec["paths"]["/v1/sessions"]["get"]
    assert {"ApiKeyHeader": []} in listing["security"]
    params = {p["name"] for p in listing["parameters"]}
    assert {"station", "from", "to", "status", "cursor", "limit"} <= params
    assert "security" not in spec["paths"]["/healthz"]["get"]
    assert {"SessionPublic", "SessionsPage"} <= set(spec["components"]["schemas"])


async def test_api_keys_are_stored_hashed_and_verify(
    db: psycopg.Connection[Any], clean_db: str
) -> None:
    plaintext = create_api_key(clean_db, "billing export", "billing")
    assert plaintext.startswith("cf_")
    key_id, secret = plaintext[3:].split("_", 1)
    assert len(secret) >= 43  # token_urlsafe(32)

    rows = db.execute("SELECT key_id, name, role, key_hash::text FROM api_keys").fetchall()
    assert len(rows) == 1
    assert rows[0][:3] == (key_id, "billing export", "billing")
    dump = db.execute("SELECT api_keys::text FROM api_keys").fetchone()
    assert dump is not None
    assert secret not in dump[0]
    assert plaintext not in dump[0]
    stored = db.execute("SELECT key_hash FROM api_keys").fetchone()
    assert stored is not None
    assert len(bytes(stored[0])) == 32
    assert secret.encode() not in bytes(stored[0])

    with pytest.raises(ValueError, match="unknown role"):
        create_api_key(clean_db, "x", "superuser")

    async with await psycopg.AsyncConnection.connect(clean_db) as conn:
        principal = await verify_api_key(conn, plaintext)
        assert principal is not None
        assert (principal.key_id, principal.name, principal.role) == (
            key_id,
            "billing export",
            "billing",
        )
        assert await verify_api_key(conn, plaintext + "x") is None
        assert await verify_api_key(conn, "cf_" + key_id) is None

    listed = list_api_keys(clean_db)
    assert [(k.key_id, k.active) for k in listed] == [(key_id, True)]
    assert revoke_api_key(clean_db, plaintext) is True  # revoking by full key works too
    assert [k.active for k in list_api_keys(clean_db)] == [False]
    assert list_api_keys(clean_db, include_revoked=False) == []
    async with await psycopg.AsyncConnection.connect(clean_db) as conn:
        assert await verify_api_key(conn, plaintext) is None


async def test_api_serves_over_real_http(clean_db: str) -> None:
    """The uvicorn entry point the launcher uses starts, answers and stops cleanly."""
    import httpx

    from api.config import ApiConfig
    from api.main import build_server

    port = free_port()
    server = build_server(ApiConfig(database_url=clean_db), port=port, log_level="warning")
    task = asyncio.create_task(server.serve())
    try:
        deadline = time.monotonic() + 15
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            await asyncio.sleep(0.05)
        async with httpx.AsyncClient() as client:
            resp = await client.get(f"http://127.0.0.1:{port}/healthz")
        assert resp.status_code == 200
        assert resp.json()["broker"] == "disabled"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)
