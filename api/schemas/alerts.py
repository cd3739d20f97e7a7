"""Fault and security alerts: ``AlertBase`` (what an alert says), ``AlertPublic`` (with
its id, site and who handled it), ``AlertDetailPublic`` (with its history),
``AlertsPage`` (one page of a listing), ``AlertActionCreate`` (the body of acknowledge
and resolve: an optional note)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue
from pydantic.config import JsonDict

from api.params import ALERT_CURSOR_PATTERN, EXAMPLE_ALERT_FIRST_SEEN, EXAMPLE_ALERT_ID
from bus.alerts import AlertKind, AlertStatus, Severity

MAX_NOTE_LENGTH = 2000
# Text a person types: any characters but the C0/C1 controls other than tab and newline
# (NUL cannot be stored in PostgreSQL text).
NOTE_PATTERN = r"^[^\u0000-\u0008\u000b-\u001f\u007f-\u009f]*$"


class EvidencePublic(BaseModel):
    at: datetime = Field(description="Telemetry time of the evidence")
    summary: str = Field(description="One sentence for a person")
    features: dict[str, float] = Field(description="The feature values that made it fire")
    scores: dict[str, float] = Field(description="The detectors' scores")


class AlertBase(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    station_id: str
    connector_id: int = Field(description="OCPP connector / EVSE id; 0 = the whole station")
    kind: AlertKind = Field(description="The likely failure mode")
    severity: Severity = Field(
        description="critical: act now (unsafe or out of service); high: today; medium: at "
        "the next visit; low: watch it"
    )
    status: AlertStatus = Field(
        description="open -> acknowledged -> resolved (by the flow when healthy again, or by "
        "a person)"
    )
    first_seen: datetime = Field(description="Telemetry time the fault was first seen")
    last_seen: datetime = Field(description="Telemetry time of the latest evidence")
    detector: str = Field(
        description='The rule or model that fired ("rule:<name>", "model:<name>")'
    )
    evidence: EvidencePublic = Field(description="The latest evidence")
    recommended_action: str


EXAMPLE_ALERT: JsonDict = {
    "alert_id": EXAMPLE_ALERT_ID,
    "station_id": "CP-1",
    "site_id": "DEPOT-1",
    "connector_id": 1,
    "kind": "connector_overheating",
    "severity": "high",
    "status": "acknowledged",
    "first_seen": EXAMPLE_ALERT_FIRST_SEEN.isoformat(),
    "last_seen": "2025-06-01T09:15:00+00:00",
    "detector": "model:connector",
    "evidence": {
        "at": "2025-06-01T09:15:00+00:00",
        "summary": "Connector 18 K above ambient at 11 kW, 4.1 sd over its baseline",
        "features": {"temp_rise_per_kw": 1.6},
        "scores": {"connector": 0.97},
    },
    "recommended_action": "Inspect the connector and cable for heat damage.",
    "resolved_at": None,
    "resolved_by": None,
    "acknowledged_at": "2025-06-01T09:20:03+00:00",
    "acknowledged_by": "maintenance-team",
    "note": "Technician booked for this afternoon",
    "updated_at": "2025-06-01T09:20:03+00:00",
}

EXAMPLE_HISTORY: list[JsonValue] = [
    {
        "event_id": 1,
        "source": "flow",
        "action": "opened",
        "status": "open",
        "severity": "high",
        "at": "2025-06-01T09:15:00+00:00",
        "evidence": EXAMPLE_ALERT["evidence"],
        "actor": "model:connector",
        "note": None,
        "recorded_at": "2025-06-01T09:15:01+00:00",
    },
    {
        "event_id": 2,
        "source": "person",
        "action": "acknowledged",
        "status": "acknowledged",
        "severity": "high",
        "at": "2025-06-01T09:20:03+00:00",
        "evidence": None,
        "actor": "maintenance-team",
        "note": "Technician booked for this afternoon",
        "recorded_at": "2025-06-01T09:20:03+00:00",
    },
]


class AlertPublic(AlertBase):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [EXAMPLE_ALERT]})

    alert_id: str = Field(description="Stable id (the same under replays)")
    site_id: str | None = Field(description="The station's site; null when it has none")
    resolved_at: datetime | None = Field(
        description="When it resolved: telemetry time when the flow resolved it, the "
        "server's clock when a person did"
    )
    resolved_by: str | None = Field(description="The API key name of the person who resolved it")
    acknowledged_at: datetime | None
    acknowledged_by: str | None = Field(description="The API key name that acknowledged it")
    note: str | None = Field(description="The latest note a person left")
    updated_at: datetime = Field(description="When the stored row last changed (server clock)")


class AlertEventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    event_id: int
    source: Literal["flow", "person"] = Field(
        description="flow: a version the faults flow published; person: an action in the API"
    )
    action: Literal["opened", "updated", "resolved", "acknowledged"]
    status: AlertStatus = Field(description="The status this event gave the alert")
    severity: Severity
    at: datetime = Field(
        description="flow: telemetry time of the version (its last_seen); person: when "
        "they acted (server clock)"
    )
    evidence: EvidencePublic | None = Field(description="The version's evidence; null for people")
    actor: str = Field(description="The detector (flow) or the API key name (person)")
    note: str | None
    recorded_at: datetime = Field(description="When it was stored (server clock)")


class AlertDetailPublic(AlertPublic):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{**EXAMPLE_ALERT, "history": EXAMPLE_HISTORY}]}
    )

    history: list[AlertEventPublic] = Field(
        description="Every version from the flow and every person's action, in the order "
        "recorded (oldest first)"
    )


class AlertsPage(BaseModel):
    items: list[AlertPublic]
    next_cursor: str | None = Field(
        pattern=ALERT_CURSOR_PATTERN,
        description="Pass as `cursor` to get the next page; null on the last page",
    )


def encodable_text(note: str | None) -> str | None:
    if note is not None:
        # A lone surrogate (JSON "\ud800") is no text PostgreSQL can store.
        note.encode("utf-8")  # UnicodeEncodeError is a ValueError: a 422
    return note


class AlertActionCreate(BaseModel):
    """The optional body of acknowledge and resolve."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"note": "Technician booked"}]}
    )

    note: Annotated[
        str | None,
        Field(
            max_length=MAX_NOTE_LENGTH,
            pattern=NOTE_PATTERN,
            description=f"Why, or what was done (at most {MAX_NOTE_LENGTH} characters; tabs "
            "and newlines allowed, other control characters not)",
        ),
        AfterValidator(encodable_text),
    ] = None


class TopContribution(BaseModel):
    feature: str
    contribution: float = Field(
        description="How far the feature is from the connector's own baseline (signed, "
        "standard deviations)"
    )


class ConnectorHealthPublic(BaseModel):
    connector_id: int = Field(description="OCPP connector / EVSE id; 0 = the whole station")
    at: datetime = Field(description="Telemetry time of the reading scored")
    risk: float = Field(description="The detector's latest score, 0 (healthy) to 1")
    phase: str = Field(
        description="warming_up: the model is still learning its baseline and does not "
        "alert; monitoring: it may alert"
    )
    top_contributions: list[TopContribution] = Field(
        description="The features that deviate most, largest first"
    )
    features: dict[str, float] = Field(description="The latest feature values")


class StationHealthPublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "station_id": "CP-1",
                    "connectors": [
                        {
                            "connector_id": 1,
                            "at": "2025-06-01T09:15:00+00:00",
                            "risk": 0.93,
                            "phase": "monitoring",
                            "top_contributions": [
                                {"feature": "temp_rise_per_kw", "contribution": 4.1}
                            ],
                            "features": {"temp_rise_per_kw": 1.6, "power_kw": 11.0},
                        }
                    ],
                    "unresolved_alerts": {"low": 0, "medium": 0, "high": 1, "critical": 0},
                }
            ]
        }
    )

    station_id: str
    connectors: list[ConnectorHealthPublic] = Field(
        description="Connectors the faults flow has scored, by connector id (empty before "
        "the first reading)"
    )
    unresolved_alerts: dict[Severity, int] = Field(
        description="Alerts not resolved yet (open or acknowledged), per severity"
    )
