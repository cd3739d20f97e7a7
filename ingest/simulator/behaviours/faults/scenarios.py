"""The fault library: one class per named scenario (see ``faults.SCENARIOS``).

Compressed lead times (onset -> hard failure, simulated hours) follow
``research/faults.md`` section 1: overheating 3-10 h, contactor 6-30 h (here 6-20),
meter 1-6 h, communication 4-20 h, grid 3-16 h.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import ClassVar

from bus.alerts import AlertKind
from ingest.simulator.behaviours.base import Effect
from ingest.simulator.behaviours.faults.base import Scenario, sleep_until
from ingest.simulator.port import StationPort


class Overheating(Scenario):
    """Contact resistance grows: the temperature rise per kW climbs from the connector's
    baseline to 3x it, then a thermal trip (HighTemperature)."""

    name = "overheating"
    label = AlertKind.CONNECTOR_OVERHEATING
    lead_h = (3.0, 10.0)
    error_code = "HighTemperature"
    component = "TemperatureSensor"
    variable = "Temperature"

    def effect(self, connector_id: int, at: datetime) -> Effect | None:
        if not self.mine(connector_id) or at < self.onset:
            return None
        return Effect(thermal_factor=1.0 + 2.0 * self.progress(at) ** 1.5)


class ContactorWear(Scenario):
    """A pitted pole: the voltage on L1 sags more and more under load (drop and phase
    imbalance), in the last third starts fail (Preparing, never Charging), then the
    contactor fails (PowerSwitchFailure)."""

    name = "contactor"
    label = AlertKind.CONTACTOR_DEGRADATION
    lead_h = (6.0, 20.0)
    error_code = "PowerSwitchFailure"
    component = "PowerContactor"

    def effect(self, connector_id: int, at: datetime) -> Effect | None:
        if not self.mine(connector_id) or at < self.onset:
            return None
        return Effect(pole_drops_v=(25.0 * self.progress(at) ** 1.5, 0.0, 0.0))

    def refuses_start(self, connector_id: int, at: datetime) -> bool:
        p = self.progress(at)
        return self.mine(connector_id) and p > 0.65 and self.chance(at, "start") < (p - 0.5) * 2


class CableDamage(Scenario):
    """A damaged cable or contact: delivered power falls well below offered and the EV's
    demand, with interruptions growing more frequent, then ConnectorLockFailure."""

    name = "cable"
    label = AlertKind.CABLE_DAMAGE
    lead_h = (4.0, 12.0)
    error_code = "ConnectorLockFailure"
    component = "ConnectorPlugRetentionLock"

    def effect(self, connector_id: int, at: datetime) -> Effect | None:
        if not self.mine(connector_id) or at < self.onset:
            return None
        p = self.progress(at)
        if self.chance(at, "interrupt") < 0.25 * p:
            return Effect(delivered_factor=0.0)
        return Effect(delivered_factor=1.0 - 0.6 * p)


class GridSag(Scenario):
    """The site's supply sags deeper and deeper (below 207 V = 230 V - 10 %), then the
    station trips (UnderVoltage). Station-wide: the grid, not a connector."""

    name = "grid_sag"
    label = AlertKind.GRID_IRREGULARITY
    lead_h = (3.0, 16.0)
    station_wide = True
    error_code = "UnderVoltage"
    component = "ElectricalFeed"
    depth: ClassVar[float] = -0.17

    def effect(self, connector_id: int, at: datetime) -> Effect | None:
        if at < self.onset:
            return None
        p = self.progress(at)
        # Sags come and go (a quarter of the time at first, most of it at the end).
        if self.chance(at, "sag") > 0.25 + 0.6 * p:
            return None
        level = 1.0 + self.depth * (0.3 + 0.7 * p)
        return Effect(grid_factors=(level, level, level))


class GridSwell(GridSag):
    """Swells above 253 V (230 V + 10 %), then OverVoltage."""

    name = "grid_swell"
    error_code = "OverVoltage"
    depth = 0.15


class PhaseLoss(Scenario):
    """L3 of the supply is lost from the onset on (0 V, no current on it); no hard fault:
    the station charges on two phases."""

    name = "phase_loss"
    label = AlertKind.GRID_IRREGULARITY
    station_wide = True

    def effect(self, connector_id: int, at: datetime) -> Effect | None:
        return Effect(grid_factors=(1.0, 1.0, 0.0)) if at >= self.onset else None


class FrozenRegister(Scenario):
    """The energy register stops counting while power flows; hours later the station
    declares PowerMeterFailure."""

    name = "meter_frozen"
    label = AlertKind.METER_FAULT
    lead_h = (1.0, 6.0)
    error_code = "PowerMeterFailure"
    component = "FiscalMetering"

    def effect(self, connector_id: int, at: datetime) -> Effect | None:
        if not self.mine(connector_id) or at < self.onset:
            return None
        return Effect(register_factor=0.0)


class RegisterJump(Scenario):
    """The register jumps by 20-100 kWh once, at the first sample after the onset."""

    name = "meter_jump"
    label = AlertKind.METER_FAULT

    def __init__(self, fault: object) -> None:
        super().__init__(fault)  # type: ignore[arg-type]
        self.jump_wh = self.rng.uniform(20_000.0, 100_000.0)
        self.jumped = False

    def effect(self, connector_id: int, at: datetime) -> Effect | None:
        if not self.mine(connector_id) or at < self.onset or self.jumped:
            return None
        self.jumped = True
        return Effect(register_jump_wh=self.jump_wh)


class RegisterDrift(Scenario):
    """The station's register drifts against the smart meter: it counts up to 8 % more
    than was delivered, growing over ``ramp_h``."""

    name = "meter_drift"
    label = AlertKind.METER_FAULT
    ramp_h = 12.0

    def effect(self, connector_id: int, at: datetime) -> Effect | None:
        if not self.mine(connector_id) or at < self.onset:
            return None
        return Effect(register_factor=1.0 + 0.08 * self.progress(at))


class CommDegradation(Scenario):
    """The modem fails slowly: heartbeats go missing, the connection drops and comes back
    more and more often, then the station goes offline for good (the hard failure)."""

    name = "comm"
    label = AlertKind.COMM_DEGRADATION
    lead_h = (4.0, 20.0)
    station_wide = True

    def skips_heartbeat(self, at: datetime) -> bool:
        return at >= self.onset and self.chance(at, "heartbeat") < 0.2 + 0.6 * self.progress(at)

    async def during(self, port: StationPort) -> None:
        hard = self.fault.hard_failure
        assert hard is not None
        span = hard - self.onset
        while True:
            p = self.progress(port.now())
            gap = span / (3.0 + 20.0 * p) * self.rng.uniform(0.5, 1.5)
            if port.now() + gap >= hard:
                return
            await sleep_until(port, port.now() + gap)
            offline = span / 100.0 * (1.0 + 5.0 * p) * self.rng.uniform(0.5, 1.5)
            await port.go_offline(min(port.now() + offline, hard))

    async def fail_hard(self, port: StationPort, at: datetime) -> None:
        await port.go_offline(None)


class _Bursts(Scenario):
    """Bursts of error reports at random instants, more often as the fault grows; each
    clears (NoError) a little later."""

    codes: ClassVar[tuple[str, ...]]
    burst_status: ClassVar[str | None] = None  # 1.6 status with the code; None: current

    async def during(self, port: StationPort) -> None:
        end = self.fault.hard_failure or self.onset + timedelta(hours=self.ramp_h)
        span = end - self.onset
        while True:
            p = self.progress(port.now())
            gap = span / (4.0 + 16.0 * p) * self.rng.uniform(0.5, 1.5)
            at = port.now() + gap
            if at >= end:
                return
            await sleep_until(port, at)
            code = self.rng.choice(self.codes)
            vendor = f"SIM-{self.rng.randint(100, 999)}"
            for _ in range(self.rng.randint(1, 3)):
                report = self.report(port.now(), code, faulted=False, vendor_code=vendor)
                await port.report_fault(report, status=self.burst_status)
                await port.sleep(self.rng.uniform(5.0, 30.0))
            await port.clear_fault(self.fault.connector_id)


class ControllerFault(_Bursts):
    """The controller misbehaves: bursts of InternalError/OtherError with vendor codes,
    then it fails (Faulted InternalError)."""

    name = "controller"
    label = AlertKind.CONTROLLER_FAULT
    lead_h = (3.0, 12.0)
    station_wide = True
    error_code = "InternalError"
    component = "Controller"
    codes = ("InternalError", "OtherError", "OtherError")


class EvCommErrors(_Bursts):
    """Vehicles fail to talk to the station (pilot or ISO 15118 trouble): bursts of
    EVCommunicationError with SuspendedEVSE; by the 1.6 specification the vehicle's
    problem, not a station fault, so it never fails hard."""

    name = "ev_comm"
    label = AlertKind.EV_COMM_ERROR
    ramp_h = 8.0
    component = "ConnectedEV"
    codes = ("EVCommunicationError",)
    burst_status = "SuspendedEVSE"


class GroundFault(Scenario):
    """The residual current device trips: a hard fault at onset, no lead-up."""

    name = "ground_fault"
    label = AlertKind.GROUND_FAULT
    lead_h = (0.0, 0.0)
    error_code = "GroundFailure"
    component = "RCD"
    variable = "Tripped"


SCENARIO_CLASSES: tuple[type[Scenario], ...] = (
    Overheating,
    ContactorWear,
    CableDamage,
    GridSag,
    GridSwell,
    PhaseLoss,
    FrozenRegister,
    RegisterJump,
    RegisterDrift,
    CommDegradation,
    ControllerFault,
    EvCommErrors,
    GroundFault,
)
