"""Smart meter readings: the wire format, its validation and the normalised payload.

Pure functions, no I/O. A reading is one JSON object per MQTT message::

    {"meter_id": "MTR-0001", "time": "2026-11-22T10:15:00.000+01:00",
     "energy_wh": "18234512", "power_w": 7350.2, "voltage_v": 230.4,
     "current_a": 10.63, "temperature_c": 31.5}

* ``meter_id``: optional when the topic carries it (``meters/<meter_id>/reading``);
  when both are present they must be equal (a meter may not speak for another).
* ``time``: RFC 3339 with a UTC offset (``Z`` or ``+hh:mm``); naive times are rejected.
* ``energy_wh``: the import register in Wh, a non-negative JSON integer or a decimal
  string (``"18234512"``, ``"18234512.25"``). A JSON float is rejected: registers are
  billing data and must never pass through binary floating point.
* ``power_w``, ``current_a`` (finite numbers, negative = export), ``voltage_v``
  (finite, >= 0): required. ``temperature_c``: optional, finite.
* Unknown fields are **rejected** (schema violation): meters are provisioned devices
  with a fixed format, and a silently ignored field (a typo such as
  ``temprature_c``, or a firmware change in units) would lose data without anyone
  noticing. The dead letter keeps the original bytes, so such readings can be
  replayed once the format is agreed.
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec

from store.meters import METER_ID_RE

# Reasons (metric labels and the ``deadletter.reason`` prefix).
INVALID_JSON = "invalid_json"
SCHEMA_VIOLATION = "schema_violation"
METER_MISMATCH = "meter_mismatch"
UNKNOWN_METER = "unknown_meter"
TOO_LARGE = "too_large"
REASONS = (INVALID_JSON, SCHEMA_VIOLATION, METER_MISMATCH, UNKNOWN_METER, TOO_LARGE)

# message_id = uuid5(namespace, "<meter_id>/<measured_at UTC>"): a redelivered or
# retained reading gets the same id, so consumers de-duplicate it.
READING_NAMESPACE = uuid.UUID("4f0e2b2c-6d55-4c4e-9a8e-1d6f3d2a7c10")

_DECIMAL_RE = re.compile(r"^[0-9]{1,20}(\.[0-9]{1,9})?$")
MAX_ENERGY_WH = 10**18  # fits a bigint with room to spare


class ReadingError(ValueError):
    """A reading that goes to the dead-letter topic; ``reason`` is one of REASONS."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class _Wire(msgspec.Struct, forbid_unknown_fields=True):
    time: datetime
    energy_wh: int | str
    power_w: float
    voltage_v: float
    current_a: float
    meter_id: str | None = None
    temperature_c: float | None = None


_decoder = msgspec.json.Decoder(_Wire)


@dataclass(frozen=True, slots=True)
class MeterReading:
    """A validated reading (not yet mapped to a station)."""

    meter_id: str
    measured_at: datetime  # UTC
    energy_wh: Decimal
    power_w: float
    voltage_v: float
    current_a: float
    temperature_c: float | None

    @property
    def message_id(self) -> str:
        stamp = self.measured_at.isoformat(timespec="microseconds")
        return uuid.uuid5(READING_NAMESPACE, f"{self.meter_id}/{stamp}").hex

    def payload(self, *, connector_id: int, is_billing_meter: bool) -> dict[str, Any]:
        """The envelope payload: snake_case, energy as a decimal string (never a float)."""
        return {
            "meter_id": self.meter_id,
            "connector_id": connector_id,
            "energy_wh": format(self.energy_wh, "f"),
            "power_w": self.power_w,
            "voltage_v": self.voltage_v,
            "current_a": self.current_a,
            "temperature_c": self.temperature_c,
            "is_billing_meter": is_billing_meter,
        }


def _energy(value: int | str) -> Decimal:
    if isinstance(value, int):
        if value < 0:
            raise ReadingError(SCHEMA_VIOLATION, "energy_wh must be >= 0")
        energy = Decimal(value)
    else:
        if not _DECIMAL_RE.match(value):
            raise ReadingError(
                SCHEMA_VIOLATION,
                f"energy_wh {value[:40]!r} is not a non-negative decimal string",
            )
        energy = Decimal(value)
    if energy >= MAX_ENERGY_WH:
        raise ReadingError(SCHEMA_VIOLATION, "energy_wh is out of range")
    return energy


def _finite(name: str, value: float, *, minimum: float | None = None) -> float:
    if not math.isfinite(value):
        raise ReadingError(SCHEMA_VIOLATION, f"{name} must be a finite number")
    if minimum is not None and value < minimum:
        raise ReadingError(SCHEMA_VIOLATION, f"{name} must be >= {minimum:g}")
    return value


def parse_reading(raw: bytes, topic_meter_id: str | None = None) -> MeterReading:
    """Validate one MQTT payload; raise :class:`ReadingError` with the reason."""
    try:
        wire = _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise ReadingError(SCHEMA_VIOLATION, str(exc)) from None
    except msgspec.DecodeError as exc:
        raise ReadingError(INVALID_JSON, str(exc)) from None
    meter_id = wire.meter_id if wire.meter_id is not None else topic_meter_id
    if meter_id is None:
        raise ReadingError(SCHEMA_VIOLATION, "meter_id is missing (not in payload or topic)")
    if not METER_ID_RE.match(meter_id):
        raise ReadingError(SCHEMA_VIOLATION, f"meter_id {meter_id[:70]!r} is malformed")
    if topic_meter_id is not None and meter_id != topic_meter_id:
        raise ReadingError(
            METER_MISMATCH, f"payload meter_id {meter_id!r} != topic meter id {topic_meter_id!r}"
        )
    if wire.time.tzinfo is None:
        raise ReadingError(SCHEMA_VIOLATION, "time must carry a UTC offset (RFC 3339)")
    return MeterReading(
        meter_id=meter_id,
        measured_at=wire.time.astimezone(UTC),
        energy_wh=_energy(wire.energy_wh),
        power_w=_finite("power_w", wire.power_w),
        voltage_v=_finite("voltage_v", wire.voltage_v, minimum=0.0),
        current_a=_finite("current_a", wire.current_a),
        temperature_c=(
            None if wire.temperature_c is None else _finite("temperature_c", wire.temperature_c)
        ),
    )


def encode_reading(
    meter_id: str,
    time: datetime,
    energy_wh: int | Decimal,
    *,
    power_w: float,
    voltage_v: float,
    current_a: float,
    temperature_c: float | None = None,
) -> bytes:
    """The wire format a meter publishes (used by the simulator and tests)."""
    if time.tzinfo is None:
        raise ValueError("time must be timezone-aware")
    body: dict[str, Any] = {
        "meter_id": meter_id,
        "time": time.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "energy_wh": energy_wh if isinstance(energy_wh, int) else format(energy_wh, "f"),
        "power_w": round(power_w, 1),
        "voltage_v": round(voltage_v, 1),
        "current_a": round(current_a, 2),
    }
    if temperature_c is not None:
        body["temperature_c"] = round(temperature_c, 1)
    return msgspec.json.encode(body)


# --------------------------------------------------------------------------- topics


def validate_pattern(pattern: str) -> str:
    """An MQTT subscription filter (``+`` one level, ``#`` the rest, last only)."""
    levels = pattern.split("/")
    if (
        not pattern
        or any(("+" in lv and lv != "+") or ("#" in lv and lv != "#") for lv in levels)
        or "#" in levels[:-1]
    ):
        raise ValueError(f"bad MQTT topic filter {pattern!r}")
    return pattern


def meter_id_from_topic(pattern: str, topic: str) -> str | None:
    """The topic level matched by the pattern's first ``+`` is the meter id; a
    pattern without ``+`` (before any ``#``) gives None, and then the payload
    must carry ``meter_id``.

    >>> meter_id_from_topic("meters/+/reading", "meters/MTR-1/reading")
    'MTR-1'
    >>> meter_id_from_topic("meters/#", "meters/MTR-1/reading") is None
    True
    """
    levels = pattern.split("/")
    parts = topic.split("/")
    for index, level in enumerate(levels):
        if level == "#":
            return None
        if index >= len(parts):
            return None
        if level == "+":
            return parts[index] or None
    return None
