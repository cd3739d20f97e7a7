"""Settings of the gateway process (``chargeflow gateway``): ``CHARGEFLOW_GATEWAY_*``
for every field of :class:`~ingest.gateway.config.GatewayConfig`, plus the shared Kafka,
database, topic and logging parts. Add a gateway tunable to ``GatewayConfig``; see
:mod:`runtime.settings`."""

from __future__ import annotations

from pydantic import Field

from bus.topics import Topics
from ingest.gateway.config import GatewayConfig
from runtime.settings import (
    ComponentFields,
    DatabaseSettings,
    KafkaSettings,
    LoggingSettings,
    TopicSettings,
)


class GatewaySettings(KafkaSettings, DatabaseSettings, TopicSettings, LoggingSettings):
    __component__ = ComponentFields(
        GatewayConfig,
        prefix="gateway_",
        shared=("kafka_bootstrap", "database_url", "topics"),
        # The login limits are named with the other authentication settings.
        names={
            name: f"gateway_auth_{name}"
            for name in (
                "max_concurrent_verifications",
                "max_pending_verifications",
                "max_concurrent_logins",
            )
        },
    )

    gateway_host: str = Field("127.0.0.1", description="address the gateway listens on")
    gateway_port: int = Field(
        9000, ge=0, le=65535, description="port the gateway listens on (0 = a free one)"
    )

    def config(self, *, database_url: str | None = None) -> GatewayConfig:
        """The gateway's config (``database_url``: where the CLI found the database when
        CHARGEFLOW_DATABASE_URL is unset)."""
        config: GatewayConfig = self.build_component(
            kafka_bootstrap=self.require("kafka_bootstrap"),
            database_url=database_url or self.require("database_url"),
            topics=Topics.with_prefix(self.topic_prefix),
        )
        return config
