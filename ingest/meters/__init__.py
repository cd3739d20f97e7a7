"""Smart meters over MQTT: validate readings, map meters to station connectors via the
registry, publish envelopes to ``meter.readings`` (bad input to ``deadletter``)."""

from ingest.meters.bridge import MeterBridge
from ingest.meters.config import DEFAULT_TOPIC_PATTERN, BridgeConfig, MqttEndpoint
from ingest.meters.directory import MeterDirectory
from ingest.meters.metrics import BridgeMetrics
from ingest.meters.reading import MeterReading, ReadingError, encode_reading, parse_reading

__all__ = [
    "DEFAULT_TOPIC_PATTERN",
    "BridgeConfig",
    "BridgeMetrics",
    "MeterBridge",
    "MeterDirectory",
    "MeterReading",
    "MqttEndpoint",
    "ReadingError",
    "encode_reading",
    "parse_reading",
]
