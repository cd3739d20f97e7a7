"""One simulated charge point: its connection to the gateway and what it sends.

The station is an ``ocpp`` library client of its version (``versions``): it connects
(reconnecting with backoff while the gateway is not up), boots, sends heartbeats and
runs charging sessions per connector (``sessions``). Transaction messages go through
a per-station queue and are retried with backoff until the gateway acknowledges
them, like a real station. It implements ``port.StationPort``, the one way its
command handlers, sessions and behaviours act on it, and owns every task they start.

Size: the connection, the transaction queue and the port (statuses, faults, going
offline) share the station's connection state; split the port's fault half out when it
grows.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from ocpp.charge_point import ChargePoint
from ocpp.exceptions import InternalError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from ingest.simulator.behaviours import command_behaviours
from ingest.simulator.behaviours.base import Behaviours, Effect
from ingest.simulator.behaviours.faults import scenario_for
from ingest.simulator.clock import SimClock
from ingest.simulator.config import FleetConfig
from ingest.simulator.dialect import FaultReport, Sample
from ingest.simulator.physics import EnergyRegister, Rating
from ingest.simulator.profiles import NOMINAL_V, StationProfile, station_profile
from ingest.simulator.report import FleetReport
from ingest.simulator.sessions import Sessions
from ingest.simulator.state import StationState
from ingest.simulator.versions import VERSIONS
from runtime.retry import Backoff

log = structlog.get_logger("chargeflow.simulator")
_lib_logger = logging.getLogger("chargeflow.simulator.ocpp")
_lib_logger.setLevel(logging.WARNING)

# Fault injection: awaited before every attempt to send a transaction message,
# with (charge point id, action, attempt number starting at 0).
BeforeSend = Callable[[str, str, int], Awaitable[None]]


@dataclass
class _TxMessage:
    payload: Any
    future: asyncio.Future[Any]


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
        index: int = 0,
    ) -> None:
        self.cp_id = cp_id
        self.version = VERSIONS[ocpp_version]
        self.dialect = self.version.dialect(cp_id if config.signed_meter_values else None)
        self._before_send = before_send
        self.config = config
        self.report = report
        self.clock = clock
        self.rng = random.Random(f"{config.seed}/{cp_id}")
        self.registers = {
            cid: EnergyRegister(self.rng.randint(1_000_000, 90_000_000))
            for cid in range(1, config.connectors_per_station + 1)
        }
        # The energy that really flowed (what a smart meter on the connector counts);
        # the station's registers follow it unless a meter fault bends them.
        self.supply_registers = {cid: EnergyRegister(r.wh) for cid, r in self.registers.items()}
        # What the CSMS's commands changed (profiles, availability...), across connections.
        self.state = StationState(self.registers, **config.profile_handling(cp_id))
        self.profile: StationProfile = station_profile(
            cp_id,
            index,
            models=config.station_models,
            seed=config.seed,
            varied_use=config.varied_use,
        )
        self.faults = [scenario_for(f) for f in config.faults if f.station_id == cp_id]
        self.behaviours = command_behaviours(config.command_behaviour) + Behaviours(self.faults)
        self.sessions = Sessions(
            self,
            config,
            self.registers,
            self.rng,
            report,
            tags_in_use if tags_in_use is not None else set(),
            self.supply_registers,
        )
        self._offline_until: datetime | None = None
        self._offline_for_good = False
        self._client: ChargePoint | None = None
        self._connected = asyncio.Event()
        self._finished = asyncio.Event()
        self._booted_once = asyncio.Event()  # first boot and Available statuses are out
        self._tx_queue: asyncio.Queue[_TxMessage] = asyncio.Queue()
        self._sessions_left = config.sessions_per_station
        self._heartbeat_s: float = 300.0
        self._ws: ClientConnection | None = None
        self._group: asyncio.TaskGroup | None = None
        self._spawned: set[asyncio.Task[None]] = set()
        self.log = log.bind(charge_point_id=cp_id, ocpp_version=ocpp_version)

    # --------------------------------------------------------------- lifecycle

    async def run(self) -> None:
        """Until every connector ran its sessions; then the connection closes."""
        async with asyncio.TaskGroup() as group:
            self._group = group
            group.create_task(self._connection_loop(), name=f"{self.cp_id}-conn")
            sender = group.create_task(self._sender(), name=f"{self.cp_id}-tx")
            try:
                async with asyncio.TaskGroup() as connectors:
                    for cid in self.registers:
                        connectors.create_task(self._connector_loop(cid))
            finally:
                self._finished.set()
                sender.cancel()
                for task in list(self._spawned):
                    task.cancel()

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        if self._group is None or self._finished.is_set():
            work.close()  # the station is not running (any more): nothing to do it for
            return

        async def logged() -> None:
            try:
                await work
            except Exception as exc:
                self.log.warning("station task failed", error=repr(exc))

        task = self._group.create_task(logged())
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)

    def _backoff(self, attempt: int) -> float:
        """The wait after ``attempt + 1`` failed tries (:class:`runtime.retry.Backoff`,
        drawn from the station's seeded generator so runs repeat)."""
        policy = Backoff(self.config.retry_initial_s, self.config.retry_max_s)
        return policy.delay(attempt + 1, self.rng)

    async def _connection_loop(self) -> None:
        attempt = 0
        url = f"{self.config.gateway_url.rstrip('/')}/{self.cp_id}"
        while not self._finished.is_set():
            if await self._stay_offline():
                return
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

    async def _stay_offline(self) -> bool:
        """Wait out an offline spell (an injected comm fault); True: offline for good."""
        if self._offline_for_good:
            return True
        until = self._offline_until
        if until is not None:
            wait = (until - self.clock.now()).total_seconds()
            if wait > 0:
                await self.clock.sleep(wait)
            self._offline_until = None
        return False

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
        client = self.version.charge_point(
            self,
            ws,
            self.behaviours,
            response_timeout=self.config.call_timeout_s,
            logger=_lib_logger,
        )
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
        if self._ws is not None:
            await self._ws.close(1000, "reset")

    async def _boot(self, client: ChargePoint) -> None:
        """BootNotification until Accepted (retrying failures with backoff)."""
        attempt = 0
        while True:
            try:
                boot = await client.call(self.boot_request(), suppress=False)
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
                return
            await asyncio.sleep(max(1.0, float(boot.interval or 10)))

    async def _boot_and_heartbeat(self, client: ChargePoint) -> None:
        await self._boot(client)
        self._client = client
        self._connected.set()
        for cid in [0, *self.registers] if self.dialect.station_connector else self.registers:
            await self.send_status(cid, "Available")
        if not self._booted_once.is_set():
            for fault in self.faults:  # each injected fault acts at its times
                self.spawn(fault.timeline(self))
        self._booted_once.set()
        # On the station's clock: heartbeat gaps are telemetry-time facts.
        interval = self.config.heartbeat_interval_s or self._heartbeat_s
        while True:
            await self.clock.sleep(interval)
            if not self.behaviours.skips_heartbeat(self.clock.now()):
                await self.send(self.dialect.heartbeat(), attempts=1)

    async def _client_ready(self) -> ChargePoint:
        while True:
            await self._connected.wait()
            if self._client is not None:
                return self._client

    # ------------------------------------------------------------- the port

    @property
    def rating(self) -> Rating:
        model = self.profile.model
        return Rating(model.max_power_w, NOMINAL_V, model.phases)

    def now(self) -> datetime:
        return self.clock.now()

    async def sleep(self, simulated_s: float) -> None:
        await self.clock.sleep(simulated_s)

    def meter_sample(self, connector_id: int) -> Sample:
        return self.sessions.idle_sample(connector_id)

    def boot_request(self) -> Any:
        return self.dialect.boot(
            vendor=self.config.vendor,
            model=self.config.model,
            serial=f"{self.cp_id}-SN",
            firmware=self.state.firmware_version,
        )

    async def send(self, payload: Any, attempts: int = 3) -> Any | None:
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

    async def send_status(self, connector_id: int, status: str) -> None:
        payload = self.dialect.status(connector_id, status, self.clock.now())
        if payload is not None:
            await self.send(payload)

    def effect(self, connector_id: int) -> Effect:
        return self.behaviours.effect(connector_id, self.clock.now())

    def refuses_start(self, connector_id: int) -> bool:
        return self.behaviours.refuses_start(connector_id, self.clock.now())

    async def report_fault(self, report: FaultReport, status: str | None = None) -> None:
        cid = report.connector_id
        if report.faulted:
            for c in [cid] if cid else list(self.registers):
                self.state.faulted[c] = report.error_code
                if c in self.state.running:
                    self.stop_session(c, "EmergencyStop")
        current = status or self.state.connector_status(cid or next(iter(self.registers)))
        answers = [
            await self.send(payload)
            for payload in self.dialect.fault(report, current, tuple(self.registers))
        ]
        if all(a is not None for a in answers):
            self.state.faults_reported.append(report)

    async def clear_fault(self, connector_id: int) -> None:
        cid = connector_id or next(iter(self.registers))
        if cid in self.state.faulted:
            return
        status = self.state.connector_status(cid)
        for payload in self.dialect.cleared(connector_id, status, self.clock.now()):
            if payload is not None:
                await self.send(payload)

    async def go_offline(self, until: datetime | None) -> None:
        if until is None:
            self._offline_for_good = True
        else:
            self._offline_until = until
        if self._ws is not None:
            await self._ws.close(1001, "offline")

    def send_transaction(self, payload: Any) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._tx_queue.put_nowait(_TxMessage(payload, future))
        return future

    async def run_session(
        self, connector_id: int, id_tag: str | None = None, *, authorize: bool = True
    ) -> None:
        async with self.state.locks[connector_id]:
            self.state.starting.discard(connector_id)
            await self.sessions.run(connector_id, id_tag, authorize=authorize)

    def stop_session(self, connector_id: int, reason: str) -> None:
        self.state.stops[connector_id] = reason

    # ----------------------------------------------------- transaction messages

    async def _sender(self) -> None:
        """Send queued transaction messages in order; retry each until acknowledged."""
        while True:
            item = await self._tx_queue.get()
            attempt = 0
            other_failures = 0
            while True:
                client = await self._client_ready()
                action = type(item.payload).__name__
                if self._before_send is not None:
                    await self._before_send(self.cp_id, action, attempt)
                try:
                    result = await client.call(item.payload, suppress=False)
                except asyncio.CancelledError:
                    raise
                except (InternalError, TimeoutError, ConnectionClosed) as exc:
                    self.report.call_errors += 1
                    self.log.info(
                        "transaction message not acknowledged, retrying",
                        action=action,
                        error=repr(exc),
                    )
                except Exception as exc:  # rejected for good (schema etc.): few retries
                    self.report.call_errors += 1
                    other_failures += 1
                    if other_failures >= 3:
                        self.report.failed_transaction_messages += 1
                        self.log.error(
                            "transaction message rejected, giving up",
                            action=action,
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

    async def _connector_loop(self, cid: int) -> None:
        await self._booted_once.wait()
        gap_s = self.config.mean_arrival_gap_s * self.profile.usage.arrival_gap_factor
        while cid not in self.state.faulted and self._take_session():
            await self.sessions.idle(
                cid, self.config.min_arrival_gap_s + self.rng.expovariate(1.0 / gap_s)
            )
            if cid in self.state.faulted:
                break
            async with self.state.locks[cid]:
                await self.sessions.run(cid)
        if cid in self.state.faulted and self._sessions_left is None:
            # Out of service for good; a station that runs forever stays connected
            # (heartbeats, its other connectors) with this connector Faulted.
            await asyncio.Event().wait()
