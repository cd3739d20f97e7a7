"""The API under test: in process (an httpx client on the ASGI app) or served by uvicorn
over HTTP in a thread of its own (so synchronous clients such as schemathesis' can call
it from the test's thread); API keys, session rows and the problem-details shape."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg

from api.config import ApiConfig
from api.main import build_server, create_app
from api.payments import PaymentsSetup
from chargeflow.stack import free_port
from tests.support.polling import poll_until

T0 = datetime(2025, 6, 1, 8, 0, tzinfo=UTC)


@asynccontextmanager
async def api_client(
    database_url: str,
    kafka_bootstrap: str | None = None,
    payments: PaymentsSetup | None = None,
    **config: Any,
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        ApiConfig(database_url=database_url, kafka_bootstrap=kafka_bootstrap, **config),
        payments,
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            yield client


def insert_session(db: psycopg.Connection[Any], **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "session_id": uuid.uuid4(),
        "charge_point_id": "CP-1",
        "connector_id": 1,
        "transaction_id": str(uuid.uuid4().int % 2_000_000_000),
        "id_tag": "TAG-1",
        "status": "closed",
        "started_at": T0,
        "stopped_at": T0 + timedelta(minutes=30),
        "meter_start_wh": 1000,
        "meter_stop_wh": 8500,
        "energy_wh": 7500,
        "energy_source": "station_register",
        "quality": "exact",
        "quality_reasons": [],
        "stop_reason": "Local",
        "sample_count": 0,
    }
    row.update(fields)
    if row["status"] == "active":
        row.setdefault("stopped_at", None)
    cols = ", ".join(row)
    marks = ", ".join(["%s"] * len(row))
    db.execute(f"INSERT INTO sessions ({cols}) VALUES ({marks})", list(row.values()))
    return row


def auth(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def assert_problem(resp: httpx.Response, status: int) -> dict[str, Any]:
    """The one error shape: RFC 9457 problem details; returns the body."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = resp.json()
    assert set(body) >= {"type", "title", "status", "detail", "instance"}, body
    assert body["status"] == status
    assert body["instance"] == resp.request.url.raw_path.decode().split("?")[0]
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return body


@contextmanager
def served_api(config: ApiConfig, host: str = "127.0.0.1") -> Iterator[str]:
    """Yield the base URL (``http://host:port``) while the API serves."""
    port = free_port()
    server = build_server(config, host=host, port=port, log_level="warning")
    thread = threading.Thread(target=asyncio.run, args=(server.serve(),), name="api-server")
    thread.start()
    try:
        poll_until(
            lambda: server.started or not thread.is_alive(),
            bool,
            15,
            "uvicorn to start",
            interval=0.02,
        )
        assert server.started, "uvicorn exited during start-up"
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        assert not thread.is_alive(), "uvicorn did not stop within 15 s"


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """(event name, JSON data) of each event of a ``text/event-stream`` body."""
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        events.append((fields["event"], json.loads(fields["data"])))
    return events
