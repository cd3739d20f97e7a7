"""The simulator's labelled fault library: named, seeded, parameterised scenarios
(:mod:`.scenarios`), the ``--faults`` spec that picks them, and the plan that turns a spec
into :class:`~ingest.simulator.ground_truth.InjectedFault` records (the ground truth).

A spec is ``auto``, ``auto:SHARE``, ``auto:SHARE@FROM..TO`` (a seeded ``SHARE`` of the
stations, default 0.2, each get a random scenario with its onset uniform between
``FROM`` and ``TO`` after the start, default 2d..12d), or a comma-separated list of
``SCENARIO:STATION[/CONNECTOR]@ONSET[+LEAD]`` (onset after the start; ``LEAD`` to the
hard failure, else drawn from the scenario's range). Durations: ``90s``, ``30m``,
``2h``, ``1.5d``.

>>> from datetime import UTC, datetime
>>> start = datetime(2026, 7, 1, tzinfo=UTC)
>>> [f] = plan_faults("overheating:SIM-0002@2h+5h", ["SIM-0001", "SIM-0002"], start, seed=1)
>>> f.label.value, f.connector_id, f.onset.hour, f.hard_failure.hour, f.progressive
('connector_overheating', 1, 2, 7, True)
>>> plan_faults("comm:SIM-0001@1h", ["SIM-0001"], start, 1)[0].connector_id
0
>>> plan_faults("auto:1.0@1h..2h", ["A", "B"], start, 3) == plan_faults(
...     "auto:1.0@1h..2h", ["A", "B"], start, 3)
True
>>> plan_faults("nosuch:SIM-0001@1h", ["SIM-0001"], start, 1)
Traceback (most recent call last):
...
ValueError: unknown fault scenario 'nosuch'; known: cable, comm, contactor, ...
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from ingest.simulator.behaviours.faults.base import Scenario
from ingest.simulator.behaviours.faults.scenarios import SCENARIO_CLASSES
from ingest.simulator.ground_truth import InjectedFault

SCENARIOS: dict[str, type[Scenario]] = {cls.name: cls for cls in SCENARIO_CLASSES}

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_EXPLICIT = re.compile(
    r"^(?P<name>[a-z_0-9]+):(?P<station>[^/@]+)(?:/(?P<connector>\d+))?"
    r"@(?P<onset>[^+]+)(?:\+(?P<lead>.+))?$"
)
_AUTO = re.compile(r"^auto(?::(?P<share>[0-9.]+))?(?:@(?P<lo>.+?)\.\.(?P<hi>.+))?$")


def parse_duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``2h``, ``1.5d``; ValueError otherwise."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"not a duration (90s, 30m, 2h, 1.5d): {text!r}")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


@dataclass(frozen=True, slots=True)
class _Request:
    scenario: type[Scenario]
    station: str
    connector: int | None
    onset: timedelta
    lead: timedelta | None


def _scenario(name: str) -> type[Scenario]:
    if name not in SCENARIOS:
        raise ValueError(f"unknown fault scenario {name!r}; known: {', '.join(sorted(SCENARIOS))}")
    return SCENARIOS[name]


def _explicit(item: str, stations: Sequence[str]) -> _Request:
    match = _EXPLICIT.match(item.strip())
    if match is None:
        raise ValueError(f"not a fault (SCENARIO:STATION[/CONNECTOR]@ONSET[+LEAD]): {item!r}")
    scenario = _scenario(match["name"])
    if match["station"] not in stations:
        raise ValueError(f"fault {item!r}: no station {match['station']!r} in the fleet")
    lead = parse_duration(match["lead"]) if match["lead"] else None
    if lead is not None and scenario.lead_h is None:
        raise ValueError(f"fault {item!r}: {scenario.name} has no hard failure to lead to")
    connector = int(match["connector"]) if match["connector"] else None
    return _Request(scenario, match["station"], connector, parse_duration(match["onset"]), lead)


def _auto(match: re.Match[str], stations: Sequence[str], seed: int) -> list[_Request]:
    share = float(match["share"] or 0.2)
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"auto share must be within 0..1, got {share}")
    lo = parse_duration(match["lo"]) if match["lo"] else timedelta(days=2)
    hi = parse_duration(match["hi"]) if match["hi"] else timedelta(days=12)
    if hi < lo:
        raise ValueError(f"auto onsets: {hi} is before {lo}")
    rng = random.Random(f"{seed}/auto-faults")
    names = sorted(SCENARIOS)
    chosen: list[_Request] = []
    for station in stations:
        pick, scenario = rng.random(), SCENARIOS[rng.choice(names)]
        onset = lo + (hi - lo) * rng.random()
        if pick < share:
            chosen.append(_Request(scenario, station, None, onset, None))
    return chosen


def plan_faults(
    spec: str, stations: Sequence[str], start: datetime, seed: int, connectors: int = 1
) -> list[InjectedFault]:
    """The faults ``spec`` injects into ``stations`` whose clocks start at ``start``;
    ValueError for a bad spec. Times are whole seconds (station time)."""
    spec = spec.strip()
    if not spec:
        return []
    auto = _AUTO.match(spec)
    requests = (
        _auto(auto, stations, seed)
        if auto
        else [_explicit(item, stations) for item in spec.split(",") if item.strip()]
    )
    return [_fault(r, start, seed, connectors) for r in requests]


def _fault(request: _Request, start: datetime, seed: int, connectors: int) -> InjectedFault:
    scenario = request.scenario
    onset = start + timedelta(seconds=round(request.onset.total_seconds()))
    rng = random.Random(f"{seed}/{request.station}/{scenario.name}/{onset.isoformat()}")
    fault_seed = rng.randrange(2**31)
    if request.connector is not None:
        connector = request.connector
    else:
        connector = 0 if scenario.station_wide else rng.randint(1, connectors)
    hard: datetime | None = None
    if scenario.lead_h is not None:
        lead = request.lead or timedelta(hours=rng.uniform(*scenario.lead_h))
        hard = onset + timedelta(seconds=round(lead.total_seconds()))
    return InjectedFault(
        station_id=request.station,
        connector_id=connector,
        label=scenario.label,
        scenario=scenario.name,
        onset=onset,
        hard_failure=hard,
        progressive=hard is not None and hard > onset,
        seed=fault_seed,
    )


def scenario_for(fault: InjectedFault) -> Scenario:
    """The behaviour that plays ``fault`` on its station."""
    return _scenario(fault.scenario)(fault)
