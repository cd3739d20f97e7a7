"""The station as its handlers, sessions and behaviours see it.

``station.SimulatedStation`` implements this port; the command handlers
(``handlers``), the sessions (``sessions``) and the behaviours (``behaviours``) act on
the station only through it, so none of them reaches into the station's connection
or its private members, and imports run one way: station -> handlers/sessions -> port.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import datetime
from typing import Any, Protocol

from ingest.simulator.behaviours.base import Effect
from ingest.simulator.dialect import Dialect, FaultReport, Sample
from ingest.simulator.physics import Rating
from ingest.simulator.profiles import StationProfile
from ingest.simulator.state import StationState


class StationPort(Protocol):
    @property
    def cp_id(self) -> str: ...

    @property
    def dialect(self) -> Dialect: ...

    @property
    def rating(self) -> Rating: ...

    @property
    def state(self) -> StationState: ...

    @property
    def profile(self) -> StationProfile:
        """The station's model, weather, grid and use (healthy variation)."""

    def effect(self, connector_id: int) -> Effect:
        """How the station's behaviours (injected faults) bend the connector's physics now."""

    def refuses_start(self, connector_id: int) -> bool:
        """True: a session authorised now never starts (an injected fault)."""

    def now(self) -> datetime:
        """Simulated time."""

    async def sleep(self, simulated_s: float) -> None:
        """Wait ``simulated_s`` seconds of simulated time."""

    def meter_sample(self, connector_id: int) -> Sample:
        """The connector's register now (an idle sample, e.g. for a triggered MeterValues)."""

    def boot_request(self) -> Any:
        """The station's BootNotification."""

    async def send(self, payload: Any, attempts: int = 3) -> Any | None:
        """A non-transaction CALL: a few tries, then None."""

    def send_transaction(self, payload: Any) -> asyncio.Future[Any]:
        """A transaction CALL: queued in order and retried until acknowledged."""

    async def send_status(self, connector_id: int, status: str) -> None:
        """A 1.6 status (the dialect maps it, or skips it)."""

    async def run_session(
        self, connector_id: int, id_tag: str | None = None, *, authorize: bool = True
    ) -> None:
        """One session on the connector (waits while another one is on it)."""

    def stop_session(self, connector_id: int, reason: str) -> None:
        """End the session on the connector at its next meter interval."""

    async def reboot(self) -> None:
        """Drop the connection; the station reconnects and boots again."""

    async def report_fault(self, report: FaultReport, status: str | None = None) -> None:
        """Report a fault (``status``: the 1.6 status with the code, default the
        connector's current one); a Faulted one takes the connector (0: every
        connector) out of service for good and stops its session."""

    async def clear_fault(self, connector_id: int) -> None:
        """The error reported on the connector is gone (its current status, NoError)."""

    async def go_offline(self, until: datetime | None) -> None:
        """Drop the connection and stay away until ``until`` (None: for good)."""

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` as a task the station owns (cancelled when it stops)."""
