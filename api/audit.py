"""The audit log of every write through the API (``api_audit``, ``store.audit``): a pure
ASGI middleware around every POST, PUT, PATCH and DELETE, whatever its outcome (4xx and
5xx included, and requests without a valid key: who = unknown).

Who: the API key's id and role (``api.deps`` puts them on the request's state once the
key is verified). What: the method, the route template (never the raw path or the query
string), the values of the route's parameters (the resource's id), and a summary of the
body that holds no values: its size, media type and top-level field names
(:func:`body_summary`). A password, token or card in a body therefore never reaches the
table. When, how long, and the outcome (the status code).

The row is written in the request, after the handler decided the status and before the
response starts: the client sees no answer to a write whose audit was not attempted.
It is not in the handler's transaction (handlers own theirs): if the audit insert fails
(database away, pool exhausted), the failure is logged (no body, no key) and counted
(``chargeflow_api_audit_failures_total``) and the client still gets the real outcome -
the write has happened, and answering 500 would invite a retry that repeats it.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.metrics import ApiMetrics
from api.observe import route_template
from bus.envelope import new_message_id
from store.audit import AuditEntry, insert_audit

log = structlog.get_logger("chargeflow.api.audit")

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# The body kept in memory to name its fields; a bigger body is only counted.
MAX_PARSED_BODY = 64 * 1024
MAX_FIELDS = 50
MAX_PARAM_LENGTH = 200
FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}")


def body_summary(body: bytes, size: int, content_type: str | None) -> dict[str, Any]:
    """What the audit keeps of a request body: never a value.

    >>> body_summary(b'{"password": "hunter2", "id_tag": "T1"}', 40, "application/json")
    {'bytes': 40, 'media_type': 'application/json', 'fields': ['id_tag', 'password']}
    >>> body_summary(b"token=abc", 9, "application/x-www-form-urlencoded; charset=utf-8")
    {'bytes': 9, 'media_type': 'application/x-www-form-urlencoded'}
    >>> body_summary(b"", 0, None)
    {'bytes': 0}
    """
    summary: dict[str, Any] = {"bytes": size}
    if content_type:
        summary["media_type"] = content_type.split(";", 1)[0].strip().lower()[:100]
    if body and size <= MAX_PARSED_BODY and summary.get("media_type", "").endswith("json"):
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            names = sorted(k for k in parsed if FIELD_NAME.fullmatch(k))
            summary["fields"] = names[:MAX_FIELDS]
    return summary


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _path_params(scope: Scope) -> dict[str, str]:
    params = scope.get("path_params") or {}
    return {str(k): str(v)[:MAX_PARAM_LENGTH] for k, v in params.items()}


class _Body:
    """Counts the request body and keeps its start (for :func:`body_summary`)."""

    def __init__(self) -> None:
        self.size = 0
        self.chunks: list[bytes] = []

    def add(self, chunk: bytes) -> None:
        if self.size + len(chunk) <= MAX_PARSED_BODY:
            self.chunks.append(chunk)
        self.size += len(chunk)

    def parsed_part(self) -> bytes:
        return b"".join(self.chunks) if self.size <= MAX_PARSED_BODY else b""


class AuditWrites:
    def __init__(
        self, app: ASGIApp, metrics: ApiMetrics, routes: Callable[[], Sequence[BaseRoute]]
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in WRITE_METHODS:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        body = _Body()
        recorded = False

        async def audit_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                body.add(message.get("body", b""))
            return message

        async def audit_send(message: Message) -> None:
            nonlocal recorded
            if message["type"] == "http.response.start" and not recorded:
                recorded = True
                await self._record(scope, message["status"], body, started)
            await send(message)

        try:
            await self.app(scope, audit_receive, audit_send)
        except Exception:
            if not recorded:
                recorded = True
                await self._record(scope, 500, body, started)
            raise

    async def _record(self, scope: Scope, status: int, body: _Body, started: float) -> None:
        state: dict[str, Any] = scope.get("state") or {}
        client = scope.get("client")
        entry = AuditEntry(
            audit_id=uuid.UUID(hex=new_message_id()),
            at=datetime.now(UTC),
            api_key_id=state.get("api_key_id"),
            role=state.get("api_key_role"),
            method=scope["method"],
            route=route_template(scope, self.routes()),
            path_params=_path_params(scope),
            summary=body_summary(body.parsed_part(), body.size, _header(scope, b"content-type")),
            status=status,
            client=client[0] if client else None,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )
        app_state = scope["app"].state
        try:
            pool = app_state.pool
            if pool is None:
                raise RuntimeError("no database pool")
            timeout = app_state.config.pool_timeout_s
            async with asyncio.timeout(timeout * 2):
                async with pool.connection(timeout=timeout) as conn:
                    await insert_audit(conn, entry)
        except Exception as exc:  # the request's own outcome goes out regardless
            self.metrics.audit_failures.inc()
            log.error(
                "audit row not written",
                method=entry.method,
                route=entry.route,
                status=status,
                api_key_id=entry.api_key_id,
                error=type(exc).__name__,
            )
