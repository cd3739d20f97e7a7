"""The wire forms of the smart charging, configuration, diagnostics, reservation and
local list bodies (``api.schemas.command_bodies``) for an OCPP 1.6 or 2.0.1 station
(pure; :func:`api.command_actions.ocpp_request` dispatches here). ``request_id`` and
``reservation_id`` are the ids chargeflow drew for the command; ``transaction_id`` the
transaction of the session a tx profile named.

>>> from decimal import Decimal
>>> from api.schemas.command_bodies import SchedulePeriod as P
>>> body = SetChargingProfileCreate(connector_id=1, profile_id=3, purpose="tx_default",
...     kind="relative", unit="A", periods=[P(start_period_s=0, limit=Decimal("16.5"))])
>>> form(body, "1.6")[1]["csChargingProfiles"]["chargingSchedule"]
{'chargingRateUnit': 'A', 'chargingSchedulePeriod': [{'startPeriod': 0, 'limit': Decimal('16.5')}]}
>>> form(body, "2.0.1")[1]["chargingProfile"]["chargingSchedule"][0]["id"]
3
>>> form(ConfigurationCreate(key="HeartbeatInterval", value="60"), "1.6")
('ChangeConfiguration', {'key': 'HeartbeatInterval', 'value': '60'})
>>> form(ConfigurationCreate(key="HeartbeatInterval", value="60", component="OCPPCommCtrlr"),
...     "2.0.1")[1]["setVariableData"][0]  # doctest: +NORMALIZE_WHITESPACE
{'component': {'name': 'OCPPCommCtrlr'}, 'variable': {'name': 'HeartbeatInterval'},
 'attributeValue': '60'}
>>> form(CancelReservationCreate(reservation_id=4), "2.0.1")
('CancelReservation', {'reservationId': 4})
>>> form(ClearCacheCreate(), "1.6")
('ClearCache', {})
>>> form(SetVariablesCreate(variables=[{"component": "C", "variable": "V", "value": "1"}]), "1.6")
Traceback (most recent call last):
api.command_forms.NotExpressible: set-variables is for OCPP 2.0.1 stations; ...
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from api.schemas.command_bodies import (
    CancelReservationCreate,
    ClearCacheCreate,
    ClearChargingProfileCreate,
    ConfigurationCreate,
    GetCompositeScheduleCreate,
    GetConfigurationCreate,
    GetVariablesCreate,
    LocalListEntry,
    ProfilePurpose,
    ReserveCreate,
    SendLocalListCreate,
    SetChargingProfileCreate,
    SetVariablesCreate,
    UploadDiagnosticsCreate,
    VariableRef,
)
from bus.times import format_rfc3339

FormBody = (
    SetChargingProfileCreate
    | ClearChargingProfileCreate
    | GetCompositeScheduleCreate
    | ConfigurationCreate
    | GetConfigurationCreate
    | SetVariablesCreate
    | GetVariablesCreate
    | UploadDiagnosticsCreate
    | ReserveCreate
    | CancelReservationCreate
    | SendLocalListCreate
    | ClearCacheCreate
)
FORM_BODIES = FormBody.__args__
V16 = "1.6"
PURPOSES = {
    V16: {
        ProfilePurpose.CHARGE_POINT_MAX: "ChargePointMaxProfile",
        ProfilePurpose.TX_DEFAULT: "TxDefaultProfile",
        ProfilePurpose.TX: "TxProfile",
    },
    "2.0.1": {
        ProfilePurpose.CHARGE_POINT_MAX: "ChargingStationMaxProfile",
        ProfilePurpose.TX_DEFAULT: "TxDefaultProfile",
        ProfilePurpose.TX: "TxProfile",
    },
}
TENTH = Decimal("0.1")


class NotExpressible(ValueError):
    """The request has no form in the station's OCPP version (a 422 for the caller)."""


def form(
    body: FormBody,
    ocpp_version: str,
    *,
    request_id: int | None = None,
    reservation_id: int | None = None,
    transaction_id: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """(action, payload) of ``body`` for a station speaking ``ocpp_version``."""
    v16 = ocpp_version == V16
    match body:
        case SetChargingProfileCreate():
            return set_charging_profile(body, ocpp_version, transaction_id)
        case ClearChargingProfileCreate():
            return "ClearChargingProfile", _clear_profile(body, ocpp_version)
        case GetCompositeScheduleCreate():
            payload: dict[str, Any] = {"duration": body.duration_s}
            payload["connectorId" if v16 else "evseId"] = body.connector_id
            _put(payload, "chargingRateUnit", body.unit)
            return "GetCompositeSchedule", payload
        case ConfigurationCreate() | GetConfigurationCreate():
            return _configuration(body, v16)
        case SetVariablesCreate() | GetVariablesCreate():
            return _variables(body, v16)
        case UploadDiagnosticsCreate():
            return _upload(body, v16, request_id)
        case ReserveCreate():
            assert reservation_id is not None, "a reservation needs the id chargeflow drew"
            return "ReserveNow", _reserve(body, v16, reservation_id)
        case CancelReservationCreate():
            return "CancelReservation", {"reservationId": body.reservation_id}
        case SendLocalListCreate():
            return "SendLocalList", _local_list(body, v16)
        case ClearCacheCreate():
            return "ClearCache", {}
    raise AssertionError(f"no OCPP form for {type(body).__name__}")


def _put(payload: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        payload[key] = value


def _time(value: Any) -> str | None:
    return None if value is None else format_rfc3339(value)


def set_charging_profile(
    body: SetChargingProfileCreate, ocpp_version: str, transaction_id: str | None
) -> tuple[str, dict[str, Any]]:
    """1.6 ``csChargingProfiles`` on ``connectorId``, 2.0.1 ``chargingProfile`` on
    ``evseId`` (its one schedule's id is the profile id); 1.6 limits in 0.1 steps."""
    v16 = ocpp_version == V16
    schedule: dict[str, Any] = {}
    if not v16:
        schedule["id"] = body.profile_id
    _put(schedule, "duration", body.duration_s)
    _put(schedule, "startSchedule", _time(body.start_schedule))
    schedule["chargingRateUnit"] = body.unit
    schedule["chargingSchedulePeriod"] = [_period(p, v16) for p in body.periods]
    profile: dict[str, Any] = {
        "chargingProfileId" if v16 else "id": body.profile_id,
        "stackLevel": body.stack_level,
        "chargingProfilePurpose": PURPOSES[ocpp_version][body.purpose],
        "chargingProfileKind": body.kind.value.capitalize(),
    }
    _put(profile, "recurrencyKind", body.recurrency and body.recurrency.capitalize())
    _put(profile, "validFrom", _time(body.valid_from))
    _put(profile, "validTo", _time(body.valid_to))
    tx = transaction_id or body.transaction_id
    if tx is not None:
        profile["transactionId"] = v16_transaction_id(tx) if v16 else tx
    if v16:
        profile["chargingSchedule"] = schedule
        payload = {"connectorId": body.connector_id, "csChargingProfiles": profile}
        return "SetChargingProfile", payload
    profile["chargingSchedule"] = [schedule]
    return "SetChargingProfile", {"evseId": body.connector_id, "chargingProfile": profile}


def _period(period: Any, v16: bool) -> dict[str, Any]:
    if v16 and period.limit % TENTH != 0:
        raise NotExpressible(f"OCPP 1.6 charging limits are multiples of 0.1, not {period.limit}")
    out: dict[str, Any] = {"startPeriod": period.start_period_s, "limit": period.limit}
    _put(out, "numberPhases", period.number_phases)
    return out


def v16_transaction_id(transaction_id: str) -> int:
    """A 1.6 transaction id (an integer) from chargeflow's text form."""
    if not transaction_id.isdigit() or int(transaction_id) > 2**31 - 1:
        raise NotExpressible(f"OCPP 1.6 transaction ids are integers, not {transaction_id!r}")
    return int(transaction_id)


def _clear_profile(body: ClearChargingProfileCreate, ocpp_version: str) -> dict[str, Any]:
    purpose = body.purpose and PURPOSES[ocpp_version][body.purpose]
    if ocpp_version == V16:
        payload: dict[str, Any] = {}
        _put(payload, "id", body.profile_id)
        _put(payload, "connectorId", body.connector_id)
        _put(payload, "chargingProfilePurpose", purpose)
        _put(payload, "stackLevel", body.stack_level)
        return payload
    if body.profile_id is not None:
        return {"chargingProfileId": body.profile_id}
    criteria: dict[str, Any] = {}
    _put(criteria, "evseId", body.connector_id)
    _put(criteria, "chargingProfilePurpose", purpose)
    _put(criteria, "stackLevel", body.stack_level)
    return {"chargingProfileCriteria": criteria}


def _configuration(
    body: ConfigurationCreate | GetConfigurationCreate, v16: bool
) -> tuple[str, dict[str, Any]]:
    """One meaning: 1.6 Change/GetConfiguration, 2.0.1 Set/GetVariables of a component."""
    if isinstance(body, ConfigurationCreate):
        if v16:
            return "ChangeConfiguration", {"key": body.key, "value": body.value}
        item = {**_ref(body.component, body.key), "attributeValue": body.value}
        return "SetVariables", {"setVariableData": [item]}
    if v16:
        return "GetConfiguration", {"key": body.keys} if body.keys else {}
    if not body.keys:
        raise NotExpressible(
            "a 2.0.1 station's variables are read by name: give keys (all of them: a "
            "GetBaseReport through the raw endpoint)"
        )
    return "GetVariables", {"getVariableData": [_ref(body.component, k) for k in body.keys]}


def _ref(component: str | None, variable: str) -> dict[str, Any]:
    if component is None:
        raise NotExpressible("an OCPP 2.0.1 variable belongs to a component: give component")
    return {"component": {"name": component}, "variable": {"name": variable}}


def _variables(
    body: SetVariablesCreate | GetVariablesCreate, v16: bool
) -> tuple[str, dict[str, Any]]:
    """2.0.1 only (1.6 has no components): Set/GetVariables of each item."""
    name = "set-variables" if isinstance(body, SetVariablesCreate) else "get-variables"
    if v16:
        raise NotExpressible(
            f"{name} is for OCPP 2.0.1 stations; a 1.6 station's configuration: the "
            "configuration endpoint"
        )
    if isinstance(body, GetVariablesCreate):
        return "GetVariables", {"getVariableData": [_variable(v) for v in body.variables]}
    data = [{**_variable(v), "attributeValue": v.value} for v in body.variables]
    return "SetVariables", {"setVariableData": data}


def _variable(ref: VariableRef) -> dict[str, Any]:
    component: dict[str, Any] = {"name": ref.component}
    _put(component, "instance", ref.instance)
    if ref.evse_id is not None:
        component["evse"] = {"id": ref.evse_id}
    return {"component": component, "variable": {"name": ref.variable}}


def _upload(
    body: UploadDiagnosticsCreate, v16: bool, request_id: int | None
) -> tuple[str, dict[str, Any]]:
    """1.6 GetDiagnostics; 2.0.1 GetLog with the ``requestId`` chargeflow drew."""
    payload: dict[str, Any] = {}
    if v16:
        if body.log_type == "security":
            raise NotExpressible("OCPP 1.6 stations upload diagnostics only (no security log)")
        payload["location"] = body.location
        _put(payload, "retries", body.retries)
        _put(payload, "retryInterval", body.retry_interval_s)
        _put(payload, "startTime", _time(body.since))
        _put(payload, "stopTime", _time(body.until))
        return "GetDiagnostics", payload
    assert request_id is not None, "a 2.0.1 log upload needs its requestId"
    log: dict[str, Any] = {"remoteLocation": body.location}
    _put(log, "oldestTimestamp", _time(body.since))
    _put(log, "latestTimestamp", _time(body.until))
    payload = {
        "logType": "SecurityLog" if body.log_type == "security" else "DiagnosticsLog",
        "requestId": request_id,
        "log": log,
    }
    _put(payload, "retries", body.retries)
    _put(payload, "retryInterval", body.retry_interval_s)
    return "GetLog", payload


def _reserve(body: ReserveCreate, v16: bool, reservation_id: int) -> dict[str, Any]:
    expiry = format_rfc3339(body.expires_at)
    if v16:
        return {
            "connectorId": body.connector_id or 0,
            "expiryDate": expiry,
            "idTag": body.id_tag,
            "reservationId": reservation_id,
        }
    payload: dict[str, Any] = {
        "id": reservation_id,
        "expiryDateTime": expiry,
        "idToken": {"idToken": body.id_tag, "type": body.id_token_type},
    }
    _put(payload, "evseId", body.connector_id)
    return payload


def _local_list(body: SendLocalListCreate, v16: bool) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "listVersion" if v16 else "versionNumber": body.version,
        "updateType": body.update_type.capitalize(),
    }
    if body.entries:
        payload["localAuthorizationList"] = [_entry(e, v16) for e in body.entries]
    return payload


def _entry(entry: LocalListEntry, v16: bool) -> dict[str, Any]:
    info: dict[str, Any] | None = None
    if entry.status is not None:
        info = {"status": entry.status.value}
        _put(info, "expiryDate" if v16 else "cacheExpiryDateTime", _time(entry.expires_at))
    if v16:
        out: dict[str, Any] = {"idTag": entry.id_tag}
        _put(out, "idTagInfo", info)
        return out
    out = {"idToken": {"idToken": entry.id_tag, "type": entry.id_token_type}}
    _put(out, "idTokenInfo", info)
    return out
