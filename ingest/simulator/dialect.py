"""What differs between OCPP versions on the station side: the library client class
and the CALL payloads. ``fleet.SimulatedStation`` runs the same sessions through
either dialect (``v16.V16Dialect``, ``v201.V201Dialect``); everything here is pure.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from ocpp.charge_point import ChargePoint


@dataclass(frozen=True, slots=True)
class Reading:
    """One sampled value, version-free (the dialect formats it)."""

    measurand: str
    value: float | int
    unit: str
    location: str
    decimals: int = 1  # how the value is written


@dataclass(frozen=True, slots=True)
class Sample:
    timestamp: datetime
    readings: tuple[Reading, ...]


def iso(value: datetime) -> str:
    from datetime import UTC

    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Dialect(ABC):
    """One station's OCPP version. Stateful only where the protocol is (seqNo)."""

    version: ClassVar[str]
    subprotocol: ClassVar[str]
    client_cls: ClassVar[type[ChargePoint]]
    # Whether this version reports a status for connector 0 (the whole station).
    station_connector: ClassVar[bool]

    @abstractmethod
    def boot(self, *, vendor: str, model: str, serial: str, firmware: str) -> Any: ...

    @abstractmethod
    def heartbeat(self) -> Any: ...

    @abstractmethod
    def status(self, connector_id: int, status: str, at: datetime) -> Any | None:
        """A StatusNotification for a 1.6 status, or None when this version has none."""

    @abstractmethod
    def authorize(self, id_tag: str) -> Any: ...

    @abstractmethod
    def auth_status(self, response: Any) -> str: ...

    @abstractmethod
    def new_transaction_id(self, rand128: int) -> str | None:
        """The station-assigned transaction id (2.0.1), or None (1.6: the CSMS assigns)."""

    @abstractmethod
    def start(
        self,
        *,
        connector_id: int,
        id_tag: str,
        register_wh: int,
        at: datetime,
        transaction_id: str | None,
    ) -> Any: ...

    @abstractmethod
    def started(self, response: Any, proposed: str | None) -> tuple[int | str, str]:
        """(transaction id, authorisation status) from the start's answer."""

    @abstractmethod
    def meter(
        self, *, connector_id: int, transaction_id: int | str, sample: Sample, charging: bool
    ) -> Any: ...

    @abstractmethod
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
    ) -> Any: ...
