"""Settings of the billing worker (``chargeflow billing``): ``CHARGEFLOW_BILLING_*`` for
every field of :class:`~invoicing.config.InvoicingConfig`, plus the shared Kafka,
database, topic and logging parts (see :mod:`runtime.settings`)."""

from __future__ import annotations

from pydantic import Field

from bus.topics import Topics
from invoicing.config import InvoicingConfig
from runtime.settings import (
    ComponentFields,
    DatabaseSettings,
    KafkaSettings,
    LoggingSettings,
    OptionalPort,
    SettingsError,
    TopicSettings,
)


class InvoicingSettings(KafkaSettings, DatabaseSettings, TopicSettings, LoggingSettings):
    __component__ = ComponentFields(
        InvoicingConfig,
        prefix="billing_",
        shared=("kafka_bootstrap", "database_url", "topics", "http_port"),
    )

    billing_http_port: OptionalPort = Field(
        9104,
        description="port of the worker's /livez, /readyz and /metrics (0 = a free one, "
        "off = none)",
    )

    def config(self, *, database_url: str | None = None) -> InvoicingConfig:
        try:
            config: InvoicingConfig = self.build_component(
                kafka_bootstrap=self.require("kafka_bootstrap"),
                database_url=database_url or self.require("database_url"),
                topics=Topics.with_prefix(self.topic_prefix),
                http_port=self.billing_http_port,
            )
        except SettingsError:
            raise
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
        return config
