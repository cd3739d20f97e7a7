"""The smart-meter MQTT bridge against a real MQTT broker (Mosquitto on 127.0.0.1:1883,
else CHARGEFLOW_TEST_MQTT_URL, else an embedded one), the embedded Kafka broker and
PostgreSQL. Every test has its own MQTT topic prefix, Kafka topics and client id."""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

import aiomqtt
import httpx
import psycopg
import pytest
from confluent_kafka import Message

from bus.admin import read_topic
from bus.envelope import Kind, decode_envelope
from bus.topics import Topics
from chargeflow.stack import EmbeddedBroker
from ingest.meters import MeterBridge, MqttEndpoint, parse_reading
from ingest.simulator.meters import (
    MeterSimConfig,
    ReadingSource,
    RegisterSource,
    SimulatedMeters,
    StandaloneSource,
)
from ingest.simulator.physics import EnergyRegister
from store.meters import MeterRegistryError, add_meter, list_meters, remove_meter
from store.stations import provision_station
from tests.support.meters import NOW, bridge_config, messages, publish, reading, running, sample
from tests.support.polling import apoll

pytestmark = pytest.mark.integration


# --------------------------------------------------------------------------- helpers


def headers_of(message: Message) -> dict[str, bytes]:
    raw = cast(list[tuple[str, bytes | None]], message.headers() or [])
    return {k: bytes(v or b"") for k, v in raw}


def key_of(message: Message) -> str:
    return bytes(message.key() or b"").decode()


# --------------------------------------------------------------------------- tests


async def test_valid_reading_becomes_an_envelope_keyed_by_the_station(
    mqtt: MqttEndpoint,
    broker: EmbeddedBroker,
    clean_db: str,
    topics: Topics,
    prefix: str,
) -> None:
    provision_station(clean_db, "CP-M1")
    add_meter(clean_db, "MTR-A", "CP-M1", 2, is_billing_meter=True)
    measured = datetime(2026, 11, 22, 10, 0, 5, 250000, tzinfo=UTC)
    raw = reading("MTR-A", measured, Decimal("1234567.125"))
    async with running(bridge_config(mqtt, broker, clean_db, topics, prefix)) as bridge:
        await publish(mqtt, f"{prefix}/meters/MTR-A/reading", raw)
        out = await apoll(
            messages(broker, topics.meter_readings), lambda m: len(m) >= 1, 20, "the envelope"
        )
        assert sample(bridge, "chargeflow_meters_readings_accepted_total") == 1
    assert len(out) == 1
    assert out[0].key() == b"CP-M1"
    envelope = decode_envelope(out[0].value())
    assert envelope.kind is Kind.METER_READING
    assert envelope.charge_point_id == "CP-M1"
    assert envelope.measured_at == measured
    assert envelope.received_at.tzinfo is not None
    assert envelope.message_id == parse_reading(raw).message_id
    assert envelope.payload == {
        "meter_id": "MTR-A",
        "connector_id": 2,
        "energy_wh": "1234567.125",
        "power_w": 7360.0,
        "voltage_v": 230.1,
        "current_a": 10.7,
        "temperature_c": 30.5,
        "is_billing_meter": True,
    }
    assert list(read_topic(broker.bootstrap, topics.deadletter)) == []


def _invalid_readings() -> dict[str, tuple[bytes, str, str]]:
    """Topic meter id -> (payload, reason, stage)."""
    big = reading("MTR-BIG", pad="x" * 5000)
    return {
        "MTR-JSON": (b'{"meter_id": "MTR-JSON", "time": ', "invalid_json", "validate"),
        "MTR-FLOAT": (reading("MTR-FLOAT", energy_wh=1234.5), "schema_violation", "validate"),
        "MTR-EXTRA": (reading("MTR-EXTRA", phase="L1"), "schema_violation", "validate"),
        "MTR-NAIVE": (
            reading("MTR-NAIVE", time="2026-11-22T10:00:00"),
            "schema_violation",
            "validate",
        ),
        "MTR-B": (reading("MTR-C"), "meter_mismatch", "validate"),
        "MTR-NOPE": (reading("MTR-NOPE"), "unknown_meter", "registry"),
        "MTR-BIG": (big, "too_large", "validate"),
    }


def _check_the_rejection_counts(bridge: MeterBridge) -> None:
    for reason, count in (
        ("invalid_json", 1),
        ("schema_violation", 3),
        ("meter_mismatch", 1),
        ("unknown_meter", 1),
        ("too_large", 1),
    ):
        assert sample(bridge, "chargeflow_meters_readings_rejected_total", reason=reason) == count
    assert sample(bridge, "chargeflow_meters_readings_accepted_total") == 2


def _check_the_dead_letters(
    dead: list[Message], cases: dict[str, tuple[bytes, str, str]], prefix: str
) -> None:
    assert len(dead) == len(cases)
    by_key = {key_of(m): m for m in dead}
    assert sorted(by_key) == sorted(
        ["MTR-JSON", "MTR-FLOAT", "MTR-EXTRA", "MTR-NAIVE", "MTR-B", "MTR-NOPE", "MTR-BIG"]
    )
    for meter_id, (payload, reason, stage) in cases.items():
        message = by_key[meter_id]
        headers = headers_of(message)
        assert headers["deadletter.reason"].decode().startswith(f"{reason}: "), headers
        assert headers["deadletter.stage"] == stage.encode()
        assert headers["deadletter.source"] == b"mqtt"
        assert headers["deadletter.source.topic"] == f"{prefix}/meters/{meter_id}/reading".encode()
        if reason == "too_large":
            assert message.value() == payload[:2048]
            assert headers["deadletter.truncated_from"] == str(len(payload)).encode()
        else:
            assert message.value() == payload  # the original bytes, unchanged
    reasons = {k: headers_of(m)["deadletter.reason"].decode() for k, m in by_key.items()}
    assert "energy_wh" in reasons["MTR-FLOAT"]
    assert "unknown field `phase`" in reasons["MTR-EXTRA"]
    assert "UTC offset" in reasons["MTR-NAIVE"]


async def test_invalid_readings_go_to_the_deadletter_topic_and_the_bridge_keeps_going(
    mqtt: MqttEndpoint,
    broker: EmbeddedBroker,
    clean_db: str,
    topics: Topics,
    prefix: str,
) -> None:
    provision_station(clean_db, "CP-M2")
    add_meter(clean_db, "MTR-OK", "CP-M2", 1)
    add_meter(clean_db, "MTR-B", "CP-M2", 2)
    cases = _invalid_readings()
    config = bridge_config(mqtt, broker, clean_db, topics, prefix, max_payload_bytes=2048)
    async with running(config) as bridge:
        for meter_id, (payload, _, _) in cases.items():
            await publish(mqtt, f"{prefix}/meters/{meter_id}/reading", payload)
        await publish(mqtt, f"{prefix}/meters/MTR-OK/reading", reading("MTR-OK"))
        dead = await apoll(
            messages(broker, topics.deadletter), lambda m: len(m) >= len(cases), 20, "dead letters"
        )
        good = await apoll(
            messages(broker, topics.meter_readings),
            lambda m: len(m) >= 1,
            20,
            "the good reading after the bad ones",
        )
        # The registry is asked again for an unknown id (unknown_meter_ttl_s=0).
        add_meter(clean_db, "MTR-NOPE", "CP-M2", 3)
        await publish(mqtt, f"{prefix}/meters/MTR-NOPE/reading", reading("MTR-NOPE"))
        good = await apoll(
            messages(broker, topics.meter_readings),
            lambda m: len(m) >= 2,
            20,
            "the reading of the newly registered meter",
        )
        _check_the_rejection_counts(bridge)
    assert [decode_envelope(m.value()).payload["meter_id"] for m in good] == ["MTR-OK", "MTR-NOPE"]
    _check_the_dead_letters(dead, cases, prefix)


async def test_unconfirmed_readings_are_not_acknowledged_and_come_again(
    mqtt: MqttEndpoint,
    broker: EmbeddedBroker,
    clean_db: str,
    topics: Topics,
    prefix: str,
) -> None:
    """Kafka stops answering: the reading is retried and never acknowledged; a bridge
    stopped meanwhile leaves it with the broker, and the next one (same client id,
    persistent session) publishes it."""
    provision_station(clean_db, "CP-M3")
    add_meter(clean_db, "MTR-D", "CP-M3", 1)
    config = bridge_config(
        mqtt, broker, clean_db, topics, prefix, clean_session=False, drain_timeout_s=0.5
    )
    raw = reading("MTR-D")
    try:
        async with running(config) as first:
            broker.pause()
            await publish(mqtt, f"{prefix}/meters/MTR-D/reading", raw)
            await apoll(
                lambda: (
                    sample(first, "chargeflow_meters_in_flight"),
                    sample(first, "chargeflow_meters_publish_retries_total"),
                ),
                lambda v: v[0] == 1 and v[1] >= 1,
                20,
                "a retried, unacknowledged reading",
            )
            assert sample(first, "chargeflow_meters_readings_accepted_total") == 0
        broker.resume()
        async with running(config) as second:
            out = await apoll(
                messages(broker, topics.meter_readings),
                lambda m: len(m) >= 1,
                30,
                "the redelivered reading",
            )
            await apoll(
                lambda: sample(second, "chargeflow_meters_in_flight"),
                lambda v: v == 0,
                10,
                "the redelivered reading acknowledged",
            )
        ids = {decode_envelope(m.value()).message_id for m in out}
        assert ids == {parse_reading(raw).message_id}  # duplicates share the id
    finally:
        broker.resume()
        # Drop the persistent session from the shared broker.
        async with aiomqtt.Client(mqtt.host, mqtt.port, identifier=prefix, clean_session=True):
            pass


async def test_health_and_metrics_over_http(
    mqtt: MqttEndpoint,
    broker: EmbeddedBroker,
    clean_db: str,
    topics: Topics,
    prefix: str,
) -> None:
    config = bridge_config(mqtt, broker, clean_db, topics, prefix, http_port=0)
    async with (
        running(config) as bridge,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{bridge.http_port}") as http,
    ):
        health = await http.get("/readyz")
        assert health.status_code == 200
        assert health.json()["checks"] == {"mqtt": {"ok": True}, "kafka": {"ok": True}}
        await publish(mqtt, f"{prefix}/meters/MTR-X/reading", b"nonsense")
        await apoll(
            lambda: sample(
                bridge, "chargeflow_meters_readings_rejected_total", reason="invalid_json"
            ),
            lambda v: v == 1,
            20,
            "a rejection",
        )
        metrics = (await http.get("/metrics")).text
        assert 'chargeflow_meters_readings_rejected_total{reason="invalid_json"} 1.0' in metrics
        assert "chargeflow_meters_mqtt_connected 1.0" in metrics
        assert (await http.get("/nope")).status_code == 404


async def test_simulated_meters_publish_through_the_bridge(
    mqtt: MqttEndpoint,
    broker: EmbeddedBroker,
    clean_db: str,
    topics: Topics,
    prefix: str,
) -> None:
    provision_station(clean_db, "CP-S1")
    provision_station(clean_db, "CP-S2")
    add_meter(clean_db, "MTR-S1", "CP-S1", 1, is_billing_meter=True)
    add_meter(clean_db, "MTR-S2", "CP-S2", 1)
    station_register = EnergyRegister(50_000)
    t = {"now": NOW}

    def tick() -> datetime:  # simulated time: one minute per reading
        t["now"] += timedelta(minutes=1)
        station_register.add(100.0)
        return t["now"]

    sources: dict[str, ReadingSource] = {
        "MTR-S1": RegisterSource(lambda: station_register.wh, now=tick),
        "MTR-S2": StandaloneSource(rng=random.Random(5), mean_gap_s=1.0),
    }
    meters = SimulatedMeters(
        MeterSimConfig(
            mqtt=mqtt, interval_s=0.2, topic_template=f"{prefix}/meters/{{meter_id}}/reading"
        ),
        sources,
    )
    async with running(bridge_config(mqtt, broker, clean_db, topics, prefix)) as bridge:
        task = asyncio.create_task(meters.run())
        try:
            await apoll(lambda: meters.published, lambda n: n >= 10, 30, "ten readings")
        finally:
            meters.stop()
            await asyncio.wait_for(task, 10)
        # (bus.admin.read_topic only ends on a topic nobody is writing to.)
        await apoll(
            lambda: sample(bridge, "chargeflow_meters_readings_accepted_total"),
            lambda n: n == meters.published,
            20,
            "every reading published",
        )
    got: dict[str, list[Any]] = {"MTR-S1": [], "MTR-S2": []}
    for m in read_topic(broker.bootstrap, topics.meter_readings):
        env = decode_envelope(m.value())
        got[env.payload["meter_id"]].append(env)
    assert sum(len(v) for v in got.values()) == meters.published
    assert all(len(v) >= 2 for v in got.values())
    s1 = sorted(got["MTR-S1"], key=lambda e: e.measured_at)
    assert {e.charge_point_id for e in s1} == {"CP-S1"}
    energies = [int(e.payload["energy_wh"]) for e in s1]
    assert energies[0] >= 50_100
    assert energies == sorted(energies)
    assert all(e.payload["is_billing_meter"] for e in s1)
    assert s1[1].payload["power_w"] == pytest.approx(6000.0, rel=0.02)  # 100 Wh per minute
    assert {e.charge_point_id for e in got["MTR-S2"]} == {"CP-S2"}
    assert list(read_topic(broker.bootstrap, topics.deadletter)) == []


def test_meter_registry(clean_db: str, db: psycopg.Connection[Any]) -> None:
    provision_station(clean_db, "CP-R1")
    first = add_meter(clean_db, "MTR-R1", "CP-R1", 1, is_billing_meter=True)
    assert (first.charge_point_id, first.connector_id, first.is_billing_meter) == ("CP-R1", 1, True)
    with pytest.raises(MeterRegistryError, match="already has a billing meter"):
        add_meter(clean_db, "MTR-R2", "CP-R1", 1, is_billing_meter=True)
    add_meter(clean_db, "MTR-R2", "CP-R1", 1)  # a second, non-billing meter is fine
    with pytest.raises(MeterRegistryError, match="unknown charge point"):
        add_meter(clean_db, "MTR-R3", "CP-NOPE", 1)
    with pytest.raises(MeterRegistryError, match="bad meter id"):
        add_meter(clean_db, "MTR/R4", "CP-R1", 1)
    moved = add_meter(clean_db, "MTR-R2", "CP-R1", 2)  # upsert moves it
    assert moved.connector_id == 2
    assert [m.meter_id for m in list_meters(clean_db, "CP-R1")] == ["MTR-R1", "MTR-R2"]
    assert remove_meter(clean_db, "MTR-R2") is True
    assert remove_meter(clean_db, "MTR-R2") is False
    db.execute("DELETE FROM stations WHERE charge_point_id = 'CP-R1'")
    assert list_meters(clean_db) == []  # meters go with their station


async def test_replicas_in_a_share_group_split_the_readings(
    mqtt: MqttEndpoint,
    broker: EmbeddedBroker,
    clean_db: str,
    topics: Topics,
    prefix: str,
) -> None:
    provision_station(clean_db, "CP-G1")
    add_meter(clean_db, "MTR-G1", "CP-G1", 1)
    base = bridge_config(mqtt, broker, clean_db, topics, prefix, share_group=prefix)
    async with (
        running(replace(base, client_id=f"{prefix}-a")) as a,
        running(replace(base, client_id=f"{prefix}-b")) as b,
    ):
        for n in range(20):
            await publish(
                mqtt,
                f"{prefix}/meters/MTR-G1/reading",
                reading("MTR-G1", NOW + timedelta(seconds=n), 1_000_000 + n),
            )

        def accepted() -> tuple[float, float]:
            return (
                sample(a, "chargeflow_meters_readings_accepted_total"),
                sample(b, "chargeflow_meters_readings_accepted_total"),
            )

        counts = await apoll(accepted, lambda c: sum(c) >= 20, 20, "20 readings accepted")
    assert sum(counts) == 20  # each reading went to one replica
    assert min(counts) >= 1, counts  # and both took part
    out = list(read_topic(broker.bootstrap, topics.meter_readings))
    assert len({decode_envelope(m.value()).message_id for m in out}) == 20


class _SwallowsOneCancellation(aiomqtt.Client):
    """A real client whose next publish, once armed, ignores being cancelled, as
    Python 3.11's ``asyncio.wait_for`` (inside aiomqtt's publish) does when the broker's
    acknowledgement arrives together with the cancellation."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.armed = False
        self.holding = asyncio.Event()

    async def publish(self, *args: Any, **kwargs: Any) -> None:
        await super().publish(*args, **kwargs)
        if self.armed:
            self.armed = False
            self.holding.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(3600)


async def test_simulated_meters_stop_even_when_a_publish_swallows_the_cancellation(
    mqtt: MqttEndpoint, prefix: str
) -> None:
    meters = SimulatedMeters(
        MeterSimConfig(mqtt=mqtt, interval_s=0.05, topic_template=f"{prefix}/{{meter_id}}"),
        {"MTR-C1": StandaloneSource(rng=random.Random(1), mean_gap_s=1.0)},
    )
    async with _SwallowsOneCancellation(mqtt.host, mqtt.port) as client:
        publishing = asyncio.create_task(meters._publish_all(client))
        try:
            await apoll(lambda: meters.published, lambda n: n >= 2, 20, "two readings")
            client.armed = True
            await asyncio.wait_for(client.holding.wait(), 20)
            meters.stop()
            done, _ = await asyncio.wait([publishing], timeout=10)
            assert done, "the meters kept publishing after being stopped"
        finally:
            publishing.cancel()
            await asyncio.wait([publishing])
