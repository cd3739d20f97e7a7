"""Shared by the benchmarks and the flow robustness tests: a realistic, deterministic
OCPP 1.6J event stream (as the gateway publishes it) and a fast bulk producer.

The stream: ``stations`` charge points, each running back-to-back sessions
(StartTransaction, ``meter_values_per_session`` MeterValues, StopTransaction),
interleaved in time order across stations the way a fleet reports. Every
MeterValues carries ``values_per_event`` sampled values (energy register first,
then power, current, voltage, SoC ... as a typical station configures
``MeterValuesSampledData``). Message ids and values come from a seeded RNG, so the
same spec always produces the same bytes. Like the gateway, every envelope carries
its normalised facts (``Envelope.normalized``, :func:`bus.normalized.normalize_v16`);
``StreamSpec(normalized=False)`` leaves them out (envelopes of older gateways: the flow
then validates and normalises the raw payload itself).

``StreamSpec(status_notifications=True)`` adds the StatusNotifications a station sends
around each session: ``Charging`` 1 s after StartTransaction, ``Finishing`` 1 s after
StopTransaction and ``Available`` 2 minutes later (the car unplugged; the next session
starts a minute after that). Their ids come from a second RNG, so every other message
is byte for byte the one the stream without them has (same registers, same ids).
"""

from __future__ import annotations

import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import KafkaError, Message
from confluent_kafka import Producer as RdProducer

from bus.admin import ensure_topics
from bus.envelope import Envelope, Kind, decode_envelope, encode_envelope
from bus.normalized import normalize_v16
from bus.topics import Topics
from chargeflow.stack import DatabaseServer, EmbeddedBroker, database_server, stop_process
from store.db import migrate

ROOT = Path(__file__).resolve().parent.parent
SESSIONS_FLOW = "flows.sessions.dataflow:from_env()"

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
    normalized: bool = True  # attach Envelope.normalized as the gateway does
    status_notifications: bool = False  # Charging/Finishing/Available around sessions

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


def _envelope(
    rng: random.Random,
    cp: str,
    action: str,
    payload: dict[str, Any],
    at: datetime,
    response: dict[str, Any] | None = None,
    *,
    normalized: bool = True,
) -> Envelope:
    received_at = at + timedelta(milliseconds=40)
    return Envelope(
        message_id=uuid.UUID(int=rng.getrandbits(128), version=4).hex,
        charge_point_id=cp,
        received_at=received_at,
        measured_at=at,
        kind=Kind.OCPP_CALL,
        ocpp_version="1.6",
        action=action,
        unique_id=f"{rng.getrandbits(32):08x}",
        payload=payload,
        response=response,
        normalized=normalize_v16(cp, action, payload, response, received_at)
        if normalized
        else None,
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
        sv = {
            "value": value,
            "context": "Sample.Periodic",
            "measurand": measurand,
            "location": "Outlet",
            "unit": unit,
        }
        if phase:
            sv["phase"] = phase
        values.append(sv)
    return values


def _status(
    rng: random.Random, st: _Station, status: str, at: datetime, *, normalized: bool
) -> Envelope:
    return _envelope(
        rng,
        st.cp,
        "StatusNotification",
        {
            "connectorId": st.connector,
            "errorCode": "NoError",
            "status": status,
            "timestamp": _iso(at),
        },
        at,
        {},
        normalized=normalized,
    )


def generate(spec: StreamSpec) -> Iterator[Envelope]:
    """Envelopes in publish order: round-robin across stations, each on its own clock."""
    rng = random.Random(spec.seed)
    status_rng = random.Random(f"status-{spec.seed}")  # leaves ``rng``'s sequence alone
    stations = [
        _Station(
            cp=f"CP-{i:05d}",
            connector=1 + i % 2,
            register_wh=rng.randrange(10**6),
            tx_counter=(i + 1) * 1_000_000,
            power_w=rng.choice((7_400, 11_000, 22_000)),
            clock=T0 + timedelta(seconds=rng.randrange(60)),
        )
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
                yield _envelope(
                    rng,
                    st.cp,
                    "StartTransaction",
                    {
                        "connectorId": st.connector,
                        "idTag": f"TAG{st.tx % 97:04d}",
                        "meterStart": st.register_wh,
                        "timestamp": _iso(st.clock),
                    },
                    st.clock,
                    {"transactionId": st.tx, "idTagInfo": {"status": "Accepted"}},
                    normalized=spec.normalized,
                )
                if spec.status_notifications:
                    yield _status(
                        status_rng,
                        st,
                        "Charging",
                        st.clock + timedelta(seconds=1),
                        normalized=spec.normalized,
                    )
            st.clock += SAMPLE_INTERVAL
            st.register_wh += st.power_w // 60 + rng.randrange(5)
            yield _envelope(
                rng,
                st.cp,
                "MeterValues",
                {
                    "connectorId": st.connector,
                    "transactionId": st.tx,
                    "meterValue": [
                        {
                            "timestamp": _iso(st.clock),
                            "sampledValue": _sampled_values(st, spec.values_per_event),
                        }
                    ],
                },
                st.clock,
                normalized=spec.normalized,
            )
            emitted += 1
            st.left -= 1
            if st.left == 0:
                st.clock += timedelta(seconds=5)
                yield _envelope(
                    rng,
                    st.cp,
                    "StopTransaction",
                    {
                        "transactionId": st.tx,
                        "meterStop": st.register_wh,
                        "timestamp": _iso(st.clock),
                        "reason": "EVDisconnected",
                    },
                    st.clock,
                    {},
                    normalized=spec.normalized,
                )
                if spec.status_notifications:
                    yield _status(
                        status_rng,
                        st,
                        "Finishing",
                        st.clock + timedelta(seconds=1),
                        normalized=spec.normalized,
                    )
                    yield _status(
                        status_rng,
                        st,
                        "Available",
                        st.clock + timedelta(minutes=2),
                        normalized=spec.normalized,
                    )
                st.tx = None
                st.clock += timedelta(minutes=3)


def messages(spec: StreamSpec) -> list[KeyValue]:
    """The stream as Kafka (key, value) pairs (key = charge point id)."""
    return [(e.charge_point_id.encode(), encode_envelope(e)) for e in generate(spec)]


def produce_all(
    bootstrap: str, topic: str, msgs: Sequence[KeyValue], timeout: float = 120.0
) -> None:
    """Produce every message and wait until the broker confirmed all of them."""
    failures: list[str] = []
    confirmed = 0

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        nonlocal confirmed
        if err is not None:
            failures.append(str(err))
        else:
            confirmed += 1

    producer = RdProducer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "linger.ms": 20,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 1_000_000,
            "enable.idempotence": False,
            "compression.type": "none",
        }
    )
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


def status_notification_count(msgs: Sequence[KeyValue]) -> int:
    return sum(1 for _, v in msgs if b'"StatusNotification"' in v)


def register_progress_wh(msgs: Sequence[KeyValue]) -> int:
    """Sum over charge points of (last - first) energy register in their MeterValues:
    what the load flow's per-minute energy deltas must add up to (registers in a bench
    stream never go down). Decodes only the first and last MeterValues per station."""
    first: dict[bytes, bytes] = {}
    last: dict[bytes, bytes] = {}
    for key, value in msgs:
        if b'"MeterValues"' in value:
            first.setdefault(key, value)
            last[key] = value
    total = 0
    for key, value in last.items():
        total += _register_wh(value) - _register_wh(first[key])
    return total


def _register_wh(value: bytes) -> int:
    envelope = decode_envelope(value)
    for mv in envelope.payload["meterValue"]:
        for sv in mv["sampledValue"]:
            if (
                sv.get("measurand", "Energy.Active.Import.Register")
                == "Energy.Active.Import.Register"
            ):
                return int(sv["value"])
    raise ValueError("MeterValues without an energy register")


# --------------------------------------------------------------------------- flows and tables


@contextmanager
def fresh_database(server: DatabaseServer, prefix: str = "chargeflow_bench") -> Iterator[str]:
    """A new, migrated database on ``server`` (dropped afterwards); yields its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    url = server.create_database(name, exist_ok=False)
    try:
        migrate(url)
        yield url
    finally:
        server.drop_database(name)


def profile_dataflow(flow: Any, out: Path, top: int = 25) -> str:
    """Run ``flow`` in this process under cProfile (bytewax.testing.run_main; the main
    thread only, not a database writer's), dump the stats to ``out``; the ``top``
    functions by own time."""
    import cProfile
    import io
    import pstats

    from bytewax.testing import run_main

    prof = cProfile.Profile()
    prof.enable()
    run_main(flow)
    prof.disable()
    prof.dump_stats(out)
    text = io.StringIO()
    pstats.Stats(str(out), stream=text).sort_stats("tottime").print_stats(top)
    return text.getvalue()


def machine_info(**extra: Any) -> dict[str, Any]:
    """What every bench reports about the machine it ran on."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        **extra,
    }


@dataclass(frozen=True)
class BenchStack:
    work: Path  # logs, recovery stores (a temporary directory unless logs were asked for)
    broker: EmbeddedBroker
    database_url: str  # a fresh, migrated database
    database_origin: str  # which server: configured, local or embedded
    topics: Topics  # fresh topic names, created


@contextmanager
def bench_stack(name: str, partitions: int, logs: Path | None = None) -> Iterator[BenchStack]:
    """An embedded broker, a fresh database (CHARGEFLOW_BENCH_DATABASE_URL names a
    server to use, else 127.0.0.1:5432, else embedded PostgreSQL) and fresh topics
    named ``{name}XXXXXX.*``; all gone afterwards (``logs`` keeps the work files)."""
    with tempfile.TemporaryDirectory(prefix=f"chargeflow-bench-{name}-") as tmp:
        work = Path(tmp)
        if logs is not None:
            logs.mkdir(parents=True, exist_ok=True)
            work = logs
        server = database_server(os.environ.get("CHARGEFLOW_BENCH_DATABASE_URL"), work)
        try:
            with (
                EmbeddedBroker(log_path=work / "tansu.log") as broker,
                fresh_database(server) as url,
            ):
                topics = Topics.with_prefix(f"{name}{uuid.uuid4().hex[:6]}.")
                ensure_topics(broker.bootstrap, topics.all(), partitions=partitions)
                yield BenchStack(work, broker, url, server.origin, topics)
        finally:
            server.stop()


def flow_env(
    bootstrap: str, topics: Topics, database_url: str, *, tail: bool, **extra: str
) -> dict[str, str]:
    """The environment ``flows.sessions.dataflow:from_env()`` reads."""
    return {
        **os.environ,
        "CHARGEFLOW_KAFKA_BOOTSTRAP": bootstrap,
        "CHARGEFLOW_DATABASE_URL": database_url,
        "CHARGEFLOW_TOPIC_PREFIX": topics.ocpp_events[: -len(Topics().ocpp_events)],
        "CHARGEFLOW_FLOW_TAIL": "true" if tail else "false",
        **extra,
    }


def start_flow(
    env: dict[str, str], *args: str, log: Path | None = None, flow: str = SESSIONS_FLOW
) -> subprocess.Popen[bytes]:
    """``python -m flows.run FLOW ARGS`` as a child process (output to ``log``)."""
    out = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "flows.run", flow, *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
        )
    finally:
        if log is not None:
            out.close()  # type: ignore[union-attr]


def table_rows(database_url: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every row of sessions and meter_samples, in a stable order."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        sessions = conn.execute("SELECT * FROM sessions ORDER BY session_id").fetchall()
        samples = conn.execute(
            "SELECT * FROM meter_samples ORDER BY charge_point_id, connector_id, measurand,"
            " phase, location, context, measured_at"
        ).fetchall()
    return sessions, samples


def row_counts(database_url: str) -> tuple[int, int]:
    """(sessions, meter_samples) row counts."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM sessions), (SELECT count(*) FROM meter_samples)"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def stop_flow(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
    """SIGTERM (``flows.run`` then exits 0), SIGKILL if it does not stop in time."""
    if proc.poll() is None:
        stop_process(proc, timeout)
    assert proc.returncode is not None
    return proc.returncode


def sample_count(msgs: Sequence[KeyValue]) -> int:
    """How many meter_samples rows the MeterValues in ``msgs`` carry (bench streams)."""
    total = 0
    for _, v in msgs:
        envelope = decode_envelope(v)
        if envelope.action == "MeterValues":
            total += sum(len(mv["sampledValue"]) for mv in envelope.payload["meterValue"])
    return total
