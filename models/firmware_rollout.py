"""Firmware rollouts, the pure part: waves, the maintenance window, a station's state
from its FirmwareStatusNotifications and command outcome, the wave's decision and the
rollout's state machine. No I/O; time is a parameter.

>>> plan_waves(["A", "B", "C", "D", "E"], 2, "count")
[['A', 'B'], ['C', 'D'], ['E']]
>>> plan_waves(["A", "B", "C", "D", "E"], 50, "percent")
[['A', 'B', 'C'], ['D', 'E']]
>>> from datetime import UTC, datetime
>>> night = Window(start_hour=22, end_hour=4, days=frozenset(range(7)), zone="Europe/Berlin")
>>> window_open(night, datetime(2026, 12, 7, 22, 30, tzinfo=UTC), "UTC")  # 23:30 Berlin
True
>>> window_open(night, datetime(2026, 12, 7, 12, 0, tzinfo=UTC), "UTC")
False
>>> station_state("sent", ["Downloading", "Downloaded", "Installing"], None)
'installing'
>>> wave_decision(["installed", "failed", "failed"], 1, "count")
'pause'
>>> wave_decision(["installed", "failed", "installing"], Decimal("0.5"), "fraction")
'wait'
>>> transition("running", "pause")
'paused'
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo

WaveUnit = Literal["count", "percent"]
ThresholdUnit = Literal["count", "fraction"]
SITE_ZONE = "site"  # a window in the local time of each station's site

# FirmwareStatusNotification statuses (1.6 and 2.0.1) -> a station's rollout state.
_DOWNLOADING = {"Downloading", "Downloaded", "DownloadScheduled", "DownloadPaused",
                "SignatureVerified"}  # fmt: skip
_INSTALLING = {"Installing", "InstallRebooting", "InstallScheduled"}
_FAILED = {"DownloadFailed", "InstallationFailed", "InvalidSignature",
           "InstallVerificationFailed"}  # fmt: skip
FINAL_STATES = frozenset({"installed", "failed", "timed_out"})
FAILED_STATES = frozenset({"failed", "timed_out"})
# Command outcomes that mean the station will not update.
FAILED_COMMANDS = frozenset({"rejected", "failed", "timed_out", "expired", "offline"})


def plan_waves(stations: Sequence[str], size: int, unit: WaveUnit) -> list[list[str]]:
    """The stations in waves of ``size`` (a count, or a percentage of all, rounded up;
    at least one station per wave), in the order given."""
    per_wave = size if unit == "count" else math.ceil(len(stations) * size / 100)
    per_wave = max(1, per_wave)
    return [list(stations[i : i + per_wave]) for i in range(0, len(stations), per_wave)]


@dataclass(frozen=True, slots=True)
class Window:
    """Open from ``start_hour`` to ``end_hour`` (exclusive; past midnight when start >
    end; equal: all day) on ``days`` (0 = Monday, the day the window opens), in
    ``zone`` (an IANA zone, or ``site``: the station's site's zone)."""

    start_hour: int
    end_hour: int
    days: frozenset[int]
    zone: str = "UTC"


def window_open(window: Window | None, now: datetime, site_zone: str) -> bool:
    """Whether ``window`` is open at ``now`` (tz-aware) for a station whose site is in
    ``site_zone``; no window: always."""
    if window is None:
        return True
    local = now.astimezone(ZoneInfo(site_zone if window.zone == SITE_ZONE else window.zone))
    start, end, hour = window.start_hour, window.end_hour, local.hour
    if start == end:
        return local.weekday() in window.days
    if start < end:
        return start <= hour < end and local.weekday() in window.days
    if hour >= start:
        return local.weekday() in window.days
    return hour < end and (local - timedelta(days=1)).weekday() in window.days


def station_state(state: str, statuses: Iterable[str], command_status: str | None) -> str:
    """A sent station's state after its notifications since the command (oldest first)
    and the command's outcome; a final state stays."""
    if state in FINAL_STATES:
        return state
    if command_status in FAILED_COMMANDS:
        return "failed"
    for status in statuses:
        if status in _DOWNLOADING:
            state = "downloading"
        elif status in _INSTALLING:
            state = "installing"
        elif status == "Installed":
            return "installed"
        elif status in _FAILED:
            return "failed"
    return state


def timed_out(state: str, sent_at: datetime | None, now: datetime, timeout_s: float) -> bool:
    """A station sent the command ``timeout_s`` ago that has not finished."""
    return (
        state not in FINAL_STATES
        and sent_at is not None
        and now - sent_at > timedelta(seconds=timeout_s)
    )


def threshold_exceeded(states: Sequence[str], threshold: Decimal, unit: ThresholdUnit) -> bool:
    failures = sum(1 for s in states if s in FAILED_STATES)
    if unit == "count":
        return failures > threshold
    return bool(states) and Decimal(failures) / len(states) > threshold


def wave_decision(
    states: Sequence[str], threshold: Decimal | int, unit: ThresholdUnit, *, waived: bool = False
) -> Literal["pause", "next", "wait"]:
    """pause: the wave's failures exceed the threshold (at once, not at the wave's end),
    unless ``waived`` (resumed past them); next: every station of the wave is final;
    wait: otherwise.

    >>> wave_decision(["failed", "failed", "installed"], 1, "count", waived=True)
    'next'
    """
    if not waived and threshold_exceeded(states, Decimal(threshold), unit):
        return "pause"
    return "next" if all(s in FINAL_STATES for s in states) else "wait"


RolloutStatus = Literal["pending", "running", "paused", "completed", "cancelled"]
_TRANSITIONS: dict[tuple[str, str], RolloutStatus] = {
    ("pending", "start"): "running",
    ("running", "pause"): "paused",
    ("pending", "pause"): "paused",
    ("paused", "resume"): "running",
    ("running", "complete"): "completed",
    ("pending", "cancel"): "cancelled",
    ("running", "cancel"): "cancelled",
    ("paused", "cancel"): "cancelled",
}


class InvalidTransition(ValueError):
    """The rollout cannot take this step from its status (a 409 for the caller)."""


def transition(status: str, event: str) -> RolloutStatus:
    try:
        return _TRANSITIONS[(status, event)]
    except KeyError:
        raise InvalidTransition(f"a {status} rollout cannot {event}") from None
