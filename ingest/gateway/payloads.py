"""Payload conversion between the wire (camelCase JSON) and the ocpp library's
handlers (snake_case keywords, dataclass results), with the library's exact rules but
cached key conversion and no deep copies (the per-CALL hot path)."""

from __future__ import annotations

import dataclasses
import enum
import json
from typing import Any

from ocpp.charge_point import (
    camel_to_snake_case,
    remove_nones,
    serialize_as_dict,
    snake_to_camel_case,
)

# Payload keys seen so far -> their converted form (the ocpp library's rules, which
# run two regexes per key). Bounded: keys come from stations (schema-checked, but
# 2.0.1 DataTransfer ``data`` may hold anything); past the bound keys are converted
# without caching.
_KEY_CACHE_MAX = 4096
_snake_keys: dict[str, str] = {}
_camel_keys: dict[str, str] = {}


def snake_key(key: str) -> str:
    converted = _snake_keys.get(key)
    if converted is None:
        converted = next(iter(camel_to_snake_case({key: None})))
        if len(_snake_keys) < _KEY_CACHE_MAX:
            _snake_keys[key] = converted
    return converted


def camel_key(key: str) -> str:
    converted = _camel_keys.get(key)
    if converted is None:
        converted = next(iter(snake_to_camel_case({key: None})))
        if len(_camel_keys) < _KEY_CACHE_MAX:
            _camel_keys[key] = converted
    return converted


def to_snake_case(data: Any) -> Any:
    """``ocpp.charge_point.camel_to_snake_case`` with cached key conversion."""
    if isinstance(data, dict):
        return {snake_key(k): to_snake_case(v) for k, v in data.items()}
    if isinstance(data, list):
        return [to_snake_case(v) for v in data]
    return data


class _NotPlain(TypeError):
    """A value ``response_payload`` leaves to the library's slower path."""


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, str):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if item is not None:
                out[camel_key(f.name)] = _plain(item)
        return out
    if isinstance(value, dict):
        return {camel_key(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value if v is not None]
    raise _NotPlain(type(value).__name__)


def response_payload(result: Any) -> dict[str, Any]:
    """The exact JSON object a handler's result is sent as: the ocpp library's
    ``snake_to_camel_case(remove_nones(serialize_as_dict(result)))`` after a JSON
    round trip, built directly (cached key conversion, no deep copies)."""
    try:
        payload = _plain(result)
    except _NotPlain:
        payload = None
    if not isinstance(payload, dict):
        payload = json.loads(
            json.dumps(snake_to_camel_case(remove_nones(serialize_as_dict(result))))
        )
    return payload
