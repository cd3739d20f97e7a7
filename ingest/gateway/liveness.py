"""Station online/offline as seen by one gateway replica.

On connect: the replica records itself in ``station_connections`` (command routing
reads it, see docs/commands.md) and publishes a ``station.connection`` envelope
``{"state": "online", "reason": "connected", "gateway_id": ...}`` to ``ocpp.events``
keyed by the station. Every connect publishes ``online``; an ``online`` without an
``offline`` before it means the station reconnected within the grace period.

On disconnect (closed by the station, network loss, the silence check, gateway
shutdown): the row is deleted (only if it is still this connection's) and, after
``offline_grace_s``, ``offline`` is published with the reason, unless the station
is connected again by then, here or on another replica (its row exists). On
shutdown the pending checks are settled at once (reason ``gateway stopped``) so no
offline is lost; stations that move to another replica during a rolling restart can
therefore show a short offline -> online.

A replica that dies (SIGKILL, host lost) settles nothing. Every replica therefore
sweeps ``station_connections`` each ``replica_heartbeat_s``: the rows of replicas
without a heartbeat for ``replica_grace_s`` (``store.stations.orphaned_connections``)
are published ``offline`` -- reason ``gateway <id> lost``, ``gateway_id`` = the dead
replica, ``measured_at`` = its last heartbeat -- and then deleted (only if still that
replica's). Publish first, delete after: a sweeper that dies in between leaves the
row for the next sweep (at-least-once; a duplicate offline changes nothing
downstream). A station that reconnects to a live replica meanwhile replaces the
row, and the status flow ignores an ``offline`` from a replica other than the one
the station was last online at, so a late sweep cannot mark it offline. A replica
that was alive but could not heartbeat (database trouble) finds its rows gone at
its next sweep and records them again, publishing ``online`` (reason
``connection re-registered``), so such a false offline heals within a sweep.

A replica id can outlive a process (a container restarted under a fixed id, a pod
under its name): the rows a killed process left would then name a replica that
heartbeats again, and nobody would sweep them. So a replica starting under an id first
publishes those rows ``offline`` (reason ``gateway <id> restarted``) and deletes them
(:meth:`Liveness.release_previous_life`, before it accepts stations, and again each
sweep until it got through).

``measured_at`` of an envelope is when the connection opened/dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import structlog

from bus.envelope import Envelope, Kind, new_message_id
from bus.producer import PublishError
from bus.times import utc_now
from ingest.gateway.services import GatewayServices
from runtime.tasks import cancel_and_wait
from store import stations
from store.station_batches import Connection

log = structlog.get_logger("chargeflow.gateway.liveness")


@dataclass
class _Pending:
    task: asyncio.Task[None]
    reason: str
    dropped_at: datetime
    ocpp_version: str | None


class Liveness:
    def __init__(self, services: GatewayServices, gateway_id: str, offline_grace_s: float) -> None:
        self.services = services
        self.gateway_id = gateway_id
        self.grace_s = offline_grace_s
        self._pending: dict[str, _Pending] = {}
        self._locks = [asyncio.Lock() for _ in range(64)]
        self._sweeper: asyncio.Task[None] | None = None
        # Stations whose connect has been recorded here (row written or tried) and
        # not disconnected since: only these can have lost their row to a sweep.
        self._recorded: set[str] = set()
        self._publishing: set[asyncio.Task[bool]] = set()
        self._previous_life_released = False

    def start_sweeping(
        self, interval_s: float, replica_grace_s: float, held: Callable[[], dict[str, str | None]]
    ) -> None:
        """Every ``interval_s``: sweep the connections of dead replicas, and restore
        this replica's own rows that are missing (module doc). ``held``: the stations
        whose socket this replica holds, with their OCPP version."""
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(
                self._sweep_loop(interval_s, replica_grace_s, held), name="liveness-sweeper"
            )

    async def _sweep_loop(
        self, interval_s: float, replica_grace_s: float, held: Callable[[], dict[str, str | None]]
    ) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                if not self._previous_life_released:
                    await self.release_previous_life()
                await self.sweep_orphans(replica_grace_s)
                await self.restore_own(held)
            except Exception:
                log.exception("sweeping station connections failed")

    async def restore_own(self, held: Callable[[], dict[str, str | None]]) -> list[str]:
        """Re-record (and publish online) the stations connected here whose row is
        gone -- another replica swept them while this one could not heartbeat (a
        database hiccup longer than the grace). Returns their ids."""
        pool = self.services.pool
        rows = set(await stations.connections_of(pool, self.gateway_id))
        restored: list[str] = []
        # A station whose connect is still being recorded has no row yet either: it is
        # not in _recorded until connected() wrote it, and connected() holds the
        # station's lock while writing, so the check under the lock sees its row.
        for cp_id in sorted((set(held()) & self._recorded) - rows):
            async with self._lock(cp_id):
                version = held().get(cp_id, "")
                if version == "" or cp_id in self._pending or cp_id not in self._recorded:
                    continue  # gone meanwhile (its disconnect handles the row)
                if await stations.get_connection(pool, cp_id) is not None:
                    continue  # recorded meanwhile (here, or the station moved)
                at = utc_now()
                await stations.record_connection(pool, cp_id, self.gateway_id, at)
            await self._publish(cp_id, "online", "connection re-registered", at, version)
            restored.append(cp_id)
        if restored:
            log.warning(
                "re-registered stations whose connection rows were swept", stations=len(restored)
            )
        return restored

    async def release_previous_life(self) -> list[str]:
        """Publish offline (then forget) the stations an earlier process under this
        replica id left recorded; those this process recorded itself stay. The ids."""
        pool = self.services.pool
        released: list[str] = []
        complete = True
        for cp_id, last_alive in await stations.previous_life_connections(pool, self.gateway_id):
            async with self._lock(cp_id):
                if cp_id in self._recorded or cp_id in self._pending:
                    continue  # connected to this process meanwhile: its own row
                reason = f"gateway {self.gateway_id} restarted"
                if not await self._publish(cp_id, "offline", reason, last_alive, None):
                    # The broker is away: the rest waits for the next sweep rather than
                    # a delivery timeout each.
                    complete = False
                    break
                await stations.remove_connection(pool, cp_id, self.gateway_id)
            released.append(cp_id)
        self._previous_life_released = complete
        if released:
            log.warning(
                "stations an earlier process of this replica id left published offline",
                stations=len(released),
            )
        return released

    async def sweep_orphans(self, replica_grace_s: float) -> list[str]:
        """Publish offline (then forget) the stations of dead replicas; the ids."""
        pool = self.services.pool
        swept: list[str] = []
        for cp_id, dead, last_alive in await stations.orphaned_connections(pool, replica_grace_s):
            if not await self._publish(
                cp_id, "offline", f"gateway {dead} lost", last_alive, None, gateway_id=dead
            ):
                continue  # not published: the row stays for the next sweep
            async with self._lock(cp_id):
                await stations.remove_connection(pool, cp_id, dead)
            swept.append(cp_id)
        if swept:
            log.warning("stations of dead gateway replicas published offline", stations=len(swept))
        return swept

    def _lock(self, charge_point_id: str) -> asyncio.Lock:
        """Striped per-station lock: a connect and the previous connection's
        disconnect write the station's row in the order they happened."""
        return self._locks[hash(charge_point_id) % len(self._locks)]

    async def connected(self, charge_point_id: str, ocpp_version: str | None, at: datetime) -> None:
        pending = self._pending.pop(charge_point_id, None)
        if pending is not None:
            pending.task.cancel()
        async with self._lock(charge_point_id):
            try:
                await self.services.station_writes.connection.write(
                    Connection(charge_point_id, self.gateway_id, at, ocpp_version)
                )
            except Exception:  # the sweep's restore_own records it later
                log.exception("could not record the connection", charge_point_id=charge_point_id)
            self._recorded.add(charge_point_id)
        # The station's CALLs must not wait for this publish (during a broker outage it
        # takes the whole delivery budget, which the first CALL then could not keep).
        # One turn of the loop lets the task hand the envelope to the producer, so it
        # is queued before anything the station sends next (same key, same partition).
        task = asyncio.create_task(
            self._publish(charge_point_id, "online", "connected", at, ocpp_version)
        )
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)
        await asyncio.sleep(0)

    async def disconnected(
        self, charge_point_id: str, ocpp_version: str | None, reason: str
    ) -> None:
        """The station's only connection here ended (not called when a newer connection
        of the same station replaced it)."""
        dropped_at = utc_now()
        self._recorded.discard(charge_point_id)
        previous = self._pending.pop(charge_point_id, None)
        if previous is not None:
            previous.task.cancel()
        # Registered before the first await: a reconnect from now on cancels it.
        task = asyncio.create_task(self._offline_after_grace(charge_point_id))
        pending = _Pending(task, reason, dropped_at, ocpp_version)
        self._pending[charge_point_id] = pending
        async with self._lock(charge_point_id):
            if self._pending.get(charge_point_id) is not pending:
                return  # already reconnected: the row is the new connection's
            try:
                await stations.remove_connection(
                    self.services.pool, charge_point_id, self.gateway_id
                )
            except Exception:
                log.exception("could not remove the connection", charge_point_id=charge_point_id)

    async def _offline_after_grace(self, charge_point_id: str) -> None:
        await asyncio.sleep(self.grace_s)
        await self._settle(charge_point_id)

    async def _settle(self, charge_point_id: str, reason: str | None = None) -> None:
        pending = self._pending.get(charge_point_id)
        if pending is None:
            return
        try:
            holder = await stations.get_connection(self.services.pool, charge_point_id)
        except Exception:
            log.exception("could not check the connection", charge_point_id=charge_point_id)
            holder = None
        if self._pending.get(charge_point_id) is not pending:
            return  # reconnected meanwhile
        del self._pending[charge_point_id]
        if holder is not None and holder[0] != self.gateway_id:
            log.info(
                "station reconnected elsewhere within the grace period",
                charge_point_id=charge_point_id,
                gateway_id=holder[0],
            )
            return
        await self._publish(
            charge_point_id,
            "offline",
            reason or pending.reason,
            pending.dropped_at,
            pending.ocpp_version,
        )

    async def _publish(
        self,
        charge_point_id: str,
        state: str,
        reason: str,
        at: datetime,
        ocpp_version: str | None,
        *,
        gateway_id: str | None = None,
    ) -> bool:
        envelope = Envelope(
            message_id=new_message_id(),
            charge_point_id=charge_point_id,
            received_at=utc_now(),
            measured_at=at,
            kind=Kind.STATION_CONNECTION,
            ocpp_version=ocpp_version,
            payload={"state": state, "reason": reason, "gateway_id": gateway_id or self.gateway_id},
        )
        try:
            await self.services.publish(envelope)
        except PublishError as exc:
            log.error(
                "could not publish the station's connection state",
                charge_point_id=charge_point_id,
                state=state,
                error=str(exc),
            )
            return False
        log.info("station " + state, charge_point_id=charge_point_id, reason=reason)
        return True

    async def close(self) -> None:
        """Settle every pending offline now (the replica is stopping)."""
        if self._sweeper is not None:
            await cancel_and_wait(self._sweeper)
            self._sweeper = None
        pending = list(self._pending.items())
        for _, p in pending:
            p.task.cancel()
        await asyncio.gather(*(p.task for _, p in pending), return_exceptions=True)
        await asyncio.gather(
            *(
                self._settle(
                    cp_id,
                    p.reason if p.reason == "gateway stopping" else f"{p.reason}; gateway stopped",
                )
                for cp_id, p in pending
            ),
            return_exceptions=True,
        )
        await asyncio.gather(*list(self._publishing), return_exceptions=True)
