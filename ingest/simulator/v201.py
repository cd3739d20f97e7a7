"""OCPP 2.0.1 station dialect (``ocpp.v201`` client).

A session is one transaction of TransactionEvents with a per-transaction ``seqNo``
from 0: Started (triggerReason Authorized, the idToken, the register in context
``Transaction.Begin``), Updated per meter interval (triggerReason
MeterValuePeriodic, sampled data in context ``Sample.Periodic``), Ended (the
register in context ``Transaction.End``, stoppedReason); a signing meter adds the
``signedMeterValue`` of both registers. The station assigns the
transaction id (a UUID). Connector statuses: Available/Occupied only (charging
states travel in ``transactionInfo.chargingState``); 1.6 Preparing becomes
Occupied, Charging/Finishing send nothing. The ground truth is
``Transaction.End`` register - ``Transaction.Begin`` register (Wh).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from ocpp.v201 import call as c

from bus.measurands import ENERGY_REGISTER
from bus.times import format_rfc3339
from ingest.simulator.dialect import Dialect, FaultReport, Reading, Sample, Start, Stop
from ingest.simulator.ocmf import signed_meter_value

# 1.6 stop reasons the simulator uses -> (triggerReason, chargingState after it)
_ENDED = {
    "Local": ("StopAuthorized", "EVConnected"),
    "EVDisconnected": ("EVDeparted", "Idle"),
    "DeAuthorized": ("Deauthorized", "EVConnected"),
    "Remote": ("RemoteStop", "EVConnected"),
    "ImmediateReset": ("ResetCommand", "Idle"),
}

# A connector's current 1.6 status (StationState.connector_status) -> 2.0.1
_CURRENT_STATUS = {"Unavailable": "Unavailable", "Charging": "Occupied", "Available": "Available"}


def _sampled(r: Reading, context: str) -> dict[str, Any]:
    value: float | int = r.value if isinstance(r.value, int) else round(r.value, r.decimals)
    sampled = {
        "value": value,
        "context": context,
        "measurand": r.measurand,
        "location": r.location,
        "unitOfMeasure": {"unit": r.unit},
    }
    if r.phase is not None:
        sampled["phase"] = r.phase
    return sampled


def meter_value(sample: Sample, context: str) -> dict[str, Any]:
    return {
        "timestamp": format_rfc3339(sample.timestamp),
        "sampledValue": [_sampled(r, context) for r in sample.readings],
    }


def _status_notification(evse_id: int, connector_status: str, at: datetime) -> Any:
    return c.StatusNotification(
        timestamp=format_rfc3339(at),
        connector_status=connector_status,
        evse_id=evse_id,
        connector_id=1,
    )


def register_value(register_wh: int, at: datetime, context: str) -> dict[str, Any]:
    return meter_value(
        Sample(at, (Reading(ENERGY_REGISTER, register_wh, "Wh", "Outlet"),)), context
    )


class V201Dialect(Dialect):
    version = "2.0.1"
    subprotocol = "ocpp2.0.1"
    station_connector = False

    def __init__(self, signing_meter: str | None = None) -> None:
        super().__init__(signing_meter)
        self._seq: dict[str, int] = {}
        self._event_id = 0

    def _notify(
        self,
        at: datetime,
        component: dict[str, Any],
        variable: str,
        actual_value: str,
        **extra: Any,
    ) -> Any:
        self._event_id += 1
        event = {
            "event_id": self._event_id,
            "timestamp": format_rfc3339(at),
            "actual_value": actual_value,
            "component": component,
            "variable": {"name": variable},
            **{k: v for k, v in extra.items() if v is not None},
        }
        return c.NotifyEvent(generated_at=format_rfc3339(at), seq_no=0, event_data=[event])

    def temperature(self, connector_id: int, celsius: float, at: datetime) -> Any | None:
        component = {"name": "TemperatureSensor", "evse": {"id": connector_id, "connector_id": 1}}
        return self._notify(
            at,
            component,
            "Temperature",
            f"{celsius:.1f}",
            trigger="Periodic",
            event_notification_type="PreconfiguredMonitor",
        )

    def fault(self, report: FaultReport, status: str, connectors: tuple[int, ...]) -> list[Any]:
        component: dict[str, Any] = {"name": report.component}
        if report.connector_id:
            component["evse"] = {"id": report.connector_id, "connector_id": 1}
        calls = [
            self._notify(
                report.at,
                component,
                report.variable,
                report.actual_value,
                trigger="Alerting",
                event_notification_type="HardWiredNotification",
                tech_code=report.error_code,
                tech_info=report.vendor_code,
            )
        ]
        if report.faulted:
            for evse in [report.connector_id] if report.connector_id else connectors:
                calls.append(_status_notification(evse, "Faulted", report.at))
        return calls

    def cleared(self, connector_id: int, status: str, at: datetime) -> list[Any]:
        component: dict[str, Any] = {"name": "ChargingStation"}
        if connector_id:
            component["evse"] = {"id": connector_id, "connector_id": 1}
        return [
            self._notify(
                at,
                component,
                "Problem",
                "false",
                trigger="Alerting",
                event_notification_type="HardWiredNotification",
                cleared=True,
            )
        ]

    def _register(self, register_wh: int, at: datetime, context: str) -> dict[str, Any]:
        """The register's meter value, with its ``signedMeterValue`` when the meter signs."""
        value = register_value(register_wh, at, context)
        if self.signing_meter is not None:
            record = self.signed_record(register_wh, at, context)
            value["sampledValue"][0]["signedMeterValue"] = signed_meter_value(
                self.signing_meter, record
            )
        return value

    def _next_seq(self, transaction_id: str) -> int:
        seq = self._seq.get(transaction_id, 0)
        self._seq[transaction_id] = seq + 1
        return seq

    def boot(self, *, vendor: str, model: str, serial: str, firmware: str) -> Any:
        return c.BootNotification(
            charging_station={
                "vendor_name": vendor,
                "model": model,
                "serial_number": serial,
                "firmware_version": firmware,
            },
            reason="PowerUp",
        )

    def heartbeat(self) -> Any:
        return c.Heartbeat()

    def status(self, connector_id: int, status: str, at: datetime) -> Any | None:
        mapped = {
            "Available": "Available",
            "Preparing": "Occupied",
            "Unavailable": "Unavailable",
        }.get(status)
        if mapped is None or connector_id == 0:
            return None
        return _status_notification(connector_id, mapped, at)

    def current_status(self, connector_id: int, status: str, at: datetime) -> Any:
        return _status_notification(connector_id, _CURRENT_STATUS[status], at)

    def authorize(self, id_tag: str) -> Any:
        return c.Authorize(id_token={"id_token": id_tag, "type": "ISO14443"})

    def auth_status(self, response: Any) -> str:
        return str(response.id_token_info.get("status"))

    def new_transaction_id(self, rand128: int) -> str | None:
        return str(uuid.UUID(int=rand128, version=4))

    def _start(self, start: Start) -> Any:
        assert start.transaction_id is not None
        info: dict[str, Any] = {
            "transaction_id": start.transaction_id,
            "charging_state": "Charging",
        }
        remote_start_id = self.remote_starts.pop(start.connector_id, None)
        if remote_start_id is not None:  # the RequestStartTransaction it answers
            info["remote_start_id"] = remote_start_id
        return c.TransactionEvent(
            event_type="Started",
            timestamp=format_rfc3339(start.at),
            trigger_reason="Authorized" if remote_start_id is None else "RemoteStart",
            seq_no=self._next_seq(start.transaction_id),
            transaction_info=info,
            evse={"id": start.connector_id, "connector_id": 1},
            id_token={"id_token": start.id_tag, "type": "ISO14443"},
            meter_value=[self._register(start.register_wh, start.at, "Transaction.Begin")],
        )

    def started(self, response: Any, proposed: str | None) -> tuple[int | str, str]:
        assert proposed is not None
        info = response.id_token_info or {}
        return proposed, str(info.get("status"))

    def meter(
        self, *, connector_id: int, transaction_id: int | str, sample: Sample, charging: bool
    ) -> Any:
        tx = str(transaction_id)
        return c.TransactionEvent(
            event_type="Updated",
            timestamp=format_rfc3339(sample.timestamp),
            trigger_reason="MeterValuePeriodic",
            seq_no=self._next_seq(tx),
            transaction_info={
                "transaction_id": tx,
                "charging_state": "Charging" if charging else "SuspendedEV",
            },
            meter_value=[meter_value(sample, "Sample.Periodic")],
        )

    def _stop(self, stop: Stop) -> Any:
        tx = str(stop.transaction_id)
        trigger, state = _ENDED.get(stop.reason, ("AbnormalCondition", "Idle"))
        seq = self._next_seq(tx)
        self._seq.pop(tx, None)
        local = stop.reason == "Local"
        return c.TransactionEvent(
            event_type="Ended",
            timestamp=format_rfc3339(stop.at),
            trigger_reason=trigger,
            seq_no=seq,
            transaction_info={
                "transaction_id": tx,
                "charging_state": state,
                "stopped_reason": stop.reason,
            },
            id_token={"id_token": stop.id_tag, "type": "ISO14443"} if local else None,
            meter_value=[self._register(stop.register_wh, stop.at, "Transaction.End")],
        )

    def meter_values(self, connector_id: int, sample: Sample, context: str) -> Any:
        return c.MeterValues(evse_id=connector_id, meter_value=[meter_value(sample, context)])
