"""A transaction's session snapshot: the energy figure, its source and its quality,
a pure function of everything seen for the transaction (not of arrival order, so
replays converge to the same rows).

Energy
------
* ``station_register``: the station's register, folded by
  :class:`flows.sessions.registers.RegisterFold` from the start register (1.6
  meterStart, 2.0.1 ``Transaction.Begin``), the sampled registers and the stop
  register (meterStop, ``Transaction.End``); resets, rollovers, decreases, jumps and
  outliers are handled and named there. Without a start register the first
  sample is the start (``start_register_missing``); without a stop register the
  last sample is the stop (``stop_register_missing``).
* ``smart_meter``: a billing meter with readings bracketing the start and the stop
  (:mod:`flows.sessions.brackets`). Without both (``smart_meter_incomplete``) the
  station register is used. Every meter with both readings cross-checks the station
  register: a difference above ``meter_tolerance_ratio x max + meter_tolerance_wh``
  (1 % + 10 Wh) is ``smart_meter_mismatch``.
* ``power_integration``: only when there are not two register readings at all,
  trapezoidal integration of ``Power.Active.Import`` (``register_missing``,
  quality ``estimated``).

``quality`` is ``estimated`` for power integration, else ``missing`` for a closed
session without any figure (``energy_wh`` None, ``energy_source`` None), else
``corrected`` when there is any reason (the figure was adjusted, or stands despite
doubtful evidence), else ``exact``. Billing holds back everything but ``exact``.
"""

from __future__ import annotations

import math
from decimal import Decimal

from bus.sessions import ClosedBy, EnergySource, Quality, QualityReason
from flows.sessions.brackets import meter_energy
from flows.sessions.registers import Point, integrate_power
from flows.sessions.rows import SessionRow, session_id_for
from flows.sessions.rules import SessionRules
from flows.sessions.state import Tx

R = QualityReason
_NO_STOP = (ClosedBy.TIMEOUT, ClosedBy.NEXT_START)


def _floor(value: Decimal | None) -> int | None:
    return None if value is None else math.floor(value)


def _add(reasons: list[QualityReason], reason: QualityReason) -> None:
    if reason not in reasons:
        reasons.append(reason)


def _stop_point(tx: Tx) -> Point | None:
    if tx.stop_register is None or tx.stopped_at is None:
        return None
    return (tx.stopped_at, tx.stop_register)


def _reasons(tx: Tx, fold_reasons: tuple[QualityReason, ...]) -> list[QualityReason]:
    """What the transaction's own messages say about the figure (before the energy
    decision adds its own)."""
    reasons = list(fold_reasons)
    if not tx.has_start:
        _add(reasons, R.START_UNKNOWN)
    elif tx.start_register is None:
        _add(reasons, R.START_REGISTER_MISSING)
    if tx.closed_by == ClosedBy.STOP and tx.stop_register is None:
        _add(reasons, R.STOP_REGISTER_MISSING)
    if tx.closed_by in _NO_STOP:
        _add(reasons, R.STOP_MISSING)
    if tx.stop_late:
        _add(reasons, R.STOP_LATE)
    if tx.seq_nos and len(tx.seq_nos) < max(tx.seq_nos) - min(tx.seq_nos) + 1:
        _add(reasons, R.SEQ_NO_GAP)
    if len(tx.fingerprints) > len(tx.seq_nos):  # (each event has one seqNo)
        _add(reasons, R.SEQ_NO_REUSED)
    if tx.offline:
        _add(reasons, R.OFFLINE)
    if tx.conflict:
        _add(reasons, R.CONFLICTING_REGISTER_VALUES)
    return reasons


def _station_figure(
    tx: Tx, energy: Decimal | None, closed: bool, reasons: list[QualityReason]
) -> tuple[Decimal | None, EnergySource | None]:
    """The station's figure (``energy``: its register's) and its source: integrated
    power when there are not two register readings."""
    if not tx.has_start or energy is not None:
        return energy, EnergySource.STATION_REGISTER
    integrated = integrate_power(tx.power)
    if integrated is not None:
        _add(reasons, R.REGISTER_MISSING)
        return integrated, EnergySource.POWER_INTEGRATION
    if closed:
        _add(reasons, R.REGISTER_MISSING)
        return None, None
    return None, EnergySource.STATION_REGISTER


def _smart_meter(
    tx: Tx, rules: SessionRules, station_energy: Decimal | None, reasons: list[QualityReason]
) -> tuple[Decimal | None, str | None, bool]:
    """(the meter's figure, its id, whether it is a billing meter's): the first
    billing meter with both readings, else the first meter with both; every such
    meter cross-checks the station's figure."""
    meters = sorted(((m, b) for m, b in tx.meters.items() if b.relevant), key=lambda mb: mb[0])
    figures = [(m, b.billing, meter_energy(b)) for m, b in meters]
    chosen = next(((m, e) for m, billing, e in figures if billing and e is not None), None)
    billed = chosen is not None
    if not billed and any(billing for _, billing, _ in figures):
        _add(reasons, R.SMART_METER_INCOMPLETE)
    if chosen is None:
        chosen = next(((m, e) for m, _, e in figures if e is not None), None)
    for _, _, figure in figures:
        if figure is None or station_energy is None:
            continue
        allowed = (
            rules.meter_tolerance_ratio * max(figure, station_energy) + rules.meter_tolerance_wh
        )
        if abs(figure - station_energy) > allowed:
            _add(reasons, R.SMART_METER_MISMATCH)
    if chosen is None:
        return None, None, False
    return chosen[1], chosen[0], billed


def _quality(
    estimated: bool, closed: bool, energy: Decimal | None, reasons: list[QualityReason]
) -> Quality:
    if estimated:
        return Quality.ESTIMATED
    if closed and energy is None:
        return Quality.MISSING  # no figure at all: never to be taken for a corrected one
    return Quality.CORRECTED if reasons else Quality.EXACT


def _start_wh(tx: Tx) -> Decimal | None:
    if tx.start_register is not None:
        return tx.start_register
    return tx.samples[0][1] if tx.samples and tx.has_start else None


def session_row(cp: str, tx: Tx, rules: SessionRules) -> SessionRow:
    """The snapshot of a transaction (module docstring)."""
    closed = tx.final
    register, fold_reasons = (None, ()) if not tx.has_start else tx.fold.result(_stop_point(tx))
    reasons = _reasons(tx, fold_reasons)
    energy, source = _station_figure(tx, register, closed, reasons)
    estimated = source is EnergySource.POWER_INTEGRATION
    station_energy = energy if source is EnergySource.STATION_REGISTER else None
    meter_figure: Decimal | None = None
    meter_id: str | None = None
    if closed and tx.has_start:
        meter_figure, meter_id, billed = _smart_meter(tx, rules, station_energy, reasons)
        if billed:
            energy, source, estimated = meter_figure, EnergySource.SMART_METER, False
    if not tx.has_start:
        # The sink takes the start from the stored row and sets the figure, its
        # source and quality from it (store.sessions); on its own the stop has none.
        energy = None
        if closed:
            source = None
    elif energy is None and not closed:
        energy = Decimal(0)
    if tx.session_id is None:
        tx.session_id = session_id_for(cp, tx.transaction_id)
    return SessionRow(
        session_id=tx.session_id,
        charge_point_id=cp,
        connector_id=tx.evse_id,
        transaction_id=tx.transaction_id,
        id_tag=tx.id_tag,
        status="closed" if closed else "active",
        started_at=tx.started_at if tx.has_start else tx.first_seen,
        stopped_at=tx.stopped_at,
        meter_start_wh=_floor(_start_wh(tx)),
        meter_stop_wh=_floor(tx.stop_register),
        last_register_wh=_floor(tx.samples[-1][1]) if tx.samples else None,
        energy_wh=_floor(energy),
        energy_source=source,
        quality=_quality(estimated, closed, energy, reasons),
        quality_reasons=tuple(reasons),
        stop_reason=tx.stop_reason,
        sample_count=tx.sample_count,
        closed_by=tx.closed_by if closed else None,
        station_energy_wh=_floor(station_energy),
        smart_meter_energy_wh=_floor(meter_figure),
        smart_meter_id=meter_id,
        ocpp_version=tx.ocpp_version,
    )
