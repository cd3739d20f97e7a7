"""Remote commands: what goes on ``ocpp.commands`` and comes back on ``ocpp.command-results``.

A :class:`Command` asks the gateway replica holding a station's socket to send one
OCPP CALL (``action`` of the station's OCPP version, ``payload`` camelCase as on the
wire). ``command_id`` is the idempotency key end to end (the ``commands`` row, the
result). The result is published once the command reached a terminal status
(see ``docs/commands.md``). Key = charge point id on both topics.

Numbers in payloads keep their exact decimal text: non-integers decode as
``Decimal`` and ``Decimal`` encodes as a JSON number (1.6 charging profile limits
have ``multipleOf 0.1``; a float would not do).

>>> from datetime import UTC, datetime
>>> from decimal import Decimal
>>> t = datetime(2026, 1, 1, tzinfo=UTC)
>>> cmd = new_command("CP-1", "SetChargingProfile", {"limit": Decimal("7.4")},
...                   requested_by="ops", now=t, ttl_s=60, timeout_s=10)
>>> encode_command(cmd).count(b'"limit":7.4')
1
>>> decode_command(encode_command(cmd)) == cmd
True
>>> decode_command(encode_command(cmd)).expires_at.isoformat()
'2026-01-01T00:01:00+00:00'
>>> decode_command(b'{"command_id": "x"}')
Traceback (most recent call last):
...
bus.commands.CommandError: command does not match schema: ...
>>> CommandStatus.ACCEPTED.terminal, CommandStatus.SENT.terminal
(True, False)
>>> res = CommandResult(command_id=cmd.command_id, charge_point_id="CP-1",
...     action=cmd.action, status=CommandStatus.REJECTED, requested_by="ops",
...     requested_at=t, completed_at=t, response={"status": "Rejected"})
>>> decode_result(encode_result(res)) == res
True
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

import msgspec

from bus.codec import decode_versioned

SCHEMA_VERSION = 1


class CommandStatus(StrEnum):
    PENDING = "pending"  # stored (and published), no replica has taken it yet
    SENT = "sent"  # claimed by a replica and sent to the station; waiting for the answer
    ACCEPTED = "accepted"  # CALLRESULT with status Accepted (or an Accepted-like answer)
    REJECTED = "rejected"  # CALLRESULT with another status (Rejected, NotSupported, ...)
    FAILED = "failed"  # CALLERROR, invalid payload (not sent), connection lost, ...
    TIMED_OUT = "timed_out"  # no answer within timeout_s
    EXPIRED = "expired"  # expires_at passed before it could be sent; never sent
    OFFLINE = "offline"  # the station is not connected to any live replica; never sent

    @property
    def terminal(self) -> bool:
        return self not in (CommandStatus.PENDING, CommandStatus.SENT)


class CommandError(ValueError):
    """A message that is not a valid command (it belongs on the dead-letter topic)."""


class Command(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=False):
    command_id: uuid.UUID
    charge_point_id: str
    action: str  # OCPP action name of the station's version, e.g. "RemoteStartTransaction"
    payload: dict[str, Any]  # camelCase, exactly as the station will receive it
    requested_by: str  # who asked (API key name, "smart-charging", ...)
    requested_at: datetime
    expires_at: datetime  # not sent after this (status expired)
    timeout_s: float = 30.0  # how long to wait for the station's answer
    # When set, the command is only sent to a station speaking this version.
    ocpp_version: str | None = None
    schema_version: int = SCHEMA_VERSION


class CommandResult(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=False):
    command_id: uuid.UUID
    charge_point_id: str
    action: str
    status: CommandStatus  # always terminal on ocpp.command-results
    requested_by: str
    requested_at: datetime
    completed_at: datetime
    ocpp_version: str | None = None
    gateway_id: str | None = None  # the replica that decided it
    sent_at: datetime | None = None  # None: never sent
    # The station's CALLRESULT payload; for a CALLERROR {"errorCode", "errorDescription",
    # "errorDetails"}.
    response: dict[str, Any] | None = None
    error_code: str | None = None  # the CALLERROR code, when the station answered one
    error: str | None = None  # why it is not accepted, in words
    schema_version: int = SCHEMA_VERSION


_encoder = msgspec.json.Encoder(decimal_format="number")
_command_decoder = msgspec.json.Decoder(Command, float_hook=Decimal)
_result_decoder = msgspec.json.Decoder(CommandResult, float_hook=Decimal)
_any_decoder = msgspec.json.Decoder(float_hook=Decimal)


def new_command(
    charge_point_id: str,
    action: str,
    payload: dict[str, Any],
    *,
    requested_by: str,
    timeout_s: float = 30.0,
    ttl_s: float = 300.0,
    ocpp_version: str | None = None,
    now: datetime | None = None,
    command_id: uuid.UUID | None = None,
) -> Command:
    """A command valid for ``ttl_s`` seconds from ``now``."""
    from datetime import UTC

    at = now or datetime.now(UTC)
    return Command(
        command_id=command_id or uuid.uuid4(),
        charge_point_id=charge_point_id,
        action=action,
        payload=payload,
        requested_by=requested_by,
        requested_at=at,
        expires_at=at + timedelta(seconds=ttl_s),
        timeout_s=timeout_s,
        ocpp_version=ocpp_version,
    )


def encode_json(value: Any) -> bytes:
    """JSON with ``Decimal`` as exact numbers (payloads, responses)."""
    return _encoder.encode(value)


def decode_json(data: bytes | str) -> Any:
    """JSON with non-integer numbers as ``Decimal``."""
    return _any_decoder.decode(data)


def encode_command(command: Command) -> bytes:
    return _encoder.encode(command)


def _decode(decoder: msgspec.json.Decoder[Any], data: bytes | None, what: str) -> Any:
    if data is None:
        raise CommandError(f"{what} message has no value")
    return decode_versioned(decoder, data, what, CommandError, SCHEMA_VERSION)


def decode_command(data: bytes | None) -> Command:
    command: Command = _decode(_command_decoder, data, "command")
    if command.requested_at.tzinfo is None or command.expires_at.tzinfo is None:
        raise CommandError("command times must carry a UTC offset")
    if not command.timeout_s > 0:
        raise CommandError("command timeout_s must be > 0")
    if not command.charge_point_id or not command.action:
        raise CommandError("command needs a charge_point_id and an action")
    return command


def encode_result(result: CommandResult) -> bytes:
    return _encoder.encode(result)


def decode_result(data: bytes | None) -> CommandResult:
    result: CommandResult = _decode(_result_decoder, data, "command result")
    return result
