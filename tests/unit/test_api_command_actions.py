"""The API's typed command bodies produce, for each OCPP version, a request the
gateway's own check accepts (action sent to that version, payload valid against its
schema), and the meanings that differ by version map as documented."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from api.command_actions import NotExpressible, TypedBody, ocpp_request
from api.command_service import request_hash
from api.schemas.commands import (
    ChangeAvailabilityCreate,
    RemoteStartCreate,
    RemoteStopCreate,
    ResetCreate,
    TriggerableMessage,
    TriggerMessageCreate,
    UnlockConnectorCreate,
)
from bus.commands import new_command
from ingest.gateway.command_checks import check_command

BODIES: list[TypedBody] = [
    RemoteStartCreate(id_tag="TAG-1"),
    RemoteStartCreate(id_tag="TAG-1", connector_id=2, id_token_type="ISO14443"),
    RemoteStopCreate(transaction_id="42"),
    ResetCreate(type="soft"),
    ResetCreate(type="hard"),
    UnlockConnectorCreate(connector_id=1),
    ChangeAvailabilityCreate(availability="inoperative"),
    ChangeAvailabilityCreate(availability="operative", connector_id=2),
    *(TriggerMessageCreate(message=m) for m in TriggerableMessage),
    TriggerMessageCreate(message="MeterValues", connector_id=1),
]


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
@pytest.mark.parametrize("body", BODIES, ids=lambda b: f"{type(b).__name__}:{b.model_dump_json()}")
def test_every_typed_body_is_a_valid_request_of_each_version(body: TypedBody, version: str) -> None:
    action, payload = ocpp_request(body, version, remote_start_id=9)
    command = new_command("CP-1", action, payload, requested_by="t", ocpp_version=version)
    assert check_command(command, version) is None


def test_the_meanings_that_differ_by_version() -> None:
    assert ocpp_request(ResetCreate(type="soft"), "1.6") == ("Reset", {"type": "Soft"})
    assert ocpp_request(ResetCreate(type="soft"), "2.0.1") == ("Reset", {"type": "OnIdle"})
    assert ocpp_request(RemoteStopCreate(transaction_id="42"), "1.6") == (
        "RemoteStopTransaction",
        {"transactionId": 42},
    )
    assert ocpp_request(RemoteStopCreate(transaction_id="tx-a"), "2.0.1") == (
        "RequestStopTransaction",
        {"transactionId": "tx-a"},
    )
    with pytest.raises(NotExpressible, match="integers"):
        ocpp_request(RemoteStopCreate(transaction_id="tx-a"), "1.6")
    assert ocpp_request(ChangeAvailabilityCreate(availability="operative"), "1.6") == (
        "ChangeAvailability",
        {"connectorId": 0, "type": "Operative"},
    )
    assert ocpp_request(UnlockConnectorCreate(connector_id=3), "2.0.1") == (
        "UnlockConnector",
        {"evseId": 3, "connectorId": 1},
    )


def test_a_remote_stop_names_exactly_one_of_transaction_and_session() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        RemoteStopCreate()
    with pytest.raises(ValidationError, match="exactly one"):
        RemoteStopCreate(transaction_id="1", session_id=uuid.uuid4())


def test_the_request_hash_tells_retries_from_other_requests() -> None:
    soft = request_hash("reset", "CP-1", ResetCreate(type="soft"))
    assert soft == request_hash("reset", "CP-1", ResetCreate(type="soft"))
    assert soft != request_hash("reset", "CP-1", ResetCreate(type="hard"))
    assert soft != request_hash("reset", "CP-2", ResetCreate(type="soft"))
