"""The version-independent form of what a charge point reported (OCPP 1.6J or 2.0.1).

The gateway publishes every CALL with its raw payload (camelCase, exactly as
received) *and* a list of normalised facts on ``Envelope.normalized``, so that
consumers can be written once for both OCPP versions. Everything here is pure:
no I/O, no clock.

Facts (tagged structs, the tag is the ``type`` field in JSON):

* :class:`ConnectorStatus`  (``connector_status``)  - from StatusNotification
* :class:`MeterSample`      (``meter_sample``)      - one per sampled value
* :class:`SignedMeterValue` (``signed_meter_value``) - one per signed sampled value
* :class:`TransactionStart` (``transaction_start``) - 1.6 StartTransaction, 2.0.1 Started
* :class:`TransactionUpdate` (``transaction_update``) - 2.0.1 Updated
* :class:`TransactionEnd`   (``transaction_end``)   - 1.6 StopTransaction, 2.0.1 Ended
* :class:`Authorization`    (``authorization``)     - Authorize and the gateway's answer
* :class:`SecurityEvent`    (``security_event``)    - SecurityEventNotification
* :class:`DeviceEvent`      (``device_event``)      - one per 2.0.1 NotifyEvent ``eventData``
* :class:`StationHeartbeat` (``station_heartbeat``) - Heartbeat (both versions)
* :class:`StationBoot`      (``station_boot``)      - BootNotification (both versions)
* :class:`ChargingNeeds`    (``charging_needs``)    - 2.0.1 NotifyEVChargingNeeds

Mapping rules
-------------

Identifiers
  ``transaction_id`` is always a string (1.6: the integer the gateway assigned,
  ``str(transactionId)``; 2.0.1: ``transactionInfo.transactionId``).
  ``evse_id``/``connector_id``: a 1.6 connector is an EVSE with one connector, so
  for 1.6 both are the ``connectorId`` (0 = the whole station). For 2.0.1 they
  are ``evseId``/``connectorId`` (TransactionEvent: ``evse.id``/``evse.connectorId``;
  MeterValues only has ``evseId``, ``connector_id`` is then None). Group by
  ``(charge_point_id, evse_id)`` to treat both versions alike.
  ``id_tag``: 1.6 ``idTag``; 2.0.1 ``idToken.idToken`` (its type in ``id_token_type``).

Connector status (common set: Available, Preparing, Charging, SuspendedEV,
SuspendedEVSE, Finishing, Reserved, Unavailable, Faulted; the value as sent is
kept in ``ocpp_status``)
  1.6 statuses are the common set and pass unchanged; ``error_code`` is the 1.6
  ``errorCode``. 2.0.1 Available/Reserved/Unavailable/Faulted pass unchanged;
  2.0.1 has no error code in StatusNotification (faults come as NotifyEvent), so
  ``error_code`` is None. 2.0.1 ``Occupied`` is refined with what the same
  connection last saw of a transaction on that EVSE (:class:`EvseStates`):
  chargingState Charging/SuspendedEV/SuspendedEVSE -> the same; EVConnected/Idle
  or no transaction seen -> Preparing; a transaction that ended -> Finishing.
  This is a best effort (state is per connection, lost on reconnect): the raw
  ``Occupied`` stays in ``ocpp_status``.
  1.6 ``vendorId``/``vendorErrorCode``/``info`` are kept as ``vendor_id``/
  ``vendor_error_code``/``info`` (ChargeX MREC codes arrive there: ``vendorId``
  ``https://chargex.inl.gov``, ``vendorErrorCode`` ``CX019``; EVgo's MREC format puts the
  sensor reading in ``info``); None when absent, and always None for 2.0.1. Envelopes
  written before these fields existed decode with None.

Meter samples
  1.6: ``value`` is a decimal string; values that are not finite numbers and
  ``format: SignedData`` values are no samples (they are signed values, below).
  2.0.1: ``value`` is a JSON number, kept exactly as written (``Decimal(str(v))``).
  Spec defaults are filled in: measurand ``Energy.Active.Import.Register``,
  context ``Sample.Periodic``, location ``Outlet``; unit ``Wh`` for ``Energy.*``
  measurands, otherwise ``""`` when not given; 2.0.1 ``unitOfMeasure.multiplier``
  (power of ten) goes to ``unit_multiplier`` (1.6: always 0). ``value`` is never
  scaled; use :func:`bus.measurands.to_wh` for an energy register in Wh.
  1.6 StopTransaction ``transactionData`` and the 2.0.1 TransactionEvent
  ``meterValue`` become samples with the transaction id; 1.6 MeterValues carries
  its optional ``transactionId``; 2.0.1 MeterValues is outside a transaction.

Signed meter values (Eichrecht, e.g. OCMF)
  One :class:`SignedMeterValue` per signed sampled value, next to the samples, with
  the same ids, time, measurand and context. 1.6: a ``format: SignedData`` value,
  ``signed_data`` its ``value`` exactly as sent; ``encoding_method`` ``OCMF`` when it
  starts ``OCMF|``, else None; the plain register (``value``/``unit``) is the numeric
  sample of the same message with the same time, measurand and context and no phase,
  if the station sent one. 2.0.1: ``signedMeterValue`` of a sampled value, ``signedMeterData``,
  ``encodingMethod``, ``signingMethod`` and ``publicKey`` (empty: None) as sent; the
  plain register is the sampled value itself (which is a :class:`MeterSample` too).
  A reader built before this fact existed cannot decode an envelope that carries one
  (msgspec rejects the unknown tag): upgrade the consumers before the gateways.

Transactions
  ``meter_start_wh``/``meter_stop_wh`` (Decimal Wh): 1.6 ``meterStart``/``meterStop``;
  2.0.1: the ``Energy.Active.Import.Register`` sample without phase in context
  ``Transaction.Begin`` (Started) / ``Transaction.End`` (Ended), converted with
  :func:`bus.measurands.to_wh` (Wh or kWh, times 10^multiplier); None when not there.
  ``seq_no``, ``offline``, ``trigger_reason``, ``charging_state``: 2.0.1 only
  (1.6: None/False/None/None). ``stopped_reason``: 1.6 ``reason``, 2.0.1
  ``transactionInfo.stoppedReason``; absent means ``Local`` in both versions.
  ``auth_status``: what the gateway answered for the id tag (1.6
  StartTransaction/StopTransaction ``idTagInfo``, 2.0.1 ``idTokenInfo``), if any.
  A 2.0.1 Updated/Ended event that carries an idToken is still an update/end.

Authorizations
  One :class:`Authorization` per Authorize CALL: ``id_tag`` (1.6 ``idTag``, 2.0.1
  ``idToken.idToken``, its type in ``id_token_type``) and ``auth_status``, what the
  gateway answered (1.6 ``idTagInfo.status``, 2.0.1 ``idTokenInfo.status``; None when
  the answer has none). The answers to id tags in transaction messages stay on the
  transaction facts (``auth_status`` above), so each decision is a fact exactly once.
  Authorize carries no station time in either version: ``timestamp`` is the gateway's
  ``received_at`` (say so wherever it is compared with telemetry time).

Security events
  :class:`SecurityEvent` from SecurityEventNotification (2.0.1 core, 1.6 with the
  security whitepaper extension, same fields): ``event_type`` (``type``, e.g.
  ``TamperDetectionActivated``; the names are open-ended, proprietary ones pass as
  sent), the station's ``timestamp`` and ``tech_info`` (``techInfo``, None if absent).
Device events (2.0.1 NotifyEvent)
  One :class:`DeviceEvent` per ``eventData`` entry, fields as sent: ``eventId``,
  ``timestamp`` (the station's time of the event), ``trigger`` (Alerting, Delta,
  Periodic), ``actualValue`` (always a string, e.g. ``"true"`` or ``"105"``),
  ``component.name``/``instance``, ``variable.name``/``instance``, ``techCode``,
  ``techInfo``, ``cleared`` (absent means False), ``cause``, ``eventNotificationType``
  (``notification_type``), ``transactionId``, ``variableMonitoringId``. ``evse_id`` is
  ``component.evse.id`` and ``connector_id`` its ``connectorId``; a component without
  ``evse`` belongs to the whole station (``evse_id`` 0, ``connector_id`` None). Entries
  without an eventId, component or variable name are left out. 1.6 has no NotifyEvent.

Charging needs (2.0.1 NotifyEVChargingNeeds)
  One :class:`ChargingNeeds` per message: ``evse_id``, ``requested_energy_transfer``
  (``DC``, ``AC_single_phase``, ``AC_two_phase``, ``AC_three_phase``), ``departure``
  (``departureTime``, None if absent or not a time), and from ``acChargingParameters``
  (else ``dcChargingParameters``) the EV's ``energyAmount`` as ``energy_wh``,
  ``evMinCurrent``/``evMaxCurrent`` as ``ev_min_current_a``/``ev_max_current_a`` (AC
  only: a DC current is on the battery's side of the converter, no phase current) and
  the DC ``stateOfCharge`` (%). The message has no time of its own, so ``timestamp`` is
  ``received_at``. It names no transaction: the one open on the EVSE is meant. 1.6 has
  no charging needs (ISO 15118 arrived with 2.0.1).

Station heartbeats and boots
  :class:`StationHeartbeat` for every Heartbeat (both versions: the payload is empty).
  OCPP carries no station time in a Heartbeat, so its ``timestamp`` is ``received_at``,
  the gateway's clock, not the station's. :class:`StationBoot` for every
  BootNotification: ``vendor``/``model``/``firmware_version`` (1.6
  ``chargePointVendor``/``chargePointModel``/``firmwareVersion``; 2.0.1
  ``chargingStation.vendorName``/``model``/``firmwareVersion``), ``reason`` (2.0.1 only,
  e.g. PowerUp, Watchdog; None for 1.6), and ``timestamp`` = ``received_at`` as well
  (BootNotification has no time either).

Times are tz-aware: the payload's timestamp, or ``received_at`` when the message
has none (1.6 StatusNotification without timestamp, Heartbeat, BootNotification).

>>> from datetime import UTC, datetime
>>> t = datetime(2026, 1, 5, 10, tzinfo=UTC)
>>> facts = normalize_v16("CP1", "StatusNotification",
...     {"connectorId": 1, "errorCode": "NoError", "status": "Charging"}, {}, t)
>>> facts[0].status, facts[0].evse_id, facts[0].timestamp == t
('Charging', 1, True)
>>> status_from_v201("Occupied", "SuspendedEV"), status_from_v201("Occupied", None)
('SuspendedEV', 'Preparing')
>>> decode_facts(encode_facts(facts)) == facts
True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, get_args

import msgspec

from bus.measurands import (
    ENERGY_REGISTER,
    OUTLET,
    SAMPLE_PERIODIC,
    TRANSACTION_BEGIN,
    TRANSACTION_END,
    to_wh,
)
from bus.times import parse_rfc3339

# The connector statuses both versions map to (the API's status enum, too).
ConnectorStatusName = Literal[
    "Available",
    "Preparing",
    "Charging",
    "SuspendedEV",
    "SuspendedEVSE",
    "Finishing",
    "Reserved",
    "Unavailable",
    "Faulted",
]
COMMON_STATUSES: frozenset[str] = frozenset(get_args(ConnectorStatusName))
ENDED = "Ended"  # EvseStates value after a transaction ended on an EVSE


class _Fact(msgspec.Struct, kw_only=True, frozen=True, tag_field="type"):
    charge_point_id: str


class ConnectorStatus(_Fact, tag="connector_status", kw_only=True, frozen=True):
    evse_id: int
    connector_id: int
    status: str  # one of COMMON_STATUSES
    ocpp_status: str  # as the station sent it (2.0.1: e.g. Occupied)
    error_code: str | None = None  # 1.6 errorCode; None for 2.0.1
    timestamp: datetime
    vendor_id: str | None = None  # 1.6 vendorId (e.g. https://chargex.inl.gov)
    vendor_error_code: str | None = None  # 1.6 vendorErrorCode (e.g. CX019)
    info: str | None = None  # 1.6 info (free text, <= 50 characters)


class MeterSample(_Fact, tag="meter_sample", kw_only=True, frozen=True):
    evse_id: int | None
    connector_id: int | None
    transaction_id: str | None = None
    timestamp: datetime
    measurand: str
    phase: str | None = None
    unit: str
    unit_multiplier: int = 0  # value is in unit * 10^unit_multiplier
    context: str
    location: str
    value: Decimal  # as written by the station, JSON string on the wire


class SignedMeterValue(_Fact, tag="signed_meter_value", kw_only=True, frozen=True):
    """A meter value the meter signed (Eichrecht): the signed data untouched, for the
    driver's verification (OCPI CDR ``signed_data``)."""

    evse_id: int | None
    connector_id: int | None
    transaction_id: str | None = None
    timestamp: datetime
    measurand: str
    context: str
    signed_data: str  # exactly as the station sent it (OCMF string, base64...)
    encoding_method: str | None = None  # e.g. OCMF
    signing_method: str | None = None  # 2.0.1 signingMethod (e.g. ECDSA-secp256r1-SHA256)
    public_key: str | None = None  # 2.0.1 publicKey (base64)
    value: Decimal | None = None  # the plain register, when sent with it
    unit: str = ""
    unit_multiplier: int = 0


class _TransactionFact(_Fact, kw_only=True, frozen=True):
    """The fields a transaction's start, update and end share."""

    transaction_id: str
    evse_id: int | None
    connector_id: int | None
    id_tag: str | None = None
    id_token_type: str | None = None
    auth_status: str | None = None
    timestamp: datetime
    seq_no: int | None = None
    offline: bool = False
    trigger_reason: str | None = None
    charging_state: str | None = None


class TransactionStart(_TransactionFact, tag="transaction_start", kw_only=True, frozen=True):
    meter_start_wh: Decimal | None = None
    reservation_id: int | None = None


class TransactionUpdate(_TransactionFact, tag="transaction_update", kw_only=True, frozen=True):
    pass


class TransactionEnd(_TransactionFact, tag="transaction_end", kw_only=True, frozen=True):
    meter_stop_wh: Decimal | None = None
    stopped_reason: str = "Local"


class Authorization(_Fact, tag="authorization", kw_only=True, frozen=True):
    id_tag: str | None = None
    id_token_type: str | None = None
    auth_status: str | None = None  # the gateway's answer (Accepted, Invalid, Blocked...)
    timestamp: datetime  # the gateway's received_at: Authorize has no station time


class SecurityEvent(_Fact, tag="security_event", kw_only=True, frozen=True):
    event_type: str  # SecurityEventNotification ``type``
    tech_info: str | None = None
    timestamp: datetime  # the station's


class DeviceEvent(_Fact, tag="device_event", kw_only=True, frozen=True):
    """One 2.0.1 NotifyEvent ``eventData`` entry: a monitored or hard-wired variable of
    a device-model component changed (a problem raised or cleared, a value reported)."""

    event_id: int
    timestamp: datetime  # the station's time of the event
    trigger: str  # Alerting, Delta, Periodic
    actual_value: str
    component: str
    component_instance: str | None = None
    evse_id: int = 0  # 0: the whole station
    connector_id: int | None = None
    variable: str
    variable_instance: str | None = None
    tech_code: str | None = None
    tech_info: str | None = None
    cleared: bool = False
    cause: int | None = None  # the eventId of the event that caused this one
    notification_type: str  # HardWiredNotification, HardWiredMonitor, ...Monitor
    transaction_id: str | None = None
    variable_monitoring_id: int | None = None


class StationHeartbeat(_Fact, tag="station_heartbeat", kw_only=True, frozen=True):
    """A Heartbeat; ``timestamp`` is when the gateway received it (OCPP sends no time)."""

    timestamp: datetime


class StationBoot(_Fact, tag="station_boot", kw_only=True, frozen=True):
    """A BootNotification; ``timestamp`` is when the gateway received it."""

    vendor: str | None = None
    model: str | None = None
    firmware_version: str | None = None
    reason: str | None = None  # 2.0.1 BootReasonEnumType; None for 1.6
    timestamp: datetime


class ChargingNeeds(_Fact, tag="charging_needs", kw_only=True, frozen=True):
    """What the EV declared over ISO 15118 for the session on ``evse_id``."""

    evse_id: int
    requested_energy_transfer: str
    departure: datetime | None = None
    energy_wh: Decimal | None = None
    ev_min_current_a: Decimal | None = None
    ev_max_current_a: Decimal | None = None
    state_of_charge: int | None = None
    timestamp: datetime  # when the gateway received it (the message carries no time)


Normalized = (
    ConnectorStatus
    | MeterSample
    | SignedMeterValue
    | TransactionStart
    | TransactionUpdate
    | TransactionEnd
    | Authorization
    | SecurityEvent
    | DeviceEvent
    | StationHeartbeat
    | StationBoot
    | ChargingNeeds
)

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(list[Normalized])


def encode_facts(facts: list[Normalized]) -> bytes:
    return _encoder.encode(facts)


def decode_facts(data: bytes) -> list[Normalized]:
    return _decoder.decode(data)


# --------------------------------------------------------------------------- helpers


def parse_time(value: Any, default: datetime) -> datetime:
    """An RFC 3339 timestamp as an aware datetime; ``default`` when it is not one."""
    if not isinstance(value, str):
        return default
    try:
        return parse_rfc3339(value)
    except ValueError:
        return default


def to_decimal(value: Any) -> Decimal | None:
    """A finite Decimal from a JSON string or number, else None.

    >>> to_decimal("1000.50"), to_decimal(12), to_decimal(0.1), to_decimal("x"), to_decimal(True)
    (Decimal('1000.50'), Decimal('12'), Decimal('0.1'), None, None)
    """
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def status_from_v16(status: str) -> str:
    """1.6 statuses already are the common set."""
    return status if status in COMMON_STATUSES else "Unavailable"


def status_from_v201(connector_status: str, evse_state: str | None) -> str:
    """The common status of a 2.0.1 ``connectorStatus``, refining ``Occupied`` with the
    EVSE's last known transaction state (a chargingState, :data:`ENDED` or None)."""
    if connector_status != "Occupied":
        return connector_status if connector_status in COMMON_STATUSES else "Unavailable"
    if evse_state in ("Charging", "SuspendedEV", "SuspendedEVSE"):
        return evse_state
    if evse_state == ENDED:
        return "Finishing"
    return "Preparing"


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _samples(
    cp: str,
    meter_values: Any,
    *,
    evse_id: int | None,
    connector_id: int | None,
    transaction_id: str | None,
    received_at: datetime,
    v201: bool,
    signed: list[SignedMeterValue] | None = None,
) -> list[MeterSample]:
    """The numeric samples; the signed values go to ``signed`` when it is given."""
    out: list[MeterSample] = []
    if not isinstance(meter_values, list):
        return out
    for entry in meter_values:
        if not isinstance(entry, dict):
            continue
        stamp = parse_time(entry.get("timestamp"), received_at)
        for sv in entry.get("sampledValue") or ():
            if not isinstance(sv, dict):
                continue
            if not v201 and sv.get("format") == "SignedData":
                if signed is not None:
                    signed.append(_signed(cp, sv, evse_id, connector_id, transaction_id, stamp))
                continue
            value = to_decimal(sv.get("value"))
            if value is None:
                continue
            measurand = _str_or_none(sv.get("measurand")) or ENERGY_REGISTER
            if v201:
                uom = _obj(sv.get("unitOfMeasure"))
                unit = _str_or_none(uom.get("unit"))
                multiplier = _int_or_none(uom.get("multiplier")) or 0
            else:
                unit = _str_or_none(sv.get("unit"))
                multiplier = 0
            if unit is None:
                unit = "Wh" if measurand.startswith("Energy.") else ""
            sample = MeterSample(
                charge_point_id=cp,
                evse_id=evse_id,
                connector_id=connector_id,
                transaction_id=transaction_id,
                timestamp=stamp,
                measurand=measurand,
                phase=_str_or_none(sv.get("phase")),
                unit=unit,
                unit_multiplier=multiplier,
                context=_str_or_none(sv.get("context")) or SAMPLE_PERIODIC,
                location=_str_or_none(sv.get("location")) or OUTLET,
                value=value,
            )
            out.append(sample)
            if v201 and signed is not None and "signedMeterValue" in sv:
                _add_v201_signed(signed, sample, sv["signedMeterValue"])
    if signed and not v201:
        signed[:] = [_with_plain_register(s, out) for s in signed]
    return out


def _signed(
    cp: str,
    sv: dict[str, Any],
    evse_id: int | None,
    connector_id: int | None,
    transaction_id: str | None,
    stamp: datetime,
) -> SignedMeterValue:
    """A 1.6 ``SignedData`` sampled value (its plain register: :func:`_with_plain_register`)."""
    data = sv.get("value")
    data = data if isinstance(data, str) else ""
    return SignedMeterValue(
        charge_point_id=cp,
        evse_id=evse_id,
        connector_id=connector_id,
        transaction_id=transaction_id,
        timestamp=stamp,
        measurand=_str_or_none(sv.get("measurand")) or ENERGY_REGISTER,
        context=_str_or_none(sv.get("context")) or SAMPLE_PERIODIC,
        signed_data=data,
        encoding_method="OCMF" if data.startswith("OCMF|") else None,
    )


def _with_plain_register(signed: SignedMeterValue, samples: list[MeterSample]) -> SignedMeterValue:
    """A 1.6 signed value with the plain register the station sent next to it (same
    time, measurand and context, no phase), if any."""
    if signed.value is not None:
        return signed
    for s in samples:
        if (
            s.timestamp == signed.timestamp
            and s.measurand == signed.measurand
            and s.context == signed.context
            and s.phase is None
        ):
            return msgspec.structs.replace(
                signed, value=s.value, unit=s.unit, unit_multiplier=s.unit_multiplier
            )
    return signed


def _add_v201_signed(signed: list[SignedMeterValue], sample: MeterSample, raw: Any) -> None:
    """The 2.0.1 ``signedMeterValue`` of a sampled value (left out without its data)."""
    smv = _obj(raw)
    data = smv.get("signedMeterData")
    if not isinstance(data, str) or not data:
        return
    signed.append(
        SignedMeterValue(
            charge_point_id=sample.charge_point_id,
            evse_id=sample.evse_id,
            connector_id=sample.connector_id,
            transaction_id=sample.transaction_id,
            timestamp=sample.timestamp,
            measurand=sample.measurand,
            context=sample.context,
            signed_data=data,
            encoding_method=_str_or_none(smv.get("encodingMethod")) or None,
            signing_method=_str_or_none(smv.get("signingMethod")) or None,
            public_key=_str_or_none(smv.get("publicKey")) or None,
            value=sample.value,
            unit=sample.unit,
            unit_multiplier=sample.unit_multiplier,
        )
    )


def _meter_facts(cp: str, meter_values: Any, **where: Any) -> list[Normalized]:
    """The samples of ``meter_values``, then its signed values."""
    signed: list[SignedMeterValue] = []
    samples = _samples(cp, meter_values, signed=signed, **where)
    return [*samples, *signed] if signed else list(samples)


def register_wh(samples: Iterable[MeterSample], context: str, *, last: bool) -> Decimal | None:
    """The Energy.Active.Import.Register (no phase) in ``context``, in Wh: the
    earliest such sample, or the latest with ``last=True``; None when there is none."""
    found = [
        s
        for s in samples
        if s.measurand == ENERGY_REGISTER
        and s.phase is None
        and s.context == context
        and to_wh(s.value, s.unit, s.unit_multiplier) is not None
    ]
    if not found:
        return None
    found.sort(key=lambda s: s.timestamp)
    pick = found[-1] if last else found[0]
    return to_wh(pick.value, pick.unit, pick.unit_multiplier)


def _auth_status(response: Mapping[str, Any] | None, key: str) -> str | None:
    info = (response or {}).get(key)
    return _str_or_none(info.get("status")) if isinstance(info, dict) else None


# --------------------------------------------------------------------------- OCPP 1.6

_Payload = Mapping[str, Any]  # a CALL's payload
_Answer = Mapping[str, Any] | None  # the gateway's answer to it


def _v16_status(cp: str, p: _Payload, response: _Answer, received_at: datetime) -> list[Normalized]:
    cid = _int_or_none(p.get("connectorId"))
    status = _str_or_none(p.get("status"))
    if cid is None or status is None:
        return []
    return [
        ConnectorStatus(
            charge_point_id=cp,
            evse_id=cid,
            connector_id=cid,
            status=status_from_v16(status),
            ocpp_status=status,
            error_code=_str_or_none(p.get("errorCode")),
            timestamp=parse_time(p.get("timestamp"), received_at),
            vendor_id=_str_or_none(p.get("vendorId")),
            vendor_error_code=_str_or_none(p.get("vendorErrorCode")),
            info=_str_or_none(p.get("info")),
        )
    ]


def _v16_meter_values(
    cp: str, p: _Payload, response: _Answer, received_at: datetime
) -> list[Normalized]:
    cid = _int_or_none(p.get("connectorId"))
    tx = _int_or_none(p.get("transactionId"))
    return _meter_facts(
        cp,
        p.get("meterValue"),
        evse_id=cid,
        connector_id=cid,
        transaction_id=None if tx is None else str(tx),
        received_at=received_at,
        v201=False,
    )


def _v16_transaction(
    cp: str,
    tx: int,
    cid: int | None,
    p: Mapping[str, Any],
    response: Mapping[str, Any] | None,
    received_at: datetime,
) -> dict[str, Any]:
    """The fields a 1.6 StartTransaction and StopTransaction fill alike."""
    return dict(
        charge_point_id=cp,
        transaction_id=str(tx),
        evse_id=cid,
        connector_id=cid,
        id_tag=_str_or_none(p.get("idTag")),
        auth_status=_auth_status(response, "idTagInfo"),
        timestamp=parse_time(p.get("timestamp"), received_at),
    )


def _v16_meter_wh(value: Any) -> Decimal | None:
    """A 1.6 meterStart/meterStop: an integer in Wh."""
    wh = _int_or_none(value)
    return None if wh is None else Decimal(wh)


def _v16_start(cp: str, p: _Payload, response: _Answer, received_at: datetime) -> list[Normalized]:
    tx = _int_or_none((response or {}).get("transactionId"))
    if tx is None:
        return []
    cid = _int_or_none(p.get("connectorId"))
    return [
        TransactionStart(
            **_v16_transaction(cp, tx, cid, p, response, received_at),
            meter_start_wh=_v16_meter_wh(p.get("meterStart")),
            reservation_id=_int_or_none(p.get("reservationId")),
        )
    ]


def _v16_stop(cp: str, p: _Payload, response: _Answer, received_at: datetime) -> list[Normalized]:
    tx = _int_or_none(p.get("transactionId"))
    if tx is None:
        return []
    end = TransactionEnd(
        **_v16_transaction(cp, tx, None, p, response, received_at),
        meter_stop_wh=_v16_meter_wh(p.get("meterStop")),
        stopped_reason=_str_or_none(p.get("reason")) or "Local",
    )
    facts = _meter_facts(
        cp,
        p.get("transactionData"),
        evse_id=None,
        connector_id=None,
        transaction_id=str(tx),
        received_at=received_at,
        v201=False,
    )
    return [end, *facts]


def _v16_authorize(
    cp: str, p: _Payload, response: _Answer, received_at: datetime
) -> list[Normalized]:
    return [
        Authorization(
            charge_point_id=cp,
            id_tag=_str_or_none(p.get("idTag")),
            auth_status=_auth_status(response, "idTagInfo"),
            timestamp=received_at,
        )
    ]


def _heartbeat(cp: str, p: _Payload, response: _Answer, received_at: datetime) -> list[Normalized]:
    return [StationHeartbeat(charge_point_id=cp, timestamp=received_at)]


def _v16_boot(cp: str, p: _Payload, response: _Answer, received_at: datetime) -> list[Normalized]:
    return [
        StationBoot(
            charge_point_id=cp,
            vendor=_str_or_none(p.get("chargePointVendor")),
            model=_str_or_none(p.get("chargePointModel")),
            firmware_version=_str_or_none(p.get("firmwareVersion")),
            timestamp=received_at,
        )
    ]


def security_event(cp: str, p: _Payload, received_at: datetime) -> list[Normalized]:
    """A SecurityEventNotification (the same fields in 1.6 and 2.0.1)."""
    event_type = _str_or_none(p.get("type"))
    if event_type is None:
        return []
    return [
        SecurityEvent(
            charge_point_id=cp,
            event_type=event_type,
            tech_info=_str_or_none(p.get("techInfo")),
            timestamp=parse_time(p.get("timestamp"), received_at),
        )
    ]


def _v16_security_event(
    cp: str, p: _Payload, response: _Answer, received_at: datetime
) -> list[Normalized]:
    return security_event(cp, p, received_at)


_V16Normalizer = Callable[[str, _Payload, _Answer, datetime], list[Normalized]]
# The actions that carry facts; every other CALL (DataTransfer...) has none.
_V16: dict[str, _V16Normalizer] = {
    "StatusNotification": _v16_status,
    "MeterValues": _v16_meter_values,
    "StartTransaction": _v16_start,
    "StopTransaction": _v16_stop,
    "Authorize": _v16_authorize,
    "SecurityEventNotification": _v16_security_event,
    "Heartbeat": _heartbeat,
    "BootNotification": _v16_boot,
}


def normalize_v16(
    charge_point_id: str,
    action: str,
    payload: Mapping[str, Any],
    response: Mapping[str, Any] | None,
    received_at: datetime,
) -> list[Normalized]:
    """The facts in one (schema-valid) OCPP 1.6 CALL and the gateway's answer.

    >>> from datetime import UTC, datetime
    >>> t = datetime(2026, 1, 5, tzinfo=UTC)
    >>> start = normalize_v16("CP1", "StartTransaction", {"connectorId": 2, "idTag": "T",
    ...     "meterStart": 1000, "timestamp": "2026-01-05T10:00:00Z"},
    ...     {"transactionId": 7, "idTagInfo": {"status": "Accepted"}}, t)[0]
    >>> start.transaction_id, start.evse_id, start.meter_start_wh, start.auth_status
    ('7', 2, Decimal('1000'), 'Accepted')
    >>> [(type(f).__name__, f.timestamp == t) for f in normalize_v16("CP1", "Heartbeat", {}, {}, t)]
    [('StationHeartbeat', True)]
    >>> normalize_v16("CP1", "DataTransfer", {"vendorId": "V"}, {}, t)
    []
    """
    normalize = _V16.get(action)
    if normalize is None:
        return []
    return normalize(charge_point_id, payload, response, received_at)


# --------------------------------------------------------------------------- OCPP 2.0.1


class EvseStates:
    """What one connection last saw of transactions per EVSE (for ``Occupied``).

    >>> from datetime import UTC, datetime
    >>> s = EvseStates()
    >>> s.apply([TransactionUpdate(charge_point_id="CP", transaction_id="t", evse_id=1,
    ...     connector_id=1, timestamp=datetime(2026, 1, 5, tzinfo=UTC),
    ...     charging_state="SuspendedEV")])
    >>> s.get(1), s.get(2)
    ('SuspendedEV', None)
    """

    def __init__(self) -> None:
        self._by_evse: dict[int, str] = {}
        self._evse_of_tx: dict[str, int] = {}

    def get(self, evse_id: int) -> str | None:
        return self._by_evse.get(evse_id)

    def apply(self, facts: Iterable[Normalized]) -> None:
        for fact in facts:
            if isinstance(fact, TransactionStart | TransactionUpdate | TransactionEnd):
                evse = fact.evse_id
                if evse is None:
                    evse = self._evse_of_tx.get(fact.transaction_id)
                if evse is None:
                    continue
                self._evse_of_tx[fact.transaction_id] = evse
                if isinstance(fact, TransactionEnd):
                    self._by_evse[evse] = ENDED
                    self._evse_of_tx.pop(fact.transaction_id, None)
                else:
                    self._by_evse[evse] = fact.charging_state or self._by_evse.get(
                        evse, "EVConnected"
                    )
            elif isinstance(fact, ConnectorStatus) and fact.ocpp_status == "Available":
                self._by_evse.pop(fact.evse_id, None)


def _v201_status(
    cp: str, p: _Payload, response: _Answer, received_at: datetime, evse_states: EvseStates | None
) -> list[Normalized]:
    evse = _int_or_none(p.get("evseId"))
    cid = _int_or_none(p.get("connectorId"))
    status = _str_or_none(p.get("connectorStatus"))
    if evse is None or cid is None or status is None:
        return []
    state = evse_states.get(evse) if evse_states is not None else None
    return [
        ConnectorStatus(
            charge_point_id=cp,
            evse_id=evse,
            connector_id=cid,
            status=status_from_v201(status, state),
            ocpp_status=status,
            error_code=None,
            timestamp=parse_time(p.get("timestamp"), received_at),
        )
    ]


def _v201_meter_values(
    cp: str, p: _Payload, response: _Answer, received_at: datetime, evse_states: EvseStates | None
) -> list[Normalized]:
    return _meter_facts(
        cp,
        p.get("meterValue"),
        evse_id=_int_or_none(p.get("evseId")),
        connector_id=None,
        transaction_id=None,
        received_at=received_at,
        v201=True,
    )


def _v201_transaction(
    cp: str, p: _Payload, response: _Answer, received_at: datetime, evse_states: EvseStates | None
) -> list[Normalized]:
    """A TransactionEvent: its Started/Updated/Ended fact, then its samples."""
    info = _obj(p.get("transactionInfo"))
    tx = _str_or_none(info.get("transactionId"))
    if tx is None:
        return []
    evse_obj = _obj(p.get("evse"))
    evse = _int_or_none(evse_obj.get("id"))
    cid = _int_or_none(evse_obj.get("connectorId"))
    token = _obj(p.get("idToken"))
    signed: list[SignedMeterValue] = []
    samples = _samples(
        cp,
        p.get("meterValue"),
        evse_id=evse,
        connector_id=cid,
        transaction_id=tx,
        received_at=received_at,
        v201=True,
        signed=signed,
    )
    common: dict[str, Any] = dict(
        charge_point_id=cp,
        transaction_id=tx,
        evse_id=evse,
        connector_id=cid,
        id_tag=_str_or_none(token.get("idToken")),
        id_token_type=_str_or_none(token.get("type")),
        auth_status=_auth_status(response, "idTokenInfo"),
        timestamp=parse_time(p.get("timestamp"), received_at),
        seq_no=_int_or_none(p.get("seqNo")),
        offline=p.get("offline") is True,
        trigger_reason=_str_or_none(p.get("triggerReason")),
        charging_state=_str_or_none(info.get("chargingState")),
    )
    event = p.get("eventType")
    fact: Normalized
    if event == "Started":
        fact = TransactionStart(
            **common,
            meter_start_wh=register_wh(samples, TRANSACTION_BEGIN, last=False),
            reservation_id=_int_or_none(p.get("reservationId")),
        )
    elif event == "Ended":
        fact = TransactionEnd(
            **common,
            meter_stop_wh=register_wh(samples, TRANSACTION_END, last=True),
            stopped_reason=_str_or_none(info.get("stoppedReason")) or "Local",
        )
    else:
        fact = TransactionUpdate(**common)
    return [fact, *samples, *signed]


def _v201_authorize(
    cp: str, p: _Payload, response: _Answer, received_at: datetime, evse_states: EvseStates | None
) -> list[Normalized]:
    token = _obj(p.get("idToken"))
    return [
        Authorization(
            charge_point_id=cp,
            id_tag=_str_or_none(token.get("idToken")),
            id_token_type=_str_or_none(token.get("type")),
            auth_status=_auth_status(response, "idTokenInfo"),
            timestamp=received_at,
        )
    ]


def _v201_event(cp: str, entry: dict[str, Any], received_at: datetime) -> DeviceEvent | None:
    event_id = _int_or_none(entry.get("eventId"))
    component, variable = _obj(entry.get("component")), _obj(entry.get("variable"))
    component_name, variable_name = component.get("name"), variable.get("name")
    if (
        event_id is None
        or not isinstance(component_name, str)
        or not isinstance(variable_name, str)
    ):
        return None
    evse = _obj(component.get("evse"))
    actual = entry.get("actualValue")
    return DeviceEvent(
        charge_point_id=cp,
        event_id=event_id,
        timestamp=parse_time(entry.get("timestamp"), received_at),
        trigger=_str_or_none(entry.get("trigger")) or "",
        actual_value=actual if isinstance(actual, str) else "",
        component=component_name,
        component_instance=_str_or_none(component.get("instance")),
        evse_id=_int_or_none(evse.get("id")) or 0,
        connector_id=_int_or_none(evse.get("connectorId")),
        variable=variable_name,
        variable_instance=_str_or_none(variable.get("instance")),
        tech_code=_str_or_none(entry.get("techCode")),
        tech_info=_str_or_none(entry.get("techInfo")),
        cleared=entry.get("cleared") is True,
        cause=_int_or_none(entry.get("cause")),
        notification_type=_str_or_none(entry.get("eventNotificationType")) or "",
        transaction_id=_str_or_none(entry.get("transactionId")),
        variable_monitoring_id=_int_or_none(entry.get("variableMonitoringId")),
    )


def _v201_notify_event(
    cp: str, p: _Payload, response: _Answer, received_at: datetime, evse_states: EvseStates | None
) -> list[Normalized]:
    entries = p.get("eventData")
    if not isinstance(entries, list):
        return []
    events = (_v201_event(cp, e, received_at) for e in entries if isinstance(e, dict))
    return [e for e in events if e is not None]


def _v201_heartbeat(
    cp: str, p: _Payload, response: _Answer, received_at: datetime, evse_states: EvseStates | None
) -> list[Normalized]:
    return _heartbeat(cp, p, response, received_at)


def _v201_boot(
    cp: str, p: _Payload, response: _Answer, received_at: datetime, evse_states: EvseStates | None
) -> list[Normalized]:
    station = _obj(p.get("chargingStation"))
    return [
        StationBoot(
            charge_point_id=cp,
            vendor=_str_or_none(station.get("vendorName")),
            model=_str_or_none(station.get("model")),
            firmware_version=_str_or_none(station.get("firmwareVersion")),
            reason=_str_or_none(p.get("reason")),
            timestamp=received_at,
        )
    ]


def _v201_security_event(
    cp: str, p: _Payload, response: _Answer, received_at: datetime, evse_states: EvseStates | None
) -> list[Normalized]:
    return security_event(cp, p, received_at)


def _v201_charging_needs(
    cp: str, p: _Payload, response: _Answer, received_at: datetime, evse_states: EvseStates | None
) -> list[Normalized]:
    """
    >>> from datetime import UTC, datetime
    >>> [needs] = _v201_charging_needs("CP2", {"evseId": 1, "chargingNeeds": {
    ...     "requestedEnergyTransfer": "AC_three_phase", "departureTime": "2026-01-05T17:00:00Z",
    ...     "acChargingParameters": {"energyAmount": 30000, "evMinCurrent": 6,
    ...         "evMaxCurrent": 16, "evMaxVoltage": 400}}}, None, datetime(2026, 1, 5, tzinfo=UTC),
    ...     None)
    >>> needs.departure.hour, needs.energy_wh, needs.ev_min_current_a, needs.ev_max_current_a
    (17, Decimal('30000'), Decimal('6'), Decimal('16'))
    """
    evse_id, needs = _int_or_none(p.get("evseId")), _obj(p.get("chargingNeeds"))
    if evse_id is None:
        return []
    ac, dc = _obj(needs.get("acChargingParameters")), _obj(needs.get("dcChargingParameters"))
    try:
        departure = parse_rfc3339(needs["departureTime"]) if "departureTime" in needs else None
    except (TypeError, ValueError):
        departure = None  # not a time: no departure declared rather than one "now"
    return [
        ChargingNeeds(
            charge_point_id=cp,
            evse_id=evse_id,
            requested_energy_transfer=_str_or_none(needs.get("requestedEnergyTransfer")) or "",
            departure=departure,
            energy_wh=to_decimal(ac.get("energyAmount", dc.get("energyAmount"))),
            ev_min_current_a=to_decimal(ac.get("evMinCurrent")),
            ev_max_current_a=to_decimal(ac.get("evMaxCurrent")),
            state_of_charge=_int_or_none(dc.get("stateOfCharge")),
            timestamp=received_at,
        )
    ]


_V201Normalizer = Callable[[str, _Payload, _Answer, datetime, EvseStates | None], list[Normalized]]
# The actions that carry facts; every other CALL (NotifyReport...) has none.
_V201: dict[str, _V201Normalizer] = {
    "StatusNotification": _v201_status,
    "MeterValues": _v201_meter_values,
    "TransactionEvent": _v201_transaction,
    "Authorize": _v201_authorize,
    "SecurityEventNotification": _v201_security_event,
    "NotifyEvent": _v201_notify_event,
    "Heartbeat": _v201_heartbeat,
    "BootNotification": _v201_boot,
    "NotifyEVChargingNeeds": _v201_charging_needs,
}


def normalize_v201(
    charge_point_id: str,
    action: str,
    payload: Mapping[str, Any],
    response: Mapping[str, Any] | None,
    received_at: datetime,
    evse_states: EvseStates | None = None,
) -> list[Normalized]:
    """The facts in one (schema-valid) OCPP 2.0.1 CALL and the gateway's answer.

    >>> from datetime import UTC, datetime
    >>> t = datetime(2026, 1, 5, tzinfo=UTC)
    >>> facts = normalize_v201("CP2", "TransactionEvent", {"eventType": "Ended",
    ...     "timestamp": "2026-01-05T11:00:00Z", "triggerReason": "EVDeparted", "seqNo": 4,
    ...     "transactionInfo": {"transactionId": "tx-1", "stoppedReason": "EVDisconnected"},
    ...     "meterValue": [{"timestamp": "2026-01-05T11:00:00Z", "sampledValue": [
    ...         {"value": 12.345, "context": "Transaction.End",
    ...          "unitOfMeasure": {"unit": "kWh"}}]}]}, {}, t)
    >>> end = facts[0]
    >>> end.transaction_id, end.meter_stop_wh, end.seq_no, end.stopped_reason
    ('tx-1', Decimal('12345.000'), 4, 'EVDisconnected')
    >>> facts[1].value, facts[1].unit
    (Decimal('12.345'), 'kWh')
    """
    normalize = _V201.get(action)
    if normalize is None:
        return []
    return normalize(charge_point_id, payload, response, received_at, evse_states)
