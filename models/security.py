"""Security anomalies of one charge point: findings of kind ``security``.

Four sources, each a finding with evidence (features and one sentence) and a severity;
connector 0 (the station) unless the evidence is one connector's:

* the gateway's ``security.alert`` envelopes (:func:`gateway_alert_finding`): one finding
  per envelope. ``repeated_failed_authentication`` (scope ``station``: someone guesses
  this station's password, high; scope ``source_ip``: a source fails against several
  ids, medium) and ``concurrent_id_tag`` (the id tag of a start is in use at another
  station: a cloned or shared card, high, on the start's connector). Alerts about ids
  that are not provisioned (``known_station`` false) are no station's fault and give
  nothing here (they stay on the topic). Any other alert name: medium. Their time is the
  gateway's ``received_at`` (``gateway_time``): they never move the station's telemetry
  clock, and go quiet on the gateway's clock.
* bursts of rejected authorisations (:class:`RejectedAuthorizations`): ``burst``
  Authorize answers other than Accepted from at least ``distinct_tags`` different id
  tags within ``window`` (one wrong or expired card tried again and again is a driver's
  problem, many cards in a row are card guessing). Authorize has no station time: the
  window runs on the gateway's receive time. Rejected transaction starts (1.6 offline
  or pre-authorised starts) are not counted: the concurrent-use case is the gateway's
  alert above.
* energy flowing without a session (:class:`UnexplainedEnergy`): an EVSE (not 0, whose
  meter includes the station's own use) draws at least
  :data:`models.features.LOAD_W`, or its register rises by ``register_step_wh`` between
  two readings, while no transaction is open on it, for ``grace`` (telemetry time) or
  longer: energy theft, or a welded contactor. A reading that carries a transaction id
  opens that transaction (a start we did not see); readings up to a transaction's end
  are its own.
* SecurityEventNotification of concern (:func:`security_event_finding`). The spec's
  "critical" flag (OCPP 2.0.1 Appendix 1) says what a station must push, not what is
  wrong: FirmwareUpdated, StartupOfTheDevice, ResetOrReboot, SettingSystemTime and a
  MaintenanceLoginAccepted (a technician's visit) are routine and give nothing, as do
  FailedToAuthenticateAtCsms (the gateway counts failed logins itself),
  ReconfigurationOfSecurityParameters (our own change) and unknown (vendor) types.
  Of concern: see :data:`SECURITY_EVENTS`; the 1.6 whitepaper names
  (InvalidCentralSystemCertificate, InvalidChargePointCertificate,
  CentralSystemFailedToAuthenticate) alike. MemoryExhaustion is a controller fault.

All of them resolve when quiet (``resolves="quiet"``): there is no "healthy" report of
a security concern.

>>> from datetime import UTC, datetime, timedelta
>>> t = datetime(2026, 7, 1, 12, tzinfo=UTC)
>>> f = security_event_finding(SecurityEvent(charge_point_id="CP1",
...     event_type="TamperDetectionActivated", tech_info="door", timestamp=t))
>>> f.kind.value, f.severity.value, f.connector_id
('security', 'critical', 0)
>>> f.evidence.summary
'The station reported TamperDetectionActivated (door): a sign of physical tampering.'
>>> security_event_finding(SecurityEvent(charge_point_id="CP1",
...     event_type="FirmwareUpdated", timestamp=t)) is None
True
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bus.alerts import AlertKind, Evidence, Severity
from bus.envelope import Envelope
from bus.normalized import Authorization, SecurityEvent
from models.features import LOAD_W
from models.readings import Reading
from models.rules import Finding

QUIET = "quiet"

# SecurityEventNotification types of concern -> (kind, severity, what it means).
SECURITY_EVENTS: dict[str, tuple[AlertKind, Severity, str]] = {
    "tamperdetectionactivated": (AlertKind.SECURITY, Severity.CRITICAL, "physical tampering"),
    "invalidfirmwaresignature": (AlertKind.SECURITY, Severity.HIGH, "unsigned firmware"),
    "invalidfirmwaresigningcertificate": (
        AlertKind.SECURITY,
        Severity.HIGH,
        "an untrusted firmware signer",
    ),
    "invalidcsmscertificate": (AlertKind.SECURITY, Severity.HIGH, "a CSMS impostor"),
    "invalidcentralsystemcertificate": (AlertKind.SECURITY, Severity.HIGH, "a CSMS impostor"),
    "invalidtlsversion": (AlertKind.SECURITY, Severity.HIGH, "a TLS downgrade"),
    "invalidtlsciphersuite": (AlertKind.SECURITY, Severity.HIGH, "a TLS downgrade"),
    "attemptedreplayattacks": (AlertKind.SECURITY, Severity.HIGH, "replayed messages"),
    "securitylogwascleared": (AlertKind.SECURITY, Severity.HIGH, "covered tracks"),
    "invalidchargingstationcertificate": (
        AlertKind.SECURITY,
        Severity.MEDIUM,
        "a bad station certificate",
    ),
    "invalidchargepointcertificate": (
        AlertKind.SECURITY,
        Severity.MEDIUM,
        "a bad station certificate",
    ),
    "csmsfailedtoauthenticate": (AlertKind.SECURITY, Severity.MEDIUM, "a CSMS impostor"),
    "centralsystemfailedtoauthenticate": (AlertKind.SECURITY, Severity.MEDIUM, "a CSMS impostor"),
    "invalidmessages": (AlertKind.SECURITY, Severity.MEDIUM, "tampered messages"),
    "maintenanceloginfailed": (AlertKind.SECURITY, Severity.MEDIUM, "local login guessing"),
    "memoryexhaustion": (AlertKind.CONTROLLER_FAULT, Severity.MEDIUM, "memory running out"),
}


def security_event_finding(event: SecurityEvent) -> Finding | None:
    """The finding of a SecurityEventNotification of concern; None for routine ones."""
    known = SECURITY_EVENTS.get(event.event_type.lower())
    if known is None:
        return None
    kind, severity, meaning = known
    info = f" ({event.tech_info})" if event.tech_info else ""
    summary = f"The station reported {event.event_type}{info}: a sign of {meaning}."
    evidence = Evidence(at=event.timestamp, summary=summary)
    detector = "rule:security_event" if kind is AlertKind.SECURITY else "rule:station_event"
    return Finding(
        event.charge_point_id, 0, kind, severity, event.timestamp, detector, evidence, QUIET
    )


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def names_a_known_station(envelope: Envelope) -> bool:
    """Whether a gateway ``security.alert`` is about a provisioned station: failed logins
    against ids that do not exist are nobody's station (and guessing ids must not make
    the faults flow keep a state per guess).

    >>> from datetime import UTC, datetime
    >>> from bus.envelope import Kind
    >>> t = datetime(2026, 7, 1, tzinfo=UTC)
    >>> def alert(payload):
    ...     return Envelope(message_id="m", charge_point_id="CP-GUESS", received_at=t,
    ...         measured_at=t, kind=Kind.SECURITY_ALERT, payload=payload)
    >>> names_a_known_station(alert({"alert": "repeated_failed_authentication",
    ...     "known_station": False})), names_a_known_station(alert({"alert": "x"}))
    (False, True)
    """
    return envelope.payload.get("known_station") is not False


def _failed_logins(envelope: Envelope) -> tuple[int, Severity, str, dict[str, float]] | None:
    p = envelope.payload
    if not names_a_known_station(envelope):
        return None
    failures = _number(p.get("failures"))
    window = _number(p.get("window_s"))
    features = {k: v for k, v in (("failures", failures), ("window_s", window)) if v is not None}
    by_source = p.get("scope") == "source_ip"
    count = f"{failures:.0f} failed logins" if failures is not None else "Repeated failed logins"
    span = f" within {window:.0f} s" if window is not None else ""
    who = "from one source address" if by_source else "with this station's id"
    summary = f"{count}{span} {who}; the gateway {p.get('consequence', 'noted it')}."
    return 0, (Severity.MEDIUM if by_source else Severity.HIGH), summary, features


def _concurrent_tag(envelope: Envelope) -> tuple[int, Severity, str, dict[str, float]]:
    p = envelope.payload
    other = p.get("other_charge_point_id")
    since = p.get("other_started_at")
    where = f" at {other}" if isinstance(other, str) else " elsewhere"
    when = f" since {since}" if isinstance(since, str) else ""
    summary = f"A start used an id tag that is in a session{where}{when} (cloned or shared card)."
    return _int(p.get("connector_id")) or 0, Severity.HIGH, summary, {}


def gateway_alert_finding(envelope: Envelope) -> Finding | None:
    """The finding of one gateway ``security.alert`` envelope (gateway time)."""
    name = envelope.payload.get("alert")
    if name == "repeated_failed_authentication":
        parts = _failed_logins(envelope)
        if parts is None:
            return None
    elif name == "concurrent_id_tag":
        parts = _concurrent_tag(envelope)
    else:
        parts = (0, Severity.MEDIUM, f"The gateway raised the security alert {name!r}.", {})
    connector, severity, summary, features = parts
    at = envelope.received_at
    return Finding(
        envelope.charge_point_id,
        connector,
        AlertKind.SECURITY,
        severity,
        at,
        f"rule:gateway_{name if isinstance(name, str) else 'alert'}",
        Evidence(at=at, summary=summary, features=features),
        QUIET,
        gateway_time=True,
    )


@dataclass(slots=True)
class RejectedAuthorizations:
    """Bursts of rejected Authorize answers at one station (gateway time)."""

    burst: int = 5
    distinct_tags: int = 3
    window: timedelta = timedelta(minutes=10)
    recent: deque[tuple[datetime, str]] = field(default_factory=lambda: deque(maxlen=64))

    def update(self, auth: Authorization) -> Finding | None:
        if auth.auth_status in (None, "Accepted"):
            return None
        at = auth.timestamp
        self.recent.append((at, auth.id_tag or ""))
        while self.recent and at - self.recent[0][0] > self.window:
            self.recent.popleft()
        count, tags = len(self.recent), len({tag for _, tag in self.recent})
        if count < self.burst or tags < self.distinct_tags:
            return None
        severity = Severity.HIGH if count >= 2 * self.burst else Severity.MEDIUM
        minutes = self.window.total_seconds() / 60
        summary = (
            f"{count} authorisations from {tags} different id tags were rejected within "
            f"{minutes:.0f} minutes (card guessing?)."
        )
        features = {"rejections": float(count), "distinct_id_tags": float(tags)}
        evidence = Evidence(at=at, summary=summary, features=features)
        return Finding(
            auth.charge_point_id,
            0,
            AlertKind.SECURITY,
            severity,
            at,
            "rule:rejected_authorizations",
            evidence,
            QUIET,
            gateway_time=True,
        )


@dataclass(slots=True)
class _Evse:
    transactions: set[str] = field(default_factory=set)
    ended_at: datetime | None = None  # readings up to here belong to the last session
    energy_wh: float | None = None  # the last register read outside a session
    flowing_since: datetime | None = None


@dataclass(slots=True)
class UnexplainedEnergy:
    """Energy drawn on an EVSE while no transaction is open on it (telemetry time)."""

    grace: timedelta = timedelta(minutes=5)
    register_step_wh: float = 10.0
    evses: dict[int, _Evse] = field(default_factory=dict)
    evse_of: dict[str, int] = field(default_factory=dict)  # open transaction -> EVSE
    ended_ids: deque[str] = field(default_factory=lambda: deque(maxlen=16))

    def started(self, transaction_id: str, evse_id: int | None) -> None:
        """A transaction is open on ``evse_id`` (a start, an update or a reading of it;
        not one that ended: its late readings do not reopen it)."""
        if transaction_id in self.ended_ids:
            return
        evse = evse_id if evse_id is not None else self.evse_of.get(transaction_id)
        if evse is None:
            return
        self.evse_of[transaction_id] = evse
        state = self.evses.setdefault(evse, _Evse())
        if transaction_id not in state.transactions:
            # One transaction per EVSE at a time: a new one means the end of the others
            # was lost (they must not hide energy without a session for good).
            for lost in state.transactions:
                self.evse_of.pop(lost, None)
                self.ended_ids.append(lost)
            state.transactions = {transaction_id}
        state.flowing_since = None

    def ended(self, transaction_id: str, evse_id: int | None, at: datetime) -> None:
        evse = self.evse_of.pop(transaction_id, evse_id)
        self.ended_ids.append(transaction_id)
        if evse is None:
            return
        state = self.evses.setdefault(evse, _Evse())
        state.transactions.discard(transaction_id)
        state.ended_at = at if state.ended_at is None else max(state.ended_at, at)
        state.energy_wh = None  # the next idle reading is the new baseline

    def update(self, station_id: str, evse: int, reading: Reading) -> Finding | None:
        if evse == 0:
            return None
        state = self.evses.setdefault(evse, _Evse())
        if state.transactions or (state.ended_at is not None and reading.time <= state.ended_at):
            return None
        power = reading.power_w
        rise = None
        if reading.energy_wh is not None:
            if state.energy_wh is not None:
                rise = reading.energy_wh - state.energy_wh
            state.energy_wh = reading.energy_wh
        flowing = (power is not None and power >= LOAD_W) or (
            rise is not None and rise >= self.register_step_wh
        )
        if not flowing:
            state.flowing_since = None
            return None
        if state.flowing_since is None:
            state.flowing_since = reading.time
        lasted = reading.time - state.flowing_since
        if lasted < self.grace:
            return None
        return self._finding(station_id, evse, reading, rise, lasted)

    def _finding(
        self, station_id: str, evse: int, reading: Reading, rise: float | None, lasted: timedelta
    ) -> Finding:
        features = {"minutes_without_session": lasted.total_seconds() / 60}
        if reading.power_w is not None:
            features["power_w"] = reading.power_w
        if rise is not None:
            features["register_rise_wh"] = rise
        summary = (
            f"Energy has flowed on connector {evse} for {lasted.total_seconds() / 60:.0f} "
            "minutes without a session (theft, or a welded contactor)."
        )
        evidence = Evidence(at=reading.time, summary=summary, features=features)
        return Finding(
            station_id,
            evse,
            AlertKind.SECURITY,
            Severity.HIGH,
            reading.time,
            "rule:energy_without_session",
            evidence,
            QUIET,
        )
