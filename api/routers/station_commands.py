"""Remote commands to one station: one operation per action with a typed body that
means the same for OCPP 1.6 and 2.0.1 stations, and a raw passthrough for the rest.
Each answers 202 with the command (pending) and ``Location: /v1/commands/{id}``; the
lifecycle is read at ``/v1/commands``. Roles operator, admin.

``Idempotency-Key``: a retry with the same key by the same API key answers 202 with
the first command (as it is now, header ``Idempotent-Replayed: true``) and queues
nothing; the same key with another request is a 422.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response, status

from api.command_actions import NotExpressible, TypedBody, ocpp_request
from api.command_service import Build, Submission
from api.deps import CommandOperator, DbConn
from api.params import ChargePointPath
from api.problems import AUTHENTICATED, CONFLICT, NOT_FOUND, UNREADABLE_BODY, ProblemError
from api.routers.commands import command_public
from api.schemas.command_bodies import (
    CancelReservationCreate,
    ClearCacheCreate,
    ClearChargingProfileCreate,
    ConfigurationCreate,
    GetCompositeScheduleCreate,
    GetConfigurationCreate,
    GetVariablesCreate,
    ReserveCreate,
    SendLocalListCreate,
    SetChargingProfileCreate,
    SetVariablesCreate,
    UploadDiagnosticsCreate,
)
from api.schemas.commands import (
    ChangeAvailabilityCreate,
    CommandPublic,
    RawCommandCreate,
    RemoteStartCreate,
    RemoteStopCreate,
    ResetCreate,
    TriggerMessageCreate,
    UnlockConnectorCreate,
)
from api.schemas.firmware import UpdateFirmwareCreate
from bus.commands import decode_json
from bus.times import utc_now
from store import command_queue
from store.db import AsyncDb

router = APIRouter(prefix="/v1/stations", tags=["commands"], responses=AUTHENTICATED)

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="Any printable ASCII (e.g. a UUID): a retry with the same key returns "
        "the first command instead of queueing another",
    ),
]
ACCEPTED_RESPONSE: dict[int | str, dict[str, Any]] = {
    202: {
        "description": "Queued (or, for a repeated Idempotency-Key, the first command)",
        "headers": {
            "Location": {"description": "/v1/commands/{command_id}", "schema": {"type": "string"}},
            "Idempotent-Replayed": {
                "description": "`true` when the answer is the key's first command",
                "schema": {"type": "string", "enum": ["true"]},
            },
        },
    },
    **NOT_FOUND,
    **CONFLICT,
    **UNREADABLE_BODY,
}
DESCRIPTION = (
    "202 with the command as queued (status pending) and its `Location`; follow it with "
    "`GET /v1/commands/{id}?wait=N` or `/events`. 404: unknown station; 409 (problem type "
    "`urn:chargeflow:problem:ocpp-version-unknown`): the station's OCPP version is not "
    "known yet (it never connected); 422: the request has no valid form in the station's "
    "version, or the Idempotency-Key was used for another request "
    "(`urn:chargeflow:problem:idempotency-key-reused`)."
)


async def _submit(
    request: Request,
    response: Response,
    principal: CommandOperator,
    conn: DbConn,
    key: str | None,
    station_id: str,
    operation: str,
    body: Any,
    build: Build,
) -> CommandPublic:
    submission = Submission(
        db=conn,
        producer=request.app.state.producer,
        config=request.app.state.config,
        principal=principal,
        idempotency_key=key,
    )
    record, created = await submission.submit(operation, station_id, body, build)
    response.headers["Location"] = f"/v1/commands/{record.command_id}"
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return command_public(record)


def _typed(db: AsyncDb, station_id: str, body: TypedBody) -> Build:
    async def build(version: str) -> tuple[str, dict[str, Any]]:
        remote_start_id = transaction_id = request_id = reservation_id = None
        typed = body
        if isinstance(body, RemoteStartCreate) and version != "1.6":
            remote_start_id = await command_queue.next_remote_start_id(db)
        session_id = getattr(body, "session_id", None)
        if session_id is not None:
            transaction_id = await _session_transaction(db, station_id, session_id)
        if isinstance(body, UploadDiagnosticsCreate) and version != "1.6":
            request_id = await command_queue.next_id(db, "request")
        if isinstance(body, ReserveCreate):
            reservation_id = await command_queue.next_id(db, "reservation")
        if isinstance(body, UpdateFirmwareCreate):
            typed = body.model_copy(update={"retrieve_date": body.retrieve_date or utc_now()})
            request_id = None if version == "1.6" else await command_queue.next_id(db, "firmware")
        try:
            return ocpp_request(
                typed,
                version,
                remote_start_id=remote_start_id,
                transaction_id=transaction_id,
                request_id=request_id,
                reservation_id=reservation_id,
            )
        except NotExpressible as exc:
            raise ProblemError(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None

    return build


async def _session_transaction(db: AsyncDb, station_id: str, session_id: uuid.UUID) -> str:
    """The transaction of the session a body names (a remote stop, a tx profile): on
    this station, still active."""
    found = await command_queue.session_transaction(db, session_id)
    if found is None or found[0] != station_id:
        raise ProblemError(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"no session {session_id} on station {station_id!r}",
        )
    if found[2] != "active":
        raise ProblemError(status.HTTP_409_CONFLICT, f"session {session_id} has ended")
    return found[1]


# The firmware rollout worker queues its update-firmware commands the same way.
typed_build = _typed


def _route(path: str, summary: str, body_type: type[Any]) -> None:
    """One typed command operation (the same shape for every typed action)."""

    async def endpoint(
        station_id: ChargePointPath,
        body: Any,  # the body model: set below, per action
        request: Request,
        response: Response,
        principal: CommandOperator,
        conn: DbConn,
        idempotency_key: IdempotencyKey = None,
    ) -> CommandPublic:
        return await _submit(
            request,
            response,
            principal,
            conn,
            idempotency_key,
            station_id,
            path,
            body,
            _typed(conn, station_id, body),
        )

    endpoint.__annotations__["body"] = body_type
    endpoint.__name__ = "command_" + path.replace("-", "_")
    router.post(
        f"/{{station_id}}/commands/{path}",
        response_model=CommandPublic,
        status_code=status.HTTP_202_ACCEPTED,
        summary=summary,
        description=DESCRIPTION,
        responses=ACCEPTED_RESPONSE,
    )(endpoint)


_route(
    "remote-start",
    "Remote start (1.6 RemoteStartTransaction, 2.0.1 RequestStartTransaction with a "
    "remoteStartId chargeflow draws)",
    RemoteStartCreate,
)
_route(
    "remote-stop",
    "Remote stop by transaction id or session id (1.6 RemoteStopTransaction, 2.0.1 "
    "RequestStopTransaction)",
    RemoteStopCreate,
)
_route("reset", "Reset: soft (1.6 Soft, 2.0.1 OnIdle) or hard (Hard, Immediate)", ResetCreate)
_route("unlock-connector", "Unlock a connector", UnlockConnectorCreate)
_route(
    "change-availability",
    "Make the station or one connector operative or inoperative",
    ChangeAvailabilityCreate,
)
_route("trigger-message", "Ask the station to send a message now", TriggerMessageCreate)
_route(
    "set-charging-profile",
    "Set a charging profile (1.6 csChargingProfiles on a connector, 2.0.1 chargingProfile "
    "on an EVSE); a tx profile names its transaction or session",
    SetChargingProfileCreate,
)
_route(
    "clear-charging-profile",
    "Clear charging profiles by id, or by connector, purpose and stack level",
    ClearChargingProfileCreate,
)
_route(
    "get-composite-schedule",
    "Ask for the schedule in force on a connector; the station's answer (the schedule) "
    "is the command's `response`",
    GetCompositeScheduleCreate,
)
_route(
    "configuration",
    "Change one setting (1.6 ChangeConfiguration key/value, 2.0.1 SetVariables of "
    "`component`.`key`)",
    ConfigurationCreate,
)
_route(
    "get-configuration",
    "Read settings (1.6 GetConfiguration, 2.0.1 GetVariables of `component`); the values "
    "are the command's `response`",
    GetConfigurationCreate,
)
_route("set-variables", "Set 2.0.1 variables (OCPP 2.0.1 stations only)", SetVariablesCreate)
_route("get-variables", "Read 2.0.1 variables (OCPP 2.0.1 stations only)", GetVariablesCreate)
_route(
    "upload-diagnostics",
    "Have the station upload its diagnostics (1.6 GetDiagnostics, 2.0.1 GetLog with a "
    "requestId chargeflow draws)",
    UploadDiagnosticsCreate,
)
_route(
    "reserve",
    "Reserve a connector for an id tag until a time (ReserveNow; chargeflow draws the "
    "reservation id, in the command's payload)",
    ReserveCreate,
)
_route("cancel-reservation", "Cancel a reservation", CancelReservationCreate)
_route(
    "send-local-list",
    "Send the local authorisation list (full or differential)",
    SendLocalListCreate,
)
_route("clear-cache", "Clear the station's authorisation cache", ClearCacheCreate)
_route(
    "update-firmware",
    "Update the firmware (1.6 UpdateFirmware; 2.0.1 UpdateFirmware with a requestId "
    "chargeflow draws and the signature fields)",
    UpdateFirmwareCreate,
)


@router.post(
    "/{station_id}/commands/raw",
    response_model=CommandPublic,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Any command the gateway sends, as the raw OCPP request of the station's version",
    description=DESCRIPTION
    + " The action must be one the gateway sends to the station's version and the payload "
    "valid against that version's request schema (else 422 saying why).",
    responses=ACCEPTED_RESPONSE,
)
async def command_raw(
    station_id: ChargePointPath,
    body: RawCommandCreate,
    request: Request,
    response: Response,
    principal: CommandOperator,
    conn: DbConn,
    idempotency_key: IdempotencyKey = None,
) -> CommandPublic:
    # The payload's numbers as typed, not as floats: the schemas' multipleOf checks and
    # the station need the exact decimal (1.6 limits are multiples of 0.1).
    payload: dict[str, Any] = decode_json(await request.body())["payload"]

    async def build(version: str) -> tuple[str, dict[str, Any]]:
        return body.action, payload

    return await _submit(
        request, response, principal, conn, idempotency_key, station_id, "raw", body, build
    )
