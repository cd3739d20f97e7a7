"""OCPP 1.6J station dialect: StartTransaction/MeterValues/StopTransaction, the
central system assigns the integer transaction id."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ocpp.v16 import ChargePoint
from ocpp.v16 import call as c

from ingest.simulator.commands import CommandsMixin
from ingest.simulator.dialect import Dialect, Sample, iso


class V16Client(CommandsMixin, ChargePoint):
    """The ocpp-library side of one 1.6 station connection (commands from the CSMS:
    ``ingest.simulator.commands``)."""


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
        if r.measurand == "Energy.Active.Import.Register":
            sv["format"] = "Raw"
        values.append(sv)
    return {"timestamp": iso(sample.timestamp), "sampledValue": values}


class V16Dialect(Dialect):
    version = "1.6"
    subprotocol = "ocpp1.6"
    client_cls = V16Client
    station_connector = True

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
            connector_id=connector_id, error_code="NoError", status=status, timestamp=iso(at)
        )

    def authorize(self, id_tag: str) -> Any:
        return c.Authorize(id_tag=id_tag)

    def auth_status(self, response: Any) -> str:
        return str(response.id_tag_info.get("status"))

    def new_transaction_id(self, rand128: int) -> str | None:
        return None

    def start(
        self,
        *,
        connector_id: int,
        id_tag: str,
        register_wh: int,
        at: datetime,
        transaction_id: str | None,
    ) -> Any:
        return c.StartTransaction(
            connector_id=connector_id, id_tag=id_tag, meter_start=register_wh, timestamp=iso(at)
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
        return c.StopTransaction(
            meter_stop=register_wh,
            timestamp=iso(at),
            transaction_id=int(transaction_id),
            reason=reason,
            id_tag=id_tag if reason == "Local" else None,
            transaction_data=[sampled_values(last)] if last else None,
        )
