"""Fixtures several integration modules use: a running gateway, the MQTT broker, a
per-test MQTT topic prefix and one API key per role. A module that needs another
configuration defines its own fixture of the same name."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from bus.topics import Topics
from chargeflow.mqtt import EmbeddedMqttBroker
from chargeflow.stack import EmbeddedBroker, tcp_open
from ingest.gateway.server import Gateway
from ingest.meters import MqttEndpoint
from store.api_keys import create_api_key
from tests.support.gateway import gateway_config


@pytest.fixture
async def gateway(broker: EmbeddedBroker, clean_db: str, topics: Topics) -> AsyncIterator[Gateway]:
    async with Gateway(gateway_config(broker, clean_db, topics)) as gw:
        yield gw


@pytest.fixture(scope="session")
def mqtt() -> Iterator[MqttEndpoint]:
    configured = os.environ.get("CHARGEFLOW_TEST_MQTT_URL")
    if configured:
        yield MqttEndpoint.from_url(configured)
    elif tcp_open("127.0.0.1", 1883):
        yield MqttEndpoint("127.0.0.1", 1883)
    else:
        with EmbeddedMqttBroker() as embedded:
            yield MqttEndpoint.from_url(embedded.url)


@pytest.fixture
def prefix() -> str:
    return f"cf-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def keys(clean_db: str) -> dict[str, str]:
    return {
        role: create_api_key(clean_db, f"test-{role}", role)
        for role in ("admin", "operator", "maintenance", "billing", "public")
    }
