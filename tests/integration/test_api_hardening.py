"""Hostile and broken input, failed authentication, faults: the API answers with problem
details (never a plain-text 500), limits failed keys per address, and tells the truth in
its metrics and access log. Real database, real HTTP where the client address matters."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from structlog.testing import capture_logs

from api.config import ApiConfig
from chargeflow.stack import DatabaseServer
from store.api_keys import create_api_key
from store.db import migrate
from tests.support.api import api_client, assert_problem, auth, served_api

pytestmark = pytest.mark.integration

TS = "2025-06-01T08:00:00Z"
# Every data operation with a valid request; each text input gets a NUL byte below.
DATA_REQUESTS: list[tuple[str, dict[str, str]]] = [
    ("/v1/sessions", {"station": "CP-1"}),
    ("/v1/availability", {"station": "CP-1"}),
    ("/v1/availability", {"site": "S-1"}),
    ("/v1/stations/CP-1/status-history", {}),
    ("/v1/load/sites/S-1", {}),
    ("/v1/load/connectors/CP-1/1", {}),
]
# The cursor that used to raise AttributeError: valid base64 JSON, session_id a number.
CRAFTED_CURSOR = (
    "eyJzdGFydGVkX2F0IjogIjIwMjUtMDEtMDFUMDA6MDA6MDArMDA6MDAiLCAic2Vzc2lvbl9pZCI6IDEyM30"
)


@pytest.fixture
def admin_key(clean_db: str) -> str:
    return create_api_key(clean_db, "hardening", "admin")


async def test_nul_bytes_in_any_text_parameter_or_path_segment_are_rejected(
    clean_db: str, admin_key: str
) -> None:
    async with api_client(clean_db) as client:
        for path, params in DATA_REQUESTS:
            assert (await client.get(path, params=params, headers=auth(admin_key))).status_code in (
                200,
                404,
            ), path
            for name in params:
                resp = await client.get(
                    path, params={**params, name: "CP\x00-1"}, headers=auth(admin_key)
                )
                body = assert_problem(resp, 422)
                assert [e["name"] for e in body["errors"]] == [name]
            if "CP-1" in path or "S-1" in path:
                broken = path.replace("CP-1", "CP%00-1").replace("S-1", "S%00-1")
                body = assert_problem(await client.get(broken, headers=auth(admin_key)), 422)
                assert body["errors"][0]["location"] == "path"
        for control in ("\x01", "\x1f", "\x7f", "\x85"):
            resp = await client.get(
                "/v1/availability", params={"site": f"S{control}"}, headers=auth(admin_key)
            )
            assert_problem(resp, 422)


@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01T00:00:00Z",  # arithmetic on it overflowed
        "0001-01-01T00:00:00+00:00",
        "9999-12-31T23:59:59Z",
        "1700000000",  # an integer is not a timestamp
        "1700000000.5",
        "2025-06-01T08:00:00",  # no offset
        "2025-06-01",
        "2025-02-30T00:00:00Z",
        "2025-06-01T08:00:00\x00Z",
    ],
)
async def test_timestamps_outside_the_documented_form_are_rejected(
    clean_db: str, admin_key: str, value: str
) -> None:
    async with api_client(clean_db) as client:
        for path in (
            "/v1/sessions",
            "/v1/stations/CP-1/status-history",
            "/v1/load/connectors/CP-1/1",
        ):
            for name in ("from", "to"):
                resp = await client.get(path, params={name: value}, headers=auth(admin_key))
                body = assert_problem(resp, 422)
                assert [e["name"] for e in body["errors"]] == [name], (path, value)


async def test_from_must_be_earlier_than_to_everywhere(clean_db: str, admin_key: str) -> None:
    with psycopg.connect(clean_db, autocommit=True) as db:
        db.execute("INSERT INTO stations (charge_point_id) VALUES ('CP-1')")
    async with api_client(clean_db) as client:
        for path in (
            "/v1/sessions",
            "/v1/stations/CP-1/status-history",
            "/v1/load/connectors/CP-1/1",
        ):
            for later in (TS, "2025-06-01T07:00:00Z"):
                resp = await client.get(
                    path, params={"from": TS, "to": later}, headers=auth(admin_key)
                )
                assert "earlier" in assert_problem(resp, 422)["errors"][0]["reason"], path
            resp = await client.get(
                path, params={"from": TS, "to": "2025-06-01T09:00:00Z"}, headers=auth(admin_key)
            )
            assert resp.status_code == 200, (path, resp.text)
    spec = (await _openapi(clean_db))["paths"]
    for path in (
        "/v1/sessions",
        "/v1/stations/{charge_point_id}/status-history",
        "/v1/load/connectors/{charge_point_id}/{connector_id}",
    ):
        assert "`from` must be earlier than `to`" in spec[path]["get"]["description"]


async def _openapi(database_url: str) -> dict[str, Any]:
    async with api_client(database_url) as client:
        spec: dict[str, Any] = (await client.get("/openapi.json")).json()
    return spec


async def test_crafted_cursors_are_rejected(clean_db: str, admin_key: str) -> None:
    async with api_client(clean_db) as client:
        for cursor in (
            CRAFTED_CURSOR,
            "0-" + "g" * 32,
            "9" * 18 + "-" + "0" * 32,
            "-" + "9" * 17 + "-" + "0" * 32,
            "1-" + "0" * 32 + "\x00",
        ):
            resp = await client.get(
                "/v1/sessions", params={"cursor": cursor}, headers=auth(admin_key)
            )
            assert assert_problem(resp, 422)["errors"][0]["name"] == "cursor"


async def test_the_openapi_document_states_the_rules(clean_db: str) -> None:
    spec = await _openapi(clean_db)
    params = {p["name"]: p["schema"] for p in spec["paths"]["/v1/sessions"]["get"]["parameters"]}
    timestamp = params["from"]["anyOf"][0]
    assert timestamp["type"] == "string"
    assert timestamp["format"] == "date-time"
    assert timestamp["pattern"].endswith("(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$")
    assert "pattern" in params["station"]["anyOf"][0]
    assert "pattern" in params["cursor"]["anyOf"][0]
    problem = {"$ref": "#/components/schemas/Problem"}
    for path, item in spec["paths"].items():
        for operation in item.values():
            responses = operation["responses"]
            for code in ("405", "422", "500"):
                assert (
                    responses[code]["content"]["application/problem+json"]["schema"] == problem
                ), (path, code)
            if path.startswith("/v1/"):
                for code in ("401", "403", "429", "503"):
                    assert code in responses, (path, code)
                assert "Retry-After" in responses["429"]["headers"]
    assert set(spec["components"]["schemas"]["Problem"]["properties"]) == {
        "type",
        "title",
        "status",
        "detail",
        "instance",
        "errors",
    }


async def test_method_and_route_errors_are_problem_details(clean_db: str) -> None:
    async with api_client(clean_db) as client:
        assert_problem(await client.post("/v1/sessions"), 405)
        assert_problem(await client.get("/v1/nothing-here"), 404)


@pytest.fixture
def drifted_database(pg_server: DatabaseServer) -> Iterator[str]:
    """A database whose sessions table lacks a column the API reads: every session
    query fails with an error no handler expects."""
    name = f"chargeflow_drift_{uuid.uuid4().hex[:8]}"
    url = pg_server.create_database(name, exist_ok=False)
    migrate(url)
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("ALTER TABLE sessions RENAME COLUMN quality TO quality_renamed")
    yield url
    pg_server.drop_database(name)


async def test_an_unexpected_error_is_a_problem_500_without_internals_or_secrets(
    drifted_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    key = create_api_key(drifted_database, "drift", "admin")
    caplog.set_level(logging.ERROR, logger="chargeflow.api.errors")
    async with api_client(drifted_database) as client:
        resp = await client.get(
            "/v1/sessions", params={"station": "secret-query-value"}, headers=auth(key)
        )
        follow_up = await client.get("/livez")
    body = assert_problem(resp, 500)
    assert body["detail"] == "internal error; it has been logged"
    for internal in ("quality", "psycopg", "Traceback", "UndefinedColumn", "SELECT", key):
        assert internal not in resp.text
    assert follow_up.status_code == 200
    logged = caplog.text
    assert "UndefinedColumn" in logged
    assert "Traceback" in logged
    assert key not in logged
    assert key.split("_")[2] not in logged
    assert "secret-query-value" not in logged


async def test_failed_keys_are_limited_per_client_address_over_http(clean_db: str) -> None:
    good = create_api_key(clean_db, "good", "operator")
    config = ApiConfig(database_url=clean_db, auth_failure_limit=5, auth_failure_window_s=60)
    wrong = {"X-API-Key": "cf_0123456789abcdef_" + "x" * 43}
    with served_api(config) as url:
        attacker = httpx.AsyncClient(
            base_url=url, transport=httpx.AsyncHTTPTransport(local_address="127.0.0.1")
        )
        other = httpx.AsyncClient(
            base_url=url, transport=httpx.AsyncHTTPTransport(local_address="127.0.0.2")
        )
        async with attacker, other:
            statuses = [
                (await attacker.get("/v1/sessions", headers=wrong)).status_code for _ in range(5)
            ]
            assert statuses == [401] * 5
            burst = await asyncio.gather(
                *(attacker.get("/v1/sessions", headers=wrong) for _ in range(50))
            )
            assert {r.status_code for r in burst} == {429}
            limited = burst[0]
            body = assert_problem(limited, 429)
            assert body["type"] == "urn:chargeflow:problem:auth-rate-limited"
            assert 1 <= int(limited.headers["Retry-After"]) <= 60
            # Even the right key from the limited address waits...
            assert (await attacker.get("/v1/sessions", headers=auth(good))).status_code == 429
            # ...no key at all is not a guess and still says 401...
            assert (await attacker.get("/v1/sessions")).status_code == 401
            # ...and another address is unaffected, with a right key or a wrong one.
            assert (await other.get("/v1/sessions", headers=auth(good))).status_code == 200
            assert (await other.get("/v1/sessions", headers=wrong)).status_code == 401
            metrics = (await other.get("/metrics")).text
    assert 'chargeflow_api_auth_failures_total{status="429"} 51.0' in metrics
    assert 'chargeflow_api_auth_failures_total{status="401"} 7.0' in metrics


async def test_metrics_count_requests_per_route_template_and_the_pool(
    clean_db: str, admin_key: str
) -> None:
    async with api_client(clean_db) as client:
        for _ in range(3):
            assert (
                await client.get(f"/v1/sessions/{uuid.uuid4()}", headers=auth(admin_key))
            ).status_code == 404
        assert (await client.get("/v1/sessions", headers=auth(admin_key))).status_code == 200
        await client.get("/v1/sessions", headers={"X-API-Key": "cf_abc_wrong"})
        await client.get("/no/such/path/42")
        resp = await client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain; version=")
    text = resp.text
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert (
        samples[
            'chargeflow_api_requests_total{method="GET",route="/v1/sessions/'
            '{session_id}",status="404"}'
        ]
        == 3.0
    )
    assert (
        samples['chargeflow_api_requests_total{method="GET",route="/v1/sessions",status="200"}']
        == 1.0
    )
    assert (
        samples['chargeflow_api_requests_total{method="GET",route="/v1/sessions",status="401"}']
        == 1.0
    )
    assert (
        samples['chargeflow_api_requests_total{method="GET",route="<unmatched>",status="404"}']
        == 1.0
    )
    assert (
        samples[
            'chargeflow_api_request_duration_seconds_count{method="GET",'
            'route="/v1/sessions/{session_id}"}'
        ]
        == 3.0
    )
    # The scrape itself is in progress while it renders.
    assert samples['chargeflow_api_requests_in_progress{method="GET"}'] == 1.0
    assert samples["chargeflow_api_db_pool_max"] == 10.0
    assert samples["chargeflow_api_db_pool_connections"] >= 1.0
    assert samples["chargeflow_api_db_pool_available"] >= 0.0
    assert samples["chargeflow_api_db_pool_waiting"] == 0.0
    assert samples["chargeflow_api_db_pool_requests_total"] >= 5.0
    assert "chargeflow_api_db_pool_connection_errors_total" in samples
    assert "/no/such/path" not in text
    assert "cf_abc_wrong" not in text


async def test_one_access_log_line_per_request_with_key_id_never_key_or_query(
    clean_db: str, admin_key: str
) -> None:
    key_id = admin_key.split("_")[1]
    async with api_client(clean_db) as client:
        with capture_logs() as events:
            await client.get(
                "/v1/sessions", params={"station": "token-in-query"}, headers=auth(admin_key)
            )
            await client.get(
                f"/v1/sessions/{uuid.uuid4()}", headers={"Authorization": f"Bearer {admin_key}x"}
            )
    access = [e for e in events if e.get("event") == "request"]
    assert len(access) == 2, events
    first, second = access
    assert {k: first[k] for k in ("method", "route", "status", "client", "api_key_id")} == {
        "method": "GET",
        "route": "/v1/sessions",
        "status": 200,
        "client": "127.0.0.1",
        "api_key_id": key_id,
    }
    assert isinstance(first["duration_ms"], float)
    assert (second["route"], second["status"], second["api_key_id"]) == (
        "/v1/sessions/{session_id}",
        401,
        None,
    )
    dumped = repr(events)
    assert admin_key not in dumped
    assert "token-in-query" not in dumped


async def test_requests_without_a_usable_key_take_no_database_connection(
    clean_db: str,
) -> None:
    def pool_requests(text: str) -> float:
        [line] = [
            x for x in text.splitlines() if x.startswith("chargeflow_api_db_pool_requests_total ")
        ]
        return float(line.split()[1])

    async with api_client(clean_db, auth_failure_limit=1) as client:
        await client.get("/v1/sessions", headers={"X-API-Key": "cf_abc_wrong"})  # uses one
        before = pool_requests((await client.get("/metrics")).text)
        for _ in range(5):
            assert (await client.get("/v1/sessions")).status_code == 401
            limited = await client.get("/v1/sessions", headers={"X-API-Key": "cf_abc_wrong"})
            assert limited.status_code == 429
            control = await client.get("/v1/sessions", headers={"X-API-Key": "cf_a\x01b_c"})
            assert control.status_code == 429
        after = pool_requests((await client.get("/metrics")).text)
    assert after == before
