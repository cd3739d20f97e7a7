"""Deterministic rules for definite faults, and what each kind of fault asks of
maintenance.

A model says "this connector behaves unlike itself"; a rule says "the station reported a
fault" or "the register cannot be right". Rules fire on the first piece of evidence
(the hard-fault path: alerted on the event itself), and clear when the station reports
the connector healthy again.

OCPP 1.6 error codes map to alert kinds; ``EVCommunicationError`` is, by the 1.6
specification, not a fault of the station (the connector goes SuspendedEVSE), so it
is an ``ev_comm_error`` of low severity. 2.0.1 StatusNotification has no error code:
a 2.0.1 ``Faulted`` is a controller fault until NotifyEvent says more.

>>> from datetime import UTC, datetime
>>> t = datetime(2026, 7, 1, 12, tzinfo=UTC)
>>> status = ConnectorStatus(charge_point_id="CP1", evse_id=1, connector_id=1,
...     status="Faulted", ocpp_status="Faulted", error_code="GroundFailure", timestamp=t)
>>> [(f.kind.value, f.severity.value, f.detector) for f in status_findings(status)]
[('ground_fault', 'critical', 'rule:error_code')]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from bus.alerts import AlertKind, Evidence, Severity
from bus.normalized import ConnectorStatus


@dataclass(frozen=True, slots=True)
class Finding:
    """A rule's or detector's claim: this connector shows this kind of fault now."""

    station_id: str
    connector_id: int  # 0: the whole station
    kind: AlertKind
    severity: Severity
    at: datetime  # telemetry time of the evidence (gateway time when ``gateway_time``)
    detector: str
    evidence: Evidence
    # How its alert resolves: "clear" (when the station reports healthy: a Clear),
    # "quiet" (after the book's resolve_after without a finding); None: "clear" for a
    # ``rule:`` detector, "quiet" for the others.
    resolves: str | None = None
    # ``at`` is the gateway's receive time (its security alerts, Authorize), not the
    # station's: the alert goes quiet on the gateway's clock.
    gateway_time: bool = False

    @property
    def waits_for_clear(self) -> bool:
        if self.resolves is None:
            return self.detector.startswith("rule:")
        return self.resolves == "clear"


@dataclass(frozen=True, slots=True)
class Clear:
    """The station reports the connector healthy again for these kinds; with
    ``detectors``, only for the alerts those rules raised (a healthy status report says
    nothing about the communication rules' offline alert of the same connector 0)."""

    station_id: str
    connector_id: int
    at: datetime
    kinds: frozenset[AlertKind] = field(default_factory=frozenset)
    detectors: frozenset[str] = field(default_factory=frozenset)  # empty: any rule


ACTIONS: dict[AlertKind, str] = {
    AlertKind.CONNECTOR_OVERHEATING: (
        "Inspect the connector and cable for discolouration and loose terminals; check the "
        "contact resistance and re-torque or replace the connector."
    ),
    AlertKind.CONTACTOR_DEGRADATION: (
        "Measure the voltage drop across the contactor under load and replace the contactor "
        "or relay before it welds or fails to close."
    ),
    AlertKind.CABLE_DAMAGE: (
        "Inspect the cable and connector for damage and the lock for faults; replace the "
        "cable assembly if delivered power stays below offered."
    ),
    AlertKind.GRID_IRREGULARITY: (
        "Check the supply at the site (all stations of the site, the grid operator's notices); "
        "the station itself may be healthy."
    ),
    AlertKind.METER_FAULT: (
        "Hold the connector's sessions for billing review, compare with the site meter and "
        "replace or recalibrate the meter."
    ),
    AlertKind.COMM_DEGRADATION: (
        "Check the modem, SIM and signal strength, and the station's network settings; "
        "plan a visit if it keeps dropping."
    ),
    AlertKind.EV_COMM_ERROR: (
        "Usually the vehicle: watch for repeats with different vehicles, then inspect the "
        "control pilot wiring and the inlet."
    ),
    AlertKind.GROUND_FAULT: (
        "Take the connector out of service, inspect for moisture and insulation damage and "
        "test the residual current device before re-enabling it."
    ),
    AlertKind.CONTROLLER_FAULT: (
        "Read the station's diagnostics and log, try a soft reset, and escalate to the "
        "manufacturer if it recurs."
    ),
    AlertKind.SECURITY: (
        "Read the evidence: after failed logins rotate the station's password; for a shared "
        "or guessed id tag block the cards; for tampering, bad certificates or energy without "
        "a session, send someone to the site and check the firmware and the contactor."
    ),
}

# 1.6 errorCode -> (kind, severity). NoError is no fault; absent codes are not listed.
ERROR_CODES: dict[str, tuple[AlertKind, Severity]] = {
    "GroundFailure": (AlertKind.GROUND_FAULT, Severity.CRITICAL),
    "HighTemperature": (AlertKind.CONNECTOR_OVERHEATING, Severity.CRITICAL),
    "PowerSwitchFailure": (AlertKind.CONTACTOR_DEGRADATION, Severity.CRITICAL),
    "OverCurrentFailure": (AlertKind.CONTROLLER_FAULT, Severity.HIGH),
    "PowerMeterFailure": (AlertKind.METER_FAULT, Severity.HIGH),
    "ConnectorLockFailure": (AlertKind.CABLE_DAMAGE, Severity.HIGH),
    "UnderVoltage": (AlertKind.GRID_IRREGULARITY, Severity.HIGH),
    "OverVoltage": (AlertKind.GRID_IRREGULARITY, Severity.HIGH),
    "WeakSignal": (AlertKind.COMM_DEGRADATION, Severity.MEDIUM),
    "EVCommunicationError": (AlertKind.EV_COMM_ERROR, Severity.LOW),
    "InternalError": (AlertKind.CONTROLLER_FAULT, Severity.HIGH),
    "ResetFailure": (AlertKind.CONTROLLER_FAULT, Severity.HIGH),
    "ReaderFailure": (AlertKind.CONTROLLER_FAULT, Severity.MEDIUM),
    "LocalListConflict": (AlertKind.CONTROLLER_FAULT, Severity.LOW),
    "OtherError": (AlertKind.CONTROLLER_FAULT, Severity.MEDIUM),
}
# The kinds a status report can raise, so a healthy report clears exactly those.
STATUS_KINDS = frozenset(kind for kind, _ in ERROR_CODES.values())
# The rules a healthy status report clears (the 1.6 vendor codes come with the status).
STATUS_DETECTORS = frozenset({"rule:error_code", "rule:vendor_code"})


def status_findings(status: ConnectorStatus) -> list[Finding | Clear]:
    """What one StatusNotification says about faults: a finding for an error code or a
    Faulted connector, else a clear of every status-raised kind on that connector."""
    station, connector, at = status.charge_point_id, status.connector_id, status.timestamp
    code = status.error_code
    if code in ERROR_CODES:
        kind, severity = ERROR_CODES[code]
        summary = f"The station reported {code} with status {status.ocpp_status}."
    elif status.status == "Faulted":
        kind, severity = AlertKind.CONTROLLER_FAULT, Severity.HIGH
        summary = "The station reported the connector Faulted without an error code."
    else:
        return [Clear(station, connector, at, STATUS_KINDS, STATUS_DETECTORS)]
    evidence = Evidence(at=at, summary=summary)
    return [Finding(station, connector, kind, severity, at, "rule:error_code", evidence)]


@dataclass(slots=True)
class RegisterRule:
    """The energy register disagrees with the power that flowed: it stands still
    (``register_ratio`` below ``frozen_ratio`` on ``frozen_readings`` consecutive readings
    under load; one can be a rounding artefact, several cannot), or it jumps (above
    ``jump_ratio`` once). A reading whose register follows the power again clears it.
    """

    frozen_readings: int = 3
    frozen_ratio: float = 0.05
    jump_ratio: float = 3.0
    frozen_run: int = 0
    firing: bool = False

    def update(
        self, station_id: str, connector_id: int, at: datetime, features: dict[str, float]
    ) -> Finding | Clear | None:
        ratio = features.get("register_ratio")
        if ratio is None:
            return None
        if ratio > self.jump_ratio:
            self.frozen_run = 0
            summary = f"The energy register jumped {ratio:.1f} times what the power delivered."
            return self._finding(station_id, connector_id, at, ratio, "rule:register_jump", summary)
        if ratio >= self.frozen_ratio:
            self.frozen_run = 0
            if not self.firing:
                return None
            self.firing = False
            return Clear(station_id, connector_id, at, frozenset({AlertKind.METER_FAULT}))
        self.frozen_run += 1
        if self.frozen_run < self.frozen_readings:
            return None
        summary = (
            f"The energy register did not follow the power for {self.frozen_run} readings "
            f"(register/power ratio {ratio:.2f})."
        )
        return self._finding(station_id, connector_id, at, ratio, "rule:frozen_register", summary)

    def _finding(
        self,
        station_id: str,
        connector_id: int,
        at: datetime,
        ratio: float,
        rule: str,
        summary: str,
    ) -> Finding:
        self.firing = True
        evidence = Evidence(at=at, summary=summary, features={"register_ratio": ratio})
        return Finding(
            station_id, connector_id, AlertKind.METER_FAULT, Severity.HIGH, at, rule, evidence
        )
