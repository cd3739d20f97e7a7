"""The meter registry as the bridge sees it: cached look-ups of ``store.meters``."""

from __future__ import annotations

import time
from collections import OrderedDict

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from store.meters import MeterRecord, get_meter


class MeterDirectory:
    """Cached ``meter_id -> MeterRecord`` lookups (known and unknown ids, LRU-bounded).

    On a registry error an expired entry is served rather than nothing; with no
    entry the error propagates (the bridge retries, it never guesses "unknown").
    """

    def __init__(
        self, pool: AsyncConnectionPool, *, ttl_s: float, unknown_ttl_s: float, max_size: int
    ) -> None:
        self._pool = pool
        self._ttl = ttl_s
        self._unknown_ttl = unknown_ttl_s
        self._max = max_size
        self._cache: OrderedDict[str, tuple[float, MeterRecord | None]] = OrderedDict()

    async def lookup(self, meter_id: str) -> MeterRecord | None:
        now = time.monotonic()
        hit = self._cache.get(meter_id)
        if hit is not None and hit[0] > now:
            self._cache.move_to_end(meter_id)
            return hit[1]
        try:
            record = await get_meter(self._pool, meter_id)
        except (psycopg.Error, PoolTimeout):
            if hit is not None and hit[1] is not None:
                return hit[1]
            raise
        ttl = self._ttl if record is not None else self._unknown_ttl
        if ttl > 0:
            self._cache[meter_id] = (now + ttl, record)
            self._cache.move_to_end(meter_id)
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
        else:
            self._cache.pop(meter_id, None)
        return record

    def forget(self, meter_id: str | None = None) -> None:
        if meter_id is None:
            self._cache.clear()
        else:
            self._cache.pop(meter_id, None)
