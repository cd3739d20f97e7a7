"""The smart-meter MQTT bridge: MQTT readings in, envelopes on ``meter.readings`` out.

Per MQTT message, in arrival order:

1. validate the payload (``ingest.meters.reading``) and look the meter up in the
   registry (``directory``: ``store.meters``, cached); ``outgoing`` builds what is sent;
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

import aiomqtt
import psycopg
import structlog
from prometheus_client import (
    CollectorRegistry,
)
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from tenacity import RetryCallState

from bus.producer import Producer, PublishError, producer_config
from ingest.meters.config import BridgeConfig
from ingest.meters.directory import MeterDirectory
from ingest.meters.metrics import BridgeMetrics
from ingest.meters.outgoing import Outgoing, prepare
from runtime.health import HealthServer
from runtime.retry import DATABASE, KAFKA, MQTT, async_retrying, failure, next_wait
from runtime.tasks import cancel_and_wait
from store.meters import MeterRecord

log = structlog.get_logger("chargeflow.meters")


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
        await cancel_and_wait(*self._deliveries)
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
            outgoing = await prepare(message, self.config, self._lookup)
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

    async def _deliver(self, out: Outgoing) -> None:
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
