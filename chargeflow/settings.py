"""Settings of the launcher and the ``chargeflow`` CLI (``chargeflow run``, admin commands).

The launcher starts every process; each reads its own model (:mod:`runtime.settings`
says how, and how to add a setting). This one holds what only the launcher decides
(embedded infrastructure, the data directory) and hands out the processes' models, so
it never repeats one of their settings.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field

from api.settings import ApiSettings
from bus.topics import Topics
from ingest.gateway.settings import GatewaySettings
from ingest.meters.settings import MeterBridgeSettings
from ingest.simulator.settings import SimulatorSettings
from invoicing.settings import InvoicingSettings
from notify.settings import WebhooksSettings
from runtime.settings import (
    DatabaseSettings,
    KafkaSettings,
    LoggingSettings,
    MqttSettings,
    OptionalPort,
    TopicSettings,
)


class Settings(KafkaSettings, DatabaseSettings, TopicSettings, LoggingSettings, MqttSettings):
    kafka_port: int = Field(
        0, ge=0, le=65535, description="port of the embedded broker; 0 = a free one"
    )
    mqtt_port: int = Field(
        0, ge=0, le=65535, description="port of the embedded MQTT broker; 0 = a free one"
    )
    data_dir: Path = Field(
        Path(".chargeflow"),
        description="local state of `chargeflow run`: embedded database, logs, flow recovery",
    )
    # The flows' /livez, /readyz and /metrics: `chargeflow run` serves the sessions,
    # load and status flows on this port and the next two (0 = free ports, shown in
    # the banner; empty or "off" = none).
    flow_metrics_port: OptionalPort = Field(
        9110,
        description="first of the four flows' health/metrics ports in `chargeflow "
        "run` (0 = free ports, off = none)",
    )

    demo_faults: bool = Field(
        True,
        description="a few simulated stations of `chargeflow run` develop faults (a ground "
        "fault, a failing controller, a frozen meter register: alerts within minutes); "
        "CHARGEFLOW_SIMULATOR_FAULTS, when set, is used instead",
    )

    @property
    def topics(self) -> Topics:
        return Topics.with_prefix(self.topic_prefix)

    # The processes' own models, from the same environment (validated at start-up).
    @cached_property
    def gateway(self) -> GatewaySettings:
        return GatewaySettings.load()

    @cached_property
    def api(self) -> ApiSettings:
        return ApiSettings.load()

    @cached_property
    def meters(self) -> MeterBridgeSettings:
        return MeterBridgeSettings.load()

    @cached_property
    def simulator(self) -> SimulatorSettings:
        return SimulatorSettings.load()

    @cached_property
    def webhooks(self) -> WebhooksSettings:
        return WebhooksSettings.load()

    @cached_property
    def billing(self) -> InvoicingSettings:
        return InvoicingSettings.load()

    # What the launcher reads of them.
    @property
    def gateway_host(self) -> str:
        return self.gateway.gateway_host

    @property
    def gateway_port(self) -> int:
        return self.gateway.gateway_port

    @property
    def api_host(self) -> str:
        return self.api.api_host

    @property
    def api_port(self) -> int:
        return self.api.api_port

    @property
    def meters_http_port(self) -> int | None:
        return self.meters.meters_http_port

    @property
    def simulated_stations(self) -> int:
        return self.simulator.simulated_stations
