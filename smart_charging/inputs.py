"""What the allocator is given: the site, its limit now, and the active sessions.

Currents are amperes per phase (the unit OCPP profiles use for AC, ``limit`` a multiple of
0.1). A site has three phases; a single-phase site is a site whose L2 and L3 limits are 0.

A site's limit can be given in kW at a nominal phase-to-neutral voltage:

>>> SiteLimit.from_kw(100, voltage_v=230).per_phase_a
(144.9, 144.9, 144.9)

A time-varying limit (a peak window, a limit set by the grid operator) is a schedule of
windows; :func:`limit_at` resolves it at a telemetry instant. A window can only lower the
connection's own limit (the fuse is physical), and overlapping windows give the lowest:

>>> from datetime import UTC, datetime
>>> peak = LimitWindow(datetime(2026, 7, 1, 17, tzinfo=UTC), datetime(2026, 7, 1, 20, tzinfo=UTC),
...     SiteLimit((80.0, 80.0, 80.0)))
>>> base = SiteLimit((125.0, 125.0, 125.0))
>>> limit_at(base, [peak], datetime(2026, 7, 1, 18, tzinfo=UTC)).per_phase_a
(80.0, 80.0, 80.0)
>>> limit_at(base, [peak], datetime(2026, 7, 1, 20, tzinfo=UTC)).per_phase_a  # end excluded
(125.0, 125.0, 125.0)

A single-phase car charges on one of the station's phases; the station's wiring
(OCPP's ``PhaseRotation``: which grid phases R, S, T its L1, L2, L3 are on) says which
site phase that is:

>>> site_phase(Phase.L1, "TRS"), site_phase(Phase.L2, "RST"), site_phase(Phase.L1, "Unknown")
(<Phase.L3: 3>, <Phase.L2: 2>, <Phase.L1: 1>)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum

DEFAULT_MIN_A = 6.0  # IEC 61851-1: 10 % PWM duty, the lowest current an AC EV is offered
NOMINAL_VOLTAGE_V = 230.0
PhaseCurrents = tuple[float, float, float]
NO_LOAD: PhaseCurrents = (0.0, 0.0, 0.0)


class Phase(IntEnum):
    L1 = 1
    L2 = 2
    L3 = 3

    @property
    def index(self) -> int:
        return self.value - 1


# OCPP 2.0.1 PhaseRotation / 1.6 ConnectorPhaseRotation: the letters name the grid phases
# (R = L1, S = L2, T = L3) that the station's L1, L2 and L3 are wired to.
_GRID_PHASE = {"R": Phase.L1, "S": Phase.L2, "T": Phase.L3}


def site_phase(station_phase: Phase, rotation: str = "RST") -> Phase:
    """The site phase a station phase is wired to; an unknown rotation is taken as RST."""
    letters = rotation.strip().upper()
    if len(letters) != 3 or set(letters) != set(_GRID_PHASE):
        return station_phase  # "NotApplicable", "Unknown": the reference wiring
    return _GRID_PHASE[letters[station_phase.index]]


@dataclass(frozen=True, slots=True)
class SiteLimit:
    """The most the site may draw per phase (A), L1, L2, L3."""

    per_phase_a: PhaseCurrents

    @classmethod
    def from_kw(cls, kw: float, voltage_v: float = NOMINAL_VOLTAGE_V) -> SiteLimit:
        """A three-phase limit in kW, spread evenly, rounded down to 0.1 A (never above)."""
        amps = math.floor(kw * 1000 / (3 * voltage_v) * 10) / 10
        return cls((amps, amps, amps))

    def lowest(self, other: SiteLimit) -> SiteLimit:
        a, b = self.per_phase_a, other.per_phase_a
        return SiteLimit((min(a[0], b[0]), min(a[1], b[1]), min(a[2], b[2])))


@dataclass(frozen=True, slots=True)
class LimitWindow:
    """A limit in force from ``start`` (included) to ``end`` (excluded)."""

    start: datetime
    end: datetime
    limit: SiteLimit


def limit_at(base: SiteLimit, windows: Iterable[LimitWindow], at: datetime) -> SiteLimit:
    """The site's limit at telemetry instant ``at``: the lowest of base and the windows on."""
    limit = base
    for window in windows:
        if window.start <= at < window.end:
            limit = limit.lowest(window.limit)
    return limit


@dataclass(frozen=True, slots=True)
class Site:
    """A site as the allocator sees it: its limit now and its supply voltage (for kW)."""

    site_id: str
    limit: SiteLimit
    voltage_v: float = NOMINAL_VOLTAGE_V


@dataclass(frozen=True, slots=True)
class Turn:
    """Who waits: when the session last got power and when it was last paused (or None).

    The flow keeps one per session from one round to the next
    (:func:`smart_charging.allocator.next_turns`); a session never allocated has neither.
    """

    powered_since: datetime | None = None
    paused_since: datetime | None = None


@dataclass(frozen=True, slots=True)
class SessionDemand:
    """One active session on a connector, with what limits it and what ranks it.

    ``phases`` is 1 or 3; a single-phase session draws on ``phase`` of the station, which
    ``rotation`` maps to a site phase. ``max_a`` is the lowest of the connector's, the
    cable's and the EV's maximum. A session that is not ``controllable`` (rejects profiles),
    not ``online`` or not ``compliant`` (ignores its limit) is budgeted as a fixed load at
    the higher of ``max_a`` and ``measured_a`` (its highest phase current now).
    Ranking: ``tier`` (higher first), laxity from ``departure`` and ``energy_needed_wh``
    (least first), ``soc_percent`` (lowest first); ``turn`` rotates pauses among equals.
    """

    station_id: str
    connector_id: int
    started_at: datetime
    phases: int = 3
    phase: Phase = Phase.L1
    rotation: str = "RST"
    min_a: float = DEFAULT_MIN_A
    max_a: float = 32.0
    measured_a: float | None = None
    controllable: bool = True
    online: bool = True
    compliant: bool = True
    tier: int = 0
    departure: datetime | None = None
    energy_needed_wh: float | None = None
    soc_percent: float | None = None
    turn: Turn = Turn()

    @property
    def key(self) -> tuple[str, int]:
        return (self.station_id, self.connector_id)

    @property
    def site_phases(self) -> tuple[Phase, ...]:
        if self.phases == 1:
            return (site_phase(self.phase, self.rotation),)
        return (Phase.L1, Phase.L2, Phase.L3)

    @property
    def fixed(self) -> bool:
        return not (self.controllable and self.online and self.compliant)
