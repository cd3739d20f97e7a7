"""``chargeflow run``: the whole system on one machine, on embedded defaults.

Order: broker -> database (+ migrations) -> topics -> seed data -> gateway,
flows (sessions, load, status, faults, messages, smart_charging), API (and the webhooks worker when
CHARGEFLOW_WEBHOOKS_ENDPOINTS lists receivers) -> simulated charge points. Ctrl-C (or
SIGTERM) stops the children in reverse order, then the embedded broker and database.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType

import psycopg
import structlog

from bus.admin import ensure_topics
from chargeflow.mqtt import EmbeddedMqttBroker
from chargeflow.settings import Settings
from chargeflow.stack import (
    DatabaseServer,
    EmbeddedBroker,
    free_port,
    open_database,
    tcp_open,
    wait_until,
)
from chargeflow.supervisor import Supervisor
from flows.recovery import ensure_recovery_dir
from ingest.simulator.meters import meter_id_for
from runtime.logs import redact_text
from runtime.settings import secret
from store.api_keys import create_api_key, list_api_keys, revoke_api_key
from store.db import migrate
from store.id_tokens import add_id_tag
from store.meters import add_meter
from store.session_reconcile import reconcile_active_sessions
from store.sites import upsert_site
from store.stations import provision_station

log = structlog.get_logger("chargeflow.run")


def simulated_id_tags(count: int = 20) -> list[str]:
    """The driver cards of the simulated fleet, SIM-TAG-001...; a fleet needs more than
    it has sessions at once (a card in use at another station is ConcurrentTx)."""
    return [f"SIM-TAG-{n:03d}" for n in range(1, count + 1)]


SIMULATED_ID_TAGS = simulated_id_tags()
FLOWS = ("sessions", "load", "status", "faults", "messages", "smart_charging")

DEVELOPMENT_KEY_NAME = "development key (chargeflow run)"


def replace_development_key(database_url: str) -> str:
    """A fresh admin key for this run; the keys earlier runs created (by their name)
    are revoked first, so a database reused across runs collects no live admin keys."""
    for key in list_api_keys(database_url, include_revoked=False):
        if key.name == DEVELOPMENT_KEY_NAME:
            revoke_api_key(database_url, key.key_id)
    return create_api_key(database_url, DEVELOPMENT_KEY_NAME, "admin")


def simulated_station_ids(count: int) -> list[str]:
    return [f"SIM-{n:04d}" for n in range(1, count + 1)]


def seed_simulated_meters(database_url: str, station_ids: list[str]) -> None:
    """A smart meter (``MTR-<station>-1``) on connector 1 of each simulated station.

    ``chargeflow simulate --mqtt-url`` publishes their readings from the stations'
    own registers. The first station's meter is its billing meter (sessions there
    show ``energy_source = smart_meter``); the others only cross-check the station.
    """
    for n, station in enumerate(station_ids):
        add_meter(database_url, meter_id_for(station), station, 1, is_billing_meter=n == 0)


def seed_demo_site(database_url: str, stations: int, station_password: str) -> list[str]:
    """The demo of ``chargeflow run`` and ``chargeflow demo-seed``: two sites, the demo
    tariff, ``stations`` simulated charge points (Basic auth with ``station_password``),
    the simulated id tags and smart meters. Idempotent; returns the station ids.

    Two sites so live load against capacity shows up on load.sites: a depot whose 22 kW
    stations can exceed its grid connection, and a car park."""
    ids = simulated_station_ids(stations)
    half = (len(ids) + 1) // 2
    zone = "Europe/Amsterdam"
    upsert_site(database_url, "DEMO-DEPOT", "Demo depot", 60_000, time_zone=zone)
    upsert_site(database_url, "DEMO-PARK", "Demo car park", 150_000, time_zone=zone)
    seed_demo_tariff(database_url)
    for n, station in enumerate(ids):
        provision_station(
            database_url,
            station,
            password=station_password,
            site_id="DEMO-DEPOT" if n < half else "DEMO-PARK",
        )
    for tag in SIMULATED_ID_TAGS:
        add_id_tag(database_url, tag)
    seed_simulated_meters(database_url, ids)
    return ids


DEMO_TARIFF_ID = "CFL-DEMO"
# The demo's time-of-use tariff: a start fee, peak energy 17:00-21:00 local, parking
# after charging (the first 15 minutes free), OCPI 2.2.1.
DEMO_TARIFF = {
    "country_code": "NL",
    "party_id": "CFL",
    "id": DEMO_TARIFF_ID,
    "currency": "EUR",
    "type": "REGULAR",
    "tariff_alt_text": [
        {"language": "en", "text": "0.50 start, 0.49/kWh 17-21h, else 0.35/kWh; parking 3.00/h"}
    ],
    "elements": [
        {"price_components": [{"type": "FLAT", "price": "0.50", "vat": "21", "step_size": 1}]},
        {
            "price_components": [{"type": "ENERGY", "price": "0.49", "vat": "21", "step_size": 1}],
            "restrictions": {"start_time": "17:00", "end_time": "21:00"},
        },
        {
            "price_components": [
                {"type": "ENERGY", "price": "0.35", "vat": "21", "step_size": 1},
                {"type": "PARKING_TIME", "price": "3.00", "vat": "21", "step_size": 60},
            ]
        },
    ],
    "last_updated": "2026-01-01T00:00:00Z",
}


def seed_demo_tariff(database_url: str) -> None:
    """The demo tariff, assigned everywhere (once: a database reused across runs keeps
    the first run's tariff and assignment)."""
    from store import tariff_assignments as assignment_store
    from store import tariffs

    async def seed() -> None:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as db:
            if await tariffs.get_tariff(db, DEMO_TARIFF_ID) is not None:
                return
            await tariffs.create_tariff(db, DEMO_TARIFF, created_by="chargeflow run")
            await assignment_store.assign(
                db,
                tariff_id=DEMO_TARIFF_ID,
                scope=tariffs.Scope.DEFAULT,
                target=None,
                valid_from=datetime(2020, 1, 1, tzinfo=UTC),
                created_by="chargeflow run",
            )

    asyncio.run(seed())


@dataclass
class LocalStack:
    settings: Settings
    bootstrap: str = ""
    database_url: str = ""
    broker: EmbeddedBroker | None = None
    db_server: DatabaseServer | None = None
    mqtt_url: str = ""
    mqtt_broker: EmbeddedMqttBroker | None = None
    supervisor: Supervisor = field(default_factory=Supervisor)
    _recovery_reset: bool = False
    station_password: str = ""
    flow_metrics_ports: dict[str, int] = field(default_factory=dict)

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            CHARGEFLOW_KAFKA_BOOTSTRAP=self.bootstrap,
            CHARGEFLOW_DATABASE_URL=self.database_url,
            CHARGEFLOW_TOPIC_PREFIX=self.settings.topic_prefix,
            CHARGEFLOW_LOG_FORMAT=self.settings.log_format,
            CHARGEFLOW_LOG_LEVEL=self.settings.log_level,
            PYTHONUNBUFFERED="1",
        )
        if self.mqtt_url:
            env["CHARGEFLOW_MQTT_URL"] = self.mqtt_url
        return env

    def start_infrastructure(self) -> None:
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        if s.kafka_bootstrap:
            self.bootstrap = s.kafka_bootstrap
            log.info("using configured Kafka", bootstrap=self.bootstrap)
        else:
            self.broker = EmbeddedBroker(port=s.kafka_port, log_path=s.data_dir / "broker.log")
            self.broker.start()
            self.bootstrap = self.broker.bootstrap
            log.info(
                "embedded Kafka-compatible broker (Tansu, in memory) started",
                bootstrap=self.bootstrap,
            )
        self.db_server, self.database_url = open_database(
            secret(s.database_url), s.database_name, s.data_dir
        )
        log.info("database", origin=self.db_server.origin, database=redact_text(self.database_url))
        mode = migrate(self.database_url)
        log.info("schema migrated", storage_mode=str(mode))
        ensure_topics(self.bootstrap, s.topics.all(), partitions=s.topic_partitions)
        log.info("topics ready", topics=s.topics.all(), partitions=s.topic_partitions)
        self.start_mqtt()

    def seed(self) -> str:
        # A fresh Basic-auth password per run for the simulated stations (security
        # profile 1); the simulator child gets it in its environment, never argv/logs.
        self.station_password = secret(
            self.settings.simulator.simulator_station_password
        ) or secrets.token_urlsafe(18)
        seed_demo_site(self.database_url, self.settings.simulated_stations, self.station_password)
        return replace_development_key(self.database_url)

    def flow_argv(self, name: str, import_str: str) -> list[str]:
        """``flows.run`` with Bytewax recovery (state + offsets) under the data dir.

        The embedded broker keeps nothing across runs, so its offsets would point past
        the end of the fresh topics: with it, recovery state starts empty every run.
        Nothing replays the events of the sessions a previous run left active then,
        so they are closed as ``reconciled`` before the flows start
        (:mod:`store.session_reconcile`).
        """
        root = self.settings.data_dir / "recovery"
        if self.broker is not None and not self._recovery_reset:
            shutil.rmtree(root, ignore_errors=True)
            self._recovery_reset = True
            closed = reconcile_active_sessions(self.database_url)
            if closed:
                log.info(
                    "sessions left active by the previous run closed as reconciled",
                    count=len(closed),
                )
        directory = ensure_recovery_dir(root / name, 1)
        return [
            sys.executable,
            "-m",
            "flows.run",
            import_str,
            "-r",
            str(directory),
            "-s",
            "5",
            "-b",
            "0",
        ]

    def flow_env(self, name: str, env: dict[str, str]) -> dict[str, str]:
        """``env`` with the flow's own health/metrics port (none if the setting is unset):
        the configured port plus the flow's place in FLOWS, or a free port for 0."""
        base = self.settings.flow_metrics_port
        if base is None:
            return {**env, "CHARGEFLOW_FLOW_METRICS_PORT": ""}
        port = base + FLOWS.index(name) if base else free_port()
        self.flow_metrics_ports[name] = port
        return {**env, "CHARGEFLOW_FLOW_METRICS_PORT": str(port)}

    def start_services(self) -> None:
        s, env, py = self.settings, self.child_env(), sys.executable
        sup = self.supervisor
        sup.start("gateway", [py, "-m", "chargeflow.cli", "gateway"], env)
        for name in FLOWS:
            sup.start(
                name,
                self.flow_argv(name, f"flows.{name}.dataflow:from_env()"),
                self.flow_env(name, env),
            )
        # Refreshes the load aggregates' invalidated buckets (late rows; plain PostgreSQL:
        # every change), see docs/storage.md.
        sup.start("aggregates", [py, "-m", "store.aggregates", "--every", "30"], env)
        sup.start("api", [py, "-m", "chargeflow.cli", "api"], env)
        sup.start("billing", [py, "-m", "chargeflow.cli", "billing"], env)
        if s.webhooks.webhooks_endpoints:  # nothing to deliver to otherwise
            sup.start("webhooks", [py, "-m", "chargeflow.cli", "webhooks"], env)
        wait_until(lambda: tcp_open(s.gateway_host, s.gateway_port), 30, "gateway")
        wait_until(lambda: tcp_open(s.api_host, s.api_port), 30, "api")
        self.start_meter_bridge()
        sup.start(
            "simulator",
            [
                py,
                "-m",
                "chargeflow.cli",
                "simulate",
                "--stations",
                str(s.simulated_stations),
                "--gateway",
                f"ws://{s.gateway_host}:{s.gateway_port}/ocpp",
                *self.fault_args(),
            ],
            # CHARGEFLOW_MQTT_URL (in the env, not argv: it may hold a password) makes
            # it run the stations' smart meters too, following their registers.
            {**env, "CHARGEFLOW_SIMULATOR_STATION_PASSWORD": self.station_password},
        )

    def fault_args(self) -> list[str]:
        """The simulator's fault options: the configured faults, else the demo's (only
        for stations the fleet has), written to ``faults.jsonl`` in the data dir."""
        spec = self.settings.simulator.simulator_faults or demo_fault_spec(self.settings)
        if not spec:
            return []
        truth = (self.settings.data_dir / "faults.jsonl").resolve()
        return ["--faults", spec, "--ground-truth", str(truth)]

    # --------------------------------------------------------- smart meters (MQTT)

    def start_mqtt(self) -> None:
        s = self.settings
        if s.mqtt_url:
            self.mqtt_url = s.mqtt_url.get_secret_value()
            log.info("using configured MQTT broker", mqtt=self.mqtt_url.split("@")[-1])
            return
        self.mqtt_broker = EmbeddedMqttBroker(
            port=s.mqtt_port, data_dir=s.data_dir.resolve(), log_path=s.data_dir / "mqtt.log"
        ).start()
        self.mqtt_url = self.mqtt_broker.url
        log.info(
            "embedded MQTT broker started", backend=self.mqtt_broker.backend, mqtt=self.mqtt_url
        )

    def start_meter_bridge(self) -> None:
        s, env, py = self.settings, self.child_env(), sys.executable
        self.supervisor.start("meters", [py, "-m", "chargeflow.cli", "meters"], env)
        port = s.meters_http_port
        if port:  # no HTTP port to wait on otherwise
            wait_until(lambda: tcp_open("127.0.0.1", port), 30, "meter bridge")

    def stop(self) -> None:
        self.supervisor.stop_all()
        if self.mqtt_broker is not None:
            self.mqtt_broker.stop()
            log.info("embedded MQTT broker stopped")
        if self.broker is not None:
            self.broker.stop()
            log.info("embedded broker stopped")
        if self.db_server is not None and self.db_server.origin == "embedded":
            self.db_server.stop()
            log.info("embedded PostgreSQL stopped")


def banner(stack: LocalStack, api_key: str) -> str:
    s = stack.settings
    api = f"http://{s.api_host}:{s.api_port}"
    return "\n".join(
        [
            "",
            "chargeflow is running",
            f"  API docs        {api}/docs",
            f"  health          {api}/healthz",
            f"  OCPP gateway    ws://{s.gateway_host}:{s.gateway_port}/ocpp/<charge-point-id>"
            "  (subprotocols ocpp1.6, ocpp2.0.1)",
            f"  gateway health  http://{s.gateway_host}:{s.gateway_port}/healthz"
            "  /readyz  /metrics",
            f"  Kafka           {stack.bootstrap}"
            + ("  (embedded Tansu, in memory)" if stack.broker else ""),
            f"  PostgreSQL      {redact_text(stack.database_url)}"
            + (f"  ({stack.db_server.origin})" if stack.db_server else ""),
            f"  MQTT (meters)   {stack.mqtt_url.split('@')[-1]}  topic {s.mqtt_topic_pattern}"
            + (f"  (embedded {stack.mqtt_broker.backend})" if stack.mqtt_broker else "")
            + f"; bridge metrics http://127.0.0.1:{s.meters_http_port}/metrics",
            *(
                [
                    (
                        "  flow health     "
                        + ", ".join(
                            f"{name} http://127.0.0.1:{port}"
                            for name, port in stack.flow_metrics_ports.items()
                        )
                        + "  (/livez /readyz /metrics)"
                    )
                ]
                if stack.flow_metrics_ports
                else []
            ),
            "  processes       gateway, sessions/load/status/faults/messages flows (Bytewax), "
            f"api, billing worker, meter bridge, simulator ({s.simulated_stations} charge points)"
            + (", webhooks worker" if s.webhooks.webhooks_endpoints else ""),
            *(
                [
                    "  webhooks        "
                    + ", ".join(e.name for e in s.webhooks.webhooks_endpoints)
                    + (
                        f"  http://127.0.0.1:{s.webhooks.webhooks_http_port}/healthz  /metrics"
                        if s.webhooks.webhooks_http_port
                        else ""
                    )
                ]
                if s.webhooks.webhooks_endpoints
                else []
            ),
            f"  smart meters    {meter_id_for('SIM-0001')} ... on connector 1 of each charge "
            f"point, run by the simulator ({meter_id_for('SIM-0001')} bills its sessions)",
            f"  dev API key     {api_key}   (role admin)",
            "",
            "  try:  curl -s -H 'X-API-Key: " + api_key + f"' '{api}/v1/sessions?status=closed'",
            *_fault_lines(s, api),
            "  Ctrl-C stops everything.",
            "",
        ]
    )


# What the demo's stations develop (simulated minutes after the start; the launcher's
# stations run in real time): rules alert on each within seconds of its evidence.
DEMO_FAULTS = (
    (
        "controller",
        "SIM-0003",
        "1m+5m",
        "a failing controller (error bursts from minute 1, Faulted at 6)",
    ),
    ("ground_fault", "SIM-0002", "3m", "a ground fault at minute 3"),
    ("meter_frozen", "SIM-0004", "4m", "a frozen energy register from minute 4"),
)


def demo_fault_spec(settings: Settings) -> str:
    """The demo's faults on the stations the fleet has; empty when switched off."""
    if not settings.demo_faults:
        return ""
    stations = set(simulated_station_ids(settings.simulated_stations))
    return ",".join(
        f"{scenario}:{station}@{when}"
        for scenario, station, when, _ in DEMO_FAULTS
        if station in stations
    )


def _fault_lines(settings: Settings, api: str) -> list[str]:
    if settings.simulator.simulator_faults:
        faults = [f"  faults          {settings.simulator.simulator_faults}"]
    else:
        spec = demo_fault_spec(settings)
        if not spec:
            return []
        stations = set(simulated_station_ids(settings.simulated_stations))
        faults = [
            "  faults (demo)   "
            + "; ".join(
                f"{station} {what}" for _, station, when, what in DEMO_FAULTS if station in stations
            )
        ]
    return [
        *faults,
        f"  alerts          {api}/v1/alerts?status=open   {api}/v1/stations/SIM-0002/health"
        "   (the same X-API-Key header)",
    ]


class _Stop(Exception):
    pass


def run(settings: Settings) -> int:
    stack = LocalStack(settings)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise _Stop(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    code = 0
    try:
        stack.start_infrastructure()
        api_key = stack.seed()
        stack.start_services()
        print(banner(stack, api_key), flush=True)
        while (dead := stack.supervisor.exited()) is None:
            time.sleep(0.5)
        log.error(
            "a process exited; stopping everything",
            process=dead.name,
            returncode=dead.process.returncode,
        )
        code = 1
    except _Stop as stop:
        log.info("stopping", signal=str(stop))
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
        log.info("all stopped")
    return code
