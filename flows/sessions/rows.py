"""What the sessions flow writes: session snapshots, meter sample rows and signed
meter values.

:class:`SessionRow` snapshots are upserted by session id (last wins);
:class:`MeterSampleRow` rows are one per sampled value; :class:`SignedValueRow` rows
one per signed value of a known transaction (stored once: a replay adds nothing).
Their billing vocabulary (``closed_by``, ``energy_source``, ``quality`` and its
reasons) is the enums of the ``sessions.closed`` contract (:mod:`bus.sessions`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal

import msgspec

from bus.normalized import MeterSample, SignedMeterValue
from bus.sessions import ClosedBy, EnergySource, Quality, QualityReason

SESSION_NAMESPACE = uuid.UUID("5b0c54a4-3f0e-4c53-9a0c-6a1d2f6f8e31")


def session_id_for(charge_point_id: str, transaction_id: str | int) -> uuid.UUID:
    """The stable session id: ``uuid5(SESSION_NAMESPACE, "<cp>/<tx>")``.

    >>> session_id_for("CP1", 7) == session_id_for("CP1", "7")
    True
    """
    return uuid.uuid5(SESSION_NAMESPACE, f"{charge_point_id}/{transaction_id}")


@dataclass(frozen=True, slots=True)
class SessionRow:
    """A snapshot of one session, upserted by ``session_id`` (last snapshot wins)."""

    session_id: uuid.UUID
    charge_point_id: str
    connector_id: int | None
    transaction_id: str
    id_tag: str | None
    status: Literal["active", "closed"]
    started_at: datetime | None
    stopped_at: datetime | None
    meter_start_wh: int | None
    meter_stop_wh: int | None
    last_register_wh: int | None
    energy_wh: int | None
    energy_source: EnergySource | None
    quality: Quality
    quality_reasons: tuple[QualityReason, ...]
    stop_reason: str | None
    sample_count: int
    closed_by: ClosedBy | None = None
    station_energy_wh: int | None = None  # the station register's figure
    smart_meter_energy_wh: int | None = None  # the (billing, else first) smart meter's
    smart_meter_id: str | None = None
    ocpp_version: str | None = None


class MeterSampleRow(msgspec.Struct, frozen=True, gc=False):
    """One sampled value; natural key (cp, connector, measurand, phase, location,
    context, measured_at). ``value`` as sent, in ``unit`` x 10^``unit_multiplier``.

    A frozen msgspec struct (not a dataclass like :class:`SessionRow`): there are
    several per event, and it is built several times faster."""

    measured_at: datetime
    charge_point_id: str
    connector_id: int
    transaction_id: str | None
    measurand: str
    phase: str
    location: str
    context: str
    unit: str
    value: Decimal
    unit_multiplier: int = 0


class SignedValueRow(msgspec.Struct, frozen=True, gc=False):
    """One signed meter value of a transaction (Eichrecht), the data as sent; natural
    key (cp, transaction, measured_at, context, measurand)."""

    measured_at: datetime
    charge_point_id: str
    connector_id: int | None
    transaction_id: str
    measurand: str
    context: str
    signed_data: str
    encoding_method: str | None
    signing_method: str | None
    public_key: str | None
    value: Decimal | None  # the plain register, when the station sent it
    unit: str
    unit_multiplier: int


def signed_row(cp: str, tx_id: str, evse_id: int | None, s: SignedMeterValue) -> SignedValueRow:
    """The row of a signed value of transaction ``tx_id`` (``evse_id``: its EVSE, when
    the value does not say)."""
    return SignedValueRow(
        measured_at=s.timestamp,
        charge_point_id=cp,
        connector_id=s.evse_id if s.evse_id is not None else evse_id,
        transaction_id=tx_id,
        measurand=s.measurand,
        context=s.context,
        signed_data=s.signed_data,
        encoding_method=s.encoding_method,
        signing_method=s.signing_method,
        public_key=s.public_key,
        value=s.value,
        unit=s.unit,
        unit_multiplier=s.unit_multiplier,
    )


Output = SessionRow | MeterSampleRow | SignedValueRow


def sample_rows(cp: str, fallback: int | None, samples: list[MeterSample]) -> list[Output]:
    """One row per sample; a sample without an EVSE takes ``fallback`` (its
    transaction's), and without either it is not keyable (orphan stop data): counted,
    not written."""
    rows: list[Output] = []
    append = rows.append
    row = MeterSampleRow
    for s in samples:
        connector = s.evse_id if s.evse_id is not None else fallback
        if connector is None:
            continue
        # Positional, in field order: (measured_at, charge_point_id, connector_id,
        # transaction_id, measurand, phase, location, context, unit, value, unit_multiplier)
        append(
            row(
                s.timestamp,
                cp,
                connector,
                s.transaction_id,
                s.measurand,
                s.phase or "",
                s.location,
                s.context,
                s.unit,
                s.value,
                s.unit_multiplier,
            )
        )
    return rows
