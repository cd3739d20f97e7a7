"""Live load per connector, station and site: pure step logic, no I/O.

Step 1, keyed by charge point (:func:`parse_envelope` then :func:`apply`):

* **Power per connector** (1.6 connector = 2.0.1 EVSE; 0 = the station's main meter)
  from ``Power.Active.Import`` samples, in W: unit ``W`` (or none given) or ``kW``,
  times ``10^unit_multiplier`` (2.0.1). Per sampled instant the value without phase
  wins (``Outlet`` preferred over other locations); when a station only reports per
  phase (``L1``/``L2``/``L3`` or ``L1-N``...), the phases are summed. Samples located
  at the ``EV`` are ignored. The live power of a connector is its latest sample; it
  drops to 0 when the connector reports a status that delivers no energy
  (:data:`NOT_DELIVERING`), when its transaction ends, or when its last sample is
  older than :data:`STALE_AFTER` relative to the station's newest event.
* **Sources.** OCPP samples and smart meter readings (``meter.readings``) can both
  describe a connector. Per connector one source is used at a time: a billing meter
  beats the station's own samples, which beat a non-billing meter; a lower source
  takes over only after the current one has been silent for
  :data:`SOURCE_STALE_AFTER`. A switch starts the connector's minute buckets afresh
  (registers of different devices are not comparable).
* **1-minute aggregates** (:class:`MinuteRow`, UTC minute buckets by event time):
  sample count, sum/avg/max power, the last ``Energy.Active.Import.Register`` (Wh)
  and the energy attributed to the minute: ``last register in the minute - last
  register before it`` (the first minute ever: ``last - first`` inside it). Deltas
  chain, so they sum to ``last - first register`` over any range. A register that
  went down (reset, meter swap) gives 0 for that minute and the chain restarts from
  the new value. Samples are kept per instant, so a redelivered or repeated message
  changes nothing. Buckets stay open for :data:`OPEN_MINUTES` minutes behind the
  newest one (late samples within that horizon update their minute and the chain;
  older ones are counted in ``late_samples`` and ignored). Every change to an open
  minute re-emits its row; the sink upserts on ``(charge_point_id, connector_id,
  bucket)``, so the table holds the latest figure and replays are idempotent.
* **Station total** (:class:`StationLoad`): the sum over connectors >= 1; the
  connector 0 (main meter) value only when no connector >= 1 reported power.
  Emitted whenever it (or its time or connection state) changes. An offline
  station keeps its last power (it may keep charging offline) and is flagged.

Step 2, keyed by site (:class:`SiteLogic`): a site's stations' latest totals
summed against ``sites.capacity_w`` (utilisation %, over-capacity flag). Values
are event-time (``as_of`` = newest station time); publication is processing-time:
at most once per ``interval`` per site, when something changed, plus an unchanged
heartbeat every ``heartbeat`` and a final publication at end of input.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from bytewax.operators import StatefulLogic

from bus.envelope import Envelope, Kind
from bus.load import ConnectorPower, SiteLoad, StationPower
from bus.normalized import (
    ENERGY_REGISTER,
    ConnectorStatus,
    MeterSample,
    Normalized,
    TransactionEnd,
    TransactionStart,
    normalize_v16,
    normalize_v201,
    to_decimal,
    to_wh,
)

POWER = "Power.Active.Import"
NOT_DELIVERING = frozenset({
    "Available", "Preparing", "Finishing", "Reserved", "Unavailable", "Faulted",
})
OCPP = "ocpp"
METER = "meter"
BILLING_METER = "meter:billing"
SOURCE_RANK = {BILLING_METER: 3, OCPP: 2, METER: 1}
OPEN_MINUTES = 5
STALE_AFTER = timedelta(minutes=15)
SOURCE_STALE_AFTER = timedelta(minutes=10)
MAX_TRANSACTIONS = 32
PHASES = {"L1": "L1", "L2": "L2", "L3": "L3", "L1-N": "L1", "L2-N": "L2", "L3-N": "L3"}
_MINUTE = timedelta(minutes=1)
SITE_NAMESPACE = uuid.UUID("0c5e3a52-7b0f-4d8e-a3c4-51f1f3b1d9a2")


class InvalidEvent(ValueError):
    """An envelope this flow should understand but cannot (goes to dead letters)."""


# --------------------------------------------------------------------------- inputs


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


@dataclass(frozen=True, slots=True)
class ConnectionChange:
    online: bool
    at: datetime


Fact = PowerReading | RegisterReading | ConnectorIdle | TransactionOpened | ConnectionChange


@dataclass(frozen=True, slots=True)
class LoadEvent:
    charge_point_id: str
    at: datetime
    facts: tuple[Fact, ...]


# --------------------------------------------------------------------------- outputs


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


@dataclass(frozen=True, slots=True)
class StationLoad:
    charge_point_id: str
    as_of: datetime
    power_w: float
    connectors: tuple[tuple[int, float], ...]
    offline: bool


Output = MinuteRow | StationLoad


# --------------------------------------------------------------------------- parsing


def _watts(sample: MeterSample) -> float | None:
    factor = {"w": 1, "": 1, "kw": 1000}.get(sample.unit.strip().lower())
    if factor is None:
        return None
    return float(sample.value * factor * Decimal(10) ** sample.unit_multiplier)


def _location_rank(sample: MeterSample) -> int:
    return {"Outlet": 2, "Cable": 1}.get(sample.location, 0)


def power_readings(samples: Iterable[MeterSample], source: str = OCPP) -> list[PowerReading]:
    """One reading per (connector, transaction, instant): the total without phase, else
    the sum of the per-phase values.

    >>> from datetime import UTC, datetime
    >>> t = datetime(2026, 1, 5, tzinfo=UTC)
    >>> def s(v, phase=None, unit="W", mult=0):
    ...     return MeterSample(charge_point_id="CP", evse_id=1, connector_id=1, timestamp=t,
    ...         measurand=POWER, phase=phase, unit=unit, unit_multiplier=mult,
    ...         context="Sample.Periodic", location="Outlet", value=Decimal(v))
    >>> phases = [s("3.6", "L1", "kW"), s("3600", "L2-N"), s("36", "L3", mult=2)]
    >>> [r.power_w for r in power_readings(phases)]
    [10800.0]
    >>> [r.power_w for r in power_readings([s("7", "L1", "kW"), s("11", None, "kW")])]
    [11000.0]
    """
    groups: dict[tuple[int | None, str | None, datetime], list[MeterSample]] = {}
    for sample in samples:
        if sample.measurand != POWER or sample.location == "EV":
            continue
        groups.setdefault(
            (sample.evse_id, sample.transaction_id, sample.timestamp), []).append(sample)
    out: list[PowerReading] = []
    for (evse, tx, at), group in groups.items():
        totals = [(s, w) for s in group if s.phase is None and (w := _watts(s)) is not None]
        value: float | None = None
        if totals:
            totals.sort(key=lambda sw: _location_rank(sw[0]))
            value = totals[-1][1]
        else:
            phases: dict[str, float] = {}
            for s in sorted(group, key=_location_rank):
                phase = PHASES.get(s.phase or "")
                watts = _watts(s)
                if phase is not None and watts is not None:
                    phases[phase] = watts
            if phases:
                value = sum(phases.values())
        if value is not None:
            out.append(PowerReading(evse, tx, at, value, source))
    return out


def register_readings(samples: Iterable[MeterSample], source: str = OCPP
                      ) -> list[RegisterReading]:
    """The total import register (no phase) per (connector, transaction, instant), in Wh."""
    found: dict[tuple[int | None, str | None, datetime], tuple[int, Decimal]] = {}
    for s in samples:
        if s.measurand != ENERGY_REGISTER or s.phase is not None or s.location == "EV":
            continue
        wh = to_wh(s.value, s.unit, s.unit_multiplier)
        if wh is None:
            continue
        key = (s.evse_id, s.transaction_id, s.timestamp)
        rank = _location_rank(s)
        if key not in found or rank >= found[key][0]:
            found[key] = (rank, wh)
    return [RegisterReading(evse, tx, at, wh, source)
            for (evse, tx, at), (_, wh) in found.items()]


def _facts_of(envelope: Envelope) -> list[Normalized]:
    if envelope.normalized is not None:
        return list(envelope.normalized)
    if envelope.action is None:
        return []
    normalize = normalize_v201 if envelope.ocpp_version == "2.0.1" else normalize_v16
    return normalize(envelope.charge_point_id, envelope.action, envelope.payload,
                     envelope.response, envelope.received_at)


def _ocpp_facts(envelope: Envelope) -> list[Fact]:
    normalized = _facts_of(envelope)
    opened: list[Fact] = []
    idle: list[Fact] = []
    samples: list[MeterSample] = []
    for f in normalized:
        if isinstance(f, MeterSample):
            samples.append(f)
        elif isinstance(f, TransactionStart) and f.evse_id is not None:
            opened.append(TransactionOpened(f.transaction_id, f.evse_id))
        elif isinstance(f, TransactionEnd):
            idle.append(ConnectorIdle(f.evse_id, f.transaction_id, f.timestamp))
        elif isinstance(f, ConnectorStatus) and f.status in NOT_DELIVERING:
            idle.append(ConnectorIdle(f.evse_id, None, f.timestamp))
    readings: list[Fact] = [*power_readings(samples), *register_readings(samples)]
    return [*opened, *readings, *idle]


def _meter_facts(envelope: Envelope) -> list[Fact]:
    p = envelope.payload
    connector = p.get("connector_id")
    power = p.get("power_w")
    energy = to_decimal(p.get("energy_wh"))
    if (not isinstance(connector, int) or isinstance(connector, bool) or connector < 0
            or isinstance(power, bool) or not isinstance(power, int | float)):
        raise InvalidEvent("meter reading needs connector_id (int >= 0) and power_w (number)")
    source = BILLING_METER if p.get("is_billing_meter") is True else METER
    at = envelope.measured_at
    facts: list[Fact] = [PowerReading(connector, None, at, float(power), source)]
    if energy is not None:
        facts.append(RegisterReading(connector, None, at, energy, source))
    return facts


def parse_envelope(envelope: Envelope) -> LoadEvent | None:
    """The load facts in one envelope; None when it carries none (e.g. Heartbeat)."""
    facts: list[Fact]
    if envelope.kind == Kind.OCPP_CALL:
        facts = _ocpp_facts(envelope)
    elif envelope.kind == Kind.METER_READING:
        facts = _meter_facts(envelope)
    elif envelope.kind == Kind.STATION_CONNECTION:
        state = envelope.payload.get("state")
        if state not in ("online", "offline"):
            raise InvalidEvent(f"station connection state must be online/offline: {state!r}")
        facts = [ConnectionChange(state == "online", envelope.measured_at)]
    else:
        return None
    if not facts:
        return None
    return LoadEvent(envelope.charge_point_id, envelope.measured_at, tuple(facts))


# --------------------------------------------------------------------------- state


def minute_of(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(second=0, microsecond=0)


@dataclass
class Bucket:
    power: dict[datetime, float] = field(default_factory=dict)  # instant -> W
    first_register: tuple[datetime, Decimal] | None = None
    last_register: tuple[datetime, Decimal] | None = None


@dataclass
class ConnectorState:
    source: str | None = None
    source_at: datetime | None = None
    power_w: float = 0.0
    power_at: datetime | None = None
    buckets: dict[datetime, Bucket] = field(default_factory=dict)
    newest_bucket: datetime | None = None
    base_register: Decimal | None = None  # last register before the oldest open bucket
    emitted: dict[datetime, MinuteRow] = field(default_factory=dict)

    def accept(self, source: str, at: datetime) -> bool:
        """Whether a reading from ``source`` is used (switching source if it takes over)."""
        if self.source == source:
            if self.source_at is None or at > self.source_at:
                self.source_at = at
            return True
        if self.source is not None:
            silent = self.source_at is not None and at - self.source_at > SOURCE_STALE_AFTER
            if SOURCE_RANK[source] < SOURCE_RANK[self.source] and not silent:
                return False
        self.source, self.source_at = source, at
        self.buckets.clear()
        self.emitted.clear()
        self.newest_bucket = None
        self.base_register = None
        return True

    def idle(self, at: datetime) -> None:
        if self.power_at is None or at >= self.power_at:
            self.power_w, self.power_at = 0.0, at

    def live_power(self, now: datetime | None) -> float:
        if self.power_at is None or (now is not None and now - self.power_at > STALE_AFTER):
            return 0.0
        return self.power_w


@dataclass
class StationState:
    connectors: dict[int, ConnectorState] = field(default_factory=dict)
    transactions: dict[str, int] = field(default_factory=dict)  # transaction -> connector
    online: bool = True
    as_of: datetime | None = None
    last_load: StationLoad | None = None
    late_samples: int = 0


def _connector_of(state: StationState, connector: int | None, tx: str | None) -> int | None:
    if connector is not None:
        return connector
    return state.transactions.get(tx) if tx is not None else None


def _record(state: StationState, fact: PowerReading | RegisterReading) -> int | None:
    """Apply one reading; returns the connector whose minutes changed, if any."""
    cid = _connector_of(state, fact.connector_id, fact.transaction_id)
    if cid is None:
        return None
    conn = state.connectors.setdefault(cid, ConnectorState())
    if not conn.accept(fact.source, fact.at):
        return None
    start = minute_of(fact.at)
    newest = conn.newest_bucket
    if newest is not None and start < newest - OPEN_MINUTES * _MINUTE:
        state.late_samples += 1
        return None
    bucket = conn.buckets.setdefault(start, Bucket())
    if isinstance(fact, PowerReading):
        bucket.power[fact.at] = fact.power_w
        if conn.power_at is None or fact.at >= conn.power_at:
            conn.power_w, conn.power_at = fact.power_w, fact.at
    else:
        reading = (fact.at, fact.energy_wh)
        if bucket.first_register is None or fact.at < bucket.first_register[0]:
            bucket.first_register = reading
        if bucket.last_register is None or fact.at >= bucket.last_register[0]:
            bucket.last_register = reading
    if newest is None or start > newest:
        conn.newest_bucket = start
    return cid


def _evict(conn: ConnectorState) -> None:
    if conn.newest_bucket is None:
        return
    cutoff = conn.newest_bucket - OPEN_MINUTES * _MINUTE
    for start in sorted(conn.buckets):
        if start >= cutoff:
            break
        bucket = conn.buckets.pop(start)
        conn.emitted.pop(start, None)
        if bucket.last_register is not None:
            conn.base_register = bucket.last_register[1]


def minute_rows(cp: str, connector_id: int, conn: ConnectorState) -> list[MinuteRow]:
    """The rows of the connector's open minutes, registers chained oldest first."""
    previous = conn.base_register
    rows: list[MinuteRow] = []
    for start in sorted(conn.buckets):
        bucket = conn.buckets[start]
        energy: Decimal | None = None
        register: Decimal | None = None
        if bucket.last_register is not None and bucket.first_register is not None:
            register = bucket.last_register[1]
            reference = previous if previous is not None else bucket.first_register[1]
            energy = register - reference if register >= reference else Decimal(0)
            previous = register
        values = list(bucket.power.values())
        total = sum(values)
        rows.append(MinuteRow(
            charge_point_id=cp, connector_id=connector_id, bucket=start,
            sample_count=len(values), power_sum_w=total,
            avg_power_w=total / len(values) if values else None,
            max_power_w=max(values) if values else None,
            energy_wh=energy, register_wh=register, source=conn.source or OCPP,
        ))
    return rows


def station_load(cp: str, state: StationState) -> StationLoad:
    now = state.as_of
    assert now is not None, "station_load needs an event first"
    powers = {cid: c.live_power(now) for cid, c in sorted(state.connectors.items())
              if c.power_at is not None}
    outlets = {cid: w for cid, w in powers.items() if cid > 0}
    total = sum(outlets.values()) if outlets else powers.get(0, 0.0)
    return StationLoad(cp, now, total, tuple(powers.items()), not state.online)


def apply(state: StationState | None, event: LoadEvent
          ) -> tuple[StationState, list[Output]]:
    """Fold one event into the station's state; the changed minute rows and, if it
    changed, the station's load."""
    state = state if state is not None else StationState()
    touched: set[int] = set()
    for fact in event.facts:
        if isinstance(fact, TransactionOpened):
            state.transactions.pop(fact.transaction_id, None)
            state.transactions[fact.transaction_id] = fact.connector_id
            while len(state.transactions) > MAX_TRANSACTIONS:
                del state.transactions[next(iter(state.transactions))]
        elif isinstance(fact, PowerReading | RegisterReading):
            cid = _record(state, fact)
            if cid is not None:
                touched.add(cid)
        elif isinstance(fact, ConnectorIdle):
            cid = _connector_of(state, fact.connector_id, fact.transaction_id)
            if fact.transaction_id is not None:
                state.transactions.pop(fact.transaction_id, None)
            if cid is not None and cid in state.connectors:
                state.connectors[cid].idle(fact.at)
        else:
            state.online = fact.online
    if state.as_of is None or event.at > state.as_of:
        state.as_of = event.at
    out: list[Output] = []
    for cid in sorted(touched):
        conn = state.connectors[cid]
        _evict(conn)
        for row in minute_rows(event.charge_point_id, cid, conn):
            if conn.emitted.get(row.bucket) != row:
                conn.emitted[row.bucket] = row
                out.append(row)
    load = station_load(event.charge_point_id, state)
    if load != state.last_load:
        state.last_load = load
        out.append(load)
    return state, out


# --------------------------------------------------------------------------- sites


@dataclass(frozen=True, slots=True)
class SiteInput:
    """A station's load routed to its site (``capacity_w`` from ``sites``)."""

    site_id: str
    capacity_w: int | None
    station: StationLoad


@dataclass
class SiteState:
    site_id: str = ""
    capacity_w: int | None = None
    stations: dict[str, StationLoad] = field(default_factory=dict)
    dirty: bool = False
    last_published: datetime | None = None

    def update(self, item: SiteInput) -> None:
        self.site_id = item.site_id
        old = self.stations.get(item.station.charge_point_id)
        if old is not None and item.station.as_of < old.as_of:
            return  # an older view of the station (replayed upstream output)
        if old != item.station or self.capacity_w != item.capacity_w:
            self.dirty = True
        self.capacity_w = item.capacity_w
        self.stations[item.station.charge_point_id] = item.station


def site_load(state: SiteState, published_at: datetime) -> SiteLoad:
    """The site's total against its capacity (pure; ``published_at`` is only stamped)."""
    stations = sorted(state.stations.values(), key=lambda s: s.charge_point_id)
    total = sum(s.power_w for s in stations)
    as_of = max(s.as_of for s in stations)
    capacity = state.capacity_w
    utilisation = round(100.0 * total / capacity, 1) if capacity else None
    station_power = [
        StationPower(charge_point_id=s.charge_point_id, power_w=s.power_w, as_of=s.as_of,
                     offline=s.offline,
                     connectors=[ConnectorPower(connector_id=c, power_w=w)
                                 for c, w in s.connectors])
        for s in stations
    ]
    content = "|".join([state.site_id, as_of.isoformat(), repr(total), repr(capacity),
                        *(f"{s.charge_point_id}:{s.power_w!r}:{s.offline}" for s in stations)])
    return SiteLoad(
        message_id=uuid.uuid5(SITE_NAMESPACE, content).hex, site_id=state.site_id,
        published_at=published_at, as_of=as_of, total_w=total, capacity_w=capacity,
        utilisation_pct=utilisation, over_capacity=capacity is not None and total > capacity,
        station_count=len(stations), offline_stations=sum(1 for s in stations if s.offline),
        stations=station_power,
    )


def utc_now() -> datetime:
    return datetime.now(UTC)


class SiteLogic(StatefulLogic[SiteInput, SiteLoad, SiteState]):
    """Per site: keep each station's latest load; publish the total when it changed,
    at most every ``interval`` (processing time), an unchanged heartbeat every
    ``heartbeat``, and whatever is pending at end of input."""

    def __init__(self, state: SiteState | None, *, interval: timedelta,
                 heartbeat: timedelta, clock: Callable[[], datetime] = utc_now) -> None:
        self.state = state if state is not None else SiteState()
        self.interval = interval
        self.heartbeat = heartbeat
        self.clock = clock

    def _publish(self, now: datetime) -> list[SiteLoad]:
        self.state.dirty = False
        self.state.last_published = now
        return [site_load(self.state, now)]

    def on_item(self, value: SiteInput) -> tuple[Iterable[SiteLoad], bool]:
        self.state.update(value)
        now = self.clock()
        last = self.state.last_published
        if self.state.dirty and (last is None or now >= last + self.interval):
            return self._publish(now), StatefulLogic.RETAIN
        return [], StatefulLogic.RETAIN

    def on_notify(self) -> tuple[Iterable[SiteLoad], bool]:
        if not self.state.stations:
            return [], StatefulLogic.RETAIN
        now = self.clock()
        last = self.state.last_published
        if last is None or self.state.dirty or now >= last + self.heartbeat:
            return self._publish(now), StatefulLogic.RETAIN
        return [], StatefulLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[SiteLoad], bool]:
        if self.state.dirty and self.state.stations:
            return self._publish(self.clock()), StatefulLogic.RETAIN
        return [], StatefulLogic.RETAIN

    def notify_at(self) -> datetime | None:
        last = self.state.last_published
        if not self.state.stations:
            return None
        if last is None:
            return self.clock()
        return last + (self.interval if self.state.dirty else self.heartbeat)

    def snapshot(self) -> SiteState:
        return copy.deepcopy(self.state)


def site_logic_builder(interval: timedelta, heartbeat: timedelta,
                       clock: Callable[[], datetime] = utc_now
                       ) -> Callable[[SiteState | None], SiteLogic]:
    def build(state: SiteState | None) -> SiteLogic:
        return SiteLogic(state, interval=interval, heartbeat=heartbeat, clock=clock)
    return build


def site_input(load: StationLoad, site: tuple[str, int | None] | None) -> SiteInput | None:
    """Route a station's load to its site (None: the station belongs to no site)."""
    if site is None:
        return None
    return SiteInput(site_id=site[0], capacity_w=site[1], station=load)

