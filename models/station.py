"""The diagnostics of one charge point: envelopes in, alert versions and health out.

The faults flow keys its state by charge point and keeps one :class:`StationDiagnostics`
per key (snapshotted every epoch, so it must stay small and picklable). For each
envelope of the station it runs the parts that read it:

* meter samples -> :class:`models.readings.Reading` per EVSE -> that connector's
  :class:`models.connector.ConnectorModel` (features, register rule, detector); the
  samples of a 2.0.1 TransactionEvent without ``evse`` go to the EVSE of its
  transaction (named by its first event);
* connector statuses -> :func:`models.device_events.status_results` (error codes,
  Faulted, 1.6 vendor/MREC codes, and the clears of a healthy report);
* 2.0.1 device events -> :func:`models.device_events.event_findings`; their EVSE
  temperatures are kept (the last per EVSE) and fill the temperature of that
  connector's next reading that has none (2.0.1 has no Temperature measurand);
* every OCPP call, heartbeats, boots and ``station.connection`` envelopes ->
  :class:`models.comm.CommRule` (gaps, flapping, boot loops, offline; connector 0);
* every reading's phase voltages -> :class:`models.grid.GridRule` (EN 50160 band, lost
  phases; connector 0);
* security (:mod:`models.security`): the gateway's ``security.alert`` envelopes,
  bursts of rejected Authorize answers, energy without a session per EVSE (readings and
  the transactions open on each EVSE), SecurityEventNotification of concern;
* first-try session success (:mod:`models.sessions_success`): transactions, statuses
  and readings per connector; its rate goes into the connector's health features
  (``first_try_success``) and raises failed-start findings when it falls;

and hands every finding and clear to the station's :class:`models.alerting.AlertBook`,
which says what maintenance is told. The station's clock is the latest telemetry time
it reported (never the process's wall clock), so model alerts resolve at the same
telemetry instants in a replay at any speed. Facts without station time (the gateway's
security alerts, Authorize) never move it: they are timed by the gateway's
``received_at``, whose latest value is kept apart (``received``) and resolves only the
alerts found on it. Heartbeats, boots and connection events carry only the gateway's
time too: the communication rule measures them in that clock but its findings are
stamped with the station's clock (or, before the station reported any time, the
event's own). Health snapshots of a connector are emitted at most every
``health_every`` of telemetry time.

>>> from datetime import UTC, datetime
>>> from bus.envelope import Envelope, Kind, normalized_facts
>>> t = datetime(2026, 7, 1, 12, tzinfo=UTC)
>>> def status(code, state, minute):
...     at = t.replace(minute=minute)
...     return Envelope(message_id=f"m{minute}", charge_point_id="CP1", received_at=at,
...         measured_at=at, kind=Kind.OCPP_CALL, ocpp_version="1.6",
...         action="StatusNotification", payload={"connectorId": 1, "errorCode": code,
...         "status": state, "timestamp": at.isoformat()})
>>> station = StationDiagnostics("CP1")
>>> [(a.alert_kind.value, a.status.value) for a in station.update(
...     status("GroundFailure", "Faulted", 1)).alerts]
[('ground_fault', 'open')]
>>> station.update(status("GroundFailure", "Faulted", 2)).alerts  # the same fault: no repeat
[]
>>> [(a.alert_kind.value, a.status.value) for a in station.update(
...     status("NoError", "Available", 3)).alerts]
[('ground_fault', 'resolved')]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeGuard

import msgspec

from bus.alerts import ConnectorHealth, FaultAlert
from bus.envelope import Envelope, Kind, normalized_facts
from bus.normalized import (
    Authorization,
    ConnectorStatus,
    DeviceEvent,
    MeterSample,
    Normalized,
    SecurityEvent,
    StationBoot,
    StationHeartbeat,
    TransactionEnd,
    TransactionStart,
    TransactionUpdate,
)
from models.alerting import AlertBook
from models.comm import CommRule
from models.connector import ConnectorModel
from models.device_events import device_temperature, event_findings, status_results
from models.features import IDLE_W, Neighbour
from models.grid import GridRule
from models.readings import Reading, readings_from_samples
from models.rules import Clear, Finding
from models.security import (
    RejectedAuthorizations,
    UnexplainedEnergy,
    gateway_alert_finding,
    security_event_finding,
)
from models.sessions_success import SessionSuccess

Result = Finding | Clear
StationFact = (
    ConnectorStatus
    | TransactionStart
    | TransactionUpdate
    | TransactionEnd
    | SecurityEvent
    | DeviceEvent
)
# The facts with the station's own time that diagnostics read (others are ignored).
_STATION_TIMED = (
    ConnectorStatus,
    TransactionStart,
    TransactionUpdate,
    TransactionEnd,
    SecurityEvent,
    DeviceEvent,
)


def _unplaced(fact: Normalized) -> TypeGuard[MeterSample]:
    """A sample of a transaction that does not say its EVSE."""
    return (
        isinstance(fact, MeterSample) and fact.evse_id is None and fact.transaction_id is not None
    )


@dataclass(slots=True)
class StationOutcome:
    """What one envelope changed: alert versions to publish, health to store."""

    alerts: list[FaultAlert] = field(default_factory=list)
    health: list[ConnectorHealth] = field(default_factory=list)


def _default_model() -> ConnectorModel:
    return ConnectorModel.default()


@dataclass(slots=True)
class StationDiagnostics:
    """Connector models and open alerts of one charge point; picklable."""

    station_id: str
    new_model: Callable[[], ConnectorModel] = _default_model
    health_every: timedelta = timedelta(minutes=5)
    book: AlertBook = field(default_factory=AlertBook)
    connectors: dict[int, ConnectorModel] = field(default_factory=dict)
    clock: datetime | None = None  # the latest telemetry time of the station
    received: datetime | None = None  # the latest gateway time (received_at) of the station
    health_at: dict[int, datetime] = field(default_factory=dict)
    rejections: RejectedAuthorizations = field(default_factory=RejectedAuthorizations)
    energy: UnexplainedEnergy = field(default_factory=UnexplainedEnergy)
    success: SessionSuccess = field(default_factory=SessionSuccess)
    comm: CommRule = field(default_factory=CommRule)
    grid: GridRule = field(default_factory=GridRule)
    device_temps: dict[int, float] = field(default_factory=dict)  # last per EVSE, Celsius
    # The latest idle temperature per EVSE (time, Celsius): the ambient as that EVSE
    # measures it, which its neighbours use while they charge.
    idle_temps: dict[int, Neighbour] = field(default_factory=dict)

    def update(self, envelope: Envelope) -> StationOutcome:
        outcome = StationOutcome()
        if self.received is None or envelope.received_at > self.received:
            self.received = envelope.received_at
        results: list[Result] = []
        if envelope.kind is Kind.SECURITY_ALERT:
            results.extend(_some(gateway_alert_finding(envelope)))
        elif envelope.kind is Kind.STATION_CONNECTION:
            results.extend(self._connection(envelope))
        elif envelope.kind is Kind.OCPP_CALL:
            results.extend(self._facts(envelope, outcome))
            if self.clock is not None:
                self.success.tick(self.clock)
                results.extend(self.success.findings(self.station_id, self.clock))
        self.apply(results, outcome)
        return outcome

    def _facts(self, envelope: Envelope, outcome: StationOutcome) -> list[Result]:
        results: list[Result] = []
        samples: list[MeterSample] = []
        boots: list[StationBoot] = []
        heartbeat = False
        for fact in self._on_their_evse(normalized_facts(envelope)):
            if isinstance(fact, MeterSample):
                samples.append(fact)
                if fact.transaction_id is not None:
                    self.energy.started(fact.transaction_id, fact.evse_id)
            elif isinstance(fact, Authorization):  # gateway time: the clock stays
                results.extend(_some(self.rejections.update(fact)))
            elif isinstance(fact, _STATION_TIMED):
                self._advance(fact.timestamp)
                results.extend(self._station_fact(fact))
            elif isinstance(fact, StationHeartbeat):
                heartbeat = True
            elif isinstance(fact, StationBoot):
                boots.append(fact)
        results.extend(self._readings(samples, outcome))
        stamp = self.clock or envelope.received_at
        results.extend(
            self.comm.message(self.station_id, envelope.received_at, stamp, heartbeat=heartbeat)
        )
        for boot in boots:
            results.extend(self.comm.boot(self.station_id, boot.timestamp, stamp))
        return results

    def _on_their_evse(self, facts: list[Normalized]) -> list[Normalized]:
        """2.0.1 names a transaction's EVSE in its first TransactionEvent only: the samples
        of the later ones (no ``evse``) are that EVSE's readings, not the station's (0)."""
        if not any(_unplaced(f) for f in facts):
            return facts
        evse_of = dict(self.energy.evse_of)  # before this envelope's end forgets it
        for f in facts:
            tx, evse = getattr(f, "transaction_id", None), getattr(f, "evse_id", None)
            if tx is not None and evse is not None:
                evse_of[tx] = evse
        return [
            msgspec.structs.replace(f, evse_id=evse_of[f.transaction_id])
            if _unplaced(f) and f.transaction_id in evse_of
            else f
            for f in facts
        ]

    def _readings(self, samples: list[MeterSample], outcome: StationOutcome) -> list[Result]:
        results: list[Result] = []
        for (_cp, evse), sampled in readings_from_samples(samples):
            reading = self._with_temperature(evse, sampled)
            self._advance(reading.time)
            model = self.connectors.get(evse)
            if model is None:
                model = self.connectors[evse] = self.new_model()
            results.extend(model.update(self.station_id, evse, reading, self._neighbour(evse)))
            self._idle_temperature(evse, reading)
            results.extend(_some(self.energy.update(self.station_id, evse, reading)))
            results.extend(_some(self.grid.update(self.station_id, reading)))
            self.success.reading(evse, reading)
            self._health(evse, outcome)
        return results

    def _connection(self, envelope: Envelope) -> list[Result]:
        """A ``station.connection`` event (the flow validates its state; any other
        state is ignored here)."""
        payload = envelope.payload
        state, reason, gateway = (
            payload.get("state"),
            payload.get("reason"),
            payload.get("gateway_id"),
        )
        if state not in ("online", "offline"):
            return []
        return self.comm.connection(
            self.station_id,
            state == "online",
            envelope.measured_at,
            self.clock or envelope.measured_at,
            reason if isinstance(reason, str) and reason else str(state),
            gateway if isinstance(gateway, str) and gateway else None,
        )

    def _neighbour(self, evse: int) -> Neighbour | None:
        """The freshest idle temperature of another EVSE of the station."""
        others = [t for other, t in self.idle_temps.items() if other != evse]
        return max(others, default=None)

    def _idle_temperature(self, evse: int, reading: Reading) -> None:
        idle = reading.power_w is not None and reading.power_w <= IDLE_W
        if idle and reading.temperature_c is not None:
            last = self.idle_temps.get(evse)
            if last is None or reading.time > last[0]:
                self.idle_temps[evse] = (reading.time, reading.temperature_c)

    def _with_temperature(self, evse: int, reading: Reading) -> Reading:
        """The reading with the EVSE's last device-event temperature when it has none."""
        temperature = self.device_temps.get(evse)
        if reading.temperature_c is not None or temperature is None:
            return reading
        return dataclasses.replace(reading, temperature_c=temperature)

    def _station_fact(self, fact: StationFact) -> list[Result]:
        """The findings of one fact with station time (statuses, transactions, events)."""
        if isinstance(fact, ConnectorStatus):
            self.success.status(fact)
            return status_results(fact)
        if isinstance(fact, SecurityEvent):
            return _some(security_event_finding(fact))
        if isinstance(fact, DeviceEvent):
            temperature = device_temperature(fact)
            if temperature is not None:
                self.device_temps[fact.evse_id] = temperature
            return event_findings(fact)
        if isinstance(fact, TransactionEnd):
            self.energy.ended(fact.transaction_id, fact.evse_id, fact.timestamp)
            self.success.end(fact)
            return []
        self.energy.started(fact.transaction_id, fact.evse_id)
        if isinstance(fact, TransactionStart):
            self.success.start(fact)
        else:
            self.success.update(fact)
        return []

    def apply(self, results: list[Result], outcome: StationOutcome) -> None:
        """Hand findings and clears to the alert book, then resolve what went quiet."""
        for result in results:
            if isinstance(result, Finding):
                alert = self.book.observe(result)
                if alert is not None:
                    outcome.alerts.append(alert)
            else:
                outcome.alerts.extend(self.book.clear(result))
        outcome.alerts.extend(self.book.tick(self.clock, self.received))

    def health(self) -> list[ConnectorHealth]:
        """The current health of every connector seen (by its model or its sessions)."""
        evses = sorted(set(self.connectors) | set(self.success.outcomes))
        snapshots = (self._snapshot(evse) for evse in evses)
        return [h for h in snapshots if h is not None]

    def _snapshot(self, evse: int) -> ConnectorHealth | None:
        """The connector model's health with the first-try success rate among its
        features; a connector without a model's view yet (no reading with features)
        still shows its rate."""
        model = self.connectors.get(evse)
        snapshot = None if model is None else model.health(self.station_id, evse)
        rate = self.success.rate(evse)
        if rate is None:
            return snapshot
        if snapshot is None:
            if self.clock is None:
                return None
            snapshot = ConnectorHealth(
                station_id=self.station_id,
                connector_id=evse,
                at=self.clock,
                risk=0.0,
                phase="warming_up",
            )
        features = {**snapshot.features, "first_try_success": rate}
        return msgspec.structs.replace(snapshot, features=features)

    def _advance(self, at: datetime) -> None:
        if self.clock is None or at > self.clock:
            self.clock = at

    def _health(self, evse: int, outcome: StationOutcome) -> None:
        last = self.health_at.get(evse)
        if self.clock is None or (last is not None and self.clock - last < self.health_every):
            return
        snapshot = self._snapshot(evse)
        if snapshot is not None:
            self.health_at[evse] = self.clock
            outcome.health.append(snapshot)


def _some(finding: Result | None) -> list[Result]:
    return [] if finding is None else [finding]
