"""A site's live load: its stations' latest totals (:class:`flows.load.station.StationLoad`)
summed against ``sites.capacity_w`` (utilisation %, over-capacity flag).

Values are event-time (``as_of`` = newest station time); publication is
processing-time (:class:`SiteLogic`): at most once per ``interval`` per site, when
something changed, plus an unchanged heartbeat every ``heartbeat`` and a final
publication at end of input.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bytewax.operators import StatefulLogic

from bus.load import ConnectorPower, SiteLoad, StationPower
from bus.times import utc_now
from flows.load.station import StationLoad

SITE_NAMESPACE = uuid.UUID("0c5e3a52-7b0f-4d8e-a3c4-51f1f3b1d9a2")


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
