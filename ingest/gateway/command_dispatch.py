"""Sending a command to a station this replica holds: each send in its own task,
one CALL at a time per station under its call lock (in the order read), claimed as
``sent`` just before the CALL, the answer (or its absence) recorded through the
``command_outbox``. A connection's end wakes the commands waiting on it."""

from __future__ import annotations

import asyncio

import structlog

from bus.commands import Command, CommandStatus
from bus.times import utc_now
from ingest.gateway.command_checks import SCHEMAS, check_command, outcome
from ingest.gateway.command_outbox import CommandOutbox
from ingest.gateway.protocol import CentralSystemBase
from ingest.gateway.remote_start_match import answered_transaction_id
from ingest.gateway.station_calls import ConnectionLost, StationAnswer, call_station
from runtime.tasks import cancel_and_wait
from store import remote_start_links


class CommandDispatch:
    """The sends in flight, per station connection."""

    def __init__(self, outbox: CommandOutbox, log: structlog.typing.FilteringBoundLogger) -> None:
        self.outbox = outbox
        self.log = log
        self._in_flight: dict[int, set[asyncio.Task[None]]] = {}  # id(station) -> tasks
        # id(station) -> set when its connection ends (wakes commands waiting on it)
        self._closed: dict[int, asyncio.Event] = {}

    def station_disconnected(self, station: CentralSystemBase) -> None:
        """A connection ended: commands waiting for its answer fail, queued ones are
        not sent (offline)."""
        closed = self._closed.pop(id(station), None)
        if closed is not None:
            closed.set()

    async def cancel_all(self) -> None:
        """(On shutdown) in-flight sends are failed: their answer can no longer be
        recorded."""
        in_flight = [t for tasks in self._in_flight.values() for t in tasks]
        await cancel_and_wait(*in_flight)

    def spawn(self, command: Command, station: CentralSystemBase) -> None:
        task = asyncio.create_task(
            self._send(command, station), name=f"command-{command.command_id}"
        )
        tasks = self._in_flight.setdefault(id(station), set())
        tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            tasks.discard(t)
            if not tasks:
                self._in_flight.pop(id(station), None)
            if not t.cancelled() and t.exception() is not None:
                self.log.error(
                    "command task failed",
                    command_id=str(command.command_id),
                    error=repr(t.exception()),
                )

        task.add_done_callback(done)

    async def _send(self, command: Command, station: CentralSystemBase) -> None:
        version = station.OCPP_VERSION
        problem = check_command(command, version)
        if problem is not None:
            await self.outbox.decide(command, CommandStatus.FAILED, f"not sent: {problem}", version)
            return
        closed = self._closed.setdefault(id(station), asyncio.Event())
        try:
            answer = await self._send_locked(command, station, version, closed)
            if answer is not None:
                await self._record_answer(command, version, answer)
                await self._link_answered(command, station, answer)
        except asyncio.CancelledError:  # the replica stops; both updates are conditional
            reason = "gateway stopped before the station answered"
            await self.outbox.complete(command, CommandStatus.FAILED, error=reason)
            await self.outbox.decide(
                command, CommandStatus.FAILED, "gateway stopped before sending"
            )
            raise

    async def _send_locked(
        self, command: Command, station: CentralSystemBase, version: str, closed: asyncio.Event
    ) -> StationAnswer | None:
        """Claim and send under the station's call lock (one CALL at a time per station,
        in the order read); the answer, or None when the outcome is already recorded."""
        lock = station.call_lock
        wait_s = (command.expires_at - utc_now()).total_seconds()
        try:
            async with asyncio.timeout(max(0.0, wait_s)):
                await lock.acquire()
        except TimeoutError:
            await self.outbox.decide(
                command,
                CommandStatus.EXPIRED,
                "expired while earlier commands to the station were in flight",
            )
            return None
        try:
            if closed.is_set():
                await self.outbox.decide(
                    command,
                    CommandStatus.OFFLINE,
                    f"station {command.charge_point_id} disconnected before the command was sent",
                )
                return None
            record = await self.outbox.claim_sent(command, version)
            if record is None:
                return None  # decided elsewhere (another replica, an earlier run, expiry)
            try:
                return await call_station(
                    station, command.action, command.payload, command.timeout_s, closed
                )
            except TimeoutError:
                await self.outbox.complete(
                    command,
                    CommandStatus.TIMED_OUT,
                    error=f"no answer within {command.timeout_s:g} s",
                )
            except ConnectionLost:
                await self.outbox.complete(
                    command,
                    CommandStatus.FAILED,
                    error="connection to the station closed before it answered",
                )
            return None
        finally:
            lock.release()

    async def _link_answered(
        self, command: Command, station: CentralSystemBase, answer: StationAnswer
    ) -> None:
        """A remote start answered with the transaction already running (2.0.1): link it
        (ADR 0010; a later TransactionEvent with the remoteStartId finds it linked)."""
        tx = answered_transaction_id(command.action, answer.payload)
        if tx is None:
            return
        try:
            pool = station.services.pool
            await remote_start_links.link(pool, command.charge_point_id, command.command_id, tx)
        except Exception:  # the outcome is recorded; the link is a convenience
            self.log.exception(
                "could not link the remote start", command_id=str(command.command_id)
            )

    async def _record_answer(self, command: Command, version: str, answer: StationAnswer) -> None:
        if answer.payload is None:
            await self.outbox.complete(
                command,
                CommandStatus.FAILED,
                response={
                    "errorCode": answer.error_code,
                    "errorDescription": answer.error_description,
                    "errorDetails": answer.error_details,
                },
                error=f"CALLERROR {answer.error_code}: {answer.error_description}".strip(),
            )
            return
        bad = SCHEMAS[version].problem(command.action, answer.payload, response=True)
        if bad is not None:
            await self.outbox.complete(
                command,
                CommandStatus.FAILED,
                response=answer.payload,
                error=f"station answered an invalid {command.action} response: {bad}",
            )
            return
        status, why = outcome(command.action, answer.payload)
        await self.outbox.complete(command, status, response=answer.payload, error=why)
