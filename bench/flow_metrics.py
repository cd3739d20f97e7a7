"""What the flows' metrics cost on the hot path: ``python -m bench.flow_metrics``.

Prints one JSON document: microseconds per call of each measurement
:mod:`flows.metrics` adds (once per input batch, per database write, per epoch
snapshot of an input partition), and what that is per event for a given batch size.
Bytewax already parses librdkafka's statistics once a second per partition; the lag
reuses that parse, so it adds no call here. Compare whole-flow throughput with
``python -m bench.flows`` on the commits before and after.
"""

from __future__ import annotations

import argparse
import json
import timeit

from bench.common import machine_info
from flows.metrics import EPOCH_SECONDS, EVENTS_IN, SinkMetrics


def per_call_us(fn: object, number: int) -> float:
    return timeit.timeit(fn, number=number) / number * 1e6  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=1000,
        help="events per input batch (CHARGEFLOW_FLOW_BATCH_SIZE)",
    )
    args = parser.parse_args()
    events = EVENTS_IN.labels("bench", "ocpp.events")
    sink = SinkMetrics("bench")
    epoch = EPOCH_SECONDS.labels("bench", "ocpp.events", "0")
    batch = args.batch_size
    input_us = per_call_us(lambda: events.inc(batch), args.calls)
    sink_us = per_call_us(lambda: sink.observe(batch, 0.01), args.calls)
    epoch_us = per_call_us(lambda: epoch.observe(1.0), args.calls)
    print(
        json.dumps(
            {
                "machine": machine_info(),
                "calls": args.calls,
                "batch_size": batch,
                "us_per_input_batch": round(input_us, 3),
                "us_per_sink_write": round(sink_us, 3),
                "us_per_epoch_snapshot": round(epoch_us, 3),
                # Input and sink measurements once per batch of batch_size events (at most).
                "ns_per_event": round((input_us + sink_us) * 1000 / batch, 3),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
