"""The compiled schema predicates (``schemas.compile_check``) against jsonschema itself.

The gateway accepts a payload when the compiled predicate says valid, without asking
jsonschema; so the predicate must never accept what jsonschema rejects. Checked on
every request and response schema of both OCPP versions with instances drawn from
the schemas themselves (mostly valid, with wrong types, missing/extra properties,
bad enum values, bad dates, long strings, booleans for numbers, integral floats,
NaN/infinity, huge integers, nesting). Where the predicate is not conservative by
design (``multipleOf`` with a float step), it must agree exactly.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft4Validator, Draft6Validator

from ingest.gateway.schema_compiler import Unsupported, compile_check, format_checker
from ingest.gateway.schemas import SchemaFiles, SchemaSet

SCHEMAS = sorted(
    (version, name) for version in SchemaFiles.FOLDERS for name in SchemaFiles(version).names()
)

WEIRD = st.sampled_from(
    [
        None,
        True,
        False,
        0,
        1,
        -1,
        1.0,
        1.5,
        -0.0,
        2**64,
        -(2**70),
        1e308,
        math.inf,
        -math.inf,
        math.nan,
        "",
        "x",
        "A" * 600,
        "2026-01-05T10:00:00Z",
        "2026-01-05T10:00:00",
        "2026-02-30T10:00:00Z",
        [],
        {},
        [1],
        {"a": 1},
        "Accepted",
    ]
)


def load(version: str, name: str) -> dict[str, Any]:
    schema = SchemaFiles(version).load(name)
    assert schema is not None
    return schema


@st.composite
def instance(draw: st.DrawFn, schema: Any, root: dict[str, Any], depth: int = 0) -> Any:
    """Mostly what ``schema`` asks for, sometimes not."""
    if depth > 12 or not isinstance(schema, dict) or draw(st.integers(0, 19)) == 0:
        return draw(WEIRD)
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return draw(instance(root["definitions"][name], root, depth + 1))
    if "enum" in schema:
        return draw(st.sampled_from(schema["enum"]) | st.sampled_from(["nope", "accepted"]))
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        out = {}
        for name, sub in props.items():
            if name in required or draw(st.booleans()):
                out[name] = draw(instance(sub, root, depth + 1))
        if required and draw(st.integers(0, 9)) == 0:
            out.pop(draw(st.sampled_from(sorted(required))), None)
        if draw(st.integers(0, 9)) == 0:
            out[draw(st.sampled_from(["extra", "Extra", "vendorId"]))] = draw(WEIRD)
        return out
    if kind == "array":
        item = schema.get("items", {})
        size = draw(st.integers(0, 3))
        return [draw(instance(item, root, depth + 1)) for _ in range(size)]
    if kind == "string":
        if schema.get("format") == "date-time":
            return draw(
                st.sampled_from(
                    [
                        "2026-01-05T10:00:00Z",
                        "2026-01-05T10:00:00.123+01:00",
                        "2026-01-05T10:00:00",
                        "2026-13-05T10:00:00Z",
                        "now",
                        "2026-01-05t10:00:00z",
                    ]
                )
            )
        longest = schema.get("maxLength", 50)
        return draw(st.text(max_size=min(longest + 2, 60)))
    if kind == "integer":
        return draw(st.integers(-5, 2**40) | st.sampled_from([1.0, 3.0, 2.5, True]))
    if kind == "number":
        return draw(st.floats(allow_nan=True) | st.integers() | st.sampled_from([0.1, 0.3, True]))
    if kind == "boolean":
        return draw(st.booleans() | st.sampled_from([0, 1, "true"]))
    return draw(WEIRD)


@pytest.mark.parametrize(("version", "name"), SCHEMAS)
@settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_compiled_check_agrees_with_jsonschema(
    version: str, name: str, data: st.DataObject
) -> None:
    schema = load(version, name)
    draft6 = version == "2.0.1"
    validator = (Draft6Validator if draft6 else Draft4Validator)(
        schema, format_checker=format_checker
    )
    try:
        check = compile_check(schema, draft6=draft6)
    except Unsupported:
        pytest.skip("not compiled: jsonschema decides alone")
    value = data.draw(instance(schema, schema))
    expected = validator.is_valid(value)
    got = check(value)
    if got:
        assert expected, f"compiled check accepted what jsonschema rejects: {value!r}"
    elif expected:
        assert "multipleOf" in json.dumps(schema), (
            f"compiled check rejected a valid payload: {value!r}"
        )


def test_every_ocpp_schema_compiles() -> None:
    for version, name in SCHEMAS:
        compile_check(load(version, name), draft6=version == "2.0.1")


def code(schemas: SchemaSet, action: str, payload: dict[str, Any]) -> str | None:
    violation = schemas.validate(action, payload)
    return None if violation is None else violation.code


def test_validate_reports_the_same_codes_as_before() -> None:
    """A payload the predicate rejects gets jsonschema's best_match code and text."""
    v16 = SchemaSet("1.6")
    assert code(v16, "Heartbeat", {}) is None
    assert code(v16, "StartTransaction", {"connectorId": 1}) == "ProtocolError"
    assert code(v16, "Authorize", {"idTag": 5}) == "TypeConstraintViolation"
    assert (
        code(
            v16,
            "StartTransaction",
            {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": "now"},
        )
        == "TypeConstraintViolation"
    )
    assert code(v16, "Heartbeat", {"x": 1}) == "FormationViolation"
    assert code(v16, "Authorize", {"idTag": "A" * 21}) == "TypeConstraintViolation"
    v201 = SchemaSet("2.0.1")
    assert (
        code(
            v201,
            "BootNotification",
            {
                "chargingStation": {"vendorName": "a", "model": "b"},
                "reason": "Nope",
            },
        )
        == "PropertyConstraintViolation"
    )
    assert code(v201, "Authorize", {}) == "OccurrenceConstraintViolation"
    assert code(v201, "Heartbeat", {}) is None
    # Draft 6: an integral float is an integer; Draft 4 (1.6) says no.
    assert (
        code(
            v201,
            "StatusNotification",
            {
                "timestamp": "2026-01-05T10:00:00Z",
                "connectorStatus": "Available",
                "evseId": 1.0,
                "connectorId": 1,
            },
        )
        is None
    )
    assert (
        code(
            v16,
            "StatusNotification",
            {"connectorId": 1.0, "errorCode": "NoError", "status": "Available"},
        )
        == "TypeConstraintViolation"
    )
