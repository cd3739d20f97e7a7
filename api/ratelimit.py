"""Failed API authentication, limited per client address (``limits``, moving window).

Only presented-but-wrong keys count: a request without a key cannot guess one. Once an
address has failed ``max_failures`` times within ``window_s``, every request from it
that presents a key answers 429 with Retry-After until the window has room again,
before its key is even checked; other addresses, and their correct keys, are unaffected.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time

from limits import RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter


class AuthFailureLimiter:
    def __init__(self, max_failures: int, window_s: int) -> None:
        self._item = RateLimitItemPerSecond(max_failures, window_s, namespace="api-auth-failures")
        self._storage = MemoryStorage()
        self._limiter = MovingWindowRateLimiter(self._storage)

    async def retry_after_s(self, client: str) -> int | None:
        """Seconds until ``client`` may try a key again; None if it may now."""
        if await self._limiter.test(self._item, client):
            return None
        stats = await self._limiter.get_window_stats(self._item, client)
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def record_failure(self, client: str) -> None:
        await self._limiter.hit(self._item, client)

    async def aclose(self) -> None:
        # The in-memory storage expires entries from a task of its own; end it with the app.
        timer = self._storage.timer
        if timer is not None and not timer.done():
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer
