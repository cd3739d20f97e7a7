"""A transaction's meter samples: which belong to it, the register points and power
readings they add, and how many distinct samples it has.

Samples with a transaction id belong to it; samples without one (clock-aligned
values, 2.0.1 MeterValues) belong to the single running transaction on their EVSE;
samples of EVSE/connector 0 (the main meter) never count for a transaction.
Identical register points count once; ``sample_count`` counts the distinct samples
stored for the transaction (one per natural key of ``meter_samples``).
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from bus.normalized import MeterSample
from flows.sessions.registers import Point, fold_points, power_points, register_points
from flows.sessions.rules import SessionRules
from flows.sessions.state import ChargePointState, Tx

Series = tuple[int, str, str | None, str, str]
_SERIES_IDS: dict[Series, int] = {}
_MAX_SERIES_IDS = 65_536


def rebuild_fold(tx: Tx, rules: SessionRules) -> None:
    """Fold the transaction's register points anew (a start register or a point out
    of time order arrived)."""
    start = (
        (tx.started_at, tx.start_register)
        if (tx.start_register is not None and tx.started_at is not None)
        else None
    )
    tx.fold = fold_points(rules.registers, start, tx.samples)


def _add_points(tx: Tx, points: Iterable[Point], rules: SessionRules) -> None:
    for point in points:
        i = bisect.bisect_left(tx.samples, point)
        if i < len(tx.samples) and tx.samples[i] == point:
            continue  # the same reading again
        in_order = i == len(tx.samples) and (not tx.samples or point[0] > tx.samples[-1][0])
        tx.samples.insert(i, point)
        if in_order:
            tx.fold.push(*point)
        else:
            rebuild_fold(tx, rules)
    if len(tx.samples) >= 2:
        tx.power.clear()  # power integration is only for transactions without registers


def _series_id(series: Series) -> int:
    """A number for a sample series (connector, measurand, phase, location, context)
    that is the same in every process (``hash`` of a str is not, and the sample keys
    live in state pickled across restarts)."""
    connector, measurand, phase, location, context = series
    text = f"{connector}\x1f{measurand}\x1f{phase or ''}\x1f{location}\x1f{context}"
    n = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest())
    if len(_SERIES_IDS) < _MAX_SERIES_IDS:
        _SERIES_IDS[series] = n
    return n


def count_samples(tx: Tx, samples: list[MeterSample]) -> None:
    """``sample_count``: the distinct samples of the transaction the sink stores --
    one per natural key of ``meter_samples`` (series and time), kept as numbers in
    ``tx.sample_keys``; samples without any connector are not stored, not counted."""
    keys = tx.sample_keys
    before = len(keys)
    add = keys.add
    fallback = tx.evse_id
    ids = _SERIES_IDS
    at = None
    micros = 0
    for s in samples:
        connector = s.evse_id if s.evse_id is not None else fallback
        if connector is None:
            continue
        series = (connector, s.measurand, s.phase, s.location, s.context)
        n = ids.get(series)
        if n is None:
            n = _series_id(series)
        if s.timestamp != at:  # (the samples of one meter value share their time)
            at = s.timestamp
            micros = int(at.timestamp() * 1_000_000)
        add(micros ^ n)  # the time mixed with the series' 64 random-looking bits
    tx.sample_count += len(keys) - before


def context_register(samples: list[MeterSample], context: str, last: bool) -> Decimal | None:
    """The register in the samples of one reading context (``Transaction.Begin``:
    the first, ``Transaction.End``: the last), for a start or stop without one."""
    points, _ = register_points(s for s in samples if s.context == context)
    if not points:
        return None
    return points[-1][1] if last else points[0][1]


def running_tx(
    state: ChargePointState, samples: list[MeterSample]
) -> tuple[Tx | None, list[MeterSample]]:
    """The transaction samples without a transaction id belong to -- the one running
    transaction on their EVSE, if any -- and those of them that count for it."""
    evses = {s.evse_id for s in samples}
    running = [
        t
        for t in state.txs.values()
        if t.open and t.evse_id in evses and t.evse_id not in (None, 0)
    ]
    if len(running) != 1:
        return None, samples
    tx = running[0]
    return tx, [s for s in samples if s.evse_id == tx.evse_id]


def absorb(tx: Tx, billable: list[MeterSample], at: datetime, rules: SessionRules) -> None:
    """Add one message's samples to their transaction (``at``: its receipt)."""
    count_samples(tx, billable)
    if any(s.evse_id == 0 for s in billable):
        billable = [s for s in billable if s.evse_id != 0]  # never the main meter
    points, conflict = register_points(billable)
    tx.conflict = tx.conflict or conflict
    _add_points(tx, points, rules)
    if len(tx.samples) < 2:
        tx.power.extend(p for p in power_points(billable) if p not in tx.power)
    latest = tx.last_activity
    for s in billable:
        if s.timestamp > latest:
            latest = s.timestamp
    tx.last_activity = latest
    if at > tx.last_received:
        tx.last_received = at
