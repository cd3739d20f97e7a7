"""Charging sessions on a station's connectors: an EV arrives, is (optionally)
authorised, charges with the fleet's physics under the limits in force, and leaves;
the ground truth of each session goes to the ``FleetReport``.

Transaction messages (1.6 StartTransaction, MeterValues of a transaction,
StopTransaction; 2.0.1 TransactionEvent) go through the station's queue
(``StationPort.send_transaction``), retried until acknowledged, so a broker outage
never loses a session. The ground truth is ``meterStop - meterStart`` (2.0.1:
Transaction.End register - Transaction.Begin register), both from the connector's
own register.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime

import structlog

from bus.measurands import (
    CURRENT,
    ENERGY_REGISTER,
    POWER,
    POWER_OFFERED,
    SOC,
    TEMPERATURE,
    VOLTAGE,
)
from bus.times import format_rfc3339
from ingest.simulator.behaviours.base import Effect
from ingest.simulator.config import FleetConfig
from ingest.simulator.dialect import Reading, Sample
from ingest.simulator.physics import ChargingState, EnergyRegister, draw_ev
from ingest.simulator.port import StationPort
from ingest.simulator.profiles import measure
from ingest.simulator.report import FleetReport, SessionTruth


@dataclass(slots=True)
class _Transaction:
    connector_id: int
    id_tag: str
    transaction_id: int | str
    accepted: bool
    meter_start_wh: int
    started_at: datetime
    samples: int = 0
    last: Sample | None = None


class Sessions:
    """The sessions of one station (``port``), on its connectors' ``registers``."""

    def __init__(
        self,
        port: StationPort,
        config: FleetConfig,
        registers: dict[int, EnergyRegister],
        rng: random.Random,
        report: FleetReport,
        tags_in_use: set[str],
        supply: dict[int, EnergyRegister] | None = None,
    ) -> None:
        self.port = port
        self.config = config
        self.registers = registers  # what the station's meter counts (and reports)
        self.supply = supply if supply is not None else registers  # what really flowed
        self.rng = rng
        self.report = report
        # Shared by the fleet: a driver's card is in one session at a time (the
        # gateway answers ConcurrentTx otherwise).
        self.tags_in_use = tags_in_use
        self.log = structlog.get_logger("chargeflow.simulator").bind(
            charge_point_id=port.cp_id, ocpp_version=port.dialect.version
        )

    def idle_sample(self, cid: int) -> Sample:
        """The register of ``cid`` (or of the first connector) alone."""
        register = self.registers.get(cid) or next(iter(self.registers.values()))
        return Sample(self.port.now(), (Reading(ENERGY_REGISTER, register.wh, "Wh", "Outlet"),))

    def sample(
        self, cid: int, power_w: float, offered_w: float, effect: Effect, soc: float | None
    ) -> Sample:
        """What the connector measures now, carrying ``power_w`` (bent by ``effect``)."""
        at, profile = self.port.now(), self.port.profile
        model = profile.model
        grid = profile.grid.voltages_v(at, model.phases)
        grid = tuple(v * effect.grid_factors[p] for p, v in enumerate(grid))
        e = measure(
            model,
            power_w=power_w,
            offered_w=offered_w,
            ambient_c=profile.ambient_c(at),
            grid_v=grid,
            rng=self.rng,
            thermal_factor=effect.thermal_factor,
            pole_drops_v=effect.pole_drops_v,
        )
        readings = [
            Reading(ENERGY_REGISTER, self.registers[cid].wh, "Wh", "Outlet"),
            Reading(POWER, e.power_w, "W", "Outlet"),
            Reading(POWER_OFFERED, e.offered_w, "W", "Outlet"),
        ]
        for p in range(e.phases):
            line = f"L{p + 1}"
            readings.append(Reading(CURRENT, e.currents_a[p], "A", "Outlet", 2, line))
            readings.append(Reading(VOLTAGE, e.voltages_v[p], "V", "Outlet", 1, f"{line}-N"))
        if soc is not None:
            readings.append(Reading(SOC, soc * 100, "Percent", "EV", decimals=0))
        temperature = self.port.dialect.temperature(cid, e.temperature_c, at)
        if temperature is None:  # 1.6: a measurand; 2.0.1 has none (a NotifyEvent)
            loc, unit = model.temperature_location, model.temperature_unit
            readings.append(Reading(TEMPERATURE, e.temperature_c, unit, loc))
        else:
            self.port.spawn(self._send_once(temperature))
        return Sample(at, tuple(readings))

    async def _send_once(self, payload: object) -> None:
        await self.port.send(payload, attempts=1)

    async def idle(self, cid: int, wait_s: float) -> None:
        """Wait ``wait_s`` simulated seconds with the connector free, sending a
        clock-aligned idle MeterValues every ``idle_meter_interval_s`` (if set)."""
        interval = self.config.idle_meter_interval_s
        if interval is None:
            await self.port.sleep(wait_s)
            return
        while wait_s > 0:
            step = min(wait_s, interval)
            await self.port.sleep(step)
            wait_s -= step
            if cid in self.port.state.faulted or cid in self.port.state.running:
                continue
            effect = self.port.effect(cid)
            sample = self.sample(cid, 0.0, 0.0, effect, None)
            self.port.spawn(
                self._send_once(self.port.dialect.meter_values(cid, sample, "Sample.Clock"))
            )

    async def run(self, cid: int, id_tag: str | None = None, *, authorize: bool = True) -> None:
        """One session on ``cid``; ``id_tag`` given: a remote start (``authorize``: ask
        the CSMS first)."""
        if id_tag is None:
            free = [t for t in self.config.id_tags if t not in self.tags_in_use]
            id_tag = self.rng.choice(free or list(self.config.id_tags))
        mine = id_tag not in self.tags_in_use  # more sessions than tags: share one
        self.tags_in_use.add(id_tag)
        try:
            await self._session(cid, id_tag, authorize)
        finally:
            if mine:
                self.tags_in_use.discard(id_tag)

    async def _session(self, cid: int, id_tag: str, authorize: bool) -> None:
        share = self.port.profile.usage.early_stop_share
        ev = draw_ev(self.rng, mean_dwell_s=self.config.mean_dwell_s, early_stop_share=share)
        await self.port.send_status(cid, "Preparing")
        if authorize and not await self._authorized(id_tag):
            self.report.rejected_authorizations += 1
            await self.port.send_status(cid, "Available")
            return
        if self.port.refuses_start(cid):
            # The contactor does not close: Preparing until the station gives up.
            self.report.failed_starts += 1
            await self.port.sleep(self.config.start_timeout_s)
            if cid not in self.port.state.faulted:
                await self.port.send_status(cid, "Available")
            return
        tx = await self._begin(cid, id_tag)
        self.port.state.session_started(cid, tx.transaction_id, tx.started_at)
        reason = "DeAuthorized"
        if tx.accepted:
            await self.port.send_status(cid, "Charging")
            max_w = self.port.rating.max_power_w
            state = ChargingState(ev=ev, soc=ev.soc_start, station_max_w=max_w)
            reason = await self._charge(tx, state)
        await self._end(tx, reason)
        if self.port.state.session_ended(cid):
            self.port.spawn(self.port.send_status(cid, "Unavailable"))
        if cid in self.port.state.faulted:
            return  # Faulted already reported; it stays so
        await self.port.send_status(cid, "Finishing")
        await self.port.send_status(cid, "Available")

    async def _authorized(self, id_tag: str) -> bool:
        dialect = self.port.dialect
        auth = await self.port.send(dialect.authorize(id_tag))
        return auth is not None and dialect.auth_status(auth) == "Accepted"

    async def _begin(self, cid: int, id_tag: str) -> _Transaction:
        dialect = self.port.dialect
        meter_start = self.registers[cid].wh
        started_at = self.port.now()
        proposed = dialect.new_transaction_id(self.rng.getrandbits(128))
        answer = await self.port.send_transaction(
            dialect.start(
                connector_id=cid,
                id_tag=id_tag,
                register_wh=meter_start,
                at=started_at,
                transaction_id=proposed,
            )
        )
        transaction_id, status = dialect.started(answer, proposed)
        return _Transaction(
            cid, id_tag, transaction_id, status == "Accepted", meter_start, started_at
        )

    async def _charge(self, tx: _Transaction, state: ChargingState) -> str:
        """Meter intervals until the EV is done or a stop is asked for; the reason."""
        cfg, cid, state_of = self.config, tx.connector_id, self.port.state
        suspended = False
        last = self.port.now()
        while True:
            await self.port.sleep(cfg.meter_interval_s)
            # The energy of the station time that passed, not of the nominal interval: a
            # late event loop (a loaded machine, compressed time) stretches the interval,
            # and a register that counted the nominal one would disagree with the
            # timestamps and the power it reports.
            now = self.port.now()
            elapsed_s, last = (now - last).total_seconds(), now
            effect = self.port.effect(cid)
            state.station_max_w = state_of.power_limit_w(
                cid, self.port.rating.max_power_w, self.port.now()
            )
            state.derate = effect.delivered_factor
            energy = state.step(elapsed_s)
            self.supply[cid].add(energy)
            if self.supply is not self.registers:
                self.registers[cid].add(energy * effect.register_factor + effect.register_jump_wh)
            if state.suspended and not suspended:
                suspended = True
                self.port.spawn(self.port.send_status(cid, "SuspendedEV"))
            offered = state.offered_w
            tx.last = self.sample(cid, state.power_w, offered, effect, state.soc)
            self.port.send_transaction(
                self.port.dialect.meter(
                    connector_id=cid,
                    transaction_id=tx.transaction_id,
                    sample=tx.last,
                    charging=state.power_w > 0,
                )
            )
            tx.samples += 1
            reason = state_of.take_stop(cid) or state.done
            if reason is not None:
                return reason

    async def _end(self, tx: _Transaction, reason: str) -> None:
        meter_stop = self.registers[tx.connector_id].wh
        stopped_at = self.port.now()
        await self.port.send_transaction(
            self.port.dialect.stop(
                connector_id=tx.connector_id,
                transaction_id=tx.transaction_id,
                id_tag=tx.id_tag,
                register_wh=meter_stop,
                at=stopped_at,
                reason=reason,
                last=tx.last,
            )
        )
        self.report.sessions.append(
            SessionTruth(
                charge_point_id=self.port.cp_id,
                connector_id=tx.connector_id,
                transaction_id=tx.transaction_id,
                id_tag=tx.id_tag,
                meter_start_wh=tx.meter_start_wh,
                meter_stop_wh=meter_stop,
                energy_wh=meter_stop - tx.meter_start_wh,
                started_at=format_rfc3339(tx.started_at),
                stopped_at=format_rfc3339(stopped_at),
                stop_reason=reason,
                meter_value_messages=tx.samples,
                ocpp_version=self.port.dialect.version,
            )
        )
        self.log.info(
            "session done",
            transaction_id=tx.transaction_id,
            energy_wh=meter_stop - tx.meter_start_wh,
            reason=reason,
        )
