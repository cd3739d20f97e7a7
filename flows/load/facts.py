"""What the load flow reads out of an envelope: readings and state changes per station.

A reading's ``connector_id`` is the 1.6 connector / 2.0.1 EVSE (0 = the station's
main meter); None when only its transaction names it (resolved through the
transaction's :class:`TransactionOpened`). ``source`` is one of :mod:`flows.load.sources`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from flows.connection import ConnectionChange


@dataclass(frozen=True, slots=True)
class PowerReading:
    connector_id: int | None  # None: resolve through transaction_id
    transaction_id: str | None
    at: datetime
    power_w: float
    source: str


@dataclass(frozen=True, slots=True)
class RegisterReading:
    connector_id: int | None
    transaction_id: str | None
    at: datetime
    energy_wh: Decimal
    source: str


@dataclass(frozen=True, slots=True)
class ConnectorIdle:
    """The connector delivers no energy from ``at`` (status or transaction end)."""

    connector_id: int | None
    transaction_id: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class TransactionOpened:
    transaction_id: str
    connector_id: int


Fact = PowerReading | RegisterReading | ConnectorIdle | TransactionOpened | ConnectionChange


@dataclass(frozen=True, slots=True)
class LoadEvent:
    charge_point_id: str
    at: datetime
    facts: tuple[Fact, ...]
