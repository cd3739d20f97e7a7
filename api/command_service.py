"""Queueing a command from the API: the station's OCPP version, the request in that
version, the gateway's own checks, the row with its idempotency key, then the message.

The row is written first; if the broker does not confirm within
``PUBLISH_TIMEOUT_S`` (or the API has no broker), the command stays ``pending`` and a
gateway heartbeat publishes it (``store.command_queue.publish_queued``). Either way
the caller gets the command (202).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import status
from pydantic import BaseModel

from api.config import ApiConfig
from api.problems import TYPE_IDEMPOTENCY_KEY_REUSED, TYPE_OCPP_VERSION_UNKNOWN, ProblemError
from bus.commands import Command, encode_command, new_command
from bus.producer import Producer, PublishError
from ingest.gateway.command_checks import COMMANDS, check_command
from store import command_queue
from store.api_keys import ApiPrincipal
from store.commands import CommandRecord
from store.db import AsyncDb

log = logging.getLogger("chargeflow.api.commands")
PUBLISH_TIMEOUT_S = 5.0
# (action, payload) of the request for the station's OCPP version.
Build = Callable[[str], Awaitable[tuple[str, dict[str, Any]]]]


def request_hash(operation: str, station_id: str, body: BaseModel) -> str:
    """What a request asked, to tell a retry from another request under the same key."""
    # Python mode, the rest as text: the JSON mode warns on the api.params Timestamp
    # fields (the serializer sees the validated value's input); the same hash otherwise.
    text = json.dumps([operation, station_id, body.model_dump()], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


async def station_version(db: AsyncDb, station_id: str) -> str:
    known, version = await command_queue.station_ocpp_version(db, station_id)
    if not known:
        raise ProblemError(status.HTTP_404_NOT_FOUND, f"no station {station_id!r}")
    if version not in COMMANDS:
        raise ProblemError(
            status.HTTP_409_CONFLICT,
            f"the OCPP version of station {station_id!r} is not known "
            f"({version or 'it has never connected'}); a command needs it",
            type_=TYPE_OCPP_VERSION_UNKNOWN,
        )
    return version


class Submission:
    """One POST: who, which station, what (hashed for the idempotency key)."""

    def __init__(
        self,
        *,
        db: AsyncDb,
        producer: Producer | None,
        config: ApiConfig,
        principal: ApiPrincipal,
        idempotency_key: str | None,
    ) -> None:
        self.db = db
        self.producer = producer
        self.config = config
        self.principal = principal
        self.idempotency_key = idempotency_key

    async def _replay(self, hash_: str) -> CommandRecord | None:
        """The key's first command, if this key was used by this API key already (no
        station look-up or remote start id for a retry)."""
        if self.idempotency_key is None:
            return None
        found = await command_queue.find_by_key(
            self.db, self.principal.key_id, self.idempotency_key
        )
        if found is None:
            return None
        record, stored_hash = found
        _same_request(stored_hash, hash_)
        return record

    async def submit(
        self, operation: str, station_id: str, body: BaseModel, build: Build
    ) -> tuple[CommandRecord, bool]:
        """(the command, True if new / False if the key's first one)."""
        hash_ = request_hash(operation, station_id, body)
        replayed = await self._replay(hash_)
        if replayed is not None:
            return replayed, False
        version = await station_version(self.db, station_id)
        action, payload = await build(version)
        command = new_command(
            station_id,
            action,
            payload,
            requested_by=self.principal.name,
            timeout_s=self.config.command_timeout_s,
            ttl_s=self.config.command_ttl_s,
            ocpp_version=version,
        )
        problem = check_command(command, version)
        if problem is not None:
            raise ProblemError(status.HTTP_422_UNPROCESSABLE_CONTENT, problem)
        who = command_queue.Idempotency(self.principal.key_id, self.idempotency_key, hash_)
        queued = await command_queue.queue_command(
            self.db, command, who, remote_start_id=payload.get("remoteStartId")
        )
        if not queued.created:  # a concurrent request with the same key won
            _same_request(queued.request_hash, hash_)
            return queued.record, False
        await self._publish(command)
        return queued.record, True

    async def _publish(self, command: Command) -> None:
        if self.producer is None:
            return  # no broker configured: a gateway heartbeat publishes it
        try:
            await asyncio.wait_for(
                self.producer.publish(
                    self.config.topics.ocpp_commands,
                    command.charge_point_id.encode(),
                    encode_command(command),
                ),
                PUBLISH_TIMEOUT_S,
            )
        except (PublishError, TimeoutError) as exc:
            log.warning(
                "command %s stays pending: the broker did not take it (%r); a gateway "
                "publishes it later",
                command.command_id,
                exc,
            )
            return
        await command_queue.mark_queued_published(self.db, command.command_id)


def _same_request(stored_hash: str | None, hash_: str) -> None:
    if stored_hash != hash_:
        raise ProblemError(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "this Idempotency-Key was used for a different request; use a new key",
            type_=TYPE_IDEMPOTENCY_KEY_REUSED,
        )
