"""The simulator's ground truth: which faults it injected where and when.

``chargeflow simulate --faults SPEC --ground-truth FILE`` writes JSON lines: a run
manifest (``{"manifest": true, "stations": [...], "start", "end", "seed", "faults": N,
"spec"}``; ``"manifest"`` may be left out) as the first line or in a sidecar file, then
one line per injected fault. ``end`` is null while the run has not stopped
(:meth:`GroundTruth.ended` sets it, e.g. to the last telemetry time seen). Times are RFC 3339
telemetry time (the stations' clocks, not the wall clock of a compressed run);
``connector_id`` 0 is a fault of the whole station; ``label`` is the
:class:`bus.alerts.AlertKind` an alert about it must carry; ``hard_failure`` is null for
a fault that never ends in a hard failure (e.g. a grid sag).

>>> truth = parse_ground_truth([
...     '{"stations": ["SIM-0001", "SIM-0002"], "start": "2026-07-01T00:00:00Z",'
...     ' "end": "2026-07-15T00:00:00Z", "seed": 7, "faults": 1}',
...     '{"station_id": "SIM-0002", "connector_id": 1, "label": "connector_overheating",'
...     ' "scenario": "overheating", "onset": "2026-07-10T06:00:00Z",'
...     ' "hard_failure": "2026-07-11T06:00:00Z", "progressive": true, "seed": 3}'])
>>> truth.manifest.station_days, truth.faults[0].label.value, truth.healthy_stations()
(28.0, 'connector_overheating', ['SIM-0001'])
>>> parse_ground_truth(['{"station_id": "SIM-0002"}'])
Traceback (most recent call last):
...
bench.faults.truth.GroundTruthError: ground truth line 1: no run manifest before the first fault
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bus.alerts import AlertKind
from bus.times import parse_rfc3339

DAY = timedelta(days=1)


class GroundTruthError(ValueError):
    """A ground-truth file that cannot be read; says which line and why."""


@dataclass(frozen=True, slots=True)
class Manifest:
    """The fleet a run simulated, in telemetry time."""

    stations: tuple[str, ...]
    start: datetime
    end: datetime | None  # None: the run had not stopped when the file was written
    seed: int
    faults: int  # how many fault lines the run wrote
    spec: str = ""  # the simulator's --faults

    @property
    def days(self) -> float:
        if self.end is None:
            raise GroundTruthError("ground truth: the run has no end yet (see GroundTruth.ended)")
        return (self.end - self.start) / DAY

    @property
    def station_days(self) -> float:
        return len(self.stations) * self.days


@dataclass(frozen=True, slots=True)
class InjectedFault:
    """One fault episode the simulator injected."""

    station_id: str
    connector_id: int  # 0: the whole station
    label: AlertKind
    scenario: str
    onset: datetime
    hard_failure: datetime | None
    progressive: bool
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class GroundTruth:
    manifest: Manifest
    faults: tuple[InjectedFault, ...]

    def ended(self, end: datetime) -> GroundTruth:
        """This ground truth with ``end`` as the end of the run where it has none."""
        if self.manifest.end is not None:
            return self
        return replace(self, manifest=replace(self.manifest, end=end))

    def faulty_stations(self) -> list[str]:
        return sorted({f.station_id for f in self.faults})

    def healthy_stations(self) -> list[str]:
        faulty = set(self.faulty_stations())
        return [s for s in self.manifest.stations if s not in faulty]


def _time(record: dict[str, Any], name: str) -> datetime:
    value = record[name]
    if not isinstance(value, str):
        raise ValueError(f"{name} must be an RFC 3339 string, got {value!r}")
    return parse_rfc3339(value)


def _manifest(record: dict[str, Any]) -> Manifest:
    stations = record["stations"]
    if not isinstance(stations, list) or not all(isinstance(s, str) for s in stations):
        raise ValueError("stations must be a list of station ids")
    start = _time(record, "start")
    end = None if record.get("end") is None else _time(record, "end")
    if end is not None and end <= start:
        raise ValueError("end must be after start")
    seed, faults, spec = int(record["seed"]), int(record["faults"]), str(record.get("spec", ""))
    return Manifest(tuple(stations), start, end, seed, faults, spec)


def _fault(record: dict[str, Any]) -> InjectedFault:
    hard = record.get("hard_failure")
    progressive = record["progressive"]
    if not isinstance(progressive, bool):
        raise ValueError(f"progressive must be true or false, got {progressive!r}")
    seed = record.get("seed")
    return InjectedFault(
        station_id=str(record["station_id"]),
        connector_id=int(record["connector_id"]),
        label=AlertKind(record["label"]),
        scenario=str(record["scenario"]),
        onset=_time(record, "onset"),
        hard_failure=None if hard is None else _time(record, "hard_failure"),
        progressive=progressive,
        seed=None if seed is None else int(seed),
    )


def parse_ground_truth(lines: Iterable[str], manifest: str | None = None) -> GroundTruth:
    """The ground truth from its JSON lines; ``manifest`` is the sidecar's text when the
    manifest is not the first line. Blank lines are skipped. GroundTruthError names the
    line of anything missing, mistyped or unknown (e.g. a label that is no AlertKind)."""
    run: Manifest | None = None
    faults: list[InjectedFault] = []
    numbered: list[tuple[str, str]] = [("manifest", manifest)] if manifest is not None else []
    numbered += [(f"line {n}", line) for n, line in enumerate(lines, start=1)]
    for where, line in numbered:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
            if record.get("manifest") is True or ("stations" in record and "label" not in record):
                if run is not None:
                    raise ValueError("a second run manifest")
                run = _manifest(record)
                continue
            if run is None:
                raise ValueError("no run manifest before the first fault")
            fault = _fault(record)
            if fault.station_id not in run.stations:
                raise ValueError(f"station {fault.station_id!r} is not in the run manifest")
            faults.append(fault)
        except KeyError as exc:
            raise GroundTruthError(f"ground truth {where}: missing field {exc}") from None
        except (ValueError, TypeError) as exc:
            raise GroundTruthError(f"ground truth {where}: {exc}") from None
    if run is None:
        raise GroundTruthError("ground truth: no run manifest")
    if run.faults != len(faults):
        raise GroundTruthError(
            f"ground truth: the manifest announces {run.faults} faults, the file has {len(faults)}"
        )
    return GroundTruth(run, tuple(faults))


def read_ground_truth(path: Path, manifest: Path | None = None) -> GroundTruth:
    """:func:`parse_ground_truth` of a file (and its sidecar manifest, if any)."""
    sidecar = manifest.read_text(encoding="utf-8") if manifest is not None else None
    with path.open(encoding="utf-8") as lines:
        return parse_ground_truth(lines, sidecar)
