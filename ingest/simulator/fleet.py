"""A fleet of simulated OCPP 1.6J and 2.0.1 charge points in one asyncio process.

Each station is an ``ocpp`` library client of its version (``FleetConfig.ocpp_versions``
cycles over the stations; the version-specific payloads are in ``v16``/``v201``,
see ``dialect``): it connects (reconnecting
with backoff while the gateway is not up), boots, sends heartbeats and runs
charging sessions per connector. Transaction messages (1.6 StartTransaction,
MeterValues of a transaction, StopTransaction; 2.0.1 TransactionEvent) go through a
per-station queue
and are retried with backoff until the gateway acknowledges them, like a real
station, so a broker outage never loses a session. The ground truth of every
session (``meterStop - meterStart``, 2.0.1: Transaction.End register -
Transaction.Begin register, both from the station's own register) is recorded in
the ``FleetReport``.

Simulated time runs ``time_scale`` times faster than real time; message
timestamps are simulated time (ahead of the wall clock when ``time_scale > 1``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from ocpp.charge_point import ChargePoint
from ocpp.exceptions import InternalError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from ingest.simulator.commands import CommandsMixin, StationCommands
from ingest.simulator.dialect import Dialect, Reading, Sample
from ingest.simulator.dialect import iso as iso
from ingest.simulator.physics import ChargingState, EnergyRegister, draw_ev, electrical
from ingest.simulator.v16 import V16Dialect
from ingest.simulator.v201 import V201Dialect
from runtime.retry import Backoff

log = structlog.get_logger("chargeflow.simulator")
_lib_logger = logging.getLogger("chargeflow.simulator.ocpp")
_lib_logger.setLevel(logging.WARNING)


DIALECTS: dict[str, type[Dialect]] = {"1.6": V16Dialect, "2.0.1": V201Dialect}


def default_id_tags(count: int = 20) -> tuple[str, ...]:
    return tuple(f"SIM-TAG-{i:04d}" for i in range(1, count + 1))


@dataclass(frozen=True)
class FleetConfig:
    gateway_url: str = "ws://127.0.0.1:9000/ocpp"  # stations connect to {url}/{id}
    stations: int = 10
    station_id_prefix: str = "SIM-"
    connectors_per_station: int = 1
    sessions_per_station: int | None = None  # None = run forever
    meter_interval_s: float = 60.0  # simulated seconds between MeterValues
    time_scale: float = 1.0  # simulated seconds per real second
    id_tags: tuple[str, ...] = field(default_factory=default_id_tags)
    seed: int = 0
    max_power_w: float = 22_000.0
    voltage_v: float = 230.0
    phases: int = 3
    mean_arrival_gap_s: float = 1800.0  # simulated, between sessions on a connector
    # Simulated seconds a connector stays free at least before the next EV arrives (on
    # top of the random gap): room for a smart meter's reading between two sessions.
    min_arrival_gap_s: float = 0.0
    mean_dwell_s: float = 3 * 3600.0  # simulated, how long an EV stays plugged in
    call_timeout_s: float = 15.0  # real seconds to wait for a CALLRESULT
    heartbeat_interval_s: float | None = None  # None = what the gateway's boot answer says
    retry_initial_s: float = 0.2  # real seconds, doubled per attempt
    retry_max_s: float = 10.0
    vendor: str = "chargeflow"
    model: str = "SIM-AC22"
    # When set, stations and id tags are provisioned in this database first (with
    # station_password as their Basic-auth password).
    database_url: str | None = None
    # HTTP Basic password of every station (username = its id; OCPP security
    # profile 1); None = connect without credentials.
    station_password: str | None = None
    # CA bundle (PEM) to trust for wss:// gateway URLs (None = the system's).
    tls_ca_file: str | None = None
    # OCPP version per station, cycling: ("1.6", "2.0.1") = odd stations 1.6, even 2.0.1.
    ocpp_versions: tuple[str, ...] = ("1.6",)
    # How stations answer commands from the CSMS, per action: "reject" (refusing
    # status), "not_supported" (CALLERROR NotSupported), "ignore" (no answer); any
    # other action is answered like a real station (see ingest.simulator.commands).
    command_behaviour: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = [v for v in self.ocpp_versions if v not in DIALECTS]
        if not self.ocpp_versions or unknown:
            raise ValueError(
                f"ocpp_versions must be from {sorted(DIALECTS)}, got {self.ocpp_versions!r}"
            )

    def station_ids(self) -> list[str]:
        return [f"{self.station_id_prefix}{i:04d}" for i in range(1, self.stations + 1)]

    def station_versions(self) -> dict[str, str]:
        """Station id -> OCPP version."""
        return {
            cp: self.ocpp_versions[i % len(self.ocpp_versions)]
            for i, cp in enumerate(self.station_ids())
        }


@dataclass
class SessionTruth:
    charge_point_id: str
    connector_id: int  # 2.0.1: the EVSE id (one connector per EVSE)
    transaction_id: int | str  # 1.6: assigned by the gateway; 2.0.1: the station's UUID
    id_tag: str
    meter_start_wh: int
    meter_stop_wh: int
    energy_wh: int
    started_at: str
    stopped_at: str
    stop_reason: str
    meter_value_messages: int  # 2.0.1: TransactionEvent Updated messages
    ocpp_version: str = "1.6"


@dataclass
class FleetReport:
    stations: list[str] = field(default_factory=list)
    sessions: list[SessionTruth] = field(default_factory=list)
    rejected_authorizations: int = 0
    call_errors: int = 0  # CALLERRORs and timeouts seen (each is retried or given up)
    retries: int = 0
    connects: int = 0
    connect_failures: int = 0
    failed_transaction_messages: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @property
    def total_energy_wh(self) -> int:
        return sum(s.energy_wh for s in self.sessions)


class SimClock:
    def __init__(self, time_scale: float) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be > 0")
        self.time_scale = time_scale
        self._t0 = asyncio.get_running_loop().time()
        self._wall0 = datetime.now(UTC)

    def now(self) -> datetime:
        elapsed = asyncio.get_running_loop().time() - self._t0
        return self._wall0 + timedelta(seconds=elapsed * self.time_scale)

    async def sleep(self, simulated_s: float) -> None:
        await asyncio.sleep(max(0.0, simulated_s) / self.time_scale)


@dataclass
class _TxMessage:
    payload: Any
    future: asyncio.Future[Any]


# Fault injection: awaited before every attempt to send a transaction message,
# with (charge point id, action, attempt number starting at 0).
BeforeSend = Callable[[str, str, int], Awaitable[None]]


class SimulatedStation:
    def __init__(
        self,
        cp_id: str,
        config: FleetConfig,
        report: FleetReport,
        clock: SimClock,
        before_send: BeforeSend | None = None,
        ocpp_version: str = "1.6",
        tags_in_use: set[str] | None = None,
    ) -> None:
        self.cp_id = cp_id
        # Shared by the fleet: a driver's card is in one session at a time (the
        # gateway answers ConcurrentTx otherwise).
        self.tags_in_use = tags_in_use if tags_in_use is not None else set()
        self.dialect = DIALECTS[ocpp_version]()
        self._before_send = before_send
        self.config = config
        self.report = report
        self.clock = clock
        self.rng = random.Random(f"{config.seed}/{cp_id}")
        self.registers = {
            cid: EnergyRegister(self.rng.randint(1_000_000, 90_000_000))
            for cid in range(1, config.connectors_per_station + 1)
        }
        self._client: ChargePoint | None = None
        self._connected = asyncio.Event()
        self._finished = asyncio.Event()
        self._booted_once = asyncio.Event()  # first boot and Available statuses are out
        self._tx_queue: asyncio.Queue[_TxMessage] = asyncio.Queue()
        self._sessions_left = config.sessions_per_station
        self._heartbeat_s: float = 300.0
        self._ws: ClientConnection | None = None
        # Commands from the CSMS and the state they change (profiles, availability...).
        self.commands = StationCommands(self, config.command_behaviour)
        self.log = log.bind(charge_point_id=cp_id, ocpp_version=ocpp_version)

    # --------------------------------------------------------------- lifecycle

    async def run(self) -> None:
        connection = asyncio.create_task(self._connection_loop(), name=f"{self.cp_id}-conn")
        sender = asyncio.create_task(self._sender(), name=f"{self.cp_id}-tx")
        try:
            async with asyncio.TaskGroup() as tg:
                for cid in self.registers:
                    tg.create_task(self._connector_loop(cid))
        finally:
            self._finished.set()
            sender.cancel()
            await asyncio.gather(connection, sender, return_exceptions=True)

    def _backoff(self, attempt: int) -> float:
        """The wait after ``attempt + 1`` failed tries (:class:`runtime.retry.Backoff`,
        drawn from the station's seeded generator so runs repeat)."""
        policy = Backoff(self.config.retry_initial_s, self.config.retry_max_s)
        return policy.delay(attempt + 1, self.rng)

    async def _connection_loop(self) -> None:
        attempt = 0
        url = f"{self.config.gateway_url.rstrip('/')}/{self.cp_id}"
        while not self._finished.is_set():
            try:
                ws = await connect(
                    url,
                    open_timeout=10,
                    subprotocols=[self.dialect.subprotocol],  # type: ignore[list-item]
                    additional_headers=self._auth_headers(),
                    ssl=self._ssl_context(url),
                )
            except Exception as exc:
                self.report.connect_failures += 1
                delay = self._backoff(attempt)
                attempt += 1
                self.log.info("gateway not reachable, retrying", error=str(exc), delay=delay)
                await self._wait_finished(delay)
                continue
            attempt = 0
            self.report.connects += 1
            try:
                await self._serve_connection(ws)
            finally:
                await ws.close()

    def _auth_headers(self) -> dict[str, str]:
        if self.config.station_password is None:
            return {}
        token = base64.b64encode(f"{self.cp_id}:{self.config.station_password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def _ssl_context(self, url: str) -> ssl.SSLContext | None:
        if not url.startswith("wss://"):
            return None
        return ssl.create_default_context(cafile=self.config.tls_ca_file)

    async def _wait_finished(self, delay: float) -> None:
        try:
            async with asyncio.timeout(delay):
                await self._finished.wait()
        except TimeoutError:
            pass

    async def _serve_connection(self, ws: ClientConnection) -> None:
        client = self.dialect.client_cls(
            self.cp_id, ws, response_timeout=self.config.call_timeout_s, logger=_lib_logger
        )
        if isinstance(client, CommandsMixin):
            client.commands = self.commands
        self._ws = ws
        receiver = asyncio.create_task(client.start())
        keeper = asyncio.create_task(self._boot_and_heartbeat(client))
        finished = asyncio.create_task(self._finished.wait())
        tasks = (receiver, keeper, finished)
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._connected.clear()
            self._client = None
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for result in results:
                if isinstance(result, Exception) and not isinstance(result, ConnectionClosed):
                    self.log.warning("connection task failed", error=repr(result))

    async def reboot(self) -> None:
        """Reset: drop the connection; the connection loop reconnects and boots again."""
        if self._ws is not None:
            await self._ws.close(1000, "reset")

    async def _boot_and_heartbeat(self, client: ChargePoint) -> None:
        attempt = 0
        while True:
            try:
                boot = await client.call(
                    self.dialect.boot(
                        vendor=self.config.vendor,
                        model=self.config.model,
                        serial=f"{self.cp_id}-SN",
                        firmware="1.0.0",
                    ),
                    suppress=False,
                )
            except (ConnectionClosed, asyncio.CancelledError):
                raise
            except Exception as exc:
                self.report.call_errors += 1
                self.log.info("boot failed, retrying", error=repr(exc))
                await asyncio.sleep(self._backoff(attempt))
                attempt += 1
                continue
            if boot.status == "Accepted":
                self._heartbeat_s = float(boot.interval) or 300.0
                break
            await asyncio.sleep(max(1.0, float(boot.interval or 10)))
        self._client = client
        self._connected.set()
        for cid in [0, *self.registers] if self.dialect.station_connector else self.registers:
            await self._status(cid, "Available")
        self._booted_once.set()
        interval = self.config.heartbeat_interval_s or self._heartbeat_s
        while True:
            await asyncio.sleep(interval)
            await self._best_effort(self.dialect.heartbeat(), attempts=1)

    async def _client_ready(self) -> ChargePoint:
        while True:
            await self._connected.wait()
            if self._client is not None:
                return self._client

    async def _best_effort(self, payload: Any, attempts: int = 3) -> Any | None:
        """Non-transaction messages: a few tries, then give up."""
        for attempt in range(attempts):
            client = await self._client_ready()
            try:
                return await client.call(payload, suppress=False)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.report.call_errors += 1
                self.log.info("call failed", action=type(payload).__name__, error=repr(exc))
                if attempt + 1 < attempts:
                    self.report.retries += 1
                    await asyncio.sleep(self._backoff(attempt))
        return None

    # ----------------------------------------------------- transaction messages

    def _enqueue(self, payload: Any) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._tx_queue.put_nowait(_TxMessage(payload, future))
        return future

    async def _sender(self) -> None:
        """Send queued transaction messages in order; retry each until acknowledged."""
        while True:
            item = await self._tx_queue.get()
            attempt = 0
            other_failures = 0
            while True:
                client = await self._client_ready()
                if self._before_send is not None:
                    await self._before_send(self.cp_id, type(item.payload).__name__, attempt)
                try:
                    result = await client.call(item.payload, suppress=False)
                except asyncio.CancelledError:
                    raise
                except (InternalError, TimeoutError, ConnectionClosed) as exc:
                    self.report.call_errors += 1
                    self.log.info(
                        "transaction message not acknowledged, retrying",
                        action=type(item.payload).__name__,
                        error=repr(exc),
                    )
                except Exception as exc:  # rejected for good (schema etc.): few retries
                    self.report.call_errors += 1
                    other_failures += 1
                    if other_failures >= 3:
                        self.report.failed_transaction_messages += 1
                        self.log.error(
                            "transaction message rejected, giving up",
                            action=type(item.payload).__name__,
                            error=repr(exc),
                        )
                        item.future.set_exception(exc)
                        break
                else:
                    item.future.set_result(result)
                    break
                self.report.retries += 1
                await asyncio.sleep(self._backoff(attempt))
                attempt += 1
            self._tx_queue.task_done()

    # ---------------------------------------------------------------- sessions

    def _take_session(self) -> bool:
        if self._sessions_left is None:
            return True
        if self._sessions_left <= 0:
            return False
        self._sessions_left -= 1
        return True

    async def _status(self, cid: int, status: str) -> None:
        """A 1.6 status; the dialect maps it (or skips it: 2.0.1 has no Charging)."""
        payload = self.dialect.status(cid, status, self.clock.now())
        if payload is not None:
            await self._best_effort(payload)

    async def _connector_loop(self, cid: int) -> None:
        await self._booted_once.wait()
        while self._take_session():
            await self.clock.sleep(
                self.config.min_arrival_gap_s
                + self.rng.expovariate(1.0 / self.config.mean_arrival_gap_s)
            )
            async with self.commands.locks[cid]:
                await self._session(cid)

    def _sample(self, cid: int, state: ChargingState) -> Sample:
        voltage, current, temperature = electrical(
            state.power_w, voltage_v=self.config.voltage_v, phases=self.config.phases, rng=self.rng
        )
        readings = [
            Reading("Energy.Active.Import.Register", self.registers[cid].wh, "Wh", "Outlet"),
            Reading("Power.Active.Import", state.power_w, "W", "Outlet"),
            Reading("Current.Import", current, "A", "Outlet", decimals=2),
            Reading("Voltage", voltage, "V", "Outlet"),
            Reading("SoC", state.soc * 100, "Percent", "EV", decimals=0),
        ]
        if self.dialect.version == "1.6":  # 2.0.1 has no Temperature measurand
            readings.append(Reading("Temperature", temperature, "Celsius", "Body"))
        return Sample(self.clock.now(), tuple(readings))

    async def _session(
        self, cid: int, id_tag: str | None = None, *, authorize: bool = True
    ) -> None:
        """One session on ``cid``; ``id_tag`` given: a remote start (``authorize``: ask
        the CSMS first)."""
        cfg = self.config
        if id_tag is None:
            free = [t for t in cfg.id_tags if t not in self.tags_in_use]
            id_tag = self.rng.choice(free or list(cfg.id_tags))
        mine = id_tag not in self.tags_in_use  # more sessions than tags: share one
        self.tags_in_use.add(id_tag)
        try:
            await self._session_with(cid, id_tag, authorize)
        finally:
            if mine:
                self.tags_in_use.discard(id_tag)

    async def _session_with(self, cid: int, id_tag: str, authorize: bool = True) -> None:
        cfg = self.config
        ev = draw_ev(self.rng, mean_dwell_s=cfg.mean_dwell_s)
        dialect = self.dialect
        await self._status(cid, "Preparing")
        if authorize:
            auth = await self._best_effort(dialect.authorize(id_tag))
            if auth is None or dialect.auth_status(auth) != "Accepted":
                self.report.rejected_authorizations += 1
                await self._status(cid, "Available")
                return
        register = self.registers[cid]
        meter_start = register.wh
        started_at = self.clock.now()
        proposed = dialect.new_transaction_id(self.rng.getrandbits(128))
        start = await self._enqueue(
            dialect.start(
                connector_id=cid,
                id_tag=id_tag,
                register_wh=meter_start,
                at=started_at,
                transaction_id=proposed,
            )
        )
        transaction_id, start_status = dialect.started(start, proposed)
        self.commands.session_started(cid, transaction_id)
        state = ChargingState(ev=ev, soc=ev.soc_start, station_max_w=cfg.max_power_w)
        reason: str | None = None
        samples = 0
        if start_status != "Accepted":
            reason = "DeAuthorized"
        else:
            await self._status(cid, "Charging")
        last_sample: Sample | None = None
        while reason is None:
            await self.clock.sleep(cfg.meter_interval_s)
            state.station_max_w = self.commands.power_limit_w(cid, cfg.max_power_w)
            register.add(state.step(cfg.meter_interval_s))
            last_sample = self._sample(cid, state)
            self._enqueue(
                dialect.meter(
                    connector_id=cid,
                    transaction_id=transaction_id,
                    sample=last_sample,
                    charging=state.power_w > 0,
                )
            )
            samples += 1
            reason = self.commands.take_stop(cid) or state.done
        meter_stop = register.wh
        stopped_at = self.clock.now()
        await self._enqueue(
            dialect.stop(
                connector_id=cid,
                transaction_id=transaction_id,
                id_tag=id_tag,
                register_wh=meter_stop,
                at=stopped_at,
                reason=reason,
                last=last_sample,
            )
        )
        self.commands.session_ended(cid)
        self.report.sessions.append(
            SessionTruth(
                charge_point_id=self.cp_id,
                connector_id=cid,
                transaction_id=transaction_id,
                id_tag=id_tag,
                meter_start_wh=meter_start,
                meter_stop_wh=meter_stop,
                energy_wh=meter_stop - meter_start,
                started_at=iso(started_at),
                stopped_at=iso(stopped_at),
                stop_reason=reason,
                meter_value_messages=samples,
                ocpp_version=dialect.version,
            )
        )
        self.log.info(
            "session done",
            transaction_id=transaction_id,
            energy_wh=meter_stop - meter_start,
            reason=reason,
        )
        await self._status(cid, "Finishing")
        await self._status(cid, "Available")


def provision(config: FleetConfig) -> None:
    """Register the fleet's stations and id tags (idempotent)."""
    from store.registry import add_id_tag, provision_station

    assert config.database_url is not None
    for cp_id in config.station_ids():
        provision_station(config.database_url, cp_id, password=config.station_password)
    for tag in config.id_tags:
        add_id_tag(config.database_url, tag)


async def run_fleet(
    config: FleetConfig,
    report: FleetReport | None = None,
    *,
    before_send: BeforeSend | None = None,
    on_station: Callable[[SimulatedStation], None] | None = None,
) -> FleetReport:
    """Run every station until each finished ``sessions_per_station`` sessions
    (forever when None; cancel to stop). Returns the ground truth; pass ``report``
    to watch it fill while the fleet runs, ``before_send`` to inject faults.

    ``on_station`` is called with every station once it exists and before any of
    them runs (so before any register moves), e.g. to attach smart meters that
    follow the connectors' registers (``ingest.simulator.meters.station_sources``)."""
    if config.database_url:
        await asyncio.to_thread(provision, config)
    if report is None:
        report = FleetReport()
    report.stations = config.station_ids()
    clock = SimClock(config.time_scale)
    versions = config.station_versions()
    tags_in_use: set[str] = set()
    stations = [
        SimulatedStation(cp_id, config, report, clock, before_send, versions[cp_id], tags_in_use)
        for cp_id in report.stations
    ]
    if on_station is not None:
        for station in stations:
            on_station(station)
    async with asyncio.TaskGroup() as tg:
        for station in stations:
            tg.create_task(station.run(), name=station.cp_id)
    return report
