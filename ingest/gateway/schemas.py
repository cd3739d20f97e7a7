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

Speed: every schema is also compiled (``schema_compiler``) into a plain predicate
that answers only "valid or not" for the keyword subset the OCPP schemas use,
with jsonschema's exact semantics (Draft 4/6 types, booleans are not numbers,
``$ref`` ignores its siblings, keywords apply only to their instance type). Valid
payloads (nearly all) pass through that predicate alone; only a payload it
rejects goes through jsonschema (``best_match``) for the error code and text,
and jsonschema has the last word (a payload it finds no error in is valid), so
codes and descriptions are exactly jsonschema's. Anything the compiler does not
know (a keyword, ``multipleOf`` on a non-integer) makes the predicate say
"not sure" (False), which also ends in jsonschema.

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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import ocpp
from jsonschema import Draft4Validator, Draft6Validator
from jsonschema.exceptions import best_match

from ingest.gateway.schema_compiler import Check, Unsupported, compile_check, format_checker


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


class SchemaFiles:
    """The one place OCPP JSON schemas are read from (the ``ocpp`` library's folder of
    a version): file names per action, loading, and the version's validator class."""

    FOLDERS: ClassVar[dict[str, str]] = {"1.6": "v16", "2.0.1": "v201"}

    def __init__(self, ocpp_version: str) -> None:
        if ocpp_version not in self.FOLDERS:
            raise ValueError(f"no schemas wired for OCPP {ocpp_version}")
        self.ocpp_version = ocpp_version
        self.draft6 = ocpp_version == "2.0.1"
        self.directory = Path(ocpp.__file__).parent / self.FOLDERS[ocpp_version] / "schemas"
        self.validator_class: type[Validator] = Draft6Validator if self.draft6 else Draft4Validator

    def name(self, action: str, *, response: bool) -> str:
        """``Reset`` -> ``Reset``/``ResetResponse`` (1.6), ``ResetRequest``/... (2.0.1)."""
        if self.draft6:
            return action + ("Response" if response else "Request")
        return action + ("Response" if response else "")

    def names(self) -> list[str]:
        return sorted(path.stem for path in self.directory.glob("*.json"))

    def load(self, name: str, parse_float: Callable[[str], Any] = float) -> dict[str, Any] | None:
        """The schema ``name`` (None when the version has none); ``parse_float=Decimal``
        for exact ``multipleOf`` checks of payloads decoded as ``Decimal``."""
        path = self.directory / f"{name}.json"
        if not path.is_file():
            return None
        schema: dict[str, Any] = json.loads(
            path.read_text(encoding="utf-8-sig"), parse_float=parse_float
        )
        return schema

    def validator(self, schema: dict[str, Any]) -> Validator:
        return self.validator_class(schema, format_checker=format_checker)


def describe(error: Any) -> str:
    """A jsonschema error as ``path: message`` (``payload`` for the root)."""
    where = "/".join(str(p) for p in error.absolute_path) or "payload"
    return f"{where}: {error.message}"


class SchemaSet:
    """Validators for one OCPP version's requests (CALL) and responses (CALLRESULT)."""

    def __init__(self, ocpp_version: str) -> None:
        self.files = SchemaFiles(ocpp_version)
        self.ocpp_version = ocpp_version
        self._v201 = self.files.draft6
        self._codes = _CODES_V201 if self._v201 else _CODES
        self._fallback_code = "FormatViolation" if self._v201 else "FormationViolation"
        self._validators: dict[str, Validator] = {}
        self._checks: dict[str, Check | None] = {}  # None: the schema is not compilable

    def _name(self, action: str, response: bool) -> str:
        return self.files.name(action, response=response)

    def warm(self) -> int:
        """Load and compile every schema now; returns how many."""
        for name in self.files.names():
            self._load(name)
        return len(self._validators)

    def _load(self, name: str) -> Validator | None:
        validator = self._validators.get(name)
        if validator is None:
            schema = self.files.load(name)
            if schema is None:
                return None
            validator = self.files.validator(schema)
            try:
                self._checks[name] = compile_check(schema, draft6=self._v201)
            except Unsupported:
                self._checks[name] = None
            self._validators[name] = validator
        return validator

    def has_request_schema(self, action: str) -> bool:
        return self._load(self._name(action, False)) is not None

    def validate(
        self, action: str, payload: dict[str, Any], *, response: bool = False
    ) -> Violation | None:
        validator = self._load(self._name(action, response))
        if validator is None:
            return Violation("NotSupported", f"no schema for {action}")
        check = self._checks.get(self._name(action, response))
        if check is not None and check(payload):
            return None
        error = best_match(validator.iter_errors(payload))
        if error is None:
            return None
        return Violation(
            self._codes.get(str(error.validator), self._fallback_code), describe(error)
        )
