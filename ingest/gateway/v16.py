"""OCPP 1.6J central system handlers. Transport-free: ``connection`` only needs
``async send(str)``; the server feeds received frames to ``route_message``.

Per CALL: frame check -> action known? -> schema check -> ``@on`` handler builds
the CALLRESULT (reads only: id tags, transaction id) -> the event is published
to Kafka -> registry writes queued by the handler run -> CALLRESULT is sent.
If publishing fails the station gets CALLERROR InternalError and nothing else
happens (a consumed transaction id is simply never used).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from ocpp.charge_point import (
    camel_to_snake_case,
    remove_nones,
    serialize_as_dict,
    snake_to_camel_case,
)
from ocpp.messages import CallError as LibCallError
from ocpp.messages import CallResult as LibCallResult
from ocpp.routing import on
from ocpp.v16 import ChargePoint
from ocpp.v16 import call_result as cr
from ocpp.v16.datatypes import IdTagInfo
from ocpp.v16.enums import Action, AuthorizationStatus, RegistrationStatus

from bus.envelope import Envelope, Kind, new_message_id
from bus.producer import PublishError
from ingest.gateway import framing
from ingest.gateway.schemas import SchemaSet, parse_datetime
from ingest.gateway.services import AuthDecision, GatewayServices, format_datetime, utc_now
from store import registry

OCPP_VERSION = "1.6"
SUBPROTOCOL = "ocpp1.6"
KNOWN_ACTIONS = frozenset(a.value for a in Action)

log = structlog.get_logger("chargeflow.gateway.v16")
_lib_logger = logging.getLogger("chargeflow.gateway.ocpp")

SCHEMAS = SchemaSet(OCPP_VERSION)

Effect = Callable[[], Awaitable[None]]


@dataclass
class _CallContext:
    frame: framing.CallFrame
    received_at: datetime
    effects: list[Effect] = field(default_factory=list)


def _id_tag_info(decision: AuthDecision) -> IdTagInfo:
    return IdTagInfo(
        status=AuthorizationStatus(decision.status),
        parent_id_tag=decision.parent_id_tag,
        expiry_date=None if decision.expiry_date is None else format_datetime(decision.expiry_date),
    )


def measured_at(action: str, payload: dict[str, Any], received_at: datetime) -> datetime:
    """The payload's own time of measurement where it has one, else ``received_at``."""
    try:
        if action in ("StartTransaction", "StopTransaction", "StatusNotification"):
            stamp = payload.get("timestamp")
            return parse_datetime(stamp) if isinstance(stamp, str) else received_at
        if action == "MeterValues":
            stamps = [parse_datetime(mv["timestamp"]) for mv in payload.get("meterValue", [])]
            return max(stamps) if stamps else received_at
    except (ValueError, KeyError, TypeError):
        return received_at
    return received_at


class CentralSystemV16(ChargePoint):
    """One connected OCPP 1.6J charge point, seen from the central system."""

    def __init__(self, charge_point_id: str, connection: Any, services: GatewayServices) -> None:
        super().__init__(charge_point_id, connection, logger=_lib_logger)
        self.services = services
        self._ctx: _CallContext | None = None
        self.log = log.bind(charge_point_id=charge_point_id)

    # ----------------------------------------------------------------- routing

    async def start(self) -> None:  # pragma: no cover - the server drives route_message
        raise RuntimeError("the gateway server feeds frames to route_message()")

    async def route_message(self, raw_msg: str | bytes) -> None:
        received_at = utc_now()
        frame = framing.parse_frame(raw_msg)
        metrics = self.services.metrics
        if isinstance(frame, framing.FrameError):
            metrics.frame_errors.labels(frame.error_code).inc()
            self.log.warning("bad frame", code=frame.error_code, reason=frame.description)
            await self._send(framing.call_error(frame.unique_id, frame.error_code,
                                                frame.description))
            return
        if isinstance(frame, framing.CallResultFrame):
            self._response_queue.put_nowait(LibCallResult(frame.unique_id, frame.payload))
            return
        if isinstance(frame, framing.CallErrorFrame):
            self._response_queue.put_nowait(LibCallError(
                frame.unique_id, frame.error_code, frame.error_description, frame.error_details))
            return
        outcome = await self._handle_frame(frame, received_at)
        metrics.calls.labels(frame.action if frame.action in KNOWN_ACTIONS else "unknown",
                             outcome).inc()

    async def _reply_error(self, frame: framing.CallFrame, code: str, description: str) -> str:
        await self._send(framing.call_error(frame.unique_id, code, description[:500]))
        return code

    async def _handle_frame(self, frame: framing.CallFrame, received_at: datetime) -> str:
        """Answer one CALL; returns the outcome for metrics."""
        action = frame.action
        if action not in KNOWN_ACTIONS:
            return await self._reply_error(
                frame, "NotImplemented", f"action {action!r} is not known by the receiver")
        handlers = self.route_map.get(action)
        if handlers is None or "_on_action" not in handlers:
            return await self._reply_error(
                frame, "NotSupported", f"{action} is recognized but not supported")
        violation = SCHEMAS.validate(action, frame.payload)
        if violation is not None:
            self.log.info("invalid payload", action=action, code=violation.code)
            return await self._reply_error(frame, violation.code, violation.description)

        ctx = _CallContext(frame, received_at)
        self._ctx = ctx
        try:
            result = await handlers["_on_action"](**camel_to_snake_case(frame.payload))
        except Exception:
            self.log.exception("handler failed", action=action)
            return await self._reply_error(frame, "InternalError", "could not process the call")
        finally:
            self._ctx = None

        # The exact JSON the station will receive.
        response = json.loads(json.dumps(
            snake_to_camel_case(remove_nones(serialize_as_dict(result)))))
        bad_response = SCHEMAS.validate(action, response, response=True)
        if bad_response is not None:
            self.log.error("handler built an invalid response", action=action,
                           reason=bad_response.description)
            return await self._reply_error(frame, "InternalError", "could not build a response")

        envelope = Envelope(
            message_id=new_message_id(), charge_point_id=self.id, received_at=received_at,
            measured_at=measured_at(action, frame.payload, received_at), kind=Kind.OCPP_CALL,
            ocpp_version=OCPP_VERSION, action=action, unique_id=frame.unique_id,
            payload=frame.payload, response=response,
        )
        try:
            await self.services.publish(envelope)
        except PublishError as exc:
            self.log.warning("event not stored, answering InternalError", action=action,
                             error=str(exc))
            return await self._reply_error(
                frame, "InternalError", "event could not be stored; retry later")

        for effect in ctx.effects:
            try:
                await effect()
            except Exception:  # the event is in Kafka; the registry is a convenience view
                self.log.exception("registry update failed", action=action)
        await self._send(framing.call_result(frame.unique_id, response))
        return "ok"

    def _after_publish(self, effect: Effect) -> None:
        assert self._ctx is not None
        self._ctx.effects.append(effect)

    def _touch(self) -> None:
        assert self._ctx is not None
        seen = self._ctx.received_at
        self._after_publish(lambda: registry.touch_last_seen(self.services.pool, self.id, seen))

    # ---------------------------------------------------------------- handlers

    @on(Action.boot_notification)
    async def on_boot_notification(
        self, charge_point_vendor: str, charge_point_model: str,
        charge_point_serial_number: str | None = None, charge_box_serial_number: str | None = None,
        firmware_version: str | None = None, **_: Any,
    ) -> cr.BootNotification:
        assert self._ctx is not None
        booted = self._ctx.received_at

        async def record() -> None:
            await registry.upsert_station_boot(
                self.services.pool, self.id, vendor=charge_point_vendor,
                model=charge_point_model,
                serial_number=charge_point_serial_number or charge_box_serial_number,
                firmware_version=firmware_version, ocpp_version=OCPP_VERSION, booted_at=booted,
            )

        self._after_publish(record)
        return cr.BootNotification(
            current_time=format_datetime(utc_now()),
            interval=self.services.heartbeat_interval_s, status=RegistrationStatus.accepted,
        )

    @on(Action.heartbeat)
    async def on_heartbeat(self) -> cr.Heartbeat:
        self._touch()
        return cr.Heartbeat(current_time=format_datetime(utc_now()))

    @on(Action.status_notification)
    async def on_status_notification(
        self, connector_id: int, error_code: str, status: str, timestamp: str | None = None,
        **_: Any,
    ) -> cr.StatusNotification:
        assert self._ctx is not None
        at = parse_datetime(timestamp) if timestamp else self._ctx.received_at

        async def record() -> None:
            await registry.upsert_connector_status(
                self.services.pool, self.id, connector_id, status=str(status),
                error_code=str(error_code), status_at=at)

        self._after_publish(record)
        self._touch()
        return cr.StatusNotification()

    @on(Action.authorize)
    async def on_authorize(self, id_tag: str) -> cr.Authorize:
        self._touch()
        return cr.Authorize(id_tag_info=_id_tag_info(await self.services.authorize(id_tag)))

    @on(Action.start_transaction)
    async def on_start_transaction(
        self, connector_id: int, id_tag: str, meter_start: int, timestamp: str, **_: Any,
    ) -> cr.StartTransaction:
        decision = await self.services.authorize(id_tag)
        transaction_id = await self.services.next_transaction_id()
        self._touch()
        return cr.StartTransaction(transaction_id=transaction_id,
                                   id_tag_info=_id_tag_info(decision))

    @on(Action.meter_values)
    async def on_meter_values(self, connector_id: int, meter_value: list[Any], **_: Any
                              ) -> cr.MeterValues:
        self._touch()
        return cr.MeterValues()

    @on(Action.stop_transaction)
    async def on_stop_transaction(
        self, meter_stop: int, timestamp: str, transaction_id: int, id_tag: str | None = None,
        **_: Any,
    ) -> cr.StopTransaction:
        self._touch()
        if id_tag is None:
            return cr.StopTransaction()
        return cr.StopTransaction(id_tag_info=_id_tag_info(await self.services.authorize(id_tag)))

