"""The gateway's liveness and readiness (served on its own port, see ``server``).

- Liveness (``/livez``, also ``/healthz`` and ``/health``): the process serves HTTP,
  so its event loop runs. Nothing else: a broker or database outage must not get a
  gateway restarted, it would only add a reconnect storm.
- Readiness (``/readyz``): the gateway can do its job, i.e. it can publish (its own
  producer gets metadata for ``ocpp.events`` from a broker, every partition with a
  leader) and reach the database (``SELECT 1`` through its pool). 503 otherwise, so
  a load balancer sends new stations to a replica that can answer their CALLs.

Checks run at most once per ``cache_s`` however often probes come (concurrent
probes share one check), each bounded by ``timeout_s``.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool

from bus.producer import Producer


@dataclass(frozen=True, slots=True)
class ReadinessReport:
    checks: dict[str, str]  # name -> "ok" or why not

    @property
    def ready(self) -> bool:
        return all(v == "ok" for v in self.checks.values())

    def body(self) -> str:
        return (
            json.dumps({"status": "ready" if self.ready else "not ready", "checks": self.checks})
            + "\n"
        )


class Readiness:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        producer: Producer,
        topic: str,
        *,
        timeout_s: float = 2.0,
        cache_s: float = 1.0,
    ) -> None:
        self.pool = pool
        self.producer = producer
        self.topic = topic
        self.timeout_s = timeout_s
        self.cache_s = cache_s
        self._last: tuple[float, ReadinessReport] | None = None
        self._lock = asyncio.Lock()

    async def report(self) -> ReadinessReport:
        async with self._lock:
            if self._last is not None and time.monotonic() - self._last[0] < self.cache_s:
                return self._last[1]
            kafka, database = await asyncio.gather(self._kafka(), self._database())
            report = ReadinessReport({"kafka": kafka, "database": database})
            self._last = (time.monotonic(), report)
            return report

    async def _kafka(self) -> str:
        reason = await asyncio.to_thread(
            self.producer.unwritable_reason, self.topic, self.timeout_s
        )
        return "ok" if reason is None else reason

    async def _database(self) -> str:
        try:
            async with asyncio.timeout(self.timeout_s):
                async with self.pool.connection() as conn:
                    await conn.execute("SELECT 1")
        except TimeoutError:
            return f"no answer within {self.timeout_s:g} s"
        except Exception as exc:  # the class only: messages can name hosts and users
            return f"unreachable: {type(exc).__name__}"
        return "ok"
