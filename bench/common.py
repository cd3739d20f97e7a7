"""Shared by the benchmarks and the flow robustness tests: a realistic, deterministic
OCPP 1.6J event stream (as the gateway publishes it) and a fast bulk producer.

The stream: ``stations`` charge points, each running back-to-back sessions
(StartTransaction, ``meter_values_per_session`` MeterValues, StopTransaction),
interleaved in time order across stations the way a fleet reports. Every
MeterValues carries ``values_per_event`` sampled values (energy register first,
then power, current, voltage, SoC ... as a typical station configures
``MeterValuesSampledData``). Message ids and values come from a seeded RNG, so the
same spec always produces the same bytes.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import KafkaError, Message
from confluent_kafka import Producer as RdProducer

from bus.envelope import Envelope, Kind, encode_envelope

T0 = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
SAMPLE_INTERVAL = timedelta(seconds=60)

# (measurand, unit, phase) in the order stations usually list them.
MEASURANDS: tuple[tuple[str, str, str], ...] = (
    ("Energy.Active.Import.Register", "Wh", ""),
    ("Power.Active.Import", "W", ""),
    ("Current.Import", "A", "L1"),
    ("Current.Import", "A", "L2"),
    ("Current.Import", "A", "L3"),
    ("Voltage", "V", "L1-N"),
    ("Voltage", "V", "L2-N"),
    ("Voltage", "V", "L3-N"),
    ("SoC", "Percent", ""),
    ("Temperature", "Celsius", ""),
)

KeyValue = tuple[bytes, bytes]  # (key, value)


@dataclass(frozen=True)
class StreamSpec:
    stations: int = 200
    meter_events: int = 200_000  # MeterValues envelopes in total (across all stations)
    meter_values_per_session: int = 50
    values_per_event: int = 3
    seed: int = 7

    def __post_init__(self) -> None:
        if not 1 <= self.values_per_event <= len(MEASURANDS):
            raise ValueError(f"values_per_event must be 1..{len(MEASURANDS)}")
        if self.stations < 1 or self.meter_values_per_session < 1 or self.meter_events < 0:
            raise ValueError("stations and meter_values_per_session must be >= 1")


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


@dataclass
class _Station:
    cp: str
    connector: int
    register_wh: int
    tx_counter: int
    power_w: int
    clock: datetime
    tx: int | None = None
    left: int = 0  # MeterValues still to send in the running session


def _envelope(rng: random.Random, cp: str, action: str, payload: dict[str, Any],
              at: datetime, response: dict[str, Any] | None = None) -> Envelope:
    return Envelope(
        message_id=uuid.UUID(int=rng.getrandbits(128), version=4).hex,
        charge_point_id=cp, received_at=at + timedelta(milliseconds=40), measured_at=at,
        kind=Kind.OCPP_CALL, ocpp_version="1.6", action=action,
        unique_id=f"{rng.getrandbits(32):08x}", payload=payload, response=response,
    )


def _sampled_values(st: _Station, n: int) -> list[dict[str, str]]:
    values: list[dict[str, str]] = []
    amps = round(st.power_w / (3 * 230), 1)
    for measurand, unit, phase in MEASURANDS[:n]:
        if measurand.startswith("Energy"):
            value = str(st.register_wh)
        elif measurand.startswith("Power"):
            value = str(st.power_w)
        elif measurand.startswith("Current"):
            value = str(amps)
        elif measurand == "Voltage":
            value = "230.4"
        elif measurand == "SoC":
            value = str(20 + (st.register_wh // 1000) % 80)
        else:
            value = "31.5"
        sv = {"value": value, "context": "Sample.Periodic", "measurand": measurand,
              "location": "Outlet", "unit": unit}
        if phase:
            sv["phase"] = phase
        values.append(sv)
    return values


def generate(spec: StreamSpec) -> Iterator[Envelope]:
    """Envelopes in publish order: round-robin across stations, each on its own clock."""
    rng = random.Random(spec.seed)
    stations = [
        _Station(cp=f"CP-{i:05d}", connector=1 + i % 2, register_wh=rng.randrange(10**6),
                 tx_counter=(i + 1) * 1_000_000, power_w=rng.choice((7_400, 11_000, 22_000)),
                 clock=T0 + timedelta(seconds=rng.randrange(60)))
        for i in range(spec.stations)
    ]
    emitted = 0
    while emitted < spec.meter_events:
        for st in stations:
            if emitted >= spec.meter_events:
                break
            if st.tx is None:
                st.tx_counter += 1
                st.tx = st.tx_counter
                st.left = spec.meter_values_per_session
                yield _envelope(rng, st.cp, "StartTransaction", {
                    "connectorId": st.connector, "idTag": f"TAG{st.tx % 97:04d}",
                    "meterStart": st.register_wh, "timestamp": _iso(st.clock),
                }, st.clock, {"transactionId": st.tx, "idTagInfo": {"status": "Accepted"}})
            st.clock += SAMPLE_INTERVAL
            st.register_wh += st.power_w // 60 + rng.randrange(5)
            yield _envelope(rng, st.cp, "MeterValues", {
                "connectorId": st.connector, "transactionId": st.tx,
                "meterValue": [{"timestamp": _iso(st.clock),
                                "sampledValue": _sampled_values(st, spec.values_per_event)}],
            }, st.clock)
            emitted += 1
            st.left -= 1
            if st.left == 0:
                st.clock += timedelta(seconds=5)
                yield _envelope(rng, st.cp, "StopTransaction", {
                    "transactionId": st.tx, "meterStop": st.register_wh,
                    "timestamp": _iso(st.clock), "reason": "EVDisconnected",
                }, st.clock, {})
                st.tx = None
                st.clock += timedelta(minutes=3)


def messages(spec: StreamSpec) -> list[KeyValue]:
    """The stream as Kafka (key, value) pairs (key = charge point id)."""
    return [(e.charge_point_id.encode(), encode_envelope(e)) for e in generate(spec)]


def produce_all(bootstrap: str, topic: str, msgs: Sequence[KeyValue],
                timeout: float = 120.0) -> None:
    """Produce every message and wait until the broker confirmed all of them."""
    failures: list[str] = []
    confirmed = 0

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        nonlocal confirmed
        if err is not None:
            failures.append(str(err))
        else:
            confirmed += 1

    producer = RdProducer({
        "bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 20,
        "batch.num.messages": 10_000, "queue.buffering.max.messages": 1_000_000,
        "enable.idempotence": False, "compression.type": "none",
    })
    deadline = time.monotonic() + timeout
    for key, value in msgs:
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    while confirmed + len(failures) < len(msgs):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(msgs) - confirmed} messages unconfirmed after {timeout}s")
        producer.poll(0.1)
    if failures:
        raise RuntimeError(f"{len(failures)} messages failed, first: {failures[0]}")


def session_count(msgs: Sequence[KeyValue]) -> int:
    return sum(1 for _, v in msgs if b'"StartTransaction"' in v)
