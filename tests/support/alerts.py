"""Alert rows as the faults flow writes them: :class:`bus.alerts.FaultAlert` versions and
:class:`bus.alerts.ConnectorHealth` snapshots through ``store.alerts.write_alerts_batch``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

from bus.alerts import (
    AlertKind,
    AlertStatus,
    ConnectorHealth,
    Evidence,
    FaultAlert,
    Severity,
    alert_id,
)
from store.alerts import write_alerts_batch


@dataclass(frozen=True, slots=True)
class AlertFacts:
    """What identifies one alert (its id is derived from these)."""

    station_id: str
    connector_id: int
    kind: AlertKind
    first_seen: datetime

    @property
    def alert_id(self) -> str:
        return alert_id(self.station_id, self.connector_id, self.kind, self.first_seen)


def fault_alert(
    facts: AlertFacts,
    *,
    after: timedelta = timedelta(0),
    severity: Severity = Severity.HIGH,
    status: AlertStatus = AlertStatus.OPEN,
    summary: str = "connector hotter than its baseline",
    features: dict[str, float] | None = None,
) -> FaultAlert:
    """A version of the alert ``facts`` names, its evidence ``after`` first_seen."""
    last_seen = facts.first_seen + after
    return FaultAlert(
        alert_id=facts.alert_id,
        station_id=facts.station_id,
        connector_id=facts.connector_id,
        alert_kind=facts.kind,
        severity=severity,
        status=status,
        first_seen=facts.first_seen,
        last_seen=last_seen,
        detector="model:connector" if facts.kind != AlertKind.GROUND_FAULT else "rule:error_code",
        evidence=Evidence(
            at=last_seen,
            summary=summary,
            features=features or {"temp_rise_per_kw": 1.5},
            scores={"connector": 0.9},
        ),
        recommended_action="Inspect the connector.",
        resolved_at=last_seen if status == AlertStatus.RESOLVED else None,
    )


def connector_health(
    station_id: str,
    connector_id: int,
    at: datetime,
    *,
    risk: float = 0.2,
    phase: str = "monitoring",
    contributions: dict[str, float] | None = None,
    features: dict[str, float] | None = None,
) -> ConnectorHealth:
    return ConnectorHealth(
        station_id=station_id,
        connector_id=connector_id,
        at=at,
        risk=risk,
        phase=phase,
        contributions=contributions or {},
        features=features or {},
    )


def write_alerts(
    database_url: str,
    alerts: Sequence[FaultAlert] = (),
    health: Sequence[ConnectorHealth] = (),
) -> None:
    """Store versions and snapshots as the faults flow's sink does (one batch)."""
    with psycopg.connect(database_url) as conn:
        write_alerts_batch(conn, alerts, health)


def outbox_size(url: str) -> int:
    """Alert versions written but not yet published to the ``alerts`` topic."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM alerts_outbox").fetchone()
    return int(row[0]) if row else -1
