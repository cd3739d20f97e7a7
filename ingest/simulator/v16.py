"""OCPP 1.6J station dialect: StartTransaction/MeterValues/StopTransaction, the
central system assigns the integer transaction id (answers to the CSMS:
``handlers.v16``). A signing meter's start and end registers travel in the
StopTransaction's ``transactionData`` (StartTransaction has no meter values), each as
the plain register and its ``SignedData`` value, contexts Transaction.Begin/End."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ocpp.v16 import call as c

from bus.measurands import ENERGY_REGISTER
from bus.times import format_rfc3339
from ingest.simulator.dialect import Dialect, FaultReport, Sample, Start, Stop


def sampled_values(sample: Sample, context: str = "Sample.Periodic") -> dict[str, Any]:
    values = []
    for r in sample.readings:
        sv: dict[str, Any] = {
            "value": str(r.value) if isinstance(r.value, int) else f"{r.value:.{r.decimals}f}",
            "context": context,
            "measurand": r.measurand,
            "location": r.location,
            "unit": r.unit,
        }
        if r.phase is not None:
            sv["phase"] = r.phase
        if r.measurand == ENERGY_REGISTER:
            sv["format"] = "Raw"
        values.append(sv)
    return {"timestamp": format_rfc3339(sample.timestamp), "sampledValue": values}


def signed_register(register_wh: int, at: datetime, context: str, record: str) -> dict[str, Any]:
    """A meter value of the plain register and its signed record (format SignedData)."""
    where = {"context": context, "measurand": ENERGY_REGISTER, "location": "Outlet"}
    return {
        "timestamp": format_rfc3339(at),
        "sampledValue": [
            {"value": str(register_wh), **where, "unit": "Wh", "format": "Raw"},
            {"value": record, **where, "format": "SignedData"},
        ],
    }


class V16Dialect(Dialect):
    version = "1.6"
    subprotocol = "ocpp1.6"
    station_connector = True

    def __init__(self, signing_meter: str | None = None) -> None:
        super().__init__(signing_meter)
        # A signing meter's start register per connector, until the transaction stops.
        self._begins: dict[int, tuple[int, datetime]] = {}

    def boot(self, *, vendor: str, model: str, serial: str, firmware: str) -> Any:
        return c.BootNotification(
            charge_point_vendor=vendor,
            charge_point_model=model,
            charge_point_serial_number=serial,
            firmware_version=firmware,
        )

    def heartbeat(self) -> Any:
        return c.Heartbeat()

    def status(self, connector_id: int, status: str, at: datetime) -> Any | None:
        return c.StatusNotification(
            connector_id=connector_id,
            error_code="NoError",
            status=status,
            timestamp=format_rfc3339(at),
        )

    def fault(self, report: FaultReport, status: str, connectors: tuple[int, ...]) -> list[Any]:
        return [
            c.StatusNotification(
                connector_id=report.connector_id,
                error_code=report.error_code,
                status="Faulted" if report.faulted else status,
                timestamp=format_rfc3339(report.at),
                vendor_error_code=report.vendor_code,
            )
        ]

    def cleared(self, connector_id: int, status: str, at: datetime) -> list[Any]:
        return [self.status(connector_id, status, at)]

    def authorize(self, id_tag: str) -> Any:
        return c.Authorize(id_tag=id_tag)

    def auth_status(self, response: Any) -> str:
        return str(response.id_tag_info.get("status"))

    def new_transaction_id(self, rand128: int) -> str | None:
        return None

    def _start(self, start: Start) -> Any:
        if self.signing_meter is not None:
            self._begins[start.connector_id] = (start.register_wh, start.at)
        return c.StartTransaction(
            connector_id=start.connector_id,
            id_tag=start.id_tag,
            meter_start=start.register_wh,
            timestamp=format_rfc3339(start.at),
        )

    def started(self, response: Any, proposed: str | None) -> tuple[int | str, str]:
        return int(response.transaction_id), str(response.id_tag_info.get("status"))

    def meter(
        self, *, connector_id: int, transaction_id: int | str, sample: Sample, charging: bool
    ) -> Any:
        return c.MeterValues(
            connector_id=connector_id,
            transaction_id=int(transaction_id),
            meter_value=[sampled_values(sample)],
        )

    def _stop(self, stop: Stop) -> Any:
        return c.StopTransaction(
            meter_stop=stop.register_wh,
            timestamp=format_rfc3339(stop.at),
            transaction_id=int(stop.transaction_id),
            reason=stop.reason,
            id_tag=stop.id_tag if stop.reason == "Local" else None,
            transaction_data=self._transaction_data(stop),
        )

    def _transaction_data(self, stop: Stop) -> list[dict[str, Any]] | None:
        """The last sample and, from a signing meter, the signed start and end registers."""
        data = [sampled_values(stop.last)] if stop.last else []
        begin = self._begins.pop(stop.connector_id, None)
        if self.signing_meter is not None and begin is not None:
            begin_wh, begin_at = begin
            data.insert(0, self._signed(begin_wh, begin_at, "Transaction.Begin"))
            data.append(self._signed(stop.register_wh, stop.at, "Transaction.End"))
        return data or None

    def _signed(self, register_wh: int, at: datetime, context: str) -> dict[str, Any]:
        record = self.signed_record(register_wh, at, context)
        return signed_register(register_wh, at, context, record)

    def meter_values(self, connector_id: int, sample: Sample, context: str) -> Any:
        return c.MeterValues(
            connector_id=connector_id, meter_value=[sampled_values(sample, context)]
        )
