"""Settings of the smart-meter bridge process (``chargeflow meters``):
``CHARGEFLOW_METERS_*`` for every field of :class:`~ingest.meters.config.BridgeConfig`
(the MQTT subscription ones keep their ``CHARGEFLOW_MQTT_*`` names), plus the shared
MQTT, Kafka, database, topic and logging parts. Add a bridge tunable to
``BridgeConfig``; see :mod:`runtime.settings`."""

from __future__ import annotations

from pydantic import Field

from bus.topics import Topics
from ingest.meters.config import BridgeConfig, MqttEndpoint
from runtime.settings import (
    ComponentFields,
    DatabaseSettings,
    KafkaSettings,
    LoggingSettings,
    MqttSettings,
    SettingsError,
    TopicSettings,
)


class MeterBridgeSettings(
    MqttSettings, KafkaSettings, DatabaseSettings, TopicSettings, LoggingSettings
):
    __component__ = ComponentFields(
        BridgeConfig,
        prefix="meters_",
        names={"client_id": "mqtt_client_id", "share_group": "mqtt_share_group"},
        shared=("mqtt", "kafka_bootstrap", "database_url", "topics", "topic_pattern"),
    )

    meters_http_port: int | None = Field(
        9102,
        ge=0,
        le=65535,
        description="port of the bridge's /healthz and /metrics (0 = a free one)",
    )

    def config(self, *, database_url: str | None = None) -> BridgeConfig:
        try:
            mqtt = MqttEndpoint.from_url(self.require("mqtt_url"))
            config: BridgeConfig = self.build_component(
                mqtt=mqtt,
                kafka_bootstrap=self.require("kafka_bootstrap"),
                database_url=database_url or self.require("database_url"),
                topics=Topics.with_prefix(self.topic_prefix),
                topic_pattern=self.mqtt_topic_pattern,
            )
        except SettingsError:
            raise
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
        return config
