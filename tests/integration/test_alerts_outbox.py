"""store.alerts_outbox on the real database: the versions one batch stored are handed to
``send`` in the order they were made (an escalation after the version it escalates, the
resolve last), kept when ``send`` fails, deleted once it returns; a replayed batch
queues nothing again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import psycopg
import pytest

from bus.alerts import AlertKind, AlertStatus, Evidence, FaultAlert, Severity, alert_id
from bus.producer import PublishError
from store.alerts import version_key, write_alerts_batch
from store.alerts_outbox import AlertOutboxMessage, pending_count, publish_pending

pytestmark = pytest.mark.integration

T0 = datetime(2026, 7, 1, 12, tzinfo=UTC)


def versions() -> list[FaultAlert]:
    """Opened high, escalated to critical 20 minutes later, resolved at 12:30."""
    opened = FaultAlert(
        alert_id=alert_id("CP1", 1, AlertKind.CONNECTOR_OVERHEATING, T0),
        station_id="CP1",
        connector_id=1,
        alert_kind=AlertKind.CONNECTOR_OVERHEATING,
        severity=Severity.HIGH,
        status=AlertStatus.OPEN,
        first_seen=T0,
        last_seen=T0,
        detector="model:deviation",
        evidence=Evidence(at=T0, summary="hot"),
        recommended_action="Inspect the connector.",
    )
    later = T0 + timedelta(minutes=20)
    escalated = msgspec.structs.replace(opened, severity=Severity.CRITICAL, last_seen=later)
    resolved = msgspec.structs.replace(
        escalated, status=AlertStatus.RESOLVED, resolved_at=T0 + timedelta(minutes=30)
    )
    return [opened, escalated, resolved]


def test_versions_are_sent_in_the_order_made_and_deleted_only_once_sent(
    db: psycopg.Connection[Any],
) -> None:
    made = versions()
    write_alerts_batch(db, made, [])

    def refuse(_: list[AlertOutboxMessage]) -> None:
        raise PublishError("broker away")

    with pytest.raises(PublishError):
        publish_pending(db, refuse)
    assert pending_count(db) == 3

    sent: list[AlertOutboxMessage] = []
    assert publish_pending(db, sent.extend, limit=2) == 2
    assert publish_pending(db, sent.extend, limit=2) == 1
    assert [m.version_key for m in sent] == [version_key(a) for a in made]
    assert all(m.station_id == "CP1" and m.alert_id == made[0].alert_id for m in sent)
    assert sent[1].payload["severity"] == "critical"
    assert pending_count(db) == 0

    write_alerts_batch(db, made, [])  # a replay: nothing new to publish
    assert pending_count(db) == 0
    assert publish_pending(db, sent.extend) == 0
