"""What wraps every HTTP request: metrics, one access-log line, and the last-resort 500.

A pure ASGI middleware (streaming responses pass through untouched). An exception that
no handler turned into a response is logged with its traceback (no local variables) and
answered as a problem-details 500 that names nothing internal.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.metrics import UNMATCHED_ROUTE, ApiMetrics
from api.problems import PROBLEM_JSON, internal_error_body, log_unexpected, request_path

access_log = structlog.get_logger("chargeflow.api.access")

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"})


def route_template(scope: Scope, routes: Sequence[BaseRoute]) -> str:
    """The template of the route that served ``scope`` (not the raw path)."""
    route: BaseRoute | None = scope.get("route")
    if route is None:
        # Plain Starlette routes (/docs, /openapi.json) are not recorded in the scope.
        route = next(
            (r for r in routes if isinstance(r, Route) and r.matches(scope)[0] is Match.FULL), None
        )
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


def _client(scope: Scope) -> str | None:
    client = scope.get("client")
    return client[0] if client else None


class ObserveRequests:
    def __init__(
        self,
        app: ASGIApp,
        metrics: ApiMetrics,
        routes: Callable[[], Sequence[BaseRoute]],
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"] if scope["method"] in KNOWN_METHODS else "OTHER"
        started = time.perf_counter()
        status = 500
        response_started = False

        async def observe_send(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
            await send(message)

        in_progress = self.metrics.in_progress.labels(method)
        in_progress.inc()
        try:
            await self.app(scope, receive, observe_send)
        except Exception as exc:
            self.metrics.unhandled.inc()
            log_unexpected(request_path(scope), exc)
            status = 500
            if not response_started:
                await _send_internal_error(send, request_path(scope))
        finally:
            in_progress.dec()
            elapsed = time.perf_counter() - started
            route = route_template(scope, self.routes())
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(elapsed)
            if status in (401, 429):
                self.metrics.auth_failures.labels(str(status)).inc()
            state: dict[str, Any] = scope.get("state") or {}
            # The route template, not the path, and no query string: both can carry
            # what a client should not find in logs (ids it guessed, tokens in a URL).
            access_log.info(
                "request",
                method=method,
                route=route,
                status=status,
                duration_ms=round(elapsed * 1000, 2),
                client=_client(scope),
                api_key_id=state.get("api_key_id"),
            )


async def _send_internal_error(send: Send, path: str) -> None:
    body = internal_error_body(path)
    await send(
        {
            "type": "http.response.start",
            "status": 500,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
