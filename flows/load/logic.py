"""Live load per connector, station and site: pure step logic, no I/O.

Step 1, keyed by charge point (:func:`decode_event` or :func:`parse_envelope`, then
:func:`apply_batch` over the station's events of an input batch, or :func:`apply` per
event):

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
  older ones are counted in ``late_samples`` and ignored). A minute that changed is
  re-emitted with its latest figure, once per batch of events (also when it falls
  behind the horizon within the batch, and before a source takes over); the sink
  upserts on ``(charge_point_id, connector_id, bucket)``, so the table holds the latest
  figure whatever the batching, and replays are idempotent.
* **Station total** (:class:`StationLoad`): the sum over connectors >= 1; the
  connector 0 (main meter) value only when no connector >= 1 reported power.
  Emitted after every event that changes it (or its time or connection state), in
  batches too. An offline
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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from bytewax.operators import StatefulLogic

from bus.envelope import Envelope, Kind, decode_envelope, decode_facts
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
)

POWER = "Power.Active.Import"
NOT_DELIVERING = frozenset(
    {
        "Available",
        "Preparing",
        "Finishing",
        "Reserved",
        "Unavailable",
        "Faulted",
    }
)
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
_OPEN_SPAN = OPEN_MINUTES * _MINUTE
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


_POWER_FACTORS = {"w": 1, "": 1, "kw": 1000}
_POWER_UNITS = {"W": 1, "": 1, "kW": 1000}  # as stations usually spell them
_ENERGY_FACTORS = {"wh": Decimal(1), "kwh": Decimal(1000)}
_ENERGY_UNITS = {"Wh": Decimal(1), "kWh": Decimal(1000)}
_LOCATION_RANK = {"Outlet": 2, "Cable": 1}


def _watts(sample: MeterSample) -> float | None:
    factor = _POWER_UNITS.get(sample.unit)
    if factor is None:
        factor = _POWER_FACTORS.get(sample.unit.strip().lower())
        if factor is None:
            return None
    if sample.unit_multiplier == 0:  # times 10^0 would change nothing
        return float(sample.value * factor)
    return float(sample.value * factor * Decimal(10) ** sample.unit_multiplier)


def _wh(sample: MeterSample) -> Decimal | None:
    """:func:`bus.normalized.to_wh` (the same arithmetic, without its per-call setup)."""
    factor = _ENERGY_UNITS.get(sample.unit)
    if factor is None:
        factor = _ENERGY_FACTORS.get(sample.unit.strip().lower())
        if factor is None:
            return None
    if sample.unit_multiplier == 0:  # times 10^0 would change nothing
        return sample.value * factor
    return sample.value * factor * Decimal(10) ** sample.unit_multiplier


def _location_rank(sample: MeterSample) -> int:
    return _LOCATION_RANK.get(sample.location, 0)


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
    return [r for r in _readings(samples, source) if type(r) is PowerReading]


_Instant = tuple[int | None, str | None, datetime]  # (connector, transaction, time)
_PowerGroups = dict[_Instant, list[MeterSample]]


def _add_power(groups: _PowerGroups, source: str, out: list[Any]) -> None:
    for (evse, tx, at), group in groups.items():
        value: float | None = None
        if len(group) == 1 and group[0].phase is None:  # the usual case: one total
            value = _watts(group[0])
        else:
            totals = [(s, w) for s in group if s.phase is None and (w := _watts(s)) is not None]
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


def register_readings(samples: Iterable[MeterSample], source: str = OCPP) -> list[RegisterReading]:
    """The total import register (no phase) per (connector, transaction, instant), in Wh."""
    return [r for r in _readings(samples, source) if type(r) is RegisterReading]


def _readings(samples: Iterable[MeterSample], source: str = OCPP) -> list[Fact]:
    """``[*power_readings(samples), *register_readings(samples)]`` in one pass."""
    groups: _PowerGroups = {}
    found: dict[_Instant, tuple[int, Decimal]] = {}
    for s in samples:
        if s.location == "EV":
            continue
        measurand = s.measurand
        if measurand == POWER:
            key = (s.evse_id, s.transaction_id, s.timestamp)
            group = groups.get(key)
            if group is None:
                groups[key] = [s]
            else:
                group.append(s)
        elif measurand == ENERGY_REGISTER and s.phase is None:
            wh = _wh(s)
            if wh is None:
                continue
            key = (s.evse_id, s.transaction_id, s.timestamp)
            rank = _LOCATION_RANK.get(s.location, 0)
            seen = found.get(key)
            if seen is None or rank >= seen[0]:
                found[key] = (rank, wh)
    out: list[Fact] = []
    _add_power(groups, source, out)
    for (evse, tx, at), (_, wh) in found.items():
        out.append(RegisterReading(evse, tx, at, wh, source))
    return out


def _facts_of(envelope: Envelope) -> list[Normalized]:
    if envelope.normalized is not None:
        return list(envelope.normalized)
    if envelope.action is None:
        return []
    normalize = normalize_v201 if envelope.ocpp_version == "2.0.1" else normalize_v16
    return normalize(
        envelope.charge_point_id,
        envelope.action,
        envelope.payload,
        envelope.response,
        envelope.received_at,
    )


def _ocpp_facts(normalized: Iterable[Normalized]) -> list[Fact]:
    opened: list[Fact] = []
    idle: list[Fact] = []
    samples: list[MeterSample] = []
    for f in normalized:
        if isinstance(f, MeterSample):
            samples.append(f)
        elif isinstance(f, TransactionStart):
            if f.evse_id is not None:
                opened.append(TransactionOpened(f.transaction_id, f.evse_id))
        elif isinstance(f, TransactionEnd):
            idle.append(ConnectorIdle(f.evse_id, f.transaction_id, f.timestamp))
        elif isinstance(f, ConnectorStatus) and f.status in NOT_DELIVERING:
            idle.append(ConnectorIdle(f.evse_id, None, f.timestamp))
    if not samples:
        return [*opened, *idle]
    if not opened and not idle:
        return _readings(samples)
    return [*opened, *_readings(samples), *idle]


def _meter_facts(envelope: Envelope) -> list[Fact]:
    p = envelope.payload
    connector = p.get("connector_id")
    power = p.get("power_w")
    energy = to_decimal(p.get("energy_wh"))
    if (
        not isinstance(connector, int)
        or isinstance(connector, bool)
        or connector < 0
        or isinstance(power, bool)
        or not isinstance(power, int | float)
    ):
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
        facts = _ocpp_facts(_facts_of(envelope))
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


def decode_event(data: bytes | None) -> LoadEvent | None:
    """``parse_envelope(decode_envelope(data))``, faster for OCPP envelopes that carry
    normalised facts (their raw payload is only checked to be a JSON object, not
    decoded). Raises :class:`bus.envelope.EnvelopeError` and :class:`InvalidEvent`
    exactly as those two do: anything unusual takes their path.

    >>> from datetime import UTC, datetime
    >>> from bus.envelope import encode_envelope
    >>> from bus.normalized import normalize_v16
    >>> t = datetime(2026, 1, 5, 10, tzinfo=UTC)
    >>> payload = {"connectorId": 2, "meterValue": [{"timestamp": "2026-01-05T10:00:00Z",
    ...     "sampledValue": [{"value": "7.4", "unit": "kW", "measurand": POWER}]}]}
    >>> env = Envelope(message_id="m1", charge_point_id="CP1", received_at=t,
    ...     measured_at=t, kind=Kind.OCPP_CALL, ocpp_version="1.6", action="MeterValues",
    ...     payload=payload, normalized=normalize_v16("CP1", "MeterValues", payload, None, t))
    >>> event = decode_event(encode_envelope(env))
    >>> event == parse_envelope(env), [(f.connector_id, f.power_w) for f in event.facts]
    (True, [(2, 7400.0)])
    """
    env = decode_facts(data)
    if env is None or env.normalized is None:
        return parse_envelope(decode_envelope(data))  # raises the EnvelopeError, if any
    found = _ocpp_facts(env.normalized)
    if not found:
        return None
    return LoadEvent(env.charge_point_id, env.measured_at, tuple(found))


# --------------------------------------------------------------------------- state


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

    def live_power(self, now: datetime | None) -> float:
        if self.power_at is None or (now is not None and now - self.power_at > STALE_AFTER):
            return 0.0
        return self.power_w


@dataclass(slots=True)
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


def _accept(
    cp: str, cid: int, conn: ConnectorState, source: str, at: datetime, rows: list[MinuteRow]
) -> bool:
    """Whether a reading from ``source`` is used. A source that takes over starts the
    connector's minutes afresh; the rows the old source changed are emitted first."""
    if conn.source == source:
        if conn.source_at is None or at > conn.source_at:
            conn.source_at = at
        return True
    if conn.source is not None:
        silent = conn.source_at is not None and at - conn.source_at > SOURCE_STALE_AFTER
        if SOURCE_RANK[source] < SOURCE_RANK[conn.source] and not silent:
            return False
    _flush(cp, cid, conn, rows)
    conn.source, conn.source_at = source, at
    conn.buckets.clear()
    conn.emitted.clear()
    conn.newest_bucket = None
    conn.base_register = None
    return True


def _record(
    cp: str, state: StationState, fact: PowerReading | RegisterReading, rows: list[MinuteRow]
) -> int | None:
    """Apply one reading; returns the connector whose minutes changed, if any."""
    cid = fact.connector_id
    if cid is None:
        cid = (
            state.transactions.get(fact.transaction_id) if fact.transaction_id is not None else None
        )
        if cid is None:
            return None
    conn = state.connectors.get(cid)
    if conn is None:
        conn = state.connectors[cid] = ConnectorState()
    at = fact.at
    if (
        conn.source != fact.source or conn.source_at is None or at > conn.source_at
    ) and not _accept(cp, cid, conn, fact.source, at, rows):
        return None
    start = minute_of(at)
    newest = conn.newest_bucket
    if newest is not None and start < newest - _OPEN_SPAN:
        state.late_samples += 1
        return None
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
    return cid


def _evict(conn: ConnectorState) -> None:
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


def minute_rows(cp: str, connector_id: int, conn: ConnectorState) -> list[MinuteRow]:
    """The rows of the connector's open minutes, registers chained oldest first."""
    previous = conn.base_register
    rows: list[MinuteRow] = []
    source = conn.source or OCPP
    for start in sorted(conn.buckets):
        bucket = conn.buckets[start]
        rows.append(_row(cp, connector_id, start, bucket, source, previous))
        if bucket.last_register is not None and bucket.first_register is not None:
            previous = bucket.last_register[1]
    return rows


def _flush(cp: str, connector_id: int, conn: ConnectorState, out: list[MinuteRow]) -> None:
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


def station_load(cp: str, state: StationState) -> StationLoad:
    now = state.as_of
    assert now is not None, "station_load needs an event first"
    connectors = state.connectors
    items = sorted(connectors.items()) if len(connectors) > 1 else connectors.items()
    powers: list[tuple[int, float]] = []
    outlets = False
    total: float = 0  # summed like sum() over the outlets
    main = 0.0
    for cid, c in items:
        at = c.power_at
        if at is None:
            continue
        power = 0.0 if now - at > STALE_AFTER else c.power_w
        powers.append((cid, power))
        if cid > 0:
            total += power
            outlets = True
        else:
            main = power
    return StationLoad(cp, now, total if outlets else main, tuple(powers), not state.online)


def apply_batch(
    state: StationState | None, events: Sequence[LoadEvent]
) -> tuple[StationState, list[MinuteRow], list[StationLoad]]:
    """Fold a station's events (in order) into its state: the minute rows changed by
    them, each once with its latest figure (rows are upserted: the table ends up as
    with one row per change), and the station's load after every event that changed
    it (site totals are published from these as they come).

    ``apply_batch(s, [e1, e2])`` leaves the same state and table as ``apply`` on
    ``e1`` then ``e2``; the loads are the same list.
    """
    state = state if state is not None else StationState()
    rows: list[MinuteRow] = []
    loads: list[StationLoad] = []
    touched: set[int] = set()
    for event in events:
        cp = event.charge_point_id
        for fact in event.facts:
            if isinstance(fact, PowerReading | RegisterReading):
                cid = _record(cp, state, fact, rows)
                if cid is not None:
                    touched.add(cid)
            elif isinstance(fact, TransactionOpened):
                state.transactions.pop(fact.transaction_id, None)
                state.transactions[fact.transaction_id] = fact.connector_id
                while len(state.transactions) > MAX_TRANSACTIONS:
                    del state.transactions[next(iter(state.transactions))]
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
        load = station_load(cp, state)
        if load != state.last_load:
            state.last_load = load
            loads.append(load)
    if touched:
        cp = events[-1].charge_point_id
        for cid in sorted(touched):
            conn = state.connectors[cid]
            _flush(cp, cid, conn, rows)
            _evict(conn)
    return state, rows, loads


def apply(state: StationState | None, event: LoadEvent) -> tuple[StationState, list[Output]]:
    """Fold one event into the station's state; the changed minute rows and, if it
    changed, the station's load."""
    state, rows, loads = apply_batch(state, (event,))
    return state, [*rows, *loads]


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
        StationPower(
            charge_point_id=s.charge_point_id,
            power_w=s.power_w,
            as_of=s.as_of,
            offline=s.offline,
            connectors=[ConnectorPower(connector_id=c, power_w=w) for c, w in s.connectors],
        )
        for s in stations
    ]
    content = "|".join(
        [
            state.site_id,
            as_of.isoformat(),
            repr(total),
            repr(capacity),
            *(f"{s.charge_point_id}:{s.power_w!r}:{s.offline}" for s in stations),
        ]
    )
    return SiteLoad(
        message_id=uuid.uuid5(SITE_NAMESPACE, content).hex,
        site_id=state.site_id,
        published_at=published_at,
        as_of=as_of,
        total_w=total,
        capacity_w=capacity,
        utilisation_pct=utilisation,
        over_capacity=capacity is not None and total > capacity,
        station_count=len(stations),
        offline_stations=sum(1 for s in stations if s.offline),
        stations=station_power,
    )


def utc_now() -> datetime:
    return datetime.now(UTC)


class SiteLogic(StatefulLogic[SiteInput, SiteLoad, SiteState]):
    """Per site: keep each station's latest load; publish the total when it changed,
    at most every ``interval`` (processing time), an unchanged heartbeat every
    ``heartbeat``, and whatever is pending at end of input."""

    def __init__(
        self,
        state: SiteState | None,
        *,
        interval: timedelta,
        heartbeat: timedelta,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
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


def site_logic_builder(
    interval: timedelta, heartbeat: timedelta, clock: Callable[[], datetime] = utc_now
) -> Callable[[SiteState | None], SiteLogic]:
    def build(state: SiteState | None) -> SiteLogic:
        return SiteLogic(state, interval=interval, heartbeat=heartbeat, clock=clock)

    return build


def site_input(load: StationLoad, site: tuple[str, int | None] | None) -> SiteInput | None:
    """Route a station's load to its site (None: the station belongs to no site)."""
    if site is None:
        return None
    return SiteInput(site_id=site[0], capacity_w=site[1], station=load)
