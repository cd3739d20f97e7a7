"""Simulated time: ``time_scale`` simulated seconds per real second, from now."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from bus.times import utc_now


class SimClock:
    """``start``: the simulated instant now (default: the wall clock's)."""

    def __init__(self, time_scale: float, start: datetime | None = None) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be > 0")
        self.time_scale = time_scale
        self._t0 = asyncio.get_running_loop().time()
        self._wall0 = start or utc_now()

    @property
    def start(self) -> datetime:
        return self._wall0

    def now(self) -> datetime:
        elapsed = asyncio.get_running_loop().time() - self._t0
        return self._wall0 + timedelta(seconds=elapsed * self.time_scale)

    async def sleep(self, simulated_s: float) -> None:
        await asyncio.sleep(max(0.0, simulated_s) / self.time_scale)
