"""Compiled schema predicates: ``compile_check`` turns an OCPP JSON schema into a
plain "valid or not" function with jsonschema's exact semantics for the keyword subset
the OCPP schemas use (see ``schemas`` for how validation uses it), and the
``date-time`` format both the predicates and jsonschema (``format_checker``) check."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from jsonschema import FormatChecker

from bus.times import parse_rfc3339

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")

format_checker = FormatChecker(formats=())


@format_checker.checks("date-time")
def is_rfc3339(value: object) -> bool:
    if not isinstance(value, str):
        return True  # the "type" keyword reports this
    if not _RFC3339.match(value):
        return False
    try:
        parse_rfc3339(value)
    except ValueError:
        return False
    return True


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


_KEYWORDS = frozenset(
    {
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


def compile_check(schema: dict[str, Any], *, draft6: bool) -> Check:
    """A predicate: True only if jsonschema (Draft 4, or 6 with ``draft6``, with this
    module's format checker) finds no error in the instance. Raises ``Unsupported``
    for schemas using keywords it does not implement."""
    return _Compiler(schema, draft6=draft6).node(schema)


class _Compiler:
    """One schema's compilation: one method per group of JSON-schema keywords; the
    predicates it returns are plain closures (no method calls when checking)."""

    def __init__(self, schema: dict[str, Any], *, draft6: bool) -> None:
        self.definitions: dict[str, Any] = schema.get("definitions", {})
        self.compiled_refs: dict[str, Check] = {}
        is_integer = _is_int_draft6 if draft6 else _is_int_draft4
        self.types: dict[str, Check] = {
            "object": lambda x: isinstance(x, dict),
            "array": lambda x: isinstance(x, list),
            "string": lambda x: isinstance(x, str),
            "integer": is_integer,
            "number": _is_number,
            "boolean": lambda x: isinstance(x, bool),
            "null": lambda x: x is None,
        }

    def ref(self, target: str) -> Check:
        if not target.startswith("#/definitions/"):
            raise Unsupported(f"$ref {target}")
        name = target[len("#/definitions/") :]
        if name not in self.definitions:
            raise Unsupported(f"$ref {target}")
        refs = self.compiled_refs
        if name not in refs:
            refs[name] = lambda x: refs[name](x)  # cycles: late bound
            refs[name] = self.node(self.definitions[name])
        return refs[name]

    def node(self, sub: Any) -> Check:
        if sub is True:
            return _always
        if sub is False:
            return _never
        if not isinstance(sub, dict):
            raise Unsupported(f"schema {sub!r}")
        if "$ref" in sub:  # Draft 4/6: siblings of $ref are ignored
            return self.ref(sub["$ref"])
        unknown = set(sub) - _IGNORED - _KEYWORDS
        if unknown:
            raise Unsupported(f"keywords {sorted(unknown)}")
        return _all(
            self.type_and_enum_checks(sub)
            + self.object_checks(sub)
            + self.array_checks(sub)
            + self.string_checks(sub)
            + self.number_checks(sub)
        )

    def type_and_enum_checks(self, sub: dict[str, Any]) -> list[Check]:
        checks: list[Check] = []
        type_name = sub.get("type")
        if type_name is not None:
            if not isinstance(type_name, str) or type_name not in self.types:
                raise Unsupported(f"type {type_name!r}")
            checks.append(self.types[type_name])
        if "enum" in sub:
            values = sub["enum"]
            if not all(isinstance(v, str) for v in values):
                raise Unsupported("enum with non-string values")
            allowed = frozenset(values)
            checks.append(lambda x: isinstance(x, str) and x in allowed)
        return checks

    def object_checks(self, sub: dict[str, Any]) -> list[Check]:
        props = {name: self.node(p) for name, p in sub.get("properties", {}).items()}
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

    def array_checks(self, sub: dict[str, Any]) -> list[Check]:
        checks: list[Check] = []
        if "items" in sub:
            if not isinstance(sub["items"], dict | bool):
                raise Unsupported("items as a list")  # additionalItems would apply
            item = self.node(sub["items"])

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

    @staticmethod
    def string_checks(sub: dict[str, Any]) -> list[Check]:
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

    @staticmethod
    def number_checks(sub: dict[str, Any]) -> list[Check]:
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
