"""One MQTT message turned into what the bridge publishes for it: the reading's
envelope keyed by the meter's charge point, or a dead letter with the original bytes
and the reason (pure but for the registry look-up it is given)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiomqtt
import structlog

from bus.deadletter import dead_letter_headers
from bus.envelope import Envelope, Kind, encode_envelope
from bus.times import utc_now
from ingest.meters.config import BridgeConfig
from ingest.meters.reading import (
    TOO_LARGE,
    UNKNOWN_METER,
    ReadingError,
    meter_id_from_topic,
    parse_reading,
)
from store.meters import MeterRecord

log = structlog.get_logger("chargeflow.meters")

DEADLETTER_STAGE_VALIDATE = "validate"
DEADLETTER_STAGE_REGISTRY = "registry"


@dataclass(slots=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    reason: str | None = None  # None: accepted; else the rejection reason


async def prepare(
    message: aiomqtt.Message,
    cfg: BridgeConfig,
    lookup: Callable[[str], Awaitable[MeterRecord | None]],
) -> Outgoing:
    """What goes out for one MQTT message: its envelope on ``meter.readings``, or the
    original bytes with the reason on ``deadletter``."""
    topic = message.topic.value
    payload = message.payload
    raw = bytes(payload) if isinstance(payload, bytes | bytearray) else str(payload).encode()
    topic_meter_id = meter_id_from_topic(cfg.topic_pattern, topic)
    key = topic_meter_id.encode() if topic_meter_id else None
    if len(raw) > cfg.max_payload_bytes:
        error = ReadingError(TOO_LARGE, f"{len(raw)} bytes > {cfg.max_payload_bytes}")
        return dead_letter(
            cfg.topics.deadletter,
            topic,
            raw[: cfg.max_payload_bytes],
            key,
            error,
            truncated_from=len(raw),
        )
    try:
        reading = parse_reading(raw, topic_meter_id)
    except ReadingError as invalid:
        return dead_letter(cfg.topics.deadletter, topic, raw, key, invalid)
    record = await lookup(reading.meter_id)
    if record is None:
        unknown = ReadingError(UNKNOWN_METER, f"meter {reading.meter_id!r} is not registered")
        return dead_letter(
            cfg.topics.deadletter,
            topic,
            raw,
            reading.meter_id.encode(),
            unknown,
            stage=DEADLETTER_STAGE_REGISTRY,
        )
    envelope = Envelope(
        message_id=reading.message_id,
        charge_point_id=record.charge_point_id,
        received_at=utc_now(),
        measured_at=reading.measured_at,
        kind=Kind.METER_READING,
        payload=reading.payload(
            connector_id=record.connector_id, is_billing_meter=record.is_billing_meter
        ),
    )
    return Outgoing(
        cfg.topics.meter_readings, record.charge_point_id.encode(), encode_envelope(envelope)
    )


def dead_letter(
    deadletter_topic: str,
    topic: str,
    raw: bytes,
    key: bytes | None,
    error: ReadingError,
    *,
    stage: str = DEADLETTER_STAGE_VALIDATE,
    truncated_from: int | None = None,
) -> Outgoing:
    headers = dead_letter_headers(
        str(error), stage, topic=topic, source="mqtt", truncated_from=truncated_from
    )
    log.info("reading dead-lettered", mqtt_topic=topic[:200], reason=str(error)[:300])
    return Outgoing(deadletter_topic, key, raw, headers, error.reason)
