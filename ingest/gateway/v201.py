"""OCPP 2.0.1 central system (CSMS) handlers on the shared CALL pipeline (``protocol``).

Handled: BootNotification, Heartbeat, StatusNotification, Authorize,
TransactionEvent, MeterValues, NotifyEvent, NotifyReport, NotifyEVChargingNeeds
(answered Processing; the needs go to the smart-charging flow as a normalised fact),
SecurityEventNotification, FirmwareStatusNotification, LogStatusNotification,
DataTransfer. Other 2.0.1 actions a station may send get NotSupported; unknown
actions NotImplemented.

Decisions:
- Broken frames (OCPP 2.0.1 part 4): a frame that is not JSON, not an array or
  whose message id cannot be read -> ``RpcFrameworkError`` with message id ``"-1"``
  (nothing from an unparseable frame is trusted, not even an id-looking prefix);
  an array with a bad structure -> ``RpcFrameworkError`` with its message id; an
  unknown MessageTypeId -> ``MessageTypeNotSupported``; a CALL payload that is not
  an object, or a frame nesting deeper than ``framing.MAX_NESTING_DEPTH`` (message
  id read from the frame's start where possible) -> ``FormatViolation``. Payload
  errors: see ``schemas`` (2.0.1 codes).
- id tokens are looked up by ``idToken.idToken`` in the same ``id_tags`` list as
  1.6 id tags, whatever their type; the stored parent id tag is answered as
  ``groupIdToken`` (type Central), the expiry as ``cacheExpiryDateTime``. A
  ``NoAuthorization`` token (free vend, configured on the station) is Accepted.
- TransactionEvent answers ``idTokenInfo`` exactly when the event has an idToken.
  Transaction ids are the station's own strings; no sequence is drawn.
- The station registry records ``ocpp_version = "2.0.1"`` on BootNotification
  (vendorName/model/serialNumber/firmwareVersion). A StatusNotification updates
  the ``connectors`` row of its ``evseId`` (a 1.6 connector is an EVSE) with the
  normalised status; 2.0.1 has no error code there, so ``error_code`` is
  ``NoError``, or ``OtherError`` for Faulted (details arrive as NotifyEvent).
- ``measured_at``: ``timestamp`` (StatusNotification, TransactionEvent,
  SecurityEventNotification), the latest meterValue timestamp (MeterValues),
  ``generatedAt`` (NotifyEvent, NotifyReport), else the time received.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ocpp.routing import on
from ocpp.v201 import ChargePoint
from ocpp.v201 import call_result as cr
from ocpp.v201.datatypes import IdTokenInfoType, IdTokenType
from ocpp.v201.enums import (
    Action,
    AuthorizationStatusEnumType,
    DataTransferStatusEnumType,
    IdTokenEnumType,
    NotifyEVChargingNeedsStatusEnumType,
    RegistrationStatusEnumType,
)

from bus.normalized import EvseStates, Normalized, normalize_v201, status_from_v201
from bus.times import format_rfc3339, parse_rfc3339, utc_now
from ingest.gateway import framing
from ingest.gateway.protocol import CentralSystemBase
from ingest.gateway.remote_start_match import remote_start_id_of
from ingest.gateway.schemas import SchemaSet
from ingest.gateway.services import AuthDecision

OCPP_VERSION = "2.0.1"
SUBPROTOCOL = "ocpp2.0.1"
KNOWN_ACTIONS = frozenset(a.value for a in Action)

SCHEMAS = SchemaSet(OCPP_VERSION)

_FRAME_ERRORS = {  # FrameError.fault -> (use the frame's message id?, 2.0.1 error code)
    "encoding": (False, "RpcFrameworkError"),
    "json": (False, "RpcFrameworkError"),
    "not_array": (False, "RpcFrameworkError"),
    "unique_id": (False, "RpcFrameworkError"),
    "message_type_id": (True, "RpcFrameworkError"),
    "structure": (True, "RpcFrameworkError"),
    "message_type": (True, "MessageTypeNotSupported"),
    "payload": (True, "FormatViolation"),
    "depth": (True, "FormatViolation"),  # nests too deep: the id is read from its start
}


def frame_error_answer(error: framing.FrameError) -> tuple[str, str]:
    """(message id, error code) answering a broken frame under OCPP 2.0.1."""
    keep_id, code = _FRAME_ERRORS.get(error.fault, (True, "RpcFrameworkError"))
    return (error.unique_id if keep_id else framing.UNKNOWN_UNIQUE_ID), code


def measured_at(action: str, payload: dict[str, Any], received_at: datetime) -> datetime:
    """The payload's own time where it has one, else ``received_at``."""
    try:
        if action in ("StatusNotification", "TransactionEvent", "SecurityEventNotification"):
            return parse_rfc3339(payload["timestamp"])
        if action in ("NotifyEvent", "NotifyReport"):
            return parse_rfc3339(payload["generatedAt"])
        if action == "MeterValues":
            stamps = [parse_rfc3339(mv["timestamp"]) for mv in payload.get("meterValue", [])]
            return max(stamps) if stamps else received_at
    except (ValueError, KeyError, TypeError):
        return received_at
    return received_at


def id_token_info(decision: AuthDecision) -> IdTokenInfoType:
    return IdTokenInfoType(
        status=AuthorizationStatusEnumType(decision.status),
        cache_expiry_date_time=(
            None if decision.expiry_date is None else format_rfc3339(decision.expiry_date)
        ),
        group_id_token=(
            None
            if decision.parent_id_tag is None
            else IdTokenType(id_token=decision.parent_id_tag, type=IdTokenEnumType.central)
        ),
    )


class CentralSystemV201(CentralSystemBase, ChargePoint):
    """One connected OCPP 2.0.1 charging station, seen from the CSMS."""

    OCPP_VERSION = OCPP_VERSION
    SCHEMAS = SCHEMAS
    KNOWN_ACTIONS = KNOWN_ACTIONS

    def __init__(self, charge_point_id: str, connection: Any, services: Any) -> None:
        super().__init__(charge_point_id, connection, services)
        # Transaction state per EVSE seen on this connection (refines "Occupied").
        self.evse_states = EvseStates()

    def frame_error_answer(self, error: framing.FrameError) -> tuple[str, str]:
        return frame_error_answer(error)

    def measured_at(self, action: str, payload: dict[str, Any], received_at: datetime) -> datetime:
        return measured_at(action, payload, received_at)

    def normalize(
        self, action: str, payload: dict[str, Any], response: dict[str, Any], received_at: datetime
    ) -> list[Normalized]:
        return normalize_v201(self.id, action, payload, response, received_at, self.evse_states)

    def on_published(self, facts: list[Normalized]) -> None:
        self.evse_states.apply(facts)

    async def _authorize_token(self, token: dict[str, Any]) -> IdTokenInfoType:
        if token.get("type") == IdTokenEnumType.no_authorization:
            return IdTokenInfoType(status=AuthorizationStatusEnumType.accepted)
        return id_token_info(await self.services.authorize(str(token.get("id_token", ""))))

    async def _authorize_transaction_token(
        self, token: dict[str, Any], transaction_id: str, evse_id: int | None
    ) -> IdTokenInfoType:
        """A token that (re)authorises an ongoing transaction: the list, then concurrent
        use (ConcurrentTx when the token is in another open transaction)."""
        if token.get("type") == IdTokenEnumType.no_authorization:
            return IdTokenInfoType(status=AuthorizationStatusEnumType.accepted)
        id_token = str(token.get("id_token", ""))
        decision = await self.services.authorize_start(
            id_token, self.id, connector_id=evse_id, transaction_id=transaction_id
        )
        if decision.status == "Accepted":
            self._open_transaction(transaction_id, evse_id, id_token, self.ctx.received_at)
        return id_token_info(decision)

    # ---------------------------------------------------------------- handlers

    @on(Action.boot_notification)
    async def on_boot_notification(
        self, charging_station: dict[str, Any], reason: str, **_: Any
    ) -> cr.BootNotification:
        self._record_boot(
            vendor=str(charging_station["vendor_name"]),
            model=str(charging_station["model"]),
            serial_number=charging_station.get("serial_number"),
            firmware_version=charging_station.get("firmware_version"),
        )
        return cr.BootNotification(
            current_time=format_rfc3339(utc_now()),
            interval=self.services.heartbeat_interval_s,
            status=RegistrationStatusEnumType.accepted,
        )

    @on(Action.heartbeat)
    async def on_heartbeat(self, **_: Any) -> cr.Heartbeat:
        self._touch()
        return cr.Heartbeat(current_time=format_rfc3339(utc_now()))

    @on(Action.status_notification)
    async def on_status_notification(
        self, timestamp: str, connector_status: str, evse_id: int, connector_id: int, **_: Any
    ) -> cr.StatusNotification:
        status = status_from_v201(str(connector_status), self.evse_states.get(evse_id))
        error_code = "OtherError" if status == "Faulted" else "NoError"
        self._record_connector_status(evse_id, status, error_code, parse_rfc3339(timestamp))
        self._touch()
        return cr.StatusNotification()

    @on(Action.authorize)
    async def on_authorize(self, id_token: dict[str, Any], **_: Any) -> cr.Authorize:
        self._touch()
        return cr.Authorize(id_token_info=await self._authorize_token(id_token))

    @on(Action.transaction_event)
    async def on_transaction_event(
        self,
        event_type: str,
        transaction_info: dict[str, Any],
        id_token: dict[str, Any] | None = None,
        evse: dict[str, Any] | None = None,
        **_: Any,
    ) -> cr.TransactionEvent:
        """Started/Updated with an idToken: authorise it for this transaction
        (ConcurrentTx possible, remembered as open); Ended: forget the open
        transaction, a stop token is checked against the list only."""
        self._touch()
        transaction_id = str(transaction_info["transaction_id"])
        remote_start_id = remote_start_id_of(transaction_info)
        if remote_start_id is not None:
            self._link_remote_start(
                lambda: self.services.link_start_v201(self.id, remote_start_id, transaction_id)
            )
        if event_type == "Ended":
            self._close_transaction(transaction_id)
            if id_token is None:
                return cr.TransactionEvent()
            return cr.TransactionEvent(id_token_info=await self._authorize_token(id_token))
        if id_token is None:
            return cr.TransactionEvent()
        evse_id = evse.get("id") if evse else None
        return cr.TransactionEvent(
            id_token_info=await self._authorize_transaction_token(
                id_token, transaction_id, evse_id if isinstance(evse_id, int) else None
            )
        )

    @on(Action.meter_values)
    async def on_meter_values(
        self, evse_id: int, meter_value: list[Any], **_: Any
    ) -> cr.MeterValues:
        self._touch()
        return cr.MeterValues()

    @on(Action.notify_event)
    async def on_notify_event(self, **_: Any) -> cr.NotifyEvent:
        self._touch()
        return cr.NotifyEvent()

    @on(Action.notify_ev_charging_needs)
    async def on_notify_ev_charging_needs(self, **_: Any) -> cr.NotifyEVChargingNeeds:
        """Processing: whether and when a schedule follows is the smart-charging flow's
        decision (a TxProfile on its next round for a session on a site it manages),
        taken after the needs reach it on ``ocpp.events``."""
        self._touch()
        return cr.NotifyEVChargingNeeds(status=NotifyEVChargingNeedsStatusEnumType.processing)

    @on(Action.notify_report)
    async def on_notify_report(self, **_: Any) -> cr.NotifyReport:
        self._touch()
        return cr.NotifyReport()

    @on(Action.security_event_notification)
    async def on_security_event_notification(self, **_: Any) -> cr.SecurityEventNotification:
        self._touch()
        return cr.SecurityEventNotification()

    @on(Action.firmware_status_notification)
    async def on_firmware_status_notification(
        self, status: str, request_id: int | None = None, **_: Any
    ) -> cr.FirmwareStatusNotification:
        self._touch()
        self._record_firmware_status(status, request_id)
        return cr.FirmwareStatusNotification()

    @on(Action.log_status_notification)
    async def on_log_status_notification(self, **_: Any) -> cr.LogStatusNotification:
        self._touch()
        return cr.LogStatusNotification()

    @on(Action.data_transfer)
    async def on_data_transfer(self, vendor_id: str, **_: Any) -> cr.DataTransfer:
        self._touch()
        return cr.DataTransfer(
            status=DataTransferStatusEnumType(self.services.data_transfer_status(vendor_id))
        )
