"""What a fault scenario is: a :class:`~ingest.simulator.behaviours.base.Behaviour` with
a label, an onset and (maybe) a hard failure, whose randomness comes from its own seed.

Before ``onset`` a scenario bends nothing. Between onset and the hard failure its
``progress`` grows from 0 to 1 (a progressive fault's lead-up); at the hard failure its
timeline reports the fault as a real station would (1.6: StatusNotification Faulted with
the error code; 2.0.1: NotifyEvent on the device-model component, then Faulted), stamped
with the hard-failure time, and the connector stays out of service.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import ClassVar

from bus.alerts import AlertKind
from ingest.simulator.behaviours.base import Behaviour
from ingest.simulator.dialect import FaultReport
from ingest.simulator.ground_truth import InjectedFault
from ingest.simulator.port import StationPort


class Scenario(Behaviour):
    """One injected fault. Subclasses set the class attributes and override ``effect``,
    ``refuses_start``, ``skips_heartbeat`` or ``during`` (work between onset and hard
    failure)."""

    name: ClassVar[str]
    label: ClassVar[AlertKind]
    # (min, max) simulated hours from onset to the hard failure; None: never fails hard.
    lead_h: ClassVar[tuple[float, float] | None] = None
    # Hours over which a fault without a hard failure grows to full size.
    ramp_h: ClassVar[float] = 6.0
    station_wide: ClassVar[bool] = False  # connector 0: the whole station
    # The hard failure as a station reports it: 1.6 error code, 2.0.1 component/variable.
    error_code: ClassVar[str | None] = None
    component: ClassVar[str] = "ChargingStation"
    variable: ClassVar[str] = "Problem"

    def __init__(self, fault: InjectedFault) -> None:
        self.fault = fault
        self.rng = random.Random(fault.seed)

    @classmethod
    def progressive(cls) -> bool:
        return cls.lead_h is not None and cls.lead_h[1] > 0

    # ----------------------------------------------------------- telemetry time

    @property
    def onset(self) -> datetime:
        return self.fault.onset

    def progress(self, at: datetime) -> float:
        """0 before onset, growing to 1 at the hard failure (or over ``ramp_h``)."""
        if at < self.onset:
            return 0.0
        end = self.fault.hard_failure or self.onset + timedelta(hours=self.ramp_h)
        span = (end - self.onset).total_seconds()
        if span <= 0:
            return 1.0
        return min(1.0, (at - self.onset).total_seconds() / span)

    def failed(self, at: datetime) -> bool:
        return self.fault.hard_failure is not None and at >= self.fault.hard_failure

    def mine(self, connector_id: int) -> bool:
        return self.fault.connector_id in (0, connector_id)

    def chance(self, at: datetime, salt: str = "") -> float:
        """A uniform draw in [0, 1) that depends only on the seed and ``at``: the same
        instant gives the same draw whatever was asked before (runs repeat)."""
        return random.Random(f"{self.fault.seed}/{salt}/{at.isoformat()}").random()

    # --------------------------------------------------------------- timeline

    async def timeline(self, port: StationPort) -> None:
        """The fault's actions on the station's clock (run once the station booted)."""
        await sleep_until(port, self.onset)
        await self.during(port)
        hard = self.fault.hard_failure
        if hard is None:
            return
        await sleep_until(port, hard)
        await self.fail_hard(port, hard)

    async def during(self, port: StationPort) -> None:
        """Between onset and the hard failure (return by then); nothing by default."""

    async def fail_hard(self, port: StationPort, at: datetime) -> None:
        assert self.error_code is not None
        await port.report_fault(self.report(at, self.error_code, faulted=True))

    def report(
        self,
        at: datetime,
        code: str,
        *,
        faulted: bool,
        vendor_code: str | None = None,
        actual_value: str = "true",
    ) -> FaultReport:
        return FaultReport(
            connector_id=self.fault.connector_id,
            error_code=code,
            at=at,
            faulted=faulted,
            vendor_code=vendor_code,
            component=self.component,
            variable=self.variable,
            actual_value=actual_value,
        )


async def sleep_until(port: StationPort, at: datetime) -> None:
    wait = (at - port.now()).total_seconds()
    if wait > 0:
        await port.sleep(wait)
