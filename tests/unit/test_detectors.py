"""Conformance of every detector in ``models.detectors`` to the promises its module makes:
scores in [0, 1], silence during warm-up, missing and unknown features tolerated,
``score_one`` without side effects, exact pickling, seeded determinism, and that it
tells a clear anomaly from normal data after learning."""

from __future__ import annotations

import inspect
import pickle
import random
from collections.abc import Callable
from typing import Any

import pytest
from river import base

from models import detectors
from models.detectors import (
    DeviationDetector,
    ScaledHalfSpaceTrees,
    StaticThresholds,
    TrendDetector,
)

LIMITS = {"a": (0.0, 10.0), "b": (-1.0, 1.0)}

FACTORIES: dict[str, Callable[[], base.AnomalyDetector]] = {
    "ScaledHalfSpaceTrees": lambda: ScaledHalfSpaceTrees(LIMITS, window_size=50, seed=7),
    "DeviationDetector": lambda: DeviationDetector(("a", "b"), warmup=30),
    "TrendDetector": lambda: TrendDetector("a", threshold=8.0, delta=0.1, warmup=20),
    "StaticThresholds": lambda: StaticThresholds({"a": (0.0, 8.0), "b": (-0.5, 0.5)}),
}


def normal(rng: random.Random) -> dict[Any, Any]:  # River types features loosely
    return {"a": 5.0 + rng.gauss(0, 0.3), "b": rng.gauss(0, 0.05)}


ANOMALY: dict[Any, Any] = {"a": 9.9, "b": 0.95}


def trained(name: str, n: int = 300, seed: int = 1) -> base.AnomalyDetector:
    detector = FACTORIES[name]()
    rng = random.Random(seed)
    for _ in range(n):
        detector.learn_one(normal(rng))
    return detector


def test_every_detector_is_covered() -> None:
    defined = {
        name
        for name, cls in inspect.getmembers(detectors, inspect.isclass)
        if issubclass(cls, base.AnomalyDetector) and cls.__module__ == detectors.__name__
    }
    assert defined == set(FACTORIES)


@pytest.mark.parametrize("name", FACTORIES)
def test_scores_are_in_the_unit_interval(name: str) -> None:
    detector = trained(name)
    rng = random.Random(2)
    scores = [detector.score_one(normal(rng)) for _ in range(200)]
    scores += [detector.score_one(ANOMALY), detector.score_one({"a": -1e9, "b": 1e9})]
    assert all(0.0 <= s <= 1.0 for s in scores), (min(scores), max(scores))


@pytest.mark.parametrize("name", FACTORIES)
def test_silent_during_warm_up(name: str) -> None:
    detector = FACTORIES[name]()
    warmup: int = detector.warmup  # type: ignore[attr-defined]
    rng = random.Random(3)
    for _ in range(warmup):
        assert detector.score_one(ANOMALY) == 0.0
        detector.learn_one(normal(rng))


@pytest.mark.parametrize("name", FACTORIES)
def test_missing_and_unknown_features_are_tolerated(name: str) -> None:
    detector = trained(name)
    samples: list[dict[Any, Any]] = [
        {},
        {"a": 5.0},
        {"b": 0.0},
        {"a": 5.0, "b": 0.0, "new": 1e6},
        {"a": float("nan")},
    ]
    for x in samples:
        score = detector.score_one(x)
        assert 0.0 <= score <= 1.0
        detector.learn_one(x)
    with_unknown = detector.score_one({"a": 5.0, "b": 0.0, "zz": 123.0})
    assert with_unknown == detector.score_one({"a": 5.0, "b": 0.0})


@pytest.mark.parametrize("name", FACTORIES)
def test_scoring_changes_nothing(name: str) -> None:
    detector = trained(name)
    before = pickle.dumps(detector)
    probes: list[dict[Any, Any]] = [ANOMALY, {"a": 5.0, "b": 0.0}, {}]
    for x in probes:
        detector.score_one(x)
    assert pickle.dumps(detector) == before


@pytest.mark.parametrize("name", FACTORIES)
def test_pickle_round_trip_gives_the_same_scores_and_learning(name: str) -> None:
    detector = trained(name)
    copy = pickle.loads(pickle.dumps(detector))
    rng_a, rng_b = random.Random(4), random.Random(4)
    for _ in range(100):
        xa, xb = normal(rng_a), normal(rng_b)
        assert detector.score_one(xa) == copy.score_one(xb)
        detector.learn_one(xa)
        copy.learn_one(xb)
    assert detector.score_one(ANOMALY) == copy.score_one(ANOMALY)


@pytest.mark.parametrize("name", FACTORIES)
def test_same_seed_same_scores(name: str) -> None:
    one, two = trained(name, seed=5), trained(name, seed=5)
    rng = random.Random(6)
    for _ in range(50):
        x = normal(rng)
        assert one.score_one(x) == two.score_one(x)


@pytest.mark.parametrize("name", ["ScaledHalfSpaceTrees", "DeviationDetector", "StaticThresholds"])
def test_an_anomaly_scores_above_normal_data(name: str) -> None:
    detector = trained(name)
    rng = random.Random(8)
    typical = sorted(detector.score_one(normal(rng)) for _ in range(200))
    assert detector.score_one(ANOMALY) > typical[int(0.95 * len(typical))]


def test_trend_detector_fires_on_a_slow_rise_and_not_on_noise() -> None:
    rng = random.Random(9)
    flat = TrendDetector("a", threshold=8.0, delta=0.1, warmup=20)
    fired_flat = 0
    for _ in range(500):
        x = normal(rng)
        fired_flat += flat.score_one(x) == 1.0
        flat.learn_one(x)
    rising = TrendDetector("a", threshold=8.0, delta=0.1, warmup=20)
    first = None
    for i in range(500):
        x = {"a": 5.0 + rng.gauss(0, 0.3) + max(0, i - 200) * 0.02}
        if rising.score_one(x) == 1.0 and first is None:
            first = i
        rising.learn_one(x)
    assert fired_flat == 0
    assert first is not None
    assert 200 < first < 300, first


def test_half_space_trees_imputes_a_missing_feature_with_its_learned_mean() -> None:
    detector = trained("ScaledHalfSpaceTrees")
    assert detector.score_one({"a": 5.0}) == pytest.approx(
        detector.score_one({"a": 5.0, "b": 0.0}), abs=0.05
    )


def test_half_space_trees_state_stays_small() -> None:
    assert len(pickle.dumps(trained("ScaledHalfSpaceTrees"))) < 16 * 1024


def test_a_samples_own_uncertainty_widens_its_band_without_counting_twice() -> None:
    """Learned samples whose spread is all their own uncertainty (an estimate of known
    error) leave no intrinsic spread: a sample as uncertain as they were is judged on
    that, a more uncertain one on more, a certain one on the floor."""
    rng = random.Random(4)
    d = DeviationDetector(("r",), warmup=50, min_std={"r": 0.05}, uncertainty={"r": "r_sd"})
    for _ in range(2000):
        d.learn_one({"r": 1.0 + rng.gauss(0.0, 0.3), "r_sd": 0.3})
    as_learned = d.deviations({"r": 2.5, "r_sd": 0.3})["r"]
    assert as_learned == pytest.approx(1.5 / 0.3, rel=0.1)  # not 1.5 / hypot(0.3, 0.3)
    assert d.deviations({"r": 2.5, "r_sd": 0.6})["r"] < as_learned / 1.5
    assert d.deviations({"r": 2.5, "r_sd": 0.01})["r"] > 3 * as_learned
    assert d.deviations({"r": 2.5})["r"] == pytest.approx(as_learned, rel=0.1)  # no sd: as ever
    clone = pickle.loads(pickle.dumps(d))
    assert clone.deviations({"r": 2.5, "r_sd": 0.6}) == d.deviations({"r": 2.5, "r_sd": 0.6})


def test_a_deviation_detector_pickled_before_uncertainty_existed_still_works() -> None:
    d = DeviationDetector(("r",), warmup=5)
    for i in range(10):
        d.learn_one({"r": 1.0 + i % 2 * 0.1})
    del d.__dict__["uncertainty"], d.__dict__["_learned_var"]  # as an older snapshot
    old = pickle.loads(pickle.dumps(d))
    assert old.deviations({"r": 2.0, "r_sd": 1.0}) == d.deviations({"r": 2.0})
    old.learn_one({"r": 1.0})
    assert DeviationDetector._learned_var == {}  # the class default stays untouched
