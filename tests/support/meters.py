"""The smart-meter bridge under test: its configuration, running it, MQTT publishing,
readings as meters send them, and what the bridge produced and counted."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aiomqtt
from confluent_kafka import Message

from bus.admin import read_topic
from bus.topics import Topics
from chargeflow.stack import EmbeddedBroker
from ingest.meters import BridgeConfig, MeterBridge, MqttEndpoint, encode_reading

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def bridge_config(
    mqtt: MqttEndpoint,
    broker: EmbeddedBroker,
    database_url: str,
    topics: Topics,
    prefix: str,
    **changes: Any,
) -> BridgeConfig:
    config = BridgeConfig(
        mqtt=mqtt,
        kafka_bootstrap=broker.bootstrap,
        database_url=database_url,
        topics=topics,
        topic_pattern=f"{prefix}/meters/+/reading",
        client_id=prefix,
        clean_session=True,
        unknown_meter_ttl_s=0.0,
        delivery_timeout_ms=1500,
        reconnect_max_s=1.0,
    )
    return replace(config, **changes)


@contextlib.asynccontextmanager
async def running(config: BridgeConfig) -> AsyncIterator[MeterBridge]:
    async with MeterBridge(config) as bridge:
        task = asyncio.create_task(bridge.run())
        try:
            await asyncio.wait_for(bridge.subscribed.wait(), 20)
            yield bridge
        finally:
            bridge.stop()
            await asyncio.wait_for(task, 30)


async def publish(mqtt: MqttEndpoint, topic: str, payload: bytes, qos: int = 1) -> None:
    async with aiomqtt.Client(mqtt.host, mqtt.port) as client:
        await client.publish(topic, payload, qos=qos)


def messages(broker: EmbeddedBroker, topic: str) -> Callable[[], list[Message]]:
    return lambda: list(read_topic(broker.bootstrap, topic))


def reading(
    meter_id: str | None, at: datetime = NOW, energy: int | Decimal = 1_000_000, **extra: Any
) -> bytes:
    data = json.loads(
        encode_reading(
            meter_id or "X",
            at,
            energy,
            power_w=7360.0,
            voltage_v=230.1,
            current_a=10.7,
            temperature_c=30.5,
        )
    )
    if meter_id is None:
        del data["meter_id"]
    data.update(extra)
    return json.dumps(data).encode()


def sample(bridge: MeterBridge, name: str, **labels: str) -> float:
    return bridge.registry.get_sample_value(name, labels) or 0.0
