"""What every flow is configured with: :class:`FlowConfig` (``flows.settings`` builds it
from ``CHARGEFLOW_FLOW_*``) and the flows' garbage-collector threshold."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from confluent_kafka import OFFSET_BEGINNING
from pydantic import Field

from bus.topics import Topics
from runtime.settings import OptionalPort

# A flow allocates a few objects per message, nearly all freed by reference counting.
FLOW_GC_YOUNG_THRESHOLD = 10_000


@dataclass(frozen=True)
class FlowConfig:
    """Where a flow reads from and writes to (``flows.settings`` builds it from
    ``CHARGEFLOW_FLOW_*``)."""

    brokers: list[str]
    database_url: str = field(repr=False)  # may hold a password
    topics: Topics = field(default_factory=Topics)
    # Keep reading at the end of the topics (false: stop there, for batch runs).
    tail: bool = True
    # Kafka messages the input hands the flow at once.
    batch_size: Annotated[int, Field(ge=1)] = 1000
    starting_offset: int = OFFSET_BEGINNING
    # Extra librdkafka settings; every client also gets runtime.logs.kafka_logger().
    kafka_config: dict[str, Any] = field(default_factory=dict)
    # Longest wait between tries of a sink write while the database is down.
    db_max_backoff_s: Annotated[float, Field(gt=0)] = 10.0
    # Write to PostgreSQL on a background thread while the flow computes the next
    # batch; false writes inside the step.
    overlap_writes: bool = True
    # Database writers (connections) of the rows sink; rows go to them by key.
    # With several workers, set it to their number.
    sink_partitions: Annotated[int, Field(ge=1)] = 1
    # Health/metrics endpoint (flows.metrics.serve): unset or "off" = none, 0 = a free
    # port, N = port N + the Bytewax process id.
    metrics_port: OptionalPort = None
    # Add the Bytewax process id to metrics_port (processes sharing one host); false:
    # every process on metrics_port (one process per container or pod).
    metrics_port_per_process: bool = True
    # Address the health/metrics endpoint listens on.
    metrics_host: str = "127.0.0.1"
