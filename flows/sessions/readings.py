"""One smart-meter reading folded into its charge point's state: remembered on its
connector and offered to the transactions there (:mod:`flows.sessions.brackets`).
Only closed transactions get a new snapshot from it: a reading changes no figure of
an open one."""

from __future__ import annotations

from flows.sessions.brackets import offer, remember_reading
from flows.sessions.events import SmartMeterReading
from flows.sessions.lifecycle import finalize_ready
from flows.sessions.rows import Output
from flows.sessions.rules import SessionRules
from flows.sessions.snapshot import session_row
from flows.sessions.state import ChargePointState


def apply_reading(
    state: ChargePointState,
    r: SmartMeterReading,
    rules: SessionRules,
    pending: dict[str, None] | None = None,
) -> list[Output]:
    """The rows to write now (``pending`` None), else the ids of the transactions to
    snapshot at the end of the batch go to ``pending``."""
    reading = (r.measured_at, r.meter_id, r.energy_wh, r.is_billing_meter)
    if not remember_reading(state.readings.setdefault(r.connector_id, []), reading, rules):
        return []  # the same reading again
    touched: set[str] = set()
    for tx in state.txs.values():
        if tx.evse_id == r.connector_id and offer(tx, rules, reading) and tx.closed_by is not None:
            touched.add(tx.transaction_id)
    finalize_ready(state, rules, touched)
    final = [t for t in sorted(touched) if state.txs[t].final]
    if pending is not None:
        pending.update((t, None) for t in final)
        return []
    return [session_row(r.charge_point_id, state.txs[t], rules) for t in final]
