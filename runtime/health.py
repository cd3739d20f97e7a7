"""Liveness, readiness and Prometheus metrics over HTTP, for any chargeflow process.

:class:`HealthServer` is a small Starlette app on uvicorn (the ASGI stack the API
runs on) serving

* ``GET /livez``: 200 while the process can answer at all (nothing else checked);
* ``GET /readyz`` (and ``/healthz``, the same): 200 when every check the process
  registered with :meth:`HealthServer.add_check` passes, else 503; the JSON body
  names each check and, for a failing one, why (credentials in URLs redacted);
* ``GET /metrics``: the Prometheus text format of a ``CollectorRegistry``, with
  prometheus_client's content type.

``HEAD`` works like ``GET``; other methods on these paths get 405 (with ``Allow``),
other paths 404; a request target over 8 KiB gets 414 (a 70 KB request line),
headers over 16 KiB 431, and what the HTTP parser (h11) cannot parse 400, without
disturbing the process.

A check is a callable that raises, or returns False, when the dependency is not
usable; a coroutine function is awaited, a plain function runs in a worker thread
(so a blocking probe, such as a database connect, never stalls the loop). Each check
has a time limit; one that overruns counts as failed.

Run it inside the process's asyncio loop (``await server.serve()`` in a task group,
``server.stop()`` to end it) or on a thread of its own (``server.start_in_thread()``,
for processes whose main thread belongs to something else, like Bytewax). The
socket is bound by :meth:`HealthServer.bind` (or the first of those), so with port 0
the chosen port is known before serving starts. The server never installs signal
handlers: the process that embeds it owns its signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import re
import socket
import threading
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

log = logging.getLogger("chargeflow.health")

Check = Callable[[], "bool | Awaitable[bool | None] | None"]

_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
_MAX_DETAIL = 300


def redact(text: str) -> str:
    """``text`` with the ``user:password@`` part of any URL in it replaced."""
    return _URL_CREDENTIALS.sub(r"\g<scheme>***@", text)


def describe_failure(exc: BaseException) -> str:
    """One short line saying why a check failed (no traceback, no credentials)."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return redact(text)[:_MAX_DETAIL]


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok} if self.error is None else {"ok": self.ok, "error": self.error}


MAX_TARGET_BYTES = 8192
MAX_HEADER_BYTES = 16384


class _RequestLimits:
    """414 for a request target over ``MAX_TARGET_BYTES``, 431 for headers over
    ``MAX_HEADER_BYTES``. h11 bounds only what is still incomplete, so a long
    request line that arrives in one read would otherwise reach the routes."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            target = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
            headers = sum(len(k) + len(v) for k, v in scope.get("headers") or ())
            status = (
                414 if target > MAX_TARGET_BYTES else (431 if headers > MAX_HEADER_BYTES else None)
            )
            if status is not None:
                response = PlainTextResponse(
                    "request target too long\n" if status == 414 else "headers too large\n",
                    status_code=status,
                    headers={"Connection": "close"},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handling: SIGINT/SIGTERM stay with the process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class HealthServer:
    """``/livez``, ``/readyz`` (``/healthz``) and ``/metrics`` on ``host:port``."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        registry: CollectorRegistry = REGISTRY,
        check_timeout_s: float = 3.0,
        name: str = "chargeflow",
    ) -> None:
        if check_timeout_s <= 0:
            raise ValueError("check_timeout_s must be > 0")
        self.host = host
        self.requested_port = port
        self.registry = registry
        self.check_timeout_s = check_timeout_s
        self.name = name
        self._checks: dict[str, Check] = {}
        self._socket: socket.socket | None = None
        self._server: _EmbeddedServer | None = None
        self._thread: threading.Thread | None = None
        self.app = Starlette(
            routes=[
                Route("/livez", self._livez, methods=["GET"]),
                Route("/readyz", self._readyz, methods=["GET"]),
                Route("/healthz", self._readyz, methods=["GET"]),
                Route("/metrics", self._metrics, methods=["GET"]),
            ]
        )
        self.app.router.redirect_slashes = False  # /livez/ is not a path we serve: 404

    # ----------------------------------------------------------------- checks

    def add_check(self, name: str, check: Check) -> None:
        """Readiness requires ``check`` to pass (see the module docstring)."""
        if name in self._checks:
            raise ValueError(f"a check named {name!r} is already registered")
        self._checks[name] = check

    @property
    def check_names(self) -> list[str]:
        return list(self._checks)

    async def _run_check(self, name: str, check: Check) -> CheckResult:
        try:
            with anyio.fail_after(self.check_timeout_s):
                if inspect.iscoroutinefunction(check):
                    outcome = await check()
                else:
                    # abandon_on_cancel: a probe stuck in C code must not hold the answer.
                    outcome = await anyio.to_thread.run_sync(check, abandon_on_cancel=True)
                    if inspect.isawaitable(outcome):
                        outcome = await outcome
        except TimeoutError:
            return CheckResult(name, False, f"no answer within {self.check_timeout_s:g}s")
        except Exception as exc:
            return CheckResult(name, False, describe_failure(exc))
        if outcome is False:
            return CheckResult(name, False, "not ready")
        return CheckResult(name, True)

    async def readiness(self) -> list[CheckResult]:
        """Every registered check, run concurrently."""
        async with anyio.create_task_group() as tg:
            results: dict[str, CheckResult] = {}

            async def run(name: str, check: Check) -> None:
                results[name] = await self._run_check(name, check)

            for name, check in self._checks.items():
                tg.start_soon(run, name, check)
        return [results[name] for name in self._checks]

    # ------------------------------------------------------------------ routes

    async def _livez(self, request: Request) -> Response:
        return JSONResponse({"status": "alive", "process": self.name})

    async def _readyz(self, request: Request) -> Response:
        results = await self.readiness()
        ready = all(r.ok for r in results)
        body = {
            "status": "ready" if ready else "not ready",
            "process": self.name,
            "checks": {r.name: r.as_json() for r in results},
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    async def _metrics(self, request: Request) -> Response:
        return PlainTextResponse(
            generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    # ----------------------------------------------------------------- serving

    def bind(self) -> int:
        """Bind the listening socket (once) and return its port."""
        if self._socket is None:
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((self.host, self.requested_port))
                sock.listen(128)
                sock.setblocking(False)
            except BaseException:
                sock.close()
                raise
            self._socket = sock
        return int(self._socket.getsockname()[1])

    @property
    def port(self) -> int:
        return self.bind()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def _make_server(self) -> _EmbeddedServer:
        config = uvicorn.Config(
            _RequestLimits(self.app),
            http="h11",
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_keep_alive=5,
            timeout_graceful_shutdown=2,
            log_level="warning",
        )
        return _EmbeddedServer(config)

    async def serve(self) -> None:
        """Serve in the running loop until :meth:`stop`."""
        self.bind()
        assert self._socket is not None
        self._server = server = self._make_server()
        try:
            await server.serve(sockets=[self._socket])
        finally:
            self._server = None
            self._close_socket()

    def start_in_thread(self) -> int:
        """Serve on a daemon thread with its own event loop; returns the port."""
        if self._thread is not None:
            raise RuntimeError("already serving")
        port = self.bind()
        started = threading.Event()

        def run() -> None:
            async def main() -> None:
                serving = asyncio.ensure_future(self.serve())
                started.set()
                await serving

            try:
                asyncio.run(main())
            except Exception:
                log.exception("health server on port %d stopped with an error", port)

        self._thread = threading.Thread(target=run, name=f"{self.name}-health", daemon=True)
        self._thread.start()
        started.wait(5)
        return port

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving (callable from any thread; ``serve`` then returns). A server
        that ran on its own thread is waited for up to ``timeout`` seconds."""
        if self._server is not None:
            self._server.should_exit = True
        else:
            self._close_socket()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _close_socket(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
