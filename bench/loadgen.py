"""OCPP 1.6J load generator: ``python -m bench.loadgen --url ws://.../ocpp ...``.

Many charge points in one asyncio process, each its own WebSocket connection
(``websockets`` directly, hand-built OCPP-J frames, no ``ocpp`` library: the
generator must stay cheaper than the gateway it measures). Every station connects
with HTTP Basic auth (username = its id), sends BootNotification and
StartTransaction, then MeterValues at ``rate / stations`` per second with a random
phase, so the fleet sends ``rate`` CALLs per second in total. Like a real station
it has at most one CALL outstanding (OCPP-J): a station whose answer comes late
sends its next CALL late, and slots that passed meanwhile are skipped, not made up,
so an overloaded gateway shows up as a lower achieved rate (and as
``skipped_slots``), not as an unbounded queue in the generator.

Latency is per CALL, from just before ``send`` to the CALLRESULT, measured after
``--warmup`` seconds for ``--duration`` seconds. The MeterValues timestamp is the
wall-clock send time (UTC, milliseconds), so ``bench.e2e`` can tell each sample's
age when it appears in the database.

Used by ``bench.gateway`` and ``bench.e2e``, which start it as a separate process
and talk to it through stderr lines (``READY``, ``MEASURE-START``, ``MEASURE-END``)
and, with ``--wait-go``, a ``GO`` line on stdin once all stations are connected.
Prints one JSON document to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.typing import Subprotocol


def raise_fd_limit() -> int:
    """Soft open-files limit up to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def percentiles(
    values: list[float], points: tuple[float, ...] = (50, 95, 99, 99.9)
) -> dict[str, float | None]:
    """Nearest-rank percentiles (ms values in, rounded), plus max and mean."""
    out: dict[str, float | None] = {}
    if not values:
        return {**{f"p{p:g}": None for p in points}, "max": None, "mean": None}
    ordered = sorted(values)
    n = len(ordered)
    for p in points:
        rank = max(1, min(n, int(-(-p * n // 100))))
        out[f"p{p:g}"] = round(ordered[rank - 1], 2)
    out["max"] = round(ordered[-1], 2)
    out["mean"] = round(sum(ordered) / n, 2)
    return out


def iso_ms(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Stats:
    latencies_ms: list[float] = field(default_factory=list)
    measured_ok: int = 0
    measured_sent: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    skipped_slots: int = 0
    connect_failures: Counter[str] = field(default_factory=Counter)
    connect_ms: list[float] = field(default_factory=list)
    sent_total: int = 0
    ok_total: int = 0


class Station:
    def __init__(self, index: int, cp_id: str, args: argparse.Namespace, stats: Stats) -> None:
        self.index = index
        self.cp_id = cp_id
        self.args = args
        self.stats = stats
        self.ws: ClientConnection | None = None
        self.seq = 0
        self.tx: int | None = None
        self.register_wh = 1_000_000 + index * 10
        self.power_w = 11_000

    def _uid(self) -> str:
        self.seq += 1
        return f"{self.index:x}-{self.seq:x}"

    async def connect(self, attempts: int = 3) -> bool:
        args = self.args
        token = base64.b64encode(f"{self.cp_id}:{args.password}".encode()).decode()
        headers = {"Authorization": f"Basic {token}"} if args.password else {}
        for attempt in range(attempts):
            started = time.perf_counter()
            try:
                self.ws = await connect(
                    f"{args.url}/{self.cp_id}",
                    subprotocols=[Subprotocol("ocpp1.6")],
                    additional_headers=headers,
                    open_timeout=args.open_timeout,
                    ping_interval=None,
                    max_queue=4,
                    compression="deflate" if args.compression else None,
                )
                self.stats.connect_ms.append((time.perf_counter() - started) * 1000)
                return True
            except InvalidStatus as exc:
                self.stats.connect_failures[f"http_{exc.response.status_code}"] += 1
            except (OSError, TimeoutError, WebSocketException) as exc:
                self.stats.connect_failures[type(exc).__name__] += 1
            await asyncio.sleep(0.5 * (attempt + 1))
        return False

    async def call(
        self, action: str, payload_json: str, wait_s: float
    ) -> tuple[float, dict[str, Any] | None, str | None]:
        """(latency ms, CALLRESULT payload or None, error code or None)."""
        assert self.ws is not None
        uid = self._uid()
        frame = f'[2,"{uid}","{action}",{payload_json}]'
        started = time.perf_counter()
        self.stats.sent_total += 1
        await self.ws.send(frame)
        async with asyncio.timeout(wait_s):
            while True:
                raw = await self.ws.recv()
                answer = json.loads(raw)
                if answer[1] == uid:
                    break
        latency = (time.perf_counter() - started) * 1000
        if answer[0] == 3:
            self.stats.ok_total += 1
            return latency, answer[2], None
        return latency, None, str(answer[2])

    async def boot(self) -> bool:
        try:
            _, boot, err = await self.call(
                "BootNotification",
                json.dumps(
                    {
                        "chargePointVendor": "chargeflow-bench",
                        "chargePointModel": "LOADGEN",
                        "chargePointSerialNumber": self.cp_id,
                    }
                ),
                60,
            )
            if boot is None:
                self.stats.errors[f"boot_{err}"] += 1
                return False
            _, start, err = await self.call(
                "StartTransaction",
                json.dumps(
                    {
                        "connectorId": 1,
                        "idTag": f"BT{self.index}",
                        "meterStart": self.register_wh,
                        "timestamp": iso_ms(datetime.now(UTC)),
                    }
                ),
                60,
            )
        except (TimeoutError, ConnectionClosed) as exc:
            self.stats.errors[f"setup_{type(exc).__name__}"] += 1
            return False
        if start is None:
            self.stats.errors[f"start_{err}"] += 1
            return False
        self.tx = int(start["transactionId"])
        return True

    def meter_values(self, now: datetime) -> str:
        self.register_wh += self.power_w // 3600 + 1
        amps = round(self.power_w / (3 * 230), 1)
        return (
            f'{{"connectorId":1,"transactionId":{self.tx},"meterValue":[{{"timestamp":'
            f'"{iso_ms(now)}","sampledValue":['
            f'{{"value":"{self.register_wh}","context":"Sample.Periodic",'
            f'"measurand":"Energy.Active.Import.Register","location":"Outlet","unit":"Wh"}},'
            f'{{"value":"{self.power_w}","context":"Sample.Periodic",'
            f'"measurand":"Power.Active.Import","location":"Outlet","unit":"W"}},'
            f'{{"value":"{amps}","context":"Sample.Periodic","measurand":"Current.Import",'
            f'"location":"Outlet","unit":"A","phase":"L1"}}]}}]}}'
        )

    async def run(self, t0: float, measure_from: float, measure_to: float, interval: float) -> None:
        stats = self.stats
        loop = asyncio.get_running_loop()
        slot = t0 + random.random() * interval
        while slot < measure_to:
            now = loop.time()
            if slot > now:
                await asyncio.sleep(slot - now)
            elif now - slot > interval:  # late by more than a slot: skip, do not burst
                missed = int((now - slot) // interval)
                slot += missed * interval
                if measure_from <= slot < measure_to:
                    stats.skipped_slots += missed
            measuring = measure_from <= slot < measure_to
            slot += interval
            if measuring:
                stats.measured_sent += 1
            try:
                latency, _result, err = await self.call(
                    "MeterValues", self.meter_values(datetime.now(UTC)), self.args.call_timeout
                )
            except TimeoutError:
                stats.errors["timeout"] += 1
                continue
            except ConnectionClosed as exc:
                stats.errors[f"closed_{exc.rcvd.code if exc.rcvd else 'lost'}"] += 1
                return
            if err is not None:
                stats.errors[err] += 1
            elif measuring:
                stats.latencies_ms.append(latency)
                stats.measured_ok += 1


def signal_line(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    stats = Stats()
    ids = [f"{args.prefix}{i:05d}" for i in range(args.stations)]
    stations = [Station(i, cp, args, stats) for i, cp in enumerate(ids)]
    loop = asyncio.get_running_loop()

    started = loop.time()
    gate = asyncio.Semaphore(args.connect_concurrency)

    async def bring_up(st: Station) -> bool:
        async with gate:
            return await st.connect() and await st.boot()

    up = await asyncio.gather(*(bring_up(st) for st in stations))
    live = [st for st, ok in zip(stations, up, strict=True) if ok]
    connect_s = loop.time() - started
    signal_line(f"READY {json.dumps({'connected': len(live), 'connect_s': round(connect_s, 2)})}")
    if args.wait_go:
        line = await asyncio.to_thread(sys.stdin.readline)
        if line.strip() != "GO":
            raise SystemExit(f"expected GO on stdin, got {line!r}")

    interval = args.stations / args.rate
    t0 = loop.time() + 0.05
    measure_from = t0 + args.warmup
    measure_to = measure_from + args.duration
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    tasks = [asyncio.create_task(st.run(t0, measure_from, measure_to, interval)) for st in live]

    async def markers() -> None:
        await asyncio.sleep(max(0.0, measure_from - loop.time()))
        signal_line("MEASURE-START")
        await asyncio.sleep(max(0.0, measure_to - loop.time()))
        signal_line("MEASURE-END")

    marker = asyncio.create_task(markers())
    await asyncio.gather(*tasks)
    await marker
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    wall = loop.time() - t0
    still_open = sum(1 for st in live if st.ws is not None and st.ws.state.name == "OPEN")
    await asyncio.gather(
        *(st.ws.close() for st in live if st.ws is not None), return_exceptions=True
    )

    cpu_s = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    return {
        "stations": args.stations,
        "connected": len(live),
        "open_at_end": still_open,
        "connect_s": round(connect_s, 2),
        "connect_ms": percentiles(stats.connect_ms),
        "connect_failures": dict(stats.connect_failures),
        "target_messages_per_s": args.rate,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "measured_sent": stats.measured_sent,
        "measured_ok": stats.measured_ok,
        "achieved_messages_per_s": round(stats.measured_ok / args.duration, 1),
        "skipped_slots": stats.skipped_slots,
        "latency_ms": percentiles(stats.latencies_ms),
        "errors": dict(stats.errors),
        "calls_sent_total": stats.sent_total,
        "callresults_total": stats.ok_total,
        "loadgen_cpu_percent": round(100 * cpu_s / wall, 1) if wall > 0 else None,
        "compression": bool(args.compression),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.loadgen",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--url", required=True, help="gateway base URL, e.g. ws://h:p/ocpp")
    parser.add_argument("--stations", type=int, default=100)
    parser.add_argument("--prefix", default="BENCH-", help="station ids: PREFIX00000...")
    parser.add_argument("--password", default=None, help="Basic-auth password of every station")
    parser.add_argument("--rate", type=float, default=100.0, help="MeterValues/s, whole fleet")
    parser.add_argument("--duration", type=float, default=30.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=5.0, help="unmeasured seconds first")
    parser.add_argument("--connect-concurrency", type=int, default=8)
    parser.add_argument("--open-timeout", type=float, default=300.0)
    parser.add_argument("--call-timeout", type=float, default=30.0)
    parser.add_argument(
        "--compression",
        action="store_true",
        help="offer permessage-deflate (off: most station firmware does not)",
    )
    parser.add_argument(
        "--wait-go", action="store_true", help="after READY, wait for a GO line on stdin"
    )
    parser.add_argument("--seed", type=int, default=1)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    random.seed(args.seed)
    limit = raise_fd_limit()
    if limit < args.stations + 100:
        print(f"[loadgen] open-files limit {limit} is below {args.stations + 100}", file=sys.stderr)
    result = asyncio.run(main_async(args))
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
