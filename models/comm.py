"""Communication degradation of one station: heartbeat gaps, reconnect flapping, boot
loops and offline (kind ``comm_degradation``, connector 0).

The signals are the gateway's: Heartbeat carries no station time (its fact is stamped
with the time received) and ``station.connection`` events carry the gateway's time
(``measured_at``). So gaps are measured in the gateway's clock, but relative to the
station's own heartbeat interval as learned in that same clock: in a compressed-time
replay the station's intervals shrink with its clock, and every threshold here is a
multiple of the learned interval or a count, so the same history gives the same
findings at any speed. Findings are stamped with ``stamp``, the station's clock (the
caller passes its latest telemetry time, or the event's own time when the station never
reported one), so alert times stay in telemetry time.

* interval: the median of the first ``learn_gaps`` heartbeat-to-heartbeat gaps with no
  other message in between (a station may skip heartbeats while it sends other
  messages), then an exponential average of such gaps within 0.5-1.5 intervals (a
  fault's gap is never learned). Gaps across a reconnect or boot are not learned.
* heartbeat gaps: a silence (no message at all) longer than ``gap_factor`` intervals
  is a gap; ``gaps_to_alert`` gaps within the window give a medium finding.
* flapping: ``reconnects_to_alert`` reconnects (online after having been seen before)
  within the window give a medium finding.
* boot loop: ``boots_to_alert`` BootNotifications within the window give a high one.
* offline: the station going offline is a high finding at once, unless the gateway
  says it went away itself (reason ``gateway ...``: stopped, lost), or the offline is
  from another replica than the one the station was last online at (a late sweep); a
  repeated offline changes nothing.
* the window is ``window_intervals`` learned intervals; until the interval is learned
  nothing leaves it, so a station that never stays connected long enough to learn it
  counts every reconnect and boot.
* clear: online again, stable (``stable_heartbeats`` heartbeats or ``stable_intervals``
  intervals since), and none of the counts at its threshold in the window.

>>> from datetime import UTC, datetime, timedelta
>>> t = datetime(2026, 7, 1, tzinfo=UTC)
>>> rule = CommRule()
>>> out = [r for i in range(8) for r in rule.message("CP1", t + timedelta(minutes=5 * i),
...     t, heartbeat=True)]
>>> out, rule.interval_s
([], 300.0)
>>> [(f.detector, f.severity.value) for f in rule.connection("CP1", False,
...     t + timedelta(minutes=36), t, "closed by station")]
[('rule:comm_offline', 'high')]
>>> _ = rule.connection("CP1", True, t + timedelta(minutes=40), t, "connected")
>>> [type(r).__name__ for i in range(1, 4) for r in rule.message("CP1",
...     t + timedelta(minutes=40 + 5 * i), t, heartbeat=True)]
['Clear']
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import datetime

from bus.alerts import AlertKind, Evidence, Severity
from models.rules import Clear, Finding

COMM = AlertKind.COMM_DEGRADATION
# The detectors of this rule: only its own clear resolves what it raised.
DETECTORS = frozenset(
    {"rule:comm_offline", "rule:comm_flapping", "rule:boot_loop", "rule:heartbeat_gaps"}
)


@dataclass(slots=True)
class CommRule:
    """The communication state of one station; picklable, a few dozen bytes of events."""

    learn_gaps: int = 5
    gap_factor: float = 3.0
    gaps_to_alert: int = 2
    reconnects_to_alert: int = 3
    boots_to_alert: int = 3
    window_intervals: float = 72.0  # 6 h at a 5-minute heartbeat
    stable_heartbeats: int = 3
    stable_intervals: float = 3.0
    interval_s: float | None = None  # learned, in the gateway's clock
    first_gaps: list[float] = field(default_factory=list)
    last_heartbeat: datetime | None = None
    last_message: datetime | None = None
    online: bool | None = None  # None: no connection event seen yet
    gateway_id: str | None = None
    online_since: datetime | None = None
    beats_online: int = 0
    gaps: list[datetime] = field(default_factory=list)
    reconnects: list[datetime] = field(default_factory=list)
    boots: list[datetime] = field(default_factory=list)
    firing: bool = False

    def message(
        self, station_id: str, at: datetime, stamp: datetime, *, heartbeat: bool
    ) -> list[Finding | Clear]:
        """Any OCPP call received at ``at`` (gateway time); ``heartbeat`` for a Heartbeat."""
        results: list[Finding | Clear] = []
        if self.online_since is None:
            self.online_since = at
        last = self.last_message
        if last is not None and at > last and self.interval_s:
            ratio = (at - last).total_seconds() / self.interval_s
            if ratio >= self.gap_factor:
                self.gaps.append(at)
                self._prune(at)
                if len(self.gaps) >= self.gaps_to_alert:
                    summary = (
                        f"{len(self.gaps)} silences of the station of up to {ratio:.1f} times "
                        "its heartbeat interval within the window."
                    )
                    results.append(
                        self._finding(
                            station_id,
                            stamp,
                            "rule:heartbeat_gaps",
                            summary,
                            Severity.MEDIUM,
                            gap_ratio=round(ratio, 2),
                        )
                    )
        if heartbeat:
            if self.last_heartbeat is not None and last == self.last_heartbeat and at > last:
                self._learn((at - last).total_seconds())
            self.last_heartbeat = at
            self.beats_online += 1
        if last is None or at > last:
            self.last_message = at
        if not results:
            results.extend(self._maybe_clear(station_id, at, stamp))
        return results

    def connection(
        self,
        station_id: str,
        online: bool,
        at: datetime,
        stamp: datetime,
        reason: str,
        gateway_id: str | None = None,
    ) -> list[Finding | Clear]:
        """A ``station.connection`` event at ``at`` (gateway time)."""
        self.last_heartbeat = None  # no gap across a connection change is learned
        if not online:
            if self.online is False:
                return []  # a repeated offline (the gateway's sweeps are at-least-once)
            if gateway_id and self.gateway_id and gateway_id != self.gateway_id:
                return []  # a late sweep of a replica the station already left
            self.online, self.last_message = False, None
            if reason.startswith("gateway"):
                return []  # the gateway went away, not the station
            summary = f"The station went offline ({reason})."
            return [self._finding(station_id, stamp, "rule:comm_offline", summary, Severity.HIGH)]
        if reason == "connection re-registered":
            return []  # the gateway's own bookkeeping healed, the station never left
        seen_before = self.online is not None
        self.online, self.gateway_id = True, gateway_id
        self.online_since, self.beats_online, self.last_message = at, 0, at
        if not seen_before:
            return []
        self.reconnects.append(at)
        self._prune(at)
        if len(self.reconnects) < self.reconnects_to_alert:
            return []
        summary = f"The station reconnected {len(self.reconnects)} times within the window."
        return [self._finding(station_id, stamp, "rule:comm_flapping", summary, Severity.MEDIUM)]

    def boot(self, station_id: str, at: datetime, stamp: datetime) -> list[Finding | Clear]:
        """A BootNotification received at ``at`` (gateway time)."""
        self.last_heartbeat = None
        self.online_since, self.beats_online = at, 0
        self.boots.append(at)
        self._prune(at)
        if len(self.boots) < self.boots_to_alert:
            return []
        summary = f"The station booted {len(self.boots)} times within the window."
        return [self._finding(station_id, stamp, "rule:boot_loop", summary, Severity.HIGH)]

    def _learn(self, gap_s: float) -> None:
        if self.interval_s is None:
            self.first_gaps.append(gap_s)
            if len(self.first_gaps) >= self.learn_gaps:
                self.interval_s = statistics.median(self.first_gaps)
                self.first_gaps = []
            return
        if 0.5 * self.interval_s <= gap_s <= 1.5 * self.interval_s:
            self.interval_s += 0.1 * (gap_s - self.interval_s)

    def _prune(self, now: datetime) -> None:
        if not self.interval_s:
            return
        horizon = self.window_intervals * self.interval_s
        for events in (self.gaps, self.reconnects, self.boots):
            events[:] = [e for e in events if (now - e).total_seconds() < horizon]

    def _maybe_clear(self, station_id: str, at: datetime, stamp: datetime) -> list[Clear]:
        if not self.firing or self.online is False or self.online_since is None:
            return []
        stable = self.beats_online >= self.stable_heartbeats or (
            self.interval_s is not None
            and (at - self.online_since).total_seconds() >= self.stable_intervals * self.interval_s
        )
        if not stable:
            return []
        self._prune(at)
        if (
            len(self.gaps) >= self.gaps_to_alert
            or len(self.reconnects) >= self.reconnects_to_alert
            or len(self.boots) >= self.boots_to_alert
        ):
            return []
        self.firing = False
        return [Clear(station_id, 0, stamp, frozenset({COMM}), DETECTORS)]

    def _finding(
        self,
        station_id: str,
        stamp: datetime,
        detector: str,
        summary: str,
        severity: Severity,
        **extra: float,
    ) -> Finding:
        self.firing = True
        # Counts and ratios only: seconds of the gateway's clock differ with replay speed.
        features = {
            "gaps_in_window": float(len(self.gaps)),
            "reconnects_in_window": float(len(self.reconnects)),
            "boots_in_window": float(len(self.boots)),
            **extra,
        }
        evidence = Evidence(at=stamp, summary=summary, features=features)
        return Finding(station_id, 0, COMM, severity, stamp, detector, evidence)
