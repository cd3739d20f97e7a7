"""The ground truth of a simulated run with faults: which fault was injected where and
when. ``chargeflow simulate --faults SPEC --ground-truth FILE`` writes it; the
evaluation (``bench/faults``) reads it with :func:`read_ground_truth` and scores alerts
against it.

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
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bus.alerts import AlertKind
from bus.times import format_rfc3339, parse_rfc3339


@dataclass(frozen=True, slots=True)
class InjectedFault:
    station_id: str
    connector_id: int  # 0: the whole station
    label: AlertKind
    scenario: str
    onset: datetime
    hard_failure: datetime | None
    progressive: bool
    seed: int

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
        return cls(
            station_id=str(data["station_id"]),
            connector_id=int(data["connector_id"]),
            label=AlertKind(data["label"]),
            scenario=str(data["scenario"]),
            onset=parse_rfc3339(data["onset"]),
            hard_failure=parse_rfc3339(hard) if hard else None,
            progressive=bool(data["progressive"]),
            seed=int(data["seed"]),
        )


@dataclass(frozen=True, slots=True)
class Manifest:
    stations: tuple[str, ...]
    start: datetime
    end: datetime | None
    seed: int
    faults: int
    spec: str = ""

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
        end = data.get("end")
        return cls(
            stations=tuple(data["stations"]),
            start=parse_rfc3339(data["start"]),
            end=parse_rfc3339(end) if end else None,
            seed=int(data["seed"]),
            faults=int(data["faults"]),
            spec=str(data.get("spec", "")),
        )


def write_ground_truth(path: Path, manifest: Manifest, faults: Iterable[InjectedFault]) -> None:
    """The manifest line, then one line per fault (the file is replaced)."""
    lines = [json.dumps(manifest.to_json())]
    lines += [json.dumps(f.to_json()) for f in faults]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(path)


def read_ground_truth(path: Path) -> tuple[Manifest, list[InjectedFault]]:
    """The manifest and the faults of a ground-truth file; ValueError (with the line
    number) for a line that is not one."""
    manifest: Manifest | None = None
    faults: list[InjectedFault] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if data.get("manifest"):
                manifest = Manifest.from_json(data)
            else:
                faults.append(InjectedFault.from_json(data))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{path}:{number}: not a ground-truth line ({exc})") from exc
    if manifest is None:
        raise ValueError(f"{path}: no manifest line")
    return manifest, faults
