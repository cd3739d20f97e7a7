"""What differs between OCPP versions in the CALLs a station sends. The sessions
(``sessions.Sessions``) run the same way through either dialect (``v16.V16Dialect``,
``v201.V201Dialect``); how a version answers the CSMS is in ``handlers``. Pure.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from ingest.simulator.ocmf import ocmf_record


@dataclass(frozen=True, slots=True)
class Reading:
    """One sampled value, version-free (the dialect formats it)."""

    measurand: str
    value: float | int
    unit: str
    location: str
    decimals: int = 1  # how the value is written
    phase: str | None = None  # L1, L1-N, ...: None for a value of the whole connector


@dataclass(frozen=True, slots=True)
class Sample:
    timestamp: datetime
    readings: tuple[Reading, ...]


@dataclass(frozen=True, slots=True)
class Start:
    """A transaction's start, version-free."""

    connector_id: int
    id_tag: str
    register_wh: int
    at: datetime
    transaction_id: str | None  # station-assigned (2.0.1); None where the CSMS assigns it


@dataclass(frozen=True, slots=True)
class Stop:
    """A transaction's end, version-free."""

    connector_id: int
    transaction_id: int | str
    id_tag: str
    register_wh: int
    at: datetime
    reason: str  # a 1.6 stop reason
    last: Sample | None  # the last meter sample of the transaction


@dataclass(frozen=True, slots=True)
class FaultReport:
    """A fault as the station reports it, version-free: a 1.6 error code (with the
    status it goes with), and for 2.0.1 the device-model component and variable whose
    NotifyEvent carries it (``techCode`` = the 1.6 code, ``techInfo`` = the vendor
    code)."""

    connector_id: int  # 0: the whole station
    error_code: str  # 1.6 ChargePointErrorCode
    at: datetime
    faulted: bool  # the connector goes Faulted (else its status stays)
    vendor_code: str | None = None
    component: str = "ChargingStation"
    variable: str = "Problem"
    actual_value: str = "true"


class Dialect(ABC):
    """One station's OCPP version. Stateful only where the protocol is (seqNo, a
    signing meter's record numbers).

    ``signing_meter``: the id of the station's Eichrecht meter, whose start and end
    registers are then sent signed too (OCMF-like, :mod:`ingest.simulator.ocmf`);
    None: no signed values."""

    version: ClassVar[str]
    subprotocol: ClassVar[str]
    # Whether this version reports a status for connector 0 (the whole station).
    station_connector: ClassVar[bool]

    def __init__(self, signing_meter: str | None = None) -> None:
        self.signing_meter = signing_meter
        self._signed_records = 0
        # connector -> the 2.0.1 remoteStartId of the remote start it is starting for
        self.remote_starts: dict[int, int] = {}

    def signed_record(self, register_wh: int, at: datetime, context: str) -> str:
        """The signing meter's next record of the register (needs ``signing_meter``)."""
        assert self.signing_meter is not None
        self._signed_records += 1
        return ocmf_record(self.signing_meter, at, register_wh, context, page=self._signed_records)

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

    def start(
        self,
        *,
        connector_id: int,
        id_tag: str,
        register_wh: int,
        at: datetime,
        transaction_id: str | None,
    ) -> Any:
        """The CALL that starts a transaction."""
        return self._start(Start(connector_id, id_tag, register_wh, at, transaction_id))

    @abstractmethod
    def _start(self, start: Start) -> Any: ...

    @abstractmethod
    def started(self, response: Any, proposed: str | None) -> tuple[int | str, str]:
        """(transaction id, authorisation status) from the start's answer."""

    @abstractmethod
    def meter(
        self, *, connector_id: int, transaction_id: int | str, sample: Sample, charging: bool
    ) -> Any: ...

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
        """The CALL that ends a transaction."""
        return self._stop(Stop(connector_id, transaction_id, id_tag, register_wh, at, reason, last))

    @abstractmethod
    def _stop(self, stop: Stop) -> Any: ...

    @abstractmethod
    def meter_values(self, connector_id: int, sample: Sample, context: str) -> Any:
        """A MeterValues outside a transaction (e.g. a triggered one)."""

    @abstractmethod
    def fault(self, report: FaultReport, status: str, connectors: tuple[int, ...]) -> list[Any]:
        """The CALLs that report a fault (``status``: the 1.6 status to report it with;
        ``connectors``: the station's, for a station-wide fault)."""

    @abstractmethod
    def cleared(self, connector_id: int, status: str, at: datetime) -> list[Any]:
        """The CALLs that say the connector's error is gone (status ``status``)."""

    def temperature(self, connector_id: int, celsius: float, at: datetime) -> Any | None:
        """A CALL of its own for a connector temperature (2.0.1: NotifyEvent), or None
        where MeterValues carry it (1.6)."""
        return None

    def current_status(self, connector_id: int, status: str, at: datetime) -> Any:
        """A StatusNotification of a connector's current 1.6 status (what a
        TriggerMessage asks for); a version with fewer statuses maps it."""
        return self.status(connector_id, status, at)
