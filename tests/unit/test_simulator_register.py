"""The simulated station's register counts the station time that passed: a late event
loop (a loaded machine, compressed time) stretches a meter interval, and the register
must still agree with the power and the timestamps the station reports (it counted the
nominal interval's energy, which the fault models then took for a meter fault)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

from bus.measurands import ENERGY_REGISTER
from ingest.simulator.behaviours.base import Effect
from ingest.simulator.config import FleetConfig
from ingest.simulator.physics import ChargingState, EnergyRegister, Ev, Rating
from ingest.simulator.profiles import StationProfile, station_profile
from ingest.simulator.report import FleetReport
from ingest.simulator.sessions import Sessions, _Transaction
from ingest.simulator.state import StationState
from ingest.simulator.versions import VERSIONS

T0 = datetime(2026, 1, 5, 10, tzinfo=UTC)
INTERVAL_S = 60.0
LATE = 3.0  # each sleep of the station's ends three intervals later


class LateStation:
    """The parts of a ``StationPort`` a charging session uses; its clock runs late."""

    def __init__(self) -> None:
        self.cp_id = "SIM-0001"
        self.dialect = VERSIONS["1.6"].dialect()
        self.rating = Rating(11_000.0, 230.0, 3)
        self.state = StationState([1])
        self.clock = T0
        self.sent: list[Any] = []

    def now(self) -> datetime:
        return self.clock

    async def sleep(self, simulated_s: float) -> None:
        self.clock += timedelta(seconds=simulated_s * LATE)

    @property
    def profile(self) -> StationProfile:
        return station_profile("SIM-0001", 0, models=("SIM-AC22",), seed=0, varied_use=False)

    def effect(self, connector_id: int) -> Effect:
        return Effect()

    def send_transaction(self, payload: Any) -> asyncio.Future[Any]:
        self.sent.append(payload)
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result({})
        return done

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        work.close()


def _register(sample: Any) -> int:
    return next(int(r.value) for r in sample.readings if r.measurand == ENERGY_REGISTER)


async def test_the_register_counts_the_time_that_passed_not_the_nominal_interval() -> None:
    port = LateStation()
    config = FleetConfig(gateway_url="ws://unused", stations=1, meter_interval_s=INTERVAL_S)
    sessions = Sessions(
        port,  # type: ignore[arg-type]
        config,
        {1: EnergyRegister(1_000)},
        random.Random(1),
        FleetReport(),
        set(),
    )
    ev = Ev(battery_wh=100_000, soc_start=0.2, soc_target=1.0, max_power_w=11_000, dwell_s=1800)
    state = ChargingState(ev=ev, soc=ev.soc_start, station_max_w=11_000)
    tx = _Transaction(1, "TAG", 1, True, 1_000, T0)
    await sessions._charge(tx, state)
    elapsed_h = (port.now() - T0).total_seconds() / 3600
    assert tx.last is not None
    counted_wh = _register(tx.last) - 1_000
    # 11 kW for the station time that passed (10 samples of 3 minutes = 30 min)
    assert abs(counted_wh - 11_000 * elapsed_h) <= 1
    assert tx.samples == 10
