"""The typed command bodies as the OCPP request of the station's version: one meaning,
two wire forms (pure). ``remote_start_id`` is the 2.0.1 ``remoteStartId`` the caller
drew for the command (ignored for 1.6). The smart charging, configuration, diagnostics,
reservation and local list bodies have their forms in ``api.command_forms``.

>>> from api.schemas.commands import ResetCreate, RemoteStartCreate
>>> ocpp_request(ResetCreate(type="hard"), "2.0.1")
('Reset', {'type': 'Immediate'})
>>> ocpp_request(RemoteStartCreate(id_tag="T1", connector_id=2), "1.6")
('RemoteStartTransaction', {'idTag': 'T1', 'connectorId': 2})
>>> ocpp_request(RemoteStartCreate(id_tag="T1"), "2.0.1", remote_start_id=7)
('RequestStartTransaction', {'idToken': {'idToken': 'T1', 'type': 'Central'}, 'remoteStartId': 7})
>>> ocpp_request(ChangeAvailabilityCreate(availability="inoperative", connector_id=1), "2.0.1")
('ChangeAvailability', {'operationalStatus': 'Inoperative', 'evse': {'id': 1}})
"""

from __future__ import annotations

from typing import Any

from api.command_forms import (
    FORM_BODIES,
    V16,
    FormBody,
    NotExpressible,
    form,
    v16_transaction_id,
)
from api.schemas.commands import (
    ChangeAvailabilityCreate,
    RemoteStartCreate,
    RemoteStopCreate,
    ResetCreate,
    ResetType,
    TriggerMessageCreate,
    UnlockConnectorCreate,
)
from api.schemas.firmware import UpdateFirmwareCreate

__all__ = ["NotExpressible", "TypedBody", "ocpp_request"]

TypedBody = (
    FormBody
    | RemoteStartCreate
    | RemoteStopCreate
    | ResetCreate
    | UnlockConnectorCreate
    | ChangeAvailabilityCreate
    | TriggerMessageCreate
    | UpdateFirmwareCreate
)
RESET_TYPES = {
    V16: {ResetType.SOFT: "Soft", ResetType.HARD: "Hard"},
    "2.0.1": {ResetType.SOFT: "OnIdle", ResetType.HARD: "Immediate"},
}


def ocpp_request(
    body: TypedBody,
    ocpp_version: str,
    *,
    remote_start_id: int | None = None,
    transaction_id: str | None = None,
    request_id: int | None = None,
    reservation_id: int | None = None,
) -> tuple[str, dict[str, Any]]:
    """(action, payload) for a station speaking ``ocpp_version``. ``transaction_id``:
    the transaction of the session a remote stop or tx profile named; ``request_id``
    and ``reservation_id``: drawn by chargeflow (``api.command_forms``; for 2.0.1
    UpdateFirmware its ``requestId``)."""
    v16 = ocpp_version == V16
    if isinstance(body, FORM_BODIES):
        return form(
            body,
            ocpp_version,
            request_id=request_id,
            reservation_id=reservation_id,
            transaction_id=transaction_id,
        )
    match body:
        case RemoteStartCreate():
            return _remote_start(body, v16, remote_start_id)
        case RemoteStopCreate():
            return _remote_stop(transaction_id or body.transaction_id or "", v16)
        case ResetCreate():
            return "Reset", {"type": RESET_TYPES[ocpp_version][body.type]}
        case UnlockConnectorCreate():
            if v16:
                return "UnlockConnector", {"connectorId": body.connector_id}
            # chargeflow's connector id is the 2.0.1 EVSE id (one connector per EVSE).
            return "UnlockConnector", {"evseId": body.connector_id, "connectorId": 1}
        case ChangeAvailabilityCreate():
            kind = body.availability.value.capitalize()
            if v16:
                return "ChangeAvailability", {"connectorId": body.connector_id or 0, "type": kind}
            payload: dict[str, Any] = {"operationalStatus": kind}
            if body.connector_id:
                payload["evse"] = {"id": body.connector_id}
            return "ChangeAvailability", payload
        case TriggerMessageCreate():
            payload = {"requestedMessage": body.message.value}
            if body.connector_id is not None:
                if v16:
                    payload["connectorId"] = body.connector_id
                else:
                    payload["evse"] = {"id": body.connector_id}
            return "TriggerMessage", payload
        case UpdateFirmwareCreate():
            from api.firmware_actions import update_firmware_request  # it raises ours

            return update_firmware_request(body, ocpp_version, request_id=request_id)
    raise AssertionError(f"no OCPP form for {type(body).__name__}")


def _remote_start(
    body: RemoteStartCreate, v16: bool, remote_start_id: int | None
) -> tuple[str, dict[str, Any]]:
    if v16:
        payload: dict[str, Any] = {"idTag": body.id_tag}
        if body.connector_id is not None:
            payload["connectorId"] = body.connector_id
        return "RemoteStartTransaction", payload
    assert remote_start_id is not None, "a 2.0.1 remote start needs its remoteStartId"
    payload = {
        "idToken": {"idToken": body.id_tag, "type": body.id_token_type},
        "remoteStartId": remote_start_id,
    }
    if body.connector_id is not None:
        payload["evseId"] = body.connector_id
    return "RequestStartTransaction", payload


def _remote_stop(transaction_id: str, v16: bool) -> tuple[str, dict[str, Any]]:
    if not v16:
        return "RequestStopTransaction", {"transactionId": transaction_id}
    return "RemoteStopTransaction", {"transactionId": v16_transaction_id(transaction_id)}
