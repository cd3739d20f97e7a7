"""The smart charging, configuration, diagnostics, reservation and local list bodies
produce, for each OCPP version, a request the gateway's own check accepts; the
version-specific ones and the 1.6 limits that are not multiples of 0.1 are refused
(a 422 for the caller), and inconsistent bodies do not validate."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from api.command_actions import NotExpressible, TypedBody, ocpp_request
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
from bus.commands import new_command
from ingest.gateway.command_checks import check_command

AT = "2026-12-07T12:00:00Z"
PERIODS = [
    {"start_period_s": 0, "limit": Decimal("7400.3")},
    {"start_period_s": 600, "limit": Decimal("3700"), "number_phases": 1},
]


def profile(**fields: Any) -> SetChargingProfileCreate:
    base: dict[str, Any] = {
        "connector_id": 1,
        "profile_id": 5,
        "purpose": "tx_default",
        "kind": "relative",
        "unit": "W",
        "periods": PERIODS,
    }
    return SetChargingProfileCreate.model_validate({**base, **fields})


BOTH: list[TypedBody] = [
    profile(),
    profile(connector_id=0, purpose="charge_point_max", kind="absolute", start_schedule=AT),
    profile(kind="recurring", recurrency="daily", start_schedule=AT, valid_to=AT, duration_s=60),
    profile(purpose="tx", transaction_id="42", stack_level=2, unit="A"),
    ClearChargingProfileCreate(profile_id=5),
    ClearChargingProfileCreate(connector_id=1, purpose="tx_default", stack_level=0),
    ClearChargingProfileCreate(purpose="charge_point_max"),
    GetCompositeScheduleCreate(connector_id=1, duration_s=3600, unit="A"),
    GetCompositeScheduleCreate(connector_id=0, duration_s=60),
    ConfigurationCreate(key="HeartbeatInterval", value="60", component="OCPPCommCtrlr"),
    GetConfigurationCreate(keys=["HeartbeatInterval"], component="OCPPCommCtrlr"),
    UploadDiagnosticsCreate(location="ftp://logs.example/up", since=AT, retries=2),
    UploadDiagnosticsCreate(location="https://x.example/u", retry_interval_s=30, until=AT),
    ReserveCreate(id_tag="TAG-1", expires_at=AT, connector_id=1),
    ReserveCreate(id_tag="TAG-1", expires_at=AT, id_token_type="ISO14443"),
    CancelReservationCreate(reservation_id=3),
    SendLocalListCreate(
        version=2,
        update_type="full",
        entries=[
            {"id_tag": "A", "status": "Accepted", "expires_at": AT},
            {"id_tag": "B", "status": "Blocked"},
        ],
    ),
    SendLocalListCreate(version=3, update_type="differential", entries=[{"id_tag": "B"}]),
    SendLocalListCreate(version=4, update_type="full"),
    ClearCacheCreate(),
]
ONLY_201: list[TypedBody] = [
    SetVariablesCreate(
        variables=[
            {"component": "OCPPCommCtrlr", "variable": "HeartbeatInterval", "value": "60"},
            {"component": "EVSE", "variable": "Power", "value": "1", "evse_id": 1, "instance": "a"},
        ]
    ),
    GetVariablesCreate(variables=[{"component": "ChargingStation", "variable": "Model"}]),
    UploadDiagnosticsCreate(location="ftp://logs.example/up", log_type="security"),
]


def _check(body: TypedBody, version: str) -> tuple[str, dict[str, Any]]:
    action, payload = ocpp_request(body, version, request_id=7, reservation_id=11)
    command = new_command("CP-1", action, payload, requested_by="t", ocpp_version=version)
    assert check_command(command, version) is None
    return action, payload


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
@pytest.mark.parametrize("body", BOTH, ids=lambda b: type(b).__name__)
def test_every_new_body_is_a_valid_request_of_each_version(body: TypedBody, version: str) -> None:
    _check(body, version)


@pytest.mark.parametrize("body", ONLY_201, ids=lambda b: type(b).__name__)
def test_the_2_0_1_only_bodies_are_valid_there_and_refused_for_1_6(body: TypedBody) -> None:
    _check(body, "2.0.1")
    with pytest.raises(NotExpressible):
        ocpp_request(body, "1.6", request_id=7)


def test_charging_profiles_per_version() -> None:
    action, v16 = _check(profile(purpose="tx", transaction_id="42"), "1.6")
    assert action == "SetChargingProfile"
    assert v16["connectorId"] == 1
    cs = v16["csChargingProfiles"]
    assert cs["chargingProfilePurpose"] == "TxProfile"
    assert cs["transactionId"] == 42
    assert cs["chargingSchedule"]["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": Decimal("7400.3")},
        {"startPeriod": 600, "limit": Decimal("3700"), "numberPhases": 1},
    ]
    _, v201 = _check(profile(connector_id=0, purpose="charge_point_max"), "2.0.1")
    assert v201["evseId"] == 0
    assert v201["chargingProfile"]["chargingProfilePurpose"] == "ChargingStationMaxProfile"
    assert v201["chargingProfile"]["chargingSchedule"][0]["id"] == 5
    _, tx = _check(profile(purpose="tx", transaction_id="tx-9"), "2.0.1")
    assert tx["chargingProfile"]["transactionId"] == "tx-9"
    # A session's transaction, resolved by the router.
    by_session = profile(purpose="tx", session_id="0b8e4c1e-8f43-4a0c-9d7e-3f1f5b0c2a11")
    _, resolved = ocpp_request(by_session, "2.0.1", transaction_id="tx-b")
    assert resolved["chargingProfile"]["transactionId"] == "tx-b"
    assert (
        ocpp_request(by_session, "1.6", transaction_id="17")[1]["csChargingProfiles"][
            "transactionId"
        ]
        == 17
    )


def test_1_6_limits_are_multiples_of_a_tenth_and_transactions_integers() -> None:
    fine = profile(periods=[{"start_period_s": 0, "limit": "16.05"}])
    with pytest.raises(NotExpressible, match=r"multiples of 0\.1, not 16\.05"):
        ocpp_request(fine, "1.6")
    assert _check(fine, "2.0.1")[1]["chargingProfile"]["chargingSchedule"][0][
        "chargingSchedulePeriod"
    ] == [{"startPeriod": 0, "limit": Decimal("16.05")}]
    with pytest.raises(NotExpressible, match="integers"):
        ocpp_request(profile(purpose="tx", transaction_id="tx-a"), "1.6")


def test_what_only_one_version_can_say() -> None:
    with pytest.raises(NotExpressible, match="give component"):
        ocpp_request(ConfigurationCreate(key="HeartbeatInterval", value="1"), "2.0.1")
    with pytest.raises(NotExpressible, match="give keys"):
        ocpp_request(GetConfigurationCreate(component="OCPPCommCtrlr"), "2.0.1")
    assert _check(GetConfigurationCreate(), "1.6") == ("GetConfiguration", {})
    with pytest.raises(NotExpressible, match="no security log"):
        ocpp_request(UploadDiagnosticsCreate(location="ftp://h/x", log_type="security"), "1.6")


def test_the_forms_that_differ_by_version() -> None:
    assert _check(ClearChargingProfileCreate(connector_id=1, purpose="tx"), "1.6") == (
        "ClearChargingProfile",
        {"connectorId": 1, "chargingProfilePurpose": "TxProfile"},
    )
    assert _check(ClearChargingProfileCreate(connector_id=1, purpose="tx"), "2.0.1") == (
        "ClearChargingProfile",
        {"chargingProfileCriteria": {"evseId": 1, "chargingProfilePurpose": "TxProfile"}},
    )
    assert _check(GetCompositeScheduleCreate(connector_id=2, duration_s=60), "2.0.1")[1] == {
        "duration": 60,
        "evseId": 2,
    }
    reserve = ReserveCreate(id_tag="T", expires_at=AT)
    assert _check(reserve, "1.6")[1] == {
        "connectorId": 0,
        "expiryDate": "2026-12-07T12:00:00.000Z",
        "idTag": "T",
        "reservationId": 11,
    }
    assert _check(reserve, "2.0.1")[1] == {
        "id": 11,
        "expiryDateTime": "2026-12-07T12:00:00.000Z",
        "idToken": {"idToken": "T", "type": "Central"},
    }
    upload = UploadDiagnosticsCreate(location="ftp://h/x", since=AT)
    assert _check(upload, "1.6") == (
        "GetDiagnostics",
        {"location": "ftp://h/x", "startTime": "2026-12-07T12:00:00.000Z"},
    )
    assert _check(upload, "2.0.1") == (
        "GetLog",
        {
            "logType": "DiagnosticsLog",
            "requestId": 7,
            "log": {"remoteLocation": "ftp://h/x", "oldestTimestamp": "2026-12-07T12:00:00.000Z"},
        },
    )
    local = SendLocalListCreate(
        version=2, update_type="differential", entries=[{"id_tag": "A", "status": "Blocked"}]
    )
    assert _check(local, "1.6")[1] == {
        "listVersion": 2,
        "updateType": "Differential",
        "localAuthorizationList": [{"idTag": "A", "idTagInfo": {"status": "Blocked"}}],
    }
    assert _check(local, "2.0.1")[1]["localAuthorizationList"] == [
        {"idToken": {"idToken": "A", "type": "Central"}, "idTokenInfo": {"status": "Blocked"}}
    ]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"purpose": "tx"}, "exactly one of transaction_id, session_id"),
        ({"transaction_id": "1"}, "only a tx profile"),
        ({"purpose": "charge_point_max"}, "on connector 0"),
        ({"purpose": "tx", "transaction_id": "1", "connector_id": 0}, "not 0"),
        ({"kind": "recurring"}, "recurrency"),
        ({"recurrency": "daily"}, "recurrency"),
        ({"periods": [{"start_period_s": 5, "limit": 1}]}, "start at 0"),
        ({"periods": [{"start_period_s": 0, "limit": 1}] * 2}, "increase"),
        ({"periods": [{"start_period_s": 0, "limit": "0.0001"}]}, "decimal places"),
    ],
)
def test_inconsistent_charging_profiles_do_not_validate(
    fields: dict[str, Any], reason: str
) -> None:
    with pytest.raises(ValidationError, match=reason):
        profile(**fields)


def test_other_inconsistent_bodies_do_not_validate() -> None:
    with pytest.raises(ValidationError, match="profile_id, or any of"):
        ClearChargingProfileCreate()
    with pytest.raises(ValidationError, match="not both"):
        ClearChargingProfileCreate(profile_id=1, stack_level=0)
    with pytest.raises(ValidationError, match="every entry of a full update has a status"):
        SendLocalListCreate(version=1, update_type="full", entries=[{"id_tag": "A"}])
    with pytest.raises(ValidationError, match="has a status"):
        SendLocalListCreate(
            version=1, update_type="differential", entries=[{"id_tag": "A", "expires_at": AT}]
        )
    with pytest.raises(ValidationError, match="location"):
        UploadDiagnosticsCreate(location="file:///etc/passwd")


@pytest.mark.parametrize(
    ("model", "body"),
    [
        (ReserveCreate, {"connector_id": True, "id_tag": "T1", "expires_at": AT}),
        (CancelReservationCreate, {"reservation_id": True}),
        (GetCompositeScheduleCreate, {"connector_id": 1, "duration_s": True}),
        (SendLocalListCreate, {"version": True, "update_type": "full"}),
    ],
)
def test_a_json_boolean_is_not_an_integer(model: type[BaseModel], body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="valid integer"):
        model.model_validate(body)
