"""What the faults flow writes: :class:`AlertsRows` (alert versions and connector health
in one transaction, :func:`store.alerts.write_alerts_batch`) through the flows'
:class:`flows.sinks.database.PostgresSink`; after every commit the ``alerts_outbox``
(the versions that transaction stored for the first time) is published to the
``alerts`` topic (:class:`flows.sinks.outbox.OutboxPublisher`): key = station id,
value = the stored version as :func:`bus.alerts.encode_fault_alert` encodes it,
headers ``alert_id`` and ``version`` (:func:`store.alerts.version_key`), by which a
consumer de-duplicates (at-least-once)."""

from __future__ import annotations

from functools import partial
from typing import Any

import psycopg

from bus.alerts import ConnectorHealth, FaultAlert, encode_fault_alert, fault_alert_from_payload
from flows.faults.config import FaultsFlowConfig
from flows.faults.logic import Output
from flows.sinks.database import PostgresSink, postgres_sink
from flows.sinks.outbox import OutboxPublisher, OutboxRecord
from store.alerts import write_alerts_batch
from store.alerts_outbox import AlertOutboxMessage, publish_pending


class AlertsRows:
    """Alert versions and health snapshots of a batch, in one transaction."""

    def write(self, conn: psycopg.Connection[Any], rows: list[Output]) -> None:
        alerts: list[FaultAlert] = []
        health: list[ConnectorHealth] = []
        for row in rows:
            if isinstance(row, FaultAlert):
                alerts.append(row)
            else:
                health.append(row)
        write_alerts_batch(conn, alerts, health)


def fault_alert_record(m: AlertOutboxMessage) -> OutboxRecord:
    value = encode_fault_alert(fault_alert_from_payload(m.payload))
    headers = [("alert_id", m.alert_id.encode()), ("version", m.version_key.encode())]
    return m.station_id.encode(), value, headers


def alerts_outbox_publisher(
    brokers: list[str], topic: str, kafka_config: dict[str, Any] | None = None, **options: Any
) -> OutboxPublisher[AlertOutboxMessage]:
    """The alerts outbox -> ``topic`` (``options``: delivery_timeout_s, batch)."""
    return OutboxPublisher(
        brokers, topic, kafka_config, pending=publish_pending, record=fault_alert_record, **options
    )


def faults_sink(config: FaultsFlowConfig, name: str) -> PostgresSink[Output]:
    """The production rows sink; with ``publish_alerts`` it publishes the outbox."""
    publisher = (
        partial(alerts_outbox_publisher, config.brokers, config.topics.alerts, config.kafka_config)
        if config.publish_alerts
        else None
    )
    return postgres_sink(config, AlertsRows(), name, after_commit=publisher)
