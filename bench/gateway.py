"""Gateway load benchmark: ``python -m bench.gateway [--stations 2000 --rate 2000 --duration 30]``.

Starts the real pieces itself: the embedded broker, a fresh migrated database
(CHARGEFLOW_BENCH_DATABASE_URL names a server, else 127.0.0.1:5432, else embedded
PostgreSQL), then the gateway as its own process exactly as deployed
(``python -m chargeflow.cli gateway``, configured through ``CHARGEFLOW_*``), and a
separate load-generator process (:mod:`bench.loadgen`). Stations are provisioned
first (security profile 1: HTTP Basic, one argon2 hash shared by all bench stations,
bulk-inserted; an id tag per station), so every connection pays the real
authentication (one argon2 verification per station); ``--security-profile 0``
skips it to get to the steady state quickly.

Measured:
* ``connect``: time to connect, authenticate, boot and start a transaction on every
  station (argon2 dominates);
* ``load``: MeterValues at ``--rate`` per second across the fleet; achieved CALLs/s
  (every CALLRESULT means the event was confirmed by Kafka first: publish-before-ack),
  per-CALL latency p50/p95/p99 (send -> CALLRESULT), errors; events on ``ocpp.events``
  counted from the topic's offsets;
* gateway process: RSS idle (no station), with every station connected (per
  connection above idle), peak under load, and CPU% during the measured window
  (100% = one core); the generator's own CPU% too (on 2 cores they compete).

``--latency`` is the latency mode: 500 CALLs/s unless ``--rate`` says otherwise.

``--compare`` measures against a reference: an independent OCPP client library (Node
``ocpp-rpc``, ``bench/ocpp_rpc/loadgen.js``, permessage-deflate offered as station stacks
do) drives first a minimal strict ``ocpp-rpc`` server that stores nothing
(``bench/ocpp_rpc/server.js``), then our gateway (publish-before-ack), with the same
stations and offered rates (``--rates``, default 1000,2000,3000), in one run on the same
machine; per rate: sustained CALLRESULTs/s, p50/p99, connections closed, and the ratios
ours/reference. ``npm ci`` installs ``ocpp-rpc`` there when ``node_modules`` is missing.
Prints one JSON document to stdout (progress on stderr). Nothing asserts timing;
``targets`` says whether the issue's targets were met on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil
import psycopg
from confluent_kafka import Consumer, TopicPartition

from bench.common import ROOT, bench_stack, machine_info
from bench.loadgen import raise_fd_limit
from bus.topics import Topics
from chargeflow.stack import free_port, wait_until
from store.stations import hash_password

TARGET_STATIONS = 2000
TARGET_MESSAGES_PER_S = 2000
TARGET_P99_MS_AT_500 = 100.0
TARGET_RSS_PER_CONNECTION_KIB = 50.0
BENCH_PASSWORD = "bench-station-password-01"


def progress(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- provisioning


def provision_fleet(
    database_url: str, prefix: str, count: int, password: str, security_profile: int = 1
) -> float:
    """Stations ``PREFIX00000..`` (one shared argon2 hash; profile 1 = Basic auth, 0 = no
    authentication) and id tags ``BT0..`` in bulk; returns the seconds it took."""
    started = time.perf_counter()
    password_hash = hash_password(password)
    ids = [f"{prefix}{i:05d}" for i in range(count)]
    with psycopg.connect(database_url, autocommit=True) as conn, conn.transaction():
        conn.execute(
            "INSERT INTO stations (charge_point_id, password_hash, security_profile) "
            "SELECT unnest(%s::text[]), %s, %s ON CONFLICT (charge_point_id) DO UPDATE "
            "SET password_hash = EXCLUDED.password_hash, "
            "security_profile = EXCLUDED.security_profile",
            (ids, password_hash, security_profile),
        )
        conn.execute(
            "INSERT INTO id_tags (id_tag, status) SELECT unnest(%s::text[]), 'Accepted' "
            "ON CONFLICT (id_tag) DO NOTHING",
            ([f"BT{i}" for i in range(count)],),
        )
    return time.perf_counter() - started


# --------------------------------------------------------------------------- the gateway


@dataclass
class GatewayProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp"

    @property
    def ps(self) -> psutil.Process:
        return psutil.Process(self.proc.pid)

    def rss(self) -> int:
        return int(self.ps.memory_info().rss)

    def cpu_seconds(self) -> float:
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as r:
            return str(r.read().decode())


def gateway_env(
    bootstrap: str, database_url: str, topics: Topics, port: int, **extra: str
) -> dict[str, str]:
    return {
        **os.environ,
        "CHARGEFLOW_KAFKA_BOOTSTRAP": bootstrap,
        "CHARGEFLOW_DATABASE_URL": database_url,
        "CHARGEFLOW_TOPIC_PREFIX": topics.ocpp_events[: -len(Topics().ocpp_events)],
        "CHARGEFLOW_GATEWAY_HOST": "127.0.0.1",
        "CHARGEFLOW_GATEWAY_PORT": str(port),
        **extra,
    }


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


@contextmanager
def gateway_process(
    bootstrap: str,
    database_url: str,
    topics: Topics,
    workdir: Path,
    extra_env: dict[str, str] | None = None,
) -> Iterator[GatewayProcess]:
    """``python -m chargeflow.cli gateway`` (inherits the raised fd limit), until healthy."""
    port = free_port()
    log = workdir / "gateway.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "chargeflow.cli", "gateway"],
            cwd=ROOT,
            env=gateway_env(bootstrap, database_url, topics, port, **(extra_env or {})),
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
        )
    gw = GatewayProcess(proc, port, log)
    try:

        def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {proc.returncode}; see {log}")
            return healthy(port)

        wait_until(up, 60, "gateway /health")
        yield gw
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def settle_rss(gw: GatewayProcess, seconds: float = 2.0) -> int:
    """RSS once it stopped moving (max of a few samples over ``seconds``)."""
    samples = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        samples.append(gw.rss())
        time.sleep(0.2)
    return max(samples)


# --------------------------------------------------------------------------- the generator


@dataclass
class LoadRun:
    """A running ``bench.loadgen``; ``events`` maps stderr markers to (time, gateway CPU s,
    gateway RSS)."""

    proc: subprocess.Popen[str]
    gateway: GatewayProcess
    events: dict[str, tuple[float, float, int]] = field(default_factory=dict)
    ready: dict[str, Any] = field(default_factory=dict)
    peak_rss: dict[str, int] = field(default_factory=lambda: {"connect": 0, "load": 0})
    phase: str = "connect"
    stderr_tail: list[str] = field(default_factory=list)
    _ready_event: threading.Event = field(default_factory=threading.Event)
    _reader_thread: threading.Thread | None = None

    def _reader(self, stream: IO[str]) -> None:
        for line in stream:
            line = line.rstrip("\n")
            marker = line.split(" ", 1)[0]
            if marker in ("READY", "MEASURE-START", "MEASURE-END"):
                with suppress(psutil.Error):
                    self.events[marker] = (
                        time.monotonic(),
                        self.gateway.cpu_seconds(),
                        self.gateway.rss(),
                    )
                if marker == "READY":
                    self.ready = json.loads(line.split(" ", 1)[1])
                    self._ready_event.set()
            else:
                self.stderr_tail = [*self.stderr_tail[-20:], line]
                print(f"[loadgen] {line}", file=sys.stderr, flush=True)
        self._ready_event.set()

    def _sampler(self) -> None:
        while self.proc.poll() is None:
            try:
                self.peak_rss[self.phase] = max(self.peak_rss[self.phase], self.gateway.rss())
            except psutil.Error:
                return
            time.sleep(0.5)

    def wait_ready(self, timeout: float) -> dict[str, Any]:
        if not self._ready_event.wait(timeout) or not self.ready:
            raise RuntimeError(f"load generator not ready: {self.stderr_tail[-5:]}")
        return self.ready

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.phase = "load"
        self.proc.stdin.write("GO\n")
        self.proc.stdin.flush()

    def result(self, timeout: float) -> dict[str, Any]:
        """The generator's JSON (stderr stays with the reader thread)."""
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()
        self.proc.wait(timeout)
        if self._reader_thread is not None:
            self._reader_thread.join(10)
        if self.proc.returncode != 0:
            raise RuntimeError(
                f"load generator failed ({self.proc.returncode}): {self.stderr_tail[-5:]}"
            )
        return dict(json.loads(out))

    def window(self) -> dict[str, Any]:
        """Gateway CPU% over the measured window."""
        if "MEASURE-START" not in self.events or "MEASURE-END" not in self.events:
            return {}
        t0, c0, _ = self.events["MEASURE-START"]
        t1, c1, rss = self.events["MEASURE-END"]
        return {
            "gateway_cpu_percent": round(100 * (c1 - c0) / (t1 - t0), 1),
            "gateway_rss_mib_at_end": round(rss / 2**20, 1),
        }


def start_loadgen(
    gw: GatewayProcess,
    *,
    stations: int,
    rate: float,
    duration: float,
    warmup: float,
    prefix: str,
    password: str,
    compression: bool = False,
    extra: list[str] | None = None,
) -> LoadRun:
    args = [
        sys.executable,
        "-m",
        "bench.loadgen",
        "--url",
        gw.url,
        "--stations",
        str(stations),
        "--rate",
        str(rate),
        "--duration",
        str(duration),
        "--warmup",
        str(warmup),
        "--prefix",
        prefix,
        "--password",
        password,
        "--wait-go",
        *(["--compression"] if compression else []),
        *(extra or []),
    ]
    proc = subprocess.Popen(
        args,
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run = LoadRun(proc, gw)
    assert proc.stderr is not None
    run._reader_thread = threading.Thread(target=run._reader, args=(proc.stderr,), daemon=True)
    run._reader_thread.start()
    threading.Thread(target=run._sampler, daemon=True).start()
    return run


# --------------------------------------------------------------------------- Kafka and metrics


def topic_message_count(bootstrap: str, topic: str) -> int:
    """Messages in ``topic`` (sum of high - low watermarks)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4()}",
            "enable.auto.commit": False,
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=10)
        total = 0
        for partition in meta.topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            total += high - low
        return total
    finally:
        consumer.close()


def metric_value(text: str, name: str) -> float | None:
    """Sum of a metric's samples in Prometheus text (``name`` with no labels or all)."""
    total, found = 0.0, False
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    return total if found else None


def publish_stats(metrics_text: str) -> dict[str, Any]:
    count = metric_value(metrics_text, "chargeflow_gateway_publish_seconds_count")
    total = metric_value(metrics_text, "chargeflow_gateway_publish_seconds_sum")
    return {
        "publishes": int(count) if count is not None else None,
        "publish_mean_ms": round(1000 * total / count, 2) if count and total else None,
        "throttled_frames": metric_value(metrics_text, "chargeflow_gateway_throttled_frames_total"),
    }


# --------------------------------------------------------------------------- profiling


def start_py_spy(out: Path | None, pid: int, seconds: float) -> subprocess.Popen[bytes] | None:
    if out is None:
        return None
    exe = Path(sys.executable).with_name("py-spy")
    return subprocess.Popen(
        [
            str(exe),
            "record",
            "-o",
            str(out),
            "-f",
            "raw",
            "-d",
            str(int(seconds) + 1),
            "-r",
            "100",
            "-p",
            str(pid),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def summarize_profile(path: Path, top: int = 25) -> dict[str, Any]:
    """Inclusive share of samples per function (py-spy raw/collapsed stacks)."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = [f for f in stack.split(";") if f]
        if frames:
            own[frames[-1]] = own.get(frames[-1], 0) + n
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + n

    def share(d: dict[str, int]) -> list[str]:
        best = sorted(d.items(), key=lambda kv: -kv[1])[:top]
        return [f"{100 * n / total:5.1f}% {name}" for name, n in best]

    return {"file": str(path), "samples": total, "inclusive": share(inclusive), "self": share(own)}


# --------------------------------------------------------------------------- --compare

OCPP_RPC_DIR = ROOT / "bench" / "ocpp_rpc"


def ensure_ocpp_rpc() -> None:
    """``npm ci`` in bench/ocpp_rpc when its node_modules is missing (the lock file pins
    ocpp-rpc and its dependencies)."""
    if (OCPP_RPC_DIR / "node_modules" / "ocpp-rpc").is_dir():
        return
    progress("installing ocpp-rpc (npm ci)")
    subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund"], cwd=OCPP_RPC_DIR, check=True, stdout=sys.stderr
    )


@contextmanager
def reference_server() -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """``node server.js``: the ocpp-rpc reference server on a free port."""
    proc = subprocess.Popen(
        ["node", "server.js", "0"],
        cwd=OCPP_RPC_DIR,
        text=True,
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("LISTENING "):
            raise RuntimeError(f"reference server did not start: {line!r}")
        yield int(line.split()[1]), proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def run_node_loadgen(
    url: str,
    pid: int,
    *,
    stations: int,
    rates: list[float],
    warmup: float,
    duration: float,
    drain: float,
    connect_concurrency: int,
    workers: int,
    on_ready: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """``node loadgen.js`` against ``url``; the server process ``pid``'s CPU% per rate
    (from the generator's PHASE markers) is added to each rate's result; ``on_ready``
    runs once every station is connected, just before the load starts."""
    spec = {
        "url": url,
        "stations": stations,
        "rates": rates,
        "warmupS": warmup,
        "durationS": duration,
        "drainS": drain,
        "connectConcurrency": connect_concurrency,
        "workers": workers,
    }
    proc = subprocess.Popen(
        ["node", "loadgen.js", json.dumps(spec)],
        cwd=OCPP_RPC_DIR,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    server = psutil.Process(pid)
    cpu: dict[str, float] = {}
    loads: dict[str, float] = {}

    def cpu_s() -> float:
        times = server.cpu_times()
        return float(times.user + times.system)

    def read_markers() -> None:
        assert proc.stderr is not None
        started: tuple[float, float] = (0.0, 0.0)
        for line in proc.stderr:
            word, _, rest = line.strip().partition(" ")
            if word == "READY" and on_ready is not None:
                on_ready()
            if word == "PHASE-START":
                started = (time.monotonic(), cpu_s())
                loads[rest] = round(os.getloadavg()[0], 2)
            elif word == "PHASE-END":
                t0, c0 = started
                cpu[rest] = round(100 * (cpu_s() - c0) / (time.monotonic() - t0), 1)
            else:
                print(f"[node-loadgen] {line.rstrip()}", file=sys.stderr, flush=True)

    reader = threading.Thread(target=read_markers, daemon=True)
    reader.start()
    assert proc.stdout is not None
    out = proc.stdout.read()  # stderr stays with the marker reader
    proc.wait(600)
    reader.join(10)
    if proc.returncode != 0:
        raise RuntimeError(f"node load generator failed ({proc.returncode})")
    result = dict(json.loads(out))
    for step in result["rates"]:
        key = f"{step['offered_per_s']:g}"
        step["server_cpu_percent"] = cpu.get(key)
        step["load_average_1m_at_start"] = loads.get(key)
    return result


def cpu_ms_per_call(step: dict[str, Any]) -> float | None:
    """The server's CPU time per answered CALL in a step (CPU% over the window /
    answers per second): what decides throughput when the server's share of a busy
    machine's CPU is the limit."""
    cpu, rate = step.get("server_cpu_percent"), step.get("sustained_per_s")
    return round(10 * cpu / rate, 3) if cpu and rate else None


def ratio(ours: float | None, reference: float | None) -> float | None:
    if ours is None or not reference:
        return None
    return round(ours / reference, 2)


def compare(args: argparse.Namespace, result: dict[str, Any]) -> None:
    ensure_ocpp_rpc()
    rates = [float(r) for r in args.rates.split(",")]
    common = {
        "stations": args.stations,
        "rates": rates,
        "warmup": args.warmup,
        "duration": args.duration,
        "drain": args.drain,
        "connect_concurrency": args.connect_concurrency,
        "workers": args.loadgen_workers,
    }
    result["config"].update(
        {
            "rates": rates,
            "drain_s": args.drain,
            "loadgen_workers": args.loadgen_workers,
            "loadgen": "ocpp-rpc (node), permessage-deflate offered",
        }
    )
    reference: dict[str, Any] = {"rates": [None] * len(rates)}
    if not args.no_reference:
        with reference_server() as (port, ref):
            progress(
                f"reference ocpp-rpc server on {port}: {args.stations} stations, rates {args.rates}"
            )
            reference = run_node_loadgen(f"ws://127.0.0.1:{port}", ref.pid, **common)
    with bench_stack("bench", args.partitions, args.logs) as stack:
        result["database"] = stack.database_origin
        provision_fleet(stack.database_url, "BENCH-", args.stations, BENCH_PASSWORD, 0)
        with gateway_process(
            stack.broker.bootstrap, stack.database_url, stack.topics, stack.work
        ) as gw:
            progress(f"gateway (pid {gw.proc.pid}): {args.stations} stations, rates {args.rates}")
            spies: list[subprocess.Popen[bytes] | None] = []

            def profile() -> None:
                spies.append(
                    start_py_spy(
                        args.py_spy,
                        gw.proc.pid,
                        len(rates) * (args.warmup + args.duration + args.drain),
                    )
                )

            ours = run_node_loadgen(gw.url, gw.proc.pid, **common, on_ready=profile)
            spy = spies[0] if spies else None
            if spy is not None:
                spy.wait(120)
                result["profile"] = summarize_profile(args.py_spy)
            result["gateway_publishes"] = publish_stats(gw.metrics())
    result["reference"] = reference
    result["ours"] = ours
    table = []
    none: dict[str, Any] = {
        "sustained_per_s": None,
        "latency_ms": {"p50": None, "p99": None},
        "connections_closed": None,
    }
    for mine, theirs in zip(ours["rates"], reference["rates"], strict=True):
        theirs = theirs or none
        p99_ours, p99_ref = mine["latency_ms"]["p99"], theirs["latency_ms"]["p99"]
        table.append(
            {
                "offered_per_s": mine["offered_per_s"],
                "sustained_per_s": {
                    "ours": mine["sustained_per_s"],
                    "reference": theirs["sustained_per_s"],
                },
                "p50_ms": {
                    "ours": mine["latency_ms"]["p50"],
                    "reference": theirs["latency_ms"]["p50"],
                },
                "p99_ms": {"ours": p99_ours, "reference": p99_ref},
                "throughput_ratio": ratio(mine["sustained_per_s"], theirs["sustained_per_s"]),
                "p99_ratio": ratio(p99_ours, p99_ref),
                "server_cpu_ms_per_call": {
                    "ours": cpu_ms_per_call(mine),
                    "reference": cpu_ms_per_call(theirs),
                },
                "connections_closed": {
                    "ours": mine["connections_closed"],
                    "reference": theirs["connections_closed"],
                },
                "target_met": bool(
                    (ratio(mine["sustained_per_s"], theirs["sustained_per_s"]) or 0) >= 1.0
                    and p99_ours is not None
                    and p99_ours <= TARGET_P99_MS_AT_500
                ),
            }
        )
    result["comparison"] = table
    result["target"] = ">= 1.0x the reference's sustained throughput at p99 <= 100 ms"


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gateway",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--stations", type=int, default=2000)
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="MeterValues/s across the fleet (default 2000, --latency 500)",
    )
    parser.add_argument("--duration", type=float, default=30.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--latency", action="store_true", help="latency mode: 500 msg/s")
    parser.add_argument("--partitions", type=int, default=2, help="topic partitions")
    parser.add_argument(
        "--compression",
        action="store_true",
        help="stations offer permessage-deflate (the gateway accepts it)",
    )
    parser.add_argument(
        "--security-profile",
        type=int,
        choices=(0, 1),
        default=1,
        help="1: HTTP Basic with argon2 per connection (default); 0: none "
        "(steady-state runs without the argon2 connect cost)",
    )
    parser.add_argument(
        "--connect-concurrency",
        type=int,
        default=8,
        help="stations connecting at once (the gateway verifies 4 argon2 "
        "hashes at a time and answers 503 + Retry-After past 64 waiting)",
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        default=None,
        metavar="FILE",
        help="record the gateway with py-spy (pip install py-spy) during "
        "warm-up + measured window; raw collapsed stacks to FILE",
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="ocpp-rpc load generator against an ocpp-rpc reference server "
        "and against the gateway, side by side (see above)",
    )
    parser.add_argument(
        "--no-reference",
        action="store_true",
        help="--compare: only the gateway (e.g. to profile it with --py-spy)",
    )
    parser.add_argument(
        "--rates", default="1000,2000,3000", help="--compare: offered MeterValues/s, one step each"
    )
    parser.add_argument(
        "--drain",
        type=float,
        default=10.0,
        help="--compare: seconds after each step for queued calls to finish",
    )
    parser.add_argument(
        "--loadgen-workers",
        type=int,
        default=2,
        help="--compare: Node processes the stations are spread over",
    )
    parser.add_argument(
        "--logs", type=Path, default=None, help="keep the gateway/broker logs in this directory"
    )
    parser.add_argument(
        "--reconnect-storm",
        action="store_true",
        help="all --stations (default 10000) reconnect at once to a freshly "
        "started gateway; see bench.storm (also --prime seed|login|none)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--reconnect-storm" in argv:
        from bench.storm import main as reconnect_storm

        return reconnect_storm(argv)
    args = build_parser().parse_args(argv)
    rate = args.rate if args.rate is not None else (500.0 if args.latency else 2000.0)
    fd_limit = raise_fd_limit()
    prefix = "BENCH-"
    result: dict[str, Any] = {
        "machine": machine_info(fd_limit=fd_limit),
        "mode": "latency" if args.latency else "throughput",
        "config": {
            "stations": args.stations,
            "target_messages_per_s": rate,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "partitions": args.partitions,
            "compression": args.compression,
            "security_profile": args.security_profile,
            "connect_concurrency": args.connect_concurrency,
        },
    }
    if args.compare:
        compare(args, result)
        json.dump(result, sys.stdout, indent=2)
        print()
        return 0
    with bench_stack("bench", args.partitions, args.logs) as stack:
        work, broker, url, topics = stack.work, stack.broker, stack.database_url, stack.topics
        result["database"] = stack.database_origin
        progress(f"provisioning {args.stations} stations")
        result["provision_s"] = round(
            provision_fleet(url, prefix, args.stations, BENCH_PASSWORD, args.security_profile), 2
        )
        with gateway_process(broker.bootstrap, url, topics, work) as gw:
            idle = settle_rss(gw)
            progress(f"gateway up (pid {gw.proc.pid}); connecting {args.stations}")
            run = start_loadgen(
                gw,
                stations=args.stations,
                rate=rate,
                duration=args.duration,
                warmup=args.warmup,
                prefix=prefix,
                password=BENCH_PASSWORD,
                compression=args.compression,
                extra=["--connect-concurrency", str(args.connect_concurrency)],
            )
            cpu_before_connect = gw.cpu_seconds()
            ready = run.wait_ready(timeout=1800)
            connect_cpu = gw.cpu_seconds() - cpu_before_connect
            connected_rss = settle_rss(gw)
            progress(
                f"{ready['connected']} stations ready in {ready['connect_s']} s; "
                f"load {rate:g}/s for {args.warmup:g}+{args.duration:g} s"
            )
            spy = start_py_spy(args.py_spy, gw.proc.pid, args.warmup + args.duration)
            run.go()
            load = run.result(timeout=args.warmup + args.duration + 600)
            window = run.window()
            if spy is not None:
                spy.wait(60)
                result["profile"] = summarize_profile(args.py_spy)
            metrics_text = gw.metrics()
            events = topic_message_count(broker.bootstrap, topics.ocpp_events)
            n = max(1, load["connected"])
            result["gateway"] = {
                "pid": gw.proc.pid,
                "rss_idle_mib": round(idle / 2**20, 1),
                "rss_connected_mib": round(connected_rss / 2**20, 1),
                "rss_per_connection_kib": round((connected_rss - idle) / n / 1024, 1),
                "rss_peak_while_connecting_mib": round(run.peak_rss["connect"] / 2**20, 1),
                "rss_peak_under_load_mib": round(run.peak_rss["load"] / 2**20, 1),
                "rss_peak_under_load_per_connection_kib": round(
                    (max(run.peak_rss["load"], connected_rss) - idle) / n / 1024, 1
                ),
                "connect_cpu_s": round(connect_cpu, 1),
                **window,
                **publish_stats(metrics_text),
            }
            result["load"] = load
            result["kafka_ocpp_events"] = events

    load = result["load"]
    gwr = result["gateway"]
    p99 = load["latency_ms"]["p99"]
    result["targets"] = {
        "stations_held": TARGET_STATIONS,
        "stations_held_met": load["connected"] >= TARGET_STATIONS
        and load["open_at_end"] >= TARGET_STATIONS,
        "messages_per_s": TARGET_MESSAGES_PER_S,
        "messages_per_s_met": load["achieved_messages_per_s"] >= TARGET_MESSAGES_PER_S,
        "p99_ms_at_500": TARGET_P99_MS_AT_500,
        "p99_met": (p99 is not None and p99 <= TARGET_P99_MS_AT_500) if rate <= 500 else None,
        "rss_per_connection_kib": TARGET_RSS_PER_CONNECTION_KIB,
        "rss_per_connection_met": gwr["rss_per_connection_kib"] <= TARGET_RSS_PER_CONNECTION_KIB,
        "note": "each run checks the targets its mode measures; this machine is shared",
    }
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
