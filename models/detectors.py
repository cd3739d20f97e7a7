"""Online anomaly detectors behind River's one interface: ``learn_one(x)``, ``score_one(x)``.

Every detector here is a :class:`river.base.AnomalyDetector`, so River's own
``anomaly.QuantileFilter``/``ThresholdFilter`` calibrate it and ``pickle`` snapshots it.
They share four promises that the conformance test (``tests/unit/test_detectors.py``)
checks on every one of them:

* a score is in [0, 1], high is anomalous;
* the score is 0 until the detector has learned ``warmup`` samples (a cold connector learns
  without alerting);
* a feature missing from ``x`` is imputed, a feature it does not know is ignored: the
  feature set of a reading varies (no temperature while idle, no offered power on a
  1.6 AC station), and River's HalfSpaceTrees only knows the features of its first sample;
* ``score_one`` changes nothing (River's PredictiveAnomalyDetection does change itself;
  these do not), so a sample can be scored, then learned.

Detectors, by what they catch:

* :class:`ScaledHalfSpaceTrees`: several features drifting together away from what this
  connector usually shows (HalfSpaceTrees over physics-scaled features);
* :class:`DeviationDetector`: one feature far from its own slowly moving baseline, in
  standard deviations (tiny state: mean and variance per feature);
* :class:`TrendDetector`: a slow upward trend in one feature (River's Page-Hinkley test);
* :class:`StaticThresholds`: fixed limits per feature; the baseline a model must beat.

>>> d = DeviationDetector(features=("t",), warmup=20)
>>> for i in range(40):
...     d.learn_one({"t": 1.0 + (i % 5) * 0.01})
>>> d.score_one({"t": 1.02}) < 0.5 < d.score_one({"t": 2.0})
True
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

from river import anomaly, base, drift, stats

Features = Mapping[str, float]
Limits = Mapping[str, tuple[float, float]]


def _finite(x: Features, name: str) -> float | None:
    value = x.get(name)
    if value is None or isinstance(value, bool):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


class ScaledHalfSpaceTrees(base.AnomalyDetector):
    """River's HalfSpaceTrees over a fixed feature set scaled into [0, 1] by physical limits.

    Values are clipped into ``limits`` (a reading far outside is as anomalous as one at
    the edge); a missing feature takes the mean this detector learned for it (the middle
    of its limits before any), so the trees, built on the first sample, always see every
    feature. HalfSpaceTrees scores 0 for its whole first window: ``warmup`` is at least
    ``window_size``. Small trees by default (4 x height 5, ~12 KiB pickled) because one
    lives per connector in the flow's snapshots.
    """

    def __init__(
        self,
        limits: Limits,
        n_trees: int = 4,
        height: int = 5,
        window_size: int = 100,
        warmup: int = 100,
        seed: int = 0,
    ) -> None:
        self.limits = dict(limits)
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.warmup = max(warmup, window_size)
        self.seed = seed
        self._trees = anomaly.HalfSpaceTrees(
            n_trees=n_trees,
            height=height,
            window_size=window_size,
            limits={name: (0.0, 1.0) for name in self.limits},
            seed=seed,
        )
        self._means = {name: stats.Mean() for name in self.limits}
        self.learned = 0

    def _scaled(self, x: Features) -> dict[str, float]:
        scaled: dict[str, float] = {}
        for name, (low, high) in self.limits.items():
            value = _finite(x, name)
            if value is None:
                learned = self._means[name]
                value = learned.get() if learned.n else (low + high) / 2.0
            scaled[name] = (min(max(value, low), high) - low) / (high - low)
        return scaled

    def learn_one(self, x: dict[Any, Any]) -> None:
        for name, mean in self._means.items():
            value = _finite(x, name)
            if value is not None:
                mean.update(value)
        self._trees.learn_one(self._scaled(x))
        self.learned += 1

    def score_one(self, x: dict[Any, Any]) -> float:
        if self.learned < self.warmup:
            return 0.0
        return float(self._trees.score_one(self._scaled(x)))


class Baseline:
    """Mean and variance that are exact over the first ``1 / fading`` samples and
    exponentially weighted after (weight ``max(fading, 1 / n)``): an EW estimate from
    the start is biased towards zero variance for its first thousand samples when the
    fading is slow, and a slow fading is what keeps a growing fault from becoming the
    baseline.

    >>> b = Baseline()
    >>> for v in (4.0, 6.0, 5.0, 5.0):
    ...     b.update(v, fading=0.001)
    >>> b.mean, b.var, b.n
    (5.0, 0.5, 4)
    """

    __slots__ = ("mean", "n", "var")

    def __init__(self) -> None:
        self.mean = 0.0
        self.var = 0.0
        self.n = 0

    def update(self, value: float, fading: float) -> None:
        self.n += 1
        weight = max(fading, 1.0 / self.n)
        delta = value - self.mean
        self.mean += weight * delta
        self.var = (1.0 - weight) * (self.var + weight * delta * delta)

    def __getstate__(self) -> tuple[float, float, int]:
        return self.mean, self.var, self.n

    def __setstate__(self, state: tuple[float, float, int]) -> None:
        self.mean, self.var, self.n = state


class DeviationDetector(base.AnomalyDetector):
    """How many standard deviations the most deviating feature is from its own baseline,
    squashed into [0, 1): ``z / (z + z_half)``, so ``z_half`` deviations score 0.5.

    The baseline is a :class:`Baseline` per feature (``fading`` is the weight of one
    sample once warmed up), so it follows seasons and ageing that are slower than
    faults. Each feature warms up on its own: one that appears later is silent until it
    has ``warmup`` samples. ``min_std`` keeps a feature that has been constant so far
    from making any change infinitely anomalous. ``directions`` makes a feature
    one-sided: +1 only above its baseline is anomalous, -1 only below (a connector
    that runs cooler than usual is not overheating). ``uncertainty`` names, per feature,
    the key of ``x`` that carries that sample's own standard deviation (a feature
    computed from an estimate, say a temperature rise above an ambient measured hours
    ago): the sample's variance replaces the part of the baseline's variance that its
    learned samples' own uncertainty explains (the mean of their variances, kept beside
    the baseline), so an uncertain sample needs a larger deviation to count, and one as
    certain as the learned ones no larger than before.

    >>> d = DeviationDetector(("r",), warmup=5, min_std={"r": 0.1}, uncertainty={"r": "r_sd"})
    >>> for _ in range(5):
    ...     d.learn_one({"r": 1.0})
    >>> d.deviations({"r": 1.5}), d.deviations({"r": 1.5, "r_sd": 0.2})
    ({'r': 5.0}, {'r': 2.23...})
    """

    # Detectors pickled before these existed have none (class defaults, never mutated:
    # ``learn_one`` gives the instance its own).
    uncertainty: dict[str, str] = {}
    _learned_var: dict[str, Baseline] = {}

    def __init__(
        self,
        features: tuple[str, ...],
        fading: float = 0.001,
        warmup: int = 50,
        z_half: float = 4.0,
        min_std: Mapping[str, float] | None = None,
        directions: Mapping[str, int] | None = None,
        uncertainty: Mapping[str, str] | None = None,
    ) -> None:
        self.features = tuple(features)
        self.fading = fading
        self.warmup = warmup
        self.z_half = z_half
        self.min_std = dict(min_std or {})
        self.directions = dict(directions or {})
        self.uncertainty = dict(uncertainty or {})
        self._baselines = {name: Baseline() for name in self.features}
        self._learned_var = {name: Baseline() for name in self.uncertainty}

    def learn_one(self, x: dict[Any, Any]) -> None:
        if "_learned_var" not in self.__dict__:
            self._learned_var = {name: Baseline() for name in self.uncertainty}
        for name in self.features:
            value = _finite(x, name)
            if value is not None:
                self._baselines[name].update(value, self.fading)
                learned = self._learned_var.get(name)
                if learned is not None:
                    sd = _finite(x, self.uncertainty[name]) or 0.0
                    learned.update(sd * sd, self.fading)

    def deviations(self, x: Features) -> dict[str, float]:
        """Signed deviations in standard deviations, for the warmed-up features of ``x``."""
        result: dict[str, float] = {}
        for name in self.features:
            value = _finite(x, name)
            baseline = self._baselines[name]
            if value is None or baseline.n < self.warmup:
                continue
            floor = self.min_std.get(name, 1e-9)
            std = max(math.sqrt(baseline.var), floor)
            own = self.uncertainty.get(name)
            sd = None if own is None else _finite(x, own)
            if sd is not None and sd > 0:
                learned = self._learned_var.get(name)
                explained = learned.mean if learned is not None and learned.n else 0.0
                intrinsic = math.sqrt(max(0.0, baseline.var - explained))
                std = math.hypot(max(intrinsic, floor), sd)
            result[name] = (value - baseline.mean) / std
        return result

    def score_one(self, x: dict[Any, Any]) -> float:
        z = max((self._anomalous(name, d) for name, d in self.deviations(x).items()), default=0.0)
        return z / (z + self.z_half)

    def _anomalous(self, name: str, deviation: float) -> float:
        direction = self.directions.get(name, 0)
        return abs(deviation) if direction == 0 else max(0.0, deviation * direction)


class TrendDetector(base.AnomalyDetector):
    """A slow upward trend in one feature: River's Page-Hinkley test (``mode="up"``).

    ``threshold`` and ``delta`` are in the feature's own units: the evidence needed and
    the change per sample that counts as none.
    Scores 1.0 for a sample that would complete the test's evidence of an upward change,
    else 0.0; River's detector resets itself after a detection, so a lasting trend is
    reported again once it has built up new evidence. Meant for per-session summaries
    (e.g. a connector's temperature rise per kW, once per session), where a copy per
    score costs nothing.
    """

    def __init__(
        self,
        feature: str,
        threshold: float = 5.0,
        delta: float = 0.05,
        warmup: int = 10,
    ) -> None:
        self.feature = feature
        self.threshold = threshold
        self.delta = delta
        self.warmup = warmup
        self._test = drift.PageHinkley(
            min_instances=warmup, delta=delta, threshold=threshold, mode="up"
        )
        self.learned = 0

    def learn_one(self, x: dict[Any, Any]) -> None:
        value = _finite(x, self.feature)
        if value is not None:
            self._test.update(value)
            self.learned += 1

    def score_one(self, x: dict[Any, Any]) -> float:
        value = _finite(x, self.feature)
        if value is None or self.learned < self.warmup:
            return 0.0
        probe = copy.deepcopy(self._test)
        probe.update(value)
        return 1.0 if probe.drift_detected else 0.0


class StaticThresholds(base.AnomalyDetector):
    """1.0 when any present feature is outside its fixed (low, high) band, else 0.0.

    What a rule-based CSMS would do; the evaluation runs it beside the models so that
    their gain is visible. It learns nothing, so it has no warm-up.
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = dict(limits)
        self.warmup = 0

    def learn_one(self, x: dict[Any, Any]) -> None:
        return None

    def score_one(self, x: dict[Any, Any]) -> float:
        for name, (low, high) in self.limits.items():
            value = _finite(x, name)
            if value is not None and not low <= value <= high:
                return 1.0
        return 0.0

    def deviations(self, x: Features) -> dict[str, float]:
        """How far each present feature is outside its band, signed, as a share of the
        limit it crossed (0 inside the band): the attribution of a static finding.

        >>> StaticThresholds({"t": (-math.inf, 40.0), "r": (0.5, math.inf)}).deviations(
        ...     {"t": 50.0, "r": 0.25})
        {'t': 0.25, 'r': -0.5}
        """
        result: dict[str, float] = {}
        for name, (low, high) in self.limits.items():
            value = _finite(x, name)
            if value is None:
                continue
            edge = high if value > high else low if value < low else None
            result[name] = 0.0 if edge is None else (value - edge) / max(abs(edge), 1e-9)
        return result
