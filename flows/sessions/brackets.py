"""Smart-meter bracketing: which readings on ``meter.readings`` bound a transaction.

When a reading for the transaction's connector says ``is_billing_meter``, the
session energy is that meter's register at stop minus at start. We choose, per
meter, the *latest reading at or before the start* and the *earliest reading at or
after the stop*, each within ``meter_window`` (no interpolation: outside a session no
energy flows through the connector, so these bracketing readings equal the register
at start and at stop) -- or at any distance when the readings on both sides of the
start (stop) are equal: registers never decrease, so an idle run spanning the
instant pins the register there. Runs of equal readings are kept as their first and
latest reading only (:func:`remember_reading`), and this keeps the figure
independent of the order in which ``ocpp.events`` and ``meter.readings`` interleave:
a :class:`flows.sessions.state.Bracket` is a function of the set of readings seen.
"""

from __future__ import annotations

import bisect
from datetime import datetime, timedelta
from decimal import Decimal

from flows.sessions.rules import SessionRules
from flows.sessions.state import Bracket, Reading, Tx

MAX_READINGS = 512  # smart-meter readings remembered per connector


def settle(b: Bracket, window: timedelta) -> None:
    """Derive ``start``/``stop`` and ``relevant`` from the tracked readings: the
    reading before the start (after the stop) when it is within ``window``, or when
    the readings on both sides are equal."""
    start = stop = None
    pinned = False
    before, after = b.before_start, b.after_start
    if before is not None and b.start_ref is not None:
        if after is not None and after[1] == before[1]:
            start, pinned = before, True
        elif b.start_ref - before[0] <= window:
            start = before
    before, after = b.before_stop, b.after_stop
    if after is not None and b.stop_ref is not None:
        if before is not None and before[1] == after[1]:
            stop, pinned = after, True
        elif after[0] - b.stop_ref <= window:
            stop = after
    b.start, b.stop = start, stop
    b.relevant = b.near or pinned


def _retrack(b: Bracket, start: datetime | None, stop: datetime | None) -> bool:
    """Track anew around a start that became known or a stop that (re)closed the
    transaction (the readings in the ring are offered again); True if anything reset."""
    reset = False
    if b.start_ref != start:
        b.start_ref, b.before_start, b.after_start, reset = start, None, None, True
    if b.stop_ref != stop:
        b.stop_ref, b.before_stop, b.after_stop, reset = stop, None, None, True
    return reset


def _track(
    b: Bracket, start: datetime | None, stop: datetime | None, t: datetime, wh: Decimal
) -> None:
    point = (t, wh)
    if start is not None:
        if t <= start and (b.before_start is None or t > b.before_start[0]):
            b.before_start = point
        if t >= start and (b.after_start is None or t < b.after_start[0]):
            b.after_start = point
    if stop is not None:
        if t <= stop and (b.before_stop is None or t > b.before_stop[0]):
            b.before_stop = point
        if t >= stop and (b.after_stop is None or t < b.after_stop[0]):
            b.after_stop = point


def offer(tx: Tx, rules: SessionRules, reading: Reading) -> bool:
    """Consider one smart-meter reading for a transaction's brackets; True if what the
    session's snapshot sees of them changed."""
    t, meter_id, wh, billing = reading
    start = tx.started_at if tx.has_start else None
    stop = tx.stopped_at
    bracket = tx.meters.get(meter_id)
    if bracket is None:
        bracket = tx.meters[meter_id] = Bracket()
    seen = (bracket.relevant, bracket.billing, bracket.start, bracket.stop)
    _retrack(bracket, start, stop)
    lo = (start or tx.first_seen) - rules.meter_window
    hi = (stop + rules.meter_window) if stop is not None else None
    if lo <= t and (hi is None or t <= hi):
        bracket.near = True
    if billing:
        bracket.billing = True
    _track(bracket, start, stop, t, wh)
    settle(bracket, rules.meter_window)
    return (bracket.relevant, bracket.billing, bracket.start, bracket.stop) != seen


def offer_all(tx: Tx, readings: dict[int, list[Reading]], rules: SessionRules) -> None:
    """Bracket the transaction anew from the readings remembered on its connector."""
    start = tx.started_at if tx.has_start else None
    for bracket in tx.meters.values():  # (also those without readings in the ring now)
        if _retrack(bracket, start, tx.stopped_at):
            settle(bracket, rules.meter_window)
    if tx.evse_id is None:
        return
    for reading in readings.get(tx.evse_id, ()):
        offer(tx, rules, reading)


def remember_reading(ring: list[Reading], reading: Reading, rules: SessionRules) -> bool:
    """Keep a reading in its connector's time-ordered ring; False when it is there
    already. An idle run keeps its first and latest reading; the ring holds at most
    :data:`MAX_READINGS` and ``meter_retention`` of readings."""
    t, meter_id, wh, _ = reading
    i = bisect.bisect_left(ring, (t, meter_id))
    if any(e[0] == t and e[1] == meter_id for e in ring[i : i + 2]):
        return False  # the same reading again
    if i == len(ring):
        same = [k for k in range(len(ring) - 1, -1, -1) if ring[k][1] == meter_id][:2]
        if len(same) == 2 and ring[same[0]][2] == ring[same[1]][2] == wh:
            ring.pop(same[0])  # idle: keep the first and the latest of equal readings
    ring.insert(bisect.bisect_left(ring, reading), reading)
    horizon = ring[-1][0] - rules.meter_retention
    while len(ring) > MAX_READINGS or (len(ring) > 1 and ring[0][0] < horizon):
        ring.pop(0)
    return True


def meter_energy(bracket: Bracket) -> Decimal | None:
    """The meter's figure for the transaction: stop minus start, when both are known
    and the register did not go back."""
    if bracket.start is None or bracket.stop is None or bracket.stop[1] < bracket.start[1]:
        return None
    return bracket.stop[1] - bracket.start[1]


def needs_meter(tx: Tx) -> bool:
    """Hold the close: a smart meter is known here and has no reading after the stop."""
    return (
        tx.has_start
        and any(b.relevant for b in tx.meters.values())
        and not any(b.stop is not None for b in tx.meters.values() if b.relevant)
    )
