"""Settings of the API process (``python -m api``, ``chargeflow api``):
``CHARGEFLOW_API_*`` for every field of :class:`~api.config.ApiConfig` plus where to
listen, and the shared database, Kafka and logging parts. Add an API tunable to
``ApiConfig``; see :mod:`runtime.settings`."""

from __future__ import annotations

from pydantic import Field

from api.config import ApiConfig
from bus.topics import Topics
from runtime.settings import (
    ComponentFields,
    DatabaseSettings,
    KafkaSettings,
    LoggingSettings,
    TopicSettings,
)


class ApiSettings(KafkaSettings, DatabaseSettings, TopicSettings, LoggingSettings):
    __component__ = ComponentFields(
        ApiConfig, prefix="api_", shared=("kafka_bootstrap", "database_url", "topics")
    )

    api_host: str = Field("127.0.0.1", description="address the API listens on")
    api_port: int = Field(8000, ge=0, le=65535, description="port the API listens on")

    def config(self, *, database_url: str | None = None) -> ApiConfig:
        config: ApiConfig = self.build_component(
            kafka_bootstrap=self.kafka_bootstrap,
            database_url=database_url or self.require("database_url"),
            topics=Topics.with_prefix(self.topic_prefix),
        )
        return config
