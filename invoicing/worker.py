"""The billing process (``chargeflow billing``): reads ``sessions.closed`` at least once
(:class:`bus.reader.TopicReader`), and per batch:

1. invoices each session (:func:`invoicing.invoice.invoice_session`): its CDR stored,
   or the session held for review; a message that cannot be read goes to the dead-letter
   topic with the reason;
2. publishes the batch's CDRs on ``billing.cdrs`` (keyed by charge point; confirmed by
   the broker);
3. captures each billed session's payment, if it has one, for the CDR's total incl. VAT
   (:class:`billing.payments.service.PaymentService`: at most once; a failure is
   retried on the service's schedule, looked for every ``capture_retry_every_s``, then
   flagged for billing). A session that closed before it was pre-authorised but whose
   id tag had a payment method at its start gets its final cost authorised first
   (:func:`invoicing.preauth.authorize_at_close`);
4. only then commits the batch's offsets.

Every ``review_poll_s`` it also carries out billing clerks' decisions on held sessions
(:class:`invoicing.reviews.ReviewSettler`: a released or corrected session's CDR stored,
published and captured the same way; a written-off one's payment hold released). Every
``preauth_poll_s``, active sessions whose id tag has a payment method are
pre-authorised (:mod:`invoicing.preauth`), so the capture at close finds the hold.

A crash re-reads at most the last batch: the CDR ids come from the sessions, so nothing
is stored twice; the CDRs are published again (consumers keep one per id); a capture
already made is answered from its row.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
import psycopg
import structlog
from confluent_kafka import KafkaException, Message
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from billing.cdrs import CdrParty
from billing.money import to_minor
from billing.payments.postpaid import PostpaidProvider
from billing.payments.provider import PaymentError, PaymentProvider
from billing.payments.service import PaymentService
from billing.payments.wallet import WalletProvider
from billing.preview import encode_cdr
from bus.deadletter import dead_letter_headers
from bus.producer import Producer, PublishError, producer_config
from bus.reader import TopicReader, until_stopped
from bus.sessions import decode_session_closed
from invoicing.config import InvoicingConfig
from invoicing.invoice import Invoiced, invoice_session
from invoicing.preauth import Preauthorizer, authorize_at_close
from invoicing.reviews import ReviewSettler
from runtime.health import HealthServer
from runtime.logs import with_kafka_logger
from runtime.retry import Backoff
from store import payment_methods as method_store
from store.db import answers, worker_pool
from store.payments import SessionPayment

log = structlog.get_logger("chargeflow.billing")

STAGE = "billing.invoice"
OUTAGES = (psycopg.OperationalError, PublishError, KafkaException)


class InvoicingWorker:
    def __init__(
        self,
        config: InvoicingConfig,
        *,
        stripe: PaymentProvider | None = None,
        poll_s: float = 0.5,
    ) -> None:
        self.config = config
        self.party = CdrParty(config.country_code, config.party_id)
        self.stripe = stripe
        self.poll_s = poll_s
        self._stop = asyncio.Event()
        self.invoiced = 0  # sessions handled (billed or held), for tests and logs
        self.reviews = ReviewSettler(self.party, retry_after_s=config.review_retry_s)
        self._reviews_at = 0.0  # time.monotonic() when decisions are looked for next
        self.preauthorizer: Preauthorizer | None = None  # made by run()
        self.health: HealthServer | None = None
        if config.http_port is not None:
            self.health = HealthServer(host=config.http_host, port=config.http_port, name="billing")

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        cfg = self.config
        pool: AsyncConnectionPool[Any] = worker_pool(cfg.database_url, "billing")
        payments_pool: ConnectionPool[Any] = ConnectionPool(
            cfg.database_url, min_size=0, max_size=4, open=False, name="billing-payments"
        )
        producer = Producer(with_kafka_logger(producer_config(cfg.kafka_bootstrap)))
        reader = TopicReader(
            cfg.kafka_bootstrap, cfg.topics.sessions_closed, cfg.consumer_group, poll_s=self.poll_s
        )
        payments_pool.open(wait=False)
        providers: dict[str, PaymentProvider] = {
            "wallet": WalletProvider(payments_pool),
            "postpaid": PostpaidProvider(payments_pool),
        }
        if self.stripe is not None:
            providers["stripe"] = self.stripe
        payments = PaymentService(
            payments_pool,
            providers,
            max_attempts=cfg.capture_max_attempts,
            backoff=Backoff(cfg.capture_retry_initial_s, cfg.capture_retry_max_s),
        )
        self.preauthorizer = Preauthorizer(payments, cfg.preauth_estimate_minor)
        try:
            async with pool:
                producer.start()
                log.info("billing worker started", topic=cfg.topics.sessions_closed)

                async def assign() -> None:
                    log.info("reading closed sessions", positions=await reader.assign())

                try:
                    async with asyncio.TaskGroup() as group:
                        health = self._serve_health(group, pool)
                        try:
                            if await until_stopped(
                                assign, "reading sessions.closed", self._stop, OUTAGES
                            ):
                                await self._loop(pool, producer, payments, reader)
                        finally:
                            await self._stop_health(health)
                finally:
                    await producer.aclose()
        finally:
            await reader.close()
            await asyncio.to_thread(payments_pool.close)
            log.info("billing worker stopped", invoiced=self.invoiced)

    def _serve_health(
        self, group: asyncio.TaskGroup, pool: AsyncConnectionPool[Any]
    ) -> asyncio.Task[None] | None:
        """/livez, /readyz (the database answers) and /metrics, while the worker runs."""
        if self.health is None:
            return None
        self.health.add_check("database", lambda: answers(pool))
        port = self.health.bind()
        log.info("health and metrics", url=f"http://{self.config.http_host}:{port}")
        return group.create_task(self.health.serve(), name="billing-health")

    async def _stop_health(self, task: asyncio.Task[None] | None) -> None:
        if task is None or self.health is None:
            return
        self.health.stop()
        await asyncio.wait([task], timeout=5)
        task.cancel()  # a server that had not started yet: stop() found nothing to stop

    async def _loop(
        self,
        pool: AsyncConnectionPool[Any],
        producer: Producer,
        payments: PaymentService,
        reader: TopicReader,
    ) -> None:
        retry_at = preauth_at = time.monotonic()
        assert self.preauthorizer is not None
        while not self._stop.is_set():
            if time.monotonic() >= preauth_at:  # sessions started since the last look
                await self.preauthorizer.run(pool)
                preauth_at = time.monotonic() + self.config.preauth_poll_s
            if time.monotonic() >= retry_at:  # failed captures whose next try is due
                retried = await asyncio.to_thread(payments.retry_due)
                if retried:
                    log.info("captures retried", count=len(retried))
                retry_at = time.monotonic() + self.config.capture_retry_every_s
            if not await self._settle_reviews_when_due(pool, producer, payments):
                return
            messages = await reader.read()
            if not messages:
                continue
            batch = self._batch(pool, producer, payments, reader, messages)
            if not await until_stopped(batch, "billing sessions", self._stop, OUTAGES):
                return

    def _batch(
        self,
        pool: AsyncConnectionPool[Any],
        producer: Producer,
        payments: PaymentService,
        reader: TopicReader,
        messages: list[Message],
    ) -> Any:
        async def handle() -> None:
            done: list[Invoiced] = []
            for msg in messages:
                try:
                    session = decode_session_closed(msg.value() or b"")
                except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                    await self._deadletter(producer, msg, f"not a closed session: {exc}")
                    continue
                done.append(await invoice_session(pool, session, self.party))
            # The batch's CDRs in flight together (each confirmed by the broker).
            await asyncio.gather(
                *(
                    producer.publish(
                        self.config.topics.billing_cdrs,
                        outcome.session.charge_point_id.encode(),
                        encode_cdr(issued),
                    )
                    for outcome in done
                    for issued in (outcome.credit, outcome.cdr)
                    if issued is not None
                )
            )
            for outcome in done:
                if outcome.cdr is not None:
                    await self._settle(pool, payments, outcome)
            await reader.commit(messages)
            self.invoiced += len(done)

        return handle

    async def _settle(
        self, pool: AsyncConnectionPool[Any], payments: PaymentService, outcome: Invoiced
    ) -> None:
        assert outcome.cdr is not None
        session = outcome.session
        payment = await asyncio.to_thread(payments.get, session.session_id)
        if payment is None:  # closed before a pre-authorisation pass saw it active?
            method = await method_store.method_at_start(pool, session.id_tag, session.started_at)
            if method is None:
                return  # not paid through us (no payment method when it started)
            currency = outcome.cdr["currency"]
            total = to_minor(outcome.cdr["total_cost"]["incl_vat"], currency)
            payment = await asyncio.to_thread(
                authorize_at_close, payments, session.session_id, method, currency, total
            )
            if payment is None:
                return
        await asyncio.to_thread(self._capture_payment, payments, outcome, payment)

    async def _settle_reviews_when_due(
        self, pool: AsyncConnectionPool[Any], producer: Producer, payments: PaymentService
    ) -> bool:
        """Billing clerks' decisions carried out, every ``review_poll_s``; False if a stop
        came during an outage."""
        if time.monotonic() < self._reviews_at:
            return True

        async def publish(outcome: Invoiced) -> None:
            key = outcome.session.charge_point_id.encode()
            for issued in (outcome.credit, outcome.cdr):
                if issued is not None:
                    await producer.publish(self.config.topics.billing_cdrs, key, encode_cdr(issued))

        async def settle() -> None:
            settled = await self.reviews.settle_due(
                pool, payments, publish, lambda outcome: self._capture(payments, outcome)
            )
            if settled:
                log.info("review decisions carried out", count=settled)

        done = await until_stopped(settle, "carrying out review decisions", self._stop, OUTAGES)
        self._reviews_at = time.monotonic() + self.config.review_poll_s
        return done

    def _capture(self, payments: PaymentService, outcome: Invoiced) -> None:
        """A clerk's released or corrected session: its payment captured, if it has one."""
        payment = payments.get(outcome.session.session_id)
        if payment is not None:
            self._capture_payment(payments, outcome, payment)

    def _capture_payment(
        self, payments: PaymentService, outcome: Invoiced, payment: SessionPayment
    ) -> None:
        assert outcome.cdr is not None
        session_id = outcome.session.session_id
        currency = outcome.cdr["currency"]
        if payment.currency != currency:
            log.warning(
                "payment in another currency than the CDR; not captured",
                session_id=session_id,
                payment_currency=payment.currency,
                cdr_currency=currency,
            )
            return
        total = to_minor(outcome.cdr["total_cost"]["incl_vat"], currency)
        try:
            payments.capture(session_id, total)
        except PaymentError as exc:  # the service recorded it; billing sees it flagged
            log.warning("capture not possible", session_id=session_id, error=str(exc))

    async def _deadletter(self, producer: Producer, msg: Message, reason: str) -> None:
        topic = self.config.topics.sessions_closed
        log.warning("unreadable closed session dead-lettered", reason=reason[:300])
        headers = dead_letter_headers(
            reason, STAGE, topic=topic, partition=msg.partition(), offset=msg.offset()
        )
        await producer.publish(
            self.config.topics.deadletter, msg.key(), msg.value() or b"", headers
        )
