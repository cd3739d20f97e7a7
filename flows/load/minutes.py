"""One connector's 1-minute aggregates (:class:`MinuteRow`, UTC minute buckets by
event time).

Per minute: sample count, sum/avg/max power, the last
``Energy.Active.Import.Register`` (Wh) and the energy attributed to the minute:
``last register in the minute - last register before it`` (the first minute ever:
``last - first`` inside it). Deltas chain, so they sum to ``last - first register``
over any range. A register that went down (reset, meter swap) gives 0 for that
minute and the chain restarts from the new value. Samples are kept per instant, so a
redelivered or repeated message changes nothing. Buckets stay open for
:data:`OPEN_MINUTES` minutes behind the newest one (late samples within that horizon
update their minute and the chain; older ones are refused by :func:`record` and
counted in the station's ``late_samples``). A minute that changed is re-emitted with
its latest figure by :func:`flush`, once per batch of events (also when it falls
behind the horizon within the batch, and before a source takes over); the sink
upserts on ``(charge_point_id, connector_id, bucket)``, so the table holds the latest
figure whatever the batching, and replays are idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from flows.load.facts import PowerReading, RegisterReading
from flows.load.sources import OCPP

OPEN_MINUTES = 5
_MINUTE = timedelta(minutes=1)
_OPEN_SPAN = OPEN_MINUTES * _MINUTE


@dataclass(frozen=True, slots=True)
class MinuteRow:
    charge_point_id: str
    connector_id: int
    bucket: datetime
    sample_count: int
    power_sum_w: float
    avg_power_w: float | None
    max_power_w: float | None
    energy_wh: Decimal | None
    register_wh: Decimal | None
    source: str


def minute_of(at: datetime) -> datetime:
    if at.tzinfo is not UTC:
        at = at.astimezone(UTC)
    return at.replace(second=0, microsecond=0)


@dataclass(slots=True)
class Bucket:
    power: dict[datetime, float] = field(default_factory=dict)  # instant -> W
    first_register: tuple[datetime, Decimal] | None = None
    last_register: tuple[datetime, Decimal] | None = None


@dataclass(slots=True)
class ConnectorState:
    source: str | None = None
    source_at: datetime | None = None
    power_w: float = 0.0
    power_at: datetime | None = None
    buckets: dict[datetime, Bucket] = field(default_factory=dict)
    newest_bucket: datetime | None = None
    base_register: Decimal | None = None  # last register before the oldest open bucket
    emitted: dict[datetime, MinuteRow] = field(default_factory=dict)
    # The oldest bucket changed since its rows were last computed (None: none). Rows
    # are computed from there on (a register change moves the chain after it).
    dirty_from: datetime | None = None

    def idle(self, at: datetime) -> None:
        if self.power_at is None or at >= self.power_at:
            self.power_w, self.power_at = 0.0, at

    def restart(self, source: str, at: datetime) -> None:
        """Listen to ``source`` from ``at`` on, with no minutes (flush them first)."""
        self.source, self.source_at = source, at
        self.buckets.clear()
        self.emitted.clear()
        self.newest_bucket = None
        self.base_register = None


def record(conn: ConnectorState, fact: PowerReading | RegisterReading) -> bool:
    """Add a reading to its minute; False when that minute is behind the open ones."""
    at = fact.at
    start = minute_of(at)
    newest = conn.newest_bucket
    if newest is not None and start < newest - _OPEN_SPAN:
        return False
    bucket = conn.buckets.get(start)
    if bucket is None:
        bucket = conn.buckets[start] = Bucket()
    if isinstance(fact, PowerReading):
        power = bucket.power
        if power.get(at) != fact.power_w:  # new, or a different value for the instant
            power[at] = fact.power_w
            if conn.dirty_from is None or start < conn.dirty_from:
                conn.dirty_from = start
        if conn.power_at is None or at >= conn.power_at:
            conn.power_w, conn.power_at = fact.power_w, at
    else:
        reading = (at, fact.energy_wh)
        first, last = bucket.first_register, bucket.last_register
        changed = False
        if first is None or at < first[0]:
            bucket.first_register = reading
            changed = True
        if last is None or at >= last[0]:
            changed = changed or last != reading
            bucket.last_register = reading
        if changed and (conn.dirty_from is None or start < conn.dirty_from):
            conn.dirty_from = start
    if newest is None or start > newest:
        conn.newest_bucket = start
    return True


def evict(conn: ConnectorState) -> None:
    """Drop the minutes behind the open ones (their last register becomes the base)."""
    if conn.newest_bucket is None:
        return
    cutoff = conn.newest_bucket - _OPEN_SPAN
    buckets = conn.buckets
    if not buckets or min(buckets) >= cutoff:
        return
    for start in sorted(buckets):
        if start >= cutoff:
            break
        bucket = buckets.pop(start)
        conn.emitted.pop(start, None)
        if bucket.last_register is not None:
            conn.base_register = bucket.last_register[1]


def _row(
    cp: str,
    connector_id: int,
    start: datetime,
    bucket: Bucket,
    source: str,
    previous: Decimal | None,
) -> MinuteRow:
    energy: Decimal | None = None
    register: Decimal | None = None
    if bucket.last_register is not None and bucket.first_register is not None:
        register = bucket.last_register[1]
        reference = previous if previous is not None else bucket.first_register[1]
        energy = register - reference if register >= reference else Decimal(0)
    values = list(bucket.power.values())
    total = sum(values)
    return MinuteRow(
        charge_point_id=cp,
        connector_id=connector_id,
        bucket=start,
        sample_count=len(values),
        power_sum_w=total,
        avg_power_w=total / len(values) if values else None,
        max_power_w=max(values) if values else None,
        energy_wh=energy,
        register_wh=register,
        source=source,
    )


def flush(cp: str, connector_id: int, conn: ConnectorState, out: list[MinuteRow]) -> None:
    """Emit the rows of the minutes changed since the last flush (those that differ
    from what was emitted for them): from the oldest changed minute on, as a register
    there moves the chain after it; the minutes before keep their rows."""
    dirty_from = conn.dirty_from
    if dirty_from is None:
        return
    conn.dirty_from = None
    previous = conn.base_register
    source = conn.source or OCPP
    emitted = conn.emitted
    buckets = conn.buckets
    for start in sorted(buckets):
        bucket = buckets[start]
        if start >= dirty_from:
            row = _row(cp, connector_id, start, bucket, source, previous)
            if emitted.get(start) != row:
                emitted[start] = row
                out.append(row)
        if bucket.last_register is not None and bucket.first_register is not None:
            previous = bucket.last_register[1]
