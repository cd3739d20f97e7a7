"""OCPP-J framing (RPC over WebSocket), shared by every OCPP version; no I/O.

``parse_frame`` turns one text frame into a CALL, CALLRESULT or CALLERROR, or
into a ``FrameError`` telling which CALLERROR to answer with, so that no frame
from a station goes unanswered (the ocpp library only logs such frames).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

CALL = 2
CALLRESULT = 3
CALLERROR = 4

# The OCPP-J message id is a string of at most 36 characters.
MAX_UNIQUE_ID_LEN = 36
UNKNOWN_UNIQUE_ID = "-1"

# Arrays/objects nested deeper than this (the frame's own array is level 1, the
# payload object level 2) are refused before parsing. No OCPP 1.6/2.0.1 message
# comes near it (the deepest schemas nest about 8 levels; a vendor's DataTransfer
# data gets the rest), and every recursive step after parsing (schema checks, key
# conversion, normalisation, envelope encoding) then stays far from Python's
# recursion limit: ``json.loads`` alone raises RecursionError at ~1,000 levels.
MAX_NESTING_DEPTH = 64

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")

# The id as written: up to 36 characters, each possibly escaped (``\uXXXX``, or a
# surrogate pair of two for characters beyond the BMP: at most 12 written per char).
_RECOVER_ID = re.compile(r'^\s*\[\s*[0-9]+\s*,\s*"((?:[^"\\]|\\.){1,432})"')


@dataclass(frozen=True, slots=True)
class CallFrame:
    unique_id: str
    action: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallResultFrame:
    unique_id: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallErrorFrame:
    unique_id: str
    error_code: str
    error_description: str
    error_details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class FrameError:
    """A frame that is not a well-formed OCPP-J message: answer with this CALLERROR."""

    unique_id: str
    error_code: str  # OCPP 1.6 code and spelling; other versions map ``fault``
    description: str
    # What is wrong, version-free: encoding | json | not_array | message_type_id |
    # unique_id | message_type | structure | payload | depth (see v201.frame_error_answer).
    fault: str = "structure"


Frame = CallFrame | CallResultFrame | CallErrorFrame


def recover_unique_id(text: str) -> str:
    """The message id of a broken frame if it can be read, else ``"-1"``."""
    match = _RECOVER_ID.match(text)
    if match is None:
        return UNKNOWN_UNIQUE_ID
    try:
        value = json.loads(f'"{match.group(1)}"')
    except ValueError:
        return UNKNOWN_UNIQUE_ID
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_UNIQUE_ID_LEN:
        return UNKNOWN_UNIQUE_ID
    return value


def nesting_depth(text: str, limit: int = MAX_NESTING_DEPTH) -> int:
    """How deep arrays/objects nest in JSON ``text`` (brackets inside strings do not
    count), stopping early once past ``limit``. Cheap for ordinary frames: with at
    most ``limit`` opening brackets in the whole text nothing can nest deeper."""
    if text.count("[") + text.count("{") <= limit:
        return 0  # within the limit; the exact depth does not matter
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_STRING.sub("", text)):
        if bracket in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        else:
            depth -= 1
    return deepest


def parse_frame(raw: str | bytes) -> Frame | FrameError:
    """One received frame: a CALL, CALLRESULT or CALLERROR, or what is wrong with it."""
    msg = _json_array(raw)
    if isinstance(msg, FrameError):
        return msg
    unique_id = msg[1] if len(msg) > 1 and isinstance(msg[1], str) and msg[1] else UNKNOWN_UNIQUE_ID
    header_error = _header_error(msg, unique_id)
    if header_error is not None:
        return header_error
    return _typed_frame(msg, unique_id)


def _json_array(raw: str | bytes) -> list[Any] | FrameError:
    """The frame decoded (UTF-8, bounded nesting, JSON), when it is an array."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            return FrameError(
                UNKNOWN_UNIQUE_ID, "FormationViolation", "frame is not UTF-8", "encoding"
            )
    if nesting_depth(raw) > MAX_NESTING_DEPTH:
        return FrameError(
            recover_unique_id(raw),
            "FormationViolation",
            f"frame nests deeper than {MAX_NESTING_DEPTH} levels",
            "depth",
        )
    try:
        msg = json.loads(raw)
    except ValueError:
        return FrameError(
            recover_unique_id(raw), "FormationViolation", "frame is not valid JSON", "json"
        )
    except RecursionError:  # not expected after the depth check; never fatal
        return FrameError(
            recover_unique_id(raw),
            "FormationViolation",
            f"frame nests deeper than {MAX_NESTING_DEPTH} levels",
            "depth",
        )
    if not isinstance(msg, list):
        return FrameError(
            UNKNOWN_UNIQUE_ID,
            "FormationViolation",
            f"frame must be a JSON array, got {type(msg).__name__}",
            "not_array",
        )
    return msg


def _header_error(msg: list[Any], unique_id: str) -> FrameError | None:
    """What is wrong with the MessageTypeId or UniqueId, or None."""
    if not msg or isinstance(msg[0], bool) or not isinstance(msg[0], int):
        return FrameError(
            unique_id, "FormationViolation", "MessageTypeId must be an integer", "message_type_id"
        )
    if not isinstance(msg[1] if len(msg) > 1 else None, str) or not msg[1]:
        return FrameError(
            unique_id, "FormationViolation", "UniqueId must be a non-empty string", "unique_id"
        )
    if len(msg[1]) > MAX_UNIQUE_ID_LEN:
        return FrameError(
            UNKNOWN_UNIQUE_ID,
            "FormationViolation",
            f"UniqueId longer than {MAX_UNIQUE_ID_LEN} characters",
            "unique_id",
        )
    return None


def _typed_frame(msg: list[Any], unique_id: str) -> Frame | FrameError:
    """The frame of the array's MessageTypeId, when its elements fit it."""
    kind = msg[0]
    if kind == CALL:
        if len(msg) != 4:
            return FrameError(unique_id, "ProtocolError", "CALL must have 4 elements")
        if not isinstance(msg[2], str) or not msg[2]:
            return FrameError(unique_id, "FormationViolation", "Action must be a string")
        if not isinstance(msg[3], dict):
            return FrameError(
                unique_id, "FormationViolation", "CALL payload must be an object", "payload"
            )
        return CallFrame(unique_id, msg[2], msg[3])
    if kind == CALLRESULT:
        if len(msg) != 3 or not isinstance(msg[2], dict):
            return FrameError(unique_id, "FormationViolation", "malformed CALLRESULT")
        return CallResultFrame(unique_id, msg[2])
    if kind == CALLERROR:
        if (
            len(msg) != 5
            or not isinstance(msg[2], str)
            or not isinstance(msg[3], str)
            or not isinstance(msg[4], dict)
        ):
            return FrameError(unique_id, "FormationViolation", "malformed CALLERROR")
        return CallErrorFrame(unique_id, msg[2], msg[3], msg[4])
    return FrameError(
        unique_id, "FormationViolation", f"unknown MessageTypeId {kind}", "message_type"
    )


def call_result(unique_id: str, payload: dict[str, Any]) -> str:
    return json.dumps([CALLRESULT, unique_id, payload], separators=(",", ":"))


def call_error(
    unique_id: str, code: str, description: str, details: dict[str, Any] | None = None
) -> str:
    return json.dumps(
        [CALLERROR, unique_id, code, description, details or {}], separators=(",", ":")
    )
