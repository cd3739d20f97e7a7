"""The flows' Kafka sinks: a derived topic (:func:`kafka_sink`) and the dead-letter
topic, counted by stage (:func:`dead_letter_sink`)."""

from __future__ import annotations

from bytewax.connectors.kafka import KafkaSink

from flows.config import FlowConfig
from flows.metrics import CountingDeadLetterSink
from runtime.logs import with_kafka_logger


def kafka_sink(config: FlowConfig, topic: str) -> KafkaSink:
    """Bytewax's Kafka sink on ``topic``: every message confirmed by all replicas."""
    return KafkaSink(
        config.brokers, topic, with_kafka_logger({"acks": "all", **config.kafka_config})
    )


def dead_letter_sink(config: FlowConfig, flow_id: str) -> CountingDeadLetterSink:
    """The dead-letter topic (``config.topics.deadletter``), counted per stage in
    ``chargeflow_flow_dead_letters_total``."""
    return CountingDeadLetterSink(kafka_sink(config, config.topics.deadletter), flow_id)
