"""Payload validation against the OCPP JSON schemas shipped with the ``ocpp`` library.

Differences from the library's own validation (see LIBRARY-NOTES):
- schemas are loaded once, up front (``SchemaSet.warm``), never lazily in a handler;
- ``date-time`` fields are checked (RFC 3339 with an explicit offset or ``Z``); a
  value that is not is a ``TypeConstraintViolation``: OCPP defines ``dateTime`` as
  a field *type*, the same way ``CiString20Type`` length violations are reported;
- errors use the OCPP 1.6 codes (``FormationViolation``, not ``FormatViolation``).

Mapping of JSON-schema failures: ``required`` -> ProtocolError (payload
incomplete); ``type``/``maxLength``/``format`` -> TypeConstraintViolation;
``minimum``/``maximum``/``multipleOf`` -> PropertyConstraintViolation;
``additionalProperties``/``enum``/anything else -> FormationViolation.

OCPP 2.0.1 (draft-06 schemas, ``<Action>Request.json``/``<Action>Response.json``)
uses its own codes: ``required``/``minItems``/``maxItems`` ->
OccurrenceConstraintViolation (a field's cardinality); ``type``/``maxLength``/
``minLength``/``format`` -> TypeConstraintViolation; ``enum``/``minimum``/
``maximum``/``exclusiveMinimum``/``exclusiveMaximum``/``multipleOf`` ->
PropertyConstraintViolation (a value the field's type allows but the field does
not); ``additionalProperties``/anything else -> FormatViolation.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import ocpp
from jsonschema import Draft4Validator, Draft6Validator, FormatChecker
from jsonschema.exceptions import best_match

_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)

format_checker = FormatChecker(formats=())


@format_checker.checks("date-time")
def is_rfc3339(value: object) -> bool:
    if not isinstance(value, str):
        return True  # the "type" keyword reports this
    if not _RFC3339.match(value):
        return False
    try:
        parse_datetime(value)
    except ValueError:
        return False
    return True


def parse_datetime(value: str) -> datetime:
    """An RFC 3339 timestamp as an aware datetime (fractions beyond µs are cut)."""
    text = value.strip().upper().replace("Z", "+00:00")
    match = re.match(r"^(.*T\d{2}:\d{2}:\d{2})(\.\d+)?(.*)$", text)
    if match and match.group(2) and len(match.group(2)) > 7:
        text = match.group(1) + match.group(2)[:7] + match.group(3)
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp without UTC offset: {value!r}")
    return parsed


@dataclass(frozen=True, slots=True)
class Violation:
    code: str
    description: str


_CODES = {
    "required": "ProtocolError",
    "type": "TypeConstraintViolation",
    "maxLength": "TypeConstraintViolation",
    "format": "TypeConstraintViolation",
    "minimum": "PropertyConstraintViolation",
    "maximum": "PropertyConstraintViolation",
    "multipleOf": "PropertyConstraintViolation",
}


_CODES_V201 = {
    "required": "OccurrenceConstraintViolation",
    "minItems": "OccurrenceConstraintViolation",
    "maxItems": "OccurrenceConstraintViolation",
    "type": "TypeConstraintViolation",
    "maxLength": "TypeConstraintViolation",
    "minLength": "TypeConstraintViolation",
    "format": "TypeConstraintViolation",
    "enum": "PropertyConstraintViolation",
    "minimum": "PropertyConstraintViolation",
    "maximum": "PropertyConstraintViolation",
    "exclusiveMinimum": "PropertyConstraintViolation",
    "exclusiveMaximum": "PropertyConstraintViolation",
    "multipleOf": "PropertyConstraintViolation",
}

Validator = Any  # Draft4Validator (1.6) or Draft6Validator (2.0.1)


class SchemaSet:
    """Validators for one OCPP version's requests (CALL) and responses (CALLRESULT)."""

    def __init__(self, ocpp_version: str) -> None:
        if ocpp_version not in ("1.6", "2.0.1"):
            raise ValueError(f"no schemas wired for OCPP {ocpp_version}")
        self.ocpp_version = ocpp_version
        folder = {"1.6": "v16", "2.0.1": "v201"}[ocpp_version]
        self._dir = Path(ocpp.__file__).parent / folder / "schemas"
        self._v201 = ocpp_version == "2.0.1"
        self._codes = _CODES_V201 if self._v201 else _CODES
        self._fallback_code = "FormatViolation" if self._v201 else "FormationViolation"
        self._validators: dict[str, Validator] = {}

    def _name(self, action: str, response: bool) -> str:
        if self._v201:
            return action + ("Response" if response else "Request")
        return action + ("Response" if response else "")

    def warm(self) -> int:
        """Load and compile every schema now; returns how many."""
        for path in sorted(self._dir.glob("*.json")):
            self._load(path.stem)
        return len(self._validators)

    def _load(self, name: str) -> Validator | None:
        validator = self._validators.get(name)
        if validator is None:
            path = self._dir / f"{name}.json"
            if not path.is_file():
                return None
            schema = json.loads(path.read_text(encoding="utf-8-sig"))
            cls = Draft6Validator if self._v201 else Draft4Validator
            validator = cls(schema, format_checker=format_checker)
            self._validators[name] = validator
        return validator

    def has_request_schema(self, action: str) -> bool:
        return self._load(self._name(action, False)) is not None

    def validate(self, action: str, payload: dict[str, Any], *, response: bool = False
                 ) -> Violation | None:
        validator = self._load(self._name(action, response))
        if validator is None:
            return Violation("NotSupported", f"no schema for {action}")
        error = best_match(validator.iter_errors(payload))
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path) or "payload"
        return Violation(
            self._codes.get(str(error.validator), self._fallback_code),
            f"{where}: {error.message}",
        )
