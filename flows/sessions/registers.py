"""Energy registers of one transaction: which readings count and how they add up.

Pure, no I/O. :mod:`flows.sessions.samples` feeds the normalised meter samples of
each message (:func:`register_points`, :func:`power_points`) into a
:class:`RegisterFold` per transaction and asks it for the energy.

Which readings are register readings
------------------------------------
* Measurand ``Energy.Active.Import.Register`` (a bare sampledValue is one: the
  normaliser fills in the spec defaults), location ``Outlet`` (the connector side;
  ``Inlet``/``EV``/``Cable``/``Body`` readings are stored as samples, never billed),
  unit ``Wh`` or ``kWh`` times ``10^multiplier`` (:func:`bus.measurands.to_wh`);
  other units are not registers.
* Readings of EVSE/connector ``0`` (the station's main meter) never count for a
  connector's transaction (the caller drops them).
* Per timestamp: the readings without phase are the register. Several of them
  (e.g. a raw Wh value and a signed kWh value side by side, or the same value in
  ``Sample.Periodic`` and ``Sample.Clock``) count once: values that agree within
  the coarser one's resolution are one reading (the finest is kept); values that
  disagree give the lowest with reason ``conflicting_register_values``.
  Only when there is no phase-less reading, the per-phase readings (``L1``,
  ``L2``, ``L3``, or ``L1-N`` ...; one per phase) are summed; line-to-line readings
  (``L1-L2``) belong to no phase (:func:`bus.measurands.phase_of`).
* A message without any register reading (only SoC, only power ...) adds no
  point and so never changes the running total.

How readings add up (:class:`RegisterFold`)
-------------------------------------------
Points are folded in time order (the start register first, the stop register
last). Between two points a step is *plausible* when ``0 <= step <= cap(dt)`` with
``cap(dt) = max_power_w x dt x (1 + power_slack) + step_tolerance_wh``. A point that
is not plausible is held back until the next point decides:

* the next point is plausible against the point *before* it: it was a one-off
  glitch -> ignored, reason ``register_outlier``;
* otherwise the step is real, classified against the previous point:

  - backwards from near a wrap-around value (>= 90 % of 10^5 ... 10^12 Wh, 2^31 or
    2^32) to a small value, and plausible across the wrap -> ``register_rollover``,
    counted across the wrap;
  - backwards to a value that could have been counted from 0 in the time (<= cap)
    and below half the previous value -> ``register_reset`` (station reboot,
    per-transaction meter), counted from 0;
  - backwards otherwise -> ``register_decreased``, counting restarts there (the
    drop is not subtracted);
  - forwards by more than the cap -> ``register_jump`` (``start_register_implausible``
    when the jump is the first step after the start register, e.g. an offline
    ``Transaction.Begin`` of 0 before a lifetime register), not counted.

* A final stop register below an earlier sample (but not below the current
  segment's start) is trusted over the sample (``sample_above_stop``): the signed
  stop register is authoritative and we never bill above it.

The energy is the sum of the counted steps (never negative); all arithmetic in
Decimal Wh, floored to whole Wh only by the caller.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal

from bus.measurands import ENERGY_REGISTER, POWER, energy_factor, phase_of, to_w, to_wh
from bus.normalized import MeterSample
from bus.sessions import QualityReason

BILLED_LOCATIONS = frozenset({"Outlet"})
_ROLLOVER_MODULI = (*(Decimal(10) ** k for k in range(5, 13)), Decimal(2**31), Decimal(2**32))
_NEAR_WRAP = Decimal("0.9")
_AFTER_WRAP = Decimal("0.1")
_RESET_RATIO = Decimal("0.5")


@dataclass(frozen=True, slots=True)
class RegisterRules:
    """Plausibility limits (see module docstring)."""

    max_power_w: int = 350_000  # the most any connector can draw (DC HPC)
    power_slack: Decimal = Decimal("0.1")
    step_tolerance_wh: Decimal = Decimal(10)

    def cap(self, dt: timedelta) -> Decimal:
        key = (self, dt)  # sample intervals repeat: memoised (a pure function of both)
        cap = _CAPS.get(key)
        if cap is None:
            seconds = max(Decimal(0), Decimal(str(dt.total_seconds())))
            cap = (
                Decimal(self.max_power_w) * seconds / 3600 * (1 + self.power_slack)
                + self.step_tolerance_wh
            )
            if len(_CAPS) >= 4096:
                _CAPS.clear()
            _CAPS[key] = cap
        return cap


_CAPS: dict[tuple[RegisterRules, timedelta], Decimal] = {}


Point = tuple[datetime, Decimal]


@functools.lru_cache(maxsize=1024)
def _resolution(places: int, unit: str, multiplier: int) -> Decimal:
    factor = energy_factor(unit, multiplier)
    return Decimal(1).scaleb(places) * factor if factor is not None else Decimal(1)


def _quantum(sample: MeterSample) -> Decimal:
    """The resolution of a reading in Wh (e.g. 1 Wh for '12.345' kWh)."""
    exponent = sample.value.as_tuple().exponent
    places = exponent if isinstance(exponent, int) else 0
    return _resolution(places, sample.unit, sample.unit_multiplier)


def _combine(values: list[tuple[Decimal, MeterSample]]) -> tuple[Decimal, bool]:
    """One reading from several (value Wh, sample); True when they conflict."""
    if len(values) == 1:
        return values[0][0], False
    quantified = sorted(
        ((wh, _quantum(s)) for wh, s in values), key=lambda vq: vq[1]
    )  # finest first
    best, best_q = quantified[0]
    conflict = False
    lowest = best
    for value, q in quantified[1:]:
        if abs(value - best) > max(q, best_q):
            conflict = True
        lowest = min(lowest, value)
    return (lowest if conflict else best), conflict


def register_points(samples: Iterable[MeterSample]) -> tuple[list[Point], bool]:
    """The register readings in one message's samples (already filtered to one
    transaction, main-meter readings removed), one per timestamp; and whether
    conflicting duplicate values were seen."""
    # Resolutions (_quantum) are only needed to compare duplicates of one instant.
    totals: dict[datetime, list[tuple[Decimal, MeterSample]]] = {}
    phases: dict[datetime, dict[str, Decimal]] | None = None
    for s in samples:
        if s.measurand != ENERGY_REGISTER or s.location not in BILLED_LOCATIONS:
            continue
        wh = to_wh(s.value, s.unit, s.unit_multiplier)
        if wh is None:
            continue
        if s.phase is None:
            same = totals.get(s.timestamp)
            if same is None:
                totals[s.timestamp] = [(wh, s)]
            else:
                same.append((wh, s))
        else:
            line = phase_of(s.phase)
            if line is None:
                continue  # line-to-line or neutral: no share of the register
            if phases is None:
                phases = {}
            phases.setdefault(s.timestamp, {}).setdefault(line, wh)
    if phases is None:
        if len(totals) == 1:  # the usual message: one register reading
            [(t, values)] = totals.items()
            value, conflict = _combine(values)
            return [(t, value)], conflict
        phases = {}
    points: list[Point] = []
    conflict = False
    for t in sorted(set(totals) | set(phases)):
        if t in totals:
            value, clash = _combine(totals[t])
            conflict = conflict or clash
            points.append((t, value))
        else:
            points.append((t, sum(phases[t].values(), Decimal(0))))
    return points, conflict


def power_points(samples: Iterable[MeterSample]) -> list[Point]:
    """Active import power in W per timestamp (phase-less, else phases summed)."""
    totals: dict[datetime, Decimal] = {}
    phases: dict[datetime, dict[str, Decimal]] = {}
    for s in samples:
        if s.measurand != POWER or s.location not in BILLED_LOCATIONS:
            continue
        watts = to_w(s.value, s.unit, s.unit_multiplier)
        if watts is None:
            continue
        if s.phase is None:
            totals.setdefault(s.timestamp, watts)
        else:
            line = phase_of(s.phase)
            if line is not None:
                phases.setdefault(s.timestamp, {}).setdefault(line, watts)
    return [
        (t, totals[t] if t in totals else sum(phases[t].values(), Decimal(0)))
        for t in sorted(set(totals) | set(phases))
    ]


def integrate_power(points: Sequence[Point]) -> Decimal | None:
    """Trapezoidal energy (Wh) under power points (W); None with fewer than two."""
    ordered = sorted(points)
    if len(ordered) < 2:
        return None
    total = Decimal(0)
    for (t0, p0), (t1, p1) in itertools.pairwise(ordered):
        hours = Decimal(str((t1 - t0).total_seconds())) / 3600
        total += max(Decimal(0), (p0 + p1) / 2) * hours
    return total


@dataclass(slots=True)
class RegisterFold:
    """Time-ordered fold of register points (module docstring). Push points in
    time order; :meth:`result` gives the energy with an optional final stop point
    without changing the fold."""

    rules: RegisterRules = field(default_factory=RegisterRules)
    seg_start: Decimal | None = None
    base: Decimal | None = None
    base_t: datetime | None = None
    completed: Decimal = Decimal(0)
    pending: Point | None = None
    at_start: bool = False  # base is the start register, no sample accepted since
    reasons: tuple[QualityReason, ...] = ()
    points: int = 0

    def _flag(self, reason: QualityReason) -> None:
        if reason not in self.reasons:
            self.reasons = (*self.reasons, reason)

    def _plausible(self, t: datetime, v: Decimal) -> bool:
        assert self.base is not None
        assert self.base_t is not None
        step = v - self.base
        return Decimal(0) <= step <= self.rules.cap(t - self.base_t)

    def _accept(self, t: datetime, v: Decimal) -> None:
        # Still "at the start" while readings repeat the start value (e.g. the
        # Transaction.Begin sample next to the start register).
        self.at_start = self.at_start and v == self.base
        self.base, self.base_t = v, t

    def start(self, t: datetime, v: Decimal) -> None:
        """The start register (before any sample)."""
        self.seg_start = self.base = v
        self.base_t = t
        self.at_start = True
        self.points += 1

    def push(self, t: datetime, v: Decimal) -> None:
        self.points += 1
        if self.base is None:
            self.seg_start = self.base = v
            self.base_t = t
            return
        if self.pending is not None:
            if self._plausible(t, v):
                self._flag(QualityReason.REGISTER_OUTLIER)
                self.pending = None
                self._accept(t, v)
                return
            self._resolve(final=False)
        if self._plausible(t, v):
            self._accept(t, v)
        else:
            self.pending = (t, v)

    def _resolve(self, *, final: bool) -> None:
        """Apply the held-back point as a real step."""
        assert self.pending is not None
        assert self.base is not None
        assert self.seg_start is not None
        assert self.base_t is not None
        t, v = self.pending
        self.pending = None
        cap = self.rules.cap(t - self.base_t)
        base, seg = self.base, self.seg_start
        if v > base:
            self._flag(
                QualityReason.START_REGISTER_IMPLAUSIBLE
                if self.at_start
                else QualityReason.REGISTER_JUMP
            )
            self.completed += base - seg
            self.seg_start = v
        else:
            wrap = next(
                (
                    m
                    for m in _ROLLOVER_MODULI
                    if _NEAR_WRAP * m <= base < m and v < _AFTER_WRAP * m and m - base + v <= cap
                ),
                None,
            )
            if wrap is not None:
                self._flag(QualityReason.REGISTER_ROLLOVER)
                self.completed += (base - seg) + (wrap - base)
                self.seg_start = Decimal(0)
            elif v <= cap and v < base * _RESET_RATIO:
                self._flag(QualityReason.REGISTER_RESET)
                self.completed += base - seg
                self.seg_start = Decimal(0)
            elif final and v >= seg:
                self._flag(QualityReason.SAMPLE_ABOVE_STOP)  # trust the signed stop register
            else:
                self._flag(QualityReason.REGISTER_DECREASED)
                self.completed += base - seg
                self.seg_start = v
        self._accept(t, v)

    def result(self, stop: Point | None = None) -> tuple[Decimal | None, tuple[QualityReason, ...]]:
        """(energy in Wh or None with fewer than two points, reasons)."""
        if stop is None and self.pending is None:  # nothing to resolve: no copy needed
            if self.points < 2 or self.base is None or self.seg_start is None:
                return None, self.reasons
            return self.completed + self.base - self.seg_start, self.reasons
        fold = replace(self)
        if stop is not None:
            fold.push(*stop)
        if fold.pending is not None:
            fold._resolve(final=stop is not None)
        if fold.points < 2 or fold.base is None or fold.seg_start is None:
            return None, fold.reasons
        return fold.completed + fold.base - fold.seg_start, fold.reasons

    @property
    def last(self) -> Decimal | None:
        """The latest accepted register value."""
        return self.base


def fold_points(
    rules: RegisterRules, start: Point | None, samples: Iterable[Point]
) -> RegisterFold:
    """A fold over a start point and samples in any order (sorted by time here)."""
    fold = RegisterFold(rules)
    if start is not None:
        fold.start(*start)
    for t, v in sorted(samples):
        fold.push(t, v)
    return fold
