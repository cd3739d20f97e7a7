"""First-try session success per connector: "did charging work?"

An attempt is an accepted transaction start (a start whose id tag was refused is the
card's problem, not the station's; a 2.0.1 transaction started at plug-in without an id
token becomes an attempt once a TransactionEvent's token is Accepted, or once energy
flowed). It **fails** when

* it never delivers energy: it ends with the register less than ``min_energy_wh`` above
  its start and no reading under load (:data:`models.features.LOAD_W`), or it is still
  ``Preparing`` (the station said so, and no Charging/SuspendedEV/SuspendedEVSE since,
  no energy) ``start_limit`` after the start (counted then, once);
* the station stops it: ``EmergencyStop``, ``PowerLoss``, ``Reboot`` (1.6: a local
  reset, e.g. the watchdog), 2.0.1 ``GroundFault``, ``OvercurrentFault``,
  ``PowerQuality`` (:data:`STATION_STOPS`), whenever they end it (the driver did not);
  ``Other`` only within ``early`` of the start (an unexplained early stop).

Not the station's, so no attempt at all: a start that delivered nothing because the EV
declined (SuspendedEV and never Charging: full battery, departure timer) or was ended
for the driver's account (:data:`NOT_THE_STATIONS`: DeAuthorized, Timeout (2.0.1: the
EV was not plugged in in time), LocalOutOfCredit, MasterPass). Everything else is judged
by the energy alone: a driver who stops (Local, EVDisconnected, StoppedByEV, the limits)
after energy flowed had a successful start, and resets or remote stops by the CSMS
(HardReset, SoftReset, ImmediateReset, Remote, UnlockCommand) are our own decisions.

The last ``window`` attempts of each connector make its success rate (for the health
view). With at least ``min_attempts`` and a rate below ``threshold`` the connector has
a ``contactor_degradation`` finding (failed starts on one connector: the contactor or
relay does not close); when at least ``station_min_attempts`` over the station are
below the threshold and two or more connectors failed, it is the station's
``controller_fault`` (connector 0) instead. The finding is repeated on every update
while the rate stays low and resolves once quiet (the rate recovered). Telemetry time.

>>> from datetime import UTC, datetime, timedelta
>>> from decimal import Decimal
>>> t = datetime(2026, 7, 1, 12, tzinfo=UTC)
>>> success = SessionSuccess(min_attempts=2)
>>> for n in range(2):
...     success.start(TransactionStart(charge_point_id="CP1", transaction_id=str(n),
...         evse_id=1, connector_id=1, timestamp=t, meter_start_wh=Decimal(100),
...         auth_status="Accepted"))
...     success.end(TransactionEnd(charge_point_id="CP1", transaction_id=str(n), evse_id=None,
...         connector_id=None, timestamp=t + timedelta(minutes=3),
...         meter_stop_wh=Decimal(100), stopped_reason="EVDisconnected"))
>>> success.rate(1)
0.0
>>> [(f.kind.value, f.connector_id) for f in success.findings("CP1", t)]
[('contactor_degradation', 1)]
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bus.alerts import AlertKind, Evidence, Severity
from bus.normalized import ConnectorStatus, TransactionEnd, TransactionStart, TransactionUpdate
from models.features import LOAD_W
from models.readings import Reading
from models.rules import Finding

STATION_STOPS = frozenset(
    {"EmergencyStop", "PowerLoss", "Reboot", "GroundFault", "OvercurrentFault", "PowerQuality"}
)
NOT_THE_STATIONS = frozenset({"DeAuthorized", "Timeout", "LocalOutOfCredit", "MasterPass"})
_LEFT_PREPARING = frozenset({"Charging", "SuspendedEV", "SuspendedEVSE"})


@dataclass(slots=True)
class _Attempt:
    evse: int
    started: datetime
    start_wh: float | None
    delivered: bool = False
    left_preparing: bool = False
    charging: bool = False
    ev_declined: bool = False  # SuspendedEV seen
    decided: bool = False  # already counted (the Preparing limit)
    authorized: bool = True  # False: a 2.0.1 start at plug-in, no token yet


@dataclass(slots=True)
class SessionSuccess:
    """Attempts and the rolling first-try success of one station's connectors."""

    window: int = 10
    min_attempts: int = 5
    threshold: float = 0.6
    station_min_attempts: int = 8
    start_limit: timedelta = timedelta(minutes=5)
    early: timedelta = timedelta(minutes=10)
    min_energy_wh: float = 10.0
    attempts: dict[str, _Attempt] = field(default_factory=dict)  # open, by transaction id
    outcomes: dict[int, deque[bool]] = field(default_factory=dict)
    last_failure: dict[int, str] = field(default_factory=dict)
    last_status: dict[int, str] = field(default_factory=dict)  # per EVSE
    max_age: timedelta = timedelta(days=2)  # an attempt whose end never came is dropped

    def start(self, fact: TransactionStart) -> None:
        accepted = fact.auth_status in (None, "Accepted")
        if fact.evse_id is None or not accepted or fact.transaction_id in self.attempts:
            return
        start_wh = None if fact.meter_start_wh is None else float(fact.meter_start_wh)
        authorized = fact.auth_status is not None or fact.id_tag is not None
        for tx, other in list(self.attempts.items()):
            if other.evse == fact.evse_id:  # its end was lost: one transaction per EVSE
                del self.attempts[tx]
        attempt = _Attempt(fact.evse_id, fact.timestamp, start_wh, authorized=authorized)
        self.attempts[fact.transaction_id] = attempt
        self._state(attempt, fact.charging_state)

    def update(self, fact: TransactionUpdate) -> None:
        attempt = self.attempts.get(fact.transaction_id)
        if attempt is None:
            return
        if fact.auth_status is not None and fact.auth_status != "Accepted":
            del self.attempts[fact.transaction_id]  # the card's problem
            return
        attempt.authorized |= fact.auth_status == "Accepted"
        self._state(attempt, fact.charging_state)

    def status(self, fact: ConnectorStatus) -> None:
        self.last_status[fact.evse_id] = fact.status
        for attempt in self.attempts.values():
            if attempt.evse == fact.evse_id and fact.timestamp >= attempt.started:
                self._state(attempt, fact.status)

    def reading(self, evse: int, reading: Reading) -> None:
        for attempt in self.attempts.values():
            if attempt.evse != evse or reading.time < attempt.started:
                continue
            if reading.power_w is not None and reading.power_w >= LOAD_W:
                attempt.delivered = True
            if reading.energy_wh is not None and attempt.start_wh is not None:
                attempt.delivered |= reading.energy_wh - attempt.start_wh >= self.min_energy_wh

    def end(self, fact: TransactionEnd) -> None:
        attempt = self.attempts.pop(fact.transaction_id, None)
        if attempt is None or attempt.decided:
            return
        if fact.meter_stop_wh is not None and attempt.start_wh is not None:
            energy = float(fact.meter_stop_wh) - attempt.start_wh
            attempt.delivered |= energy >= self.min_energy_wh
        reason = fact.stopped_reason
        early = fact.timestamp - attempt.started < self.early
        counts = attempt.authorized or attempt.delivered
        if counts and (reason in STATION_STOPS or (reason == "Other" and early)):
            self._record(attempt.evse, False, f"stopped by the station ({reason})")
        elif attempt.delivered:
            self._record(attempt.evse, True, "")
        elif (
            not attempt.authorized
            or (attempt.ev_declined and not attempt.charging)
            or reason in NOT_THE_STATIONS
        ):
            return
        else:
            self._record(attempt.evse, False, f"no energy delivered (ended {reason})")

    def tick(self, now: datetime) -> None:
        """Count the starts still Preparing without energy ``start_limit`` after the start
        (only where the station reported Preparing: no status at all proves nothing)."""
        for tx, attempt in list(self.attempts.items()):
            if now - attempt.started > self.max_age:
                del self.attempts[tx]
                continue
            stuck = attempt.authorized and not (
                attempt.decided or attempt.delivered or attempt.left_preparing
            )
            preparing = self.last_status.get(attempt.evse) == "Preparing"
            if stuck and preparing and now - attempt.started >= self.start_limit:
                attempt.decided = True
                minutes = self.start_limit.total_seconds() / 60
                self._record(attempt.evse, False, f"still Preparing after {minutes:.0f} minutes")

    def rate(self, evse: int) -> float | None:
        """The connector's first-try success over its last attempts; None before any."""
        outcomes = self.outcomes.get(evse)
        return None if not outcomes else sum(outcomes) / len(outcomes)

    def findings(self, station_id: str, at: datetime) -> list[Finding]:
        """The failed-start findings at ``at`` (telemetry time) while rates are low."""
        total = sum(len(o) for o in self.outcomes.values())
        good = sum(sum(o) for o in self.outcomes.values())
        failing = [c for c, o in self.outcomes.items() if not all(o)]
        if (
            total >= self.station_min_attempts
            and good / total < self.threshold
            and len(failing) >= 2
        ):
            summary = (
                f"{total - good} of the last {total} starts failed on {len(failing)} "
                f"connectors (first-try success {good / total:.0%})."
            )
            return [self._finding(station_id, 0, at, good, total, summary)]
        out = []
        for evse, outcomes in sorted(self.outcomes.items()):
            n, ok = len(outcomes), sum(outcomes)
            if n < self.min_attempts or ok / n >= self.threshold:
                continue
            summary = (
                f"{n - ok} of the last {n} starts on connector {evse} failed (last: "
                f"{self.last_failure.get(evse, 'unknown')}); first-try success {ok / n:.0%}."
            )
            out.append(self._finding(station_id, evse, at, ok, n, summary))
        return out

    def _finding(
        self, station_id: str, connector: int, at: datetime, ok: int, n: int, summary: str
    ) -> Finding:
        rate = ok / n
        kind = AlertKind.CONTROLLER_FAULT if connector == 0 else AlertKind.CONTACTOR_DEGRADATION
        severity = Severity.HIGH if rate < self.threshold / 2 else Severity.MEDIUM
        features = {"first_try_success": rate, "attempts": float(n), "failed": float(n - ok)}
        evidence = Evidence(at=at, summary=summary, features=features)
        return Finding(
            station_id, connector, kind, severity, at, "rule:first_try_success", evidence, "quiet"
        )

    def _state(self, attempt: _Attempt, state: str | None) -> None:
        if state in _LEFT_PREPARING:
            attempt.left_preparing = True
        attempt.charging |= state == "Charging"
        attempt.ev_declined |= state == "SuspendedEV"

    def _record(self, evse: int, ok: bool, why: str) -> None:
        outcomes = self.outcomes.get(evse)
        if outcomes is None:
            outcomes = self.outcomes[evse] = deque(maxlen=self.window)
        outcomes.append(ok)
        if not ok:
            self.last_failure[evse] = why
