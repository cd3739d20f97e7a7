"""Usage report maths: utilisation, idle time, energy, revenue, sessions, downtime,
faults and peak hours per connector and for the network, over a period ``[start, end)``.

Pure: the inputs are plain records (``store.reports`` fetches them), the answer is a
:class:`UsageReport`; no clock, no I/O. Every time figure comes from telemetry times
(status changes, session starts and stops, register readings), so a replay at any speed
gives the same report. docs/reports.md defines every figure.

Time is counted in whole microseconds (``timedelta``) and reported in whole seconds
(floored per connector; network totals are the sums of the connectors' figures, so a
CSV's rows add up to its total row). Ratios are :class:`~decimal.Decimal` to 4 places.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from zoneinfo import ZoneInfo

from billing.money import from_minor

# The connector statuses the status history holds (store 0006/0008) and what each counts as.
CHARGING = frozenset({"Charging"})
# Plugged in, not charging: before the start, suspended by car or station, after the stop.
IDLE = frozenset({"Preparing", "SuspendedEV", "SuspendedEVSE", "Finishing"})
OCCUPIED = CHARGING | IDLE
DOWN = frozenset({"Faulted", "Unavailable", "Offline"})
AVAILABLE = frozenset({"Available", "Reserved"})
FAULTED = "Faulted"
OFFLINE = "Offline"
NO_ERROR = "NoError"

RATIO_PLACES = Decimal("0.0001")
HOUR = timedelta(hours=1)
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

ConnectorKey = tuple[str, int]


class ReportInputError(ValueError):
    """The period or the inputs cannot make a report (e.g. ``start >= end``)."""


@dataclass(frozen=True, slots=True)
class StatusChange:
    """One row of ``connector_status_history``; ``reason`` is set on rows derived from a
    connection event (Offline, and the status restored when the station is back)."""

    charge_point_id: str
    connector_id: int
    at: datetime
    status: str
    error_code: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class RegisterReading:
    at: datetime
    wh: Decimal


@dataclass(frozen=True, slots=True)
class SessionFacts:
    """A session overlapping the period. ``readings``: the energy register over the
    session, oldest first: at least the start (``meter_start_wh`` at ``started_at``), the
    stop if there is one, and any sampled registers (the store fetches those around the
    period's boundaries). ``energy_wh``: the session's figure (the register's rise, or
    the corrected figure billing uses), None while unknown."""

    session_id: str
    charge_point_id: str
    connector_id: int
    started_at: datetime
    stopped_at: datetime | None
    energy_wh: int | None
    readings: tuple[RegisterReading, ...]


@dataclass(frozen=True, slots=True)
class RevenueItem:
    """An issued CDR (credits negative), attributed to its connector and start time."""

    charge_point_id: str
    connector_id: int
    start: datetime
    currency: str
    total_excl_minor: int
    total_incl_minor: int


@dataclass(frozen=True, slots=True)
class AlertFacts:
    charge_point_id: str
    connector_id: int  # 0: the station as a whole
    first_seen: datetime
    kind: str


@dataclass(frozen=True, slots=True)
class UsageInputs:
    start: datetime
    end: datetime  # exclusive: the period asked for
    observed_until: datetime  # min(end, now): time after it is not yet known
    time_zone: str
    site_id: str | None
    # Every connector in scope (connector >= 1) with its site; more are added from the data.
    connectors: Sequence[tuple[str, int, str | None]]
    # Per connector, the last change before ``start`` (its status then) and every
    # change in [start, observed_until), oldest first as store.status orders them.
    status_changes: Sequence[StatusChange]
    sessions: Sequence[SessionFacts]
    revenue: Sequence[RevenueItem]
    alerts: Sequence[AlertFacts]


@dataclass(frozen=True, slots=True)
class Money:
    currency: str
    total_excl_minor: int
    total_incl_minor: int

    @property
    def total_excl(self) -> Decimal:
        return from_minor(self.total_excl_minor, self.currency)

    @property
    def total_incl(self) -> Decimal:
        return from_minor(self.total_incl_minor, self.currency)


@dataclass(frozen=True, slots=True)
class UsageFigures:
    """The figures of one connector, or of the network (sums over the connectors)."""

    connectors: int
    period_s: int  # observed seconds per connector
    charging_s: int
    idle_s: int
    occupied_s: int
    available_s: int
    downtime_s: int
    unknown_s: int
    utilisation: Decimal  # charging_s / (period_s x connectors)
    occupancy: Decimal  # occupied_s / (period_s x connectors)
    energy_wh: int
    sessions: int
    average_duration_s: int | None
    revenue: tuple[Money, ...]
    faults: int
    error_codes: dict[str, int]
    alerts: int


@dataclass(frozen=True, slots=True)
class ConnectorUsage:
    charge_point_id: str
    connector_id: int
    site_id: str | None
    figures: UsageFigures


@dataclass(frozen=True, slots=True)
class PeakCell:
    weekday: int  # 0 = Monday, local to the report's time zone
    hour: int  # 0-23, local
    sessions: int  # sessions started in this hour
    energy_wh: int  # energy in the period of the sessions started in this hour
    charging_s: int  # charging time (status) falling in this hour, all connectors


@dataclass(frozen=True, slots=True)
class UsageReport:
    start: datetime
    end: datetime
    observed_until: datetime
    time_zone: str
    site_id: str | None
    connectors: tuple[ConnectorUsage, ...]
    totals: UsageFigures
    peak_hours: tuple[PeakCell, ...]  # 7 x 24, Monday 00:00 first


# --------------------------------------------------------------------------- pieces


def ratio(part: int, whole: int) -> Decimal:
    """``part / whole`` to 4 places (0 for an empty whole).

    >>> ratio(1, 3), ratio(0, 0)
    (Decimal('0.3333'), Decimal('0'))
    """
    if whole <= 0:
        return Decimal(0)
    return (Decimal(part) / Decimal(whole)).quantize(RATIO_PLACES, ROUND_HALF_EVEN)


def whole_seconds(span: timedelta) -> int:
    return span // timedelta(seconds=1)


def status_spans(
    changes: Iterable[StatusChange], start: datetime, end: datetime
) -> list[tuple[datetime, datetime, str | None]]:
    """One connector's status over ``[start, end)`` as (from, to, status) spans, in order;
    ``None`` before its first known status. ``changes`` are oldest first; a change before
    ``start`` gives the status at ``start``; changes at or after ``end`` are ignored."""
    spans: list[tuple[datetime, datetime, str | None]] = []
    current: str | None = None
    since = start
    for change in changes:
        if change.at >= end:
            break
        if change.at <= start:
            current = change.status
            continue
        if change.status != current:
            spans.append((since, change.at, current))
            since, current = change.at, change.status
    if since < end:
        spans.append((since, end, current))
    return spans


def fault_entries(changes: Iterable[StatusChange], start: datetime, end: datetime) -> Counter[str]:
    """Faults that began in ``[start, end)``: a station-reported ``Faulted`` after a
    reported status that was not (Offline rows are skipped; a status restored when the
    station is back is what it reported before, never a new fault), by error code
    (``NoError`` or none: ``unspecified``)."""
    entries: Counter[str] = Counter()
    last_reported: str | None = None
    for change in changes:
        if change.at >= end:
            break
        if change.status == OFFLINE:
            continue
        restored = change.reason is not None
        if (
            change.status == FAULTED
            and not restored
            and last_reported != FAULTED
            and change.at >= start
        ):
            code = change.error_code
            entries[code if code and code != NO_ERROR else "unspecified"] += 1
        last_reported = change.status
    return entries


def register_at(readings: Sequence[RegisterReading], at: datetime) -> Decimal | None:
    """The register at ``at``: a reading's value, or linear between the two readings
    around it; None outside the readings (no extrapolation)."""
    times = [r.at for r in readings]
    i = bisect.bisect_left(times, at)
    if i < len(readings) and readings[i].at == at:
        return readings[i].wh
    if i == 0 or i == len(readings):
        return None
    before, after = readings[i - 1], readings[i]
    share = Decimal((at - before.at) // timedelta(microseconds=1)) / Decimal(
        (after.at - before.at) // timedelta(microseconds=1)
    )
    return before.wh + (after.wh - before.wh) * share


def session_energy_in(session: SessionFacts, start: datetime, end: datetime) -> Decimal:
    """The session's energy in ``[start, end)`` in Wh: its own figure when it lies wholly
    inside, else the register's rise between the clipped ends (interpolated between
    readings; nothing past the last reading)."""
    inside = session.started_at >= start and (
        session.stopped_at is not None and session.stopped_at <= end
    )
    if inside and session.energy_wh is not None:
        return Decimal(session.energy_wh)
    readings = session.readings
    if not readings:
        return Decimal(0)
    a = max(start, session.started_at, readings[0].at)
    b = min(end, session.stopped_at or end, readings[-1].at)
    if b <= a:
        return Decimal(0)
    low, high = register_at(readings, a), register_at(readings, b)
    if low is None or high is None:
        return Decimal(0)
    return max(high - low, Decimal(0))


def round_wh(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), ROUND_HALF_EVEN))


def local_hour_slices(
    start: datetime, end: datetime, zone: ZoneInfo
) -> Iterable[tuple[int, int, timedelta]]:
    """(weekday, hour, length) of ``[start, end)`` cut at the local hour boundaries
    (``zone``'s, so a DST day has 23 or 25 of them)."""
    at = start
    while at < end:
        local = at.astimezone(zone)
        into = timedelta(minutes=local.minute, seconds=local.second, microseconds=local.microsecond)
        # The local hour's end in absolute time: offsets change on local hour boundaries.
        boundary = min(end, at - into + HOUR)
        yield local.weekday(), local.hour, boundary - at
        at = boundary


# --------------------------------------------------------------------------- the report


@dataclass(slots=True)
class _Tally:
    durations: dict[str, timedelta] = field(default_factory=lambda: defaultdict(timedelta))
    energy: Decimal = Decimal(0)
    sessions: int = 0
    closed: int = 0
    closed_time: timedelta = timedelta(0)
    money: dict[str, list[int]] = field(default_factory=dict)
    faults: Counter[str] = field(default_factory=Counter)
    alerts: int = 0


STATUS_CLASS = {
    **dict.fromkeys(CHARGING, "charging"),
    **dict.fromkeys(IDLE, "idle"),
    **dict.fromkeys(DOWN, "down"),
    **dict.fromkeys(AVAILABLE, "available"),
}


def _status_class(status: str | None) -> str:
    return "unknown" if status is None else STATUS_CLASS.get(status, "unknown")


def _figures(tallies: Sequence[_Tally], period: timedelta, connectors: int) -> UsageFigures:
    seconds = {
        name: sum(whole_seconds(t.durations[name]) for t in tallies)
        for name in ("charging", "idle", "down", "available", "unknown")
    }
    period_s = whole_seconds(period)
    whole = period_s * connectors
    closed = sum(t.closed for t in tallies)
    closed_time = sum((t.closed_time for t in tallies), timedelta(0))
    money: dict[str, list[int]] = {}
    for t in tallies:
        for currency, (excl, incl) in t.money.items():
            total = money.setdefault(currency, [0, 0])
            total[0] += excl
            total[1] += incl
    faults: Counter[str] = Counter()
    for t in tallies:
        faults.update(t.faults)
    occupied = seconds["charging"] + seconds["idle"]
    return UsageFigures(
        connectors=connectors,
        period_s=period_s,
        charging_s=seconds["charging"],
        idle_s=seconds["idle"],
        occupied_s=occupied,
        available_s=seconds["available"],
        downtime_s=seconds["down"],
        unknown_s=seconds["unknown"],
        utilisation=ratio(seconds["charging"], whole),
        occupancy=ratio(occupied, whole),
        energy_wh=sum(round_wh(t.energy) for t in tallies),
        sessions=sum(t.sessions for t in tallies),
        average_duration_s=None if closed == 0 else whole_seconds(closed_time / closed),
        revenue=tuple(Money(c, e, i) for c, (e, i) in sorted(money.items())),
        faults=sum(faults.values()),
        error_codes=dict(sorted(faults.items())),
        alerts=sum(t.alerts for t in tallies),
    )


def _scope(
    inputs: UsageInputs,
) -> tuple[dict[ConnectorKey, str | None], dict[ConnectorKey, list[StatusChange]]]:
    """Every connector in the report (the registry's, and any the data names) with its
    site, and each one's status changes."""
    sites: dict[ConnectorKey, str | None] = {}
    for cp, connector, site in inputs.connectors:
        if connector > 0:
            sites[(cp, connector)] = site
    changes: dict[ConnectorKey, list[StatusChange]] = defaultdict(list)
    for change in inputs.status_changes:
        if change.connector_id > 0:
            changes[(change.charge_point_id, change.connector_id)].append(change)
    for key in (
        *changes,
        *((s.charge_point_id, s.connector_id) for s in inputs.sessions),
        *((r.charge_point_id, r.connector_id) for r in inputs.revenue),
        *((a.charge_point_id, a.connector_id) for a in inputs.alerts if a.connector_id > 0),
    ):
        sites.setdefault(key, inputs.site_id)
    return sites, changes


def _count_status(
    tally: _Tally,
    rows: list[StatusChange],
    period: tuple[datetime, datetime],
    zone: ZoneInfo,
    cells: dict[tuple[int, int], timedelta],
) -> None:
    start, until = period
    for a, b, status in status_spans(rows, start, until):
        kind = _status_class(status)
        tally.durations[kind] += b - a
        if kind == "charging":
            for weekday, hour, length in local_hour_slices(a, b, zone):
                cells[(weekday, hour)] += length
    tally.faults.update(fault_entries(rows, start, until))


def _count_session(
    tally: _Tally,
    session: SessionFacts,
    inputs: UsageInputs,
    until: datetime,
    zone: ZoneInfo,
    cells: dict[tuple[int, int], list[Decimal]],
) -> None:
    energy = session_energy_in(session, inputs.start, until)
    tally.energy += energy
    if not inputs.start <= session.started_at < inputs.end:
        return
    tally.sessions += 1
    if session.stopped_at is not None:
        tally.closed += 1
        tally.closed_time += session.stopped_at - session.started_at
    local = session.started_at.astimezone(zone)
    cells[(local.weekday(), local.hour)].append(energy)


def _count_money_and_alerts(tallies: dict[ConnectorKey, _Tally], inputs: UsageInputs) -> int:
    """Revenue and alerts into the connectors' tallies; the station-level alerts' count."""
    start, end = inputs.start, inputs.end
    for item in inputs.revenue:
        if start <= item.start < end:
            totals = tallies[(item.charge_point_id, item.connector_id)].money
            money = totals.setdefault(item.currency, [0, 0])
            money[0] += item.total_excl_minor
            money[1] += item.total_incl_minor
    station_alerts = 0
    for alert in inputs.alerts:
        if start <= alert.first_seen < end:
            if alert.connector_id > 0:
                tallies[(alert.charge_point_id, alert.connector_id)].alerts += 1
            else:
                station_alerts += 1
    return station_alerts


def usage_report(inputs: UsageInputs) -> UsageReport:
    """The usage report of ``inputs`` (docs/reports.md defines each figure)."""
    start, end = inputs.start, inputs.end
    if start >= end:
        raise ReportInputError("the period's start must be earlier than its end")
    until = max(start, min(inputs.observed_until, end))
    zone = ZoneInfo(inputs.time_zone)
    sites, changes = _scope(inputs)
    tallies: dict[ConnectorKey, _Tally] = {key: _Tally() for key in sites}

    charging_cells: dict[tuple[int, int], timedelta] = defaultdict(timedelta)
    for key, tally in tallies.items():
        _count_status(tally, changes.get(key, []), (start, until), zone, charging_cells)
    started_cells: dict[tuple[int, int], list[Decimal]] = defaultdict(list)
    for session in inputs.sessions:
        key = (session.charge_point_id, session.connector_id)
        _count_session(tallies[key], session, inputs, until, zone, started_cells)
    station_alerts = _count_money_and_alerts(tallies, inputs)

    period = until - start
    ordered = sorted(tallies)
    connectors = tuple(
        ConnectorUsage(cp, c, sites[(cp, c)], _figures([tallies[(cp, c)]], period, 1))
        for cp, c in ordered
    )
    totals = _figures([tallies[k] for k in ordered], period, len(ordered))
    totals = _with_station_alerts(totals, station_alerts)
    peak = tuple(
        PeakCell(
            weekday=d,
            hour=h,
            sessions=len(started_cells.get((d, h), ())),
            energy_wh=sum(round_wh(e) for e in started_cells.get((d, h), ())),
            charging_s=whole_seconds(charging_cells.get((d, h), timedelta(0))),
        )
        for d in range(7)
        for h in range(24)
    )
    return UsageReport(
        start=start,
        end=end,
        observed_until=until,
        time_zone=inputs.time_zone,
        site_id=inputs.site_id,
        connectors=connectors,
        totals=totals,
        peak_hours=peak,
    )


def _with_station_alerts(totals: UsageFigures, station_alerts: int) -> UsageFigures:
    """Alerts about a whole station (connector 0) count in the network total only."""
    if not station_alerts:
        return totals
    return replace(totals, alerts=totals.alerts + station_alerts)
