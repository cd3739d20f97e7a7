"""StationDiagnostics on 2.0.1 transactions: a TransactionEvent names its EVSE only when
it must (the first event of the transaction, OCPP 2.0.1 E01/E02); the samples of the
later ones (Updated, Ended, no ``evse``) are still that EVSE's readings, so its
connector model, register rule and alerts are the EVSE's, not the station's (0)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bus.alerts import AlertKind
from bus.envelope import Envelope
from bus.normalized import normalize_v201
from ingest.gateway.schemas import SchemaSet
from models.station import StationDiagnostics
from tests.support.builders import iso, ocpp_call

T0 = datetime(2026, 7, 1, 12, tzinfo=UTC)


def transaction_event(event: str, minute: int, seq: int, energy_wh: float) -> Envelope:
    """EVSE 2 charging 11 kW; only the Started event carries ``evse``."""
    at = T0 + timedelta(minutes=minute)
    payload: dict[str, Any] = {
        "eventType": event,
        "timestamp": iso(at),
        "triggerReason": "MeterValuePeriodic" if event == "Updated" else "Authorized",
        "seqNo": seq,
        "transactionInfo": {"transactionId": "tx-1", "chargingState": "Charging"},
        "meterValue": [
            {
                "timestamp": iso(at),
                "sampledValue": [
                    {
                        "value": energy_wh,
                        "measurand": "Energy.Active.Import.Register",
                        "unitOfMeasure": {"unit": "Wh"},
                    },
                    {
                        "value": 11_000.0,
                        "measurand": "Power.Active.Import",
                        "unitOfMeasure": {"unit": "W"},
                    },
                ],
            }
        ],
    }
    if event == "Started":
        payload["evse"] = {"id": 2, "connectorId": 1}
        payload["idToken"] = {"idToken": "TAG-1", "type": "ISO14443"}
    if event == "Ended":
        payload["transactionInfo"]["stoppedReason"] = "Local"
    assert SchemaSet("2.0.1").validate("TransactionEvent", payload) is None
    facts = normalize_v201("CS", "TransactionEvent", payload, {}, at)
    return ocpp_call(
        "CS", "TransactionEvent", payload, at=at, version="2.0.1", response={}, normalized=facts
    )


def test_a_frozen_register_in_updated_transaction_events_alerts_on_its_evse() -> None:
    station = StationDiagnostics("CS")
    alerts = [*station.update(transaction_event("Started", 0, 0, 1000.0)).alerts]
    for minute in range(1, 8):  # the register stands still while 11 kW flow
        alerts += station.update(transaction_event("Updated", minute, minute, 1000.0)).alerts
    alerts += station.update(transaction_event("Ended", 8, 8, 1000.0)).alerts
    meter = [a for a in alerts if a.alert_kind is AlertKind.METER_FAULT]
    assert meter, alerts
    assert {a.connector_id for a in meter} == {2}
    assert set(station.connectors) == {2}
    # The transaction ended: its EVSE is forgotten, nothing is left behind.
    assert station.energy.evse_of == {}
