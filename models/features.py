"""Per-connector physics features from successive readings, in telemetry time.

A healthy connector's temperature rises with the power it carries and falls back to the
ambient when idle; its voltage sags a little under load, evenly on every phase; it
delivers about what it offers; and its energy register grows by the integral of its
power. Each fault of the fault library bends one of these relations, so each becomes a
feature that is near a fixed value on a healthy connector whatever the weather, the
load or the station model:

* ``temperature_rise_c``: temperature - ambient (the idle temperature, moved along the
  connector's day profile, bridged across hours without idle readings; an idle reading
  hours after the last one replaces it rather than nudging it); overheating;
* ``temperature_rise_c_per_kw``: that rise per kW, under load near the run's peak power
  (at least ``NEAR_PEAK`` of it); overheating. In a taper the power falls to a tenth
  while the ambient estimate (the last idle temperature, often hours old on a busy
  connector) is a few degrees off: divided by one kW instead of eleven, that error
  looked like a connector three times too hot. It comes with
  ``temperature_rise_c_per_kw_sd``, the standard deviation the ambient estimate's age
  gives it (:meth:`ConnectorFeatures.ambient_sd_at` over the power), which the detector
  adds to the baseline's spread: the weather moves off the day profile while a
  connector charges for hours, and nothing in its own telemetry tells that from a hot
  contact. A fresher idle temperature of another connector of the same station (the
  ``neighbour`` of :meth:`ConnectorFeatures.update`: it measures the ambient while this
  one charges) replaces an older own one;
* ``voltage_drop_ratio``: (idle voltage - loaded voltage) / idle voltage; contactor wear;
* ``phase_voltage_spread_ratio``: (max - min phase voltage) / mean, under load; contactor
  wear, phase loss;
* ``voltage_deviation_ratio``: (mean phase voltage - 230 V) / 230 V; grid sags and swells;
* ``delivered_ratio``: power / offered power, under load, in the first
  ``EARLY_SESSION`` of a run under load; cable damage, derating. Later in a session a
  healthy EV tapers (above ~80 % state of charge it draws less and less of the offer),
  and a connector cannot tell that from a damaged cable; early on every EV that
  charges draws what it was offered;
* ``register_ratio``: register increase / integral of power since the last reading, both
  under load; meter faults (the register rule reads it on every such pair);
* ``load_change_ratio``: |power - last power| / the larger, both under load: how steady
  the load was over the register ratio's interval. The trapezoid between two power
  samples misses the curve of a taper by several percent (the register sees the true
  curve), so the connector model judges the register ratio at a steady load only.

Features that a reading cannot support (no temperature, idle, first reading) are left
out of its vector; detectors impute them. Only the readings' own timestamps are used,
so a replay at any speed gives the same features. The state is a few floats, so it
snapshots cheaply with the flow.

>>> from datetime import UTC, datetime, timedelta
>>> t = datetime(2026, 7, 1, 12, tzinfo=UTC)
>>> f = ConnectorFeatures()
>>> f.update(Reading(time=t, energy_wh=1000.0, power_w=0.0, voltages_v=(232.0,),
...     temperature_c=25.0))
{'voltage_deviation_ratio': 0.00869...}
>>> x = f.update(Reading(time=t + timedelta(minutes=1), energy_wh=1000.0, power_w=11000.0,
...     offered_w=11000.0, voltages_v=(230.0,), temperature_c=36.0))
>>> x["temperature_rise_c_per_kw"], round(x["voltage_drop_ratio"], 4), x["delivered_ratio"]
(1.0, 0.0086, 1.0)
>>> x = f.update(Reading(time=t + timedelta(minutes=2), energy_wh=1183.0, power_w=11000.0))
>>> round(x["register_ratio"], 3)
0.998
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from models.readings import Reading

NOMINAL_VOLTAGE_V = 230.0  # EN 50160 low-voltage nominal; +-10 % is the normal band
LOAD_W = 1000.0  # at least this much flows: "under load"
IDLE_W = 100.0  # at most this much flows: "idle" (standby consumption, meter noise)
MIN_INTEGRAL_WH = 1.0  # below this the register's 1 Wh resolution makes the ratio noise
# How long after power starts flowing delivered/offered is judged: an EV arriving at up
# to 60 % state of charge reaches its taper (80 %) after ~20 minutes at the fastest.
EARLY_SESSION = timedelta(minutes=20)
# How fast an idle temperature replaces the ambient: a connector busy for hours has its
# last idle reading from the morning, and the next one (hours later) is the ambient now,
# not a tenth of the way towards it. Within a stretch of idle readings minutes apart the
# weight stays near ``baseline_weight`` and smooths the sensor's noise.
AMBIENT_TAU = timedelta(minutes=30)
NEAR_PEAK = 0.8  # share of the run's peak power from which the rise per kW is judged
# The ambient estimate's error: an idle reading's own (sensor noise, the day profile's
# interpolation) and a variance that grows with its age as the weather leaves the day
# profile. The growth is learned from the connector's own idle readings after gaps of
# at least ``DRIFT_MIN_GAP`` (shorter gaps show the sensor's noise, not the weather):
# each one's miss of the estimate, squared, per hour of age. The prior and the floor
# are a few degrees over a day (a front, a sunny afternoon, a cold night).
AMBIENT_SENSOR_SD_C = 0.5
AMBIENT_DRIFT_PRIOR_C2_PER_H = 1.0
AMBIENT_DRIFT_FLOOR_C2_PER_H = 0.5
AMBIENT_DRIFT_WEIGHT = 0.05  # EW mean weight of one such miss
DRIFT_MIN_GAP = timedelta(hours=1)
# The day profile's move is itself uncertain: its hourly bins were learned on different
# days, whose weather differs by degrees, so a move of several degrees between two bins
# is partly the difference between those days, not the hour's.
PROFILE_MOVE_SHARE = 0.5

Neighbour = tuple[datetime, float]  # another connector's idle temperature, as of then

FEATURES = (
    "temperature_rise_c",
    "temperature_rise_c_per_kw",
    "voltage_drop_ratio",
    "phase_voltage_spread_ratio",
    "voltage_deviation_ratio",
    "delivered_ratio",
    "register_ratio",
)


@dataclass(slots=True)
class ConnectorFeatures:
    """The feature state of one connector: the idle baselines and the last reading."""

    baseline_weight: float = 0.1  # EW mean weight of one idle reading
    profile_weight: float = 0.05  # EW mean weight of one idle reading in its hour of day
    ambient_c: float | None = None  # the idle temperature lately...
    ambient_time: datetime | None = None  # ...as of then
    ambient_profile: list[float | None] = field(default_factory=lambda: [None] * 24)
    idle_voltage_v: float | None = None
    loaded_since: datetime | None = None  # the start of the current run under load
    last: Reading | None = None
    run_peak_w: float = 0.0  # the highest power of the current run under load
    # Last, so that older snapshots' fields keep their places.
    ambient_drift_c2_per_h: float = AMBIENT_DRIFT_PRIOR_C2_PER_H
    neighbour: Neighbour | None = None  # the freshest idle reading of another connector

    def update(self, reading: Reading, neighbour: Neighbour | None = None) -> dict[str, float]:
        """The features of ``reading``; folds it into the baselines. ``neighbour``: the
        latest idle temperature of another connector of the same station, an ambient
        reading of its own when fresher than this connector's. A reading that is not
        later than the last one (a late or repeated message) gives only the features
        that need no history and leaves the state alone."""
        if neighbour is not None and (self.neighbour is None or neighbour[0] > self.neighbour[0]):
            self.neighbour = neighbour
        in_order = self.last is None or reading.time > self.last.time
        if in_order:
            loaded = reading.power_w is not None and reading.power_w >= LOAD_W
            if not loaded:
                self.loaded_since = None
                self.run_peak_w = 0.0
            else:
                if self.loaded_since is None:
                    self.loaded_since = reading.time
                self.run_peak_w = max(self.run_peak_w, reading.power_w or 0.0)
        features = self._instant(reading)
        if in_order:
            features.update(self._since_last(reading))
            self._learn_baselines(reading)
            self.last = reading
        return features

    def ambient_at(self, time: datetime) -> float | None:
        """The ambient temperature at ``time``: the last idle temperature (this
        connector's, or a neighbour's when fresher), moved along the connector's day
        profile (idle temperature by hour of day, interpolated) from when it was
        measured to ``time``. A connector charging through a hot afternoon is compared
        with the afternoon, not with the morning before it."""
        source = self._ambient_source()
        if source is None:
            return None
        then, value = source
        now_profile, then_profile = self._profile_at(time), self._profile_at(then)
        if now_profile is None or then_profile is None:
            return value
        return value + (now_profile - then_profile)

    def ambient_sd_at(self, time: datetime) -> float | None:
        """The standard deviation of :meth:`ambient_at`: the sensor's, the weather's drift
        off the day profile since the idle reading it starts from, and a share of the
        move along the profile (``PROFILE_MOVE_SHARE``).

        >>> from datetime import UTC, datetime, timedelta
        >>> f = ConnectorFeatures()
        >>> t = datetime(2026, 7, 1, 12, tzinfo=UTC)
        >>> _ = f.update(Reading(time=t, power_w=0.0, temperature_c=20.0))
        >>> [round(f.ambient_sd_at(t + timedelta(hours=h)), 2) for h in (0, 1, 4)]
        [0.5, 1.12, 2.06]
        """
        source = self._ambient_source()
        if source is None:
            return None
        age_h = max(0.0, (time - source[0]).total_seconds() / 3600.0)
        variance = AMBIENT_SENSOR_SD_C**2 + self.ambient_drift_c2_per_h * age_h
        now_profile, then_profile = self._profile_at(time), self._profile_at(source[0])
        if now_profile is not None and then_profile is not None:
            variance += (PROFILE_MOVE_SHARE * (now_profile - then_profile)) ** 2
        return math.sqrt(variance)

    def _ambient_source(self) -> Neighbour | None:
        """The idle reading the ambient starts from: the own ambient, or the neighbour's
        idle temperature when it is fresher (the own profile moves either)."""
        own = (
            None
            if self.ambient_c is None or self.ambient_time is None
            else (self.ambient_time, self.ambient_c)
        )
        neighbour = self.neighbour
        if neighbour is not None and (own is None or neighbour[0] > own[0]):
            return neighbour
        return own

    def _profile_at(self, time: datetime) -> float | None:
        """The day profile at ``time``: bins hold the mean over their hour, i.e. the
        value at half past; between them linear, across hours without an idle reading
        (a connector busy every afternoon) from the nearest known bin on each side, so
        the ambient does not jump back to a stale value when one bin is missing."""
        hours = time.hour + time.minute / 60.0 - 0.5
        before = after = None
        for back in range(24):
            bin_hours = math.floor(hours) - back
            if self.ambient_profile[bin_hours % 24] is not None:
                before = bin_hours
                break
        if before is None:
            return None
        for ahead in range(24):
            bin_hours = math.floor(hours) + 1 + ahead
            if self.ambient_profile[bin_hours % 24] is not None:
                after = bin_hours
                break
        a = self.ambient_profile[before % 24]
        b = self.ambient_profile[after % 24] if after is not None else a
        assert a is not None
        assert b is not None
        if after is None or after == before:
            return a
        return a + (b - a) * (hours - before) / (after - before)

    def _instant(self, reading: Reading) -> dict[str, float]:
        features: dict[str, float] = {}
        power = reading.power_w
        loaded = power is not None and power >= LOAD_W
        voltages = reading.voltages_v
        if voltages:
            mean_v = sum(voltages) / len(voltages)
            features["voltage_deviation_ratio"] = (mean_v - NOMINAL_VOLTAGE_V) / NOMINAL_VOLTAGE_V
            if loaded and len(voltages) > 1 and mean_v > 0:
                features["phase_voltage_spread_ratio"] = (max(voltages) - min(voltages)) / mean_v
            if loaded and self.idle_voltage_v:
                features["voltage_drop_ratio"] = (
                    self.idle_voltage_v - mean_v
                ) / self.idle_voltage_v
        ambient = self.ambient_at(reading.time)
        if reading.temperature_c is not None and ambient is not None:
            rise = reading.temperature_c - ambient
            features["temperature_rise_c"] = rise
            if loaded and power is not None and power >= NEAR_PEAK * self.run_peak_w:
                kw = power / 1000.0
                features["temperature_rise_c_per_kw"] = rise / kw
                sd = self.ambient_sd_at(reading.time)
                if sd is not None:
                    features["temperature_rise_c_per_kw_sd"] = sd / kw
        early = self.loaded_since is not None and reading.time - self.loaded_since <= EARLY_SESSION
        offered = reading.offered_w
        if loaded and early and power is not None and offered and offered >= LOAD_W:
            features["delivered_ratio"] = power / offered
        return features

    def _since_last(self, reading: Reading) -> dict[str, float]:
        last = self.last
        if last is None or last.energy_wh is None or reading.energy_wh is None:
            return {}
        # Under load at both ends only: power is sampled at instants, and across a start
        # or stop the trapezoid misses the ramp the register saw.
        if last.power_w is None or reading.power_w is None:
            return {}
        if last.power_w < LOAD_W or reading.power_w < LOAD_W:
            return {}
        hours = (reading.time - last.time).total_seconds() / 3600.0
        integral_wh = (last.power_w + reading.power_w) / 2.0 * hours
        if integral_wh < MIN_INTEGRAL_WH:
            return {}
        change = abs(reading.power_w - last.power_w) / max(reading.power_w, last.power_w)
        return {
            "register_ratio": (reading.energy_wh - last.energy_wh) / integral_wh,
            "load_change_ratio": change,
        }

    def _learn_baselines(self, reading: Reading) -> None:
        if reading.power_w is None or reading.power_w > IDLE_W:
            return
        if reading.temperature_c is not None:
            self._learn_drift(reading.time, reading.temperature_c)
            weight = self.baseline_weight
            if self.ambient_time is not None:
                stale = (reading.time - self.ambient_time) / AMBIENT_TAU
                weight = max(weight, 1.0 - math.exp(-stale))
            self.ambient_c = _ew_mean(self.ambient_c, reading.temperature_c, weight)
            self.ambient_time = reading.time
            hour = reading.time.hour
            learned = self.ambient_profile[hour]
            weight = self.profile_weight
            self.ambient_profile[hour] = _ew_mean(learned, reading.temperature_c, weight)
        if reading.voltages_v:
            mean_v = sum(reading.voltages_v) / len(reading.voltages_v)
            self.idle_voltage_v = _ew_mean(self.idle_voltage_v, mean_v, self.baseline_weight)

    def _learn_drift(self, time: datetime, temperature: float) -> None:
        """How far the weather left the day profile: an idle reading an hour or more after
        the one the estimate starts from, against the estimate, per hour of its age."""
        source = self._ambient_source()
        if source is None or time - source[0] < DRIFT_MIN_GAP:
            return
        predicted = self.ambient_at(time)
        assert predicted is not None
        age_h = (time - source[0]).total_seconds() / 3600.0
        miss = max(0.0, (temperature - predicted) ** 2 - AMBIENT_SENSOR_SD_C**2) / age_h
        learned = _ew_mean(self.ambient_drift_c2_per_h, miss, AMBIENT_DRIFT_WEIGHT)
        self.ambient_drift_c2_per_h = max(AMBIENT_DRIFT_FLOOR_C2_PER_H, learned)


def _ew_mean(mean: float | None, value: float, weight: float) -> float:
    return value if mean is None else mean + weight * (value - mean)


# Where each feature can physically be on a connector that still works at all: the
# scaling band for HalfSpaceTrees (values beyond are clipped to the edge).
PHYSICAL_RANGE: dict[str, tuple[float, float]] = {
    "temperature_rise_c": (-10.0, 60.0),
    "temperature_rise_c_per_kw": (-2.0, 10.0),
    "voltage_drop_ratio": (-0.05, 0.15),
    "phase_voltage_spread_ratio": (0.0, 0.15),
    "voltage_deviation_ratio": (-0.3, 0.3),
    "delivered_ratio": (0.0, 1.2),
    "register_ratio": (0.0, 2.0),
}

# Fixed limits a rule-based CSMS would use (datasheet and EN 50160 values): the
# static-threshold baseline of the evaluation, not a detector of ours.
STATIC_LIMITS: dict[str, tuple[float, float]] = {
    "temperature_rise_c": (-math.inf, 40.0),
    "temperature_rise_c_per_kw": (-math.inf, 4.0),
    "voltage_drop_ratio": (-math.inf, 0.05),
    "phase_voltage_spread_ratio": (0.0, 0.05),
    "voltage_deviation_ratio": (-0.10, 0.10),
    "delivered_ratio": (0.5, math.inf),
    "register_ratio": (0.8, 1.2),
}
