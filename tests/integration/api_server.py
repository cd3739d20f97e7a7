"""The real API app served by uvicorn over HTTP on a free port, in a thread of its own
(so synchronous clients such as schemathesis' can call it from the test's thread)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from api.config import ApiConfig
from api.main import build_server
from chargeflow.stack import free_port
from tests.conftest import poll_until


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
