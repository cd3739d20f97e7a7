"""``alerts``: what maintenance is told about a charge point.

Two kinds of message share the topic (key = charge point id): the gateway's
``security.alert`` envelopes, and ``fault.alert`` messages (:class:`FaultAlert`) from
the faults flow. A fault alert is one ongoing fault of one connector (``connector_id``
0 = the whole station): it is published when it opens, again when its evidence or
severity changes, and once more when it resolves; every version carries the whole
alert, with the same ``alert_id``, so a consumer keeps the last one per id. The id is
derived from (station, connector, kind, first_seen), all telemetry facts, so a replay
of the same history gives the same ids. Times are telemetry time.

>>> from datetime import UTC, datetime
>>> t = datetime(2026, 7, 1, 12, tzinfo=UTC)
>>> a = FaultAlert(alert_id=alert_id("CP1", 1, AlertKind.GROUND_FAULT, t), station_id="CP1",
...     connector_id=1, alert_kind=AlertKind.GROUND_FAULT, severity=Severity.CRITICAL,
...     status=AlertStatus.OPEN, first_seen=t, last_seen=t, detector="rule:error_code",
...     evidence=Evidence(at=t, summary="GroundFailure reported"),
...     recommended_action="Isolate the connector and test the RCD.")
>>> decode_fault_alert(encode_fault_alert(a)) == a, a.alert_id
(True, '0eff6be7305a02767152c117')
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum
from typing import Any

import msgspec

from bus.codec import JsonCodec
from bus.times import format_rfc3339

SCHEMA_VERSION = 1
KIND = "fault.alert"


class AlertKind(StrEnum):
    CONNECTOR_OVERHEATING = "connector_overheating"
    CONTACTOR_DEGRADATION = "contactor_degradation"
    CABLE_DAMAGE = "cable_damage"
    GRID_IRREGULARITY = "grid_irregularity"
    METER_FAULT = "meter_fault"
    COMM_DEGRADATION = "comm_degradation"
    EV_COMM_ERROR = "ev_comm_error"
    GROUND_FAULT = "ground_fault"
    CONTROLLER_FAULT = "controller_fault"
    SECURITY = "security"


class Severity(StrEnum):
    """How soon someone must act: ``critical`` now (unsafe or out of service), ``high``
    today, ``medium`` at the next visit, ``low`` watch it."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.LOW: 0, Severity.MEDIUM: 1, Severity.HIGH: 2, Severity.CRITICAL: 3}


class AlertStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Evidence(msgspec.Struct, kw_only=True, frozen=True):
    """What made a detector or rule fire, at one telemetry instant."""

    at: datetime
    summary: str  # one sentence for a person
    features: dict[str, float] = msgspec.field(default_factory=dict)
    scores: dict[str, float] = msgspec.field(default_factory=dict)


class FaultAlert(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=False):
    alert_id: str
    station_id: str
    connector_id: int  # 0: the whole station
    alert_kind: AlertKind
    severity: Severity
    status: AlertStatus
    first_seen: datetime
    last_seen: datetime
    detector: str  # "rule:<name>" or "model:<name>"
    evidence: Evidence
    recommended_action: str
    resolved_at: datetime | None = None
    kind: str = KIND
    schema_version: int = SCHEMA_VERSION


def alert_id(station_id: str, connector_id: int, kind: AlertKind, first_seen: datetime) -> str:
    """A stable id from telemetry facts (96 bits of SHA-256, hex)."""
    text = f"{station_id}\x1f{connector_id}\x1f{kind.value}\x1f{format_rfc3339(first_seen)}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class ConnectorHealth(msgspec.Struct, kw_only=True, frozen=True):
    """The current risk of one connector (``connector_id`` 0: the station), for
    ``GET /v1/stations/{id}/health``: the detector's latest score in [0, 1] under load
    and the features that deviate most from the connector's own baseline (signed, in
    standard deviations). ``phase`` says whether the model may alert yet. ``features``
    also carries ``first_try_success`` (share of the connector's last attempts that
    started charging, :mod:`models.sessions_success`) once it had one."""

    station_id: str
    connector_id: int
    at: datetime  # telemetry time of the reading scored
    risk: float
    phase: str  # "warming_up" (learning, silent) or "monitoring"
    contributions: dict[str, float] = msgspec.field(default_factory=dict)
    features: dict[str, float] = msgspec.field(default_factory=dict)


_codec = JsonCodec(FaultAlert)
encode_fault_alert = _codec.encode
decode_fault_alert = _codec.decode


def fault_alert_from_payload(payload: dict[str, Any]) -> FaultAlert:
    """From the JSON object of a stored version (``alerts_outbox.payload``, which is
    ``msgspec.to_builtins`` of the alert)."""
    return msgspec.convert(payload, FaultAlert, strict=False)
