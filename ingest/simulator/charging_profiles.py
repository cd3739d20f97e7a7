"""The limit a simulated station obeys: its installed charging profiles resolved at a
simulated instant, as OCPP 1.6 (3.13) and 2.0.1 (K) describe it. Pure (no I/O, no clock).

- A profile is in force at ``t`` when it has taken effect (``effective_from``: received
  plus the EV's reaction delay) and no newer profile in its place has (``superseded_at``),
  ``t`` is inside its validity (``valid_from`` included,
  ``valid_to`` excluded) and inside its schedule (from the schedule's start, for
  ``duration_s`` when given). Its limit is the last period started by then.
- The schedule starts at ``start`` (``startSchedule``); a Relative profile at the
  transaction's start (or, without one, when it took effect); a Recurring one at
  ``start`` moved on by whole days or weeks to the latest such instant not after ``t``.
- On a connector, a TxProfile for the running transaction overrides the TxDefaultProfiles
  (on that connector or on connector 0). Within a purpose the highest stack level in force
  wins; on a tie, the profile on the connector itself before one on connector 0.
- A ChargePointMaxProfile (2.0.1 ChargingStationMaxProfile, connector 0) caps the whole
  station: the lowest of that cap and the connector's limit applies.

Limits are in W: the handlers convert A with the station's voltage and the period's
``numberPhases`` (default: the station's phases).

>>> from datetime import UTC, datetime, timedelta
>>> t0 = datetime(2026, 7, 1, 12, tzinfo=UTC)
>>> fail_safe = InstalledProfile(1, 0, 0, CHARGE_POINT_MAX, (Period(0, 11_000.0),), t0)
>>> default = InstalledProfile(2, 0, 0, TX_DEFAULT, (Period(0, 22_000.0),), t0)
>>> tx = InstalledProfile(3, 1, 1, TX, (Period(0, 4_140.0), Period(600, 8_280.0)), t0,
...     transaction_id="42")
>>> station_limit_w([fail_safe, default, tx], 1, t0 + timedelta(seconds=60), "42", None)
4140.0
>>> station_limit_w([fail_safe, default, tx], 1, t0 + timedelta(minutes=11), "42", None)
8280.0
>>> station_limit_w([fail_safe, default], 1, t0, None, None)  # the station cap
11000.0
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

CHARGE_POINT_MAX = "ChargePointMaxProfile"
TX_DEFAULT = "TxDefaultProfile"
TX = "TxProfile"
# 2.0.1 names the station cap ChargingStationMaxProfile: the same rule.
PURPOSES = {
    CHARGE_POINT_MAX: CHARGE_POINT_MAX,
    "ChargingStationMaxProfile": CHARGE_POINT_MAX,
    TX_DEFAULT: TX_DEFAULT,
    TX: TX,
}
_RECURRENCE = {"Daily": timedelta(days=1), "Weekly": timedelta(weeks=1)}


@dataclass(frozen=True, slots=True)
class Period:
    """A schedule period: from ``start_s`` seconds after the schedule's start, ``limit_w``."""

    start_s: float
    limit_w: float


@dataclass(frozen=True, slots=True)
class InstalledProfile:
    profile_id: int
    connector_id: int  # 0 = the station (every connector)
    stack_level: int
    purpose: str  # CHARGE_POINT_MAX, TX_DEFAULT or TX
    periods: tuple[Period, ...]  # by start_s, the first at 0
    effective_from: datetime  # received + the reaction delay
    kind: str = "Absolute"  # Absolute, Relative, Recurring
    start: datetime | None = None  # startSchedule
    duration_s: float | None = None
    recurrency: str | None = None  # Daily, Weekly (Recurring only)
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    transaction_id: str | None = None  # a TxProfile's transaction
    # Replaced by a newer profile: in force until that one takes effect.
    superseded_at: datetime | None = None

    def limit_at(self, at: datetime, tx_started_at: datetime | None) -> float | None:
        """This profile's limit at ``at`` (W), or None when it is not in force."""
        if at < self.effective_from:
            return None
        if self.superseded_at is not None and at >= self.superseded_at:
            return None
        if self.valid_from is not None and at < self.valid_from:
            return None
        if self.valid_to is not None and at >= self.valid_to:
            return None
        start = self._schedule_start(at, tx_started_at)
        offset = (at - start).total_seconds()
        if offset < 0 or (self.duration_s is not None and offset >= self.duration_s):
            return None
        limit = None
        for period in self.periods:
            if period.start_s <= offset:
                limit = period.limit_w
        return limit

    def _schedule_start(self, at: datetime, tx_started_at: datetime | None) -> datetime:
        if self.kind == "Relative":
            return tx_started_at or self.effective_from
        start = self.start or self.effective_from
        step = _RECURRENCE.get(self.recurrency or "")
        if self.kind == "Recurring" and step is not None and at >= start:
            start += step * ((at - start) // step)
        return start


def _winner(
    profiles: Iterable[InstalledProfile], at: datetime, tx_started_at: datetime | None, cid: int
) -> float | None:
    """The limit of the highest stack level in force (the connector's own on a tie)."""
    best: tuple[int, int] | None = None
    limit = None
    for profile in profiles:
        value = profile.limit_at(at, tx_started_at)
        if value is None:
            continue
        rank = (profile.stack_level, 1 if profile.connector_id == cid else 0)
        if best is None or rank > best:
            best, limit = rank, value
        elif rank == best and limit is not None:
            limit = min(limit, value)  # a tie the station should never hold: the safer
    return limit


def station_cap_w(
    profiles: Iterable[InstalledProfile], at: datetime, tx_started_at: datetime | None = None
) -> float | None:
    """The ChargePointMaxProfile limit in force on the whole station (None: none)."""
    caps = [p for p in profiles if p.purpose == CHARGE_POINT_MAX and p.connector_id == 0]
    return _winner(caps, at, tx_started_at, 0)


def connector_limit_w(
    profiles: Iterable[InstalledProfile],
    cid: int,
    at: datetime,
    transaction_id: str | None,
    tx_started_at: datetime | None,
) -> float | None:
    """The TxProfile / TxDefaultProfile limit on connector ``cid`` (None: none)."""
    mine = [p for p in profiles if p.connector_id in (0, cid)]
    if transaction_id is not None:
        tx = [
            p
            for p in mine
            if p.purpose == TX
            and p.connector_id == cid
            and p.transaction_id in (None, transaction_id)
        ]
        found = _winner(tx, at, tx_started_at, cid)
        if found is not None:
            return found
    return _winner([p for p in mine if p.purpose == TX_DEFAULT], at, tx_started_at, cid)


def station_limit_w(
    profiles: Iterable[InstalledProfile],
    cid: int,
    at: datetime,
    transaction_id: str | None,
    tx_started_at: datetime | None,
) -> float | None:
    """The lowest of the connector's limit and the station's cap; None when no profile
    limits connector ``cid`` at ``at``."""
    profiles = list(profiles)
    limits = [
        x
        for x in (
            connector_limit_w(profiles, cid, at, transaction_id, tx_started_at),
            station_cap_w(profiles, at, tx_started_at),
        )
        if x is not None
    ]
    return min(limits) if limits else None
