"""Settings of the webhooks worker (``chargeflow webhooks``): ``CHARGEFLOW_WEBHOOKS_*``
for every field of :class:`~notify.config.WebhooksConfig`, plus the endpoints and the
shared Kafka, database, topic and logging parts (see :mod:`runtime.settings`).

``CHARGEFLOW_WEBHOOKS_ENDPOINTS`` is a JSON list, one object per receiver::

    [{"name": "ops", "url": "https://ops.example.com/chargeflow", "secret": "...",
      "kinds": ["connector_overheating", "ground_fault"], "min_severity": "high"}]

``kinds`` and ``min_severity`` are optional filters. The secrets are never printed
(settings errors, logs, ``repr``).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from bus.alerts import AlertKind, Severity
from bus.topics import Topics
from notify.config import WebhooksConfig
from notify.policy import Endpoint
from runtime.settings import (
    ComponentFields,
    DatabaseSettings,
    KafkaSettings,
    LoggingSettings,
    OptionalPort,
    SettingsError,
    TopicSettings,
)


class EndpointSetting(BaseModel):
    """One entry of ``CHARGEFLOW_WEBHOOKS_ENDPOINTS``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
    url: str
    secret: SecretStr = Field(min_length=16)
    kinds: list[AlertKind] | None = None
    min_severity: Severity | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials (the requests are signed instead)")
        return url

    def endpoint(self) -> Endpoint:
        return Endpoint(
            name=self.name,
            url=self.url,
            secret=self.secret.get_secret_value(),
            kinds=frozenset(self.kinds) if self.kinds is not None else None,
            min_severity=self.min_severity,
        )


class WebhooksSettings(KafkaSettings, DatabaseSettings, TopicSettings, LoggingSettings):
    __component__ = ComponentFields(
        WebhooksConfig,
        prefix="webhooks_",
        shared=("endpoints", "kafka_bootstrap", "database_url", "topics", "http_port"),
    )

    webhooks_endpoints: list[EndpointSetting] = Field(
        [],
        description='holds secrets: JSON list of receivers [{"name", "url", "secret" (16+ '
        'characters), "kinds" (optional list of alert kinds), "min_severity" (optional)}], '
        "the secrets never printed; empty: nothing is delivered (docs/webhooks.md)",
    )
    webhooks_http_port: OptionalPort = Field(
        9103, description="port of the worker's /healthz and /metrics (0 = a free one, off = none)"
    )

    def config(self, *, database_url: str | None = None) -> WebhooksConfig:
        try:
            config: WebhooksConfig = self.build_component(
                endpoints=tuple(e.endpoint() for e in self.webhooks_endpoints),
                kafka_bootstrap=self.require("kafka_bootstrap"),
                database_url=database_url or self.require("database_url"),
                topics=Topics.with_prefix(self.topic_prefix),
                http_port=self.webhooks_http_port,
            )
        except SettingsError:
            raise
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
        return config
