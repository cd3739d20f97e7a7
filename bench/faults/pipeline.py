"""The evaluation fleet through the real pipeline: simulator -> gateway -> Kafka ->
faults flow -> PostgreSQL; then the alerts the pipeline wrote, the envelopes it
consumed (read back from Kafka) and the simulator's ground truth.

Stack as ``bench.e2e`` starts it (:func:`bench.common.bench_stack`: embedded broker,
fresh database and topics; the gateway as a child process), the faults flow as
``chargeflow run`` starts its flows (``python -m flows.run FLOW -r ... -s 5 -b 0``, with
a health/metrics port), the fleet as ``chargeflow simulate`` with a fixed seed. The
flow has consumed everything when its input lag is 0 and the alerts table stopped
changing (polled, with a deadline).

The parts that depend on work not on main yet are :data:`FAULTS_FLOW` (the flow's
import string) and :func:`simulator_argv` (the simulator's fault options).
"""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import psycopg
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from psycopg.rows import dict_row

from bench.common import ROOT, BenchStack, bench_stack, flow_env, start_flow, stop_flow
from bench.faults.replay import merge_by_received
from bench.gateway import gateway_env, gateway_process, metric_value, progress
from bus.admin import partition_count, read_topic
from bus.alerts import FaultAlert, decode_fault_alert, encode_fault_alert
from bus.envelope import Envelope, decode_envelope, encode_envelope
from bus.topics import Topics
from chargeflow.launcher import simulated_id_tags, simulated_station_ids
from chargeflow.stack import free_port
from flows.faults.decode import decode_event
from flows.recovery import ensure_recovery_dir
from ingest.simulator.ground_truth import GroundTruth, parse_ground_truth
from runtime.logs import with_kafka_logger
from store.id_tokens import add_id_tag
from store.stations import provision_station

FAULTS_FLOW = "flows.faults.dataflow:from_env()"
STATION_PASSWORD = "bench-faults-station-password"


@dataclass(frozen=True)
class FleetSpec:
    stations: int = 100
    days: float = 14.0  # simulated
    seed: int = 20261202  # distinct from the seeds the thresholds were tuned on
    faults: str = "auto"  # the simulator's --faults SPEC (auto: a fifth of the stations)
    time_scale: float = 720.0  # simulated seconds per second: 14 days in ~28 min
    meter_interval_s: float = 300.0  # simulated seconds between a station's MeterValues
    # Public AC charging as the fault scenarios assume it (sessions of hours, not the
    # demo's minutes): mean plug-in time and mean gap between sessions, simulated.
    mean_dwell_s: float = 3 * 3600.0
    mean_arrival_gap_s: float = 1800.0
    start: str = "2026-07-01T00:00:00Z"  # the station clocks' start (runs repeat)
    partitions: int = 2
    deadline_s: float = 4 * 3600.0  # for the simulator, and again for the flow to catch up
    logs: Path | None = None
    flow: bool = True  # off: simulator and gateway only, the replays scored


@dataclass
class PipelineRun:
    truth_text: str  # the ground-truth file (JSON lines, manifest first)
    envelopes: list[Envelope]  # what the faults flow consumed, per station in topic order
    alerts: list[FaultAlert] | None  # what it wrote to the alerts table (None: no flow)
    simulate_s: float = 0.0
    drain_s: float = 0.0

    @property
    def truth(self) -> GroundTruth:
        return parse_ground_truth(self.truth_text.splitlines())

    def save(self, directory: Path) -> None:
        """The run as files (``ground-truth.jsonl``, ``envelopes.jsonl``, ``alerts.jsonl``)
        that :meth:`load` reads back, to score it again without running it."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / TRUTH_FILE).write_text(self.truth_text, encoding="utf-8")
        _write_lines(directory / ENVELOPES_FILE, map(encode_envelope, self.envelopes))
        if self.alerts is not None:
            _write_lines(directory / ALERTS_FILE, map(encode_fault_alert, self.alerts))

    @classmethod
    def load(cls, directory: Path) -> PipelineRun:
        alerts = directory / ALERTS_FILE
        return cls(
            truth_text=(directory / TRUTH_FILE).read_text(encoding="utf-8"),
            envelopes=[decode_envelope(line) for line in _read_lines(directory / ENVELOPES_FILE)],
            alerts=[decode_fault_alert(line) for line in _read_lines(alerts)]
            if alerts.exists()
            else None,
        )


TRUTH_FILE, ENVELOPES_FILE, ALERTS_FILE = "ground-truth.jsonl", "envelopes.jsonl", "alerts.jsonl"


def _write_lines(path: Path, lines: Iterable[bytes]) -> None:
    with path.open("wb") as out:
        for line in lines:
            out.write(line + b"\n")


def _read_lines(path: Path) -> list[bytes]:
    with path.open("rb") as lines:
        return [line.rstrip(b"\n") for line in lines if line.strip()]


def simulator_argv(spec: FleetSpec, gateway_url: str, ground_truth: Path) -> list[str]:
    """``chargeflow simulate`` for the evaluation fleet: seeded, from a fixed start, so a
    run repeats; it runs until stopped (:func:`_simulate` stops it after ``days``)."""
    return [
        sys.executable,
        "-m",
        "chargeflow.cli",
        "simulate",
        "--stations",
        str(spec.stations),
        "--gateway",
        gateway_url,
        "--time-scale",
        str(spec.time_scale),
        "--faults",
        spec.faults,
        "--ground-truth",
        str(ground_truth),
        "--seed",
        str(spec.seed),
        "--start",
        spec.start,
        "--meter-interval",
        str(spec.meter_interval_s),
        "--mean-dwell",
        str(spec.mean_dwell_s),
        "--id-tags",
        str(id_tag_count(spec.stations)),
    ]


def require_faults_flow() -> None:
    """A clear error while the faults flow is not on this branch yet."""
    if importlib.util.find_spec("flows.faults") is None:
        raise SystemExit(
            "bench.faults: the faults flow (flows/faults) is not here yet; "
            "the scoring and the baseline replay are tested in tests/unit/test_faults_*.py"
        )


def id_tag_count(stations: int) -> int:
    """Driver cards for the fleet: well over its sessions at once (one per connector at
    most), so no card is ever in use at two stations (ConcurrentTx, and a security
    alert) by the simulation's own doing."""
    return max(20, 3 * stations)


def provision(database_url: str, stations: int) -> list[str]:
    """The simulated stations (Basic auth) and id tags, as ``chargeflow run`` seeds them."""
    ids = simulated_station_ids(stations)
    for station in ids:
        provision_station(database_url, station, password=STATION_PASSWORD)
    for tag in simulated_id_tags(id_tag_count(stations)):
        add_id_tag(database_url, tag)
    return ids


def pipeline_alerts(database_url: str) -> list[FaultAlert]:
    """The alerts table as FaultAlert (the flow's fields; people's actions left out)."""
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        rows = conn.execute(
            "SELECT alert_id, station_id, connector_id, kind AS alert_kind, severity, status,"
            " first_seen, last_seen, detector, evidence, recommended_action, resolved_at"
            " FROM alerts ORDER BY first_seen, alert_id"
        ).fetchall()
    return [msgspec.convert(row, FaultAlert) for row in rows]


def consumed_envelopes(bootstrap: str, topics: Topics, timeout: float = 600.0) -> list[Envelope]:
    """The envelopes the faults flow uses, decoded and filtered as it does
    (:func:`flows.faults.decode.decode_event`): from ``ocpp.events`` and the ``alerts``
    topic (whose fault alerts are the flow's own output). Read from the beginning after
    the run: fine for small runs; a long run uses :class:`EnvelopeRecorder`, as a
    large topic read from offset 0 on the embedded broker takes minutes per 100k."""

    def used(topic: str) -> list[Envelope]:
        decoded = (decode_event(m.value()) for m in read_topic(bootstrap, topic, timeout=timeout))
        return [envelope for envelope in decoded if envelope is not None]

    return merge_by_received(used(topics.ocpp_events), used(topics.alerts))


class EnvelopeRecorder:
    """What :func:`consumed_envelopes` returns, read while the run goes on: a thread
    tails both topics from their start as the faults flow does; :meth:`finish` waits
    until it has read each partition to its end as of then and returns the envelopes
    (each topic in its own order, merged by ``received_at``)."""

    def __init__(self, bootstrap: str, topics: Topics) -> None:
        self._bootstrap = bootstrap
        self._topics = (topics.ocpp_events, topics.alerts)
        self._read: dict[str, list[Envelope]] = {topic: [] for topic in self._topics}
        self._finish = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="envelope-recorder")
        self._thread.start()

    def _run(self) -> None:
        try:
            self._tail()
        except BaseException as error:  # handed to finish()
            self._error = error

    def _tail(self) -> None:
        consumer = Consumer(
            with_kafka_logger(
                {
                    "bootstrap.servers": self._bootstrap,
                    "group.id": f"bench-recorder-{uuid.uuid4().hex[:8]}",
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                }
            )
        )
        try:
            parts = [
                TopicPartition(topic, p, OFFSET_BEGINNING)
                for topic in self._topics
                for p in range(partition_count(self._bootstrap, topic))
            ]
            consumer.assign(parts)
            # Partitions whose last event was their end. librdkafka reports an end once
            # per catching up, so the state is kept all along, not asked for at finish.
            at_end: set[tuple[str, int]] = set()
            everything = {(p.topic, p.partition) for p in parts}
            quiet_since_finish = False
            while True:
                if self._finish.is_set() and quiet_since_finish and at_end == everything:
                    return
                msg = consumer.poll(0.5)
                if msg is None:
                    quiet_since_finish = self._finish.is_set()
                    continue
                where = (msg.topic() or "", msg.partition() or 0)
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_end.add(where)
                        continue
                    raise KafkaException(err)
                at_end.discard(where)
                envelope = decode_event(msg.value())
                read = self._read.get(where[0])
                if envelope is not None and read is not None:
                    read.append(envelope)
        finally:
            consumer.close()

    def finish(self, timeout: float = 600.0) -> list[Envelope]:
        self._finish.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the envelope recorder did not reach the end within {timeout} s")
        if self._error is not None:
            raise self._error
        return merge_by_received(*(self._read[topic] for topic in self._topics))


def _lag(metrics_port: int) -> float | None:
    try:
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    return metric_value(text, "chargeflow_flow_input_lag")


def _alerts_state(database_url: str) -> tuple[int, Any]:
    """How many alerts, and the latest change to any."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*), max(updated_at) FROM alerts").fetchone()
    return (int(row[0]), row[1]) if row else (0, None)


def wait_drained(
    flow: subprocess.Popen[bytes], metrics_port: int, database_url: str, deadline_s: float
) -> float:
    """Seconds until the flow's input lag is 0 and the alerts held still for 3 polls."""
    started = time.monotonic()
    stable, last = 0, None
    while stable < 3:
        if flow.poll() is not None:
            raise RuntimeError(f"faults flow exited with {flow.returncode}")
        if time.monotonic() - started > deadline_s:
            raise TimeoutError(f"the faults flow did not catch up within {deadline_s} s")
        state = _alerts_state(database_url)
        stable = stable + 1 if _lag(metrics_port) == 0 and state == last else 0
        last = state
        time.sleep(2.0)
    return time.monotonic() - started


def _simulate(
    argv: list[str], env: dict[str, str], log: Path, run_s: float, end_window: Callable[[], None]
) -> float:
    """Run the simulator for ``run_s`` wall seconds (``days`` of telemetry at its time
    scale), then ``end_window`` (stops the gateway: the stations' offline events then say
    the gateway went away, which is no fault of theirs, rather than that every station
    closed its connection at once), then stop the simulator as Ctrl-C does (it writes
    the ground truth's end)."""
    started = time.monotonic()
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=out, stderr=out, stdin=subprocess.DEVNULL
        )
    try:
        proc.wait(run_s)
    except subprocess.TimeoutExpired:
        end_window()
        proc.send_signal(signal.SIGINT)
    try:
        rc = proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(30)
        raise TimeoutError(f"the simulator did not stop within 60 s; see {log}") from None
    if rc != 0:
        raise RuntimeError(f"the simulator exited with {rc}; see {log}")
    return time.monotonic() - started


@dataclass
class _Flow:
    proc: subprocess.Popen[bytes]
    metrics_port: int


@contextmanager
def faults_flow(stack: BenchStack) -> Iterator[_Flow]:
    """The faults flow as ``chargeflow run`` starts its flows (recovery, 5 s snapshots,
    tail mode) with a health/metrics port; stopped (SIGTERM) afterwards."""
    recovery = ensure_recovery_dir(stack.work / f"recovery-{uuid.uuid4().hex[:6]}", 1)
    port = free_port()
    env = flow_env(
        stack.broker.bootstrap,
        stack.topics,
        stack.database_url,
        tail=True,
        CHARGEFLOW_FLOW_METRICS_PORT=str(port),
    )
    args = ("-r", str(recovery), "-s", "5", "-b", "0")
    proc = start_flow(env, *args, log=stack.work / "faults-flow.log", flow=FAULTS_FLOW)
    try:
        yield _Flow(proc, port)
    finally:
        stop_flow(proc)


def run_pipeline(spec: FleetSpec) -> PipelineRun:
    """The fleet through every component (without the faults flow when ``spec.flow`` is
    off: then only the replays are scored); everything stopped afterwards."""
    if spec.flow:
        require_faults_flow()
    with bench_stack("faults", spec.partitions, spec.logs) as stack, ExitStack() as running:
        url, topics, bootstrap = stack.database_url, stack.topics, stack.broker.bootstrap
        progress(f"provisioning {spec.stations} stations")
        provision(url, spec.stations)
        flow = running.enter_context(faults_flow(stack)) if spec.flow else None
        recorder = EnvelopeRecorder(bootstrap, topics)
        running.callback(recorder.finish)  # stops it on an error too
        gateway = running.enter_context(ExitStack())
        gw = gateway.enter_context(gateway_process(bootstrap, url, topics, stack.work))
        truth_path = stack.work / "ground-truth.jsonl"
        env = {
            **gateway_env(bootstrap, url, topics, gw.port),
            "CHARGEFLOW_SIMULATOR_STATION_PASSWORD": STATION_PASSWORD,
            "CHARGEFLOW_SIMULATOR_MEAN_ARRIVAL_GAP_S": str(spec.mean_arrival_gap_s),
        }
        days, scale = f"{spec.days:g}", f"{spec.time_scale:g}"
        progress(f"simulating {spec.stations} stations x {days} days at x{scale}")
        argv = simulator_argv(spec, gw.url, truth_path)
        run_s = spec.days * 86400.0 / spec.time_scale
        simulate_s = _simulate(argv, env, stack.work / "simulator.log", run_s, gateway.close)
        gateway.close()
        drain_s = 0.0
        if flow is not None:
            progress("waiting for the faults flow to catch up")
            drain_s = wait_drained(flow.proc, flow.metrics_port, url, spec.deadline_s)
        progress("reading alerts, envelopes and ground truth back")
        envelopes = recorder.finish()
        running.close()  # the flow
        return PipelineRun(
            truth_text=truth_path.read_text(encoding="utf-8"),
            envelopes=envelopes,
            alerts=pipeline_alerts(url) if flow is not None else None,
            simulate_s=simulate_s,
            drain_s=drain_s,
        )
