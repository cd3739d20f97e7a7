"""Due ``webhook_deliveries`` rows -> signed POSTs, with retries and dead letters.

The loop claims as many due rows as it has free request slots (``concurrency``),
runs one task per request in its own task group and claims again when one finishes,
when the intake queued something or every ``poll_s``. One attempt:

* the body is the alert version's ``fault.alert`` JSON; the headers sign it
  (:mod:`notify.signing`) and carry its delivery id (:func:`notify.policy.delivery_id`);
* a 2xx answer within ``request_timeout_s`` -> ``delivered``; any other answer (3xx
  included: redirects are not followed), a timeout or a connection error -> tried again
  after the backoff (:class:`notify.policy.RetryPolicy`), until ``max_attempts`` tries
  have failed -> a dead letter (the body, ``bus.deadletter`` headers) on the
  dead-letter topic, then ``dead`` with the last error.

Neither the endpoint's secret nor its URL (which may carry a token) is logged or
stored: lines name the endpoint.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import httpx
import msgspec
import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool
from tenacity import RetryCallState

from bus.alerts import FaultAlert, encode_fault_alert
from bus.deadletter import dead_letter_headers
from bus.producer import Producer, PublishError
from notify.config import WebhooksConfig
from notify.metrics import WebhookMetrics
from notify.policy import (
    Endpoint,
    delivery_id,
    exception_error,
    is_success,
    request_headers,
    status_error,
)
from runtime.retry import DATABASE, KAFKA, Backoff, async_retrying, failure, next_wait
from store import webhooks as store
from store.webhooks import DueDelivery

log = structlog.get_logger("chargeflow.webhooks.delivery")

STAGE = "webhooks.delivery"
OUTAGES = (psycopg.OperationalError, PublishError)


class Deliverer:
    def __init__(
        self,
        config: WebhooksConfig,
        pool: AsyncConnectionPool,
        producer: Producer,
        client: httpx.AsyncClient,
        metrics: WebhookMetrics,
    ) -> None:
        self.config = config
        self.pool = pool
        self.producer = producer
        self.client = client
        self.metrics = metrics
        self.policy = config.retry
        self.endpoints = {e.name: e for e in config.endpoints}
        self.wake = asyncio.Event()  # set: look for due rows now
        self._in_flight: set[asyncio.Task[None]] = set()
        self._claim_failures = 0  # claims failed in a row (the database away)

    def nudge(self) -> None:
        self.wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set; then wait up to ``drain_timeout_s`` for the
        requests in flight (the rest are cancelled: their rows come back after the lease)."""
        if not self.endpoints:
            log.info("no webhook endpoints configured: nothing to deliver")
            await stop.wait()
            return
        async with asyncio.TaskGroup() as group:
            while not stop.is_set():
                self.wake.clear()  # before claiming: a nudge from now on is not missed
                free = self.config.concurrency - len(self._in_flight)
                claimed = await self._claim(free) if free > 0 else []
                for due in claimed:
                    task = group.create_task(self._attempt_safely(due), name="webhook-attempt")
                    self._in_flight.add(task)
                    task.add_done_callback(self._finished)
                self.metrics.in_flight.set(len(self._in_flight))
                full = len(self._in_flight) >= self.config.concurrency
                if claimed and not full:
                    continue  # more may be due
                idle = self.config.poll_s
                if self._claim_failures:  # the database is away: back off, log less
                    idle = DATABASE.capped(30.0).delay(self._claim_failures)
                await self._wait(stop, None if full else idle)
            await self._drain()

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self.metrics.in_flight.set(len(self._in_flight))
        self.wake.set()

    async def _wait(self, stop: asyncio.Event, timeout_s: float | None) -> None:
        """Until woken (a request done, rows queued), stopped or ``timeout_s``."""
        stopped = asyncio.ensure_future(stop.wait())
        woken = asyncio.ensure_future(self.wake.wait())
        try:
            await asyncio.wait(
                {stopped, woken}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for future in (stopped, woken):
                future.cancel()
            await asyncio.gather(stopped, woken, return_exceptions=True)

    async def _drain(self) -> None:
        if not self._in_flight:
            return
        log.info("waiting for requests in flight", count=len(self._in_flight))
        _done, pending = await asyncio.wait(
            set(self._in_flight), timeout=self.config.drain_timeout_s
        )
        for task in pending:
            task.cancel()

    async def _claim(self, limit: int) -> list[DueDelivery]:
        try:
            claimed = await store.claim_due(
                self.pool, list(self.endpoints), limit=limit, lease_s=self.config.lease_s
            )
        except psycopg.OperationalError as exc:
            self._claim_failures += 1
            log.warning(
                "claiming deliveries failed, retrying",
                error=str(exc),
                failures=self._claim_failures,
            )
            return []
        self._claim_failures = 0
        return claimed

    # --------------------------------------------------------------- one attempt

    async def _attempt_safely(self, due: DueDelivery) -> None:
        """A bug in one attempt is logged and leaves its row to come back after the
        lease; it never stops the other deliveries."""
        try:
            await self.attempt(due)
        except Exception:
            log.exception("webhook attempt failed unexpectedly", **_about(due))

    async def attempt(self, due: DueDelivery) -> None:
        endpoint = self.endpoints[due.endpoint]
        try:
            body = encode_fault_alert(msgspec.convert(due.payload, FaultAlert))
        except msgspec.ValidationError as exc:  # a row no version of the worker can read
            await self._give_up(due, endpoint, b"{}", f"payload unreadable: {exc}")
            return
        error = await self._post(endpoint, due, body)
        if error is None:
            await self._record(lambda: store.record_delivered(self.pool, due))
            self.metrics.attempts.labels("delivered").inc()
            log.info("webhook delivered", **_about(due))
            return
        delay = self.policy.next_delay(due.attempt)
        if delay is None:
            await self._give_up(due, endpoint, body, error)
            return
        await self._record(lambda: store.record_retry(self.pool, due, error, delay))
        self.metrics.attempts.labels("retry").inc()
        log.warning(
            "webhook attempt failed, retrying", **_about(due), error=error, delay=round(delay, 2)
        )

    async def _post(self, endpoint: Endpoint, due: DueDelivery, body: bytes) -> str | None:
        """None if the receiver took it, else what went wrong (no secret, no URL)."""
        headers = request_headers(
            endpoint,
            body,
            delivery=delivery_id(endpoint.name, due.alert_id, due.version_key),
            attempt=due.attempt,
            timestamp=int(time.time()),
        )
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.config.request_timeout_s):
                async with self.client.stream(
                    "POST", endpoint.url, content=body, headers=headers
                ) as response:
                    status, reason = response.status_code, response.reason_phrase
        except TimeoutError:
            return f"no answer within {self.config.request_timeout_s:g} s"
        except (httpx.HTTPError, OSError) as exc:
            return exception_error(exc, endpoint)
        finally:
            self.metrics.request_seconds.observe(time.monotonic() - started)
        return None if is_success(status) else status_error(status, reason)

    async def _give_up(self, due: DueDelivery, endpoint: Endpoint, body: bytes, error: str) -> None:
        """The dead letter first, then the row: a crash between them repeats the dead
        letter (at least once), never loses it."""
        reason = f"webhook {endpoint.name}: gave up after {due.attempt} attempts: {error}"
        headers = [
            *dead_letter_headers(
                reason, STAGE, topic=self.config.topics.alerts, source=f"webhook:{endpoint.name}"
            ),
            ("webhook.endpoint", endpoint.name.encode()),
            (
                "webhook.delivery",
                delivery_id(endpoint.name, due.alert_id, due.version_key).encode(),
            ),
        ]
        key = str(due.payload.get("station_id", "")).encode() or None
        await self._record(
            lambda: self.producer.publish(self.config.topics.deadletter, key, body, headers), KAFKA
        )
        await self._record(lambda: store.record_dead(self.pool, due, error))
        self.metrics.attempts.labels("dead").inc()
        log.error("webhook delivery dead", **_about(due), error=error)

    async def _record(
        self, action: Callable[[], Awaitable[object]], backoff: Backoff = DATABASE
    ) -> None:
        """Run a write until the database (or Kafka) takes it; outages pass."""

        def failed(state: RetryCallState) -> None:
            log.warning(
                "recording a delivery failed, retrying",
                error=str(failure(state)),
                delay=round(next_wait(state), 2),
            )

        async for attempt in async_retrying(backoff.capped(30.0), OUTAGES, before_sleep=failed):
            with attempt:
                await action()


def _about(due: DueDelivery) -> dict[str, object]:
    """What a log line says about a delivery (the endpoint by name: never its URL)."""
    return {
        "endpoint": due.endpoint,
        "alert_id": due.alert_id,
        "version": due.version_key,
        "attempt": due.attempt,
    }
