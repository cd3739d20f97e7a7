"""The lifecycle of fault alerts of one station: open once, update, resolve.

Findings of rules and detectors arrive again and again while a fault lasts; maintenance
must see one alert per ongoing fault (station, connector, kind), never a repeat. An
:class:`AlertBook` holds the open alerts of one station (the faults flow keeps one per
key and snapshots it) and turns findings into alert versions to publish:

* the first finding opens an alert (``first_seen`` = its telemetry time);
* later findings extend ``last_seen``; a new version is published only when the
  severity rises or ``update_every`` has passed since the last version (telemetry time),
  so a long fault is not a stream of messages;
* a rule's :class:`~models.rules.Clear` resolves at once (the station said it is healthy);
  a model's alert resolves after ``resolve_after`` without a finding (auto-resolve when
  healthy again); a finding can ask for either (``Finding.resolves``: the security
  rules and first-try success go quiet, having no "healthy" report; the connector
  model waits for its own clear, given once it saw the connector healthy under load);
* quiet is measured on the clock the findings were timed on: the station's telemetry
  time, or the gateway's receive time for ``gateway_time`` findings (the gateway's
  security alerts, Authorize), so a compressed replay resolves the station's alerts on
  telemetry time only. An open alert stays on the clock that opened it: a finding of
  the same connector and kind on the other clock changes nothing (times of two clocks
  cannot be compared), and opens its own alert once that one resolved;
* a finding older than the alert's ``last_seen`` (a late message) changes nothing; one
  at the same instant only when it raises the severity (the communication rules stamp
  with the station's clock, which stands still while the station is silent);
* a clear with ``detectors`` resolves only alerts whose last version one of them raised;
* a rule's finding that waits for a clear makes an open model alert wait for one too (the
  station said the connector is broken: quiet telemetry does not mend it);
* root-cause grouping (:mod:`models.root_cause`): while an alert of a definite fault is
  open (one a rule raised that waits for the station's clear), a finding of another kind
  on its connector (every connector when the root is the station's; the station's own
  when it is a connector's) that is a plausible consequence of it
  opens no alert of its own: it is folded into the open one ("also seen" in its
  evidence, a new version the first time a kind is seen).

Everything is in telemetry time, so replaying the same facts gives the same versions.

>>> from datetime import UTC, datetime, timedelta
>>> from bus.alerts import AlertKind, Evidence, Severity
>>> t = datetime(2026, 7, 1, 12, tzinfo=UTC)
>>> def hot(minutes):
...     at = t + timedelta(minutes=minutes)
...     return Finding("CP1", 1, AlertKind.CONNECTOR_OVERHEATING, Severity.HIGH, at,
...         "model:hst", Evidence(at=at, summary="hot"))
>>> book = AlertBook(update_every=timedelta(minutes=15), resolve_after=timedelta(minutes=30))
>>> [book.observe(hot(m)) is not None for m in (0, 5, 10, 16)]
[True, False, False, True]
>>> book.tick(t + timedelta(minutes=40)), book.tick(t + timedelta(minutes=47))[0].status.value
([], 'resolved')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import msgspec

from bus.alerts import AlertKind, AlertStatus, Evidence, FaultAlert, alert_id
from models.root_cause import also_seen_label, folds, with_also_seen
from models.rules import ACTIONS, Clear, Finding

AlertKey = tuple[int, AlertKind]  # (connector_id, kind) within one station


@dataclass(slots=True)
class _Open:
    alert: FaultAlert  # the last version published
    last_seen: datetime  # may be later than alert.last_seen (unpublished findings)
    by_rule: bool  # waits for a Clear; else resolves when quiet
    gateway_time: bool = False  # last_seen is gateway time
    # Consequences folded into this alert (root-cause grouping), in the order seen.
    also_seen: list[str] = field(default_factory=list)
    folded: list[tuple[int, AlertKind]] = field(default_factory=list)
    stated: bool = False  # a rule that waits for the station's clear found it: a root


@dataclass(slots=True)
class AlertBook:
    """The open fault alerts of one station."""

    update_every: timedelta = timedelta(minutes=15)
    resolve_after: timedelta = timedelta(minutes=30)
    open: dict[AlertKey, _Open] = field(default_factory=dict)

    def observe(self, finding: Finding) -> FaultAlert | None:
        """The alert version to publish for ``finding``, or None when nothing changed
        enough to tell anyone."""
        key = (finding.connector_id, finding.kind)
        current = self.open.get(key)
        if current is None:
            root = self._root_of(finding)
            if root is not None:
                return self._fold(root, finding)
            return self._open(key, finding)
        if finding.gateway_time != current.gateway_time:
            return None  # on the other clock: the alert stays on its own
        if finding.waits_for_clear:  # even when late: the station said it is broken
            current.by_rule = True
            current.stated |= finding.detector.startswith("rule:")
        escalates = finding.severity.rank > current.alert.severity.rank
        if finding.at < current.last_seen or (finding.at == current.last_seen and not escalates):
            return None
        current.last_seen = finding.at
        if not escalates and finding.at - current.alert.last_seen < self.update_every:
            return None
        severity = finding.severity if escalates else current.alert.severity
        current.alert = msgspec.structs.replace(
            current.alert,
            severity=severity,
            last_seen=finding.at,
            evidence=with_also_seen(finding.evidence, current.also_seen),
            detector=finding.detector,
        )
        return current.alert

    def _root_of(self, finding: Finding) -> _Open | None:
        """The open definite alert (the earliest) of which ``finding`` is a consequence."""
        if finding.gateway_time:
            return None
        roots = [
            current
            for (connector, kind), current in self.open.items()
            if current.stated  # a rule's word; a model's finding is a suspicion
            and not current.gateway_time
            and folds(kind, connector, finding.kind, finding.connector_id)
        ]
        return min(roots, key=lambda r: (r.alert.first_seen, r.alert.alert_id), default=None)

    def _fold(self, root: _Open, finding: Finding) -> FaultAlert | None:
        """``finding`` as evidence of ``root``: a new version when its kind (on its
        connector) is new to the alert or raises the severity, and is later than the
        last version (a version is told apart by its last_seen)."""
        folded = (finding.connector_id, finding.kind)
        escalates = finding.severity.rank > root.alert.severity.rank
        new = folded not in root.folded
        if new:
            root.folded.append(folded)
            label = also_seen_label(finding.kind, finding.connector_id, finding.detector)
            root.also_seen.append(label)
        if not (new or escalates) or finding.at <= root.alert.last_seen:
            return None
        root.last_seen = max(root.last_seen, finding.at)
        root.alert = msgspec.structs.replace(
            root.alert,
            severity=finding.severity if escalates else root.alert.severity,
            last_seen=finding.at,
            evidence=_refolded(root.alert.evidence, root.also_seen),
        )
        return root.alert

    def clear(self, clear: Clear) -> list[FaultAlert]:
        """Resolve the open alerts of ``clear``'s kinds on its connector that a rule raised
        before ``clear.at``."""
        return [
            self._resolve(key, clear.at)
            for key, current in list(self.open.items())
            if key[0] == clear.connector_id
            and key[1] in clear.kinds
            and current.by_rule
            and (not clear.detectors or current.alert.detector in clear.detectors)
            and clear.at >= current.last_seen
        ]

    def tick(self, now: datetime | None, gateway_now: datetime | None = None) -> list[FaultAlert]:
        """Resolve the alerts that go quiet without a finding for ``resolve_after`` before
        ``now`` (the station's latest telemetry time), or before ``gateway_now`` (the
        latest gateway time of the station) for findings timed by the gateway."""
        out = []
        for key, current in list(self.open.items()):
            clock = gateway_now if current.gateway_time else now
            if (
                not current.by_rule
                and clock is not None
                and clock - current.last_seen >= self.resolve_after
            ):
                out.append(self._resolve(key, clock))
        return out

    def _open(self, key: AlertKey, finding: Finding) -> FaultAlert:
        alert = FaultAlert(
            alert_id=alert_id(finding.station_id, finding.connector_id, finding.kind, finding.at),
            station_id=finding.station_id,
            connector_id=finding.connector_id,
            alert_kind=finding.kind,
            severity=finding.severity,
            status=AlertStatus.OPEN,
            first_seen=finding.at,
            last_seen=finding.at,
            detector=finding.detector,
            evidence=finding.evidence,
            recommended_action=ACTIONS[finding.kind],
        )
        stated = finding.waits_for_clear and finding.detector.startswith("rule:")
        self.open[key] = _Open(
            alert, finding.at, finding.waits_for_clear, finding.gateway_time, stated=stated
        )
        return alert

    def _resolve(self, key: AlertKey, at: datetime) -> FaultAlert:
        current = self.open.pop(key)
        return msgspec.structs.replace(
            current.alert,
            status=AlertStatus.RESOLVED,
            last_seen=current.last_seen,
            resolved_at=at,
        )


def _refolded(evidence: Evidence, also_seen: list[str]) -> Evidence:
    """The alert's evidence with its "also seen" list brought up to date."""
    summary = evidence.summary.split(" Also seen: ", 1)[0]
    return with_also_seen(msgspec.structs.replace(evidence, summary=summary), also_seen)
