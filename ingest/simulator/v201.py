"""OCPP 2.0.1 station dialect (``ocpp.v201`` client).

A session is one transaction of TransactionEvents with a per-transaction ``seqNo``
from 0: Started (triggerReason Authorized, the idToken, the register in context
``Transaction.Begin``), Updated per meter interval (triggerReason
MeterValuePeriodic, sampled data in context ``Sample.Periodic``), Ended (the
register in context ``Transaction.End``, stoppedReason). The station assigns the
transaction id (a UUID). Connector statuses: Available/Occupied only (charging
states travel in ``transactionInfo.chargingState``); 1.6 Preparing becomes
Occupied, Charging/Finishing send nothing. The ground truth is
``Transaction.End`` register - ``Transaction.Begin`` register (Wh).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from ocpp.v201 import ChargePoint
from ocpp.v201 import call as c

from ingest.simulator.commands import CommandsMixin
from ingest.simulator.dialect import Dialect, Reading, Sample, iso

REGISTER = "Energy.Active.Import.Register"

# 1.6 stop reasons the simulator uses -> (triggerReason, chargingState after it)
_ENDED = {
    "Local": ("StopAuthorized", "EVConnected"),
    "EVDisconnected": ("EVDeparted", "Idle"),
    "DeAuthorized": ("Deauthorized", "EVConnected"),
    "Remote": ("RemoteStop", "EVConnected"),
    "ImmediateReset": ("ResetCommand", "Idle"),
}


class V201Client(CommandsMixin, ChargePoint):
    """The ocpp-library side of one 2.0.1 station connection (commands from the CSMS:
    ``ingest.simulator.commands``)."""


def _sampled(r: Reading, context: str) -> dict[str, Any]:
    value: float | int = r.value if isinstance(r.value, int) else round(r.value, r.decimals)
    return {
        "value": value,
        "context": context,
        "measurand": r.measurand,
        "location": r.location,
        "unitOfMeasure": {"unit": r.unit},
    }


def meter_value(sample: Sample, context: str) -> dict[str, Any]:
    return {
        "timestamp": iso(sample.timestamp),
        "sampledValue": [_sampled(r, context) for r in sample.readings],
    }


def register_value(register_wh: int, at: datetime, context: str) -> dict[str, Any]:
    return meter_value(Sample(at, (Reading(REGISTER, register_wh, "Wh", "Outlet"),)), context)


class V201Dialect(Dialect):
    version = "2.0.1"
    subprotocol = "ocpp2.0.1"
    client_cls = V201Client
    station_connector = False

    def __init__(self) -> None:
        self._seq: dict[str, int] = {}

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
        return c.StatusNotification(
            timestamp=iso(at), connector_status=mapped, evse_id=connector_id, connector_id=1
        )

    def authorize(self, id_tag: str) -> Any:
        return c.Authorize(id_token={"id_token": id_tag, "type": "ISO14443"})

    def auth_status(self, response: Any) -> str:
        return str(response.id_token_info.get("status"))

    def new_transaction_id(self, rand128: int) -> str | None:
        return str(uuid.UUID(int=rand128, version=4))

    def start(
        self,
        *,
        connector_id: int,
        id_tag: str,
        register_wh: int,
        at: datetime,
        transaction_id: str | None,
    ) -> Any:
        assert transaction_id is not None
        return c.TransactionEvent(
            event_type="Started",
            timestamp=iso(at),
            trigger_reason="Authorized",
            seq_no=self._next_seq(transaction_id),
            transaction_info={"transaction_id": transaction_id, "charging_state": "Charging"},
            evse={"id": connector_id, "connector_id": 1},
            id_token={"id_token": id_tag, "type": "ISO14443"},
            meter_value=[register_value(register_wh, at, "Transaction.Begin")],
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
            timestamp=iso(sample.timestamp),
            trigger_reason="MeterValuePeriodic",
            seq_no=self._next_seq(tx),
            transaction_info={
                "transaction_id": tx,
                "charging_state": "Charging" if charging else "SuspendedEV",
            },
            meter_value=[meter_value(sample, "Sample.Periodic")],
        )

    def stop(
        self,
        *,
        connector_id: int,
        transaction_id: int | str,
        id_tag: str,
        register_wh: int,
        at: datetime,
        reason: str,
        last: Sample | None,
    ) -> Any:
        tx = str(transaction_id)
        trigger, state = _ENDED.get(reason, ("AbnormalCondition", "Idle"))
        seq = self._next_seq(tx)
        self._seq.pop(tx, None)
        return c.TransactionEvent(
            event_type="Ended",
            timestamp=iso(at),
            trigger_reason=trigger,
            seq_no=seq,
            transaction_info={
                "transaction_id": tx,
                "charging_state": state,
                "stopped_reason": reason,
            },
            id_token={"id_token": id_tag, "type": "ISO14443"} if reason == "Local" else None,
            meter_value=[register_value(register_wh, at, "Transaction.End")],
        )
