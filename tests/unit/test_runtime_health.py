"""runtime.health over real HTTP: liveness, readiness from named checks, metrics, and
what the server answers to wrong methods, unknown paths and oversized requests."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter

from runtime.health import HealthServer, describe_failure, redact


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def server(registry: CollectorRegistry) -> Iterator[HealthServer]:
    health = HealthServer(registry=registry, check_timeout_s=0.5, name="test")
    health.start_in_thread()
    try:
        yield health
    finally:
        health.stop()


def raw_request(port: int, request: bytes) -> bytes:
    """Send ``request`` as is and read the whole answer (the server closes after it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_livez_answers_without_checks(server: HealthServer) -> None:
    server.add_check("never", lambda: False)
    answer = httpx.get(f"{server.url}/livez")
    assert answer.status_code == 200
    assert answer.json() == {"status": "alive", "process": "test"}


def test_readiness_is_every_named_check(server: HealthServer) -> None:
    state = {"mqtt": True}
    server.add_check("mqtt", lambda: state["mqtt"])
    server.add_check("database", lambda: None)
    ready = httpx.get(f"{server.url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"mqtt": {"ok": True}, "database": {"ok": True}}
    state["mqtt"] = False
    not_ready = httpx.get(f"{server.url}/readyz")
    assert not_ready.status_code == 503
    assert not_ready.json()["status"] == "not ready"
    assert not_ready.json()["checks"]["mqtt"] == {"ok": False, "error": "not ready"}
    assert not_ready.json()["checks"]["database"] == {"ok": True}
    assert httpx.get(f"{server.url}/healthz").status_code == 503


def test_a_raising_check_says_why_without_credentials(server: HealthServer) -> None:
    def database() -> None:
        raise ConnectionError("cannot reach postgresql://app:s3cret@db.example:5432/x\nmore")

    server.add_check("database", database)
    answer = httpx.get(f"{server.url}/readyz")
    assert answer.status_code == 503
    error = answer.json()["checks"]["database"]["error"]
    assert error == "ConnectionError: cannot reach postgresql://***@db.example:5432/x"
    assert "s3cret" not in answer.text


def test_a_check_that_hangs_fails_within_its_time_limit(server: HealthServer) -> None:
    release = threading.Event()
    server.add_check("stuck", lambda: release.wait(30))

    async def quick() -> bool:
        return True

    server.add_check("quick", quick)
    try:
        started = time.monotonic()
        answer = httpx.get(f"{server.url}/readyz", timeout=10)
        elapsed = time.monotonic() - started
    finally:
        release.set()
    assert answer.status_code == 503
    assert answer.json()["checks"] == {
        "stuck": {"ok": False, "error": "no answer within 0.5s"},
        "quick": {"ok": True},
    }
    assert elapsed < 5


def test_metrics_in_the_prometheus_format(
    server: HealthServer, registry: CollectorRegistry
) -> None:
    counter = Counter("things_done", "Things done", registry=registry)
    counter.inc(3)
    answer = httpx.get(f"{server.url}/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == CONTENT_TYPE_LATEST
    assert "things_done_total 3.0" in answer.text


@pytest.mark.parametrize("path", ["/livez", "/readyz", "/healthz", "/metrics"])
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_other_methods_get_405(server: HealthServer, path: str, method: str) -> None:
    answer = httpx.request(method, f"{server.url}{path}", content=b"x")
    assert answer.status_code == 405
    assert "GET" in answer.headers["allow"]


@pytest.mark.parametrize("path", ["/livez", "/readyz", "/metrics"])
def test_head_works_like_get(server: HealthServer, path: str) -> None:
    answer = httpx.head(f"{server.url}{path}")
    assert answer.status_code == 200
    assert answer.content == b""


@pytest.mark.parametrize("path", ["/", "/nope", "/metrics/x", "/livez/"])
def test_other_paths_get_404(server: HealthServer, path: str) -> None:
    assert httpx.get(f"{server.url}{path}").status_code == 404


def test_a_70kb_request_line_gets_an_error_status_and_the_server_keeps_serving(
    server: HealthServer,
) -> None:
    line = b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    answer = raw_request(server.port, line)
    status = answer.split(b"\r\n", 1)[0]
    assert status == b"HTTP/1.1 414 Request-URI Too Long", status
    query = b"GET /metrics?" + b"q" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert raw_request(server.port, query).startswith(b"HTTP/1.1 414")
    huge_header = b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 70_000 + b"\r\n\r\n"
    assert raw_request(server.port, huge_header).split(b" ", 2)[1] in (b"400", b"431")
    garbage = raw_request(server.port, b"\x00\xff not http at all\r\n\r\n")
    assert garbage.startswith(b"HTTP/1.1 400")
    assert httpx.get(f"{server.url}/livez").status_code == 200


def test_port_zero_is_known_before_serving_and_stop_frees_it() -> None:
    health = HealthServer(port=0)
    port = health.bind()
    assert port > 0
    health.start_in_thread()
    assert httpx.get(f"http://127.0.0.1:{port}/livez").status_code == 200
    health.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/livez")


async def test_serves_inside_the_running_loop(registry: CollectorRegistry) -> None:
    health = HealthServer(registry=registry)
    ready = asyncio.Event()
    health.add_check("flag", ready.is_set)

    async def get(path: str) -> httpx.Response:
        async with httpx.AsyncClient(base_url=health.url) as client:
            return await client.get(path)

    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(health.serve())
        assert (await get("/readyz")).status_code == 503
        ready.set()
        assert (await get("/readyz")).status_code == 200
        health.stop()
    assert task.done()


def test_redaction_helpers() -> None:
    assert (
        redact("mqtt://u:p@h:1 and postgresql://x@y/z") == "mqtt://***@h:1 and postgresql://***@y/z"
    )
    assert describe_failure(RuntimeError("")) == "RuntimeError"
    assert describe_failure(OSError("boom\ntrace")) == "OSError: boom"
