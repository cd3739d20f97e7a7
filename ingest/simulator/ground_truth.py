"""The ground truth of a simulated run with faults: which fault was injected where and
when. ``chargeflow simulate --faults SPEC --ground-truth FILE`` writes it; the
evaluation (``bench/faults``) reads it with :func:`read_ground_truth` (or
:func:`parse_ground_truth` of its lines) and scores alerts against it.

The file is JSON Lines. The first line is the run's manifest, marked ``"manifest":
true``; every further line is one injected fault::

    {"manifest": true, "stations": ["SIM-0001", ...], "start": "2026-07-01T00:00:00.000Z",
     "end": null, "seed": 7, "faults": 2, "spec": "overheating:SIM-0003@2h"}
    {"station_id": "SIM-0003", "connector_id": 1, "label": "connector_overheating",
     "scenario": "overheating", "onset": "2026-07-01T02:00:00.000Z",
     "hard_failure": "2026-07-01T08:12:00.000Z", "progressive": true, "seed": 1234}

- ``connector_id``: the connector (2.0.1: the EVSE id), 0 for the whole station;
- ``label``: a :class:`bus.alerts.AlertKind` value, the kind an alert should have;
- ``onset``: when the fault starts to show in telemetry (station time, RFC 3339);
- ``hard_failure``: when the station reports the hard fault (Faulted, a NotifyEvent, or
  going offline for good), station time; null when the scenario never fails hard;
- ``progressive``: whether there is a lead-up between onset and hard failure (the
  faults a predictive model is for; the others are scored on detection delay);
- ``seed``: the fault's own seed (its randomness repeats under it);
- ``start``/``end`` in the manifest: the station clocks' start and, once the run
  stopped, the last station time (null while it runs).

All times are telemetry (station) time: under ``--time-scale`` the station clocks run
fast, and these times are on those clocks, not on the wall.

>>> from datetime import UTC, datetime
>>> t = datetime(2026, 7, 1, 2, tzinfo=UTC)
>>> fault = InjectedFault("SIM-0003", 1, AlertKind.CONNECTOR_OVERHEATING, "overheating", t,
...     None, True, 9)
>>> InjectedFault.from_json(fault.to_json()) == fault
True

The reader is strict and says which line is wrong and why; the manifest may also come
from a sidecar file (``manifest=``), and ``"manifest": true`` may be left out of it:

>>> truth = parse_ground_truth([
...     '{"stations": ["SIM-0001", "SIM-0002"], "start": "2026-07-01T00:00:00Z",'
...     ' "end": "2026-07-15T00:00:00Z", "seed": 7, "faults": 1}',
...     '{"station_id": "SIM-0002", "connector_id": 1, "label": "connector_overheating",'
...     ' "scenario": "overheating", "onset": "2026-07-10T06:00:00Z",'
...     ' "hard_failure": "2026-07-11T06:00:00Z", "progressive": true, "seed": 3}'])
>>> truth.manifest.station_days, truth.faults[0].label.value, truth.healthy_stations()
(28.0, 'connector_overheating', ['SIM-0001'])
>>> try:
...     parse_ground_truth(['{"station_id": "SIM-0002"}'])
... except GroundTruthError as error:
...     print(error)
ground truth line 1: no run manifest before the first fault
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bus.alerts import AlertKind
from bus.times import format_rfc3339, parse_rfc3339

DAY = timedelta(days=1)


class GroundTruthError(ValueError):
    """A ground-truth file that cannot be read; says which line and why."""


def _time(record: dict[str, Any], name: str) -> datetime:
    value = record[name]
    if not isinstance(value, str):
        raise ValueError(f"{name} must be an RFC 3339 string, got {value!r}")
    return parse_rfc3339(value)


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
    seed: int | None = None  # the simulator always writes one; hand-written truth may not

    def to_json(self) -> dict[str, Any]:
        return {
            "station_id": self.station_id,
            "connector_id": self.connector_id,
            "label": self.label.value,
            "scenario": self.scenario,
            "onset": format_rfc3339(self.onset),
            "hard_failure": format_rfc3339(self.hard_failure) if self.hard_failure else None,
            "progressive": self.progressive,
            "seed": self.seed,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InjectedFault:
        hard = data.get("hard_failure")
        progressive = data["progressive"]
        if not isinstance(progressive, bool):
            raise ValueError(f"progressive must be true or false, got {progressive!r}")
        seed = data.get("seed")
        return cls(
            station_id=str(data["station_id"]),
            connector_id=int(data["connector_id"]),
            label=AlertKind(data["label"]),
            scenario=str(data["scenario"]),
            onset=_time(data, "onset"),
            hard_failure=None if hard is None else _time(data, "hard_failure"),
            progressive=progressive,
            seed=None if seed is None else int(seed),
        )


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

    def to_json(self) -> dict[str, Any]:
        return {
            "manifest": True,
            "stations": list(self.stations),
            "start": format_rfc3339(self.start),
            "end": format_rfc3339(self.end) if self.end else None,
            "seed": self.seed,
            "faults": self.faults,
            "spec": self.spec,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        stations = data["stations"]
        if not isinstance(stations, list) or not all(isinstance(s, str) for s in stations):
            raise ValueError("stations must be a list of station ids")
        start = _time(data, "start")
        end = None if data.get("end") is None else _time(data, "end")
        if end is not None and end <= start:
            raise ValueError("end must be after start")
        return cls(
            stations=tuple(stations),
            start=start,
            end=end,
            seed=int(data["seed"]),
            faults=int(data["faults"]),
            spec=str(data.get("spec", "")),
        )


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """A run's manifest and the faults it injected."""

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


def write_ground_truth(path: Path, manifest: Manifest, faults: Iterable[InjectedFault]) -> None:
    """The manifest line, then one line per fault (the file is replaced)."""
    lines = [json.dumps(manifest.to_json())]
    lines += [json.dumps(f.to_json()) for f in faults]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(path)


def _is_manifest(record: dict[str, Any]) -> bool:
    return record.get("manifest") is True or ("stations" in record and "label" not in record)


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
            if _is_manifest(record):
                if run is not None:
                    raise ValueError("a second run manifest")
                run = Manifest.from_json(record)
                continue
            if run is None:
                raise ValueError("no run manifest before the first fault")
            fault = InjectedFault.from_json(record)
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
