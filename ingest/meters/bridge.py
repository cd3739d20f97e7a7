"""The smart-meter MQTT bridge: MQTT readings in, envelopes on ``meter.readings`` out.

Per MQTT message, in arrival order:

1. validate the payload (``ingest.meters.reading``) and look the meter up in the
   registry (``store.meters``, cached);
2. publish the envelope (key = the meter's charge point) to ``topics.meter_readings``,
   or the original bytes with the reason to ``topics.deadletter``;
3. acknowledge the MQTT message (PUBACK) only once Kafka confirmed delivery.

Publish-before-ack: the bridge subscribes with QoS 1 and turns paho's automatic
PUBACK off (manual acknowledgements; aiomqtt 2.5 has no public switch yet, see
aiomqtt issue #345, so we reach its paho client). Acks go out in arrival order
(MQTT 3.1.1 §4.6) while up to ``max_in_flight`` readings wait for Kafka at once.
With a stable client id and a persistent session (``clean_session=False``) the
broker delivers unacknowledged and offline-queued readings again after a
reconnect or restart: at-least-once. Duplicates keep their envelope
``message_id`` (uuid5 of meter id + measurement time), so consumers drop them.

A reading that cannot be published is retried with backoff (never acknowledged
meanwhile, so the broker holds the rest back); a registry that cannot be reached
is retried the same way (an unknown meter is only dead-lettered when the
registry said so). Bad input never stops the bridge.

With ``http_port`` set, :class:`runtime.health.HealthServer` serves ``/livez``,
``/readyz`` (ready = subscribed to the MQTT broker, and Kafka answers and confirmed
the last reading) and ``/metrics`` (the bridge's metrics plus process metrics).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiomqtt
import psycopg
import structlog
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from tenacity import RetryCallState

from bus.envelope import Envelope, Kind, encode_envelope
from bus.producer import Producer, PublishError, producer_config
from ingest.meters.config import BridgeConfig
from ingest.meters.reading import (
    REASONS,
    TOO_LARGE,
    UNKNOWN_METER,
    ReadingError,
    meter_id_from_topic,
    parse_reading,
)
from runtime.health import HealthServer
from runtime.retry import DATABASE, KAFKA, MQTT, async_retrying, failure, next_wait
from store.meters import MeterRecord, get_meter

log = structlog.get_logger("chargeflow.meters")

DEADLETTER_STAGE_VALIDATE = "validate"
DEADLETTER_STAGE_REGISTRY = "registry"


class BridgeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        # Process metrics (CPU, memory, open fds, GC) next to the bridge's own.
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            with contextlib.suppress(ValueError):  # the caller's registry has them already
                registry.register(collector)
        self.accepted = Counter(
            "chargeflow_meters_readings_accepted",
            "Readings published to meter.readings",
            registry=registry,
        )
        self.rejected = Counter(
            "chargeflow_meters_readings_rejected",
            "Readings dead-lettered, by reason",
            ["reason"],
            registry=registry,
        )
        for reason in REASONS:
            self.rejected.labels(reason)
        self.publish_seconds = Histogram(
            "chargeflow_meters_publish_seconds",
            "Time until Kafka confirmed a reading",
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.publish_retries = Counter(
            "chargeflow_meters_publish_retries",
            "Kafka publishes retried (not confirmed)",
            registry=registry,
        )
        self.registry_errors = Counter(
            "chargeflow_meters_registry_errors",
            "Registry lookups that failed (retried)",
            registry=registry,
        )
        self.connected = Gauge(
            "chargeflow_meters_mqtt_connected",
            "1 while subscribed to the MQTT broker",
            registry=registry,
        )
        self.reconnects = Counter(
            "chargeflow_meters_mqtt_connection_failures",
            "MQTT connections that failed or were lost",
            registry=registry,
        )
        self.in_flight = Gauge(
            "chargeflow_meters_in_flight",
            "Readings received and not yet acknowledged",
            registry=registry,
        )


class MeterDirectory:
    """Cached ``meter_id -> MeterRecord`` lookups (known and unknown ids, LRU-bounded).

    On a registry error an expired entry is served rather than nothing; with no
    entry the error propagates (the bridge retries, it never guesses "unknown").
    """

    def __init__(
        self, pool: AsyncConnectionPool, *, ttl_s: float, unknown_ttl_s: float, max_size: int
    ) -> None:
        self._pool = pool
        self._ttl = ttl_s
        self._unknown_ttl = unknown_ttl_s
        self._max = max_size
        self._cache: OrderedDict[str, tuple[float, MeterRecord | None]] = OrderedDict()

    async def lookup(self, meter_id: str) -> MeterRecord | None:
        now = time.monotonic()
        hit = self._cache.get(meter_id)
        if hit is not None and hit[0] > now:
            self._cache.move_to_end(meter_id)
            return hit[1]
        try:
            record = await get_meter(self._pool, meter_id)
        except (psycopg.Error, PoolTimeout):
            if hit is not None and hit[1] is not None:
                return hit[1]
            raise
        ttl = self._ttl if record is not None else self._unknown_ttl
        if ttl > 0:
            self._cache[meter_id] = (now + ttl, record)
            self._cache.move_to_end(meter_id)
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
        else:
            self._cache.pop(meter_id, None)
        return record

    def forget(self, meter_id: str | None = None) -> None:
        if meter_id is None:
            self._cache.clear()
        else:
            self._cache.pop(meter_id, None)


@dataclass(slots=True)
class _Outgoing:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    reason: str | None = None  # None: accepted; else the rejection reason


def _enable_manual_ack(client: aiomqtt.Client) -> None:
    # aiomqtt 2.5 creates its paho client in __init__ and has no public option yet
    # (aiomqtt issue #345); paho >= 2.0 has manual_ack_set/ack. Set before
    # connecting: a persistent session may deliver queued messages at once.
    client._client.manual_ack_set(True)


def _ack(client: aiomqtt.Client, message: aiomqtt.Message) -> None:
    if message.qos > 0:
        client._client.ack(message.mid, message.qos)


class MeterBridge:
    """``async with MeterBridge(cfg) as bridge: await bridge.run()`` until ``stop()``."""

    def __init__(self, config: BridgeConfig, *, registry: CollectorRegistry | None = None) -> None:
        self.config = config
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = BridgeMetrics(self.registry)
        self.subscribed = asyncio.Event()
        self.http_port: int | None = None
        self._stop = asyncio.Event()
        self._producer: Producer | None = None
        self._pool: AsyncConnectionPool | None = None
        self._directory: MeterDirectory | None = None
        self._health: HealthServer | None = None
        self._health_task: asyncio.Task[None] | None = None
        self._deliveries: set[asyncio.Task[None]] = set()
        self._kafka_ok = True
        self._had_subscription = False
        # The retry policies, capped by the bridge's reconnect settings.
        self._mqtt_backoff = MQTT.capped(config.reconnect_max_s, config.reconnect_initial_s)
        self._db_backoff = DATABASE.capped(config.reconnect_max_s, config.reconnect_initial_s)
        self._kafka_backoff = KAFKA.capped(config.reconnect_max_s, config.reconnect_initial_s)
        self._publish_timeout = config.delivery_timeout_ms / 1000 + 2.0

    # ------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        cfg = self.config
        self._pool = AsyncConnectionPool(
            cfg.database_url,
            min_size=1,
            max_size=4,
            open=False,
            timeout=10.0,
            kwargs={"autocommit": True},
            name="meters",
        )
        # Do not wait: a registry that is down at start is retried per reading.
        await self._pool.open(wait=False)
        self._directory = MeterDirectory(
            self._pool,
            ttl_s=cfg.registry_ttl_s,
            unknown_ttl_s=cfg.unknown_meter_ttl_s,
            max_size=cfg.registry_cache_size,
        )
        self._producer = Producer(
            producer_config(cfg.kafka_bootstrap, delivery_timeout_ms=cfg.delivery_timeout_ms)
        )
        if cfg.http_port is not None:
            self._health = self._health_server()
            self.http_port = self._health.bind()
            self._health_task = asyncio.create_task(self._health.serve(), name="meters-http")
        log.info(
            "meter bridge ready",
            mqtt=cfg.mqtt.url,
            subscription=cfg.subscription,
            topic=cfg.topics.meter_readings,
            http_port=self.http_port,
        )

    async def close(self) -> None:
        self.stop()
        for task in list(self._deliveries):
            task.cancel()
        await asyncio.gather(*self._deliveries, return_exceptions=True)
        if self._health is not None and self._health_task is not None:
            self._health.stop()
            await self._health_task
            self._health = self._health_task = None
        if self._producer is not None:
            await asyncio.to_thread(self._producer.close, 10.0)
            self._producer = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def __aenter__(self) -> MeterBridge:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def stop(self) -> None:
        """Stop taking readings; ``run`` finishes those handed to Kafka, then returns."""
        self._stop.set()

    def _health_server(self) -> HealthServer:
        """``/livez``, ``/readyz`` (``/healthz``) and ``/metrics``: ready while subscribed
        to the MQTT broker and Kafka confirms deliveries (see :mod:`runtime.health`)."""
        cfg = self.config
        health = HealthServer(
            host=cfg.http_host, port=cfg.http_port or 0, registry=self.registry, name="meters"
        )
        health.add_check("mqtt", self._check_mqtt)
        health.add_check("kafka", self._check_kafka)
        return health

    def _check_mqtt(self) -> None:
        if not self.subscribed.is_set():
            raise ConnectionError(f"not subscribed to {self.config.mqtt.url}")

    def _check_kafka(self) -> None:
        # Runs on a worker thread (runtime.health): the probe blocks.
        if not self._kafka_ok:
            raise ConnectionError("Kafka did not confirm the last reading (retrying)")
        if self._producer is None:
            raise ConnectionError("no Kafka producer")
        reason = self._producer.unwritable_reason(self.config.topics.meter_readings, 2.0)
        if reason is not None:
            raise ConnectionError(reason)

    @property
    def directory(self) -> MeterDirectory:
        assert self._directory is not None, "use 'async with MeterBridge(...)' first"
        return self._directory

    async def _sleep_unless_stopped(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._stop.wait()

    # ------------------------------------------------------------- MQTT side

    async def run(self) -> None:
        """Connect, consume and reconnect with backoff until ``stop()``."""
        assert self._producer is not None, "use 'async with MeterBridge(...)' first"

        def reconnecting(state: RetryCallState) -> None:
            self.metrics.reconnects.inc()
            log.warning(
                "MQTT connection failed or lost; reconnecting",
                mqtt=self.config.mqtt.url,
                error=str(failure(state)),
                delay=round(next_wait(state), 2),
            )

        while not self._stop.is_set():
            try:
                # A fresh policy per connection that got as far as subscribing: the
                # backoff starts over after a connection that worked.
                async for attempt in async_retrying(
                    self._mqtt_backoff,
                    aiomqtt.MqttError,
                    before_sleep=reconnecting,
                    sleep=self._sleep_unless_stopped,
                    stop_when=self._stop.is_set,
                ):
                    with attempt:
                        await self._connection()
            except aiomqtt.MqttError:
                if not self._stop.is_set():
                    raise
        log.info("meter bridge stopped")

    async def _connection(self) -> None:
        """One MQTT connection; losing it after subscribing ends it without an error."""
        self._had_subscription = False
        try:
            await self._session()
        except aiomqtt.MqttError as exc:
            if not self._had_subscription:
                raise
            self.metrics.reconnects.inc()
            log.warning(
                "MQTT connection lost; reconnecting", mqtt=self.config.mqtt.url, error=str(exc)
            )

    def _client(self) -> aiomqtt.Client:
        cfg = self.config
        client = aiomqtt.Client(
            cfg.mqtt.host,
            cfg.mqtt.port,
            username=cfg.mqtt.username,
            password=cfg.mqtt.password,
            identifier=cfg.client_id,
            clean_session=cfg.clean_session,
            keepalive=cfg.keepalive_s,
            timeout=10.0,
            tls_context=ssl.create_default_context() if cfg.mqtt.tls else None,
        )
        _enable_manual_ack(client)
        return client

    async def _session(self) -> None:
        cfg = self.config
        pending: asyncio.Queue[tuple[aiomqtt.Message, asyncio.Task[None]]] = asyncio.Queue(
            maxsize=cfg.max_in_flight
        )
        async with self._client() as client:
            await client.subscribe(cfg.subscription, qos=1)
            self._had_subscription = True
            self.subscribed.set()
            self.metrics.connected.set(1)
            log.info("subscribed", mqtt=cfg.mqtt.url, subscription=cfg.subscription)
            consumer = asyncio.create_task(self._consume(client, pending), name="meters-consume")
            acker = asyncio.create_task(self._ack_loop(client, pending), name="meters-ack")
            stopper = asyncio.create_task(self._stop.wait())
            try:
                done, _ = await asyncio.wait(
                    {consumer, acker, stopper}, return_when=asyncio.FIRST_COMPLETED
                )
                if stopper in done:
                    consumer.cancel()
                    await asyncio.gather(consumer, return_exceptions=True)
                    await self._drain(pending)
                else:
                    # The connection went away (MqttError) or a bug: surface it.
                    for task in done:
                        task.result()
            finally:
                self.subscribed.clear()
                self.metrics.connected.set(0)
                for task in (consumer, acker, stopper):
                    task.cancel()
                await asyncio.gather(consumer, acker, stopper, return_exceptions=True)
                # Unacknowledged readings come again from the broker (persistent session).
                while not pending.empty():
                    pending.get_nowait()[1].cancel()
                self.metrics.in_flight.set(0)

    async def _drain(
        self, pending: asyncio.Queue[tuple[aiomqtt.Message, asyncio.Task[None]]]
    ) -> None:
        try:
            async with asyncio.timeout(self.config.drain_timeout_s):
                await pending.join()
        except TimeoutError:
            log.warning(
                "stopping with readings not confirmed by Kafka; the broker delivers them again",
                count=pending.qsize(),
            )

    async def _consume(
        self,
        client: aiomqtt.Client,
        pending: asyncio.Queue[tuple[aiomqtt.Message, asyncio.Task[None]]],
    ) -> None:
        async for message in client.messages:
            outgoing = await self._prepare(message)
            task = asyncio.create_task(self._deliver(outgoing))
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)
            self.metrics.in_flight.inc()
            await pending.put((message, task))

    async def _ack_loop(
        self,
        client: aiomqtt.Client,
        pending: asyncio.Queue[tuple[aiomqtt.Message, asyncio.Task[None]]],
    ) -> None:
        while True:
            message, task = await pending.get()
            try:
                await task
                _ack(client, message)
                self.metrics.in_flight.dec()
            finally:
                pending.task_done()

    # ------------------------------------------------------------ the reading

    async def _prepare(self, message: aiomqtt.Message) -> _Outgoing:
        cfg = self.config
        topic = message.topic.value
        payload = message.payload
        raw = bytes(payload) if isinstance(payload, bytes | bytearray) else str(payload).encode()
        topic_meter_id = meter_id_from_topic(cfg.topic_pattern, topic)
        key = topic_meter_id.encode() if topic_meter_id else None
        if len(raw) > cfg.max_payload_bytes:
            error = ReadingError(TOO_LARGE, f"{len(raw)} bytes > {cfg.max_payload_bytes}")
            return self._dead_letter(
                topic, raw[: cfg.max_payload_bytes], key, error, truncated_from=len(raw)
            )
        try:
            reading = parse_reading(raw, topic_meter_id)
        except ReadingError as invalid:
            return self._dead_letter(topic, raw, key, invalid)
        record = await self._lookup(reading.meter_id)
        if record is None:
            unknown = ReadingError(UNKNOWN_METER, f"meter {reading.meter_id!r} is not registered")
            return self._dead_letter(
                topic, raw, reading.meter_id.encode(), unknown, stage=DEADLETTER_STAGE_REGISTRY
            )
        envelope = Envelope(
            message_id=reading.message_id,
            charge_point_id=record.charge_point_id,
            received_at=datetime.now(UTC),
            measured_at=reading.measured_at,
            kind=Kind.METER_READING,
            payload=reading.payload(
                connector_id=record.connector_id, is_billing_meter=record.is_billing_meter
            ),
        )
        return _Outgoing(
            cfg.topics.meter_readings, record.charge_point_id.encode(), encode_envelope(envelope)
        )

    def _dead_letter(
        self,
        topic: str,
        raw: bytes,
        key: bytes | None,
        error: ReadingError,
        *,
        stage: str = DEADLETTER_STAGE_VALIDATE,
        truncated_from: int | None = None,
    ) -> _Outgoing:
        headers = [
            ("deadletter.reason", str(error).encode()),
            ("deadletter.stage", stage.encode()),
            ("deadletter.source", b"mqtt"),
            ("deadletter.source.topic", topic.encode()),
            # Not a Kafka source: no partition or offset.
            ("deadletter.source.partition", b"-1"),
            ("deadletter.source.offset", b"-1"),
        ]
        if truncated_from is not None:
            headers.append(("deadletter.truncated_from", str(truncated_from).encode()))
        log.info("reading dead-lettered", mqtt_topic=topic[:200], reason=str(error)[:300])
        return _Outgoing(self.config.topics.deadletter, key, raw, headers, error.reason)

    async def _lookup(self, meter_id: str) -> MeterRecord | None:
        def unavailable(state: RetryCallState) -> None:
            self.metrics.registry_errors.inc()
            log.warning(
                "meter registry unavailable; retrying",
                error=str(failure(state)),
                delay=round(next_wait(state), 2),
            )

        async for attempt in async_retrying(
            self._db_backoff, (psycopg.Error, PoolTimeout), before_sleep=unavailable
        ):
            with attempt:
                return await self.directory.lookup(meter_id)
        raise AssertionError("unreachable: the registry is retried until it answers")

    async def _deliver(self, out: _Outgoing) -> None:
        assert self._producer is not None
        producer = self._producer

        def unconfirmed(state: RetryCallState) -> None:
            self._kafka_ok = False
            self.metrics.publish_retries.inc()
            log.warning(
                "Kafka did not confirm a reading; retrying",
                topic=out.topic,
                error=str(failure(state)),
                delay=round(next_wait(state), 2),
            )

        started = time.perf_counter()
        async for attempt in async_retrying(
            self._kafka_backoff, (PublishError, TimeoutError), before_sleep=unconfirmed
        ):
            with attempt:
                started = time.perf_counter()
                await asyncio.wait_for(
                    producer.publish(out.topic, out.key, out.value, out.headers),
                    self._publish_timeout,
                )
        self._kafka_ok = True
        self.metrics.publish_seconds.observe(time.perf_counter() - started)
        if out.reason is None:
            self.metrics.accepted.inc()
        else:
            self.metrics.rejected.labels(out.reason).inc()
