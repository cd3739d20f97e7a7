"""No secret reaches any log line: each process runs as a real subprocess with
secrets in play (an API key on requests, a station password, a database URL, an
MQTT URL with a password, a Stripe key in the environment), errors are provoked
(wrong keys and passwords, a database that refuses writes or a table that is gone,
a broker that is down, a database that does not exist), in console (COLUMNS=200)
and JSON format, and every line is searched for every secret.

The provoked tracebacks run through frames whose locals hold the secrets (the
gateway's login check holds the station password, the API's ASGI scope holds the
request headers), so a renderer that shows locals would leak them.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import paho.mqtt.publish as mqtt_publish
import psycopg
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from bus.admin import ensure_topics
from bus.topics import Topics
from chargeflow.mqtt import EmbeddedMqttBroker
from chargeflow.stack import DatabaseServer, EmbeddedBroker, free_port, tcp_open
from store.api_keys import create_api_key, parse_api_key
from store.db import migrate
from store.stations import provision_station
from tests.support.paths import ROOT
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
STATION = "CP-SECRET-1"
REFUSE_LOGIN_RECORD = """
    CREATE FUNCTION refuse_login_record() RETURNS trigger LANGUAGE plpgsql
    AS $$ BEGIN RAISE EXCEPTION 'the test refuses this write'; END $$;
    CREATE TRIGGER refuse_login_record BEFORE UPDATE OF last_auth_at ON stations
    FOR EACH ROW EXECUTE FUNCTION refuse_login_record();
"""


def with_password(url: str, password: str) -> str:
    """``url`` with ``password`` for its user (trust auth on the test server ignores it)."""
    parts = urlsplit(url)
    user = parts.username or "postgres"
    host = parts.hostname or "127.0.0.1"
    netloc = f"{user}:{password}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass
class Secrets:
    db_password: str = field(default_factory=lambda: f"DbPw{secrets.token_hex(8)}")
    station_password: str = field(default_factory=lambda: f"StationPw-{secrets.token_hex(8)}")
    wrong_station_password: str = field(default_factory=lambda: f"WrongPw-{secrets.token_hex(8)}")
    mqtt_password: str = field(default_factory=lambda: f"MqttPw{secrets.token_hex(8)}")
    stripe_key: str = field(default_factory=lambda: f"sk_test_{secrets.token_hex(12)}")
    wrong_api_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    webhook_secret: str = field(default_factory=lambda: f"whsec-{secrets.token_hex(12)}")
    webhook_url_token: str = field(default_factory=lambda: f"hooktok{secrets.token_hex(8)}")
    api_key: str = ""

    def values(self) -> dict[str, str]:
        parsed = parse_api_key(self.api_key)
        assert parsed, self.api_key
        api_secret = parsed[1]  # the secret itself may contain "_"
        basic = base64.b64encode(f"{STATION}:{self.station_password}".encode()).decode()
        wrong_basic = base64.b64encode(f"{STATION}:{self.wrong_station_password}".encode()).decode()
        return {
            "database password": self.db_password,
            "station password": self.station_password,
            "wrong station password": self.wrong_station_password,
            "station Basic credentials": basic,
            "wrong station Basic credentials": wrong_basic,
            "MQTT password": self.mqtt_password,
            "Stripe key": self.stripe_key,
            "Stripe key body": self.stripe_key.removeprefix("sk_test_"),
            "API key secret": api_secret,
            "wrong API key secret": self.wrong_api_secret,
            "webhook secret": self.webhook_secret,
            "webhook URL token": self.webhook_url_token,
        }

    def webhook_endpoints(self) -> str:
        """A receiver nobody listens on (deliveries fail and are logged), its URL
        carrying a token as some services' webhook URLs do."""
        url = f"http://127.0.0.1:{free_port()}/hooks?token={self.webhook_url_token}"
        return json.dumps([{"name": "maintenance", "url": url, "secret": self.webhook_secret}])


@dataclass
class Proc:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")


class Processes:
    def __init__(self, directory: Path, env: dict[str, str]) -> None:
        self.directory = directory
        self.env = env
        self.started: list[Proc] = []

    def start(self, name: str, argv: list[str], **env: str) -> Proc:
        log = self.directory / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                argv, cwd=ROOT, env={**self.env, **env}, stdout=out, stderr=subprocess.STDOUT
            )
        proc = Proc(name, process, log)
        self.started.append(proc)
        return proc

    def stop(self, proc: Proc, timeout: float = 30) -> int:
        if proc.process.poll() is None:
            proc.process.send_signal(signal.SIGTERM)
        try:
            return proc.process.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.process.kill()
            return proc.process.wait(10)

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            self.stop(proc)


def wait_for_text(proc: Proc, pattern: str, timeout: float) -> str:
    return poll_until(
        proc.text,
        lambda text: re.search(pattern, text) is not None,
        timeout,
        f"{pattern!r} in the {proc.name} log",
    )


@pytest.fixture
def secret_db(pg_server: DatabaseServer) -> Iterator[tuple[str, str]]:
    """A fresh migrated database: (name, URL with a password)."""
    name = f"chargeflow_test_secrets_{uuid.uuid4().hex[:8]}"
    url = pg_server.create_database(name, exist_ok=False)
    migrate(url)
    yield name, url
    pg_server.drop_database(name)


def _process_env(
    fmt: str, broker: EmbeddedBroker, database_url: str, prefix: str, s: Secrets
) -> dict[str, str]:
    env = {
        **os.environ,
        "COLUMNS": "200",
        "PYTHONUNBUFFERED": "1",
        "CHARGEFLOW_LOG_FORMAT": fmt,
        "CHARGEFLOW_LOG_LEVEL": "INFO",
        "CHARGEFLOW_DATABASE_URL": database_url,
        "CHARGEFLOW_KAFKA_BOOTSTRAP": broker.bootstrap,
        "CHARGEFLOW_TOPIC_PREFIX": prefix,
        "CHARGEFLOW_GATEWAY_PORT": str(free_port()),
        "CHARGEFLOW_API_PORT": str(free_port()),
        "STRIPE_API_KEY": s.stripe_key,
        "CHARGEFLOW_STRIPE_API_KEY": s.stripe_key,
    }
    env.pop("RUST_BACKTRACE", None)
    return env


def _start_every_process(
    procs: Processes, s: Secrets, mqtt: EmbeddedMqttBroker, missing_db_url: str
) -> dict[str, Proc]:
    """Starts each process, some against a broker or database that is not there."""
    py = sys.executable
    mqtt_url = f"mqtt://meter:{s.mqtt_password}@{mqtt.host}:{mqtt.port}"
    started = [
        procs.start("gateway", [py, "-m", "chargeflow.cli", "gateway"]),
        procs.start("api", [py, "-m", "chargeflow.cli", "api"]),
        procs.start(
            "meters",
            [py, "-m", "chargeflow.cli", "meters"],
            CHARGEFLOW_MQTT_URL=mqtt_url,
            CHARGEFLOW_METERS_HTTP_PORT=str(free_port()),
        ),
        procs.start(
            "meters-mqtt-down",
            [py, "-m", "chargeflow.cli", "meters"],
            CHARGEFLOW_MQTT_URL=f"mqtt://meter:{s.mqtt_password}@127.0.0.1:{free_port()}",
            CHARGEFLOW_MQTT_CLIENT_ID="chargeflow-meters-down",
            CHARGEFLOW_METERS_HTTP_PORT=str(free_port()),
        ),
        procs.start("flow", [py, "-m", "flows.run", "flows.status.dataflow:from_env()"]),
        procs.start(
            "flow-broker-down",
            [py, "-m", "flows.run", "flows.status.dataflow:from_env()"],
            CHARGEFLOW_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}",
            CHARGEFLOW_DATABASE_URL=missing_db_url,
        ),
        procs.start(
            "api-missing-database",
            [py, "-m", "chargeflow.cli", "api"],
            CHARGEFLOW_DATABASE_URL=missing_db_url,
            CHARGEFLOW_API_PORT=str(free_port()),
        ),
    ]
    return {proc.name: proc for proc in started}


def _log_in_wrong_then_right(
    gateway: Proc, gateway_port: int, s: Secrets, database_url: str
) -> None:
    """A wrong password, then a right one while the database refuses to record the login
    (logged with its traceback; the password is a local there)."""
    ocpp = f"ws://127.0.0.1:{gateway_port}/ocpp/{STATION}"
    wrong = base64.b64encode(f"{STATION}:{s.wrong_station_password}".encode()).decode()
    with pytest.raises(InvalidStatus) as rejected:
        ws_connect(
            ocpp,
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            additional_headers={"Authorization": f"Basic {wrong}"},
            open_timeout=10,
        )
    assert rejected.value.response.status_code == 401
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(REFUSE_LOGIN_RECORD)
    right = base64.b64encode(f"{STATION}:{s.station_password}".encode()).decode()
    with ws_connect(
        ocpp,
        subprotocols=["ocpp1.6"],  # type: ignore[list-item]
        additional_headers={"Authorization": f"Basic {right}"},
        open_timeout=10,
    ) as ws:
        assert ws.subprotocol == "ocpp1.6"
    wait_for_text(gateway, "could not record the login", 30)


def _use_good_and_wrong_keys_then_lose_a_table(
    api: Proc, api_port: int, s: Secrets, database_url: str, fmt: str
) -> None:
    """The key on good requests, wrong keys, then a table that is gone (500)."""
    key_id = s.api_key.split("_")[1]
    base = f"http://127.0.0.1:{api_port}"
    with httpx.Client(base_url=base, timeout=15) as http:
        assert http.get("/v1/sessions", headers={"X-API-Key": s.api_key}).status_code == 200
        assert (
            http.get("/v1/sessions", headers={"Authorization": f"Bearer {s.api_key}"}).status_code
            == 200
        )
        bad = f"cf_{key_id}_{s.wrong_api_secret}"
        assert http.get("/v1/sessions", headers={"X-API-Key": bad}).status_code == 401
        assert (
            http.get("/v1/sessions", headers={"Authorization": f"Bearer {bad}"}).status_code == 401
        )
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("ALTER TABLE sessions RENAME TO sessions_hidden_by_test")
        try:
            failed = http.get("/v1/sessions", headers={"X-API-Key": s.api_key})
        finally:
            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute("ALTER TABLE sessions_hidden_by_test RENAME TO sessions")
        assert failed.status_code >= 500
        assert s.api_key not in failed.text
    traceback_marker = "Traceback" if fmt == "console" else '"exception"'
    wait_for_text(api, traceback_marker, 30)


def _publish_bad_readings(meters: Proc, mqtt: EmbeddedMqttBroker, s: Secrets) -> None:
    """Readings that are malformed or from unknown meters."""
    wait_for_text(meters, "subscribed", 60)
    for payload in (b"{not json", json.dumps({"meter_id": "NOPE"}).encode()):
        mqtt_publish.single(
            "meters/MTR-UNKNOWN/reading",
            payload,
            qos=1,
            hostname=mqtt.host,
            port=mqtt.port,
            auth={"username": "meter", "password": s.mqtt_password},
        )
    wait_for_text(meters, "dead-lettered", 30)


def run_every_process(
    fmt: str, tmp_path: Path, broker: EmbeddedBroker, database: tuple[str, str]
) -> tuple[Secrets, list[Proc]]:
    name, plain_url = database
    s = Secrets()
    database_url = with_password(plain_url, s.db_password)
    missing_db_url = with_password(plain_url.rsplit("/", 1)[0] + f"/{name}_missing", s.db_password)
    prefix = f"t{uuid.uuid4().hex[:8]}."
    topics = Topics.with_prefix(prefix)
    ensure_topics(broker.bootstrap, topics.all(), partitions=1)
    s.api_key = create_api_key(database_url, "log secret scan", "admin")
    provision_station(database_url, STATION, password=s.station_password)

    env = _process_env(fmt, broker, database_url, prefix, s)
    gateway_port = int(env["CHARGEFLOW_GATEWAY_PORT"])
    api_port = int(env["CHARGEFLOW_API_PORT"])
    procs = Processes(tmp_path, env)
    mqtt = EmbeddedMqttBroker(log_path=tmp_path / "mqtt-broker.log").start()
    try:
        by_name = _start_every_process(procs, s, mqtt, missing_db_url)
        poll_until(lambda: tcp_open("127.0.0.1", gateway_port), bool, 60, "gateway port")
        poll_until(lambda: tcp_open("127.0.0.1", api_port), bool, 60, "API port")
        _log_in_wrong_then_right(by_name["gateway"], gateway_port, s, database_url)
        _use_good_and_wrong_keys_then_lose_a_table(by_name["api"], api_port, s, database_url, fmt)
        _publish_bad_readings(by_name["meters"], mqtt, s)
        wait_for_text(by_name["meters-mqtt-down"], "reconnecting", 60)
        wait_for_text(by_name["flow-broker-down"], "librdkafka", 90)
        wait_for_text(by_name["api-missing-database"], "does not exist", 60)
        flow = by_name["flow"]
        assert flow.process.poll() is None, flow.text()
    finally:
        procs.stop_all()
        mqtt.stop()
    return s, procs.started


def test_the_scanned_api_secret_is_the_whole_secret() -> None:
    # token_urlsafe secrets may contain "_": scanning for a fragment after the last
    # one made the scan match unrelated log text.
    s = Secrets(api_key="cf_0123abcd_se_cr_et")
    assert s.values()["API key secret"] == "se_cr_et"


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_no_secret_in_any_log_line(
    fmt: str, tmp_path: Path, broker: EmbeddedBroker, secret_db: tuple[str, str]
) -> None:
    found, procs = run_every_process(fmt, tmp_path, broker, secret_db)
    leaks = [
        f"{proc.name}: {what} in line {n}: {line[:300]}"
        for proc in procs
        for n, line in enumerate(proc.text().splitlines(), 1)
        for what, value in found.values().items()
        if value in line
    ]
    assert not leaks, "\n".join(leaks)

    logs = {proc.name: proc.text() for proc in procs}
    assert "dataflow stopped on SIGTERM" in logs["flow"]
    gateway = logs["gateway"]
    assert "could not record the login" in gateway
    if fmt == "console":
        assert "Traceback (most recent call last)" in gateway
        for proc in procs:  # full ISO timestamps in UTC on every log line
            stamped = [ln for ln in proc.text().splitlines() if re.match(r"^\d{4}-", ln)]
            assert stamped, proc.name
            assert all(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z ", ln) for ln in stamped), (
                proc.name
            )
    else:
        for proc in procs:  # every line structured, with a full UTC timestamp
            records = [json.loads(line) for line in proc.text().splitlines() if line.strip()]
            assert records, proc.name
            assert all(ISO_UTC.match(r["timestamp"]) for r in records), proc.name
        gateway_records = [json.loads(ln) for ln in gateway.splitlines() if ln.strip()]
        failure = next(r for r in gateway_records if r["event"] == "could not record the login")
        frames = failure["exception"][0]["frames"]
        assert frames
        assert all(frame.get("locals") is None for frame in frames)
        kafka = [
            json.loads(ln)
            for ln in next(p for p in procs if p.name == "flow-broker-down").text().splitlines()
            if ln.strip()
        ]
        assert any(r["logger"] == "librdkafka" for r in kafka)


def _local_stack_env(
    database_url: str, s: Secrets, api_port: int, gateway_port: int, data_dir: Path
) -> dict[str, str]:
    return {
        **os.environ,
        "COLUMNS": "200",
        "PYTHONUNBUFFERED": "1",
        "CHARGEFLOW_LOG_FORMAT": "console",
        "CHARGEFLOW_DATABASE_URL": database_url,
        "CHARGEFLOW_API_PORT": str(api_port),
        "CHARGEFLOW_GATEWAY_PORT": str(gateway_port),
        "CHARGEFLOW_METERS_HTTP_PORT": str(free_port()),
        "CHARGEFLOW_SIMULATED_STATIONS": "2",
        "CHARGEFLOW_SIMULATOR_STATION_PASSWORD": s.station_password,
        "CHARGEFLOW_DATA_DIR": str(data_dir),
        "STRIPE_API_KEY": s.stripe_key,
        "CHARGEFLOW_WEBHOOKS_ENDPOINTS": s.webhook_endpoints(),
        "CHARGEFLOW_WEBHOOKS_HTTP_PORT": str(free_port()),
    }


def _use_the_local_stack_with_right_and_wrong_credentials(
    log: Path, launcher: subprocess.Popen[bytes], s: Secrets, api_port: int, gateway_port: int
) -> None:
    """Reads the development key from the banner (into ``s.api_key``), uses it and wrong
    credentials, and waits for the logins (a refused record among them) to be logged."""
    banner = poll_until(
        log.read_text,
        lambda t: "dev API key" in t or launcher.poll() is not None,
        120,
        "the launcher banner",
    )
    match = re.search(r"dev API key\s+(cf_\S+)", banner)
    assert match, banner[-3000:]
    s.api_key = match.group(1)
    key_id = s.api_key.split("_")[1]
    base = f"http://127.0.0.1:{api_port}"
    with httpx.Client(base_url=base, timeout=15) as http:
        assert http.get("/v1/sessions", headers={"X-API-Key": s.api_key}).status_code == 200
        bad = f"cf_{key_id}_{s.wrong_api_secret}"
        assert (
            http.get("/v1/sessions", headers={"Authorization": f"Bearer {bad}"}).status_code == 401
        )
    wrong = base64.b64encode(f"SIM-0001:{s.wrong_station_password}".encode()).decode()
    with pytest.raises(InvalidStatus):
        ws_connect(
            f"ws://127.0.0.1:{gateway_port}/ocpp/SIM-0001",
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            additional_headers={"Authorization": f"Basic {wrong}"},
            open_timeout=10,
        )
    poll_until(log.read_text, lambda t: "wrong_password" in t, 30, "the failed login logged")
    poll_until(
        log.read_text,
        lambda t: "station connected" in t,
        60,
        "a simulated station logged in with its password",
    )
    poll_until(log.read_text, lambda t: "Traceback" in t, 30, "the refused login record")


def _check_no_secret_in_the_run_log(log: Path, s: Secrets) -> None:
    secret_values = s.values()
    secret_values.pop("station Basic credentials")
    secret_values["station Basic credentials"] = base64.b64encode(
        f"SIM-0001:{s.station_password}".encode()
    ).decode()
    lines = log.read_text().splitlines()
    # The banner shows the development key once, on purpose (as `apikey create` does).
    scanned = [ln for ln in lines if "dev API key" not in ln and "X-API-Key: cf_" not in ln]
    assert len(scanned) == len(lines) - 2
    leaks = [
        f"{what}: {line[:300]}"
        for line in scanned
        for what, value in secret_values.items()
        if value in line
    ]
    assert not leaks, "\n".join(leaks)
    assert "all stopped" in lines[-1]


def test_no_secret_in_the_local_stack_output(pg_server: DatabaseServer, tmp_path: Path) -> None:
    """``chargeflow run`` (every process under the launcher, console at COLUMNS=200) with
    a password in its database URL, a station password, a Stripe key in the
    environment, its development key used on requests and wrong credentials tried."""
    s = Secrets()
    name = f"chargeflow_test_run_secrets_{uuid.uuid4().hex[:8]}"
    database_url = with_password(pg_server.create_database(name, exist_ok=False), s.db_password)
    # The stations' logins cannot be recorded (logged with a traceback through the
    # frame holding the password).
    migrate(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(REFUSE_LOGIN_RECORD)
    api_port, gateway_port = free_port(), free_port()
    env = _local_stack_env(database_url, s, api_port, gateway_port, tmp_path / "data")
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "chargeflow.cli", "run"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _use_the_local_stack_with_right_and_wrong_credentials(
            log, launcher, s, api_port, gateway_port
        )
        launcher.send_signal(signal.SIGINT)
        assert launcher.wait(90) == 0
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()
        pg_server.drop_database(name)
    assert "webhooks worker" in log.read_text()  # it ran, with its secret in the settings
    _check_no_secret_in_the_run_log(log, s)
