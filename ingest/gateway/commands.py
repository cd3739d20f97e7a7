"""Remote commands: ``ocpp.commands`` -> the station's socket -> ``ocpp.command-results``.

Every gateway replica runs one :class:`CommandRouter` (owned by ``server.Gateway``,
started and cancelled with it). It reads **all** partitions of ``ocpp.commands``
with manual assignment (no consumer group), from the position it keeps in
``gateway_offsets`` (the topic's end on its first start), and routes each command
as ``docs/commands.md`` describes:

- past ``expires_at`` -> claim it as ``expired`` (never sent);
- the station is connected to this replica -> check it (action of the station's
  version, payload against that version's schema; else ``failed``, not sent),
  claim it as ``sent``, send it, wait up to ``timeout_s`` for the answer;
- the station is connected to another live replica -> ignore it (that one sends it);
- nobody live holds the station -> claim it as ``offline`` (fail fast).

Claims are conditional row updates (``store.commands``), so exactly one replica acts
on a command. Answers map to: CALLRESULT with an accepting status (Accepted,
Unlocked, Scheduled, RebootRequired, AcceptedCanceled; Get/SetVariables and
GetConfiguration: every item accepted / no unknown key; answers without a status
field) -> ``accepted``; any other status -> ``rejected``; CALLERROR -> ``failed``
(code/description kept); an answer that violates the response schema -> ``failed``;
no answer in time -> ``timed_out``; connection lost or gateway stopping while
waiting -> ``failed``. The terminal row is published as a ``CommandResult``.

A send runs in its own task and waits for its answer, which the connection's receive
loop hands over (``CentralSystemBase.expect_answer``: only the awaited message id is
kept, stray answers are dropped and counted); the loop never waits for a
command, so a station's own CALLs are handled while a command is in flight (the
library's ``call`` from inside a handler would deadlock). One command at a time per
station (OCPP-J allows one outstanding CALL per direction), in the order read.

Each replica heartbeats into ``gateways``; every heartbeat it also expires
``pending`` commands nobody sent in time, fails ``sent`` commands whose replica
died before recording the answer, and publishes the results of terminal rows that
were never marked published (``store.commands.publish_unpublished``).
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import ocpp
import psycopg
import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from jsonschema import Draft4Validator, Draft6Validator
from jsonschema.exceptions import best_match
from ocpp.messages import CallError as LibCallError
from prometheus_client import CollectorRegistry, Counter
from psycopg_pool import AsyncConnectionPool
from tenacity import RetryCallState
from websockets.exceptions import ConnectionClosed

from bus.commands import (
    Command,
    CommandError,
    CommandStatus,
    decode_command,
    decode_json,
    encode_json,
    encode_result,
)
from bus.producer import Producer, PublishError
from bus.topics import Topics
from ingest.gateway.protocol import CentralSystemBase
from ingest.gateway.schemas import format_checker
from ingest.gateway.services import utc_now
from runtime.logs import kafka_logger
from runtime.retry import KAFKA, async_retrying, failure, next_wait
from store import commands as store

log = structlog.get_logger("chargeflow.gateway.commands")
# What the database and Kafka raise while they are away (an outage passes, with retries).
OUTAGES = (psycopg.Error, PublishError, OSError, TimeoutError)

# The commands the platform sends, per OCPP version (CSMS -> station CALLs).
COMMANDS: dict[str, frozenset[str]] = {
    "1.6": frozenset(
        {
            "RemoteStartTransaction",
            "RemoteStopTransaction",
            "Reset",
            "UnlockConnector",
            "ChangeAvailability",
            "ChangeConfiguration",
            "GetConfiguration",
            "SetChargingProfile",
            "ClearChargingProfile",
            "GetCompositeSchedule",
            "TriggerMessage",
            "UpdateFirmware",
            "GetDiagnostics",
            "SendLocalList",
            "GetLocalListVersion",
            "ReserveNow",
            "CancelReservation",
            "ClearCache",
            "DataTransfer",
        }
    ),
    "2.0.1": frozenset(
        {
            "RequestStartTransaction",
            "RequestStopTransaction",
            "Reset",
            "UnlockConnector",
            "ChangeAvailability",
            "SetVariables",
            "GetVariables",
            "SetChargingProfile",
            "ClearChargingProfile",
            "GetCompositeSchedule",
            "TriggerMessage",
            "UpdateFirmware",
            "GetLog",
            "GetBaseReport",
            "SendLocalList",
            "GetLocalListVersion",
            "ReserveNow",
            "CancelReservation",
            "ClearCache",
            "DataTransfer",
        }
    ),
}

ACCEPTING = frozenset({"Accepted", "Unlocked", "Scheduled", "RebootRequired", "AcceptedCanceled"})


def outcome(action: str, response: dict[str, Any]) -> tuple[CommandStatus, str | None]:
    """Status of a command from the station's CALLRESULT (schema-valid), and why not
    accepted.

    >>> outcome("Reset", {"status": "Accepted"})
    (<CommandStatus.ACCEPTED: 'accepted'>, None)
    >>> outcome("UnlockConnector", {"status": "NotSupported"})
    (<CommandStatus.REJECTED: 'rejected'>, 'station answered NotSupported')
    >>> outcome("GetConfiguration", {"configurationKey": [], "unknownKey": ["X"]})
    (<CommandStatus.REJECTED: 'rejected'>, 'unknown keys: X')
    >>> outcome("SetVariables", {"setVariableResult": [{"attributeStatus": "Accepted"},
    ...     {"attributeStatus": "UnknownVariable"}]})
    (<CommandStatus.REJECTED: 'rejected'>, 'not all variables accepted: UnknownVariable')
    >>> outcome("GetLocalListVersion", {"listVersion": 3})
    (<CommandStatus.ACCEPTED: 'accepted'>, None)
    """
    status = response.get("status")
    if isinstance(status, str):
        if status in ACCEPTING:
            return CommandStatus.ACCEPTED, None
        return CommandStatus.REJECTED, f"station answered {status}"
    if action == "GetConfiguration" and response.get("unknownKey"):
        return CommandStatus.REJECTED, "unknown keys: " + ", ".join(
            str(k) for k in response["unknownKey"]
        )
    for field in ("setVariableResult", "getVariableResult"):
        items = response.get(field)
        if isinstance(items, list):
            refused = [
                str(i.get("attributeStatus"))
                for i in items
                if i.get("attributeStatus") not in ACCEPTING
            ]
            if refused:
                return CommandStatus.REJECTED, "not all variables accepted: " + ", ".join(refused)
    return CommandStatus.ACCEPTED, None


class CommandSchemas:
    """Request and response schemas of one version's commands, with numbers as
    ``Decimal`` (exact ``multipleOf`` checks; payloads decode as ``Decimal``)."""

    def __init__(self, ocpp_version: str) -> None:
        self.ocpp_version = ocpp_version
        self._v201 = ocpp_version == "2.0.1"
        folder = {"1.6": "v16", "2.0.1": "v201"}[ocpp_version]
        self._dir = Path(ocpp.__file__).parent / folder / "schemas"
        self._validators: dict[str, Any] = {}
        self._cls = Draft6Validator if self._v201 else Draft4Validator

    def _name(self, action: str, response: bool) -> str:
        if self._v201:
            return action + ("Response" if response else "Request")
        return action + ("Response" if response else "")

    def warm(self) -> None:
        for action in COMMANDS[self.ocpp_version]:
            self._validator(action, False)
            self._validator(action, True)

    def _validator(self, action: str, response: bool) -> Any:
        name = self._name(action, response)
        validator = self._validators.get(name)
        if validator is None:
            text = (self._dir / f"{name}.json").read_text(encoding="utf-8-sig")
            validator = self._cls(
                json.loads(text, parse_float=Decimal), format_checker=format_checker
            )
            self._validators[name] = validator
        return validator

    def problem(
        self, action: str, payload: dict[str, Any], *, response: bool = False
    ) -> str | None:
        """Why ``payload`` is not a valid request (response) of ``action``, or None."""
        error = best_match(self._validator(action, response).iter_errors(payload))
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path) or "payload"
        return f"{where}: {error.message}"


SCHEMAS = {v: CommandSchemas(v) for v in COMMANDS}


def check_command(command: Command, ocpp_version: str) -> str | None:
    """Why ``command`` cannot be sent to a station speaking ``ocpp_version``, or None.

    >>> from bus.commands import new_command
    >>> check_command(new_command("CP", "Reset", {"type": "Soft"}, requested_by="t"), "1.6")
    >>> check_command(new_command("CP", "Reset", {"type": "Warm"}, requested_by="t"), "1.6")
    "invalid Reset payload for OCPP 1.6: type: 'Warm' is not one of ['Hard', 'Soft']"
    >>> check_command(new_command("CP", "GetLog", {}, requested_by="t"), "1.6")
    'GetLog is not a command the gateway sends to OCPP 1.6 stations'
    """
    if command.ocpp_version is not None and command.ocpp_version != ocpp_version:
        return f"command is for OCPP {command.ocpp_version}, the station speaks OCPP {ocpp_version}"
    if command.action not in COMMANDS[ocpp_version]:
        return (
            f"{command.action} is not a command the gateway sends to OCPP {ocpp_version} stations"
        )
    problem = SCHEMAS[ocpp_version].problem(command.action, command.payload)
    if problem is not None:
        return f"invalid {command.action} payload for OCPP {ocpp_version}: {problem}"
    return None


class StationAnswer:
    """What came back for one CALL: a CALLRESULT payload or a CALLERROR."""

    def __init__(
        self,
        payload: dict[str, Any] | None,
        error_code: str | None = None,
        error_description: str = "",
        error_details: Any = None,
    ) -> None:
        self.payload = payload
        self.error_code = error_code
        self.error_description = error_description
        self.error_details = error_details


class ConnectionLost(Exception):
    """The station's connection ended before it answered."""


async def call_station(
    station: CentralSystemBase,
    action: str,
    payload: dict[str, Any],
    answer_timeout_s: float,
    closed: asyncio.Event,
) -> StationAnswer:
    """Send one CALL with ``payload`` serialised exactly and wait ``answer_timeout_s`` for
    its answer (``TimeoutError``) or until ``closed`` is set (``ConnectionLost``; an
    answer that arrived before the close still wins). The caller holds the station's
    call lock. Never call this from a CALL handler: the answer arrives through the
    connection's receive loop."""
    unique_id = str(uuid.uuid4())
    frame = (
        b"[2,"
        + encode_json(unique_id)
        + b","
        + encode_json(action)
        + b","
        + encode_json(payload)
        + b"]"
    )
    # Registered before sending: only this id's answer is kept (stray answers are
    # dropped by the connection), and an immediate answer cannot be missed.
    expected = station.expect_answer(unique_id)
    try:
        try:
            await station.send_frame(frame.decode())
        except ConnectionClosed as exc:
            raise ConnectionLost(str(exc)) from exc
        answer = asyncio.ensure_future(station.wait_answer(unique_id, answer_timeout_s))
        closing = asyncio.ensure_future(closed.wait())
        try:
            await asyncio.wait({answer, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
            if not answer.done():
                answer.cancel()
        if answer.cancelled():
            raise ConnectionLost("connection closed before the station answered")
        response = answer.result()  # raises TimeoutError
    finally:
        station.forget_answer(expected)
    if isinstance(response, LibCallError):
        return StationAnswer(
            None, str(response.error_code), str(response.error_description), response.error_details
        )
    # Re-read numbers as Decimal: exact, and what the response schemas expect.
    return StationAnswer(decode_json(json.dumps(response.payload)))


class CommandMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.results = Counter(
            "chargeflow_gateway_command_results",
            "Commands this replica decided, by status",
            ["action", "status"],
            registry=registry,
        )
        self.ignored = Counter(
            "chargeflow_gateway_commands_ignored",
            "Commands left to the replica holding the station",
            registry=registry,
        )


class CommandRouter:
    """Reads ``ocpp.commands``, sends what belongs to this replica, records outcomes."""

    def __init__(
        self,
        *,
        gateway_id: str,
        bootstrap: str,
        topics: Topics,
        pool: AsyncConnectionPool,
        producer: Producer,
        lookup: Callable[[str], CentralSystemBase | None],
        registry: CollectorRegistry,
        heartbeat_s: float = 5.0,
        grace_s: float = 20.0,
        poll_s: float = 0.2,
        publish_timeout_s: float = 10.0,
        assign_timeout_s: float = 10.0,
    ) -> None:
        self.gateway_id = gateway_id
        self.topics = topics
        self.pool = pool
        self.producer = producer
        self.lookup = lookup
        self.heartbeat_s = heartbeat_s
        self.grace_s = grace_s
        self.poll_s = poll_s
        self.publish_timeout_s = publish_timeout_s
        self.assign_timeout_s = assign_timeout_s
        self.metrics = CommandMetrics(registry)
        self._bootstrap = bootstrap
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="commands-consumer")
        self._consumer: Consumer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._sends: dict[int, set[asyncio.Task[None]]] = {}  # id(station) -> in flight
        # id(station) -> set when its connection ends (wakes commands waiting on it)
        self._closed: dict[int, asyncio.Event] = {}
        self.log = log.bind(gateway_id=gateway_id)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Heartbeat, fix the read position of every partition, start the loops.

        Kafka unreachable or the topic missing at start does not stop the gateway
        from serving stations: the assignment is retried in the background."""
        for schemas in SCHEMAS.values():
            await asyncio.to_thread(schemas.warm)
        await store.heartbeat(self.pool, self.gateway_id)
        positions: dict[int, int] | None = None
        try:
            positions = await self._assign_now(self.assign_timeout_s)
        except RuntimeError as exc:
            self.log.warning(
                "commands topic not readable yet, retrying in the background", error=str(exc)
            )
        self._tasks = [
            asyncio.create_task(self._consume_loop(positions), name="commands-consume"),
            asyncio.create_task(self._heartbeat_loop(), name="commands-heartbeat"),
        ]
        self.log.info(
            "command router started", topic=self.topics.ocpp_commands, positions=positions
        )

    async def _assign_now(self, timeout_s: float) -> dict[int, int]:
        topic = self.topics.ocpp_commands
        stored = await store.load_offsets(self.pool, self.gateway_id, topic)
        loop = asyncio.get_running_loop()
        positions = await loop.run_in_executor(
            self._executor, functools.partial(self._assign, stored, timeout_s)
        )
        await store.save_offsets(self.pool, self.gateway_id, topic, positions)
        return positions

    def _assign(self, stored: dict[int, int], timeout_s: float) -> dict[int, int]:
        """(executor thread) Assign every partition at its stored position, or at its
        current end; returns the explicit positions (no lazy OFFSET_END)."""
        topic = self.topics.ocpp_commands
        consumer = Consumer(
            {
                "bootstrap.servers": self._bootstrap,
                "group.id": f"chargeflow-gateway-{self.gateway_id}",  # never joined
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "log_level": 3,
                "logger": kafka_logger(),
            }
        )
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                meta = consumer.list_topics(topic, timeout=max(0.5, min(5.0, timeout_s)))
                info = meta.topics.get(topic)
            except KafkaException:
                info = None
            if info is not None and info.error is None and info.partitions:
                break
            if time.monotonic() > deadline:
                consumer.close()
                raise RuntimeError(f"topic {topic} not available (broker down or topic missing)")
            time.sleep(0.5)
        positions: dict[int, int] = {}
        for partition in sorted(info.partitions):
            if partition in stored:
                positions[partition] = stored[partition]
            else:
                _low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=10
                )
                positions[partition] = int(high)
        consumer.assign([TopicPartition(topic, p, o) for p, o in positions.items()])
        self._consumer = consumer
        return positions

    async def stop(self) -> None:
        """Stop reading and heartbeating; in-flight sends are failed (their answer can
        no longer be recorded) and the replica is forgotten (it holds nothing)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        inflight = [t for tasks in self._sends.values() for t in tasks]
        for task in inflight:
            task.cancel()
        await asyncio.gather(*inflight, return_exceptions=True)
        # The consumer thread finishes its current poll/assignment, then nothing uses
        # the consumer any more.
        await asyncio.to_thread(self._executor.shutdown, True)
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await asyncio.to_thread(consumer.close)
        try:
            await store.forget_gateway(self.pool, self.gateway_id)
        except psycopg.Error as exc:
            self.log.warning("could not unregister the replica", error=str(exc))
        self.log.info("command router stopped")

    # ------------------------------------------------------------ station hooks

    def station_disconnected(self, station: CentralSystemBase) -> None:
        """A connection ended: commands waiting for its answer fail, queued ones are
        not sent (offline)."""
        closed = self._closed.pop(id(station), None)
        if closed is not None:
            closed.set()

    # --------------------------------------------------------------------- loops

    async def _consume_loop(self, positions: dict[int, int] | None) -> None:
        loop = asyncio.get_running_loop()
        topic = self.topics.ocpp_commands
        if positions is None:

            def not_yet(state: RetryCallState) -> None:
                self.log.warning(
                    "commands topic still not readable",
                    error=str(failure(state)),
                    delay=round(next_wait(state), 2),
                )

            async for attempt in async_retrying(
                KAFKA.capped(30.0, initial_s=1.0),
                (RuntimeError, psycopg.Error),
                before_sleep=not_yet,
            ):
                with attempt:
                    positions = await self._assign_now(10.0)
        assert positions is not None
        self.log.info("reading commands", topic=topic, positions=positions)
        committed = dict(positions)
        while True:
            consumer = self._consumer
            assert consumer is not None
            messages = await loop.run_in_executor(
                self._executor, functools.partial(consumer.consume, 200, self.poll_s)
            )
            for msg in messages:
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        self.log.warning("consumer error", error=err.str())
                    continue
                try:
                    await self._retrying(functools.partial(self._handle, msg), "handle command")
                except Exception:  # a bug must not stop the command stream
                    self.log.exception(
                        "command not handled, skipped",
                        partition=msg.partition(),
                        offset=msg.offset(),
                    )
                positions[int(msg.partition() or 0)] = int(msg.offset() or 0) + 1
            if positions != committed:
                snapshot = dict(positions)
                await self._retrying(
                    functools.partial(
                        store.save_offsets, self.pool, self.gateway_id, topic, snapshot
                    ),
                    "save offsets",
                )
                committed = snapshot

    async def _retrying(self, action: Callable[[], Any], what: str) -> None:
        """Run ``action`` until the database/Kafka let it through (outages pass)."""

        def failed(state: RetryCallState) -> None:
            self.log.warning(
                f"{what} failed, retrying",
                error=str(failure(state)),
                delay=round(next_wait(state), 2),
            )

        async for attempt in async_retrying(KAFKA, OUTAGES, before_sleep=failed):
            with attempt:
                await action()

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            try:
                await store.heartbeat(self.pool, self.gateway_id)
                for record in await store.expire_overdue(self.pool, self.gateway_id):
                    await self._publish(record)
                for record in await store.abandon_orphaned(self.pool, self.grace_s):
                    await self._publish(record)
                republished = await store.publish_unpublished(
                    self.pool, self._publish_result, self.grace_s
                )
                if republished:
                    self.log.warning(
                        "published results left unpublished", commands=len(republished)
                    )
            except (psycopg.Error, PublishError, OSError) as exc:
                self.log.warning("heartbeat failed", error=str(exc))

    # ------------------------------------------------------------------- routing

    async def _handle(self, msg: Message) -> None:
        try:
            command = decode_command(msg.value())
        except CommandError as exc:
            await self._deadletter(msg, str(exc))
            return
        await store.insert_if_missing(self.pool, command)
        await self.route(command)

    async def route(self, command: Command) -> None:
        """Decide what this replica does with ``command`` (docs/commands.md)."""
        cp_id = command.charge_point_id
        if command.expires_at <= utc_now():
            await self._decide(
                command,
                CommandStatus.EXPIRED,
                f"expired at {command.expires_at.isoformat()} before it was sent",
            )
            return
        station = self.lookup(cp_id)
        if station is not None:
            self._spawn_send(command, station)
            return
        holder = await store.live_holder(self.pool, cp_id, self.grace_s)
        if holder is not None and holder != self.gateway_id:
            self.metrics.ignored.inc()
            return  # the replica holding the station sends it
        await self._decide(
            command, CommandStatus.OFFLINE, f"station {cp_id} is not connected to any gateway"
        )

    async def _decide(
        self,
        command: Command,
        status: CommandStatus,
        error: str | None,
        ocpp_version: str | None = None,
    ) -> None:
        """Claim a pending command straight into a terminal status (never sent)."""
        record = await store.claim(
            self.pool,
            command.command_id,
            self.gateway_id,
            status,
            error=error,
            ocpp_version=ocpp_version,
        )
        if record is not None:
            self.log.info(
                "command not sent",
                command_id=str(command.command_id),
                charge_point_id=command.charge_point_id,
                action=command.action,
                status=str(status),
                reason=error,
            )
            await self._publish(record)

    def _spawn_send(self, command: Command, station: CentralSystemBase) -> None:
        task = asyncio.create_task(
            self._send(command, station), name=f"command-{command.command_id}"
        )
        tasks = self._sends.setdefault(id(station), set())
        tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            tasks.discard(t)
            if not tasks:
                self._sends.pop(id(station), None)
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
            await self._decide(command, CommandStatus.FAILED, f"not sent: {problem}", version)
            return
        closed = self._closed.setdefault(id(station), asyncio.Event())
        try:
            answer = await self._send_locked(command, station, version, closed)
            if answer is not None:
                await self._record_answer(command, version, answer)
        except asyncio.CancelledError:  # the replica stops; both updates are conditional
            reason = "gateway stopped before the station answered"
            await self._complete(command, CommandStatus.FAILED, error=reason)
            await self._decide(command, CommandStatus.FAILED, "gateway stopped before sending")
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
            await self._decide(
                command,
                CommandStatus.EXPIRED,
                "expired while earlier commands to the station were in flight",
            )
            return None
        try:
            if closed.is_set():
                await self._decide(
                    command,
                    CommandStatus.OFFLINE,
                    f"station {command.charge_point_id} disconnected before the command was sent",
                )
                return None
            record = await store.claim(
                self.pool,
                command.command_id,
                self.gateway_id,
                CommandStatus.SENT,
                ocpp_version=version,
            )
            if record is None:
                return None  # decided elsewhere (another replica, an earlier run, expiry)
            try:
                return await call_station(
                    station, command.action, command.payload, command.timeout_s, closed
                )
            except TimeoutError:
                await self._complete(
                    command,
                    CommandStatus.TIMED_OUT,
                    error=f"no answer within {command.timeout_s:g} s",
                )
            except ConnectionLost:
                await self._complete(
                    command,
                    CommandStatus.FAILED,
                    error="connection to the station closed before it answered",
                )
            return None
        finally:
            lock.release()

    async def _record_answer(self, command: Command, version: str, answer: StationAnswer) -> None:
        if answer.payload is None:
            await self._complete(
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
            await self._complete(
                command,
                CommandStatus.FAILED,
                response=answer.payload,
                error=f"station answered an invalid {command.action} response: {bad}",
            )
            return
        status, why = outcome(command.action, answer.payload)
        await self._complete(command, status, response=answer.payload, error=why)

    async def _complete(
        self,
        command: Command,
        status: CommandStatus,
        *,
        response: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        record = await _persist(
            lambda: store.complete(
                self.pool, command.command_id, status, response=response, error=error
            )
        )
        if record is not None:
            self.log.info(
                "command done",
                command_id=str(command.command_id),
                charge_point_id=command.charge_point_id,
                action=command.action,
                status=str(status),
                error=error,
            )
            await self._publish(record)

    async def _publish(self, record: store.CommandRecord) -> None:
        """Publish a terminal row's result, then mark the row (the row is the outbox:
        if this fails for good, a heartbeat publishes it later)."""
        self.metrics.results.labels(record.action, str(record.status)).inc()
        await _persist(lambda: self._publish_result(record))
        await _persist(lambda: store.mark_published(self.pool, record.command_id))

    async def _publish_result(self, record: store.CommandRecord) -> None:
        await asyncio.wait_for(
            self.producer.publish(
                self.topics.ocpp_command_results,
                record.charge_point_id.encode(),
                encode_result(record.to_result()),
            ),
            self.publish_timeout_s,
        )

    async def _deadletter(self, msg: Message, reason: str) -> None:
        topic, partition, offset = (
            msg.topic() or "",
            int(msg.partition() or 0),
            int(msg.offset() or 0),
        )
        if not await store.claim_deadletter(
            self.pool, topic, partition, offset, self.gateway_id, reason
        ):
            return  # another replica dead-lettered it
        self.log.warning(
            "undecodable command, dead-lettered", reason=reason, partition=partition, offset=offset
        )
        headers = [
            ("deadletter.reason", reason.encode()),
            ("deadletter.stage", b"gateway.commands"),
            ("deadletter.source.topic", topic.encode()),
            ("deadletter.source.partition", str(partition).encode()),
            ("deadletter.source.offset", str(offset).encode()),
        ]
        await asyncio.wait_for(
            self.producer.publish(self.topics.deadletter, msg.key(), msg.value() or b"", headers),
            self.publish_timeout_s,
        )


async def _persist(action: Callable[[], Any], attempts: int = 5) -> Any:
    """A few retries for the terminal write/publish of a command (short outages)."""
    try:
        async for attempt in async_retrying(KAFKA, OUTAGES, attempts=attempts):
            with attempt:
                return await action()
    except OUTAGES as exc:
        log.error("could not record a command outcome", error=str(exc))
    return None
