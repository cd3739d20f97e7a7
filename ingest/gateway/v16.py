"""OCPP 1.6J central system handlers on the shared CALL pipeline (``protocol``).

Every CALL a 1.6 charge point may send is handled: BootNotification, Heartbeat,
StatusNotification (all error codes), Authorize, StartTransaction, MeterValues,
StopTransaction (with transactionData), DataTransfer, DiagnosticsStatusNotification
and FirmwareStatusNotification, and of the security whitepaper extension (schemas
shipped with the ocpp library) SecurityEventNotification. The 1.6-only parts of an
envelope: ``measured_at`` and the normalised facts (``bus.normalized.normalize_v16``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ocpp.routing import on
from ocpp.v16 import ChargePoint
from ocpp.v16 import call_result as cr
from ocpp.v16.datatypes import IdTagInfo
from ocpp.v16.enums import Action, AuthorizationStatus, DataTransferStatus, RegistrationStatus

from bus.normalized import Normalized, normalize_v16
from bus.times import format_rfc3339, parse_rfc3339, utc_now
from ingest.gateway.protocol import CentralSystemBase
from ingest.gateway.remote_start_match import StartSeen
from ingest.gateway.schemas import SchemaSet
from ingest.gateway.services import AuthDecision

OCPP_VERSION = "1.6"
SUBPROTOCOL = "ocpp1.6"
KNOWN_ACTIONS = frozenset(a.value for a in Action)

SCHEMAS = SchemaSet(OCPP_VERSION)


def _id_tag_info(decision: AuthDecision) -> IdTagInfo:
    return IdTagInfo(
        status=AuthorizationStatus(decision.status),
        parent_id_tag=decision.parent_id_tag,
        expiry_date=None if decision.expiry_date is None else format_rfc3339(decision.expiry_date),
    )


def measured_at(action: str, payload: dict[str, Any], received_at: datetime) -> datetime:
    """The payload's own time of measurement where it has one, else ``received_at``."""
    try:
        if action in (
            "StartTransaction",
            "StopTransaction",
            "StatusNotification",
            "SecurityEventNotification",
        ):
            stamp = payload.get("timestamp")
            return parse_rfc3339(stamp) if isinstance(stamp, str) else received_at
        if action == "MeterValues":
            stamps = [parse_rfc3339(mv["timestamp"]) for mv in payload.get("meterValue", [])]
            return max(stamps) if stamps else received_at
    except (ValueError, KeyError, TypeError):
        return received_at
    return received_at


class CentralSystemV16(CentralSystemBase, ChargePoint):
    """One connected OCPP 1.6J charge point, seen from the central system."""

    OCPP_VERSION = OCPP_VERSION
    SCHEMAS = SCHEMAS
    KNOWN_ACTIONS = KNOWN_ACTIONS

    def measured_at(self, action: str, payload: dict[str, Any], received_at: datetime) -> datetime:
        return measured_at(action, payload, received_at)

    def normalize(
        self, action: str, payload: dict[str, Any], response: dict[str, Any], received_at: datetime
    ) -> list[Normalized]:
        return normalize_v16(self.id, action, payload, response, received_at)

    # ---------------------------------------------------------------- handlers

    @on(Action.boot_notification)
    async def on_boot_notification(
        self,
        charge_point_vendor: str,
        charge_point_model: str,
        charge_point_serial_number: str | None = None,
        charge_box_serial_number: str | None = None,
        firmware_version: str | None = None,
        **_: Any,
    ) -> cr.BootNotification:
        self._record_boot(
            vendor=charge_point_vendor,
            model=charge_point_model,
            serial_number=charge_point_serial_number or charge_box_serial_number,
            firmware_version=firmware_version,
        )
        return cr.BootNotification(
            current_time=format_rfc3339(utc_now()),
            interval=self.services.heartbeat_interval_s,
            status=RegistrationStatus.accepted,
        )

    @on(Action.heartbeat)
    async def on_heartbeat(self) -> cr.Heartbeat:
        self._touch()
        return cr.Heartbeat(current_time=format_rfc3339(utc_now()))

    @on(Action.status_notification)
    async def on_status_notification(
        self,
        connector_id: int,
        error_code: str,
        status: str,
        timestamp: str | None = None,
        **_: Any,
    ) -> cr.StatusNotification:
        at = parse_rfc3339(timestamp) if timestamp else self.ctx.received_at
        self._record_connector_status(connector_id, str(status), str(error_code), at)
        self._touch()
        return cr.StatusNotification()

    @on(Action.authorize)
    async def on_authorize(self, id_tag: str) -> cr.Authorize:
        self._touch()
        return cr.Authorize(id_tag_info=_id_tag_info(await self.services.authorize(id_tag)))

    @on(Action.start_transaction)
    async def on_start_transaction(
        self,
        connector_id: int,
        id_tag: str,
        meter_start: int,
        timestamp: str,
        **_: Any,
    ) -> cr.StartTransaction:
        decision = await self.services.authorize_start(
            id_tag, self.id, connector_id=connector_id, transaction_id=None
        )
        transaction_id = await self.services.next_transaction_id()
        self._touch()
        if decision.status == "Accepted":
            self._open_transaction(str(transaction_id), connector_id, id_tag, self.ctx.received_at)
        started = StartSeen(
            connector_id,
            id_tag,
            self.measured_at("StartTransaction", {"timestamp": timestamp}, self.ctx.received_at),
        )
        self._link_remote_start(
            lambda: self.services.link_start_v16(self.id, started, str(transaction_id))
        )
        return cr.StartTransaction(
            transaction_id=transaction_id, id_tag_info=_id_tag_info(decision)
        )

    @on(Action.meter_values)
    async def on_meter_values(
        self, connector_id: int, meter_value: list[Any], **_: Any
    ) -> cr.MeterValues:
        self._touch()
        return cr.MeterValues()

    @on(Action.stop_transaction)
    async def on_stop_transaction(
        self,
        meter_stop: int,
        timestamp: str,
        transaction_id: int,
        id_tag: str | None = None,
        **_: Any,
    ) -> cr.StopTransaction:
        self._touch()
        self._close_transaction(str(transaction_id))
        if id_tag is None:
            return cr.StopTransaction()
        return cr.StopTransaction(id_tag_info=_id_tag_info(await self.services.authorize(id_tag)))

    @on(Action.security_event_notification)
    async def on_security_event_notification(self, **_: Any) -> cr.SecurityEventNotification:
        self._touch()
        return cr.SecurityEventNotification()

    @on(Action.data_transfer)
    async def on_data_transfer(self, vendor_id: str, **_: Any) -> cr.DataTransfer:
        self._touch()
        return cr.DataTransfer(
            status=DataTransferStatus(self.services.data_transfer_status(vendor_id))
        )

    @on(Action.diagnostics_status_notification)
    async def on_diagnostics_status_notification(
        self, status: str
    ) -> cr.DiagnosticsStatusNotification:
        self._touch()
        return cr.DiagnosticsStatusNotification()

    @on(Action.firmware_status_notification)
    async def on_firmware_status_notification(self, status: str) -> cr.FirmwareStatusNotification:
        self._touch()
        self._record_firmware_status(status)
        return cr.FirmwareStatusNotification()
