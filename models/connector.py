"""The fault model of one connector: readings in, findings out.

Per reading: the physics features (:mod:`models.features`), the register rule, and an
online detector over the features. The detector's score says *that* the connector
behaves unlike itself; the deviations of the single features from their own baselines
say *how* (the top contributing feature names the kind of fault and is the evidence).

Crying wolf is the failure that makes maintenance stop reading alerts, so a model
finding needs ``persistence`` consecutive anomalous readings under load that point to
the same kind (their top feature's), and the detector only learns from readings it does
not find anomalous (a fault must not become the new normal while it grows: only
readings well inside the normal band are learned).
A cold connector learns from every reading for ``warmup_period`` of telemetry time (two
days: the day cycle of ambient temperature and grid voltage, and the connector's range
of loads) without alerting; its detector learns in the second half of it. Every
anomalous reading after that gives a finding; :class:`models.alerting.AlertBook` makes
one alert of them.

>>> from datetime import UTC, datetime, timedelta
>>> from models.readings import Reading
>>> t = datetime(2026, 7, 1, tzinfo=UTC)
>>> model = ConnectorModel.default(persistence=2, warmup=5, warmup_period=timedelta(minutes=40))
>>> for i in range(60):  # idle, then charging at 11 kW and a healthy 8 degrees above ambient
...     power, temp = (0.0, 20.0) if i % 2 == 0 else (11000.0, 28.0 + (i % 4) * 0.2)
...     out = model.update("CP1", 1, Reading(time=t + timedelta(minutes=i), power_w=power,
...         temperature_c=temp))
>>> out
[]
>>> for i in range(60, 66):  # then the contact heats up
...     power, temp = (0.0, 20.0) if i % 2 == 0 else (11000.0, 55.0)
...     out += model.update("CP1", 1, Reading(time=t + timedelta(minutes=i), power_w=power,
...         temperature_c=temp))
>>> [(f.kind.value, f.detector, (f.at - t) // timedelta(minutes=1)) for f in out]
[('connector_overheating', 'model:deviation', 63), ('connector_overheating', 'model:deviation', 65)]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from river import base

from bus.alerts import AlertKind, ConnectorHealth, Evidence, Severity
from models.detectors import DeviationDetector, StaticThresholds
from models.features import LOAD_W, STATIC_LIMITS, ConnectorFeatures, Neighbour
from models.readings import Reading
from models.rules import Clear, Finding, RegisterRule

# The kind of fault a feature points to, and the direction in which it is a fault.
FEATURE_KINDS: dict[str, tuple[AlertKind, int]] = {
    "temperature_rise_c": (AlertKind.CONNECTOR_OVERHEATING, +1),
    "temperature_rise_c_per_kw": (AlertKind.CONNECTOR_OVERHEATING, +1),
    "voltage_drop_ratio": (AlertKind.CONTACTOR_DEGRADATION, +1),
    "phase_voltage_spread_ratio": (AlertKind.CONTACTOR_DEGRADATION, +1),
    "voltage_deviation_ratio": (AlertKind.GRID_IRREGULARITY, 0),  # both directions
    "delivered_ratio": (AlertKind.CABLE_DAMAGE, -1),
    "register_ratio": (AlertKind.METER_FAULT, 0),
}

# What the per-connector model scores: the features that stay put on a healthy
# connector whatever its load. The absolute ones (temperature rise, voltage deviation
# from nominal) vary with load and grid; rules and site-wide views judge those.
MODEL_FEATURES = (
    "temperature_rise_c_per_kw",
    "voltage_drop_ratio",
    "phase_voltage_spread_ratio",
    "delivered_ratio",
    "register_ratio",
)

# Spread below which a feature's baseline is not trusted to be that tight (physics
# resolution: 0.5 degrees, 0.2 % of voltage, 2 % of power, 1 % of register increase).
MIN_STD = {
    "temperature_rise_c": 0.5,
    # The ambient estimate's own error comes with each sample (``UNCERTAINTY``); this is
    # the rest: a connector's rise per kW differs a little with how long it has carried
    # the load and with the sun on its housing.
    "temperature_rise_c_per_kw": 0.1,
    "voltage_drop_ratio": 0.01,  # the idle baseline lags the grid's day cycle (+-1 %)
    "phase_voltage_spread_ratio": 0.002,
    "voltage_deviation_ratio": 0.002,
    "delivered_ratio": 0.02,
    "register_ratio": 0.01,
}

# Features that carry their own standard deviation (``models.features``): the rise per
# kW above an ambient estimated from an idle reading of some age.
UNCERTAINTY = {"temperature_rise_c_per_kw": "temperature_rise_c_per_kw_sd"}
_UNCERTAIN_KEYS = frozenset(UNCERTAINTY.values())


# Load change between two readings (share of the larger power) up to which the register
# ratio is judged by the model: a taper steps ~10 % per 5 minutes and its trapezoid is a
# few percent off the register; a steady session moves under 2 %.
STEADY_LOAD = 0.05


# Phases closer than this (max - min over mean) are even: a healthy supply's p99 is
# ~1.2 %; a pitted contactor pole opens a wider spread before the mean drops by 5 %.
EVEN_PHASES_SPREAD = 0.015


def _even_phases(reading: Reading) -> bool:
    """Several phases, all about equal: a drop then is the supply's, not one pole's."""
    volts = reading.voltages_v
    if len(volts) < 2:
        return False
    mean = sum(volts) / len(volts)
    return mean > 0 and (max(volts) - min(volts)) / mean < EVEN_PHASES_SPREAD


def _summary(feature: str, value: float, z: float) -> str:
    direction = "above" if z > 0 else "below"
    return (
        f"{feature.replace('_', ' ')} is {value:.3g}, {abs(z):.1f} standard deviations "
        f"{direction} this connector's own baseline."
    )


@dataclass(slots=True)
class ConnectorModel:
    """Features, rules and detectors of one connector; picklable, small."""

    detector: base.AnomalyDetector
    attribution: DeviationDetector | StaticThresholds  # names the kind of a finding
    threshold: float  # score from which a reading is anomalous
    learn_below: float  # score below which a reading is learned (a fault is not)
    persistence: int
    name: str
    warmup_period: timedelta = timedelta(days=2)  # telemetry time: a day cycle and more
    features: ConnectorFeatures = field(default_factory=ConnectorFeatures)
    register: RegisterRule = field(default_factory=RegisterRule)
    anomalous_run: int = 0  # consecutive anomalous readings under load of ``run_kind``
    first_seen: datetime | None = None
    # The last reading under load that was scored, for the health view.
    scored_at: datetime | None = None
    scored: float = 0.0
    scored_features: dict[str, float] = field(default_factory=dict)
    # Last, so that older snapshots' fields keep their places.
    run_kind: AlertKind | None = None
    heal_after: int = 6  # normal readings of a kind's features in a row that clear it
    # Suspected kinds (found, not yet cleared): normal readings in a row of each.
    healthy: dict[AlertKind, int] = field(default_factory=dict)

    @classmethod
    def default(
        cls,
        persistence: int = 3,
        warmup: int = 30,
        warmup_period: timedelta = timedelta(days=2),
        **kwargs: Any,
    ) -> ConnectorModel:
        """The deviation detector over the load-independent features as both score and
        attribution (tiny state). ``warmup`` samples per feature: delivered/offered is
        taken in a run's first 20 minutes only (~4 readings a session at 5-minute
        intervals), so 100 took it a week; the other features pass 30 in hours, and
        ``MIN_STD`` bounds a young baseline's spread from below."""
        detector = DeviationDetector(
            MODEL_FEATURES,
            warmup=warmup,
            min_std=MIN_STD,
            directions={name: FEATURE_KINDS[name][1] for name in MODEL_FEATURES},
            uncertainty=UNCERTAINTY,
            **kwargs,
        )
        # z >= 5 is anomalous, z < 3 is learned (score = z / (z + 4)).
        return cls(detector, detector, 5 / 9, 3 / 7, persistence, "deviation", warmup_period)

    @classmethod
    def static(cls, persistence: int = 3) -> ConnectorModel:
        """The rule-based baseline of the evaluation: fixed datasheet and EN 50160 limits
        (:data:`models.features.STATIC_LIMITS`) on every feature, nothing learned, so no
        warm-up; the same features, register rule and persistence as ours.

        >>> model = ConnectorModel.static()
        >>> model.name, model.warmup_period, model.detector is model.attribution
        ('static', datetime.timedelta(0), True)
        """
        detector = StaticThresholds(STATIC_LIMITS)
        # Scores are 0 or 1: 1 is anomalous; nothing is learned (learn_below 0).
        return cls(detector, detector, 0.5, 0.0, persistence, "static", timedelta(0))

    def update(
        self,
        station_id: str,
        connector_id: int,
        reading: Reading,
        neighbour: Neighbour | None = None,
    ) -> list[Finding | Clear]:
        """Findings and clears of ``reading``; ``neighbour``: the latest idle temperature
        of another connector of the station (an ambient reading while this one charges)."""
        # River types features loosely.
        x: dict[Any, Any] = self.features.update(reading, neighbour)
        results: list[Finding | Clear] = []
        register = self.register.update(station_id, connector_id, reading.time, x)
        if register is not None:
            results.append(register)
        change = x.pop("load_change_ratio", None)
        if change is not None and change > STEADY_LOAD:
            x.pop("register_ratio", None)  # the rule read it; the model does not
        if not x:
            return results
        # Persistence counts readings under load only: idle readings in between (the
        # station reports both) neither confirm nor refute a fault that shows under load.
        loaded = reading.power_w is not None and reading.power_w >= LOAD_W
        if self.first_seen is None:
            self.first_seen = reading.time
        age = reading.time - self.first_seen
        if age < self.warmup_period:
            # The first half teaches the features their baselines (the ambient day
            # profile); the detector learns from the second, so that a day without a
            # profile does not widen its spread for good.
            if age >= self.warmup_period / 2:
                self._learn(x)  # everything: the baseline must see the whole range
            return results
        score = self.detector.score_one(x)
        if loaded:
            self.scored_at, self.scored, self.scored_features = reading.time, score, dict(x)
        if self._certain_score(x, score) < self.learn_below:
            self._learn(x)
        if loaded:
            results.extend(self._judge(station_id, connector_id, reading, x, score))
        return results

    def _judge(
        self,
        station_id: str,
        connector_id: int,
        reading: Reading,
        x: dict[str, float],
        score: float,
    ) -> list[Finding | Clear]:
        """A scored reading under load: a finding once ``persistence`` anomalous readings
        in a row point to one kind (three readings each a little off in another feature
        are noise, not a fault); a clear of a suspected kind once ``heal_after`` normal
        readings of its features in a row show the connector healthy under load again.
        Idle time says nothing either way: a model alert stays open between sessions."""
        finding = (
            None
            if score < self.threshold
            else self._finding(station_id, connector_id, reading, x, score)
        )
        if finding is None:
            self.anomalous_run, self.run_kind = 0, None
            return self._heal(station_id, connector_id, reading.time, x)
        self.healthy.pop(finding.kind, None)
        if finding.kind is not self.run_kind:
            self.anomalous_run, self.run_kind = 0, finding.kind
        self.anomalous_run += 1
        if self.anomalous_run < self.persistence:
            return []
        self.healthy.setdefault(finding.kind, 0)  # suspected from now on
        return [finding]

    def _heal(
        self, station_id: str, connector_id: int, at: datetime, x: dict[str, float]
    ) -> list[Finding | Clear]:
        """A normal reading under load counts towards the health of each suspected kind
        whose features it carries (delivered/offered is taken early in a run only, the
        register ratio at a steady load only: a reading without them says nothing about
        a damaged cable or a drifting meter); ``heal_after`` in a row clear that kind."""
        healed = []
        for kind in list(self.healthy):
            if any(FEATURE_KINDS[name][0] is kind for name in x if name in MODEL_FEATURES):
                self.healthy[kind] += 1
                if self.healthy[kind] >= self.heal_after:
                    healed.append(kind)
                    del self.healthy[kind]
        if not healed:
            return []
        detectors = frozenset({f"model:{self.name}"})
        return [Clear(station_id, connector_id, at, frozenset(healed), detectors)]

    def health(self, station_id: str, connector_id: int, top: int = 3) -> ConnectorHealth | None:
        """The connector's current risk: the last score under load and the ``top``
        features deviating most from its baseline; None before any reading."""
        if self.first_seen is None:
            return None
        warming = self.scored_at is None
        deviations = self.attribution.deviations(self.scored_features)
        ranked = sorted(deviations.items(), key=lambda item: -abs(item[1]))[:top]
        return ConnectorHealth(
            station_id=station_id,
            connector_id=connector_id,
            at=self.scored_at or self.first_seen,
            risk=0.0 if warming else self.scored,
            phase="warming_up" if warming else "monitoring",
            contributions=dict(ranked),
            features=dict(self.scored_features),
        )

    def _certain_score(self, x: dict[Any, Any], score: float) -> float:
        """The score as if every feature were exact: what is learned must look normal
        even then. A sample's own uncertainty (an old ambient estimate) keeps it from
        alerting, not from being too far off to learn: learned, the growing fault it may
        hide would become the baseline."""
        if not any(key in x for key in UNCERTAINTY.values()):
            return score
        return self.detector.score_one({k: v for k, v in x.items() if k not in _UNCERTAIN_KEYS})

    def _learn(self, x: dict[Any, Any]) -> None:
        self.detector.learn_one(x)
        if self.attribution is not self.detector:
            self.attribution.learn_one(x)

    def _finding(
        self,
        station_id: str,
        connector_id: int,
        reading: Reading,
        x: dict[str, float],
        score: float,
    ) -> Finding | None:
        deviations = self.attribution.deviations(x)
        pointing = {
            name: z
            for name, z in deviations.items()
            if FEATURE_KINDS[name][1] == 0 or z * FEATURE_KINDS[name][1] > 0
        }
        if not pointing:
            return None
        top = max(pointing, key=lambda name: abs(pointing[name]))
        kind = FEATURE_KINDS[top][0]
        if top == "voltage_drop_ratio" and _even_phases(reading):
            kind = AlertKind.GRID_IRREGULARITY  # a worn contactor pole drops one phase
        severity = Severity.HIGH if score >= 0.8 else Severity.MEDIUM
        evidence = Evidence(
            at=reading.time,
            summary=_summary(top, x[top], pointing[top]),
            features=dict(x),
            scores={"score": score, **{f"z_{name}": z for name, z in pointing.items()}},
        )
        return Finding(
            station_id,
            connector_id,
            kind,
            severity,
            reading.time,
            f"model:{self.name}",
            evidence,
            resolves="clear",  # the model's own, once healthy under load again
        )
