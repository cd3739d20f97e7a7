"""Reconnect storm after a gateway restart: ``python -m bench.gateway --reconnect-storm
[--stations 10000] [--prime seed|login|none]``.

Starts the embedded broker, a fresh migrated database and N provisioned stations
(security profile 1, real argon2 hash), then the gateway as its own process
(``python -m chargeflow.cli gateway``, configured through ``CHARGEFLOW_*`` with an auth
cache key), freshly started; then all N stations connect at once from a separate
client process (``python -m bench.storm client``, ``--client lean`` (default,
``bench.storm_client``: raw streams, upgrade + BootNotification + StatusNotification)
or ``websockets`` (upgrade only)), each retrying after 503/429 with
the server's ``Retry-After`` as a station would. What the stations had before the
restart (``--prime``):

* ``seed`` (default): what a gateway leaves after they were connected to it: each
  station's verified credential (``ingest.gateway.security.credential_mac`` under the
  same key), known address and ``last_seen_at`` written in bulk, so the run measures
  the restart storm of a large fleet without first paying its cold start;
* ``login``: the same produced for real: a first gateway process takes all N logins
  (argon2 each), is stopped, and a second one is measured;
* ``none``: nothing verified before (a new fleet, or a gateway without a cache key):
  every login costs argon2.

Reported (one JSON document on stdout): time until every station is connected again,
per-station time to connect (p50/p99), failures (a login that ended in anything but
a connection), 401/429/503 counts, lockouts (429s), password checks by method (from
the gateway's metrics), and CPU-seconds of the gateway and of the client process.
Nothing asserts timing; ``targets`` says whether 10,000 stations were back within
60 s with zero lockouts and failures.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from bench.common import ROOT, bench_stack, machine_info
from bench.loadgen import percentiles, raise_fd_limit
from bench.storm_client import outcome_counts
from bus.topics import Topics
from chargeflow.stack import free_port, wait_until
from ingest.gateway.security import cache_key_from_secret, credential_mac
from store.stations import hash_password

TARGET_STATIONS = 10_000
TARGET_BACK_S = 60.0
PASSWORD = "bench-storm-password-0001"
CACHE_KEY = "bench-storm-auth-cache-key-not-a-production-secret"
PREFIX = "STORM-"


def progress(text: str) -> None:
    print(f"[storm] {text}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the fleet


def station_ids(count: int) -> list[str]:
    return [f"{PREFIX}{i:05d}" for i in range(count)]


def provision(database_url: str, ids: list[str], prime: str) -> str:
    """Stations with one real argon2 hash; ``seed``: also what a gateway that held
    them leaves behind (verified credential, known address, last seen now)."""
    password_hash = hash_password(PASSWORD)
    with psycopg.connect(database_url, autocommit=True) as conn, conn.transaction():
        conn.execute(
            "INSERT INTO stations (charge_point_id, password_hash, security_profile) "
            "SELECT unnest(%s::text[]), %s, 1",
            (ids, password_hash),
        )
        if prime == "seed":
            key = cache_key_from_secret(CACHE_KEY)
            macs = [credential_mac(key, cp, password_hash, PASSWORD) for cp in ids]
            now = datetime.now(UTC)
            conn.execute(
                "UPDATE stations SET last_auth_ip = '127.0.0.1', last_auth_at = %s, "
                "last_seen_at = %s",
                (now, now),
            )
            conn.execute(
                "INSERT INTO station_verified_credentials "
                "(charge_point_id, credential_mac, verified_at) "
                "SELECT unnest(%s::text[]), unnest(%s::bytea[]), %s",
                (ids, macs, now),
            )
    return password_hash


# --------------------------------------------------------------------------- the gateway


@contextmanager
def gateway(
    bootstrap: str,
    database_url: str,
    topics: Topics,
    workdir: Path,
    name: str,
    root: Path = ROOT,
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A freshly started ``chargeflow gateway`` process, until it answers /livez."""
    from bench.gateway import gateway_env, healthy

    port = free_port()
    log = workdir / f"{name}.log"
    env = gateway_env(
        bootstrap,
        database_url,
        topics,
        port,
        CHARGEFLOW_GATEWAY_AUTH_CACHE_KEY=CACHE_KEY,
        CHARGEFLOW_LOG_LEVEL="WARNING",
    )
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "chargeflow.cli", "gateway"],
            cwd=root,
            env=env,
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
        )
    try:

        def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {proc.returncode}; see {log}")
            return healthy(port)

        wait_until(up, 60, "gateway /livez")
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def reset_between_storms(database_url: str) -> None:
    """Back to the state a restart finds: no connection rows, no connector rows, every
    station seen just now (its verified credential stays fresh)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM station_connections")
        conn.execute("DELETE FROM connectors")
        conn.execute("UPDATE stations SET last_seen_at = now()")


def cpu_seconds(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def metric_samples(port: int, name: str) -> dict[str, float]:
    """label values (joined) -> value of one metric family from /metrics."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            labels = line[len(name) :].rsplit(" ", 1)[0].strip("{}")
            out[labels or "total"] = float(line.rsplit(" ", 1)[1])
    return out


def run_client(url: str, stations: int, timeout_s: float, kind: str) -> dict[str, Any]:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.storm",
            "client",
            "--url",
            url,
            "--stations",
            str(stations),
            "--timeout",
            str(timeout_s),
            "--client",
            kind,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s + 300,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"storm client failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return dict(json.loads(proc.stdout))


def storm(
    bootstrap: str,
    database_url: str,
    topics: Topics,
    workdir: Path,
    stations: int,
    timeout_s: float,
    name: str,
    kind: str = "lean",
    root: Path = ROOT,
) -> dict[str, Any]:
    with gateway(bootstrap, database_url, topics, workdir, name, root) as (proc, port):
        cpu_before = cpu_seconds(proc.pid)
        progress(
            f"{name} ({root}): gateway up (pid {proc.pid}); {stations} stations connect at once"
        )
        result = run_client(f"ws://127.0.0.1:{port}/ocpp", stations, timeout_s, kind)
        cpu = cpu_seconds(proc.pid) - cpu_before
        checks = metric_samples(port, "chargeflow_gateway_password_checks_total")
        rejected = metric_samples(port, "chargeflow_gateway_rejected_handshakes_total")
        progress(f"{name}: {result['connected']} back in {result['all_back_s']} s")
    return {
        **result,
        "gateway_cpu_s": round(cpu, 1),
        "gateway_password_checks": checks,
        "gateway_rejected_handshakes": rejected,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway --reconnect-storm")
    parser.add_argument("--reconnect-storm", action="store_true")
    parser.add_argument("--stations", type=int, default=TARGET_STATIONS)
    parser.add_argument("--prime", choices=("seed", "login", "none"), default="seed")
    parser.add_argument(
        "--client",
        choices=("lean", "websockets"),
        default="lean",
        help="lean: raw asyncio streams, upgrade + BootNotification + StatusNotification "
        "(bench.storm_client); websockets: the websockets client, upgrade only",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        help="give up on stations not back after this many seconds",
    )
    parser.add_argument(
        "--gateway-root",
        type=Path,
        action="append",
        default=None,
        help="run the measured gateway from this checkout (repeatable: one storm per "
        "checkout, in order, on the same database; for before/after in one run)",
    )
    parser.add_argument(
        "--logs", type=Path, default=None, help="keep the gateway/broker logs in this directory"
    )
    args = parser.parse_args(argv)
    fd_limit = raise_fd_limit()
    result: dict[str, Any] = {
        "machine": machine_info(fd_limit=fd_limit),
        "mode": "reconnect-storm",
        "config": {
            "stations": args.stations,
            "prime": args.prime,
            "client": args.client,
            "auth_cache_key": "set",
            "limits": "gateway defaults",
        },
    }
    with bench_stack("storm", 2, args.logs) as stack:
        ids = station_ids(args.stations)
        started = time.perf_counter()
        provision(stack.database_url, ids, args.prime)
        result["provision_s"] = round(time.perf_counter() - started, 1)
        result["database"] = stack.database_origin
        bench_storm = functools.partial(
            storm,
            stack.broker.bootstrap,
            stack.database_url,
            stack.topics,
            stack.work,
            args.stations,
            args.timeout,
            kind=args.client,
        )
        if args.prime == "login":
            result["first_login"] = bench_storm(name="first-gateway")
        roots = args.gateway_root or [ROOT]
        runs = []
        for i, root in enumerate(roots):
            if i:
                reset_between_storms(stack.database_url)
            run = bench_storm(name="restarted-gateway", root=root.resolve())
            runs.append({"gateway_root": str(root), "load_after": os.getloadavg(), **run})
        result["storm"] = runs[-1]
        if len(runs) > 1:
            result["storms"] = runs
    s = result["storm"]
    result["targets"] = {
        "stations": TARGET_STATIONS,
        "back_within_s": TARGET_BACK_S,
        "met": (
            args.stations >= TARGET_STATIONS
            and s["connected"] == args.stations
            and s["all_back_s"] is not None
            and s["all_back_s"] <= TARGET_BACK_S
            and s["lockouts"] == 0
            and s["failures"] == 0
        ),
        "note": "shared 2-core machine: the client process competes with the gateway",
    }
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


# --------------------------------------------------------------------------- the client


async def client(url: str, stations: int, timeout_s: float) -> dict[str, Any]:
    statuses: Counter[int] = Counter()
    failures: Counter[str] = Counter()
    back_after: list[float] = []
    held: list[ClientConnection] = []
    started = time.monotonic()
    deadline = started + timeout_s

    async def station(cp_id: str) -> None:
        token = base64.b64encode(f"{cp_id}:{PASSWORD}".encode()).decode()
        while time.monotonic() < deadline:
            try:
                ws = await connect(
                    f"{url}/{cp_id}",
                    subprotocols=[Subprotocol("ocpp1.6")],
                    additional_headers={"Authorization": f"Basic {token}"},
                    open_timeout=max(1.0, deadline - time.monotonic()),
                    ping_interval=None,
                    compression=None,
                )
            except InvalidStatus as exc:
                status = exc.response.status_code
                statuses[status] += 1
                if status not in (429, 503):
                    failures[f"http {status}"] += 1
                    return
                await asyncio.sleep(float(exc.response.headers.get("Retry-After", "1")))
                continue
            except Exception as exc:  # a station would retry too; count it
                failures[type(exc).__name__] += 1
                await asyncio.sleep(1.0)
                continue
            back_after.append(time.monotonic() - started)
            held.append(ws)
            return
        failures["not back before the timeout"] += 1

    await asyncio.gather(*(station(cp) for cp in station_ids(stations)))
    all_back = time.monotonic() - started if len(back_after) == stations else None
    await asyncio.gather(*(ws.close() for ws in held), return_exceptions=True)
    return {
        "client": "websockets",
        "stations": stations,
        "connected": len(back_after),
        "all_connected_s": None if all_back is None else round(all_back, 2),
        "all_back_s": None if all_back is None else round(all_back, 2),
        "back_after_ms": percentiles([1000 * t for t in back_after]),
        **outcome_counts(failures, statuses),
    }


def client_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.storm client")
    parser.add_argument("--url", required=True)
    parser.add_argument("--stations", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--client", choices=("lean", "websockets"), default="lean")
    args = parser.parse_args(argv)
    raise_fd_limit()
    if args.client == "lean":
        from bench.storm_client import lean_client

        run = lean_client(args.url, station_ids(args.stations), PASSWORD, args.timeout)
    else:
        run = client(args.url, args.stations, args.timeout)
    json.dump(asyncio.run(run), sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["client"]:
        sys.exit(client_main(sys.argv[2:]))
    sys.exit(main(sys.argv[1:]))
