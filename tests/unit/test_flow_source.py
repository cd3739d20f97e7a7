"""flows.source.kafka_events with Bytewax's testing source and sinks (no Kafka): one
decode per input batch, events grouped by charge point in input order, every kind of
rejected message as a dead letter with its stage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaError, KafkaSinkMessage, KafkaSourceMessage
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main
from confluent_kafka import KafkaError as ConfluentKafkaError

from bus.envelope import EnvelopeError
from flows.errors import InvalidEvent
from flows.source import kafka_events


@dataclass(frozen=True)
class Fact:
    charge_point_id: str
    n: int


def decode(data: bytes | None) -> Fact | None:
    """``CP:n`` -> Fact; ``skip`` -> None; ``bad`` invalid; ``bug`` a decoder bug."""
    text = (data or b"").decode()
    if text == "skip":
        return None
    if text == "bad":
        raise InvalidEvent("not a valid fact")
    if text == "bug":
        raise KeyError("oops")
    if ":" not in text:
        raise EnvelopeError("not an envelope")
    cp, n = text.split(":")
    return Fact(cp, int(n))


def msg(value: bytes, offset: int) -> KafkaSourceMessage[bytes | None, bytes | None]:
    return KafkaSourceMessage(key=b"k", value=value, topic="in", partition=0, offset=offset)


def test_events_are_grouped_per_station_and_rejects_become_dead_letters() -> None:
    values = [b"A:1", b"garbage", b"B:1", b"skip", b"A:2", b"bad", b"bug", b"A:3", b"B:2"]
    items: list[Any] = [msg(v, i) for i, v in enumerate(values)]
    items.append(
        KafkaError(ConfluentKafkaError(ConfluentKafkaError._MSG_TIMED_OUT), msg(b"lost", 99))
    )
    grouped: list[tuple[str, list[Fact]]] = []
    dead: list[KafkaSinkMessage[Any, Any]] = []
    flow = Dataflow("source-test")
    events = kafka_events("input", flow, TestingSource(items, 5), decode, TestingSink(dead))
    op.output("out", events, TestingSink(grouped))
    run_main(flow)

    per_cp: dict[str, list[int]] = {}
    for cp, facts in grouped:
        assert all(f.charge_point_id == cp for f in facts)
        per_cp.setdefault(cp, []).extend(f.n for f in facts)
    assert per_cp == {"A": [1, 2, 3], "B": [1, 2]}
    assert len(grouped) == 4  # one item per station and input batch of 5
    stages = {
        int(dict(d.headers)["deadletter.source.offset"]): dict(d.headers)["deadletter.stage"]
        for d in dead
    }
    assert stages == {1: b"decode", 5: b"validate", 6: b"validate", 99: b"consume"}
    bug = next(d for d in dead if dict(d.headers)["deadletter.source.offset"] == b"6")
    assert dict(bug.headers)["deadletter.reason"].startswith(b"unexpected KeyError")
    assert bug.value == b"bug"
