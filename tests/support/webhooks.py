"""A real local webhook receiver (stdlib HTTP server on 127.0.0.1:0, its own thread) that
records every request and answers per path as told, plus fault alert builders and
the webhooks worker as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bus.alerts import (
    AlertKind,
    AlertStatus,
    Evidence,
    FaultAlert,
    Severity,
    alert_id,
)
from bus.topics import Topics


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered


@dataclass
class _Behaviour:
    fail_first: int = 0  # answer 503 to this many requests, then 200
    always: int | None = None  # answer this status to every request
    delay_s: float = 0.0  # think this long before answering
    seen: int = 0
    in_flight: list[float] = field(default_factory=list)  # delays of requests not answered yet


@dataclass
class Receiver:
    """``url(path)`` to configure an endpoint; ``fail(path, n)``/``always(path, status)``
    /``slow(path, s)`` to script it; ``requests(path)`` what arrived."""

    _log: list[Received] = field(default_factory=list)
    _behaviour: dict[str, _Behaviour] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status = receiver._answer(self.path)
                with receiver._lock:
                    receiver._log.append(Received(self.path, dict(self.headers), body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def url(self, path: str) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def _script(self, path: str) -> _Behaviour:
        with self._lock:
            return self._behaviour.setdefault(path, _Behaviour())

    def fail(self, path: str, times: int) -> None:
        self._script(path).fail_first = times

    def always(self, path: str, status: int) -> None:
        self._script(path).always = status

    def slow(self, path: str, delay_s: float) -> None:
        self._script(path).delay_s = delay_s

    def _answer(self, path: str) -> int:
        script = self._script(path)
        with self._lock:
            delay = script.delay_s
            script.in_flight.append(delay)
        if delay:
            time.sleep(delay)
        with self._lock:
            script.in_flight.remove(delay)
            script.seen += 1
            if script.always is not None:
                return script.always
            return 503 if script.seen <= script.fail_first else 200

    def in_flight(self, path: str, slower_than: float = 0.0) -> int:
        """Requests received and not answered yet that think longer than ``slower_than``."""
        script = self._script(path)
        with self._lock:
            return sum(delay > slower_than for delay in script.in_flight)

    def requests(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self._log if r.path == path]

    def delivered_ids(self, path: str) -> list[str]:
        """The delivery ids of the requests answered 2xx, in arrival order."""
        return [
            r.headers["Chargeflow-Delivery"] for r in self.requests(path) if 200 <= r.status < 300
        ]


def receiver() -> Iterator[Receiver]:
    """A started receiver, stopped afterwards (for a fixture)."""
    r = Receiver().start()
    try:
        yield r
    finally:
        r.stop()


T0 = datetime(2026, 7, 1, 12, tzinfo=UTC)


def fault_alert(
    station: str = "CP1",
    connector: int = 1,
    kind: AlertKind = AlertKind.CONNECTOR_OVERHEATING,
    severity: Severity = Severity.HIGH,
    status: AlertStatus = AlertStatus.OPEN,
    minutes: int = 0,
) -> FaultAlert:
    """One version of an alert that opened at T0 (``minutes`` later: a newer version)."""
    last = T0 + timedelta(minutes=minutes)
    return FaultAlert(
        alert_id=alert_id(station, connector, kind, T0),
        station_id=station,
        connector_id=connector,
        alert_kind=kind,
        severity=severity,
        status=status,
        first_seen=T0,
        last_seen=last,
        detector="rule:test",
        evidence=Evidence(at=last, summary="a test alert", features={"temp_c": 81.5}),
        recommended_action="Inspect the connector.",
        resolved_at=last if status is AlertStatus.RESOLVED else None,
    )


def prefix_of(topics: Topics) -> str:
    return topics.alerts[: -len("alerts")]


def worker_env(
    *,
    bootstrap: str,
    database_url: str,
    topics: Topics,
    endpoints: list[dict[str, Any]],
    log_format: str = "console",
    **settings: str,
) -> dict[str, str]:
    """The environment of ``chargeflow webhooks`` for a test (fast retries and polls)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHARGEFLOW_")}
    env.update(
        CHARGEFLOW_KAFKA_BOOTSTRAP=bootstrap,
        CHARGEFLOW_DATABASE_URL=database_url,
        CHARGEFLOW_TOPIC_PREFIX=prefix_of(topics),
        CHARGEFLOW_WEBHOOKS_ENDPOINTS=json.dumps(endpoints),
        CHARGEFLOW_WEBHOOKS_HTTP_PORT="off",
        CHARGEFLOW_WEBHOOKS_CONSUMER_GROUP=f"webhooks-{prefix_of(topics)}",
        CHARGEFLOW_WEBHOOKS_POLL_S="0.05",
        CHARGEFLOW_WEBHOOKS_BACKOFF_BASE_S="0.05",
        CHARGEFLOW_WEBHOOKS_BACKOFF_MAX_S="0.2",
        CHARGEFLOW_WEBHOOKS_REQUEST_TIMEOUT_S="2",
        CHARGEFLOW_LOG_LEVEL="DEBUG",
        CHARGEFLOW_LOG_FORMAT=log_format,
        PYTHONUNBUFFERED="1",
    )
    env.update({f"CHARGEFLOW_WEBHOOKS_{k.upper()}": v for k, v in settings.items()})
    return env


def start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """``chargeflow webhooks`` with stdout and stderr appended to ``log_path``."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "chargeflow.cli", "webhooks"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
