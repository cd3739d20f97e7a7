"""The CALL pipeline every OCPP version shares. Transport-free: ``connection`` only
needs ``async send(str)``; the server feeds received frames to ``route_message``.

Per CALL: frame check -> action known? -> schema check -> ``@on`` handler builds
the CALLRESULT (reads only: id tags, transaction id) -> the envelope (raw payload,
answer and the normalised facts) is published to Kafka -> effects queued by the
handler run (registry writes, per-connection state) -> CALLRESULT is sent.
If publishing fails the station gets CALLERROR InternalError and nothing else
happens (a consumed transaction id is simply never used).

Per-CALL cost is kept low: the schema check is a compiled predicate (jsonschema
only explains a failure, see ``schemas``), payload keys are converted through a
per-process cache instead of the ocpp library's regexes, our own answer is checked
against the response schema only with ``validate_responses`` (tests; a handler bug,
not station input, would make it invalid), and ``last_seen_at`` is coalesced
(``services.LastSeen``: one UPDATE per second for every station seen) instead of one
UPDATE per CALL.

Answers from the station (CALLRESULT/CALLERROR) are kept only when they answer the
one CALL the gateway is waiting for on this connection (``expect_answer``; the
commands router sends one CALL at a time per station). Anything else is a stray
answer: dropped and counted (``chargeflow_gateway_stray_answers``), never queued.

A version module subclasses :class:`CentralSystemBase` together with the ocpp
library's ``ChargePoint`` of its version and provides ``OCPP_VERSION``,
``SCHEMAS``, ``KNOWN_ACTIONS``, :meth:`frame_error_answer`, :meth:`measured_at`
and :meth:`normalize`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

import structlog
from ocpp.charge_point import (
    ChargePoint,
)
from ocpp.messages import CallError as LibCallError
from ocpp.messages import CallResult as LibCallResult

from bus.envelope import Envelope, Kind, new_message_id
from bus.normalized import Normalized
from bus.producer import PublishError
from bus.times import utc_now
from ingest.gateway import framing
from ingest.gateway.payloads import response_payload, to_snake_case
from ingest.gateway.schemas import SchemaSet
from ingest.gateway.services import GatewayServices
from store import firmware, id_tokens
from store.station_batches import Boot, ConnectorStatus

log = structlog.get_logger("chargeflow.gateway")
lib_logger = logging.getLogger("chargeflow.gateway.ocpp")

Effect = Callable[[], Awaitable[None]]


class CallRefused(Exception):
    """A CALL answered with CALLERROR ``code`` instead of its CALLRESULT."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(code, description)
        self.code = code
        self.description = description


@dataclass
class CallContext:
    frame: framing.CallFrame
    received_at: datetime
    effects: list[Effect] = field(default_factory=list)
    touched: bool = False


class CentralSystemBase(ChargePoint):
    """One connected charge point, seen from the central system (any OCPP version)."""

    OCPP_VERSION: ClassVar[str]
    SCHEMAS: ClassVar[SchemaSet]
    KNOWN_ACTIONS: ClassVar[frozenset[str]]

    def __init__(self, charge_point_id: str, connection: Any, services: GatewayServices) -> None:
        super().__init__(charge_point_id, connection, logger=lib_logger)
        self.services = services
        self._ctx: CallContext | None = None
        # (message id, future) of the one CALL to the station whose answer we await
        self._awaiting: tuple[str, asyncio.Future[Any]] | None = None
        self.log = log.bind(charge_point_id=charge_point_id, ocpp_version=self.OCPP_VERSION)

    # ------------------------------------------------------ per-version hooks

    def frame_error_answer(self, error: framing.FrameError) -> tuple[str, str]:
        """(message id, error code) of the CALLERROR answering a broken frame."""
        return error.unique_id, error.error_code

    def measured_at(self, action: str, payload: dict[str, Any], received_at: datetime) -> datetime:
        return received_at

    def normalize(
        self, action: str, payload: dict[str, Any], response: dict[str, Any], received_at: datetime
    ) -> list[Normalized]:
        return []

    def on_published(self, facts: list[Normalized]) -> None:
        """Called with the published facts before the answer (per-connection state)."""

    # ----------------------------------------------------------------- routing

    async def start(self) -> None:  # pragma: no cover - the server drives route_message
        raise RuntimeError("the gateway server feeds frames to route_message()")

    @property
    def ctx(self) -> CallContext:
        assert self._ctx is not None, "only inside a handler"
        return self._ctx

    async def route_message(self, raw_msg: str | bytes) -> None:
        received_at = utc_now()
        frame = framing.parse_frame(raw_msg)
        metrics = self.services.metrics
        if isinstance(frame, framing.FrameError):
            unique_id, code = self.frame_error_answer(frame)
            metrics.frame_errors.labels(code).inc()
            self.log.warning("bad frame", code=code, reason=frame.description)
            await self.send_frame(framing.call_error(unique_id, code, frame.description))
            return
        if isinstance(frame, framing.CallResultFrame):
            self._deliver_answer(LibCallResult(frame.unique_id, frame.payload), "callresult")
            return
        if isinstance(frame, framing.CallErrorFrame):
            self._deliver_answer(
                LibCallError(
                    frame.unique_id, frame.error_code, frame.error_description, frame.error_details
                ),
                "callerror",
            )
            return
        outcome = await self._handle_frame(frame, received_at)
        metrics.calls.labels(
            frame.action if frame.action in self.KNOWN_ACTIONS else "unknown", outcome
        ).inc()

    # ------------------------------------------------------ answers to our CALLs

    def expect_answer(self, unique_id: str) -> asyncio.Future[Any]:
        """Register the CALL we are about to send (one at a time per connection);
        its CALLRESULT/CALLERROR will complete the returned future. Register before
        sending, so an immediate answer cannot be missed; ``forget_answer`` after."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        previous = self._awaiting
        if previous is not None and not previous[1].done():
            previous[1].cancel()  # a newer CALL replaces it (callers hold the call lock)
        self._awaiting = (unique_id, future)
        return future

    def forget_answer(self, future: asyncio.Future[Any]) -> None:
        if self._awaiting is not None and self._awaiting[1] is future:
            self._awaiting = None
        if not future.done():
            future.cancel()

    def _deliver_answer(self, answer: LibCallResult | LibCallError, kind: str) -> None:
        awaiting = self._awaiting
        if awaiting is not None and awaiting[0] == answer.unique_id and not awaiting[1].done():
            awaiting[1].set_result(answer)
            self._awaiting = None
            return
        # Answers nothing we are waiting for (never sent, timed out, answered twice).
        self.services.metrics.stray_answers.labels(kind).inc()
        self.log.debug("dropped an answer to no pending call", unique_id=answer.unique_id)

    # ------------------------------------------- the ocpp library's internals, here only
    # What the gateway needs of the library's ChargePoint beyond its public API, wrapped
    # once: the frame writer, the one-CALL-at-a-time lock and the answer hook its ``call``
    # awaits. tests/unit/test_ocpp_library_contract.py fails when the pinned library
    # changes any of them.

    async def send_frame(self, text: str) -> None:
        """Write one OCPP-J frame to the station (the library's writer, which logs it)."""
        await self._send(text)

    @property
    def call_lock(self) -> asyncio.Lock:
        """Held while a CALL of ours is in flight: one at a time per station, shared with
        the library's own ``call``."""
        lock: asyncio.Lock = self._call_lock
        return lock

    async def wait_answer(self, unique_id: str, wait_s: float) -> Any:
        """The station's answer to our CALL ``unique_id`` (``TimeoutError`` after
        ``wait_s``)."""
        return await self._get_specific_response(unique_id, wait_s)

    async def _get_specific_response(self, unique_id: str, wait_s: float) -> Any:
        """The answer to ``unique_id`` (``TimeoutError`` after ``wait_s``); the ocpp
        library's ``call`` awaits this hook, ``wait_answer`` is its public name."""
        awaiting = self._awaiting
        if awaiting is not None and awaiting[0] == unique_id:
            future = awaiting[1]
        else:
            future = self.expect_answer(unique_id)
        try:
            async with asyncio.timeout(wait_s):
                return await future
        finally:
            self.forget_answer(future)

    async def _reply_error(self, frame: framing.CallFrame, code: str, description: str) -> str:
        await self.send_frame(framing.call_error(frame.unique_id, code, description[:500]))
        return code

    async def _handle_frame(self, frame: framing.CallFrame, received_at: datetime) -> str:
        """Answer one CALL; returns the outcome for metrics."""
        try:
            self._check_call(frame)
            ctx = CallContext(frame, received_at)
            response = await self._run_handler(ctx)
            facts = await self._publish_call(frame, response, received_at)
        except CallRefused as refused:
            return await self._reply_error(frame, refused.code, refused.description)
        await self._apply_effects(ctx, facts)
        await self.send_frame(framing.call_result(frame.unique_id, response))
        return "ok"

    def _check_call(self, frame: framing.CallFrame) -> None:
        """Refuse a CALL the gateway does not know, handle or find valid."""
        action = frame.action
        if action not in self.KNOWN_ACTIONS:
            raise CallRefused("NotImplemented", f"action {action!r} is not known by the receiver")
        handlers = self.route_map.get(action)
        if handlers is None or "_on_action" not in handlers:
            raise CallRefused("NotSupported", f"{action} is recognized but not supported")
        violation = self.SCHEMAS.validate(action, frame.payload)
        if violation is not None:
            self.log.info("invalid payload", action=action, code=violation.code)
            raise CallRefused(violation.code, violation.description)

    async def _run_handler(self, ctx: CallContext) -> dict[str, Any]:
        """The ``@on`` handler's answer, as the exact JSON the station will receive."""
        frame = ctx.frame
        action = frame.action
        self._ctx = ctx
        try:
            result = await self.route_map[action]["_on_action"](**to_snake_case(frame.payload))
            response = response_payload(result)
        except Exception:
            self.log.exception("handler failed", action=action)
            raise CallRefused("InternalError", "could not process the call") from None
        finally:
            self._ctx = None

        if self.services.validate_responses:
            bad_response = self.SCHEMAS.validate(action, response, response=True)
            if bad_response is not None:
                self.log.error(
                    "handler built an invalid response",
                    action=action,
                    reason=bad_response.description,
                )
                raise CallRefused("InternalError", "could not build a response")
        return response

    async def _publish_call(
        self, frame: framing.CallFrame, response: dict[str, Any], received_at: datetime
    ) -> list[Normalized] | None:
        """Publish the CALL's envelope (before answering); returns its facts."""
        action = frame.action
        facts: list[Normalized] | None
        try:
            facts = self.normalize(action, frame.payload, response, received_at)
        except Exception:  # never refuse a station's message over our own view of it
            self.log.exception(
                "could not normalise, publishing the raw payload only", action=action
            )
            facts = None
        envelope = Envelope(
            message_id=new_message_id(),
            charge_point_id=self.id,
            received_at=received_at,
            measured_at=self.measured_at(action, frame.payload, received_at),
            kind=Kind.OCPP_CALL,
            ocpp_version=self.OCPP_VERSION,
            action=action,
            unique_id=frame.unique_id,
            payload=frame.payload,
            response=response,
            normalized=facts,
        )
        try:
            await self.services.publish(envelope)
        except PublishError as exc:
            self.log.warning(
                "event not stored, answering InternalError", action=action, error=str(exc)
            )
            raise CallRefused("InternalError", "event could not be stored; retry later") from exc
        return facts

    async def _apply_effects(self, ctx: CallContext, facts: list[Normalized] | None) -> None:
        """After publishing: per-connection state, last seen, the queued registry writes."""
        if facts:
            self.on_published(facts)
        if ctx.touched:
            self.services.last_seen.touch(self.id, ctx.received_at)
        for effect in ctx.effects:
            try:
                await effect()
            except Exception:  # the event is in Kafka; the registry is a convenience view
                self.log.exception("registry update failed", action=ctx.frame.action)

    def _after_publish(self, effect: Effect) -> None:
        self.ctx.effects.append(effect)

    def _touch(self) -> None:
        """After publishing: the station was seen (``last_seen_at``, coalesced)."""
        self.ctx.touched = True

    def _record_boot(
        self, *, vendor: str, model: str, serial_number: str | None, firmware_version: str | None
    ) -> None:
        booted = self.ctx.received_at

        async def record() -> None:
            boot = Boot(
                self.id, vendor, model, serial_number, firmware_version, self.OCPP_VERSION, booted
            )
            await self.services.station_writes.boot.write(boot)

        self._after_publish(record)

    def _record_firmware_status(self, status: str, request_id: int | None = None) -> None:
        """After publishing: the FirmwareStatusNotification, for firmware rollouts."""
        fact = firmware.FirmwareStatus(self.id, status, request_id, self.ctx.received_at)

        async def record() -> None:
            await firmware.record_status(self.services.pool, fact)

        self._after_publish(record)

    def _open_transaction(
        self, transaction_id: str, connector_id: int | None, id_tag: str, started_at: datetime
    ) -> None:
        """After publishing: the id tag is in a transaction (concurrent-use check)."""

        async def record() -> None:
            await id_tokens.open_transaction(
                self.services.pool, self.id, transaction_id, connector_id, id_tag, started_at
            )

        self._after_publish(record)

    def _link_remote_start(self, link: Callable[[], Awaitable[Any]]) -> None:
        """After publishing: match the start to the remote start it belongs to (ADR 0010)."""

        async def record() -> None:
            command_id = await link()
            if command_id is not None:
                self.log.info("remote start linked", command_id=str(command_id))

        self._after_publish(record)

    def _close_transaction(self, transaction_id: str) -> None:
        async def record() -> None:
            await id_tokens.close_transaction(self.services.pool, self.id, transaction_id)

        self._after_publish(record)

    def _record_connector_status(
        self, connector_id: int, status: str, error_code: str, at: datetime
    ) -> None:
        async def record() -> None:
            await self.services.station_writes.connector_status.write(
                ConnectorStatus(self.id, connector_id, status, error_code, at)
            )

        self._after_publish(record)
