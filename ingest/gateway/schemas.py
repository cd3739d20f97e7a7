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

Speed: every schema is also compiled (``compile_check``) into a plain predicate
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
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import ocpp
from jsonschema import Draft4Validator, Draft6Validator, FormatChecker
from jsonschema.exceptions import best_match

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")

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
Check = Callable[[Any], bool]


class Unsupported(Exception):
    """A schema construct ``compile_check`` does not handle."""


_IGNORED = frozenset(
    {
        "$schema",
        "$id",
        "id",
        "title",
        "description",
        "comment",
        "$comment",
        "javaType",
        "default",
        "definitions",
        "examples",
    }
)


def _always(_: Any) -> bool:
    return True


def _never(_: Any) -> bool:
    return False


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _is_int_draft4(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_int_draft6(x: Any) -> bool:
    return (isinstance(x, int) and not isinstance(x, bool)) or (
        isinstance(x, float) and x.is_integer()
    )


def _all(checks: list[Check]) -> Check:
    if not checks:
        return _always
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda x: first(x) and second(x)
    frozen = tuple(checks)

    def check(x: Any) -> bool:
        for c in frozen:  # noqa: SIM110 - a plain loop is faster than all(<genexpr>)
            if not c(x):
                return False
        return True

    return check


# Complexity over the limit on purpose: one branch per JSON-schema keyword.
def compile_check(schema: dict[str, Any], *, draft6: bool) -> Check:  # noqa: C901
    """A predicate: True only if jsonschema (Draft 4, or 6 with ``draft6``, with this
    module's format checker) finds no error in the instance. Raises ``Unsupported``
    for schemas using keywords it does not implement."""
    definitions = schema.get("definitions", {})
    compiled_refs: dict[str, Check] = {}
    is_integer = _is_int_draft6 if draft6 else _is_int_draft4
    types: dict[str, Check] = {
        "object": lambda x: isinstance(x, dict),
        "array": lambda x: isinstance(x, list),
        "string": lambda x: isinstance(x, str),
        "integer": is_integer,
        "number": _is_number,
        "boolean": lambda x: isinstance(x, bool),
        "null": lambda x: x is None,
    }

    def ref(target: str) -> Check:
        if not target.startswith("#/definitions/"):
            raise Unsupported(f"$ref {target}")
        name = target[len("#/definitions/") :]
        if name not in definitions:
            raise Unsupported(f"$ref {target}")
        if name not in compiled_refs:
            compiled_refs[name] = lambda x: compiled_refs[name](x)  # cycles: late bound
            compiled_refs[name] = node(definitions[name])
        return compiled_refs[name]

    def node(sub: Any) -> Check:
        if sub is True:
            return _always
        if sub is False:
            return _never
        if not isinstance(sub, dict):
            raise Unsupported(f"schema {sub!r}")
        if "$ref" in sub:  # Draft 4/6: siblings of $ref are ignored
            return ref(sub["$ref"])
        unknown = (
            set(sub)
            - _IGNORED
            - {
                "type",
                "properties",
                "required",
                "additionalProperties",
                "items",
                "additionalItems",
                "minItems",
                "maxItems",
                "maxLength",
                "minLength",
                "enum",
                "format",
                "minimum",
                "maximum",
                "exclusiveMinimum",
                "exclusiveMaximum",
                "multipleOf",
            }
        )
        if unknown:
            raise Unsupported(f"keywords {sorted(unknown)}")
        checks: list[Check] = []
        type_name = sub.get("type")
        if type_name is not None:
            if not isinstance(type_name, str) or type_name not in types:
                raise Unsupported(f"type {type_name!r}")
            checks.append(types[type_name])
        if "enum" in sub:
            values = sub["enum"]
            if not all(isinstance(v, str) for v in values):
                raise Unsupported("enum with non-string values")
            allowed = frozenset(values)
            checks.append(lambda x: isinstance(x, str) and x in allowed)
        checks += (
            _object_checks(sub) + _array_checks(sub) + _string_checks(sub) + _number_checks(sub)
        )
        return _all(checks)

    def _object_checks(sub: dict[str, Any]) -> list[Check]:
        props = {name: node(p) for name, p in sub.get("properties", {}).items()}
        required = tuple(sub.get("required", ()))
        extra = sub.get("additionalProperties", True)
        if extra not in (True, False):
            raise Unsupported("additionalProperties schema")
        if not props and not required and extra is True:
            return []
        allowed = frozenset(props)
        items = tuple(props.items())
        closed = extra is False

        def check(x: Any) -> bool:
            if not isinstance(x, dict):
                return True
            for name in required:
                if name not in x:
                    return False
            if closed:
                for key in x:
                    if key not in allowed:
                        return False
            for name, prop in items:  # noqa: SIM110 - faster than all(<genexpr>)
                if name in x and not prop(x[name]):
                    return False
            return True

        return [check]

    def _array_checks(sub: dict[str, Any]) -> list[Check]:
        checks: list[Check] = []
        if "items" in sub:
            if not isinstance(sub["items"], dict | bool):
                raise Unsupported("items as a list")  # additionalItems would apply
            item = node(sub["items"])

            def each(x: Any) -> bool:
                if isinstance(x, list):
                    for i in x:
                        if not item(i):
                            return False
                return True

            checks.append(each)
        if "minItems" in sub:
            least = sub["minItems"]
            checks.append(lambda x: not isinstance(x, list) or len(x) >= least)
        if "maxItems" in sub:
            most = sub["maxItems"]
            checks.append(lambda x: not isinstance(x, list) or len(x) <= most)
        return checks

    def _string_checks(sub: dict[str, Any]) -> list[Check]:
        checks: list[Check] = []
        if "maxLength" in sub:
            longest = sub["maxLength"]
            checks.append(lambda x: not isinstance(x, str) or len(x) <= longest)
        if "minLength" in sub:
            shortest = sub["minLength"]
            checks.append(lambda x: not isinstance(x, str) or len(x) >= shortest)
        if sub.get("format") == "date-time":  # the only format this module checks
            checks.append(is_rfc3339)
        return checks

    def _number_checks(sub: dict[str, Any]) -> list[Check]:
        checks: list[Check] = []
        if "exclusiveMinimum" in sub or "exclusiveMaximum" in sub:
            raise Unsupported("exclusive bounds")  # differ between Draft 4 and 6
        if "minimum" in sub:
            low = sub["minimum"]
            checks.append(lambda x: not _is_number(x) or not x < low)
        if "maximum" in sub:
            high = sub["maximum"]
            checks.append(lambda x: not _is_number(x) or not x > high)
        if "multipleOf" in sub:
            step = sub["multipleOf"]
            if isinstance(step, int) and not isinstance(step, bool):
                checks.append(lambda x: not _is_number(x) or (isinstance(x, int) and not x % step))
            else:  # float steps: jsonschema's float/Fraction rules decide
                checks.append(lambda x: not _is_number(x))
        return checks

    return node(schema)


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
        self._checks: dict[str, Check | None] = {}  # None: the schema is not compilable

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
        where = "/".join(str(p) for p in error.absolute_path) or "payload"
        return Violation(
            self._codes.get(str(error.validator), self._fallback_code),
            f"{where}: {error.message}",
        )
