"""The OCPP versions a simulated station speaks: per version, the CALLs it sends
(a ``dialect.Dialect``) and the charge point that answers the CSMS (``handlers``)."""

from __future__ import annotations

from dataclasses import dataclass

from ingest.simulator.dialect import Dialect
from ingest.simulator.handlers.client import StationClient
from ingest.simulator.handlers.v16 import V16ChargePoint
from ingest.simulator.handlers.v201 import V201ChargePoint
from ingest.simulator.v16 import V16Dialect
from ingest.simulator.v201 import V201Dialect


@dataclass(frozen=True, slots=True)
class Version:
    dialect: type[Dialect]
    charge_point: type[StationClient]


VERSIONS: dict[str, Version] = {
    "1.6": Version(V16Dialect, V16ChargePoint),
    "2.0.1": Version(V201Dialect, V201ChargePoint),
}
