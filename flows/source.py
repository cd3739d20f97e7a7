"""The one input of every flow: :func:`kafka_events`, a Bytewax operator that reads a
source of Kafka messages and consumer errors, decodes each input batch in one Python
call, groups the events by charge point and sends what it cannot use (consumer errors,
undecodable messages, invalid events) to the dead-letter sink; and
:func:`kafka_source`, the production source it reads.

Dead letters are the original message (bytes and key unchanged) with the headers of
:func:`bus.deadletter.dead_letter_headers`: stage ``consume`` (a consumer error),
``decode`` (not an envelope) or ``validate`` (the flow's decoder rejected it, or a
decoder bug, which must not stop the flow for everyone).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Protocol, TypeVar, cast

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSinkMessage, KafkaSourceMessage
from bytewax.dataflow import Dataflow, operator
from bytewax.inputs import Source
from bytewax.operators import KeyedStream
from bytewax.outputs import Sink

from bus.admin import wait_for_broker
from bus.deadletter import dead_letter_headers
from bus.envelope import EnvelopeError
from flows.config import FlowConfig
from flows.errors import InvalidEvent
from flows.metrics import MeasuredKafkaSource
from runtime.logs import with_kafka_logger

log = logging.getLogger(__name__)

RawMessage = KafkaSourceMessage[bytes | None, bytes | None]
DeadLetter = KafkaSinkMessage[bytes | None, bytes | None]


class _ByStation(Protocol):
    @property
    def charge_point_id(self) -> str: ...


E = TypeVar("E", bound=_ByStation)
# A flow's decoder: the event in a message's value, None when the flow does not use
# it; raises EnvelopeError (not an envelope) or InvalidEvent (not a valid event).
DecodeEvent = Callable[[bytes | None], E | None]


def dead_letter(msg: RawMessage, reason: str, stage: str) -> DeadLetter:
    """The original message (bytes and key unchanged) with the dead-letter headers."""
    headers = dead_letter_headers(
        reason, stage, topic=msg.topic or "", partition=msg.partition, offset=msg.offset
    )
    return KafkaSinkMessage(key=msg.key, value=msg.value, headers=headers)


def consume_error_dead_letter(err: Any) -> DeadLetter:
    """A consumer error from the Kafka input, as a dead letter."""
    return dead_letter(err.msg, f"kafka consumer error: {err.err.str()}", "consume")


def is_dead_letter(item: object) -> bool:
    return type(item) is KafkaSinkMessage


def _rejected(msg: RawMessage, exc: Exception) -> DeadLetter:
    """The dead letter of a message whose decoder raised ``exc``."""
    if isinstance(exc, EnvelopeError):
        return dead_letter(msg, str(exc), "decode")
    if isinstance(exc, InvalidEvent):
        return dead_letter(msg, str(exc), "validate")
    log.error(
        "unexpected error decoding %s[%s]@%s",
        msg.topic,
        msg.partition,
        msg.offset,
        exc_info=exc,
    )
    return dead_letter(msg, f"unexpected {type(exc).__name__}: {exc}", "validate")


def decode_and_group(
    items: list[Any], decode_event: DecodeEvent[E]
) -> list[tuple[str, list[E]] | DeadLetter]:
    """One input batch (messages and consumer errors) as its dead letters plus, per
    charge point, its events in input order: one Python call per batch and fewer,
    bigger items downstream than one per message."""
    out: list[tuple[str, list[E]] | DeadLetter] = []
    by_cp: dict[str, list[E]] = {}
    for item in items:
        if type(item) is not KafkaSourceMessage:
            out.append(consume_error_dead_letter(item))
            continue
        try:
            event = decode_event(item.value)
        except Exception as exc:  # say why, as a dead letter (logging decoder bugs)
            out.append(_rejected(item, exc))
            continue
        if event is None:
            continue
        events = by_cp.get(event.charge_point_id)
        if events is None:
            by_cp[event.charge_point_id] = [event]
        else:
            events.append(event)
    out.extend(by_cp.items())
    return out


@operator
def kafka_events(
    step_id: str,
    flow: Dataflow,
    source: Source[Any],
    decode_event: DecodeEvent[E],
    dead_letters: Sink[DeadLetter],
) -> KeyedStream[list[E]]:
    """Read ``source`` (Kafka messages and consumer errors, as
    ``KafkaSource(..., raise_on_errors=False)`` gives them), ``decode_event`` every
    message once per input batch, write the dead letters to ``dead_letters`` and
    return ``(charge point, [its events of the batch])``."""
    raw = op.input("kafka_in", flow, source)
    decoded = op.flat_map_batch("decode", raw, partial(decode_and_group, decode_event=decode_event))
    split = op.branch("split_invalid", decoded, is_dead_letter)
    op.output("deadletter", cast("Any", split.trues), dead_letters)
    return cast("KeyedStream[list[E]]", split.falses)


def kafka_source(config: FlowConfig, flow_id: str, topics: Sequence[str]) -> MeasuredKafkaSource:
    """The production source: Bytewax's Kafka source on ``topics`` (offsets in recovery;
    measured, :class:`flows.metrics.MeasuredKafkaSource`), consumer errors left in the
    stream for :func:`kafka_events`. Waits for the broker first."""
    wait_for_broker(",".join(config.brokers))
    return MeasuredKafkaSource(
        flow_id,
        config.brokers,
        list(topics),
        tail=config.tail,
        starting_offset=config.starting_offset,
        add_config=with_kafka_logger(config.kafka_config),
        batch_size=config.batch_size,
        raise_on_errors=False,
    )
