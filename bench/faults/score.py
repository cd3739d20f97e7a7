"""Alerts scored against the simulator's ground truth, event-wise, in telemetry time.

One fault episode counts once. An alert *matches* a fault when it is on the same
station, on the fault's connector (any connector of the station for a station-level
fault, ``connector_id`` 0), of the fault's kind (``label``), and its ``first_seen`` is
within ``[onset - tolerance, end + grace]``, where ``end`` is the hard failure or, for a
fault without one, ``onset + window``. An alert that matches several faults goes to the
one whose onset is nearest. Per fault, the matching alert seen first is the *true*
alert; later ones are *duplicates* (reported on their own, not counted as true or
false); an alert that matches no fault is *false*: on a healthy station, or on a
faulty one outside its faults' windows (or of another kind).

* precision = true / (true + false) alerts;
* recall = detected / faults, and ``recall_progressive`` over progressive faults;
* lead time of a progressive fault = hard_failure - first_seen of its true alert
  (median and p10 in minutes; share of progressive faults with a hard failure warned
  at least 30 minutes ahead, undetected ones counting as not warned);
* hard-fault delay, for faults whose first evidence is the hard event (not
  progressive, with a hard failure) = first_seen - hard_failure (median, p90, max in
  seconds; share within 10 s, undetected ones counting as not within);
* false alerts per 100 station-days, over all stations and split into healthy
  stations and faulty stations (each over its own station-days).

Alerts are the last version per ``alert_id`` (:func:`latest_versions`), so a consumer
may pass every version it saw. A bootstrap over faults gives 95 % intervals for
recall and median lead.

>>> from datetime import UTC, datetime, timedelta
>>> from bus.alerts import AlertStatus, Evidence, Severity, alert_id
>>> from ingest.simulator.ground_truth import GroundTruth, InjectedFault, Manifest
>>> t = datetime(2026, 7, 1, tzinfo=UTC)
>>> hot = AlertKind.CONNECTOR_OVERHEATING
>>> truth = GroundTruth(Manifest(("A", "B"), t, t + timedelta(days=10), 1, 1),
...     (InjectedFault("A", 1, hot, "overheating", t + timedelta(days=5),
...         t + timedelta(days=5, hours=6), progressive=True),))
>>> def alert(station, hours):
...     at = t + timedelta(days=5, hours=hours)
...     return FaultAlert(alert_id=alert_id(station, 1, hot, at), station_id=station,
...         connector_id=1, alert_kind=hot, severity=Severity.HIGH,
...         status=AlertStatus.OPEN, first_seen=at, last_seen=at, detector="model:x",
...         evidence=Evidence(at=at, summary=""), recommended_action="")
>>> result = score(truth, [alert("A", 2), alert("A", 3), alert("B", 1)], resamples=0)
>>> o = result["overall"]
>>> o["recall_progressive"], o["precision"], o["duplicates"], o["lead_minutes"]["p50"]
(1.0, 0.5, 1, 240.0)
>>> o["false_per_100_station_days"]
{'all': 5.0, 'healthy_stations': 10.0, 'faulty_stations': 0.0}
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from bench.loadgen import percentiles
from bus.alerts import AlertKind, AlertStatus, FaultAlert
from ingest.simulator.ground_truth import GroundTruth, InjectedFault

MINUTE = timedelta(minutes=1)
LEAD_TARGET = timedelta(minutes=30)  # the share of faults warned at least this early
HARD_DELAY_TARGET = timedelta(seconds=10)


@dataclass(frozen=True, slots=True)
class Matching:
    """How close in telemetry time an alert must be to a fault to be about it."""

    tolerance: timedelta = timedelta(minutes=10)  # before the onset
    window: timedelta = timedelta(hours=24)  # the end of a fault without a hard failure
    grace: timedelta = timedelta(minutes=30)  # after the end

    def window_of(self, fault: InjectedFault) -> tuple[datetime, datetime]:
        end = fault.hard_failure or fault.onset + self.window
        return fault.onset - self.tolerance, end + self.grace

    def matches(self, fault: InjectedFault, alert: FaultAlert) -> bool:
        if alert.station_id != fault.station_id or alert.alert_kind is not fault.label:
            return False
        if fault.connector_id != 0 and alert.connector_id != fault.connector_id:
            return False
        low, high = self.window_of(fault)
        return low <= alert.first_seen <= high


class Verdict(StrEnum):
    TRUE = "true"
    DUPLICATE = "duplicate"
    FALSE_HEALTHY = "false_healthy_station"
    FALSE_FAULTY = "false_faulty_station"


@dataclass(frozen=True, slots=True)
class FaultOutcome:
    """A fault and the alerts that matched it, earliest first."""

    fault: InjectedFault
    alerts: tuple[FaultAlert, ...]

    @property
    def detected(self) -> bool:
        return bool(self.alerts)

    @property
    def hard(self) -> bool:
        """First evidence is the hard event itself: the delay counts, not the lead."""
        return not self.fault.progressive and self.fault.hard_failure is not None

    @property
    def lead(self) -> timedelta | None:
        hard = self.fault.hard_failure
        if not self.fault.progressive or hard is None or not self.alerts:
            return None
        return hard - self.alerts[0].first_seen

    @property
    def delay(self) -> timedelta | None:
        hard = self.fault.hard_failure
        if not self.hard or hard is None or not self.alerts:
            return None
        return self.alerts[0].first_seen - hard


@dataclass(frozen=True, slots=True)
class Assessment:
    outcomes: tuple[FaultOutcome, ...]  # in ground-truth order
    verdicts: tuple[tuple[FaultAlert, Verdict], ...]  # by first_seen


def latest_versions(alerts: Iterable[FaultAlert]) -> list[FaultAlert]:
    """The last version of each alert (by last_seen, a resolution last), by first_seen."""
    latest: dict[str, FaultAlert] = {}
    for alert in alerts:
        seen = latest.get(alert.alert_id)
        if seen is None or _version_order(alert) >= _version_order(seen):
            latest[alert.alert_id] = alert
    return sorted(latest.values(), key=lambda a: (a.first_seen, a.alert_id))


def _version_order(alert: FaultAlert) -> tuple[datetime, bool]:
    return alert.last_seen, alert.status is AlertStatus.RESOLVED


def assess(
    truth: GroundTruth, alerts: Iterable[FaultAlert], matching: Matching = Matching()
) -> Assessment:
    """Each fault's matching alerts and each alert's verdict."""
    by_station: dict[str, list[int]] = defaultdict(list)
    for index, fault in enumerate(truth.faults):
        by_station[fault.station_id].append(index)
    matched: dict[int, list[FaultAlert]] = defaultdict(list)
    verdict: dict[str, Verdict] = {}
    ordered = latest_versions(alerts)
    for alert in ordered:
        candidates = [
            i
            for i in by_station.get(alert.station_id, [])
            if matching.matches(truth.faults[i], alert)
        ]
        if candidates:
            best = min(candidates, key=lambda i: (abs(alert.first_seen - truth.faults[i].onset), i))
            matched[best].append(alert)
        elif alert.station_id in by_station:
            verdict[alert.alert_id] = Verdict.FALSE_FAULTY
        else:
            verdict[alert.alert_id] = Verdict.FALSE_HEALTHY
    for found in matched.values():  # already by first_seen
        verdict[found[0].alert_id] = Verdict.TRUE
        verdict.update((a.alert_id, Verdict.DUPLICATE) for a in found[1:])
    outcomes = tuple(
        FaultOutcome(fault, tuple(matched.get(i, ()))) for i, fault in enumerate(truth.faults)
    )
    return Assessment(outcomes, tuple((a, verdict[a.alert_id]) for a in ordered))


def _ratio(part: float, whole: float) -> float | None:
    return None if whole == 0 else round(part / whole, 4)


def recall_progressive(outcomes: Sequence[FaultOutcome]) -> float | None:
    progressive = [o for o in outcomes if o.fault.progressive]
    return _ratio(sum(o.detected for o in progressive), len(progressive))


def median_lead_minutes(outcomes: Sequence[FaultOutcome]) -> float | None:
    leads = [lead / MINUTE for o in outcomes if (lead := o.lead) is not None]
    return percentiles(leads, (50,))["p50"]


def bootstrap(
    outcomes: Sequence[FaultOutcome],
    statistic: Callable[[Sequence[FaultOutcome]], float | None],
    resamples: int = 1000,
    seed: int = 0,
) -> list[float] | None:
    """The 95 % interval of ``statistic`` over faults resampled with replacement
    (seeded); None without resamples or when the statistic is undefined throughout."""
    if resamples <= 0 or not outcomes:
        return None
    rng = random.Random(seed)
    values = [statistic(rng.choices(outcomes, k=len(outcomes))) for _ in range(resamples)]
    defined = sorted(v for v in values if v is not None)
    if not defined:
        return None
    low = defined[int(0.025 * (len(defined) - 1))]
    high = defined[int(0.975 * (len(defined) - 1) + 0.5)]
    return [round(low, 4), round(high, 4)]


@dataclass(frozen=True, slots=True)
class StationDays:
    healthy: float
    faulty: float

    @classmethod
    def of(cls, truth: GroundTruth) -> StationDays:
        days = truth.manifest.days
        return cls(len(truth.healthy_stations()) * days, len(truth.faulty_stations()) * days)


def _per_100_days(count: int, days: float) -> float | None:
    return None if days <= 0 else round(100.0 * count / days, 4)


def _lead(outcomes: Sequence[FaultOutcome]) -> dict[str, Any]:
    warnable = [o for o in outcomes if o.fault.progressive and o.fault.hard_failure is not None]
    leads = [lead / MINUTE for o in warnable if (lead := o.lead) is not None]
    spread = percentiles(leads, (10, 50))
    warned = sum(1 for lead in leads if lead >= LEAD_TARGET / MINUTE)
    return {
        "p50": spread["p50"],
        "p10": spread["p10"],
        "share_ge_30": _ratio(warned, len(warnable)),
    }


def _delay(outcomes: Sequence[FaultOutcome]) -> dict[str, Any]:
    hard = [o for o in outcomes if o.hard]
    delays = [delay.total_seconds() for o in hard if (delay := o.delay) is not None]
    spread = percentiles(delays, (50, 90))
    within = sum(1 for d in delays if d <= HARD_DELAY_TARGET.total_seconds())
    return {
        "p50": spread["p50"],
        "p90": spread["p90"],
        "max": spread["max"],
        "share_le_10": _ratio(within, len(hard)),
    }


def summary(
    outcomes: Sequence[FaultOutcome],
    verdicts: Sequence[Verdict],
    days: StationDays,
    resamples: int = 1000,
) -> dict[str, Any]:
    """The numbers of one set of faults and the alerts judged against them."""
    counts = Counter(verdicts)
    true = counts[Verdict.TRUE]
    healthy, faulty = counts[Verdict.FALSE_HEALTHY], counts[Verdict.FALSE_FAULTY]
    return {
        "faults": len(outcomes),
        "progressive": sum(o.fault.progressive for o in outcomes),
        "hard": sum(o.hard for o in outcomes),
        "detected": sum(o.detected for o in outcomes),
        "alerts": len(verdicts),
        "true_alerts": true,
        "duplicates": counts[Verdict.DUPLICATE],
        "false_alerts": healthy + faulty,
        "precision": _ratio(true, true + healthy + faulty),
        "recall": _ratio(sum(o.detected for o in outcomes), len(outcomes)),
        "recall_progressive": recall_progressive(outcomes),
        "recall_progressive_ci95": bootstrap(outcomes, recall_progressive, resamples),
        "lead_minutes": _lead(outcomes),
        "median_lead_minutes_ci95": bootstrap(outcomes, median_lead_minutes, resamples),
        "hard_delay_s": _delay(outcomes),
        "false_per_100_station_days": {
            "all": _per_100_days(healthy + faulty, days.healthy + days.faulty),
            "healthy_stations": _per_100_days(healthy, days.healthy),
            "faulty_stations": _per_100_days(faulty, days.faulty),
        },
    }


def score(
    truth: GroundTruth,
    alerts: Iterable[FaultAlert],
    matching: Matching = Matching(),
    resamples: int = 1000,
) -> dict[str, Any]:
    """Every number, overall and per kind (a kind with alerts but no faults too)."""
    judged = assess(truth, alerts, matching)
    days = StationDays.of(truth)
    kinds: set[AlertKind] = {f.label for f in truth.faults}
    kinds |= {alert.alert_kind for alert, _ in judged.verdicts}
    by_kind = {
        kind.value: summary(
            [o for o in judged.outcomes if o.fault.label is kind],
            [v for a, v in judged.verdicts if a.alert_kind is kind],
            days,
            resamples,
        )
        for kind in sorted(kinds)
    }
    return {
        "overall": summary(judged.outcomes, [v for _, v in judged.verdicts], days, resamples),
        "by_kind": by_kind,
        "station_days": {"healthy": days.healthy, "faulty": days.faulty},
        "matching": {
            "tolerance_s": matching.tolerance.total_seconds(),
            "window_s": matching.window.total_seconds(),
            "grace_s": matching.grace.total_seconds(),
        },
    }
