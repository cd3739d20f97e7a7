"""Device-model events (2.0.1 NotifyEvent) and 1.6 vendor error codes as findings.

2.0.1 StatusNotification has no error code: a station tells its faults as NotifyEvent
entries on device-model components (e.g. EVerest: component ``EVSE`` or
``ChargingStation``, variable ``Problem``, ``actualValue`` "true"/"false", techCode the
ChargeX MREC code, ``cleared`` when it is over). 1.6 stations carry the same MREC codes
in StatusNotification ``vendorErrorCode`` (ChargeX ``vendorId``
``https://chargex.inl.gov``). One vocabulary maps both to an alert kind and severity, in
this order:

1. the code (``techCode``, or each of a comma-separated ``vendorErrorCode``): the MREC
   codes (:data:`MREC_CODES`) and the 1.6 error code names (:data:`models.rules.ERROR_CODES`);
2. the component's name, then the variable's (:data:`NAME_KINDS`, by word: temperature
   sensors -> connector_overheating, RCD/ground -> ground_fault, meters -> meter_fault,
   locks and cables -> cable_damage, contactors/relays -> contactor_degradation, ...);
3. a ``Problem``/``Fault``/``Tripped`` variable of any other component -> controller_fault.

An event is a fault when it has a known code, when it sets a problem variable (any value
but "false"/"0"/""), or when a monitor alerts (trigger ``Alerting``) on a component or
variable of the vocabulary; periodic and delta reports of a value are not. ``cleared``
(or a problem variable set to "false") clears its kind on that EVSE. A healthy 2.0.1
StatusNotification does not clear device-event alerts: the station clears them.

Numeric ``Temperature`` values of an EVSE's components (monitors, periodic reports;
2.0.1 has no Temperature measurand) are :func:`device_temperature`; the station feeds
the last one into that connector's next reading. NotifyEvent has no unit: the device
model's default, degrees Celsius, is assumed.

>>> from datetime import UTC, datetime
>>> from bus.normalized import DeviceEvent
>>> t = datetime(2026, 7, 1, 12, tzinfo=UTC)
>>> hot = DeviceEvent(charge_point_id="CS", event_id=1, timestamp=t, trigger="Alerting",
...     actual_value="105", component="CableTemperatureSensor", evse_id=1,
...     variable="Temperature", tech_code="CX019", notification_type="CustomMonitor")
>>> [(f.kind.value, f.severity.value, f.connector_id) for f in event_findings(hot)]
[('connector_overheating', 'critical', 1)]
>>> device_temperature(hot)
105.0
>>> import msgspec
>>> [type(r).__name__ for r in event_findings(msgspec.structs.replace(hot, cleared=True))]
['Clear']
"""

from __future__ import annotations

import re

from bus.alerts import AlertKind, Evidence, Severity
from bus.normalized import ConnectorStatus, DeviceEvent
from models.rules import ERROR_CODES, Clear, Finding, status_findings

K, S = AlertKind, Severity

# ChargeX minimum required error codes (as EVerest maps them to OCPP), kind and severity.
MREC_CODES: dict[str, tuple[AlertKind, Severity]] = {
    "CX001": (K.CABLE_DAMAGE, S.HIGH),  # ConnectorLockFailure
    "CX002": (K.GROUND_FAULT, S.CRITICAL),  # GroundFailure
    "CX003": (K.CONNECTOR_OVERHEATING, S.CRITICAL),  # HighTemperature
    "CX004": (K.CONTROLLER_FAULT, S.HIGH),  # OverCurrentFailure
    "CX005": (K.GRID_IRREGULARITY, S.HIGH),  # OverVoltage
    "CX006": (K.GRID_IRREGULARITY, S.HIGH),  # UnderVoltage
    "CX008": (K.CONTROLLER_FAULT, S.HIGH),  # EmergencyStop
    "CX010": (K.EV_COMM_ERROR, S.LOW),  # InvalidVehicleMode
    "CX011": (K.GROUND_FAULT, S.HIGH),  # CableCheckFault (DC insulation check)
    "CX014": (K.EV_COMM_ERROR, S.MEDIUM),  # PilotFault
    "CX015": (K.GRID_IRREGULARITY, S.HIGH),  # PowerLoss
    "CX017": (K.CONTACTOR_DEGRADATION, S.CRITICAL),  # EVSEContactorFault
    "CX018": (K.CONNECTOR_OVERHEATING, S.HIGH),  # CableOverTempDerate
    "CX019": (K.CONNECTOR_OVERHEATING, S.CRITICAL),  # CableOverTempStop
    "CX020": (K.CABLE_DAMAGE, S.MEDIUM),  # PartialInsertion
    "CX022": (K.GROUND_FAULT, S.HIGH),  # ResistanceFault (isolation)
    "CX023": (K.CABLE_DAMAGE, S.MEDIUM),  # ProximityFault
    "CX024": (K.CONTACTOR_DEGRADATION, S.CRITICAL),  # ConnectorVoltageHigh (welded?)
    "CX025": (K.CABLE_DAMAGE, S.HIGH),  # BrokenLatch
}
CODES: dict[str, tuple[AlertKind, Severity]] = {
    **{code.lower(): v for code, v in ERROR_CODES.items()},
    **{code.lower(): v for code, v in MREC_CODES.items()},
}

# Words of component/variable names (lower case, first match wins) -> kind, severity.
NAME_KINDS: tuple[tuple[str, AlertKind, Severity], ...] = (
    ("temperature", K.CONNECTOR_OVERHEATING, S.HIGH),
    ("thermal", K.CONNECTOR_OVERHEATING, S.HIGH),
    ("rcd", K.GROUND_FAULT, S.CRITICAL),
    ("ground", K.GROUND_FAULT, S.CRITICAL),
    ("isolation", K.GROUND_FAULT, S.CRITICAL),
    ("meter", K.METER_FAULT, S.HIGH),
    ("lock", K.CABLE_DAMAGE, S.HIGH),
    ("cable", K.CABLE_DAMAGE, S.HIGH),
    ("contactor", K.CONTACTOR_DEGRADATION, S.HIGH),
    ("relay", K.CONTACTOR_DEGRADATION, S.HIGH),
    ("voltage", K.GRID_IRREGULARITY, S.HIGH),
    ("electricalfeed", K.GRID_IRREGULARITY, S.HIGH),
    ("datalink", K.COMM_DEGRADATION, S.MEDIUM),
    ("modem", K.COMM_DEGRADATION, S.MEDIUM),
)
PROBLEM_VARIABLES = frozenset({"problem", "fault", "tripped"})
NOT_A_PROBLEM = frozenset({"false", "0", ""})
# Components about the vehicle, not the station: their temperatures are the EV's.
EV_COMPONENTS = frozenset({"connectedev"})
DETECTOR = "rule:device_event"
VENDOR_DETECTOR = "rule:vendor_code"
_GENERIC_CODES = frozenset({"OtherError", "InternalError", "NoError"})


def code_kind(code: str | None) -> tuple[AlertKind, Severity] | None:
    """The kind of an MREC code or 1.6 error code name (any case), else None.

    >>> [(k.value, s.value) for k, s in (code_kind("CX002"), code_kind("highTemperature"))]
    [('ground_fault', 'critical'), ('connector_overheating', 'critical')]
    >>> code_kind("X9") is None
    True
    """
    return None if code is None else CODES.get(code.strip().lower())


def name_kind(name: str) -> tuple[AlertKind, Severity] | None:
    """The kind a component or variable name points to, else None."""
    lowered = re.sub(r"[^a-z]", "", name.lower())
    for word, kind, severity in NAME_KINDS:
        if word in lowered:
            return kind, severity
    return None


def event_kind(event: DeviceEvent) -> tuple[AlertKind, Severity] | None:
    """The kind an event is about, by the vocabulary's order (code, component,
    variable, problem variable); None when the vocabulary does not know it."""
    found = code_kind(event.tech_code) or name_kind(event.component) or name_kind(event.variable)
    if found is None and event.variable.lower() in PROBLEM_VARIABLES:
        return K.CONTROLLER_FAULT, S.MEDIUM
    return found


def event_findings(event: DeviceEvent) -> list[Finding | Clear]:
    """What one device event says: a finding, a clear of its kind, or nothing."""
    found = event_kind(event)
    if found is None:
        return []
    kind, severity = found
    station, connector, at = event.charge_point_id, event.evse_id, event.timestamp
    problem_variable = event.variable.lower() in PROBLEM_VARIABLES
    value = event.actual_value.strip().lower()
    if event.cleared or (problem_variable and value in NOT_A_PROBLEM):
        return [Clear(station, connector, at, frozenset({kind}), frozenset({DETECTOR}))]
    is_fault = (
        code_kind(event.tech_code) is not None or problem_variable or event.trigger == "Alerting"
    )
    if not is_fault:
        return []
    code = f" {event.tech_code}" if event.tech_code else ""
    summary = (
        f"The station reported{code} on {event.component}.{event.variable} = "
        f"{event.actual_value!r} ({event.trigger})."
    )
    features: dict[str, float] = {}
    number = _number(event.actual_value)
    if number is not None:
        features["actual_value"] = number
    evidence = Evidence(at=at, summary=summary, features=features)
    return [Finding(station, connector, kind, severity, at, DETECTOR, evidence)]


def device_temperature(event: DeviceEvent) -> float | None:
    """The EVSE temperature in degrees Celsius a (numeric, plausible) ``Temperature``
    event reports; None for other events, the station's own and the EV's."""
    if event.variable.lower() != "temperature" or event.evse_id == 0:
        return None
    if event.component.lower() in EV_COMPONENTS:
        return None
    number = _number(event.actual_value)
    return number if number is not None and -60.0 <= number <= 250.0 else None


def vendor_findings(status: ConnectorStatus) -> list[Finding]:
    """Findings of the known codes in a 1.6 ``vendorErrorCode`` (comma-separated lists
    as in the MREC format); one per kind, the most severe."""
    raw = status.vendor_error_code
    if not raw:
        return []
    best: dict[AlertKind, Severity] = {}
    for code in raw.split(","):
        found = code_kind(code)
        if found is None:
            continue
        kind, severity = found
        if kind not in best or severity.rank > best[kind].rank:
            best[kind] = severity
    at = status.timestamp
    info = f" ({status.info})" if status.info else ""
    summary = f"The station reported vendor code {raw}{info} with status {status.ocpp_status}."
    return [
        Finding(
            status.charge_point_id,
            status.connector_id,
            kind,
            severity,
            at,
            VENDOR_DETECTOR,
            Evidence(at=at, summary=summary),
        )
        for kind, severity in best.items()
    ]


def status_results(status: ConnectorStatus) -> list[Finding | Clear]:
    """:func:`models.rules.status_findings` refined by the vendor code: a known vendor
    code names the fault more precisely than a generic ``OtherError``/``InternalError``
    (which is then dropped), and a status with one is not a healthy report."""
    vendor = vendor_findings(status)
    base = status_findings(status)
    if not vendor:
        return base
    vendor_kinds = {f.kind for f in vendor}
    kept = [
        r
        for r in base
        if isinstance(r, Finding)
        and status.error_code not in _GENERIC_CODES
        and r.kind not in vendor_kinds
    ]
    return [*kept, *vendor]


def _number(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if number == number and abs(number) != float("inf") else None
