"""How transactions open, close and are forgotten, and when a closed one is final.

* ``closed_by='stop'``: StopTransaction / Ended. When a smart meter is known on the
  connector and its reading after the stop has not arrived yet, the session
  stays ``active`` (with its stop) until that reading arrives or the station's
  event time passes ``stop + meter_grace``, so the first closed snapshot -- the one
  published on ``sessions.closed`` -- already has the meter figure
  (:func:`finalize_ready`).
* ``closed_by='next_start'``: one session at a time per EVSE -- a transaction that
  opens there (by its start, or by its first event when the start was lost) closes
  the one still open there, or is itself closed when it began before that one
  (:func:`claim_evse`); ``closed_by='timeout'``: no message for the transaction while
  the station's event time (the latest ``received_at`` of its OCPP messages,
  heartbeats included) moved ``idle_timeout`` past its last activity -- or, when
  the station sends nothing at all, after that long by the flow's wall clock
  (:func:`expire_silent`, scheduled by the flow's ``notify_at`` from
  :func:`next_deadline`). Both end at the last activity, reason ``stop_missing``.
* Closed transactions are remembered for amendments (a late stop, late samples or
  smart-meter readings) while within ``amend_window`` and among the latest
  ``keep_closed``; then forgotten (:func:`forget_old`), their ids kept in
  ``recent_closed`` so that what comes later for them is skipped.

The scans over a station's transactions are skipped while the bounds kept in
:class:`flows.sessions.state.ChargePointState` (``closing``, ``idle_after``,
``final_count``, ``forget_after``) say they would change nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bus.sessions import ClosedBy
from flows.sessions.brackets import needs_meter
from flows.sessions.registers import RegisterFold
from flows.sessions.rows import Output
from flows.sessions.rules import DEFAULT_RULES, SessionRules
from flows.sessions.snapshot import session_row
from flows.sessions.state import ChargePointState, Tx

_NEVER = datetime.max.replace(tzinfo=UTC)


def new_tx(
    state: ChargePointState,
    tx_id: str,
    at: datetime,
    received: datetime,
    version: str | None,
    rules: SessionRules,
) -> Tx:
    tx = Tx(
        transaction_id=tx_id,
        first_seen=at,
        last_activity=at,
        last_received=received,
        ocpp_version=version,
        fold=RegisterFold(rules.registers),
    )
    state.txs[tx_id] = tx
    if state.idle_after is not None:
        state.idle_after = min(state.idle_after, received + rules.idle_timeout)
    return tx


def close(state: ChargePointState, tx: Tx, by: ClosedBy, at: datetime) -> None:
    if tx.final:
        state.forget_after = None  # its stop time moves: rescan the amend window
    else:
        state.closing.add(tx.transaction_id)
    tx.closed_by = by
    tx.stopped_at = at


def finalize_ready(
    state: ChargePointState,
    rules: SessionRules,
    touched: set[str],
    *,
    force_evse: int | None = None,
    mark: datetime | None = None,
) -> None:
    """Emit closed snapshots for closed transactions whose meter data is in (or late).
    ``mark``: the event time to judge by (default: the station's watermark)."""
    if not state.closing:
        return
    mark = state.watermark if mark is None else mark
    for tx_id in list(state.closing):
        tx = state.txs.get(tx_id)
        if tx is None or tx.final:
            state.closing.discard(tx_id)
            continue
        assert tx.stopped_at is not None
        waited = mark is not None and mark >= tx.stopped_at + rules.meter_grace
        if (
            not needs_meter(tx)
            or waited
            or tx.closed_by != ClosedBy.STOP
            or (force_evse is not None and tx.evse_id == force_evse)
        ):
            tx.final = True
            state.closing.discard(tx_id)
            state.final_count += 1
            if state.forget_after is not None:
                state.forget_after = min(state.forget_after, tx.stopped_at + rules.amend_window)
            touched.add(tx.transaction_id)


def close_idle(
    state: ChargePointState, rules: SessionRules, touched: set[str], mark: datetime | None = None
) -> None:
    mark = state.watermark if mark is None else mark
    if mark is None or (state.idle_after is not None and mark <= state.idle_after):
        return
    bound = _NEVER
    for tx in state.txs.values():
        if tx.open:
            if mark - tx.last_received > rules.idle_timeout:
                close(state, tx, ClosedBy.TIMEOUT, tx.last_activity)
                touched.add(tx.transaction_id)
            else:
                bound = min(bound, tx.last_received + rules.idle_timeout)
    state.idle_after = bound


def _nothing_to_forget(state: ChargePointState, rules: SessionRules, finals: list[Tx]) -> bool:
    """True (and the bound for the next skip set) when no final transaction is past
    the amend window or beyond ``keep_closed``."""
    mark, window = state.watermark, rules.amend_window
    if len(finals) > rules.keep_closed or (
        mark is not None
        and any(t.stopped_at is not None and mark - t.stopped_at > window for t in finals)
    ):
        return False
    state.forget_after = min(
        (t.stopped_at + window for t in finals if t.stopped_at is not None), default=_NEVER
    )
    return True


def forget_old(
    state: ChargePointState,
    rules: SessionRules,
    cp: str,
    pending: dict[str, None] | None = None,
    outputs: list[Output] | None = None,
) -> None:
    """Forget final transactions past the amend window or beyond the latest
    ``keep_closed``; a deferred snapshot of one (``pending``) goes to ``outputs`` first."""
    mark = state.watermark
    if (
        state.final_count <= rules.keep_closed
        and state.forget_after is not None
        and (mark is None or mark <= state.forget_after)
    ):
        return  # nothing to forget (the common case: no scan)
    finals = [t for t in state.txs.values() if t.final]
    state.final_count = len(finals)
    if _nothing_to_forget(state, rules, finals):
        return  # (no sort)
    closed = sorted(finals, key=lambda t: (t.stopped_at or t.last_activity, t.transaction_id))
    excess = len(closed) - rules.keep_closed
    for i, tx in enumerate(closed):
        old = (
            mark is not None
            and tx.stopped_at is not None
            and mark - tx.stopped_at > rules.amend_window
        )
        if i < excess or old:
            if pending is not None and tx.transaction_id in pending:
                del pending[tx.transaction_id]  # its deferred snapshot, before it goes
                assert outputs is not None
                outputs.append(session_row(cp, tx, rules))
            del state.txs[tx.transaction_id]
            state.recent_closed.append(tx.transaction_id)
            state.final_count -= 1
    state.forget_after = None  # rescan next time for the new bound


def claim_evse(state: ChargePointState, tx: Tx, rules: SessionRules, touched: set[str]) -> None:
    """One session at a time per EVSE: the transaction that began last is the one
    running there, any other still open on that EVSE closes by ``next_start`` at its
    last activity (``tx`` itself when it began before the one running), and closed
    ones waiting for their smart-meter reading stop waiting."""
    evse = tx.evse_id
    if evse is None or evse == 0 or not tx.open:
        return
    for other in list(state.txs.values()):
        if other is tx or not other.open or other.evse_id != evse:
            continue
        if other.first_seen <= tx.first_seen:
            close(state, other, ClosedBy.NEXT_START, other.last_activity)
            touched.add(other.transaction_id)
        else:
            close(state, tx, ClosedBy.NEXT_START, tx.last_activity)
            touched.add(tx.transaction_id)
            break
    finalize_ready(state, rules, touched, force_evse=evse)


def next_deadline(state: ChargePointState, rules: SessionRules = DEFAULT_RULES) -> timedelta | None:
    """How much further the station's event time must move before a waiting
    transaction closes by timeout or a closed one stops waiting for its smart-meter
    reading; None when nothing waits (see :func:`expire_silent`)."""
    mark = state.watermark
    if mark is None:
        return None
    waits: list[timedelta] = []
    for tx in state.txs.values():
        if tx.final:
            continue
        if tx.closed_by is None:
            waits.append(tx.last_received + rules.idle_timeout - mark)
        elif tx.stopped_at is not None:
            waits.append(tx.stopped_at + rules.meter_grace - mark)
    return max(min(waits), timedelta(0)) if waits else None


def expire_silent(
    state: ChargePointState,
    silent_for: timedelta,
    rules: SessionRules = DEFAULT_RULES,
) -> tuple[ChargePointState, list[Output]]:
    """Close what a silent station leaves waiting: the station sent nothing for
    ``silent_for`` (wall clock, measured by the flow), so its event time is taken to
    be ``watermark + silent_for`` -- the gateway stamps ``received_at`` with its own
    clock, so silence advances it just as heartbeats would. Transactions idle past
    ``idle_timeout`` close by ``timeout`` and closed ones stop waiting for their
    smart-meter reading after ``meter_grace``, exactly as the next message of the
    station would have done. The stored watermark stays the last *seen* event time,
    so a replay (which sees no silence) and a late message converge to the same rows:
    a StopTransaction that arrives later amends the row (``stop_late``).
    """
    mark = state.watermark
    if mark is None or silent_for <= timedelta(0):
        return state, []
    mark = mark + silent_for
    touched: set[str] = set()
    close_idle(state, rules, touched, mark)
    finalize_ready(state, rules, touched, mark=mark)
    cp = state.charge_point_id
    return state, [session_row(cp, state.txs[t], rules) for t in sorted(touched)]
