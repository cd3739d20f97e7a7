"""What the gateway may send as a command, and what a station's answer means: the
commands per OCPP version (``COMMANDS``), their request/response schemas (numbers as
``Decimal``), the check before sending (``check_command``) and the status of an
answer (``outcome``). Pure: no I/O besides reading the schemas once."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from jsonschema.exceptions import best_match

from bus.commands import Command, CommandStatus
from ingest.gateway.schemas import SchemaFiles, describe

# The commands the platform sends, per OCPP version (CSMS -> station CALLs).
_BOTH_VERSIONS = frozenset(
    {
        "Reset",
        "UnlockConnector",
        "ChangeAvailability",
        "SetChargingProfile",
        "ClearChargingProfile",
        "GetCompositeSchedule",
        "TriggerMessage",
        "UpdateFirmware",
        "SendLocalList",
        "GetLocalListVersion",
        "ReserveNow",
        "CancelReservation",
        "ClearCache",
        "DataTransfer",
    }
)
COMMANDS: dict[str, frozenset[str]] = {
    "1.6": _BOTH_VERSIONS
    | {
        "RemoteStartTransaction",
        "RemoteStopTransaction",
        "ChangeConfiguration",
        "GetConfiguration",
        "GetDiagnostics",
    },
    "2.0.1": _BOTH_VERSIONS
    | {
        "RequestStartTransaction",
        "RequestStopTransaction",
        "SetVariables",
        "GetVariables",
        "GetLog",
        "GetBaseReport",
    },
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
        self.files = SchemaFiles(ocpp_version)
        self._validators: dict[str, Any] = {}

    def warm(self) -> None:
        for action in COMMANDS[self.ocpp_version]:
            self._validator(action, False)
            self._validator(action, True)

    def _validator(self, action: str, response: bool) -> Any:
        name = self.files.name(action, response=response)
        validator = self._validators.get(name)
        if validator is None:
            schema = self.files.load(name, parse_float=Decimal)
            if schema is None:
                raise FileNotFoundError(f"no OCPP {self.ocpp_version} schema {name}")
            validator = self.files.validator(schema)
            self._validators[name] = validator
        return validator

    def problem(
        self, action: str, payload: dict[str, Any], *, response: bool = False
    ) -> str | None:
        """Why ``payload`` is not a valid request (response) of ``action``, or None."""
        error = best_match(self._validator(action, response).iter_errors(payload))
        if error is None:
            return None
        return describe(error)


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
