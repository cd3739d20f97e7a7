"""models.comm through StationDiagnostics: heartbeat gaps, flapping, boot loops and
offline from real envelopes, in the gateway's clock, stamped with the station's; and the
same findings when the history is replayed ten times faster."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bus.alerts import AlertKind, FaultAlert
from bus.envelope import Envelope, Kind
from models.comm import CommRule
from models.station import StationDiagnostics
from tests.support.builders import ocpp_call

T0 = datetime(2026, 7, 1, tzinfo=UTC)
HB = 300.0  # the station's heartbeat interval in station seconds


@dataclass
class Replay:
    """Envelopes of one station, the gateway's clock running ``1/speed`` times as fast as
    the station's (a compressed replay): gateway time = T0 + station seconds / speed."""

    speed: float = 1.0
    station: StationDiagnostics = field(default_factory=lambda: StationDiagnostics("CP1"))
    alerts: list[FaultAlert] = field(default_factory=list)
    n: int = 0
    last_status_s: float | None = None

    def gateway(self, station_s: float) -> datetime:
        return T0 + timedelta(seconds=station_s / self.speed)

    def _send(self, env: Envelope) -> None:
        self.alerts.extend(self.station.update(env).alerts)

    def envelope(self, station_s: float, kind: Kind, **kw: Any) -> Envelope:
        self.n += 1
        at = self.gateway(station_s)
        return Envelope(
            message_id=f"m{self.n}",
            charge_point_id="CP1",
            received_at=at,
            measured_at=at,
            kind=kind,
            **kw,
        )

    def call(self, station_s: float, action: str, payload: dict[str, Any]) -> None:
        """A 1.6 CALL without facts (StationDiagnostics normalises its payload)."""
        at = self.gateway(station_s)
        self._send(ocpp_call("CP1", action, payload, at=at, version="1.6", response={}))

    def heartbeat(self, station_s: float) -> None:
        self.call(station_s, "Heartbeat", {})

    def status(self, station_s: float, state: str = "Available") -> None:
        """A StatusNotification with the station's own timestamp (its clock)."""
        self.last_status_s = station_s
        stamp = (T0 + timedelta(seconds=station_s)).isoformat()
        payload = {"connectorId": 1, "errorCode": "NoError", "status": state, "timestamp": stamp}
        self.call(station_s, "StatusNotification", payload)

    def boot(self, station_s: float) -> None:
        self.call(
            station_s, "BootNotification", {"chargePointVendor": "A", "chargePointModel": "B"}
        )

    def connection(self, station_s: float, state: str, reason: str = "closed by station") -> None:
        payload = {"state": state, "reason": reason, "gateway_id": "gw-1"}
        self._send(self.envelope(station_s, Kind.STATION_CONNECTION, payload=payload))

    def healthy(self, start_s: float, beats: int, jitter: float = 0.1, seed: int = 1) -> float:
        """``beats`` heartbeats at the interval +-``jitter``, a status every 10 beats."""
        rng = random.Random(seed)
        at = start_s
        for i in range(beats):
            at += HB * (1 + rng.uniform(-jitter, jitter))
            self.heartbeat(at)
            if i % 10 == 0:
                self.status(at + 1)
        return at

    def comm(self) -> list[tuple[str, str, str, datetime]]:
        return [
            (a.status.value, a.severity.value, a.detector, a.last_seen)
            for a in self.alerts
            if a.alert_kind is AlertKind.COMM_DEGRADATION
        ]


def test_a_healthy_station_with_jitter_and_a_boot_gives_nothing() -> None:
    replay = Replay()
    replay.connection(0, "online", "connected")
    replay.boot(1)
    at = replay.healthy(1, 400, jitter=0.3)
    replay.connection(at + 10, "offline", "gateway stopped")  # the gateway went away
    replay.connection(at + 20, "online", "connected")
    replay.healthy(at + 20, 100, jitter=0.3, seed=2)
    assert replay.comm() == []
    assert replay.station.comm.interval_s is not None
    assert abs(replay.station.comm.interval_s - HB) < 0.1 * HB


def test_an_offline_station_is_a_high_alert_resolved_once_it_is_back_and_stable() -> None:
    replay = Replay()
    replay.connection(0, "online", "connected")
    at = replay.healthy(0, 20)
    assert replay.last_status_s is not None
    station_time = T0 + timedelta(seconds=replay.last_status_s)
    replay.connection(at + 60, "offline", "network lost")
    replay.connection(at + 3600, "online", "connected")
    assert replay.comm()[-1][0] == "open"  # not cleared before it is stable
    replay.healthy(at + 3600, 5)
    [opened, resolved] = replay.comm()
    assert opened[:3] == ("open", "high", "rule:comm_offline")
    assert resolved[0] == "resolved"
    # stamped with the station's clock (its last StatusNotification), not the gateway's
    assert opened[3] == station_time


def test_a_station_that_never_reported_its_time_gets_the_events_time() -> None:
    replay = Replay()
    replay.connection(0, "online", "connected")
    replay.connection(100, "offline", "network lost")
    [opened] = replay.comm()
    assert opened[3] == replay.gateway(100)


def test_heartbeat_gaps_relative_to_the_learned_interval_fire_and_clear() -> None:
    replay = Replay()
    at = replay.healthy(0, 20)
    for _ in range(2):  # two silences of five intervals each
        at += 5 * HB
        replay.heartbeat(at)
        at = replay.healthy(at, 3)
    assert [a[:3] for a in replay.comm()] == [("open", "medium", "rule:heartbeat_gaps")]
    replay.healthy(at, 80)  # the window (72 intervals) drains: resolved
    assert [a[0] for a in replay.comm()] == ["open", "resolved"]
    assert replay.alerts[0].evidence.features["gap_ratio"] >= 3.0


def test_one_long_gap_is_no_alert() -> None:
    replay = Replay()
    at = replay.healthy(0, 20)
    replay.heartbeat(at + 6 * HB)
    replay.healthy(at + 6 * HB, 100)
    assert replay.comm() == []


def test_reconnect_flapping_fires_and_clears_after_the_window() -> None:
    replay = Replay()
    replay.connection(0, "online", "connected")
    at = replay.healthy(0, 20)
    for _ in range(3):  # three reconnects within the grace period: no offline at all
        replay.connection(at + 30, "online", "connected")
        at = replay.healthy(at + 30, 4)
    assert [a[:3] for a in replay.comm()] == [("open", "medium", "rule:comm_flapping")]
    replay.healthy(at, 80)
    assert [a[0] for a in replay.comm()] == ["open", "resolved"]


def test_a_boot_loop_is_high() -> None:
    replay = Replay()
    at = replay.healthy(0, 20)
    for _ in range(3):
        replay.boot(at + 60)
        at = replay.healthy(at + 60, 2)
    assert [a[:3] for a in replay.comm()] == [("open", "high", "rule:boot_loop")]


def test_a_station_that_never_stays_up_long_enough_to_learn_still_flaps() -> None:
    replay = Replay()
    replay.connection(0, "online", "connected")
    at = 0.0
    for i in range(4):
        at = replay.healthy(at, 2, seed=i)
        replay.connection(at + 10, "online", "connected")
    assert replay.station.comm.interval_s is None
    assert [a[2] for a in replay.comm()] == ["rule:comm_flapping"]


def test_a_late_offline_from_another_replica_and_a_re_registration_are_ignored() -> None:
    rule = CommRule()
    assert rule.connection("CP1", True, T0, T0, "connected", "gw-2") == []
    assert rule.connection("CP1", False, T0, T0, "gateway gw-1 lost", "gw-1") == []
    assert rule.connection("CP1", True, T0, T0, "connection re-registered", "gw-2") == []
    assert rule.reconnects == []
    assert len(rule.connection("CP1", False, T0, T0, "network lost", "gw-2")) == 1
    assert rule.connection("CP1", False, T0, T0, "network lost", "gw-2") == []  # repeated


def scenario(replay: Replay) -> None:
    replay.connection(0, "online", "connected")
    at = replay.healthy(0, 30)
    at += 4 * HB
    replay.heartbeat(at)
    at = replay.healthy(at, 3)
    at += 7 * HB
    replay.heartbeat(at)
    at = replay.healthy(at, 5)
    replay.connection(at + 10, "offline", "network lost")
    for i in range(3):
        replay.connection(at + 400 + i * 900, "online", "connected")
        replay.healthy(at + 400 + i * 900, 2, seed=i)
    at += 3000
    replay.boot(at)
    replay.healthy(at, 120)


def test_a_replay_ten_times_faster_gives_the_same_alerts() -> None:
    live, fast = Replay(speed=1.0), Replay(speed=10.0)
    scenario(live)
    scenario(fast)
    assert len(live.comm()) >= 3  # gaps, offline (escalation), resolution at least
    assert {a[2] for a in live.comm()} >= {"rule:heartbeat_gaps", "rule:comm_offline"}
    assert fast.alerts == live.alerts
