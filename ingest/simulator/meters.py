"""Simulated smart meters publishing readings over MQTT.

A meter reads a *source* each interval and publishes the wire format of
``ingest.meters.reading`` to ``meters/<meter_id>/reading`` (QoS 1):

* :class:`RegisterSource` tracks an energy register someone else advances, e.g. a
  simulated station's connector register (``station.registers[cid].wh`` in
  ``ingest.simulator.station``); power is the register's rise over the interval.
  :func:`station_sources` builds these for every connector of a station object;
  ``chargeflow simulate --mqtt-url`` (so ``chargeflow run``) attaches them to the fleet's
  stations via ``run_fleet(on_station=...)``, so meter and station agree.
* :class:`StandaloneSource` simulates its own EV sessions with the fleet's physics,
  for meters that run in a process of their own (``python -m ingest.simulator.meters``);
  their registers have nothing to do with any station's.

``python -m ingest.simulator.meters --url mqtt://127.0.0.1:1883 --stations 20`` runs
standalone meters ``MTR-SIM-0001-1`` ... for stations ``SIM-0001`` ... until interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
import ssl
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import aiomqtt
import structlog

from bus.times import utc_now
from ingest.meters.config import MqttEndpoint
from ingest.meters.reading import encode_reading
from ingest.simulator.physics import ChargingState, EnergyRegister, draw_ev, electrical
from runtime.retry import MQTT

log = structlog.get_logger("chargeflow.simulator.meters")

TOPIC_TEMPLATE = "meters/{meter_id}/reading"
Clock = Callable[[], datetime]


def meter_id_for(charge_point_id: str, connector_id: int = 1) -> str:
    """The simulated meter on a station connector: ``MTR-<charge point id>-<connector>``."""
    return f"MTR-{charge_point_id}-{connector_id}"


@dataclass(frozen=True, slots=True)
class MeterSnapshot:
    time: datetime
    energy_wh: int
    power_w: float
    voltage_v: float
    current_a: float
    temperature_c: float | None


class ReadingSource(Protocol):
    def read(self) -> MeterSnapshot: ...


class RegisterSource:
    """A meter on a register that something else advances (a station's connector)."""

    def __init__(
        self,
        register_wh: Callable[[], int],
        *,
        now: Clock = utc_now,
        voltage_v: float = 230.0,
        phases: int = 3,
        rng: random.Random | None = None,
    ) -> None:
        self._register_wh = register_wh
        self._now = now
        self._voltage = voltage_v
        self._phases = phases
        self._rng = rng or random.Random()
        self._last: tuple[datetime, int] | None = None

    def read(self) -> MeterSnapshot:
        t, wh = self._now(), int(self._register_wh())
        power = 0.0
        if self._last is not None:
            dt = (t - self._last[0]).total_seconds()
            if dt > 0:
                power = max(0.0, (wh - self._last[1]) * 3600.0 / dt)
        self._last = (t, wh)
        voltage, current, temperature = electrical(
            power, voltage_v=self._voltage, phases=self._phases, rng=self._rng
        )
        return MeterSnapshot(t, wh, power, voltage, current, temperature)


def station_sources(station: Any, *, now: Clock | None = None) -> dict[str, RegisterSource]:
    """One :class:`RegisterSource` per connector of a simulated station.

    Duck-typed on ``station.cp_id`` and ``station.registers`` (connector id ->
    object with ``.wh``), as ``ingest.simulator.station.SimulatedStation`` has them;
    ``now`` defaults to ``station.clock.now`` (simulated time), else wall time. A
    station with ``supply_registers`` (the energy that really flowed, which a faulty
    station meter drifts from) is metered on those.
    """
    clock: Clock = now or getattr(getattr(station, "clock", None), "now", None) or utc_now

    def reader(register: Any) -> Callable[[], int]:
        return lambda: int(register.wh)

    return {
        meter_id_for(station.cp_id, cid): RegisterSource(
            reader(register), now=clock, rng=random.Random(f"meter/{station.cp_id}/{cid}")
        )
        for cid, register in getattr(station, "supply_registers", station.registers).items()
    }


class StandaloneSource:
    """A meter on a connector where simulated EVs come and go (own physics)."""

    def __init__(
        self,
        *,
        rng: random.Random,
        now: Clock = utc_now,
        start_wh: int | None = None,
        station_max_w: float = 22_000.0,
        voltage_v: float = 230.0,
        phases: int = 3,
        mean_dwell_s: float = 240.0,
        mean_gap_s: float = 60.0,
    ) -> None:
        self._rng = rng
        self._now = now
        self.register = EnergyRegister(
            start_wh if start_wh is not None else rng.randint(1_000_000, 90_000_000)
        )
        self._station_max_w = station_max_w
        self._voltage = voltage_v
        self._phases = phases
        self._mean_dwell_s = mean_dwell_s
        self._mean_gap_s = mean_gap_s
        self._state: ChargingState | None = None
        self._last = now()
        self._idle_s = rng.expovariate(1.0 / mean_gap_s)

    def _advance(self, dt: float) -> None:
        if self._state is None:
            self._idle_s -= dt
            if self._idle_s > 0:
                return
            ev = draw_ev(self._rng, mean_dwell_s=self._mean_dwell_s)
            self._state = ChargingState(ev=ev, soc=ev.soc_start, station_max_w=self._station_max_w)
            dt = -self._idle_s
        self.register.add(self._state.step(dt))
        if self._state.done is not None:
            self._state = None
            self._idle_s = self._rng.expovariate(1.0 / self._mean_gap_s)

    def read(self) -> MeterSnapshot:
        t = self._now()
        dt = (t - self._last).total_seconds()
        self._last = t
        if dt > 0:
            self._advance(dt)
        power = self._state.power_w if self._state is not None else 0.0
        voltage, current, temperature = electrical(
            power, voltage_v=self._voltage, phases=self._phases, rng=self._rng
        )
        return MeterSnapshot(t, self.register.wh, power, voltage, current, temperature)


@dataclass
class MeterSimConfig:
    mqtt: MqttEndpoint = field(default_factory=MqttEndpoint)
    interval_s: float = 10.0  # real seconds between readings of one meter
    topic_template: str = TOPIC_TEMPLATE
    qos: int = 1
    reconnect_initial_s: float = 0.2
    reconnect_max_s: float = 10.0


class SimulatedMeters:
    """Publish every source's reading each ``interval_s`` until ``stop()``.

    Sources can be added while running (:meth:`add_sources`); :meth:`flush` waits
    until every meter has published a reading taken after the call.
    """

    def __init__(
        self, config: MeterSimConfig, sources: Mapping[str, ReadingSource] | None = None
    ) -> None:
        self.config = config
        self.sources: dict[str, ReadingSource] = dict(sources or {})
        self.published = 0
        self.connected = asyncio.Event()
        self._stop = asyncio.Event()
        self._rng = random.Random()
        self._client: aiomqtt.Client | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._failed: asyncio.Future[None] | None = None
        # flush(): readings taken in epoch n are published -> meter's epoch is n.
        self._epoch = 0
        self._published_epoch: dict[str, int] = {}
        self._progress = asyncio.Condition()

    def stop(self) -> None:
        self._stop.set()

    def add_sources(self, sources: Mapping[str, ReadingSource]) -> None:
        """Start publishing for more meters (at once when connected)."""
        for meter_id, source in sources.items():
            if meter_id in self.sources:
                raise ValueError(f"meter {meter_id} is already simulated")
            self.sources[meter_id] = source
            if self._client is not None:
                self._spawn(self._client, meter_id, source)

    async def flush(self) -> None:
        """Wait until every meter published a reading taken after this call (e.g. so the
        readings after a fleet's last sessions are out before stopping)."""
        self._epoch += 1
        target = self._epoch
        async with self._progress:
            await self._progress.wait_for(
                lambda: all(self._published_epoch.get(m, -1) >= target for m in self.sources)
            )

    async def run(self) -> None:
        cfg, attempt = self.config, 0
        while not self._stop.is_set():
            try:
                async with aiomqtt.Client(
                    cfg.mqtt.host,
                    cfg.mqtt.port,
                    username=cfg.mqtt.username,
                    password=cfg.mqtt.password,
                    keepalive=30,
                    timeout=10.0,
                    tls_context=ssl.create_default_context() if cfg.mqtt.tls else None,
                ) as client:
                    attempt = 0
                    self.connected.set()
                    await self._publish_all(client)
            except aiomqtt.MqttError as exc:
                attempt += 1
                delay = MQTT.capped(cfg.reconnect_max_s, cfg.reconnect_initial_s).base(attempt)
                log.info("MQTT broker not reachable; retrying", error=str(exc), delay=delay)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._stop.wait()
            finally:
                self.connected.clear()

    def _spawn(self, client: aiomqtt.Client, meter_id: str, source: ReadingSource) -> None:
        task = asyncio.create_task(self._meter(client, meter_id, source), name=meter_id)
        self._tasks.add(task)
        task.add_done_callback(self._meter_done)

    def _meter_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or self._failed is None or self._failed.done():
            return
        exc = task.exception()
        if exc is not None:
            self._failed.set_exception(exc)  # a lost connection: MqttError, reconnect

    async def _publish_all(self, client: aiomqtt.Client) -> None:
        failed = self._failed = asyncio.get_running_loop().create_future()
        stopper = asyncio.create_task(self._stop.wait())
        self._client = client
        try:
            for meter_id, source in self.sources.items():
                self._spawn(client, meter_id, source)
            await asyncio.wait([failed, stopper], return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._client = None
            tasks = [*self._tasks, stopper]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._failed = None
        if failed.done():
            failed.result()

    async def _meter(self, client: aiomqtt.Client, meter_id: str, source: ReadingSource) -> None:
        cfg = self.config
        topic = cfg.topic_template.format(meter_id=meter_id)
        # Spread the meters over the interval rather than publishing in bursts.
        await asyncio.sleep(self._rng.uniform(0.0, cfg.interval_s))
        # Until this connection is given up, not only until cancelled: on Python 3.11
        # asyncio.wait_for (inside aiomqtt's publish) swallows a cancellation that
        # arrives with the broker's acknowledgement, and the loop would publish on.
        while self._client is client:
            epoch, snap = self._epoch, source.read()
            await client.publish(
                topic,
                encode_reading(
                    meter_id,
                    snap.time,
                    snap.energy_wh,
                    power_w=snap.power_w,
                    voltage_v=snap.voltage_v,
                    current_a=snap.current_a,
                    temperature_c=snap.temperature_c,
                ),
                qos=cfg.qos,
            )
            self.published += 1
            async with self._progress:
                self._published_epoch[meter_id] = epoch
                self._progress.notify_all()
            await asyncio.sleep(cfg.interval_s)


def topic_template_for(pattern: str) -> str:
    """The topic a simulated meter publishes to, from the bridge's subscription filter:
    the first ``+`` level becomes the meter id (``meters/+/reading`` ->
    ``meters/{meter_id}/reading``)."""
    levels = pattern.split("/")
    if (
        "+" not in levels
        or "#" in levels
        or levels.count("+") > 1
        or any("{" in level or "}" in level for level in levels)
    ):
        raise ValueError(
            f"cannot publish to {pattern!r}: it needs exactly one '+' level "
            "(the meter id) and no '#'"
        )
    levels[levels.index("+")] = "{meter_id}"
    return "/".join(levels)


def standalone_meters(
    station_ids: list[str],
    *,
    seed: int = 0,
    mean_dwell_s: float = 240.0,
    mean_gap_s: float = 60.0,
) -> dict[str, StandaloneSource]:
    """A standalone meter on connector 1 of each station (ids from :func:`meter_id_for`)."""
    return {
        meter_id_for(cp_id): StandaloneSource(
            rng=random.Random(f"{seed}/meter/{cp_id}"),
            mean_dwell_s=mean_dwell_s,
            mean_gap_s=mean_gap_s,
        )
        for cp_id in station_ids
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m ingest.simulator.meters",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--url", default="mqtt://127.0.0.1:1883", help="MQTT broker URL")
    p.add_argument("--stations", type=int, default=20)
    p.add_argument("--prefix", default="SIM-", help="station id prefix (ids PREFIX0001...)")
    p.add_argument("--interval", type=float, default=10.0, help="seconds between readings")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    stations = [f"{args.prefix}{n:04d}" for n in range(1, args.stations + 1)]
    meters = SimulatedMeters(
        MeterSimConfig(mqtt=MqttEndpoint.from_url(args.url), interval_s=args.interval),
        standalone_meters(stations, seed=args.seed),
    )

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, meters.stop)
        log.info(
            "simulated meters publishing",
            meters=len(meters.sources),
            mqtt=meters.config.mqtt.url,
            interval_s=args.interval,
        )
        await meters.run()
        log.info("simulated meters stopped", published=meters.published)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
